//! `--by-site FILE`: one row per site, for looking at individual sites or re-plotting.

pub use callpatch_vocab::rows::SiteRow;

use super::crossing::Crossings;
use super::decode::DecodedSite;

/// The row of `site`.
pub fn site_row(binary: &str, site: &DecodedSite, symbol: String, detail: String) -> SiteRow {
    let c = Crossings::of(site.addr, u64::from(site.len));
    SiteRow {
        binary: binary.to_string(),
        address: format!("{:#x}", site.addr),
        kind: site.kind,
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
