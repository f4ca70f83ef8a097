//! Measurement helpers for the benchmarks: CPU time and resident memory of a process
//! tree (read from /proc), a `ping` recorder running in a namespace, a `tcpdump` capture
//! with the failover breakdown read from it, and small statistics.
//!
//! Nothing here asserts on timing: these helpers only collect figures to print.

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::{Context, Result};

use crate::netns::Netns;

/// The fields of `/proc/<pid>/stat` after the `(comm)` field, split on whitespace.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may hold spaces and parentheses: the fields start after the last ')'.
    let rest = &s[s.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// The parent pid of `pid`, if it still exists.
pub fn ppid(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// `root` and every process descending from it (children, grandchildren...), found by
/// scanning the parent pid of every process in /proc.
pub fn process_tree(root: u32) -> Vec<u32> {
    let mut parent_of: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for e in dir.flatten() {
            if let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) {
                if let Some(pp) = ppid(pid) {
                    parent_of.push((pid, pp));
                }
            }
        }
    }
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let p = tree[i];
        tree.extend(parent_of.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    tree
}

/// User plus system CPU time of `pid` in clock ticks (all its threads, fields 14 and 15
/// of `/proc/<pid>/stat`).
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let f = stat_fields(pid)?;
    // After ')': index 0 is field 3 (state), so utime (14) is 11 and stime (15) is 12.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Resident set size of `pid` in KiB (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Clock ticks per second (`getconf CLK_TCK`), the unit of [`cpu_ticks`].
pub fn clock_ticks_per_sec() -> Result<u64> {
    let out = crate::netns::run(Command::new("getconf").arg("CLK_TCK"))?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .context("getconf CLK_TCK output")
}

/// A snapshot of a process tree: CPU ticks per pid and total resident memory.
#[derive(Debug, Clone, Default)]
pub struct TreeSample {
    /// CPU ticks (utime + stime) of each live process of the tree.
    pub ticks: HashMap<u32, u64>,
    /// Sum of VmRSS over the tree, KiB.
    pub rss_kib: u64,
}

impl TreeSample {
    /// Sample the tree rooted at `root` now.
    pub fn take(root: u32) -> TreeSample {
        let mut s = TreeSample::default();
        for pid in process_tree(root) {
            if let Some(t) = cpu_ticks(pid) {
                s.ticks.insert(pid, t);
                s.rss_kib += rss_kib(pid).unwrap_or(0);
            }
        }
        s
    }

    /// CPU ticks spent by the tree since `earlier` (a process that appeared meanwhile
    /// counts in full; one that exited meanwhile is lost).
    pub fn ticks_since(&self, earlier: &TreeSample) -> u64 {
        self.ticks
            .iter()
            .map(|(pid, t)| t.saturating_sub(earlier.ticks.get(pid).copied().unwrap_or(0)))
            .sum()
    }
}

/// `ping -D` running in a namespace; the timestamps of its echo replies are recorded live.
#[derive(Debug)]
pub struct Pinger {
    /// The ping process (killed on drop).
    child: Option<Child>,
    /// Reader thread of ping's stdout.
    reader: Option<JoinHandle<()>>,
    /// Wall-clock seconds (ping's `-D` stamp) of each reply, in arrival order.
    replies: Arc<Mutex<Vec<f64>>>,
}

impl Pinger {
    /// Start `ping -D -i <interval> -W 1 <target>` in `ns` (interval in seconds as
    /// written for ping, e.g. "0.005"; under 0.2 s needs root).
    pub fn start(ns: &Netns, target: &str, interval: &str) -> Result<Pinger> {
        let mut cmd = ns.command("ping");
        cmd.args(["-D", "-n", "-i", interval, "-W", "1", target]);
        Pinger::spawn(cmd)
    }

    /// Run any prober whose stdout has ping's `-D` reply lines (see [`reply_stamp`]).
    pub fn spawn(mut cmd: Command) -> Result<Pinger> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("start {cmd:?}"))?;
        let out = child.stdout.take().context("ping stdout")?;
        let replies = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&replies);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(ts) = reply_stamp(&line) {
                    if let Ok(mut v) = sink.lock() {
                        v.push(ts);
                    }
                }
            }
        });
        Ok(Pinger {
            child: Some(child),
            reader: Some(reader),
            replies,
        })
    }

    /// The reply timestamps so far.
    pub fn replies(&self) -> Vec<f64> {
        self.replies.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Stop ping and return every reply timestamp.
    pub fn stop(mut self) -> Vec<f64> {
        self.halt();
        self.replies()
    }

    fn halt(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

impl Drop for Pinger {
    fn drop(&mut self) {
        self.halt();
    }
}

/// An ICMPv4 echo request with `id`, `seq` and an 8-byte payload, checksum filled in.
pub fn echo_request(id: u16, seq: u16) -> [u8; 16] {
    let mut p = [0u8; 16];
    p[0] = 8;
    p[4..6].copy_from_slice(&id.to_be_bytes());
    p[6..8].copy_from_slice(&seq.to_be_bytes());
    p[8..].copy_from_slice(b"failover");
    let sum = p
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum::<u32>();
    let folded = (sum & 0xffff) + (sum >> 16);
    let folded = (folded & 0xffff) + (folded >> 16);
    p[2..4].copy_from_slice(&(!(folded as u16)).to_be_bytes());
    p
}

/// The sequence number of an ICMPv4 echo reply with `id` in an IPv4 packet (as a raw
/// ICMP socket returns it), if it is one.
pub fn echo_reply_seq(packet: &[u8], id: u16) -> Option<u16> {
    let ihl = usize::from(packet.first()? & 0x0f) * 4;
    let icmp = packet.get(ihl..)?;
    if icmp.len() < 8 || icmp[0] != 0 || icmp[4..6] != id.to_be_bytes() {
        return None;
    }
    Some(u16::from_be_bytes([icmp[6], icmp[7]]))
}

/// The `-D` timestamp of a ping reply line:
/// `[1732666666.123456] 64 bytes from 192.0.2.10: icmp_seq=1 ttl=64 time=0.05 ms`.
pub fn reply_stamp(line: &str) -> Option<f64> {
    if !line.contains(" bytes from ") {
        return None;
    }
    let rest = line.strip_prefix('[')?;
    rest[..rest.find(']')?].parse().ok()
}

/// `tcpdump` writing VRRP, ARP and ICMP packets of one interface to a file, in a namespace.
#[derive(Debug)]
pub struct Capture {
    /// The tcpdump process (stopped on drop).
    child: Option<Child>,
    /// The capture file.
    file: PathBuf,
}

impl Capture {
    /// Start capturing on `iface` of `ns` into `file`; returns once tcpdump listens.
    pub fn start(ns: &Netns, iface: &str, file: &Path) -> Result<Capture> {
        let mut child = ns
            .command("tcpdump")
            .args(["-i", iface, "-n", "-U", "-s", "128", "-w"])
            .arg(file)
            .args(["vrrp or arp or icmp"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("start tcpdump")?;
        let err = child.stderr.take().context("tcpdump stderr")?;
        // tcpdump says "listening on ..." once the socket is bound.
        let mut lines = BufReader::new(err).lines();
        let listening = lines
            .by_ref()
            .map_while(Result::ok)
            .any(|l| l.contains("listening on"));
        std::thread::spawn(move || lines.for_each(drop));
        let cap = Capture {
            child: Some(child),
            file: file.to_path_buf(),
        };
        anyhow::ensure!(listening, "tcpdump did not start");
        Ok(cap)
    }

    /// Stop tcpdump and return the packets as `tcpdump -tt -n` prints them.
    pub fn stop(mut self) -> Result<Vec<String>> {
        self.halt();
        let out = crate::netns::run(
            Command::new("tcpdump")
                .args(["-tt", "-n", "-r"])
                .arg(&self.file),
        )?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect())
    }

    fn halt(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGINT lets tcpdump flush the file; -U already writes packet by packet.
            let _ = Command::new("kill")
                .args(["-INT", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.halt();
    }
}

/// One packet of interest in a `tcpdump -tt -n` line.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    /// A VRRP advert from `src` with `prio`.
    Advert {
        /// Sender address.
        src: String,
        /// Advertised priority.
        prio: u8,
    },
    /// A gratuitous ARP announcing `ip` (sender address = `ip`, request or reply).
    Garp {
        /// The announced address.
        ip: String,
    },
    /// An ICMP echo reply from `src`.
    EchoReply {
        /// Sender address.
        src: String,
    },
}

/// Parse one `tcpdump -tt -n` line into its timestamp and what it shows.
pub fn parse_tcpdump(line: &str) -> Option<(f64, Seen)> {
    let (ts, rest) = line.split_once(' ')?;
    let ts: f64 = ts.parse().ok()?;
    if let Some(ip) = rest.strip_prefix("IP ") {
        let (src, tail) = ip.split_once(" > ")?;
        if tail.contains(": VRRP") {
            let prio = tail.split(", ").find_map(|f| f.strip_prefix("prio "))?;
            return Some((
                ts,
                Seen::Advert {
                    src: src.to_string(),
                    prio: prio.parse().ok()?,
                },
            ));
        }
        if tail.contains("ICMP echo reply") {
            return Some((
                ts,
                Seen::EchoReply {
                    src: src.to_string(),
                },
            ));
        }
        return None;
    }
    let arp = rest.strip_prefix("ARP, ")?;
    let words: Vec<&str> = arp.split([' ', ',']).filter(|w| !w.is_empty()).collect();
    // "Request who-has T [(ff:ff:ff:ff:ff:ff)] tell S" or "Reply S is-at MAC".
    let after = |key: &str| {
        let i = words.iter().position(|w| *w == key)?;
        words.get(i + 1).copied()
    };
    let ip = match words.first() {
        Some(&"Request") => match (after("who-has"), after("tell")) {
            (Some(t), Some(s)) if t == s => s,
            _ => return None,
        },
        Some(&"Reply") => words.get(1).copied()?,
        _ => return None,
    };
    Some((ts, Seen::Garp { ip: ip.to_string() }))
}

/// When a takeover happened on the wire, seen by one capture (wall-clock seconds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Breakdown {
    /// The last echo reply before the takeover (the start of the client's outage).
    pub last_reply: Option<f64>,
    /// The old master's last advert (priority 0 for a clean stop).
    pub last_old_advert: f64,
    /// The new master's first advert.
    pub first_new_advert: f64,
    /// The first gratuitous ARP for the VIP after that advert.
    pub first_garp: Option<f64>,
    /// The first echo reply after the new master's first advert.
    pub first_reply: Option<f64>,
}

impl Breakdown {
    /// Read a takeover from `old` to `new` announcing `vip` out of parsed packets (the
    /// first advert of `new` after `after` marks it).
    pub fn find(
        packets: &[(f64, Seen)],
        old: &str,
        new: &str,
        vip: &str,
        after: f64,
    ) -> Option<Self> {
        let first_new_advert = packets.iter().find_map(|(t, s)| match s {
            Seen::Advert { src, .. } if src == new && *t > after => Some(*t),
            _ => None,
        })?;
        let last_old_advert = packets.iter().rev().find_map(|(t, s)| match s {
            Seen::Advert { src, .. } if src == old && *t < first_new_advert => Some(*t),
            _ => None,
        })?;
        let last_reply = packets.iter().rev().find_map(|(t, s)| match s {
            Seen::EchoReply { .. } if *t < first_new_advert => Some(*t),
            _ => None,
        });
        let first_garp = packets.iter().find_map(|(t, s)| match s {
            Seen::Garp { ip } if ip == vip && *t >= first_new_advert => Some(*t),
            _ => None,
        });
        let first_reply = packets.iter().find_map(|(t, s)| match s {
            Seen::EchoReply { .. } if *t > first_new_advert => Some(*t),
            _ => None,
        });
        Some(Breakdown {
            last_reply,
            last_old_advert,
            first_new_advert,
            first_garp,
            first_reply,
        })
    }
}

/// The largest interval between consecutive timestamps (sorted first), seconds.
pub fn largest_gap(stamps: &[f64]) -> Option<f64> {
    let mut s = stamps.to_vec();
    s.sort_by(f64::total_cmp);
    s.windows(2).map(|w| w[1] - w[0]).max_by(f64::total_cmp)
}

/// The median of `v` (mean of the two middle values for an even count).
pub fn median(v: &[f64]) -> Option<f64> {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(s[n / 2]),
        _ => Some((s[n / 2 - 1] + s[n / 2]) / 2.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_reply_lines_only() {
        let l = "[1732666666.123456] 64 bytes from 192.0.2.10: icmp_seq=1 ttl=64 time=0.05 ms";
        assert_eq!(reply_stamp(l), Some(1732666666.123456));
        assert_eq!(
            reply_stamp("PING 192.0.2.10 (192.0.2.10) 56(84) bytes of data."),
            None
        );
        assert_eq!(
            reply_stamp("[1732666666.1] From 192.0.2.100 icmp_seq=3 Destination Host Unreachable"),
            None
        );
    }

    #[test]
    fn parses_tcpdump_lines_and_finds_the_takeover() {
        let lines = [
            "100.000000 IP 192.0.2.1 > 224.0.0.18: VRRPv3, Advertisement, vrid 51, prio 150, intvl 1cs, length 12",
            "100.001000 IP 192.0.2.10 > 192.0.2.100: ICMP echo reply, id 7, seq 1, length 64",
            "100.010000 IP 192.0.2.1 > 224.0.0.18: VRRPv2, Advertisement, vrid 51, prio 150, authtype none, intvl 1s, length 20",
            "100.046000 IP 192.0.2.2 > 224.0.0.18: VRRPv3, Advertisement, vrid 51, prio 100, intvl 1cs, length 12",
            "100.046500 ARP, Request who-has 192.0.2.10 (ff:ff:ff:ff:ff:ff) tell 192.0.2.10, length 28",
            "100.047000 ARP, Reply 192.0.2.10 is-at 02:00:00:00:00:02, length 28",
            "100.049000 IP 192.0.2.10 > 192.0.2.100: ICMP echo reply, id 7, seq 9, length 64",
            "100.049100 ARP, Request who-has 192.0.2.2 tell 192.0.2.100, length 28",
        ];
        let p: Vec<(f64, Seen)> = lines.iter().filter_map(|l| parse_tcpdump(l)).collect();
        assert_eq!(p.len(), 7);
        assert_eq!(
            parse_tcpdump("1.5 ARP, Request who-has 192.0.2.10 tell 192.0.2.10, length 28")
                .unwrap()
                .1,
            Seen::Garp {
                ip: "192.0.2.10".into()
            }
        );
        assert_eq!(
            p[2].1,
            Seen::Advert {
                src: "192.0.2.1".into(),
                prio: 150
            }
        );
        assert_eq!(
            p[5].1,
            Seen::Garp {
                ip: "192.0.2.10".into()
            }
        );
        let b = Breakdown::find(&p, "192.0.2.1", "192.0.2.2", "192.0.2.10", 100.02).unwrap();
        assert_eq!(b.last_reply, Some(100.001));
        assert_eq!(b.last_old_advert, 100.010);
        assert_eq!(b.first_new_advert, 100.046);
        assert_eq!(b.first_garp, Some(100.0465));
        assert_eq!(b.first_reply, Some(100.049));
        assert!(Breakdown::find(&p, "192.0.2.1", "192.0.2.2", "192.0.2.10", 101.0).is_none());
    }

    #[test]
    fn echo_request_checksums_and_reply_parses() {
        let req = echo_request(0x1234, 7);
        let sum: u32 = req
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
            .sum();
        assert_eq!((sum & 0xffff) + (sum >> 16), 0xffff);
        let mut ip = vec![0x45u8; 1];
        ip.resize(20, 0);
        let mut reply = req;
        reply[0] = 0;
        ip.extend_from_slice(&reply);
        assert_eq!(echo_reply_seq(&ip, 0x1234), Some(7));
        assert_eq!(echo_reply_seq(&ip, 0x1235), None);
        ip[20] = 8;
        assert_eq!(echo_reply_seq(&ip, 0x1234), None);
        assert_eq!(echo_reply_seq(&ip[..25], 0x1234), None);
    }

    #[test]
    fn gap_and_median() {
        assert_eq!(largest_gap(&[3.0, 1.0, 1.5]), Some(1.5));
        assert_eq!(largest_gap(&[1.0]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn own_process_tree_has_cpu_and_rss() {
        let me = std::process::id();
        assert!(process_tree(me).contains(&me));
        assert!(cpu_ticks(me).is_some());
        assert!(rss_kib(me).unwrap_or(0) > 0);
    }
}
