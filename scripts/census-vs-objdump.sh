#!/usr/bin/env bash
# Times `objdump -d FILE` against `callpatch census FILE` and checks that both find exactly the same
# number of `e8` calls.
#
# Usage: scripts/census-vs-objdump.sh FILE [RUNS]     (RUNS: timed runs of each, best kept; default 3)
#        CALLPATCH=path/to/callpatch to use a built binary (default: cargo build --release)
#
# How the two counts line up:
# - objdump prints one line per instruction, "addr:<TAB>raw bytes<TAB>mnemonic operands"; the bytes
#   of an instruction longer than 7 bytes continue on lines with only two tab-separated fields. An
#   "e8 call" is a line whose raw-byte column starts with "e8 " and whose mnemonic is call (not the
#   ".byte 0xe8" objdump prints for a call cut off by the next symbol; a prefixed call such as
#   "2e e8" is not one either, on either side).
# - Both decode each executable section from every symbol (an instruction that would run past the
#   next symbol is not one: objdump prints its first byte as ".byte" and goes on with the next byte,
#   and so does the census), both skip ranges that start at an STT_OBJECT
#   symbol (data in text), and both skip nothing else: objdump's "..." for runs of zero bytes only
#   hides zeros in multiples of 4, which does not move the decode.
# - The census counts instructions whose first byte is e8 in the same ranges.
# The census also hashes the whole file (SHA-256, for the CSV) on a second core; objdump does not.
# The script reports the ratio for the whole command and for the census proper.
set -euo pipefail
cd "$(dirname "$0")/.."
file=${1:?usage: scripts/census-vs-objdump.sh FILE [RUNS]}
runs=${2:-3}
[ -f "$file" ] || { echo "census-vs-objdump: error: $file is not a file" >&2; exit 1; }
command -v objdump >/dev/null || { echo "census-vs-objdump: error: objdump not installed (binutils)" >&2; exit 1; }
bin=${CALLPATCH:-}
if [ -z "$bin" ]; then
    cargo build --release --quiet --bin callpatch
    bin=target/release/callpatch
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

best() { sort -g | head -n 1; }
now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.6f\", $1 }"; }

printf 'file: %s (%s bytes)\n' "$file" "$(stat -c %s "$file")"
objdump --version | head -n 1

# Untimed runs first: the e8 counts, and a warm page cache for both tools.
objdump_e8=$(objdump -d "$file" | awk -F'\t' 'NF >= 3 && $2 ~ /^e8 / && $3 ~ /^call/ {n++} END {print n + 0}')
"$bin" census "$file" --out "$out" > "$out/census.txt"
census_e8=$(sed -n 's/.* \([0-9][0-9]*\) e8 calls;.*/\1/p' "$out/census.txt" | head -n 1)

objdump_times=() census_times=() proper_times=()
for _ in $(seq "$runs"); do
    t0=$(now); objdump -d "$file" > /dev/null; t1=$(now)
    objdump_times+=("$(calc "$t1 - $t0")")
    t0=$(now); "$bin" census "$file" --out "$out" > "$out/census.txt"; t1=$(now)
    census_times+=("$(calc "$t1 - $t0")")
    proper_times+=("$(sed -n 's/.*e8 calls; census \([0-9.]*\) s.*/\1/p' "$out/census.txt" | head -n 1)")
done
o=$(printf '%s\n' "${objdump_times[@]}" | best)
c=$(printf '%s\n' "${census_times[@]}" | best)
p=$(printf '%s\n' "${proper_times[@]}" | best)
printf 'objdump -d:        %8.3f s (best of %d)\n' "$o" "$runs"
printf 'callpatch census:  %8.3f s wall, whole command incl. SHA-256 of the file (best of %d): %.1fx faster\n' \
    "$c" "$runs" "$(calc "$o / $c")"
printf 'census proper:     %8.3f s (parse, symbols, decode, kernel tables; best of %d): %.1fx faster\n' \
    "$p" "$runs" "$(calc "$o / $p")"
printf 'e8 calls: objdump %s, census %s\n' "$objdump_e8" "$census_e8"
if [ "$objdump_e8" != "$census_e8" ]; then
    echo "census-vs-objdump: MISMATCH in the e8 count" >&2
    exit 1
fi
echo "e8 counts agree"
