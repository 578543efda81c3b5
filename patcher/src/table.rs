//! The poke table: every address that is, or ever was, a patched site, and what a trap there must do.
//!
//! Kernel model: `text_poke_bp_batch` publishes a sorted vector of `{addr, new insn}` that `do_int3`
//! binary-searches, and holds a refcount so the vector outlives every handler using it. In user space
//! one more hazard exists: a thread can execute the `int3` during the batch while its SIGTRAP handler
//! only runs after the batch has restored byte 0 (a *late trap*; the signal is delivered on the next
//! return to user space, which a preemption can delay). No refcount taken inside the handler can cover
//! the gap between the trap and the handler's first instruction, so:
//! - **slots are never freed**: each site address owns one [`Slot`] forever (re-used when the address is
//!   patched again), so a late trap always finds its site and a valid action (the newest one);
//! - **snapshots are RCU-reclaimed**: the sorted array of slot pointers the handler searches is
//!   replaced when new addresses arrive; a handler counts itself in [`READERS`] only around the search,
//!   and old arrays are freed once the patcher sees no reader after the swap.
//!
//! Everything the handler touches is atomics and memory allocated before it was published.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::insn::{encode, EncodeError, Insn, InsnBytes};

/// What the trap handler does for a site: emulate an instruction, or (cs-prefix) resume at site+1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Emulate this instruction as if it had executed at the site.
    Emulate(Insn),
    /// Wait until the rel32 behind the prefix is complete, then continue at `site + 1`.
    ResumeAfterPrefix,
    /// The slot's address is no longer a site (its code was unmapped); the trap is not ours.
    Retired,
}

/// Where a site is in its batch, as the handler sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// No batch in flight: byte 0 is (or is about to be) a real instruction again.
    Idle = 0,
    /// `int3` may be on byte 0 and the rest of the site is being rewritten.
    Int3 = 1,
    /// The rest of the site is written and synced; only byte 0 is still `int3`.
    BodyReady = 2,
    /// The `int3` stays for good: every execution is emulated (the `trap` call flavor).
    Permanent = 3,
}

const TARGET_MASK: u64 = (1 << 48) - 1;
const KIND_SHIFT: u32 = 56;

fn pack(action: Action) -> u64 {
    let (kind, target) = match action {
        Action::Retired => (0, 0),
        Action::Emulate(Insn::Call(t)) => (1, t),
        Action::Emulate(Insn::Jmp(t)) => (2, t),
        Action::Emulate(Insn::CsCall(t)) => (3, t),
        Action::Emulate(Insn::Nop5) => (4, 0),
        Action::Emulate(Insn::Ret) => (5, 0),
        Action::ResumeAfterPrefix => (6, 0),
        Action::Emulate(Insn::Ret0) => (7, 0),
    };
    debug_assert!(target as u64 <= TARGET_MASK, "user-space addresses fit in 48 bits");
    (kind << KIND_SHIFT) | (target as u64 & TARGET_MASK)
}

fn unpack(word: u64) -> Action {
    let t = (word & TARGET_MASK) as usize;
    match word >> KIND_SHIFT {
        1 => Action::Emulate(Insn::Call(t)),
        2 => Action::Emulate(Insn::Jmp(t)),
        3 => Action::Emulate(Insn::CsCall(t)),
        4 => Action::Emulate(Insn::Nop5),
        5 => Action::Emulate(Insn::Ret),
        6 => Action::ResumeAfterPrefix,
        7 => Action::Emulate(Insn::Ret0),
        _ => Action::Retired,
    }
}

/// One site's entry. `action` is one word so the handler never reads half of an update; `state` is
/// `generation << 2 | phase`, the generation bumped on every change so the handler can tell "idle and
/// unchanged while I looked" from "a new batch started meanwhile" (a seqlock read).
#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) addr: usize,
    action: AtomicU64,
    state: AtomicU64,
}

