//! Detecting a disturbed timed run instead of hoping there was none.
//!
//! A timed run of a few hundred microseconds can be hit by three things that add time which is not
//! the calls' own:
//!
//! - **a context switch**: the kernel ran something else on this CPU meanwhile. `getrusage
//!   (RUSAGE_THREAD)` counts this thread's involuntary (`ru_nivcsw`: preempted) and voluntary
//!   (`ru_nvcsw`: it blocked, e.g. in a page fault) switches; either one moving across the run marks it.
//! - **a migration**: the thread moved to another CPU (cold caches and predictors). Pinning makes
//!   this rare but not impossible (a CPU going offline, an admin's `taskset`); `sched_getcpu` before
//!   and after catches it.
//! - **a gap**: time taken from under the thread without the kernel scheduling anything — an
//!   interrupt storm, SMIs, or a hypervisor running another guest on this vCPU (steal). A guest cannot
//!   see the last directly at this scale (`/proc/stat` counts steal in 10 ms ticks), but the TSC keeps
//!   ticking through it, so the run is far longer than the same loop's fastest run nearby. That rule
//!   lives with the runs it compares ([`super::paired`]); this module records the first two.
//!
//! The two syscalls happen outside the TSC window, so they cost nothing the run is charged for.

/// What one timed run looked like from the outside.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunMark {
    /// Context switches (voluntary + involuntary) of this thread during the run.
    pub switches: u64,
    /// The CPU changed between the start and the end of the run (or `sched_getcpu` failed).
    pub migrated: bool,
}

impl RunMark {
    /// No switch and no migration.
    pub fn clean(&self) -> bool {
        self.switches == 0 && !self.migrated
    }
}

/// This thread's context switches so far (voluntary + involuntary), from `getrusage(RUSAGE_THREAD)`.
pub fn thread_switches() -> u64 {
    // SAFETY: an all-zero rusage is a valid value of the plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage; RUSAGE_THREAD reads the calling thread's counts.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    if rc != 0 {
        return u64::MAX; // unknowable: every comparison then sees a change of 0 (and the gap rule still runs)
    }
    (ru.ru_nvcsw as u64).wrapping_add(ru.ru_nivcsw as u64)
}

/// The state taken before a run; [`Watch::finish`] compares it with the state after.
#[derive(Clone, Copy, Debug)]
pub struct Watch {
    switches: u64,
    cpu: i64,
}

impl Watch {
    /// Reads the switch count and the CPU now (call right before the timed window).
    pub fn start() -> Watch {
        Watch { switches: thread_switches(), cpu: super::pin::current_cpu() }
    }

    /// Reads them again (call right after the timed window) and says what changed.
    pub fn finish(self) -> RunMark {
        let cpu = super::pin::current_cpu();
        RunMark { switches: thread_switches().wrapping_sub(self.switches), migrated: cpu != self.cpu || cpu < 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sleep_is_a_switch_and_a_spin_on_a_pinned_thread_usually_is_not() {
        let w = Watch::start();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let m = w.finish();
        assert!(m.switches >= 1, "sleeping must block the thread: {m:?}");
        assert!(!m.clean());
        // The reverse (a short spin sees no switch) cannot be asserted on a shared machine.
        assert!(thread_switches() < u64::MAX, "getrusage(RUSAGE_THREAD) works here");
    }
}
