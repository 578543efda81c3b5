//! One patcher per process, however many copies of this crate the process has loaded.
//!
//! Every `cdylib` built on the patcher embeds its own copy (its own statics, its own handler), and a
//! program may `dlopen` several. SIGTRAP has one disposition per process, and `membarrier` and the
//! text are shared too, so the copies must agree on one text lock and one SIGTRAP handler, as the
//! kernel has one `text_mutex` and one `poke_int3_handler` for itself and every module. The hub holds
//! both: a leaked, never-freed C-layout block that the first copy creates and every later copy finds.
//!
//! How a copy finds it: each copy's text carries an ELF note (owner `callpatch`) holding the
//! PC-relative address of that copy's hub cell. `get()` walks every loaded object's `PT_NOTE`
//! segments with `dl_iterate_phdr` — which sees the executable and `RTLD_LOCAL` libraries alike, where
//! `dlsym(RTLD_DEFAULT)` sees neither — and adopts the first hub a cell holds, or creates one. The walk
//! runs inside an outer `dl_iterate_phdr` callback: glibc holds its loader list lock across a walk
//! (recursively), so two copies finding the hub at once are serialised, and no object comes or goes
//! during the walk.
//!
//! Who owns what: the copy that installs the process's SIGTRAP handler keeps its code in place for
//! good (it pins its own shared object, `RTLD_NODELETE`), because the disposition would otherwise
//! point into unmapped text after a `dlclose`. Every other copy that traps registers a claim function
//! here, which the handler asks about an `int3` that is not in its own table; an unloading copy
//! removes its claim (its `__cxa_atexit` hook runs in `dlclose`, before the unmap) and waits until no
//! handler is still inside it. The lock serialises every copy's batches; `fork` keeps it consistent
//! through the creator's `pthread_atfork` handlers, registered before any copy's own (see
//! [`crate::fork`]).

use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicUsize, Ordering};

/// The layout version: a copy that finds a hub of another version refuses to patch, rather than share
/// a lock it cannot read.
const VERSION: u32 = 1;
const MAGIC: [u8; 8] = *b"callpHUB";
/// The note's type and owner.
const NOTE_TYPE: u32 = 0x4350_4801;
const NOTE_OWNER: &[u8; 10] = b"callpatch\0";
/// Copies that may trap at once, besides the one whose handler is installed.
pub const MAX_COPIES: usize = 64;

/// A copy's claim on an `int3`: makes the interrupted context act as the site's new instruction and
/// returns true, or returns false when `site` is not one of its sites. Called in the signal handler.
pub(crate) type Claim = extern "C" fn(site: usize, gregs: *mut libc::greg_t) -> bool;

/// The process-wide state, shared by every copy through a pointer: C layout, never freed.
#[repr(C)]
pub(crate) struct Hub {
    magic: [u8; 8],
    version: u32,
    /// 0 free, 1 held, 2 held with waiters (a futex word).
    lock: AtomicU32,
    /// The process SIGTRAP handler's address, once a copy has claimed the right to install it.
    handler: AtomicUsize,
    /// Set once that handler is installed: a copy's first `int3` waits for it.
    handler_ready: AtomicBool,
    /// Signal handlers now walking `claims`.
    readers: AtomicUsize,
    /// The claim functions of the other copies (0: free slot).
    claims: [AtomicUsize; MAX_COPIES],
}

/// This copy's cell: the hub once found (null before).
static CELL: AtomicPtr<Hub> = AtomicPtr::new(std::ptr::null_mut());

/// The process's hub, found or created on first use. `Err` names a hub of another layout version.
pub(crate) fn get() -> Result<&'static Hub, String> {
    let mut p = CELL.load(Ordering::Acquire);
    if p.is_null() {
        p = find_or_create();
        settle_creation();
    }
    // SAFETY: CELL (ours or another copy's) only ever holds a leaked `Box<Hub>`, or a hub another
    // version created, whose first two fields every version lays out alike.
    let hub = unsafe { &*p };
    if hub.magic != MAGIC || hub.version != VERSION {
        return Err(format!(
            "another copy of the patcher in this process uses hub version {} (this copy: {VERSION}); \
             copies of different versions cannot share the text lock, so this one does not patch",
            hub.version
        ));
    }
    Ok(hub)
}

