//! The site table and the inline backend, in one sequential story (the backend is per process, so this
//! binary holds one test): the sites compiled in are all found, call their trampoline before init and
//! their target after init and after every update, and a disabled key's sites are nops.

use std::hint::black_box;

use callpatch_patcher::Insn;
use callpatch_static_call::{shim_of, sites, trampoline, Backend, Key};
use callpatch_static_call::{static_call, static_call_update};
use static_call_testlib::{lib_default, lib_generic_site, lib_site, LIB_KEY};

fn plus_one(x: u64) -> u64 {
    x + 1
}
fn times_ten(x: u64) -> u64 {
    x * 10
}
fn note(x: u64) -> u64 {
    x ^ 0xabc
}

static_call! {
    static KEY: fn(u64) -> u64 = plus_one;
    static HOOK: Option<fn(u64) -> u64> = Some(note);
}

// Five uses of KEY, one per function; the functions differ, so no optimisation merges them (identical
// functions are merged by LLVM, and one machine-code site then serves two source uses).
#[inline(never)]
fn k1(x: u64) -> u64 {
    static_call!(KEY(x)) + 1000
}
#[inline(never)]
fn k2(x: u64) -> u64 {
    static_call!(KEY(x)) + 2000
}
#[inline(never)]
fn k3(x: u64) -> u64 {
    static_call!(KEY(x)) + 3000
}
#[inline(never)]
fn k4(x: u64) -> u64 {
    static_call!(self::KEY(x)) + 4000
}
#[inline(never)]
fn k5(x: u64) -> u64 {
    static_call!(crate::KEY(x)) + 5000
}

// Two uses of HOOK.
#[inline(never)]
fn h1(x: u64) -> u64 {
    static_call!(HOOK(x))
}
#[inline(never)]
fn h2(x: u64) -> u64 {
    static_call!(HOOK(x + 1))
}

// A site of the library's key in this crate (the library has one more, and the generic one is
// instantiated here once).
#[inline(never)]
fn lib_here(x: u64) -> u64 {
    static_call!(static_call_testlib::LIB_KEY(x)) ^ 5
}

const KEY_USES: usize = 5;
const HOOK_USES: usize = 2;
const LIB_USES: usize = 3;

/// The library key through its three sites. Arguments go through `black_box` so that no constant
/// propagation makes two functions identical (LLVM would then merge them, and their sites with them).
fn lib_calls(x: u64) -> [u64; 3] {
    [lib_site(black_box(x)), lib_here(black_box(x)) ^ 5, lib_generic_site(black_box(x as u32))]
}

/// Asserts that every site of `key` holds `insn`, and that there are `n` of them.
fn assert_sites(key: &Key, n: usize, insn: Insn, when: &str) {
    let sites = key.sites();
    assert_eq!(sites.len(), n, "{when}: sites of {}", key.name());
    for s in sites {
        assert_eq!(s.insn(), Some(insn), "{when}: {} site at {:#x}", key.name(), s.addr());
    }
}

/// The trampoline's first instruction, read through the site decoder's rules.
fn head(key: &Key) -> Option<Insn> {
    let t = key.trampoline();
    // SAFETY: the trampoline is 16 bytes of this program's text; no update runs concurrently here.
    let bytes = unsafe { std::ptr::read_volatile(t as *const [u8; trampoline::TRAMPOLINE_LEN]) };
    assert_eq!(bytes[trampoline::GENERIC_PATH..][..2], trampoline::JMP_RIP_INDIRECT, "generic path of {}", key.name());
    trampoline::decode_head(&bytes, t)
}

