//! What `callpatch census` looks at when given no path: the running program, the libc it is linked
//! against, and the running kernel's debug vmlinux (Debian and Ubuntu install it at
//! `/usr/lib/debug/boot/vmlinux-$(uname -r)` with the kernel's `-dbg`/`-dbgsym` package).

use std::path::{Path, PathBuf};

/// The libc mapped into this process, as the kernel names it in `/proc/self/maps`: the real file
/// behind any symlink (`libc.so.6` → `libc-2.31.so` on older systems). `None` for a static program.
pub fn linked_libc() -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines().filter_map(|l| l.split_whitespace().nth(5)).map(Path::new).find_map(|p| {
        let name = p.file_name()?.to_str()?;
        (name.starts_with("libc.so") || (name.starts_with("libc-") && name.ends_with(".so"))).then(|| p.to_path_buf())
    })
}

/// Where the running kernel's debug vmlinux is installed, whether or not it is there.
pub fn running_kernel_vmlinux() -> PathBuf {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    PathBuf::from(format!("/usr/lib/debug/boot/vmlinux-{}", release.trim()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_test_program_has_a_libc() {
        // The test binary is dynamically linked against glibc on the systems this project targets.
        let libc = super::linked_libc().expect("libc mapped into the test process");
        assert!(libc.is_absolute() && libc.is_file(), "{}", libc.display());
        let vmlinux = super::running_kernel_vmlinux();
        assert!(vmlinux.to_string_lossy().starts_with("/usr/lib/debug/boot/vmlinux-"), "{}", vmlinux.display());
    }
}
