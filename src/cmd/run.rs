//! `callpatch run` — the main job: measure this machine end to end into one results folder.
//!
//! Parts, in order: `calls`, `patch`, `stress` (a short run per protocol), `hazard`, `census` (default
//! binaries), then the plots and `summary.md` from the CSVs just written. Each measuring part runs as
//! a child process of this executable with its normal command line (`callpatch calls --quick --out
//! DIR`, ...), so `run` adds no second copy of any option handling, a crash in one part is contained
//! and reported, and its full output is kept in `DIR/logs/<part>.log`. A part that cannot run here
//! (no membarrier) is skipped with one line saying why; a part that fails is reported and the run
//! exits non-zero after finishing the others, so the folder never passes for complete when it is not.
//! Everything is written into a staging folder beside the target and swapped in only at the end
//! (`staging`), so an interrupted run leaves the previous complete run as it was.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use callpatch_analysis::report::dataset::CsvFile;
use callpatch_analysis::report::rows::{write_csv, MachineRow};
use callpatch_analysis::report::{machine, render_all};
use callpatch_probes::measure;
use indicatif::{ProgressBar, ProgressStyle};

use super::staging::Staging;
use super::{interrupt, outdir, tether};

/// Options of `callpatch run`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// A short run (about 2 minutes on a quiet 2-vCPU guest): quick calls set, 2 s stress per protocol,
    /// quick patch and hazard, census without the vmlinux.
    #[arg(long)]
    pub quick: bool,
    /// Results folder (default: results/<machine_id>, with results/latest pointing at it).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Parts to leave out (repeat or comma-separate): calls, patch, stress, hazard, census.
    #[arg(long, value_name = "PART", value_delimiter = ',', value_parser = PART_NAMES)]
    pub skip: Vec<String>,
    /// Passed to `calls --cpu`: the CPU its measuring thread is pinned to.
    #[arg(long, value_name = "N")]
    pub cpu: Option<usize>,
    /// Passed to `calls --arena`: how its generated code is mapped (rwx, sealed, dualmap).
    #[arg(long, value_name = "MODE")]
    pub arena: Option<callpatch_probes::code::ArenaMode>,
    /// Passed to `patch --callers` and `stress --callers`: caller threads during patching.
    #[arg(long, value_name = "N")]
    pub callers: Option<usize>,
}

const PART_NAMES: [&str; 5] = ["calls", "patch", "stress", "hazard", "census"];

/// One measuring part: a subcommand and its arguments (before `--out DIR`).
struct Part {
    name: &'static str,
    args: Vec<String>,
    /// Needs `membarrier(PRIVATE_EXPEDITED_SYNC_CORE)` (every live-patching part).
    patches_code: bool,
}

/// The parts with their arguments: `--quick`'s short forms, and the options `run` passes through
/// (`--cpu`, `--arena` to calls; `--callers` to patch and stress).
fn parts(args: &Args) -> Vec<Part> {
    let mut parts = base_parts(args.quick);
    for part in &mut parts {
        let mut add = |flag: &str, value: String| part.args.extend([flag.to_string(), value]);
        match part.name {
            "calls" => {
                if let Some(cpu) = args.cpu {
                    add("--cpu", cpu.to_string());
                }
                if let Some(mode) = args.arena {
                    add("--arena", mode.name().to_string());
                }
            }
            "patch" | "stress" => {
                if let Some(n) = args.callers {
                    add("--callers", n.to_string());
                }
            }
            _ => {}
        }
    }
    parts
}

fn base_parts(quick: bool) -> Vec<Part> {
    let q = |full: Vec<&'static str>, quick_args: Vec<&'static str>| {
        if quick { quick_args } else { full }.into_iter().map(String::from).collect::<Vec<String>>()
    };
    vec![
        Part { name: "calls", args: q(vec!["calls"], vec!["calls", "--quick"]), patches_code: false },
        Part { name: "patch", args: q(vec!["patch"], vec!["patch", "--quick"]), patches_code: true },
        Part {
            name: "stress",
            args: q(vec!["stress", "--seconds", "10"], vec!["stress", "--quick"]),
            patches_code: true,
        },
        Part { name: "hazard", args: q(vec!["hazard"], vec!["hazard", "--quick"]), patches_code: true },
        Part { name: "census", args: q(vec!["census"], vec!["census", "--quick"]), patches_code: false },
    ]
}

