//! Emitted probes: every site is exactly its flavor's instruction, every loop calls what its scenario
//! says (checked through the targets' weights, by running the code), and placement is exact.

use std::collections::BTreeSet;

use callpatch_probes::code::flavor::KCFI_HASH;
use callpatch_probes::code::{
    decode, ArenaMode, EmitError, EmitOptions, Flavor, Insn, Order, Probe, Scenario, SiteForm, CACHE_LINE,
};
use callpatch_probes::measure::Unroll;
use iced_x86::{Code, Decoder, DecoderOptions, Instruction, Mnemonic, Register};

fn build(flavor: Flavor, scenario: Scenario) -> Probe {
    Probe::new(flavor, scenario, &EmitOptions::default()).unwrap_or_else(|e| panic!("{flavor} {scenario}: {e}"))
}

fn supported(scenarios: &[Scenario]) -> impl Iterator<Item = (Flavor, Scenario)> + '_ {
    Flavor::ALL.into_iter().flat_map(move |f| scenarios.iter().filter(move |s| s.supports(f)).map(move |s| (f, *s)))
}

fn decode_one(p: &Probe, addr: usize) -> Instruction {
    let bytes = p.arena().read(addr, 15.min(p.arena().base() + p.arena().len() - addr));
    Decoder::with_ip(64, &bytes, addr as u64, DecoderOptions::NONE).decode()
}

#[test]
#[ignore = "prints a disassembly for eyeballing"]
fn show() {
    use iced_x86::{Formatter, IntelFormatter};
    let p = Probe::new(Flavor::Retpoline, POLY[0], &EmitOptions { unroll: 2, ..EmitOptions::default() }).unwrap();
    let base = p.arena().base();
    let bytes = p.arena().read(base, 1024);
    let mut f = IntelFormatter::new();
    for i in Decoder::with_ip(64, &bytes, base as u64, DecoderOptions::NONE).iter() {
        if i.code() == Code::Int3 {
            continue;
        }
        let mut s = String::new();
        f.format(&i, &mut s);
        println!("{:x} {s}", i.ip());
    }
}

const POLY: [Scenario; 2] =
    [Scenario::Poly { k: 4, order: Order::RoundRobin }, Scenario::Poly { k: 16, order: Order::Random }];

