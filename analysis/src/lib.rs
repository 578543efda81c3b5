//! callpatch-analysis: everything in callpatch that reads binaries or results.
//!
//! - [`census`]: ELF call-site census (object + iced-x86) and Linux static call tables.
//! - [`report`]: CSV row types, machine identity, plots and the summary.

pub mod census;
pub mod report;
