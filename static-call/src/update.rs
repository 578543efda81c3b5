//! Init and update, serialised by one process-wide lock; the choice between the two backends.
//!
//! - [`Backend::Inline`] (the kernel's `HAVE_STATIC_CALL_INLINE`): init rewrites every site from
//!   `call trampoline` to `call target` and every trampoline's jmp to the target, in one bp batch; an
//!   update rewrites one key's trampoline and all its sites in one bp batch (three syncs). Needs the
//!   SYNC_CORE membarrier and a writable (via `mprotect`) text.
//! - [`Backend::TrapFree`]: inline, but never an `int3`. Only sites whose 5 bytes lie inside one
//!   aligned 8-byte word are made inline (about half of them), and every change is one 8-byte store of
//!   the word (the patcher's aligned-8 policy) followed by one sync; every other site stays on its
//!   trampoline, whose 16-byte-aligned `jmp` is updated the same way. Chosen by the program
//!   ([`init_with`], `CALLPATCH_STATIC_CALL=trap-free`) or automatically at init when a thread has a
//!   tracer (a debugger would receive the patcher's `int3`) or the SIGTRAP handler cannot be installed.
//!   It must be chosen at init: a site made inline with traps cannot be moved back without one. What it
//!   rests on: the SDM guarantees that an aligned 8-byte store is atomic *as data*; what another core's
//!   instruction fetch sees without a serializing step is cross-modifying code (SDM vol. 3 §8.1.3),
//!   which Intel documents only with the serialization the int3 protocol provides. Linux never adopted
//!   this policy. Here it is measured — `callpatch stress` runs the aligned-8 policy under callers with
//!   every call accounted for — not guaranteed.
//! - [`Backend::Generic`] (the kernel's generic static calls): nothing is ever patched; every call goes
//!   site → trampoline → `jmp *key.current`, and an update is one atomic store of `key.current`. Chosen
//!   when inline patching is unavailable (reported once on stderr) or requested.
//!
//! The backend is chosen once per process, at [`init`] or at the first update, whichever comes first;
//! `CALLPATCH_STATIC_CALL=generic` (or [`init_with`]) requests the generic one. In both, the key's
//! `current` always names the target, and a thread calling during an update reaches the old or the new
//! target: the generic path loads one aligned pointer, and the bp protocol's trap handler executes the
//! new instruction for any thread that meets an `int3` mid-patch.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::key::Key;
use super::sites::CallSite;

/// How this process carries out static calls; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// Sites call their target directly and are patched live.
    Inline,
    /// Sites inside one aligned 8-byte word call their target directly and are patched with one
    /// 8-byte store, never an `int3`; the others call the trampoline, patched the same way.
    TrapFree,
    /// Sites call the trampoline, which jumps through the key's pointer.
    Generic,
}

impl Backend {
    /// Name used in reports and in `CALLPATCH_STATIC_CALL`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Inline => "inline",
            Backend::TrapFree => "trap-free",
            Backend::Generic => "generic",
        }
    }
}

/// Why an update failed. When the patcher refused before writing, every key keeps its previous target;
/// after a failed write, each site calls the old or the new target.
#[derive(Debug)]
pub enum UpdateError {
    /// The patcher refused or failed the batch.
    Patch {
        /// The names of the keys the batch updated (one for [`StaticCall::update`](crate::StaticCall::update)).
        keys: Vec<&'static str>,
        /// Sites of those keys.
        sites: usize,
        /// The patcher's error.
        source: callpatch_patcher::PatchError,
    },
    /// One key was given twice in one [`update_all`] (which target should win?); nothing was changed.
    Repeated {
        /// The key's name.
        key: &'static str,
    },
    /// The patcher refused or failed a static branch's batch ([`StaticBranch::set`](crate::StaticBranch::set)).
    Branch {
        /// The static branch key's name.
        key: &'static str,
        /// Its patched sites.
        sites: usize,
        /// The patcher's error.
        source: callpatch_patcher::PatchError,
    },
}

impl UpdateError {
    pub(crate) fn patch(keys: Vec<&'static str>, sites: usize, source: callpatch_patcher::PatchError) -> UpdateError {
        UpdateError::Patch { keys, sites, source }
    }
}