impl Slot {
    /// Sets the action and phase (patcher side, under the text mutex). The action is stored first, so
    /// a handler that sees the new phase also sees the new action.
    pub(crate) fn set(&self, action: Action, phase: Phase) {
        self.action.store(pack(action), Ordering::Release);
        self.set_phase(phase);
    }

    /// Moves to `phase` keeping the action.
    pub(crate) fn set_phase(&self, phase: Phase) {
        let generation = (self.state.load(Ordering::Relaxed) >> 2) + 1;
        self.state.store(generation << 2 | phase as u64, Ordering::Release);
    }

    /// The current action, phase and generation (handler side).
    pub(crate) fn load(&self) -> (Action, Phase, u64) {
        let state = self.state.load(Ordering::Acquire);
        let action = unpack(self.action.load(Ordering::Acquire));
        let phase = match state & 3 {
            0 => Phase::Idle,
            1 => Phase::Int3,
            2 => Phase::BodyReady,
            _ => Phase::Permanent,
        };
        (action, phase, state >> 2)
    }

    /// The generation now (to re-check after a read).
    pub(crate) fn generation(&self) -> u64 {
        self.state.load(Ordering::Acquire) >> 2
    }
}

/// The sorted slot pointers the handler binary-searches.
struct Snapshot {
    slots: Box<[&'static Slot]>,
}

static SNAPSHOT: AtomicPtr<Snapshot> = AtomicPtr::new(ptr::null_mut());
/// Handlers currently searching a snapshot (the RCU read side).
static READERS: AtomicUsize = AtomicUsize::new(0);

/// Handler side: the slot for `addr`, if `addr` was ever a site. Async-signal-safe: two atomic
/// counter updates, one atomic load and a binary search over memory the patcher will not free while
/// we are counted in.
pub(crate) fn lookup(addr: usize) -> Option<&'static Slot> {
    READERS.fetch_add(1, Ordering::SeqCst);
    let snap = SNAPSHOT.load(Ordering::SeqCst);
    // SAFETY: a non-null snapshot stays allocated while READERS > 0 (see `Registry::publish`), and we
    // incremented READERS before loading the pointer.
    let found = unsafe { snap.as_ref() }
        .and_then(|s| s.slots.binary_search_by_key(&addr, |slot| slot.addr).ok().map(|i| s.slots[i]));
    READERS.fetch_sub(1, Ordering::SeqCst);
    found
}

/// Patcher side of the table: address → entry, and retired snapshots waiting for a moment with no
/// reader. There is one, process-wide, like the handler's snapshot.
#[derive(Debug)]
pub(crate) struct Registry {
    entries: Vec<Entry>,
    index: HashMap<usize, usize, BuildHasherDefault<AddrHasher>>,
    /// The entry found last: a batch usually visits sites in the order they were first registered, so
    /// the next one is usually the one after it (a sequential read, where the hash index costs a cache
    /// miss per site in a registry of tens of thousands of entries).
    cursor: usize,
    graveyard: Vec<*mut Snapshot>,
    /// Entries were added since the last publication.
    dirty: bool,
}

/// What the patcher keeps per site address.
#[derive(Debug)]
pub(crate) struct Entry {
    /// The site address (the slot's, kept here to compare without reading the slot).
    addr: usize,
    /// The handler's slot (never freed).
    pub(crate) slot: &'static Slot,
    /// The two most recent distinct encodings at this address. Encoding is a pure function of
    /// (instruction, address), and sites flip between few instructions, so a batch that revisits a
    /// site usually needs no encoder at all.
    recent: [Option<(Insn, InsnBytes)>; 2],
}

impl Entry {
    /// `encode(insn, slot.addr)`, memoised.
    pub(crate) fn encode(&mut self, insn: Insn) -> Result<InsnBytes, EncodeError> {
        if let Some((_, b)) = self.recent.iter().flatten().find(|(i, _)| *i == insn) {
            return Ok(*b);
        }
        let b = encode(insn, self.slot.addr)?;
        self.recent = [Some((insn, b)), self.recent[0]];
        Ok(b)
    }
}

