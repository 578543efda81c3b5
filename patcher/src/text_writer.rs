//! The one path by which code bytes are written once they may be executing.
//!
//! Hardware fact: x86 keeps instruction fetch coherent with stores on the *same* core (self-modifying
//! code is detected), but another core may already have fetched or decoded the old bytes. A writer only
//! stores; making other cores see the new bytes (serialising them) is the patcher's `sync`, and choosing
//! which bytes may be stored while others run them is the protocol's job.
//!
//! Methods:
//! - `Direct`: a plain store; the page must already be writable (an `Rwx` arena).
//! - `Alias`: a store through the RW view of a dual-mapped (`memfd`) arena: W^X at every instant.
//! - `Mprotect`: the page(s) are made RWX for the duration of one batch (one `mprotect` per mapping
//!   the batch writes, over its written pages, when the batch opens its window, one when it closes:
//!   `BatchWindow`), or of one write outside a batch, then RX again. This is the method for the program's own `.text` (static calls) and for a
//!   sealed arena. A bp batch of 10 000 sites on this 2-vCPU guest: 22.3 µs per site with a window per
//!   write (six `mprotect`s per site), 0.12 µs with one window per batch. Each `mprotect` costs about
//!   5 µs here (it splits or merges the mapping and flushes the TLB), so a one-site batch is 19 µs
//!   through this method and 8 µs through an alias.
//! - `ProcMem`: `pwrite` to `/proc/self/mem`, which the kernel performs with `FOLL_FORCE` on a private
//!   RX mapping (copy-on-write), so no page is ever writable from user space. Not atomic: refused for
//!   the single-store (aligned) protocol.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use callpatch_vocab::Granule;

use crate::arena::{pages_of, Arena, ArenaMode};
use crate::error::PatchError;

/// How a [`TextWriter`] gets bytes into executable memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WriteMethod {
    /// Plain store into a page that is already writable.
    Direct,
    /// Store through the RW alias of a dual mapping.
    Alias,
    /// RWX window with `mprotect` around each write.
    Mprotect,
    /// `pwrite` to `/proc/self/mem`: an explicit opt-in, never chosen by the patcher or `static_call!`.
    /// The kernel performs it with `FOLL_FORCE`, the debugger's write, which ignores the mapping's
    /// protection: it bypasses the administrator's W^X policy (`MemoryDenyWriteExecute`,
    /// `PR_SET_MDWE`, SELinux `execmem`) rather than obeying it. Refused by the kernel, and by
    /// [`TextWriter::open`] up front, under `proc_mem.force_override=never` (or `=ptrace`: a process
    /// does not trace itself).
    ProcMem,
}

impl WriteMethod {
    /// Every method.
    pub const ALL: [WriteMethod; 4] =
        [WriteMethod::Direct, WriteMethod::Alias, WriteMethod::Mprotect, WriteMethod::ProcMem];

    /// Name used on the command line and in CSV rows.
    pub fn name(self) -> &'static str {
        match self {
            WriteMethod::Direct => "direct",
            WriteMethod::Alias => "alias",
            WriteMethod::Mprotect => "mprotect",
            WriteMethod::ProcMem => "procmem",
        }
    }

    /// Whether a single aligned store by this method is one hardware store (and so atomic).
    pub fn has_atomic_store(self) -> bool {
        self != WriteMethod::ProcMem
    }
}

impl std::str::FromStr for WriteMethod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        WriteMethod::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| format!("unknown write method `{s}` (expected direct, alias, mprotect or procmem)"))
    }
}

#[derive(Clone, Copy, Debug)]
struct AliasMap {
    exec: usize,
    rw: usize,
    len: usize,
}

/// Writes bytes into code that may be executing. Cheap to create; holds no lock (the patcher
/// serialises all writers with its text mutex).
#[derive(Debug)]
pub struct TextWriter {
    method: WriteMethod,
    alias: Option<AliasMap>,
    mem: Option<File>,
}

impl TextWriter {
    /// A writer for memory outside any arena (the program's `.text`): `Mprotect`, `ProcMem` or `Direct`.
    pub fn new(method: WriteMethod) -> TextWriter {
        TextWriter { method, alias: None, mem: None }
    }

