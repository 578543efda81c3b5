//! A probe: one flavor in one scenario, emitted as two timed loops (U and 2U calls per iteration) in
//! its own [`Arena`], callable as `extern "sysv64" fn(iters: u64) -> u64`.
//!
//! Register contract of the generated loops (all caller-saved except `rbx`, which is saved):
//! - `rdi`: iterations left; `rdx`: the accumulator, returned in `rax` at the end;
//! - `rax`: the call target for the `rax` flavors (set once before the loop, or loaded per call in
//!   poly scenarios); `r11` the same for the kCFI flavors, whose check clobbers `r10`; `rbx` + `rcx`:
//!   the poly selection table and the byte index into it;
//! - `rsi`, `r8` (sites-N only): passes over the N sites per iteration (1 or 2) and the pass counter.
//!
//! Targets are tiny functions `add rdx, w; ret` with a distinct weight w = 1, 2, …, K, so the value a
//! loop returns is the sum of the weights of the targets it really called: a wrong, lost or extra call
//! changes it ([`Probe::expected`], [`Probe::verify`]).
//!
//! Layout: every site starts its own 64-byte line (at byte B of it for `offset-B`, byte 0 otherwise),
//! the gap after it filled with executed multi-byte NOPs. Packing sites back to back instead measures
//! the front end, not the call: on the Intel Xeon guest (family 6 model 167) where this was measured,
//! sixteen 2-byte `call *%rax` in one 32-byte window cost 3.3× a direct call each, because the
//! decoded-uop cache holds only a few branches per window; one site per line costs 1.3×. The NOPs retire in the shadow of the call and
//! return (a direct call costs the same or less than with any denser pitch), and every flavor pays
//! them alike. So `mono` is the layout of `offset-0`.
//!
//! Each scenario's loop body, per call j (U calls for Single, 2U for Double):
//! - `mono`, `sites-N`: the site alone. `sites-N` has one body of N sites run once (Single) or twice
//!   (Double) per iteration, so both unroll counts execute the same N instructions (N lines of code).
//! - `poly-*`: `mov rax, [rbx+rcx+8j]` right before the site (`rax` flavors; the padding goes before
//!   the load), or a site that calls through that same slot (`indirect-mem`); the loop tail advances
//!   `rcx` by 8 per call, wrapping the table.
//! - `offset-B`: the site at byte B of its line.

use iced_x86::code_asm::{
    ecx, edx, esi, qword_ptr, r11, r8, r9, rax, rbx, rcx, rdi, rdx, rsi, rsp, AsmRegister64, CodeLabel,
};

use super::arena::{Arena, ArenaMode, CACHE_LINE};
use super::emit::{EmitError, Emitter};
use super::flavor::{fineibt_preamble, CallTo, Flavor, FlavorSite, SiteForm, KCFI_HASH};
use super::insn::{self, Insn};
use super::ret::{self, ReturnKind, ReturnThunk, CALL_DEPTH_ACCOUNT_LEN, ITS_HALF};
use super::scenario::{Scenario, ScenarioSequence, SEQUENCE_LEN};
use crate::measure::Unroll;

/// How a probe is emitted (the emission knobs; the timing knobs are [`crate::measure::Knobs`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EmitOptions {
    /// U: calls per iteration of the Single body (ignored by `sites-N`, where U = N). For poly
    /// scenarios a power of two, so that the selection table wraps between iterations.
    pub unroll: usize,
    /// How the arena is mapped.
    pub mode: ArenaMode,
    /// How every target returns.
    pub ret: ReturnKind,
    /// Where targets and thunks sit (0 ..= [`super::ret::MAX_PLACEMENT`]; see [`super::ret`]).
    pub placement: u32,
}

impl Default for EmitOptions {
    fn default() -> Self {
        EmitOptions { unroll: 32, mode: ArenaMode::Rwx, ret: ReturnKind::Ret, placement: 0 }
    }
}

/// Largest U a probe accepts.
pub const MAX_UNROLL: usize = 4096;

/// One emitted call site.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeSite {
    /// Address of the site's first byte.
    pub addr: usize,
    /// Its length in bytes.
    pub len: usize,
    /// The instruction(s) there.
    pub form: SiteForm,
}

/// One target function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    /// Entry address.
    pub addr: usize,
    /// What one call adds to the accumulator.
    pub weight: u64,
}

