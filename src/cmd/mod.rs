//! One file per subcommand.

pub mod calls;
pub mod census;
pub mod child;
pub mod hazard;
pub mod patch;
pub mod perf;
pub mod plot;
pub mod protocols;
pub mod run;
pub mod stress;
