//! One file per subcommand, plus what several of them share: `child` (running an experiment in a
//! child process), `tether` (children die with their parent), `interrupt` (`run`'s signal
//! forwarding), `outdir` (the output folder, checked and locked before measuring), `staging` (`run`'s
//! folder swapped in only when complete), `stdout` (printing that a closed pipe ends quietly),
//! `granule` (the `--granule` option), `callers` (the `--callers` bound) and `seconds` (the
//! `--seconds` budget).

pub mod callers;
pub mod calls;
pub mod census;
pub mod child;
pub mod compare;
pub mod granule;
pub mod hazard;
pub mod interrupt;
pub mod outdir;
pub mod patch;
pub mod perf;
pub mod plot;
pub mod run;
pub mod seconds;
pub mod staging;
pub mod stdout;
pub mod stress;
pub mod tether;
