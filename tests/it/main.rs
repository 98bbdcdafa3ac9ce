//! Integration tests.

mod crash;
mod descriptors;
mod hostile;
