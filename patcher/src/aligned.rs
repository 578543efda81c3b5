//! `aligned`: the policy from the original discussion — no trap at all where one store suffices.
//!
//! Hardware fact (SDM vol. 3 §9.1.1): an unaligned 4-byte store that stays inside one cache line is
//! atomic on P6 and later, so instruction fetch sees the whole old or the whole new rel32, never a mix.
//! A site whose rel32 crosses a line cannot be patched that way; it keeps calling its out-of-line
//! trampoline (`call tramp` / `tramp: jmp target`), and the trampoline's `jmp`, placed so that its own
//! rel32 never crosses, gets the store instead. [`Granule::Word8`] is the stricter rule: the rel32 must
//! sit inside one aligned 8-byte word and is stored with one aligned 8-byte `mov`. Where the *whole*
//! instruction lies inside that word, Word8 stores the whole instruction, so any same-length change
//! works (call ↔ nop5, jmp ↔ ret, not only a new rel32): the trap-free mode of static calls rests on it.
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

    fn writes(&self, plan: &Self::Plan) -> Vec<(usize, usize)> {
        let word = |st: &Store| match self.granule {
            Granule::Line => (st.at, st.bytes.len()),
            Granule::Word8 => (st.at & !7, 8),
        };
        plan.0.iter().map(word).collect()
    }
}

/// One store of a batch: `bytes` at `at` — 4 rel32 bytes (the site's or its trampoline's), or a whole
/// instruction inside one aligned 8-byte word (Word8).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Store {
    at: usize,
    bytes: InsnBytes,
}

/// Whether the `len` bytes at `addr` lie inside one aligned 8-byte word (what one 8-byte store covers).
pub fn fits_one_word(addr: usize, len: usize) -> bool {
    len <= 8 && addr / 8 == (addr + len - 1) / 8
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
    Store { at: at_site + off, bytes: InsnBytes::from_slice(&bytes[off..off + 4]) }
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
        if granule == Granule::Word8 && fits_one_word(s.addr, s.new.len()) {
            // The whole instruction in one store: any same-length change. The site holds `old`, or is
            // still the call of a trampoline that jumps to `old`'s target (its first patch).
            let new_bytes = check_site(code, reg, s)?;
            if !holds(reg, s.addr, s.old) && trampoline_of(code, reg, s.addr, s.old).is_none() {
                return Err(wrong(s.addr, s.old));
            }
            stores.push(Store { at: s.addr, bytes: new_bytes });
            continue;
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
    stores.dedup_by(|a, b| a.at == b.at && a.bytes == b.bytes);
    for w in stores.windows(2) {
        if w[0].at + w[0].bytes.len() > w[1].at {
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
            Granule::Line => unsafe {
                let rel32: [u8; 4] = st.bytes.as_slice().try_into().expect("a line store is a rel32");
                writer.store_u32_atomic(st.at, u32::from_le_bytes(rel32))
            },
            Granule::Word8 => {
                let word = st.at & !7;
                let mut bytes: [u8; 8] = read_code(word, 8).as_slice().try_into().expect("8 bytes");
                bytes[st.at - word..st.at - word + st.bytes.len()].copy_from_slice(&st.bytes);
                // SAFETY: as above: the aligned word holding that rel32, the other bytes unchanged.
                unsafe { writer.store_u64_atomic(word, u64::from_le_bytes(bytes)) }
            }
        };
        done.map_err(|source| PatchError::Write { addr: st.at, len: st.bytes.len(), source })?;
    }
    sync_cores()?;
    Ok(1)
}

/// After the sync every store reads back.
fn read_back(stores: &[Store]) -> Result<(), PatchError> {
    for st in stores {
        let found = read_code(st.at, st.bytes.len());
        if found.as_slice() != st.bytes.as_slice() {
            return Err(PatchError::ReadBack { addr: st.at, expected: st.bytes.to_vec(), found: found.to_vec() });
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

    #[test]
    fn a_whole_instruction_inside_one_word_changes_form_in_one_store() {
        use crate::arena::{Arena, ArenaMode};
        use crate::batch::patch_batch;
        use crate::insn::encode;
        use callpatch_vocab::Protocol;

        assert!(fits_one_word(0x1000, 5) && fits_one_word(0x1003, 5) && !fits_one_word(0x1004, 5));
        assert_eq!((0..8).filter(|o| fits_one_word(0x1000 + o, 5)).count(), 4, "half the offsets of a call");

        let mut arena = Arena::new(4096, ArenaMode::Rwx).unwrap();
        let a = arena.alloc(6, 16).unwrap();
        arena.write(a, &[0xb8, 1, 0, 0, 0, 0xc3]).unwrap(); // mov eax, 1; ret
        let b = arena.alloc(6, 16).unwrap();
        arena.write(b, &[0xb8, 2, 0, 0, 0, 0xc3]).unwrap();
        // `f: mov eax, 7; site: call a; ret`, the site at byte 1 of an aligned word (fits), and a second
        // copy with the site at byte 5 (straddles two words).
        let mut make = |at_offset: usize| {
            let f = arena.alloc(48, 16).unwrap() + at_offset - 5;
            let site = f + 5;
            arena.write(f, &[0xb8, 7, 0, 0, 0]).unwrap();
            arena.write(site, &encode(Insn::Call(a), site).unwrap()).unwrap();
            arena.write(site + 5, &[0xc3]).unwrap();
            (f, site)
        };
        let (f, site) = make(9);
        let (_, straddling) = make(16 + 13);
        assert!(fits_one_word(site, 5) && !fits_one_word(straddling, 5));
        let writer = TextWriter::for_arena(&arena);
        let word8 = Protocol::Aligned { granule: Granule::Word8 };
        // SAFETY: `f` is the function just written, `site` its call; a and b return in eax alike.
        let call = || unsafe { std::mem::transmute::<usize, extern "C" fn() -> u32>(f)() };
        assert_eq!(call(), 1);
        let one = |old, new| [SitePatch { addr: site, old, new }];
        // SAFETY: the site is the call of `f`; a nop5 there leaves eax = 7, a call to b makes it 2.
        unsafe {
            patch_batch(&writer, word8, &one(Insn::Call(a), Insn::Nop5)).unwrap();
            assert_eq!(call(), 7, "call became nop5 in one store");
            patch_batch(&writer, word8, &one(Insn::Nop5, Insn::Call(b))).unwrap();
            assert_eq!(call(), 2);
            let e = patch_batch(&writer, word8, &[SitePatch { addr: straddling, old: Insn::Call(a), new: Insn::Nop5 }]);
            assert!(matches!(e, Err(PatchError::Unsupported { .. })), "{e:?}");
        }
    }
}
