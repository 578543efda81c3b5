//! This process's mappings, from `/proc/self/maps`: where code may be patched, and the W^X check.

use std::io;

/// One line of `/proc/self/maps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// First address.
    pub start: usize,
    /// One past the last address.
    pub end: usize,
    /// The four permission characters, e.g. `r-xp`.
    pub perms: String,
    /// The backing path or pseudo-name (`[stack]`, `/memfd:...`), empty for anonymous memory.
    pub path: String,
}

impl Mapping {
    /// Readable and executable.
    pub fn is_code(&self) -> bool {
        self.perms.starts_with('r') && self.perms.as_bytes().get(2) == Some(&b'x')
    }

    /// Writable and executable at once (what W^X forbids).
    pub fn is_wx(&self) -> bool {
        self.perms.as_bytes().get(1) == Some(&b'w') && self.perms.as_bytes().get(2) == Some(&b'x')
    }
}

/// Reads and parses `/proc/self/maps`.
pub fn read_maps() -> io::Result<Vec<Mapping>> {
    let text = std::fs::read_to_string("/proc/self/maps")?;
    text.lines().map(parse_line).collect()
}

fn parse_line(line: &str) -> io::Result<Mapping> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, format!("unexpected /proc/self/maps line `{line}`"));
    let mut f = line.split_whitespace();
    let (range, perms) = (f.next().ok_or_else(bad)?, f.next().ok_or_else(bad)?);
    let (a, b) = range.split_once('-').ok_or_else(bad)?;
    let hex = |s: &str| usize::from_str_radix(s, 16).map_err(|_| bad());
    let path = f.nth(3).unwrap_or("").to_string();
    Ok(Mapping { start: hex(a)?, end: hex(b)?, perms: perms.to_string(), path })
}

/// An address in the patcher's own code (this function's).
fn own_code() -> usize {
    own_code as fn() -> usize as usize
}

/// A cache of this process's code ranges, refreshed when an address is not found (code mapped since
/// the last read) or a cached range is no longer mapped (code unmapped since: `dlclose`, a dropped
/// arena). Lives under the text mutex.
///
/// A cache hit alone would approve a site whose code was unmapped after the last read, and reading its
/// bytes would then fault inside the patcher. So each page a batch touches is confirmed mapped once per
/// batch with `mincore` (ENOMEM for an unmapped page, no fault; 0.2–0.8 µs here), and a page that is not
/// sends the cache back to `/proc/self/maps`. Except in the mapping that holds the patcher's own code
/// (a program's static calls live there): it cannot go away while the patcher runs from it.
#[derive(Debug, Default)]
pub(crate) struct CodeRanges {
    /// (start, end, writable, holds the patcher's own code) of each code mapping, sorted.
    ranges: Vec<(usize, usize, bool, bool)>,
    /// Pages confirmed mapped in the current batch, sorted.
    confirmed: Vec<usize>,
    /// The page of the last site approved in this batch (`None` after `begin_batch`): mappings are
    /// whole pages, so a site inside that page lies in the same mapping, confirmed in this batch.
    last_page: Option<usize>,
}

impl CodeRanges {
    /// Starts a batch: pages are confirmed again.
    pub(crate) fn begin_batch(&mut self) {
        self.confirmed.clear();
        self.last_page = None;
    }

    /// Whether `[addr, addr+len)` lies in one readable, executable mapping.
    pub(crate) fn contains(&mut self, addr: usize, len: usize) -> bool {
        let (page, end) = crate::arena::pages_of(addr, len);
        let one_page = end - page == crate::arena::page_size();
        if one_page && self.last_page == Some(page) {
            return true;
        }
        let found = self.hit(addr, len) && (self.in_own_mapping(addr) || self.still_mapped(addr, len)) || {
            let own = own_code();
            self.ranges = read_maps()
                .map(|m| {
                    let code = m.into_iter().filter(Mapping::is_code);
                    code.map(|m| (m.start, m.end, m.is_wx(), m.start <= own && own < m.end)).collect()
                })
                .unwrap_or_default();
            self.hit(addr, len)
        };
        if found && one_page {
            self.last_page = Some(page);
        }
        found
    }

    /// Drops the cached mappings: the next lookup reads `/proc/self/maps` again.
    pub(crate) fn forget(&mut self) {
        self.ranges.clear();
        self.last_page = None;
    }

