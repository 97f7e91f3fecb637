//! The gateway builds (no compiler, no hub) for aarch64 (native code) and armv7 (Pulley)
//! under qemu-user: they sign in to a real hub on loopback, download the artifacts `busbar
//! hub publish` compiled on this machine for the engine they announced, run a Rust and a
//! Python service and hot-swap the Python one to its next version; artifacts made here with
//! `busbar compile` load from a local manifest, and a bare `.wasm` or an artifact for another
//! engine is refused with the documented message.
//!
//! These need the cross builds and qemu, so they are ignored by `cargo test`; `just
//! test-arm` builds what they need and runs them (`BUSBAR_AARCH64_BIN`, `BUSBAR_ARMV7_BIN`).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use busbar_tests::admin::AdminNode;
use busbar_tests::fleet::{Hub, write_node_toml};
use busbar_tests::process::Busbar;
use busbar_tests::{guest, python_guest, until};
use serde_json::Value;

/// One emulated target.
struct Target {
    triple: &'static str,
    qemu: &'static str,
    sysroot: &'static str,
    bin_var: &'static str,
}

const AARCH64: Target = Target {
    triple: "aarch64-unknown-linux-gnu",
    qemu: "qemu-aarch64",
    sysroot: "/usr/aarch64-linux-gnu",
    bin_var: "BUSBAR_AARCH64_BIN",
};

const ARMV7: Target = Target {
    triple: "armv7-unknown-linux-gnueabihf",
    qemu: "qemu-arm",
    sysroot: "/usr/arm-linux-gnueabihf",
    bin_var: "BUSBAR_ARMV7_BIN",
};

impl Target {
    fn bin(&self) -> PathBuf {
        let path = std::env::var_os(self.bin_var)
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("{} is not set: run `just test-arm`", self.bin_var));
        assert!(path.exists(), "{} is missing", path.display());
        path
    }

    fn command(&self) -> Command {
        let mut c = Command::new(self.qemu);
        c.arg("-L").arg(self.sysroot).arg(self.bin());
        c
    }

    fn start(&self, dir: &Path, args: &[&str], env: &[(&str, &OsStr)]) -> Busbar {
        Busbar::spawn(self.command(), dir, args, env)
    }
}

/// The node's status of `name` once it runs version `sha`.
async fn running(node: &AdminNode, name: &str, sha: &str) -> Value {
    until(&format!("{name} running {sha}"), || async {
        let status = node.get_json("/status").await;
        status["services"]
            .as_array()?
            .iter()
            .find(|s| s["name"] == name && s["sha256"] == sha && s["state"] == "running")
            .cloned()
    })
    .await
}

fn sha256(path: &Path) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

async fn fleet_runs_precompiled_services(t: &Target) {
    let hub = Hub::start();
    let token = hub.add_node("gw");
    let dir = tempfile::tempdir().unwrap();
    write_node_toml(dir.path(), "gw", &hub.url, &token, &hub.public_key_file());
    let process = t.start(dir.path(), &["run", "--config", "node.toml"], &[]);
    let node = AdminNode::attach(process, dir.path());
    let identity = until("gw announcing its engine", || async {
        let i = hub.node("gw").await["identity"].clone();
        (!i["engine"].is_null()).then_some(i)
    })
    .await;
    assert_eq!(identity["target"], t.triple, "{identity}");
    assert_eq!(identity["engine"]["compiler"], false, "{identity}");

    // Published without --target: compiled here for the engine the node announced.
    let echo = guest("echo");
    hub.publish("echo", &echo, "gw", &[]);
    let counter = python_guest("py_counter");
    hub.publish("counter", &counter, "gw", &[]);
    for (name, component) in [("echo", &echo), ("counter", &counter)] {
        let status = running(&node, name, &sha256(component)).await;
        assert_eq!(status["code"], "precompiled", "{status}");
    }
    let v2 = python_guest("py_counter_v2");
    hub.publish("counter", &v2, "gw", &[]);
    let status = running(&node, "counter", &sha256(&v2)).await;
    assert_eq!(status["code"], "precompiled", "{status}");
    let reply = node
        .rpc_as(
            Some(&node.token),
            "/rpc",
            &serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "counter/get"}),
        )
        .await
        .1;
    assert_eq!(reply["result"]["version"], 2, "{reply}");

    // A version whose only artifact is for another engine: this node cannot compile it, so
    // it keeps running the version it has and reports why to the hub.
    std::fs::write(
        hub.dir.path().join("big.toml"),
        "[engine]\nmax_memory_mib = 64\n",
    )
    .unwrap();
    let v3 = busbar_tests::fleet::new_version(&echo, dir.path(), "v3");
    let target = format!("--target={}", t.triple);
    hub.publish("echo", &v3, "gw", &[&target, "--node-config=big.toml"]);
    let v3_sha = sha256(&v3);
    let event = until("a refused event for echo v3", || async {
        hub.node("gw").await["events"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["kind"] == "refused" && e["sha256"] == v3_sha.as_str())
            .cloned()
    })
    .await;
    assert!(
        event["detail"]
            .as_str()
            .is_some_and(|d| d.contains("runs only precompiled components")),
        "{event}"
    );
    running(&node, "echo", &sha256(&echo)).await;
    // Not marked bad: published again with an artifact for this node, it is taken.
    hub.publish("echo", &v3, "gw", &[]);
    let status = running(&node, "echo", &v3_sha).await;
    assert_eq!(status["code"], "precompiled", "{status}");
}

