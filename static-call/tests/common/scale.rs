//! The key most guest tests update (`SCALE`: double or triple) and the caller loop they run against it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use callpatch_static_call::static_call;

/// One target: 5 → 10.
pub fn double(x: u64) -> u64 {
    x * 2
}

/// The other: 5 → 15.
pub fn triple(x: u64) -> u64 {
    x * 3
}

static_call! {
    /// The key under test.
    pub static SCALE: fn(u64) -> u64 = double;
}

/// One static call site of `SCALE`.
#[inline(never)]
pub fn scale(x: u64) -> u64 {
    static_call!(SCALE(x))
}

/// Calls `scale(5)` until `stop`, counting every call in `calls`; returns the calls that reached
/// neither target (neither 10 nor 15).
pub fn call_until(stop: &AtomicBool, calls: &AtomicU64) -> u64 {
    let mut wrong = 0;
    while !stop.load(Ordering::Relaxed) {
        let y = scale(5);
        if y != 10 && y != 15 {
            wrong += 1;
        }
        calls.fetch_add(1, Ordering::Relaxed);
    }
    wrong
}
