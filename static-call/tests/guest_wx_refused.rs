//! A process whose W^X policy refuses writable code (`prctl(PR_SET_MDWE)`, what systemd's
//! `MemoryDenyWriteExecute=` sets; SELinux `execmem` refuses the same `mprotect`): static calls fall back
//! to the generic backend, say so once on stderr, and every call stays correct. The policy cannot be
//! lifted once set, so it runs in a child: this test binary again, running only the ignored test below.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use callpatch_static_call::{static_call_update, Backend};

mod common;
use common::scale::{call_until, double, scale, triple, SCALE};
use common::stop::{paths_of, StopOnDrop};

/// `prctl` option and flag (linux/prctl.h, Linux 6.3): refuse every mapping that is, or would become,
/// writable and executable, or executable where it was not.
const PR_SET_MDWE: libc::c_int = 65;
const PR_MDWE_REFUSE_EXEC_GAIN: libc::c_ulong = 1;

#[test]
fn under_mdwe_static_calls_fall_back_to_generic_say_so_once_and_keep_calling_right() {
    let out = common::child::passes("child_under_mdwe");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let said: Vec<&str> = stderr.lines().filter(|l| l.starts_with("callpatch: static_call:")).collect();
    assert_eq!(said.len(), 1, "the fallback is said once, not per update: {said:#?}");
    assert!(said[0].contains("generic static calls") && said[0].contains("cannot be made writable"), "{}", said[0]);
}

#[test]
#[ignore = "run by the test above in a child process: PR_SET_MDWE cannot be undone"]
fn child_under_mdwe() {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) };
    assert_eq!(rc, 0, "prctl(PR_SET_MDWE) failed (Linux 6.3 or later needed): {}", std::io::Error::last_os_error());
    let stop = AtomicBool::new(false);
    let calls = AtomicU64::new(0);
    let wrong = std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        let caller = s.spawn(|| call_until(&stop, &calls));
        assert_eq!(callpatch_static_call::init(), Backend::Generic, "{:?}", callpatch_static_call::status());
        for i in 0..1000 {
            if i % 2 == 0 {
                static_call_update!(SCALE, triple).unwrap();
                assert_eq!(scale(5), 15);
            } else {
                static_call_update!(SCALE, double).unwrap();
                assert_eq!(scale(5), 10);
            }
        }
        while calls.load(Ordering::Relaxed) == 0 {
            std::thread::yield_now();
        }
        let p = paths_of("SCALE");
        assert_eq!((p.generic, p.bp, p.trap_free, p.failed), (1000, 0, 0, 0), "{p:?}");
        stop.store(true, Ordering::Relaxed);
        caller.join().unwrap()
    });
    assert_eq!(wrong, 0, "calls that reached neither target");
    // The text was never made writable: every executable mapping is still read-execute.
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    assert!(maps.lines().all(|l| !l.contains(" rwx")), "{maps}");
}
