//! Updates while other threads call, and concurrent updates of two keys whose sites share a page.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use callpatch_patcher::page_size;
use callpatch_patcher::Insn;
use callpatch_static_call::{shim_of, Key};
use callpatch_static_call::{static_call, static_call_update};

/// Calls that reached each target of `CALLED` (counted by the targets themselves).
static REACHED: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];

/// Target `i` returns `x << 2 | i`, so the caller knows which target ran and that it got its argument.
fn t0(x: u64) -> u64 {
    REACHED[0].fetch_add(1, Ordering::Relaxed);
    x << 2
}
fn t1(x: u64) -> u64 {
    REACHED[1].fetch_add(1, Ordering::Relaxed);
    x << 2 | 1
}
fn t2(x: u64) -> u64 {
    REACHED[2].fetch_add(1, Ordering::Relaxed);
    x << 2 | 2
}

static_call! {
    static CALLED: fn(u64) -> u64 = t0;
}

#[inline(never)]
fn called_a(x: u64) -> u64 {
    static_call!(CALLED(x))
}
#[inline(never)]
fn called_b(x: u64) -> u64 {
    static_call!(CALLED(black_box(x)))
}

#[test]
fn update_while_two_threads_call() {
    let stop = AtomicBool::new(false);
    let running = AtomicU64::new(0);
    let (seen, updates) = std::thread::scope(|s| {
        let callers: Vec<_> = (0..2u64)
            .map(|id| {
                let (stop, running) = (&stop, &running);
                s.spawn(move || {
                    let mut seen = [0u64; 3];
                    let mut x = id << 40;
                    loop {
                        for f in [called_a, called_b] {
                            let r = f(black_box(x));
                            assert_eq!(r >> 2, x, "a call returned another argument's result");
                            assert!(r & 3 < 3, "a call reached no target: {r:#x}");
                            seen[(r & 3) as usize] += 1;
                        }
                        x = (x + 1) & ((1 << 60) - 1);
                        if x & 0xff == 0 {
                            if x & 0xffff_ffff == 0x100 {
                                running.fetch_add(1, Ordering::Relaxed); // once: this caller is calling
                            }
                            if stop.load(Ordering::Relaxed) {
                                break;
                            }
                        }
                    }
                    seen
                })
            })
            .collect();
        // Both callers are calling before the first update, and go on until after the last.
        while running.load(Ordering::Relaxed) < 2 {
            std::thread::yield_now();
        }
        let t = Instant::now();
        let mut updates = 0u64;
        while t.elapsed() < Duration::from_secs(1) {
            match updates % 3 {
                0 => static_call_update!(CALLED, t1),
                1 => static_call_update!(CALLED, t2),
                _ => static_call_update!(CALLED, t0),
            }
            .unwrap();
            updates += 1;
        }
        stop.store(true, Ordering::Relaxed);
        let seen = callers.into_iter().map(|c| c.join().unwrap()).fold([0u64; 3], |mut acc, s| {
            acc.iter_mut().zip(s).for_each(|(a, n)| *a += n);
            acc
        });
        (seen, updates)
    });
    let reached = REACHED.each_ref().map(|r| r.load(Ordering::Relaxed));
    assert_eq!(seen, reached, "calls seen by the callers vs calls counted by the targets");
    assert!(updates >= 3, "{updates} updates");
    assert!(seen.iter().sum::<u64>() >= 2 * 256, "{seen:?}");
}

fn a1(x: u64) -> u64 {
    x + 1
}
fn a2(x: u64) -> u64 {
    x + 2
}
fn b1(x: u64) -> u64 {
    x * 3
}
fn b2(x: u64) -> u64 {
    x * 4
}

static_call! {
    static PAGE_A: fn(u64) -> u64 = a1;
    static PAGE_B: fn(u64) -> u64 = b1;
}

// Sites of both keys side by side in each function: a few bytes apart, so on one page.
#[inline(never)]
fn both_1(x: u64) -> (u64, u64) {
    (static_call!(PAGE_A(x)), static_call!(PAGE_B(x)))
}
#[inline(never)]
fn both_2(x: u64) -> (u64, u64) {
    (static_call!(PAGE_B(x)) + 1, static_call!(PAGE_A(x)) + 1)
}
#[inline(never)]
fn both_3(x: u64) -> (u64, u64) {
    (static_call!(PAGE_A(x)) + 2, static_call!(PAGE_B(x)) + 2)
}

