//! Executable memory and the bytes that go into it.
//!
//! - [`arena`]: mmap'd code memory near this crate's text (RWX, sealed RX, or dual-mapped W^X), with
//!   placement at a chosen byte of a 64-byte line.
//! - [`text_writer`]: the single path for writing code that may be running.
//! - [`insn`]: encode/decode of the patchable site forms (call, jmp, cs-call, nop5, ret).

pub mod arena;
pub mod insn;
pub mod text_writer;

pub use arena::{Arena, ArenaMode, CACHE_LINE};
pub use insn::{decode, encode, Insn, InsnBytes};
pub use text_writer::{TextWriter, WriteMethod};