/// A named code range, for a perf map (`/tmp/perf-PID.map`) or a disassembly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Symbol {
    /// Start address.
    pub addr: usize,
    /// Length in bytes.
    pub len: usize,
    /// Name.
    pub name: String,
}

/// `mov %r9, %r11` (`4d 89 cb`), before each `fineibt` call outside poly: the FineIBT caller leaves
/// `r11` 16 bytes below the target, as compiled code, which loads the pointer for every call, never
/// reuses it; a register move, eliminated at rename on the cores measured here.
pub const FINEIBT_RELOAD: [u8; 3] = [0x4d, 0x89, 0xcb];

/// One flavor × scenario, emitted and ready to run. Owns its arena: every address it hands out is
/// valid while the probe lives.
#[derive(Debug)]
pub struct Probe {
    flavor: Flavor,
    scenario: Scenario,
    unroll: usize,
    ret: ReturnKind,
    placement: u32,
    return_thunk: Option<ReturnThunk>,
    arena: Arena,
    /// Entry points of the Single and Double loops.
    entries: [usize; 2],
    /// Calls per iteration of the Single and Double loops.
    calls: [usize; 2],
    sites: Vec<ProbeSite>,
    targets: Vec<Target>,
    thunk: Option<usize>,
    trampoline: Option<(usize, Insn)>,
    slot: Option<usize>,
    /// `call-depth` only: the `%fs:` offset of the depth counter the code updates.
    call_depth: Option<i32>,
    /// `its-thunk` only: each site's own thunk, in site order.
    its_thunks: Vec<usize>,
    /// Poly only: target index of each call of one sequence period, per body.
    selection: [Vec<u8>; 2],
    /// Poly only: the same as target addresses, which the generated code loads. Never read from Rust
    /// after emission, but must live (and stay put) as long as the code.
    tables: [Box<[u64]>; 2],
    symbols: Vec<Symbol>,
}

fn body(unroll: Unroll) -> usize {
    match unroll {
        Unroll::Single => 0,
        Unroll::Double => 1,
    }
}

impl Probe {
    /// Emits `flavor` in `scenario`. Errors: the combination does not exist (poly with a direct-style
    /// flavor), a parameter is out of range, or the arena cannot be mapped.
    pub fn new(flavor: Flavor, scenario: Scenario, options: &EmitOptions) -> Result<Probe, EmitError> {
        let (unroll, calls) = check(flavor, scenario, options.unroll)?;
        if !options.ret.crosses(flavor) {
            return Err(EmitError::Unsupported {
                flavor: flavor.name().into(),
                scenario: format!("{scenario} returning `{}`", options.ret),
                why: "no kernel combines that call with that return (see ReturnKind::crosses)".into(),
            });
        }
        if options.placement > ret::MAX_PLACEMENT {
            return Err(EmitError::Bad(format!(
                "placement {} is outside 0..={}",
                options.placement,
                ret::MAX_PLACEMENT
            )));
        }
        let emitted_calls = match scenario {
            Scenario::Sites(n) => n,
            _ => 3 * options.unroll,
        };
        // One line per site, its selection load, and an ITS thunk of its own (`its-thunk`).
        // Fixed placement: the same virtual addresses in every run, so two runs time the same layout.
        let extra = ret::arena_bytes(options.ret, options.placement);
        let mut arena = Arena::new_fixed((64 << 10) + extra + emitted_calls * (CACHE_LINE + 32), options.mode)?;
        let selection = [0, 1].map(|b| scenario.sequence(calls[b]).unwrap_or_default());

        // Front to back: the return thunk, targets, what the flavor's sites go through, the two loops.
        let mut l = Layout::new(&mut arena, flavor, scenario, options.ret);
        l.return_thunk = ret::emit_thunk(&mut l.e, options.ret, options.placement, &mut l.symbols)?;
        l.targets(options.placement)?;
        l.its_thunks(emitted_calls)?;
        // Poly: each loop's selection as target addresses, which its code loads.
        let tables =
            [0, 1].map(|b| selection[b].iter().map(|&t| l.targets[t as usize].addr as u64).collect::<Box<[u64]>>());
        l.pointer_slot()?;
        l.retpoline_thunk()?;
        l.trampoline()?;
        let entries = match scenario {
            Scenario::Sites(n) => l.shared_sites_loop(n)?,
            _ => [
                l.timed_loop(Unroll::Single, calls[0], &tables[0])?,
                l.timed_loop(Unroll::Double, calls[1], &tables[1])?,
            ],
        };
        let Layout { targets, slot, thunk, trampoline, sites, symbols, return_thunk, call_depth, its_thunks, .. } = l;

        arena.seal()?;
        emulate_trap_sites(&sites)?;
        Ok(Probe {
            flavor,
            scenario,
            unroll,
            ret: options.ret,
            placement: options.placement,
            return_thunk,
            arena,
            entries,
            calls,
            sites,
            targets,
            thunk,
            trampoline,
            slot,
            call_depth,
            its_thunks,
            selection,
            tables,
            symbols,
        })
    }
}

