//! Static call keys and sites in a library crate, used by `callpatch-static-call`'s integration tests: one
//! key whose sites live here *and* in the test binary, and a generic function whose site is compiled
//! into whichever crate instantiates it.

use callpatch_static_call::static_call;

/// The library's default target.
pub fn lib_default(x: u64) -> u64 {
    x + 1000
}

static_call! {
    /// A key defined in a library.
    pub static LIB_KEY: fn(u64) -> u64 = lib_default;
}

/// One site of [`LIB_KEY`] in this crate.
#[inline(never)]
pub fn lib_site(x: u64) -> u64 {
    static_call!(LIB_KEY(x))
}

/// One site of [`LIB_KEY`] in the crate that instantiates it (once per instantiation).
#[inline(never)]
pub fn lib_generic_site<T: Into<u64>>(x: T) -> u64 {
    static_call!(crate::LIB_KEY(x.into()))
}

callpatch_static_call::static_branch! {
    /// A static branch key defined in a library.
    pub static LIB_FLAG: StaticBranch = false;
}

/// One site of [`LIB_FLAG`] in this crate.
#[inline(never)]
pub fn lib_flag_site() -> bool {
    callpatch_static_call::static_branch_unlikely!(LIB_FLAG)
}

/// One site of [`LIB_FLAG`] in the crate that instantiates it (once per instantiation).
#[inline(never)]
pub fn lib_flag_generic_site<T: Default + PartialEq>(x: T) -> bool {
    callpatch_static_call::static_branch_likely!(crate::LIB_FLAG) && x != T::default()
}
