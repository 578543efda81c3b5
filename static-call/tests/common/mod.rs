//! Helpers shared by the integration tests; each test file includes them with `mod common;` (one
//! process per file, so each gets its own copy of the `SCALE` key).

#![allow(dead_code)] // each test file uses its own part

pub mod branch;
pub mod child;
pub mod scale;
pub mod stop;
pub mod tracer;