/// `trap` sites: the SIGTRAP handler emulates `call to` at each, for as long as the probe lives (its
/// `Drop` forgets them).
fn emulate_trap_sites(sites: &[ProbeSite]) -> Result<(), EmitError> {
    for s in sites {
        if let SiteForm::TrapCall { to } = s.form {
            // SAFETY: `s.addr` is a site this probe emitted (its `cc` + rel32) in its own arena, and the
            // loop that runs it expects `call to` there; Drop forgets it before unmapping.
            unsafe { crate::patch::emulate_forever(s.addr, Insn::Call(to)) }
                .map_err(|e| EmitError::Bad(e.to_string()))?;
        }
    }
    Ok(())
}

/// Refuses a combination that does not exist or a U out of range; returns U for the harness and the
/// calls per iteration of the Single and Double loops.
fn check(flavor: Flavor, scenario: Scenario, u: usize) -> Result<(usize, [usize; 2]), EmitError> {
    scenario.validate().map_err(EmitError::Bad)?;
    if !scenario.supports(flavor) {
        return Err(EmitError::Unsupported {
            flavor: flavor.name().into(),
            scenario: scenario.to_string(),
            why: "a direct-style site has one target; changing it means patching (poly needs an indirect flavor)"
                .into(),
        });
    }
    if !(1..=MAX_UNROLL).contains(&u) {
        return Err(EmitError::Bad(format!("unroll {u} is outside 1..={MAX_UNROLL}")));
    }
    if scenario.is_poly() && !u.is_power_of_two() {
        return Err(EmitError::Bad(format!("unroll {u} must be a power of two for poly scenarios")));
    }
    Ok(match scenario {
        Scenario::Sites(n) => (n, [n, 2 * n]),
        _ => (u, [u, 2 * u]),
    })
}

/// One probe being laid into its arena, front to back: what [`Probe::new`] has emitted so far and
/// where, so each step can refer to the addresses of the earlier ones.
struct Layout<'a> {
    e: Emitter<'a>,
    flavor: Flavor,
    scenario: Scenario,
    ret: ReturnKind,
    targets: Vec<Target>,
    slot: Option<usize>,
    thunk: Option<usize>,
    trampoline: Option<(usize, Insn)>,
    return_thunk: Option<ReturnThunk>,
    /// `call-depth`: the depth counter's `%fs:` offset.
    call_depth: Option<i32>,
    /// `its-thunk`: one thunk per site, in site order (site j takes `its_thunks[j]`).
    its_thunks: Vec<usize>,
    sites: Vec<ProbeSite>,
    symbols: Vec<Symbol>,
}

impl<'a> Layout<'a> {
    fn new(arena: &'a mut Arena, flavor: Flavor, scenario: Scenario, ret: ReturnKind) -> Self {
        Layout {
            e: Emitter::new(arena),
            flavor,
            scenario,
            ret,
            targets: Vec::new(),
            slot: None,
            thunk: None,
            trampoline: None,
            return_thunk: None,
            call_depth: None,
            its_thunks: Vec::new(),
            sites: Vec::new(),
            symbols: Vec::new(),
        }
    }

