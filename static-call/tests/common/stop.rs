//! What every test with a caller thread needs: a guard that stops the caller however the test leaves
//! its scope, and the update paths `status()` reports for a key. (No static call key here, so a test
//! with keys of its own can include this file alone.)

use std::sync::atomic::{AtomicBool, Ordering};

use callpatch_static_call::UpdatePaths;

/// Sets the flag when dropped: stops the caller however the main thread leaves the scope (a failed
/// assertion included), so a failing test never hangs on a caller that spins for ever.
pub struct StopOnDrop<'a>(pub &'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The update paths `status()` reports for the key whose name ends with `name`.
pub fn paths_of(name: &str) -> UpdatePaths {
    let all = callpatch_static_call::status().updates;
    all.iter().find(|(k, _)| k.ends_with(name)).map(|(_, p)| *p).unwrap_or_default()
}
