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
//! | `kcfi`         | kCFI check, `41 ff d3`             | Clang kCFI: `call *%r11` after a hash check |
//! | `kcfi-retpoline` | kCFI check, `2e e8 rel32`        | the same through `__x86_indirect_thunk_r11` |
//! | `fineibt`      | `41 ba hash 49 83 eb 10 0f 1f 40 00 41 ff d3 66 90` | FineIBT caller (Linux 6.6) |
//! | `its-thunk`    | `e8 rel32` to the site's own `ff e0 cc` | ITS call thunk (Linux 6.15), one per site |
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
//! only the eight indirect flavors (`indirect`, `indirect-mem`, `retpoline`, `lfence`, `kcfi`,
//! `kcfi-retpoline`, `fineibt`, `its-thunk`) take part. There, every call first selects its target with one load from a
//! sequence table (`rbx` + `rcx` + 8·j): the `rax` flavors load it with `mov rax, [rbx+rcx+8j]`, the kCFI
//! and FineIBT flavors with `mov r11, [rbx+rcx+8j]`, and `indirect-mem` calls through that same slot
//! (`ff 54 0b d8` / `ff 94 0b d32`, `call *8j(%rbx,%rcx)`), so each flavor pays exactly one load per call
//! for the selection. The direct-style flavors (`direct`, `trampoline`, `inline`, `cs-inline`) have one
//! target per site; changing it means patching, which `callpatch patch` measures, not a call scenario.

use iced_x86::{Code, Decoder, DecoderOptions, Encoder, Instruction, MemoryOperand, Register};

use super::insn::{self, EncodeError, Insn};

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
            (Flavor::ItsThunk, _) => SiteForm::Call { to: to.its_thunk },
            (Flavor::Indirect, _) => SiteForm::CallRax,
            (Flavor::Lfence, _) => SiteForm::LfenceCallRax,
            (Flavor::Kcfi, _) => SiteForm::KcfiCallR11 { hash: KCFI_HASH },
            (Flavor::KcfiRetpoline, _) => SiteForm::KcfiCallThunk { hash: KCFI_HASH, thunk: to.thunk },
            (Flavor::Fineibt, _) => SiteForm::FineibtCallR11 { hash: KCFI_HASH },
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
    /// The retpoline thunk (`__x86_indirect_thunk_rax`, or `_r11` for `kcfi-retpoline`).
    pub thunk: usize,
    /// The trampoline (`jmp target`).
    pub trampoline: usize,
    /// The 8-byte slot holding the target's address, for `call *disp32(%rip)`.
    pub slot: usize,
    /// This site's own ITS thunk (`jmp *%rax; int3`), for `its-thunk`.
    pub its_thunk: usize,
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
    /// The kCFI check then `call *%r11`: `41 ba -hash; 45 03 53 f1; 74 02; 0f 0b; 41 ff d3`.
    KcfiCallR11 {
        /// The type hash the target's preamble must hold at `r11 - 15`.
        hash: u32,
    },
    /// The kCFI check then `cs call thunk` (`2e e8 rel32`).
    KcfiCallThunk {
        /// The type hash.
        hash: u32,
        /// `__x86_indirect_thunk_r11`.
        thunk: usize,
    },
    /// The FineIBT caller: `41 ba hash; 49 83 eb 10; 0f 1f 40 00; 41 ff d3; 66 90`.
    FineibtCallR11 {
        /// The type hash the target's preamble subtracts from `r10d`.
        hash: u32,
    },
}

/// The kCFI type hash of every target here (one function type). A kernel derives it from the type.
pub const KCFI_HASH: u32 = 0x2b1f_7a53;

/// How far before a function its kCFI hash lies: the preamble `mov $hash, %eax` starts 16 bytes before
/// the function (16 bytes of call padding), so its imm32 is at −15.
pub const KCFI_HASH_OFFSET: i64 = -15;

/// The kCFI check at `at`, as arch/x86/include/asm/cfi.h (Linux 6.12) lays out the caller:
/// `movl $(-hash), %r10d; addl -15(%r11), %r10d; je 1f; ud2; 1:` — 14 bytes, a wrong hash traps.
fn kcfi_check(hash: u32, at: usize) -> Result<Vec<u8>, EncodeError> {
    let mem = MemoryOperand::with_base_displ_size(Register::R11, KCFI_HASH_OFFSET, 1);
    let check = [
        Instruction::with2(Code::Mov_r32_imm32, Register::R10D, hash.wrapping_neg()),
        Instruction::with2(Code::Add_r32_rm32, Register::R10D, mem),
    ];
    let mut enc = Encoder::new(64);
    let mut ip = at as u64;
    for i in check {
        let i = i.expect("mov r32, imm32 and add r32, m32 always build");
        ip += enc.encode(&i, ip).expect("a register and a disp8 operand always encode") as u64;
    }
    // `je` over the 2-byte `ud2`, then the `ud2`.
    let je = Instruction::with_branch(Code::Je_rel8_64, ip + 4).expect("je rel8 builds");
    ip += enc.encode(&je, ip).expect("a 2-byte forward je always encodes") as u64;
    enc.encode(&Instruction::with(Code::Ud2), ip).expect("ud2 encodes");
    Ok(enc.take_buffer())
}