    /// The targets, `add rdx, w` and the return ([`ret::emit_return`]) with w = 1, 2, …, each on its
    /// own 16 bytes, so the sum a loop returns says which targets it really called; the first at
    /// [`ret::target_skip`] bytes past a line start. For the ITS kinds each target has a line of its
    /// own and starts in the half its kind names (byte 0 or 16 for `its-lower`, 32 or 48 for
    /// `its-upper`, alternating with the placement), so its 4-byte `add` leaves the return there too.
    fn targets(&mut self, placement: u32) -> Result<(), EmitError> {
        let line = self.e.align_int3(64)?;
        let its_half = match self.ret {
            ReturnKind::ItsLower => Some(0),
            ReturnKind::ItsUpper => Some(ITS_HALF),
            _ => None,
        };
        let first = match its_half {
            Some(_) => line + placement as usize * 1024,
            None => line + ret::target_skip(placement),
        };
        self.e.skip_int3(first)?;
        let preamble = if self.flavor.target_in_r11() || self.ret == ReturnKind::CallDepth { 16 } else { 0 };
        let thunk = self.return_thunk;
        for i in 0..self.scenario.targets() {
            let weight = i as u64 + 1;
            match its_half {
                Some(half) => {
                    let line = self.e.align_int3(64)?;
                    self.e.skip_int3(line + 64 + half + (placement as usize % 2) * 16 - preamble)?;
                }
                None => {
                    self.e.align_int3(16)?;
                }
            }
            if self.flavor == Flavor::Fineibt {
                self.e.raw(&fineibt_preamble(KCFI_HASH))?;
            } else if self.flavor.target_in_r11() {
                self.kcfi_preamble()?;
            } else if self.ret == ReturnKind::CallDepth {
                self.call_thunk()?;
            }
            let (addr, _) = self.e.asm(|a, _: &mut [CodeLabel; 0]| {
                a.add(rdx, weight as i32)?;
                ret::emit_return(a, thunk.as_ref())
            })?;
            self.symbols.push(Symbol { addr, len: self.e.here() - addr, name: format!("callpatch_target_{i}") });
            self.targets.push(Target { addr, weight });
        }
        Ok(())
    }

    /// The call thunk of the target that follows, as arch/x86/kernel/callthunks.c (Linux 6.12) writes
    /// it into the 16 bytes of padding before a function: `sarq $5` on the depth counter in the last
    /// [`CALL_DEPTH_ACCOUNT_LEN`] bytes (the rest `int3` here, never executed), falling through into the
    /// function. Direct calls are redirected to it ([`Layout::call_entry`]).
    fn call_thunk(&mut self) -> Result<(), EmitError> {
        let depth = self.depth()?;
        self.e.skip_int3(self.e.here() + 16 - CALL_DEPTH_ACCOUNT_LEN)?;
        let (at, _) = self.e.asm(|a, _: &mut [CodeLabel; 0]| ret::call_depth_account(a, depth))?;
        debug_assert_eq!(self.e.here() - at, CALL_DEPTH_ACCOUNT_LEN);
        Ok(())
    }

    /// The depth counter's `%fs:` offset, read once per probe.
    fn depth(&mut self) -> Result<i32, EmitError> {
        let depth = ret::call_depth_disp()?;
        self.call_depth = Some(depth);
        Ok(depth)
    }

    /// Where a direct call to the first target goes: the target, or with `call-depth` its call thunk.
    fn call_entry(&self) -> usize {
        match self.ret {
            ReturnKind::CallDepth => self.targets[0].addr - CALL_DEPTH_ACCOUNT_LEN,
            _ => self.targets[0].addr,
        }
    }

    /// `its-thunk`: one thunk per site, `jmp *%rax; int3`, laid out as arch/x86/kernel/alternative.c
    /// `its_allocate_thunk` (Linux 6.15) does in its own pages: from byte 32 of a fresh page, each next
    /// thunk moved to the next line's upper half when its last byte would fall in a lower half. One per
    /// site, not one shared, so each keeps its own prediction, as the kernel intends.
    fn its_thunks(&mut self, sites: usize) -> Result<(), EmitError> {
        if self.flavor != Flavor::ItsThunk {
            return Ok(());
        }
        let page = self.e.align_int3(4096)?;
        let (size, mut offset) = (3, ITS_HALF);
        for j in 0..sites {
            if (offset + size - 1) % CACHE_LINE < ITS_HALF {
                offset = ((offset - 1) | (CACHE_LINE - 1)) + ITS_HALF + 1;
            }
            self.e.skip_int3(page + offset)?;
            let (at, _) = self.e.asm(|a, _: &mut [CodeLabel; 0]| {
                a.jmp(rax)?;
                a.int3()
            })?;
            debug_assert_eq!(self.e.here() - at, size);
            self.symbols.push(Symbol { addr: at, len: size, name: format!("its_thunk_rax_{j}") });
            self.its_thunks.push(at);
            offset += size;
        }
        Ok(())
    }

