//! The flavor table: what bytes each call site holds. The flavors' names
//! and properties are the vocabulary's ([`callpatch_vocab::flavor`], re-exported as [`Flavor`]); their
//! bytes ([`SiteForm`], through [`FlavorSite::site_form`]) are here, with the code that emits them.
//!
//! | flavor         | site bytes                         | what it models                              |
//! |----------------|------------------------------------|---------------------------------------------|
//! | `direct`       | `e8 rel32` to the target           | the compiler's direct call, the floor       |
//! | `indirect`     | `ff d0` (`call *%rax`)             | a function pointer, no mitigation           |
//! | `indirect-mem` | `ff 15 disp32` (`call *x(%rip)`)   | a pointer loaded from memory (ops table)    |
//! | `retpoline`    | `e8 rel32` to a retpoline thunk    | Spectre v2 generic retpoline                |
//! | `lfence`       | `0f ae e8 ff d0`                   | AMD-style `lfence; call *%rax`              |
//! | `trampoline`   | `e8 rel32` to an `e9 rel32` jump   | out-of-line static call                     |
//! | `inline`       | `e8 rel32` to the target           | inline static call (the patcher's site)     |
//! | `cs-inline`    | `2e e8 rel32` to the target        | the cs-prefixed inline static call site     |
//! | `trap`         | `cc` + the call's rel32            | a caller caught mid-patch: SIGTRAP emulation |
//!
//! A `trap` site is `e8 rel32` with `int3` on byte 0, registered with the patcher's SIGTRAP handler
//! ([`crate::patch::emulate_forever`]) so that every execution is emulated as the call: the cost a
//! thread pays when it meets a site in the middle of a bp batch. It runs in `mono` only: at microseconds
//! per call the other scenarios would take minutes and show the same kernel round trip.
//!
//! `direct` and `inline` have the same bytes on purpose: `inline` is the site a patcher rewrites, and
//! measuring it separately shows that a patched site costs what the compiler's direct call costs.
//!
//! Polymorphic scenarios need a site whose target changes from call to call without rewriting code, so
//! only the four indirect flavors (`indirect`, `indirect-mem`, `retpoline`, `lfence`) take part. There,
//! every call first selects its target with one load from a sequence table (`rbx` + `rcx` + 8·j): the
//! `rax` flavors load it with `mov rax, [rbx+rcx+8j]`, and `indirect-mem` calls through that same slot
//! (`ff 54 0b d8` / `ff 94 0b d32`, `call *8j(%rbx,%rcx)`), so each flavor pays exactly one load per call
//! for the selection. The direct-style flavors (`direct`, `trampoline`, `inline`, `cs-inline`) have one
//! target per site; changing it means patching, which `callpatch patch` measures, not a call scenario.

use iced_x86::{Code, Decoder, DecoderOptions, Encoder, Instruction, MemoryOperand, Register};

use super::insn::{self, EncodeError, Insn, InsnBytes};

pub use callpatch_vocab::Flavor;

/// The site form of a flavor: what bytes the code around a site puts there. An extension of the
/// vocabulary's [`Flavor`] (which holds only names), so that `flavor.site_form(&to)` reads as before.
pub trait FlavorSite {
    /// The site form for this flavor. `to` says where the code around the site put things: the
    /// target, the thunk, the trampoline, the pointer slot or the selection displacement.
    fn site_form(self, to: &CallTo) -> SiteForm;
}

impl FlavorSite for Flavor {
    fn site_form(self, to: &CallTo) -> SiteForm {
        match (self, to.selection) {
            (Flavor::Direct | Flavor::Inline, _) => SiteForm::Call { to: to.target },
            (Flavor::CsInline, _) => SiteForm::CsCall { to: to.target },
            (Flavor::Trap, _) => SiteForm::TrapCall { to: to.target },
            (Flavor::Trampoline, _) => SiteForm::Call { to: to.trampoline },
            (Flavor::Retpoline, _) => SiteForm::Call { to: to.thunk },
            (Flavor::Indirect, _) => SiteForm::CallRax,
            (Flavor::Lfence, _) => SiteForm::LfenceCallRax,
            (Flavor::IndirectMem, None) => SiteForm::CallRipSlot { slot: to.slot },
            (Flavor::IndirectMem, Some(disp)) => SiteForm::CallSelected { disp },
        }
    }
}

