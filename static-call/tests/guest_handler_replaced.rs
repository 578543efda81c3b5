//! A program installs its own SIGTRAP disposition after the static calls were initialised. The next
//! update's `int3` would go to it (a crash, or death by SIGTRAP for `SIG_IGN`); the patcher must notice
//! and refuse, and the key must keep its target.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use callpatch_static_call::{static_call_update, Backend};

mod common;
use common::scale::{call_until, double, scale, triple, SCALE};
use common::stop::{paths_of, StopOnDrop};

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

#[test]
fn a_replaced_handler_makes_updates_refuse_not_crash() {
    assert_eq!(callpatch_static_call::init(), Backend::Inline, "this test needs the inline backend");
    static_call_update!(SCALE, triple).unwrap();
    let stop = AtomicBool::new(false);
    let calls = AtomicU64::new(0);
    let mut refused = 0;
    let wrong = std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        let caller = s.spawn(|| call_until(&stop, &calls));
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
        stop.store(true, Ordering::Relaxed);
        caller.join().unwrap()
    });
    assert_eq!(refused, 1000);
    assert_eq!(wrong, 0, "calls that reached neither target");
    assert!(calls.load(Ordering::Relaxed) > 0);
    let p = paths_of("SCALE");
    assert_eq!((p.failed, p.bp), (1000, 7), "the path of every update is reported: {p:?}");
}
