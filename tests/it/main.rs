//! Integration tests.

mod crash;
mod descriptors;
mod history_procs;
mod hostile;

/// A two-worker runtime, for tests that drive the store from a child
/// process or a plain `#[test]`.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
