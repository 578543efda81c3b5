//! The census and `objdump -d` agree on the number of `e8` calls: on this test binary itself and on
//! the synthetic kernel image (whose data object, cut-off instructions and restart label are the cases
//! where a naive decode would disagree). Without objdump the tests fail with the install line
//! (`CALLPATCH_ALLOW_SKIP=1` skips them instead).

mod fixture;
mod require;

use std::path::Path;
use std::process::Command;

use callpatch_analysis::census::{census_file, Options};

/// Lines of `objdump -d` whose raw-bytes column starts with `e8 ` and whose mnemonic is a call (not
/// the `.byte 0xe8` objdump prints for a call cut off by the next symbol).
fn objdump_e8_calls(path: &Path) -> Option<u64> {
    let out = Command::new("objdump").arg("-d").arg(path).output().ok()?;
    assert!(out.status.success(), "objdump -d {} failed: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    Some(
        text.lines()
            .filter(|l| {
                let fields: Vec<&str> = l.split('\t').collect();
                fields.len() >= 3 && fields[1].starts_with("e8 ") && fields[2].starts_with("call")
            })
            .count() as u64,
    )
}

fn objdump_present() -> bool {
    Command::new("objdump").arg("--version").output().is_ok_and(|o| o.status.success())
}

const NO_OBJDUMP: &str = "objdump not found: apt-get install binutils";

#[test]
fn this_test_binary_agrees_with_objdump() {
    if !objdump_present() {
        return require::missing(NO_OBJDUMP);
    }
    let exe = std::env::current_exe().unwrap();
    let census = census_file(&exe, Options::default()).unwrap();
    assert!(census.decoded.e8_calls > 1000, "{} e8 calls", census.decoded.e8_calls);
    assert_eq!(Some(census.decoded.e8_calls), objdump_e8_calls(&exe));
}

#[test]
fn synthetic_kernel_agrees_with_objdump() {
    if !objdump_present() {
        return require::missing(NO_OBJDUMP);
    }
    let path = std::env::temp_dir().join(format!("callpatch-census-objdump-{}.elf", std::process::id()));
    std::fs::write(&path, fixture::kernel_like(true).write()).unwrap();
    let census = census_file(&path, Options::default()).unwrap();
    let objdump = objdump_e8_calls(&path);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(census.decoded.e8_calls, 8);
    assert_eq!(objdump, Some(8));
}

/// One instruction as `objdump -d` prints it: address, length (raw bytes, continuation lines
/// included) and the mnemonic column with its prefixes (`notrack`, `bnd`, `cs`, `repz`, ...) removed.
struct Line {
    addr: u64,
    len: u64,
    text: String,
}

/// Every instruction of `objdump -d` on `path`.
fn objdump_lines(path: &Path) -> Vec<Line> {
    let out = Command::new("objdump").arg("-d").arg(path).output().unwrap();
    assert!(out.status.success(), "objdump -d {} failed", path.display());
    let mut lines: Vec<Line> = Vec::new();
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        let fields: Vec<&str> = l.split('\t').collect();
        let Some(addr) = fields[0].trim().strip_suffix(':').and_then(|a| u64::from_str_radix(a, 16).ok()) else {
            continue;
        };
        let bytes = fields.get(1).map_or(0, |b| b.split_whitespace().count() as u64);
        match fields.get(2) {
            Some(m) => {
                let mut text = m.trim();
                const PREFIXES: [&str; 12] = [
                    "notrack ", "bnd ", "cs ", "ds ", "es ", "ss ", "repz ", "rep ", "repnz ", "data16 ", "addr32 ",
                    "lock ",
                ];
                while let Some(rest) = PREFIXES.iter().find_map(|p| text.strip_prefix(p)) {
                    text = rest.trim_start();
                }
                lines.push(Line { addr, len: bytes, text: text.to_string() });
            }
            // A continuation line: more raw bytes of the instruction above.
            None => {
                if let Some(last) = lines.last_mut() {
                    last.len += bytes;
                }
            }
        }
    }
    lines
}

