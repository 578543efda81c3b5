//! Static branches (the kernel's jump labels: `DEFINE_STATIC_KEY_FALSE/TRUE`, `static_branch_likely`,
//! `static_branch_unlikely`, `static_branch_enable/disable`), patched by the same patcher, under the same
//! lock and with the same backend as static calls.
//!
//! A site is an `asm!` goto block ([`static_branch_unlikely!`](crate::static_branch_unlikely)) holding one
//! 5-byte instruction and an entry in the [site table](crate::branch_sites). Its forms:
//! | moment                              | the site          | a thread there                        |
//! |-------------------------------------|-------------------|---------------------------------------|
//! | before init, generic backend        | `jmp stub`        | stub: tests the key's state byte, jumps to the label or back after the site |
//! | patched, branch goes straight on    | 5-byte nop        | falls through                         |
//! | patched, branch goes to the label   | `jmp label`       | jumps                                 |
//!
//! The stub is emitted by the same `asm!` into `.text.static_branch_stub`, so every site is correct from
//! the first instruction of `main`, whatever the backend. Init (the same [`init`](crate::init) as static
//! calls, under the same lock, in a second batch right after theirs) patches every site to its key's
//! form; [`StaticBranch::enable`] and [`StaticBranch::disable`] store the key's state byte first (so the
//! stubs agree at once), then patch every site of the key in one batch: bp, three syncs. A thread
//! evaluating meanwhile sees the old or the new state; once the call returns, every thread sees the
//! new one.
//!
//! With the trap-free backend a site is patched only when its 5 bytes lie inside one aligned 8-byte
//! word (one 8-byte store each); the others keep their stub. The site's `asm!` begins with
//! `.p2align 3,,4`: a site that would straddle a word is moved to the next one with at most 4 bytes of
//! nop (a site at word offset 0..=3 fits already and gets none), so in practice every site qualifies.
//! With the generic backend nothing is patched: every evaluation takes the stub (a load, a test and two
//! jumps).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::branch_sites::{self, BranchSite};
use super::inline::{behaves_as_before, not_a_site, protocol, text_writer};
use super::update::{self, Backend, UpdateError, UpdatePaths};
use callpatch_patcher::{decode, fits_one_word, patch_batch, Protocol, SitePatch};

/// A static branch key: made by [`static_branch!`](crate::static_branch), read by
/// [`static_branch_likely!`](crate::static_branch_likely) and
/// [`static_branch_unlikely!`](crate::static_branch_unlikely) sites.
#[repr(C)]
#[derive(Debug)]
pub struct StaticBranch {
    /// The state byte the generic stubs test (offset 0; 1: enabled). Changed under the static call lock.
    enabled: AtomicBool,
    name: &'static str,
}

impl StaticBranch {
    #[doc(hidden)]
    pub const fn __new(name: &'static str, enabled: bool) -> StaticBranch {
        StaticBranch { enabled: AtomicBool::new(enabled), name }
    }

    /// The key's name, `module::path::NAME`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Address of the key (what site entries record).
    pub fn addr(&self) -> usize {
        self as *const StaticBranch as usize
    }

    /// Whether the key is enabled (the state its sites evaluate to once an update has returned).
    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    /// Enables the key: every site of it evaluates to `true` once this returns (the kernel's
    /// `static_branch_enable`). Initialises static calls and branches first if needed.
    pub fn enable(&self) -> Result<(), UpdateError> {
        self.set(true)
    }

    /// Disables the key: every site of it evaluates to `false` once this returns (the kernel's
    /// `static_branch_disable`).
    pub fn disable(&self) -> Result<(), UpdateError> {
        self.set(false)
    }

    /// Sets the key's state: stores the state byte (the generic stubs see it at once), then patches
    /// every patched site of the key in one batch (bp: three syncs; trap-free: one store per site and one
    /// sync). Evaluations meanwhile return the old or the new state. On `Err` the key keeps its previous
    /// state when the patcher refused before writing (or rolled back).
    pub fn set(&self, enabled: bool) -> Result<(), UpdateError> {
        let mut calls = update::lock();
        update::ensure_init(&mut calls, update::requested());
        let mut state = lock();
        let outcome = self.patch(&state, enabled);
        let backend = state.status.backend;
        let paths = state.status.updates.entry(self.name).or_default();
        match (&outcome, backend) {
            (Err(_), _) => paths.failed += 1,
            (Ok(_), Some(Backend::Generic)) => paths.generic += 1,
            (Ok(false), _) => paths.unchanged += 1,
            (Ok(true), Some(Backend::TrapFree)) => paths.trap_free += 1,
            (Ok(true), _) => paths.bp += 1,
        }
        outcome.map(drop)
    }

