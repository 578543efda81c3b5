//! A thread that blocks SIGTRAP (as thread pools that block every signal do) runs a static call while
//! the main thread updates it. An `int3` met by that thread would make the kernel reset SIGTRAP to
//! `SIG_DFL` for the whole process and kill it; the patcher must refuse the update instead, and the
//! key must keep a valid target. Once the thread is gone, updates work again.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;

use callpatch_static_call::{static_call_update, Backend};

mod common;
use common::scale::{call_until, double, scale, triple, SCALE};
use common::stop::{paths_of, StopOnDrop};

#[test]
fn updates_are_refused_while_a_thread_blocks_sigtrap_and_the_process_lives() {
    assert_eq!(callpatch_static_call::init(), Backend::Inline, "this test needs the inline backend");
    static_call_update!(SCALE, triple).unwrap();
    assert_eq!(scale(7), 21);

    let stop = AtomicBool::new(false);
    let calls = AtomicU64::new(0);
    let (blocked_tx, blocked_rx) = mpsc::channel();
    std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        let caller = s.spawn(|| {
            // SAFETY: a full, initialised signal set; this thread's mask only.
            unsafe {
                let mut all: libc::sigset_t = std::mem::zeroed();
                libc::sigfillset(&mut all);
                assert_eq!(libc::pthread_sigmask(libc::SIG_BLOCK, &all, std::ptr::null_mut()), 0);
            }
            blocked_tx.send(()).unwrap();
            call_until(&stop, &calls)
        });
        blocked_rx.recv().unwrap();
        let mut refused = 0;
        // Every update is a real change (triple -> double): an update to the current target writes nothing
        // and is no test.
        for i in 0..1000 {
            match static_call_update!(SCALE, double) {
                Ok(()) => panic!("update {i} went ahead while a thread blocks SIGTRAP"),
                Err(e) => {
                    let msg = e.to_string();
                    assert!(msg.contains("blocks SIGTRAP"), "{msg}");
                    refused += 1;
                }
            }
        }
        assert_eq!(scale(5), 15, "a refused update leaves the key on its last target");
        stop.store(true, Ordering::Relaxed);
        assert_eq!(caller.join().unwrap(), 0, "every call reached double or triple");
        assert_eq!(refused, 1000);
    });
    assert!(calls.load(Ordering::Relaxed) > 0);
    // The thread is gone: the set of threads changed, the scan runs again and finds nothing fatal.
    static_call_update!(SCALE, double).unwrap();
    assert_eq!(scale(5), 10);
    let p = paths_of("SCALE");
    assert_eq!((p.failed, p.bp), (1000, 2), "the path of every update is reported: {p:?}");
}
