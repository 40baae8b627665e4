//! The module tree's rules, read off the sources (DESIGN §1): imports point
//! down the pipeline, the pure modules touch neither Docker, HTTP, an async
//! runtime nor a terminal, and only `stack/`, `images/` and `exporter/` speak to Docker.
//! A path named anywhere in a module's code counts (`use` lines and inline
//! paths alike); its `#[cfg(test)]` module does not.

use regex::Regex;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The library's top-level modules, lowest first: a module may name only
/// modules of a lower rank (or its own). Equal ranks may not name each other.
const RANKS: &[(&str, u32)] = &[
    ("error", 0),
    ("util", 0),
    // Leaves: each stands alone (a parser, a client, the engine).
    ("promql", 1),
    ("grafana", 1),
    ("load", 1),
    ("observe", 1),
    // What each kind of component is: one table.
    ("components", 2),
    // Input: models and located validation.
    ("spec", 3),
    ("render", 4),
    // Capacity: the load engine stepped against an SLO.
    ("bench", 4),
    ("lint", 4),
    ("images", 5),
    ("stack", 6),
    ("fixture", 7),
    ("exporter", 7),
    ("chaos", 8),
    ("panels", 8),
    ("verify", 9),
    ("report", 10),
    ("drill", 11),
    ("suite", 12),
    ("live", 12),
    ("coverage", 13),
    // Drills written for a stack from its rules: reads what lint reads.
    ("init", 13),
];

/// Modules (or single files) that must stay pure: no Docker, HTTP, async
/// runtime or terminal.
const PURE: &[&str] = &[
    "spec",
    "render",
    "components",
    "promql",
    "grafana",
    "verify",
    "report",
    "error",
    "suite/plan",
];
const IMPURE_CRATES: &[&str] = &["bollard", "reqwest", "tokio", "indicatif", "axum", "hyper"];

/// Only these speak to the Docker engine.
const DOCKER: &[&str] = &["stack", "images", "exporter"];

/// A source file: its path under src/ (`drill/ready.rs`) and its code.
struct File {
    path: String,
    code: String,
}

impl File {
    /// `drill/ready.rs` -> ["drill", "ready"]; `suite/mod.rs` -> ["suite"].
    fn module(&self) -> Vec<&str> {
        let p = self.path.trim_end_matches(".rs");
        let mut m: Vec<&str> = p.split('/').collect();
        if m.last() == Some(&"mod") {
            m.pop();
        }
        m
    }

    fn top(&self) -> &str {
        self.module()[0]
    }

