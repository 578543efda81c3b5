//! A late trap: the caller executes the `int3` while the batch is in flight, but its handler only
//! runs after the batch has restored byte 0. It must still reach a valid (the new) target.

use std::sync::mpsc;

use callpatch_probes::code::{ArenaMode, WriteMethod};
use callpatch_probes::experiments::live_sites::{LiveSites, Placement, Tally};
use callpatch_probes::patch::trap::testing;
use callpatch_probes::patch::{late_trap_count, Protocol, Step};

fn late_trap(protocol: Protocol) {
    let bed = LiveSites::new(protocol, 1, Placement::At(0), ArenaMode::DualMap).unwrap();
    let w = bed.writer(WriteMethod::Alias).unwrap();
    let site = bed.sites()[0];
    let batch = bed.retarget(1, 0, 1);
    let late_before = late_trap_count();
    let held_before = testing::held();
    testing::hold_at(site);
    let (placed_tx, placed_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    std::thread::scope(|s| {
        // The patcher stops right after the int3 is on byte 0 (and synced).
        let (w, batch, bed) = (&w, &batch, &bed);
        let patcher = s.spawn(move || {
            bed.patch_stepped(w, protocol, batch, &mut |step| {
                if step == Step::Int3Placed {
                    placed_tx.send(()).unwrap();
                    go_rx.recv().unwrap();
                }
            })
        });
        placed_rx.recv().unwrap();
        // The caller now meets the int3 and is held inside its handler, before the lookup.
        let caller = s.spawn(|| {
            let mut t = Tally::default();
            bed.run(&mut t, 1);
            t
        });
        while testing::held() == held_before {
            std::thread::yield_now();
        }
        // The batch completes: byte 0 restored, slots idle. Only then does the handler go on.
        go_tx.send(()).unwrap();
        let report = patcher.join().unwrap().unwrap();
        assert_eq!(report.syncs, 3);
        assert_eq!(bed.arena().read(site, 1)[0], if protocol == Protocol::CsPrefix { 0x2e } else { 0xe8 });
        testing::release();
        let t = caller.join().unwrap();
        assert_eq!(t.hits, [0, 1], "{protocol}: the late trap must reach the new target");
        assert_eq!(t.misdirected, 0);
    });
    assert!(late_trap_count() > late_before, "{protocol}: the handler saw the batch finished");
}

/// One test for both protocols: the hold hook is process-wide, so they must not run in parallel.
#[test]
fn a_late_trap_takes_the_new_target() {
    late_trap(Protocol::Bp);
    late_trap(Protocol::CsPrefix);
}
