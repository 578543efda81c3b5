//! `naive`: no protocol at all — the new bytes are copied over the running site. Only the hazard
//! experiment uses it, in a child process, to show what the protocols prevent: an executing core can
//! fetch a mix of old and new bytes (a torn instruction) when a store spans more than one byte of a
//! site, and always can when the rel32 crosses a cache line.

use crate::batch::Step;
use crate::error::PatchError;
use crate::insn::{encode, Insn};
use crate::protocol::InPlace;
use crate::text_writer::{write, TextWriter};
use crate::validate::Planned;

pub use callpatch_vocab::NaiveStore;

/// The naive protocol: anything goes (that's the point), as long as validation passed.
pub(crate) struct Naive;

impl InPlace for Naive {
    const NAME: &'static str = "naive";

    /// Copies every site byte by byte; no sync. Returns the syncs used (0).
    unsafe fn steps(writer: &TextWriter, plan: &[Planned], _: &mut dyn FnMut(Step)) -> Result<u64, PatchError> {
        for p in plan {
            for (i, b) in p.new_bytes.iter().enumerate() {
                // SAFETY: a planned site (validated, vouched for by the caller); tearing a running
                // thread's instruction is what this protocol exists to show.
                unsafe { write(writer, p.addr + i, &[*b])? };
            }
        }
        Ok(0)
    }
}

/// Stores the rel32 of `new` at site `addr` with [`NaiveStore`] `how`, no validation, no sync: the
/// hazard experiment's writer.
///
/// # Safety
/// `addr` is a site of the caller's own code whose opcode bytes already match `new` (only the rel32
/// changes), and every thread that may run it meanwhile tolerates a torn call (the hazard experiment
/// runs it in a catch zone, in a child process).
pub unsafe fn store_rel32(writer: &TextWriter, how: NaiveStore, addr: usize, new: Insn) -> Result<(), PatchError> {
    let off = new.rel32_offset().ok_or_else(|| PatchError::Unsupported {
        addr,
        protocol: "naive",
        reason: format!("{new:?} has no rel32"),
    })?;
    let bytes = encode(new, addr).map_err(|_| PatchError::OutOfRange { addr, target: new.target().unwrap_or(0) })?;
    let rel = &bytes[off..off + 4];
    match how {
        NaiveStore::Bytewise => {
            for (i, b) in rel.iter().enumerate() {
                // SAFETY: the rel32 of the caller's site (this function's contract).
                unsafe { write(writer, addr + off + i, &[*b])? };
            }
            Ok(())
        }
        NaiveStore::Split => {
            let value = u32::from_le_bytes(rel.try_into().expect("4 bytes"));
            // SAFETY: the rel32 of the caller's site (this function's contract).
            unsafe { writer.store_u32(addr + off, value) }.map_err(|source| PatchError::Write {
                addr: addr + off,
                len: 4,
                source,
            })
        }
    }
}
