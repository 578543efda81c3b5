//! A program installs its own SIGTRAP disposition after the static calls were initialised. The next
//! update's `int3` would go to it (a crash, or death by SIGTRAP for `SIG_IGN`); the patcher must notice
//! and refuse, and the key must keep its target.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use callpatch_static_call::{static_call, static_call_update, Backend};

fn double(x: u64) -> u64 {
    x * 2
}
fn triple(x: u64) -> u64 {
    x * 3
}

static_call! {
    static SCALE: fn(u64) -> u64 = double;
}

#[inline(never)]
fn scale(x: u64) -> u64 {
    static_call!(SCALE(x))
}

extern "C" fn theirs(_: libc::c_int) {}

fn set_sigtrap(handler: usize) -> libc::sigaction {
    // SAFETY: plain sigaction calls with valid, fully initialised structs.
    unsafe {
        let mut new: libc::sigaction = std::mem::zeroed();
        new.sa_sigaction = handler;
        libc::sigemptyset(&mut new.sa_mask);
        let mut old: libc::sigaction = std::mem::zeroed();
        assert_eq!(libc::sigaction(libc::SIGTRAP, &new, &mut old), 0);
        old
    }
}

/// Stops the caller however the main thread leaves the scope (a failed assertion included).
struct StopOnDrop<'a>(&'a AtomicBool);
impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[test]
fn a_replaced_handler_makes_updates_refuse_not_crash() {
    assert_eq!(callpatch_static_call::init(), Backend::Inline, "this test needs the inline backend");
    static_call_update!(SCALE, triple).unwrap();
    let stop = AtomicBool::new(false);
    let (calls, wrong) = (AtomicU64::new(0), AtomicU64::new(0));
    let mut refused = 0;
    std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let y = scale(5);
                if y != 10 && y != 15 {
                    wrong.fetch_add(1, Ordering::Relaxed);
                }
                calls.fetch_add(1, Ordering::Relaxed);
            }
        });
        // 1000 refused updates while someone else's disposition is installed, a third under each.
        for (k, replacement) in [libc::SIG_IGN, libc::SIG_DFL, theirs as *const () as usize].into_iter().enumerate() {
            let ours = set_sigtrap(replacement);
            for _ in 0..(333 + usize::from(k == 0)) {
                let e = static_call_update!(SCALE, double).expect_err("the update must be refused");
                assert!(e.to_string().contains("SIGTRAP handler was replaced"), "{e}");
                refused += 1;
            }
            assert_eq!(scale(5), 15, "the key keeps its target");
            // Put ours back: updates work again.
            // SAFETY: restores the disposition read above.
            unsafe { assert_eq!(libc::sigaction(libc::SIGTRAP, &ours, std::ptr::null_mut()), 0) };
            static_call_update!(SCALE, double).unwrap();
            assert_eq!(scale(5), 10);
            static_call_update!(SCALE, triple).unwrap();
        }
    });
    assert_eq!(refused, 1000);
    assert_eq!(wrong.load(Ordering::Relaxed), 0, "calls that reached neither target");
    assert!(calls.load(Ordering::Relaxed) > 0);
    let paths = callpatch_static_call::status().updates;
    let p = paths.iter().find(|(k, _)| k.ends_with("SCALE")).map(|(_, p)| *p).unwrap_or_default();
    assert_eq!((p.failed, p.bp), (1000, 7), "the path of every update is reported: {paths:?}");
}
