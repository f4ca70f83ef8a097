//! Raw keepalived.conf text for the tracking, notify, sync group and nginx tests, the
//! scripts and files those configs point at, and the few readers the tests share
//! (transitions from a log, effective priority from stats).
//!
//! Every instance here is VRRPv3 with `advert_int 0.1` on eth0, so a failover takes a
//! fraction of a second. Scripts are written under the test's scratch directory with
//! mode 0755 and root-owned directories, which `enable_script_security` accepts.

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::scenario::Node;

/// `global_defs { router_id ID  EXTRA }`; `extra` is raw statements, one per line.
pub fn global(router_id: &str, extra: &str) -> String {
    format!(
        "global_defs {{\n    router_id {router_id}\n{}}}\n\n",
        indent(extra)
    )
}

/// A VRRPv3 instance on eth0 (`advert_int 0.1`) with one VIP (`192.0.2.10/24`) and raw
/// `extra` statements (`track_script { chk }`, `notify_master ...`).
pub fn instance(name: &str, vrid: u8, state: &str, priority: u8, vip: &str, extra: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "vrrp_instance {name} {{");
    let _ = writeln!(s, "    state {state}");
    let _ = writeln!(s, "    interface eth0");
    let _ = writeln!(s, "    virtual_router_id {vrid}");
    let _ = writeln!(s, "    priority {priority}");
    let _ = writeln!(s, "    advert_int 0.1");
    let _ = writeln!(s, "    version 3");
    s.push_str(&indent(extra));
    let _ = writeln!(
        s,
        "    virtual_ipaddress {{\n        {vip} dev eth0\n    }}"
    );
    let _ = writeln!(s, "}}\n");
    s
}

/// `vrrp_script NAME { script "CMD"  EXTRA }` (`extra`: interval, weight, rise, fall...).
pub fn vrrp_script(name: &str, command: &str, extra: &str) -> String {
    format!(
        "vrrp_script {name} {{\n    script \"{command}\"\n{}}}\n\n",
        indent(extra)
    )
}

/// `vrrp_sync_group NAME { group { MEMBERS } EXTRA }`.
pub fn sync_group(name: &str, members: &[&str], extra: &str) -> String {
    format!(
        "vrrp_sync_group {name} {{\n    group {{\n{}    }}\n{}}}\n\n",
        indent(&indent(&members.join("\n"))),
        indent(extra)
    )
}

fn indent(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| format!("    {l}\n"))
        .collect()
}

/// Create `dir` (and parents) with mode 0755.
pub fn mkdir(dir: &Path) -> Result<PathBuf> {
    fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
    Ok(dir.to_path_buf())
}

/// Write an executable `/bin/sh` script (mode 0755) at `path` with `body` after the
/// `#!` line; its directory is created 0755.
pub fn write_script(path: &Path, body: &str) -> Result<PathBuf> {
    if let Some(dir) = path.parent() {
        mkdir(dir)?;
    }
    fs::write(path, format!("#!/bin/sh\n{body}\n"))
        .with_context(|| format!("write {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))?;
    Ok(path.to_path_buf())
}

/// The path as a `&str` for config text (scratch paths are plain ASCII).
pub fn p(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Every state `inst` entered, in log order (`(VI_1) Entering MASTER STATE`).
pub fn transitions(node: &Node, inst: &str) -> Vec<String> {
    let needle = format!("({inst}) Entering ");
    node.daemon()
        .log_text()
        .lines()
        .filter_map(|l| {
            let rest = &l[l.find(&needle)? + needle.len()..];
            rest.split_whitespace().next().map(str::to_string)
        })
        .collect()
}

/// One instance's entry of an ha-agent's stats dump (SIGUSR2).
pub fn instance_stats(node: &Node, inst: &str) -> Result<serde_json::Value> {
    let Node::Agent(a) = node else {
        anyhow::bail!("not an ha-agent");
    };
    let s = a.stats()?;
    s["instances"]
        .as_array()
        .and_then(|v| v.iter().find(|i| i["name"] == inst))
        .cloned()
        .with_context(|| format!("{inst} not in stats: {s}"))
}

/// The effective priority an ha-agent reports for `inst`.
pub fn effective_priority(node: &Node, inst: &str) -> Result<u64> {
    let i = instance_stats(node, inst)?;
    i["effective_priority"]
        .as_u64()
        .with_context(|| format!("no effective_priority: {i}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_balanced_and_indented() {
        let text = format!(
            "{}{}{}{}",
            global("lb1", "script_user root\nenable_script_security"),
            vrrp_script("chk", "/usr/bin/test ! -e /x", "interval 0.2\nweight -20"),
            instance(
                "VI_1",
                51,
                "MASTER",
                150,
                "192.0.2.10/24",
                "track_script {\n    chk\n}"
            ),
            sync_group("G1", &["VI_1", "VI_2"], "notify /bin/true"),
        );
        assert_eq!(text.matches('{').count(), text.matches('}').count());
        assert!(text.contains("    script \"/usr/bin/test ! -e /x\"\n"));
        assert!(text.contains("    track_script {\n        chk\n    }\n"));
        assert!(text.contains("    group {\n        VI_1\n        VI_2\n    }\n"));
        assert!(text.contains("    enable_script_security\n"));
    }
}
