//! The census of synthetic ELF files whose every site was placed by hand: each count and crossing is
//! derived in the comments and asserted exactly.

mod fixture;

use callpatch_analysis::census::{census_bytes, Census, KindTally, Options, SiteKind, SymbolSource};
use fixture::{kernel_like, TEXT};

fn tally(c: &Census, kind: SiteKind) -> KindTally {
    c.tallies().into_iter().find(|t| t.kind == kind).unwrap_or_else(|| panic!("no {kind} row"))
}

/// (count, cross64_rel32, cross64_insn, cross32_insn, cross16_insn, cross8_insn, fallback_line, fallback_word)
fn counts(t: &KindTally) -> [u64; 8] {
    [
        t.count,
        t.cross64_rel32,
        t.cross64_insn,
        t.cross32_insn,
        t.cross16_insn,
        t.cross8_insn,
        t.fallback_line,
        t.fallback_word,
    ]
}

#[test]
fn decoded_sites_are_counted_and_crossings_exact() {
    let c = census_bytes(&kernel_like(true).write(), "kernel-like", Options::default()).unwrap();
    assert_eq!(c.symbols, SymbolSource::Static);
    assert_eq!(c.code_sections, 1);
    // Ranges: [0,1c4) [1c4,200) [240,300) and one per trampoline/thunk/preamble/target symbol: 10;
    // the object at 0x200 (64 bytes) is data.
    assert_eq!(c.decoded.ranges, 10);
    assert_eq!(c.decoded.data_bytes, 0x40);
    // e8 calls: 0x000 0x03c 0x07d 0x0c4 0x13e 0x1c4 0x1fb 0x25c; none in the data.
    assert_eq!(c.decoded.e8_calls, 8);

    // call_rel32 at 0x03c, 0x07d, 0x13e, 0x1c4, 0x1fb, 0x25c (offsets mod 64: 60, 61, 62, 4, 59, 28):
    // 0x03c: rel32 [3d,41) crosses 0x40 → line, word; insn [3c,41) crosses 64/32/16/8.
    // 0x07d: rel32 [7e,82) crosses 0x80 → line, word; insn crosses everything.
    // 0x13e: rel32 [13f,143) crosses 0x140 → line, word; insn crosses everything.
    // 0x1c4: rel32 [1c5,1c9) crosses 0x1c8 → word only; insn [1c4,1c9) crosses 8 only.
    // 0x1fb: rel32 [1fc,200) and insn [1fb,200) end at the line: they cross nothing.
    // 0x25c: rel32 [25d,261) crosses 0x260 → word only; insn [25c,261) crosses 32, 16 and 8.
    assert_eq!(counts(&tally(&c, SiteKind::CallRel32)), [6, 3, 3, 4, 4, 5, 3, 5]);
    let call = tally(&c, SiteKind::CallRel32);
    let mut offsets = [0u64; 64];
    for o in [60, 61, 62, 4, 59, 28] {
        offsets[o] += 1;
    }
    assert_eq!(call.offsets, offsets);

    // jmp_rel32 at 0x0a4 (tail static call), 0x0e0 (return thunk), 0x300 and 0x310 (trampolines):
    // 0x0a4: rel32 [a5,a9) crosses 0xa8 → word; insn crosses 8. The others cross nothing.
    assert_eq!(counts(&tally(&c, SiteKind::JmpRel32)), [4, 0, 0, 0, 0, 1, 0, 1]);
    // jcc at 0x100, 6 bytes, crosses nothing.
    assert_eq!(counts(&tally(&c, SiteKind::JccRel32)), [1, 0, 0, 0, 0, 0, 0, 0]);
    // call rax at 0x110: its last-four-bytes window [10e,112) crosses the word at 0x110 (the formula
    // applied to a 2-byte instruction); call [rip] at 0x112: window [114,118) crosses nothing.
    assert_eq!(counts(&tally(&c, SiteKind::CallIndirect)), [2, 0, 0, 0, 0, 0, 0, 1]);
    // call __x86_indirect_thunk_rax at 0x0c4: rel32 [c5,c9) crosses 0xc8 → word; insn crosses 8.
    assert_eq!(counts(&tally(&c, SiteKind::ThunkCall)), [1, 0, 0, 0, 0, 1, 0, 1]);
    // call __fentry__ at 0x000.
    assert_eq!(counts(&tally(&c, SiteKind::FentryCall)), [1, 0, 0, 0, 0, 0, 0, 0]);

    // ITS halves, by the last byte's bit 5 (0x20): call rax ends at 0x111, call [rip] at 0x117: lower.
    assert_eq!(tally(&c, SiteKind::CallIndirect).its, Some([2, 0]));
    // jmp rax (the thunk's body) at 0x340 ends at 0x341: lower.
    assert_eq!(tally(&c, SiteKind::JmpIndirect).its, Some([1, 0]));
    // ret at 0x350 (lower), 0x360 (upper), 0x384 after f's endbr64 (lower).
    assert_eq!(tally(&c, SiteKind::Ret).count, 3);
    assert_eq!(tally(&c, SiteKind::Ret).its, Some([2, 1]));
    // Direct branches are not sorted.
    assert_eq!(tally(&c, SiteKind::CallRel32).its, None);
    // f starts with endbr64 and has a kCFI preamble __cfi_f (at 0x370, its own entry, no endbr64).
    let entries: Vec<(SiteKind, u64)> = c.entries.iter().map(|s| (s.kind, s.addr - TEXT)).collect();
    assert_eq!(entries, [(SiteKind::CfiPreamble, 0x370), (SiteKind::EndbrEntry, 0x380)]);
    assert_eq!(tally(&c, SiteKind::EndbrEntry).count, 1);
    assert_eq!(tally(&c, SiteKind::CfiPreamble).count, 1);
}

