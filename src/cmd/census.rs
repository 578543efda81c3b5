//! `callpatch census [PATH...]`: call sites and cache-line crossings of ELF binaries.
//!
//! With no path: this executable, the libc it runs with, and the running kernel's debug vmlinux
//! (`/usr/lib/debug/boot/vmlinux-$(uname -r)`) when installed. Prints an aligned table per binary and
//! writes `census.csv`, `census_offsets.csv` (and `census_static_calls.csv` for a kernel) to `--out`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use callpatch_analysis::census::crossing::{THEORY_INSN5_LINE, THEORY_REL32_LINE, THEORY_REL32_WORD};
use callpatch_analysis::census::{self, defaults, Census, Options, SiteKind};
use callpatch_analysis::report::rows::{remove_stale, write_csv};

/// Options of `callpatch census`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// ELF files to census (default: this executable, its libc, and the running kernel's debug
    /// vmlinux when installed).
    pub paths: Vec<PathBuf>,
    /// Directory for census.csv, census_offsets.csv and census_static_calls.csv.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// Also write one row per site (address, kind, length, offset mod 64, crossings, symbol) to FILE.
    #[arg(long, value_name = "FILE")]
    pub by_site: Option<PathBuf>,
    /// With no PATH: leave out the vmlinux (the executable and libc only; well under a second).
    #[arg(long)]
    pub quick: bool,
    /// Also hash each whole file (SHA-256). By default a file is identified by its GNU build-id and
    /// hashed only when it has none.
    #[arg(long)]
    pub sha256: bool,
}

impl Default for Args {
    /// What `callpatch census` with no arguments does.
    fn default() -> Args {
        Args { paths: Vec::new(), out: PathBuf::from("results"), by_site: None, quick: false, sha256: false }
    }
}

/// Runs `callpatch census`.
pub fn main(args: Args) -> anyhow::Result<()> {
    // Before the census: a bad --out fails at once, and no other callpatch writes there meanwhile.
    let _claim = super::outdir::claim(&args.out)?;
    let paths = if args.paths.is_empty() { default_paths(args.quick)? } else { args.paths.clone() };
    let options = Options { by_site: args.by_site.is_some(), sha256: args.sha256 };
    let mut all = Vec::new();
    for path in &paths {
        let shown = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
        let started = Instant::now();
        let census = census::census_file(&shown, options)?;
        print_census(&census, started.elapsed().as_secs_f64());
        all.push(census);
    }
    write_outputs(&args, &all)
}

/// This executable, the libc it is linked against, and the kernel's debug vmlinux when present.
fn default_paths(quick: bool) -> anyhow::Result<Vec<PathBuf>> {
    let mut paths = vec![std::env::current_exe().context("cannot locate this executable")?];
    match defaults::linked_libc() {
        Some(libc) => paths.push(libc),
        None => outln!("note: no libc mapped into this process (static build?); libc left out"),
    }
    if !quick {
        let vmlinux = defaults::running_kernel_vmlinux();
        if vmlinux.is_file() {
            paths.push(vmlinux);
        } else {
            outln!(
                "note: {} not present (install the kernel's debug symbols, or run scripts/kernel-census.sh)",
                vmlinux.display()
            );
        }
    }
    Ok(paths)
}

fn pct(part: u64, whole: u64) -> String {
    if whole == 0 {
        "-".to_string()
    } else {
        format!("{:.2}%", 100.0 * part as f64 / whole as f64)
    }
}

/// `build-id HEX`, `sha256 HEX`, or both.
fn identity(c: &Census) -> String {
    let mut parts = Vec::new();
    if let Some(id) = &c.build_id {
        parts.push(format!("build-id {id}"));
    }
    if !c.sha256.is_empty() {
        parts.push(format!("sha256 {}", c.sha256));
    }
    parts.join("  ")
}

