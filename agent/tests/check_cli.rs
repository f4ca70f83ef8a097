//! `ha-agent --check --config FILE` on good and bad keepalived.conf files.
//!
//! Good files (classic tutorial setups, all accepted by keepalived 2.2.7 `-t` too) must
//! exit 0; bad files must exit 1 and print exactly the expected `file:line: message`
//! errors on stderr.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Command, Output};

fn configs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/configs")
}

/// Run `--check` on a file of tests/configs, from that directory (so messages start
/// with the bare file name).
fn check(file: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ha-agent"))
        .args(["--check", "--config", file])
        .current_dir(configs())
        .output()
        .unwrap()
}

fn assert_ok(file: &str) -> String {
    let out = check(file);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{file}: exit {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("{file}: configuration ok")),
        "{stdout}"
    );
    stdout
}

/// Exit 1 and exactly these error lines (the summary line aside), in this order.
fn assert_errors(file: &str, expected: &[&str]) {
    let out = check(file);
    assert_eq!(out.status.code(), Some(1), "{file} must be refused");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let got: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.ends_with("error(s)"))
        .collect();
    assert_eq!(got, expected, "{file}: stderr was:\n{stderr}");
    assert!(stderr.contains(&format!("{file}: {} error(s)", expected.len())));
}

#[test]
fn master_backup_pair() {
    assert_ok("master.conf");
    assert_ok("backup.conf");
}

#[test]
fn track_script_and_file_are_active_without_notes() {
    let out = assert_ok("track_script_file.conf");
    assert!(!out.contains("not active yet"), "{out}");
}

#[test]
fn virtual_servers_are_active_without_notes() {
    let out = assert_ok("lvs_nat_dr.conf");
    assert!(!out.contains("'virtual_server' parsed"), "{out}");
    assert!(!out.contains("TCP_CHECK' parsed"), "{out}");
}

#[test]
fn checkers_ha_agent_lacks_are_noted() {
    let dir = std::env::temp_dir().join(format!("ha-check-smtp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("smtp.conf");
    std::fs::write(
        &f,
        "virtual_server 192.0.2.10 25 {\n    real_server 198.51.100.11 25 {\n        SMTP_CHECK {\n            connect_timeout 3\n        }\n    }\n}\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ha-agent"))
        .args(["--check", "--config"])
        .arg(&f)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("smtp.conf:3: 'SMTP_CHECK' parsed, not active yet"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn dual_master() {
    assert_ok("dual_master.conf");
}

#[test]
fn lvs_nat_and_dr_with_checkers() {
    let out = assert_ok("lvs_nat_dr.conf");
    assert!(out.contains("lvs_nat_dr.conf:3: 'notification_email' has no effect in ha-agent"));
    assert!(out.contains("lvs_nat_dr.conf:7: 'smtp_server' has no effect in ha-agent"));
    // Virtual servers and their checkers run: no note.
    assert!(!out.contains("not active yet"), "{out}");
}

#[test]
fn nginx_check_script() {
    assert_ok("nginx_check.conf");
}

#[test]
fn v3_ipv6_instance() {
    assert_ok("v3_ipv6.conf");
}

#[test]
fn unicast_peers() {
    assert_ok("unicast.conf");
}

#[test]
fn includes_with_a_glob() {
    assert_ok("include_main.conf");
}

#[test]
fn out_of_range_values() {
    assert_errors(
        "bad_ranges.conf",
        &[
            "bad_ranges.conf:3: virtual_router_id 300 out of range 1-255",
            "bad_ranges.conf:4: priority 0 out of range 1-255",
            "bad_ranges.conf:5: advert_int 1.5 out of range for version 2: whole seconds 1-255",
            "bad_ranges.conf:14: priority 256 out of range 1-255",
            "bad_ranges.conf:15: advert_int 41 out of range for version 3: 0.01-40.95 seconds in steps of 0.01",
        ],
    );
}

#[test]
fn unknown_keywords_in_every_block() {
    assert_errors(
        "bad_unknown.conf",
        &[
            "bad_unknown.conf:3: unknown keyword 'vrrp_garp_master_dealy' in global_defs",
            "bad_unknown.conf:8: unknown keyword 'prority' in vrrp_instance",
            "bad_unknown.conf:9: authentication: auth_type PASS needs auth_pass",
            "bad_unknown.conf:11: unknown keyword 'auth_password' in authentication",
            "bad_unknown.conf:17: unknown keyword 'vrrp_instanse' in top level",
            "bad_unknown.conf:25: unknown keyword 'status' in url",
        ],
    );
}

#[test]
fn vrrp_rules() {
    assert_errors(
        "bad_vrrp.conf",
        &[
            "bad_vrrp.conf:5: nopreempt needs state BACKUP",
            "bad_vrrp.conf:6: unicast_peer block is empty",
            "bad_vrrp.conf:10: virtual_ipaddress 2001:db8::1: ipv6 address in an ipv4 instance (mixed families only in virtual_ipaddress_excluded)",
            "bad_vrrp.conf:11: virtual_ipaddress: bad address '192.0.2.300/24'",
            "bad_vrrp.conf:16: virtual_router_id 10 already used on interface eth0 (ipv4) by vrrp_instance VI_1 at bad_vrrp.conf:1",
            "bad_vrrp.conf:21: vrrp_instance VI_3: missing virtual_router_id",
            "bad_vrrp.conf:21: vrrp_instance VI_3: missing interface",
            "bad_vrrp.conf:31: vrrp_instance VI_6: IPv6 virtual_ipaddress needs version 3, not 2",
        ],
    );
}

#[test]
fn syntax_errors() {
    assert_errors(
        "bad_syntax.conf",
        &[
            "bad_syntax.conf:4: unterminated quoted string (missing \")",
            "bad_syntax.conf:9: unexpected '}' without a block to close",
            "bad_syntax.conf:10: block 'vrrp_instance' is not closed (missing '}')",
            "bad_syntax.conf:10: vrrp_instance VI_2: missing virtual_router_id",
        ],
    );
}

#[test]
fn missing_include_file() {
    assert_errors(
        "bad_include.conf",
        &["bad_include.conf:1: cannot read include file 'include.d/does-not-exist.conf': No such file or directory (os error 2)"],
    );
}

#[test]
fn unreadable_config() {
    let out = check("no-such-file.conf");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("no-such-file.conf:0: cannot read"));
}