    /// The kCFI preamble of the target that follows, as arch/x86/include/asm/cfi.h (Linux 6.12) lays
    /// out `__cfi_\func`: `movl $hash, %eax` and 11 bytes of NOPs, 16 bytes before the function (call
    /// padding), so the hash is at −15, where the caller's check reads it.
    fn kcfi_preamble(&mut self) -> Result<(), EmitError> {
        let mut preamble = vec![0xb8];
        preamble.extend_from_slice(&KCFI_HASH.to_le_bytes());
        preamble.extend_from_slice(&[0x90; 11]);
        self.e.raw(&preamble)?;
        Ok(())
    }

    /// `indirect-mem` outside poly: the pointer slot `call *slot(%rip)` reads, alone in its line
    /// (data, never executed), holding the first target.
    fn pointer_slot(&mut self) -> Result<(), EmitError> {
        if self.flavor == Flavor::IndirectMem && !self.scenario.is_poly() {
            self.e.align_int3(64)?;
            self.slot = Some(self.e.raw(&(self.targets[0].addr as u64).to_le_bytes())?);
            self.e.align_int3(64)?;
        }
        Ok(())
    }

    /// `retpoline`: the thunk as arch/x86/lib/retpoline.S (Linux 6.12) builds `__x86_indirect_thunk_rax`,
    /// `RETPOLINE` = `POLINE` + `RET`: `call 1f; int3; 1: mov %rax, (%rsp)` and the thunk's own return.
    /// The `call` pushes a return address whose prediction (the RSB) lands on the `int3` (a `pause;
    /// lfence` capture loop before Linux 6.2), while the real return goes to `rax`: the indirect branch
    /// is never predicted. In a kernel built with return thunks `RET` is `jmp __x86_return_thunk`
    /// (arch/x86/include/asm/linkage.h), a return site `apply_returns` patches like any other: so the
    /// thunk returns the way every target does ([`ret::emit_return`]), and a retpolined call passes the
    /// return thunk twice. Under `call-depth` the kernel redirects the call to
    /// `__x86_indirect_call_thunk_rax`: the accounting, `POLINE`, and a plain `ret`
    /// (`ANNOTATE_UNRET_SAFE`); the call lands on the function itself. `kcfi-retpoline` gets the same
    /// thunks for `r11`.
    fn retpoline_thunk(&mut self) -> Result<(), EmitError> {
        let reg: AsmRegister64 = match self.flavor {
            Flavor::Retpoline => rax,
            Flavor::KcfiRetpoline => r11,
            _ => return Ok(()),
        };
        let depth = if self.ret == ReturnKind::CallDepth { Some(self.depth()?) } else { None };
        let returns = if depth.is_some() { None } else { self.return_thunk };
        self.e.align_int3(32)?;
        let (at, _) = self.e.asm(|a, [do_rop]: &mut [CodeLabel; 1]| {
            if let Some(depth) = depth {
                ret::call_depth_account(a, depth)?;
            }
            a.call(*do_rop)?;
            a.int3()?;
            a.set_label(do_rop)?;
            a.mov(qword_ptr(rsp), reg)?;
            ret::emit_return(a, returns.as_ref())
        })?;
        let name = format!(
            "__x86_indirect_{}thunk_{}",
            if depth.is_some() { "call_" } else { "" },
            if reg == rax { "rax" } else { "r11" }
        );
        self.symbols.push(Symbol { addr: at, len: self.e.here() - at, name });
        self.thunk = Some(at);
        Ok(())
    }

    /// `trampoline`: the static-call trampoline, one `jmp rel32` to the first target (exact bytes, the
    /// patch point), then int3 padding.
    fn trampoline(&mut self) -> Result<(), EmitError> {
        if self.flavor != Flavor::Trampoline {
            return Ok(());
        }
        self.e.align_int3(16)?;
        let at = self.e.here();
        let jmp = Insn::Jmp(self.call_entry());
        self.e.raw(&insn::encode(jmp, at)?)?;
        self.symbols.push(Symbol { addr: at, len: insn::REL32_LEN, name: "callpatch_trampoline".into() });
        self.trampoline = Some((at, jmp));
        Ok(())
    }

