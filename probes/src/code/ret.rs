//! How a target returns: the bytes of each [`ReturnKind`], the thunks they jump to, and where those
//! thunks sit. Every target ends with [`ReturnKind`]'s return: `ret`, or `jmp rel32` (`e9`) to the
//! kernel thunk it mirrors, emitted by this crate's [`Emitter`] like every other byte, so the probe's
//! weight-sum check covers them (a thunk that returned anywhere else would lose or repeat a call).
//!
//! Placement: where targets and thunks sit moves effects of about a tick (predictor indexing, line and
//! 32-byte window boundaries), so rows with a thunk are measured at several placements. Placement `p`
//! puts the targets at [`target_skip`] bytes past a line start and the thunk at [`thunk_skip`] bytes past
//! a page start: both the 16-byte slot within the line and the page change with `p`.

use iced_x86::code_asm::{CodeAssembler, CodeLabel};
use iced_x86::IcedError;

pub use callpatch_vocab::ReturnKind;

use super::emit::{EmitError, Emitter};
use super::probe::Symbol;

/// The largest placement a probe accepts.
pub const MAX_PLACEMENT: u32 = 15;

/// `lea 8(%rsp), %rsp`: drops the return address `call srso_safe_ret` pushed without touching RFLAGS
/// (the kernel used `add $8, %rsp` until that clobbered flags a caller relied on).
const LEA_RSP_8: [u8; 5] = [0x48, 0x8d, 0x64, 0x24, 0x08];

/// The kernel's alias offset: `srso_alias_safe_ret` lies at `srso_alias_untrain_ret` with bits 2, 8, 14
/// and 20 set, so the two share a BTB entry on Zen 3/4.
pub const SRSO_ALIAS_BITS: usize = (1 << 2) | (1 << 8) | (1 << 14) | (1 << 20);

/// Bytes skipped past a line start before the first target of placement `p`: a different 16-byte slot
/// of the line and a different 1 KiB block for each `p`.
pub fn target_skip(p: u32) -> usize {
    (p as usize % 4) * 16 + p as usize * 1024
}

/// Bytes skipped past a page start before the return thunk of placement `p`: the line slots in the
/// order 0, 48, 32, 16 and one more page per `p`.
pub fn thunk_skip(p: u32) -> usize {
    ((3 * p as usize) % 4) * 16 + p as usize * 4096
}

/// Arena bytes the thunks of `kind` at placement `p` may need, beyond a probe's own code.
pub fn arena_bytes(kind: ReturnKind, p: u32) -> usize {
    let base = 2 * 4096 + thunk_skip(p) + target_skip(p) + 4096;
    match kind {
        ReturnKind::SrsoAlias => base + SRSO_ALIAS_BITS + 4096,
        _ => base,
    }
}

/// The return thunk of a probe: the address every target's `jmp` goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReturnThunk {
    /// The return thunk's entry (`__x86_return_thunk`, `srso_return_thunk`, `srso_alias_return_thunk`).
    pub entry: usize,
    /// The safe return (`srso_safe_ret`, `srso_alias_safe_ret`), for the SRSO kinds.
    pub safe_ret: Option<usize>,
    /// The untraining function the safe return is placed against (`srso_untrain_ret`,
    /// `srso_alias_untrain_ret`), for the SRSO kinds; never executed here.
    pub untrain: Option<usize>,
}

