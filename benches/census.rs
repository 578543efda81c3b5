//! `cargo bench --bench census`: the census of real files: this bench binary, the libc it runs with,
//! and a vmlinux when one is at hand (`CALLPATCH_VMLINUX=path`, else
//! `/usr/lib/debug/boot/vmlinux-$(uname -r)` when installed). `census/*` is the whole thing (map,
//! build-id, or the SHA-256 of the file beside the decode when it has none, kernel tables);
//! `census_proper/*` leaves out the identity (the work `objdump -d` is compared with). Throughput is in code bytes decoded. `-- --test` runs each
//! once (CI).

use std::hint::black_box;
use std::path::PathBuf;

use callpatch_analysis::census::elf::ElfImage;
use callpatch_analysis::census::{census_elf, census_file, defaults, Options};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn files() -> Vec<(&'static str, PathBuf)> {
    let mut files = vec![("self", std::env::current_exe().expect("bench executable"))];
    files.extend(defaults::linked_libc().map(|libc| ("libc", libc)));
    let vmlinux = std::env::var_os("CALLPATCH_VMLINUX").map_or_else(defaults::running_kernel_vmlinux, PathBuf::from);
    if vmlinux.is_file() {
        files.push(("vmlinux", vmlinux));
    } else {
        eprintln!("census bench: no vmlinux at {} (set CALLPATCH_VMLINUX)", vmlinux.display());
    }
    files
}

fn census(c: &mut Criterion) {
    let mut group = c.benchmark_group("census");
    group.sample_size(10);
    for (name, path) in files() {
        let code = census_file(&path, Options::default()).expect("census of a bench file").decoded.code_bytes;
        group.throughput(Throughput::Bytes(code));
        group.bench_function(name, |b| b.iter(|| census_file(black_box(&path), Options::default()).unwrap()));
    }
    group.finish();
    let mut group = c.benchmark_group("census_proper");
    group.sample_size(10);
    for (name, path) in files() {
        let image = ElfImage::open(&path).expect("map a bench file");
        let code = census_elf(image.bytes(), name, Options::default()).expect("census").decoded.code_bytes;
        group.throughput(Throughput::Bytes(code));
        group.bench_function(name, |b| {
            b.iter(|| census_elf(black_box(image.bytes()), name, Options::default()).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, census);
criterion_main!(benches);
