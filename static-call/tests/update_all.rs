//! Several keys in one update: `static_call_update! { A => f, B => g, .. }` patches every trampoline and
//! site of every key in one batch, three syncs in all, while a thread calls every key.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use callpatch_patcher::sync_count;
use callpatch_static_call::{static_call, static_call_update, Backend, UpdateError};

mod common;
use common::stop::{paths_of, StopOnDrop};

/// Defines key `$k` with its two targets: `$a` returns `x * 64 + $i`, `$b` returns `x * 64 + 32 + $i`,
/// so a result names its key and which target ran; and `$site`, a function with two sites of it.
macro_rules! keys {
    ($($k:ident $a:ident $b:ident $site:ident $i:literal;)*) => {
        $(
            fn $a(x: u64) -> u64 {
                x * 64 + $i
            }
            fn $b(x: u64) -> u64 {
                x * 64 + 32 + $i
            }
            static_call! {
                static $k: fn(u64) -> u64 = $a;
            }
            #[inline(never)]
            fn $site(x: u64) -> [u64; 2] {
                [static_call!($k(x)), static_call!($k(black_box(x)))]
            }
        )*
        /// Every key's sites, in key order.
        const SITES: [fn(u64) -> [u64; 2]; 10] = [$($site),*];
        /// Every key to its `b` target (`to_b`) or back to its `a` target, in one update.
        fn to_b() -> Result<(), UpdateError> {
            static_call_update! { $($k => $b),* }
        }
        fn to_a() -> Result<(), UpdateError> {
            static_call_update! { $($k => $a,)* }
        }
    };
}

keys! {
    K0 a0 b0 s0 0; K1 a1 b1 s1 1; K2 a2 b2 s2 2; K3 a3 b3 s3 3; K4 a4 b4 s4 4;
    K5 a5 b5 s5 5; K6 a6 b6 s6 6; K7 a7 b7 s7 7; K8 a8 b8 s8 8; K9 a9 b9 s9 9;
}

/// The tests of this file take turns: the first counts every sync of the process.
static SERIAL: Mutex<()> = Mutex::new(());

static_call! {
    static HOOK: Option<fn(u64) -> u64> = None;
}

#[inline(never)]
fn hook(x: u64) -> u64 {
    static_call!(HOOK(x))
}

/// Whether every key's sites run target `b` (else `a`); panics on a result that is neither.
fn all_on_b(x: u64) -> [bool; 10] {
    let mut on_b = [false; 10];
    for (i, site) in SITES.iter().enumerate() {
        for r in site(x) {
            assert_eq!(r / 64, x, "key K{i} returned another argument's result: {r}");
            assert_eq!(r % 32, i as u64, "a site of K{i} reached another key's target: {r}");
            on_b[i] = r % 64 >= 32;
        }
    }
    on_b
}

#[test]
fn ten_keys_change_in_one_batch_of_three_syncs_while_a_thread_calls_them_all() {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    assert_eq!(
        callpatch_static_call::init(),
        Backend::Inline,
        "inline static calls unavailable: {:?}",
        callpatch_static_call::status()
    );
    assert_eq!(callpatch_static_call::status().patched_sites, 21, "10 keys × 2 sites, and HOOK's");
    let stop = AtomicBool::new(false);
    let calls = AtomicU64::new(0);
    std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        let caller = s.spawn(|| {
            let mut x = 1u64;
            while !stop.load(Ordering::Relaxed) {
                // Each key's two sites may be on either side of an update, but each result is exact.
                all_on_b(x);
                x = (x + 1) % (1 << 50);
                calls.fetch_add(1, Ordering::Relaxed);
            }
        });
        while calls.load(Ordering::Relaxed) == 0 {
            std::thread::yield_now();
        }
        const UPDATES: u64 = 100;
        let before = sync_count();
        for n in 0..UPDATES {
            if n % 2 == 0 { to_b() } else { to_a() }.unwrap();
            assert_eq!(all_on_b(7), [n % 2 == 0; 10], "after update {n}, every key is on its new target");
        }
        let syncs = sync_count() - before;
        assert_eq!(syncs, 3 * UPDATES, "{UPDATES} updates of 10 keys each: 3 syncs per update, not per key");
        stop.store(true, Ordering::Relaxed);
        caller.join().unwrap();
    });
    assert_eq!(paths_of("K3").bp, 100, "{:?}", paths_of("K3"));
}

#[test]
fn one_update_mixes_targets_none_and_some_and_refuses_a_repeated_key() {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    static_call_update! { HOOK => Some(|x: u64| x + 1), K0 => a0 }.unwrap();
    assert_eq!(hook(5), 6);
    static_call_update! { HOOK => None }.unwrap();
    assert_eq!(hook(5), 0, "a disabled key's call returns 0");
    let err = static_call_update! { HOOK => Some(|x: u64| x + 2), HOOK => None }.unwrap_err();
    assert!(matches!(err, UpdateError::Repeated { key } if key.ends_with("HOOK")), "{err}");
    assert_eq!(hook(5), 0, "a refused update changes nothing");
}
