//! `callpatch census` as a user runs it: bad inputs give one `callpatch: error: ...` line and exit 1
//! with nothing written; a stripped kernel gives a note and exit 0; good files give the table and CSVs.

use std::path::Path;
use std::process::{Command, Output};

use callpatch_analysis::census::synth::{call, Synth};

fn census(args: &[&str], out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_callpatch"))
        .arg("census")
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .expect("run callpatch")
}

/// A small linked x86-64 image: `f` calls `g` twice, once across a cache line.
fn tiny(symtab: bool) -> Synth {
    let base = 0x40_1000u64;
    let mut text = vec![0xcc; 0x80];
    text[0x00..0x05].copy_from_slice(&call(base, base + 0x70));
    text[0x3d..0x42].copy_from_slice(&call(base + 0x3d, base + 0x70));
    text[0x70] = 0xc3;
    let mut s = Synth { symtab, ..Synth::default() };
    let t = s.section(".text", base, text, true);
    s.symbol("f", t, base, STT_FUNC);
    s.symbol("g", t, base + 0x70, STT_FUNC);
    s
}

const STT_FUNC: u8 = 2;
const EM_AARCH64: u16 = 183;

/// Asserts exit 1, exactly one stderr line equal to `expected`, and no CSV written.
fn assert_refused(args: &[&str], expected: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let o = census(args, &out);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "stderr: {stderr}");
    assert_eq!(stderr.lines().collect::<Vec<_>>(), [expected], "stderr: {stderr}");
    assert!(!out.join("census.csv").exists());
}

#[test]
fn bad_inputs_are_one_line_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path.to_str().unwrap().to_string()
    };
    let empty = p("empty", b"");
    assert_refused(&[&empty], &format!("callpatch: error: {empty}: empty file (0 bytes), not an ELF file"));
    let text = p("text", b"just text\n");
    assert_refused(
        &[&text],
        &format!("callpatch: error: {text}: not an ELF file (starts with 6a 75 73 74, not 7f 45 4c 46)"),
    );
    let full = tiny(true).write();
    let truncated = p("truncated", &full[..100]);
    let o = census(&[&truncated], &dir.path().join("o"));
    assert_eq!(o.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!("callpatch: error: {truncated}: truncated or malformed ELF (100 bytes): ")),
        "{stderr}"
    );
    let elf32 = p("elf32", &Synth { is_64: false, ..tiny(true) }.write());
    assert_refused(
        &[&elf32],
        &format!("callpatch: error: {elf32}: 32-bit ELF (ELFCLASS32); the census reads x86-64 ELF64 files only"),
    );
    let arm = p("arm", &Synth { e_machine: EM_AARCH64, ..tiny(true) }.write());
    assert_refused(
        &[&arm],
        &format!(
            "callpatch: error: {arm}: ELF for AArch64 (e_machine 183), not x86-64; the census decodes x86-64 only"
        ),
    );
    let mut data_only = tiny(true);
    data_only.symbols.clear();
    data_only.sections[0].exec = false;
    let data_only = p("data-only", &data_only.write());
    assert_refused(
        &[&data_only],
        &format!(
            "callpatch: error: {data_only}: no executable sections (no SHF_EXECINSTR section with contents), \
             nothing to decode"
        ),
    );
    let d = dir.path().to_str().unwrap();
    assert_refused(&[d], &format!("callpatch: error: {d}: is a directory, not an ELF file"));
    let missing = format!("{d}/missing");
    assert_refused(
        &[&missing],
        &format!("callpatch: error: {missing}: cannot open: No such file or directory (os error 2)"),
    );
}

#[test]
fn a_bad_path_after_a_good_one_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good");
    std::fs::write(&good, tiny(true).write()).unwrap();
    let missing = dir.path().join("missing");
    let out = dir.path().join("out");
    let o = census(&[good.to_str().unwrap(), missing.to_str().unwrap()], &out);
    assert_eq!(o.status.code(), Some(1));
    assert!(!out.join("census.csv").exists());
}

