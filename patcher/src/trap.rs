//! The SIGTRAP handler: the user-space `poke_int3_handler`.
//!
//! Kernel fact: `int3` (`cc`) raises #BP; Linux delivers it to user space as SIGTRAP with
//! `si_code == SI_KERNEL` and the saved RIP *after* the `int3`, so the site is `RIP - 1`. The handler
//! looks that address up in the poke table (`super::table`) and, for a site of ours, changes the
//! interrupted context so that returning from the signal looks as if the site's NEW instruction ran:
//! - `call t`: push `site + len` at `RSP - 8`, `RSP -= 8`, `RIP = t`. User space needs no stack gap
//!   (the kernel's `int3_emulate_call` does): the kernel places the signal frame below the 128-byte red
//!   zone, so `RSP - 8` of the interrupted context is free;
//! - `jmp t`: `RIP = t`; the 5-byte nop: `RIP = site + 5`; `ret`: pop `RIP`;
//! - a cs-prefixed site under the cs-prefix protocol: wait until the rel32 is whole, `RIP = site + 1`.
//!
//! A trap delivered after its batch ended (a late trap) finds its slot idle; the byte at the site is
//! then no longer `cc` (we restored it), and the handler emulates the newest action all the same.
//! An idle site whose byte *is* `cc` again was re-armed by someone else (a debugger): not ours.
//!
//! An `int3` that is no site of ours is offered to the one unclaimed-trap hook, if a user of this crate
//! installed one ([`set_unclaimed_trap_hook`]; the experiments' catch zones do).
//! Everything else — `int3` elsewhere, `kill -TRAP`, single-step traps — goes to the handler that was
//! installed before ours: an `SA_SIGINFO` or plain handler is called; `SIG_DFL` is restored and the
//! signal re-raised, so the process dies of it exactly as it would have (for a synchronous `int3`,
//! `SIG_IGN` does the same, as the kernel's `force_sig` would).
//!
//! Async-signal safety: no locks, no allocation; atomics, `sched_yield`, `sigaction` and `raise` only.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::error::PatchError;
use crate::insn::{Insn, INT3};
use crate::table::{self, Action, Phase};

static TRAPS: AtomicU64 = AtomicU64::new(0);
static LATE_TRAPS: AtomicU64 = AtomicU64::new(0);

/// Traps this process's handler emulated (every site, every protocol, late ones included).
pub fn trap_count() -> u64 {
    TRAPS.load(Ordering::Relaxed)
}

/// Of [`trap_count`], those whose handler ran after the site's batch had ended.
pub fn late_trap_count() -> u64 {
    LATE_TRAPS.load(Ordering::Relaxed)
}

/// The interrupted thread's registers, as the signal frame holds them: what an unclaimed-trap hook
/// may read and change.
pub struct Regs<'a> {
    gregs: &'a mut [libc::greg_t; 23],
}

impl Regs<'_> {
    fn get(&self, r: libc::c_int) -> usize {
        self.gregs[r as usize] as usize
    }
    fn set(&mut self, r: libc::c_int, v: usize) {
        self.gregs[r as usize] = v as i64;
    }
    /// The interrupted thread's `rdi`.
    pub fn rdi(&self) -> usize {
        self.get(libc::REG_RDI)
    }
    fn push(&mut self, value: usize) {
        let rsp = self.get(libc::REG_RSP) - 8;
        // SAFETY: `rsp` is 8 bytes below the interrupted stack pointer, inside the red zone the kernel
        // left free above the signal frame; the stack is the interrupted thread's own, writable.
        unsafe { std::ptr::write_volatile(rsp as *mut usize, value) };
        self.set(libc::REG_RSP, rsp);
    }
    /// `ret`: pop the return address into RIP.
    pub fn emulate_ret(&mut self) {
        let rsp = self.get(libc::REG_RSP);
        // SAFETY: a `ret` reads the word at RSP, which the interrupted thread's own `call` pushed.
        let ip = unsafe { std::ptr::read_volatile(rsp as *const usize) };
        self.set(libc::REG_RSP, rsp + 8);
        self.set(libc::REG_RIP, ip);
    }
    /// Makes the context look as if `insn` executed at `site`.
    fn emulate(&mut self, insn: Insn, site: usize) {
        match insn {
            Insn::Call(t) | Insn::CsCall(t) => {
                self.push(site + insn.len());
                self.set(libc::REG_RIP, t);
            }
            Insn::Jmp(t) => self.set(libc::REG_RIP, t),
            Insn::Nop5 => self.set(libc::REG_RIP, site + insn.len()),
            Insn::Ret0 => {
                // `xor %eax,%eax` zero-extends into rax. Its flags are not reproduced: a call site's
                // flags are dead after it (`clobber_abi("C")`; the C ABI preserves no flags).
                self.set(libc::REG_RAX, 0);
                self.set(libc::REG_RIP, site + insn.len());
            }
            Insn::Ret => self.emulate_ret(),
        }
    }
}

