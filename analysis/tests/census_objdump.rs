//! The census and `objdump -d` agree on the number of `e8` calls: on this test binary itself and on
//! the synthetic kernel image (whose data object, cut-off instructions and restart label are the cases
//! where a naive decode would disagree). Without objdump the tests fail with the install line
//! (`CALLPATCH_ALLOW_SKIP=1` skips them instead).

mod fixture;
mod require;

use std::path::Path;
use std::process::Command;

use callpatch_analysis::census::{census_file, Options};

/// Lines of `objdump -d` whose raw-bytes column starts with `e8 ` and whose mnemonic is a call (not
/// the `.byte 0xe8` objdump prints for a call cut off by the next symbol).
fn objdump_e8_calls(path: &Path) -> Option<u64> {
    let out = Command::new("objdump").arg("-d").arg(path).output().ok()?;
    assert!(out.status.success(), "objdump -d {} failed: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    Some(
        text.lines()
            .filter(|l| {
                let fields: Vec<&str> = l.split('\t').collect();
                fields.len() >= 3 && fields[1].starts_with("e8 ") && fields[2].starts_with("call")
            })
            .count() as u64,
    )
}

fn objdump_present() -> bool {
    Command::new("objdump").arg("--version").output().is_ok_and(|o| o.status.success())
}

const NO_OBJDUMP: &str = "objdump not found: apt-get install binutils";

#[test]
fn this_test_binary_agrees_with_objdump() {
    if !objdump_present() {
        return require::missing(NO_OBJDUMP);
    }
    let exe = std::env::current_exe().unwrap();
    let census = census_file(&exe, Options::default()).unwrap();
    assert!(census.decoded.e8_calls > 1000, "{} e8 calls", census.decoded.e8_calls);
    assert_eq!(Some(census.decoded.e8_calls), objdump_e8_calls(&exe));
}

#[test]
fn synthetic_kernel_agrees_with_objdump() {
    if !objdump_present() {
        return require::missing(NO_OBJDUMP);
    }
    let path = std::env::temp_dir().join(format!("callpatch-census-objdump-{}.elf", std::process::id()));
    std::fs::write(&path, fixture::kernel_like(true).write()).unwrap();
    let census = census_file(&path, Options::default()).unwrap();
    let objdump = objdump_e8_calls(&path);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(census.decoded.e8_calls, 8);
    assert_eq!(objdump, Some(8));
}
