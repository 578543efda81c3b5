//! Aggregation of sites into the rows of `census.csv` and `census_offsets.csv`.

use crate::report::rows::{CensusOffsetRow, CensusRow};

use super::crossing::Crossings;
use super::decode::DecodedSite;
use super::its;
use super::kinds::SiteKind;

/// The counts of one kind of site in one binary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KindTally {
    /// The kind counted.
    pub kind: SiteKind,
    /// Sites of this kind.
    pub count: u64,
    /// Sites whose rel32 (last four bytes) touches two 64-byte lines.
    pub cross64_rel32: u64,
    /// Sites whose whole instruction touches two 64-byte lines.
    pub cross64_insn: u64,
    /// Sites whose whole instruction touches two 32-byte blocks.
    pub cross32_insn: u64,
    /// Sites whose whole instruction touches two 16-byte blocks.
    pub cross16_insn: u64,
    /// Sites whose whole instruction touches two aligned 8-byte words.
    pub cross8_insn: u64,
    /// Sites the aligned-only policy leaves on the trampoline under the line rule (the same sites
    /// as `cross64_rel32`).
    pub fallback_line: u64,
    /// Sites the aligned-only policy leaves on the trampoline under the strict word rule: the rel32
    /// is not inside one aligned 8-byte word.
    pub fallback_word: u64,
    /// For the kinds the ITS rule sorts ([`SiteKind::is_its_branch`]): sites whose last byte lies in
    /// the lower half of its line (thunked by ITS) and in the upper half ([`super::its`]).
    pub its: Option<[u64; 2]>,
    /// Sites by start address mod 64.
    pub offsets: [u64; 64],
}

impl KindTally {
    /// An empty tally of `kind`.
    pub fn new(kind: SiteKind) -> KindTally {
        KindTally {
            kind,
            count: 0,
            cross64_rel32: 0,
            cross64_insn: 0,
            cross32_insn: 0,
            cross16_insn: 0,
            cross8_insn: 0,
            fallback_line: 0,
            fallback_word: 0,
            its: kind.is_its_branch().then_some([0, 0]),
            offsets: [0; 64],
        }
    }

    /// Counts one site.
    pub fn add(&mut self, site: &DecodedSite) {
        let c = Crossings::of(site.addr, u64::from(site.len));
        self.count += 1;
        self.cross64_rel32 += u64::from(c.rel32_64);
        self.cross64_insn += u64::from(c.insn_64);
        self.cross32_insn += u64::from(c.insn_32);
        self.cross16_insn += u64::from(c.insn_16);
        self.cross8_insn += u64::from(c.insn_8);
        self.fallback_line += u64::from(c.fallback_line);
        self.fallback_word += u64::from(c.fallback_word);
        self.offsets[(site.addr % 64) as usize] += 1;
        if let (Some(its), Some(last)) = (self.its.as_mut(), site.its_last_byte()) {
            its[usize::from(!its::lower_half(last))] += 1;
        }
    }

    /// The `census.csv` row.
    pub fn row(&self, binary: &str, sha256: &str, build_id: &str) -> CensusRow {
        CensusRow {
            binary: binary.to_string(),
            sha256: sha256.to_string(),
            kind: self.kind,
            count: self.count,
            cross64_rel32: self.cross64_rel32,
            cross64_insn: self.cross64_insn,
            cross32_insn: self.cross32_insn,
            cross16_insn: self.cross16_insn,
            cross8_insn: self.cross8_insn,
            fallback_line: self.fallback_line,
            fallback_word: self.fallback_word,
            build_id: build_id.to_string(),
            its_lower: self.its.map(|h| h[0]),
            its_upper: self.its.map(|h| h[1]),
        }
    }

    /// The 64 `census_offsets.csv` rows (zeros included: the histogram is tidy).
    pub fn offset_rows(&self, binary: &str) -> impl Iterator<Item = CensusOffsetRow> + use<'_> {
        let binary = binary.to_string();
        (0u8..64).map(move |o| CensusOffsetRow {
            binary: binary.clone(),
            kind: self.kind,
            offset_mod_64: o,
            count: self.offsets[usize::from(o)],
        })
    }
}

/// One tally per kind in `kinds` (in that order) over `sites`; sites of other kinds are ignored.
pub fn tally<'a>(sites: impl IntoIterator<Item = &'a DecodedSite>, kinds: &[SiteKind]) -> Vec<KindTally> {
    let mut out: Vec<KindTally> = kinds.iter().map(|&k| KindTally::new(k)).collect();
    // Where each kind's tally is, by the kind's place in SiteKind::ALL: one lookup per site.
    let mut slot = [None; SiteKind::ALL.len()];
    for (i, k) in kinds.iter().enumerate() {
        slot[*k as usize] = Some(i);
    }
    for site in sites {
        if let Some(i) = slot[site.kind as usize] {
            out[i].add(site);
        }
    }
    out
}
