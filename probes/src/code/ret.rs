//! How a target returns: the bytes of each [`ReturnKind`], the thunks they jump to, and where those
//! thunks sit. Every target ends with [`ReturnKind`]'s return: `ret`, or `jmp rel32` (`e9`) to the
//! kernel thunk it mirrors, emitted by this crate's [`Emitter`] like every other byte, so the probe's
//! weight-sum check covers them (a thunk that returned anywhere else would lose or repeat a call).
//!
//! Call depth tracking keeps its counter per CPU at `%gs:__x86_call_depth`; user space has no per-CPU
//! segment, so the counter here is per thread at `%fs:` ([`call_depth_offset`]): the same instruction
//! shape (a segment-relative read-modify-write, `64` instead of `65`), an approximation of the kernel's
//! (a context switch neither credits nor moves it).
//!
//! Placement: where targets and thunks sit moves effects of about a tick (predictor indexing, line and
//! 32-byte window boundaries), so rows with a thunk are measured at several placements. Placement `p`
//! puts the targets at [`target_skip`] bytes past a line start and the thunk at [`thunk_skip`] bytes past
//! a page start: both the 16-byte slot within the line and the page change with `p`.

use std::cell::Cell;

use iced_x86::code_asm::{rsp, CodeAssembler, CodeLabel};
use iced_x86::{Code, IcedError, Instruction, MemoryOperand, Register};

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

/// Bytes of the call-depth accounting `sarq $5, %fs:depth` (`64 48 c1 3c 25 disp32 05`), which the
/// kernel's call thunk puts in the 16 bytes of padding before a function, so a direct call lands that
/// many bytes early and falls through into the function.
pub const CALL_DEPTH_ACCOUNT_LEN: usize = 10;

/// Half of a line, in bytes: ITS (`cpu_wants_rethunk_at`) thunks a return whose byte has this bit clear.
pub const ITS_HALF: usize = 32;

thread_local! {
    /// This thread's call depth counter, credited full (`-1`) as `CREDIT_CALL_DEPTH` leaves it.
    static CALL_DEPTH: Cell<u64> = const { Cell::new(u64::MAX) };
}

/// The offset of this thread's depth counter from its thread pointer (`%fs:0`, which the x86-64 TLS ABI
/// makes point at itself), for a `%fs:disp32` operand; `None` if it does not fit. The same on every
/// thread for a counter in the executable's static TLS block; [`crate::code::Probe::run`] checks it.
pub fn call_depth_offset() -> Option<i32> {
    let counter = CALL_DEPTH.with(|c| c.as_ptr() as usize);
    let tp: usize;
    // SAFETY: reads the thread control block's self-pointer at `%fs:0`, present on every x86-64 Linux
    // thread (glibc and musl alike); no write, no stack use.
    unsafe { std::arch::asm!("mov {}, qword ptr fs:[0]", out(reg) tp, options(nostack, readonly, preserves_flags)) };
    i32::try_from(counter as isize - tp as isize).ok()
}

/// [`call_depth_offset`] for emitting, with the error a probe reports when it does not fit.
pub(crate) fn call_depth_disp() -> Result<i32, EmitError> {
    call_depth_offset().ok_or_else(|| EmitError::Bad("the call depth counter is beyond %fs:disp32".into()))
}

/// This thread's depth counter as the emitted code left it.
pub fn call_depth() -> u64 {
    CALL_DEPTH.with(Cell::get)
}

/// Sets this thread's depth counter: `u64::MAX` is the kernel's full credit, `0` makes the next return
/// refill the RSB (the slow path, which the tests run).
pub fn set_call_depth(value: u64) {
    CALL_DEPTH.with(|c| c.set(value));
}

/// `op $imm, %fs:offset` on the 64-bit depth counter (`sarq`, `shlq`, `movq`).
fn on_depth(code: Code, imm: i32, offset: i32) -> Result<Instruction, IcedError> {
    let mem = MemoryOperand::new(Register::None, Register::None, 1, offset.into(), 8, false, Register::FS);
    Instruction::with2(code, mem, imm)
}

/// `INCREMENT_CALL_DEPTH` (arch/x86/include/asm/nospec-branch.h, Linux 6.12): `sarq $5, %fs:depth`.
pub fn call_depth_account(a: &mut CodeAssembler, offset: i32) -> Result<(), IcedError> {
    a.add_instruction(on_depth(Code::Sar_rm64_imm8, 5, offset)?)
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

impl ReturnThunk {
    fn at(entry: usize) -> Self {
        ReturnThunk { entry, safe_ret: None, untrain: None }
    }
}

/// Emits the thunk(s) of `kind` at placement `p`, at the next page boundary; `None` for `ret` and
/// `its-upper`, which return with `ret`.
pub fn emit_thunk(
    e: &mut Emitter<'_>,
    kind: ReturnKind,
    p: u32,
    symbols: &mut Vec<Symbol>,
) -> Result<Option<ReturnThunk>, EmitError> {
    if matches!(kind, ReturnKind::Ret | ReturnKind::ItsUpper) {
        return Ok(None);
    }
    let page = e.align_int3(4096)?;
    let mut sym = |addr: usize, len: usize, name: &str| symbols.push(Symbol { addr, len, name: name.into() });
    let thunk = match kind {
        ReturnKind::Ret | ReturnKind::ItsUpper => unreachable!("handled above"),
        // arch/x86/lib/retpoline.S `__x86_return_thunk` (Linux 6.12): `ret; int3`.
        ReturnKind::RetThunk => {
            e.skip_int3(page + thunk_skip(p))?;
            let entry = e.raw(&[0xc3, 0xcc])?;
            sym(entry, 2, "__x86_return_thunk");
            ReturnThunk::at(entry)
        }
        // arch/x86/lib/retpoline.S `call_depth_return_thunk` (Linux 6.12): `shlq $5` on the depth
        // counter; on zero (more returns than the RSB holds) refill 16 RSB entries with calls whose
        // frames it drops, credit the counter full, then `ret`.
        ReturnKind::CallDepth => {
            let depth = call_depth_disp()?;
            e.skip_int3(page + thunk_skip(p))?;
            let (entry, _) = e.asm(|a, _: &mut [CodeLabel; 0]| {
                a.add_instruction(on_depth(Code::Shl_rm64_imm8, 5, depth)?)?;
                // `jz 1f` over `ret; int3`, short as the kernel's ("keep the hotpath in a 16byte
                // I-fetch"): the assembler here prefers near branches.
                a.db(&[0x74, 0x02])?;
                a.ret()?;
                a.int3()?;
                for _ in 0..16 {
                    let mut next = a.create_label();
                    a.call(next)?;
                    a.int3()?;
                    a.set_label(&mut next)?;
                }
                a.add(rsp, 8 * 16)?;
                a.add_instruction(on_depth(Code::Mov_rm64_imm32, -1, depth)?)?;
                a.ret()?;
                a.int3()
            })?;
            sym(entry, e.here() - entry, "call_depth_return_thunk");
            ReturnThunk::at(entry)
        }
        // arch/x86/lib/retpoline.S `its_return_thunk` (Linux 6.15): `ret; int3` at byte 32 of a line
        // (`.align 64; .skip 32`); here at byte 32 or 48, the page moving with `p`.
        ReturnKind::ItsLower => {
            e.skip_int3(page + p as usize * 4096 + ITS_HALF + (p as usize % 2) * 16)?;
            let entry = e.raw(&[0xc3, 0xcc])?;
            sym(entry, 2, "its_return_thunk");
            ReturnThunk::at(entry)
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
