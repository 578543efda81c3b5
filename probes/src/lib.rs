//! callpatch-probes: everything in callpatch that executes or rewrites machine code.
//!
//! - [`code`]: executable memory (arena), the text writer, and site instruction encoding.
//! - [`measure`]: pinned, fenced timing with the U/2U unroll subtraction, and perf counters.
//! - [`patch`]: the live patcher — bp (int3), cs-prefix, aligned-only and naive protocols.
//! - [`static_call`](mod@static_call): the kernel's static call API for Rust programs.

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
compile_error!(
    "callpatch-probes generates and patches x86-64 machine code on Linux: build it for x86_64-unknown-linux-*"
);

pub mod code;
pub mod measure;
pub mod patch;
pub mod static_call;