#[test]
fn sites_are_found_and_patched_through_init_update_and_disable() {
    let ks = [k1, k2, k3, k4, k5];
    // Before init: every site calls its trampoline, every trampoline takes the generic path.
    assert_eq!(callpatch_static_call::backend(), None);
    assert_eq!(sites::all().len(), KEY_USES + HOOK_USES + LIB_USES, "the whole table of this program");
    for (key, n) in [(KEY.key(), KEY_USES), (HOOK.key(), HOOK_USES), (LIB_KEY.key(), LIB_USES)] {
        let t = key.trampoline();
        assert_eq!(t % 16, 0, "{} trampoline is 16-byte aligned", key.name());
        assert!(trampoline::rel32_in_one_line(t));
        assert_eq!(head(key), Some(trampoline::initial_insn(t)));
        assert_sites(key, n, Insn::Call(t), "before init");
    }
    assert_eq!(ks.map(|k| k(black_box(7))), [1008, 2008, 3008, 4008, 5008]);
    assert_eq!(h1(black_box(1)), 1 ^ 0xabc);
    assert_eq!(lib_calls(1), [1001; 3]);

    let backend = callpatch_static_call::init();
    if backend == Backend::Generic {
        // Only on a kernel without SYNC_CORE membarrier or a text that mprotect cannot open. The
        // generic backend has its own test (static_call_generic); this one would test nothing.
        let why = format!(
            "inline patching unavailable here: {:?}; it needs membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE) \
             (Linux 4.16 or newer) and a text that mprotect can open",
            callpatch_static_call::status().generic_reason
        );
        if std::env::var("CALLPATCH_ALLOW_SKIP").as_deref() == Ok("1") {
            eprintln!("skipped (CALLPATCH_ALLOW_SKIP=1): {why}");
            return;
        }
        panic!("{why} (set CALLPATCH_ALLOW_SKIP=1 to skip this test instead)");
    }
    let status = callpatch_static_call::status();
    assert_eq!(status.patched_sites, KEY_USES + HOOK_USES + LIB_USES);
    assert!(status.skipped.is_empty(), "{:?}", status.skipped);

    // After init: sites call the target's shim directly, trampolines jump there too.
    let plus_one_shim = shim_of::<fn(u64) -> u64, _>(plus_one);
    assert_eq!(KEY.target(), Some(plus_one_shim));
    assert_sites(&KEY, KEY_USES, Insn::Call(plus_one_shim), "after init");
    assert_eq!(head(&KEY), Some(Insn::Jmp(plus_one_shim)));
    // (The library's default shim was instantiated in the library crate: without shared generics each
    // crate has its own copy of a shim, so compare with the key's target, not with `shim_of` here.)
    let lib_target = LIB_KEY.target().expect("the library key has a target");
    assert_sites(&LIB_KEY, LIB_USES, Insn::Call(lib_target), "after init");
    assert_eq!(lib_default(1), 1001);
    assert_eq!(ks.map(|k| k(black_box(7))), [1008, 2008, 3008, 4008, 5008]);
    assert_eq!(lib_calls(1), [1001; 3]);

    // An update patches the trampoline and all five sites, and nothing of the other keys.
    static_call_update!(KEY, times_ten).unwrap();
    let ten = shim_of::<fn(u64) -> u64, _>(times_ten);
    assert_sites(&KEY, KEY_USES, Insn::Call(ten), "after update");
    assert_eq!(head(&KEY), Some(Insn::Jmp(ten)));
    assert_eq!(ks.map(|k| k(black_box(6))), [1060, 2060, 3060, 4060, 5060]);
    assert_sites(&HOOK, HOOK_USES, Insn::Call(shim_of::<fn(u64) -> u64, _>(note)), "other key untouched");

    // A library key updated from here: its sites in both crates follow.
    static_call_update!(LIB_KEY, |x: u64| x + 2000).unwrap();
    assert_eq!(lib_calls(1), [2001; 3]);
    assert_sites(&LIB_KEY, LIB_USES, Insn::Call(LIB_KEY.target().unwrap()), "library key");

    // Disabled: RET0 sites (`xor eax, eax`, nothing else zeroes rax), a trampoline jumping to a function
    // that returns 0, and calls return 0.
    static_call_update!(HOOK, None).unwrap();
    assert_eq!(HOOK.target(), None);
    assert_sites(&HOOK, HOOK_USES, Insn::Ret0, "disabled");
    let Some(Insn::Jmp(zero)) = head(&HOOK) else { panic!("disabled trampoline: {:?}", head(&HOOK)) };
    // SAFETY: a disabled key's trampoline jumps to a C-ABI function that returns 0 and reads nothing.
    let zero: extern "C" fn() -> u64 = unsafe { std::mem::transmute(zero) };
    assert_eq!(zero(), 0);
    assert_eq!((h1(black_box(5)), h2(black_box(5))), (0, 0));
    // ... and a later update restores the calls.
    static_call_update!(HOOK, times_ten).unwrap();
    assert_sites(&HOOK, HOOK_USES, Insn::Call(ten), "re-enabled");
    assert_eq!(head(&HOOK), Some(Insn::Jmp(ten)));
    assert_eq!((h1(black_box(5)), h2(black_box(5))), (50, 60));

    // Updating to the current target changes nothing.
    static_call_update!(HOOK, times_ten).unwrap();
    assert_sites(&HOOK, HOOK_USES, Insn::Call(ten), "same target");
}
