use callpatch_probes::code::{decode, encode, Insn};
use iced_x86::{Code, Encoder, Instruction};
use std::time::Instant;
fn main() {
    let site = 0x5555_0000_1000usize;
    let n = 1_000_000;
    let t = Instant::now();
    let mut x = 0u64;
    for i in 0..n { x += encode(Insn::Call(site + 100 + (i & 0xff)), site).unwrap()[1] as u64; }
    println!("encode {:.1} ns", t.elapsed().as_nanos() as f64 / n as f64);
    let mut enc = Encoder::new(64);
    let t = Instant::now();
    for i in 0..n {
        let ins = Instruction::with_branch(Code::Call_rel32_64, (site + 100 + (i & 0xff)) as u64).unwrap();
        enc.encode(&ins, site as u64).unwrap();
        let mut b = enc.take_buffer();
        x += b[1] as u64;
        b.clear();
        enc.set_buffer(b);
    }
    println!("reused encoder {:.1} ns", t.elapsed().as_nanos() as f64 / n as f64);
    let b = encode(Insn::Call(site + 100), site).unwrap();
    let t = Instant::now();
    for i in 0..n { x += decode(&b, site + (i & 1)).is_some() as u64; }
    println!("decode {:.1} ns {x}", t.elapsed().as_nanos() as f64 / n as f64);
}
