//! The one shape every protocol has: plan (validate the whole batch, decide every write), poke (the
//! numbered steps and their syncs), read back. One implementation per file: [`crate::bp`],
//! [`crate::cs_prefix`], [`crate::aligned`], [`crate::naive`].

use crate::batch::{SitePatch, Step};
use crate::error::PatchError;
use crate::insn::Insn;
use crate::maps::CodeRanges;
use crate::table;
use crate::text_writer::TextWriter;
use crate::validate::{self, Planned};

pub(crate) use crate::aligned::Aligned;
pub(crate) use crate::bp::Bp;
pub(crate) use crate::cs_prefix::CsPrefix;
pub(crate) use crate::naive::Naive;

/// A way of writing a batch of live sites.
pub(crate) trait Poke {
    /// Every write the protocol will make, decided before the first one.
    type Plan;

    /// Validates the whole batch (nothing is written when a site fails) and publishes the poke-table
    /// slots the trap handler will need.
    fn plan(&self, code: &mut CodeRanges, writer: &TextWriter, sites: &[SitePatch]) -> Result<Self::Plan, PatchError>;

    /// Runs the protocol's steps; returns the syncs used. A failure part-way leaves every site a
    /// valid instruction (in-place protocols roll the batch back, [`crate::rollback`]; the aligned
    /// policy's single stores are whole instructions at every moment).
    ///
    /// # Safety
    /// `plan` came from [`Poke::plan`] under the text lock that is still held, and the caller vouches
    /// for the sites as `patch_batch` requires.
    unsafe fn poke(
        &self,
        writer: &TextWriter,
        plan: &Self::Plan,
        on_step: &mut dyn FnMut(Step),
    ) -> Result<u64, PatchError>;

    /// After the last step every write reads back.
    fn read_back(&self, plan: &Self::Plan) -> Result<(), PatchError>;

    /// Every range (address, length) the steps write: what the batch's write window must cover.
    fn writes(&self, plan: &Self::Plan) -> Vec<(usize, usize)>;

    /// Sites that stayed on their trampoline (the aligned policy's fallbacks).
    fn fallbacks(&self, _plan: &Self::Plan) -> usize {
        0
    }

    /// Takes back a finished batch's plan, whose memory the next batch may reuse.
    fn recycle(&self, _plan: Self::Plan) {}
}

/// A protocol that rewrites each site in place (bp, cs-prefix, naive): every site must hold `old`,
/// and the plan is the sorted, disjoint sites with their new bytes and published poke-table slots.
pub(crate) trait InPlace {
    /// The protocol's name in errors.
    const NAME: &'static str;

    /// `Err(what the protocol cannot do)` for a change it does not support.
    fn supports(_old: Insn, _new: Insn) -> Result<(), &'static str> {
        Ok(())
    }

    /// The protocol's numbered steps; returns the syncs used.
    ///
    /// # Safety
    /// As [`Poke::poke`].
    unsafe fn steps(writer: &TextWriter, plan: &[Planned], on_step: &mut dyn FnMut(Step)) -> Result<u64, PatchError>;
}

impl<P: InPlace> Poke for P {
    type Plan = Vec<Planned>;

    fn plan(&self, code: &mut CodeRanges, _: &TextWriter, sites: &[SitePatch]) -> Result<Vec<Planned>, PatchError> {
        validate::plan_in_place(code, &mut table::registry(), P::NAME, sites, P::supports)
    }

    unsafe fn poke(
        &self,
        writer: &TextWriter,
        plan: &Vec<Planned>,
        on_step: &mut dyn FnMut(Step),
    ) -> Result<u64, PatchError> {
        // SAFETY: this method's contract is `steps`'s.
        let failed = match unsafe { P::steps(writer, plan, on_step) } {
            Ok(syncs) => return Ok(syncs),
            Err(e) => e,
        };
        // A write or sync failed part-way: put every site back (see `crate::rollback`).
        // SAFETY: the same plan, under the same text lock.
        match unsafe { crate::rollback::rollback(writer, plan) } {
            Ok(()) => Err(PatchError::RolledBack(Box::new(failed))),
            Err((rollback, parked)) => {
                Err(PatchError::RollbackFailed { cause: Box::new(failed), rollback: Box::new(rollback), parked })
            }
        }
    }

    fn read_back(&self, plan: &Vec<Planned>) -> Result<(), PatchError> {
        validate::read_back(plan)
    }

    fn writes(&self, plan: &Vec<Planned>) -> Vec<(usize, usize)> {
        plan.iter().map(|p| (p.addr, p.new_bytes.len())).collect()
    }

    fn recycle(&self, plan: Vec<Planned>) {
        validate::recycle(plan);
    }
}
