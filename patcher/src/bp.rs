//! `bp`: the kernel's `text_poke_bp` batch protocol (arch/x86/kernel/alternative.c), in user space.
//!
//! Hardware fact: another core may be executing, or have fetched, any byte of a site while we store
//! to it, and stores of several bytes are not seen atomically by instruction fetch. A one-byte store
//! is. So byte 0 is first made `int3` (a thread that reaches the site now traps and the handler
//! emulates the new instruction), then the body changes behind that guard, then byte 0 completes the
//! new instruction. A sync between steps makes every core see one step before the next begins.
//! Three syncs per batch, however many sites.

use crate::batch::Step;
use crate::error::PatchError;
use crate::insn::INT3;
use crate::protocol::InPlace;
use crate::sync::sync_cores;
use crate::table::{Action, Phase};
use crate::text_writer::{write, TextWriter};
use crate::validate::{prefetching, Planned};

/// The bp protocol. It can make any same-length change (validation checks the length).
pub(crate) struct Bp;

impl InPlace for Bp {
    const NAME: &'static str = "bp";

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
    // 1. Publish each site's slot (from now on a trap there emulates its new instruction), then int3
    // on its byte 0; sync so that no core can start an old instruction any more.
    for p in prefetching(plan) {
        p.slot.set(Action::Emulate(p.new), Phase::Int3);
        // SAFETY: a planned site (validated, vouched for by the caller); the step order keeps every
        // executing thread on a whole instruction or on the int3.
        unsafe { write(writer, p.addr, &[INT3])? };
    }
    sync_cores()?;
    on_step(Step::Int3Placed);
    // 2. The new bytes 1..n-1, hidden behind the int3; sync so every core sees the whole new body.
    for p in prefetching(plan) {
        // SAFETY: a planned site (validated, vouched for by the caller); the step order keeps every
        // executing thread on a whole instruction or on the int3.
        unsafe { write(writer, p.addr + 1, &p.new_bytes[1..])? };
    }
    sync_cores()?;
    on_step(Step::BodyWritten);
    // 3. Each slot learns that its body is synced, and the new byte 0 completes the site; sync so no
    // core still sees the int3.
    for p in prefetching(plan) {
        p.slot.set_phase(Phase::BodyReady);
        // SAFETY: a planned site (validated, vouched for by the caller); the step order keeps every
        // executing thread on a whole instruction or on the int3.
        unsafe { write(writer, p.addr, &p.new_bytes[..1])? };
    }
    sync_cores()?;
    // Traps already taken but not yet handled are late now; their slots stay valid for them.
    for p in plan {
        p.slot.set_phase(Phase::Idle);
    }
    on_step(Step::Finished);
    Ok(3)
}