/// Every site of `key` calls `target`.
fn assert_calls(key: &Key, target: usize) {
    assert_eq!(key.target(), Some(target), "{}", key.name());
    for s in key.sites() {
        assert_eq!(s.insn(), Some(Insn::Call(target)), "{} site {:#x}", key.name(), s.addr());
    }
}

#[test]
fn two_keys_on_one_page_updated_concurrently_lose_no_update() {
    let page = page_size();
    let pages_a: Vec<usize> = PAGE_A.sites().iter().map(|s| s.addr() / page).collect();
    assert_eq!(pages_a.len(), 3);
    assert!(PAGE_B.sites().iter().any(|s| pages_a.contains(&(s.addr() / page))), "the two keys' sites share a page");
    const ROUNDS: usize = 2000;
    let go = Barrier::new(2);
    std::thread::scope(|s| {
        s.spawn(|| {
            go.wait();
            for i in 0..ROUNDS {
                if i % 2 == 0 { static_call_update!(PAGE_A, a2) } else { static_call_update!(PAGE_A, a1) }.unwrap();
            }
            static_call_update!(PAGE_A, a2).unwrap();
        });
        s.spawn(|| {
            go.wait();
            for i in 0..ROUNDS {
                if i % 2 == 0 { static_call_update!(PAGE_B, b2) } else { static_call_update!(PAGE_B, b1) }.unwrap();
            }
            static_call_update!(PAGE_B, b2).unwrap();
        });
    });
    // Whatever the interleaving, the last update of each key is in its sites.
    assert_calls(&PAGE_A, shim_of::<fn(u64) -> u64, _>(a2));
    assert_calls(&PAGE_B, shim_of::<fn(u64) -> u64, _>(b2));
    assert_eq!([both_1(10), both_2(10), both_3(10)], [(12, 40), (41, 13), (14, 42)]);
}

static_call! {
    static MAYBE: Option<fn(u64) -> u64> = None;
}

fn plus_one(x: u64) -> u64 {
    x + 1
}

#[inline(never)]
fn maybe(x: u64) -> u64 {
    static_call!(MAYBE(x))
}

#[test]
fn a_nullable_key_flipped_while_a_thread_calls_yields_zero_or_the_target() {
    // Disabled, a site is RET0 (`xor eax, eax`, nothing zeroes rax before it); a thread meeting the
    // int3 mid-patch has it emulated: either way a call returns 0 or x + 1, never what rax held.
    let stop = AtomicBool::new(false);
    let (zero, one) = (AtomicU64::new(0), AtomicU64::new(0));
    let wrong = std::thread::scope(|s| {
        let caller = s.spawn(|| {
            let mut wrong = 0u64;
            let mut x = 1000u64;
            while !stop.load(Ordering::Relaxed) {
                // rax holds x * 7 going in (a stale value a broken RET0 would return).
                let poison = black_box(x * 7);
                match maybe(black_box(poison / 7)) {
                    0 => zero.fetch_add(1, Ordering::Relaxed),
                    r if r == x + 1 => one.fetch_add(1, Ordering::Relaxed),
                    _ => {
                        wrong += 1;
                        0
                    }
                };
                x = x % 1_000_000 + 1000;
            }
            wrong
        });
        let t = Instant::now();
        let mut n = 0u64;
        while t.elapsed() < Duration::from_millis(500)
            || zero.load(Ordering::Relaxed) == 0
            || one.load(Ordering::Relaxed) == 0
        {
            if n.is_multiple_of(2) { static_call_update!(MAYBE, plus_one) } else { static_call_update!(MAYBE, None) }
                .unwrap();
            n += 1;
            assert!(t.elapsed() < Duration::from_secs(60), "the caller saw only one side in 60 s");
        }
        stop.store(true, Ordering::Relaxed);
        caller.join().unwrap()
    });
    assert_eq!(
        wrong,
        0,
        "calls that returned neither 0 nor x + 1 ({} zero, {} x + 1)",
        zero.into_inner(),
        one.into_inner()
    );
}