/// Handles an `int3` at `site` if it belongs to a patch site; false if it is not ours.
fn handle_site(site: usize, regs: &mut Regs) -> bool {
    let Some(slot) = table::lookup(site) else { return false };
    loop {
        let (action, phase, generation) = slot.load();
        if action == Action::Retired {
            return false;
        }
        let late = phase == Phase::Idle;
        if late {
            // SAFETY: `site` is a live site (not retired), so its code page is mapped and readable, and
            // every write to it is a store another thread makes: reading it as an atomic byte is what the
            // Rust memory model allows for memory written concurrently (a plain or volatile read is not).
            let byte = unsafe { std::sync::atomic::AtomicU8::from_ptr(site as *mut u8) }.load(Ordering::Relaxed);
            if byte == INT3 {
                // Seqlock read: the acquire fence orders the byte load before the generation's re-read
                // (in the model, not only on x86, where loads are not reordered with loads anyway).
                std::sync::atomic::fence(Ordering::Acquire);
                if slot.generation() == generation {
                    return false; // idle, and the cc is someone else's
                }
                continue; // a batch began while we looked: read again
            }
        }
        match action {
            Action::ResumeAfterPrefix if phase == Phase::Int3 => {
                // The rel32 behind the prefix may be half written: wait for the patcher's next step.
                // SAFETY: sched_yield has no preconditions and is async-signal-safe.
                unsafe { libc::sched_yield() };
                continue;
            }
            Action::ResumeAfterPrefix => regs.set(libc::REG_RIP, site + 1),
            Action::Emulate(insn) => regs.emulate(insn, site),
            Action::Retired => return false,
        }
        if late {
            LATE_TRAPS.fetch_add(1, Ordering::Relaxed);
        }
        TRAPS.fetch_add(1, Ordering::Relaxed);
        return true;
    }
}

/// The previous disposition, as plain words so the handler reads it with atomics.
static PREV_HANDLER: AtomicUsize = AtomicUsize::new(libc::SIG_DFL);
static PREV_FLAGS: AtomicI32 = AtomicI32::new(0);
/// The previous disposition's `sa_mask`, as words (a `sigset_t` is 128 bytes on Linux x86-64).
static PREV_MASK: [AtomicU64; SIGSET_WORDS] = [const { AtomicU64::new(0) }; SIGSET_WORDS];
const SIGSET_WORDS: usize = std::mem::size_of::<libc::sigset_t>() / 8;

fn store_prev_mask(mask: &libc::sigset_t) {
    // SAFETY: a sigset_t is plain bits, SIGSET_WORDS × 8 bytes long.
    let words: [u64; SIGSET_WORDS] = unsafe { std::mem::transmute_copy(mask) };
    for (w, v) in PREV_MASK.iter().zip(words) {
        w.store(v, Ordering::SeqCst);
    }
}

fn prev_mask() -> libc::sigset_t {
    let words: [u64; SIGSET_WORDS] = std::array::from_fn(|i| PREV_MASK[i].load(Ordering::SeqCst));
    // SAFETY: any bit pattern of the right size is a valid sigset_t.
    unsafe { std::mem::transmute_copy(&words) }
}
static INSTALLED: AtomicBool = AtomicBool::new(false);
static INSTALL: Mutex<()> = Mutex::new(());

