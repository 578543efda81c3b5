//! The few instructions a patchable site can hold, as bytes — the user-space twin of the kernel's
//! `__static_call_transform` insn types (CALL, NOP, JMP, RET) plus the cs-prefixed call.
//!
//! Encoded by hand, as the kernel's `text_gen_insn` does: each form is an opcode (with the `2e` prefix
//! for the cs call) and a little-endian rel32 measured from the end of the instruction. Nothing else
//! is ever written to a site, so a table of six forms is the whole encoder, and the decoder accepts
//! exactly these byte patterns (a `jmp rel8`, an `int3` or any other instruction is not a site).

/// Length of `call rel32` / `jmp rel32` / the 5-byte nop.
pub const REL32_LEN: usize = 5;
/// Length of `cs call rel32` (`2e e8 rel32`).
pub const CS_CALL_LEN: usize = 6;
/// `int3`, the byte every protocol parks on byte 0 while the rest of a site changes.
pub const INT3: u8 = 0xcc;
/// The `cs` segment-override prefix (a no-op in 64-bit mode; a branch hint on some cores).
pub const CS_PREFIX: u8 = 0x2e;
/// The SDM's recommended 5-byte nop, `nopl 0x0(%rax,%rax,1)` — the kernel's `BYTES_NOP5`.
pub const NOP5: [u8; 5] = [0x0f, 0x1f, 0x44, 0x00, 0x00];
/// `xor %eax,%eax` behind three `cs` prefixes: one 5-byte instruction that makes a call site return 0
/// without calling — the kernel's `xor5rax` (arch/x86/kernel/static_call.c), its RET0 call site.
pub const XOR5RAX: [u8; 5] = [0x2e, 0x2e, 0x2e, 0x31, 0xc0];

/// One site instruction and, for branches, its absolute target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Insn {
    /// `e8 rel32`.
    Call(usize),
    /// `e9 rel32` (a trampoline, or a tail call).
    Jmp(usize),
    /// `2e e8 rel32`.
    CsCall(usize),
    /// The 5-byte nop (a conditional static call set to "no function").
    Nop5,
    /// [`XOR5RAX`]: a call site of a "no function" key that returns 0 (the kernel's RET0).
    Ret0,
    /// `c3` padded to 5 bytes with `int3` (a trampoline for a "no function" key returns at once).
    Ret,
}

impl Insn {
    /// Encoded length in bytes.
    pub fn len(self) -> usize {
        match self {
            Insn::CsCall(_) => CS_CALL_LEN,
            _ => REL32_LEN,
        }
    }

    /// Always false; instructions have bytes.
    pub fn is_empty(self) -> bool {
        false
    }

    /// The branch target, if any.
    pub fn target(self) -> Option<usize> {
        match self {
            Insn::Call(t) | Insn::Jmp(t) | Insn::CsCall(t) => Some(t),
            Insn::Nop5 | Insn::Ret0 | Insn::Ret => None,
        }
    }

    /// Offset of the rel32 field within the instruction, for branches.
    pub fn rel32_offset(self) -> Option<usize> {
        match self {
            Insn::Call(_) | Insn::Jmp(_) => Some(1),
            Insn::CsCall(_) => Some(2),
            Insn::Nop5 | Insn::Ret0 | Insn::Ret => None,
        }
    }
}

/// Why an instruction could not be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// The target is beyond the ±2 GiB that a rel32 displacement reaches from the site.
    OutOfRange {
        /// Site address.
        site: usize,
        /// Requested target.
        target: usize,
    },
}

impl std::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EncodeError::OutOfRange { site, target } => {
                write!(f, "target {target:#x} is out of rel32 range of the site at {site:#x}")
            }
        }
    }
}

impl std::error::Error for EncodeError {}

/// The bytes of one encoded instruction (at most 6), with its length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct InsnBytes {
    buf: [u8; 8],
    len: u8,
}

impl InsnBytes {
    /// Copies up to 8 bytes.
    pub fn from_slice(bytes: &[u8]) -> InsnBytes {
        assert!(bytes.len() <= 8, "an instruction of {} bytes is not a site", bytes.len());
        let mut buf = [0; 8];
        buf[..bytes.len()].copy_from_slice(bytes);
        InsnBytes { buf, len: bytes.len() as u8 }
    }

    /// The first `len` (≤ 8) bytes of `word` in memory order (little-endian); the rest stay zero, as
    /// in [`InsnBytes::from_slice`], so that `==` compares exactly the instruction's bytes.
    pub(crate) fn from_word(word: u64, len: usize) -> InsnBytes {
        assert!(len <= 8, "an instruction of {len} bytes is not a site");
        let mask = if len == 8 { u64::MAX } else { (1u64 << (8 * len)) - 1 };
        InsnBytes { buf: (word & mask).to_le_bytes(), len: len as u8 }
    }

