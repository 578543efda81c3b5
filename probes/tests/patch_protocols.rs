//! Every safe protocol under live callers, and the aligned policy's fallback accounting.

use std::sync::Mutex;
use std::time::Duration;

use callpatch_probes::code::{ArenaMode, WriteMethod};
use callpatch_probes::experiments::live_sites::{LiveSites, Placement, Tally};
use callpatch_probes::experiments::stress::{self, Limit, StressConfig, StressOutcome};
use callpatch_probes::patch::{Granule, Protocol};

/// Traps are counted process-wide, so stress runs take turns: a run's trap count is its own.
static ONE_RUN_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Two callers, a bounded number of batches (the time cap only bounds a very slow machine; the
/// assertions are exact counts, independent of timing).
fn two_callers(protocol: Protocol) -> StressOutcome {
    let _turn = ONE_RUN_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let limit = Limit { time: Duration::from_secs(3), batches: Some(400) };
    let out = stress::run(&StressConfig::new(protocol, 2, limit)).unwrap();
    assert!(out.batches > 0);
    for (i, c) in out.callers.iter().enumerate() {
        assert!(c.iterations > 0, "{protocol}: caller {i} never ran");
        assert_eq!(c.misdirected(), 0, "{protocol}: caller {i} misdirected: {c:?}");
        assert_eq!(c.lost(), 0, "{protocol}: caller {i} lost calls: {c:?}");
        assert!(c.exact(), "{protocol}: caller {i}: {c:?}");
    }
    out
}

/// An int3 protocol must also be seen trapping: a caller met an `int3` and the handler emulated
/// the call, the path that exists only for that case. Whether a caller reaches a site inside the
/// window is timing, so rounds (each checked exactly) repeat until one traps; none in 5 fails.
fn traps_under_two_callers(protocol: Protocol) {
    const ROUNDS: usize = 5;
    let trapped = (0..ROUNDS).any(|_| two_callers(protocol).traps > 0);
    assert!(trapped, "{protocol}: {ROUNDS} rounds under 2 live callers and not one trap: the emulation went untested");
}

#[test]
fn bp_under_two_callers_traps_and_loses_and_misdirects_nothing() {
    traps_under_two_callers(Protocol::Bp);
}

#[test]
fn cs_prefix_under_two_callers_traps_and_loses_and_misdirects_nothing() {
    traps_under_two_callers(Protocol::CsPrefix);
}

#[test]
fn aligned_under_two_callers_loses_and_misdirects_nothing() {
    two_callers(Protocol::Aligned { granule: Granule::Line });
}

#[test]
fn aligned_word_under_two_callers_loses_and_misdirects_nothing() {
    two_callers(Protocol::Aligned { granule: Granule::Word8 });
}

#[test]
fn naive_is_refused_by_stress() {
    let limit = Limit { time: Duration::from_millis(10), batches: Some(1) };
    assert!(stress::run(&StressConfig::new(Protocol::Naive, 1, limit)).is_err());
}

#[test]
fn aligned_falls_back_exactly_for_the_sites_placed_across_a_granule() {
    for granule in [Granule::Line, Granule::Word8] {
        let protocol = Protocol::Aligned { granule };
        let bed = LiveSites::new(protocol, 200, Placement::Spread, ArenaMode::Rwx).unwrap();
        let w = bed.writer(WriteMethod::Direct).unwrap();
        // Count the crossing sites from the addresses, independently of the patcher.
        let crossing = bed.sites().iter().filter(|&&s| (s + 1) / granule.bytes() != (s + 4) / granule.bytes()).count();
        assert!(crossing > 0, "the spread placement puts some sites across");
        assert_eq!(bed.crossing(granule), crossing);
        for (from, to) in [(0, 1), (1, 0), (0, 1)] {
            let r = bed.patch(&w, protocol, &bed.retarget(200, from, to)).unwrap();
            assert_eq!((r.fallbacks, r.syncs, r.traps), (crossing, 1, 0), "{protocol}");
            let mut t = Tally::default();
            bed.run(&mut t, 2);
            let mut want = [0; 2];
            want[to] = 400;
            assert_eq!(t.hits, want, "{protocol}");
        }
        // Non-crossing sites now call the target directly; crossing ones still call their trampoline.
        let tramp = bed.trampolines();
        for (i, &s) in bed.sites().iter().enumerate() {
            let code = bed.arena().read(s, 5);
            let target = (s as i64 + 5 + i32::from_le_bytes(code[1..5].try_into().unwrap()) as i64) as usize;
            let crosses = (s + 1) / granule.bytes() != (s + 4) / granule.bytes();
            assert_eq!(target == tramp[i], crosses, "{protocol} site {i}");
        }
    }
}

#[test]
fn procmem_has_no_single_store_for_aligned() {
    let protocol = Protocol::Aligned { granule: Granule::Line };
    let bed = LiveSites::new(protocol, 4, Placement::Spread, ArenaMode::Sealed).unwrap();
    let w = bed.writer(WriteMethod::ProcMem).unwrap();
    assert!(bed.patch(&w, protocol, &bed.retarget(4, 0, 1)).is_err());
    // bp through /proc/self/mem works.
    let bp = LiveSites::new(Protocol::Bp, 4, Placement::Spread, ArenaMode::Sealed).unwrap();
    let w = bp.writer(WriteMethod::ProcMem).unwrap();
    assert_eq!(bp.patch(&w, Protocol::Bp, &bp.retarget(4, 0, 1)).unwrap().syncs, 3);
    let mut t = Tally::default();
    bp.run(&mut t, 1);
    assert_eq!(t.hits, [0, 4]);
}
