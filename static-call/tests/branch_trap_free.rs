//! Static branches with the trap-free backend: sites inside one aligned 8-byte word are patched with
//! one 8-byte store each, never an `int3`; the others would keep their generic stub. The site's
//! `.p2align 3,,4` puts every site inside one word, so every site is patched.

use std::hint::black_box;

use callpatch_patcher::{fits_one_word, trap_count};
use callpatch_static_call::{static_branch, static_branch_likely, static_branch_unlikely, Backend};

mod common;
use common::branch::flip_under_evaluation;

static_branch! {
    static FLAG: StaticBranch = false;
}

// Sites at assorted offsets: each function places its site after a different amount of code.
#[inline(never)]
fn sites() -> [bool; 5] {
    [static_branch_unlikely!(FLAG), static_branch_likely!(FLAG), site_a(black_box(1)), site_b(black_box(2)), site_c()]
}
#[inline(never)]
fn site_a(x: u64) -> bool {
    let y = black_box(x.wrapping_mul(3));
    static_branch_unlikely!(FLAG) && y != 0
}
#[inline(never)]
fn site_b(x: u64) -> bool {
    let y = black_box(x ^ 0x55);
    let z = black_box(y.rotate_left(3));
    static_branch_likely!(FLAG) || z == 0
}
#[inline(never)]
fn site_c() -> bool {
    black_box(static_branch_unlikely!(FLAG))
}

#[test]
fn trap_free_updates_store_whole_sites_and_never_trap() {
    assert_eq!(callpatch_static_call::init_with(Backend::TrapFree), Backend::TrapFree);
    let status = callpatch_static_call::branch_status();
    assert_eq!(status.backend, Some(Backend::TrapFree));
    let all = FLAG.sites();
    assert!(all.len() >= 5, "{all:x?}");
    for s in &all {
        assert!(fits_one_word(s.addr(), 5), "site {:#x} straddles an aligned 8-byte word", s.addr());
        assert_eq!(s.insn(), Some(s.insn_for(false)), "site {:#x} patched at init", s.addr());
    }
    assert!(status.skipped.is_empty(), "{:?}", status.skipped);
    assert_eq!(status.patched_sites, callpatch_static_call::branch_sites::all().len());

    let traps = trap_count();
    let counts = flip_under_evaluation(2, 200, false, sites, &|on| FLAG.set(on).unwrap());
    assert_eq!(counts.wrong, 0, "{counts:?}");
    assert!(counts.checked >= 2 * 201 * 5, "{counts:?}");
    assert_eq!(trap_count(), traps, "a trap-free update met an int3");
    FLAG.enable().unwrap();
    assert_eq!(sites(), [true; 5]);
    for s in &all {
        assert_eq!(s.insn(), Some(s.insn_for(true)), "site {:#x}", s.addr());
    }
    let flag = paths_of("::FLAG");
    assert_eq!((flag.trap_free, flag.bp, flag.failed), (201, 0, 0), "{flag:?}");
}

/// The update paths `branch_status()` reports for the key whose name ends with `name`.
fn paths_of(name: &str) -> callpatch_static_call::UpdatePaths {
    let all = callpatch_static_call::branch_status().updates;
    all.iter().find(|(k, _)| k.ends_with(name)).map(|(_, p)| *p).unwrap_or_default()
}
