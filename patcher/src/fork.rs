//! `fork()` in a process that patches: the child is a copy of one thread, so a lock that another
//! thread held at the moment of the fork stays held in the child forever, and a batch that thread had
//! in flight stays half-done. `pthread_atfork` handlers therefore take every lock of the patcher before
//! the fork (waiting for a batch in flight to finish) and release them on both sides after it; the
//! child also registers itself for SYNC_CORE membarriers (a registration belongs to an address space).
//!
//! Order: the handlers of a crate built on the patcher (static calls, whose lock is taken before the
//! patcher's) must be registered *after* these, because `fork` runs prepare handlers in reverse order
//! of registration: call [`hold_locks_across_fork`] before registering your own.

use std::any::Any;
use std::cell::RefCell;
use std::sync::Once;

thread_local! {
    /// The guards the forking thread holds between prepare and parent/child.
    static HELD: RefCell<Vec<Box<dyn Any>>> = const { RefCell::new(Vec::new()) };
}

/// Registers the patcher's `pthread_atfork` handlers, once per process (idempotent). The patcher calls
/// it on its first batch; a crate that holds its own lock around batches calls it before registering
/// its handlers.
pub fn hold_locks_across_fork() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The hub first: if this copy creates it, its handlers are registered before ours, so they
        // run after ours at a fork (the hub's lock is taken inside every copy's text lock).
        let _ = crate::hub::get();
        // SAFETY: three `extern "C" fn()` with no preconditions; registration has none either.
        let rc = unsafe { libc::pthread_atfork(Some(prepare), Some(release), Some(release_in_child)) };
        assert_eq!(rc, 0, "pthread_atfork failed: {}", std::io::Error::from_raw_os_error(rc));
    });
}

/// Keeps `guard` (a lock guard taken by a prepare handler) until the fork has happened.
pub fn hold(guard: Box<dyn Any>) {
    HELD.with_borrow_mut(|held| held.push(guard));
}

/// Drops what [`hold`] kept, newest first (a parent or child handler).
pub fn release_held() {
    HELD.with_borrow_mut(|held| {
        while let Some(g) = held.pop() {
            drop(g);
        }
    });
}

extern "C" fn prepare() {
    // The lock order of a batch: the install lock and the scan cache alone, then text, then registry.
    hold(Box::new(crate::trap::install_lock()));
    hold(Box::new(crate::guard::scan_lock()));
    hold(Box::new(crate::batch::text_lock()));
    hold(Box::new(crate::table::registry()));
}

extern "C" fn release() {
    release_held();
}

extern "C" fn release_in_child() {
    release_held();
    crate::sync::reregister_in_child();
}
