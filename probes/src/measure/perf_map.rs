//! The perf map: how generated code gets names in `perf report`.
//!
//! Code in anonymous executable memory has no ELF symbols, so `perf report` would show bare
//! addresses. perf's JIT convention (tools/perf/Documentation/jit-interface.txt) is a text file
//! `/tmp/perf-<pid>.map` with one line per code range, `START SIZE symbolname`, START and SIZE in hex
//! without `0x`; perf reads it at report time for samples that fall in anonymous memory of process
//! `<pid>`. The file must therefore outlive the process when perf is to read it: `callpatch perf
//! --hold` leaves it in place, a measuring `callpatch perf` removes it at exit.
//!
//! [`write_perf_map`] writes the whole map at once (to a new file with a random name, created
//! exclusively, then renamed), so a reader never sees half a map and a planted symbolic link is never
//! written through; [`parse_perf_map`] reads one back (used by the tests and by anyone checking
//! what a probe announced).

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

/// One named code range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapEntry {
    /// First byte of the range.
    pub start: usize,
    /// Length in bytes (non-zero).
    pub size: usize,
    /// The symbol name perf shows (the rest of the line; no newline).
    pub name: String,
}

impl MapEntry {
    /// One past the last byte.
    pub fn end(&self) -> usize {
        self.start + self.size
    }

    /// Whether `addr` lies in the range.
    pub fn contains(&self, addr: usize) -> bool {
        (self.start..self.end()).contains(&addr)
    }
}

impl fmt::Display for MapEntry {
    /// The map line, without its newline: `7f12a0001000 40 name`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x} {:x} {}", self.start, self.size, self.name)
    }
}

impl From<&crate::code::Symbol> for MapEntry {
    /// A probe's named range (target, thunk, trampoline, loop) as a map line.
    fn from(s: &crate::code::Symbol) -> MapEntry {
        MapEntry { start: s.addr, size: s.len, name: s.name.clone() }
    }
}

