//! Executable memory for generated code.
//!
//! Hardware fact: a 5-byte `call rel32`/`jmp rel32` reaches ±2 GiB from the end of the instruction. The
//! arena is mapped close to this crate's own `.text` (and all generated targets live inside it), so every
//! rel32 form between generated code, and from generated code to Rust functions, always reaches.
//!
//! Three mappings, chosen by [`ArenaMode`]:
//! - `Rwx`: one anonymous mapping, readable, writable and executable for its whole life. Simplest, and what
//!   most micro-benchmarks do; patches are plain stores.
//! - `Sealed`: one anonymous mapping, RW while code is emitted, then RX after [`Arena::seal`]. Later writes
//!   open a short `mprotect` window (or go through `/proc/self/mem`), see [`crate::text_writer::TextWriter`].
//! - `DualMap`: W^X through a `memfd`: an RX view that executes and a separate RW view that writes, both
//!   backed by the same physical pages. No address of the process is ever writable and executable.

use std::io;
use std::ptr;

pub use callpatch_vocab::CACHE_LINE;

/// How the arena's pages are mapped; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ArenaMode {
    /// One RWX anonymous mapping.
    Rwx,
    /// One anonymous mapping, RW until [`Arena::seal`], RX after.
    Sealed,
    /// W^X: memfd mapped twice, RX (execute) and RW (write).
    DualMap,
}

impl ArenaMode {
    /// Every mode, for tests and CLI help.
    pub const ALL: [ArenaMode; 3] = [ArenaMode::Rwx, ArenaMode::Sealed, ArenaMode::DualMap];

    /// Name used on the command line and in CSV rows.
    pub fn name(self) -> &'static str {
        match self {
            ArenaMode::Rwx => "rwx",
            ArenaMode::Sealed => "sealed",
            ArenaMode::DualMap => "dualmap",
        }
    }
}

impl std::str::FromStr for ArenaMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ArenaMode::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| format!("unknown arena mode `{s}` (expected rwx, sealed or dualmap)"))
    }
}

/// A region of executable memory with a bump allocator.
///
/// Addresses handed out are *execution* addresses (the RX view in `DualMap` mode); write through
/// [`Arena::write`] or a [`crate::text_writer::TextWriter`], never through the execution address directly.
#[derive(Debug)]
pub struct Arena {
    mode: ArenaMode,
    exec: *mut u8,
    /// RW alias of `exec` (`DualMap` only; equal to `exec` otherwise).
    rw: *mut u8,
    len: usize,
    next: usize,
    sealed: bool,
}

// SAFETY: the arena owns its mappings; the raw pointers are addresses, not borrowed Rust data, and all
// mutation goes through `&mut self` or through writers that the patcher serialises with its own mutex.
unsafe impl Send for Arena {}
// SAFETY: shared access only reads the addresses and the (immutable) mode; see `Send`.
unsafe impl Sync for Arena {}

/// Largest arena: rel32 must reach from any byte of it to any other.
pub const MAX_ARENA: usize = 1 << 30;

impl Arena {
    /// Maps `len` bytes (rounded up to pages) in `mode`, within ±1 GiB of this crate's code.
    pub fn new(len: usize, mode: ArenaMode) -> io::Result<Arena> {
        Arena::map(len, mode, Placement::NearCode)
    }

    /// Maps `len` bytes in `mode` at the first free slot of a fixed sequence of addresses, the same in
    /// every run of every program (not moved by ASLR), so that code emitted into it in the same order
    /// lands at the same virtual addresses run after run: branch predictors index and tag by virtual
    /// address, and a layout that moves between runs makes two runs measure two different layouts.
    /// Code in such an arena must not reach this crate's code by rel32 (it may be far away). Falls
    /// back to [`Arena::new`]'s placement when no slot is free.
    pub fn new_fixed(len: usize, mode: ArenaMode) -> io::Result<Arena> {
        Arena::map(len, mode, Placement::Fixed).or_else(|_| Arena::new(len, mode))
    }

