//! Helpers for busbar's integration tests: where the guest components and the `busbar` binary
//! are, an in-process node writing its Com output to a file, and a spawned `busbar` process
//! whose logs can be awaited.
//!
//! Nothing here sleeps for a fixed time to "let things happen": every wait polls for a
//! condition and gives up after a generous guard timeout with a message saying what it
//! waited for.

pub mod admin;
pub mod browser;
pub mod field;
pub mod fleet;
pub mod mqtt;
pub mod process;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use busbar::config::NodeConfig;
use busbar::manifest::Manifest;
use busbar::message::{BusError, Reply, new_message};
use busbar::node::Node;
use busbar::service::State;
use serde_json::Value;

/// How long a wait may take before the test fails: long, because CI machines are slow and
/// shared (30 s, or `BUSBAR_TEST_GUARD_SECS`; emulated ARM runs need more). Tests never
/// assert on durations.
pub fn guard() -> Duration {
    let secs = std::env::var("BUSBAR_TEST_GUARD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    Duration::from_secs(secs)
}

/// Polls `check` until it returns `Some`; fails after [`guard`] naming `what`.
pub async fn until<T, F: Future<Output = Option<T>>>(
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    let end = Instant::now() + guard();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The folder holding the guest components (`BUSBAR_GUESTS_DIR`, else the guests' release
/// build output).
pub fn guests_dir() -> PathBuf {
    std::env::var_os("BUSBAR_GUESTS_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../guests/target/wasm32-wasip2/release"),
        PathBuf::from,
    )
}

/// Path of guest component `name` (e.g. `echo`, `temperature_sensor`); panics with the fix
/// when it has not been built.
pub fn guest(name: &str) -> PathBuf {
    let path = guests_dir().join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: build the guests first (`just build-guests`)",
        path.display()
    );
    path
}

/// The compile cache home (`XDG_CACHE_HOME`) of the nodes that run Python guests: compiling
/// one takes seconds and hundreds of MB, so [`python_guest`] compiles each once, before the
/// nodes that need it start, and they load it from this cache. Content-addressed (sha256 and
/// engine fingerprint), so sharing it is safe.
pub fn python_cache_home() -> PathBuf {
    guests_dir().join("busbar-test-cache-home")
}

/// The environment that points a node at [`python_cache_home`].
pub fn python_env() -> [(&'static str, &'static std::ffi::OsStr); 1] {
    static HOME: std::sync::OnceLock<std::ffi::OsString> = std::sync::OnceLock::new();
    let home = HOME.get_or_init(|| python_cache_home().into_os_string());
    [("XDG_CACHE_HOME", home.as_os_str())]
}

/// Path of Python guest `name` (built by `just build-guests` from `guests/python/{name}.py`),
/// compiled into [`python_cache_home`] first ([`warm`]).
pub fn python_guest(name: &str) -> PathBuf {
    let path = guest(name);
    warm(&path);
    path
}

/// Compiles `component` into [`python_cache_home`] with `busbar check`, once per test
/// process, allowing five guard times (a cold compile on a loaded machine is slow); nodes
/// started with [`python_env`] then load it from the cache.
pub fn warm(component: &Path) {
    static WARM: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
    let mut warm = WARM
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if warm.iter().any(|w| w == component) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let entry = format!(
        "[[services]]\nname = \"warm\"\ncomponent = {:?}\n",
        component.display().to_string()
    );
    std::fs::write(dir.path().join("m.toml"), entry).unwrap();
    let mut check = process::Busbar::start_env(
        dir.path(),
        &["check", "--manifest", "m.toml"],
        &python_env(),
    );
    let status = check.wait_within(guard() * 5);
    let done = check.finished(status);
    assert!(
        done.status.success(),
        "compiling {}: {}",
        component.display(),
        done.all()
    );
    warm.push(component.to_owned());
}

/// The `busbar` binary (`BUSBAR_BIN`, else beside this executable or its folder:
/// `target/<profile>/busbar` for `target/<profile>/deps/integration-*` and for
/// `target/<profile>/busbar-bench`).
pub fn busbar_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("BUSBAR_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let name = format!("busbar{}", std::env::consts::EXE_SUFFIX);
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join(&name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "no {name} near {}: build it first (`cargo build --release --bin busbar`)",
                exe.display()
            )
        })
}