extern "C" fn on_sigtrap(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid errno location for this thread; we restore errno on return.
    let errno = unsafe { *libc::__errno_location() };
    // SAFETY: with SA_SIGINFO the kernel passes a valid siginfo and ucontext for this delivery.
    let (code, uc) = unsafe { ((*info).si_code, &mut *(ctx as *mut libc::ucontext_t)) };
    let mut regs = Regs { gregs: &mut uc.uc_mcontext.gregs };
    let handled = code == libc::SI_KERNEL && {
        let site = regs.get(libc::REG_RIP).wrapping_sub(1);
        #[cfg(feature = "test-hooks")]
        testing::maybe_hold(site);
        handle_site(site, &mut regs)
            || unclaimed(site, &mut regs)
            || crate::hub::offer_to_others(site, regs.gregs.as_mut_ptr())
    };
    if !handled {
        chain(sig, info, ctx, code);
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// An `int3` that no site of ours claims, offered to a user's hook: whether someone handled it.
pub type UnclaimedTrapHook = fn(site: usize, regs: &mut Regs) -> bool;

/// The hook, as a plain word so the handler reads it with one atomic load (0: none).
static HOOK: AtomicUsize = AtomicUsize::new(0);

/// Offers an unclaimed `int3` to the hook.
fn unclaimed(site: usize, regs: &mut Regs) -> bool {
    match HOOK.load(Ordering::Acquire) {
        0 => false,
        f => {
            // SAFETY: a non-zero HOOK was stored from an `UnclaimedTrapHook` by `set_unclaimed_trap_hook`.
            let hook: UnclaimedTrapHook = unsafe { std::mem::transmute::<usize, UnclaimedTrapHook>(f) };
            hook(site, regs)
        }
    }
}

/// Installs the trap handler and `hook`, which from now on sees every `int3` at an address that is no
/// site of this patcher (before the trap is chained to the previous handler). Returns `false` when
/// another hook is already installed (there is one slot, for one owner per process).
///
/// # Safety
/// `hook` runs inside a signal handler, on any thread: it must be async-signal-safe (no locks, no
/// allocation; atomics only), claim (`true`) only traps it caused, and change `regs` only to a context
/// the interrupted thread can resume.
pub unsafe fn set_unclaimed_trap_hook(hook: UnclaimedTrapHook) -> Result<bool, PatchError> {
    install_trap_handler()?;
    Ok(HOOK.compare_exchange(0, hook as usize, Ordering::AcqRel, Ordering::Acquire).is_ok())
}

/// The address of the process's handler, as `sigaction` reports it: ours, or the one another copy
/// of the patcher installed and registered this copy with.
pub(crate) fn handler_address() -> usize {
    let hub = crate::hub::get().ok().and_then(|h| h.handler());
    hub.unwrap_or(on_sigtrap as *const () as usize)
}

/// Passes a foreign SIGTRAP to the disposition that was in place before ours, as the kernel would have
/// run it: with its `sa_mask` blocked, SIGTRAP unblocked if it asked for `SA_NODEFER`, and only once if
/// it asked for `SA_RESETHAND` (the disposition is then the default for the next foreign trap).
fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void, code: libc::c_int) {
    let flags = PREV_FLAGS.load(Ordering::SeqCst);
    let prev = if flags & libc::SA_RESETHAND as libc::c_int != 0 {
        // One shot: whichever thread takes it first runs it; later traps see the default.
        PREV_HANDLER.swap(libc::SIG_DFL, Ordering::SeqCst)
    } else {
        PREV_HANDLER.load(Ordering::SeqCst)
    };
    if prev == libc::SIG_DFL || (prev == libc::SIG_IGN && code == libc::SI_KERNEL) {
        // SAFETY: sigaction and raise are async-signal-safe; the zeroed sigaction is SIG_DFL with an
        // empty mask. The raised SIGTRAP takes the default action and ends the process.
        unsafe {
            let mut dfl: libc::sigaction = std::mem::zeroed();
            dfl.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(sig, &dfl, std::ptr::null_mut());
            libc::raise(sig);
        }
        return;
    }
    if prev == libc::SIG_IGN {
        return; // ignored, as before we were installed
    }
    let mut saved: libc::sigset_t = prev_mask();
    // SAFETY: pthread_sigmask and sigaddset are async-signal-safe and get valid sigsets; the mask is
    // restored below, before our handler returns.
    unsafe {
        let mut mask = prev_mask();
        if flags & libc::SA_NODEFER as libc::c_int == 0 {
            libc::sigaddset(&mut mask, sig); // the kernel blocks the signal itself unless SA_NODEFER
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &mask, &mut saved);
        if flags & libc::SA_NODEFER as libc::c_int != 0 {
            let mut one: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut one);
            libc::sigaddset(&mut one, sig);
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &one, std::ptr::null_mut());
        }
    }
    if flags & libc::SA_SIGINFO != 0 {
        // SAFETY: with SA_SIGINFO the previous handler was registered with this signature.
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { std::mem::transmute(prev) };
        f(sig, info, ctx);
    } else {
        // SAFETY: without SA_SIGINFO the previous handler takes the signal number only.
        let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(prev) };
        f(sig);
    }
    // SAFETY: as above; `saved` is the mask our handler ran with.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &saved, std::ptr::null_mut()) };
}

/// The lock that serialises installing and uninstalling (held across `fork`, see [`crate::fork`]).
pub(crate) fn install_lock() -> std::sync::MutexGuard<'static, ()> {
    INSTALL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Installs the SIGTRAP handler (idempotent), remembering the previous disposition for foreign traps.