    fn map(len: usize, mode: ArenaMode, placement: Placement) -> io::Result<Arena> {
        if len == 0 || len > MAX_ARENA {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("arena size {len} must be in 1..={MAX_ARENA}"),
            ));
        }
        let len = len.next_multiple_of(page_size());
        let map_near = |near: usize, len: usize, prot: libc::c_int, fd: libc::c_int| match placement {
            Placement::NearCode => map_near(near, len, prot, fd),
            Placement::Fixed => map_fixed_slot(len, prot, fd),
        };
        let near = Arena::new as fn(usize, ArenaMode) -> io::Result<Arena> as usize;
        let (exec, rw) = match mode {
            ArenaMode::Rwx => {
                let p = map_near(near, len, libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC, -1)?;
                (p, p)
            }
            ArenaMode::Sealed => {
                let p = map_near(near, len, libc::PROT_READ | libc::PROT_WRITE, -1)?;
                (p, p)
            }
            ArenaMode::DualMap => {
                let fd = memfd(len)?;
                let exec = map_near(near, len, libc::PROT_READ | libc::PROT_EXEC, fd.0);
                let rw = exec.and_then(|exec| match map_shared(len, libc::PROT_READ | libc::PROT_WRITE, fd.0) {
                    Ok(rw) => Ok((exec, rw)),
                    Err(e) => {
                        // SAFETY: `exec` was mapped above with length `len` and is not yet shared.
                        unsafe { libc::munmap(exec.cast(), len) };
                        Err(e)
                    }
                })?;
                // The two mappings keep the memfd's pages alive; the descriptor itself can go.
                drop(fd);
                rw
            }
        };
        Ok(Arena { mode, exec, rw, len, next: 0, sealed: false })
    }

    /// The mode this arena was mapped in.
    pub fn mode(&self) -> ArenaMode {
        self.mode
    }

    /// First execution address.
    pub fn base(&self) -> usize {
        self.exec as usize
    }

    /// Mapped length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: an arena has at least one page.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Bytes handed out so far.
    pub fn used(&self) -> usize {
        self.next
    }

    /// True when `[addr, addr+len)` lies inside the arena's execution view.
    pub fn contains(&self, addr: usize, len: usize) -> bool {
        addr >= self.base() && addr.checked_add(len).is_some_and(|end| end <= self.base() + self.len)
    }

    /// The RW alias of execution address `addr` (`DualMap` only).
    pub fn rw_alias(&self, addr: usize) -> Option<usize> {
        (self.mode == ArenaMode::DualMap && self.contains(addr, 1)).then(|| self.rw as usize + (addr - self.base()))
    }

    /// Whether [`Arena::seal`] has run (only meaningful for `Sealed`).
    pub fn is_sealed(&self) -> bool {
        self.sealed
    }

    /// Reserves `len` bytes aligned to `align` (a power of two) and returns the execution address.
    /// The bytes are `int3` (`cc`) until written, so a stray jump into them traps.
    pub fn alloc(&mut self, len: usize, align: usize) -> io::Result<usize> {
        assert!(align.is_power_of_two(), "alignment {align} is not a power of two");
        let start = (self.base() + self.next).next_multiple_of(align) - self.base();
        self.take(start, len)
    }

    /// Reserves `len` bytes starting at byte `offset` of a 64-byte line (`offset < 64`): the returned
    /// address `a` has `a % 64 == offset`. This is how sites are placed across (or clear of) a line.
    pub fn alloc_at_line_offset(&mut self, offset: usize, len: usize) -> io::Result<usize> {
        assert!(offset < CACHE_LINE, "line offset {offset} must be below {CACHE_LINE}");
        let here = self.base() + self.next;
        let line = here - here % CACHE_LINE;
        let mut addr = line + offset;
        if addr < here {
            addr += CACHE_LINE;
        }
        self.take(addr - self.base(), len)
    }

    fn take(&mut self, start: usize, len: usize) -> io::Result<usize> {
        let end = start.checked_add(len).filter(|&e| e <= self.len).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::OutOfMemory,
                format!("arena of {} bytes cannot fit {len} more bytes at offset {start}", self.len),
            )
        })?;
        // Fill the gap and the new range with int3 so unwritten bytes trap rather than run.
        self.fill(self.next, end, 0xcc)?;
        self.next = end;
        Ok(self.base() + start)
    }

    fn fill(&mut self, from: usize, to: usize, byte: u8) -> io::Result<()> {
        if to > from {
            let bytes = vec![byte; to - from];
            self.write(self.base() + from, &bytes)?;
        }
        Ok(())
    }

    /// Writes code bytes at execution address `addr` while the arena is being built (no other thread
    /// runs this code yet). `Rwx`: a plain copy; `Sealed` before sealing: a plain copy, after: a short
    /// mprotect window; `DualMap`: a copy through the RW view. Live patching goes through the patcher.
    pub fn write(&mut self, addr: usize, bytes: &[u8]) -> io::Result<()> {
        if !self.contains(addr, bytes.len()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("write of {} bytes at {addr:#x} is outside the arena", bytes.len()),
            ));
        }
        let off = addr - self.base();
        if self.mode == ArenaMode::Sealed && self.sealed {
            let writer = crate::text_writer::TextWriter::new(crate::text_writer::WriteMethod::Mprotect);
            // SAFETY: the range lies inside this arena (checked above), whose code runs only through
            // the arena's owner; `&mut self` means no one runs it now.
            return unsafe { writer.write(addr, bytes) };
        }
        // SAFETY: `[rw+off, rw+off+len)` is inside the writable view (checked above; the view is
        // writable in every mode that reaches here) and cannot overlap `bytes`, which is Rust data.
        unsafe { ptr::copy_nonoverlapping(bytes.as_ptr(), self.rw.add(off), bytes.len()) };
        Ok(())
    }

    /// Reads `len` bytes at execution address `addr`.
    pub fn read(&self, addr: usize, len: usize) -> Vec<u8> {
        assert!(self.contains(addr, len), "read of {len} bytes at {addr:#x} is outside the arena");
        // SAFETY: the range is inside the execution view, which is always readable.
        unsafe { std::slice::from_raw_parts(addr as *const u8, len) }.to_vec()
    }

    /// `Sealed` mode: drops write permission so the code is RX from now on. A no-op in the other modes
    /// (`Rwx` stays RWX by choice, `DualMap` is already W^X).
    pub fn seal(&mut self) -> io::Result<()> {
        if self.mode == ArenaMode::Sealed && !self.sealed {
            // SAFETY: `exec` is our own mapping of `len` bytes.
            let rc = unsafe { libc::mprotect(self.exec.cast(), self.len, libc::PROT_READ | libc::PROT_EXEC) };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
            self.sealed = true;
        }
        Ok(())
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: both views were mapped by `Arena::new` with length `len` and are not used after drop
        // (the arena owns them; code addresses handed out must not outlive it, as documented).
        unsafe {
            libc::munmap(self.exec.cast(), self.len);
            if self.rw != self.exec {
                libc::munmap(self.rw.cast(), self.len);
            }
        }
    }
}

