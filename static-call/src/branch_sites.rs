//! The static branch site table: where every `static_branch_likely!` / `static_branch_unlikely!` site
//! is, where its jump goes, and which key decides it.
//!
//! Like [`sites`](crate::sites) for static calls, each site's `asm!` block appends one entry to a linker
//! section, `static_branch_sites` (flagged `R`, so `--gc-sections` keeps it; a C identifier, so the linker
//! brackets it with `__start_`/`__stop_` symbols). Every field is PC-relative to itself, so the table
//! needs no dynamic relocation:
//! `{ i32 site, i32 jump target (the asm's label), i32 key, i32 generic stub, i32 flags }`, where flags
//! bit 0 says the site was written by `static_branch_likely!` (its jump means "disabled").

use callpatch_patcher::insn::REL32_LEN;
use callpatch_patcher::{decode, Insn};

/// One entry as laid out in the section.
#[repr(C)]
struct Entry {
    site: i32,
    target: i32,
    key: i32,
    stub: i32,
    flags: i32,
}

/// A static branch site: its 5-byte instruction, its jump target, its key and its generic stub.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BranchSite {
    addr: usize,
    target: usize,
    key: usize,
    stub: usize,
    likely: bool,
}

impl BranchSite {
    /// Address of the site's 5-byte instruction.
    pub fn addr(&self) -> usize {
        self.addr
    }

    /// Where the site jumps when its branch goes the out-of-line way (the `asm!` label).
    pub fn target(&self) -> usize {
        self.target
    }

    /// Address of the site's key (a [`StaticBranch`](crate::StaticBranch)).
    pub fn key(&self) -> usize {
        self.key
    }

    /// Address of the site's generic stub: what the site jumps to before init (and for good with the
    /// generic backend); it tests the key's state byte and goes to the target or back after the site.
    pub fn stub(&self) -> usize {
        self.stub
    }

    /// True for a `static_branch_likely!` site: its jump is taken when the key is disabled.
    pub fn is_likely(&self) -> bool {
        self.likely
    }

    /// What the site holds, once patched, for a key in state `enabled`: the jump to the target when
    /// the branch goes that way, else the 5-byte nop (fall through).
    pub fn insn_for(&self, enabled: bool) -> Insn {
        if enabled != self.likely {
            Insn::Jmp(self.target)
        } else {
            Insn::Nop5
        }
    }

    /// What the site holds as the linker left it: a jump to its generic stub.
    pub fn initial_insn(&self) -> Insn {
        Insn::Jmp(self.stub)
    }

    /// The instruction at the site now, decoded (`None` for anything but the site forms). Reads under
    /// the static call lock, so never sees a patch in progress.
    pub fn insn(&self) -> Option<Insn> {
        let _quiet = super::update::lock();
        decode(&self.bytes(), self.addr)
    }

    /// The site's current bytes. Callers that race with patching must hold the static call lock.
    pub(crate) fn bytes(&self) -> [u8; REL32_LEN] {
        // SAFETY: `addr` comes from the branch site table.
        unsafe { super::sites::read_site(self.addr) }
    }
}

/// The bounds of the branch site table.
fn table() -> (usize, usize) {
    super::sites::section_bounds!("static_branch_sites")
}

/// Every branch site of the program, sorted by address, duplicates removed.
pub fn all() -> Vec<BranchSite> {
    // SAFETY: `table()` bounds the section of 20-byte `Entry`s that the branch site macros append.
    unsafe {
        super::sites::read_table(table(), |at, e: &Entry| {
            let field = |offset: usize, rel: i32| (at as isize + offset as isize + rel as isize) as usize;
            BranchSite {
                addr: field(0, e.site),
                target: field(4, e.target),
                key: field(8, e.key),
                stub: field(12, e.stub),
                likely: e.flags & 1 != 0,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_program_without_branch_sites_links_and_has_an_empty_table() {
        assert!(super::all().is_empty());
    }

    #[test]
    fn the_patched_form_follows_the_polarity() {
        let site = |likely| super::BranchSite { addr: 0x1000, target: 0x2000, key: 0, stub: 0x3000, likely };
        use callpatch_patcher::Insn;
        assert_eq!(site(false).insn_for(true), Insn::Jmp(0x2000));
        assert_eq!(site(false).insn_for(false), Insn::Nop5);
        assert_eq!(site(true).insn_for(true), Insn::Nop5);
        assert_eq!(site(true).insn_for(false), Insn::Jmp(0x2000));
    }
}
