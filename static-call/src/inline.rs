//! The inline backend: sites and trampolines rewritten in place by the live patcher's `text_poke_bp`,
//! through the one text writer in its `mprotect` mode (the program's `.text` is mapped read-execute).
//!
//! The forms, as the kernel's `__static_call_transform` writes them:
//! | key state        | each site         | trampoline at T+0 |
//! |------------------|-------------------|-------------------|
//! | before init      | `call T`          | `jmp T+8` (generic path) |
//! | target `f`       | `call shim(f)`    | `jmp shim(f)`     |
//! | disabled (`None`)| RET0: `2e 2e 2e 31 c0` (`xor eax, eax`) | `jmp return_zero` |
//!
//! A batch is validated whole by the patcher (every site must hold the expected old instruction, every
//! new target must be in rel32 reach) before its first byte changes.

use std::collections::BTreeMap;

use super::key::{key_at, Key};
use super::sites::{self, CallSite};
use super::trampoline::{decode_head, patched_insn, TRAMPOLINE_LEN};
use super::update::{State, UpdateError};
use callpatch_patcher::{decode, Insn, TextWriter, WriteMethod};
use callpatch_patcher::{fits_one_word, membarrier_ready, patch_batch, Granule, PatchError, Protocol, SitePatch};

/// What a site of a key holds for `target`: a call, or for a disabled key the kernel's RET0 site, one
/// 5-byte `xor eax, eax` (so the call's result is 0 without a call, and enabled calls pay nothing).
fn site_insn(target: Option<usize>) -> Insn {
    match target {
        Some(t) => Insn::Call(t),
        None => Insn::Ret0,
    }
}

/// The trampoline's current patchable instruction.
fn trampoline_head(key: &Key) -> Option<Insn> {
    let t = key.trampoline();
    // SAFETY: `t` is the address of a key's 16-byte trampoline in this program's text; it is only
    // rewritten under the static call lock, which the caller holds.
    let bytes = unsafe { std::ptr::read_volatile(t as *const [u8; TRAMPOLINE_LEN]) };
    decode_head(&bytes, t)
}

/// True when every site still behaves as before the failed batch: the batch was refused before its
/// first write, rolled back, or (rollback failed) parked with each site running its old instruction
/// through the trap handler. A bare write error (the pages could not be made RX again after a complete
/// batch) and a read-back mismatch (someone else wrote the text) are not.
pub(super) fn behaves_as_before(e: &PatchError) -> bool {
    !matches!(e, PatchError::Write { .. } | PatchError::ReadBack { .. })
}

/// The patcher protocol of the inline backends: bp (int3), or one aligned 8-byte store per site.
pub(super) fn protocol(trap_free: bool) -> Protocol {
    if trap_free {
        Protocol::Aligned { granule: Granule::Word8 }
    } else {
        Protocol::Bp
    }
}

