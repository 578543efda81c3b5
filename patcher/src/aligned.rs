//! `aligned`: the policy from the original discussion — no trap at all where one store suffices.
//!
//! Hardware fact (SDM vol. 3 §9.1.1): an unaligned 4-byte store that stays inside one cache line is
//! atomic on P6 and later, so instruction fetch sees the whole old or the whole new rel32, never a mix.
//! A site whose rel32 crosses a line cannot be patched that way; it keeps calling its out-of-line
//! trampoline (`call tramp` / `tramp: jmp target`), and the trampoline's `jmp`, placed so that its own
//! rel32 never crosses, gets the store instead. [`Granule::Word8`] is the stricter rule: the rel32 must
//! sit inside one aligned 8-byte word and is stored with one aligned 8-byte `mov`.
//!
//! Sites are seen through their trampoline: `old` and `new` are the site's *effective* instructions,
//! so `call tramp` with `tramp: jmp t` counts as `call t`. A site whose rel32 fits the granule is moved
//! off its trampoline by the store (`call t'` directly); one that does not fit stays on it. One sync at
//! the end makes every core execute the new code by the time the batch returns.

use callpatch_vocab::Granule;

use crate::batch::{SitePatch, Step};
use crate::error::PatchError;
use crate::insn::{decode, Insn, InsnBytes};
use crate::maps::CodeRanges;
use crate::protocol::Poke;
use crate::sync::sync_cores;
use crate::table::{self, Registry};
use crate::text_writer::TextWriter;
use crate::validate::{check_site, holds, read_code};

/// The aligned policy with its granule.
pub(crate) struct Aligned {
    pub(crate) granule: Granule,
}

impl Poke for Aligned {
    /// The stores, and how many sites fell back to their trampoline.
    type Plan = (Vec<Store>, usize);

    fn plan(&self, code: &mut CodeRanges, writer: &TextWriter, sites: &[SitePatch]) -> Result<Self::Plan, PatchError> {
        plan(code, &mut table::registry(), self.granule, writer, sites)
    }

    unsafe fn poke(&self, writer: &TextWriter, plan: &Self::Plan, _: &mut dyn FnMut(Step)) -> Result<u64, PatchError> {
        // SAFETY: the plan was validated under the held text lock (this method's contract).
        unsafe { poke(writer, self.granule, &plan.0) }
    }

    fn read_back(&self, plan: &Self::Plan) -> Result<(), PatchError> {
        read_back(&plan.0)
    }

    fn fallbacks(&self, plan: &Self::Plan) -> usize {
        plan.1
    }
}

/// One store of a batch: the 4 rel32 bytes at `at` (the site's or its trampoline's).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Store {
    at: usize,
    rel32: [u8; 4],
}

/// The site's trampoline if it calls one that jumps to `old`'s target.
fn trampoline_of(code: &mut CodeRanges, reg: &mut Registry, addr: usize, old: Insn) -> Option<usize> {
    let Insn::Call(x) = old else { return None };
    match decode(&read_code(addr, old.len()), addr) {
        Some(Insn::Call(t)) if code.contains(t, old.len()) && holds(reg, t, Insn::Jmp(x)) => Some(t),
        _ => None,
    }
}

/// The store that makes `at_site` hold `bytes` (the encoding of `insn` there).
fn rel32_store(insn: Insn, at_site: usize, bytes: InsnBytes) -> Store {
    let off = insn.rel32_offset().expect("aligned only plans branches");
    Store { at: at_site + off, rel32: bytes[off..off + 4].try_into().expect("4 bytes") }
}