/// Emits the thunk(s) of `kind` at placement `p`, at the next page boundary; `None` for `ret`.
pub fn emit_thunk(
    e: &mut Emitter<'_>,
    kind: ReturnKind,
    p: u32,
    symbols: &mut Vec<Symbol>,
) -> Result<Option<ReturnThunk>, EmitError> {
    if kind == ReturnKind::Ret {
        return Ok(None);
    }
    let page = e.align_int3(4096)?;
    let mut sym = |addr: usize, len: usize, name: &str| symbols.push(Symbol { addr, len, name: name.into() });
    let thunk = match kind {
        ReturnKind::Ret => unreachable!("handled above"),
        // arch/x86/lib/retpoline.S `__x86_return_thunk` (Linux 6.12): `ret; int3`.
        ReturnKind::RetThunk => {
            e.skip_int3(page + thunk_skip(p))?;
            let entry = e.raw(&[0xc3, 0xcc])?;
            sym(entry, 2, "__x86_return_thunk");
            ReturnThunk { entry, safe_ret: None, untrain: None }
        }
        // arch/x86/lib/retpoline.S `srso_untrain_ret`, `srso_safe_ret`, `srso_return_thunk` (Linux 6.12):
        // `srso_safe_ret` is the immediate of a `movabs` in `srso_untrain_ret`, which the kernel runs on
        // entry to untrain (not here); the thunk is `call srso_safe_ret; ud2`.
        ReturnKind::Srso => {
            e.skip_int3(page + thunk_skip(p))?;
            let untrain = e.raw(&[0x48, 0xb8])?;
            let safe_ret = e.raw(&LEA_RSP_8)?;
            e.raw(&[0xc3, 0xcc, 0xcc])?;
            let (_, _) = e.asm(|a, _: &mut [CodeLabel; 0]| {
                a.lfence()?;
                a.call(safe_ret as u64)?;
                a.ud2()
            })?;
            sym(untrain, e.here() - untrain, "srso_untrain_ret");
            e.align_int3(16)?;
            let entry = call_ud2(e, safe_ret)?;
            sym(entry, e.here() - entry, "srso_return_thunk");
            ReturnThunk { entry, safe_ret: Some(safe_ret), untrain: Some(untrain) }
        }
        // arch/x86/lib/retpoline.S `srso_alias_untrain_ret`, `srso_alias_safe_ret`,
        // `srso_alias_return_thunk`, placed as arch/x86/kernel/vmlinux.lds.S asserts (Linux 6.12):
        // untrain page-aligned, the safe return at untrain | bits 2, 8, 14, 20, the thunk right after it.
        ReturnKind::SrsoAlias => {
            e.skip_int3(page + thunk_skip(p) / 4096 * 4096)?;
            let untrain = e.here();
            let safe_ret_at = untrain | SRSO_ALIAS_BITS;
            // The thunk follows the 7-byte safe return with no alignment (`SYM_CODE_START_NOALIGN`).
            let (_, _) = e.asm(|a, _: &mut [CodeLabel; 0]| {
                a.db(&[0x66, 0x90])?;
                a.lfence()?;
                a.jmp((safe_ret_at + 7) as u64)
            })?;
            sym(untrain, e.here() - untrain, "srso_alias_untrain_ret");
            e.skip_int3(safe_ret_at)?;
            let safe_ret = e.raw(&LEA_RSP_8)?;
            e.raw(&[0xc3, 0xcc])?;
            sym(safe_ret, 7, "srso_alias_safe_ret");
            let entry = call_ud2(e, safe_ret)?;
            debug_assert_eq!(entry, safe_ret_at + 7);
            sym(entry, e.here() - entry, "srso_alias_return_thunk");
            ReturnThunk { entry, safe_ret: Some(safe_ret), untrain: Some(untrain) }
        }
    };
    Ok(Some(thunk))
}

/// `call safe_ret; ud2` at [`Emitter::here`]; returns its address.
fn call_ud2(e: &mut Emitter<'_>, safe_ret: usize) -> Result<usize, EmitError> {
    let (at, _) = e.asm(|a, _: &mut [CodeLabel; 0]| {
        a.call(safe_ret as u64)?;
        a.ud2()
    })?;
    Ok(at)
}

/// The return of a target: `ret`, or `jmp thunk` (`e9 rel32`, the form the kernel patches return
/// sites to).
pub fn emit_return(a: &mut CodeAssembler, thunk: Option<&ReturnThunk>) -> Result<(), IcedError> {
    match thunk {
        None => a.ret(),
        Some(t) => a.jmp(t.entry as u64),
    }
}
