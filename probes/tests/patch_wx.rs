//! W^X: patching a dual-mapped arena never makes any mapping of the process writable and executable,
//! neither between the steps of a batch nor after it. Its own test binary, so no other test's RWX
//! arena or mprotect window is in the maps meanwhile.

use std::sync::atomic::{AtomicBool, Ordering};

use callpatch_probes::code::{ArenaMode, WriteMethod};
use callpatch_probes::experiments::live_sites::{LiveSites, Placement, Tally};
use callpatch_probes::patch::maps::read_maps;
use callpatch_probes::patch::Protocol;

fn assert_no_wx(when: &str) {
    let maps = read_maps().unwrap();
    let wx: Vec<_> = maps.iter().filter(|m| m.is_wx()).collect();
    assert!(wx.is_empty(), "{when}: writable and executable mappings: {wx:?}");
}

/// Sets the flag when dropped.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[test]
fn dual_mapped_patching_keeps_every_mapping_w_xor_x() {
    assert_no_wx("at start");
    for protocol in Protocol::SAFE {
        let bed = LiveSites::new(protocol, 64, Placement::Spread, ArenaMode::DualMap).unwrap();
        let w = bed.writer(WriteMethod::Alias).unwrap();
        // The bed's code is executable through one view and writable through another, never both.
        let maps = read_maps().unwrap();
        let exec = maps.iter().find(|m| m.start <= bed.arena().base() && bed.arena().base() < m.end).unwrap();
        assert_eq!(&exec.perms[..3], "r-x");
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            // The caller stops however this closure ends, a failed assertion included (a test that
            // fails must not hang in the scope's join).
            let _stop = StopOnDrop(&stop);
            let caller = s.spawn(|| {
                let mut t = Tally::default();
                let mut iterations = 0;
                while !stop.load(Ordering::Relaxed) {
                    bed.run(&mut t, 16);
                    iterations += 16;
                }
                (t, iterations)
            });
            for round in 0..6 {
                let (from, to) = if round % 2 == 0 { (0, 1) } else { (1, 0) };
                let mut steps = 0;
                bed.patch_stepped(&w, protocol, &bed.retarget(64, from, to), &mut |step| {
                    steps += 1;
                    assert_no_wx(&format!("{protocol} during {step:?}"));
                })
                .unwrap();
                assert_no_wx(&format!("{protocol} after batch {round}"));
                let expect_steps = if matches!(protocol, Protocol::Aligned { .. }) { 0 } else { 3 };
                assert_eq!(steps, expect_steps);
            }
            stop.store(true, Ordering::Relaxed);
            let (t, iterations) = caller.join().unwrap();
            assert_eq!((t.arrived(), t.misdirected), (iterations * 64, 0));
        });
    }
    assert_no_wx("at the end");
}
