//! One row type per CSV file that `callpatch` writes (every column in
//! `results/README.md`; every file is tidy, one row per measurement, header first). Field order is
//! column order. Measurement rows carry `machine_id` so CSVs gathered on many machines can be
//! concatenated and plotted side by side. Writing and reading the files (the `csv` crate) is
//! `callpatch_analysis::report::rows`; this module is only what a row holds.
//!
//! A column that holds a name of the vocabulary has its type ([`Flavor`], [`SiteKind`], [`Protocol`](crate::Protocol),
//! [`PatchSubject`](crate::PatchSubject) for `patch.csv`, whose `membarrier` rows time one sync) and is written as the same
//! text; reading a file with a name this build does not know is an error that quotes it.
//!
//! Numbers that may be unavailable (a counter this machine lacks) are `String` columns holding either
//! the number or `unavailable (reason)`; never a silent 0.
//!
//! Columns appended after the first schema may be missing from older files and read by column name:
//! a count that would otherwise be invented reads as `None` (written as the number when known), a
//! setting reads as its "none/unknown" default (0 callers, empty method, NaN sync cost).
//!
//! [`Protocol::SYNC_ROW`]: crate::Protocol::SYNC_ROW

#[cfg(feature = "serde")]
use serde::{Deserialize, Serialize};

use crate::flavor::Flavor;
use crate::kind::SiteKind;
use crate::scenario::RowScenario;

/// `machine.csv`: who produced the numbers.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct MachineRow {
    /// CPU model slug, hostname slug and a short hash of model, microcode and kernel.
    pub machine_id: String,
    /// `model name` of `/proc/cpuinfo`.
    pub cpu_model: String,
    /// CPU family.
    pub family: u32,
    /// CPU model number.
    pub model: u32,
    /// CPU stepping.
    pub stepping: u32,
    /// Microcode revision.
    pub microcode: String,
    /// Kernel release (`uname -r`).
    pub kernel: String,
    /// The kernel's Spectre v2 mitigation line.
    pub spectre_v2: String,
    /// TSC rate, calibrated against `CLOCK_MONOTONIC_RAW`.
    pub tsc_hz: f64,
    /// `available (...)` with the hardware events that opened, or `unavailable (REASON)`.
    pub counters: String,
    /// The compiler that built callpatch.
    pub rustc: String,
    /// callpatch's version.
    pub callpatch_version: String,
    /// The git revision built (`-dirty` for a modified tree).
    pub git_rev: String,
    /// When the row was written, UTC, ISO 8601.
    pub date: String,
    // Appended for the composed "this kernel" comparison (absent in older files: `None`).
    /// `/sys/devices/system/cpu/vulnerabilities/spec_rstack_overflow` (AMD SRSO), or `unknown (...)`.
    #[cfg_attr(feature = "serde", serde(default))]
    pub spec_rstack_overflow: Option<String>,
    /// `.../vulnerabilities/retbleed`, or `unknown (...)`.
    #[cfg_attr(feature = "serde", serde(default))]
    pub retbleed: Option<String>,
    /// `.../vulnerabilities/indirect_target_selection` (Intel ITS), or `unknown (...)`.
    #[cfg_attr(feature = "serde", serde(default))]
    pub its: Option<String>,
    /// The mitigation options of `/proc/cmdline` (`mitigations=`, `spectre_v2=`, `retbleed=`, `its=`,
    /// `cfi=`, `spec_rstack_overflow=`), space-separated; empty when there are none.
    #[cfg_attr(feature = "serde", serde(default))]
    pub cmdline: Option<String>,
    /// Whether the kernel was built with kCFI: `y` or `n` from its config (`/proc/config.gz`,
    /// `/boot/config-RELEASE`), or `unknown (...)` when no config is readable.
    #[cfg_attr(feature = "serde", serde(default))]
    pub kernel_cfi: Option<String>,
    /// `guest` when `/proc/cpuinfo` has the `hypervisor` flag, else `bare metal`.
    #[cfg_attr(feature = "serde", serde(default))]
    pub platform: Option<String>,
}

