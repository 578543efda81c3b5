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
        // SAFETY: `addr` comes from the site table.
        unsafe { read_site(self.addr) }
    }
}

/// The bounds `[start, stop)` of the linker section `$name` (a C identifier, so the linker defines
/// `__start_$name` / `__stop_$name` around the entries of every crate of the program). The empty
/// `pushsection` makes the section exist in the same object as the reference, so the program links
/// even when it has no entries at all.
macro_rules! section_bounds {
    ($name:literal) => {{
        let (start, stop): (usize, usize);
        // SAFETY: two `lea`s of linker-defined symbols; the section directive adds no bytes.
        unsafe {
            core::arch::asm!(
                concat!(".pushsection ", $name, ",\"aR\",@progbits"),
                ".balign 4",
                ".popsection",
                concat!("lea {start}, [rip + __start_", $name, "]"),
                concat!("lea {stop}, [rip + __stop_", $name, "]"),
                start = out(reg) start,
                stop = out(reg) stop,
                options(nomem, nostack, preserves_flags, pure),
            );
        }
        (start, stop)
    }};
}
pub(crate) use section_bounds;

/// The 5 bytes at a site now.
///
/// # Safety
/// `addr` is a site from one of the program's site tables: a 5-byte instruction in its mapped text.
pub(crate) unsafe fn read_site(addr: usize) -> [u8; REL32_LEN] {
    // SAFETY: the caller's contract; volatile because the patcher may be rewriting it.
    unsafe { std::ptr::read_volatile(addr as *const [u8; REL32_LEN]) }
}

/// The bounds of the site table.
fn table() -> (usize, usize) {
    section_bounds!("static_call_sites")
}

/// Every entry of a site table of `E`s turned into a site by `site` (given the entry's address, which its
/// PC-relative fields count from), sorted by address, duplicates removed (identical-code folding can make
/// two entries name one address).
///
/// # Safety
/// `[start, stop)` are the bounds of a linker section of `E` entries ([`section_bounds!`]).
pub(crate) unsafe fn read_table<E, T: Ord>((start, stop): (usize, usize), site: impl Fn(usize, &E) -> T) -> Vec<T> {
    let n = (stop - start) / size_of::<E>();
    let mut sites: Vec<T> = (0..n)
        .map(|i| {
            let at = start + i * size_of::<E>();
            // SAFETY: `at` is the `i`th entry of the section (the caller's contract).
            site(at, unsafe { &*(at as *const E) })
        })
        .collect();
    sites.sort_unstable();
    sites.dedup();
    sites
}

/// Every site of the program, sorted by address, duplicates removed.
pub fn all() -> Vec<CallSite> {
    // SAFETY: `table()` bounds the section of 8-byte `Entry`s that `static_call!` sites append.
    unsafe {
        read_table(table(), |at, e: &Entry| CallSite {
            addr: (at as isize + e.site as isize) as usize,
            key: (at as isize + 4 + e.key as isize) as usize,
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_program_without_sites_links_and_has_an_empty_table() {
        // This unit-test binary contains no `static_call!` use.
        assert!(super::all().is_empty());
    }
}