impl std::fmt::Display for UpdateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpdateError::Patch { keys, sites, source } => {
                let (what, names) = match keys.as_slice() {
                    [one] => ("static call", one.to_string()),
                    many => ("static calls", many.join(", ")),
                };
                let trampolines = if keys.len() == 1 { "its trampoline" } else { "their trampolines" };
                write!(f, "{what} {names}: patching {trampolines} and {sites} sites failed: {source}")
            }
            UpdateError::Repeated { key } => {
                write!(f, "static call {key} is given twice in one update; nothing was changed")
            }
            UpdateError::Branch { key, sites, source } => {
                write!(f, "static branch {key}: patching its {sites} sites failed: {source}")
            }
        }
    }
}

impl std::error::Error for UpdateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            UpdateError::Patch { source, .. } | UpdateError::Branch { source, .. } => Some(source),
            UpdateError::Repeated { .. } => None,
        }
    }
}

/// One key's new target, for [`update_all`]: made by [`StaticCall::to`](crate::StaticCall::to) or
/// [`StaticCall::to_none`](crate::StaticCall::to_none), which check the target's signature at compile
/// time (what `static_call_update! { A => f, B => g }` expands to).
#[derive(Clone, Copy, Debug)]
pub struct Change {
    pub(crate) key: &'static Key,
    pub(crate) target: Option<usize>,
    /// What `query` returns after the change (`0`: disabled).
    pub(crate) query: usize,
}

/// Points several keys at new targets in one patch batch: with the inline backend, every trampoline
/// and every site of every key changes in one bp batch, three syncs in all (the kernel updates one key
/// at a time, three syncs each). Calls made meanwhile reach each key's old or new target. A key given
/// twice is refused before anything changes. Initialises static calls first if needed.
pub fn update_all(changes: &[Change]) -> Result<(), UpdateError> {
    for (i, c) in changes.iter().enumerate() {
        if changes[..i].iter().any(|d| std::ptr::eq(d.key, c.key)) {
            return Err(UpdateError::Repeated { key: c.key.name() });
        }
    }
    set_all(changes)
}

/// Which path a key's updates took (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UpdatePaths {
    /// Patched with the int3 (bp) protocol.
    pub bp: u64,
    /// Patched with one store per site (trap-free backend).
    pub trap_free: u64,
    /// One store of the key's pointer (generic backend).
    pub generic: u64,
    /// Nothing to patch: the key already had that target.
    pub unchanged: u64,
    /// Refused or failed (the error says why; the key keeps its previous target).
    pub failed: u64,
}

/// What init found and decided.
#[derive(Clone, Debug, Default)]
pub struct Status {
    /// The backend, once chosen.
    pub backend: Option<Backend>,
    /// Why the generic backend was chosen, when it was.
    pub generic_reason: Option<String>,
    /// Why the trap-free backend was chosen, when it was.
    pub trap_free_reason: Option<String>,
    /// Per key name: which path each of its updates took.
    pub updates: BTreeMap<&'static str, UpdatePaths>,
    /// Sites patched with their key (inline backend).
    pub patched_sites: usize,
    /// Sites left calling their trampoline, and why (their calls stay correct, one jump longer).
    pub skipped: Vec<(CallSite, String)>,
}

pub(crate) struct State {
    pub(crate) status: Status,
    /// Patchable sites of each key, by key address (inline backend).
    pub(crate) by_key: BTreeMap<usize, Vec<CallSite>>,
}

static STATE: Mutex<State> = Mutex::new(State {
    status: Status {
        backend: None,
        generic_reason: None,
        trap_free_reason: None,
        updates: BTreeMap::new(),
        patched_sites: 0,
        skipped: Vec::new(),
    },
    by_key: BTreeMap::new(),
});

/// Takes the static call lock (a panic while holding it leaves no half-done patch: the patcher
/// validates before writing, so a poisoned lock is taken over).
pub(crate) fn lock() -> MutexGuard<'static, State> {
    hold_across_fork();
    STATE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `fork()` while another thread updates: the prepare handler takes this lock (after the patcher's
/// handlers are registered, so that it runs first: the lock order is this lock, then the patcher's),
/// and the child starts with every lock free and no update in flight.
fn hold_across_fork() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        callpatch_patcher::hold_locks_across_fork();
        extern "C" fn prepare() {
            callpatch_patcher::fork::hold(Box::new(STATE.lock().unwrap_or_else(PoisonError::into_inner)));
        }
        extern "C" fn release() {
            callpatch_patcher::fork::release_held();
        }
        // SAFETY: three `extern "C" fn()` with no preconditions.
        let rc = unsafe { libc::pthread_atfork(Some(prepare), Some(release), Some(release)) };
        assert_eq!(rc, 0, "pthread_atfork failed: {}", std::io::Error::from_raw_os_error(rc));
    });
}