/// `calls.csv`: cost of one call of a flavor in a scenario. Cycles are TSC reference cycles unless
/// `timer` says otherwise.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct CallsRow {
    /// The machine (see [`MachineRow`]).
    pub machine_id: String,
    /// The call flavor.
    pub flavor: Flavor,
    /// `mono`, `poly-rr`, `poly-random`, `sites` or `offset` ([`crate::Scenario::name`]).
    pub scenario: String,
    /// K, N or B; empty for mono ([`crate::Scenario::param`]).
    pub param: String,
    /// U, calls per iteration of the shorter loop.
    pub unroll: u32,
    /// Timed U/2U pairs.
    pub repeats: u32,
    /// Smallest block estimate of one call's cost (an empty cell, NaN here, when the pair could not be
    /// measured: `note` says why).
    #[cfg_attr(feature = "serde", serde(with = "blank_if_unmeasured"))]
    pub cycles_min: f64,
    /// Median of the block estimates (empty/NaN when unmeasured).
    #[cfg_attr(feature = "serde", serde(with = "blank_if_unmeasured"))]
    pub cycles_median: f64,
    /// 90th percentile of the block estimates (empty/NaN when unmeasured).
    #[cfg_attr(feature = "serde", serde(with = "blank_if_unmeasured"))]
    pub cycles_p90: f64,
    /// `cycles_median` in ns.
    #[cfg_attr(feature = "serde", serde(with = "blank_if_unmeasured"))]
    pub ns_median: f64,
    /// Instructions per call, or `unavailable (REASON)`.
    pub instructions: String,
    /// Branch misses per call, or `unavailable (REASON)`.
    pub branch_misses: String,
    /// The unit of the cycle columns (`tsc-ref-cycles`).
    pub timer: String,
    // Appended by the paired measurement (absent in older files: `None`, and an empty cell when the
    // row could not be paired).
    /// The baseline this row was measured in alternation with: `direct` in the same scenario, or
    /// `direct mono` where the scenario has no direct row (flavor and scenario, CLI spelling).
    #[cfg_attr(feature = "serde", serde(default))]
    pub baseline: Option<String>,
    /// Median over block pairs of (this flavor's cost / the baseline's cost in the same block).
    #[cfg_attr(feature = "serde", serde(default))]
    pub ratio_median: Option<f64>,
    /// Lower end of the 95% interval on `ratio_median` (see `results/README.md` for the method).
    #[cfg_attr(feature = "serde", serde(default))]
    pub ratio_lo: Option<f64>,
    /// Upper end of the 95% interval on `ratio_median`.
    #[cfg_attr(feature = "serde", serde(default))]
    pub ratio_hi: Option<f64>,
    /// Block-pair samples kept.
    #[cfg_attr(feature = "serde", serde(default))]
    pub samples: Option<u32>,
    /// Samples thrown out as disturbed (context switch, migration, TSC gap; see `results/README.md`).
    #[cfg_attr(feature = "serde", serde(default))]
    pub discarded: Option<u32>,
    /// True when the interval is wider than ±5% of the median, or too many samples were discarded.
    #[cfg_attr(feature = "serde", serde(default))]
    pub noisy: Option<bool>,
    /// Why the row is noisy or could not be measured; empty otherwise.
    #[cfg_attr(feature = "serde", serde(default))]
    pub note: Option<String>,
    /// The core clock estimated in the same run from a dependent chain of known latency, Hz.
    #[cfg_attr(feature = "serde", serde(default))]
    pub core_hz_est: Option<f64>,
    /// `cycles_median` in estimated core cycles (`cycles_median × core_hz_est / tsc_hz`): an estimate.
    #[cfg_attr(feature = "serde", serde(default))]
    pub core_cycles_median: Option<f64>,
    /// How the generated code was mapped (`calls --arena`: rwx, sealed, dualmap).
    #[cfg_attr(feature = "serde", serde(default))]
    pub arena: Option<String>,
    /// The CPU the measuring thread was pinned to (`calls --cpu`, or the default chosen).
    #[cfg_attr(feature = "serde", serde(default))]
    pub cpu: Option<u32>,
    /// How the callee returned ([`crate::ReturnKind`]; absent in older files: `ret`).
    #[cfg_attr(feature = "serde", serde(default))]
    pub ret: Option<crate::ReturnKind>,
    /// Which layout of targets and thunks (0, 1, …; see `results/README.md`); absent in older files: 0.
    #[cfg_attr(feature = "serde", serde(default))]
    pub placement: Option<u32>,
}

