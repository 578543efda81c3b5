#!/usr/bin/env bash
# Times `objdump -d FILE` against `callpatch census FILE` and checks that both find exactly the same
# number of `e8` calls, and of indirect calls, indirect jumps and returns in each half of the 64-byte
# line (the ITS bins: by the half the instruction's last byte lies in).
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
# - ITS bins: objdump lines whose mnemonic (after prefixes such as notrack, bnd, cs, repz) is
#   `call *`, `jmp *` or `ret`, binned by bit 5 (0x20) of address + length - 1, the length counted
#   from the raw bytes of the line and its continuation lines; compared with census.csv's
#   call_indirect, jmp_indirect and ret rows (its_lower, its_upper).
# The census identifies the file by its GNU build-id and hashes it (SHA-256) only when it has none;
# the script reports the ratio for the whole command and for the census proper.
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
printf 'callpatch census:  %8.3f s wall, whole command (best of %d): %.1fx faster\n' \
    "$c" "$runs" "$(calc "$o / $c")"
printf 'census proper:     %8.3f s (parse, symbols, decode, kernel tables, tally; best of %d): %.1fx faster\n' \
    "$p" "$runs" "$(calc "$o / $p")"
printf 'e8 calls: objdump %s, census %s\n' "$objdump_e8" "$census_e8"
status=0
if [ "$objdump_e8" != "$census_e8" ]; then
    echo "census-vs-objdump: MISMATCH in the e8 count" >&2
    status=1
else
    echo "e8 counts agree"
fi
# kind lower upper, one line per kind, from objdump and from census.csv (columns found by name).
objdump -d "$file" | awk -F'\t' '
    # Only the address mod 64 matters: its last two hex digits (mawk has no strtonum).
    function low(h,   v, i) {
        v = 0; h = substr(h, length(h) - 1)
        for (i = 1; i <= length(h); i++) v = v * 16 + index("0123456789abcdef", substr(h, i, 1)) - 1
        return v
    }
    function flush() {
        if (kind != "") { n[kind, int(((addr + len - 1) % 64) / 32)]++ }
        kind = ""
    }
    $1 ~ /^ *[0-9a-f]+:$/ {
        a = $1; gsub(/[ :]/, "", a)
        if (NF == 2) { len += split($2, b, " "); next }
        if (NF < 3) next
        flush()
        addr = low(a); len = split($2, b, " ")
        m = $3
        while (m ~ /^(notrack|bnd|cs|ds|es|ss|repz|rep|repnz|data16|addr32|lock) /) sub(/^[^ ]+ +/, "", m)
        if (m ~ /^callq? +\*/) kind = "call_indirect"
        else if (m ~ /^jmpq? +\*/) kind = "jmp_indirect"
        else if (m ~ /^retq?( |$)/) kind = "ret"
        next
    }
    { flush() }
    END {
        flush()
        split("call_indirect jmp_indirect ret", k, " ")
        for (i = 1; i <= 3; i++) print k[i], n[k[i], 0] + 0, n[k[i], 1] + 0
    }' > "$out/its.objdump"
awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
    $col["kind"] ~ /^(call_indirect|jmp_indirect|ret)$/ { print $col["kind"], $col["its_lower"], $col["its_upper"] }' \
    "$out/census.csv" > "$out/its.census"
printf 'ITS bins (kind, last byte in lower half, upper half):\n'
paste -d' ' "$out/its.objdump" "$out/its.census" | awk '{ printf "  %-14s objdump %7d %7d   census %7d %7d\n", $1, $2, $3, $5, $6 }'
if ! cmp -s "$out/its.objdump" "$out/its.census"; then
    echo "census-vs-objdump: MISMATCH in the ITS bins" >&2
    status=1
else
    echo "ITS bins agree"
fi
exit "$status"