    /// The read-execute (not writable) mapping holding `addr`, as last read: what a batch's write
    /// window may make writable as a whole and restore to RX. Only meaningful for addresses that
    /// [`CodeRanges::contains`] approved in this batch.
    pub(crate) fn rx_mapping_of(&self, addr: usize) -> Option<(usize, usize)> {
        let i = self.ranges.partition_point(|&(_, end, _, _)| end <= addr);
        self.ranges.get(i).filter(|&&(start, _, wx, _)| start <= addr && !wx).map(|&(s, e, _, _)| (s, e))
    }

    /// Whether `addr` lies in the (cached) mapping that holds the patcher's own code.
    fn in_own_mapping(&self, addr: usize) -> bool {
        let i = self.ranges.partition_point(|&(_, end, _, _)| end <= addr);
        self.ranges.get(i).is_some_and(|&(start, _, _, own)| own && start <= addr)
    }

    /// Whether every page under `[addr, addr+len)` is mapped now (`mincore` per page not yet confirmed
    /// in this batch).
    fn still_mapped(&mut self, addr: usize, len: usize) -> bool {
        let (first, end) = crate::arena::pages_of(addr, len);
        let page = crate::arena::page_size();
        for p in (first..end).step_by(page) {
            let Err(at) = self.confirmed.binary_search(&p) else {
                continue;
            };
            #[cfg(test)]
            MINCORES.with(|n| n.set(n.get() + 1));
            let mut resident = 0u8;
            // SAFETY: mincore only inspects the mapping of one page and writes one byte to `resident`.
            if unsafe { libc::mincore(p as *mut libc::c_void, page, &mut resident) } != 0 {
                return false; // ENOMEM: not mapped (any other error: do not trust the cache either)
            }
            self.confirmed.insert(at, p);
        }
        true
    }

    fn hit(&self, addr: usize, len: usize) -> bool {
        let i = self.ranges.partition_point(|&(_, end, _, _)| end <= addr);
        self.ranges.get(i).is_some_and(|&(start, end, _, _)| start <= addr && addr.saturating_add(len) <= end)
    }
}

#[cfg(test)]
thread_local! {
    /// `mincore` calls of this thread (what the tests count).
    static MINCORES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_patchers_own_code_needs_no_mincore_an_arena_page_does() {
        let mut c = CodeRanges::default();
        let own = own_code();
        assert!(c.contains(own, 5), "the patcher's own code is code");
        c.begin_batch();
        let before = MINCORES.with(|n| n.get());
        assert!(c.contains(own, 5));
        assert_eq!(MINCORES.with(|n| n.get()), before, "no mincore in the patcher's own mapping");
        let arena = crate::arena::Arena::new(4096, crate::arena::ArenaMode::Rwx).unwrap();
        assert!(c.contains(arena.base() + 8, 5));
        c.begin_batch();
        let before = MINCORES.with(|n| n.get());
        assert!(c.contains(arena.base() + 8, 5));
        assert_eq!(MINCORES.with(|n| n.get()), before + 1, "an arena page is confirmed once per batch");
    }

    #[test]
    fn our_own_code_is_code_and_the_stack_is_not() {
        let f = read_maps as fn() -> io::Result<Vec<Mapping>> as usize;
        let mut c = CodeRanges::default();
        assert!(c.contains(f, 1));
        let local = 0u64;
        assert!(!c.contains(&local as *const u64 as usize, 8));
        let m = parse_line("7f00-7f10 r-xp 00000000 00:01 12 /memfd:callpatch-arena (deleted)").unwrap();
        assert_eq!((m.start, m.end, m.is_code(), m.is_wx()), (0x7f00, 0x7f10, true, false));
        assert_eq!(m.path, "/memfd:callpatch-arena");
        assert!(parse_line("7f00 r-xp").is_err());
    }

    #[test]
    fn a_range_unmapped_since_the_last_read_is_not_code_any_more() {
        let page = crate::arena::page_size();
        // SAFETY: a fresh anonymous RX page, unmapped below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                page,
                libc::PROT_READ | libc::PROT_EXEC,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        let addr = p as usize + 16;
        let mut c = CodeRanges::default();
        c.begin_batch();
        assert!(c.contains(addr, 5), "a mapped RX page is code");
        // SAFETY: our own mapping, no longer used.
        assert_eq!(unsafe { libc::munmap(p, page) }, 0);
        c.begin_batch();
        assert!(!c.contains(addr, 5), "the cached range must not approve unmapped memory");
    }
}
