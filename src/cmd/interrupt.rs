//! SIGTERM and SIGINT in `callpatch run`: instead of dying at once (and orphaning its running part),
//! `run` forwards the signal to the part's process group, waits for it, cleans up and exits non-zero.

use std::sync::atomic::{AtomicI32, Ordering};

/// The signal received, or 0.
static RECEIVED: AtomicI32 = AtomicI32::new(0);
/// The running part's pid (also its process group), or 0.
static PART: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    RECEIVED.store(sig, Ordering::SeqCst);
    forward(sig);
}

/// Sends `sig` to the running part, its group and the part itself (its group may not exist yet).
fn forward(sig: libc::c_int) {
    let pid = PART.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe and takes plain integers.
        unsafe {
            libc::kill(-pid, sig);
            libc::kill(pid, sig);
        }
    }
}

/// Installs the handler for SIGTERM and SIGINT in this process.
pub fn install() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: a zeroed sigaction is valid; the handler only stores atomics and calls kill, both
        // async-signal-safe; SA_RESTART keeps the wait for the part going.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// The signal received so far, if any.
pub fn received() -> Option<i32> {
    Some(RECEIVED.load(Ordering::SeqCst)).filter(|&s| s != 0)
}

/// Records `pid` as the running part (0: none); a signal that came just before is forwarded now.
pub fn set_part(pid: u32) {
    PART.store(pid as i32, Ordering::SeqCst);
    if let Some(sig) = received() {
        forward(sig);
    }
}

/// The signal's name, for the one-line message.
pub fn name(sig: i32) -> &'static str {
    match sig {
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        _ => "a signal",
    }
}
