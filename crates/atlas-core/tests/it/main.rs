//! The single integration-test binary of `atlas-core`.
//!
//! Each module covers one area of the contract in `SPEC.md` §2–4:
//!
//! - [`api`]: every public method of `Atlas` and `DatasetView`, every dtype.
//! - [`attrs`]: exact attribute round trips in both registry formats.
//! - [`bad_input`]: typed errors for every bad input, committed data intact.
//! - [`batch`]: `create_datasets` against the per-call API, all or nothing.
//! - [`deletes`]: deleted data never comes back.
//! - [`faults`]: deterministic fault injection at every step of flush/compact.
//! - [`history`]: time travel: history, `open_at`, tags, retention, GC,
//!   restore and diff, with a model, faults and S3.
//! - [`model`]: a proptest model of the whole store.
//! - [`concurrency`]: readers beside a flushing/compacting writer.
//! - [`scale`]: a 20,000-dataset smoke test.
//! - [`object_store`]: the storage conformance suite on every backend and the
//!   store on S3 (in-process `s3s` server; moto when CI starts one).
//!
//! Shared helpers live in [`common`].

#![allow(
    clippy::float_cmp,
    reason = "tests compare stored floats bit-for-bit on purpose"
)]
#![allow(
    clippy::unreadable_literal,
    reason = "test values are chosen, not read"
)]
#![allow(
    clippy::too_many_lines,
    reason = "scenario tests read top to bottom as one story"
)]
#![allow(
    clippy::similar_names,
    reason = "before/after pairs are clearer with parallel names"
)]
#![allow(
    clippy::missing_panics_doc,
    reason = "test helpers panic on failure by design"
)]
#![allow(
    clippy::many_single_char_names,
    reason = "s, r, n, v for store, reader, step and value keep scenarios short"
)]
#![allow(
    clippy::items_after_statements,
    reason = "small local helpers sit next to their use"
)]
#![allow(
    clippy::needless_pass_by_value,
    reason = "helpers take owned test data for readability"
)]

mod api;
mod attrs;
mod bad_input;
mod batch;
mod common;
mod compat;
mod concurrency;
mod deletes;
mod faults;
mod history;
mod model;
mod object_store;
mod query;
mod scale;
