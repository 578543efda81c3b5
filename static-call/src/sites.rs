//! The site table: where every static call site is, and which key it calls.
//!
//! Like the kernel's `.static_call_sites`, each `static_call!` use appends one entry to a linker section,
//! `{ i32 site - &entry.site, i32 key - &entry.key }`: PC-relative, so the table needs no dynamic
//! relocation in a position-independent executable. The section is named `static_call_sites` — a C
//! identifier, so the linker defines `__start_static_call_sites` / `__stop_static_call_sites` around the
//! entries of every crate of the program — and is flagged `R` (`SHF_GNU_RETAIN`), so `--gc-sections`
//! keeps it and, through its relocations, every function that contains a site. An entry comes from the
//! `asm!` block itself, so LLVM keeps one entry per copy of the site that survives optimisation (inlining
//! or unrolling may copy a use; each copy is a real site) and none for code it deleted; two functions
//! that became identical may be merged, and then one site serves both uses. A site is machine code,
//! not a source location.

use callpatch_patcher::insn::REL32_LEN;
use callpatch_patcher::{decode, Insn};

/// One entry as laid out in the section.
#[repr(C)]
struct Entry {
    site: i32,
    key: i32,
}

/// A static call site: the address of its 5-byte instruction and of the key it belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CallSite {
    addr: usize,
    key: usize,
}

impl CallSite {
    /// Address of the site's instruction (`call`, or RET0, `xor eax, eax`, for a disabled key).
    pub fn addr(&self) -> usize {
        self.addr
    }

    /// Address of the site's key.
    pub fn key(&self) -> usize {
        self.key
    }

    /// The instruction at the site now, decoded (`None` for anything but the site forms). Reads under
    /// the static call lock, so never sees a patch in progress.
    pub fn insn(&self) -> Option<Insn> {
        let _quiet = super::update::lock();
        decode(&self.bytes(), self.addr)
    }

    /// The site's current bytes. Callers that race with patching must hold the static call lock.
    pub(crate) fn bytes(&self) -> [u8; REL32_LEN] {
        // SAFETY: `addr` comes from the site table, so it is the address of a 5-byte instruction in the
        // program's mapped, readable text.
        unsafe { std::ptr::read_volatile(self.addr as *const [u8; REL32_LEN]) }
    }
}

/// The bounds of the site table. The empty `pushsection` makes the section exist in the same object
/// as the reference, so the program links even when it has no sites at all.
fn table() -> (usize, usize) {
    let (start, stop): (usize, usize);
    // SAFETY: two `lea`s of linker-defined symbols; the section directive adds no bytes.
    unsafe {
        core::arch::asm!(
            ".pushsection static_call_sites,\"aR\",@progbits",
            ".balign 4",
            ".popsection",
            "lea {start}, [rip + __start_static_call_sites]",
            "lea {stop}, [rip + __stop_static_call_sites]",
            start = out(reg) start,
            stop = out(reg) stop,
            options(nomem, nostack, preserves_flags, pure),
        );
    }
    (start, stop)
}

/// Every site of the program, sorted by address, duplicates removed (identical-code folding can make
/// two entries name one address).
pub fn all() -> Vec<CallSite> {
    let (start, stop) = table();
    let n = (stop - start) / size_of::<Entry>();
    let mut sites: Vec<CallSite> = (0..n)
        .map(|i| {
            let at = start + i * size_of::<Entry>();
            // SAFETY: `[start, stop)` is the section of 8-byte entries that the linker assembled.
            let e = unsafe { &*(at as *const Entry) };
            let site = (at as isize + e.site as isize) as usize;
            let key = (at as isize + 4 + e.key as isize) as usize;
            CallSite { addr: site, key }
        })
        .collect();
    sites.sort_unstable();
    sites.dedup();
    sites
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_program_without_sites_links_and_has_an_empty_table() {
        // This unit-test binary contains no `static_call!` use.
        assert!(super::all().is_empty());
    }
}
