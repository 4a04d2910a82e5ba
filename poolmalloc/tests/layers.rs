//! The layer diagram in `src/design.rs` is the one description of the
//! crate's structure. This test reads it, reads the `crate::` imports of
//! every module under `src/`, and fails if any module imports a module in a
//! higher row, imports within its row without being listed, or is missing
//! from the diagram. So the diagram and the code cannot drift apart.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Imports allowed within one row of the diagram (`from`, `to`), as
/// `design.rs` lists them.
const SAME_ROW: &[(&str, &str)] = &[
    ("heap", "abandoned"),
    ("registry", "heap"),
    ("pool", "remote"),
    ("pool", "handover"),
    ("handover", "remote"),
    ("owned", "global"),
];

/// The bottom row's internal order, as `design.rs` gives it.
const ROW0_ORDER: &[&str] = &["sync", "list", "tid", "os", "report", "options", "fault", "lock", "prof"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Module name → row, from the diagram's code block.
fn diagram() -> BTreeMap<String, usize> {
    let text = fs::read_to_string(src().join("design.rs")).unwrap();
    let mut rows = BTreeMap::new();
    let mut in_block = false;
    for line in text.lines() {
        let l = line.trim_start_matches("//!").trim();
        if l.starts_with("```") {
            if in_block {
                break;
            }
            in_block = true;
            continue;
        }
        if !in_block {
            continue;
        }
        let mut words = l.split_whitespace();
        let Some(row) = words.next().and_then(|w| w.parse::<usize>().ok()) else { continue };
        let _layer = words.next();
        // Module names follow, up to the first word that is not one.
        for w in words {
            if !w.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                break;
            }
            if fs::metadata(src().join(format!("{w}.rs"))).is_err() && fs::metadata(src().join(w)).is_err() {
                break;
            }
            rows.insert(w.to_string(), row);
        }
    }
    assert!(rows.len() > 10, "the diagram in design.rs was not found or not parsed: {rows:?}");
    rows
}

/// Top-level module of every `.rs` file under `src/` (lib.rs excluded).
fn modules() -> BTreeMap<String, Vec<PathBuf>> {
    fn walk(dir: &Path, top: Option<&str>, out: &mut BTreeMap<String, Vec<PathBuf>>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                walk(&p, Some(top.unwrap_or(&name)), out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let m = top.unwrap_or(&name).to_string();
                if m != "lib" {
                    out.entry(m).or_default().push(p);
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&src(), None, &mut out);
    out
}

/// The `crate::` modules a file names, outside comments and its unit tests.
fn imports(path: &Path, known: &BTreeSet<String>) -> BTreeSet<String> {
    let text = fs::read_to_string(path).unwrap();
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => &text[..],
    };
    let code: String = text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n");
    let mut out = BTreeSet::new();
    let mut rest = &code[..];
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for part in group[..end].split(',') {
                let name = part.trim().split("::").next().unwrap_or("").trim();
                if known.contains(name) {
                    out.insert(name.to_string());
                }
            }
        } else {
            let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if known.contains(&name) {
                out.insert(name);
            }
        }
    }
    out
}

#[test]
fn every_import_follows_the_layer_diagram() {
    let rows = diagram();
    let mods = modules();
    let known: BTreeSet<String> = mods.keys().cloned().collect();
    let mut problems = Vec::new();
    for m in &known {
        if m == "design" {
            continue;
        }
        let Some(&row) = rows.get(m) else {
            problems.push(format!("module `{m}` is not in the diagram in design.rs"));
            continue;
        };
        for path in &mods[m] {
            for to in imports(path, &known) {
                if to == *m {
                    continue;
                }
                let Some(&to_row) = rows.get(&to) else { continue };
                let ok = if to_row < row {
                    true
                } else if to_row == row && row == 0 {
                    let pos = |x: &str| ROW0_ORDER.iter().position(|y| *y == x);
                    matches!((pos(m), pos(&to)), (Some(a), Some(b)) if b < a)
                } else {
                    to_row == row && SAME_ROW.contains(&(m.as_str(), to.as_str()))
                };
                if !ok {
                    problems.push(format!("{} (row {row}) imports {to} (row {to_row})", path.display()));
                }
            }
        }
    }
    for m in rows.keys() {
        if !known.contains(m) {
            problems.push(format!("the diagram names `{m}`, which is not a module"));
        }
    }
    assert!(problems.is_empty(), "layer violations:\n{}", problems.join("\n"));
}
