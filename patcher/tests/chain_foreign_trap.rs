//! A foreign `int3` (not a site of the patcher) goes to the SIGTRAP disposition that was installed
//! before the patcher's, run as the kernel would have run it: its `sa_mask` blocked, SIGTRAP
//! unblocked under `SA_NODEFER`, and only once under `SA_RESETHAND`. One process per test file: the
//! previous handler is installed first, then the patcher's over it.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use callpatch_patcher::trap::install_trap_handler;

static CALLS: AtomicU32 = AtomicU32::new(0);
static USR1_BLOCKED: AtomicBool = AtomicBool::new(false);
static TRAP_BLOCKED: AtomicBool = AtomicBool::new(true);

extern "C" fn previous(_sig: libc::c_int, _info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    CALLS.fetch_add(1, Ordering::SeqCst);
    // SAFETY: querying this thread's mask into a zeroed sigset.
    unsafe {
        let mut now: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_SETMASK, std::ptr::null(), &mut now);
        USR1_BLOCKED.store(libc::sigismember(&now, libc::SIGUSR1) == 1, Ordering::SeqCst);
        TRAP_BLOCKED.store(libc::sigismember(&now, libc::SIGTRAP) == 1, Ordering::SeqCst);
    }
}

fn foreign_int3() {
    // SAFETY: an int3 in this function's own code: SIGTRAP with RIP after it; the handlers return.
    unsafe { std::arch::asm!("int3") };
}

#[test]
fn a_foreign_trap_runs_the_previous_handler_with_its_mask_nodefer_and_resethand() {
    // SAFETY: installs a handler of the right signature with a valid, initialised sigaction.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = previous as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_NODEFER | libc::SA_RESETHAND;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaddset(&mut sa.sa_mask, libc::SIGUSR1);
        assert_eq!(libc::sigaction(libc::SIGTRAP, &sa, std::ptr::null_mut()), 0);
    }
    install_trap_handler().unwrap();

    foreign_int3();
    assert_eq!(CALLS.load(Ordering::SeqCst), 1, "the previous handler ran for the foreign trap");
    assert!(USR1_BLOCKED.load(Ordering::SeqCst), "its sa_mask (SIGUSR1) was blocked while it ran");
    assert!(!TRAP_BLOCKED.load(Ordering::SeqCst), "SA_NODEFER: SIGTRAP was not blocked while it ran");
    // SAFETY: querying this thread's mask.
    let usr1_after = unsafe {
        let mut now: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_SETMASK, std::ptr::null(), &mut now);
        libc::sigismember(&now, libc::SIGUSR1) == 1
    };
    assert!(!usr1_after, "the thread's own mask is restored after the handler");

    // SA_RESETHAND: the second foreign trap meets the default action. In a child, which must die of it.
    // SAFETY: fork in a test process; the child only traps and exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        foreign_int3();
        // SAFETY: _exit is always safe; reaching it means the handler ran a second time.
        unsafe { libc::_exit(CALLS.load(Ordering::SeqCst) as i32) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGTRAP,
        "SA_RESETHAND: the second foreign trap must take the default action (status {status:#x}: exited {})",
        libc::WEXITSTATUS(status)
    );
}
