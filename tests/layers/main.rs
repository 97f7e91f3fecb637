//! The layering of `runtime/src`, checked from the code's own `crate::` paths (run by `just
//! lint` and `just test`).
//!
//! Every top-level module of the `busbar` crate sits in one layer of [`LAYERS`]; a module may
//! use modules of its own layer or of layers below, never above. On top of that no circle of
//! modules is allowed, even within a layer, the crates `busbar-base` and `busbar-hub` build
//! without wasmtime, and no file is longer than [`MAX_LINES`] unless [`LONG_FILES`] says why.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers of `runtime/src`, from the bottom.
const LAYERS: &[(&str, &[&str])] = &[
    ("message types", &["bindings", "message"]),
    (
        "observe, engine and what a node keeps",
        &[
            "observe",
            "dead_letter",
            "desired",
            "engine",
            "precompiled",
            "cache",
            "grants",
        ],
    ),
    ("bus (routing only)", &["bus"]),
    ("host imports and the manifest", &["host", "manifest"]),
    ("components and services", &["component", "service"]),
    (
        "internal services",
        &[
            "internal",
            "logger",
            "orchestrator",
            "com",
            "topics",
            "fabric",
        ],
    ),
    // `hub` is the `busbar_hub` crate (the fleet protocol): for the node and above.
    ("the node (composition root)", &["config", "node", "hub"]),
    (
        "fleet client, admin API, daemon, command line",
        &[
            "fleet",
            "admin",
            "client",
            "daemon",
            "cli",
            "logging",
            "publisher",
        ],
    ),
];

/// Modules the bottom layers must never use (the rule, also implied by the layers).
const NEVER_BELOW: &[&str] = &["com", "admin", "orchestrator", "node", "fleet", "hub"];

/// Longest file, in lines.
const MAX_LINES: usize = 400;

/// Files allowed past [`MAX_LINES`], with the reason.
const LONG_FILES: &[(&str, &str)] = &[];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository")
        .to_owned()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `runtime/src` belongs to (`lib`, `main` for those files).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_owned()
}

/// `text` with comments removed and the insides of string and char literals blanked, so that
/// only code is searched for paths.
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i += 2;
            while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                i += 1;
            }
            i += 2;
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && {
            let mut j = i + 1;
            while chars.get(j) == Some(&'#') {
                j += 1;
            }
            chars.get(j) == Some(&'"')
        } {
            // A raw string: skip to the quote followed by as many `#`.
            let mut hashes = 0;
            i += 1;
            while chars[i] == '#' {
                hashes += 1;
                i += 1;
            }
            i += 1;
            while i < chars.len() {
                if chars[i] == '"' && (0..hashes).all(|h| chars.get(i + 1 + h) == Some(&'#')) {
                    i += 1 + hashes;
                    break;
                }
                i += 1;
            }
            out.push_str("\"\"");
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' && next == Some('\\') {
            i += 2;
            while i < chars.len() && chars[i] != '\'' {
                i += 1;
            }
            i += 1;
        } else if c == '\'' && chars.get(i + 2) == Some(&'\'') {
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// The names at the top of a path that starts at `rest`: `a` of `a::X`, or `a` and `b` of
/// `{a::X, b::{Y, Z}}` (across lines).
fn heads(rest: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let Some(group) = rest.strip_prefix('{') else {
        let name = ident(rest);
        return if name.is_empty() {
            Vec::new()
        } else {
            vec![name]
        };
    };
    let mut names = Vec::new();
    let mut depth = 0;
    let mut at_item = true;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => at_item = true,
            c if c.is_whitespace() => {}
            _ if depth == 0 && at_item => {
                let name = ident(&group[i..]);
                if !name.is_empty() {
                    names.push(name);
                }
                at_item = false;
            }
            _ => {}
        }
    }
    names
}

/// The top-level modules code at module depth `depth` (1 for `runtime/src/x.rs` and
/// `x/mod.rs`, 2 for `x/y.rs`, ...) names through `crate::`, through `super::` chains that
/// climb to the crate root, and `hub` for `busbar_hub::` (comments and strings left out).
fn uses(text: &str, depth: usize) -> BTreeSet<String> {
    let code = code_only(text);
    let mut found = BTreeSet::new();
    let boundary = |at: usize| {
        code[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == ':'))
    };
    for (at, _) in code.match_indices("crate::") {
        if boundary(at) {
            found.extend(heads(&code[at + "crate::".len()..]));
        }
    }
    for (at, _) in code.match_indices("busbar_hub::") {
        if boundary(at) {
            found.insert("hub".to_owned());
        }
    }
    for (at, _) in code.match_indices("super::") {
        if !boundary(at) {
            continue;
        }
        let mut rest = &code[at..];
        let mut climbs = 0;
        while let Some(r) = rest.strip_prefix("super::") {
            climbs += 1;
            rest = r;
        }
        if climbs >= depth {
            found.extend(heads(rest));
        }
    }
    found
}

/// How deep the module of `file` (relative to `runtime/src`) sits: `x.rs` and `x/mod.rs` 1.
fn depth_of(rel: &Path) -> usize {
    let parts = rel.components().count();
    if rel.file_name().is_some_and(|n| n == "mod.rs") {
        parts - 1
    } else {
        parts
    }
}

