#!/usr/bin/env bash
# Census of a real Linux kernel: fetch the Debian kernel debug-symbols package of this distribution
# (linux-image-<ver>-amd64-dbg: a large download, 858 MB for 6.1.0-56, whose size is printed first; only
# its vmlinux, ~630 MB, is extracted),
# run `callpatch census` on its vmlinux and write census.csv / census_offsets.csv /
# census_static_calls.csv.
#
# Usage: scripts/kernel-census.sh [OUT_DIR]        (default OUT_DIR: results/kernel-census)
# Environment:
#   PKG=linux-image-6.1.0-56-amd64-dbg   the package to fetch (default: what linux-image-amd64-dbg
#                                         depends on, i.e. the distribution's default kernel)
#   WORK=/tmp/callpatch-kernel           where the .deb and the extracted vmlinux go (not the repo)
#   CALLPATCH=path/to/callpatch          a built binary (default: cargo build --release)
#   BY_SITE=1                            also write one row per site (census_sites.csv, ~200 MB)
# Needs: apt-get, apt-cache, dpkg-deb, tar (Debian or Ubuntu). Reuses a vmlinux already extracted.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-results/kernel-census}
work=${WORK:-/tmp/callpatch-kernel}
mkdir -p "$work" "$out"

# apt-cache answers from the local package lists; refresh them once when they don't know the package.
if ! apt-cache show linux-image-amd64-dbg >/dev/null 2>&1; then
    echo "kernel-census: apt-get update (package lists are missing)"
    apt-get update -qq
fi
pkg=${PKG:-$(apt-cache depends linux-image-amd64-dbg 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}')}
if [ -z "$pkg" ]; then
    # No meta-package: take the newest versioned amd64 -dbg package the lists know.
    pkg=$(apt-cache search --names-only '^linux-image-[0-9].*-amd64-dbg$' | awk '{print $1}' | sort -V | tail -n 1)
fi
[ -n "$pkg" ] || { echo "kernel-census: error: no linux-image-*-amd64-dbg package known to apt-cache" >&2; exit 1; }

version=$(apt-cache show --no-all-versions "$pkg" | awk '/^Version:/ {print $2; exit}')
size=$(apt-cache show --no-all-versions "$pkg" | awk '/^Size:/ {print $2; exit}')
installed=$(apt-cache show --no-all-versions "$pkg" | awk '/^Installed-Size:/ {print $2; exit}')
kver=${pkg#linux-image-}
kver=${kver%-dbg}
vmlinux="$work/root/usr/lib/debug/boot/vmlinux-$kver"

if [ -s "$vmlinux" ]; then
    echo "kernel-census: reusing $vmlinux"
else
    printf 'kernel-census: downloading %s %s: %d MB (%s bytes; %d MB unpacked, only vmlinux is kept)\n' \
        "$pkg" "$version" $((size / 1000000)) "$size" $((installed / 1000))
    (cd "$work" && apt-get download "$pkg=$version")
    deb=$(ls "$work"/"${pkg}"_*.deb | head -n 1)
    mkdir -p "$work/root"
    echo "kernel-census: extracting only */boot/vmlinux-$kver from $deb"
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$work/root" --wildcards "*/boot/vmlinux-$kver"
    [ -s "$vmlinux" ] || { echo "kernel-census: error: $deb has no usr/lib/debug/boot/vmlinux-$kver" >&2; exit 1; }
    rm -f "$deb"
fi

bin=${CALLPATCH:-}
if [ -z "$bin" ]; then
    cargo build --release --quiet --bin callpatch
    bin=target/release/callpatch
fi
extra=()
[ -n "${BY_SITE:-}" ] && extra+=(--by-site "$out/census_sites.csv")
echo "kernel-census: $bin census $vmlinux --out $out ${extra[*]}"
"$bin" census "$vmlinux" --out "$out" "${extra[@]}"

# Plot hook: the crossing-fraction plot is drawn by `callpatch plot` from census.csv once that
# subcommand exists; until then this step only says so.
if "$bin" plot --help 2>/dev/null | grep -q -- '--dir'; then
    "$bin" plot --dir "$out"
else
    echo "kernel-census: plot skipped: \`callpatch plot --dir\` is not available in this build (CSV are in $out)"
fi
