//! Two threads flip two static branch keys whose sites share a page of text, a third retargets a static
//! call whose sites are on that page too, all at once, while a fourth evaluates: no update is lost (each
//! key ends in the state its last update set, every site holds that key's form), every update succeeds,
//! and the evaluating thread's static call reaches one of its two targets throughout.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Barrier;

use callpatch_patcher::page_size;
use callpatch_static_call::{
    static_branch, static_branch_likely, static_branch_unlikely, static_call, static_call_update, Backend, StaticBranch,
};

#[path = "common/stop.rs"]
#[allow(dead_code)] // the stop guard only
mod stop;
use stop::StopOnDrop;

static_branch! {
    static A: StaticBranch = false;
    static B: StaticBranch = true;
}

fn plus1(x: u64) -> u64 {
    x + 1
}
fn plus2(x: u64) -> u64 {
    x + 2
}
static_call! {
    static ADD: fn(u64) -> u64 = plus1;
}

/// Sites of both keys and of the static call in one small function: on one page (checked below).
#[inline(never)]
fn mixed(x: u64) -> (bool, bool, bool, bool, u64) {
    (
        static_branch_unlikely!(A),
        static_branch_likely!(A),
        static_branch_unlikely!(B),
        static_branch_likely!(B),
        static_call!(ADD(black_box(x))),
    )
}

const FLIPS_A: u64 = 301;
const FLIPS_B: u64 = 200;
const CALL_UPDATES: u64 = 151;

#[test]
fn concurrent_updates_of_keys_on_one_page_are_never_lost() {
    assert_eq!(callpatch_static_call::init(), Backend::Inline, "this test needs the inline backend");
    let page = |a: usize| a / page_size();
    let (a_sites, b_sites) = (A.sites(), B.sites());
    assert!(
        a_sites.iter().any(|a| b_sites.iter().any(|b| page(a.addr()) == page(b.addr()))),
        "no site of A shares a page with a site of B: {a_sites:x?} {b_sites:x?}"
    );

    let stop = AtomicBool::new(false);
    let (evaluations, wrong) = (AtomicU64::new(0), AtomicU64::new(0));
    let start = Barrier::new(3);
    std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let (au, al, bu, bl, sum) = mixed(black_box(10));
                // Both forms of one key may disagree only mid-update; the call reaches one of two targets.
                if !(sum == 11 || sum == 12) {
                    wrong.fetch_add(1, Ordering::Relaxed);
                }
                black_box((au, al, bu, bl));
                evaluations.fetch_add(1, Ordering::Relaxed);
            }
        });
        let flip = |key: &'static StaticBranch, flips: u64, initial: bool| {
            let start = &start;
            move || {
                start.wait();
                let mut state = initial;
                for _ in 0..flips {
                    state = !state;
                    key.set(state).unwrap();
                    // Nobody else writes this key: what this thread set is what it reads.
                    assert_eq!(key.is_enabled(), state, "{}", key.name());
                }
            }
        };
        let a = s.spawn(flip(&A, FLIPS_A, false));
        let b = s.spawn(flip(&B, FLIPS_B, true));
        start.wait();
        for i in 0..CALL_UPDATES {
            if i % 2 == 0 { static_call_update!(ADD, plus2) } else { static_call_update!(ADD, plus1) }.unwrap();
        }
        a.join().unwrap();
        b.join().unwrap();
    });
    assert_eq!(wrong.load(Ordering::Relaxed), 0);
    assert!(evaluations.load(Ordering::Relaxed) > 0);

    // The last updates: A flipped an odd number of times from false, B an even number from true, the
    // static call an odd number of times from plus1.
    assert!(A.is_enabled() && B.is_enabled());
    assert_eq!(mixed(10), (true, true, true, true, 12));
    let a_sites = a_sites.into_iter().map(|s| (s, A.is_enabled()));
    for (site, on) in a_sites.chain(b_sites.into_iter().map(|s| (s, B.is_enabled()))) {
        assert_eq!(site.insn(), Some(site.insn_for(on)), "site {:#x}", site.addr());
    }
}
