//! The words every part of callpatch shares, defined once: what a call flavor, a scenario, a patch
//! protocol, a granule and a census site kind are called, the rule for when a site's bytes cross a
//! cache line, and the typed rows of every CSV file.
//!
//! No `unsafe`, and no dependency but `serde` (the `serde` feature, on by default; the patcher and
//! `static_call!` use this crate without it).
//!
//! ```
//! use callpatch_vocab::{crossing, Granule, Protocol};
//!
//! let p: Protocol = "aligned-8".parse().unwrap();
//! assert_eq!(p, Protocol::Aligned { granule: Granule::Word8 });
//! // A 5-byte call at byte 60 of a line: its rel32 (bytes 61..65) crosses the line.
//! assert!(crossing::rel32_crosses(60, 5, 64));
//! assert!(!crossing::rel32_crosses(59, 5, 64));
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod crossing;
pub mod protocol;

pub use crossing::CACHE_LINE;
pub use protocol::{Granule, Protocol};
