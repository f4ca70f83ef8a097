//! IPVS in a VM: this machine's kernel has no IPVS, so tests/vm/ipvs-vm.sh boots a stock
//! Debian kernel under qemu (TCG) from a busybox initramfs holding the ip_vs modules,
//! ipvsadm and `ipvs-apply` (ha-agent's IPVS data plane). The VM applies desired state 1
//! twice and state 2 (tests/vm/*.state) and prints `ipvsadm -Ln` after each; ipvsadm is
//! the oracle. Asserted here:
//! - after state 1, `ipvsadm -Ln` shows exactly the desired services and destinations
//!   (schedulers, persistence and masks, forwarding methods, weights), plus the foreign
//!   service the VM added with ipvsadm before, untouched;
//! - applying state 1 again changes nothing (zero operations, same table);
//! - after state 2 (weights, a replaced destination, scheduler and persistence changes, a
//!   forwarding change, a removed and an added service) the table is exactly state 2;
//! - the counters `stats()` reads back equal `ipvsadm -Ln --stats` for every object,
//!   after three real connection attempts through 192.0.2.10:80;
//! - `ha-agent --cleanup` on tests/vm/cleanup.conf (what a service manager runs after an
//!   unclean exit) removes exactly the services that config names: the rest of state 2
//!   and the foreign service stay.
//!
//! Needs root, apt access to Debian's packages on the first run (qemu, busybox-static,
//! ipvsadm, the kernel package, cached under /var/cache/ha-tests). `HA_SKIP_VM=1` skips.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

type Table = BTreeMap<String, Vec<String>>;

fn table(entries: &[(&str, &[&str])]) -> Table {
    entries
        .iter()
        .map(|(svc, dests)| {
            let mut d: Vec<String> = dests.iter().map(|s| s.to_string()).collect();
            d.sort();
            (svc.to_string(), d)
        })
        .collect()
}

fn state1() -> Table {
    table(&[
        (
            "TCP 192.0.2.10:80 rr",
            &["198.51.100.11:8080 Masq 1", "198.51.100.12:8080 Masq 2"],
        ),
        (
            "TCP 192.0.2.10:443 wrr persistent 300 mask 255.255.255.0",
            &["198.51.100.11:443 Route 3", "198.51.100.12:443 Route 1"],
        ),
        ("TCP 203.0.113.99:443 lc", &["198.51.100.99:443 Masq 5"]),
        (
            "UDP 192.0.2.20:53 sh",
            &["198.51.100.21:53 Tunnel 1", "198.51.100.22:53 Tunnel 0"],
        ),
        ("FWM 7 wlc persistent 60", &["198.51.100.31:0 Route 5"]),
        (
            "TCP [2001:db8::10]:80 lc persistent 120 mask 64",
            &["[2001:db8:1::11]:80 Masq 1", "[2001:db8:1::12]:8080 Masq 4"],
        ),
    ])
}

fn state2() -> Table {
    table(&[
        (
            "TCP 192.0.2.10:80 rr",
            &["198.51.100.12:8080 Masq 5", "198.51.100.13:8080 Masq 1"],
        ),
        (
            "TCP 192.0.2.10:443 rr persistent 600",
            &["198.51.100.11:443 Route 3", "198.51.100.12:443 Tunnel 1"],
        ),
        ("TCP 203.0.113.99:443 lc", &["198.51.100.99:443 Masq 5"]),
        ("SCTP 192.0.2.30:3868 rr", &["198.51.100.41:3868 Masq 2"]),
        ("FWM 7 wlc persistent 60", &["198.51.100.31:0 Route 5"]),
        (
            "TCP [2001:db8::10]:80 lc persistent 120 mask 64",
            &["[2001:db8:1::11]:80 Masq 7", "[2001:db8:1::12]:8080 Masq 4"],
        ),
    ])
}

