//! Return kinds: every target ends in exactly the return its kind names, each thunk holds the kernel's
//! instructions at the addresses the kernel places them, and every flavor × return kind × placement
//! calls and returns what it should (the weight sum, by running the code).

use callpatch_probes::code::ret::{
    call_depth, call_depth_offset, set_call_depth, target_skip, thunk_skip, CALL_DEPTH_ACCOUNT_LEN, ITS_HALF,
    SRSO_ALIAS_BITS,
};
use callpatch_probes::code::{EmitOptions, Flavor, Order, Probe, ReturnKind, Scenario, CACHE_LINE};
use iced_x86::{Code, Decoder, DecoderOptions, Instruction};

const SCENARIOS: [Scenario; 2] = [Scenario::Mono, Scenario::Poly { k: 4, order: Order::Random }];

fn options(ret: ReturnKind, placement: u32) -> EmitOptions {
    EmitOptions { unroll: 4, ret, placement, ..EmitOptions::default() }
}

/// The instructions at `addr` up to and including the first `ret`, `ud2` or `jmp`.
fn decode_until_branch(p: &Probe, addr: usize) -> Vec<Instruction> {
    let bytes = p.arena().read(addr, 32);
    let mut out = Vec::new();
    for i in Decoder::with_ip(64, &bytes, addr as u64, DecoderOptions::NONE).iter() {
        out.push(i);
        if matches!(i.code(), Code::Retnq | Code::Ud2 | Code::Jmp_rel32_64) {
            break;
        }
    }
    out
}

fn codes(insns: &[Instruction]) -> Vec<Code> {
    insns.iter().map(|i| i.code()).collect()
}

#[test]
fn every_flavor_returns_through_every_kind_at_every_placement() {
    for ret in ReturnKind::ALL {
        for placement in 0..4 {
            for scenario in SCENARIOS {
                let runs = |f: &Flavor| scenario.supports(*f) && *f != Flavor::Trap && ret.crosses(*f);
                for flavor in Flavor::ALL.into_iter().filter(runs) {
                    let p = Probe::new(flavor, scenario, &options(ret, placement))
                        .unwrap_or_else(|e| panic!("{flavor} {scenario} {ret} p{placement}: {e}"));
                    p.verify().unwrap_or_else(|e| panic!("{ret} p{placement}: {e}"));
                    assert_eq!((p.ret(), p.placement()), (ret, placement));
                }
            }
        }
    }
}

#[test]
fn targets_end_in_the_return_their_kind_names() {
    for ret in ReturnKind::ALL {
        let flavor = if ret.crosses(Flavor::Indirect) { Flavor::Indirect } else { Flavor::Retpoline };
        let p = Probe::new(flavor, SCENARIOS[1], &options(ret, 1)).unwrap();
        let slot = match ret {
            ReturnKind::ItsLower => 16,
            ReturnKind::ItsUpper => 48,
            // The call thunk takes the 16 bytes before the function.
            ReturnKind::CallDepth => (target_skip(1) + 16) % CACHE_LINE,
            _ => target_skip(1) % CACHE_LINE,
        };
        assert_eq!(p.targets()[0].addr % CACHE_LINE, slot, "{ret}");
        for t in p.targets() {
            let insns = decode_until_branch(&p, t.addr);
            let last = insns.last().unwrap();
            match p.return_thunk() {
                None => assert_eq!(codes(&insns), [Code::Add_rm64_imm8, Code::Retnq], "{ret}"),
                Some(thunk) => {
                    assert_eq!(codes(&insns), [Code::Add_rm64_imm8, Code::Jmp_rel32_64], "{ret}");
                    assert_eq!(last.near_branch_target() as usize, thunk.entry, "{ret}");
                }
            }
        }
    }
}

