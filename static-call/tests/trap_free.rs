//! The trap-free backend: never an `int3`, so a thread that blocks SIGTRAP (as thread pools that block
//! every signal do) keeps calling through every update, and no update is refused for it. Sites inside
//! one aligned 8-byte word call their target directly and change with one 8-byte store; the others
//! stay on their trampoline, whose jmp changes the same way.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;

use callpatch_patcher::{fits_one_word, trap_count, Insn};
use callpatch_static_call::{static_call, static_call_update, Backend};

// The stop guard and path lookup only: this test has keys of its own.
#[path = "common/stop.rs"]
mod stop;
use stop::{paths_of, StopOnDrop};

fn double(x: u64) -> u64 {
    x * 2
}
fn triple(x: u64) -> u64 {
    x * 3
}

static_call! {
    static SCALE: fn(u64) -> u64 = double;
    static HOOK: Option<fn(u64) -> u64> = None;
}

// Several copies of each use, so that some sites fit one word and some straddle two.
#[inline(never)]
fn scale_a(x: u64) -> u64 {
    static_call!(SCALE(x))
}
#[inline(never)]
fn scale_b(x: u64) -> u64 {
    black_box(static_call!(SCALE(black_box(x))))
}
#[inline(never)]
fn scale_c(x: u64) -> u64 {
    let y = black_box(x);
    static_call!(SCALE(y))
}
#[inline(never)]
fn hook_a(x: u64) -> u64 {
    static_call!(HOOK(x))
}
#[inline(never)]
fn hook_b(x: u64) -> u64 {
    black_box(static_call!(HOOK(black_box(x))))
}

#[test]
fn updates_never_trap_and_a_thread_that_blocks_sigtrap_keeps_calling() {
    assert_eq!(callpatch_static_call::init_with(Backend::TrapFree), Backend::TrapFree);
    let status = callpatch_static_call::status();
    assert_eq!(status.trap_free_reason.as_deref(), Some("requested"));
    // Every site either is patched (fits one word) or is skipped with the trap-free reason.
    for site in callpatch_static_call::sites::all() {
        let fits = fits_one_word(site.addr(), 5);
        let skipped = status.skipped.iter().any(|(s, why)| s.addr() == site.addr() && why.contains("trap-free"));
        assert_eq!(fits, !skipped, "site {:#x}: {:?}", site.addr(), site.insn());
    }
    assert_eq!(status.patched_sites + status.skipped.len(), callpatch_static_call::sites::all().len());

    let traps_before = trap_count();
    let stop = AtomicBool::new(false);
    let (calls, wrong) = (AtomicU64::new(0), AtomicU64::new(0));
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        s.spawn(|| {
            // SAFETY: a full, initialised signal set; this thread's mask only.
            unsafe {
                let mut all: libc::sigset_t = std::mem::zeroed();
                libc::sigfillset(&mut all);
                assert_eq!(libc::pthread_sigmask(libc::SIG_BLOCK, &all, std::ptr::null_mut()), 0);
            }
            ready_tx.send(()).unwrap();
            while !stop.load(Ordering::Relaxed) {
                let x = black_box(5);
                let scaled = [scale_a(x), scale_b(x), scale_c(x)];
                let hooked = [hook_a(x), hook_b(x)];
                let ok = scaled.iter().all(|&y| y == 10 || y == 15) && hooked.iter().all(|&y| y == 0 || y == 6);
                if !ok {
                    wrong.fetch_add(1, Ordering::Relaxed);
                }
                calls.fetch_add(1, Ordering::Relaxed);
            }
        });
        ready_rx.recv().unwrap();
        for i in 0..1000 {
            if i % 2 == 0 {
                static_call_update!(SCALE, triple).unwrap();
                static_call_update!(HOOK, Some(|x: u64| x + 1)).unwrap();
            } else {
                static_call_update!(SCALE, double).unwrap();
                static_call_update!(HOOK, None).unwrap();
            }
        }
    });
    assert_eq!(wrong.load(Ordering::Relaxed), 0, "calls that reached neither target");
    assert!(calls.load(Ordering::Relaxed) > 0);
    assert_eq!(trap_count(), traps_before, "a trap-free update met an int3");
    let (scale, hook) = (paths_of("SCALE"), paths_of("HOOK"));
    assert_eq!((scale.trap_free, hook.trap_free), (1000, 1000), "{scale:?} {hook:?}");
    assert_eq!(scale.bp + scale.failed + hook.bp + hook.failed, 0, "{scale:?} {hook:?}");

    // The last update set `double` and `None`: direct sites call `double`'s shim, the rest the trampoline.
    assert_eq!([scale_a(4), scale_b(4), scale_c(4), hook_a(4), hook_b(4)], [8, 8, 8, 0, 0]);
    let trampolines = [SCALE.trampoline(), HOOK.trampoline()];
    for site in callpatch_static_call::sites::all() {
        let insn = site.insn().expect("a static call form");
        let on_trampoline = matches!(insn, Insn::Call(t) if trampolines.contains(&t));
        assert_eq!(on_trampoline, !fits_one_word(site.addr(), 5), "site {:#x}: {insn:?}", site.addr());
    }
}