    /// The register a register flavor calls through: `rax`, or `r11` for the kCFI flavors.
    fn target_reg(&self) -> Option<AsmRegister64> {
        match (self.flavor.target_in_rax(), self.flavor.target_in_r11()) {
            (true, _) => Some(rax),
            (_, true) => Some(r11),
            _ => None,
        }
    }

    /// The target and its register, loaded once before a loop (register flavors outside poly, where
    /// each call loads its own). `fineibt` consumes `r11` (its caller subtracts 16), so its target is
    /// kept in `r9` and copied to `r11` before each call ([`FINEIBT_RELOAD`]).
    fn rax_target(&self) -> Option<(AsmRegister64, u64)> {
        let reg = self.target_reg().filter(|_| !self.scenario.is_poly())?;
        let reg = if self.flavor == Flavor::Fineibt { r9 } else { reg };
        Some((reg, self.targets[0].addr as u64))
    }

    /// Base name of the loops' symbols, e.g. `callpatch_indirect_poly_rr_4`.
    fn loop_name(&self) -> String {
        format!("callpatch_{}_{}", self.flavor.name(), self.scenario.to_string().replace('-', "_"))
    }

    /// One timed loop (mono, poly, offset): prologue, loop top, `calls` sites, tail; returns its entry.
    fn timed_loop(&mut self, unroll: Unroll, calls: usize, table: &[u64]) -> Result<usize, EmitError> {
        let entry = self.loop_prologue(table.as_ptr() as u64)?;
        let top = self.loop_top()?;
        self.sites(calls)?;
        self.loop_tail(top, calls)?;
        let tag = ["u", "2u"][body(unroll)];
        self.symbols.push(Symbol {
            addr: entry,
            len: self.e.here() - entry,
            name: format!("{}_{tag}", self.loop_name()),
        });
        Ok(entry)
    }

    /// A timed loop's prologue, at a fresh line: save `rbx`, zero the accumulator and the selection
    /// index, then load the selection table (poly) or the target (`rax` flavors).
    fn loop_prologue(&mut self, table: u64) -> Result<usize, EmitError> {
        let (poly, rax_target) = (self.scenario.is_poly(), self.rax_target());
        self.e.align_int3(64)?;
        let (entry, _) = self.e.asm(|a, _: &mut [CodeLabel; 0]| {
            a.push(rbx)?;
            a.xor(edx, edx)?;
            a.xor(ecx, ecx)?;
            if poly {
                a.mov(rbx, table)?;
            }
            if let Some((reg, t)) = rax_target {
                a.mov(reg, t)?;
            }
            Ok(())
        })?;
        Ok(entry)
    }

    /// The loop top: executed NOPs up to the next line, so the first site starts its own line too.
    fn loop_top(&mut self) -> Result<usize, EmitError> {
        self.e.align_nop(64)
    }

    /// `n` sites, each starting its own line (at byte B for `offset-B`, see the module docs), in poly
    /// preceded by the load of its target from the selection table (`rax` flavors).
    fn sites(&mut self, n: usize) -> Result<(), EmitError> {
        let line_offset = match self.scenario {
            Scenario::Offset(b) => Some(b),
            _ => Some(0),
        };
        for j in 0..n {
            let selection = self.scenario.is_poly().then_some(8 * j as i32);
            let lead = match (selection, self.target_reg()) {
                (Some(disp), Some(reg)) => Emitter::assemble_anywhere(|a| a.mov(reg, qword_ptr(rbx + rcx + disp)))?,
                (None, _) if self.flavor == Flavor::Fineibt => FINEIBT_RELOAD.to_vec(),
                _ => Vec::new(),
            };
            let its_thunk = self.its_thunks.get(self.sites.len()).copied().unwrap_or(0);
            let to = CallTo {
                target: self.call_entry(),
                thunk: self.thunk.unwrap_or(0),
                trampoline: self.trampoline.map_or(0, |(t, _)| t),
                slot: self.slot.unwrap_or(0),
                its_thunk,
                selection,
            };
            let form = self.flavor.site_form(&to);
            let (addr, len) = self.e.site(&lead, form, line_offset)?;
            self.sites.push(ProbeSite { addr, len, form });
        }
        Ok(())
    }

