//! One tokio runtime per process, created lazily, and the fork check.

use std::future::Future;
use std::sync::{Mutex, PoisonError};

use pyo3::prelude::*;
use tokio::runtime::Runtime;

/// The runtime of the current process, with the pid that built it.
static RUNTIME: Mutex<Option<(u32, &'static Runtime)>> = Mutex::new(None);

/// The runtime of this process, built on first use. After `fork()` the parent's
/// runtime is inherited without its threads: it is abandoned (leaked, never
/// dropped, since dropping would wait for threads that do not exist in the
/// child) and a new one is built.
pub fn runtime() -> &'static Runtime {
    let pid = std::process::id();
    let mut slot = RUNTIME.lock().unwrap_or_else(PoisonError::into_inner);
    match *slot {
        Some((owner, rt)) if owner == pid => rt,
        _ => {
            let rt: &'static Runtime = Box::leak(Box::new(
                tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .thread_name("atlas-python")
                    .build()
                    .expect("cannot start the tokio runtime"),
            ));
            *slot = Some((pid, rt));
            rt
        }
    }
}

/// Runs `fut` to completion on the process runtime with the GIL released.
pub fn block_on<F>(py: Python<'_>, fut: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    py.detach(|| runtime().block_on(fut))
}