impl CallsRow {
    /// A row of `flavor` in `scenario` (`param`) with nothing measured yet: costs NaN (empty in the CSV),
    /// counts 0, text and every optional column empty. The base a measurement, a refusal or a test
    /// fills in with `CallsRow { .., ..CallsRow::new(..) }`.
    pub fn new(machine_id: &str, flavor: Flavor, scenario: &str, param: &str) -> CallsRow {
        CallsRow {
            machine_id: machine_id.to_string(),
            flavor,
            scenario: scenario.to_string(),
            param: param.to_string(),
            unroll: 0,
            repeats: 0,
            cycles_min: f64::NAN,
            cycles_median: f64::NAN,
            cycles_p90: f64::NAN,
            ns_median: f64::NAN,
            instructions: String::new(),
            branch_misses: String::new(),
            timer: String::new(),
            baseline: None,
            ratio_median: None,
            ratio_lo: None,
            ratio_hi: None,
            samples: None,
            discarded: None,
            noisy: None,
            note: None,
            core_hz_est: None,
            core_cycles_median: None,
            arena: None,
            cpu: None,
            ret: None,
            placement: None,
        }
    }

    /// The row's scenario as the command line spells it (`mono`, `poly-random-4`, `offset-62`).
    pub fn cli_scenario(&self) -> String {
        if self.param.is_empty() {
            self.scenario.clone()
        } else {
            format!("{}-{}", self.scenario, self.param)
        }
    }

    /// The row's scenario, read leniently ([`RowScenario::parse`]).
    pub fn scenario(&self) -> RowScenario {
        RowScenario::parse(&self.scenario, &self.param)
    }
}

/// `patch.csv`: latency of patching a batch of sites with one protocol.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct PatchRow {
    /// The machine (see [`MachineRow`]).
    pub machine_id: String,
    /// A protocol, or `membarrier` for the cost of one sync ([`crate::PatchSubject`]).
    pub protocol: crate::PatchSubject,
    /// Sites per batch.
    pub batch: u64,
    /// membarrier(SYNC_CORE) calls per batch.
    pub syncs: u64,
    /// Fastest `patch_batch` call, ns.
    pub latency_ns_min: f64,
    /// Median `patch_batch` call, ns.
    pub latency_ns_median: f64,
    /// Traps the SIGTRAP handler emulated during all the timed repeats.
    pub traps: u64,
    // Appended by the patcher (the base columns alone cannot tell these measurements apart):
    /// Caller threads running the sites during the measurement (absent: 0, the quiet case).
    #[cfg_attr(feature = "serde", serde(default))]
    pub callers: u32,
    /// Text write method (`alias`, `mprotect`, `procmem`, `direct`; absent: empty, unknown).
    #[cfg_attr(feature = "serde", serde(default))]
    pub method: String,
    /// Median cost of one membarrier(SYNC_CORE) in the same run, with the same callers, ns; NaN when it
    /// could not be measured or the column is absent.
    #[cfg_attr(feature = "serde", serde(default = "unknown_ns"))]
    pub sync_ns: f64,
    /// Sites the aligned policy patched through their trampoline, per batch.
    #[cfg_attr(feature = "serde", serde(default))]
    pub fallback: Option<u64>,
    /// Traps whose handler ran after their batch had finished.
    #[cfg_attr(feature = "serde", serde(default))]
    pub late_traps: Option<u64>,
    /// Lower end of the 95% interval on `latency_ns_median`.
    #[cfg_attr(feature = "serde", serde(default))]
    pub latency_ns_lo: Option<f64>,
    /// Upper end of the 95% interval on `latency_ns_median`.
    #[cfg_attr(feature = "serde", serde(default))]
    pub latency_ns_hi: Option<f64>,
}