/// Runs `callpatch run`.
pub fn main(args: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    interrupt::install();
    let default_out = args.out.is_none();
    let out = args.out.clone().unwrap_or_else(|| Path::new("results").join(machine::Identity::read().machine_id));
    let created = !out.exists();
    // Before measuring: a bad --out fails at once, and a folder another callpatch writes is refused.
    let claim = outdir::claim(&out)?;
    let hz = measure::tsc::hz()?;
    let identity = machine::identify(hz, &measure::hardware_counters_status());
    let staging = Staging::begin(&out, owned)?;
    let failed = match fill(&args, &identity, &out, staging.path()) {
        Ok(failed) => failed,
        Err(e) => {
            staging.abandon();
            if created {
                drop(claim);
                let _ = std::fs::remove_file(out.join(outdir::LOCK_FILE));
                let _ = std::fs::remove_dir(&out);
            }
            return Err(e);
        }
    };
    staging.commit()?;
    if default_out {
        point_latest(&out)?;
    }
    eprintln!(
        "wrote {} in {:.1} s total; start with {}",
        out.display(),
        secs(started.elapsed()),
        out.join("summary.md").display()
    );
    let logs = out.join("logs");
    anyhow::ensure!(failed.is_empty(), "part(s) failed: {} — see the logs in {}", failed.join(", "), logs.display());
    Ok(())
}