/// objdump's `call *`, `jmp *` and `ret` lines, each as [lower, upper]: the half of its 64-byte line
/// that the instruction's last byte (address + length − 1) lies in.
fn objdump_its(lines: &[Line]) -> [[u64; 2]; 3] {
    let mut bins = [[0u64; 2]; 3];
    for l in lines {
        let word = l.text.split_whitespace().next().unwrap_or("");
        let operand = l.text[word.len()..].trim_start();
        let kind = match word {
            "call" | "callq" if operand.starts_with('*') => 0,
            "jmp" | "jmpq" if operand.starts_with('*') => 1,
            "ret" | "retq" => 2,
            _ => continue,
        };
        bins[kind][usize::from((l.addr + l.len - 1) & 0x20 != 0)] += 1;
    }
    bins
}

fn census_its(census: &callpatch_analysis::census::Census) -> [[u64; 2]; 3] {
    use callpatch_analysis::census::SiteKind;
    let tallies = census.tallies();
    let its = |k: SiteKind| {
        let t = tallies.iter().find(|t| t.kind == k).unwrap();
        let bins = t.its.unwrap();
        assert_eq!(bins[0] + bins[1], t.count, "{k}: every decoded site is in one half");
        bins
    };
    [its(SiteKind::CallIndirect), its(SiteKind::JmpIndirect), its(SiteKind::Ret)]
}

#[test]
fn its_halves_of_this_test_binary_agree_with_objdump() {
    if !objdump_present() {
        return require::missing(NO_OBJDUMP);
    }
    let exe = std::env::current_exe().unwrap();
    let census = census_file(&exe, Options::default()).unwrap();
    let ours = census_its(&census);
    assert!(ours.iter().all(|b| b[0] > 0 && b[1] > 0), "{ours:?}");
    assert_eq!(ours, objdump_its(&objdump_lines(&exe)));
}

#[test]
fn its_halves_of_the_synthetic_kernel_and_its_tables_agree_with_objdump() {
    use callpatch_analysis::census::SiteKind;
    if !objdump_present() {
        return require::missing(NO_OBJDUMP);
    }
    let path = std::env::temp_dir().join(format!("callpatch-census-its-{}.elf", std::process::id()));
    std::fs::write(&path, fixture::kernel_like(true).write()).unwrap();
    let census = census_file(&path, Options::default()).unwrap();
    let lines = objdump_lines(&path);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(census_its(&census), objdump_its(&lines));
    // The tables: objdump's instruction at each listed address, and what the kernel writes there: a
    // `ret` at a return site; at a retpoline site `call`/`jmp *%reg` (one byte longer for r8–r15),
    // after a 2-byte inverted jcc when the site is a jcc, the register named by the thunk objdump shows.
    for (kind, want) in [(SiteKind::RetpolineSite, [1, 0]), (SiteKind::ReturnSite, [0, 1])] {
        let mut bins = [0u64; 2];
        for site in census.kernel.sites.iter().filter(|s| s.kind == kind) {
            let line = lines.iter().find(|l| l.addr == site.addr).expect("objdump decodes every table site");
            let last = match kind {
                SiteKind::ReturnSite => site.addr,
                _ => {
                    let thunk = line.text.rsplit_once("<__x86_indirect_thunk_").expect("a thunk call").1;
                    let high = thunk.starts_with("r") && thunk[1..2].chars().all(|c| c.is_ascii_digit());
                    let lead = if line.text.starts_with('j') && !line.text.starts_with("jmp") { 2 } else { 0 };
                    site.addr + lead + 1 + u64::from(high)
                }
            };
            bins[usize::from(last & 0x20 != 0)] += 1;
        }
        assert_eq!(bins, want, "{kind} by objdump");
        let t = census.tallies().into_iter().find(|t| t.kind == kind).unwrap();
        assert_eq!(t.its, Some(bins), "{kind}");
    }
}
