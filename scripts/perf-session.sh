#!/usr/bin/env bash
# perf-session.sh FLAVOR [SCENARIO] — look at one callpatch probe with perf.
#
# Starts `callpatch perf --hold` (the probe runs its loop, pinned, and announces its generated code in
# /tmp/perf-<pid>.map), then around it:
#   1. perf stat   -p PID  for the hardware group and the software events;
#   2. perf record -p PID  and perf report --sort symbol, so samples land on named probe code;
#   3. callpatch perf      for the per-call figures (U/2U subtracted) and perf.csv.
# Without a PMU (a VM without passthrough) perf stat prints "<not supported>" for hardware events and
# perf record falls back to the cpu-clock timer; the software and TSC figures are still reported.
#
# Installs nothing. Needs: perf (package linux-perf or linux-tools-$(uname -r)), and either
# $CALLPATCH pointing at a callpatch binary or cargo to build target/release/callpatch.
# Environment: CALLPATCH (binary), PERF_SECONDS (per perf step, default 3), OUT (output directory,
# default a new temporary directory).
set -euo pipefail

usage() {
    echo "usage: $0 FLAVOR [SCENARIO]   e.g. $0 retpoline mono, $0 indirect poly-random-4" >&2
    exit 2
}
[[ $# -ge 1 && $# -le 2 ]] || usage
flavor=$1
scenario=${2:-mono}
secs=${PERF_SECONDS:-3}
[[ $secs =~ ^[0-9]+$ && $secs -ge 1 ]] || { echo "perf-session: PERF_SECONDS must be a whole number >= 1" >&2; exit 2; }

if ! command -v perf >/dev/null 2>&1; then
    echo "perf-session: needs \`perf\`, which is not installed." >&2
    echo "  Debian/Ubuntu: sudo apt-get install linux-perf   (or linux-tools-$(uname -r))" >&2
    echo "  Fedora/RHEL:   sudo dnf install perf" >&2
    exit 1
fi

repo=$(cd "$(dirname "$0")/.." && pwd)
bin=${CALLPATCH:-$repo/target/release/callpatch}
if [[ ! -x $bin ]]; then
    if [[ -n ${CALLPATCH:-} ]]; then
        echo "perf-session: CALLPATCH=$bin is not an executable" >&2
        exit 1
    fi
    if ! command -v cargo >/dev/null 2>&1; then
        echo "perf-session: needs a callpatch binary: set CALLPATCH=/path/to/callpatch, or install Rust (cargo)" >&2
        exit 1
    fi
    echo "perf-session: building callpatch: cargo build --release (in $repo)"
    (cd "$repo" && cargo build --release --bin callpatch)
fi

out=${OUT:-$(mktemp -d -t callpatch-perf.XXXXXX)}
mkdir -p "$out"
paranoid=$(cat /proc/sys/kernel/perf_event_paranoid 2>/dev/null || echo unknown)
echo "perf-session: $flavor $scenario; perf_event_paranoid = $paranoid; output in $out"
if [[ $paranoid =~ ^[0-9]+$ && $paranoid -gt 2 ]]; then
    echo "  perf_event_paranoid > 2 denies even counting your own process; to allow it:" \
         "sudo sysctl kernel.perf_event_paranoid=2" >&2
fi

# The probe: held for longer than both perf steps, killed when we are done (or if we fail).
"$bin" perf --flavor "$flavor" --scenario "$scenario" --hold --seconds $((2 * secs + 30)) >"$out/hold.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true' EXIT
for _ in $(seq 300); do
    grep -q '^holding' "$out/hold.log" && break
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "perf-session: the probe exited before it was ready:" >&2
        cat "$out/hold.log" >&2
        exit 1
    fi
    sleep 0.1
done
grep -q '^holding' "$out/hold.log" || { echo "perf-session: the probe did not announce itself in 30 s" >&2; exit 1; }
cat "$out/hold.log"
map=/tmp/perf-$pid.map
echo "perf map ($map):"
sed 's/^/  /' "$map"

echo
echo "== perf stat -p $pid ($secs s)"
if perf stat -p "$pid" -e cycles,instructions,branches,branch-misses,task-clock,context-switches \
        -o "$out/perf-stat.txt" -- sleep "$secs"; then
    cat "$out/perf-stat.txt"
else
    echo "perf stat failed (see above); perf_event_paranoid = $paranoid" >&2
fi

echo
echo "== perf record -p $pid ($secs s) + perf report --sort symbol"
if perf record -p "$pid" -o "$out/perf.data" -- sleep "$secs" >"$out/perf-record.log" 2>&1; then
    perf report -i "$out/perf.data" --stdio --sort symbol 2>/dev/null | grep -v '^#' | grep -v '^$' | head -20 \
        | tee "$out/perf-report.txt"
else
    echo "perf record is not supported here:" >&2
    cat "$out/perf-record.log" >&2
fi

kill "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
trap - EXIT

echo
echo "== callpatch perf (per call, U/2U subtracted)"
"$bin" perf --flavor "$flavor" --scenario "$scenario" --out "$out"
echo "perf-session: files in $out"
