//! Catch zones: `int3`-filled code memory where a misdirected call is counted instead of crashing.
//!
//! The stress and hazard experiments place their targets inside memory that is `cc` everywhere else
//! (the arena fills unwritten bytes with `int3`). A call that goes somewhere wrong — a torn rel32, a
//! half-written site — lands on an `int3`; the SIGTRAP handler finds the address in a zone, adds one to
//! the caller's tally and returns to the caller as `ret` would (the wrong call pushed a return address).
//!
//! Register convention (the experiments' generated callers keep it): while a caller runs zone code,
//! `rdi` points at its counter block and the tally is the `u64` at `rdi + tally_offset`. Zones are a
//! fixed array of atomics so the handler neither locks nor allocates.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use callpatch_patcher::trap::Regs;
use callpatch_patcher::{set_unclaimed_trap_hook, PatchError};

static CAUGHT: AtomicU64 = AtomicU64::new(0);

/// Misdirected executions caught in catch zones, process-wide.
pub fn caught_count() -> u64 {
    CAUGHT.load(Ordering::Relaxed)
}

const MAX_ZONES: usize = 64;

struct Zone {
    /// First address; 0 = free entry. Stored last on registration, cleared first on removal.
    start: AtomicUsize,
    end: AtomicUsize,
    tally_offset: AtomicUsize,
}

#[allow(clippy::declare_interior_mutable_const)]
const FREE: Zone = Zone { start: AtomicUsize::new(0), end: AtomicUsize::new(0), tally_offset: AtomicUsize::new(0) };
static ZONES: [Zone; MAX_ZONES] = [FREE; MAX_ZONES];
static REGISTER: Mutex<()> = Mutex::new(());

/// A registered zone; dropping it unregisters the zone.
#[derive(Debug)]
pub struct CatchZone {
    index: usize,
}

impl CatchZone {
    /// Registers `[start, start+len)` (and installs the SIGTRAP handler with the zones' hook): an
    /// `int3` executed there (and not a patch site in flight) adds one to the `u64` at
    /// `rdi + tally_offset` and returns to the caller. Fails when all `MAX_ZONES` entries are taken, or
    /// when another owner holds the patcher's unclaimed-trap hook.
    ///
    /// # Safety
    /// Every thread that can execute an `int3` in the range keeps the register convention of the
    /// module docs (`rdi` points at its counter block, the tally is writable) and reached it by a
    /// `call`, so emulating `ret` returns to that caller; the range stays mapped while registered.
    pub unsafe fn register(start: usize, len: usize, tally_offset: usize) -> Result<CatchZone, PatchError> {
        assert!(start != 0 && len > 0, "a catch zone needs a real address range");
        install_hook()?;
        let _g = REGISTER.lock().unwrap_or_else(|e| e.into_inner());
        let full = || PatchError::Build(std::io::Error::other(format!("all {MAX_ZONES} catch zones are taken")));
        let index = ZONES.iter().position(|z| z.start.load(Ordering::SeqCst) == 0).ok_or_else(full)?;
        let z = &ZONES[index];
        z.end.store(start + len, Ordering::SeqCst);
        z.tally_offset.store(tally_offset, Ordering::SeqCst);
        z.start.store(start, Ordering::SeqCst);
        Ok(CatchZone { index })
    }
}

impl Drop for CatchZone {
    fn drop(&mut self) {
        let _g = REGISTER.lock().unwrap_or_else(|e| e.into_inner());
        ZONES[self.index].start.store(0, Ordering::SeqCst);
    }
}

/// Installs [`catch`] as the patcher's unclaimed-trap hook, once.
fn install_hook() -> Result<(), PatchError> {
    static INSTALLED: Mutex<bool> = Mutex::new(false);
    let mut installed = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
    if !*installed {
        // SAFETY: `catch` is async-signal-safe (atomics and two stores), claims only traps inside a
        // registered zone, and changes the context only by emulating the `ret` those callers expect.
        if !unsafe { set_unclaimed_trap_hook(catch) }? {
            return Err(PatchError::Signal(std::io::Error::other("another owner holds the unclaimed-trap hook")));
        }
        *installed = true;
    }
    Ok(())
}

/// Handler side: if `addr` (the `int3`'s address) is in a zone, counts it via `rdi` and emulates
/// `ret` on the interrupted context. Async-signal-safe: atomics, two stores to the caller's memory.
fn catch(addr: usize, regs: &mut Regs) -> bool {
    for z in &ZONES {
        let start = z.start.load(Ordering::SeqCst);
        if start == 0 || addr < start || addr >= z.end.load(Ordering::SeqCst) {
            continue;
        }
        let tally = regs.rdi() + z.tally_offset.load(Ordering::SeqCst);
        // SAFETY: by the zone's register convention `rdi` points at the caller's counter block; the
        // caller thread is the one interrupted, so nothing else writes this word now.
        unsafe { std::ptr::write_volatile(tally as *mut u64, std::ptr::read_volatile(tally as *const u64) + 1) };
        regs.emulate_ret();
        CAUGHT.fetch_add(1, Ordering::Relaxed);
        return true;
    }
    false
}
