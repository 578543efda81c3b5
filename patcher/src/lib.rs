//! callpatch-patcher: rewrites x86-64 call sites that other threads are executing, in user space, the
//! way Linux rewrites its own text.
//!
//! A patch is a batch of [`SitePatch`]es (address, the instruction there now, the one it shall hold)
//! applied by one [`Protocol`]:
//! - [`Protocol::Bp`]: the kernel's `text_poke_bp` — `int3` on byte 0, sync, body, sync, byte 0,
//!   sync; a thread that meets the `int3` has the new instruction emulated by the SIGTRAP handler
//!   ([`trap`]);
//! - [`Protocol::CsPrefix`]: `2e e8 rel32` sites; the `int3` replaces the prefix and a trapped thread
//!   resumes at the plain `call` once the rel32 is whole;
//! - [`Protocol::Aligned`]: one atomic store where the rel32 stays inside one granule, the site's
//!   trampoline otherwise; one sync, no trap;
//! - [`Protocol::Naive`]: a byte copy with no protocol, to show the torn-write hazard.
//!
//! "Sync" is `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE)` ([`sync`]): every thread of the
//! process serialises its instruction stream before the call returns. Every batch runs under one
//! process-wide mutex, is validated whole before its first write (the bytes must be `old`, `new` must
//! reach its target, the site must lie in mapped code: otherwise nothing is written), goes through one
//! [`TextWriter`] and is read back. The sites' instruction forms are encoded by hand ([`insn`]), as the
//! kernel's `text_gen_insn` does. This crate needs only `libc`.
//!
//! ```
//! use callpatch_patcher::{patch_batch, Arena, ArenaMode, Insn, Protocol, SitePatch, TextWriter};
//!
//! // Two functions (`mov eax, N; ret`) and a caller (`call one; ret`) in W^X code memory.
//! let mut arena = Arena::new(4096, ArenaMode::DualMap)?;
//! let one = arena.alloc(16, 16)?;
//! arena.write(one, &[0xb8, 1, 0, 0, 0, 0xc3])?;
//! let two = arena.alloc(16, 16)?;
//! arena.write(two, &[0xb8, 2, 0, 0, 0, 0xc3])?;
//! let site = arena.alloc(16, 16)?;
//! arena.write(site, &callpatch_patcher::insn::encode(Insn::Call(one), site)?)?;
//! arena.write(site + 5, &[0xc3])?;
//! // SAFETY: `site` is generated code with the C ABI that returns what its callee returns.
//! let caller: extern "C" fn() -> u32 = unsafe { std::mem::transmute(site) };
//! assert_eq!(caller(), 1);
//!
//! if callpatch_patcher::membarrier_ready().is_ok() {
//!     let writer = TextWriter::for_arena(&arena);
//!     let patch = SitePatch { addr: site, old: Insn::Call(one), new: Insn::Call(two) };
//!     // SAFETY: `site` is the first byte of our own call instruction, and `two` takes that call.
//!     let report = unsafe { patch_batch(&writer, Protocol::Bp, &[patch]) }?;
//!     assert_eq!(report.syncs, 3);
//!     assert_eq!(caller(), 2);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(unsafe_op_in_unsafe_fn, missing_docs, clippy::undocumented_unsafe_blocks)]

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
compile_error!("callpatch-patcher rewrites x86-64 machine code on Linux: build it for x86_64-unknown-linux-*");

mod aligned;
pub mod arena;
mod batch;
mod bp;
mod cs_prefix;
mod error;
pub mod fork;
pub mod guard;
pub mod hub;
pub mod insn;
pub mod maps;
pub mod naive;
mod protocol;
mod rollback;
pub mod sync;
mod table;
pub mod text_writer;
pub mod trap;
mod validate;

pub use aligned::fits_one_word;
pub use arena::{page_size, Arena, ArenaMode, CACHE_LINE};
pub use batch::{patch_batch, patch_batch_stepped, site_insn, text_poke_bp, BatchReport, SitePatch, Step};
pub use callpatch_vocab::{Granule, Protocol};
pub use error::PatchError;
pub use fork::hold_locks_across_fork;
pub use insn::{decode, encode, Insn, InsnBytes};
pub use naive::NaiveStore;
pub use sync::{membarrier_ready, sync_cores, sync_count};
pub use text_writer::{TextWriter, WriteMethod};
pub use trap::{
    emulate_forever, forget_sites, install_trap_handler, late_trap_count, set_unclaimed_trap_hook, trap_count,
    trap_handler_installed, uninstall_trap_handler,
};
