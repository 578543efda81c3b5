//! The rule of the kernel's Indirect Target Selection (ITS) mitigation: which indirect branches and
//! returns it moves out of line.
//!
//! Hardware fact: on the Intel parts ITS affects, an indirect branch or a return whose *last byte*
//! lies in the lower half of a 64-byte line (bytes 0–31) may take a target predicted for another
//! branch; one ending in the upper half (bytes 32–63) is not affected. So the kernel sends the former
//! through a thunk placed in an upper half and leaves the latter in place. In Linux v6.15
//! `arch/x86/kernel/alternative.c` (also in the 6.14.7, 6.12.29, 6.6.91 and 6.1.139 stable releases):
//! - `cpu_wants_indirect_its_thunk_at(addr, reg)`: `addr += 1 + reg / 8; return !(addr & 0x20);`,
//!   where `addr` is where the `call`/`jmp *%reg` replacing a retpoline site starts (2 bytes, 3 with
//!   the REX prefix of r8–r15), so `addr + 1 + reg / 8` is its last byte;
//! - `cpu_wants_rethunk_at(addr)`: `return !((unsigned long)addr & 0x20);`, where `addr` is a return
//!   site, at which a one-byte `ret` would be written: its only byte is its last.
//!
//! The census applies the same test to the last byte of every decoded `call *`, `jmp *` and `ret`
//! (`addr + len - 1`), and to the branch the kernel would write at each entry of its
//! `.retpoline_sites` and `.return_sites` tables.

/// Half of a 64-byte line, the bit the kernel tests (`& 0x20`).
pub const HALF_LINE: u64 = 0x20;

/// True when the byte at `last_byte` lies in the lower half of its 64-byte line: the branch ending
/// there is one the ITS mitigation thunks.
pub const fn lower_half(last_byte: u64) -> bool {
    last_byte & HALF_LINE == 0
}

/// Offset from a retpoline site's address to the last byte of the `call`/`jmp *%reg` the kernel
/// would write there (`1 + reg / 8`), from the name of the thunk the site calls
/// (`__x86_indirect_thunk_r11` → 2); `None` when the name does not end in a register.
pub fn retpoline_branch_end(thunk: &[u8]) -> Option<u8> {
    const LOW: [&[u8]; 8] = [b"rax", b"rcx", b"rdx", b"rbx", b"rsp", b"rbp", b"rsi", b"rdi"];
    const HIGH: [&[u8]; 8] = [b"r8", b"r9", b"r10", b"r11", b"r12", b"r13", b"r14", b"r15"];
    let reg = thunk.rsplit(|&b| b == b'_').next()?;
    if LOW.contains(&reg) {
        Some(1)
    } else if HIGH.contains(&reg) {
        Some(2)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lower_half_is_bytes_0_to_31_of_every_line() {
        let lower: Vec<u64> = (0..128).filter(|&b| lower_half(0xffff_ffff_8100_0000 + b)).collect();
        let want: Vec<u64> = (0..32).chain(64..96).collect();
        assert_eq!(lower, want);
    }

    #[test]
    fn a_retpoline_site_ends_one_or_two_bytes_on_by_register() {
        assert_eq!(retpoline_branch_end(b"__x86_indirect_thunk_rax"), Some(1));
        assert_eq!(retpoline_branch_end(b"__x86_indirect_thunk_rdi"), Some(1));
        assert_eq!(retpoline_branch_end(b"__x86_indirect_thunk_r8"), Some(2));
        assert_eq!(retpoline_branch_end(b"__x86_indirect_call_thunk_r15"), Some(2));
        assert_eq!(retpoline_branch_end(b"__x86_indirect_thunk_array"), None);
        assert_eq!(retpoline_branch_end(b""), None);
        // The kernel's examples: a `call *%r11` written at 0x1e ends at 0x20 (upper half: no thunk).
        assert!(!lower_half(0x1e + u64::from(retpoline_branch_end(b"__x86_indirect_thunk_r11").unwrap())));
        assert!(lower_half(0x1e + u64::from(retpoline_branch_end(b"__x86_indirect_thunk_rax").unwrap())));
    }
}
