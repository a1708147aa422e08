//! The standard Prometheus process metrics (the names every exporter uses, so existing
//! dashboards and alerts work), read from `/proc/self` at scrape time. Served once per
//! `/metrics` endpoint, however many services share the process (`sipcapture up`). Linux only:
//! elsewhere the files are missing and the metrics are left out.

use std::fmt::Write as _;

/// Clock ticks per second of `/proc` times (`USER_HZ`): 100 on every Linux architecture's ABI;
/// the Prometheus Go client's procfs reader assumes the same (no `sysconf` without `unsafe`).
const USER_HZ: f64 = 100.0;

/// One reading of the process metrics; a field is `None` when its source could not be read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessStats {
    /// `process_cpu_seconds_total`: user + system CPU time.
    pub cpu_seconds: Option<f64>,
    /// `process_resident_memory_bytes` (`VmRSS`).
    pub resident_memory_bytes: Option<u64>,
    /// `process_virtual_memory_bytes` (`VmSize`).
    pub virtual_memory_bytes: Option<u64>,
    /// `process_start_time_seconds`: since the Unix epoch.
    pub start_time_seconds: Option<f64>,
    /// `process_open_fds`.
    pub open_fds: Option<u64>,
    /// `process_max_fds`: the soft limit on open files.
    pub max_fds: Option<u64>,
}

/// Why a `/proc` file could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProcError {
    /// `/proc/self/stat` has fewer fields than expected after the command name.
    #[error("/proc/self/stat: field {field} missing")]
    StatField {
        /// The 1-based field number of proc(5).
        field: usize,
    },
    /// A field is not a number.
    #[error("{file}: {what} is not a number")]
    NotANumber {
        /// The file.
        file: &'static str,
        /// The field.
        what: &'static str,
    },
}

impl ProcessStats {
    /// Reads `/proc/self` (and `/proc/stat` for the boot time).
    pub fn read() -> Self {
        let read = |path: &str| std::fs::read_to_string(path).ok();
        let stat = read("/proc/self/stat").and_then(|s| parse_stat(&s).ok());
        let status = read("/proc/self/status");
        let boot_time = read("/proc/stat").and_then(|s| parse_boot_time(&s));
        let open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|dir| dir.count() as u64);
        ProcessStats {
            cpu_seconds: stat.map(|s| (s.utime + s.stime) as f64 / USER_HZ),
            resident_memory_bytes: status.as_deref().and_then(|s| status_kib(s, "VmRSS")),
            virtual_memory_bytes: status.as_deref().and_then(|s| status_kib(s, "VmSize")),
            start_time_seconds: stat
                .zip(boot_time)
                .map(|(s, boot)| boot as f64 + s.start_ticks as f64 / USER_HZ),
            open_fds,
            max_fds: read("/proc/self/limits").and_then(|s| parse_max_fds(&s)),
        }
    }

    /// Appends the metrics that could be read, in the text format (0.0.4).
    pub fn render(&self, out: &mut String) {
        let as_f64 = |v: Option<u64>| v.map(|v| v as f64);
        let values = [
            self.cpu_seconds,
            as_f64(self.resident_memory_bytes),
            as_f64(self.virtual_memory_bytes),
            self.start_time_seconds,
            as_f64(self.open_fds),
            as_f64(self.max_fds),
        ];
        for ((name, kind, help), value) in METRICS.iter().zip(values) {
            let Some(value) = value else { continue };
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {value}");
        }
    }
}

/// (name, type, help) of each process metric, in [`ProcessStats::render`]'s order; the help
/// texts of the Prometheus client libraries.
const METRICS: [(&str, &str, &str); 6] = [
    (
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
    ),
    (
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
    ),
    (
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory size in bytes.",
    ),
    (
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
    ),
    (
        "process_open_fds",
        "gauge",
        "Number of open file descriptors.",
    ),
    (
        "process_max_fds",
        "gauge",
        "Maximum number of open file descriptors.",
    ),
];

