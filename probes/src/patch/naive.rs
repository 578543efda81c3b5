//! `naive`: no protocol at all — the new bytes are copied over the running site. Only the hazard
//! experiment uses it, in a child process, to show what the protocols prevent: an executing core can
//! fetch a mix of old and new bytes (a torn instruction) when a store spans more than one byte of a
//! site, and always can when the rel32 crosses a cache line.

use super::validate::Planned;
use super::{write, PatchError};
use crate::code::{Insn, TextWriter};

/// How the naive writer stores a site's rel32.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NaiveStore {
    /// One byte at a time, in address order (what a `memcpy` of a few bytes may do).
    Bytewise,
    /// One 4-byte `mov` of the whole rel32, even across a cache line (then it is two stores).
    Split,
}

impl NaiveStore {
    /// Both writers.
    pub const ALL: [NaiveStore; 2] = [NaiveStore::Bytewise, NaiveStore::Split];

    /// Name used on the command line and in CSV rows.
    pub fn name(self) -> &'static str {
        match self {
            NaiveStore::Bytewise => "naive-bytewise",
            NaiveStore::Split => "naive-split4",
        }
    }
}

/// Anything goes (that's the point), as long as validation passed.
pub(crate) fn accept(_old: Insn, _new: Insn) -> Option<&'static str> {
    None
}

/// Copies every site byte by byte; no sync. Returns the syncs used (0).
pub(crate) fn poke(writer: &TextWriter, plan: &[Planned]) -> Result<u64, PatchError> {
    for p in plan {
        for (i, b) in p.new_bytes.iter().enumerate() {
            write(writer, p.addr + i, &[*b])?;
        }
    }
    Ok(0)
}

/// Stores the rel32 of `new` at site `addr` with [`NaiveStore`] `how`, no validation, no sync: the
/// hazard experiment's writer. `addr` must be a site of ours whose opcode bytes already match `new`.
pub fn store_rel32(writer: &TextWriter, how: NaiveStore, addr: usize, new: Insn) -> Result<(), PatchError> {
    let off = new.rel32_offset().ok_or_else(|| PatchError::Unsupported {
        addr,
        protocol: "naive",
        reason: format!("{new:?} has no rel32"),
    })?;
    let bytes = crate::code::encode(new, addr)
        .map_err(|_| PatchError::OutOfRange { addr, target: new.target().unwrap_or(0) })?;
    let rel = &bytes[off..off + 4];
    match how {
        NaiveStore::Bytewise => {
            for (i, b) in rel.iter().enumerate() {
                write(writer, addr + off + i, &[*b])?;
            }
            Ok(())
        }
        NaiveStore::Split => {
            let value = u32::from_le_bytes(rel.try_into().expect("4 bytes"));
            writer.store_u32(addr + off, value).map_err(|source| PatchError::Write { addr: addr + off, len: 4, source })
        }
    }
}
