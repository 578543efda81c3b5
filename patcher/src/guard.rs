//! What would make an `int3` fatal, checked before every trapping batch.
//!
//! Kernel facts: an `int3` raises SIGTRAP with `force_sig`, which cannot be blocked or ignored: when the
//! trapping thread blocks SIGTRAP (as thread pools that block every signal do) or its disposition is
//! `SIG_IGN`, the kernel unblocks it and resets the *process-wide* disposition to `SIG_DFL`, so the
//! process dies. A thread under `ptrace` stops at the trap instead, and whether the tracer passes the
//! signal on is the tracer's choice (gdb's default is not to: the thread then resumes inside the
//! half-written call). And a program may replace our SIGTRAP handler after we installed it.
//!
//! So before a batch that may trap (bp, cs-prefix), the patcher refuses — with an error naming the
//! thread and the reason, before anything is written — when our handler is not the installed one, a
//! thread blocks SIGTRAP, or a thread has a tracer. Cost per batch: one `sigaction` query and one
//! `stat` of `/proc/self/task`, whose link count is 2 + the number of threads; every thread's `status`
//! is read again when that count changed, or when the last full scan is over 50 ms old (listing the
//! directory and reading the `status` files costs about 10 µs: more than a quiet one-site batch).
//!
//! A thread also blocks every signal for a moment while it starts and while it exits: glibc's
//! `pthread_create` blocks *all* signals around the clone (its own SIGCANCEL (32) and SIGSETXID (33)
//! included), and a thread's exit path (`start_thread`, glibc 2.34+) all but SIGSETXID, which the setxid
//! handshake needs (`SigBlk: fffffffefffbfeff`). No mask set through glibc's `sigfillset` /
//! `pthread_sigmask` can contain SIGCANCEL, so a blocked SIGCANCEL marks a thread inside libc, not at one
//! of our sites, and is not a refusal, however long the thread is descheduled there; any other mask with
//! SIGTRAP is read again for up to a millisecond before the batch is refused, and a refusal is never
//! cached: the next batch scans again.
//!
//! What this cannot close: a thread may block SIGTRAP, or a tracer attach, between the check and the
//! batch's `int3` (microseconds later); within 50 ms of a full scan, a thread already scanned may
//! change its mask or be attached by a tracer, and a thread may replace another (same count) unseen. Where `/proc` cannot be read (hidepid, a sandbox), the per-thread scan is skipped,
//! [`skipped_scans`] counts it, and the first skip says so once on stderr, naming the checks skipped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::error::PatchError;

/// SIGTRAP's bit in the `SigBlk` mask of `/proc/*/status` (bit `signo - 1`).
const SIGTRAP_BIT: u64 = 1 << (libc::SIGTRAP - 1);
/// glibc's internal signal 32 (SIGCANCEL): blocked only by glibc itself, while a thread starts (with
/// SIGSETXID) or exits (without it); its `sigfillset` and `pthread_sigmask` leave it out of every mask a
/// program can set.
const GLIBC_SIGCANCEL_BIT: u64 = 1 << 31;

static SKIPPED: AtomicU64 = AtomicU64::new(0);

/// The thread set of the last full scan and what it found.
static LAST_SCAN: Mutex<Option<Scan>> = Mutex::new(None);

/// A clean full scan: the thread count it saw and when.
#[derive(Debug)]
pub(crate) struct Scan {
    threads: u64,
    at: std::time::Instant,
}

/// How long a clean full scan is trusted while the thread count stays the same.
const RESCAN_AFTER: std::time::Duration = std::time::Duration::from_millis(50);

/// Why a trap would be fatal in this process now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fatal {
    /// Our SIGTRAP handler was replaced (by a handler, `SIG_IGN` or `SIG_DFL`) after it was installed.
    HandlerReplaced(String),
    /// This thread blocks SIGTRAP: its `int3` would reset SIGTRAP to `SIG_DFL` and kill the process.
    Blocked {
        /// The thread id.
        tid: u32,
    },
    /// This thread is traced: the tracer, not our handler, decides what its `int3` does.
    Traced {
        /// The thread id.
        tid: u32,
        /// The tracer's process id.
        tracer: u32,
    },
}

