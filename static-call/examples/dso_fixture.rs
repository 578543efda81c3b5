//! A shared object with static calls of its own, for the `dso` test: built as a `cdylib` (with its own
//! copy of the patcher and of this crate) and loaded with `dlopen`, as a plugin would be.
//!
//! Its C ABI: `fixture_init()` returns the backend (0 generic, 1 bp, 2 trap-free); `fixture_set(mode)`
//! retargets `OP` (0: x+1, 1: 3x, 2: disabled, 0 returned) and returns 0, or -1 after printing why;
//! `fixture_call(x)` is one static call site of `OP`; `fixture_calls_direct()` is 1 when that site is a
//! direct call into this object (not its trampoline); `fixture_traps()` counts the traps its copy of
//! the patcher emulated.

use callpatch_patcher::Insn;
use callpatch_static_call::{init, static_call, Backend};

fn plus_one(x: u64) -> u64 {
    x + 1
}

fn times_three(x: u64) -> u64 {
    x * 3
}

static_call! {
    /// The key under test: a nullable one, so a site may also be RET0.
    static OP: Option<fn(u64) -> u64> = Some(plus_one);
}

/// One static call site of `OP`.
#[unsafe(no_mangle)]
pub extern "C" fn fixture_call(x: u64) -> u64 {
    static_call!(OP(x))
}

/// Initialises this object's static calls; the backend chosen.
#[unsafe(no_mangle)]
pub extern "C" fn fixture_init() -> u32 {
    match init() {
        Backend::Generic => 0,
        Backend::Inline => 1,
        Backend::TrapFree => 2,
    }
}

/// Retargets `OP`: 0 → x+1, 1 → 3x, anything else → disabled.
#[unsafe(no_mangle)]
pub extern "C" fn fixture_set(mode: u32) -> i32 {
    let done = match mode {
        0 => OP.update(plus_one),
        1 => OP.update(times_three),
        _ => OP.disable(),
    };
    match done {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("dso_fixture: update failed: {e}");
            -1
        }
    }
}

/// 1 when the site in `fixture_call` is a direct call to a target inside this object, 0 otherwise.
#[unsafe(no_mangle)]
pub extern "C" fn fixture_calls_direct() -> u32 {
    let here = fixture_call as *const () as usize;
    let direct = OP.key().sites().iter().all(|s| match s.insn() {
        Some(Insn::Call(t)) => t != OP.key().trampoline() && t.abs_diff(here) < 1 << 31,
        _ => false,
    });
    direct as u32
}

/// Traps this object's copy of the patcher emulated (through whichever copy's handler is installed).
#[unsafe(no_mangle)]
pub extern "C" fn fixture_traps() -> u64 {
    callpatch_patcher::trap_count()
}