#[test]
fn every_site_decodes_to_exactly_its_flavor_instruction_length_and_target() {
    let scenarios = [Scenario::Mono, POLY[0], POLY[1], Scenario::Sites(100), Scenario::Offset(0), Scenario::Offset(61)];
    for (flavor, scenario) in supported(&scenarios) {
        let p = build(flavor, scenario);
        let target = p.targets()[0].addr;
        let expect_len = match scenario {
            Scenario::Sites(n) => n,
            _ => 3 * p.unroll(),
        };
        assert_eq!(p.sites().len(), expect_len, "{flavor} {scenario}");
        for (i, site) in p.sites().iter().enumerate() {
            let bytes = p.arena().read(site.addr, site.len);
            assert_eq!(SiteForm::decode(&bytes, site.addr), Some((site.form, site.len)), "{flavor} {scenario}");
            // Call j of a loop selects slot 8j; the Single loop's U sites come first, then Double's 2U.
            let j = if i < p.unroll() { i } else { i - p.unroll() };
            let expect = match (flavor, scenario.is_poly()) {
                (Flavor::Direct | Flavor::Inline, _) => SiteForm::Call { to: target },
                (Flavor::CsInline, _) => SiteForm::CsCall { to: target },
                (Flavor::Trap, _) => SiteForm::TrapCall { to: target },
                (Flavor::Trampoline, _) => SiteForm::Call { to: p.trampoline().unwrap().0 },
                (Flavor::Retpoline, _) => SiteForm::Call { to: p.thunk().unwrap() },
                (Flavor::Indirect, _) => SiteForm::CallRax,
                (Flavor::Lfence, _) => SiteForm::LfenceCallRax,
                (Flavor::IndirectMem, false) => SiteForm::CallRipSlot { slot: p.slot().unwrap() },
                (Flavor::IndirectMem, true) => SiteForm::CallSelected { disp: 8 * j as i32 },
                (Flavor::Kcfi, _) => SiteForm::KcfiCallR11 { hash: KCFI_HASH },
                (Flavor::KcfiRetpoline, _) => SiteForm::KcfiCallThunk { hash: KCFI_HASH, thunk: p.thunk().unwrap() },
                (Flavor::Fineibt, _) => SiteForm::FineibtCallR11 { hash: KCFI_HASH },
                (Flavor::ItsThunk, _) => SiteForm::Call { to: p.its_thunks()[i] },
            };
            assert_eq!(site.form, expect, "{flavor} {scenario} site {i}");
            // The exact bytes the flavor table promises.
            let head: &[u8] = match site.form {
                SiteForm::Call { .. } => &[0xe8],
                SiteForm::CsCall { .. } => &[0x2e, 0xe8],
                SiteForm::TrapCall { .. } => &[0xcc],
                SiteForm::CallRax => &[0xff, 0xd0],
                SiteForm::LfenceCallRax => &[0x0f, 0xae, 0xe8, 0xff, 0xd0],
                SiteForm::CallRipSlot { .. } => &[0xff, 0x15],
                SiteForm::CallSelected { .. } => &[0xff],
                SiteForm::KcfiCallR11 { .. } | SiteForm::KcfiCallThunk { .. } | SiteForm::FineibtCallR11 { .. } => {
                    &[0x41, 0xba]
                }
            };
            assert!(bytes.starts_with(head), "{flavor} {scenario}: {bytes:02x?}");
            let want_len = match site.form {
                SiteForm::Call { .. } | SiteForm::TrapCall { .. } => 5,
                SiteForm::CsCall { .. } => 6,
                SiteForm::CallRax => 2,
                SiteForm::LfenceCallRax => 5,
                SiteForm::CallRipSlot { .. } => 6,
                SiteForm::CallSelected { disp } => 4 + 3 * usize::from(disp > 127),
                SiteForm::KcfiCallR11 { .. } => 14 + 3,
                SiteForm::KcfiCallThunk { .. } => 14 + 6,
                SiteForm::FineibtCallR11 { .. } => 19,
            };
            assert_eq!(site.len, want_len, "{flavor} {scenario}");
            // Patchable forms round-trip through the patcher's own decoder.
            if let Some(insn) = site.form.insn() {
                assert_eq!(decode(&bytes, site.addr), Some(insn));
            }
        }
        // Indirection points hold what they must.
        if let Some(slot) = p.slot() {
            assert_eq!(p.arena().read(slot, 8), (target as u64).to_le_bytes());
        }
        if let Some((t, jmp)) = p.trampoline() {
            assert_eq!(jmp, Insn::Jmp(target));
            assert_eq!(decode(&p.arena().read(t, 5), t), Some(Insn::Jmp(target)));
        }
        if let Some(thunk) = p.thunk() {
            let reg = if flavor.target_in_r11() { Register::R11 } else { Register::RAX };
            check_retpoline_thunk(&p, thunk, reg);
        }
    }
}

/// `call 1f; int3; 1: mov %reg,(%rsp); ret` (the probes here return with `ret`).
fn check_retpoline_thunk(p: &Probe, thunk: usize, reg: Register) {
    let bytes = p.arena().read(thunk, 32);
    let insns: Vec<_> = Decoder::with_ip(64, &bytes, thunk as u64, DecoderOptions::NONE).iter().take(4).collect();
    let codes: Vec<_> = insns.iter().map(|i| i.code()).collect();
    assert_eq!(codes, [Code::Call_rel32_64, Code::Int3, Code::Mov_rm64_r64, Code::Retnq]);
    assert_eq!(insns[0].near_branch_target(), insns[2].ip(), "the call pushes the int3's address");
    assert_eq!((insns[2].memory_base(), insns[2].op1_register()), (Register::RSP, reg));
}

