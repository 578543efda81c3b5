//! The generic backend (no code patching): calls are correct before and after init and across updates,
//! sites keep calling their trampoline, and the trampoline keeps jumping through the key.

use callpatch_patcher::Insn;
use callpatch_static_call::{static_call, static_call_update};
use callpatch_static_call::{trampoline, Backend};

fn double(x: u64) -> u64 {
    x * 2
}
fn triple(x: u64) -> u64 {
    x * 3
}
fn mix(a: u32, b: i8, c: bool, d: u16, e: *const u8, f: char) -> i64 {
    a as i64 + b as i64 + c as i64 + d as i64 + (e as usize % 7) as i64 + f as i64
}

static_call! {
    static SCALE: fn(u64) -> u64 = double;
    static MIX: fn(u32, i8, bool, u16, *const u8, char) -> i64 = mix;
    static HOOK: Option<fn(u64) -> u64> = None;
}

#[inline(never)]
fn scale(x: u64) -> u64 {
    static_call!(SCALE(x))
}

#[inline(never)]
fn hook(x: u64) -> u64 {
    static_call!(HOOK(x))
}

#[test]
fn generic_backend_is_correct_without_patching() {
    assert_eq!(scale(21), 42, "before init: trampoline -> generic path -> default");
    assert_eq!(hook(5), 0, "a key that starts disabled returns zero");
    // 14 % 7 == 0: the pointer argument adds nothing.
    assert_eq!(static_call!(MIX(1, -2, true, 3, 14 as *const u8, 'A')), 68, "1 - 2 + 1 + 3 + 0 + 65");

    assert_eq!(callpatch_static_call::init_with(Backend::Generic), Backend::Generic);
    assert_eq!(callpatch_static_call::init(), Backend::Generic, "the backend is chosen once");
    assert_eq!(callpatch_static_call::status().generic_reason.as_deref(), Some("requested"));

    static_call_update!(SCALE, triple).unwrap();
    assert_eq!(scale(5), 15);
    static_call_update!(HOOK, |x: u64| x + 1).unwrap();
    assert_eq!(hook(5), 6);
    static_call_update!(HOOK, None).unwrap();
    assert_eq!(hook(5), 0);
    assert_eq!(HOOK.target(), None);
    static_call_update!(HOOK, Some(double)).unwrap();
    assert_eq!(hook(5), 10);

    for key in [SCALE.key(), HOOK.key()] {
        let t = key.trampoline();
        let sites = key.sites();
        assert_eq!(sites.len(), 1, "{}", key.name());
        for s in sites {
            assert_eq!(s.insn(), Some(Insn::Call(t)), "generic sites are never patched");
        }
        assert!(trampoline::rel32_in_one_line(t));
    }
}
