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
        &["internal", "logger", "orchestrator", "com"],
    ),
    ("the node (composition root)", &["config", "node"]),
    (
        "fleet client, admin API, daemon, command line",
        &["fleet", "admin", "client", "daemon", "cli", "logging"],
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

/// The top-level modules `text` names through `crate::` (comments left out).
fn uses(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // `crate::{a::X, b}`: every name at the group's top level.
                let mut depth = 0;
                let mut name = String::new();
                let mut first = true;
                for c in group.chars() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            first = true;
                            continue;
                        }
                        _ => {}
                    }
                    if depth == 0 && first {
                        if c.is_alphanumeric() || c == '_' {
                            name.push(c);
                        } else if !name.is_empty() {
                            found.insert(std::mem::take(&mut name));
                            first = false;
                        }
                    }
                }
                if !name.is_empty() {
                    found.insert(name);
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.insert(name);
                }
            }
        }
    }
    found
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
        let entry = graph.entry(module.clone()).or_default();
        for used in uses(&text) {
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
    for krate in ["runtime/base", "runtime/hub"] {
        let manifest = std::fs::read_to_string(root().join(krate).join("Cargo.toml")).unwrap();
        let deps = manifest
            .split("[dependencies]")
            .nth(1)
            .and_then(|d| d.split("\n[").next())
            .unwrap();
        for line in deps.lines() {
            let name = line.split(['.', '=', ' ']).next().unwrap_or("");
            assert!(
                !name.starts_with("wasmtime") && name != "busbar",
                "{krate}/Cargo.toml depends on `{name}`: it must build without wasmtime"
            );
        }
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
fn the_use_parser_reads_groups_and_skips_comments() {
    let text = "use crate::{bus::{Bus, Route}, message};\n// crate::node\nlet x = crate::observe::unix_ms();";
    let found: Vec<String> = uses(text).into_iter().collect();
    assert_eq!(found, ["bus", "message", "observe"]);
}
