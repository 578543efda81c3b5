//! Executable memory and the bytes that go into it.
//!
//! - [`arena`]: mmap'd code memory near this crate's text (RWX, sealed RX, or dual-mapped W^X), with
//!   placement at a chosen byte of a 64-byte line.
//! - [`text_writer`]: the single path for writing code that may be running.
//! - [`insn`]: encode/decode of the patchable site forms (call, jmp, cs-call, nop5, ret).
//! - [`flavor`]: the flavor table — which bytes each kind of call site holds.
//! - [`scenario`]: mono, poly-K (round-robin, random), sites-N, offset-B.
//! - [`emit`]: laying assembled code and exact-byte sites into an arena.
//! - [`probe`]: one flavor × scenario as two runnable loops (U and 2U calls per iteration).

pub mod arena;
pub mod emit;
pub mod flavor;
pub mod insn;
pub mod probe;
pub mod scenario;
pub mod text_writer;

pub use arena::{Arena, ArenaMode, CACHE_LINE};
pub use emit::EmitError;
pub use flavor::{Flavor, FlavorSite, SiteForm};
pub use insn::{decode, encode, Insn, InsnBytes};
pub use probe::{Build, Probe, Site, Symbol, Target};
pub use scenario::{Order, Scenario, ScenarioSequence};
pub use text_writer::{TextWriter, WriteMethod};