#[test]
fn thunks_hold_the_kernels_instructions_at_the_kernels_addresses() {
    for placement in 0..4 {
        let thunk = |ret| Probe::new(Flavor::Direct, Scenario::Mono, &options(ret, placement)).unwrap();
        let plain = thunk(ReturnKind::RetThunk);
        let t = plain.return_thunk().unwrap();
        assert_eq!(plain.arena().read(t.entry, 2), [0xc3, 0xcc], "__x86_return_thunk: ret; int3");
        assert_eq!(t.entry % 4096, thunk_skip(placement) % 4096);

        for ret in [ReturnKind::Srso, ReturnKind::SrsoAlias] {
            let p = thunk(ret);
            let t = p.return_thunk().unwrap();
            let (safe_ret, untrain) = (t.safe_ret.unwrap(), t.untrain.unwrap());
            // The thunk: call the safe return; ud2 (never reached: the safe return drops that frame).
            let body = decode_until_branch(&p, t.entry);
            assert_eq!(codes(&body), [Code::Call_rel32_64, Code::Ud2], "{ret}: {body:?}");
            assert_eq!(body[0].near_branch_target() as usize, safe_ret, "{ret}");
            assert_eq!(p.arena().read(t.entry + 5, 2), [0x0f, 0x0b], "{ret}: ud2 after the call");
            // The safe return: lea 8(%rsp), %rsp; ret; int3.
            assert_eq!(p.arena().read(safe_ret, 7), [0x48, 0x8d, 0x64, 0x24, 0x08, 0xc3, 0xcc], "{ret}");
            match ret {
                // srso_safe_ret is the immediate of srso_untrain_ret's movabs.
                ReturnKind::Srso => {
                    assert_eq!(safe_ret, untrain + 2);
                    let movabs = Decoder::with_ip(64, &p.arena().read(untrain, 10), 0, DecoderOptions::NONE).decode();
                    assert_eq!(movabs.code(), Code::Mov_r64_imm64);
                    assert_eq!(movabs.immediate64(), 0xcccc_c308_2464_8d48);
                }
                // vmlinux.lds.S: untrain page-aligned, the safe return at untrain | bits 2, 8, 14, 20.
                _ => {
                    assert_eq!(untrain % 4096, 0);
                    assert_eq!(safe_ret, untrain | SRSO_ALIAS_BITS);
                    assert_eq!(SRSO_ALIAS_BITS, 0x10_4104, "bits 2, 8, 14, 20");
                    assert_eq!(t.entry, safe_ret + 7, "the thunk follows the safe return unaligned");
                }
            }
        }
    }
}

#[test]
fn placements_move_targets_and_thunks_and_bad_placements_are_refused() {
    let addrs: Vec<(usize, usize)> = (0..4)
        .map(|pl| {
            let p = Probe::new(Flavor::Direct, Scenario::Mono, &options(ReturnKind::RetThunk, pl)).unwrap();
            (p.targets()[0].addr - p.arena().base(), p.return_thunk().unwrap().entry - p.arena().base())
        })
        .collect();
    for (i, a) in addrs.iter().enumerate() {
        for b in &addrs[i + 1..] {
            assert!(a.0 != b.0 && a.1 != b.1, "{addrs:x?}");
        }
    }
    let slots: std::collections::BTreeSet<usize> = addrs.iter().map(|a| a.0 % CACHE_LINE).collect();
    assert_eq!(slots.len(), 4, "four 16-byte slots of a line: {addrs:x?}");
    let e = Probe::new(Flavor::Direct, Scenario::Mono, &options(ReturnKind::Ret, 99)).unwrap_err();
    assert!(e.to_string().contains("placement 99"), "{e}");
}

#[test]
fn kcfi_targets_carry_the_hash_their_callers_check() {
    use callpatch_probes::code::flavor::KCFI_HASH;
    use callpatch_probes::code::SiteForm;
    for flavor in [Flavor::Kcfi, Flavor::KcfiRetpoline] {
        let p = Probe::new(flavor, SCENARIOS[1], &options(ReturnKind::SrsoAlias, 2)).unwrap();
        for t in p.targets() {
            let pre = p.arena().read(t.addr - 16, 16);
            assert_eq!(pre[0], 0xb8, "{flavor}: movl $hash, %eax 16 bytes before the target");
            assert_eq!(u32::from_le_bytes(pre[1..5].try_into().unwrap()), KCFI_HASH, "{flavor}: the hash at -15");
            assert_eq!(pre[5..], [0x90; 11], "{flavor}");
        }
        for s in p.sites() {
            let hash = match s.form {
                SiteForm::KcfiCallR11 { hash } | SiteForm::KcfiCallThunk { hash, .. } => hash,
                f => panic!("{flavor}: {f:?}"),
            };
            assert_eq!(hash, KCFI_HASH);
            assert_eq!(SiteForm::decode(&p.arena().read(s.addr, s.len), s.addr), Some((s.form, s.len)));
        }
        p.verify().unwrap();
    }
}