/// Module → the modules it uses, with one file that does, for each.
fn graph() -> BTreeMap<String, BTreeMap<String, PathBuf>> {
    let src = root().join("runtime/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeMap<String, PathBuf>> = BTreeMap::new();
    for file in files {
        let module = module_of(&src, &file);
        let text = std::fs::read_to_string(&file).unwrap();
        let depth = depth_of(file.strip_prefix(&src).unwrap());
        let entry = graph.entry(module.clone()).or_default();
        for used in uses(&text, depth) {
            if used != module {
                entry.entry(used).or_insert_with(|| file.clone());
            }
        }
    }
    graph
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, ms)| ms.contains(&module))
}

#[test]
fn no_module_uses_a_layer_above_its_own() {
    let mut wrong = Vec::new();
    for (module, used) in graph() {
        if module == "lib" || module == "main" {
            continue;
        }
        let Some(mine) = layer_of(&module) else {
            wrong.push(format!(
                "`{module}` is in no layer: add it to LAYERS in tests/layers/main.rs"
            ));
            continue;
        };
        for (other, file) in used {
            match layer_of(&other) {
                Some(theirs) if theirs > mine => wrong.push(format!(
                    "{}: `{module}` ({}) uses `{other}` ({}), a layer above",
                    file.display(),
                    LAYERS[mine].0,
                    LAYERS[theirs].0
                )),
                _ => {}
            }
            if mine <= layer_of("host").unwrap() && NEVER_BELOW.contains(&other.as_str()) {
                wrong.push(format!(
                    "{}: `{module}` must not use `{other}`",
                    file.display()
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn no_circle_of_modules() {
    let graph = graph();
    // Depth-first search for a back edge; reports the first circle found.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeMap<String, PathBuf>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut circle = path[at..].to_vec();
            circle.push(node.to_owned());
            return Some(circle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flat_map(|m| m.keys()) {
            if let Some(circle) = visit(next, graph, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        if let Some(circle) = visit(module, &graph, &mut Vec::new(), &mut done) {
            panic!("modules in a circle: {}", circle.join(" → "));
        }
    }
}

#[test]
fn the_hub_and_the_fleet_protocol_build_without_wasmtime() {
    // Every dependency, direct or not, of the two crates as Cargo.lock records them.
    let lock = std::fs::read_to_string(root().join("Cargo.lock")).unwrap();
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for package in lock.split("[[package]]").skip(1) {
        let name = package
            .lines()
            .find_map(|l| l.strip_prefix("name = "))
            .unwrap()
            .trim_matches('"')
            .to_owned();
        let listed = package
            .split("dependencies = [")
            .nth(1)
            .map(|d| d.split(']').next().unwrap_or(""))
            .unwrap_or("");
        let entry = deps.entry(name).or_default();
        for dep in listed.split(',') {
            let dep = dep.trim().trim_matches('"');
            if let Some(name) = dep.split(' ').next().filter(|n| !n.is_empty()) {
                entry.insert(name.to_owned());
            }
        }
    }
    for krate in ["busbar-base", "busbar-hub"] {
        let mut seen = BTreeSet::new();
        let mut todo = vec![krate.to_owned()];
        while let Some(next) = todo.pop() {
            if !seen.insert(next.clone()) {
                continue;
            }
            assert!(
                !next.starts_with("wasmtime") && !next.starts_with("cranelift") && next != "busbar",
                "{krate} depends on `{next}` (see Cargo.lock): it must build without wasmtime"
            );
            todo.extend(deps.get(&next).into_iter().flatten().cloned());
        }
        assert!(
            seen.len() > 10,
            "{krate}: its dependencies were not found in Cargo.lock"
        );
    }
}

#[test]
fn no_file_is_longer_than_the_limit() {
    let mut files = Vec::new();
    for krate in ["runtime/src", "runtime/base/src", "runtime/hub/src"] {
        rust_files(&root().join(krate), &mut files);
    }
    let mut long = Vec::new();
    for file in files {
        let lines = std::fs::read_to_string(&file).unwrap().lines().count();
        let rel = file
            .strip_prefix(root())
            .unwrap()
            .to_string_lossy()
            .replace("\\", "/");
        let rel = rel.trim_start_matches("../").to_owned();
        if lines > MAX_LINES && !LONG_FILES.iter().any(|(f, _)| rel.ends_with(f)) {
            long.push(format!(
                "{rel}: {lines} lines (split it by concept, or list it in LONG_FILES with why)"
            ));
        }
    }
    assert!(long.is_empty(), "{}", long.join("\n"));
}

#[test]
fn the_use_parser_reads_groups_supers_and_skips_comments_and_strings() {
    let text = "use crate::{\n    bus::{Bus, Route},\n    message,\n};\n// crate::node\n\
                let u = \"http://x\"; let x = crate::observe::unix_ms();\n\
                let s = \"crate::admin\"; /* crate::fleet */ let c = '\"'; use busbar_hub::protocol;";
    let found: Vec<String> = uses(text, 1).into_iter().collect();
    assert_eq!(found, ["bus", "hub", "message", "observe"]);
    let nested = "use super::super::node::Node;\nuse super::Sibling;\nuse super::{com, x::Y};";
    assert_eq!(uses(nested, 2).into_iter().collect::<Vec<_>>(), ["node"]);
    assert_eq!(
        uses(nested, 1).into_iter().collect::<Vec<_>>(),
        ["Sibling", "com", "node", "x"]
    );
    assert_eq!(depth_of(Path::new("com/mod.rs")), 1);
    assert_eq!(depth_of(Path::new("com/mqtt/session.rs")), 3);
}
