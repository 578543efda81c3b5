//! The ways a batch of live call sites is rewritten, and the atomicity unit of the aligned policy.
//!
//! - `bp`: the kernel's `text_poke_bp`: `int3` on byte 0, sync, body, sync, byte 0, sync; a thread
//!   that meets the `int3` has the new instruction emulated by the SIGTRAP handler.
//! - `cs-prefix`: sites are `2e e8 rel32`; the `int3` replaces the prefix and a trapped thread resumes
//!   at the plain call once the rel32 is whole.
//! - `aligned` / `aligned-8`: one atomic store where the rel32 stays inside one granule, the site's
//!   trampoline otherwise; one sync, no trap.
//! - `naive`: a byte copy with no protocol, to show the torn-write hazard (never under callers).

use std::str::FromStr;

use crate::crossing::{self, CACHE_LINE};

/// The atomicity unit of the aligned policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Granule {
    /// The rel32 must stay inside one 64-byte cache line (one 4-byte store).
    Line,
    /// The rel32 must stay inside one aligned 8-byte word (one 8-byte store).
    Word8,
}

impl Granule {
    /// Bytes in one granule: 64 (a cache line) or 8 (an aligned word).
    pub const fn bytes(self) -> usize {
        match self {
            Granule::Line => CACHE_LINE,
            Granule::Word8 => 8,
        }
    }

    /// Whether the 4 bytes at `addr` (a rel32 field) straddle two granules.
    pub const fn crosses(self, addr: usize) -> bool {
        crossing::crosses(addr as u64, 4, self.bytes() as u64)
    }
}

/// How a batch is written; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// `int3` guard with call emulation, three syncs.
    Bp,
    /// `int3` on the cs prefix, three syncs.
    CsPrefix,
    /// One atomic store per site, trampoline fallback, one sync.
    Aligned {
        /// Line or 8-byte word.
        granule: Granule,
    },
    /// No protocol (the hazard experiment only).
    Naive,
}

impl Protocol {
    /// The protocols that are safe under concurrent execution.
    pub const SAFE: [Protocol; 4] = [
        Protocol::Bp,
        Protocol::CsPrefix,
        Protocol::Aligned { granule: Granule::Line },
        Protocol::Aligned { granule: Granule::Word8 },
    ];

    /// Every protocol, in the order of CLI output and CSV rows.
    pub const ALL: [Protocol; 5] = [
        Protocol::Bp,
        Protocol::CsPrefix,
        Protocol::Aligned { granule: Granule::Line },
        Protocol::Aligned { granule: Granule::Word8 },
        Protocol::Naive,
    ];

    /// The names of [`Protocol::ALL`], in that order.
    pub const NAMES: [&'static str; 5] = {
        let mut names = [""; 5];
        let mut i = 0;
        while i < names.len() {
            names[i] = Protocol::ALL[i].name();
            i += 1;
        }
        names
    };

    /// The `protocol` value of a `patch.csv` row that records the cost of one membarrier (a sync
    /// alone, no protocol).
    pub const SYNC_ROW: &'static str = "membarrier";

    /// Name used on the command line and in CSV rows: `bp`, `cs-prefix`, `aligned` (line),
    /// `aligned-8` (8-byte word), `naive`.
    pub const fn name(self) -> &'static str {
        match self {
            Protocol::Bp => "bp",
            Protocol::CsPrefix => "cs-prefix",
            Protocol::Aligned { granule: Granule::Line } => "aligned",
            Protocol::Aligned { granule: Granule::Word8 } => "aligned-8",
            Protocol::Naive => "naive",
        }
    }

    /// Syncs (SYNC_CORE membarriers) one non-empty batch costs, however many sites it holds.
    pub const fn syncs_per_batch(self) -> u64 {
        match self {
            Protocol::Bp | Protocol::CsPrefix => 3,
            Protocol::Aligned { .. } => 1,
            Protocol::Naive => 0,
        }
    }

    /// Whether a thread executing a site mid-batch may trap (and be emulated or held).
    pub const fn traps(self) -> bool {
        matches!(self, Protocol::Bp | Protocol::CsPrefix)
    }
}