/// The address of this copy's cell, through the note every copy carries in its text.
#[inline(never)]
fn own_cell_note() -> usize {
    let note: usize;
    // SAFETY: emits one note (header, owner, a 4-byte PC-relative offset to CELL) into an allocated
    // note section and loads its address; no instruction touches memory.
    unsafe {
        std::arch::asm!(
            ".pushsection .note.callpatch.hub,\"aR\",@note",
            ".balign 4",
            "2:",
            ".long 10",
            ".long 4",
            ".long {ty}",
            ".asciz \"callpatch\"",
            ".balign 4",
            ".long {cell} - .",
            ".popsection",
            "lea {note}, [rip + 2b]",
            ty = const NOTE_TYPE,
            cell = sym CELL,
            note = out(reg) note,
            options(nomem, nostack, preserves_flags),
        );
    }
    note
}

struct Walk {
    found: *mut Hub,
}

fn find_or_create() -> *mut Hub {
    let _ = own_cell_note(); // keeps the note (and so this copy) findable by the others
    let mut walk = Walk { found: std::ptr::null_mut() };
    // SAFETY: the callback gets `walk` back as `data` and returns before dl_iterate_phdr does.
    unsafe { libc::dl_iterate_phdr(Some(outer), (&raw mut walk).cast()) };
    if walk.found.is_null() {
        // dl_iterate_phdr walks at least the executable; this is unreachable in practice.
        let hub = Box::into_raw(Box::new(Hub::new()));
        walk.found = match CELL.compare_exchange(std::ptr::null_mut(), hub, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => {
                CREATED.store(true, Ordering::Release);
                hub
            }
            Err(other) => other,
        };
    }
    walk.found
}

impl Hub {
    fn new() -> Hub {
        Hub {
            magic: MAGIC,
            version: VERSION,
            lock: AtomicU32::new(0),
            handler: AtomicUsize::new(0),
            handler_ready: AtomicBool::new(false),
            readers: AtomicUsize::new(0),
            claims: [const { AtomicUsize::new(0) }; MAX_COPIES],
        }
    }
}

/// The outer walk's callback: runs the whole find-or-create once, under glibc's loader list lock.
extern "C" fn outer(_: *mut libc::dl_phdr_info, _: libc::size_t, data: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `data` is the `Walk` that `find_or_create` passed.
    let walk = unsafe { &mut *data.cast::<Walk>() };
    if !CELL.load(Ordering::Acquire).is_null() {
        walk.found = CELL.load(Ordering::Acquire);
        return 1;
    }
    // SAFETY: as above; the inner walk re-enters the recursive loader lock this thread holds.
    unsafe { libc::dl_iterate_phdr(Some(inner), data) };
    if walk.found.is_null() {
        walk.found = Box::into_raw(Box::new(Hub::new()));
        CREATED.store(true, Ordering::Release);
    }
    CELL.store(walk.found, Ordering::Release);
    1
}

/// Whether this copy created the hub (and so registers its `fork` handlers and pins its code).
static CREATED: AtomicBool = AtomicBool::new(false);

/// The inner walk's callback: looks for a non-null cell among one object's notes.
extern "C" fn inner(info: *mut libc::dl_phdr_info, _: libc::size_t, data: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `data` is the `Walk`; `info` describes a loaded object whose program headers are mapped.
    let (walk, info) = unsafe { (&mut *data.cast::<Walk>(), &*info) };
    for i in 0..info.dlpi_phnum as usize {
        // SAFETY: `dlpi_phdr` points at `dlpi_phnum` program headers.
        let ph = unsafe { &*info.dlpi_phdr.add(i) };
        if ph.p_type != libc::PT_NOTE {
            continue;
        }
        let start = info.dlpi_addr as usize + ph.p_vaddr as usize;
        let align = if ph.p_align >= 8 { 8 } else { 4 };
        if let Some(hub) = scan_notes(start, ph.p_memsz as usize, align) {
            walk.found = hub;
            return 1;
        }
    }
    0
}