/// Length of the kCFI check's bytes (`mov` 6, `add` 4, `je` 2, `ud2` 2).
pub const KCFI_CHECK_LEN: usize = 14;

/// The FineIBT caller, as arch/x86/kernel/alternative.c `fineibt_caller_start` (Linux 6.6; the form of
/// 6.2–6.14) rewrites a kCFI site: `movl $hash, %r10d; sub $16, %r11; nop4`, then the original
/// `call __x86_indirect_thunk_r11` becomes `call *%r11; nop2`. The call lands 16 bytes before the
/// function, on the preamble that checks the hash ([`FINEIBT_PREAMBLE`]). FineIBT needs IBT, which the
/// kernel never combines with retpolines, so there is no FineIBT retpoline flavor.
fn fineibt_caller(hash: u32, at: usize) -> Result<Vec<u8>, EncodeError> {
    let head = [
        Instruction::with2(Code::Mov_r32_imm32, Register::R10D, hash),
        Instruction::with2(Code::Sub_rm64_imm8, Register::R11, 16),
    ];
    let mut enc = Encoder::new(64);
    let mut ip = at as u64;
    for i in head {
        let i = i.expect("mov r32, imm32 and sub r64, imm8 always build");
        ip += enc.encode(&i, ip).expect("register and immediate operands always encode") as u64;
    }
    let mut bytes = enc.take_buffer();
    bytes.extend_from_slice(&FINEIBT_CALLER_TAIL);
    Ok(bytes)
}

/// The FineIBT caller after its `mov` and `sub`: `nop4` (`nopl 0(%rax)`), `call *%r11`, `nop2`.
const FINEIBT_CALLER_TAIL: [u8; 9] = [0x0f, 0x1f, 0x40, 0x00, 0x41, 0xff, 0xd3, 0x66, 0x90];

/// Length of the FineIBT caller (`mov` 6, `sub` 4, `nop4`, `call *%r11` 3, `nop2`).
pub const FINEIBT_CALLER_LEN: usize = 19;