/// Every protocol calls this before its first write. Where another copy of the patcher (in another
/// `cdylib`) installed the process handler first, this copy registers with it instead ([`crate::hub`]):
/// that handler offers it every `int3` that is not its own.
pub fn install_trap_handler() -> Result<(), PatchError> {
    if INSTALLED.load(Ordering::Acquire) {
        return Ok(());
    }
    let _g = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if INSTALLED.load(Ordering::Acquire) {
        return Ok(());
    }
    let hub = crate::hub::get().map_err(PatchError::Hub)?;
    loop {
        if hub.claim_handler(on_sigtrap as *const () as usize) {
            let installed = install_own();
            hub.handler_installed(installed.is_ok());
            installed?;
            // The disposition now points into this copy's text: keep it mapped for good.
            crate::hub::pin_own_object();
            break;
        }
        if hub.handler().is_some() {
            hub.add_claim(claim).map_err(PatchError::Hub)?;
            crate::hub::leave_on_unload(claim);
            break;
        }
        // The copy that claimed the handler failed to install it: try again.
    }
    INSTALLED.store(true, Ordering::Release);
    Ok(())
}

/// This copy's claim on an `int3`, for the handler another copy installed (signal handler context).
extern "C" fn claim(site: usize, gregs: *mut libc::greg_t) -> bool {
    // SAFETY: the installed handler passes the interrupted context's 23 general registers.
    let mut regs = Regs { gregs: unsafe { &mut *gregs.cast::<[libc::greg_t; 23]>() } };
    handle_site(site, &mut regs) || unclaimed(site, &mut regs)
}

