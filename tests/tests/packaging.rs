//! Debian packages (issue 12): deploy/packaging/build-debs.sh packages the binaries this
//! test run already built (no compile, no compression: seconds), and what it made is
//! checked unpacked into a scratch root with `dpkg-deb -x`: the binaries run, every
//! packaged example config passes `ha-agent --check`, man pages and completions exist and
//! are not empty, conffiles are listed and present, and the units pass
//! `systemd-analyze verify` with their paths (and man pages) resolved into the root.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{ensure, Context, Result};
use ha_tests::bin;
use ha_tests::scratch::Scratch;
use ha_tests::systemd::verify;

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn run(cmd: &mut Command) -> Result<Output> {
    let out = cmd.output().with_context(|| format!("spawn {cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out)
}

fn stdout(cmd: &mut Command) -> Result<String> {
    Ok(String::from_utf8_lossy(&run(cmd)?.stdout).into_owned())
}

/// A file that must exist and hold something; returns its text (gunzipped for .gz).
fn non_empty(p: &Path) -> Result<String> {
    let text = if p.extension().is_some_and(|e| e == "gz") {
        stdout(Command::new("gzip").arg("-dc").arg(p))?
    } else {
        fs::read_to_string(p).with_context(|| format!("{} missing", p.display()))?
    };
    ensure!(!text.trim().is_empty(), "{} is empty", p.display());
    Ok(text)
}

/// Every `*.conf` below `dir`.
fn confs(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for e in fs::read_dir(dir).with_context(|| format!("{} missing", dir.display()))? {
        let p = e?.path();
        if p.is_dir() {
            // rsyslog.d holds rsyslog snippets (deploy/examples/syslog), not agent configs.
            if !p.ends_with("rsyslog.d") {
                confs(&p, out)?;
            }
        } else if p.extension().is_some_and(|x| x == "conf") {
            out.push(p);
        }
    }
    Ok(())
}

#[test]
fn packages_install_into_a_root_and_work() -> Result<()> {
    let scratch = Scratch::new("packaging")?;
    let debs = scratch.0.join("debs");
    let root = scratch.0.join("root");
    fs::create_dir_all(&root)?;
    let bin_dir = bin("ha-agent")?
        .parent()
        .context("binary dir")?
        .to_path_buf();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/packaging/build-debs.sh");
    let built = stdout(
        Command::new(&script)
            .arg("--bin-dir")
            .arg(&bin_dir)
            .arg("--out")
            .arg(&debs)
            .env("DEB_COMPRESS", "none"),
    )?;
    let arch = stdout(Command::new("dpkg").arg("--print-architecture"))?;
    let arch = arch.trim();

    for (pkg, exe) in [
        ("ha-agent", "usr/sbin/ha-agent"),
        ("ha-manager", "usr/sbin/ha-manager"),
        ("hactl", "usr/bin/hactl"),
    ] {
        let deb = debs.join(format!("{pkg}_{VERSION}_{arch}.deb"));
        ensure!(
            built.contains(&deb.to_string_lossy().into_owned()),
            "{} not built: {built}",
            deb.display()
        );
        let fields = stdout(
            Command::new("dpkg-deb")
                .arg("-f")
                .arg(&deb)
                .args(["Package", "Version", "Depends"]),
        )?;
        ensure!(
            fields.contains(&format!("Package: {pkg}"))
                && fields.contains(&format!("Version: {VERSION}"))
                && fields.contains("libc6 (>= "),
            "{pkg} control: {fields}"
        );
        run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
        let v = stdout(Command::new(root.join(exe)).arg("--version"))?;
        let name = Path::new(exe)
            .file_name()
            .context("name")?
            .to_string_lossy();
        ensure!(
            v.trim() == format!("{name} {VERSION}"),
            "{exe} --version: {v}"
        );

        // Conffiles are listed and shipped.
        let ctrl = scratch.0.join(format!("ctrl-{pkg}"));
        run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&ctrl))?;
        if pkg != "hactl" {
            let conffiles = non_empty(&ctrl.join("conffiles"))?;
            ensure!(conffiles
                .lines()
                .any(|l| l == format!("/etc/default/{pkg}")));
            for c in conffiles.lines() {
                non_empty(&root.join(c.trim_start_matches('/')))?;
            }
        }

        // Man pages and completions from the clap definitions.
        let section = if pkg == "hactl" { "1" } else { "8" };
        let page =
            non_empty(&root.join(format!("usr/share/man/man{section}/{name}.{section}.gz")))?;
        ensure!(page.contains(&format!(".TH {name} {section}")), "{page}");
        let bash_file = root.join(format!("usr/share/bash-completion/completions/{name}"));
        let bash = non_empty(&bash_file)?;
        ensure!(
            bash.lines()
                .any(|l| l.trim_start().starts_with("complete ") && l.trim_end().ends_with(&*name)),
            "no `complete ... {name}` in {bash}"
        );
        run(Command::new("bash").arg("-n").arg(&bash_file))?;
        non_empty(&root.join(format!("usr/share/zsh/vendor-completions/_{name}")))?;
        non_empty(&root.join(format!("usr/share/fish/vendor_completions.d/{name}.fish")))?;
        non_empty(&root.join(format!("usr/share/doc/{pkg}/copyright")))?;
    }
    // Subcommands have their own pages.
    non_empty(&root.join("usr/share/man/man1/hactl-status.1.gz"))?;
    non_empty(&root.join("usr/share/man/man8/ha-manager-pki-init.8.gz"))?;
    for pkg in ["ha-agent", "ha-manager"] {
        non_empty(&root.join("etc/logrotate.d").join(pkg))?;
    }

    // Every packaged example config is valid for the packaged agent.
    let mut examples = Vec::new();
    confs(&root.join("usr/share/doc/ha-agent/examples"), &mut examples)?;
    ensure!(!examples.is_empty(), "no example config packaged");
    for conf in &examples {
        run(Command::new(root.join("usr/sbin/ha-agent"))
            .arg("--check")
            .arg("-f")
            .arg(conf))?;
    }

    // The packaged units, with /usr/sbin resolved into the root and their man pages found
    // there (Documentation=man:...).
    let units_dir = scratch.0.join("units");
    fs::create_dir_all(&units_dir)?;
    let sbin = root.join("usr/sbin");
    let mut units = Vec::new();
    for u in ["ha-agent.service", "ha-manager.service"] {
        let text = non_empty(&root.join("usr/lib/systemd/system").join(u))?
            .replace("/usr/sbin/", &format!("{}/", sbin.display()));
        let p = units_dir.join(u);
        fs::write(&p, text)?;
        units.push(p);
    }
    verify(&units, &[], &[("MANPATH", &root.join("usr/share/man"))])?;
    Ok(())
}
