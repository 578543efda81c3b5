//! Machine identity: who this machine is ([`Identity`], with its `machine_id`) and the `machine.csv`
//! row that says who produced a set of numbers ([`identify`]).
//!
//! Call costs depend on the CPU model and its microcode (predictor behaviour, mitigations), on the
//! kernel's Spectre v2 mitigation (which decides whether indirect calls in the kernel are
//! retpolines), and on the TSC rate that converts reference cycles to ns. All of it is read from
//! `/proc` and `/sys` at run time; the compiler version and git revision are captured at build time
//! by `build.rs`. `machine_id` keys every row of every CSV so results from many machines can be
//! concatenated and plotted side by side.

use sha2::{Digest, Sha256};

use super::rows::MachineRow;

/// Who this machine is, without measuring anything: `machine_id` and the facts it is computed from
/// (the first CPU's identity, the hostname, the kernel release), all read from `/proc`. Commands whose
/// rows only need the key (`patch`, `stress`, `hazard`) stop here; [`identify`] adds what takes a
/// measurement (the TSC rate) or a probe of the PMU (the counter status) to make a `machine.csv` row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The key of every row: see [`machine_id`].
    pub machine_id: String,
    /// The first processor of `/proc/cpuinfo` (model name and microcode go into the id).
    pub cpu: CpuInfo,
    /// `/proc/sys/kernel/hostname` (`unknown` if unreadable).
    pub hostname: String,
    /// `/proc/sys/kernel/osrelease` (`unknown` if unreadable).
    pub kernel: String,
}

impl Identity {
    /// Reads this machine's identity.
    pub fn read() -> Identity {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = CpuInfo::parse(&cpuinfo);
        let kernel = read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_else(|| "unknown".into());
        let hostname = read_trimmed("/proc/sys/kernel/hostname").unwrap_or_else(|| "unknown".into());
        Identity { machine_id: machine_id(&cpu.model_name, &hostname, &cpu.microcode, &kernel), cpu, hostname, kernel }
    }
}

/// The `machine.csv` row of this machine: its [`Identity`] plus `tsc_hz`, the calibrated TSC rate
/// (probes' `measure::tsc::hz`), `counters`, the hardware-counter status line (probes'
/// `measure::hardware_counters_status`), the kernel's Spectre v2 mitigation and the build-time facts.
pub fn identify(tsc_hz: f64, counters: &str) -> MachineRow {
    let Identity { machine_id, cpu, hostname: _, kernel } = Identity::read();
    let spectre_v2 = vulnerability("spectre_v2");
    let (kernel_cfi, platform) = (kernel_cfi(&kernel), cpu.platform());
    MachineRow {
        machine_id,
        cpu_model: cpu.model_name,
        family: cpu.family,
        model: cpu.model,
        stepping: cpu.stepping,
        microcode: cpu.microcode,
        kernel,
        spectre_v2,
        tsc_hz,
        counters: counters.to_string(),
        rustc: env!("CALLPATCH_RUSTC_VERSION").to_string(),
        callpatch_version: env!("CARGO_PKG_VERSION").to_string(),
        git_rev: env!("CALLPATCH_GIT_REV").to_string(),
        date: utc_iso8601(std::time::SystemTime::now()),
        spec_rstack_overflow: Some(vulnerability("spec_rstack_overflow")),
        retbleed: Some(vulnerability("retbleed")),
        its: Some(vulnerability("indirect_target_selection")),
        cmdline: Some(mitigation_options(&std::fs::read_to_string("/proc/cmdline").unwrap_or_default())),
        kernel_cfi: Some(kernel_cfi),
        platform: Some(platform.into()),
    }
}

/// A line of `/sys/devices/system/cpu/vulnerabilities/`, or `unknown (...)`.
fn vulnerability(name: &str) -> String {
    read_trimmed(&format!("/sys/devices/system/cpu/vulnerabilities/{name}"))
        .unwrap_or_else(|| "unknown (not reported by this kernel)".into())
}

/// The options of a kernel command line that choose call and return mitigations. The runtime CFI mode
/// is not in sysfs: `cfi=` here and the kernel config are all user space can read of it.
pub fn mitigation_options(cmdline: &str) -> String {
    const KEYS: [&str; 6] = ["mitigations=", "spectre_v2=", "retbleed=", "its=", "cfi=", "spec_rstack_overflow="];
    let opts: Vec<&str> = cmdline.split_whitespace().take_while(|w| *w != "--").collect();
    opts.into_iter().filter(|w| KEYS.iter().any(|k| w.starts_with(k))).collect::<Vec<_>>().join(" ")
}

