//! A run's folder built beside its final place and swapped in only when complete: `run` writes into
//! `PARENT/.NAME.partial-PID` and, at the end, exchanges it with `PARENT/NAME` in one `renameat2`
//! (`RENAME_EXCHANGE`), then removes the old contents. An interrupted run removes its staging folder;
//! one killed outright leaves it, hidden and named as incomplete, and the next run into `NAME` (which
//! holds the folder's lock, so no live run owns it) removes it. The folder at `NAME` is thus always
//! a complete run, the previous one or the new one, never a mix.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// The staging folder of one run into `target`.
pub struct Staging {
    dir: PathBuf,
    target: PathBuf,
}

/// The prefix of every staging folder for `name`.
fn prefix(name: &str) -> String {
    format!(".{name}.partial-")
}

impl Staging {
    /// Creates the staging folder for `target` (an existing folder) after removing the leftovers of
    /// runs into it that never finished, and links into it the files of `target` that `owned` says
    /// the run does not write itself (such as `perf.csv`), so they survive the swap.
    pub fn begin(target: &Path, owned: impl Fn(&Path) -> bool) -> anyhow::Result<Staging> {
        let target = std::fs::canonicalize(target).with_context(|| format!("cannot resolve {}", target.display()))?;
        let (Some(parent), Some(name)) = (target.parent(), target.file_name().and_then(|n| n.to_str())) else {
            anyhow::bail!("{} cannot be a run's folder (it has no parent or no UTF-8 name)", target.display());
        };
        for entry in std::fs::read_dir(parent).with_context(|| format!("cannot list {}", parent.display()))? {
            let entry = entry.with_context(|| format!("cannot list {}", parent.display()))?;
            if entry.file_name().to_str().is_some_and(|n| n.starts_with(&prefix(name))) {
                std::fs::remove_dir_all(entry.path())
                    .with_context(|| format!("cannot remove an unfinished run's {}", entry.path().display()))?;
            }
        }
        let dir = parent.join(format!("{}{}", prefix(name), std::process::id()));
        std::fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let staging = Staging { dir, target };
        if let Err(e) = carry_over(&staging.target, &staging.dir, Path::new(""), &owned) {
            staging.abandon();
            return Err(e);
        }
        Ok(staging)
    }

    /// Where the run writes.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Swaps the staging folder into place and removes what was there.
    pub fn commit(self) -> anyhow::Result<()> {
        let (from, to) = (cstr(&self.dir)?, cstr(&self.target)?);
        // SAFETY: both are valid NUL-terminated paths; renameat2 only reads them.
        let rc = unsafe {
            libc::renameat2(libc::AT_FDCWD, from.as_ptr(), libc::AT_FDCWD, to.as_ptr(), libc::RENAME_EXCHANGE)
        };
        if rc != 0 {
            // A file system without RENAME_EXCHANGE: move the old folder aside first.
            let aside = self.dir.with_extension("old");
            std::fs::rename(&self.target, &aside)
                .and_then(|()| std::fs::rename(&self.dir, &self.target))
                .with_context(|| format!("cannot move {} into place", self.dir.display()))?;
            std::fs::rename(&aside, &self.dir).ok();
        }
        // The staging name now holds the previous run.
        std::fs::remove_dir_all(&self.dir)
            .with_context(|| format!("cannot remove the previous run, now at {}", self.dir.display()))
    }

    /// Removes the staging folder (an interrupted or failed run).
    pub fn abandon(self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn cstr(path: &Path) -> anyhow::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).with_context(|| format!("{} holds a NUL byte", path.display()))
}

/// Hard-links (or copies, across devices) every file under `from/rel` that `owned` does not claim into
/// `to/rel`, keeping the tree.
fn carry_over(from: &Path, to: &Path, rel: &Path, owned: &impl Fn(&Path) -> bool) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(from.join(rel)).with_context(|| format!("cannot list {}", from.display()))? {
        let entry = entry?;
        let rel = rel.join(entry.file_name());
        if owned(&rel) {
            continue;
        }
        let (src, dst) = (from.join(&rel), to.join(&rel));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            std::fs::create_dir_all(&dst)?;
            carry_over(from, to, &rel, owned)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
        } else if std::fs::hard_link(&src, &dst).is_err() {
            std::fs::copy(&src, &dst).with_context(|| format!("cannot carry {} over", src.display()))?;
        }
    }
    Ok(())
}