#[test]
fn fineibt_calls_land_on_the_preamble_that_checks_their_hash() {
    use callpatch_probes::code::flavor::{fineibt_preamble, KCFI_HASH};
    use callpatch_probes::code::SiteForm;
    for scenario in SCENARIOS {
        for ret in [ReturnKind::Ret, ReturnKind::SrsoAlias] {
            let p = Probe::new(Flavor::Fineibt, scenario, &options(ret, 1)).unwrap();
            for t in p.targets() {
                assert_eq!(p.arena().read(t.addr - 16, 16), fineibt_preamble(KCFI_HASH), "{scenario} {ret}");
            }
            for s in p.sites() {
                assert_eq!(s.form, SiteForm::FineibtCallR11 { hash: KCFI_HASH });
                assert_eq!(SiteForm::decode(&p.arena().read(s.addr, s.len), s.addr), Some((s.form, s.len)));
            }
            // Every call went through a preamble into its own target (the weight sum), r11 reloaded
            // before each call in mono.
            p.verify().unwrap_or_else(|e| panic!("{scenario} {ret}: {e}"));
        }
    }
}

/// `sarq`/`shlq $5` or `movq $-1` on `%fs:offset`: the bytes of the kernel's `%gs:` forms with `64`.
fn on_depth(op: &[u8], offset: i32, imm: &[u8]) -> Vec<u8> {
    [&[0x64, 0x48][..], op, &[0x25], &offset.to_le_bytes(), imm].concat()
}

#[test]
fn call_depth_counts_each_call_in_the_callees_call_thunk_and_each_return_in_its_thunk() {
    // A thread of its own: its counter starts credited full, as CREDIT_CALL_DEPTH leaves it.
    std::thread::spawn(|| {
        let depth = call_depth_offset().unwrap();
        let sar = on_depth(&[0xc1, 0x3c], depth, &[5]);
        for flavor in [Flavor::Direct, Flavor::Inline, Flavor::Trampoline, Flavor::Retpoline] {
            let p = Probe::new(flavor, Scenario::Mono, &options(ReturnKind::CallDepth, 1)).unwrap();
            assert_eq!(p.call_depth(), Some(depth));
            let t = p.targets()[0].addr;
            assert_eq!(t % 16, 0, "{flavor}: the function stays 16-byte aligned");
            assert_eq!(p.arena().read(t - CALL_DEPTH_ACCOUNT_LEN, CALL_DEPTH_ACCOUNT_LEN), sar, "{flavor}");
            let thunk = p.return_thunk().unwrap().entry;
            let shl = on_depth(&[0xc1, 0x24], depth, &[5]);
            assert_eq!(p.arena().read(thunk, 10), shl, "{flavor}: call_depth_return_thunk starts with shlq $5");
            // jz 1f; ret; int3; 1: 16 × (call 2f; int3; 2:); add $128, %rsp; movq $-1, depth; ret; int3.
            let refill: Vec<u8> = (0..16).flat_map(|_| [0xe8, 1, 0, 0, 0, 0xcc]).collect();
            let tail = [&[0x74, 0x02, 0xc3, 0xcc][..], &refill, &[0x48, 0x81, 0xc4, 0x80, 0, 0, 0]].concat();
            assert_eq!(p.arena().read(thunk + 10, tail.len()), tail, "{flavor}");
            let credit = on_depth(&[0xc7, 0x04], depth, &[0xff; 4]);
            assert_eq!(p.arena().read(thunk + 10 + tail.len(), 15), [&credit[..], &[0xc3, 0xcc]].concat());
            // The direct-style calls land on the call thunk; the retpoline's own thunk counts instead.
            let first = p.sites()[0];
            let to = match flavor {
                Flavor::Trampoline => p.trampoline().unwrap().1.target().unwrap(),
                Flavor::Retpoline => {
                    let rp = p.thunk().unwrap();
                    assert_eq!(p.arena().read(rp, 10), sar, "__x86_indirect_call_thunk_rax counts first");
                    assert_eq!(p.arena().read(rp + 10, 7), [0xe8, 1, 0, 0, 0, 0xcc, 0x48], "call 1f; int3; mov");
                    t
                }
                _ => first.form.insn().unwrap().target().unwrap(),
            };
            if flavor != Flavor::Retpoline {
                assert_eq!(to, t - CALL_DEPTH_ACCOUNT_LEN, "{flavor}");
            }
            // Balanced calls and returns from a full counter: sarq keeps -1, shlq leaves it nonzero.
            set_call_depth(u64::MAX);
            p.verify().unwrap_or_else(|e| panic!("{flavor}: {e}"));
            assert_eq!(call_depth(), u64::MAX << 5, "{flavor}: the code updated this thread's counter");
            // An empty counter: the first return refills the RSB, drops those 16 frames and credits it.
            set_call_depth(0);
            p.verify().unwrap_or_else(|e| panic!("{flavor} after a refill: {e}"));
            assert_eq!(call_depth(), u64::MAX << 5, "{flavor}");
        }
        let refused = Probe::new(Flavor::Indirect, Scenario::Mono, &options(ReturnKind::CallDepth, 0)).unwrap_err();
        assert!(refused.to_string().contains("call-depth"), "{refused}");
    })
    .join()
    .unwrap();
}

