//! Validation before any write, like the kernel's `__static_call_validate`: the site must be code of
//! this process, its current bytes exactly the expected old instruction, the new instruction the same
//! length and its target within rel32 reach. A batch is checked whole before its first byte changes.

use crate::batch::SitePatch;
use crate::error::PatchError;
use crate::insn::{Insn, InsnBytes};
use crate::maps::CodeRanges;
use crate::table::{Registry, Slot};

/// One validated site of a batch: where, and the bytes that go there.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Planned {
    pub addr: usize,
    /// What the site holds before the batch, and its bytes (what a rollback restores).
    pub old: Insn,
    pub old_bytes: InsnBytes,
    pub new: Insn,
    pub new_bytes: InsnBytes,
    /// The site's poke-table slot (published).
    pub slot: &'static Slot,
}

/// Reads `len` (≤ 8) bytes of code at `addr`; the caller has checked the range is mapped code. One
/// 8-byte load when those 8 bytes stay inside one 4 KiB page (every page size is a multiple of 4 KiB,
/// so the load cannot reach an unmapped page), byte loads otherwise.
pub(crate) fn read_code(addr: usize, len: usize) -> InsnBytes {
    if addr % 4096 <= 4096 - 8 {
        let word: u64;
        // SAFETY: `[addr, addr+len)` lies in a readable mapping (checked by the caller) and the 8 bytes
        // from `addr` lie in the same page as `addr`. An `asm!` load, because other threads may be
        // rewriting these bytes: the compiler can neither split nor elide it.
        unsafe {
            core::arch::asm!("mov {w}, qword ptr [{p}]", p = in(reg) addr, w = out(reg) word, options(nostack, readonly, preserves_flags))
        };
        return InsnBytes::from_word(word, len);
    }
    let mut buf = [0u8; 8];
    for (i, b) in buf.iter_mut().enumerate().take(len) {
        // SAFETY: `[addr, addr+len)` lies in a readable mapping (checked by the caller); volatile
        // because other threads may be rewriting it.
        *b = unsafe { std::ptr::read_volatile((addr + i) as *const u8) };
    }
    InsnBytes::from_slice(&buf[..len])
}

/// How many sites ahead a pass over a batch asks for the next site's code line: sites usually lie on
/// lines of their own, and a batch of thousands does not fit in L2, so without it each site waits for
/// its line.
pub(crate) const PREFETCH_AHEAD: usize = 8;

/// Asks the CPU to bring the cache line holding `addr` closer (a hint: never faults, even unmapped).
#[inline]
pub(crate) fn prefetch(addr: usize) {
    // SAFETY: `prefetcht0` is a hint; it does not fault on any address and changes no state we see.
    unsafe {
        core::arch::asm!("prefetcht0 byte ptr [{a}]", a = in(reg) addr, options(nostack, readonly, preserves_flags))
    };
}

/// The planned sites in order, each site's code line [`prefetch`]ed [`PREFETCH_AHEAD`] sites early: how
/// the protocols' steps walk a batch.
pub(crate) fn prefetching(plan: &[Planned]) -> impl Iterator<Item = &Planned> {
    plan.iter().enumerate().map(|(i, p)| {
        if let Some(ahead) = plan.get(i + PREFETCH_AHEAD) {
            prefetch(ahead.addr);
        }
        p
    })
}

/// The plan buffer of the last batch, kept for the next (taken and given back under the text mutex). A
/// plan of 10 000 sites is 720 KB; allocated fresh each time, it is fresh pages from the kernel, faulted
/// in one by one: about 0.1 ms of a 0.7 ms batch here. Kept up to [`SPARE_MAX`] entries.
static SPARE_PLAN: std::sync::Mutex<Vec<Planned>> = std::sync::Mutex::new(Vec::new());
/// The largest plan buffer kept between batches (7 MB).
const SPARE_MAX: usize = 100_000;

/// An empty plan buffer with room for `n` sites, the last batch's when there is one.
fn plan_buffer(n: usize) -> Vec<Planned> {
    let mut v = std::mem::take(&mut *SPARE_PLAN.lock().unwrap_or_else(|e| e.into_inner()));
    v.clear();
    v.reserve(n);
    v
}

/// Gives a finished plan's buffer back for the next batch.
pub(crate) fn recycle(mut plan: Vec<Planned>) {
    if plan.capacity() <= SPARE_MAX {
        plan.clear();
        *SPARE_PLAN.lock().unwrap_or_else(|e| e.into_inner()) = plan;
    }
}

