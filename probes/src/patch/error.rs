//! Why a patch was refused or failed. Every refusal happens before the first byte is written, so a
//! returned [`PatchError`] of a validation kind means the text is exactly as it was.

use thiserror::Error;

use crate::code::Insn;

/// Everything that can go wrong when patching; validation variants leave every byte unchanged.
#[derive(Debug, Error)]
pub enum PatchError {
    /// The address is not inside any executable mapping of this process.
    #[error("{addr:#x} is not a known site: it lies in no executable mapping of this process")]
    UnknownSite {
        /// The site address given.
        addr: usize,
    },
    /// The bytes at the site are not the expected old instruction.
    #[error("site {addr:#x} holds {found:02x?}, not the expected {expected:?}")]
    WrongBytes {
        /// Site address.
        addr: usize,
        /// What the caller said is there.
        expected: Insn,
        /// What is there.
        found: Vec<u8>,
    },
    /// The new target is beyond the ±2 GiB a rel32 displacement reaches.
    #[error("target {target:#x} is out of rel32 range of the site at {addr:#x}")]
    OutOfRange {
        /// Site address.
        addr: usize,
        /// Requested target.
        target: usize,
    },
    /// Old and new instruction differ in length (a site never changes size).
    #[error("site {addr:#x}: {old:?} and {new:?} have different lengths")]
    LengthMismatch {
        /// Site address.
        addr: usize,
        /// Current instruction.
        old: Insn,
        /// Requested instruction.
        new: Insn,
    },
    /// Two sites of one batch overlap (or one site appears twice).
    #[error("sites {first:#x} and {second:#x} of one batch overlap")]
    Overlap {
        /// Lower address.
        first: usize,
        /// Higher address.
        second: usize,
    },
    /// The protocol cannot perform this change on this site.
    #[error("site {addr:#x}: protocol {protocol} cannot do this: {reason}")]
    Unsupported {
        /// Site address.
        addr: usize,
        /// Protocol name.
        protocol: &'static str,
        /// Why not.
        reason: String,
    },
    /// The kernel lacks the membarrier command every protocol's sync needs.
    #[error(
        "membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE) is unavailable ({reason}); the patcher needs \
         Linux >= 4.16 built with CONFIG_MEMBARRIER (SYNC_CORE on x86-64 needs the arch support merged in 5.x)"
    )]
    MembarrierUnavailable {
        /// What the kernel answered.
        reason: String,
    },
    /// The text writer failed (mprotect, /proc/self/mem, ...). Bytes written before the failure stay.
    #[error("writing {len} bytes at {addr:#x} failed: {source}")]
    Write {
        /// Address of the failed write.
        addr: usize,
        /// Bytes it tried to write.
        len: usize,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// After the last step a site does not read back as the new instruction.
    #[error("site {addr:#x} reads back {found:02x?} after patching, expected {expected:02x?}")]
    ReadBack {
        /// Site address.
        addr: usize,
        /// Bytes expected.
        expected: Vec<u8>,
        /// Bytes read.
        found: Vec<u8>,
    },
    /// An experiment could not build its code (arena mapping, emission).
    #[error("building the experiment's code failed: {0}")]
    Build(#[source] std::io::Error),
    /// An experiment's exact accounting found calls lost or misdirected.
    #[error("call accounting is off: {0}")]
    Miscount(String),
    /// Installing the SIGTRAP handler failed.
    #[error("installing the SIGTRAP handler failed: {0}")]
    Signal(#[source] std::io::Error),
}
