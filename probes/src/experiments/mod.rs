//! The live-patching experiments: generated callers that run patchable sites on other threads while
//! the patcher rewrites them, with exact accounting of every call.
//!
//! - [`live_sites`]: a caller loop over N sites with per-thread counting targets inside a catch zone;
//! - [`catch`]: catch zones, `int3` memory where a misdirected call is counted instead of crashing;
//! - [`latency`]: patch latency per protocol × batch × callers, and the cost of one sync;
//! - [`stress`]: callers run a set of live sites while the patcher flips every site;
//! - [`hazard`]: one line-crossing site rewritten by a naive writer or bp while a thread runs it.

pub mod catch;
pub mod hazard;
pub mod latency;
pub mod live_sites;
pub mod stress;
pub mod threads;

pub use catch::caught_count;
