//! Integration tests.

mod crash;