/// The lines between `=== {tag} BEGIN n ===` and `=== {tag} END n ===`.
fn section<'a>(console: &'a str, tag: &str, n: u32) -> Vec<&'a str> {
    let begin = format!("=== {tag} BEGIN {n} ===");
    let end = format!("=== {tag} END {n} ===");
    console
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .skip_while(|l| !l.ends_with(&begin))
        .skip(1)
        .take_while(|l| !l.ends_with(&end))
        .collect()
}

/// `ipvsadm -Ln` as service line -> sorted "ADDR:PORT Forward Weight" (the connection
/// columns dropped); panics on a service listed twice.
fn parse_ipvsadm(lines: &[&str]) -> Table {
    let mut out = Table::new();
    let mut current: Option<String> = None;
    for line in lines {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["IP", "Virtual", ..] | ["Prot", ..] | ["->", "RemoteAddress:Port", ..] | [] => {}
            ["->", addr, fwd, weight, ..] => {
                let svc = current.as_ref().expect("destination before a service");
                out.get_mut(svc)
                    .expect("service entry")
                    .push(format!("{addr} {fwd} {weight}"));
            }
            _ => {
                let svc = words.join(" ");
                assert!(
                    out.insert(svc.clone(), Vec::new()).is_none(),
                    "{svc} listed twice"
                );
                current = Some(svc);
            }
        }
    }
    for dests in out.values_mut() {
        dests.sort();
    }
    out
}

/// `ipvsadm -Ln --stats` as "SERVICE" or "SERVICE -> DEST" -> the five counters.
fn parse_ipvsadm_stats(lines: &[&str]) -> BTreeMap<String, Vec<u64>> {
    let mut out = BTreeMap::new();
    let mut current = String::new();
    for line in lines {
        let words: Vec<&str> = line.split_whitespace().collect();
        let nums = |w: &[&str]| -> Vec<u64> {
            w.iter()
                .map(|x| {
                    x.parse()
                        .unwrap_or_else(|_| panic!("counter {x:?} in {line:?}"))
                })
                .collect()
        };
        match words.as_slice() {
            ["IP", "Virtual", ..] | ["Prot", ..] | ["->", "RemoteAddress:Port"] | [] => {}
            ["->", dest, rest @ ..] => {
                out.insert(format!("{current} -> {dest}"), nums(rest));
            }
            [proto, addr, rest @ ..] => {
                current = format!("{proto} {addr}");
                out.insert(current.clone(), nums(rest));
            }
            _ => panic!("unexpected stats line {line:?}"),
        }
    }
    out
}

/// ha-agent's object name ("192.0.2.10:80/TCP", "fwmark 7/IPv4") in ipvsadm's spelling.
fn ipvsadm_name(object: &str) -> String {
    let (svc, dest) = match object.split_once(" -> ") {
        Some((s, d)) => (s, Some(d)),
        None => (object, None),
    };
    let svc = if let Some(mark) = svc.strip_prefix("fwmark ") {
        format!("FWM {}", mark.trim_end_matches("/IPv4"))
    } else {
        let (addr, proto) = svc.rsplit_once('/').expect("PROTO suffix");
        format!("{proto} {addr}")
    };
    match dest {
        Some(d) => format!("{svc} -> {d}"),
        None => svc,
    }
}

/// ipvs-apply's `stats` lines of one state, in ipvsadm's spelling.
fn apply_stats(console: &str, n: u32) -> BTreeMap<String, Vec<u64>> {
    let prefix = format!("ipvs-apply: state {n} stats ");
    console
        .lines()
        .filter_map(|l| l.trim_end_matches('\r').strip_prefix(prefix.as_str()))
        .map(|rest| {
            let (object, nums) = rest.split_once(" = ").expect("stats line");
            let nums = nums
                .split_whitespace()
                .map(|x| x.parse().expect("counter"))
                .collect();
            (ipvsadm_name(object), nums)
        })
        .collect()
}

