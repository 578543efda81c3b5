//! The SIGTRAP handler emulates every instruction form a site can take: a thread that meets the
//! `int3` while a bp batch is parked between its steps behaves exactly as if the NEW instruction ran.

use std::sync::mpsc;

use callpatch_probes::code::{encode, Arena, ArenaMode, Insn, TextWriter};
use callpatch_probes::patch::{patch_batch_stepped, trap_count, Protocol, SitePatch, Step};
use iced_x86::code_asm::{qword_ptr, rdi, CodeAssembler};

/// `f(rdi = counters)`: `site; inc qword [rdi+16]; ret`, with targets `inc qword [rdi+8k]; ret`.
struct Rig {
    arena: Arena,
    site: usize,
    targets: [usize; 2],
}

fn asm(at: usize, build: impl FnOnce(&mut CodeAssembler) -> Result<(), iced_x86::IcedError>) -> Vec<u8> {
    let mut a = CodeAssembler::new(64).unwrap();
    build(&mut a).unwrap();
    a.assemble(at as u64).unwrap()
}

impl Rig {
    fn new(old: Insn) -> Rig {
        let mut arena = Arena::new(1 << 16, ArenaMode::Rwx).unwrap();
        let targets = [0, 1].map(|k: i32| {
            let t = arena.alloc(16, 16).unwrap();
            arena
                .write(
                    t,
                    &asm(t, |a| {
                        a.inc(qword_ptr(rdi + 8 * k))?;
                        a.ret()
                    }),
                )
                .unwrap();
            t
        });
        let site = arena.alloc(32, 16).unwrap();
        let old = match old {
            Insn::Call(_) => Insn::Call(targets[0]),
            _ => Insn::CsCall(targets[0]),
        };
        arena.write(site, &encode(old, site).unwrap()).unwrap();
        let after = site + old.len();
        arena
            .write(
                after,
                &asm(after, |a| {
                    a.inc(qword_ptr(rdi + 16))?;
                    a.ret()
                }),
            )
            .unwrap();
        Rig { arena, site, targets }
    }

    fn call(&self) -> [u64; 3] {
        let mut counters = [0u64; 3];
        // SAFETY: `site` starts `f` above (sysv64, touches only `counters` via rdi and the stack); while
        // the batch is parked the site is `cc` + new body, which the handler emulates.
        let f: extern "sysv64" fn(*mut u64) = unsafe { std::mem::transmute(self.site) };
        f(counters.as_mut_ptr());
        counters
    }
}

/// Patches `old → new` with bp, runs `f` on this thread while the int3 is on the site, then finishes.
fn run_parked(old_form: Insn, new: impl Fn(&Rig) -> Insn) -> [u64; 3] {
    let rig = Rig::new(old_form);
    let old = match old_form {
        Insn::Call(_) => Insn::Call(rig.targets[0]),
        _ => Insn::CsCall(rig.targets[0]),
    };
    let patch = [SitePatch { addr: rig.site, old, new: new(&rig) }];
    let w = TextWriter::for_arena(&rig.arena);
    let (parked_tx, parked_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    std::thread::scope(|s| {
        let (w, patch) = (&w, &patch);
        let patcher = s.spawn(move || {
            // SAFETY: the rig's own site (the instruction `Rig::new` wrote), retargeted to code of the
            // rig that takes the call as the site makes it (or to the instruction after it).
            unsafe {
                patch_batch_stepped(w, Protocol::Bp, patch, &mut |step| {
                    if step == Step::Int3Placed {
                        parked_tx.send(()).unwrap();
                        go_rx.recv().unwrap();
                    }
                })
            }
        });
        parked_rx.recv().unwrap();
        assert_eq!(rig.arena.read(rig.site, 1)[0], 0xcc);
        let traps = trap_count();
        let counters = rig.call();
        assert!(trap_count() > traps, "the call went through the handler");
        go_tx.send(()).unwrap();
        patcher.join().unwrap().unwrap();
        // And after the batch, the real instruction does the same.
        assert_eq!(rig.call(), counters, "{:?}: emulation and the real instruction differ", patch[0].new);
        counters
    })
}

#[test]
fn every_form_is_emulated_as_the_new_instruction() {
    // call T1: T1 counts, returns after the site, `f` goes on.
    assert_eq!(run_parked(Insn::Call(0), |r| Insn::Call(r.targets[1])), [0, 1, 1]);
    // jmp T1 (a tail call): T1 counts and returns straight to f's caller.
    assert_eq!(run_parked(Insn::Call(0), |r| Insn::Jmp(r.targets[1])), [0, 1, 0]);
    // The 5-byte nop: on to the next instruction.
    assert_eq!(run_parked(Insn::Call(0), |_| Insn::Nop5), [0, 0, 1]);
    // RET0 (`cs cs cs xor eax,eax`): on to the next instruction (rax: static-call's nullable keys test it).
    assert_eq!(run_parked(Insn::Call(0), |_| Insn::Ret0), [0, 0, 1]);
    // ret: back to f's caller at once.
    assert_eq!(run_parked(Insn::Call(0), |_| Insn::Ret), [0, 0, 0]);
    // cs call T1 (6 bytes): returns after all six.
    assert_eq!(run_parked(Insn::CsCall(0), |r| Insn::CsCall(r.targets[1])), [0, 1, 1]);
}
