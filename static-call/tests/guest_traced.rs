//! A process runs under a tracer that swallows SIGTRAP, as gdb does by default, while a thread calls
//! through a static call and the main thread updates it. A traced thread that meets an `int3` stops and
//! the tracer, not our handler, gets the trap: resumed without the signal, the thread goes on inside the
//! half-written call instruction and crashes or calls garbage. The patcher must refuse every update while
//! any thread has a tracer (a clear error, the key on its last target) and the caller must keep getting
//! right answers; once the tracer is gone, updates work again.
//!
//! The tracer is a forked child (a thread group cannot trace itself) that seizes every thread of this
//! process, swallows SIGTRAP and passes every other signal on.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod common;
use common::scale::{call_until, double, scale, triple, SCALE};
use common::stop::StopOnDrop;
use common::tracer::{wait_for_tracer_pid, Tracer, PATIENCE};

use callpatch_static_call::{static_call_update, Backend};

#[test]
fn updates_are_refused_while_a_tracer_that_swallows_sigtrap_is_attached() {
    assert_eq!(callpatch_static_call::init(), Backend::Inline, "this test needs the inline backend");
    static_call_update!(SCALE, triple).unwrap();
    assert_eq!(scale(7), 21);

    let stop = AtomicBool::new(false);
    let calls = AtomicU64::new(0);
    let wait_for_calls_past = |n: u64, what: &str| {
        let deadline = Instant::now() + PATIENCE;
        while calls.load(Ordering::Relaxed) <= n {
            assert!(Instant::now() < deadline, "the caller made no call {what} in {PATIENCE:?}");
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        let caller = s.spawn(|| call_until(&stop, &calls));
        wait_for_calls_past(0, "after it started");

        let tracer = Tracer::attach();
        wait_for_tracer_pid(tracer.pid as u32, "the tracer child seized every thread, but not all show it");
        // The guard trusts a clean scan for 50 ms while the thread count stays the same (a documented
        // hole); the count changed since the last update, but let no scan from before the attach count.
        std::thread::sleep(Duration::from_millis(60));

        let traced_from = calls.load(Ordering::Relaxed);
        let (mut refused, mut updated) = (0, 0);
        let mut current = 15;
        // Every update is a real change (to the target the key does not have): an update to the current
        // target writes nothing, traps nowhere and is no test.
        for i in 0..1000 {
            let (result, next) = if current == 15 {
                (static_call_update!(SCALE, double), 10)
            } else {
                (static_call_update!(SCALE, triple), 15)
            };
            match result {
                Ok(()) => {
                    updated += 1;
                    current = next;
                }
                Err(e) => {
                    let msg = e.to_string();
                    let tracer_named = format!("is traced by process {}", tracer.pid);
                    assert!(msg.contains(&tracer_named), "update {i}: not a tracer refusal: {msg}");
                    refused += 1;
                }
            }
        }
        wait_for_calls_past(traced_from, "while traced");
        eprintln!(
            "traced: {refused} updates refused, {updated} went ahead; the caller made {} calls while traced",
            calls.load(Ordering::Relaxed) - traced_from
        );
        assert_eq!(
            tracer.swallowed.load(Ordering::Relaxed),
            0,
            "a traced thread met an int3 and the tracer swallowed its SIGTRAP"
        );
        assert!(refused > 0, "no update was refused while a tracer was attached ({updated} went ahead)");
        assert_eq!(scale(5), current, "the key keeps its last target");

        drop(tracer);
        wait_for_tracer_pid(0, "the tracer was killed and reaped, but a thread still shows it");
        let expected = if current == 15 {
            static_call_update!(SCALE, double).unwrap();
            10
        } else {
            static_call_update!(SCALE, triple).unwrap();
            15
        };
        assert_eq!(scale(5), expected, "an update after the tracer left reaches its target");
        let after = calls.load(Ordering::Relaxed);
        wait_for_calls_past(after, "after the tracer left");

        stop.store(true, Ordering::Relaxed);
        assert_eq!(caller.join().unwrap(), 0, "every call reached double or triple");
    });
}
