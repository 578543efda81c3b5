//! Helpers shared by the integration tests (each test file includes what it needs with `mod common;`).

pub mod tracer;
