//! A process already under a tracer when static calls initialise (a program started under gdb, or
//! attached to before its first update): `init` chooses the trap-free backend by itself and says why,
//! so every update goes ahead without an `int3` the tracer would swallow, and the callers keep getting
//! right answers.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use callpatch_static_call::{static_call_update, Backend};

mod common;
use common::scale::{call_until, double, scale, triple, SCALE};
use common::stop::{paths_of, StopOnDrop};
use common::tracer::{wait_for_tracer_pid, Tracer, PATIENCE};

#[test]
fn init_under_a_tracer_chooses_the_trap_free_backend_and_every_update_goes_ahead() {
    let stop = AtomicBool::new(false);
    let calls = AtomicU64::new(0);
    let wrong = std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        let caller = s.spawn(|| call_until(&stop, &calls));
        let tracer = Tracer::attach();
        wait_for_tracer_pid(tracer.pid as u32, "the tracer child seized every thread, but not all show it");

        assert_eq!(callpatch_static_call::init(), Backend::TrapFree, "a traced process must not get int3s");
        let reason = callpatch_static_call::status().trap_free_reason.unwrap_or_default();
        assert!(reason.contains(&format!("traced by process {}", tracer.pid)), "{reason}");

        for i in 0..1000 {
            if i % 2 == 0 {
                static_call_update!(SCALE, triple).unwrap();
            } else {
                static_call_update!(SCALE, double).unwrap();
            }
        }
        assert_eq!(scale(5), 10, "the last update set double");
        let deadline = Instant::now() + PATIENCE;
        while calls.load(Ordering::Relaxed) == 0 {
            assert!(Instant::now() < deadline, "the caller made no call in {PATIENCE:?}");
            std::thread::yield_now();
        }
        assert_eq!(tracer.swallowed.load(Ordering::Relaxed), 0, "a thread met an int3 under the tracer");
        let p = paths_of("SCALE");
        assert_eq!((p.trap_free, p.bp, p.failed), (1000, 0, 0), "{p:?}");
        stop.store(true, Ordering::Relaxed);
        caller.join().unwrap()
    });
    assert_eq!(wrong, 0, "calls that reached neither target");
}