#[test]
fn stripped_vmlinux_is_a_note_and_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = tiny(false);
    s.section("__ksymtab", 0x60_0000, vec![0; 16], false);
    let path = dir.path().join("vmlinux");
    std::fs::write(&path, s.write()).unwrap();
    let o = census(&[path.to_str().unwrap()], &dir.path().join("out"));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("note: kernel tables: not read: this looks like a Linux kernel"), "{stdout}");
    assert!(stdout.contains("note: symbols: none (stripped)"), "{stdout}");
}

#[test]
fn good_file_gives_table_csvs_and_by_site() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny");
    std::fs::write(&path, tiny(true).write()).unwrap();
    let out = dir.path().join("out");
    let sites = dir.path().join("sites.csv");
    // A per-key file from an earlier census of a kernel: this binary has no table, so it must go.
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("census_static_calls.csv"), "stale\n").unwrap();
    let o = census(&[path.to_str().unwrap(), "--by-site", sites.to_str().unwrap()], &out);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains(" 2 e8 calls"), "{stdout}");
    let csv = std::fs::read_to_string(out.join("census.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some(
            "binary,sha256,kind,count,cross64_rel32,cross64_insn,cross32_insn,cross16_insn,cross8_insn,\
             fallback_line,fallback_word,build_id,its_lower,its_upper"
        )
    );
    // The call at 0x3d: rel32 [3e,42) crosses the line at 0x40, and so do the 32/16/8 blocks. No
    // build-id note, so the file is hashed; a direct call has no ITS half.
    let call = lines.find(|l| l.contains(",call_rel32,")).unwrap();
    let sha = call.split(',').nth(1).unwrap();
    assert!(sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()), "{call}");
    assert!(call.ends_with(",call_rel32,2,1,1,1,1,1,1,1,,,"), "{call}");
    let offsets = std::fs::read_to_string(out.join("census_offsets.csv")).unwrap();
    assert_eq!(offsets.lines().next(), Some("binary,kind,offset_mod_64,count"));
    assert_eq!(offsets.lines().count(), 1 + 10 * 64);
    let by_site = std::fs::read_to_string(&sites).unwrap();
    // The two calls and g's `ret` at 0x70 (last byte in the upper half: ITS leaves it alone).
    assert_eq!(by_site.lines().count(), 1 + 3);
    let ret = csv.lines().find(|l| l.contains(",ret,")).unwrap();
    assert!(ret.ends_with(",0,1"), "{ret}");
    assert!(
        by_site.lines().any(|l| l.contains(",0x40103d,call_rel32,5,61,true,true,true,true,true,true,true,f+0x3d,")),
        "{by_site}"
    );
    assert!(!out.join("census_static_calls.csv").exists());
}

#[test]
fn default_binaries_quick() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let o = census(&["--quick"], &out);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("census of "), "{stdout}");
    let csv = std::fs::read_to_string(out.join("census.csv")).unwrap();
    assert!(csv.lines().any(|l| l.contains("callpatch")), "{csv}");
}

/// The `sha256` and `build_id` cells of the first row of `OUT/census.csv`.
fn identity(out: &Path) -> (String, String) {
    let csv = std::fs::read_to_string(out.join("census.csv")).unwrap();
    let row: Vec<String> = csv.lines().nth(1).unwrap().split(',').map(str::to_string).collect();
    (row[1].clone(), row[11].clone())
}

#[test]
fn a_binary_with_a_build_id_is_hashed_only_on_request() {
    let dir = tempfile::tempdir().unwrap();
    // This callpatch executable: linked with a GNU build-id note (the toolchain's default here).
    let exe = env!("CARGO_BIN_EXE_callpatch");
    let out = dir.path().join("plain");
    let o = census(&[exe], &out);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let (sha, build_id) = identity(&out);
    assert!(sha.is_empty(), "{sha}");
    assert!(build_id.len() >= 16 && build_id.bytes().all(|b| b.is_ascii_hexdigit()), "{build_id}");
    assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("build-id {build_id} ")));
    let out = dir.path().join("hashed");
    let o = census(&[exe, "--sha256"], &out);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let (sha, again) = identity(&out);
    assert_eq!(again, build_id);
    assert!(sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()), "{sha}");
}
