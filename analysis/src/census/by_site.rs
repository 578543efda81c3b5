//! `--by-site FILE`: one row per site, for looking at individual sites or re-plotting.

use serde::{Deserialize, Serialize};

use super::crossing::Crossings;
use super::decode::Site;

/// One site: where it is, what it is, what it crosses, and the symbol it is in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SiteRow {
    pub binary: String,
    /// Hex address (a section offset in a relocatable object).
    pub address: String,
    pub kind: String,
    pub length: u8,
    pub offset_mod_64: u8,
    pub cross64_rel32: bool,
    pub cross64_insn: bool,
    pub cross32_insn: bool,
    pub cross16_insn: bool,
    pub cross8_insn: bool,
    pub fallback_line: bool,
    pub fallback_word: bool,
    /// `function+0xoff`, or empty where no symbol precedes the site.
    pub symbol: String,
    /// For a static call site: its key and `tail` for a tail call; else empty.
    pub detail: String,
}

impl SiteRow {
    /// The row of `site`.
    pub fn new(binary: &str, site: &Site, symbol: String, detail: String) -> SiteRow {
        let c = Crossings::of(site.addr, u64::from(site.len));
        SiteRow {
            binary: binary.to_string(),
            address: format!("{:#x}", site.addr),
            kind: site.kind.name().to_string(),
            length: site.len,
            offset_mod_64: (site.addr % 64) as u8,
            cross64_rel32: c.rel32_64,
            cross64_insn: c.insn_64,
            cross32_insn: c.insn_32,
            cross16_insn: c.insn_16,
            cross8_insn: c.insn_8,
            fallback_line: c.fallback_line,
            fallback_word: c.fallback_word,
            symbol,
            detail,
        }
    }
}