/// The FineIBT preamble `__cfi_\func` as arch/x86/kernel/alternative.c `fineibt_preamble_start` (Linux
/// 6.6) writes it, the 16 bytes before a function: `endbr64; subl $hash, %r10d; je 1f; ud2; 1: nop`
/// (`je` over the `ud2` to the function). `endbr64` is a NOP in user space here: no user-mode IBT.
pub fn fineibt_preamble(hash: u32) -> [u8; 16] {
    let mut p = [0xf3, 0x0f, 0x1e, 0xfa, 0x41, 0x81, 0xea, 0, 0, 0, 0, 0x74, 0x03, 0x0f, 0x0b, 0x90];
    p[7..11].copy_from_slice(&hash.to_le_bytes());
    p
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

    /// Encodes the site at address `at` (2–20 bytes): rel32 forms through [`insn::encode`], the others through
    /// iced-x86's `Encoder`, which encodes exactly the `Code` it is given (never a shorter form).
    pub fn encode(self, at: usize) -> Result<Vec<u8>, EncodeError> {
        if let Some(i) = self.insn() {
            return Ok(insn::encode(i, at)?.to_vec());
        }
        if let SiteForm::TrapCall { to } = self {
            let mut bytes = insn::encode(Insn::Call(to), at)?.to_vec();
            bytes[0] = insn::INT3;
            return Ok(bytes);
        }
        if let SiteForm::KcfiCallR11 { hash } | SiteForm::KcfiCallThunk { hash, .. } = self {
            let mut bytes = kcfi_check(hash, at)?;
            let call_at = at + KCFI_CHECK_LEN;
            match self {
                SiteForm::KcfiCallThunk { thunk, .. } => {
                    bytes.extend_from_slice(&insn::encode(Insn::CsCall(thunk), call_at)?);
                }
                _ => bytes.extend_from_slice(&[0x41, 0xff, 0xd3]),
            }
            return Ok(bytes);
        }
        if let SiteForm::FineibtCallR11 { hash } = self {
            return fineibt_caller(hash, at);
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
            SiteForm::Call { .. }
            | SiteForm::CsCall { .. }
            | SiteForm::TrapCall { .. }
            | SiteForm::KcfiCallR11 { .. }
            | SiteForm::KcfiCallThunk { .. }
            | SiteForm::FineibtCallR11 { .. } => {
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
        Ok(bytes)
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
        if let Some(form) = decode_kcfi(bytes, at).or_else(|| decode_fineibt(bytes, at)) {
            return Some(form);
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

/// The kCFI forms: the 14-byte check (re-encoded from the decoded hash and compared byte for byte),
/// then `call *%r11` or `cs call rel32`.
fn decode_kcfi(bytes: &[u8], at: usize) -> Option<(SiteForm, usize)> {
    let mut dec = Decoder::with_ip(64, bytes, at as u64, DecoderOptions::NONE);
    let mov = dec.decode();
    if mov.code() != Code::Mov_r32_imm32 || mov.op0_register() != Register::R10D {
        return None;
    }
    let hash = mov.immediate32().wrapping_neg();
    let check = kcfi_check(hash, at).ok()?;
    if bytes.get(..KCFI_CHECK_LEN)? != check.as_slice() {
        return None;
    }
    let call_at = at + KCFI_CHECK_LEN;
    let rest = &bytes[KCFI_CHECK_LEN..];
    if rest.starts_with(&[0x41, 0xff, 0xd3]) {
        return Some((SiteForm::KcfiCallR11 { hash }, KCFI_CHECK_LEN + 3));
    }
    match insn::decode(rest, call_at)? {
        Insn::CsCall(thunk) => Some((SiteForm::KcfiCallThunk { hash, thunk }, KCFI_CHECK_LEN + 6)),
        _ => None,
    }
}

/// The FineIBT caller: its hash from the `mov`, then the whole 19 bytes re-encoded and compared.
fn decode_fineibt(bytes: &[u8], at: usize) -> Option<(SiteForm, usize)> {
    let mov = Decoder::with_ip(64, bytes, at as u64, DecoderOptions::NONE).decode();
    if mov.code() != Code::Mov_r32_imm32 || mov.op0_register() != Register::R10D {
        return None;
    }
    let hash = mov.immediate32();
    let want = fineibt_caller(hash, at).ok()?;
    (bytes.get(..FINEIBT_CALLER_LEN)? == want.as_slice())
        .then_some((SiteForm::FineibtCallR11 { hash }, FINEIBT_CALLER_LEN))
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
        // kCFI: movl $-hash, %r10d; addl -15(%r11), %r10d; je 1f; ud2; 1: call *%r11 / cs call thunk.
        let hash = 0x1234_5678u32;
        let check =
            [&[0x41, 0xba][..], &hash.wrapping_neg().to_le_bytes(), &[0x45, 0x03, 0x53, 0xf1, 0x74, 0x02, 0x0f, 0x0b]]
                .concat();
        let r11 = SiteForm::KcfiCallR11 { hash };
        assert_eq!(r11.encode(at).unwrap().as_slice(), [&check[..], &[0x41, 0xff, 0xd3]].concat());
        assert_eq!(SiteForm::decode(&r11.encode(at).unwrap(), at), Some((r11, 17)));
        let thunk = SiteForm::KcfiCallThunk { hash, thunk: at + 14 + 6 + 0x40 };
        assert_eq!(thunk.encode(at).unwrap().as_slice(), [&check[..], &[0x2e, 0xe8, 0x40, 0, 0, 0]].concat());
        assert_eq!(SiteForm::decode(&thunk.encode(at).unwrap(), at), Some((thunk, 20)));
        // FineIBT (Linux 6.6): movl $hash, %r10d; sub $16, %r11; nop4; call *%r11; nop2.
        let fine = SiteForm::FineibtCallR11 { hash };
        let want = [
            &[0x41, 0xba][..],
            &hash.to_le_bytes(),
            &[0x49, 0x83, 0xeb, 0x10, 0x0f, 0x1f, 0x40, 0x00, 0x41, 0xff, 0xd3, 0x66, 0x90],
        ]
        .concat();
        assert_eq!(fine.encode(at).unwrap(), want);
        assert_eq!(SiteForm::decode(&want, at), Some((fine, 19)));
        assert_eq!(SiteForm::decode(&r11.encode(at).unwrap(), at), Some((r11, 17)), "kCFI is not FineIBT");
        // Its preamble: endbr64; subl $hash, %r10d; je +3; ud2; nop — 16 bytes, decoded by iced-x86.
        let pre = fineibt_preamble(hash);
        let mut dec = Decoder::with_ip(64, &pre, 0, DecoderOptions::NONE);
        let codes: Vec<Code> = (0..5).map(|_| dec.decode().code()).collect();
        assert_eq!(codes, [Code::Endbr64, Code::Sub_rm32_imm32, Code::Je_rel8_64, Code::Ud2, Code::Nopd]);
        let mut dec = Decoder::with_ip(64, &pre, 0, DecoderOptions::NONE);
        let (_, sub, je) = (dec.decode(), dec.decode(), dec.decode());
        assert_eq!((sub.op0_register(), sub.immediate32()), (Register::R10D, hash));
        assert_eq!(je.near_branch_target(), 16, "the je lands on the function, past the preamble");
    }
}