/// Multiply-shift hashing for code addresses (the std SipHash costs more than the lookup is worth
/// here, and addresses are not attacker-chosen).
#[derive(Default)]
pub(crate) struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
    }
}

// SAFETY: the raw snapshot pointers are owned by the registry (Box::into_raw) and only freed by it.
unsafe impl Send for Registry {}

static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);

/// The process-wide registry, locked (taken inside the text mutex when both are needed).
pub(crate) fn registry() -> RegistryGuard {
    let mut g = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    g.get_or_insert_with(|| Registry {
        entries: Vec::new(),
        index: HashMap::default(),
        cursor: 0,
        graveyard: Vec::new(),
        dirty: false,
    });
    RegistryGuard(g)
}

/// A locked [`Registry`].
pub(crate) struct RegistryGuard(MutexGuard<'static, Option<Registry>>);

impl std::ops::Deref for RegistryGuard {
    type Target = Registry;
    fn deref(&self) -> &Registry {
        self.0.as_ref().expect("initialised by registry()")
    }
}

impl std::ops::DerefMut for RegistryGuard {
    fn deref_mut(&mut self) -> &mut Registry {
        self.0.as_mut().expect("initialised by registry()")
    }
}

impl Registry {
    /// The entry of `addr`, created (with a new, unpublished slot) when new. Call
    /// [`Registry::publish_new`] before any `int3` goes to a new address.
    pub(crate) fn entry(&mut self, addr: usize) -> &mut Entry {
        let at = |i: usize| self.entries.get(i).is_some_and(|e| e.addr == addr);
        let (next, last) = (self.cursor + 1, self.cursor);
        let i = if at(next) {
            next
        } else if at(last) {
            last
        } else if let Some(&i) = self.index.get(&addr) {
            i
        } else {
            let slot = Box::leak(Box::new(Slot { addr, action: AtomicU64::new(0), state: AtomicU64::new(0) }));
            self.entries.push(Entry { addr, slot, recent: [None, None] });
            self.index.insert(addr, self.entries.len() - 1);
            self.dirty = true;
            self.entries.len() - 1
        };
        self.cursor = i;
        &mut self.entries[i]
    }

    /// Publishes entries added since the last call to the handler's snapshot.
    pub(crate) fn publish_new(&mut self) {
        if std::mem::take(&mut self.dirty) {
            self.publish();
        }
    }

    /// The slot of every address in `addrs`, created and published when new. Slots are never freed.
    pub(crate) fn slots(&mut self, addrs: impl IntoIterator<Item = usize>) -> Vec<&'static Slot> {
        let out = addrs.into_iter().map(|a| self.entry(a).slot).collect();
        self.publish_new();
        out
    }

    /// Marks every slot inside `[start, start+len)` retired: its code is gone, a trap there is foreign.
    pub(crate) fn retire(&mut self, start: usize, len: usize) {
        let end = start.saturating_add(len);
        for e in self.entries.iter_mut().filter(|e| e.slot.addr >= start && e.slot.addr < end) {
            e.slot.set(Action::Retired, Phase::Idle);
            e.recent = [None, None];
        }
    }

    fn publish(&mut self) {
        let slots = self.merged_slots();
        let new = Box::into_raw(Box::new(Snapshot { slots: slots.into_boxed_slice() }));
        let old = SNAPSHOT.swap(new, Ordering::SeqCst);
        if !old.is_null() {
            self.graveyard.push(old);
        }
        // RCU grace period: a handler increments READERS before loading SNAPSHOT (both SeqCst), so once
        // READERS reads 0 after our swap, every later search loads `new`: the retired arrays are free.
        if READERS.load(Ordering::SeqCst) == 0 {
            for snap in self.graveyard.drain(..) {
                // SAFETY: unpublished and, by the argument above, referenced by no handler.
                drop(unsafe { Box::from_raw(snap) });
            }
        }
    }
}