    /// The encoded bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }
}

impl std::ops::Deref for InsnBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

/// True when a rel32 branch of `len` bytes at `site` reaches `target`.
pub fn in_rel32_range(site: usize, len: usize, target: usize) -> bool {
    rel32(site, len, target).is_some()
}

/// Opcode of `call rel32`.
const CALL: u8 = 0xe8;
/// Opcode of `jmp rel32`.
const JMP: u8 = 0xe9;
/// `ret`.
const RET: u8 = 0xc3;

/// The rel32 of a branch of `len` bytes at `site` to `target`, if it reaches.
fn rel32(site: usize, len: usize, target: usize) -> Option<i32> {
    let disp = target as i128 - (site as i128 + len as i128);
    i32::try_from(disp).ok()
}

/// Encodes `insn` as it must appear at address `site`.
pub fn encode(insn: Insn, site: usize) -> Result<InsnBytes, EncodeError> {
    let (head, target): (&[u8], usize) = match insn {
        Insn::Nop5 => return Ok(InsnBytes::from_slice(&NOP5)),
        Insn::Ret0 => return Ok(InsnBytes::from_slice(&XOR5RAX)),
        Insn::Ret => return Ok(InsnBytes::from_slice(&[RET, INT3, INT3, INT3, INT3])),
        Insn::Call(t) => (&[CALL], t),
        Insn::Jmp(t) => (&[JMP], t),
        Insn::CsCall(t) => (&[CS_PREFIX, CALL], t),
    };
    let rel = rel32(site, insn.len(), target).ok_or(EncodeError::OutOfRange { site, target })?;
    let mut out = [0u8; CS_CALL_LEN];
    out[..head.len()].copy_from_slice(head);
    out[head.len()..head.len() + 4].copy_from_slice(&rel.to_le_bytes());
    Ok(InsnBytes::from_slice(&out[..insn.len()]))
}

/// Decodes the bytes of a site at address `site` as one of the [`Insn`] forms, or `None` when they are
/// anything else (including an `int3` left by an interrupted patch, or a short branch).
pub fn decode(bytes: &[u8], site: usize) -> Option<Insn> {
    let branch = |len: usize| {
        let rel = i32::from_le_bytes(bytes.get(len - 4..len)?.try_into().ok()?);
        Some((site as i128 + len as i128 + i128::from(rel)) as usize)
    };
    match bytes {
        [0x0f, 0x1f, 0x44, 0x00, 0x00, ..] => Some(Insn::Nop5),
        [0x2e, 0x2e, 0x2e, 0x31, 0xc0, ..] => Some(Insn::Ret0),
        [RET, ..] => Some(Insn::Ret),
        [CALL, ..] => branch(REL32_LEN).map(Insn::Call),
        [JMP, ..] => branch(REL32_LEN).map(Insn::Jmp),
        [CS_PREFIX, CALL, ..] => branch(CS_CALL_LEN).map(Insn::CsCall),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_round_trips_with_exact_length() {
        let site = 0x7f00_0000_1000usize;
        for insn in [
            Insn::Call(site + 0x1234),
            Insn::Jmp(site - 0x10_0000),
            Insn::CsCall(site + 7),
            Insn::Jmp(site + 5), // a jmp to the next instruction: still 5 bytes, never rel8
            Insn::Nop5,
            Insn::Ret,
        ] {
            let b = encode(insn, site).unwrap();
            assert_eq!(b.len(), insn.len(), "{insn:?}");
            assert_eq!(decode(&b, site), Some(insn), "{insn:?} -> {:02x?}", b.as_slice());
        }
        assert_eq!(encode(Insn::Call(site + 5), site).unwrap().as_slice(), [0xe8, 0, 0, 0, 0]);
        assert_eq!(encode(Insn::CsCall(site + 6), site).unwrap().as_slice(), [0x2e, 0xe8, 0, 0, 0, 0]);
    }

    #[test]
    fn out_of_range_and_foreign_bytes_are_rejected() {
        let site = 0x1000_0000usize;
        let far = site + (1usize << 31) + 5;
        assert_eq!(encode(Insn::Call(far), site), Err(EncodeError::OutOfRange { site, target: far }));
        assert!(encode(Insn::Call(site + 5 + i32::MAX as usize), site).is_ok());
        assert_eq!(decode(&[0xcc, 0, 0, 0, 0], site), None);
        assert_eq!(decode(&[0xeb, 0x03, 0, 0, 0], site), None, "jmp rel8 is not a site");
        assert_eq!(decode(&[0xff, 0xd0, 0, 0, 0], site), None, "call *%rax is not a site");
    }
}
