//! bp (text_poke_bp) on arena sites and on the test binary's own .text, and validation.

use callpatch_probes::code::{decode, ArenaMode, Insn, TextWriter, WriteMethod};
use callpatch_probes::experiments::live_sites::{LiveSites, Placement, Tally};
use callpatch_probes::patch::{patch_batch, text_poke_bp, BatchReport, PatchError, Protocol, SitePatch};

#[test]
fn sites_move_and_calls_follow() {
    let bed = LiveSites::new(Protocol::Bp, 4, Placement::Spread, ArenaMode::DualMap).unwrap();
    let w = bed.writer(WriteMethod::Alias).unwrap();
    let mut t = Tally::default();
    bed.run(&mut t, 10);
    assert_eq!(t.hits, [40, 0]);
    let r = bed.patch(&w, Protocol::Bp, &bed.retarget(4, 0, 1)).unwrap();
    assert_eq!((r.sites, r.syncs), (4, 3));
    bed.run(&mut t, 10);
    assert_eq!(t.hits, [40, 40]);
    assert_eq!(t.misdirected, 0);
}

#[test]
fn a_batch_of_1000_costs_exactly_three_syncs() {
    let bed = LiveSites::new(Protocol::Bp, 1000, Placement::Spread, ArenaMode::Rwx).unwrap();
    let w = bed.writer(WriteMethod::Direct).unwrap();
    let r = bed.patch(&w, Protocol::Bp, &bed.retarget(1000, 0, 1)).unwrap();
    assert_eq!((r.sites, r.syncs), (1000, 3));
    let mut t = Tally::default();
    bed.run(&mut t, 3);
    assert_eq!(t.hits, [0, 3000]);
}

extern "sysv64" fn returns_one() -> u64 {
    1
}
extern "sysv64" fn returns_two() -> u64 {
    2
}

// A function in this binary's own .text with one patchable `call` (stack kept 16-byte aligned).
core::arch::global_asm!(
    ".pushsection .text.callpatch_own_site,\"ax\",@progbits",
    ".p2align 4",
    ".globl callpatch_own_site",
    "callpatch_own_site:",
    "sub rsp, 8",
    "call {one}",
    "add rsp, 8",
    "ret",
    ".popsection",
    one = sym returns_one,
);
unsafe extern "sysv64" {
    fn callpatch_own_site() -> u64;
}

#[test]
fn text_poke_bp_patches_the_programs_own_text() {
    let f = callpatch_own_site as *const () as usize;
    let site = f + 4; // after `sub rsp, 8` (48 83 ec 08)
                      // SAFETY: the 9 bytes of `callpatch_own_site` above are mapped code.
    let bytes = unsafe { std::slice::from_raw_parts(site as *const u8, 5) };
    let one = returns_one as *const () as usize;
    let two = returns_two as *const () as usize;
    assert_eq!(decode(bytes, site), Some(Insn::Call(one)));
    // SAFETY: `callpatch_own_site` is the function defined above.
    assert_eq!(unsafe { callpatch_own_site() }, 1);
    let w = TextWriter::new(WriteMethod::Mprotect);
    // SAFETY: `site` is the `call` inside `callpatch_own_site`, and `returns_two` has the signature of
    // `returns_one`.
    unsafe { text_poke_bp(&w, &[SitePatch { addr: site, old: Insn::Call(one), new: Insn::Call(two) }]) }.unwrap();
    // SAFETY: as above; the site now calls `returns_two`, same signature.
    assert_eq!(unsafe { callpatch_own_site() }, 2);
    // SAFETY: as above, back.
    unsafe { text_poke_bp(&w, &[SitePatch { addr: site, old: Insn::Call(two), new: Insn::Call(one) }]) }.unwrap();
    // SAFETY: as above.
    assert_eq!(unsafe { callpatch_own_site() }, 1);
}

/// Patches a batch built by hand to be refused.
fn refused(w: &TextWriter, protocol: Protocol, batch: &[SitePatch]) -> Result<BatchReport, PatchError> {
    // SAFETY: every batch here is the live sites' own retarget batch with its last site made invalid, which
    // validation refuses (each caller asserts the error) before the first write.
    unsafe { patch_batch(w, protocol, batch) }
}

#[test]
fn invalid_batches_are_refused_with_every_byte_unchanged() {
    let bed = LiveSites::new(Protocol::Bp, 8, Placement::Spread, ArenaMode::Rwx).unwrap();
    let w = bed.writer(WriteMethod::Direct).unwrap();
    let image = |b: &LiveSites| b.arena().read(b.arena().base(), b.arena().used());
    let before = image(&bed);
    let t1 = bed.targets()[1];
    let s = bed.sites();
    // The last site is wrong in each batch, so a patcher that wrote before validating would show it.
    let mut wrong = bed.retarget(8, 0, 1).to_vec();
    wrong[7].old = Insn::Call(t1);
    assert!(matches!(refused(&w, Protocol::Bp, &wrong), Err(PatchError::WrongBytes { addr, .. }) if addr == s[7]));
    let mut far = bed.retarget(8, 0, 1).to_vec();
    far[7].new = Insn::Call(s[7].wrapping_add(3 << 30));
    assert!(matches!(refused(&w, Protocol::Bp, &far), Err(PatchError::OutOfRange { addr, .. }) if addr == s[7]));
    let mut unknown = bed.retarget(8, 0, 1).to_vec();
    let heap = Box::new([0u8; 16]);
    unknown[7].addr = heap.as_ptr() as usize;
    assert!(matches!(refused(&w, Protocol::Bp, &unknown), Err(PatchError::UnknownSite { .. })));
    let mut twice = bed.retarget(8, 0, 1).to_vec();
    twice[7] = twice[0];
    assert!(matches!(refused(&w, Protocol::Bp, &twice), Err(PatchError::Overlap { .. })));
    let mut longer = bed.retarget(8, 0, 1).to_vec();
    longer[7].new = Insn::CsCall(t1);
    assert!(matches!(refused(&w, Protocol::Bp, &longer), Err(PatchError::LengthMismatch { .. })));
    let cs = bed.retarget(8, 0, 1);
    assert!(matches!(refused(&w, Protocol::CsPrefix, &cs), Err(PatchError::Unsupported { .. })));
    assert_eq!(image(&bed), before, "a refused batch wrote something");
    // And a valid batch after all that still works.
    assert_eq!(bed.patch(&w, Protocol::Bp, &bed.retarget(8, 0, 1)).unwrap().syncs, 3);
    let mut t = Tally::default();
    bed.run(&mut t, 1);
    assert_eq!(t.hits, [0, 8]);
}
