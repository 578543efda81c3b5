//! `fork()` while another thread updates a static call: each child must start with every lock free
//! and no update in flight, and must be able to update on its own. Before the patcher and the static
//! calls held their locks across `fork`, children hung in their first update.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use callpatch_static_call::{static_call_update, Backend};

mod common;
use common::scale::{double, scale, triple, SCALE};

/// The child's whole life: one update of its own, and a call that sees it. Exit 0 on success.
fn child() -> ! {
    let ok = static_call_update!(SCALE, double).is_ok() && scale(5) == 10;
    // SAFETY: `_exit` ends the child without running the parent's atexit handlers or test harness.
    unsafe { libc::_exit(if ok { 0 } else { 1 }) }
}

#[test]
fn a_hundred_children_forked_during_updates_all_update_and_exit() {
    assert_eq!(callpatch_static_call::init(), Backend::Inline, "this test needs the inline backend");
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let r = if n.is_multiple_of(2) {
                    static_call_update!(SCALE, triple)
                } else {
                    static_call_update!(SCALE, double)
                };
                r.unwrap();
                n += 1;
            }
        });
        let mut failed = Vec::new();
        for i in 0..100 {
            // SAFETY: the child runs only `child`, which ends in `_exit`.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0, "fork failed: {}", std::io::Error::last_os_error());
            if pid == 0 {
                child();
            }
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut status = 0;
            loop {
                // SAFETY: waits for our own child; `status` is a valid out-pointer.
                let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
                if r == pid {
                    break;
                }
                if Instant::now() > deadline {
                    // SAFETY: our own child, hung: end it and reap it.
                    unsafe {
                        libc::kill(pid, libc::SIGKILL);
                        libc::waitpid(pid, &mut status, 0);
                    }
                    failed.push(format!("child {i} hung"));
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) && failed.len() < 100 {
                failed.push(format!("child {i}: status {status:#x}"));
            }
        }
        stop.store(true, Ordering::Relaxed);
        assert!(failed.is_empty(), "{failed:?}");
    });
}