    /// The natural writer for an arena's mode: `Direct` for `Rwx` and for `Sealed` before sealing,
    /// `Mprotect` for a sealed arena, `Alias` for `DualMap`.
    pub fn for_arena(arena: &Arena) -> TextWriter {
        let method = match arena.mode() {
            ArenaMode::Rwx => WriteMethod::Direct,
            ArenaMode::Sealed if arena.is_sealed() => WriteMethod::Mprotect,
            ArenaMode::Sealed => WriteMethod::Direct,
            ArenaMode::DualMap => WriteMethod::Alias,
        };
        Self::with_method(arena, method).expect("the natural method always fits its arena")
    }

    /// A writer for `arena` using `method`, or an error when the two don't fit together (`Alias` needs a
    /// dual mapping; `Mprotect`/`ProcMem` need a private mapping; `Direct` needs a writable page).
    pub fn with_method(arena: &Arena, method: WriteMethod) -> io::Result<TextWriter> {
        let fits = match method {
            WriteMethod::Direct => {
                arena.mode() == ArenaMode::Rwx || !arena.is_sealed() && arena.mode() == ArenaMode::Sealed
            }
            WriteMethod::Alias => arena.mode() == ArenaMode::DualMap,
            WriteMethod::Mprotect | WriteMethod::ProcMem => arena.mode() != ArenaMode::DualMap,
        };
        if !fits {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("write method `{}` cannot write a `{}` arena", method.name(), arena.mode().name()),
            ));
        }
        let alias = arena.rw_alias(arena.base()).map(|rw| AliasMap { exec: arena.base(), rw, len: arena.len() });
        Ok(TextWriter { method, alias, mem: None })
    }

    /// The method in use.
    pub fn method(&self) -> WriteMethod {
        self.method
    }

    fn rw_address(&self, addr: usize, len: usize) -> io::Result<usize> {
        match (self.method, self.alias) {
            (WriteMethod::Alias, Some(a)) if addr >= a.exec && addr + len <= a.exec + a.len => {
                Ok(a.rw + (addr - a.exec))
            }
            (WriteMethod::Alias, _) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{addr:#x}+{len} is not inside the dual-mapped arena"),
            )),
            _ => Ok(addr),
        }
    }

    /// Copies `bytes` to execution address `addr`. Not atomic as a whole; the protocols decide which
    /// bytes may be written while other threads run them.
    ///
    /// # Safety
    /// `[addr, addr + bytes.len())` is code of this process that the caller owns: mapped, and (for
    /// `Direct`) writable; no thread executes those bytes in a way the new bytes would break (the
    /// caller's protocol arranges that), and nothing else (data, another instruction) lives there.
    #[inline]
    pub unsafe fn write(&self, addr: usize, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        match self.method {
            WriteMethod::ProcMem => self.proc_mem()?.write_all_at(bytes, addr as u64),
            WriteMethod::Mprotect => with_write_window(addr, bytes.len(), || {
                // SAFETY: the window makes `[addr, addr+len)` writable, and the caller owns those bytes
                // (this function's contract).
                unsafe { copy_small(bytes, addr) }
            }),
            WriteMethod::Direct | WriteMethod::Alias => {
                let dst = self.rw_address(addr, bytes.len())?;
                // SAFETY: `dst` is the caller's code (contract) seen through a writable view: the RW alias
                // (range checked by `rw_address`) or, for `Direct`, a page the caller says is writable.
                unsafe { copy_small(bytes, dst) };
                Ok(())
            }
        }
    }

    /// Stores 4 bytes at `addr` with one `mov dword` instruction. Hardware fact (SDM vol. 3 §9.1.1): on
    /// P6 and later, an unaligned 32-bit access that stays within one cache line is atomic — the basis
    /// of the aligned-only policy. Refuses a store that crosses a line, and `ProcMem`.
    ///
    /// # Safety
    /// As [`TextWriter::write`] for the 4 bytes at `addr`.
    pub unsafe fn store_u32_atomic(&self, addr: usize, value: u32) -> io::Result<()> {
        if Granule::Line.crosses(addr) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a 4-byte store at {addr:#x} crosses a cache line and would not be atomic"),
            ));
        }
        // SAFETY: this function's contract.
        unsafe { self.store_u32(addr, value) }
    }

    /// Stores 4 bytes at `addr` with one `mov dword` instruction, wherever it lands. Across a cache line
    /// the hardware performs it as two stores that another core can observe apart: the torn writer of
    /// the hazard experiment. Use [`TextWriter::store_u32_atomic`] for patching.
    ///
    /// # Safety
    /// As [`TextWriter::write`] for the 4 bytes at `addr`.
    pub unsafe fn store_u32(&self, addr: usize, value: u32) -> io::Result<()> {
        self.store_with(addr, 4, |dst| {
            // SAFETY: `dst` is a writable view of the caller's 4 bytes (contract; see `store_with`);
            // one `mov dword` stores them.
            unsafe { core::arch::asm!("mov dword ptr [{p}], {v:e}", p = in(reg) dst, v = in(reg) value, options(nostack, preserves_flags)) }
        })
    }

    /// Stores 8 bytes at an 8-byte-aligned `addr` with one `mov qword` (atomic on every x86-64).
    ///
    /// # Safety
    /// As [`TextWriter::write`] for the 8 bytes at `addr`.
    pub unsafe fn store_u64_atomic(&self, addr: usize, value: u64) -> io::Result<()> {
        if !addr.is_multiple_of(8) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{addr:#x} is not 8-byte aligned")));
        }
        self.store_with(addr, 8, |dst| {
            // SAFETY: `dst` is a writable, 8-byte aligned view of the caller's 8 bytes (contract; see
            // `store_with`); one aligned `mov`.
            unsafe { core::arch::asm!("mov qword ptr [{p}], {v}", p = in(reg) dst, v = in(reg) value, options(nostack, preserves_flags)) }
        })
    }

    /// Runs `store(dst)` with `dst` a writable address for execution address `addr`.
    fn store_with(&self, addr: usize, len: usize, store: impl FnOnce(usize)) -> io::Result<()> {
        match self.method {
            WriteMethod::ProcMem => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "/proc/self/mem writes are copies, not single stores: no atomicity guarantee",
            )),
            WriteMethod::Mprotect => with_write_window(addr, len, || store(addr)),
            WriteMethod::Direct | WriteMethod::Alias => {
                store(self.rw_address(addr, len)?);
                Ok(())
            }
        }
    }

    fn proc_mem(&self) -> io::Result<&File> {
        match &self.mem {
            Some(f) => Ok(f),
            None => Err(io::Error::other("unreachable: ProcMem writer without a file")),
        }
    }

    /// Opens `/proc/self/mem` now (for `ProcMem`); other methods need nothing. Call once after creating
    /// a `ProcMem` writer. Refused when the kernel command line forbids forced `/proc/*/mem` writes.
    pub fn open(mut self) -> io::Result<TextWriter> {
        if self.method == WriteMethod::ProcMem && self.mem.is_none() {
            let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
            if let Some(policy) = proc_mem_refused(&cmdline) {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "the kernel forbids forced writes through /proc/self/mem ({policy}): the procmem writer \
                         is refused; use mprotect or alias"
                    ),
                ));
            }
            self.mem = Some(std::fs::OpenOptions::new().read(true).write(true).open("/proc/self/mem")?);
        }
        Ok(self)
    }
}

