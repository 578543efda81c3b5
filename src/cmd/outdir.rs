//! The output folder of a writing command: created, checked and locked before any measuring, so a bad
//! `--out` fails at once and two commands never write into one folder at the same time. The lock is
//! `flock` on `DIR/.callpatch.lock` (non-blocking; it holds the holder's pid for the refusal message)
//! and lasts as long as the returned [`Claim`], normally the whole command.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::Path;

use anyhow::Context;

/// The lock file's name inside an output folder.
pub const LOCK_FILE: &str = ".callpatch.lock";

/// A locked output folder; the lock goes with it.
pub struct Claim {
    _lock: File,
}

/// Creates `dir` if needed and locks it; a folder another `callpatch` holds is one clear error.
pub fn claim(dir: &Path) -> anyhow::Result<Claim> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(LOCK_FILE);
    let mut file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    // SAFETY: flock on a descriptor this function owns; it touches no memory.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim();
            let pid = if pid.is_empty() { "unknown" } else { pid };
            anyhow::bail!("{} is in use by another callpatch (pid {pid})", dir.display());
        }
        return Err(err).with_context(|| format!("cannot lock {}", path.display()));
    }
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| write!(file, "{}", std::process::id()))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(Claim { _lock: file })
}
