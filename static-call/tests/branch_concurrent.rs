//! Static branches updated while two threads evaluate them: every evaluation returns the old or the new
//! state, none returns a state outside its update's window (0 wrong), and once `enable` / `disable`
//! returns every thread sees the new state. Updates are bp batches (the inline backend): threads that
//! meet an `int3` mid-patch get the new instruction emulated.

use std::hint::black_box;

use callpatch_static_call::{static_branch, static_branch_likely, static_branch_unlikely, Backend};

mod common;
use common::branch::flip_under_evaluation;

static_branch! {
    static FLAG: StaticBranch = false;
    static FAST: StaticBranch = true;
}

/// Every site of FLAG, both forms, some inlined into this function and some not.
#[inline(never)]
fn flag_sites() -> [bool; 4] {
    [static_branch_unlikely!(FLAG), static_branch_likely!(FLAG), flag_unlikely(), flag_likely()]
}
#[inline(never)]
fn flag_unlikely() -> bool {
    black_box(static_branch_unlikely!(FLAG))
}
#[inline(never)]
fn flag_likely() -> bool {
    if static_branch_likely!(FLAG) {
        black_box(true)
    } else {
        false
    }
}

#[inline(never)]
fn fast_sites() -> [bool; 2] {
    [static_branch_likely!(FAST), static_branch_unlikely!(FAST)]
}

#[test]
fn every_evaluation_returns_the_old_or_the_new_state() {
    assert_eq!(callpatch_static_call::init(), Backend::Inline, "this test needs the inline backend");
    assert_eq!(callpatch_static_call::branch_status().backend, Some(Backend::Inline));
    let traps = callpatch_patcher::trap_count();

    let counts = flip_under_evaluation(2, 200, false, flag_sites, &|on| FLAG.set(on).unwrap());
    assert_eq!(counts.wrong, 0, "{counts:?}");
    assert_eq!(counts.trues + counts.falses, counts.evaluations, "{counts:?}");
    // Every thread checked every one of the 201 periods, on both states.
    assert!(counts.checked >= 2 * 201 * 4, "{counts:?}");
    assert!(counts.trues > 0 && counts.falses > 0, "{counts:?}");
    assert!(!FLAG.is_enabled(), "200 flips from false");
    assert_eq!(flag_sites(), [false; 4]);

    let counts =
        flip_under_evaluation(2, 101, true, fast_sites, &|on| if on { FAST.enable() } else { FAST.disable() }.unwrap());
    assert_eq!(counts.wrong, 0, "{counts:?}");
    assert!(!FAST.is_enabled(), "101 flips from true");
    assert_eq!(fast_sites(), [false; 2]);
    for s in FLAG.sites().iter().chain(&FAST.sites()) {
        let key_on = if s.key() == FLAG.addr() { FLAG.is_enabled() } else { FAST.is_enabled() };
        assert_eq!(s.insn(), Some(s.insn_for(key_on)), "site {:#x}", s.addr());
    }
    eprintln!("{counts:?}; traps emulated: {}", callpatch_patcher::trap_count() - traps);
    let (flag, fast) = (paths_of("::FLAG"), paths_of("::FAST"));
    assert_eq!((flag.bp, flag.failed, fast.bp, fast.failed), (200, 0, 101, 0), "{flag:?} {fast:?}");
}

/// The update paths `branch_status()` reports for the key whose name ends with `name`.
fn paths_of(name: &str) -> callpatch_static_call::UpdatePaths {
    let all = callpatch_static_call::branch_status().updates;
    all.iter().find(|(k, _)| k.ends_with(name)).map(|(_, p)| *p).unwrap_or_default()
}
