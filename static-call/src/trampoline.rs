//! A key's trampoline: 16 bytes of `.text` that every site calls until it is patched.
//!
//! ```text
//! T+0   e9 rel32       jmp  T+8            the patchable jmp: later `jmp target`, or `jmp return_zero`
//! T+5   cc cc cc
//! T+8   ff 25 disp32   jmp  *key.current   the generic path: an indirect jump through the key's pointer
//! T+14  cc cc
//! ```
//! Before [`super::init`] every trampoline takes the generic path, so calls are correct from the first
//! instruction of `main`. With inline patching (the kernel's `HAVE_STATIC_CALL_INLINE`) init rewrites the
//! jmp at `T+0` to the target and each site to call the target directly. Without it (the kernel's
//! generic `HAVE_STATIC_CALL`=n) nothing is patched: every call takes the indirect jump and an update is
//! one atomic store to `key.current`.
//!
//! The trampoline is a naked function emitted by `static_call!` into the section
//! `.text.static_call_tramp`; each is exactly 16 bytes and ends with `.balign 16`, so the section is
//! 16-byte aligned and every trampoline starts on a 16-byte boundary: the rel32 at `T+1..T+5` never
//! crosses a 64-byte cache line (a test asserts it), so the jmp could even be patched with one atomic
//! store (SDM vol. 3 §9.1.1), though the bp protocol does not need that.

use callpatch_patcher::{decode, Insn, CACHE_LINE};

/// Bytes of one trampoline.
pub const TRAMPOLINE_LEN: usize = 16;
/// Offset of the generic path (`jmp *key.current`) inside a trampoline.
pub const GENERIC_PATH: usize = 8;
/// The generic path's opcode bytes: `jmp qword ptr [rip + disp32]`.
pub const JMP_RIP_INDIRECT: [u8; 2] = [0xff, 0x25];

/// The instruction at `T+0` for a key that calls `target` (`None`: the key is disabled, and a call
/// that still reaches its trampoline returns 0 through `return_zero`).
pub fn patched_insn(target: Option<usize>) -> Insn {
    Insn::Jmp(target.unwrap_or(zero_stub()))
}

/// The instruction at `T+0` as the linker left it: a jmp to the generic path.
pub fn initial_insn(trampoline: usize) -> Insn {
    Insn::Jmp(trampoline + GENERIC_PATH)
}

/// True when the rel32 of the jmp at `trampoline` lies inside one cache line.
pub fn rel32_in_one_line(trampoline: usize) -> bool {
    (trampoline + 1) / CACHE_LINE == (trampoline + 4) / CACHE_LINE
}

/// Decodes the patchable instruction at `T+0` from the trampoline's bytes.
pub fn decode_head(bytes: &[u8; TRAMPOLINE_LEN], trampoline: usize) -> Option<Insn> {
    decode(&bytes[..5], trampoline)
}

/// Where a disabled key's calls end when they still reach its trampoline (the generic path, or a site
/// left on its trampoline): returns zero, as its patched sites (RET0, `xor eax, eax`) do.
#[unsafe(naked)]
pub(crate) extern "C" fn return_zero() {
    core::arch::naked_asm!("xor eax, eax", "ret")
}

/// Address of [`return_zero`].
pub(crate) fn zero_stub() -> usize {
    return_zero as *const () as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_rule_for_the_rel32() {
        assert!(rel32_in_one_line(0x1000));
        assert!(rel32_in_one_line(0x1000 + 59));
        // A jmp at line offset 60, 61 or 62 has its rel32 split across two lines (the 3/64 of the theory).
        let crossing: Vec<usize> = (0..64).filter(|o| !rel32_in_one_line(0x1000 + o)).collect();
        assert_eq!(crossing, [60, 61, 62]);
        assert!((0..64).step_by(16).all(|o| rel32_in_one_line(0x1000 + o)));
    }

    #[test]
    fn the_zero_stub_returns_zero() {
        // SAFETY: `return_zero` is `xor eax, eax; ret`: a C-ABI function returning u64 0.
        let f: extern "C" fn() -> u64 = unsafe { std::mem::transmute(return_zero as extern "C" fn()) };
        assert_eq!(f(), 0);
    }
}