#[test]
fn its_returns_sit_in_the_half_their_kind_names_and_the_thunk_in_the_upper_half() {
    for placement in 0..4 {
        for scenario in SCENARIOS {
            let lower = Probe::new(Flavor::ItsThunk, scenario, &options(ReturnKind::ItsLower, placement)).unwrap();
            let thunk = lower.return_thunk().unwrap().entry;
            assert_ne!(thunk & ITS_HALF, 0, "its_return_thunk in the upper half");
            assert_eq!(lower.arena().read(thunk, 2), [0xc3, 0xcc]);
            for t in lower.targets() {
                let jmp = t.addr + 4;
                assert_eq!(jmp & ITS_HALF, 0, "p{placement}: the return site in the lower half");
                assert_eq!(decode_until_branch(&lower, jmp)[0].near_branch_target() as usize, thunk);
            }
            let upper = Probe::new(Flavor::Indirect, scenario, &options(ReturnKind::ItsUpper, placement)).unwrap();
            assert_eq!(upper.return_thunk(), None);
            for t in upper.targets() {
                assert_eq!(upper.arena().read(t.addr + 4, 1), [0xc3]);
                assert_ne!((t.addr + 4) & ITS_HALF, 0, "p{placement}: the ret in the upper half");
            }
            for p in [lower, upper] {
                p.verify().unwrap();
            }
        }
    }
}

#[test]
fn each_its_thunk_site_calls_a_thunk_of_its_own_in_an_upper_half() {
    for scenario in [SCENARIOS[0], SCENARIOS[1], Scenario::Sites(64)] {
        let p = Probe::new(Flavor::ItsThunk, scenario, &options(ReturnKind::Ret, 0)).unwrap();
        let thunks = p.its_thunks();
        assert_eq!(thunks.len(), p.sites().len());
        assert_eq!(thunks.iter().collect::<std::collections::BTreeSet<_>>().len(), thunks.len(), "one per site");
        for (s, &t) in p.sites().iter().zip(thunks) {
            assert_eq!(s.form.insn().and_then(|i| i.target()), Some(t));
            assert_eq!(p.arena().read(t, 3), [0xff, 0xe0, 0xcc], "jmp *%rax; int3");
            assert!(t % CACHE_LINE >= ITS_HALF && (t + 2) % CACHE_LINE >= ITS_HALF, "{t:#x}");
        }
        p.verify().unwrap();
    }
}

#[test]
fn the_retpoline_thunk_returns_through_the_return_thunk_as_the_kernels_ret_macro_does() {
    for ret in [ReturnKind::RetThunk, ReturnKind::Srso, ReturnKind::SrsoAlias] {
        for flavor in [Flavor::Retpoline, Flavor::KcfiRetpoline] {
            let p = Probe::new(flavor, SCENARIOS[1], &options(ret, 1)).unwrap();
            let insns = decode_until_branch(&p, p.thunk().unwrap());
            // call 1f (not a stop: decode on); int3; mov %reg, (%rsp); jmp the return thunk.
            let codes: Vec<Code> = codes(&insns);
            assert_eq!(
                codes[codes.len() - 3..],
                [Code::Int3, Code::Mov_rm64_r64, Code::Jmp_rel32_64],
                "{flavor} {ret}"
            );
            let jmp = insns.last().unwrap();
            assert_eq!(jmp.near_branch_target() as usize, p.return_thunk().unwrap().entry, "{flavor} {ret}");
            p.verify().unwrap();
        }
    }
}