    /// A timed loop's tail: advance the selection index by one slot per call, wrapping the table
    /// (poly), `dec rdi; jnz top`, then return the accumulator and restore `rbx`.
    fn loop_tail(&mut self, top: usize, calls: usize) -> Result<(), EmitError> {
        let poly = self.scenario.is_poly();
        let advance = (8 * calls) as i32;
        self.e.asm(|a, _: &mut [CodeLabel; 0]| {
            if poly {
                a.add(rcx, advance)?;
                a.and(rcx, (8 * SEQUENCE_LEN - 1) as i32)?;
            }
            a.dec(rdi)?;
            a.jnz(top as u64)?;
            a.mov(rax, rdx)?;
            a.pop(rbx)?;
            a.ret()
        })?;
        Ok(())
    }

    /// `sites-N`: one body of N sites with two entries, `rsi` = passes over it per iteration (1 or 2),
    /// so the Single and Double loops run the very same N sites; returns the two entries.
    fn shared_sites_loop(&mut self, n: usize) -> Result<[usize; 2], EmitError> {
        let (double, single) = self.shared_prologue()?;
        let (outer, _) = self.e.asm(|a, _: &mut [CodeLabel; 0]| a.mov(r8, rsi))?;
        let pass = self.loop_top()?;
        self.sites(n)?;
        self.shared_tail(pass, outer)?;
        self.symbols.push(Symbol { addr: double, len: self.e.here() - double, name: self.loop_name() });
        Ok([single, double])
    }

    /// The `sites-N` prologue, at a fresh line: the Double entry sets 2 passes and the Single entry 1,
    /// then both save `rbx`, zero the accumulator and load the target (`rax` flavors); returns the
    /// (Double, Single) entries.
    fn shared_prologue(&mut self) -> Result<(usize, usize), EmitError> {
        let rax_target = self.rax_target();
        self.e.align_int3(64)?;
        let (double, [single, _]) = self.e.asm(|a, [single, common]: &mut [CodeLabel; 2]| {
            a.mov(esi, 2)?;
            a.jmp(*common)?;
            a.set_label(single)?;
            a.mov(esi, 1)?;
            a.set_label(common)?;
            a.push(rbx)?;
            a.xor(edx, edx)?;
            a.xor(ecx, ecx)?;
            if let Some((reg, t)) = rax_target {
                a.mov(reg, t)?;
            }
            Ok(())
        })?;
        Ok((double, single))
    }

    /// The `sites-N` tail: `dec r8; jnz pass` for the passes, `dec rdi; jnz outer` for the
    /// iterations, then return the accumulator and restore `rbx`.
    fn shared_tail(&mut self, pass: usize, outer: usize) -> Result<(), EmitError> {
        self.e.asm(|a, _: &mut [CodeLabel; 0]| {
            a.dec(r8)?;
            a.jnz(pass as u64)?;
            a.dec(rdi)?;
            a.jnz(outer as u64)?;
            a.mov(rax, rdx)?;
            a.pop(rbx)?;
            a.ret()
        })?;
        Ok(())
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        if self.flavor == Flavor::Trap {
            // The arena is about to be unmapped: its addresses are no longer trap sites.
            // SAFETY: `&mut self`: no thread runs this probe's loops any more.
            unsafe { crate::patch::forget_sites(self.arena.base(), self.arena.len()) };
        }
    }
}

impl Probe {
    /// The flavor.
    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    /// The scenario.
    pub fn scenario(&self) -> Scenario {
        self.scenario
    }

    /// U for the harness: calls per iteration of the Single loop (N for `sites-N`); Double has 2U.
    pub fn unroll(&self) -> usize {
        self.unroll
    }

    /// Calls per iteration of the given loop.
    pub fn calls_per_iteration(&self, unroll: Unroll) -> usize {
        self.calls[body(unroll)]
    }

    /// Runs the Single or Double loop for `iters` iterations and returns the accumulated weights of
    /// every target called (0 for `iters == 0`, which does not enter the code).
    pub fn run(&self, unroll: Unroll, iters: u64) -> u64 {
        if iters == 0 {
            return 0;
        }
        // The code updates the depth counter at the offset it was emitted with: this thread's must be
        // there (it is, for the executable's static TLS; a counter in dynamic TLS would not be).
        if let Some(offset) = self.call_depth {
            assert_eq!(ret::call_depth_offset(), Some(offset), "the call depth counter moved between threads");
        }
        // SAFETY: the entry is the start of a function this probe emitted into its own arena (which
        // lives as long as `self`) following the sysv64 ABI: it saves the one callee-saved register it
        // uses (rbx), touches only its own arena, the selection table owned by `self` and the stack
        // below its return address, keeps the stack balanced, and returns with `ret`. It loops exactly
        // `iters` times (≥ 1, checked above).
        let f: extern "sysv64" fn(u64) -> u64 = unsafe { std::mem::transmute(self.entries[body(unroll)]) };
        f(iters)
    }