/// The backend `CALLPATCH_STATIC_CALL` asks for (inline unless it says `generic` or `trap-free`).
pub(crate) fn requested() -> Backend {
    match std::env::var("CALLPATCH_STATIC_CALL").as_deref() {
        Ok("generic") => Backend::Generic,
        Ok("trap-free") => Backend::TrapFree,
        _ => Backend::Inline,
    }
}

/// Why an `int3` cannot be relied on in this process now (then init chooses the trap-free backend).
fn traps_unusable() -> Option<String> {
    if let Err(e) = callpatch_patcher::install_trap_handler() {
        return Some(format!("the SIGTRAP handler cannot be installed ({e})"));
    }
    callpatch_patcher::guard::traced_thread().map(|f| format!("{f}"))
}

/// Initialises static calls if not done yet (inline unless `CALLPATCH_STATIC_CALL` says `generic` or
/// `trap-free`; trap-free when a thread is traced or the SIGTRAP handler cannot be installed), and returns
/// the backend in use. The kernel does this at boot; here it happens at the first call of `init` or
/// update. Before it, every call takes the trampoline's generic path, which is already correct.
pub fn init() -> Backend {
    init_with(requested())
}

/// Like [`init`], asking for `want`; a process that is already initialised keeps its backend.
pub fn init_with(want: Backend) -> Backend {
    ensure_init(&mut lock(), want)
}

/// The backend in use, or `None` before init.
pub fn backend() -> Option<Backend> {
    lock().status.backend
}

/// What init found and decided.
pub fn status() -> Status {
    lock().status.clone()
}

pub(crate) fn ensure_init(state: &mut State, want: Backend) -> Backend {
    if let Some(b) = state.status.backend {
        return b;
    }
    let backend = match want {
        Backend::Generic => {
            state.status.generic_reason = Some("requested".into());
            Backend::Generic
        }
        Backend::Inline | Backend::TrapFree => {
            let inline = match want {
                Backend::TrapFree => {
                    state.status.trap_free_reason = Some("requested".into());
                    Backend::TrapFree
                }
                _ => match traps_unusable() {
                    Some(why) => {
                        eprintln!(
                            "callpatch: static_call: {why}; using trap-free static calls (sites inside one aligned \
                             8-byte word patched with one store, the others through their trampoline)"
                        );
                        state.status.trap_free_reason = Some(why);
                        Backend::TrapFree
                    }
                    None => Backend::Inline,
                },
            };
            init_inline(state, inline)
        }
    };
    state.status.backend = Some(backend);
    // Static branches: a second batch under the same lock, on the backend just chosen.
    super::branch::init(backend);
    backend
}

/// Inline init (with or without traps), else the generic backend with the reason on stderr.
fn init_inline(state: &mut State, inline: Backend) -> Backend {
    match super::inline::init(state, inline == Backend::TrapFree) {
        Ok(()) => inline,
        Err(reason) => {
            eprintln!(
                "callpatch: static_call: inline patching unavailable ({reason}); using generic static calls \
                     (an indirect jump through each key)"
            );
            state.status.generic_reason = Some(reason);
            Backend::Generic
        }
    }
}

/// Points each key at its target in one batch, initialising first if needed; keys are distinct.
fn set_all(changes: &[Change]) -> Result<(), UpdateError> {
    let targets: Vec<(&Key, Option<usize>)> = changes.iter().map(|c| (c.key, c.target)).collect();
    let mut state = lock();
    let backend = ensure_init(&mut state, requested());
    let outcome = match backend {
        Backend::Generic => {
            for &(key, target) in &targets {
                key.set_current(target);
            }
            Ok(vec![true; targets.len()])
        }
        Backend::Inline | Backend::TrapFree => super::inline::update(&state, &targets, backend == Backend::TrapFree),
    };
    for c in changes {
        // `query` follows `current`: the new target unless the batch was refused before writing.
        if c.key.target() == c.target {
            c.key.set_query(c.query);
        }
    }
    for (i, c) in changes.iter().enumerate() {
        let paths = state.status.updates.entry(c.key.name()).or_default();
        match (&outcome, backend) {
            (Err(_), _) => paths.failed += 1,
            (Ok(patched), _) if !patched[i] => paths.unchanged += 1,
            (Ok(_), Backend::Inline) => paths.bp += 1,
            (Ok(_), Backend::TrapFree) => paths.trap_free += 1,
            (Ok(_), Backend::Generic) => paths.generic += 1,
        }
    }
    outcome.map(|_| ())
}
