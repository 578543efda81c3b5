//! Foreign SIGTRAPs reach the handler installed before ours. Its own test binary (a fresh process):
//! it installs SIGTRAP dispositions of its own before the patcher's handler, and all cases run in one
//! test so nothing else in the process touches SIGTRAP meanwhile.

use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

use callpatch_probes::code::{ArenaMode, WriteMethod};
use callpatch_probes::experiments::live_sites::{LiveSites, Placement, Tally};
use callpatch_probes::patch::{install_trap_handler, trap_handler_installed, uninstall_trap_handler, Protocol};

static INFO_CALLS: AtomicU64 = AtomicU64::new(0);
static INFO_CODE: AtomicI32 = AtomicI32::new(0);
static PLAIN_CALLS: AtomicU64 = AtomicU64::new(0);

extern "C" fn info_handler(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel (or our chaining handler) passes the delivery's siginfo.
    INFO_CODE.store(unsafe { (*info).si_code }, Ordering::SeqCst);
    INFO_CALLS.fetch_add(1, Ordering::SeqCst);
}

extern "C" fn plain_handler(_sig: libc::c_int) {
    PLAIN_CALLS.fetch_add(1, Ordering::SeqCst);
}

fn set_sigtrap(handler: usize, flags: libc::c_int) {
    // SAFETY: a plain sigaction call with a fully initialised struct.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler;
        sa.sa_flags = flags;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGTRAP, &sa, std::ptr::null_mut()), 0);
    }
}

fn current_sigtrap() -> usize {
    // SAFETY: a plain sigaction query.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        assert_eq!(libc::sigaction(libc::SIGTRAP, std::ptr::null(), &mut sa), 0);
        sa.sa_sigaction
    }
}

fn int3() {
    // SAFETY: an int3 in our own code: SIGTRAP, and every handler under test returns after it.
    unsafe { core::arch::asm!("int3") };
}

/// A bp patch with a caller meeting the int3 still works while a foreign handler sits behind ours.
fn patching_still_works() {
    let bed = LiveSites::new(Protocol::Bp, 2, Placement::Spread, ArenaMode::DualMap).unwrap();
    let w = bed.writer(WriteMethod::Alias).unwrap();
    bed.patch(&w, Protocol::Bp, &bed.retarget(2, 0, 1)).unwrap();
    let mut t = Tally::default();
    bed.run(&mut t, 5);
    assert_eq!(t.hits, [0, 10]);
}

#[test]
fn foreign_traps_reach_the_previous_handler() {
    // 1. A previous SA_SIGINFO handler.
    set_sigtrap(info_handler as *const () as usize, libc::SA_SIGINFO);
    install_trap_handler().unwrap();
    install_trap_handler().unwrap(); // idempotent
    assert!(trap_handler_installed());
    assert_ne!(current_sigtrap(), info_handler as *const () as usize, "ours is installed on top");
    int3();
    assert_eq!(INFO_CALLS.load(Ordering::SeqCst), 1);
    assert_eq!(INFO_CODE.load(Ordering::SeqCst), libc::SI_KERNEL, "the int3's own siginfo is passed on");
    // SAFETY: raising a signal whose handler returns.
    unsafe { libc::raise(libc::SIGTRAP) };
    assert_eq!(INFO_CALLS.load(Ordering::SeqCst), 2);
    assert_eq!(INFO_CODE.load(Ordering::SeqCst), libc::SI_TKILL);
    patching_still_works();
    assert_eq!(INFO_CALLS.load(Ordering::SeqCst), 2, "our own traps are not passed on");
    uninstall_trap_handler().unwrap();
    uninstall_trap_handler().unwrap(); // idempotent
    assert_eq!(current_sigtrap(), info_handler as *const () as usize, "uninstall restores it");

    // 2. A previous plain handler (no SA_SIGINFO).
    set_sigtrap(plain_handler as *const () as usize, 0);
    install_trap_handler().unwrap();
    int3();
    assert_eq!(PLAIN_CALLS.load(Ordering::SeqCst), 1);
    patching_still_works();
    assert_eq!(PLAIN_CALLS.load(Ordering::SeqCst), 1);
    uninstall_trap_handler().unwrap();
    assert_eq!(current_sigtrap(), plain_handler as *const () as usize);

    // 3. SIG_DFL before us: a foreign int3 must still kill the process with SIGTRAP (in a child).
    set_sigtrap(libc::SIG_DFL, 0);
    // SAFETY: the child only calls sigaction (via install), executes int3 and _exits; no other thread
    // of this test binary holds a lock the child needs.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let no_core = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: setrlimit reads the struct; the child must not leave a core file behind.
        if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &no_core) } != 0 || install_trap_handler().is_err() {
            // SAFETY: leaving the child.
            unsafe { libc::_exit(2) };
        }
        int3();
        // SAFETY: reached only if the trap was swallowed: a failure the parent sees as exit 1.
        unsafe { libc::_exit(1) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFSIGNALED(status), "child exited with {status:#x} instead of dying of its SIGTRAP");
    assert_eq!(libc::WTERMSIG(status), libc::SIGTRAP);
}
