//! Standard output of every command, and the one place that knows what a
//! closed stdout means.
//!
//! `atlas ls STORE | head` closes the pipe while `atlas` still writes; the
//! write then fails with `EPIPE` (Rust ignores `SIGPIPE`). That is the reader's
//! choice, not a failure of ours, so `main` ends quietly with status 0, as
//! `ls` and `cat` do. The error itself cannot be recognised reliably once it
//! has travelled up (`serde_json` hides the `io::Error` it wraps from the
//! source chain), and a broken pipe elsewhere (a socket, a child process) is a
//! real failure; so every write to stdout goes through [`Stdout`], which
//! records that stdout was found closed, and `main` asks [`closed`].
//!
//! **Invariant:** nothing in this crate writes to stdout except through
//! [`stdout`] (the `say!` macro, or a `BufWriter` around it); `print!` and
//! `println!` are denied by a lint in `main.rs`.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once a write to stdout has failed with `BrokenPipe`.
static CLOSED: AtomicBool = AtomicBool::new(false);

/// A locked handle on stdout that remembers when the reader has gone away.
pub struct Stdout(io::StdoutLock<'static>);

/// Locks stdout for writing (line-buffered; wrap it in a `BufWriter` for bulk
/// output).
pub fn stdout() -> Stdout {
    Stdout(io::stdout().lock())
}

/// Whether a write to stdout has failed because its reader closed the pipe.
pub fn closed() -> bool {
    CLOSED.load(Ordering::Relaxed)
}

/// Passes `r` through, noting a broken pipe.
fn watch<T>(r: io::Result<T>) -> io::Result<T> {
    if let Err(e) = &r {
        if e.kind() == io::ErrorKind::BrokenPipe {
            CLOSED.store(true, Ordering::Relaxed);
        }
    }
    r
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        watch(self.0.write(buf))
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        watch(self.0.write_all(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        watch(self.0.flush())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_broken_pipe_marks_stdout_closed() {
        let other: io::Result<()> = Err(io::Error::from(io::ErrorKind::PermissionDenied));
        assert!(watch(other).is_err());
        assert!(watch(Ok(3)).is_ok());
        assert!(!closed());
        let pipe: io::Result<()> = Err(io::Error::from(io::ErrorKind::BrokenPipe));
        assert!(watch(pipe).is_err());
        assert!(closed());
    }
}