/// Patches every site of every key from `call trampoline` to its key's current form, and those keys'
/// trampolines, in one batch (bp, or `trap_free`: one store each, and only the sites inside one aligned
/// 8-byte word). On `Err` nothing was changed and the caller falls back to the generic backend; panics
/// only if the patcher failed after writing (the text is then neither old nor new).
pub(super) fn init(state: &mut State, trap_free: bool) -> Result<(), String> {
    membarrier_ready().map_err(|e| e.to_string())?;
    let mut by_key: BTreeMap<usize, Vec<CallSite>> = BTreeMap::new();
    let mut skipped = Vec::new();
    for site in sites::all() {
        // SAFETY: site table entries come only from `static_call!` call sites, whose key operand is
        // type-checked to be a `StaticCall` static.
        let key = unsafe { key_at(site.key()) };
        match decode(&site.bytes(), site.addr()) {
            Some(Insn::Call(_)) if trap_free && !fits_one_word(site.addr(), 5) => skipped.push((
                site,
                "trap-free: its 5 bytes straddle an aligned 8-byte word, so it stays on its trampoline".into(),
            )),
            Some(Insn::Call(t)) if t == key.trampoline() => by_key.entry(site.key()).or_default().push(site),
            other => skipped.push((site, format!("holds {other:?}, not a call to its trampoline"))),
        }
    }
    let mut batch = Vec::new();
    for (&k, sites) in &by_key {
        // SAFETY: as above.
        let key = unsafe { key_at(k) };
        let target = key.target();
        let head = trampoline_head(key).ok_or_else(|| format!("trampoline of {} is not a jmp", key.name()))?;
        batch.push(SitePatch { addr: key.trampoline(), old: head, new: patched_insn(target) });
        batch.extend(sites.iter().map(|s| SitePatch {
            addr: s.addr(),
            old: Insn::Call(key.trampoline()),
            new: site_insn(target),
        }));
    }
    // SAFETY: every address is a `static_call!` site (the `call` its `asm!` emitted, found through the
    // site table and decoded just now) or a key's trampoline, and every new target is the key's shim
    // of the key's signature (or the trampoline's own generic path).
    match unsafe { patch_batch(&text_writer(), protocol(trap_free), &batch) } {
        Ok(_) => {}
        Err(e) if behaves_as_before(&e) => return Err(e.to_string()),
        Err(e) => panic!("static_call: init failed after writing to the text, which is now inconsistent: {e}"),
    }
    state.status.patched_sites = by_key.values().map(Vec::len).sum();
    state.status.skipped = skipped;
    state.by_key = by_key;
    Ok(())
}

/// Rewrites the trampoline and every patched site of each key for its new target, all in one batch
/// (bp: three syncs in all, however many keys; or one store per site when `trap_free`). `Ok` says, per
/// key, whether anything of it needed patching. Keys are distinct (the caller checks).
pub(super) fn update(
    state: &State,
    changes: &[(&Key, Option<usize>)],
    trap_free: bool,
) -> Result<Vec<bool>, UpdateError> {
    let sites_of = |key: &Key| state.by_key.get(&key.addr()).map(Vec::as_slice).unwrap_or_default();
    let total: usize = changes.iter().map(|(k, _)| sites_of(k).len()).sum();
    let failed =
        |source: PatchError| UpdateError::patch(changes.iter().map(|(k, _)| k.name()).collect(), total, source);
    let mut batch = Vec::new();
    let mut patched = Vec::with_capacity(changes.len());
    for &(key, target) in changes {
        let before = batch.len();
        let head = trampoline_head(key);
        let new_head = patched_insn(target);
        if head != Some(new_head) {
            let old = head.ok_or_else(|| failed(not_a_site(key.trampoline(), "static call")))?;
            batch.push(SitePatch { addr: key.trampoline(), old, new: new_head });
        }
        for s in sites_of(key) {
            let old = decode(&s.bytes(), s.addr()).ok_or_else(|| failed(not_a_site(s.addr(), "static call")))?;
            if old != site_insn(target) {
                batch.push(SitePatch { addr: s.addr(), old, new: site_insn(target) });
            }
        }
        patched.push(batch.len() > before);
    }
    let previous: Vec<Option<usize>> = changes.iter().map(|(k, _)| k.target()).collect();
    // The generic path of a trampoline not patched yet sees the new target from now on.
    for &(key, target) in changes {
        key.set_current(target);
    }
    if batch.is_empty() {
        return Ok(patched);
    }
    // SAFETY: as in `init`: each key's own sites and trampoline, retargeted to a shim of its signature.
    match unsafe { patch_batch(&text_writer(), protocol(trap_free), &batch) } {
        Ok(_) => Ok(patched),
        Err(e) => {
            if behaves_as_before(&e) {
                for (&(key, _), &was) in changes.iter().zip(&previous) {
                    key.set_current(was);
                }
            }
            Err(failed(e))
        }
    }
}

/// The program's own text, written through `mprotect` windows (it is mapped read-execute).
pub(super) fn text_writer() -> TextWriter {
    TextWriter::new(WriteMethod::Mprotect)
}

/// The refusal for an address whose bytes are none of the forms its `what` (static call, static
/// branch) ever writes there.
pub(super) fn not_a_site(addr: usize, what: &str) -> PatchError {
    PatchError::Unsupported { addr, protocol: "bp", reason: format!("the bytes there are no {what} form") }
}
