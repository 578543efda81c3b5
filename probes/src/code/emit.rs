//! Laying code into an [`Arena`] one piece at a time, at known addresses.
//!
//! Ordinary code (prologues, loop control, target selection, thunks) is assembled with iced-x86's
//! `CodeAssembler` at the exact address it will occupy, with `BlockEncoderOptions::DONT_FIX_BRANCHES`
//! and near branches preferred, so the block encoder never rewrites a branch into another form. Call
//! sites never pass through the block encoder at all: their bytes come from [`SiteForm::encode`]
//! (iced-x86's `Encoder` with the exact `Code`), so a site is always the 2–7 bytes its flavor says.
//! Padding that is executed is made of the SDM's recommended multi-byte NOPs; padding that is never
//! executed stays `int3`, as the arena leaves it.

use std::io;

use iced_x86::code_asm::{CodeAssembler, CodeLabel};
use iced_x86::{BlockEncoderOptions, IcedError};
use thiserror::Error;

use super::arena::{Arena, CACHE_LINE};
use super::flavor::SiteForm;
use super::insn::EncodeError;

/// Why a probe could not be emitted.
#[derive(Debug, Error)]
pub enum EmitError {
    /// The arena could not be mapped, or is full.
    #[error("code arena: {0}")]
    Arena(#[from] io::Error),
    /// iced-x86 rejected an instruction (a bug in the emitter).
    #[error("assembler: {0}")]
    Asm(#[from] IcedError),
    /// A rel32 did not reach (the arena is always near enough, so a bug).
    #[error("site encoding: {0}")]
    Encode(#[from] EncodeError),
    /// The flavor cannot run in the scenario (e.g. a direct call has one target, poly needs several).
    #[error("flavor {flavor} cannot run scenario {scenario}: {why}")]
    Unsupported {
        /// Flavor name.
        flavor: String,
        /// Scenario spelling.
        scenario: String,
        /// The reason, in words.
        why: String,
    },
    /// A probe's build parameter is out of range.
    #[error("{0}")]
    Bad(String),
}

/// The SDM's recommended multi-byte NOPs (Vol. 2B, "NOP"), 1 to 9 bytes: one instruction each, so a
/// padded gap decodes as few instructions as possible.
const NOPS: [&[u8]; 9] = [
    &[0x90],
    &[0x66, 0x90],
    &[0x0f, 0x1f, 0x00],
    &[0x0f, 0x1f, 0x40, 0x00],
    &[0x0f, 0x1f, 0x44, 0x00, 0x00],
    &[0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00],
    &[0x0f, 0x1f, 0x80, 0x00, 0x00, 0x00, 0x00],
    &[0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00],
    &[0x66, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00],
];

/// Executed padding of `n` bytes: as many 9-byte NOPs as fit, then one shorter NOP.
pub fn nop_bytes(n: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(n);
    let mut left = n;
    while left > 0 {
        let k = left.min(NOPS.len());
        v.extend_from_slice(NOPS[k - 1]);
        left -= k;
    }
    v
}

/// Appends code to an arena at its current end (the arena's bump pointer is the program counter).
pub struct Emitter<'a> {
    arena: &'a mut Arena,
}

impl<'a> Emitter<'a> {
    /// Starts emitting at the arena's current end.
    pub fn new(arena: &'a mut Arena) -> Self {
        Emitter { arena }
    }

    /// Address the next byte will have.
    pub fn here(&self) -> usize {
        self.arena.base() + self.arena.used()
    }

    /// Places `bytes` at [`Emitter::here`] and returns their address.
    pub fn raw(&mut self, bytes: &[u8]) -> Result<usize, EmitError> {
        let at = self.arena.alloc(bytes.len(), 1)?;
        self.arena.write(at, bytes)?;
        Ok(at)
    }

    /// Skips to the next multiple of `align` with never-executed `int3` bytes (between functions).
    pub fn align_int3(&mut self, align: usize) -> Result<usize, EmitError> {
        Ok(self.arena.alloc(0, align)?)
    }

    /// Skips to address `to` (not below [`Emitter::here`]) with never-executed `int3` bytes.
    pub fn skip_int3(&mut self, to: usize) -> Result<usize, EmitError> {
        let gap = to.checked_sub(self.here()).ok_or_else(|| EmitError::Bad(format!("cannot skip back to {to:#x}")))?;
        self.arena.alloc(gap, 1)?;
        Ok(self.here())
    }

    /// Pads with executed NOPs to the next multiple of `align` (a loop top).
    pub fn align_nop(&mut self, align: usize) -> Result<usize, EmitError> {
        let pad = self.here().next_multiple_of(align) - self.here();
        self.raw(&nop_bytes(pad))?;
        Ok(self.here())
    }

    /// Assembles what `build` adds, at [`Emitter::here`], and places it. Returns the fragment's address
    /// and the address of every label in `labels` (which `build` must have set).
    pub fn asm<const N: usize>(
        &mut self,
        build: impl FnOnce(&mut CodeAssembler, &mut [CodeLabel; N]) -> Result<(), IcedError>,
    ) -> Result<(usize, [usize; N]), EmitError> {
        let mut a = CodeAssembler::new(64)?;
        a.set_prefer_short_branch(false);
        let mut labels = [(); N].map(|_| a.create_label());
        build(&mut a, &mut labels)?;
        let at = self.here();
        let options = BlockEncoderOptions::DONT_FIX_BRANCHES | BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS;
        let out = a.assemble_options(at as u64, options)?;
        let mut addrs = [0usize; N];
        for (addr, label) in addrs.iter_mut().zip(&labels) {
            *addr = out.label_ip(label)? as usize;
        }
        let placed = self.raw(&out.inner.code_buffer)?;
        debug_assert_eq!(placed, at);
        Ok((at, addrs))
    }

    /// Places one call site of `form` at [`Emitter::here`], or, with `line_offset = Some(b)`, after NOP
    /// padding at the next address with `addr % 64 == b` (placed by [`Arena::alloc_at_line_offset`]).
    /// `lead` (position-independent bytes, e.g. the poly selection load) goes immediately before the
    /// site, inside the padding, so the two stay adjacent as in compiled code.
    pub fn site(
        &mut self,
        lead: &[u8],
        form: SiteForm,
        line_offset: Option<usize>,
    ) -> Result<(usize, usize), EmitError> {
        let at = match line_offset {
            None => self.here() + lead.len(),
            Some(b) => {
                let pad = (b + 2 * CACHE_LINE - (self.here() + lead.len()) % CACHE_LINE) % CACHE_LINE;
                self.raw(&nop_bytes(pad))?;
                self.here() + lead.len()
            }
        };
        self.raw(lead)?;
        let bytes = form.encode(at)?;
        let placed = match line_offset {
            Some(b) => self.arena.alloc_at_line_offset(b, bytes.len())?,
            None => self.arena.alloc(bytes.len(), 1)?,
        };
        assert_eq!(placed, at, "executed padding must end exactly where the site starts");
        self.arena.write(at, &bytes)?;
        Ok((at, bytes.len()))
    }

    /// Assembles position-independent code (no RIP-relative operand, no branch) to bytes that may
    /// be placed anywhere, e.g. as the `lead` of [`Emitter::site`].
    pub fn assemble_anywhere(
        build: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>,
    ) -> Result<Vec<u8>, EmitError> {
        let mut a = CodeAssembler::new(64)?;
        build(&mut a)?;
        Ok(a.assemble_options(0, BlockEncoderOptions::DONT_FIX_BRANCHES)?.inner.code_buffer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::{Decoder, DecoderOptions, Mnemonic};

    #[test]
    fn nop_padding_is_exact_and_decodes_as_nops() {
        for n in 0..40 {
            let b = nop_bytes(n);
            assert_eq!(b.len(), n);
            let mut dec = Decoder::with_ip(64, &b, 0, DecoderOptions::NONE);
            let insns: Vec<_> = dec.iter().collect();
            assert!(insns.iter().all(|i| i.mnemonic() == Mnemonic::Nop), "{n}: {b:02x?}");
            assert_eq!(insns.len(), n.div_ceil(9));
        }
    }
}
