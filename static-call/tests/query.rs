//! `StaticCall::query`, the kernel's `static_call_query`: a function of the key's type that calls its
//! current target, following every update; `None` while a nullable key is disabled.

use callpatch_static_call::{static_call, static_call_update};

mod common;
use common::scale::{double, triple, SCALE};

static_call! {
    static HOOK: Option<fn(u64) -> u64> = None;
}

#[test]
fn query_follows_the_target_through_updates_and_disabling() {
    let q = SCALE.query().expect("a key with a default target has one");
    assert_eq!(q(5), 10, "the default target");
    static_call_update!(SCALE, triple).unwrap();
    assert_eq!(SCALE.query().unwrap()(5), 15, "after an update");
    static_call_update! { SCALE => |x: u64| x + 1, HOOK => double }.unwrap();
    assert_eq!(SCALE.query().unwrap()(5), 6, "a closure target, updated with another key");
    assert_eq!(HOOK.query().unwrap()(5), 10);
    static_call_update!(HOOK, None).unwrap();
    assert!(HOOK.query().is_none(), "a disabled key has no target");
    assert_eq!(q(5), 10, "an earlier query result keeps calling the target it was taken for");
}
