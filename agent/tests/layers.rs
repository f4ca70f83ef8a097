//! Layers point down: the folders (top-level modules) of agent/src import each other
//! without a circle. An edge `a -> b` is a `crate::b` path in a file of `a` outside its
//! `#[cfg(test)] mod tests` (comments skipped); a circle fails with the files that close it.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module of `file` (agent/src/lb/service.rs: `lb`).
fn folder(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// Module names after each `crate::` in `text`, comments and unit tests left out.
fn imports(text: &str) -> BTreeSet<String> {
    let code = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    let mut out = BTreeSet::new();
    for line in code.lines() {
        let line = line.split("//").next().unwrap_or("");
        for (i, _) in line.match_indices("crate::") {
            let rest = &line[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut g = Graph::new();
    for f in files {
        let from = folder(&src, &f);
        if from == "lib" || from == "main" {
            continue;
        }
        let rel = f.strip_prefix(&src).unwrap().display().to_string();
        for to in imports(&fs::read_to_string(&f).unwrap()) {
            if to != from {
                g.entry(from.clone())
                    .or_default()
                    .entry(to)
                    .or_default()
                    .insert(rel.clone());
            }
        }
    }
    g
}

/// A path from `from` back to `to` through `g`, if any.
fn path_to(g: &Graph, from: &str, to: &str, seen: &mut BTreeSet<String>) -> Option<Vec<String>> {
    if from == to {
        return Some(vec![to.to_string()]);
    }
    if !seen.insert(from.to_string()) {
        return None;
    }
    for next in g.get(from).into_iter().flat_map(|m| m.keys()) {
        if let Some(mut p) = path_to(g, next, to, seen) {
            p.insert(0, from.to_string());
            return Some(p);
        }
    }
    None
}

#[test]
fn no_import_circle_between_folders() {
    let g = graph();
    assert!(g.contains_key("runtime"), "the scan found the crate: {g:?}");
    for (a, outs) in &g {
        for b in outs.keys() {
            if let Some(back) = path_to(&g, b, a, &mut BTreeSet::new()) {
                let mut why = String::new();
                let mut hops = vec![a.clone()];
                hops.extend(back);
                for w in hops.windows(2) {
                    why += &format!("\n  {} -> {}: {:?}", w[0], w[1], g[&w[0]][&w[1]]);
                }
                panic!("import circle through {a}:{why}");
            }
        }
    }
}

#[test]
fn telemetry_is_imported_by_no_folder() {
    let g = graph();
    let users: Vec<_> = g
        .iter()
        .filter(|(_, outs)| outs.contains_key("telemetry"))
        .map(|(a, outs)| (a, &outs["telemetry"]))
        .collect();
    assert!(users.is_empty(), "telemetry.rs sits on top: {users:?}");
}