#[test]
fn poly_rax_sites_are_preceded_by_the_same_selection_load() {
    for flavor in [Flavor::Indirect, Flavor::Retpoline, Flavor::Lfence] {
        let p = build(flavor, POLY[1]);
        for (j, site) in p.sites()[..p.unroll()].iter().enumerate() {
            let disp = 8 * j as i64;
            let len = if disp == 0 {
                4
            } else if disp < 128 {
                5
            } else {
                8
            };
            let mov = decode_one(&p, site.addr - len);
            assert_eq!(mov.mnemonic(), Mnemonic::Mov, "{flavor} site {j}");
            assert_eq!(mov.len(), len);
            assert_eq!(
                (mov.op0_register(), mov.memory_base(), mov.memory_index(), mov.memory_displacement64() as i64),
                (Register::RAX, Register::RBX, Register::RCX, disp)
            );
        }
    }
}

#[test]
fn every_flavor_returns_its_targets_results_in_every_scenario() {
    let scenarios = [Scenario::Mono, POLY[0], POLY[1], Scenario::Sites(64), Scenario::Offset(62)];
    for (flavor, scenario) in supported(&scenarios) {
        let p = build(flavor, scenario);
        p.verify().unwrap();
        if !scenario.is_poly() {
            // One target of weight 1: the result counts the calls.
            let u = p.unroll() as u64;
            assert_eq!(p.run(Unroll::Single, 7), 7 * u, "{flavor} {scenario}");
            assert_eq!(p.run(Unroll::Double, 7), 14 * u, "{flavor} {scenario}");
        }
        assert_eq!(p.run(Unroll::Single, 0), 0);
    }
}

#[test]
fn poly_k_reaches_exactly_the_k_targets_its_sequence_names() {
    // With U = 1 every loop iteration is one call, so run(n) − run(n−1) is the weight of the target
    // the n-th call really reached: read the targets back from the code's own results.
    for flavor in Flavor::ALL.into_iter().filter(|f| f.is_indirect()) {
        for order in [Order::RoundRobin, Order::Random] {
            for k in Scenario::POLY_K {
                let scenario = Scenario::Poly { k, order };
                let p = Probe::new(flavor, scenario, &EmitOptions { unroll: 1, ..EmitOptions::default() }).unwrap();
                let weights: Vec<u64> = p.targets().iter().map(|t| t.weight).collect();
                assert_eq!(weights.iter().collect::<BTreeSet<_>>().len(), k);
                let mut reached = BTreeSet::new();
                let mut prev = 0;
                for n in 1..=(16 * k as u64) {
                    let now = p.run(Unroll::Single, n);
                    let w = now - prev;
                    prev = now;
                    let t = weights.iter().position(|&x| x == w).unwrap_or_else(|| panic!("{flavor} {scenario}: {w}"));
                    assert_eq!(t, p.selection(Unroll::Single)[n as usize - 1] as usize, "{flavor} {scenario} call {n}");
                    reached.insert(t);
                }
                assert_eq!(reached.len(), k, "{flavor} {scenario} reached {reached:?}");
            }
        }
    }
}

#[test]
fn offset_b_puts_every_site_at_byte_b_of_a_line() {
    for b in 0..CACHE_LINE {
        for flavor in Flavor::ALL.into_iter().filter(|f| Scenario::Offset(b).supports(*f)) {
            let p =
                Probe::new(flavor, Scenario::Offset(b), &EmitOptions { unroll: 4, ..EmitOptions::default() }).unwrap();
            assert_eq!(p.sites().len(), 12);
            for s in p.sites() {
                assert_eq!(s.addr % CACHE_LINE, b, "{flavor} offset-{b}");
            }
            p.verify().unwrap();
        }
    }
}

