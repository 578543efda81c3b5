//! `callpatch`: the command line. Each subcommand lives in `src/cmd/<name>.rs` and only parses,
//! calls the libraries (`callpatch-probes`, `callpatch-analysis`), writes rows and plots.

use clap::{Parser, Subcommand};

/// `println!` for stdout that stops printing quietly once stdout is closed, instead of panicking
/// (`cmd::stdout`).
macro_rules! outln {
    () => { $crate::cmd::stdout::write(format_args!(""), true) };
    ($($arg:tt)*) => { $crate::cmd::stdout::write(format_args!($($arg)*), true) };
}

/// `print!` with the same rule as [`outln!`].
macro_rules! out {
    ($($arg:tt)*) => { $crate::cmd::stdout::write(format_args!($($arg)*), false) };
}

mod cmd;

/// What a call costs on x86-64 — indirect, retpoline, trampoline, inline patched — and live patching.
#[derive(Parser)]
#[command(name = "callpatch", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Measure every call flavor in every scenario (cycles per call).
    Calls(cmd::calls::Args),
    /// Measure patch latency per protocol and batch size.
    Patch(cmd::patch::Args),
    /// Patch continuously while caller threads run the sites; verify no call is lost or misdirected.
    Stress(cmd::stress::Args),
    /// Show the torn-write hazard of unprotected patching (in a child process).
    Hazard(cmd::hazard::Args),
    /// Count call sites and cache-line crossings in ELF binaries.
    Census(cmd::census::Args),
    /// Rebuild plots and summary.md from CSV files of one or many machines.
    Plot(cmd::plot::Args),
    /// Compare two result folders: the change per flavor × scenario and protocol × batch, with a verdict.
    Compare(cmd::compare::Args),
    /// Run a probe under a perf-event counter group.
    Perf(cmd::perf::Args),
    /// The main job: measure this machine end to end into results/.
    Run(cmd::run::Args),
}

/// Parses the command line; a usage error is one line (clap's first line) and exit status 1 like every other error, while
/// `--help` and `--version` print as usual.
fn parse() -> Cli {
    use clap::error::ErrorKind;
    match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => e.exit(),
        Err(e) if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
        Err(e) => {
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("invalid arguments").trim_start_matches("error: ");
            eprintln!("callpatch: error: {first} (try --help)");
            std::process::exit(1);
        }
    }
}

fn main() {
    let cli = parse();
    let result = match cli.command {
        Command::Calls(a) => cmd::calls::main(a),
        Command::Patch(a) => cmd::patch::main(a),
        Command::Stress(a) => cmd::stress::main(a),
        Command::Hazard(a) => cmd::hazard::main(a),
        Command::Census(a) => cmd::census::main(a),
        Command::Plot(a) => cmd::plot::main(a),
        Command::Compare(a) => cmd::compare::main(a),
        Command::Perf(a) => cmd::perf::main(a),
        Command::Run(a) => cmd::run::main(a),
    };
    if let Err(e) = result {
        // One clear line, non-zero exit: the whole cause chain on one line.
        eprintln!("callpatch: error: {e:#}");
        std::process::exit(1);
    }
}
