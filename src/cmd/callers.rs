//! `--callers`: caller threads run alongside the patcher, one per allowed CPU at most. More would
//! only time-share CPUs (a sync then measures the scheduler) and, in the thousands, exhaust threads or
//! memory; so a count above the CPUs this process may run on is refused before anything starts.

/// Refuses `callers` above the number of CPUs this process is allowed to run on.
pub fn check(callers: usize) -> anyhow::Result<()> {
    let cpus = callpatch_probes::measure::pin::allowed_cores()?.len();
    if callers > cpus {
        anyhow::bail!("--callers {callers}: at most {cpus}, the CPUs this process may run on");
    }
    Ok(())
}