/// The `proc_mem.force_override=` setting on a kernel command line that refuses this process's own
/// forced `/proc/self/mem` writes (`never`; `ptrace`, which allows them only to an active tracer).
fn proc_mem_refused(cmdline: &str) -> Option<&str> {
    cmdline.split_whitespace().rfind(|w| w.starts_with("proc_mem.force_override=")).filter(|w| {
        let value = &w["proc_mem.force_override=".len()..];
        value == "never" || value == "ptrace"
    })
}

/// Copies `bytes` to `dst`: byte stores for a site's few bytes (a protocol step writes 1 to 6, three
/// times per site; a `memcpy` call for each cost more than the stores), `memcpy` beyond 8.
///
/// # Safety
/// `[dst, dst + bytes.len())` is writable and does not overlap `bytes`.
unsafe fn copy_small(bytes: &[u8], dst: usize) {
    if bytes.len() > 8 {
        // SAFETY: the caller's contract.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst as *mut u8, bytes.len()) };
        return;
    }
    for (i, &b) in bytes.iter().enumerate() {
        // SAFETY: the caller's contract; volatile keeps these byte stores from becoming a `memcpy` call.
        unsafe { std::ptr::write_volatile((dst + i) as *mut u8, b) };
    }
}

/// Writes through `writer`, naming the address on failure.
///
/// # Safety
/// As [`TextWriter::write`].
#[inline]
pub(crate) unsafe fn write(writer: &TextWriter, addr: usize, bytes: &[u8]) -> Result<(), PatchError> {
    #[cfg(test)]
    if fault::fail_this_write() {
        let source = io::Error::other("injected write failure (test)");
        return Err(PatchError::Write { addr, len: bytes.len(), source });
    }
    // SAFETY: this function's contract.
    unsafe { writer.write(addr, bytes) }.map_err(|source| PatchError::Write { addr, len: bytes.len(), source })
}