/// A map file that cannot be parsed or ranges that cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum PerfMapError {
    /// A line of a map file is not `START SIZE NAME` in hex.
    #[error("perf map line {line}: {why}: {text:?}")]
    Parse {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        why: &'static str,
        /// The line.
        text: String,
    },
    /// An entry cannot be written (empty range, a name with a newline).
    #[error("perf map entry {name:?}: {why}")]
    BadEntry {
        /// The entry's name.
        name: String,
        /// What is wrong.
        why: &'static str,
    },
    /// Writing the file failed.
    #[error("writing perf map {path}: {source}")]
    Io {
        /// The map file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// `/tmp/perf-<pid>.map`, where perf looks for process `pid`'s map.
pub fn perf_map_path(pid: u32) -> PathBuf {
    PathBuf::from(format!("/tmp/perf-{pid}.map"))
}

/// Writes `entries` (sorted by address) to `path` atomically. Rejects empty ranges, names with a
/// newline, and overlapping ranges, none of which perf could resolve.
///
/// The map goes to a new file with a random name in `path`'s folder, created exclusively (`O_EXCL`,
/// which never follows a symbolic link, whatever `fs.protected_symlinks` says), then renamed over
/// `path` (a rename replaces a link planted there rather than writing through it). So a link someone
/// placed at a predictable name in `/tmp` cannot redirect the write to another file.
pub fn write_perf_map(path: &Path, entries: &[MapEntry]) -> Result<(), PerfMapError> {
    let mut sorted = entries.to_vec();
    sorted.sort_by_key(|e| (e.start, e.size));
    check_entries(&sorted)?;
    let io = |source| PerfMapError::Io { path: path.to_path_buf(), source };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new().prefix(".perf-map-").suffix(".tmp").tempfile_in(dir).map_err(io)?;
    let mut f = std::io::BufWriter::new(tmp);
    for e in &sorted {
        writeln!(f, "{e}").map_err(io)?;
    }
    let tmp = f.into_inner().map_err(|e| io(e.into_error()))?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

/// Writes `entries` to this process's map, `/tmp/perf-<own pid>.map`, and returns its path.
pub fn write_own_perf_map(entries: &[MapEntry]) -> Result<PathBuf, PerfMapError> {
    let path = perf_map_path(std::process::id());
    write_perf_map(&path, entries)?;
    Ok(path)
}

/// Checks entries sorted by start: each non-empty, named without newlines, none overlapping the next.
pub fn check_entries(sorted: &[MapEntry]) -> Result<(), PerfMapError> {
    let bad = |e: &MapEntry, why| Err(PerfMapError::BadEntry { name: e.name.clone(), why });
    for (i, e) in sorted.iter().enumerate() {
        if e.size == 0 {
            return bad(e, "empty range");
        }
        if e.name.is_empty() || e.name.contains(['\n', '\r']) {
            return bad(e, "name empty or containing a newline");
        }
        if e.start.checked_add(e.size).is_none() {
            return bad(e, "range wraps the address space");
        }
        if let Some(next) = sorted.get(i + 1)
            && next.start < e.end()
        {
            return bad(next, "overlaps the previous range");
        }
    }
    Ok(())
}

fn hex(field: &str) -> Option<usize> {
    let digits = field.strip_prefix("0x").unwrap_or(field);
    if digits.is_empty() {
        return None;
    }
    usize::from_str_radix(digits, 16).ok()
}

/// Parses a perf map (hex START and SIZE, with or without `0x`, then the name to the end of the
/// line; blank lines skipped), in file order.
pub fn parse_perf_map(text: &str) -> Result<Vec<MapEntry>, PerfMapError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let err = |why| PerfMapError::Parse { line: i + 1, why, text: line.to_string() };
        if line.trim().is_empty() {
            continue;
        }
        let mut parts = line.splitn(3, ' ');
        let start = parts.next().and_then(hex).ok_or_else(|| err("bad START"))?;
        let size = parts.next().and_then(hex).ok_or_else(|| err("bad SIZE"))?;
        let name = parts.next().filter(|n| !n.is_empty()).ok_or_else(|| err("missing name"))?;
        out.push(MapEntry { start, size, name: name.to_string() });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the system temp dir, removed by the caller.
    fn scratch(test: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("callpatch-perfmap-{}-{test}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn entries() -> Vec<MapEntry> {
        vec![
            MapEntry { start: 0x7f00_0000_1000, size: 0x40, name: "callpatch::retpoline::mono::loop_u".into() },
            MapEntry { start: 0x7f00_0000_0000, size: 0x8, name: "callpatch::target 0".into() },
            MapEntry { start: 0x7f00_0000_1040, size: 0x1234, name: "callpatch::retpoline::mono::loop_2u".into() },
        ]
    }

    #[test]
    fn written_map_parses_back_range_for_range() {
        let dir = scratch("roundtrip");
        let path = dir.join("perf-1.map");
        let written = entries();
        write_perf_map(&path, &written).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().next().unwrap(), "7f0000000000 8 callpatch::target 0");
        let parsed = parse_perf_map(&text).unwrap();
        assert_eq!(parsed.len(), written.len());
        for w in &written {
            let p = parsed.iter().find(|p| p.name == w.name).expect("every entry is in the map");
            assert_eq!((p.start, p.size, p.end()), (w.start, w.size, w.end()), "{}", w.name);
            assert!(p.contains(w.start) && p.contains(w.end() - 1) && !p.contains(w.end()));
        }
        assert!(parsed.windows(2).all(|w| w[0].end() <= w[1].start), "sorted, disjoint");
        assert!(!dir.join("perf-1.map.tmp").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_symlink_planted_at_the_map_or_a_temporary_name_is_not_written_through() {
        let dir = scratch("symlink");
        let victim = dir.join("victim");
        std::fs::write(&victim, "precious\n").unwrap();
        let path = dir.join("perf-1.map");
        // The old temporary name, and the map's own name.
        std::os::unix::fs::symlink(&victim, dir.join("perf-1.map.tmp")).unwrap();
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        write_perf_map(&path, &entries()).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
        assert!(!path.symlink_metadata().unwrap().file_type().is_symlink(), "the map replaced the link");
        assert_eq!(parse_perf_map(&std::fs::read_to_string(&path).unwrap()).unwrap().len(), 3);
        let mut left: Vec<String> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        assert_eq!(left, ["perf-1.map", "perf-1.map.tmp", "victim"], "no temporary file left behind");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn accepts_0x_and_rejects_garbage() {
        let m = parse_perf_map("0x1000 0x10 a b c\n\n2000 8 d\n").unwrap();
        assert_eq!(m[0], MapEntry { start: 0x1000, size: 0x10, name: "a b c".into() });
        assert_eq!(m[1].start, 0x2000);
        for bad in ["zz 10 x", "1000 qq x", "1000 10", "1000", "1000 10 "] {
            assert!(matches!(parse_perf_map(bad), Err(PerfMapError::Parse { line: 1, .. })), "{bad:?}");
        }
    }

    #[test]
    fn refuses_ranges_perf_could_not_resolve() {
        let dir = scratch("refuse");
        let path = dir.join("m.map");
        let overlap = vec![
            MapEntry { start: 0x1000, size: 0x20, name: "a".into() },
            MapEntry { start: 0x1010, size: 0x20, name: "b".into() },
        ];
        assert!(matches!(write_perf_map(&path, &overlap), Err(PerfMapError::BadEntry { .. })));
        let empty = vec![MapEntry { start: 0x1000, size: 0, name: "a".into() }];
        assert!(write_perf_map(&path, &empty).is_err());
        let newline = vec![MapEntry { start: 0x1000, size: 1, name: "a\nb".into() }];
        assert!(write_perf_map(&path, &newline).is_err());
        assert!(!path.exists(), "nothing written on a refused map");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
