//! Why a patch was refused or failed. Every refusal happens before the first byte is written, so a
//! returned [`PatchError`] of a validation kind means the text is exactly as it was.

use std::fmt;

use crate::insn::Insn;

/// Everything that can go wrong when patching; validation variants leave every byte unchanged.
#[derive(Debug)]
pub enum PatchError {
    /// The address is not inside any executable mapping of this process.
    UnknownSite {
        /// The site address given.
        addr: usize,
    },
    /// The bytes at the site are not the expected old instruction.
    WrongBytes {
        /// Site address.
        addr: usize,
        /// What the caller said is there.
        expected: Insn,
        /// What is there.
        found: Vec<u8>,
    },
    /// The new target is beyond the ±2 GiB a rel32 displacement reaches.
    OutOfRange {
        /// Site address.
        addr: usize,
        /// Requested target.
        target: usize,
    },
    /// Old and new instruction differ in length (a site never changes size).
    LengthMismatch {
        /// Site address.
        addr: usize,
        /// Current instruction.
        old: Insn,
        /// Requested instruction.
        new: Insn,
    },
    /// Two sites of one batch overlap (or one site appears twice).
    Overlap {
        /// Lower address.
        first: usize,
        /// Higher address.
        second: usize,
    },
    /// The protocol cannot perform this change on this site.
    Unsupported {
        /// Site address.
        addr: usize,
        /// Protocol name.
        protocol: &'static str,
        /// Why not.
        reason: String,
    },
    /// The kernel lacks the membarrier command every protocol's sync needs.
    MembarrierUnavailable {
        /// What the kernel answered.
        reason: String,
    },
    /// The text writer failed (mprotect, /proc/self/mem, ...). Inside a batch this comes wrapped in
    /// [`PatchError::RolledBack`] or [`PatchError::RollbackFailed`].
    Write {
        /// Address of the failed write.
        addr: usize,
        /// Bytes it tried to write.
        len: usize,
        /// The OS error.
        source: std::io::Error,
    },
    /// After the last step a site does not read back as the new instruction.
    ReadBack {
        /// Site address.
        addr: usize,
        /// Bytes expected.
        expected: Vec<u8>,
        /// Bytes read.
        found: Vec<u8>,
    },
    /// An experiment could not build its code (arena mapping, emission).
    Build(std::io::Error),
    /// An experiment's exact accounting found calls lost or misdirected.
    Miscount(String),
    /// Installing the SIGTRAP handler failed.
    Signal(std::io::Error),
    /// The batch's pages could not be made writable (an `mprotect` refused, e.g. under a W^X policy);
    /// nothing was written.
    NotWritable {
        /// The first address the batch would write.
        addr: usize,
        /// The OS error.
        source: std::io::Error,
    },
    /// A step of the batch failed (the cause inside); every site was restored to its old instruction.
    RolledBack(Box<PatchError>),
    /// A step failed and so did the rollback: the `parked` sites keep `int3` on byte 0 and the trap
    /// handler runs their old instruction at every execution (calls stay correct, slower); a later
    /// batch may patch them. Every other site holds its old instruction.
    RollbackFailed {
        /// What failed in the batch.
        cause: Box<PatchError>,
        /// What failed in the rollback.
        rollback: Box<PatchError>,
        /// The parked sites.
        parked: Vec<usize>,
    },
    /// A trap during this batch would kill the process or go astray (see [`crate::guard`]); nothing
    /// was written.
    TrapWouldBeFatal(crate::guard::Fatal),
    /// Another copy of the patcher in this process (a `cdylib` of another version) owns the process
    /// text lock in a layout this copy cannot share; nothing was written.
    Hub(String),
}

impl fmt::Display for PatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PatchError::UnknownSite { addr } => {
                write!(f, "{addr:#x} is not a known site: it lies in no executable mapping of this process")
            }
            PatchError::WrongBytes { addr, expected, found } => {
                write!(f, "site {addr:#x} holds {found:02x?}, not the expected {expected:?}")
            }
            PatchError::OutOfRange { addr, target } => {
                write!(f, "target {target:#x} is out of rel32 range of the site at {addr:#x}")
            }
            PatchError::LengthMismatch { addr, old, new } => {
                write!(f, "site {addr:#x}: {old:?} and {new:?} have different lengths")
            }
            PatchError::Overlap { first, second } => write!(f, "sites {first:#x} and {second:#x} of one batch overlap"),
            PatchError::Unsupported { addr, protocol, reason } => {
                write!(f, "site {addr:#x}: protocol {protocol} cannot do this: {reason}")
            }
            PatchError::MembarrierUnavailable { reason } => write!(
                f,
                "membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE) is unavailable ({reason}); the patcher needs \
                 Linux >= 4.16 built with CONFIG_MEMBARRIER (SYNC_CORE on x86-64 needs the arch support merged in 5.x)"
            ),
            PatchError::Write { addr, len, source } => write!(f, "writing {len} bytes at {addr:#x} failed: {source}"),
            PatchError::Hub(why) => write!(f, "{why}"),
            PatchError::ReadBack { addr, expected, found } => {
                write!(f, "site {addr:#x} reads back {found:02x?} after patching, expected {expected:02x?}")
            }
            PatchError::Build(e) => write!(f, "building the experiment's code failed: {e}"),
            PatchError::Miscount(m) => write!(f, "call accounting is off: {m}"),
            PatchError::Signal(e) => write!(f, "installing the SIGTRAP handler failed: {e}"),
            PatchError::NotWritable { addr, source } => write!(
                f,
                "the text at {addr:#x} cannot be made writable ({source}; a W^X policy such as MemoryDenyWriteExecute \
                 or PR_SET_MDWE?): nothing was written"
            ),
            PatchError::RolledBack(cause) => {
                write!(f, "{cause}; the batch was rolled back, every site holds its old instruction")
            }
            PatchError::RollbackFailed { cause, rollback, parked } => write!(
                f,
                "{cause}; the rollback failed too ({rollback}): {} site(s) from {:#x} keep an int3 that runs their old \
                 instruction through the trap handler",
                parked.len(),
                parked.first().copied().unwrap_or(0)
            ),
            PatchError::TrapWouldBeFatal(why) => {
                write!(f, "refused before writing: a thread meeting the int3 would not survive: {why}")
            }
        }
    }
}

impl std::error::Error for PatchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PatchError::Write { source, .. } | PatchError::NotWritable { source, .. } => Some(source),
            PatchError::Build(e) | PatchError::Signal(e) => Some(e),
            PatchError::RolledBack(cause) | PatchError::RollbackFailed { cause, .. } => Some(cause.as_ref()),
            _ => None,
        }
    }
}
