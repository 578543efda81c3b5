//! Starting and joining caller threads inside `std::thread::scope` so that no failure hangs the
//! process. The scope joins every thread it started before it returns or unwinds, and callers loop
//! until a stop flag is set, so a panic between spawn and stop (a `spawn` that fails under a memory
//! limit) used to wait forever. Here a failed spawn is an error, a panicked thread is an error, and
//! [`StopOnDrop`] sets the flag on every way out of the scope's closure.

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{Builder, Scope, ScopedJoinHandle};

use crate::patch::PatchError;

/// Sets the stop flag when dropped: create it in the scope's closure before the first spawn, so that
/// an early return or an unwind stops the threads already running before the scope joins them.
pub struct StopOnDrop<'a>(pub &'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Starts `f` on a thread of scope `s` built by `builder`; a thread the system will not start is an
/// error naming `what`, not a panic.
pub fn spawn<'scope, 'env, T: Send + 'scope>(
    s: &'scope Scope<'scope, 'env>,
    builder: Builder,
    what: &str,
    f: impl FnOnce() -> T + Send + 'scope,
) -> Result<ScopedJoinHandle<'scope, T>, PatchError> {
    builder
        .spawn_scoped(s, f)
        .map_err(|e| PatchError::Build(std::io::Error::new(e.kind(), format!("starting {what}: {e}"))))
}

/// Joins `h`; a thread that panicked is an error naming `what`.
pub fn join<T>(h: ScopedJoinHandle<'_, T>, what: &str) -> Result<T, PatchError> {
    h.join().map_err(|_| PatchError::Build(std::io::Error::other(format!("{what} panicked"))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn a_failed_spawn_after_a_running_thread_is_an_error_not_a_hang() {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let stop = AtomicBool::new(false);
            let out = std::thread::scope(|s| {
                let _stop = StopOnDrop(&stop);
                let running = spawn(s, Builder::new(), "caller 0", || {
                    while !stop.load(Ordering::SeqCst) {
                        std::thread::yield_now();
                    }
                })?;
                // No system gives a thread a stack of half the address space: the spawn fails.
                spawn(s, Builder::new().stack_size(usize::MAX / 2), "caller 1", || ())?;
                join(running, "caller 0")
            });
            let _ = tx.send(out.map_err(|e| e.to_string()));
        });
        let out = rx.recv_timeout(Duration::from_secs(60)).expect("the scope hung after a failed spawn");
        let err = out.expect_err("the second thread cannot start");
        assert!(err.contains("starting caller 1"), "{err}");
    }

    #[test]
    fn a_panicked_thread_is_an_error() {
        let err = std::thread::scope(|s| {
            let h = spawn(s, Builder::new(), "caller 0", || panic!("boom")).unwrap();
            join(h, "caller 0")
        })
        .unwrap_err();
        assert!(err.to_string().contains("caller 0 panicked"), "{err}");
    }
}