    /// [`set`](Self::set)'s work, with both locks held; `Ok` says whether any site was patched.
    fn patch(&self, state: &State, enabled: bool) -> Result<bool, UpdateError> {
        let sites = state.by_key.get(&self.addr()).map(Vec::as_slice).unwrap_or_default();
        let failed = |source| UpdateError::Branch { key: self.name, sites: sites.len(), source };
        // Planned (and every site decoded) before the state byte changes, so a refusal here changes nothing.
        let mut batch = Vec::with_capacity(sites.len());
        for s in sites {
            let old = decode(&s.bytes(), s.addr()).ok_or_else(|| failed(not_a_site(s.addr(), "static branch")))?;
            if old != s.insn_for(enabled) {
                batch.push(SitePatch { addr: s.addr(), old, new: s.insn_for(enabled) });
            }
        }
        // The stubs (unpatched sites) follow the state byte from now on; patched sites follow the batch.
        let previous = self.enabled.swap(enabled, Ordering::AcqRel);
        if batch.is_empty() {
            return Ok(false);
        }
        // SAFETY: every address is a branch site (the 5-byte instruction its `asm!` emitted, found in the
        // table and decoded just now); its new form is the nop (fall through to the code after the asm)
        // or a jump to the asm's own label, both places the compiler made the asm's successors.
        match unsafe { patch_batch(&text_writer(), state.protocol, &batch) } {
            Ok(_) => Ok(true),
            Err(e) => {
                if behaves_as_before(&e) {
                    self.enabled.store(previous, Ordering::Release);
                }
                Err(failed(e))
            }
        }
    }

    /// This key's sites in the program (all of them, patched or not).
    pub fn sites(&self) -> Vec<BranchSite> {
        branch_sites::all().into_iter().filter(|s| s.key() == self.addr()).collect()
    }
}

/// What branch init found and decided.
#[derive(Clone, Debug, Default)]
pub struct BranchStatus {
    /// How branch sites are carried out: the static call backend, or generic when patching the branch
    /// sites failed at init. `None` before init.
    pub backend: Option<Backend>,
    /// Why branch sites stay on their stubs (generic), when init's batch failed.
    pub generic_reason: Option<String>,
    /// Sites patched at init.
    pub patched_sites: usize,
    /// Sites left on their generic stub, and why (they stay correct, two jumps and a load longer).
    pub skipped: Vec<(BranchSite, String)>,
    /// Per key name: which path each of its updates took.
    pub updates: BTreeMap<&'static str, UpdatePaths>,
}

struct State {
    status: BranchStatus,
    protocol: Protocol,
    /// Patched sites of each key, by key address.
    by_key: BTreeMap<usize, Vec<BranchSite>>,
}

/// Branch state. Only ever locked while holding the static call lock ([`update::lock`]), so it adds no
/// lock order of its own (and is never held across `fork`).
static STATE: Mutex<State> = Mutex::new(State {
    status: BranchStatus {
        backend: None,
        generic_reason: None,
        patched_sites: 0,
        skipped: Vec::new(),
        updates: BTreeMap::new(),
    },
    protocol: Protocol::Bp,
    by_key: BTreeMap::new(),
});

fn lock() -> MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What branch init found and decided.
pub fn branch_status() -> BranchStatus {
    let _calls = update::lock();
    lock().status.clone()
}

/// Patches every branch site to its key's current form, in one batch (called by static call init, with
/// the static call lock held, once the backend is chosen). When the batch is refused every site stays on
/// its stub (generic branches), which is correct; panics only if the patcher failed after writing.
pub(crate) fn init(backend: Backend) {
    let mut state = lock();
    if state.status.backend.is_some() {
        return;
    }
    let trap_free = backend == Backend::TrapFree;
    state.protocol = protocol(trap_free);
    if backend == Backend::Generic {
        state.status.backend = Some(Backend::Generic);
        state.status.generic_reason = Some("static calls use the generic backend".into());
        return;
    }
    let mut by_key: BTreeMap<usize, Vec<BranchSite>> = BTreeMap::new();
    let mut skipped = Vec::new();
    let mut batch = Vec::new();
    for site in branch_sites::all() {
        // SAFETY: table entries come only from the branch site macros, whose key operand is type-checked
        // to be a `StaticBranch` static.
        let key = unsafe { &*(site.key() as *const StaticBranch) };
        match decode(&site.bytes(), site.addr()) {
            Some(insn) if insn == site.initial_insn() && trap_free && !fits_one_word(site.addr(), 5) => {
                skipped.push((site, "trap-free: its 5 bytes straddle an aligned 8-byte word".into()))
            }
            Some(insn) if insn == site.initial_insn() => {
                batch.push(SitePatch { addr: site.addr(), old: insn, new: site.insn_for(key.is_enabled()) });
                by_key.entry(site.key()).or_default().push(site);
            }
            other => skipped.push((site, format!("holds {other:?}, not a jump to its stub"))),
        }
    }
    let patched = if batch.is_empty() {
        // A program without branch sites runs no batch at all.
        Ok(())
    } else {
        // SAFETY: as in `StaticBranch::set`: each address is a branch site's own instruction, found
        // through the table and holding the jump to its stub; the nop falls through to the asm's
        // fallthrough and the jump goes to the asm's label.
        unsafe { patch_batch(&text_writer(), state.protocol, &batch) }.map(drop)
    };
    match patched {
        Ok(()) => {
            state.status.backend = Some(backend);
            state.status.patched_sites = batch.len();
            state.status.skipped = skipped;
            state.by_key = by_key;
        }
        Err(e) if behaves_as_before(&e) => {
            eprintln!(
                "callpatch: static_branch: patching the branch sites failed ({e}); every branch site tests its \
                 key's state byte"
            );
            state.status.backend = Some(Backend::Generic);
            state.status.generic_reason = Some(e.to_string());
            state.status.skipped = skipped;
        }
        Err(e) => panic!("static_branch: init failed after writing to the text, which is now inconsistent: {e}"),
    }
}
