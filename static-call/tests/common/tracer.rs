//! A forked tracer that seizes every thread of this process and swallows SIGTRAP, as gdb does by
//! default, and the waits around it. Shared by the tests that run under a tracer.

use std::ffi::CString;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long the test waits for a state it expects (tracer attached, detached, caller progress).
pub const PATIENCE: Duration = Duration::from_secs(5);

/// Every thread of this process with its `TracerPid` (0: none).
pub fn tracer_pids() -> Vec<(u32, u32)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc/self/task").expect("/proc/self/task is readable") {
        let Some(tid) = entry.ok().and_then(|e| e.file_name().to_str()?.parse::<u32>().ok()) else { continue };
        // A thread that exits between the listing and the read is no longer ours to check.
        let Ok(status) = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")) else { continue };
        let tracer = status.lines().find_map(|l| l.strip_prefix("TracerPid:")).and_then(|v| v.trim().parse().ok());
        found.push((tid, tracer.unwrap_or(0)));
    }
    found
}

/// Waits until every thread's `TracerPid` is `want`; panics with what it saw after [`PATIENCE`].
pub fn wait_for_tracer_pid(want: u32, what: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let seen = tracer_pids();
        if seen.iter().all(|&(_, tracer)| tracer == want) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: (thread, TracerPid) after {PATIENCE:?}: {seen:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// `errno` of the last failed call of this thread.
fn errno() -> libc::c_int {
    // SAFETY: `__errno_location` returns this thread's errno slot, always valid.
    unsafe { *libc::__errno_location() }
}

/// The forked tracer: killed (which detaches it from every thread) and reaped when dropped.
pub struct Tracer {
    /// The tracer's process id.
    pub pid: libc::pid_t,
    /// SIGTRAPs the tracer swallowed (a page shared with the child).
    pub swallowed: &'static AtomicU64,
}

impl Tracer {
    /// Forks the tracer and returns once it has seized every thread of this process; panics with the
    /// reason when it could not.
    pub fn attach() -> Tracer {
        let parent = std::process::id() as libc::pid_t;
        // Everything the child needs is prepared here: after `fork` it makes raw system calls only.
        let task_dir = CString::new(format!("/proc/{parent}/task")).unwrap();
        // SAFETY: a fresh anonymous shared mapping of one page; checked below.
        let page = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(page, libc::MAP_FAILED, "mmap: {}", std::io::Error::last_os_error());
        // SAFETY: the page is zeroed, page-aligned, writable and never unmapped (it lives as long as the
        // process); an `AtomicU64` of zero is all-zero bytes.
        let swallowed: &'static AtomicU64 = unsafe { &*page.cast::<AtomicU64>() };
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0, "pipe2");
        let [report_rx, report_tx] = fds;
        // SAFETY: the child runs only `tracer_main`, which makes raw system calls and ends in `_exit`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed: {}", std::io::Error::last_os_error());
        if pid == 0 {
            // SAFETY: the read end is the child's own copy.
            unsafe { libc::close(report_rx) };
            tracer_main(&task_dir, parent, report_tx, swallowed);
        }
        let tracer = Tracer { pid, swallowed };
        // SAFETY: the parent's copy of the write end: the read below sees EOF if the child dies silently.
        unsafe { libc::close(report_tx) };
        let mut report = [0i32; 2];
        let mut pfd = libc::pollfd { fd: report_rx, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd; then a read into `report`'s 8 bytes; then our own descriptor closed.
        let got = unsafe {
            let ready = libc::poll(&mut pfd, 1, PATIENCE.as_millis() as libc::c_int);
            let got = if ready == 1 { libc::read(report_rx, report.as_mut_ptr().cast(), 8) } else { -1 };
            libc::close(report_rx);
            got
        };
        assert_eq!(got, 8, "the tracer child sent no report within {PATIENCE:?} (it died or hung)");
        let [err, seized] = report;
        assert!(
            err != libc::EPERM,
            "PTRACE_SEIZE of this process by its child failed with EPERM: this host forbids tracing a \
             parent (Yama ptrace_scope >= 1, a seccomp filter, or a container without ptrace), so this \
             test cannot check the tracer refusal here"
        );
        assert_eq!(err, 0, "the tracer child could not seize our threads: {}", std::io::Error::from_raw_os_error(err));
        assert!(seized >= 2, "the tracer seized {seized} threads; this process has at least 2 (the caller too)");
        tracer
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        let mut status = 0;
        // SAFETY: our own child: SIGKILL ends it (the kernel detaches it from every tracee), then reap it.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            libc::waitpid(self.pid, &mut status, 0);
        }
    }
}

/// The tracer child's whole life. Raw system calls only: no allocation and no lock that another thread
/// of the parent may have held at the `fork`.
///
/// Seizes the parent's main thread, then every thread listed in `task_dir` until a pass finds no new
/// one (`PTRACE_O_TRACECLONE` seizes threads created later), and sends `[errno or 0, threads seized]`
/// on `report`. Then resumes every stop: a SIGTRAP's signal-delivery-stop without the signal (gdb's
/// default: swallowed, counted in `swallowed`), any other signal passed on, event and group stops with
/// none. Ends when no tracee is left; the parent kills it sooner.
fn tracer_main(task_dir: &CString, parent: libc::pid_t, report: libc::c_int, swallowed: &AtomicU64) -> ! {
    let seize = |tid: libc::pid_t| {
        // SAFETY: PTRACE_SEIZE takes a tid, an unused address and the options; it does not stop the thread.
        let rc = unsafe { libc::ptrace(libc::PTRACE_SEIZE, tid, 0usize, libc::PTRACE_O_TRACECLONE as libc::c_ulong) };
        if rc == 0 {
            0
        } else {
            errno()
        }
    };
    let finish = |err: libc::c_int, seized: usize| -> ! {
        let msg = [err, seized as i32];
        // SAFETY: writes the 8 bytes of `msg` to our pipe; `_exit` skips the parent's atexit handlers.
        unsafe {
            libc::write(report, msg.as_ptr().cast(), 8);
            libc::close(report);
            if err != 0 {
                libc::_exit(1);
            }
        }
        serve(swallowed)
    };
    let mut seized = [0 as libc::pid_t; 256];
    match seize(parent) {
        0 => seized[0] = parent,
        err => finish(err, 0),
    }
    let mut n = 1;
    loop {
        let before = n;
        // SAFETY: a NUL-terminated path; the descriptor is closed below.
        let dir = unsafe { libc::open(task_dir.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) };
        if dir < 0 {
            finish(errno(), n);
        }
        let mut buf = [0u64; 512];
        loop {
            // SAFETY: getdents64 fills at most `buf`'s 4096 bytes with `linux_dirent64` records.
            let len = unsafe { libc::syscall(libc::SYS_getdents64, dir, buf.as_mut_ptr(), 4096usize) };
            if len <= 0 {
                break;
            }
            // SAFETY: the first `len` bytes of `buf` were written by the kernel.
            let bytes = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), len as usize) };
            let mut at = 0;
            while at < bytes.len() {
                // linux_dirent64: d_ino (8), d_off (8), d_reclen (2), d_type (1), d_name (NUL-terminated).
                let reclen = u16::from_ne_bytes([bytes[at + 16], bytes[at + 17]]) as usize;
                let mut tid: libc::pid_t = 0;
                let mut numeric = true;
                for &c in bytes[at + 19..at + reclen].iter().take_while(|&&c| c != 0) {
                    numeric &= c.is_ascii_digit();
                    tid = tid.wrapping_mul(10).wrapping_add(libc::pid_t::from(c.wrapping_sub(b'0')));
                }
                at += reclen;
                if !numeric || tid <= 0 || seized[..n].contains(&tid) {
                    continue;
                }
                match seize(tid) {
                    // EPERM on a thread after the main one (same credentials, so not a denial): it is
                    // already ours, seized by PTRACE_O_TRACECLONE.
                    0 | libc::EPERM => {}
                    libc::ESRCH => continue, // the thread exited
                    err => finish(err, n),
                }
                if n < seized.len() {
                    seized[n] = tid;
                    n += 1;
                }
            }
        }
        // SAFETY: our descriptor.
        unsafe { libc::close(dir) };
        if n == before {
            finish(0, n);
        }
    }
}

/// The tracer's wait loop; see [`tracer_main`].
fn serve(swallowed: &AtomicU64) -> ! {
    loop {
        let mut status = 0;
        // SAFETY: waits for any tracee, threads included (`__WALL`); `status` is a valid out-pointer.
        let tid = unsafe { libc::waitpid(-1, &mut status, libc::__WALL) };
        if tid < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            // ECHILD: every tracee is gone.
            // SAFETY: ends the child without the parent's atexit handlers.
            unsafe { libc::_exit(0) }
        }
        if !libc::WIFSTOPPED(status) {
            continue; // a tracee exited
        }
        let sig = libc::WSTOPSIG(status);
        let pass = if status >> 16 != 0 {
            0 // an event stop (new thread, group stop under PTRACE_SEIZE): nothing to deliver
        } else if sig == libc::SIGTRAP {
            swallowed.fetch_add(1, Ordering::Relaxed);
            0 // swallowed, as gdb does: the thread resumes after its int3
        } else {
            sig
        };
        // SAFETY: resumes a tracee in a ptrace-stop, delivering `pass` (0: none).
        unsafe { libc::ptrace(libc::PTRACE_CONT, tid, 0usize, pass as libc::c_ulong) };
    }
}
