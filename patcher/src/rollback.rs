//! Rollback of an in-place batch (bp, cs-prefix, naive) whose write or sync failed part-way.
//!
//! A failure can leave any mix of states behind: a site untouched, an `int3` on byte 0 with the old,
//! a half-new or the new body behind it, or the whole new instruction. Every one of them is safe to
//! run *only* because the trap handler knows what to do at the `int3`; in cs-prefix it is told to wait
//! for the rel32, which nobody will now finish (callers would spin in the handler for ever). So:
//!
//! 1. every slot is switched to *emulate the old instruction*: from this store on no trap waits, and
//!    none reaches the new target;
//! 2. the batch is run again towards the old bytes with the bp steps (`int3` on byte 0 where the site is
//!    not already old or `int3`, sync; the old body, sync; the old byte 0, sync), skipping every write
//!    whose bytes are already right;
//! 3. where that completes, the slots go idle and the site is exactly as before the batch. Where a write
//!    fails again (the writer itself is broken: an `mprotect` refused for good), the site is *parked*:
//!    byte 0 stays `int3`, the slot emulates the old instruction for good, every call still lands on
//!    the old target through the handler, and validation accepts the parked site as holding its old
//!    instruction, so a later batch can patch it.

use crate::error::PatchError;
use crate::insn::INT3;
use crate::sync::sync_cores;
use crate::table::{Action, Phase};
use crate::text_writer::{write, TextWriter};
use crate::validate::{read_code, Planned};