/// A cost that may not have been measured: NaN in memory, an empty cell in the file (never the text
/// `NaN`, which a spreadsheet or a plot would take for a number); an empty cell reads back as NaN.
#[cfg(feature = "serde")]
mod blank_if_unmeasured {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_some(v)
        } else {
            s.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

#[cfg(feature = "serde")]
fn unknown_ns() -> f64 {
    f64::NAN
}

/// `stress.csv`: a live-patching run with concurrent callers, and its verdict.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct StressRow {
    /// The machine (see [`MachineRow`]).
    pub machine_id: String,
    /// The protocol.
    pub protocol: crate::Protocol,
    /// Caller threads.
    pub callers: u32,
    /// How long the patcher ran.
    pub seconds: f64,
    /// Site patches (sites × batches).
    pub patches: u64,
    /// Calls made by all callers.
    pub calls: u64,
    /// Calls that landed anywhere but a target.
    pub misdirected: u64,
    /// Traps the handler emulated.
    pub traps: u64,
    /// The child died of a signal (the counts are then 0).
    pub crashed: bool,
    // Appended by the patcher:
    /// Traps whose handler ran after their batch had finished.
    #[cfg_attr(feature = "serde", serde(default))]
    pub late_traps: Option<u64>,
    /// Calls that arrived nowhere (neither a target nor the catch zone).
    #[cfg_attr(feature = "serde", serde(default))]
    pub lost: Option<u64>,
    /// Site patches per second.
    #[cfg_attr(feature = "serde", serde(default))]
    pub patches_per_s: Option<f64>,
}

/// `hazard.csv`: torn executions of a cache-line-crossing site rewritten by one writer while a thread
/// executes it (run in a child process; `crashed` when the child died of a signal).
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct HazardRow {
    /// The machine (see [`MachineRow`]).
    pub machine_id: String,
    /// `naive-bytewise`, `naive-split4` or `bp`.
    pub writer: crate::HazardWriter,
    /// Rewrites done.
    pub patches: u64,
    /// Calls that executed a torn rel32 (a mix of old and new bytes).
    pub torn: u64,
    /// Absent: computed from `torn` and `patches` by [`HazardRow::per_million`].
    #[cfg_attr(feature = "serde", serde(default))]
    pub torn_per_million: Option<f64>,
    // Appended (not read by the report; absent in older files):
    /// Calls the executing thread made meanwhile.
    #[cfg_attr(feature = "serde", serde(default))]
    pub calls: u64,
    /// How long the writer ran.
    #[cfg_attr(feature = "serde", serde(default))]
    pub seconds: f64,
    /// The child died of a signal (counts then 0).
    #[cfg_attr(feature = "serde", serde(default))]
    pub crashed: bool,
}

impl HazardRow {
    /// Torn executions per million patches (from the column, else computed).
    pub fn per_million(&self) -> Option<f64> {
        self.torn_per_million.or_else(|| (self.patches > 0).then(|| self.torn as f64 * 1e6 / self.patches as f64))
    }
}

