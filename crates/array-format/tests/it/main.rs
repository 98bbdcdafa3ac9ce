//! Integration tests of `array-format`: round trips, a model-based test of
//! `ArrayFile`, corruption and hostile input, injected storage faults,
//! regressions and typed errors for bad calls. One binary, one module each.

// Test code converts freely between cell counts, indexes and random bits.
#![allow(clippy::cast_lossless)]
// Exact float comparisons are the point of round-trip tests.
#![allow(clippy::float_cmp)]
// Index arithmetic over rows, columns, heights and widths reads best as i, j, r, c, h, w.
#![allow(clippy::many_single_char_names, clippy::similar_names)]

mod common;
mod corruption;
mod errors;
mod faults;
mod golden;
mod merge;
mod model;
mod regressions;
mod roundtrip;