/// `y` or `n` for kCFI (`CONFIG_CFI_CLANG`, called `CONFIG_CFI` since 6.18) from the config of the
/// running kernel (`release`), or `unknown (...)` when none is readable.
fn kernel_cfi(release: &str) -> String {
    let config = read_gz("/proc/config.gz").or_else(|| std::fs::read_to_string(format!("/boot/config-{release}")).ok());
    match config {
        Some(c) => config_cfi(&c).into(),
        None => "unknown (no /proc/config.gz or /boot/config-RELEASE)".into(),
    }
}

/// `y` when a kernel config enables kCFI, else `n`.
pub fn config_cfi(config: &str) -> &'static str {
    let on = config.lines().any(|l| matches!(l.trim(), "CONFIG_CFI_CLANG=y" | "CONFIG_CFI=y"));
    if on {
        "y"
    } else {
        "n"
    }
}

fn read_gz(path: &str) -> Option<String> {
    let out = std::process::Command::new("gzip").args(["-dc", path]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn read_trimmed(path: &str) -> Option<String> {
    let s = std::fs::read_to_string(path).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

/// The identity fields of the first processor in `/proc/cpuinfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuInfo {
    /// `model name`, e.g. `Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz` (`unknown` when absent).
    pub model_name: String,
    /// `cpu family` (0 when absent).
    pub family: u32,
    /// `model`, the model number (0 when absent).
    pub model: u32,
    /// `stepping` (0 when absent).
    pub stepping: u32,
    /// `microcode`, the loaded revision as the kernel prints it, e.g. `0xd0003a5` (`unknown` when
    /// absent).
    pub microcode: String,
    /// Whether `flags` include `hypervisor`: the kernel runs as a guest (and the hypervisor may hide
    /// CPU features from it).
    pub guest: bool,
}

impl CpuInfo {
    /// Parses the first processor block; absent fields are `unknown` / 0.
    pub fn parse(cpuinfo: &str) -> CpuInfo {
        let mut info = CpuInfo {
            model_name: "unknown".into(),
            family: 0,
            model: 0,
            stepping: 0,
            microcode: "unknown".into(),
            guest: false,
        };
        for line in cpuinfo.lines() {
            if line.trim().is_empty() {
                break; // end of the first processor's block
            }
            let Some((key, value)) = line.split_once(':') else { continue };
            let value = value.trim();
            match key.trim() {
                "model name" => info.model_name = value.to_string(),
                "cpu family" => info.family = value.parse().unwrap_or(0),
                "model" => info.model = value.parse().unwrap_or(0),
                "stepping" => info.stepping = value.parse().unwrap_or(0),
                "microcode" => info.microcode = value.to_string(),
                "flags" => info.guest = value.split_whitespace().any(|f| f == "hypervisor"),
                _ => {}
            }
        }
        info
    }

    /// `guest` or `bare metal` (the `platform` column of `machine.csv`).
    pub fn platform(&self) -> &'static str {
        if self.guest {
            "guest"
        } else {
            "bare metal"
        }
    }
}

/// A stable, readable key: the CPU model's slug, the hostname's slug and a short hash of model,
/// microcode and kernel (so a microcode or kernel update yields a new id), e.g. `xeon-myhost-3fa2c1`.
pub fn machine_id(model_name: &str, hostname: &str, microcode: &str, kernel: &str) -> String {
    let hash = Sha256::digest(format!("{model_name}\n{microcode}\n{kernel}").as_bytes());
    let short: String = hash[..3].iter().map(|b| format!("{b:02x}")).collect();
    let cpu = cpu_slug(model_name);
    let host = slug(hostname, 24);
    [cpu, host, short].into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>().join("-")
}

/// `Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz` → `xeon-platinum-8375c`: vendor marks, the
/// clock and the words every model has removed.
fn cpu_slug(model_name: &str) -> String {
    let lower = model_name.to_lowercase().replace("(r)", " ").replace("(tm)", " ");
    let before_clock = lower.split('@').next().unwrap_or("");
    let kept: Vec<&str> = before_clock
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty() && !["intel", "amd", "cpu", "processor"].contains(w))
        .collect();
    slug(&kept.join(" "), 32)
}