impl FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "aligned-64" => Ok(Protocol::Aligned { granule: Granule::Line }),
            _ => Protocol::ALL
                .into_iter()
                .find(|p| p.name() == s)
                .ok_or_else(|| format!("unknown protocol `{s}` (expected bp, cs-prefix, aligned, aligned-8 or naive)")),
        }
    }
}

crate::names::by_name!(Protocol);

/// What a `patch.csv` row timed: a batch of one protocol, or one membarrier alone (the sync floor
/// measured in the same run, with as many callers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PatchSubject {
    /// A batch patched with this protocol.
    Protocol(Protocol),
    /// One `membarrier(PRIVATE_EXPEDITED_SYNC_CORE)`.
    Membarrier,
}

impl PatchSubject {
    /// The `protocol` column: the protocol's name, or [`Protocol::SYNC_ROW`].
    pub const fn name(self) -> &'static str {
        match self {
            PatchSubject::Protocol(p) => p.name(),
            PatchSubject::Membarrier => Protocol::SYNC_ROW,
        }
    }

    /// The protocol, for a batch row.
    pub const fn protocol(self) -> Option<Protocol> {
        match self {
            PatchSubject::Protocol(p) => Some(p),
            PatchSubject::Membarrier => None,
        }
    }
}

impl From<Protocol> for PatchSubject {
    fn from(p: Protocol) -> Self {
        PatchSubject::Protocol(p)
    }
}

impl FromStr for PatchSubject {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == Protocol::SYNC_ROW {
            return Ok(PatchSubject::Membarrier);
        }
        s.parse().map(PatchSubject::Protocol).map_err(|e| format!("{e}, or {}", Protocol::SYNC_ROW))
    }
}

crate::names::by_name!(PatchSubject);

/// How a naive writer stores a site's rel32 (the hazard experiment's torn writers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NaiveStore {
    /// One byte at a time, in address order (what a `memcpy` of a few bytes may do).
    Bytewise,
    /// One 4-byte `mov` of the whole rel32, even across a cache line (then it is two stores).
    Split,
}

impl NaiveStore {
    /// Both writers.
    pub const ALL: [NaiveStore; 2] = [NaiveStore::Bytewise, NaiveStore::Split];

    /// Name used on the command line and in CSV rows.
    pub const fn name(self) -> &'static str {
        match self {
            NaiveStore::Bytewise => "naive-bytewise",
            NaiveStore::Split => "naive-split4",
        }
    }
}

/// Who rewrites the line-crossing site of the hazard experiment: a naive writer, or bp (which must
/// never tear). The `writer` column of `hazard.csv`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HazardWriter {
    /// No protocol.
    Naive(NaiveStore),
    /// The int3 protocol.
    Bp,
}

impl HazardWriter {
    /// Every writer, in report order.
    pub const ALL: [HazardWriter; 3] =
        [HazardWriter::Naive(NaiveStore::Bytewise), HazardWriter::Naive(NaiveStore::Split), HazardWriter::Bp];

    /// Name on the command line and in `hazard.csv`.
    pub const fn name(self) -> &'static str {
        match self {
            HazardWriter::Naive(s) => s.name(),
            HazardWriter::Bp => Protocol::Bp.name(),
        }
    }
}

impl FromStr for HazardWriter {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        HazardWriter::ALL
            .into_iter()
            .find(|w| w.name() == s)
            .ok_or_else(|| format!("unknown hazard writer `{s}` (expected naive-bytewise, naive-split4 or bp)"))
    }
}

crate::names::by_name!(HazardWriter);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_granules_cross_as_the_theory_says() {
        for p in Protocol::ALL {
            assert_eq!(p.name().parse::<Protocol>(), Ok(p));
            assert_eq!(p.to_string(), p.name());
        }
        assert_eq!(Protocol::NAMES, ["bp", "cs-prefix", "aligned", "aligned-8", "naive"]);
        for p in Protocol::SAFE {
            assert!(Protocol::ALL.contains(&p));
        }
        assert!("aligned-16".parse::<Protocol>().is_err());
        for (g, n) in [(Granule::Line, 3), (Granule::Word8, 3)] {
            assert_eq!((0..g.bytes()).filter(|&a| g.crosses(a)).count(), n, "{g:?}");
        }
    }
}
