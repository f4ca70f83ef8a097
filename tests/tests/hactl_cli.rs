//! hactl's conventions against a real ha-manager and two ha-agents in namespaces (the
//! fleet topology, `ha_tests::fleet`): `-o table|wide|json` (and `--json` as `-o json`),
//! `status [NODE] [--instance NAME]`, ages beside absolute times, `version` with the
//! manager's version, `completion bash|zsh|fish`, and a quiet exit when the reader of
//! its output goes away (`hactl history | head`).

use std::fs;
use std::process::Command;

use anyhow::{ensure, Context, Result};
use ha_tests::fleet::{node, Fleet};
use ha_tests::netns::run;
use ha_tests::proc::bin;
use ha_tests::scenario::CLIENT;

/// A failure message with the command's output.
fn explain(what: &str, out: &ha_tests::fleet::Out) -> String {
    format!(
        "{what}: exit {}\nstdout:\n{}\nstderr:\n{}",
        out.code, out.stdout, out.stderr
    )
}

#[test]
fn output_formats_filters_and_version() -> Result<()> {
    let f = Fleet::settled_pair("hcli", false, None)?;

    // -o json is --json: the same object (the ages aside, nothing differs but timing
    // fields, so compare the shape that matters).
    let a = f.hactl(&["-o", "json", "status"])?.ok()?.json()?;
    let b = f.hactl(&["status", "--json"])?.ok()?.json()?;
    for s in [&a, &b] {
        ensure!(node(s, "lb1").is_some() && node(s, "lb2").is_some(), "{s}");
    }
    ensure!(
        a["nodes"].as_array().map(Vec::len) == b["nodes"].as_array().map(Vec::len),
        "{a}\n{b}"
    );
    let digest = node(&a, "lb1")
        .and_then(|n| n["config_digest"].as_str())
        .unwrap_or_default()
        .to_string();
    ensure!(!digest.is_empty(), "no config digest for lb1: {a}");

    // -o wide: peer address, boot id, config digest and last seen with its age.
    let wide = f.hactl(&["-o", "wide", "status"])?.ok()?;
    let header = wide.stdout.lines().next().unwrap_or_default();
    for h in ["PEER", "BOOT", "CONFIG", "LAST SEEN"] {
        ensure!(header.contains(h), "{}", explain("wide header", &wide));
    }
    let lb1 = wide
        .stdout
        .lines()
        .find(|l| l.starts_with("lb1"))
        .unwrap_or_default();
    for cell in ["192.0.2.1:", &digest] {
        ensure!(
            lb1.contains(cell),
            "{}",
            explain(&format!("no {cell:?} in lb1's row"), &wide)
        );
    }
    ensure!(
        lb1.contains(" ago)") || lb1.contains("(just now)"),
        "{}",
        explain("no age in lb1's row", &wide)
    );
    let plain = f.hactl(&["status"])?.ok()?;
    ensure!(
        !plain.stdout.contains("PEER") && !plain.stdout.contains(&digest),
        "{}",
        explain("plain table has wide columns", &plain)
    );

    // Filters.
    let one = f.hactl(&["status", "lb2"])?.ok()?;
    let rows: Vec<&str> = one
        .stdout
        .lines()
        .take_while(|l| !l.is_empty())
        .skip(1)
        .collect();
    ensure!(
        !rows.is_empty() && rows.iter().all(|r| r.starts_with("lb2")),
        "{}",
        explain("status lb2", &one)
    );
    let j = f
        .hactl(&["status", "lb1", "--instance", "VI_1", "-o", "json"])?
        .ok()?
        .json()?;
    ensure!(
        j["nodes"].as_array().map(Vec::len) == Some(1) && j["nodes"][0]["name"] == "lb1",
        "{j}"
    );
    let unknown = f.hactl(&["status", "lb9"])?;
    ensure!(
        unknown.code == 1 && unknown.stderr.contains("lb9") && unknown.stderr.contains("lb1, lb2"),
        "{}",
        explain("status lb9", &unknown)
    );
    let unknown = f.hactl(&["status", "--instance", "VI_9"])?;
    ensure!(
        unknown.code == 1 && unknown.stderr.contains("VI_1"),
        "{}",
        explain("status --instance VI_9", &unknown)
    );

    // History: absolute times with their ages.
    let h = f.hactl(&["history", "--kind", "transition"])?.ok()?;
    ensure!(
        h.stdout
            .lines()
            .any(|l| l.contains(" ago) lb1 VI_1 ") || l.contains("(just now) lb1 VI_1 ")),
        "{}",
        explain("history ages", &h)
    );

    // version: ours and the manager's.
    let want = env!("CARGO_PKG_VERSION");
    let v = f.hactl(&["version"])?.ok()?;
    ensure!(
        v.stdout.contains(&format!("hactl {want}\n"))
            && v.stdout.contains(&format!("manager {want} (")),
        "{}",
        explain("version", &v)
    );
    let v = f.hactl(&["-o", "json", "version"])?.ok()?.json()?;
    ensure!(v["hactl"] == want && v["manager"] == want, "{v}");
    // Manager gone: hactl's line, then exit 3.
    let down = f.hactl_raw(&[
        "--manager",
        "http://192.0.2.99:7400",
        "--insecure",
        "--timeout",
        "1s",
        "version",
    ])?;
    ensure!(
        down.code == 3 && down.stdout.contains(&format!("hactl {want}")),
        "{}",
        explain("version without a manager", &down)
    );
    Ok(())
}

