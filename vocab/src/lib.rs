//! The words every part of callpatch shares, defined once: what a call flavor, a return kind, a scenario, a patch
//! protocol, a granule and a census site kind are called, the rule for when a site's bytes cross a
//! cache line, and the typed rows of every CSV file.
//!
//! No `unsafe`, and no dependency but `serde` (the `serde` feature, on by default; the patcher and
//! `static_call!` use this crate without it).
//!
//! Every named word has `ALL` (its values in the order of CLI output, CSV rows and plots), `name()`,
//! `Display` as that name and `FromStr` back, so a list of names is never written twice.
//!
//! ```
//! use callpatch_vocab::{crossing, Flavor, Granule, Protocol, RowScenario, Scenario};
//!
//! let p: Protocol = "aligned-8".parse().unwrap();
//! assert_eq!(p, Protocol::Aligned { granule: Granule::Word8 });
//! // A 5-byte call at byte 60 of a line: its rel32 (bytes 61..65) crosses the line.
//! assert!(crossing::rel32_crosses(60, 5, 64));
//! assert!(!crossing::rel32_crosses(59, 5, 64));
//! // A calls.csv row, read back.
//! let sc = Scenario::from_columns("poly-random", "4").unwrap();
//! assert!(sc.supports(Flavor::Retpoline) && !sc.supports(Flavor::Direct));
//! assert_eq!(RowScenario::from(sc).to_string(), "random poly-4");
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod names;

pub mod crossing;
pub mod flavor;
pub mod kind;
pub mod protocol;
pub mod ret;
pub mod rows;
pub mod scenario;

pub use crossing::CACHE_LINE;
pub use flavor::Flavor;
pub use kind::SiteKind;
pub use protocol::{Granule, HazardWriter, NaiveStore, PatchSubject, Protocol};
pub use ret::ReturnKind;
pub use scenario::{Order, RowScenario, Scenario};
