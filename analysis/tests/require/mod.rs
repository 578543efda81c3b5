//! What a test does when this machine lacks something it needs: it fails, naming the install line,
//! so that a machine without the tool (CI included) cannot pass by testing nothing.
//! `CALLPATCH_ALLOW_SKIP=1` turns the failure into a skip, for a local run that knowingly goes without.

/// The variable that turns a missing requirement from a failure into a skip.
pub const ALLOW_SKIP: &str = "CALLPATCH_ALLOW_SKIP";

/// Fails the test with `missing` (what is absent and how to install it), or, when
/// `CALLPATCH_ALLOW_SKIP=1`, prints it as a skip and returns so that the test can return.
#[track_caller]
pub fn missing(missing: &str) {
    if std::env::var(ALLOW_SKIP).as_deref() == Ok("1") {
        eprintln!("skipped ({ALLOW_SKIP}=1): {missing}");
    } else {
        panic!("{missing} (set {ALLOW_SKIP}=1 to skip this test instead)");
    }
}
