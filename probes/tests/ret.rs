//! Return kinds: every target ends in exactly the return its kind names, each thunk holds the kernel's
//! instructions at the addresses the kernel places them, and every flavor × return kind × placement
//! calls and returns what it should (the weight sum, by running the code).

use callpatch_probes::code::ret::{target_skip, thunk_skip, SRSO_ALIAS_BITS};
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
                for flavor in Flavor::ALL.into_iter().filter(|f| scenario.supports(*f) && *f != Flavor::Trap) {
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
        let p = Probe::new(Flavor::Indirect, SCENARIOS[1], &options(ret, 1)).unwrap();
        assert_eq!(p.targets()[0].addr % CACHE_LINE, target_skip(1) % CACHE_LINE, "{ret}");
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