/// Addresses the code around a site provides, from which [`FlavorSite::site_form`] picks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallTo {
    /// The (mono) target function.
    pub target: usize,
    /// The retpoline thunk.
    pub thunk: usize,
    /// The trampoline (`jmp target`).
    pub trampoline: usize,
    /// The 8-byte slot holding the target's address, for `call *disp32(%rip)`.
    pub slot: usize,
    /// `Some(d)` in poly scenarios: this call's target is the pointer at `rbx + rcx + d`.
    pub selection: Option<i32>,
}

/// The instruction(s) at a call site, with everything needed to encode and check them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SiteForm {
    /// `e8 rel32`.
    Call {
        /// Where the call goes.
        to: usize,
    },
    /// `2e e8 rel32`.
    CsCall {
        /// Where the call goes.
        to: usize,
    },
    /// `ff d0`: `call *%rax`.
    CallRax,
    /// `0f ae e8 ff d0`: `lfence; call *%rax`.
    LfenceCallRax,
    /// `ff 15 disp32`: `call *slot(%rip)`.
    CallRipSlot {
        /// Address of the 8-byte pointer.
        slot: usize,
    },
    /// `ff 54 0b d8` or `ff 94 0b d32`: `call *disp(%rbx,%rcx)`.
    CallSelected {
        /// Displacement from `rbx + rcx`.
        disp: i32,
    },
    /// `cc` + rel32: `e8 rel32` with `int3` on byte 0, executed through the SIGTRAP handler.
    TrapCall {
        /// Where the emulated call goes.
        to: usize,
    },
}

/// `lfence` (`0f ae e8`).
pub const LFENCE: [u8; 3] = [0x0f, 0xae, 0xe8];

impl SiteForm {
    /// The site as a patchable [`Insn`], for the rel32 forms.
    pub fn insn(self) -> Option<Insn> {
        match self {
            SiteForm::Call { to } => Some(Insn::Call(to)),
            SiteForm::CsCall { to } => Some(Insn::CsCall(to)),
            _ => None,
        }
    }

    /// Encodes the site at address `at`: rel32 forms through [`insn::encode`], the others through
    /// iced-x86's `Encoder`, which encodes exactly the `Code` it is given (never a shorter form).
    pub fn encode(self, at: usize) -> Result<InsnBytes, EncodeError> {
        if let Some(i) = self.insn() {
            return insn::encode(i, at);
        }
        if let SiteForm::TrapCall { to } = self {
            let mut bytes = insn::encode(Insn::Call(to), at)?.to_vec();
            bytes[0] = insn::INT3;
            return Ok(InsnBytes::from_slice(&bytes));
        }
        let (prefix, instr): (&[u8], _) = match self {
            SiteForm::CallRax => (&[], Instruction::with1(Code::Call_rm64, Register::RAX)),
            SiteForm::LfenceCallRax => (&LFENCE, Instruction::with1(Code::Call_rm64, Register::RAX)),
            SiteForm::CallRipSlot { slot } => {
                // iced-x86 takes the absolute address as the displacement of a RIP-relative operand.
                let m = MemoryOperand::with_base_displ(Register::RIP, slot as i64);
                (&[], Instruction::with1(Code::Call_rm64, m))
            }
            SiteForm::CallSelected { disp } => {
                // iced-x86's displacement size: 1 = disp8, 8 = disp32 sign-extended in 64-bit code.
                let size = if i8::try_from(disp).is_ok() { 1 } else { 8 };
                let m =
                    MemoryOperand::with_base_index_scale_displ_size(Register::RBX, Register::RCX, 1, disp.into(), size);
                (&[], Instruction::with1(Code::Call_rm64, m))
            }
            SiteForm::Call { .. } | SiteForm::CsCall { .. } | SiteForm::TrapCall { .. } => {
                unreachable!("handled above")
            }
        };
        let mut enc = Encoder::new(64);
        let at_call = at + prefix.len();
        if let SiteForm::CallRipSlot { slot } = self
            && !insn::in_rel32_range(at_call, 6, slot)
        {
            return Err(EncodeError::OutOfRange { site: at, target: slot });
        }
        let instr = instr.expect("call r/m64 takes one register or memory operand");
        enc.encode(&instr, at_call as u64).expect("call r/m64 with an in-range operand always encodes");
        let mut bytes = prefix.to_vec();
        bytes.extend_from_slice(&enc.take_buffer());
        Ok(InsnBytes::from_slice(&bytes))
    }

