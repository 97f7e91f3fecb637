//! `busbar compile`: artifacts compiled ahead of time are used when they fit the node, and
//! every artifact that does not fit falls back to compiling, with a log line saying why.

use std::path::{Path, PathBuf};

use busbar::cache::CompileCache;
use busbar::component::{ComponentSource, Loader, Origin};
use busbar::engine::EngineConfig;
use busbar_tests::process::Busbar;
use busbar_tests::{guest, service};

/// Runs `busbar compile ARGS` in `dir` and returns the path of the artifact `out`.
fn compile(dir: &Path, out: &str, args: &[&str]) -> PathBuf {
    let mut full = vec!["compile", "-o", out];
    full.extend_from_slice(args);
    let done = Busbar::run(dir, &full);
    assert!(done.status.success(), "{}", done.all());
    dir.join(out)
}

/// A loader without a compile cache, as a node with the default engine has.
fn loader() -> Loader {
    let engine = EngineConfig::default().build().unwrap();
    let cache = CompileCache::new(&engine, None).unwrap();
    Loader::new(engine, cache).unwrap()
}

fn load_with(artifacts: &[&Path], component: &str) -> Origin {
    let source = ComponentSource {
        precompiled: artifacts.iter().map(|p| p.to_path_buf()).collect(),
        ..ComponentSource::file(guest(component))
    };
    loader().load_blocking(&source).unwrap().origin().clone()
}

#[test]
fn an_artifact_for_this_node_is_used_and_others_are_passed_over() {
    let dir = tempfile::tempdir().unwrap();
    let echo = guest("echo").display().to_string();
    let native = compile(dir.path(), "echo.native.cwasm", &[&echo]);
    let aarch64 = compile(
        dir.path(),
        "echo.aarch64.cwasm",
        &["--target", "aarch64-unknown-linux-gnu", &echo],
    );
    let armv7 = compile(
        dir.path(),
        "echo.armv7.cwasm",
        &["--target", "armv7-unknown-linux-gnueabihf", &echo],
    );
    // A fleet lists one artifact per target: the node takes its own, wherever it is.
    assert_eq!(
        load_with(&[&aarch64, &armv7, &native], "echo"),
        Origin::Precompiled(native.clone())
    );
    // Artifacts of other targets only (this test runs on x86_64): compiled here.
    assert_eq!(load_with(&[&aarch64, &armv7], "echo"), Origin::Compiled);
}

#[test]
fn a_mismatched_artifact_falls_back_to_compiling_with_a_log_line() {
    let dir = tempfile::tempdir().unwrap();
    let echo = guest("echo").display().to_string();
    // Compiled for an engine with other memory settings than the node's.
    std::fs::write(
        dir.path().join("big.toml"),
        "[engine]\nmax_memory_mib = 64\n",
    )
    .unwrap();
    let other_engine = compile(
        dir.path(),
        "echo.big.cwasm",
        &["--config", "big.toml", &echo],
    );
    assert_eq!(load_with(&[&other_engine], "echo"), Origin::Compiled);
    // Compiled from another component than the one the manifest names.
    let other_component = compile(
        dir.path(),
        "counter.cwasm",
        &[&guest("raw_counter").display().to_string()],
    );
    assert_eq!(load_with(&[&other_component], "echo"), Origin::Compiled);
    // Not an artifact at all.
    std::fs::write(dir.path().join("junk.cwasm"), b"junk").unwrap();
    assert_eq!(
        load_with(&[&dir.path().join("junk.cwasm")], "echo"),
        Origin::Compiled
    );

    // What the operator sees: `busbar check` loads the service anyway, and says why.
    let manifest = format!(
        "{}precompiled = [\"echo.big.cwasm\", \"counter.cwasm\"]\n",
        service("echo", "echo", "")
    );
    std::fs::write(dir.path().join("m.toml"), manifest).unwrap();
    let done = Busbar::run(dir.path(), &["check", "--manifest", "m.toml"]);
    assert!(done.status.success(), "{}", done.all());
    let log = done.stderr.join("\n");
    assert!(
        log.contains("precompiled artifact not used")
            && log.contains("it was compiled for engine fingerprint")
            && log.contains("other [engine] settings"),
        "{log}"
    );
    assert!(log.contains("compiled from another component"), "{log}");
    assert!(
        done.stdout.join("\n").contains("(compiled)"),
        "{}",
        done.all()
    );

    // And a fitting artifact is reported as used.
    let manifest = format!(
        "{}precompiled = [\"echo.cwasm\"]\n",
        service("echo", "echo", "")
    );
    compile(dir.path(), "echo.cwasm", &[&echo]);
    std::fs::write(dir.path().join("m.toml"), manifest).unwrap();
    let done = Busbar::run(dir.path(), &["check", "--manifest", "m.toml"]);
    assert!(
        done.stdout.join("\n").contains("(precompiled "),
        "{}",
        done.all()
    );
}

#[test]
fn compile_names_a_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.wasm"), b"nope").unwrap();
    let done = Busbar::run(dir.path(), &["compile", "bad.wasm", "-o", "bad.cwasm"]);
    assert_eq!(done.status.code(), Some(1), "{}", done.all());
    assert!(
        done.stderr.join("\n").contains("bad.wasm"),
        "{}",
        done.all()
    );
    let done = Busbar::run(
        dir.path(),
        &[
            "compile",
            "--target",
            "sparc-unknown-nowhere",
            &guest("echo").display().to_string(),
            "-o",
            "x.cwasm",
        ],
    );
    assert_eq!(done.status.code(), Some(1), "{}", done.all());
    assert!(
        done.stderr.join("\n").contains("sparc-unknown-nowhere"),
        "{}",
        done.all()
    );
}