/// One `[[services]]` entry of a test manifest.
pub fn service(name: &str, component: &str, extra: &str) -> String {
    format!(
        "[[services]]\nname = \"{name}\"\ncomponent = {:?}\n{extra}\n",
        guest(component).display().to_string()
    )
}

/// Polls `check` until it returns `Some`, or fails after [`guard`] naming `what`.
pub async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let guard = guard();
    let until = Instant::now() + guard;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < until,
            "gave up after {guard:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A node running in this process, with its Com writing JSON lines to a file in a temporary
/// folder that also holds its compile cache.
#[derive(Debug)]
pub struct TestNode {
    /// The node.
    pub node: Node,
    dir: tempfile::TempDir,
}

impl TestNode {
    /// Starts a node running the services of `manifest_toml`.
    pub async fn start(manifest_toml: &str) -> anyhow::Result<Self> {
        Self::start_with(manifest_toml, "").await
    }

    /// Starts a node; `config_toml` is added to the node config (after the Com and cache
    /// settings the harness sets).
    pub async fn start_with(manifest_toml: &str, config_toml: &str) -> anyhow::Result<Self> {
        Self::start_raw(
            manifest_toml,
            &format!("{config_toml}\n[com]\nkind = \"file\"\npath = \"com.jsonl\"\n"),
        )
        .await
    }

    /// Starts a node whose config is `config_toml` (with its own `[com]`) after the node id,
    /// cache and data settings the harness sets.
    pub async fn start_raw(manifest_toml: &str, config_toml: &str) -> anyhow::Result<Self> {
        Self::start_as("test-node", manifest_toml, config_toml).await
    }

    /// Like [`TestNode::start_raw`], as node `node_id`.
    pub async fn start_as(
        node_id: &str,
        manifest_toml: &str,
        config_toml: &str,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let config_path = dir.path().join("node.toml");
        std::fs::write(
            &config_path,
            format!(
                "node_id = \"{node_id}\"\ncache_dir = \"cache\"\ndata_dir = \"state\"\n{config_toml}\n"
            ),
        )?;
        let config = NodeConfig::load(&config_path)?;
        let manifest = Manifest::parse(manifest_toml, false, "<test manifest>", dir.path())?;
        let node = Node::start(&config, &manifest).await?;
        Ok(Self { node, dir })
    }

    /// The temporary folder of this node.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Every JSON line Com has written so far.
    pub fn com_lines(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.dir.path().join("com.jsonl")).unwrap_or_default();
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad Com line {l:?}: {e}")))
            .collect()
    }

    /// Waits until at least `n` Com lines satisfy `pred`, and returns those lines.
    pub async fn com_wait(
        &self,
        n: usize,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Vec<Value> {
        eventually(what, || {
            let hits: Vec<Value> = self.com_lines().into_iter().filter(|l| pred(l)).collect();
            (hits.len() >= n).then_some(hits)
        })
        .await
    }

    /// Waits until service `name` is in `state`.
    pub async fn wait_state(&self, name: &str, state: State) -> busbar::service::Status {
        let guard = guard();
        tokio::time::timeout(guard, self.node.wait_for(name, |s| s == state))
            .await
            .unwrap_or_else(|_| panic!("`{name}` did not reach state {state} within {guard:?}"))
            .expect("service exists")
    }

    /// Calls `destination`/`action` with a JSON payload from the test, as source `test`.
    pub async fn call(
        &self,
        destination: &str,
        action: &str,
        payload: &Value,
        timeout: Duration,
    ) -> Result<Reply, BusError> {
        let bus = self.node.bus();
        let msg = new_message(
            bus.next_id(),
            "test",
            destination,
            action,
            "application/json",
            payload.to_string().into_bytes(),
        );
        bus.call(msg, timeout).await
    }

    /// Calls and parses a JSON reply; panics on an error naming the call.
    pub async fn call_json(&self, destination: &str, action: &str, payload: &Value) -> Value {
        let reply = self
            .call(destination, action, payload, guard())
            .await
            .unwrap_or_else(|e| panic!("call {destination}/{action} failed: {e}"));
        serde_json::from_slice(&reply.payload)
            .with_context(|| format!("reply of {destination}/{action} is not JSON"))
            .unwrap()
    }

    /// Stops the node the way the binary does: services first, then Com.
    pub async fn shutdown(self) -> tempfile::TempDir {
        self.node.shutdown().await;
        self.dir
    }
}
