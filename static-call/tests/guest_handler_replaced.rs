//! A program installs its own SIGTRAP disposition after the static calls were initialised. The next
//! update's `int3` would go to it (a crash, or death by SIGTRAP for `SIG_IGN`); the patcher must notice
//! and refuse, and the key must keep its target.

use callpatch_static_call::{static_call, static_call_update, Backend};

fn double(x: u64) -> u64 {
    x * 2
}
fn triple(x: u64) -> u64 {
    x * 3
}

static_call! {
    static SCALE: fn(u64) -> u64 = double;
}

#[inline(never)]
fn scale(x: u64) -> u64 {
    static_call!(SCALE(x))
}

extern "C" fn theirs(_: libc::c_int) {}

fn set_sigtrap(handler: usize) -> libc::sigaction {
    // SAFETY: plain sigaction calls with valid, fully initialised structs.
    unsafe {
        let mut new: libc::sigaction = std::mem::zeroed();
        new.sa_sigaction = handler;
        libc::sigemptyset(&mut new.sa_mask);
        let mut old: libc::sigaction = std::mem::zeroed();
        assert_eq!(libc::sigaction(libc::SIGTRAP, &new, &mut old), 0);
        old
    }
}

#[test]
fn a_replaced_handler_makes_updates_refuse_not_crash() {
    assert_eq!(callpatch_static_call::init(), Backend::Inline, "this test needs the inline backend");
    static_call_update!(SCALE, triple).unwrap();
    for replacement in [libc::SIG_IGN, libc::SIG_DFL, theirs as *const () as usize] {
        let ours = set_sigtrap(replacement);
        let e = static_call_update!(SCALE, double).expect_err("the update must be refused");
        assert!(e.to_string().contains("SIGTRAP handler was replaced"), "{e}");
        assert_eq!(scale(5), 15, "the key keeps its target");
        // Put ours back: updates work again.
        // SAFETY: restores the disposition read above.
        unsafe { assert_eq!(libc::sigaction(libc::SIGTRAP, &ours, std::ptr::null_mut()), 0) };
        static_call_update!(SCALE, double).unwrap();
        assert_eq!(scale(5), 10);
        static_call_update!(SCALE, triple).unwrap();
    }
}
