//! One file per subcommand, plus what several of them share: `child` (running an experiment in a
//! child process), `granule` (the `--granule` option), `callers` (the `--callers` bound) and
//! `seconds` (the `--seconds` budget).

pub mod callers;
pub mod calls;
pub mod census;
pub mod child;
pub mod compare;
pub mod granule;
pub mod hazard;
pub mod patch;
pub mod perf;
pub mod plot;
pub mod run;
pub mod seconds;
pub mod stress;