#[test]
fn kernel_tables_are_read_from_inside_a_data_section() {
    let c = census_bytes(&kernel_like(true).write(), "kernel-like", Options::default()).unwrap();
    let k = &c.kernel;
    assert!(k.notes.is_empty(), "{:?}", k.notes);
    assert_eq!(c.kinds(), SiteKind::ALL.to_vec());
    // Static call sites: 0x03c and 0x07d (key foo, calls), 0x0a4 (key bar, tail jmp).
    let sites: Vec<(u64, bool)> = k.static_calls.iter().map(|e| (e.site - TEXT, e.tail_flag)).collect();
    assert_eq!(sites, [(0x03c, false), (0x07d, false), (0x0a4, true)]);
    assert_eq!(counts(&tally(&c, SiteKind::StaticCallSite)), [3, 2, 2, 2, 2, 3, 2, 3]);
    assert_eq!(k.keys.len(), 2);
    let foo = &k.keys[0];
    assert_eq!(
        (
            foo.key.as_str(),
            foo.sites,
            foo.calls,
            foo.tail_jmps,
            foo.not_to_trampoline,
            foo.fallback_line,
            foo.fallback_word
        ),
        ("__SCK__foo", 2, 2, 0, 0, 2, 2)
    );
    let bar = &k.keys[1];
    assert_eq!(
        (
            bar.key.as_str(),
            bar.sites,
            bar.calls,
            bar.tail_jmps,
            bar.not_to_trampoline,
            bar.fallback_line,
            bar.fallback_word
        ),
        ("__SCK__bar", 1, 0, 1, 0, 0, 1)
    );
    let forms = |kind: SiteKind| {
        let t = k.tables.iter().find(|t| t.kind == kind).unwrap();
        (t.entries, t.unreadable, t.forms.iter().map(|(f, n)| format!("{f} {n}")).collect::<Vec<_>>())
    };
    assert_eq!(forms(SiteKind::StaticCallSite), (3, 0, vec!["call/5 2".into(), "jmp/5 1".into()]));
    assert_eq!(forms(SiteKind::RetpolineSite), (1, 0, vec!["call/5 1".into()]));
    assert_eq!(forms(SiteKind::ReturnSite), (1, 0, vec!["jmp/5 1".into()]));
    assert_eq!(forms(SiteKind::McountSite), (1, 0, vec!["call/5 1".into()]));
    assert_eq!(counts(&tally(&c, SiteKind::RetpolineSite)), [1, 0, 0, 0, 0, 1, 0, 1]);
    assert_eq!(counts(&tally(&c, SiteKind::ReturnSite)), [1, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(counts(&tally(&c, SiteKind::McountSite)), [1, 0, 0, 0, 0, 0, 0, 0]);
    // The call site entry is the call_rel32 at 0x13e: rel32 [13f,143) crosses the line at 0x140.
    assert_eq!(forms(SiteKind::CallSite), (1, 0, vec!["call/5 1".into()]));
    assert_eq!(counts(&tally(&c, SiteKind::CallSite)), [1, 1, 1, 1, 1, 1, 1, 1]);
    // ITS: the `call *%rax` the kernel would write at the retpoline site 0x0c4 ends at 0xc5 (lower
    // half: thunked); the `ret` it would write at the return site 0x0e0 is in the upper half.
    assert_eq!(tally(&c, SiteKind::RetpolineSite).its, Some([1, 0]));
    assert_eq!(tally(&c, SiteKind::ReturnSite).its, Some([0, 1]));
    assert_eq!(tally(&c, SiteKind::StaticCallSite).its, None);
}

#[test]
fn rows_carry_binary_sha_and_every_offset() {
    let bytes = kernel_like(true).write();
    let c = census_bytes(&bytes, "kernel-like", Options::default()).unwrap();
    let rows = c.rows();
    assert_eq!(rows.len(), 15);
    assert!(rows.iter().all(|r| r.binary == "kernel-like" && r.sha256 == c.sha256 && r.sha256.len() == 64));
    // No build-id note in this image.
    assert!(c.build_id.is_none() && rows.iter().all(|r| r.build_id.is_empty()));
    let ret = rows.iter().find(|r| r.kind == "ret").unwrap();
    assert_eq!((ret.its_lower, ret.its_upper), (Some(2), Some(1)));
    let offsets = c.offset_rows();
    assert_eq!(offsets.len(), 15 * 64);
    let call_60 = offsets.iter().find(|r| r.kind == "call_rel32" && r.offset_mod_64 == 60).unwrap();
    assert_eq!(call_60.count, 1);
    assert_eq!(offsets.iter().filter(|r| r.kind == "call_rel32").map(|r| r.count).sum::<u64>(), 6);
}

#[test]
fn by_site_rows_name_the_symbol_and_the_key() {
    let c = census_bytes(&kernel_like(true).write(), "k", Options { by_site: true, sha256: false }).unwrap();
    assert_eq!(c.by_site.len(), c.decoded.sites.len() + c.entries.len() + c.kernel.sites.len());
    assert_eq!(c.by_site.len(), 19 + 2 + 7);
    let row = c.by_site.iter().find(|r| r.address == format!("{:#x}", TEXT + 0x1c4)).unwrap();
    assert_eq!(
        (row.kind.name(), row.length, row.offset_mod_64, row.fallback_line, row.fallback_word, row.symbol.as_str()),
        ("call_rel32", 5, 4, false, true, "mid+0x0")
    );
    let tail = c.by_site.iter().find(|r| r.kind == "static_call_site" && r.detail.ends_with("tail")).unwrap();
    assert_eq!(
        (tail.address.clone(), tail.detail.as_str(), tail.symbol.as_str()),
        (format!("{:#x}", TEXT + 0xa4), "__SCK__bar tail", "f1+0xa4")
    );
}

#[test]
fn stripped_image_is_decoded_linearly_with_a_note() {
    let c = census_bytes(&kernel_like(false).write(), "stripped", Options::default()).unwrap();
    assert_eq!(c.symbols, SymbolSource::Stripped);
    assert_eq!(c.decoded.ranges, 1);
    assert!(c.kernel.tables.is_empty());
    assert_eq!(c.kinds(), SiteKind::DECODED.to_vec());
    assert!(c.notes.iter().any(|n| n.starts_with("symbols: none (stripped)")), "{:?}", c.notes);
    assert_eq!(c.kernel.notes, ["kernel tables: not read: no symbol table (stripped)"]);
    // No thunk or __fentry__ names: those calls are plain calls now.
    assert_eq!(tally(&c, SiteKind::ThunkCall).count, 0);
    assert_eq!(tally(&c, SiteKind::FentryCall).count, 0);
}

#[test]
fn relocatable_object_classifies_calls_by_their_relocations() {
    use object::write::{Object, Relocation, StandardSection, Symbol, SymbolSection};
    use object::{Architecture, BinaryFormat, Endianness, RelocationEncoding, RelocationFlags, RelocationKind};
    use object::{SymbolFlags, SymbolKind, SymbolScope};

    let mut obj = Object::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little);
    let text = obj.section_id(StandardSection::Text);
    let mut code = vec![0xcc; 0x80];
    code[0x00..0x05].copy_from_slice(&[0xe8, 0, 0, 0, 0]); // call __fentry__ (relocated)
    code[0x3c..0x41].copy_from_slice(&[0xe8, 0, 0, 0, 0]); // call __x86_indirect_thunk_r11 (relocated)
    code[0x50..0x55].copy_from_slice(&callpatch_analysis::census::synth::call(0x50, 0x70)); // call local f
    code[0x70] = 0xc3;
    obj.append_section_data(text, &code, 64);
    let undefined = |obj: &mut Object, name: &[u8]| {
        obj.add_symbol(Symbol {
            name: name.to_vec(),
            value: 0,
            size: 0,
            kind: SymbolKind::Text,
            scope: SymbolScope::Dynamic,
            weak: false,
            section: SymbolSection::Undefined,
            flags: SymbolFlags::None,
        })
    };
    let fentry = undefined(&mut obj, b"__fentry__");
    let thunk = undefined(&mut obj, b"__x86_indirect_thunk_r11");
    for (offset, symbol) in [(0x01, fentry), (0x3d, thunk)] {
        let flags = RelocationFlags::Generic {
            kind: RelocationKind::PltRelative,
            encoding: RelocationEncoding::Generic,
            size: 32,
        };
        obj.add_relocation(text, Relocation { offset, symbol, addend: -4, flags }).unwrap();
    }
    for (name, value) in [(&b"g"[..], 0u64), (b"f", 0x70)] {
        obj.add_symbol(Symbol {
            name: name.to_vec(),
            value,
            size: 0,
            kind: SymbolKind::Text,
            scope: SymbolScope::Linkage,
            weak: false,
            section: SymbolSection::Section(text),
            flags: SymbolFlags::None,
        });
    }
    let c = census_bytes(&obj.write().unwrap(), "rel.o", Options::default()).unwrap();
    assert!(c.relocatable);
    assert_eq!(counts(&tally(&c, SiteKind::FentryCall)), [1, 0, 0, 0, 0, 0, 0, 0]);
    // The thunk call at 0x3c: rel32 [3d,41) crosses 0x40.
    assert_eq!(counts(&tally(&c, SiteKind::ThunkCall)), [1, 1, 1, 1, 1, 1, 1, 1]);
    assert_eq!(counts(&tally(&c, SiteKind::CallRel32)), [1, 0, 0, 0, 0, 0, 0, 0]);
    assert!(c.kernel.notes.iter().any(|n| n.contains("relocatable")), "{:?}", c.kernel.notes);
}