thread_local! {
    /// `mprotect` calls made by the text writers on this thread (the tests read it: a batch must not
    /// make one per write, nor one per page).
    static MPROTECTS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// `mprotect(2)` on `[start, end)`, counted.
fn protect(start: usize, end: usize, prot: libc::c_int) -> io::Result<()> {
    MPROTECTS.with(|n| n.set(n.get() + 1));
    // SAFETY: changes protection only, of code pages the caller owns and names (every caller passes a
    // page-aligned range of code it is patching).
    if unsafe { libc::mprotect(start as *mut libc::c_void, end - start, prot) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

thread_local! {
    /// The page ranges a batch window of this thread holds writable (empty: none).
    static BATCH_WINDOW: std::cell::RefCell<Vec<(usize, usize)>> = const { std::cell::RefCell::new(Vec::new()) };
    /// The window range the last write of this thread fell in (`(0, 0)`: none): consecutive writes of a
    /// batch usually fall in the same one.
    static LAST_RANGE: std::cell::Cell<(usize, usize)> = const { std::cell::Cell::new((0, 0)) };
}

/// The pages of one batch made writable once, for all its steps (`Mprotect` writers): one `mprotect`
/// per contiguous range when it opens and one when it closes, instead of two per write (a bp batch
/// writes each site three times). The pages are writable and executable exactly as long as the batch,
/// on the thread that patches; [`BatchWindow::close`] (or drop) makes them RX again.
pub(crate) struct BatchWindow {
    ranges: Vec<(usize, usize)>,
}

impl TextWriter {
    /// Whether a batch through this writer needs a write window (an `Mprotect` writer; the others
    /// write through a view that is already writable).
    pub(crate) fn needs_window(&self) -> bool {
        self.method == WriteMethod::Mprotect
    }

    /// Opens the window over the pages under `writes` (address, length) for an `Mprotect` writer; any
    /// other method needs none. On an error nothing stays writable.
    ///
    /// Pages that lie in one read-execute mapping (`rx_mapping_of`) are covered by one range, from the
    /// first to the last written page of that mapping: a program's static call sites are spread over its
    /// `.text`, and each `mprotect` of a range inside a mapping splits it (and the close merges it back),
    /// a few µs each, so one range per mapping, not one per run of adjacent pages. Every page in such a
    /// range is RX before and after, so it is restored exactly; the window lasts as long as the batch.
    pub(crate) fn open_batch_window(
        &self,
        writes: &[(usize, usize)],
        rx_mapping_of: impl Fn(usize) -> Option<(usize, usize)>,
    ) -> io::Result<BatchWindow> {
        if !self.needs_window() || writes.is_empty() {
            return Ok(BatchWindow { ranges: Vec::new() });
        }
        let mut pages: Vec<(usize, usize)> = writes.iter().map(|&(a, l)| pages_of(a, l)).collect();
        pages.sort_unstable();
        let mut ranges: Vec<(usize, usize)> = Vec::with_capacity(pages.len());
        let mut mapping_of_last = None;
        for (s, e) in pages {
            let mapping = rx_mapping_of(s).filter(|&(_, me)| e <= me);
            match ranges.last_mut() {
                Some(last) if s <= last.1 || mapping.is_some() && mapping == mapping_of_last => last.1 = last.1.max(e),
                _ => ranges.push((s, e)),
            }
            mapping_of_last = mapping;
        }
        let rwx = libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC;
        for (i, &(s, e)) in ranges.iter().enumerate() {
            if let Err(err) = protect(s, e, rwx) {
                let _ = restore_rx(&ranges[..i]);
                return Err(err);
            }
        }
        BATCH_WINDOW.with(|w| *w.borrow_mut() = ranges.clone());
        Ok(BatchWindow { ranges })
    }
}

impl BatchWindow {
    /// Makes the window's pages RX again; an error means a page may stay writable and executable.
    pub(crate) fn close(mut self) -> io::Result<()> {
        self.restore()
    }

    fn restore(&mut self) -> io::Result<()> {
        if self.ranges.is_empty() {
            return Ok(());
        }
        BATCH_WINDOW.with(|w| w.borrow_mut().clear());
        LAST_RANGE.with(|r| r.set((0, 0)));
        restore_rx(&std::mem::take(&mut self.ranges))
    }
}

impl Drop for BatchWindow {
    fn drop(&mut self) {
        let _ = self.restore();
    }
}

/// Makes every range RX; the first error, after trying them all.
fn restore_rx(ranges: &[(usize, usize)]) -> io::Result<()> {
    let mut first = Ok(());
    for &(s, e) in ranges {
        // The RX protection code pages have outside a window.
        if let (Err(e), true) = (protect(s, e, libc::PROT_READ | libc::PROT_EXEC), first.is_ok()) {
            first = Err(e);
        }
    }
    first
}

/// Makes the pages under `[addr, addr+len)` RWX, runs `f`, and makes them RX again — the window is
/// as short as the write — unless a batch window of this thread already holds them writable. Assumes
/// those pages are RX outside the window (code pages).
fn with_write_window(addr: usize, len: usize, f: impl FnOnce()) -> io::Result<()> {
    let within = |(s, e): (usize, usize)| s <= addr && addr + len <= e;
    let open = LAST_RANGE.with(|r| within(r.get()))
        || BATCH_WINDOW.with(|w| {
            let w = w.borrow();
            let i = w.partition_point(|&(_, e)| e <= addr);
            let hit = w.get(i).copied().filter(|&r| within(r));
            if let Some(r) = hit {
                LAST_RANGE.with(|last| last.set(r));
            }
            hit.is_some()
        });
    if open {
        f();
        return Ok(());
    }
    let (start, end) = pages_of(addr, len);
    protect(start, end, libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC)?;
    f();
    protect(start, end, libc::PROT_READ | libc::PROT_EXEC)
}

/// Test-only fault injection into the protocols' writes, per thread (the patcher writes from the
/// thread that called it, so parallel tests do not see each other's faults).
#[cfg(test)]
pub(crate) mod fault {
    use std::cell::Cell;

    thread_local! {
        /// (writes still to let through, writes to fail after them)
        static PLAN: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
    }

    /// Lets `pass` writes of this thread through, then fails the next `fail`.
    pub(crate) fn arm(pass: usize, fail: usize) {
        PLAN.with(|p| p.set((pass, fail)));
    }

    /// Whether the write about to happen fails (and counts it).
    pub(crate) fn fail_this_write() -> bool {
        PLAN.with(|p| match p.get() {
            (_, 0) => false,
            (0, fail) => {
                p.set((0, fail - 1));
                true
            }
            (pass, fail) => {
                p.set((pass - 1, fail));
                false
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arena::page_size;

    #[test]
    fn a_batch_through_an_mprotect_writer_opens_one_window_not_one_per_write() {
        use crate::batch::{patch_batch, SitePatch};
        use crate::insn::{encode, Insn};
        use callpatch_vocab::Protocol;

        // 100 sites `call a` on one page of a sealed (RX) arena, retargeted to `b` with bp: 300 writes.
        let mut arena = Arena::new(2 * page_size(), ArenaMode::Sealed).unwrap();
        let a = arena.alloc(6, 16).unwrap();
        arena.write(a, &[0xb8, 1, 0, 0, 0, 0xc3]).unwrap();
        let b = arena.alloc(6, 16).unwrap();
        arena.write(b, &[0xb8, 2, 0, 0, 0, 0xc3]).unwrap();
        let sites: Vec<usize> = (0..100).map(|_| arena.alloc(8, 8).unwrap()).collect();
        for &s in &sites {
            arena.write(s, &encode(Insn::Call(a), s).unwrap()).unwrap();
        }
        arena.seal().unwrap();
        let w = TextWriter::for_arena(&arena);
        assert_eq!(w.method(), WriteMethod::Mprotect);
        let batch: Vec<SitePatch> =
            sites.iter().map(|&s| SitePatch { addr: s, old: Insn::Call(a), new: Insn::Call(b) }).collect();
        let before = MPROTECTS.with(|n| n.get());
        // SAFETY: the arena's own sites (never executed here), retargeted between its own targets.
        unsafe { patch_batch(&w, Protocol::Bp, &batch) }.unwrap();
        let calls = MPROTECTS.with(|n| n.get()) - before;
        // One window over the arena's one mapping: 2 calls, where a window per write made 600.
        assert_eq!(calls, 2, "mprotect calls for one batch of 100 sites");
        for &s in &sites {
            assert_eq!(arena.read(s, 5), encode(Insn::Call(b), s).unwrap().to_vec());
        }
        let maps = crate::maps::read_maps().unwrap();
        let page = maps.iter().find(|m| m.start <= sites[0] && sites[0] < m.end).unwrap();
        assert_eq!(&page.perms[..3], "r-x", "the window is closed: {page:?}");
    }

    #[test]
    fn a_batch_on_distant_pages_of_one_mapping_opens_one_range_and_restores_every_page_rx() {
        use crate::batch::{patch_batch, SitePatch};
        use crate::insn::{encode, Insn};
        use callpatch_vocab::Protocol;

        // Two sites, on the first and the fourth page of one sealed arena, two untouched pages between.
        let page = page_size();
        let mut arena = Arena::new(4 * page, ArenaMode::Sealed).unwrap();
        let first = arena.alloc(page, page).unwrap();
        let a = first + 64;
        arena.write(a, &[0xb8, 1, 0, 0, 0, 0xc3]).unwrap();
        let _between = arena.alloc(2 * page, page).unwrap();
        let last = arena.alloc(page, page).unwrap();
        let sites = [first + 8, last + 8];
        for s in sites {
            arena.write(s, &encode(Insn::Call(a), s).unwrap()).unwrap();
        }
        arena.seal().unwrap();
        let w = TextWriter::for_arena(&arena);
        let batch: Vec<SitePatch> =
            sites.iter().map(|&s| SitePatch { addr: s, old: Insn::Call(a), new: Insn::Call(a + 16) }).collect();
        let before = MPROTECTS.with(|n| n.get());
        // SAFETY: the arena's own sites (never executed here); `a + 16` lies in the same arena.
        unsafe { patch_batch(&w, Protocol::Bp, &batch) }.unwrap();
        assert_eq!(MPROTECTS.with(|n| n.get()) - before, 2, "one range over both pages: open and close");
        let maps = crate::maps::read_maps().unwrap();
        for p in (first..last + page).step_by(page) {
            let m = maps.iter().find(|m| m.start <= p && p < m.end).unwrap();
            assert_eq!(&m.perms[..3], "r-x", "page {p:#x} after the batch: {m:?}");
        }
    }

    #[test]
    fn the_procmem_writer_reads_the_kernels_force_override_policy() {
        assert_eq!(proc_mem_refused("ro quiet proc_mem.force_override=never"), Some("proc_mem.force_override=never"));
        assert_eq!(proc_mem_refused("proc_mem.force_override=ptrace"), Some("proc_mem.force_override=ptrace"));
        assert_eq!(proc_mem_refused("proc_mem.force_override=never proc_mem.force_override=always"), None);
        assert_eq!(proc_mem_refused("BOOT_IMAGE=/vmlinuz ro"), None);
    }

    #[test]
    fn a_range_over_a_page_unmapped_since_the_maps_were_read_falls_back_to_the_written_pages() {
        use crate::batch::{patch_batch, SitePatch};
        use crate::insn::{encode, Insn};
        use callpatch_vocab::Protocol;

        // Sites on pages 0 and 2 of one sealed arena; a first batch reads the maps (one mapping).
        let page = page_size();
        let mut arena = Arena::new(3 * page, ArenaMode::Sealed).unwrap();
        let first = arena.alloc(page, page).unwrap();
        let middle = arena.alloc(page, page).unwrap();
        let last = arena.alloc(page, page).unwrap();
        let a = first + 64;
        arena.write(a, &[0xb8, 1, 0, 0, 0, 0xc3]).unwrap();
        let sites = [first + 8, last + 8];
        for s in sites {
            arena.write(s, &encode(Insn::Call(a), s).unwrap()).unwrap();
        }
        arena.seal().unwrap();
        let w = TextWriter::for_arena(&arena);
        let flip = |from: usize, to: usize| -> Vec<SitePatch> {
            sites.iter().map(|&s| SitePatch { addr: s, old: Insn::Call(from), new: Insn::Call(to) }).collect()
        };
        // SAFETY: the arena's own sites (never executed here), between two addresses of its first page.
        unsafe { patch_batch(&w, Protocol::Bp, &flip(a, a + 16)) }.unwrap();
        // The middle page goes (the cached mapping still spans it), then a second batch.
        // SAFETY: a page of this test's own arena that nothing uses.
        assert_eq!(unsafe { libc::munmap(middle as *mut libc::c_void, page) }, 0);
        // SAFETY: as above.
        unsafe { patch_batch(&w, Protocol::Bp, &flip(a + 16, a)) }.expect("the stale range must not refuse it");
        for s in sites {
            assert_eq!(arena.read(s, 5), encode(Insn::Call(a), s).unwrap().to_vec());
        }
    }

    #[test]
    fn every_fitting_method_writes_and_stores() {
        for mode in ArenaMode::ALL {
            for method in WriteMethod::ALL {
                let mut a = Arena::new(8192, mode).unwrap();
                let at = a.alloc_at_line_offset(8, 16).unwrap();
                a.seal().unwrap();
                let Ok(w) = TextWriter::with_method(&a, method) else {
                    assert!(matches!(
                        (mode, method),
                        (ArenaMode::DualMap, WriteMethod::Direct | WriteMethod::Mprotect | WriteMethod::ProcMem)
                            | (ArenaMode::Rwx | ArenaMode::Sealed, WriteMethod::Alias)
                            | (ArenaMode::Sealed, WriteMethod::Direct)
                    ));
                    continue;
                };
                let w = w.open().unwrap();
                // SAFETY: bytes inside this test's own arena, which nothing runs (so for every block below).
                unsafe { w.write(at, &[1, 2, 3]) }.unwrap();
                assert_eq!(a.read(at, 3), [1, 2, 3], "{mode:?}/{method:?}");
                if method.has_atomic_store() {
                    // SAFETY: as above.
                    unsafe { w.store_u32_atomic(at + 1, 0xdead_beef) }.unwrap();
                    assert_eq!(a.read(at + 1, 4), 0xdead_beefu32.to_le_bytes());
                    // SAFETY: as above.
                    unsafe { w.store_u64_atomic(at, u64::MAX) }.unwrap();
                    assert_eq!(a.read(at, 8), [0xff; 8]);
                    // SAFETY: as above (and refused before any write).
                    assert!(unsafe { w.store_u32_atomic(at - 8 + 62, 0) }.is_err(), "crossing store refused");
                } else {
                    // SAFETY: as above.
                    assert!(unsafe { w.store_u32_atomic(at + 1, 0) }.is_err());
                }
            }
        }
    }
}