    /// The code without comments and without its `#[cfg(test)] mod tests`
    /// block (code after the block still counts).
    fn body(&self) -> String {
        let code = without_tests(&self.code);
        code.lines()
            .map(|l| match l.find("//") {
                // `//` inside a string ("http://") is not a comment.
                Some(i) if l[..i].matches('"').count() % 2 == 0 => &l[..i],
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The library's top-level modules this file names: `crate::x`,
    /// `crate::{x, y::{z, w}}`, an item the crate root re-exports
    /// (`crate::Options` names `drill`), and `super::x` / `super::super::x`
    /// resolved from this file's place in the tree.
    fn names(&self, root: &BTreeMap<String, String>) -> BTreeSet<String> {
        let body = self.body();
        let mut out = BTreeSet::new();
        for (i, _) in body.match_indices("crate::") {
            if i > 0 && body[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let rest = &body[i + "crate::".len()..];
            if rest.starts_with('{') {
                out.extend(group_heads(rest));
            } else {
                out.insert(first_segment(rest));
            }
        }
        let m = self.module();
        let sup = Regex::new(r"\b((?:super::)+)(\{|[A-Za-z_][A-Za-z0-9_]*)").unwrap();
        for c in sup.captures_iter(&body) {
            let up = c[1].matches("super::").count();
            if up >= m.len() {
                // Up to the crate root: what follows is a top-level name.
                let at = c.get(2).unwrap().start();
                if body[at..].starts_with('{') {
                    out.extend(group_heads(&body[at..]));
                } else {
                    out.insert(c[2].to_string());
                }
            }
        }
        out.into_iter()
            .map(|n| root.get(&n).cloned().unwrap_or(n))
            .filter(|n| !n.is_empty() && n != "self" && n != m[0])
            .collect()
    }

    /// The impure crates this file names.
    fn crates(&self) -> BTreeSet<&'static str> {
        let body = self.body();
        static NAMED: std::sync::OnceLock<Vec<(&str, Regex)>> = std::sync::OnceLock::new();
        let named = NAMED.get_or_init(|| {
            IMPURE_CRATES
                .iter()
                .map(|c| {
                    (
                        *c,
                        Regex::new(&format!(r"(?:^|[^:\w])(?:::)?{c}::")).unwrap(),
                    )
                })
                .collect()
        });
        named
            .iter()
            .filter(|(_, re)| re.is_match(&body))
            .map(|(c, _)| *c)
            .collect()
    }
}

/// The first segment of each top-level item of a `{a, b::{c}, D}` group.
fn group_heads(group: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut item = String::new();
    for ch in group.chars() {
        match ch {
            '{' => {
                depth += 1;
                if depth == 1 {
                    continue;
                }
            }
            '}' => {
                depth -= 1;
                if depth == 0 {
                    out.push(first_segment(&item));
                    return out;
                }
            }
            ',' if depth == 1 => {
                out.push(first_segment(&item));
                item.clear();
                continue;
            }
            _ => {}
        }
        if depth == 1 {
            item.push(ch);
        }
    }
    out
}

/// `code` without its `#[cfg(test)] mod tests { ... }` block, found by
/// matching braces outside string and char literals.
fn without_tests(code: &str) -> String {
    let Some(start) = code.find("#[cfg(test)]\nmod tests") else {
        return code.to_string();
    };
    let b: Vec<char> = code[start..].chars().collect();
    let (mut i, mut depth, mut opened) = (0, 0, false);
    while i < b.len() {
        match b[i] {
            'r' if b.get(i + 1) == Some(&'#') && b.get(i + 2) == Some(&'"') => {
                i += 3;
                while i + 1 < b.len() && !(b[i] == '"' && b[i + 1] == '#') {
                    i += 1;
                }
                i += 1;
            }
            '"' => {
                i += 1;
                while i < b.len() && b[i] != '"' {
                    i += if b[i] == '\\' { 2 } else { 1 };
                }
            }
            '\'' if b.get(i + 2) == Some(&'\'') => i += 2,
            '\'' if b.get(i + 1) == Some(&'\\') && b.get(i + 3) == Some(&'\'') => i += 3,
            '{' => {
                depth += 1;
                opened = true;
            }
            '}' => {
                depth -= 1;
                if opened && depth == 0 {
                    let end: usize = b[..=i].iter().map(|c| c.len_utf8()).sum();
                    return format!("{}{}", &code[..start], &code[start + end..]);
                }
            }
            _ => {}
        }
        i += 1;
    }
    code[..start].to_string()
}

/// The identifier an item or path starts with.
fn first_segment(item: &str) -> String {
    item.trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

fn rank(m: &str) -> Option<u32> {
    RANKS.iter().find(|(n, _)| *n == m).map(|(_, r)| *r)
}

/// What the crate root re-exports, by name: `Options` -> `drill`.
fn root_exports(files: &[File]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(lib) = files.iter().find(|f| f.path == "lib.rs") else {
        return out;
    };
    let re = Regex::new(r"pub use ([a-z_]+)::(?:[a-z_]+::)*(\{[^}]*\}|\w+);").unwrap();
    for c in re.captures_iter(&lib.body()) {
        for name in c[2].trim_matches(|c| c == '{' || c == '}').split(',') {
            out.insert(name.trim().to_string(), c[1].to_string());
        }
    }
    out
}

/// Every rule broken, one line each.
fn violations(files: &[File]) -> Vec<String> {
    let root = root_exports(files);
    let mut out = Vec::new();
    for f in files {
        let top = f.top();
        if top == "cli" || top == "main" {
            // The binary: it calls the library, which never calls it back.
            continue;
        }
        if top == "lib" {
            if f.code.contains("mod cli") {
                out.push("lib.rs: the CLI belongs to the binary, not the library".into());
            }
            continue;
        }
        let Some(own) = rank(top) else {
            out.push(format!("{}: module `{top}` has no place in RANKS", f.path));
            continue;
        };
        for n in f.names(&root) {
            if n == "cli" {
                out.push(format!("{}: names the CLI", f.path));
                continue;
            }
            match rank(&n) {
                Some(r) if r < own => {}
                Some(_) => out.push(format!(
                    "{}: `{top}` names `{n}`, which is not below it in the pipeline",
                    f.path
                )),
                None => {}
            }
        }
        let module = f.module().join("/");
        let pure = PURE
            .iter()
            .any(|p| *p == top || module == *p || module.starts_with(&format!("{p}/")));
        for c in f.crates() {
            if pure {
                out.push(format!("{}: pure module `{module}` names {c}", f.path));
            }
            if c == "bollard" && !DOCKER.contains(&top) {
                out.push(format!(
                    "{}: only stack/, images/ and exporter/ speak to Docker",
                    f.path
                ));
            }
            if c == "indicatif" {
                out.push(format!("{}: terminal output belongs to the CLI", f.path));
            }
        }
    }
    out
}

fn sources() -> Vec<File> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(File {
                    path: p
                        .strip_prefix(&root)
                        .unwrap()
                        .to_string_lossy()
                        .replace('\\', "/"),
                    code: std::fs::read_to_string(&p).unwrap(),
                });
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

#[test]
fn imports_point_down_the_pipeline() {
    let files = sources();
    assert!(files.len() > 40, "read {} files", files.len());
    let v = violations(&files);
    assert!(
        v.is_empty(),
        "the module tree's rules are broken:\n{}",
        v.join("\n")
    );
}

#[test]
fn every_file_says_what_it_owns() {
    let missing: Vec<String> = sources()
        .into_iter()
        .filter(|f| !f.code.trim_start().starts_with("//!"))
        .map(|f| f.path)
        .collect();
    assert!(missing.is_empty(), "no `//!` doc at the top: {missing:?}");
}

#[test]
fn long_files_say_why() {
    let long: Vec<String> = sources()
        .into_iter()
        .filter(|f| {
            // Lines of the library's code, its unit tests not counted.
            let lines = f.body().lines().count();
            lines > 600
                && !f
                    .code
                    .lines()
                    .take(30)
                    .any(|l| l.contains("Longer than 600 lines"))
        })
        .map(|f| f.path)
        .collect();
    assert!(
        long.is_empty(),
        "over 600 lines with no reason at the top: {long:?}"
    );
}

/// Functions over 80 lines (their unit tests not counted) say why, in a
/// comment just above them that starts "Longer than 80 lines".
#[test]
fn long_functions_say_why() {
    let head = Regex::new(r"^(\s*)(pub(\([a-z]+\))? )?(async )?fn (\w+)").unwrap();
    let mut long = Vec::new();
    for f in sources() {
        let body = f.body();
        let lines: Vec<&str> = body.lines().collect();
        // The same lines with their comments (body() blanks them).
        let code: Vec<&str> = f.code.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            let Some(c) = head.captures(l) else { continue };
            let close = format!("{}}}", &c[1]);
            let Some(n) = lines[i + 1..].iter().position(|x| *x == close) else {
                continue;
            };
            let why = code[..i]
                .iter()
                .rev()
                .take_while(|x| {
                    x.trim_start().starts_with("//")
                        || x.trim().is_empty()
                        || x.trim_start().starts_with("#[")
                })
                .any(|x| x.contains("Longer than 80 lines"));
            if n + 2 > 80 && !why {
                long.push(format!("{}: {} ({} lines)", f.path, &c[5], n + 2));
            }
        }
    }
    assert!(
        long.is_empty(),
        "functions over 80 lines with no reason: {long:?}"
    );
}

/// Code below a file's unit-test module still counts.
#[test]
fn code_after_the_tests_counts() {
    let mut files = sources();
    let f = files
        .iter_mut()
        .find(|f| f.path == "spec/mod.rs")
        .expect("spec/mod.rs");
    assert!(
        f.code.contains("#[cfg(test)]\nmod tests"),
        "spec/mod.rs has unit tests"
    );
    f.code.push_str("\nuse crate::suite::Group;\n");
    let v = violations(&files);
    assert!(
        v.iter().any(|l| l.contains("`spec` names `suite`")),
        "{v:?}"
    );
}

/// The rules catch what they are for: each forbidden edge, added to a copy
/// of the real tree, is reported.
#[test]
fn a_forbidden_import_is_caught() {
    let real = sources();
    for (file, line, expect) in [
        (
            "report/mod.rs",
            "use crate::drill::Options;",
            "`report` names `drill`",
        ),
        (
            "drill/mod.rs",
            "use crate::suite::run;",
            "`drill` names `suite`",
        ),
        (
            "spec/mod.rs",
            "use crate::{error, panels::PanelCheck};",
            "`spec` names `panels`",
        ),
        (
            "verify/teams.rs",
            "fn f() { let _ = tokio::time::sleep; }",
            "pure module `verify/teams` names tokio",
        ),
        (
            "suite/plan.rs",
            "use tokio::sync::watch;",
            "pure module `suite/plan` names tokio",
        ),
        (
            "drill/mod.rs",
            "use bollard::Docker;",
            "only stack/, images/ and exporter/ speak to Docker",
        ),
        (
            "report/text.rs",
            "use indicatif::ProgressBar;",
            "terminal output belongs to the CLI",
        ),
        ("stack/mod.rs", "use crate::cli::Cli;", "names the CLI"),
        (
            "observe/mod.rs",
            "use super::stack;",
            "`observe` names `stack`",
        ),
        (
            "drill/mod.rs",
            "use crate::{error::{err, Result}, suite::run};",
            "`drill` names `suite`",
        ),
        (
            "report/mod.rs",
            "use crate::Options;",
            "`report` names `drill`",
        ),
        (
            "drill/expect.rs",
            "use super::super::suite::run;",
            "`drill` names `suite`",
        ),
        (
            "verify/mod.rs",
            "fn f() { ::tokio::spawn(async {}); }",
            "pure module `verify` names tokio",
        ),
    ] {
        let files: Vec<File> = real
            .iter()
            .map(|f| File {
                path: f.path.clone(),
                code: if f.path == file {
                    format!("{line}\n{}", f.code)
                } else {
                    f.code.clone()
                },
            })
            .collect();
        let v = violations(&files);
        assert!(
            v.iter().any(|l| l.starts_with(file) && l.contains(expect)),
            "`{line}` in {file} was not caught: {v:?}"
        );
    }
}
