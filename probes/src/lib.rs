//! callpatch-probes: generated call sites of every flavor, the timing that measures them, and the
//! live-patching experiments.
//!
//! - [`code`]: the flavor table's site forms, scenarios, emission with iced-x86, and probes (one flavor
//!   × scenario as two runnable loops).
//! - [`measure`]: pinned, fenced timing with the U/2U unroll subtraction, and perf counters.
//! - [`experiments`]: callers that run patchable sites while `callpatch-patcher` rewrites them
//!   (latency, stress, hazard).
//!
//! Executable memory, the text writer and the patcher itself are `callpatch_patcher`, re-exported
//! here as [`patch`].

#![deny(unsafe_op_in_unsafe_fn, missing_docs, clippy::undocumented_unsafe_blocks)]

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
compile_error!(
    "callpatch-probes generates and patches x86-64 machine code on Linux: build it for x86_64-unknown-linux-*"
);

pub mod code;
pub mod experiments;
pub mod measure;

pub use callpatch_patcher as patch;
