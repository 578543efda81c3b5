//! Static branches: `enable` / `disable` flip every site of a key, in both forms (likely, unlikely),
//! for keys defined `false` and `true`; before init the sites take their generic stub and are already
//! right; after init every site holds the nop or the jump to its label, as its key's state says.

use std::hint::black_box;

use callpatch_patcher::Insn;
use callpatch_static_call::{static_branch, static_branch_likely, static_branch_unlikely, Backend, StaticBranch};

static_branch! {
    /// Off by default.
    static OFF: StaticBranch = false;
    /// On by default.
    pub static ON: StaticBranch = true;
}

// Several sites of each key and form, some in their own functions, some inlined.
#[inline(never)]
fn off_unlikely(x: u64) -> u64 {
    if static_branch_unlikely!(OFF) {
        black_box(x + 1)
    } else {
        x
    }
}
#[inline(never)]
fn off_likely(x: u64) -> u64 {
    if static_branch_likely!(OFF) {
        x + 1
    } else {
        black_box(x)
    }
}
#[inline(never)]
fn on_unlikely(x: u64) -> u64 {
    if static_branch_unlikely!(ON) {
        black_box(x + 1)
    } else {
        x
    }
}
#[inline(never)]
fn on_likely(x: u64) -> u64 {
    if static_branch_likely!(self::ON) {
        x + 1
    } else {
        black_box(x)
    }
}

/// What every site of both keys evaluates to: (OFF sites, ON sites), each `Some(state)` when all of that
/// key's evaluations agree, `None` when they disagree.
fn evaluate() -> (Option<bool>, Option<bool>) {
    let off = [
        off_unlikely(black_box(0)) == 1,
        off_likely(black_box(0)) == 1,
        static_branch_unlikely!(OFF),
        static_branch_likely!(OFF),
        black_box(static_branch_unlikely!(OFF)),
    ];
    let on = [
        on_unlikely(black_box(0)) == 1,
        on_likely(black_box(0)) == 1,
        static_branch_unlikely!(ON),
        static_branch_likely!(ON),
        black_box(static_branch_likely!(ON)),
    ];
    let agree = |v: &[bool]| v.iter().all(|&b| b == v[0]).then_some(v[0]);
    (agree(&off), agree(&on))
}

/// Every site of `key` holds the form its state asks for.
fn assert_sites_patched(key: &StaticBranch) {
    let sites = key.sites();
    assert!(sites.len() >= 4, "{}: {} sites", key.name(), sites.len());
    assert!(sites.iter().any(|s| s.is_likely()) && sites.iter().any(|s| !s.is_likely()));
    for s in &sites {
        assert_eq!(s.insn(), Some(s.insn_for(key.is_enabled())), "{} site {:#x}", key.name(), s.addr());
    }
}

#[test]
fn enable_and_disable_flip_every_site() {
    // Before init: every site jumps to its stub, which reads the state byte.
    for s in OFF.sites().iter().chain(&ON.sites()) {
        assert_eq!(s.insn(), Some(s.initial_insn()), "site {:#x} before init", s.addr());
        assert_eq!(s.insn(), Some(Insn::Jmp(s.stub())));
    }
    assert_eq!(evaluate(), (Some(false), Some(true)), "before init");
    assert!(!OFF.is_enabled() && ON.is_enabled());

    assert_eq!(callpatch_static_call::init(), Backend::Inline, "this test needs the inline backend");
    let status = callpatch_static_call::branch_status();
    assert_eq!(status.backend, Some(Backend::Inline));
    assert!(status.skipped.is_empty(), "{:?}", status.skipped);
    assert_eq!(status.patched_sites, OFF.sites().len() + ON.sites().len());
    assert_sites_patched(&OFF);
    assert_sites_patched(&ON);
    assert_eq!(evaluate(), (Some(false), Some(true)), "after init");

    for round in 0..3 {
        OFF.enable().unwrap();
        assert_eq!(evaluate(), (Some(true), Some(true)), "round {round}: OFF enabled");
        ON.disable().unwrap();
        assert_eq!(evaluate(), (Some(true), Some(false)), "round {round}: ON disabled");
        assert_sites_patched(&OFF);
        assert_sites_patched(&ON);
        // Again: nothing to patch, still right.
        ON.disable().unwrap();
        OFF.enable().unwrap();
        assert_eq!(evaluate(), (Some(true), Some(false)), "round {round}: repeated");
        OFF.disable().unwrap();
        ON.set(true).unwrap();
        assert_eq!(evaluate(), (Some(false), Some(true)), "round {round}: back");
        assert!(!OFF.is_enabled() && ON.is_enabled());
    }
    let (off, on) = (paths_of("::OFF"), paths_of("::ON"));
    assert_eq!((off.bp, off.unchanged, off.failed), (6, 3, 0), "{off:?}");
    assert_eq!((on.bp, on.unchanged, on.failed), (6, 3, 0), "{on:?}");
}

/// The update paths `branch_status()` reports for the key whose name ends with `name`.
fn paths_of(name: &str) -> callpatch_static_call::UpdatePaths {
    let all = callpatch_static_call::branch_status().updates;
    all.iter().find(|(k, _)| k.ends_with(name)).map(|(_, p)| *p).unwrap_or_default()
}