    /// What [`Probe::run`] must return: the sum (mod 2^64) of the weights of the targets the loop's
    /// calls are meant to reach, computed from the scenario's sequence, not from the code.
    pub fn expected(&self, unroll: Unroll, iters: u64) -> u64 {
        let b = body(unroll);
        let total = iters.wrapping_mul(self.calls[b] as u64);
        let sel = &self.selection[b];
        if sel.is_empty() {
            return total.wrapping_mul(self.targets[0].weight);
        }
        let w = |t: &u8| self.targets[*t as usize].weight;
        let period: u64 = sel.iter().map(w).sum();
        let len = sel.len() as u64;
        let tail: u64 = sel[..(total % len) as usize].iter().map(w).sum();
        (total / len).wrapping_mul(period).wrapping_add(tail)
    }

    /// Runs both loops (poly: over one full selection period and into the next) and checks each
    /// returns [`Probe::expected`]: the emitted code calls what the scenario says, no more, no less.
    pub fn verify(&self) -> Result<(), String> {
        for unroll in [Unroll::Single, Unroll::Double] {
            let iters = match self.scenario.is_poly() {
                true => (SEQUENCE_LEN / self.calls[body(unroll)]) as u64 + 3,
                false => 3,
            };
            let (got, want) = (self.run(unroll, iters), self.expected(unroll, iters));
            if got != want {
                return Err(format!(
                    "{} {}: {unroll:?} loop returned {got} after {iters} iterations, expected {want}",
                    self.flavor, self.scenario
                ));
            }
        }
        Ok(())
    }

    /// Every call site of both loops (for `sites-N`, the N shared sites), in address order.
    pub fn sites(&self) -> &[ProbeSite] {
        &self.sites
    }

    /// The targets, in weight order (one for every scenario but poly-K, which has K).
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// How every target returns.
    pub fn ret(&self) -> ReturnKind {
        self.ret
    }

    /// The placement of targets and thunks ([`super::ret`]).
    pub fn placement(&self) -> u32 {
        self.placement
    }

    /// The return thunk the targets jump to (`None` for `ret`).
    pub fn return_thunk(&self) -> Option<ReturnThunk> {
        self.return_thunk
    }

    /// The retpoline thunk's address (`retpoline` only).
    pub fn thunk(&self) -> Option<usize> {
        self.thunk
    }

    /// The trampoline's address and its `jmp` (`trampoline` only): the patch point of an out-of-line
    /// static call.
    pub fn trampoline(&self) -> Option<(usize, Insn)> {
        self.trampoline
    }

    /// Each site's own ITS thunk, in the order of [`Probe::sites`] (`its-thunk` only; empty otherwise).
    pub fn its_thunks(&self) -> &[usize] {
        &self.its_thunks
    }

    /// The `%fs:` offset of the call depth counter this probe's code updates (`call-depth` only).
    pub fn call_depth(&self) -> Option<i32> {
        self.call_depth
    }

    /// The pointer slot of `call *slot(%rip)` (`indirect-mem` outside poly).
    pub fn slot(&self) -> Option<usize> {
        self.slot
    }

    /// For poly scenarios, the target index of every call of one period of the Single or Double
    /// loop's sequence (empty otherwise).
    pub fn selection(&self, unroll: Unroll) -> &[u8] {
        &self.selection[body(unroll)]
    }

    /// Named code ranges (targets, thunk, trampoline, the loops), for a perf map.
    pub fn symbols(&self) -> &[Symbol] {
        &self.symbols
    }

    /// The arena holding all of this probe's code (for a [`super::TextWriter`] or reading bytes).
    pub fn arena(&self) -> &Arena {
        &self.arena
    }

    /// Address of the poly selection table of a loop (`None` outside poly); the code reads it.
    pub fn table(&self, unroll: Unroll) -> Option<usize> {
        let t = &self.tables[body(unroll)];
        (!t.is_empty()).then_some(t.as_ptr() as usize)
    }
}