/// `census.csv`: call sites of one kind in one binary and how many cross each boundary.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct CensusRow {
    /// The binary's canonical path.
    pub binary: String,
    /// SHA-256 of the whole file; empty when the file has a GNU build-id and no hash was asked for
    /// (`census --sha256`).
    pub sha256: String,
    /// The kind of site counted.
    pub kind: SiteKind,
    /// Sites of this kind.
    pub count: u64,
    /// Sites whose last four bytes touch two 64-byte lines.
    pub cross64_rel32: u64,
    /// Sites whose instruction touches two 64-byte lines.
    pub cross64_insn: u64,
    /// Sites whose instruction touches two 32-byte blocks.
    pub cross32_insn: u64,
    /// Sites whose instruction touches two 16-byte blocks.
    pub cross16_insn: u64,
    /// Sites whose instruction touches two 8-byte words.
    pub cross8_insn: u64,
    /// Sites the aligned-only policy leaves on the trampoline under the line rule.
    pub fallback_line: u64,
    /// Sites the aligned-only policy leaves on the trampoline under the 8-byte word rule.
    pub fallback_word: u64,
    /// The file's GNU build-id (`NT_GNU_BUILD_ID` note), hex: its identity for perf and debuginfod;
    /// empty when it has none (then `sha256` is always filled).
    #[cfg_attr(feature = "serde", serde(default))]
    pub build_id: String,
    /// Indirect branches and returns whose last byte lies in the lower half of its 64-byte line
    /// (bytes 0–31): those the kernel's ITS mitigation sends through a thunk. Empty for other kinds.
    #[cfg_attr(feature = "serde", serde(default))]
    pub its_lower: Option<u64>,
    /// The same sites with their last byte in the upper half (bytes 32–63), left in place by ITS.
    #[cfg_attr(feature = "serde", serde(default))]
    pub its_upper: Option<u64>,
}

/// `census_offsets.csv`: histogram of site start address mod 64.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct CensusOffsetRow {
    /// The binary's canonical path.
    pub binary: String,
    /// The kind of site counted.
    pub kind: SiteKind,
    /// Start address mod 64.
    pub offset_mod_64: u8,
    /// Sites of this kind starting at that byte of a line.
    pub count: u64,
}

/// `census_static_calls.csv`: one row per static call key.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct StaticCallKeyRow {
    /// The binary's canonical path.
    pub binary: String,
    /// The `__SCK__*` symbol, or `?ADDRESS` where no symbol names the key.
    pub key: String,
    /// The key's address, hex.
    pub key_address: String,
    /// Table entries for the key.
    pub sites: u64,
    /// Of those, `call rel32`.
    pub calls: u64,
    /// Of those, `jmp rel32` (tail calls).
    pub tail_jmps: u64,
    /// Sites whose instruction is not a `call`/`jmp` to this key's `__SCT__` trampoline.
    pub not_to_trampoline: u64,
    /// Sites the aligned-only policy leaves on the trampoline under the line rule.
    pub fallback_line: u64,
    /// Sites the aligned-only policy leaves on the trampoline under the 8-byte word rule.
    pub fallback_word: u64,
}

/// `census --by-site FILE`: one site: where it is, what it is, what it crosses, and the symbol it is in.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct SiteRow {
    /// The binary's canonical path.
    pub binary: String,
    /// Hex address (a section offset in a relocatable object).
    pub address: String,
    /// What the site is.
    pub kind: SiteKind,
    /// Instruction bytes.
    pub length: u8,
    /// Start address mod 64.
    pub offset_mod_64: u8,
    /// The last four bytes touch two 64-byte lines.
    pub cross64_rel32: bool,
    /// The instruction touches two 64-byte lines.
    pub cross64_insn: bool,
    /// The instruction touches two 32-byte blocks.
    pub cross32_insn: bool,
    /// The instruction touches two 16-byte blocks.
    pub cross16_insn: bool,
    /// The instruction touches two 8-byte words.
    pub cross8_insn: bool,
    /// The aligned-only policy leaves it on the trampoline under the line rule.
    pub fallback_line: bool,
    /// The aligned-only policy leaves it on the trampoline under the 8-byte word rule.
    pub fallback_word: bool,
    /// `function+0xoff`, or empty where no symbol precedes the site.
    pub symbol: String,
    /// For a static call site: its key and `tail` for a tail call; else empty.
    pub detail: String,
}