/// The checks every protocol shares: same length, mapped code, new target in reach. Returns the
/// encoded new instruction.
pub(crate) fn check_site(code: &mut CodeRanges, reg: &mut Registry, site: &SitePatch) -> Result<InsnBytes, PatchError> {
    let SitePatch { addr, old, new } = *site;
    if old.len() != new.len() {
        return Err(PatchError::LengthMismatch { addr, old, new });
    }
    if !code.contains(addr, new.len()) {
        return Err(PatchError::UnknownSite { addr });
    }
    reg.entry(addr).encode(new).map_err(|_| PatchError::OutOfRange { addr, target: new.target().unwrap_or(0) })
}

/// Whether the bytes at `addr` (mapped code) are exactly `insn` (one that cannot be encoded there
/// never is).
pub(crate) fn holds(reg: &mut Registry, addr: usize, insn: Insn) -> bool {
    reg.entry(addr).encode(insn).is_ok_and(|want| read_code(addr, want.len()) == want)
}

/// Whether `found` is `old` (encoded as `want`), or `old` parked by a failed rollback: `int3` on byte 0,
/// the old body behind it, and the slot emulating `old` for good ([`crate::rollback`]).
fn holds_or_parked(slot: &Slot, old: Insn, want: &InsnBytes, found: &InsnBytes) -> bool {
    if want == found {
        return true;
    }
    let (want, found) = (want.as_slice(), found.as_slice());
    let (action, phase, _) = slot.load();
    found[0] == crate::insn::INT3
        && found[1..] == want[1..]
        && action == crate::table::Action::Emulate(old)
        && phase == crate::table::Phase::Permanent
}

/// Sorts by address and refuses overlapping or repeated sites.
pub(crate) fn sort_disjoint(plan: &mut [Planned]) -> Result<(), PatchError> {
    plan.sort_unstable_by_key(|p| p.addr);
    for w in plan.windows(2) {
        if w[0].addr + w[0].new.len() > w[1].addr {
            return Err(PatchError::Overlap { first: w[0].addr, second: w[1].addr });
        }
    }
    Ok(())
}

/// The plan for a protocol that rewrites the site itself (bp, cs-prefix, naive): every site holds
/// `old`, `supports(old, new)` is `Ok` (else it names what the protocol cannot do), sites are
/// disjoint. Every site gets a published poke-table slot.
pub(crate) fn plan_in_place(
    code: &mut CodeRanges,
    reg: &mut Registry,
    protocol: &'static str,
    sites: &[SitePatch],
    supports: impl Fn(Insn, Insn) -> Result<(), &'static str>,
) -> Result<Vec<Planned>, PatchError> {
    let mut plan = plan_buffer(sites.len());
    for (i, s) in sites.iter().enumerate() {
        if let Some(ahead) = sites.get(i + PREFETCH_AHEAD) {
            prefetch(ahead.addr);
        }
        if let Err(reason) = supports(s.old, s.new) {
            return Err(PatchError::Unsupported { addr: s.addr, protocol, reason: reason.into() });
        }
        let SitePatch { addr, old, new } = *s;
        if old.len() != new.len() {
            return Err(PatchError::LengthMismatch { addr, old, new });
        }
        if !code.contains(addr, new.len()) {
            return Err(PatchError::UnknownSite { addr });
        }
        let entry = reg.entry(addr);
        let new_bytes =
            entry.encode(new).map_err(|_| PatchError::OutOfRange { addr, target: new.target().unwrap_or(0) })?;
        let found = read_code(addr, old.len());
        let old_bytes = entry.encode(old).ok().filter(|want| holds_or_parked(entry.slot, old, want, &found));
        let Some(old_bytes) = old_bytes else {
            return Err(PatchError::WrongBytes { addr, expected: old, found: found.to_vec() });
        };
        plan.push(Planned { addr, old, old_bytes, new, new_bytes, slot: entry.slot });
    }
    sort_disjoint(&mut plan)?;
    reg.publish_new();
    Ok(plan)
}

/// After the last step: every planned site reads back as its new bytes.
pub(crate) fn read_back(plan: &[Planned]) -> Result<(), PatchError> {
    for p in plan {
        let found = read_code(p.addr, p.new_bytes.len());
        if found != p.new_bytes {
            return Err(PatchError::ReadBack { addr: p.addr, expected: p.new_bytes.to_vec(), found: found.to_vec() });
        }
    }
    Ok(())
}
