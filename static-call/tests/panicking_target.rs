//! A target that panics: the panic cannot unwind through the site's `asm!` call, so the process aborts,
//! but first says which target panicked and which key it was called through (it used to abort with
//! "panic in a function that cannot unwind", naming neither). Run in a child: this test binary again,
//! running only the ignored test below.

use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use callpatch_static_call::{static_call, static_call_update};

fn calm(x: u64) -> u64 {
    x
}

fn explodes_above_three(x: u64) -> u64 {
    assert!(x <= 3, "explodes_above_three got {x}");
    x
}

static_call! {
    static FRAGILE: fn(u64) -> u64 = calm;
}

#[inline(never)]
fn fragile(x: u64) -> u64 {
    static_call!(FRAGILE(x))
}

#[test]
fn a_panicking_target_aborts_naming_itself_and_its_key() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "child_calls_a_panicking_target", "--nocapture", "--test-threads=1"])
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "the child must abort: {}\n{stderr}", out.status);
    assert!(stderr.contains("explodes_above_three got 5"), "the panic's own message comes first:\n{stderr}");
    let said: Vec<&str> = stderr.lines().filter(|l| l.starts_with("callpatch: static_call:")).collect();
    assert_eq!(said.len(), 1, "{stderr}");
    assert!(
        said[0].contains("panicking_target::explodes_above_three") && said[0].contains("panicking_target::FRAGILE"),
        "names the target and the key: {}",
        said[0]
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("returned 3"), "calls before the panic returned");
}

#[test]
#[ignore = "run by the test above in a child process: it aborts"]
fn child_calls_a_panicking_target() {
    static_call_update!(FRAGILE, explodes_above_three).unwrap();
    println!("returned {}", fragile(3));
    println!("returned {}", fragile(5));
    unreachable!("the call above aborts");
}
