//! The standard families every Prometheus client library exports, written straight onto
//! the `/metrics` page (not through OTel: OTLP has its own process semantic conventions):
//! `process_*` read from /proc/self (CPU, resident memory, descriptors, start time) and
//! `ha_build_info`, for the agent's and the manager's pages. Not here: the families of
//! either's state (each crate's telemetry.rs).

use std::fs;

use opentelemetry::KeyValue;

use crate::export::{write_family, write_sample, PromKind};

/// Clock ticks per second of /proc/PID/stat times: USER_HZ, 100 on every Linux
/// architecture (the kernel converts to it; sysconf(_SC_CLK_TCK) would need `unsafe`).
const USER_HZ: f64 = 100.0;

/// What /proc/self tells about this process; a field /proc does not give is `None` and
/// its family is left out.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ProcessStats {
    /// User plus system CPU time, seconds.
    pub cpu_seconds: Option<f64>,
    /// Resident set size, bytes.
    pub resident_bytes: Option<f64>,
    /// Open file descriptors.
    pub open_fds: Option<f64>,
    /// The soft limit of open file descriptors.
    pub max_fds: Option<f64>,
    /// Start time, seconds since the Unix epoch.
    pub start_time_seconds: Option<f64>,
}

impl ProcessStats {
    /// Reads /proc/self now.
    pub fn read() -> ProcessStats {
        let stat = fs::read_to_string("/proc/self/stat").ok();
        let fields = stat.as_deref().and_then(stat_fields);
        let btime = fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| boot_time(&s));
        ProcessStats {
            cpu_seconds: fields
                .as_ref()
                .map(|f| (f.utime + f.stime) as f64 / USER_HZ),
            resident_bytes: fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|s| vm_rss_bytes(&s)),
            open_fds: fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as f64),
            max_fds: fs::read_to_string("/proc/self/limits")
                .ok()
                .and_then(|s| max_open_files(&s)),
            start_time_seconds: fields
                .zip(btime)
                .map(|(f, b)| b as f64 + f.starttime as f64 / USER_HZ),
        }
    }
}

/// The fields of /proc/PID/stat used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StatFields {
    utime: u64,
    stime: u64,
    starttime: u64,
}

/// Parses /proc/PID/stat: fields after the command name (in parentheses, which may hold
/// spaces and parentheses itself, hence the last `)`); utime is field 14, stime 15,
/// starttime 22 (proc(5), counted from 1).
fn stat_fields(s: &str) -> Option<StatFields> {
    let rest = &s[s.rfind(')')? + 1..];
    // `rest` starts with field 3 (state).
    let f: Vec<&str> = rest.split_whitespace().collect();
    let at = |n: usize| f.get(n - 3)?.parse::<u64>().ok();
    Some(StatFields {
        utime: at(14)?,
        stime: at(15)?,
        starttime: at(22)?,
    })
}

/// `btime` of /proc/stat: boot time, seconds since the epoch.
fn boot_time(s: &str) -> Option<u64> {
    s.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// `VmRSS:` of /proc/PID/status (kB) in bytes.
fn vm_rss_bytes(s: &str) -> Option<f64> {
    let v = s.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let kb: f64 = v.split_whitespace().next()?.parse().ok()?;
    Some(kb * 1024.0)
}

/// The soft limit of `Max open files` in /proc/PID/limits ("unlimited": none).
fn max_open_files(s: &str) -> Option<f64> {
    let v = s.lines().find_map(|l| l.strip_prefix("Max open files"))?;
    v.split_whitespace().next()?.parse().ok()
}

/// Writes the `process_*` families of `p`, each series with `labels`.
pub fn write_process(out: &mut String, p: &ProcessStats, labels: &[KeyValue]) {
    let families: [(&str, &str, PromKind, Option<f64>); 5] = [
        (
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds",
            PromKind::Counter,
            p.cpu_seconds,
        ),
        (
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            PromKind::Gauge,
            p.resident_bytes,
        ),
        (
            "process_open_fds",
            "Number of open file descriptors",
            PromKind::Gauge,
            p.open_fds,
        ),
        (
            "process_max_fds",
            "Maximum number of open file descriptors",
            PromKind::Gauge,
            p.max_fds,
        ),
        (
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds",
            PromKind::Gauge,
            p.start_time_seconds,
        ),
    ];
    for (name, help, kind, v) in families {
        if let Some(v) = v {
            write_family(out, name, help, kind);
            write_sample(out, name, labels, v);
        }
    }
}

/// The binary a page describes: its package name and version (`env!("CARGO_PKG_NAME")`
/// and `env!("CARGO_PKG_VERSION")` of the binary's crate, not of this one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Build {
    /// Package name, label `binary` (`ha-agent`, `ha-manager`).
    pub binary: &'static str,
    /// Package version, label `version`.
    pub version: &'static str,
}

/// Writes `ha_build_info{version,binary,...} 1`: the build of this binary, plus `labels`.
pub fn write_build_info(out: &mut String, build: Build, labels: &[KeyValue]) {
    let name = "ha_build_info";
    write_family(
        out,
        name,
        "Always 1: the version of this binary in its labels",
        PromKind::Gauge,
    );
    let mut l = vec![
        KeyValue::new("version", build.version),
        KeyValue::new("binary", build.binary),
    ];
    l.extend_from_slice(labels);
    write_sample(out, name, &l, 1.0);
}

/// Both of the above: what the `/metrics` page of a binary starts with.
pub fn write_standard(out: &mut String, build: Build, labels: &[KeyValue]) {
    write_build_info(out, build, labels);
    write_process(out, &ProcessStats::read(), labels);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let stat = "1234 (ha (agent) x) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 150 0 0 20 0 \
                    3 0 98765 1000 200 18446744073709551615";
        assert_eq!(
            stat_fields(stat),
            Some(StatFields {
                utime: 250,
                stime: 150,
                starttime: 98765
            })
        );
        assert_eq!(
            boot_time("cpu 1 2 3\nbtime 1700000000\n"),
            Some(1_700_000_000)
        );
        assert_eq!(
            vm_rss_bytes("Name:\tha\nVmRSS:\t    6912 kB\n"),
            Some(6912.0 * 1024.0)
        );
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(max_open_files(limits), Some(1024.0));
    }

    #[test]
    fn this_process_has_every_family() {
        let p = ProcessStats::read();
        assert!(p.cpu_seconds.is_some() && p.resident_bytes.is_some_and(|b| b > 0.0));
        assert!(p.open_fds.is_some_and(|n| n >= 3.0) && p.max_fds.is_some());
        assert!(p.start_time_seconds.is_some_and(|t| t > 1.5e9));
        let mut out = String::new();
        let build = Build {
            binary: "ha-agent",
            version: "0.1.0",
        };
        write_standard(&mut out, build, &[KeyValue::new("node", "lb1")]);
        for f in [
            "process_cpu_seconds_total{node=\"lb1\"}",
            "process_resident_memory_bytes{node=\"lb1\"}",
            "process_open_fds{node=\"lb1\"}",
            "process_max_fds{node=\"lb1\"}",
            "process_start_time_seconds{node=\"lb1\"}",
            "ha_build_info{binary=\"ha-agent\",node=\"lb1\",version=\"0.1.0\"} 1",
        ] {
            assert!(out.contains(f), "{f} in {out}");
        }
    }
}