#[test]
fn ipvs_in_a_vm_matches_desired_state() {
    if std::env::var_os("HA_SKIP_VM").is_some() {
        eprintln!("HA_SKIP_VM set: IPVS VM test skipped");
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let bin = env!("CARGO_BIN_EXE_ipvs-apply");
    let work = std::env::temp_dir().join(format!("ha-ipvs-vm-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let t0 = Instant::now();
    let out = Command::new(root.join("vm/ipvs-vm.sh"))
        .arg(bin)
        .arg(&work)
        .env("HA_VM_TIMEOUT", "100")
        .env(
            "HA_VM_AGENT",
            ha_tests::bin("ha-agent").expect("ha-agent built"),
        )
        .output()
        .expect("run tests/vm/ipvs-vm.sh");
    let _ = std::fs::remove_dir_all(&work);
    let console = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!("ipvs vm: {:?} in all\n{stderr}", t0.elapsed());
    let context = format!("--- console ---\n{console}\n--- stderr ---\n{stderr}");
    assert!(
        out.status.success(),
        "ipvs-vm.sh failed: {}\n{context}",
        out.status
    );
    assert!(
        console.contains("=== HA-VM BOOTED"),
        "the VM did not boot\n{context}"
    );
    assert!(
        !console.contains("INSMOD FAILED"),
        "a module failed to load\n{context}"
    );
    assert!(
        !console.contains("status error"),
        "an object failed to apply\n{context}"
    );
    assert!(
        console.contains("=== HA-VM APPLY EXIT 0 ==="),
        "ipvs-apply did not finish cleanly\n{context}"
    );

    let s1 = parse_ipvsadm(&section(&console, "IPVSADM", 1));
    assert_eq!(s1, state1(), "after state 1\n{context}");
    let s1_again = parse_ipvsadm(&section(&console, "IPVSADM", 2));
    assert_eq!(s1_again, state1(), "after state 1 again\n{context}");
    assert!(
        console.contains("ipvs-apply: state 2 (/1.state): 14 objects, 0 changes"),
        "re-applying state 1 must change nothing\n{context}"
    );
    let s2 = parse_ipvsadm(&section(&console, "IPVSADM", 3));
    assert_eq!(s2, state2(), "after state 2\n{context}");

    // Counters: stats() read in state 2 (after the traffic of state 1's hook) against
    // ipvsadm --stats printed right after, with no traffic in between.
    let ours = apply_stats(&console, 2);
    let theirs = parse_ipvsadm_stats(&section(&console, "IPVSADM STATS", 2));
    assert_eq!(
        ours.len(),
        14,
        "stats() reads our 5 services and 9 dests\n{context}"
    );
    for (object, counters) in &ours {
        assert_eq!(
            Some(counters),
            theirs.get(object),
            "counters of {object}\n{context}"
        );
    }
    let web = &ours["TCP 192.0.2.10:80"];
    assert_eq!(
        web[0], 3,
        "three connections scheduled to 192.0.2.10:80\n{context}"
    );
    let per_dest: u64 = ["198.51.100.11:8080", "198.51.100.12:8080"]
        .iter()
        .map(|d| ours[&format!("TCP 192.0.2.10:80 -> {d}")][0])
        .sum();
    assert_eq!(
        per_dest, 3,
        "the destinations share the three connections\n{context}"
    );

    // ha-agent --cleanup: the config's services gone, everything else as it was.
    assert!(
        console.contains("=== HA-VM CLEANUP EXIT 0 ==="),
        "ha-agent --cleanup failed\n{context}"
    );
    let mut after_cleanup = state2();
    after_cleanup.remove("TCP 192.0.2.10:80 rr");
    after_cleanup.remove("FWM 7 wlc persistent 60");
    let s4 = parse_ipvsadm(&section(&console, "IPVSADM", 4));
    assert_eq!(s4, after_cleanup, "after ha-agent --cleanup\n{context}");
}