/// Precompiles `echo` on this machine for `t` (with the default engine, or with `config`).
fn precompile(t: &Target, dir: &Path, out: &str, config: Option<&str>) {
    let echo = guest("echo").display().to_string();
    let mut args = vec!["compile", "--target", t.triple, &echo, "-o", out];
    if let Some(c) = config {
        args.extend(["--config", c]);
    }
    let done = Busbar::run(dir, &args);
    assert!(done.status.success(), "{}", done.all());
}

fn precompiled_artifacts_are_loaded_or_refused(t: &Target) {
    let dir = tempfile::tempdir().unwrap();
    precompile(t, dir.path(), "echo.cwasm", None);
    std::fs::write(
        dir.path().join("big.toml"),
        "[engine]\nmax_memory_mib = 64\n",
    )
    .unwrap();
    precompile(t, dir.path(), "echo.big.cwasm", Some("big.toml"));
    let echo = guest("echo").display().to_string();
    let manifest = |artifact: &str| {
        format!(
            "[[services]]\nname = \"echo\"\ncomponent = {echo:?}\nprecompiled = [{artifact:?}]\n"
        )
    };

    std::fs::write(dir.path().join("m.toml"), manifest("echo.cwasm")).unwrap();
    let done = t
        .start(dir.path(), &["check", "--manifest", "m.toml"], &[])
        .wait_finished();
    assert!(done.status.success(), "{}", done.all());
    assert!(
        done.stdout.join("\n").contains("(precompiled "),
        "{}",
        done.all()
    );

    // Made for another engine, or no artifact at all: the gateway build cannot compile, and
    // says how to make one.
    for artifact in ["echo.big.cwasm", ""] {
        let text = if artifact.is_empty() {
            format!("[[services]]\nname = \"echo\"\ncomponent = {echo:?}\n")
        } else {
            manifest(artifact)
        };
        std::fs::write(dir.path().join("m.toml"), text).unwrap();
        let done = t
            .start(dir.path(), &["check", "--manifest", "m.toml"], &[])
            .wait_finished();
        assert!(!done.status.success(), "{}", done.all());
        let out = done.all();
        assert!(
            out.contains("runs only precompiled components")
                && out.contains(&format!("busbar compile --target {}", t.triple)),
            "{out}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the aarch64 build and qemu: run `just test-arm`"]
async fn aarch64_gateway_runs_what_the_hub_precompiled_for_it() {
    fleet_runs_precompiled_services(&AARCH64).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the armv7 build and qemu: run `just test-arm`"]
async fn armv7_gateway_runs_what_the_hub_precompiled_for_it_on_pulley() {
    fleet_runs_precompiled_services(&ARMV7).await;
}

#[test]
#[ignore = "needs the aarch64 build and qemu: run `just test-arm`"]
fn aarch64_loads_artifacts_precompiled_here_and_refuses_what_it_cannot_run() {
    precompiled_artifacts_are_loaded_or_refused(&AARCH64);
}

#[test]
#[ignore = "needs the armv7 build and qemu: run `just test-arm`"]
fn armv7_loads_artifacts_precompiled_here_and_refuses_what_it_cannot_run() {
    precompiled_artifacts_are_loaded_or_refused(&ARMV7);
}
