//! Every keyword keepalived 2.4.3 accepts is known to ha-agent's keyword table.
//!
//! The list comes from keepalived's own source at test time: the tarball
//! (`../shared/peers/keepalived-2.4.3.tar.gz` beside the workspace, or
//! `KEEPALIVED_SRC_TARBALL`) is extracted with `tar` and every
//! `install_keyword("..")`, `install_keyword_root("..")`, `install_keyword_quoted("..")`,
//! `install_keyword_conditional("..")` (and the checker helper
//! `install_http_ssl_check_keyword("..")`) call of its `.c` files is read. Where the
//! block of a call can be followed in its file (a root keyword, then `install_sublevel`
//! / `install_sublevel_end` nesting, within one function), the keyword must be known in
//! that very block; elsewhere (helpers shared by several blocks) in some block.
//! A keyword missing from the table fails the test, naming it and its source line; a
//! keyword ha-agent knows but does not implement loads with a note (checked too).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use ha_agent::config::keywords::{self, Support};

const CALLS: &[&str] = &[
    "install_keyword(",
    "install_keyword_root(",
    "install_keyword_quoted(",
    "install_keyword_conditional(",
    "install_http_ssl_check_keyword(",
];

/// One keyword installation in keepalived's source.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Found {
    /// The keyword.
    name: String,
    /// Its block path when the file shows it (empty: the top level), None when not.
    path: Option<Vec<String>>,
    /// `file:line` in keepalived's source.
    at: String,
}

/// Where keepalived 2.4.3's source is: `$KEEPALIVED_SRC_TARBALL`, else `shared/peers/`
/// beside the workspace (the developers' layout), else the team's shared directory
/// /work/shared (a clone elsewhere on the same machine, as CI's is).
fn tarball() -> PathBuf {
    if let Some(p) = std::env::var_os("KEEPALIVED_SRC_TARBALL") {
        return PathBuf::from(p);
    }
    const NAME: &str = "peers/keepalived-2.4.3.tar.gz";
    // tests/ -> workspace -> its parent holds shared/.
    let beside = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared")
        .join(NAME);
    if beside.exists() {
        return beside;
    }
    Path::new("/work/shared").join(NAME)
}

/// Extract the tarball into a fresh directory; returns the source root.
fn extract(dir: &Path) -> Result<PathBuf> {
    let tar = tarball();
    if !tar.exists() {
        bail!(
            "{} missing: set KEEPALIVED_SRC_TARBALL to keepalived 2.4.3's source tarball",
            tar.display()
        );
    }
    let st = Command::new("tar")
        .arg("-xzf")
        .arg(&tar)
        .arg("-C")
        .arg(dir)
        .status()
        .context("run tar")?;
    if !st.success() {
        bail!("tar -xzf {} failed: {st}", tar.display());
    }
    let root = dir.join("keepalived-2.4.3/keepalived");
    if !root.is_dir() {
        bail!("{} not in the tarball", root.display());
    }
    Ok(root)
}

fn c_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for e in fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            c_files(&p, out)?;
        } else if p.extension().is_some_and(|x| x == "c") {
            out.push(p);
        }
    }
    Ok(())
}

/// The string literal right after `call` at the start of `rest`, if any.
fn literal(rest: &str) -> Option<&str> {
    let rest = rest.trim_start().strip_prefix('"')?;
    rest.split_once('"').map(|(s, _)| s)
}

/// Every installation in one file, with its block when it can be followed.
fn scan(file: &Path, shown: &str) -> Result<Vec<Found>> {
    let text = fs::read_to_string(file)?;
    let mut out = Vec::new();
    // The block path in force (None: unknown, e.g. inside a helper), and the last
    // keyword installed (a sublevel opens under it).
    let mut path: Option<Vec<String>> = None;
    let mut last: Option<String> = None;
    // Sublevels opened while the path was unknown (closed before it is known again).
    let mut depth_unknown = 0usize;
    for (i, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or_default();
        // A function ends at a closing brace in column 0: nothing carries over.
        if line.starts_with('}') {
            path = None;
            last = None;
            depth_unknown = 0;
            continue;
        }
        if code.contains("install_sublevel_end(") {
            match path.as_mut() {
                Some(p) if depth_unknown == 0 && p.len() > 1 => {
                    p.pop();
                }
                _ => depth_unknown = depth_unknown.saturating_sub(1),
            }
            continue;
        }
        if code.contains("install_sublevel(") {
            match (path.as_mut(), &last) {
                (Some(p), Some(k)) if depth_unknown == 0 => p.push(k.clone()),
                _ => depth_unknown += 1,
            }
            continue;
        }
        for call in CALLS {
            let Some(pos) = code.find(call) else { continue };
            // `install_keyword(` also matches inside `install_keyword_root(` etc.: take
            // the longest call name at this position only.
            let before = &code[..pos];
            if before.ends_with('_') || before.chars().last().is_some_and(char::is_alphanumeric) {
                continue;
            }
            let Some(name) = literal(&code[pos + call.len()..]) else {
                // A keyword passed in a variable (a helper's parameter): its callers have
                // the literal; the block of what follows is unknown.
                path = None;
                last = None;
                continue;
            };
            let at = format!("{shown}:{}", i + 1);
            let kw_path = match *call {
                "install_keyword_root(" => {
                    path = Some(vec![name.to_owned()]);
                    depth_unknown = 0;
                    Some(Vec::new())
                }
                // Called from the real_server block of another file.
                "install_http_ssl_check_keyword(" => None,
                _ => match &path {
                    Some(p) if depth_unknown == 0 => Some(p.clone()),
                    _ => None,
                },
            };
            out.push(Found {
                name: name.to_owned(),
                path: kw_path,
                at,
            });
            last = Some(name.to_owned());
        }
    }
    Ok(out)
}

