//! Formatting, globbing and progress helpers.

use std::path::Path;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// `1.2 MiB`-style sizes.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `12.3 ms` / `4.56 s`-style durations.
pub fn duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 1e-3 {
        format!("{:.0} µs", s * 1e6)
    } else if s < 1.0 {
        format!("{:.1} ms", s * 1e3)
    } else {
        format!("{s:.2} s")
    }
}

/// Bytes per second as `MB/s` or `GB/s` (decimal, as throughput usually is).
pub fn rate(n_bytes: u64, d: Duration) -> String {
    let per_s = n_bytes as f64 / d.as_secs_f64().max(1e-9);
    if per_s >= 1e9 {
        format!("{:.2} GB/s", per_s / 1e9)
    } else {
        format!("{:.1} MB/s", per_s / 1e6)
    }
}

/// Glob match with `*` (any run) and `?` (one char).
pub fn glob(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// A progress bar on stderr (indicatif hides it when stderr is not a terminal),
/// or a hidden one with `--quiet`.
pub fn progress(len: u64, what: &str, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} ({eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb.set_message(what.to_owned());
    pb
}

/// A store argument as `Atlas::open` takes it: the URL as given, or the path.
pub fn location(store: &Path) -> String {
    store.to_string_lossy().into_owned()
}

/// Total size of the files under `dir` (recursively): a local directory, or
/// the objects under an object-store URL's prefix.
pub fn disk_usage(dir: &Path) -> u64 {
    let loc = location(dir);
    if atlas::ObjectStorage::handles(&loc) {
        return atlas::storage_for(&loc, &[]).map_or(0, |(storage, root)| {
            object_usage(storage.as_ref(), &root, 0)
        });
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => disk_usage(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Sizes of the objects under `prefix` (a store is two levels deep).
fn object_usage(storage: &dyn atlas::Storage, prefix: &Path, depth: u32) -> u64 {
    storage
        .list_entries(prefix)
        .unwrap_or_default()
        .into_iter()
        .map(|e| {
            if e.modified.is_none() && depth < 3 {
                object_usage(storage, &prefix.join(&e.name), depth + 1)
            } else {
                e.len
            }
        })
        .sum()
}

/// Sizes of the files named `names` in directory `dir` of the store `store`.
pub fn file_sizes(store: &Path, dir: &Path, names: &[&str]) -> u64 {
    let loc = location(store);
    if atlas::ObjectStorage::handles(&loc) {
        let Ok((storage, _)) = atlas::storage_for(&loc, &[]) else {
            return 0;
        };
        return storage
            .list_entries(dir)
            .unwrap_or_default()
            .into_iter()
            .filter(|e| names.contains(&e.name.as_str()))
            .map(|e| e.len)
            .sum();
    }
    names
        .iter()
        .filter_map(|n| std::fs::metadata(dir.join(n)).ok())
        .map(|m| m.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("*", "anything"));
        assert!(glob("prof*_01", "profile_01"));
        assert!(glob("p?o", "pro"));
        assert!(!glob("p?o", "proo"));
        assert!(!glob("a*b", "acd"));
        assert!(glob("*a*b*", "xxaxxbxx"));
    }

    #[test]
    fn sizes() {
        assert_eq!(bytes(10), "10 B");
        assert_eq!(bytes(1536), "1.5 KiB");
    }
}