/// Validates a batch and decides, per site, where its single store goes. Returns the stores and how
/// many sites fell back to their trampoline.
fn plan(
    code: &mut CodeRanges,
    reg: &mut Registry,
    granule: Granule,
    writer: &TextWriter,
    sites: &[SitePatch],
) -> Result<(Vec<Store>, usize), PatchError> {
    let unsupported = |addr, reason: String| PatchError::Unsupported { addr, protocol: "aligned", reason };
    let wrong = |addr, expected| PatchError::WrongBytes { addr, expected, found: read_code(addr, 8).to_vec() };
    let mut stores = Vec::with_capacity(sites.len());
    let mut fallbacks = 0;
    for s in sites {
        if !writer.method().has_atomic_store() {
            return Err(unsupported(s.addr, format!("the {} writer has no single store", writer.method().name())));
        }
        let same_form = matches!(
            (s.old, s.new),
            (Insn::Call(_), Insn::Call(_)) | (Insn::Jmp(_), Insn::Jmp(_)) | (Insn::CsCall(_), Insn::CsCall(_))
        );
        if !same_form {
            return Err(unsupported(s.addr, "only the rel32 of a call or jmp can change in one store".into()));
        }
        let new_bytes = check_site(code, reg, s)?;
        let rel = s.addr + s.new.rel32_offset().expect("branch");
        if !granule.crosses(rel) {
            // Directly on the old target, or (first patch) still on its trampoline: one store either way.
            if !holds(reg, s.addr, s.old) && trampoline_of(code, reg, s.addr, s.old).is_none() {
                return Err(wrong(s.addr, s.old));
            }
            stores.push(rel32_store(s.new, s.addr, new_bytes));
        } else if let Some(t) = trampoline_of(code, reg, s.addr, s.old) {
            if granule.crosses(t + 1) {
                return Err(unsupported(
                    t,
                    format!("the trampoline's own rel32 crosses a {}-byte granule", granule.bytes()),
                ));
            }
            let jmp = Insn::Jmp(s.new.target().expect("branch"));
            let bytes = reg
                .entry(t)
                .encode(jmp)
                .map_err(|_| PatchError::OutOfRange { addr: t, target: jmp.target().unwrap_or(0) })?;
            stores.push(rel32_store(jmp, t, bytes));
            fallbacks += 1;
        } else if holds(reg, s.addr, s.old) {
            return Err(unsupported(
                s.addr,
                format!(
                    "its rel32 crosses a {}-byte granule and it has no trampoline to fall back to",
                    granule.bytes()
                ),
            ));
        } else {
            return Err(wrong(s.addr, s.old));
        }
    }
    // Two sites sharing one trampoline must agree on its new target.
    stores.sort_unstable_by_key(|st| st.at);
    stores.dedup_by(|a, b| a.at == b.at && a.rel32 == b.rel32);
    for w in stores.windows(2) {
        if w[0].at + 4 > w[1].at {
            return Err(PatchError::Overlap { first: w[0].at, second: w[1].at });
        }
    }
    Ok((stores, fallbacks))
}

/// Performs the planned stores, one atomic store each, then one sync. Returns the syncs used (1).
///
/// # Safety
/// As [`Poke::poke`].
unsafe fn poke(writer: &TextWriter, granule: Granule, stores: &[Store]) -> Result<u64, PatchError> {
    for st in stores {
        let done = match granule {
            // SAFETY: the rel32 of a planned site or of its trampoline (validated, vouched for by the
            // caller); one atomic store, so a running thread sees the old or the new rel32.
            Granule::Line => unsafe { writer.store_u32_atomic(st.at, u32::from_le_bytes(st.rel32)) },
            Granule::Word8 => {
                let word = st.at & !7;
                let mut bytes: [u8; 8] = read_code(word, 8).as_slice().try_into().expect("8 bytes");
                bytes[st.at - word..st.at - word + 4].copy_from_slice(&st.rel32);
                // SAFETY: as above: the aligned word holding that rel32, the other bytes unchanged.
                unsafe { writer.store_u64_atomic(word, u64::from_le_bytes(bytes)) }
            }
        };
        done.map_err(|source| PatchError::Write { addr: st.at, len: 4, source })?;
    }
    sync_cores()?;
    Ok(1)
}

/// After the sync every store reads back.
fn read_back(stores: &[Store]) -> Result<(), PatchError> {
    for st in stores {
        let found = read_code(st.at, 4);
        if found.as_slice() != st.rel32 {
            return Err(PatchError::ReadBack { addr: st.at, expected: st.rel32.to_vec(), found: found.to_vec() });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crossing_rules_match_the_theory_fractions() {
        // Over every start offset of a 5-byte call in a line, the rel32 (bytes 1..5) crosses the line
        // for 3 of 64 offsets and an 8-byte word for 3 of 8.
        let line = (0..64).filter(|o| Granule::Line.crosses(0x1000 + o + 1)).count();
        let word = (0..64).filter(|o| Granule::Word8.crosses(0x1000 + o + 1)).count();
        assert_eq!((line, word), (3, 24));
    }
}
