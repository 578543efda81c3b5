//! The one cross-core sync every protocol uses: `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE)`.
//!
//! Kernel fact: the command interrupts (IPI) every CPU currently running a thread of this process and
//! makes each execute a core-serialising instruction before the call returns, so after it no thread can
//! still execute instruction bytes it fetched before our store: the user-space twin of the kernel's
//! `text_poke_sync()` (an IPI running `sync_core()` everywhere). CPUs not running our threads will
//! serialise anyway on their way back to user space. The process must register first
//! (`MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE`); unregistered, the command fails with EPERM.
//! It exists since Linux 4.16 (`CONFIG_MEMBARRIER`); x86-64 supports SYNC_CORE since 5.x.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use crate::error::PatchError;

static SYNCS: AtomicU64 = AtomicU64::new(0);
static READY: OnceLock<Result<(), String>> = OnceLock::new();

fn membarrier(cmd: libc::c_int) -> Result<(), std::io::Error> {
    // SAFETY: membarrier takes (cmd, flags, cpu_id) integers and touches no user memory.
    let rc = unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0, 0) };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Registers this process for SYNC_CORE membarriers, once; later calls return the first answer.
/// Errors name the kernel requirement (there is no silent, unsynchronised fallback).
pub fn membarrier_ready() -> Result<(), PatchError> {
    if CHILD_UNREGISTERED.load(Ordering::Relaxed) {
        let reason = "this forked child could not register for SYNC_CORE membarriers".to_string();
        return Err(PatchError::MembarrierUnavailable { reason });
    }
    READY
        .get_or_init(|| {
            // SAFETY: MEMBARRIER_CMD_QUERY takes no pointers; it returns a bit mask of supported commands.
            let mask = unsafe { libc::syscall(libc::SYS_membarrier, libc::MEMBARRIER_CMD_QUERY, 0, 0) };
            if mask < 0 {
                return Err(format!("membarrier query failed: {}", std::io::Error::last_os_error()));
            }
            let need = libc::MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE as i64;
            if mask & need == 0 {
                return Err(format!("the kernel does not offer SYNC_CORE (supported mask {mask:#x})"));
            }
            membarrier(libc::MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE)
                .map_err(|e| format!("registering for SYNC_CORE failed: {e}"))
        })
        .clone()
        .map_err(|reason| PatchError::MembarrierUnavailable { reason })
}

/// In a forked child: the registration for SYNC_CORE belongs to the parent's address space, so the
/// child registers its own (when the parent had one). Async-signal-safe: one syscall.
pub(crate) fn reregister_in_child() {
    if matches!(READY.get(), Some(Ok(())))
        && membarrier(libc::MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE).is_err()
    {
        // Refused from the child's next `membarrier_ready`, i.e. before any write of its next batch.
        CHILD_UNREGISTERED.store(true, Ordering::Relaxed);
    }
}

/// Set in a forked child whose SYNC_CORE registration failed.
static CHILD_UNREGISTERED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// One sync: after it returns, every thread of this process executes only bytes stored before the
/// call. Counted in [`sync_count`].
pub fn sync_cores() -> Result<(), PatchError> {
    membarrier_ready()?;
    membarrier(libc::MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE)
        .map_err(|e| PatchError::MembarrierUnavailable { reason: format!("SYNC_CORE failed: {e}") })?;
    SYNCS.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Syncs performed by this process so far (every protocol, every thread).
pub fn sync_count() -> u64 {
    SYNCS.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_once_and_counts_every_sync() {
        membarrier_ready().expect("this machine's kernel supports SYNC_CORE");
        membarrier_ready().unwrap();
        let before = sync_count();
        sync_cores().unwrap();
        sync_cores().unwrap();
        // Other tests may sync concurrently, so only a lower bound is exact here.
        assert!(sync_count() >= before + 2);
    }
}