/// The first non-null hub cell named by a callpatch note in `[start, start+len)`.
fn scan_notes(start: usize, len: usize, align: usize) -> Option<*mut Hub> {
    let up = |n: usize| (n + align - 1) & !(align - 1);
    let mut at = start;
    while at + 12 <= start + len {
        // SAFETY: inside a mapped, readable PT_NOTE segment of a loaded object (bounds checked above).
        let (namesz, descsz, ty) = unsafe {
            let h = at as *const u32;
            (h.read_unaligned() as usize, h.add(1).read_unaligned() as usize, h.add(2).read_unaligned())
        };
        let name = at + 12;
        let desc = name + up(namesz);
        let next = desc + up(descsz);
        if next > start + len || next <= at {
            return None;
        }
        if ty == NOTE_TYPE && namesz == NOTE_OWNER.len() && descsz == 4 {
            // SAFETY: `name` and `desc` lie inside the note, inside the segment.
            let (owner, off) = unsafe {
                (std::slice::from_raw_parts(name as *const u8, namesz), (desc as *const i32).read_unaligned())
            };
            if owner == NOTE_OWNER {
                let cell = (desc as isize + off as isize) as *const AtomicPtr<Hub>;
                // SAFETY: the note's offset leads to that copy's CELL, a static of its loaded object.
                let hub = unsafe { (*cell).load(Ordering::Acquire) };
                if !hub.is_null() {
                    return Some(hub);
                }
            }
        }
        at = next;
    }
    None
}

/// Keeps this copy's shared object loaded until the process ends (`RTLD_NOLOAD | RTLD_NODELETE`): for
/// the copy whose code other copies call into (the hub's creator, the SIGTRAP handler's owner). A no-op
/// for the executable.
pub(crate) fn pin_own_object() {
    let mut info: libc::Dl_info = unsafe_zeroed();
    // SAFETY: dladdr reads loader state for an address of our own text and fills `info`.
    let found = unsafe { libc::dladdr(pin_own_object as *const libc::c_void, &mut info) } != 0;
    if found && !info.dli_fname.is_null() {
        // SAFETY: `dli_fname` is the loader's NUL-terminated path of that object; NOLOAD opens nothing
        // new and the handle is deliberately never closed.
        unsafe { libc::dlopen(info.dli_fname, libc::RTLD_NOW | libc::RTLD_NOLOAD | libc::RTLD_NODELETE) };
    }
}

fn unsafe_zeroed() -> libc::Dl_info {
    // SAFETY: Dl_info is pointers and integers, for which all-zero is valid.
    unsafe { std::mem::zeroed() }
}

/// Called by [`get`] once the hub is found, outside the loader lock: the creator pins itself and
/// registers the lock's `fork` handlers (before any handler of its own copy: see [`crate::fork`]).
fn settle_creation() {
    if CREATED.swap(false, Ordering::AcqRel) {
        pin_own_object();
        // SAFETY: three `extern "C" fn()` without preconditions.
        let rc = unsafe { libc::pthread_atfork(Some(fork_prepare), Some(fork_parent), Some(fork_child)) };
        assert_eq!(rc, 0, "pthread_atfork failed: {}", std::io::Error::from_raw_os_error(rc));
    }
}

extern "C" fn fork_prepare() {
    if let Ok(hub) = get() {
        std::mem::forget(hub.lock());
    }
}

extern "C" fn fork_parent() {
    if let Ok(hub) = get() {
        hub.unlock();
    }
}

extern "C" fn fork_child() {
    if let Ok(hub) = get() {
        // The child is one thread: nobody else can hold or wait for the lock.
        hub.lock.store(0, Ordering::Release);
    }
}

/// The hub's lock, held: released on drop.
pub(crate) struct HubGuard {
    hub: &'static Hub,
}

