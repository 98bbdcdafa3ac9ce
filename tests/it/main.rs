//! Integration tests.

mod crash;
mod hostile;