/// Makes `on_sigtrap` the SIGTRAP disposition, remembering the previous one.
fn install_own() -> Result<(), PatchError> {
    // SAFETY: plain sigaction calls with valid, fully initialised structs.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGTRAP, std::ptr::null(), &mut old) != 0 {
            return Err(PatchError::Signal(std::io::Error::last_os_error()));
        }
        PREV_HANDLER.store(old.sa_sigaction, Ordering::SeqCst);
        PREV_FLAGS.store(old.sa_flags, Ordering::SeqCst);
        store_prev_mask(&old.sa_mask);
        let mut new: libc::sigaction = std::mem::zeroed();
        new.sa_sigaction = on_sigtrap as *const () as usize;
        // SA_NODEFER: a thread inside this handler (emulating, or waiting for a cs-prefix rel32) does
        // not block SIGTRAP, so the guard of the next batch, which refuses when a thread blocks it,
        // does not mistake it for a thread pool's mask. The handler itself never executes a site.
        new.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART | libc::SA_NODEFER;
        libc::sigemptyset(&mut new.sa_mask);
        if libc::sigaction(libc::SIGTRAP, &new, std::ptr::null_mut()) != 0 {
            return Err(PatchError::Signal(std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// Restores the disposition found at install time (idempotent; a no-op when not installed, when
/// someone replaced our handler since, and while other copies of the patcher trap through it; a copy
/// registered with another's handler withdraws from it). Only call it when no thread can still hit an
/// `int3` of ours: a late trap after this goes to the previous handler.
pub fn uninstall_trap_handler() -> Result<(), PatchError> {
    let _g = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if !INSTALLED.load(Ordering::Acquire) {
        return Ok(());
    }
    let hub = crate::hub::get().map_err(PatchError::Hub)?;
    let ours = on_sigtrap as *const () as usize;
    if hub.handler() != Some(ours) {
        // Registered with another copy's handler: withdraw from it.
        hub.remove_claim(claim);
        INSTALLED.store(false, Ordering::Release);
        return Ok(());
    }
    if hub.has_claims() {
        return Ok(()); // other copies trap through our handler: it stays
    }
    // SAFETY: plain sigaction calls with valid, fully initialised structs.
    unsafe {
        let mut cur: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGTRAP, std::ptr::null(), &mut cur) != 0 {
            return Err(PatchError::Signal(std::io::Error::last_os_error()));
        }
        if cur.sa_sigaction == ours {
            let mut prev: libc::sigaction = std::mem::zeroed();
            prev.sa_sigaction = PREV_HANDLER.load(Ordering::SeqCst);
            prev.sa_flags = PREV_FLAGS.load(Ordering::SeqCst);
            prev.sa_mask = prev_mask();
            if libc::sigaction(libc::SIGTRAP, &prev, std::ptr::null_mut()) != 0 {
                return Err(PatchError::Signal(std::io::Error::last_os_error()));
            }
        }
    }
    hub.handler_removed();
    INSTALLED.store(false, Ordering::Release);
    Ok(())
}

/// Whether our handler is installed.
pub fn trap_handler_installed() -> bool {
    INSTALLED.load(Ordering::Acquire)
}

/// Makes an `int3` at `site` behave, forever, as `insn` executed there (a site that always traps: the
/// `trap` call flavor, which measures the cost of one emulated call). The caller writes the `cc`.
///
/// # Safety
/// `site` is the first byte of a site in code the caller owns, where every thread that executes the
/// `int3` expects `insn` to run (its target takes the call as the site's callers make it), for as long
/// as that code stays mapped; call [`forget_sites`] before unmapping it.
pub unsafe fn emulate_forever(site: usize, insn: Insn) -> Result<(), PatchError> {
    install_trap_handler()?;
    let mut reg = table::registry();
    reg.slots([site])[0].set(Action::Emulate(insn), Phase::Permanent);
    Ok(())
}

/// Forgets every site in `[start, start+len)`: call it when code there is unmapped, so a later `int3`
/// at a re-used address is not mistaken for one of ours.
///
/// # Safety
/// No thread executes, or can still trap at, a site in that range: a trap there would now be
/// foreign and go to the previous SIGTRAP disposition (by default, death).
pub unsafe fn forget_sites(start: usize, len: usize) {
    table::registry().retire(start, len);
}

/// Test hooks (feature `test-hooks`): hold a thread inside the handler to force a late trap.
#[cfg(feature = "test-hooks")]
pub mod testing {
    use super::*;

    static HOLD_SITE: AtomicUsize = AtomicUsize::new(0);
    static RELEASE: AtomicBool = AtomicBool::new(false);
    static HELD: AtomicU64 = AtomicU64::new(0);

    /// From now on, a thread trapping at `site` waits in the handler (before the table lookup) until
    /// [`release`].
    pub fn hold_at(site: usize) {
        RELEASE.store(false, Ordering::SeqCst);
        HOLD_SITE.store(site, Ordering::SeqCst);
    }

    /// How many traps have entered the hold so far.
    pub fn held() -> u64 {
        HELD.load(Ordering::SeqCst)
    }

    /// Lets held threads go on and stops holding.
    pub fn release() {
        HOLD_SITE.store(0, Ordering::SeqCst);
        RELEASE.store(true, Ordering::SeqCst);
    }

    pub(super) fn maybe_hold(site: usize) {
        if site != 0 && HOLD_SITE.load(Ordering::SeqCst) == site {
            HELD.fetch_add(1, Ordering::SeqCst);
            while !RELEASE.load(Ordering::SeqCst) {
                // SAFETY: sched_yield has no preconditions and is async-signal-safe.
                unsafe { libc::sched_yield() };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arena::{Arena, ArenaMode};
    use crate::insn::encode;

    #[test]
    fn a_thread_waiting_inside_the_handler_is_no_thread_that_blocks_sigtrap() {
        // `f: int3 (over a cs prefix); call a; ret`, its slot set to wait for the rel32: a thread that
        // calls `f` waits inside the handler. Without SA_NODEFER, SIGTRAP is blocked while a handler
        // runs, and the guard refused every batch as if that thread were a pool that blocks signals.
        let mut arena = Arena::new(4096, ArenaMode::Rwx).unwrap();
        let a = arena.alloc(6, 16).unwrap();
        arena.write(a, &[0xb8, 1, 0, 0, 0, 0xc3]).unwrap(); // mov eax, 1; ret
        let f = arena.alloc(8, 16).unwrap();
        arena.write(f, &[INT3]).unwrap();
        arena.write(f + 1, &encode(Insn::Call(a), f + 1).unwrap()).unwrap();
        arena.write(f + 6, &[0xc3]).unwrap();
        install_trap_handler().unwrap();
        let slot = table::registry().slots([f])[0];
        slot.set(Action::ResumeAfterPrefix, Phase::Int3);

        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            // SAFETY: `f` is the function written above (a trap the handler resolves, then a call to a
            // target that returns 1 in eax); the arena lives until this thread is joined.
            let call: extern "C" fn() -> u32 = unsafe { std::mem::transmute(f) };
            tx.send(call()).unwrap();
        });
        std::thread::sleep(std::time::Duration::from_millis(100)); // it is in the handler by now
        let verdict = crate::guard::check(handler_address());
        slot.set_phase(Phase::BodyReady); // the rel32 is "written": the waiter resumes at f + 1
        assert_eq!(rx.recv_timeout(std::time::Duration::from_secs(10)), Ok(1));
        waiter.join().unwrap();
        table::registry().retire(f, 8);
        verdict.expect("a thread waiting in our handler must not make the guard refuse");
    }
}