#[test]
fn completion_scripts_need_no_manager() -> Result<()> {
    let hactl = bin("hactl")?;
    let dir = ha_tests::scratch::Scratch::new("hcli-compl")?;
    for shell in ["bash", "zsh", "fish"] {
        let out = run(Command::new(&hactl)
            .args(["--manager", "http://192.0.2.99:7400", "completion", shell])
            .env_remove("HACTL_MANAGER"))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        ensure!(
            text.contains("hactl") && text.contains("status") && text.contains("history"),
            "{shell} completion:\n{text}"
        );
        if shell == "bash" {
            let p = dir.0.join("hactl.bash");
            fs::write(&p, &text)?;
            run(Command::new("bash").arg("-n").arg(&p))?;
        }
    }
    let bad = Command::new(&hactl).args(["completion", "tcsh"]).output()?;
    ensure!(bad.status.code() == Some(2), "unknown shell: {bad:?}");
    Ok(())
}

#[test]
fn closed_pipe_is_a_quiet_exit() -> Result<()> {
    let f = Fleet::settled_pair("hcli-pipe", false, None)?;
    let hactl = bin("hactl")?;
    let dir = f.classic.dir.join("pipe");
    fs::create_dir_all(&dir)?;
    let cmd = format!("{} --manager {} --insecure", hactl.display(), f.url());
    // `| true`: the reader is gone before hactl writes (it connects first), so its
    // write gets EPIPE. `| head -n 1`: the operator's case.
    for (name, reader) in [("true", "true"), ("head", "head -n 1")] {
        let err = dir.join(format!("{name}.err"));
        let rc = dir.join(format!("{name}.rc"));
        let out = dir.join(format!("{name}.out"));
        let line = format!(
            "{{ {cmd} history 2>{err}; echo $? >{rc}; }} | {reader} >{out}",
            err = err.display(),
            rc = rc.display(),
            out = out.display()
        );
        f.classic.lan.ns(CLIENT).sh(&line)?;
        let code = fs::read_to_string(&rc)
            .with_context(|| format!("no exit code for {name}"))?
            .trim()
            .to_string();
        let stderr = fs::read_to_string(&err)?;
        ensure!(
            code == "0" || code == "141",
            "hactl history | {reader}: exit {code}, stderr:\n{stderr}"
        );
        ensure!(
            stderr.is_empty(),
            "hactl history | {reader} wrote to stderr:\n{stderr}"
        );
        if name == "head" {
            let first = fs::read_to_string(&out)?;
            ensure!(first.lines().count() == 1, "head got:\n{first}");
        }
    }
    Ok(())
}