impl std::fmt::Display for Fatal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fatal::HandlerReplaced(what) => write!(f, "the SIGTRAP handler was replaced ({what})"),
            Fatal::Blocked { tid } => write!(f, "thread {tid} blocks SIGTRAP (its int3 would kill the process)"),
            Fatal::Traced { tid, tracer } => {
                write!(f, "thread {tid} is traced by process {tracer} (the tracer would get its int3)")
            }
        }
    }
}

/// The scan cache's lock (held across `fork`, see [`crate::fork`]).
pub(crate) fn scan_lock() -> std::sync::MutexGuard<'static, Option<Scan>> {
    LAST_SCAN.lock().unwrap_or_else(|e| e.into_inner())
}

/// How many scans could not read `/proc/self/task` (their thread checks were skipped).
pub fn skipped_scans() -> u64 {
    SKIPPED.load(Ordering::Relaxed)
}

/// Refuses a trapping batch when a trap would be fatal; see the module docs. `ours` is the address of
/// our handler.
pub(crate) fn check(ours: usize) -> Result<(), PatchError> {
    if let Some(what) = handler_replaced(ours) {
        return Err(PatchError::TrapWouldBeFatal(Fatal::HandlerReplaced(what)));
    }
    let skipped = || {
        if SKIPPED.fetch_add(1, Ordering::Relaxed) == 0 {
            eprintln!(
                "callpatch: /proc/self/task cannot be read ({}): before each int3 batch only the SIGTRAP handler \
                 is checked; the per-thread checks (a thread that blocks SIGTRAP, a traced thread) are skipped",
                std::fs::metadata("/proc/self/task").err().map_or_else(|| "listing failed".into(), |e| e.to_string())
            );
        }
        Ok(())
    };
    let Some(count) = thread_count() else { return skipped() };
    let mut last = scan_lock();
    if last.as_ref().is_some_and(|s| s.threads == count && s.at.elapsed() < RESCAN_AFTER) {
        return Ok(());
    }
    let Some(tids) = threads() else { return skipped() };
    let at = std::time::Instant::now();
    let found = tids.iter().find_map(|&tid| settled_fatal(tid));
    // Only a clean scan is remembered: a refusal scans again next time.
    *last = found.is_none().then_some(Scan { threads: count, at });
    found.map_or(Ok(()), |f| Err(PatchError::TrapWouldBeFatal(f)))
}

/// The first thread of this process that has a tracer (a full scan, never cached), or `None`; also
/// `None` when `/proc/self/task` cannot be read. For choosing, once, a mode that never traps.
pub fn traced_thread() -> Option<Fatal> {
    threads()?.into_iter().find_map(|tid| match fatal_in(tid, &thread_status(tid)?) {
        Some(f @ Fatal::Traced { .. }) => Some(f),
        _ => None,
    })
}

/// The number of threads of this process, from the link count of `/proc/self/task` (2 + threads).
fn thread_count() -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/task").ok().map(|m| m.nlink().saturating_sub(2))
}

/// The fatal condition of thread `tid`, read again while it may be the transient full mask of a
/// thread starting or exiting (up to about a millisecond); `None` once it clears or the thread is gone.
fn settled_fatal(tid: u32) -> Option<Fatal> {
    let mut fatal = fatal_in(tid, &thread_status(tid)?)?;
    for _ in 0..50 {
        if !matches!(fatal, Fatal::Blocked { .. }) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_micros(20));
        fatal = fatal_in(tid, &thread_status(tid)?)?;
    }
    Some(fatal)
}

/// What replaced our handler, or `None` while it is the installed one.
fn handler_replaced(ours: usize) -> Option<String> {
    // SAFETY: a query only: a null new action and a zeroed, writable old one.
    let cur = unsafe {
        let mut cur: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGTRAP, std::ptr::null(), &mut cur) != 0 {
            return Some(format!("sigaction query failed: {}", std::io::Error::last_os_error()));
        }
        cur.sa_sigaction
    };
    match cur {
        h if h == ours => None,
        libc::SIG_DFL => Some("now SIG_DFL".into()),
        libc::SIG_IGN => Some("now SIG_IGN".into()),
        h => Some(format!("now the handler at {h:#x}")),
    }
}