/// The pages under `[addr, addr + len)` (at least the byte at `addr`): `[first page, end of last page)`.
pub(crate) fn pages_of(addr: usize, len: usize) -> (usize, usize) {
    let mask = !(page_size() - 1); // page sizes are powers of two
    (addr & mask, (addr + len.max(1) + !mask) & mask)
}

/// The system page size.
pub fn page_size() -> usize {
    // Asked once: the patcher needs it per site, and `sysconf` is a libc call each time.
    static PAGE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    match PAGE.load(std::sync::atomic::Ordering::Relaxed) {
        0 => {
            // SAFETY: sysconf has no memory-safety preconditions.
            let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
            let p = if p > 0 { p as usize } else { 4096 };
            PAGE.store(p, std::sync::atomic::Ordering::Relaxed);
            p
        }
        p => p,
    }
}

struct Fd(libc::c_int);
impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: we own the descriptor.
        unsafe { libc::close(self.0) };
    }
}

/// A memfd declared executable (`MFD_EXEC`, Linux 6.3+; older kernels, which do not know the flag,
/// get none). Declaring it is what lets the administrator's `vm.memfd_noexec=2` refuse the alias arena
/// (EACCES) instead of the arena slipping past it: without the flag the kernel would make the memfd
/// non-executable by *seal*, which does not stop an executable `mmap` of it.
fn memfd(len: usize) -> io::Result<Fd> {
    let create = |flags| {
        // SAFETY: the name is a NUL-terminated literal; flags are valid memfd_create flags.
        unsafe { libc::memfd_create(c"callpatch-arena".as_ptr(), flags) }
    };
    let mut fd = create(libc::MFD_CLOEXEC | libc::MFD_EXEC);
    if fd < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
        fd = create(libc::MFD_CLOEXEC);
    }
    if fd < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EACCES) {
            return Err(io::Error::new(
                e.kind(),
                format!("an executable memfd is refused ({e}; vm.memfd_noexec=2?): no dual-mapped arena here"),
            ));
        }
        return Err(e);
    }
    let fd = Fd(fd);
    // SAFETY: plain syscall on our own descriptor.
    if unsafe { libc::ftruncate(fd.0, len as libc::off_t) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

fn map_shared(len: usize, prot: libc::c_int, fd: libc::c_int) -> io::Result<*mut u8> {
    // SAFETY: a fresh shared mapping of our own memfd; no existing memory is replaced.
    let p = unsafe { libc::mmap(ptr::null_mut(), len, prot, libc::MAP_SHARED, fd, 0) };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(p.cast())
}

/// Where an arena is mapped.
#[derive(Clone, Copy)]
enum Placement {
    /// Within ±1 GiB of this crate's code (rel32 reach to Rust functions).
    NearCode,
    /// At the first free slot of a fixed sequence (the same addresses in every run).
    Fixed,
}

/// Maps `len` bytes at the first free slot of `FIXED_BASE + k × FIXED_SLOT` (with
/// `MAP_FIXED_NOREPLACE`, which never replaces a mapping): an address ASLR does not choose. The base
/// lies in the lower half of the 47-bit user space, far below where Linux places the stack, libraries
/// and (by default) `mmap`.
fn map_fixed_slot(len: usize, prot: libc::c_int, fd: libc::c_int) -> io::Result<*mut u8> {
    const FIXED_BASE: usize = 0x1000_0000_0000;
    const FIXED_SLOT: usize = 1 << 28;
    let flags = if fd < 0 { libc::MAP_PRIVATE | libc::MAP_ANONYMOUS } else { libc::MAP_SHARED };
    for k in 0..256 {
        let hint = FIXED_BASE + k * FIXED_SLOT;
        if len > FIXED_SLOT {
            break;
        }
        // SAFETY: MAP_FIXED_NOREPLACE fails instead of replacing anything already mapped there.
        let p = unsafe { libc::mmap(hint as *mut libc::c_void, len, prot, flags | libc::MAP_FIXED_NOREPLACE, fd, 0) };
        if p == libc::MAP_FAILED {
            continue;
        }
        if p as usize == hint {
            return Ok(p.cast());
        }
        // Old kernels treat the flag as a plain hint and may map elsewhere: undo and go on.
        // SAFETY: we just mapped this range ourselves.
        unsafe { libc::munmap(p, len) };
    }
    Err(io::Error::new(io::ErrorKind::AddrNotAvailable, format!("no free fixed slot for {len} bytes")))
}

/// Maps `len` bytes within ±1 GiB of `near`, trying hints on both sides with `MAP_FIXED_NOREPLACE`
/// (which never replaces an existing mapping). `fd < 0` means anonymous private memory.
fn map_near(near: usize, len: usize, prot: libc::c_int, fd: libc::c_int) -> io::Result<*mut u8> {
    const STEP: usize = 16 << 20;
    const REACH: usize = 1 << 30;
    let flags = if fd < 0 { libc::MAP_PRIVATE | libc::MAP_ANONYMOUS } else { libc::MAP_SHARED };
    let granule = 2 << 20;
    let centre = near - near % granule;
    let mut tried = 0;
    for k in 1..(REACH / STEP) {
        for hint in [centre.checked_add(k * STEP), centre.checked_sub(k * STEP + len)] {
            let Some(hint) = hint else { continue };
            tried += 1;
            // SAFETY: MAP_FIXED_NOREPLACE fails instead of replacing anything already mapped there.
            let p =
                unsafe { libc::mmap(hint as *mut libc::c_void, len, prot, flags | libc::MAP_FIXED_NOREPLACE, fd, 0) };
            if p == libc::MAP_FAILED {
                continue;
            }
            let p = p as usize;
            if p.abs_diff(near) + len <= REACH + STEP + len && p == hint {
                return Ok(p as *mut u8);
            }
            // Old kernels treat the flag as a plain hint and may map elsewhere: undo and go on.
            // SAFETY: we just mapped this range ourselves.
            unsafe { libc::munmap(p as *mut libc::c_void, len) };
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrNotAvailable,
        format!("no free {len}-byte range within 1 GiB of {near:#x} ({tried} hints tried)"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mode_maps_near_our_code_and_places_at_line_offsets() {
        for mode in ArenaMode::ALL {
            let mut a = Arena::new(1 << 16, mode).unwrap();
            let near = Arena::new as fn(usize, ArenaMode) -> io::Result<Arena> as usize;
            assert!(a.base().abs_diff(near) < (1 << 31) - a.len(), "{mode:?} arena out of rel32 reach");
            for b in 0..CACHE_LINE {
                let addr = a.alloc_at_line_offset(b, 5).unwrap();
                assert_eq!(addr % CACHE_LINE, b);
                a.write(addr, &[0xe8, 1, 2, 3, 4]).unwrap();
                assert_eq!(a.read(addr, 5), [0xe8, 1, 2, 3, 4]);
            }
            a.seal().unwrap();
            let x = a.alloc(1, 1).unwrap();
            a.write(x, &[0xc3]).unwrap();
            assert_eq!(a.read(x, 1), [0xc3]);
        }
    }

    #[test]
    fn unwritten_bytes_are_int3_and_overflow_is_an_error() {
        let mut a = Arena::new(4096, ArenaMode::DualMap).unwrap();
        let x = a.alloc(16, 16).unwrap();
        assert_eq!(a.read(x, 16), vec![0xcc; 16]);
        assert!(a.alloc(a.len(), 1).is_err());
        assert!(a.write(a.base() + a.len(), &[0]).is_err());
        assert!(a.rw_alias(x).is_some());
    }
}
