//! Static branches with the generic backend: nothing is patched, every site keeps jumping to its stub,
//! which tests the key's state byte; enable and disable are one store, and still exact under threads
//! that evaluate meanwhile.

use callpatch_static_call::{static_branch, static_branch_likely, static_branch_unlikely, Backend};

mod common;
use common::branch::flip_under_evaluation;

static_branch! {
    static OFF: StaticBranch = false;
    static ON: StaticBranch = true;
}

#[inline(never)]
fn off_sites() -> [bool; 2] {
    [static_branch_unlikely!(OFF), static_branch_likely!(OFF)]
}
#[inline(never)]
fn on_sites() -> [bool; 2] {
    [static_branch_unlikely!(ON), static_branch_likely!(ON)]
}

#[test]
fn generic_branches_read_the_state_byte() {
    assert_eq!(callpatch_static_call::init_with(Backend::Generic), Backend::Generic);
    let status = callpatch_static_call::branch_status();
    assert_eq!(status.backend, Some(Backend::Generic));
    assert_eq!(status.patched_sites, 0);
    assert_eq!((off_sites(), on_sites()), ([false; 2], [true; 2]));

    let counts = flip_under_evaluation(2, 100, false, off_sites, &|on| OFF.set(on).unwrap());
    assert_eq!(counts.wrong, 0, "{counts:?}");
    let counts = flip_under_evaluation(2, 101, true, on_sites, &|on| ON.set(on).unwrap());
    assert_eq!(counts.wrong, 0, "{counts:?}");
    assert_eq!((off_sites(), on_sites()), ([false; 2], [false; 2]));
    OFF.enable().unwrap();
    assert_eq!(off_sites(), [true; 2]);

    // Never patched: every site still jumps to its stub.
    for s in OFF.sites().iter().chain(&ON.sites()) {
        assert_eq!(s.insn(), Some(s.initial_insn()), "site {:#x}", s.addr());
    }
    let (off, on) = (paths_of("::OFF"), paths_of("::ON"));
    assert_eq!((off.generic, on.generic, off.bp + on.bp + off.failed + on.failed), (101, 101, 0), "{off:?} {on:?}");
}

/// The update paths `branch_status()` reports for the key whose name ends with `name`.
fn paths_of(name: &str) -> callpatch_static_call::UpdatePaths {
    let all = callpatch_static_call::branch_status().updates;
    all.iter().find(|(k, _)| k.ends_with(name)).map(|(_, p)| *p).unwrap_or_default()
}
