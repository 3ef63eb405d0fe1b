//! The arrows of docs/ARCHITECTURE.md, checked on the source: which part
//! may use which, no import circle, files a reader can hold in mind, and
//! nothing a user reads pointing outside the repository.
//!
//! The check reads `use` paths and `crate::…` references (comments and
//! test modules left out): a rough parse, but the rules are about module
//! names, so it is enough to catch a new arrow the moment it is written.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Longest source file, in lines, outside test suites.
const MAX_LINES: usize = 600;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("ca/ is inside the workspace")
        .to_path_buf()
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// A file's module path below `root` (`store/redb/mod.rs` → `store::redb`).
fn module_of(root: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(root).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The code of a file without comments and without its test module.
fn code(file: &Path) -> String {
    let text = std::fs::read_to_string(file).unwrap();
    // A test module's body starts at `#[cfg(test)]` over a `mod … {` line.
    let body = text.match_indices("#[cfg(test)]\n").find(|(i, m)| {
        let next = text[i + m.len()..].lines().next().unwrap_or("");
        next.contains("mod ") && next.trim_end().ends_with('{')
    });
    let text = match body {
        Some((i, _)) => &text[..i],
        None => &text,
    };
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Is `file` a test suite (exempt from the length limit)?
fn is_suite(file: &Path) -> bool {
    let name = file.file_name().unwrap().to_string_lossy();
    matches!(&*name, "suite.rs" | "tests.rs" | "contract.rs")
}

/// The top-level modules each top-level module of `root` refers to.
fn arrows(root: &Path, depth: usize) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(root) {
        let module = module_of(root, &file);
        if module.is_empty() || module[0] == "lib" || module[0] == "main" || is_suite(&file) {
            continue;
        }
        let me = module[..module.len().min(depth)].join("::");
        let code = code(&file);
        let mut refs = BTreeSet::new();
        for (i, _) in code.match_indices("crate::") {
            let path: Vec<&str> = code[i + 7..]
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .next()
                .unwrap_or("")
                .split("::")
                .filter(|s| !s.is_empty())
                .collect();
            // Only module paths: a lowercase first segment that is a folder or file here.
            let mut target = Vec::new();
            let mut dir = root.to_path_buf();
            for seg in path.iter().take(depth) {
                let as_dir = dir.join(seg);
                if as_dir.is_dir() || dir.join(format!("{seg}.rs")).is_file() {
                    target.push(*seg);
                    dir = as_dir;
                } else {
                    break;
                }
            }
            if !target.is_empty() {
                refs.insert(target.join("::"));
            }
        }
        if depth > 1 && module.len() > 1 {
            let parent = module[..module.len() - 1].join("::");
            for (i, _) in code.match_indices("super::") {
                let seg: String = code[i + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                let dir = root.join(module[..module.len() - 1].join("/"));
                if !seg.is_empty()
                    && (dir.join(format!("{seg}.rs")).is_file() || dir.join(&seg).is_dir())
                {
                    refs.insert(format!("{parent}::{seg}"));
                }
            }
        }
        refs.retain(|r| *r != me && !me.starts_with(&format!("{r}::")));
        out.entry(me).or_default().extend(refs);
    }
    out
}

fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<(String, String)> {
    fn reaches(g: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str) -> bool {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_owned()];
        while let Some(n) = stack.pop() {
            for next in g.get(&n).into_iter().flatten() {
                if next == to {
                    return true;
                }
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        false
    }
    let mut found = Vec::new();
    for (a, targets) in graph {
        for b in targets {
            if a < b && reaches(graph, b, a) {
                found.push((a.clone(), b.clone()));
            }
        }
    }
    found
}

#[test]
fn no_import_circle_between_modules() {
    let ws = workspace();
    for root in [ws.join("ca/src"), ws.join("src")] {
        for depth in [1, 2] {
            let graph = arrows(&root, depth);
            assert_eq!(
                cycles(&graph),
                Vec::<(String, String)>::new(),
                "{} at depth {depth}: {graph:#?}",
                root.display()
            );
        }
    }
}

#[test]
fn each_part_uses_only_what_is_below_it() {
    let graph = arrows(&workspace().join("ca/src"), 1);
    let may_use: &[(&str, &[&str])] = &[
        ("store", &[]),
        ("audit", &["store"]),
        ("metrics", &[]),
        ("quiet", &[]),
        ("issuance", &[]),
        ("state", &["store", "audit", "metrics"]),
        ("revocation", &["store", "state", "issuance", "datadir"]),
        ("stored_ca", &["datadir", "issuance", "state", "store"]),
        ("backup", &["audit", "store", "stored_ca"]),
        (
            "authority",
            &[
                "store",
                "state",
                "audit",
                "issuance",
                "revocation",
                "metrics",
                "token",
                "backup",
                "stored_ca",
                "quiet",
            ],
        ),
        ("http", &["authority", "revocation", "metrics", "quiet"]),
        (
            "events",
            &["store", "state", "audit", "issuance", "metrics"],
        ),
    ];
    for (part, allowed) in may_use {
        let uses = graph.get(*part).cloned().unwrap_or_default();
        let extra: Vec<_> = uses
            .iter()
            .filter(|u| !allowed.contains(&u.as_str()))
            .collect();
        assert!(extra.is_empty(), "{part} must not use {extra:?}");
    }
}

#[test]
fn the_agent_side_and_the_service_side_of_the_library_stand_apart() {
    let graph = arrows(&workspace().join("src"), 1);
    for (part, other) in [("client", "verify"), ("verify", "client")] {
        let uses = graph.get(part).cloned().unwrap_or_default();
        assert!(!uses.contains(other), "{part} must not use {other}");
    }
}

#[test]
fn the_library_and_the_authority_know_nothing_of_what_sits_above_them() {
    let ws = workspace();
    for file in rust_files(&ws.join("src")) {
        assert!(
            !code(&file).contains("agentca_ca"),
            "{} uses the CA crate",
            file.display()
        );
    }
    for file in rust_files(&ws.join("ca/src/authority"))
        .into_iter()
        .chain(rust_files(&ws.join("ca/src/state")))
    {
        let code = code(&file);
        for forbidden in ["axum", "hyper::", "crate::http", "crate::cli", "clap::"] {
            assert!(
                !code.contains(forbidden),
                "{} uses {forbidden}",
                file.display()
            );
        }
    }
}

#[test]
fn every_file_is_one_a_reader_can_hold_in_mind() {
    let ws = workspace();
    let mut long = Vec::new();
    for root in [ws.join("ca/src"), ws.join("src")] {
        for file in rust_files(&root) {
            let text = std::fs::read_to_string(&file).unwrap();
            if text.contains("too_many_arguments") {
                long.push(format!("{}: allows too_many_arguments", file.display()));
            }
            if text.contains("metrics::global") {
                long.push(format!("{}: a process-wide metrics static", file.display()));
            }
            let lines = text.lines().count();
            if lines > MAX_LINES && !is_suite(&file) {
                long.push(format!("{}: {lines} lines", file.display()));
            }
        }
    }
    assert!(long.is_empty(), "{long:#?}");
}

#[test]
fn nothing_a_user_reads_points_outside_the_repository() {
    let ws = workspace();
    let mut docs = vec![ws.join("README.md")];
    if let Ok(entries) = std::fs::read_dir(ws.join("docs")) {
        // The documents; not the images they show.
        docs.extend(
            entries
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == "md")),
        );
    }
    assert!(ws.join("docs/ARCHITECTURE.md").is_file());
    for doc in docs {
        let text = std::fs::read_to_string(&doc).unwrap();
        assert!(
            !text.contains("../shared"),
            "{} links ../shared",
            doc.display()
        );
    }
}