/// The fields of `/proc/self/stat` we use (proc(5)), in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Field 14.
    pub utime: u64,
    /// Field 15.
    pub stime: u64,
    /// Field 22: start time after boot.
    pub start_ticks: u64,
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) is in parentheses and may hold spaces
/// and parentheses itself, so fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Result<Stat, ProcError> {
    let after_comm = text
        .rfind(')')
        .map_or("", |i| text.get(i + 1..).unwrap_or(""));
    // Field 3 (state) is the first after the command name.
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let field = |n: usize, what: &'static str| -> Result<u64, ProcError> {
        let raw = fields.get(n - 3).ok_or(ProcError::StatField { field: n })?;
        raw.parse().map_err(|_| ProcError::NotANumber {
            file: "/proc/self/stat",
            what,
        })
    };
    Ok(Stat {
        utime: field(14, "utime")?,
        stime: field(15, "stime")?,
        start_ticks: field(22, "starttime")?,
    })
}

/// `btime` of `/proc/stat`: the boot time, seconds since the epoch.
pub fn parse_boot_time(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// A `Key:   1234 kB` line of `/proc/self/status`, in bytes.
pub fn status_kib(text: &str, key: &str) -> Option<u64> {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':')))?;
    let kib: u64 = line.split_whitespace().next()?.parse().ok()?;
    kib.checked_mul(1024)
}

/// The soft limit of `Max open files` in `/proc/self/limits` (`None` when unlimited).
pub fn parse_max_fds(text: &str) -> Option<u64> {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?;
    line.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_a_tricky_command_name() {
        // proc(5) fields 1..=22 and a few more; the name holds a space and a parenthesis.
        let text = "4242 (sip (capture) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                    250 75 0 0 20 0 9 0 123456 99999 2400 18446744073709551615\n";
        let stat = parse_stat(text).unwrap();
        assert_eq!(
            stat,
            Stat {
                utime: 250,
                stime: 75,
                start_ticks: 123456
            }
        );
        assert_eq!(
            parse_stat("1 (x) S 1 2"),
            Err(ProcError::StatField { field: 14 })
        );
        assert_eq!(
            parse_stat("1 (x) S 1 1 1 0 -1 0 0 0 0 0 ab 0 0 0 0 0 0 0 0"),
            Err(ProcError::NotANumber {
                file: "/proc/self/stat",
                what: "utime"
            })
        );
    }

    #[test]
    fn parses_status_limits_and_boot_time() {
        let status = "Name:\tsipcapture\nVmSize:\t  20480 kB\nVmRSS:\t    9876 kB\n";
        assert_eq!(status_kib(status, "VmRSS"), Some(9876 * 1024));
        assert_eq!(status_kib(status, "VmSize"), Some(20480 * 1024));
        assert_eq!(status_kib(status, "VmSwap"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(parse_max_fds(limits), Some(1024));
        assert_eq!(
            parse_max_fds(
                "Max open files            unlimited            unlimited            files\n"
            ),
            None
        );
        assert_eq!(
            parse_boot_time("cpu  1 2 3\nbtime 1700000000\nprocesses 5\n"),
            Some(1_700_000_000)
        );
    }

    #[test]
    fn reads_this_process() {
        let stats = ProcessStats::read();
        if !std::path::Path::new("/proc/self/stat").exists() {
            return;
        }
        assert!(stats.resident_memory_bytes.is_some_and(|v| v > 0));
        assert!(stats.open_fds.is_some_and(|v| v >= 3));
        assert!(stats.cpu_seconds.is_some());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = stats.start_time_seconds.unwrap();
        assert!(
            start <= now + 1.0 && start > now - 86_400.0 * 365.0,
            "{start}"
        );
        let mut out = String::new();
        stats.render(&mut out);
        assert!(
            out.contains("# TYPE process_cpu_seconds_total counter\n"),
            "{out}"
        );
        assert!(out.contains("\nprocess_open_fds "), "{out}");
    }
}
