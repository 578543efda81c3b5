//! `cs-prefix`: sites are `2e e8 rel32` (a `call` with a no-op `cs` prefix), so byte 0 can park an
//! `int3` while the `call` itself starts at byte 1.
//!
//! Steps: `cc` over the prefix, sync; the new rel32, sync; `2e` back, sync. A thread that traps on the
//! prefix waits in the handler until the rel32 is whole and synced, then resumes at `site + 1`, the
//! plain `call`: no instruction is emulated, the CPU executes the real new call. Three syncs per batch.

use crate::batch::Step;
use crate::error::PatchError;
use crate::insn::{Insn, CS_PREFIX, INT3};
use crate::protocol::InPlace;
use crate::sync::sync_cores;
use crate::table::{Action, Phase};
use crate::text_writer::{write, TextWriter};
use crate::validate::{prefetching, Planned};

/// The cs-prefix protocol.
pub(crate) struct CsPrefix;

/// Only `cs call` → `cs call` changes keep the prefix and the call opcode in place.
fn supports(old: Insn, new: Insn) -> Result<(), &'static str> {
    match (old, new) {
        (Insn::CsCall(_), Insn::CsCall(_)) => Ok(()),
        _ => Err("cs-prefix sites are `2e e8 rel32` before and after"),
    }
}

impl InPlace for CsPrefix {
    const NAME: &'static str = "cs-prefix";

    fn supports(old: Insn, new: Insn) -> Result<(), &'static str> {
        supports(old, new)
    }

    unsafe fn steps(writer: &TextWriter, plan: &[Planned], on_step: &mut dyn FnMut(Step)) -> Result<u64, PatchError> {
        // SAFETY: `poke`'s contract is this method's.
        unsafe { poke(writer, plan, on_step) }
    }
}

/// Runs the three steps on a validated, sorted, disjoint batch; returns the syncs used.
///
/// # Safety
/// As [`InPlace::steps`].
unsafe fn poke(writer: &TextWriter, plan: &[Planned], on_step: &mut dyn FnMut(Step)) -> Result<u64, PatchError> {
    // 1. Publish each slot (a trap on its prefix now waits for the rel32, then runs the call behind
    // it), then int3 over the prefix; sync so no core can start an old `cs call` any more.
    for p in prefetching(plan) {
        p.slot.set(Action::ResumeAfterPrefix, Phase::Int3);
        // SAFETY: a planned site (validated, vouched for by the caller); the step order keeps every
        // executing thread on a whole instruction or on the int3.
        unsafe { write(writer, p.addr, &[INT3])? };
    }
    sync_cores()?;
    on_step(Step::Int3Placed);
    // 2. The new rel32 (bytes 2..6); sync so every core sees it whole.
    for p in prefetching(plan) {
        // SAFETY: a planned site (validated, vouched for by the caller); the step order keeps every
        // executing thread on a whole instruction or on the int3.
        unsafe { write(writer, p.addr + 2, &p.new_bytes[2..])? };
    }
    sync_cores()?;
    on_step(Step::BodyWritten);
    // 3. Release the traps waiting at each site (its rel32 is synced: they resume at the plain call),
    // and put its prefix back; sync so no core still sees the int3.
    for p in prefetching(plan) {
        p.slot.set_phase(Phase::BodyReady);
        // SAFETY: a planned site (validated, vouched for by the caller); the step order keeps every
        // executing thread on a whole instruction or on the int3.
        unsafe { write(writer, p.addr, &[CS_PREFIX])? };
    }
    sync_cores()?;
    for p in plan {
        p.slot.set_phase(Phase::Idle);
    }
    on_step(Step::Finished);
    Ok(3)
}