/// `perf.csv`: one event of a `callpatch perf` session, per call of one flavor in one scenario
/// (U/2U subtracted like `calls.csv`). `per_call` is the number or `unavailable (reason)`;
/// `read_path` is `rdpmc`, `read()`, `rdtsc` (the `tsc-ref-cycles` row) or `none`; `note` says when the
/// group was multiplexed.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct PerfRow {
    /// The machine (see [`MachineRow`]).
    pub machine_id: String,
    /// The call flavor.
    pub flavor: Flavor,
    /// As in `calls.csv`.
    pub scenario: String,
    /// As in `calls.csv`.
    pub param: String,
    /// The perf event.
    pub event: String,
    /// The event count per call, or `unavailable (reason)`.
    pub per_call: String,
    /// How the counter was read.
    pub read_path: String,
    /// Whether the group was multiplexed.
    pub note: String,
    /// U, calls per iteration of the shorter loop.
    pub unroll: u32,
    /// Loop iterations per timed run.
    pub iterations: u64,
    /// Timed U/2U pairs.
    pub repeats: u32,
}

/// `compare.csv` (`callpatch compare BASE NEW --out DIR`): one measurement present in both result
/// folders, the change from BASE to NEW with its 95% interval, and the verdict. `calls` rows are keyed
/// by flavor, scenario and param; `patch` rows by protocol, batch, callers and method (the columns of
/// the other kind are empty). Lower is better for every quantity compared, so `faster` means NEW is
/// lower. How the interval, the p-value and the verdict are computed: `results/README.md`.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct CompareRow {
    /// `calls` or `patch`: the file the two rows come from.
    pub kind: String,
    /// The BASE folder's machine (see [`MachineRow`]).
    pub base_machine_id: String,
    /// The NEW folder's machine.
    pub new_machine_id: String,
    /// The flavor (`calls`) or the protocol, or `membarrier` (`patch`).
    pub subject: String,
    /// As in `calls.csv`; empty for `patch`.
    pub scenario: String,
    /// As in `calls.csv`; empty for `patch` and for mono.
    pub param: String,
    /// Sites per batch (`patch`); empty for `calls`.
    pub batch: Option<u64>,
    /// Concurrent caller threads (`patch`); empty for `calls`.
    pub callers: Option<u32>,
    /// Text write method (`patch`); empty for `calls`.
    pub method: String,
    /// What was compared: `ratio` (`ratio_median` with `ratio_lo`/`ratio_hi`), `cycles` (the fallback
    /// for files without ratios: `cycles_median`, spread from `cycles_min`/`cycles_p90`), `latency_ns`
    /// (`latency_ns_median` with `latency_ns_lo`/`latency_ns_hi`) or `latency_ns_spread` (the fallback:
    /// spread from `latency_ns_min`).
    pub quantity: String,
    /// BASE's value.
    pub base: f64,
    /// Lower end of BASE's interval.
    pub base_lo: f64,
    /// Upper end of BASE's interval.
    pub base_hi: f64,
    /// NEW's value.
    pub new: f64,
    /// Lower end of NEW's interval.
    pub new_lo: f64,
    /// Upper end of NEW's interval.
    pub new_hi: f64,
    /// NEW / BASE − 1, in percent.
    pub change_pct: f64,
    /// Lower end of the 95% interval on `change_pct`.
    pub change_lo_pct: f64,
    /// Upper end of the 95% interval on `change_pct`.
    pub change_hi_pct: f64,
    /// Two-sided p-value of "no change".
    pub p_value: f64,
    /// The Benjamini–Hochberg adjusted p-value over all rows compared (a row is a discovery at q = 0.05
    /// when this is ≤ 0.05).
    pub q_value: f64,
    /// `faster`, `slower` or `no change`.
    pub verdict: String,
    /// True when either side's row was flagged noisy.
    pub noisy: bool,
    /// Why the verdict is what it is when that is not plain (below the threshold, noisy, a fallback).
    pub note: String,
}