/// Every keyword name of every block of ha-agent's table.
fn known_anywhere() -> BTreeSet<&'static str> {
    keywords::all_blocks()
        .into_iter()
        .flat_map(|b| b.keywords.iter().flat_map(|l| l.iter()).map(|k| k.name))
        .collect()
}

#[test]
fn every_keepalived_2_4_3_keyword_is_known() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let root = extract(tmp.path())?;
    let mut files = Vec::new();
    c_files(&root, &mut files)?;
    files.sort();
    let mut found = Vec::new();
    for f in &files {
        let shown = f
            .strip_prefix(&root)
            .unwrap_or(f)
            .to_string_lossy()
            .into_owned();
        found.extend(scan(f, &shown)?);
    }
    let names: BTreeSet<&str> = found.iter().map(|f| f.name.as_str()).collect();
    // A sanity floor, so a broken scan cannot pass by finding nothing.
    assert!(names.len() >= 350, "only {} keywords found", names.len());
    let anywhere = known_anywhere();
    let mut missing = Vec::new();
    let mut placed = 0usize;
    for f in &found {
        let Some(path) = &f.path else {
            if !anywhere.contains(f.name.as_str()) {
                missing.push(format!("{} ({}): in no block", f.name, f.at));
            }
            continue;
        };
        placed += 1;
        let mut full: Vec<&str> = path.iter().map(String::as_str).collect();
        full.push(&f.name);
        if keywords::lookup_path(&full).is_none() {
            missing.push(format!(
                "{} ({}): not in {}",
                f.name,
                f.at,
                full.join(" > ")
            ));
        }
    }
    assert!(
        missing.is_empty(),
        "{} keepalived 2.4.3 keyword(s) unknown to ha-agent:\n{}",
        missing.len(),
        missing.join("\n")
    );
    assert!(placed >= 250, "only {placed} keywords placed in a block");
    let (mut active, mut noted) = (0, 0);
    for n in &names {
        let supports: BTreeSet<bool> = keywords::all_blocks()
            .into_iter()
            .flat_map(|b| b.keywords.iter().flat_map(|l| l.iter()))
            .filter(|k| k.name == *n)
            .map(|k| k.support == Support::Active)
            .collect();
        if supports.contains(&true) {
            active += 1;
        } else {
            noted += 1;
        }
    }
    println!(
        "keepalived 2.4.3: {} keywords ({} installations, {placed} with their block); ha-agent: {active} active, {noted} noted",
        names.len(),
        found.len()
    );
    Ok(())
}

/// A keyword ha-agent does not implement loads, with a note naming it: never an
/// "unknown keyword" error, never silent.
#[test]
fn inactive_keywords_load_with_a_note() -> Result<()> {
    let text = "global_defs {\n json_version 2\n log_unknown_vrids\n}\nvrrp_instance A {\n interface eth0\n virtual_router_id 1\n virtual_ipaddress {\n 192.0.2.1\n }\n auth_hmac {\n  key 1 0123456789abcdef0123456789abcdef\n  active_key 1\n }\n}\n";
    let loaded = ha_agent::config::parse_str(Path::new("k.conf"), text)
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let notes: Vec<String> = loaded.notes.iter().map(ToString::to_string).collect();
    for want in [
        "k.conf:2: 'json_version' has no effect in ha-agent",
        "k.conf:3: 'log_unknown_vrids' has no effect in ha-agent",
        "k.conf:11: 'auth_hmac' parsed, not active yet",
    ] {
        assert!(notes.iter().any(|n| n == want), "{want} not in {notes:?}");
    }
    Ok(())
}