/// The ids of this process's threads, sorted; `None` when `/proc/self/task` cannot be read.
fn threads() -> Option<Vec<u32>> {
    let mut tids: Vec<u32> =
        std::fs::read_dir("/proc/self/task").ok()?.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect();
    tids.sort_unstable();
    Some(tids)
}

fn thread_status(tid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).ok()
}

/// The fatal condition a thread's `status` shows, if any.
fn fatal_in(tid: u32, status: &str) -> Option<Fatal> {
    let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).map(str::trim);
    let tracer: u32 = field("TracerPid:").and_then(|v| v.parse().ok()).unwrap_or(0);
    if tracer != 0 {
        return Some(Fatal::Traced { tid, tracer });
    }
    let blocked = field("SigBlk:").and_then(|v| u64::from_str_radix(v, 16).ok()).unwrap_or(0);
    let starting_or_exiting = blocked & GLIBC_SIGCANCEL_BIT != 0;
    (blocked & SIGTRAP_BIT != 0 && !starting_or_exiting).then_some(Fatal::Blocked { tid })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_name_the_fatal_condition() {
        let quiet = "Name:\tx\nTracerPid:\t0\nSigBlk:\t0000000000000000\n";
        assert_eq!(fatal_in(7, quiet), None);
        let blocked = "TracerPid:\t0\nSigBlk:\tfffffffe7ffbfeff\n";
        assert_eq!(fatal_in(7, blocked), Some(Fatal::Blocked { tid: 7 }));
        let other_signals = "TracerPid:\t0\nSigBlk:\t0000000000000002\n"; // SIGINT only
        assert_eq!(fatal_in(7, other_signals), None);
        // glibc's own block-all while a thread starts (signals 32 and 33 included) and while it exits
        // (all but 33, SIGSETXID): both masks as /proc showed them on glibc 2.36.
        assert_eq!(fatal_in(7, "TracerPid:\t0\nSigBlk:\tfffffffffffbfeff\n"), None);
        assert_eq!(fatal_in(7, "TracerPid:\t0\nSigBlk:\tfffffffefffbfeff\n"), None);
        assert_eq!(fatal_in(7, "TracerPid:\t4242\nSigBlk:\t0\n"), Some(Fatal::Traced { tid: 7, tracer: 4242 }));
    }

    /// Threads that start and exit while `/proc` is scanned show glibc's transient masks, SIGTRAP
    /// included; none is a refusal. (The exit mask, which leaves SIGSETXID open, was refused for a
    /// millisecond and then reported as "blocks SIGTRAP" when the exiting thread was descheduled.)
    #[test]
    fn threads_starting_and_exiting_are_not_refused() {
        let stop = std::sync::atomic::AtomicBool::new(false);
        // The masks with SIGTRAP seen, each with whether it was refused.
        let mut seen = std::collections::BTreeMap::new();
        let started = std::time::Instant::now();
        std::thread::scope(|s| {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::spawn(|| ()).join().unwrap();
                }
            });
            // Until both glibc masks (start: SIGSETXID blocked; exit: open) were seen, or 20 s.
            while seen.len() < 2 && started.elapsed() < std::time::Duration::from_secs(20) {
                for tid in threads().unwrap_or_default() {
                    let Some(status) = thread_status(tid) else { continue };
                    let field = status.lines().find_map(|l| l.strip_prefix("SigBlk:")).map(str::trim);
                    let Some(mask) = field.and_then(|f| u64::from_str_radix(f, 16).ok()) else { continue };
                    if mask & SIGTRAP_BIT != 0 {
                        seen.insert(mask, fatal_in(tid, &status).is_some());
                    }
                }
            }
            stop.store(true, Ordering::Relaxed);
        });
        assert!(!seen.is_empty(), "no thread was seen starting or exiting in 20 s");
        for (mask, refused) in &seen {
            assert!(!refused, "a starting or exiting thread's mask {mask:016x} was refused");
        }
        eprintln!("{} of glibc's 2 transient masks seen in {:?}", seen.len(), started.elapsed());
    }

    #[test]
    fn this_test_process_passes_its_own_scan() {
        let tids = threads().expect("/proc/self/task is readable here");
        assert!(tids.contains(&std::process::id()));
        let me = thread_status(std::process::id()).unwrap();
        assert_eq!(fatal_in(std::process::id(), &me), None, "{me}");
    }
}
