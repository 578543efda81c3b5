//! Static branch sites in several crates: a key defined in a library, with sites in the library, in
//! this test binary, and in a generic function of the library instantiated here; one enable or disable
//! flips them all.

use callpatch_static_call::{static_branch_likely, static_branch_unlikely, Backend};
use static_call_testlib::{lib_flag_generic_site, lib_flag_site, LIB_FLAG};

#[inline(never)]
fn here() -> [bool; 2] {
    [static_branch_unlikely!(static_call_testlib::LIB_FLAG), static_branch_likely!(LIB_FLAG)]
}

fn all() -> [bool; 4] {
    let [a, b] = here();
    [lib_flag_site(), lib_flag_generic_site(1u32), a, b]
}

#[test]
fn one_key_flips_its_sites_in_every_crate() {
    assert_eq!(all(), [false; 4], "before init");
    assert_eq!(callpatch_static_call::init(), Backend::Inline, "this test needs the inline backend");
    assert_eq!(LIB_FLAG.sites().len(), 4, "{:x?}", LIB_FLAG.sites());
    assert_eq!(all(), [false; 4]);
    LIB_FLAG.enable().unwrap();
    assert_eq!(all(), [true; 4]);
    for s in LIB_FLAG.sites() {
        assert_eq!(s.insn(), Some(s.insn_for(true)), "site {:#x}", s.addr());
    }
    LIB_FLAG.disable().unwrap();
    assert_eq!(all(), [false; 4]);
}