/// Restores every site of `plan` to its old instruction (see the module doc). `Ok` when every site
/// reads back as it was before the batch; else the first failure and the parked sites' addresses.
///
/// # Safety
/// As [`crate::protocol::InPlace::steps`]: `plan` was validated under the text lock that is still held.
pub(crate) unsafe fn rollback(writer: &TextWriter, plan: &[Planned]) -> Result<(), (PatchError, Vec<usize>)> {
    // 1. From now on a trap at any of these sites runs the old instruction, and nobody waits.
    for p in plan {
        p.slot.set(Action::Emulate(p.old), Phase::Int3);
    }
    let mut first: Option<PatchError> = None;
    let mut keep = |r: Result<(), PatchError>| {
        if let Err(e) = r {
            first.get_or_insert(e);
        }
    };
    let len = |p: &Planned| p.old_bytes.len();
    // 2a. int3 where the site is neither old nor already guarded.
    for p in plan {
        let now = read_code(p.addr, len(p));
        if now.as_slice() != p.old_bytes.as_slice() && now.as_slice()[0] != INT3 {
            // SAFETY: a planned site; byte 0 of a whole instruction becomes int3, which the slot set
            // above turns into the old instruction.
            keep(unsafe { write(writer, p.addr, &[INT3]) });
        }
    }
    keep(sync_cores());
    // 2b. The old body behind the int3.
    for p in plan {
        let now = read_code(p.addr, len(p));
        if now.as_slice()[0] == INT3 && now.as_slice()[1..] != p.old_bytes.as_slice()[1..] {
            // SAFETY: byte 0 is int3 (just read, and only this patcher writes here under the text
            // lock), so no thread executes the bytes behind it.
            keep(unsafe { write(writer, p.addr + 1, &p.old_bytes.as_slice()[1..]) });
        }
    }
    keep(sync_cores());
    // 2c. The old byte 0 where the whole old body is in place.
    for p in plan {
        let now = read_code(p.addr, len(p));
        if now.as_slice()[0] == INT3 && now.as_slice()[1..] == p.old_bytes.as_slice()[1..] {
            // SAFETY: the body behind the int3 is the old one, synced: byte 0 completes it.
            keep(unsafe { write(writer, p.addr, &p.old_bytes.as_slice()[..1]) });
        }
    }
    keep(sync_cores());
    // 3. Restored sites go idle; the others are parked on the emulated old instruction.
    let mut parked = Vec::new();
    for p in plan {
        if read_code(p.addr, len(p)).as_slice() == p.old_bytes.as_slice() {
            p.slot.set_phase(Phase::Idle);
        } else {
            p.slot.set(Action::Emulate(p.old), Phase::Permanent);
            parked.push(p.addr);
        }
    }
    match (first, parked.is_empty()) {
        (_, true) => Ok(()),
        (Some(e), false) => Err((e, parked)),
        (None, false) => Err((
            PatchError::ReadBack { addr: parked[0], expected: Vec::new(), found: read_code(parked[0], 1).to_vec() },
            parked,
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use crate::arena::{Arena, ArenaMode};
    use crate::batch::{patch_batch, patch_batch_stepped, SitePatch, Step};
    use crate::error::PatchError;
    use crate::insn::{encode, Insn};
    use crate::text_writer::{fault, TextWriter};
    use callpatch_vocab::Protocol;

    /// Two targets (`mov eax, 1; ret` and `mov eax, 2; ret`) and a function whose only call is the
    /// site: `site: call A` (or `cs call A`), `ret`.
    struct Bed {
        arena: Arena,
        a: usize,
        b: usize,
        site: usize,
        old: Insn,
    }

    impl Bed {
        fn new(cs: bool) -> Bed {
            let mut arena = Arena::new(4096, ArenaMode::Rwx).unwrap();
            let a = arena.alloc(6, 16).unwrap();
            arena.write(a, &[0xb8, 1, 0, 0, 0, 0xc3]).unwrap();
            let b = arena.alloc(6, 16).unwrap();
            arena.write(b, &[0xb8, 2, 0, 0, 0, 0xc3]).unwrap();
            let old = if cs { Insn::CsCall(a) } else { Insn::Call(a) };
            let site = arena.alloc(old.len() + 1, 64).unwrap();
            let bytes = encode(old, site).unwrap();
            arena.write(site, &bytes).unwrap();
            arena.write(site + old.len(), &[0xc3]).unwrap();
            Bed { arena, a, b, site, old }
        }

        fn new_insn(&self) -> Insn {
            match self.old {
                Insn::CsCall(_) => Insn::CsCall(self.b),
                _ => Insn::Call(self.b),
            }
        }

        fn protocol(&self) -> Protocol {
            match self.old {
                Insn::CsCall(_) => Protocol::CsPrefix,
                _ => Protocol::Bp,
            }
        }

        fn call(&self) -> u32 {
            // SAFETY: `site` starts a function of this arena (a call to a target that sets eax and
            // returns, then `ret`), alive while `self` is.
            let f: extern "C" fn() -> u32 = unsafe { std::mem::transmute(self.site) };
            f()
        }

        fn bytes(&self) -> Vec<u8> {
            self.arena.read(self.site, self.old.len())
        }

        fn patch(&self, old: Insn, new: Insn) -> Result<(), PatchError> {
            let writer = TextWriter::for_arena(&self.arena);
            // SAFETY: the site is this bed's call instruction; both targets return a value the same way.
            unsafe { patch_batch(&writer, self.protocol(), &[SitePatch { addr: self.site, old, new }]) }.map(|_| ())
        }
    }

    fn rolls_back(cs: bool) {
        let bed = Bed::new(cs);
        let before = bed.bytes();
        assert_eq!(bed.call(), 1);
        // Step 1 (one int3) goes through, the body write of step 2 fails.
        fault::arm(1, 1);
        let e = bed.patch(bed.old, bed.new_insn()).unwrap_err();
        fault::arm(0, 0);
        assert!(matches!(e, PatchError::RolledBack(_)), "{e}");
        assert_eq!(bed.bytes(), before, "the site holds its old instruction again: {e}");
        assert_eq!(bed.call(), 1);
        // And it can be patched again (before rollback existed, byte 0 stayed int3: WrongBytes).
        bed.patch(bed.old, bed.new_insn()).unwrap();
        assert_eq!(bed.call(), 2);
    }

    #[test]
    fn a_bp_batch_that_fails_part_way_is_rolled_back() {
        rolls_back(false);
    }

    #[test]
    fn a_cs_prefix_batch_that_fails_part_way_is_rolled_back() {
        rolls_back(true);
    }

    #[test]
    fn a_caller_waiting_on_a_cs_prefix_trap_is_released_by_the_rollback() {
        // A caller meets the int3 between step 1 and the (failing) step 2: the handler makes it wait
        // for the rel32. Without rollback nobody ever finishes the rel32 and it waits for ever.
        let bed = Bed::new(true);
        let writer = TextWriter::for_arena(&bed.arena);
        let (tx, rx) = mpsc::channel();
        let site = bed.site;
        let mut on_step = |s: Step| {
            if s == Step::Int3Placed {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    // SAFETY: as `Bed::call`; the arena outlives the wait below (the test joins through
                    // the channel, or fails and leaks the arena with the thread).
                    let f: extern "C" fn() -> u32 = unsafe { std::mem::transmute(site) };
                    let _ = tx.send(f());
                });
                std::thread::sleep(Duration::from_millis(50));
            }
        };
        fault::arm(1, 1);
        let sites = [SitePatch { addr: bed.site, old: bed.old, new: bed.new_insn() }];
        // SAFETY: as `Bed::patch`.
        let r = unsafe { patch_batch_stepped(&writer, Protocol::CsPrefix, &sites, &mut on_step) };
        fault::arm(0, 0);
        assert!(matches!(r, Err(PatchError::RolledBack(_))), "{r:?}");
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(v) => assert_eq!(v, 1, "the trapped call ran the old instruction"),
            Err(_) => {
                std::mem::forget(bed); // the caller still spins in the handler on this arena's site
                panic!("the caller that met the int3 is still waiting 10 s after the failed batch");
            }
        }
    }

    #[test]
    fn a_failed_rollback_parks_the_site_on_its_old_call_and_a_later_batch_patches_it() {
        let bed = Bed::new(false);
        fault::arm(1, 1000); // the body write fails, and every write of the rollback too
        let e = bed.patch(bed.old, bed.new_insn()).unwrap_err();
        fault::arm(0, 0);
        let PatchError::RollbackFailed { parked, .. } = &e else { panic!("{e}") };
        assert_eq!(parked, &[bed.site]);
        assert_eq!(bed.bytes()[0], crate::insn::INT3, "parked: byte 0 stays int3");
        assert_eq!(bed.call(), 1, "every call runs the old instruction through the handler");
        bed.patch(bed.old, bed.new_insn()).unwrap();
        assert_eq!(bed.call(), 2);
        assert_eq!(bed.bytes(), encode(bed.new_insn(), bed.site).unwrap().to_vec());
        let _ = bed.a;
    }
}