/// Writes the whole run into `dir` (the staging folder of `out`, the name shown); returns the parts
/// that failed. An interrupt is an error: the folder is not a run then.
fn fill(args: &Args, identity: &MachineRow, out: &Path, dir: &Path) -> anyhow::Result<Vec<&'static str>> {
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    write_csv(&dir.join("machine.csv"), std::slice::from_ref(identity))
        .with_context(|| format!("cannot write {}", out.join("machine.csv").display()))?;
    eprintln!("callpatch run{}: {} → {}", if args.quick { " --quick" } else { "" }, identity.cpu_model, out.display());

    let membarrier = callpatch_probes::patch::membarrier_ready().map_err(|e| e.to_string());
    let exe = std::env::current_exe().context("cannot locate this executable")?;
    let selected: Vec<Part> = parts(args).into_iter().filter(|p| !args.skip.iter().any(|s| s == p.name)).collect();
    let bar = progress(selected.len() as u64);
    let mut failed = Vec::new();
    for part in &selected {
        if let Some(sig) = interrupt::received() {
            bar.finish_and_clear();
            anyhow::bail!(
                "interrupted by {} before {}; {} left as it was",
                interrupt::name(sig),
                part.name,
                out.display()
            );
        }
        bar.set_message(format!("{} ({})", part.name, part.args.join(" ")));
        if let (true, Err(why)) = (part.patches_code, &membarrier) {
            say(&bar, format!("skip {}: live patching needs membarrier SYNC_CORE: {why}", part.name));
            bar.inc(1);
            continue;
        }
        let t = Instant::now();
        let log_name = format!("logs/{}.log", part.name);
        let shown = out.join(&log_name);
        match run_part(&exe, part, dir, &dir.join(&log_name)) {
            Ok(()) => {
                say(&bar, format!("done {:<7} {:>6.1} s   log: {}", part.name, secs(t.elapsed()), shown.display()))
            }
            Err(e) if interrupt::received().is_some() => {
                bar.finish_and_clear();
                let sig = interrupt::received().unwrap_or(0);
                anyhow::bail!(
                    "interrupted by {} during {} ({e:#}); {} left as it was",
                    interrupt::name(sig),
                    part.name,
                    out.display()
                );
            }
            Err(e) => {
                say(
                    &bar,
                    format!("FAIL {:<7} {:>6.1} s   {e:#} (log: {})", part.name, secs(t.elapsed()), shown.display()),
                );
                failed.push(part.name);
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    if let Some(sig) = interrupt::received() {
        anyhow::bail!("interrupted by {}; {} left as it was", interrupt::name(sig), out.display());
    }

    let rendered = render_all(&[dir.to_path_buf()], dir).context("plots and summary")?;
    for note in &rendered.notes {
        eprintln!("note: {note}");
    }
    eprintln!("rendered {} plot/summary files", rendered.files.len());
    Ok(failed)
}

/// The files under a run's folder that `run` writes itself (relative paths): its CSVs, logs, plots,
/// `summary.md` and lock; every other file an earlier run's folder holds (`perf.csv`, a user's notes)
/// is carried over into the new one.
fn owned(rel: &Path) -> bool {
    let name = rel.to_string_lossy();
    let mut written = CsvFile::ALL.iter().map(|f| f.file_name()).chain(["census_static_calls.csv", "summary.md"]);
    let ext = rel.extension().and_then(|e| e.to_str());
    written.any(|c| c == name)
        || PART_NAMES.iter().any(|p| name == format!("logs/{p}.log"))
        || (rel.parent() == Some(Path::new("")) && matches!(ext, Some("svg" | "png")))
        || name == outdir::LOCK_FILE
}

/// Runs one part as a child process with its output in `log`; an error names the exit status and the
/// last line the part printed (its own one-line error). The part dies with `run` (`tether`) and gets
/// the SIGTERM or SIGINT `run` receives (`interrupt`).
fn run_part(exe: &Path, part: &Part, out: &Path, log: &Path) -> anyhow::Result<()> {
    let file = std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let mut child = tether::tie(&mut Command::new(exe), true)
        .args(&part.args)
        .arg("--out")
        .arg(out)
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .with_context(|| format!("cannot start {}", exe.display()))?;
    interrupt::set_part(child.id());
    let status = child.wait();
    interrupt::set_part(0);
    let status = status.with_context(|| format!("waiting for {}", part.name))?;
    if status.success() {
        return Ok(());
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("(no output)");
    anyhow::bail!("{status}: {last}")
}

fn progress(parts: u64) -> ProgressBar {
    let bar = ProgressBar::new(parts);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:24} {pos}/{len} parts  {msg}  (eta {eta})")
            .expect("static template"),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Points `results/latest` at `out` (a relative symlink beside it), replacing an older link.
fn point_latest(out: &Path) -> anyhow::Result<()> {
    let (Some(parent), Some(name)) = (out.parent(), out.file_name()) else { return Ok(()) };
    let link = parent.join("latest");
    match std::fs::symlink_metadata(&link) {
        Ok(m) if m.file_type().is_symlink() => std::fs::remove_file(&link)?,
        Ok(_) => anyhow::bail!("{} exists and is not a symlink; leaving it alone", link.display()),
        Err(_) => {}
    }
    std::os::unix::fs::symlink(name, &link).with_context(|| format!("cannot create {}", link.display()))
}

/// Prints one line above the bar, or plainly when there is no terminal (CI, a log file), where
/// indicatif hides the bar and would drop the line with it.
fn say(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use callpatch_probes::code::ArenaMode;

    #[test]
    fn cpu_arena_and_callers_reach_the_parts_that_take_them() {
        let args = Args {
            quick: true,
            out: None,
            skip: Vec::new(),
            cpu: Some(0),
            arena: Some(ArenaMode::DualMap),
            callers: Some(2),
        };
        let argv = |name: &str| parts(&args).into_iter().find(|p| p.name == name).unwrap().args.join(" ");
        assert_eq!(argv("calls"), "calls --quick --cpu 0 --arena dualmap");
        assert_eq!(argv("patch"), "patch --quick --callers 2");
        assert_eq!(argv("stress"), "stress --quick --callers 2");
        assert_eq!(argv("hazard"), "hazard --quick");
        let plain = Args { cpu: None, arena: None, callers: None, ..args };
        assert_eq!(
            parts(&plain).into_iter().map(|p| p.args.join(" ")).collect::<Vec<_>>(),
            ["calls --quick", "patch --quick", "stress --quick", "hazard --quick", "census --quick"]
        );
    }
}