#[test]
fn sites_n_are_n_distinct_instructions_run_once_or_twice_per_iteration() {
    for flavor in [Flavor::Direct, Flavor::Lfence, Flavor::IndirectMem] {
        let n = 16384;
        let p = build(flavor, Scenario::Sites(n));
        let addrs: BTreeSet<usize> = p.sites().iter().map(|s| s.addr).collect();
        assert_eq!(addrs.len(), n);
        assert_eq!(p.unroll(), n);
        assert_eq!(p.calls_per_iteration(Unroll::Double), 2 * n);
        assert_eq!(p.run(Unroll::Single, 2), 2 * n as u64);
        assert_eq!(p.run(Unroll::Double, 2), 4 * n as u64);
    }
}

#[test]
fn every_arena_mode_runs_including_w_xor_x() {
    for mode in ArenaMode::ALL {
        for (flavor, scenario) in supported(&[Scenario::Mono, POLY[1]]) {
            let p = Probe::new(flavor, scenario, &EmitOptions { unroll: 8, mode, ..EmitOptions::default() }).unwrap();
            assert_eq!(p.arena().mode(), mode);
            p.verify().unwrap_or_else(|e| panic!("{mode:?}: {e}"));
        }
    }
}

#[test]
fn impossible_probes_are_typed_errors() {
    for flavor in [Flavor::Direct, Flavor::Trampoline, Flavor::Inline, Flavor::CsInline] {
        assert!(matches!(Probe::new(flavor, POLY[0], &EmitOptions::default()), Err(EmitError::Unsupported { .. })));
    }
    let bad = |s, u| {
        matches!(
            Probe::new(Flavor::Indirect, s, &EmitOptions { unroll: u, ..EmitOptions::default() }),
            Err(EmitError::Bad(_))
        )
    };
    assert!(bad(Scenario::Offset(64), 8));
    assert!(bad(Scenario::Sites(0), 8));
    assert!(bad(POLY[0], 24), "poly needs a power-of-two unroll");
    assert!(bad(Scenario::Mono, 0));
}

#[test]
fn symbols_cover_the_loops_and_targets() {
    let p = build(Flavor::Retpoline, POLY[0]);
    let names: Vec<_> = p.symbols().iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"__x86_indirect_thunk_rax"));
    assert!(names.contains(&"callpatch_retpoline_poly_rr_4_u") && names.contains(&"callpatch_retpoline_poly_rr_4_2u"));
    assert_eq!(names.iter().filter(|n| n.starts_with("callpatch_target_")).count(), 4);
    for s in p.symbols() {
        assert!(p.arena().contains(s.addr, s.len), "{s:?}");
    }
}

/// The bytes of the smallest loop, laid down step by step (prologue, NOP-padded loop top, one site,
/// tail): a change in any step's encoding shows here, not only in the sites.
#[test]
fn direct_mono_single_loop_is_exactly_these_bytes() {
    let p = Probe::new(Flavor::Direct, Scenario::Mono, &EmitOptions { unroll: 1, ..EmitOptions::default() }).unwrap();
    let sym = p.symbols().iter().find(|s| s.name == "callpatch_direct_mono_u").expect("the U loop's symbol");
    let (entry, top, target) = (sym.addr, sym.addr + CACHE_LINE, p.targets()[0].addr);
    assert_eq!(entry % CACHE_LINE, 0);
    let code = p.arena().read(entry, sym.len);
    let rel = |from: usize, to: usize| (to as i64 - from as i64) as i32;
    // push rbx; xor edx, edx; xor ecx, ecx
    assert_eq!(code[..5], [0x53, 0x31, 0xd2, 0x31, 0xc9]);
    // the site: call rel32 to the target, at the first byte of the next line
    let mut tail = vec![0xe8];
    tail.extend(rel(top + 5, target).to_le_bytes());
    // dec rdi; jnz top (near); mov rax, rdx; pop rbx; ret
    tail.extend([0x48, 0xff, 0xcf, 0x0f, 0x85]);
    tail.extend(rel(top + 14, top).to_le_bytes());
    tail.extend([0x48, 0x89, 0xd0, 0x5b, 0xc3]);
    assert_eq!(code[CACHE_LINE..], tail[..]);
}
