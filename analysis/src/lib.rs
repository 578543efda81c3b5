//! callpatch-analysis: everything in callpatch that reads binaries or results.
//!
//! - [`census`]: ELF call-site census (object + iced-x86) and Linux static call tables.
//! - [`report`]: CSV row types, machine identity, plots and the summary.

#![deny(unsafe_op_in_unsafe_fn, missing_docs, clippy::undocumented_unsafe_blocks)]

pub mod census;
pub mod report;
