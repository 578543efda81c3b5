//! Pinning the measuring thread to one CPU.
//!
//! A migration in the middle of a timed loop moves the code to a core with cold caches and
//! predictors (and, on some systems, a TSC read on another socket); pinning removes that. The allowed
//! CPU list is read once, before anything is pinned: once a thread is pinned, its own affinity mask
//! (which `core_affinity::get_core_ids` reads) has shrunk to that one CPU, so a later read would
//! report the pin, not what the process may use. Call [`allowed_cores`] early (e.g. first thing in
//! `main`) if other code may pin threads before callpatch does.

use std::sync::OnceLock;

use super::MeasureError;

/// The CPUs this process may run on, read once (on first use) from the calling thread's affinity
/// mask through `core_affinity`, sorted ascending.
pub fn allowed_cores() -> Result<&'static [usize], MeasureError> {
    static ALLOWED: OnceLock<Result<Vec<usize>, String>> = OnceLock::new();
    match ALLOWED.get_or_init(|| {
        let mut ids: Vec<usize> = core_affinity::get_core_ids()
            .ok_or_else(|| "sched_getaffinity failed".to_string())?
            .into_iter()
            .map(|c| c.id)
            .collect();
        ids.sort_unstable();
        if ids.is_empty() {
            return Err("the affinity mask is empty".into());
        }
        Ok(ids)
    }) {
        Ok(ids) => Ok(ids),
        Err(e) => Err(MeasureError::NoAllowedCores(e.clone())),
    }
}

/// The CPU the calling thread runs on right now (`sched_getcpu`), or -1 with errno set on failure.
pub fn current_cpu() -> i64 {
    // SAFETY: sched_getcpu takes no arguments and only returns a value.
    i64::from(unsafe { libc::sched_getcpu() })
}

/// Pins the calling thread to `cpu` (default: the last allowed CPU, away from CPU 0 where most
/// interrupts and housekeeping land) and verifies with `sched_getcpu` that it now runs there.
/// Returns the CPU pinned to. The allowed list is read before pinning (see the module doc).
pub fn pin_current_thread(cpu: Option<usize>) -> Result<usize, MeasureError> {
    let allowed = allowed_cores()?;
    let cpu = match cpu {
        Some(c) if !allowed.contains(&c) => {
            return Err(MeasureError::CpuNotAllowed { cpu: c, allowed: allowed.to_vec() })
        }
        Some(c) => c,
        None => *allowed.last().expect("allowed list is non-empty"),
    };
    if !core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
        return Err(MeasureError::PinFailed { cpu });
    }
    // sched_setaffinity migrates the thread before it returns, so the very next sched_getcpu must
    // already report the new CPU.
    let got = current_cpu();
    if got != cpu as i64 {
        return Err(MeasureError::PinMismatch { wanted: cpu, got });
    }
    Ok(cpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_to_an_allowed_cpu_and_sched_getcpu_agrees() {
        let allowed = allowed_cores().unwrap().to_vec();
        let cpu = pin_current_thread(None).unwrap();
        assert_eq!(Some(&cpu), allowed.last());
        assert_eq!(current_cpu(), cpu as i64);
        // Pinning must not change the list read before it.
        assert_eq!(allowed_cores().unwrap(), &allowed[..]);
        let first = allowed[0];
        assert_eq!(pin_current_thread(Some(first)).unwrap(), first);
        assert_eq!(current_cpu(), first as i64);
    }

    #[test]
    fn refuses_a_cpu_outside_the_allowed_list() {
        let allowed = allowed_cores().unwrap();
        let outside = allowed.last().unwrap() + 1000;
        match pin_current_thread(Some(outside)) {
            Err(MeasureError::CpuNotAllowed { cpu, .. }) => assert_eq!(cpu, outside),
            other => panic!("expected CpuNotAllowed, got {other:?}"),
        }
    }
}