impl Drop for HubGuard {
    fn drop(&mut self) {
        self.hub.unlock();
    }
}

impl Hub {
    /// Takes the process text lock (a futex: uncontended, one atomic exchange).
    pub(crate) fn lock(&'static self) -> HubGuard {
        if self.lock.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed).is_err() {
            while self.lock.swap(2, Ordering::Acquire) != 0 {
                futex(&self.lock, libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG, 2);
            }
        }
        HubGuard { hub: self }
    }

    fn unlock(&self) {
        if self.lock.swap(0, Ordering::Release) == 2 {
            futex(&self.lock, libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG, 1);
        }
    }

    /// Claims the right to install the process SIGTRAP handler for `handler`: `true` for the first
    /// copy to ask, which then installs it and calls [`Hub::handler_installed`].
    pub(crate) fn claim_handler(&self, handler: usize) -> bool {
        self.handler.compare_exchange(0, handler, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    /// The installing copy's handler is now the disposition (or its install failed: `handler` 0).
    pub(crate) fn handler_installed(&self, ok: bool) {
        if !ok {
            self.handler.store(0, Ordering::Release);
        }
        self.handler_ready.store(ok, Ordering::Release);
    }

    /// The process handler once installed: waits while another copy is installing it.
    pub(crate) fn handler(&self) -> Option<usize> {
        loop {
            match self.handler.load(Ordering::Acquire) {
                0 => return None,
                h if self.handler_ready.load(Ordering::Acquire) => return Some(h),
                // SAFETY: sched_yield has no preconditions.
                _ => unsafe { libc::sched_yield() },
            };
        }
    }

    /// The installing copy gives the handler back (it restored the previous disposition).
    pub(crate) fn handler_removed(&self) {
        self.handler_ready.store(false, Ordering::Release);
        self.handler.store(0, Ordering::Release);
    }

    /// Whether another copy has a claim registered (the handler must then stay).
    pub(crate) fn has_claims(&self) -> bool {
        self.claims.iter().any(|c| c.load(Ordering::Acquire) != 0)
    }

    /// Registers `claim` (idempotent). `Err` when every slot is taken.
    pub(crate) fn add_claim(&self, claim: Claim) -> Result<(), String> {
        let f = claim as usize;
        if self.claims.iter().any(|c| c.load(Ordering::Acquire) == f) {
            return Ok(());
        }
        for c in &self.claims {
            if c.compare_exchange(0, f, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                return Ok(());
            }
        }
        Err(format!("{MAX_COPIES} copies of the patcher already trap in this process"))
    }

    /// Removes `claim` and returns once no signal handler can still be running it.
    pub(crate) fn remove_claim(&self, claim: Claim) {
        let f = claim as usize;
        for c in &self.claims {
            let _ = c.compare_exchange(f, 0, Ordering::SeqCst, Ordering::SeqCst);
        }
        while self.readers.load(Ordering::SeqCst) != 0 {
            // SAFETY: sched_yield has no preconditions.
            unsafe { libc::sched_yield() };
        }
    }

    /// Offers an `int3` at `site` to every other copy (signal handler context: atomics only).
    pub(crate) fn offer(&self, site: usize, gregs: *mut libc::greg_t) -> bool {
        self.readers.fetch_add(1, Ordering::SeqCst);
        let mut claimed = false;
        for c in &self.claims {
            let f = c.load(Ordering::SeqCst);
            if f != 0 {
                // SAFETY: a non-zero slot holds a `Claim` of a loaded copy: a copy removes its slot, and
                // waits for `readers` to drain, before its code is unmapped.
                let claim: Claim = unsafe { std::mem::transmute::<usize, Claim>(f) };
                if claim(site, gregs) {
                    claimed = true;
                    break;
                }
            }
        }
        self.readers.fetch_sub(1, Ordering::SeqCst);
        claimed
    }

    /// Copies that registered a claim (for tests and status).
    pub fn claim_count(&self) -> usize {
        self.claims.iter().filter(|c| c.load(Ordering::Acquire) != 0).count()
    }
}

fn futex(word: &AtomicU32, op: libc::c_int, val: u32) {
    // SAFETY: a futex wait/wake on a valid, aligned u32 that lives for the whole process.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), op, val, std::ptr::null::<libc::timespec>()) };
}

/// Offers an `int3` that this copy does not own to the other copies (signal handler context).
pub(crate) fn offer_to_others(site: usize, gregs: *mut libc::greg_t) -> bool {
    match CELL.load(Ordering::Acquire) {
        p if p.is_null() => false,
        // SAFETY: a non-null CELL holds a hub, which is never freed.
        p => unsafe { &*p }.offer(site, gregs),
    }
}

/// Withdraws `claim` from the hub when this copy's shared object is unloaded (`dlclose` runs the
/// `__cxa_atexit` hooks registered with its `__dso_handle` before unmapping it). Nothing for the
/// executable, whose code stays until the process ends.
pub(crate) fn leave_on_unload(claim: Claim) {
    if in_executable() {
        return;
    }
    LEAVING.store(claim as usize, Ordering::Release);
    unsafe extern "C" {
        static __dso_handle: u8;
        fn __cxa_atexit(f: extern "C" fn(*mut libc::c_void), arg: *mut libc::c_void, dso: *const u8) -> libc::c_int;
    }
    // SAFETY: `__dso_handle` is this object's handle (defined by its crtbegin); `leave` takes no
    // argument and lives in this object, which is exactly what the registration is tied to.
    unsafe { __cxa_atexit(leave, std::ptr::null_mut(), &raw const __dso_handle) };
}

static LEAVING: AtomicUsize = AtomicUsize::new(0);

extern "C" fn leave(_: *mut libc::c_void) {
    let f = LEAVING.swap(0, Ordering::AcqRel);
    if f != 0
        && let Ok(hub) = get()
    {
        // SAFETY: LEAVING was stored from a `Claim`.
        hub.remove_claim(unsafe { std::mem::transmute::<usize, Claim>(f) });
    }
}

/// Whether this copy is linked into the main executable (rather than a shared object).
fn in_executable() -> bool {
    let mut own: libc::Dl_info = unsafe_zeroed();
    let mut exe: libc::Dl_info = unsafe_zeroed();
    // SAFETY: getauxval has no preconditions; AT_PHDR is the executable's program headers, mapped.
    let phdr = unsafe { libc::getauxval(libc::AT_PHDR) } as *const libc::c_void;
    // SAFETY: dladdr only reads loader state for the two addresses and fills the structs.
    unsafe {
        libc::dladdr(in_executable as *const libc::c_void, &mut own) != 0
            && libc::dladdr(phdr, &mut exe) != 0
            && own.dli_fbase == exe.dli_fbase
    }
}

/// How many copies of the patcher registered a claim on traps with this process's hub (0 when none
/// has a hub yet): every copy but the one whose handler is installed, once it trapped.
pub fn other_copies() -> usize {
    match CELL.load(Ordering::Acquire) {
        p if p.is_null() => 0,
        // SAFETY: a non-null CELL holds a hub, which is never freed.
        p => unsafe { &*p }.claim_count(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_copy_finds_its_own_note_and_hub() {
        let hub = get().unwrap() as *const Hub;
        // A second lookup walks the notes again and must land on the same hub.
        let mut walk = Walk { found: std::ptr::null_mut() };
        // SAFETY: as in find_or_create.
        unsafe { libc::dl_iterate_phdr(Some(inner), (&raw mut walk).cast()) };
        assert_eq!(walk.found as *const Hub, hub);
    }

    #[test]
    fn the_lock_excludes() {
        let hub = get().unwrap();
        let n = std::sync::Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let n = n.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        let _g = hub.lock();
                        let v = n.load(Ordering::Relaxed);
                        std::hint::spin_loop();
                        n.store(v + 1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(n.load(Ordering::Relaxed), 40_000);
    }
}