    /// Decodes the bytes at `at` back into a site form (iced-x86 `Decoder`), or `None` when they are
    /// anything else. The inverse of [`SiteForm::encode`]: a test that every emitted site is exactly the
    /// intended instruction, length and target.
    pub fn decode(bytes: &[u8], at: usize) -> Option<(SiteForm, usize)> {
        if let [insn::INT3, rel32 @ ..] = bytes {
            let call: Vec<u8> = std::iter::once(0xe8).chain(rel32.iter().copied()).collect();
            return match insn::decode(&call, at) {
                Some(Insn::Call(to)) => Some((SiteForm::TrapCall { to }, insn::REL32_LEN)),
                _ => None,
            };
        }
        if let Some(i) = insn::decode(bytes, at) {
            return match i {
                Insn::Call(to) => Some((SiteForm::Call { to }, i.len())),
                Insn::CsCall(to) => Some((SiteForm::CsCall { to }, i.len())),
                _ => None,
            };
        }
        let (lfence, rest, at_call) = match bytes.strip_prefix(&LFENCE[..]) {
            Some(rest) => (true, rest, at + LFENCE.len()),
            None => (false, bytes, at),
        };
        let mut dec = Decoder::with_ip(64, rest, at_call as u64, DecoderOptions::NONE);
        let i = dec.decode();
        if i.code() != Code::Call_rm64 || i.has_segment_prefix() {
            return None;
        }
        let len = i.len() + if lfence { LFENCE.len() } else { 0 };
        let form = match (lfence, i.op0_kind(), i.op0_register(), i.memory_base(), i.memory_index()) {
            (true, iced_x86::OpKind::Register, Register::RAX, ..) => SiteForm::LfenceCallRax,
            (false, iced_x86::OpKind::Register, Register::RAX, ..) => SiteForm::CallRax,
            (false, iced_x86::OpKind::Memory, _, Register::RIP, Register::None) => {
                SiteForm::CallRipSlot { slot: i.memory_displacement64() as usize }
            }
            (false, iced_x86::OpKind::Memory, _, Register::RBX, Register::RCX) if i.memory_index_scale() == 1 => {
                SiteForm::CallSelected { disp: i.memory_displacement64() as i64 as i32 }
            }
            _ => return None,
        };
        Some((form, len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_has_the_documented_bytes_and_decodes_back() {
        let at = 0x5555_0000_1000usize;
        let cases: [(SiteForm, &[u8]); 7] = [
            (SiteForm::Call { to: at + 5 }, &[0xe8, 0, 0, 0, 0]),
            (SiteForm::CsCall { to: at + 6 }, &[0x2e, 0xe8, 0, 0, 0, 0]),
            (SiteForm::TrapCall { to: at + 5 }, &[0xcc, 0, 0, 0, 0]),
            (SiteForm::CallRax, &[0xff, 0xd0]),
            (SiteForm::LfenceCallRax, &[0x0f, 0xae, 0xe8, 0xff, 0xd0]),
            (SiteForm::CallRipSlot { slot: at + 6 + 0x10 }, &[0xff, 0x15, 0x10, 0, 0, 0]),
            (SiteForm::CallSelected { disp: 8 }, &[0xff, 0x54, 0x0b, 0x08]),
        ];
        for (form, bytes) in cases {
            let enc = form.encode(at).unwrap();
            assert_eq!(enc.as_slice(), bytes, "{form:?}");
            assert_eq!(SiteForm::decode(&enc, at), Some((form, bytes.len())), "{form:?}");
        }
        let far = SiteForm::CallSelected { disp: 0x200 };
        assert_eq!(far.encode(at).unwrap().as_slice(), [0xff, 0x94, 0x0b, 0x00, 0x02, 0, 0]);
        assert_eq!(SiteForm::decode(&[0xff, 0xd1], at), None, "call *%rcx is not a site");
        assert_eq!(SiteForm::decode(&[0xcc, 0xcc], at), None, "int3 padding is not a trap site");
    }
}
