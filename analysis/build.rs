//! Captures, at build time, what `machine.csv` reports about the build itself: the compiler version
//! and the git revision of the source (with `-dirty` when tracked files differ from HEAD).
//!
//! Cargo reruns this script when HEAD, the index or the current branch ref changes, so `git_rev`
//! follows commits and checkouts; an edit that is neither committed nor staged is only noticed as
//! `-dirty` at the next rebuild of this crate.

use std::path::{Path, PathBuf};
use std::process::Command;

fn output(cmd: &str, args: &[&str], dir: &Path) -> Option<String> {
    let out = Command::new(cmd).args(args).current_dir(dir).output().ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = output(&rustc, &["-V"], &dir).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=CALLPATCH_RUSTC_VERSION={rustc_version}");

    let rev = match output("git", &["rev-parse", "--short", "HEAD"], &dir) {
        Some(rev) => {
            let dirty =
                output("git", &["status", "--porcelain", "--untracked-files=no"], &dir).is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{rev}-dirty")
            } else {
                rev
            }
        }
        None => "unknown".into(),
    };
    println!("cargo:rustc-env=CALLPATCH_GIT_REV={rev}");

    println!("cargo:rerun-if-changed=build.rs");
    let mut watched = vec!["HEAD".to_string(), "index".to_string(), "packed-refs".to_string()];
    if let Some(head_ref) = output("git", &["symbolic-ref", "-q", "HEAD"], &dir) {
        watched.push(head_ref);
    }
    for name in watched {
        if let Some(path) = output("git", &["rev-parse", "--git-path", &name], &dir) {
            let path = dir.join(path);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
}