fn print_census(c: &Census, seconds: f64) {
    let d = &c.decoded;
    outln!();
    outln!("census of {}", c.binary);
    outln!(
        "  {}  {:.1} MB file, {} code sections, {:.1} MB code, {} instructions, {} ranges (symbols: {}), \
         {} bytes skipped as data, {} e8 calls; census {:.3} s, sha256 {:.3} s beside it, {:.3} s in all",
        identity(c),
        c.file_bytes as f64 / 1e6,
        c.code_sections,
        d.code_bytes as f64 / 1e6,
        d.instructions,
        d.ranges,
        c.symbols.describe(),
        d.data_bytes,
        d.e8_calls,
        c.census_time.as_secs_f64(),
        c.sha256_time.as_secs_f64(),
        seconds
    );
    outln!(
        "  {:<17}{:>9}{:>10}{:>8}{:>10}{:>8}{:>9}{:>9}{:>8}{:>10}{:>10}{:>9}{:>9}",
        "kind",
        "count",
        "rel32×64",
        "%",
        "insn×64",
        "%",
        "insn×32",
        "insn×16",
        "insn×8",
        "fb line",
        "fb word",
        "ITS lo",
        "ITS hi"
    );
    for t in c.tallies() {
        outln!(
            "  {:<17}{:>9}{:>10}{:>8}{:>10}{:>8}{:>9}{:>9}{:>8}{:>10}{:>10}{:>9}{:>9}",
            t.kind.name(),
            t.count,
            t.cross64_rel32,
            pct(t.cross64_rel32, t.count),
            t.cross64_insn,
            pct(t.cross64_insn, t.count),
            t.cross32_insn,
            t.cross16_insn,
            t.cross8_insn,
            t.fallback_line,
            t.fallback_word,
            t.its.map_or("-".to_string(), |h| h[0].to_string()),
            t.its.map_or("-".to_string(), |h| h[1].to_string())
        );
    }
    outln!(
        "  theory for a uniformly placed 5-byte site: rel32 crosses a line {:.2}% (3/64), insn {:.2}% (4/64); \
         word-rule fallback {:.1}% (3/8)",
        100.0 * THEORY_REL32_LINE,
        100.0 * THEORY_INSN5_LINE,
        100.0 * THEORY_REL32_WORD
    );
    outln!(
        "  ITS lo/hi: indirect branches and returns whose last byte is in the lower (thunked by the kernel's ITS \
         mitigation) or upper half of its 64-byte line"
    );
    print_kernel(c);
    for note in c.notes.iter().chain(&c.kernel.notes) {
        outln!("  note: {note}");
    }
}

fn print_kernel(c: &Census) {
    let k = &c.kernel;
    for t in &k.tables {
        let forms: Vec<String> = t.forms.iter().map(|(f, n)| format!("{f} {n}")).collect();
        outln!(
            "  table {} ({}): {} entries, {} unreadable; instructions: {}",
            t.kind.name(),
            t.symbol,
            t.entries,
            t.unreadable,
            forms.join(", ")
        );
    }
    if !k.has(SiteKind::StaticCallSite) {
        return;
    }
    let sites: u64 = k.keys.iter().map(|r| r.sites).sum();
    let tail: u64 = k.keys.iter().map(|r| r.tail_jmps).sum();
    let calls: u64 = k.keys.iter().map(|r| r.calls).sum();
    let flagged_tail = k.static_calls.iter().filter(|e| e.tail_flag).count();
    let flagged_init = k.static_calls.iter().filter(|e| e.init_flag).count();
    let off: u64 = k.keys.iter().map(|r| r.not_to_trampoline).sum();
    let line: u64 = k.keys.iter().map(|r| r.fallback_line).sum();
    let word: u64 = k.keys.iter().map(|r| r.fallback_word).sum();
    let keys_line = k.keys.iter().filter(|r| r.fallback_line > 0).count();
    let keys_word = k.keys.iter().filter(|r| r.fallback_word > 0).count();
    outln!(
        "  static calls: {sites} sites on {} keys: {calls} call, {tail} tail jmp ({flagged_tail} flagged TAIL, \
         {flagged_init} INIT), \
         {off} not a call/jmp to the key's __SCT__ trampoline",
        k.keys.len()
    );
    outln!(
        "  static calls, aligned-only policy: {line} sites ({}) stay on the trampoline with the line rule \
         (theory {:.2}%), {word} ({}) with the word rule; keys with ≥1 such site: {keys_line} of {} (line), \
         {keys_word} (word)",
        pct(line, sites),
        100.0 * THEORY_REL32_LINE,
        pct(word, sites),
        k.keys.len()
    );
    let top: Vec<String> = k.keys.iter().take(8).map(|r| format!("{} {}", r.key, r.sites)).collect();
    outln!("  static call keys with most sites: {}", top.join(", "));
}

fn write_outputs(args: &Args, all: &[Census]) -> anyhow::Result<()> {
    let rows: Vec<_> = all.iter().flat_map(Census::rows).collect();
    let offsets: Vec<_> = all.iter().flat_map(Census::offset_rows).collect();
    let keys: Vec<_> = all.iter().flat_map(|c| c.kernel.keys.iter().cloned()).collect();
    let mut written = Vec::new();
    // The user-named file first: if its folder is wrong, nothing is written at all.
    if let Some(path) = &args.by_site {
        let sites: Vec<_> = all.iter().flat_map(|c| c.by_site.iter().cloned()).collect();
        write_csv(path, &sites).with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path.clone());
    }
    let census_csv = args.out.join("census.csv");
    write_csv(&census_csv, &rows).with_context(|| format!("cannot write {}", census_csv.display()))?;
    written.push(census_csv);
    let offsets_csv = args.out.join("census_offsets.csv");
    write_csv(&offsets_csv, &offsets).with_context(|| format!("cannot write {}", offsets_csv.display()))?;
    written.push(offsets_csv);
    let path = args.out.join("census_static_calls.csv");
    if !keys.is_empty() {
        write_csv(&path, &keys).with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
    } else {
        // An older census's per-key file must not sit beside this census as if it belonged to it.
        remove_stale(&path).with_context(|| format!("cannot remove the stale {}", path.display()))?;
    }
    outln!();
    for path in written {
        outln!("wrote {}", path.display());
    }
    Ok(())
}
