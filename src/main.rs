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

/// Exit status of a usage error (clap's own), apart from 1 for a failure or a failed verdict.
const USAGE: i32 = 2;

/// Parses the command line; a usage error is one line (clap's message with its details and tips) and
/// exit status 2, while `--help` and `--version` print as usual. A number option takes a negative
/// value (`--seconds -1`), which its own check then refuses, rather than reading it as an option.
fn parse() -> Cli {
    use clap::error::ErrorKind;
    use clap::{CommandFactory, FromArgMatches};
    let cmd = Cli::command().mut_subcommands(|s| s.allow_negative_numbers(true));
    match cmd.try_get_matches().and_then(|m| Cli::from_arg_matches(&m)) {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => e.exit(),
        Err(e) if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
        Err(e) => {
            eprintln!("callpatch: error: {} (try --help)", usage_line(&e.render().to_string()));
            std::process::exit(USAGE);
        }
    }
}

/// clap's rendered error on one line: the message, the arguments it lists and its tips, without the
/// usage block and the pointer to `--help`.
fn usage_line(text: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.starts_with("Usage:") || line.starts_with("For more information") {
            break;
        }
        let line = line.trim_start_matches("error: ");
        match parts.last_mut() {
            // A list under a heading ending in ':' joins it (`... not provided: <DIR>...`).
            Some(last) if last.ends_with(':') => *last = format!("{last} {line}"),
            _ => parts.push(line.to_string()),
        }
    }
    if parts.is_empty() {
        "invalid arguments".into()
    } else {
        parts.join("; ")
    }
}

/// An error and its causes on one line, each cause once: a message that already includes its
/// source's text (`thiserror`'s `{source}`) is not followed by that text again.
fn error_line(e: &anyhow::Error) -> String {
    let mut line = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !line.contains(&text) {
            line = format!("{line}: {text}");
        }
    }
    line
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
        // One clear line, exit status 1: the whole cause chain on one line, each cause once.
        eprintln!("callpatch: error: {}", error_line(&e));
        std::process::exit(1);
    }
}