impl Registry {
    /// Every slot sorted by address: the published snapshot's slots (already sorted) merged with the
    /// entries added since (sorted alone): O(n + k log k), not a sort of all n on every new address.
    fn merged_slots(&self) -> Vec<&'static Slot> {
        // SAFETY: the patcher (holding the registry lock, as every caller of `publish` does) is the only
        // writer of SNAPSHOT and frees a snapshot only after replacing it, so the current one is alive.
        let old: &[&'static Slot] = unsafe { SNAPSHOT.load(Ordering::SeqCst).as_ref() }.map_or(&[], |s| &s.slots);
        if old.len() > self.entries.len() {
            // Not the registry's own snapshot (cannot happen: entries only grow): sort them all.
            let mut all: Vec<&'static Slot> = self.entries.iter().map(|e| e.slot).collect();
            all.sort_unstable_by_key(|s| s.addr);
            return all;
        }
        let mut added: Vec<&'static Slot> = self.entries[old.len()..].iter().map(|e| e.slot).collect();
        added.sort_unstable_by_key(|s| s.addr);
        let mut out = Vec::with_capacity(old.len() + added.len());
        let (mut i, mut j) = (0, 0);
        while i < old.len() || j < added.len() {
            if j == added.len() || (i < old.len() && old[i].addr < added[j].addr) {
                out.push(old[i]);
                i += 1;
            } else {
                out.push(added[j]);
                j += 1;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_round_trip_through_one_word() {
        for a in [
            Action::Emulate(Insn::Call(0x7fff_1234_5678)),
            Action::Emulate(Insn::Jmp(0x1000)),
            Action::Emulate(Insn::CsCall(0x5555_0000_0001)),
            Action::Emulate(Insn::Nop5),
            Action::Emulate(Insn::Ret0),
            Action::Emulate(Insn::Ret),
            Action::ResumeAfterPrefix,
            Action::Retired,
        ] {
            assert_eq!(unpack(pack(a)), a);
        }
    }

    #[test]
    fn published_slots_are_found_and_stay_after_retirement() {
        let mut reg = registry();
        // Addresses no code lives at (the table never dereferences them), far from every other test's.
        let base = 0x10_0000_0000usize;
        let slots = reg.slots([base + 30, base + 10, base + 20]);
        slots[0].set(Action::Emulate(Insn::Call(base)), Phase::Int3);
        assert_eq!(lookup(base + 30).map(|s| s.addr), Some(base + 30));
        assert_eq!(lookup(base + 10).map(|s| s.addr), Some(base + 10));
        assert!(lookup(base + 11).is_none());
        let (action, phase, g) = lookup(base + 30).unwrap().load();
        assert_eq!((action, phase), (Action::Emulate(Insn::Call(base)), Phase::Int3));
        reg.retire(base + 25, 10);
        let (action, phase, g2) = lookup(base + 30).unwrap().load();
        assert_eq!((action, phase), (Action::Retired, Phase::Idle));
        assert!(g2 > g);
        assert!(std::ptr::eq(reg.slots([base + 30])[0], slots[0]), "one slot per address, forever");
    }

    #[test]
    fn addresses_published_in_rounds_are_all_found_in_order() {
        // Addresses no code uses (slots stay retired), in a scrambled order over three publications.
        let base = 0x7e00_0000_0000usize;
        let addrs: Vec<usize> = (0..300).map(|i| base + ((i * 7919) % 300) * 16).collect();
        for round in addrs.chunks(100) {
            registry().slots(round.iter().copied());
        }
        for &a in &addrs {
            assert_eq!(lookup(a).map(|s| s.addr), Some(a));
        }
        assert!(lookup(base + 8).is_none());
        let reg = registry();
        // SAFETY: the registry lock is held, and only its holder replaces (and so frees) a snapshot.
        let snap = unsafe { SNAPSHOT.load(Ordering::SeqCst).as_ref() }.unwrap();
        assert!(snap.slots.windows(2).all(|w| w[0].addr < w[1].addr), "the snapshot is sorted");
        drop(reg);
    }
}