/// Lower-case ASCII letters and digits, runs of anything else as one `-`, at most `max` characters.
fn slug(s: &str, max: usize) -> String {
    let mut out = String::new();
    for c in s.to_lowercase().chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.truncate(max);
    out.trim_end_matches('-').to_string()
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a time (UTC; before the epoch clamps to the epoch).
pub fn utc_iso8601(t: std::time::SystemTime) -> String {
    let secs = t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day) (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn parses_the_first_processor_only() {
        let text = "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 167\n\
                    model name\t: Intel(R) Xeon(R) Processor\nstepping\t: 1\nmicrocode\t: 0x1\n\
                    flags\t\t: fpu sse2 hypervisor\n\n\
                    processor\t: 1\nmodel name\t: other\nflags\t\t: fpu\n";
        let c = CpuInfo::parse(text);
        assert_eq!(
            c,
            CpuInfo {
                model_name: "Intel(R) Xeon(R) Processor".into(),
                family: 6,
                model: 167,
                stepping: 1,
                microcode: "0x1".into(),
                guest: true,
            }
        );
        assert_eq!(c.platform(), "guest");
        assert_eq!(CpuInfo::parse("").model_name, "unknown");
        assert_eq!(CpuInfo::parse("flags\t\t: fpu sse2 hypervisorx\n").platform(), "bare metal");
    }

    #[test]
    fn reads_the_mitigation_options_and_kcfi_from_cmdline_and_config() {
        let cmdline = "BOOT_IMAGE=/vmlinuz root=/dev/vda1 spectre_v2=retpoline cfi=kcfi quiet -- its=off";
        assert_eq!(
            mitigation_options(cmdline),
            "spectre_v2=retpoline cfi=kcfi",
            "init's arguments after -- are not the kernel's"
        );
        assert_eq!(mitigation_options("quiet"), "");
        assert_eq!(config_cfi("CONFIG_X=y\nCONFIG_CFI_CLANG=y\n"), "y");
        assert_eq!(config_cfi("CONFIG_CFI=y\n"), "y");
        assert_eq!(config_cfi("# CONFIG_CFI_CLANG is not set\nCONFIG_CFI_CLANG_X=y\n"), "n");
    }

    #[test]
    fn machine_id_is_a_stable_slug() {
        let id = machine_id("Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz", "My.Host", "0xd0003a5", "6.8.0");
        assert!(id.starts_with("xeon-platinum-8375c-my-host-"), "{id}");
        assert_eq!(id.len(), "xeon-platinum-8375c-my-host-".len() + 6);
        assert_eq!(id, machine_id("Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz", "My.Host", "0xd0003a5", "6.8.0"));
        assert_ne!(id, machine_id("Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz", "My.Host", "0xd0003a6", "6.8.0"));
        assert!(machine_id("AMD EPYC 7B13 64-Core Processor", "h", "0x1", "k").starts_with("epyc-7b13-64-core-h-"));
    }

    #[test]
    fn dates_are_iso8601_utc() {
        assert_eq!(utc_iso8601(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(utc_iso8601(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(utc_iso8601(UNIX_EPOCH + Duration::from_secs(1_700_000_000)), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn identifies_this_machine() {
        let row = identify(2.5e9, "unavailable (ENOENT: test)");
        assert!(!row.machine_id.is_empty() && !row.machine_id.contains(' '));
        assert!(!row.kernel.is_empty() && row.kernel != "unknown", "{row:?}");
        assert!(!row.rustc.is_empty() && !row.git_rev.is_empty());
        assert_eq!(row.callpatch_version, env!("CARGO_PKG_VERSION"));
        assert_eq!(row.date.len(), "2026-01-01T00:00:00Z".len());
        assert_eq!(row.tsc_hz, 2.5e9);
    }

    #[test]
    fn identity_alone_gives_the_same_machine_id() {
        let id = Identity::read();
        assert_eq!(id.machine_id, machine_id(&id.cpu.model_name, &id.hostname, &id.cpu.microcode, &id.kernel));
        assert_eq!(id.machine_id, identify(0.0, "").machine_id);
        assert!(!id.kernel.is_empty() && id.kernel != "unknown", "{id:?}");
    }
}
