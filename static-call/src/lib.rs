//! callpatch-static-call: the kernel's static calls for Rust programs — inline direct calls in the
//! program's own `.text`, retargeted live while other threads run them.
//!
//! ```
//! use callpatch_static_call::{static_call, static_call_update};
//!
//! fn plain(x: u64) -> u64 {
//!     x
//! }
//! fn mixed(x: u64) -> u64 {
//!     x.wrapping_mul(0x9e37_79b9_7f4a_7c15)
//! }
//! static_call! {
//!     /// The hash back-end.
//!     pub static HASH: fn(u64) -> u64 = plain;
//!     /// An optional hook: a disabled hook's calls return 0.
//!     pub static HOOK: Option<fn(u64) -> u64> = None;
//! }
//!
//! assert_eq!(static_call!(HASH(7)), 7);
//! static_call_update!(HASH, mixed).unwrap();
//! assert_eq!(static_call!(HASH(7)), mixed(7));
//! assert_eq!(static_call!(HOOK(7)), 0);
//! static_call_update!(HOOK, |x: u64| x + 1).unwrap();
//! assert_eq!(static_call!(HOOK(7)), 8);
//! ```
//!
//! | kernel                        | here                                                   |
//! |-------------------------------|--------------------------------------------------------|
//! | `DEFINE_STATIC_CALL(name, f)` | `static_call! { static NAME: fn(u32) -> u64 = f; }`    |
//! | `DEFINE_STATIC_CALL_NULL`     | `static_call! { static NAME: Option<fn(u32)> = None; }`|
//! | `static_call(name)(args)`     | `static_call!(NAME(args))`                             |
//! | `static_call_update(name, f)` | `static_call_update!(NAME, f)` / `(NAME, None)`        |
//! | (one key per update)          | `static_call_update! { A => f, B => None }`: one batch |
//! | `static_call_query(name)`     | `NAME.query()`: a fn of the key's type, or `None`      |
//! | `EXPORT_STATIC_CALL_TRAMP`    | `#[call_only(update = NAME_UPDATE)]` on the definition |
//! | `.static_call_sites`          | section `static_call_sites` ([`sites`])                |
//! | `static_call_init()` at boot  | [`init`], or the first update                          |
//! | `DEFINE_STATIC_KEY_FALSE(k)`  | `static_branch! { static K: StaticBranch = false; }` ([`branch`]) |
//! | `static_branch_unlikely(&k)`  | `static_branch_unlikely!(K)` / `static_branch_likely!(K)` |
//! | `static_branch_enable(&k)`    | `K.enable()` / `K.disable()`: one bp batch             |
//!
//! How a call works: the site is an `asm!` block with a 5-byte `call rel32` to the key's trampoline and
//! an entry in the site table ([`sites`]). Until init the trampoline jumps through the key's pointer
//! ([`trampoline`]); init patches every site to `call target` directly, as the kernel does at boot, so a
//! static call then costs what a direct call costs. An update patches one key's trampoline and all its
//! sites in one bp (int3) batch with the patcher's three SYNC_CORE membarriers ([`update`]); threads
//! calling meanwhile reach the old or the new target.
//!
//! A target is a fn item or a non-capturing closure of the key's exact fn type, reached through a
//! generated `extern "C"` shim ([`signature`]); arguments and results are integers, `bool`, `char` or
//! raw pointers, at most six ([`abi`]). A key declared `Option<fn(..)>` may be set to `None`: as the
//! kernel's RET0, each site becomes one 5-byte `xor eax, eax` (`2e 2e 2e 31 c0`), so a call returns zero
//! without calling, and while the key has a target its calls pay nothing extra. Every result type a key
//! can have comes back in `rax` alone and has zero as a value ([`RegRet`]): that is what makes RET0 right
//! for it (a float or two-register result could not be zeroed by it, and does not compile).
//!
//! The trap-free backend never writes an `int3`: sites inside one aligned 8-byte word change with one
//! 8-byte store, the others stay on their trampoline ([`update`] says what that rests on). The program
//! chooses it at init ([`init_with`], `CALLPATCH_STATIC_CALL=trap-free`), and init chooses it by itself
//! when a thread is traced or the SIGTRAP handler cannot be installed.
//!
//! Where code patching is unavailable (no SYNC_CORE membarrier, text not writable), the generic backend
//! keeps every call correct: the trampoline's indirect jump through the key's pointer, updated with one
//! atomic store. It is reported once on stderr; `CALLPATCH_STATIC_CALL=generic` requests it.
//!
//! Static branches (the kernel's jump labels) share the patcher, the lock, init and the backend: a
//! `static_branch_likely!` / `static_branch_unlikely!` site is a 5-byte `jmp` to an out-of-line stub
//! that tests the key's state byte until init patches it to a nop or a jump to its label ([`branch`]).
//!
//! Plugins: a `dlopen`ed `cdylib` built on this crate has its own copy of it and of the patcher, with its
//! own keys and sites (a key's sites are in the object that defines it); the copies share the process's
//! one text lock and SIGTRAP handler (`callpatch_patcher::hub`), and a `dlclose`d copy withdraws from
//! the handler before it is unmapped. Rust `dylib`s (one copy shared across objects) are untested.
//!
//! Limits: a panicking target aborts the process, after one line naming the target and its key (a panic
//! cannot unwind through the site's `asm!` call on stable Rust: `options(may_unwind)` is unstable); the
//! site macros contain `unsafe` blocks (they emit `asm!`), so a crate that forbids `unsafe_code` cannot
//! use them.
//!

#![deny(unsafe_op_in_unsafe_fn, missing_docs, clippy::undocumented_unsafe_blocks)]

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
compile_error!("callpatch-static-call patches x86-64 call sites on Linux: build it for x86_64-unknown-linux-*");

pub mod abi;
pub mod branch;
mod branch_macros;
pub mod branch_sites;
mod inline;
mod key;
mod macros;
pub mod signature;
pub mod sites;
pub mod trampoline;
pub mod update;

pub use abi::{RegArg, RegRet};
pub use branch::{branch_status, BranchStatus, StaticBranch};
pub use branch_sites::BranchSite;
pub use key::{Definition, Key, Nullable, StaticCall, Updatable, Updater};
pub use signature::{shim_of, Signature, Target};
pub use sites::CallSite;
pub use update::{backend, init, init_with, status, update_all, Backend, Change, Status, UpdateError, UpdatePaths};

/// The README's `static_call!` example, compiled and run as a doctest so that it cannot drift.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeExample;
