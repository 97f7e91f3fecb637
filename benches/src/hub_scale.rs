//! B12: one hub for 20,000 gateways. A real `busbar hub serve` (started through the tests'
//! [`Hub`] helper) with 1,000, 10,000 and 20,000 nodes in its `hub.toml` (a fresh hub for each
//! size; `BUSBAR_BENCH_HUB_NODES=1000,10000` changes the list), every node simulated the way
//! the fleet client behaves: sign-in once, the manifest long poll with `If-None-Match`, a
//! heartbeat (`POST /v1/status`, five services) every `heartbeat_s` = 60 s with jitter, and
//! after a manifest change the download of every blob it lists.
//!
//! The open-files limit of this machine is 20,000 for every process (the hub's too), and a
//! simulated node holds about one connection, so the nodes are spread over child processes of
//! this binary (at most [`MAX_PER_CHILD`] each): a child is this executable started with
//! [`SIM_ENV`] set, and `main` hands it to [`simulate`] before anything else. A child writes
//! what its nodes did as JSON lines on its stdout (`progress`, `manifest`, `blob`, `hb`,
//! `err`, each with a wall-clock time in µs since the epoch, comparable across processes);
//! the parent reads them all and does every computation. A child ends when its stdin closes
//! (the parent kills it, or dies).
//!
//! Measured, per size: how many nodes the hub served (signed in and long-polling) and how
//! many it refused or let time out; over a steady window (90 s, `BUSBAR_BENCH_HUB_SECS`) the
//! hub's CPU (utime + stime of `/proc/PID/stat`) and RSS, heartbeat latency p50/p99/max and
//! errors by kind; then a 2 MB component published to every node (`busbar hub publish --tag
//! sim`): publish → each node notified (its long poll answered 200 with the new manifest) and
//! → blob downloaded, p50/p99/max, and the nodes notified within 60 s; then the admin listing
//! of every node, page by page (`GET /v1/admin/nodes?limit=2000`, following
//! `x-busbar-next-after`), and `GET /v1/admin/summary`. The baseline column is the same load
//! at the smallest size, so the table shows how the hub scales.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use busbar_base::sync::lock;
use busbar_tests::fleet::Hub;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};

use crate::{Row, pct_us, verdict};

/// Set in a child of this binary: it simulates nodes instead of printing the table. Its value
/// is `<hub url>,<first node>,<count>,<nodes started per second>,<tokens file>` (the tokens
/// file holds one `ID TOKEN` line per node; the child takes lines `first..first + count`).
pub const SIM_ENV: &str = "BUSBAR_BENCH_SIM";
/// The fleet sizes, comma-separated.
const NODES_ENV: &str = "BUSBAR_BENCH_HUB_NODES";
/// The steady window, in seconds.
const SECS_ENV: &str = "BUSBAR_BENCH_HUB_SECS";
/// Nodes started per second (all children together).
const RAMP_ENV: &str = "BUSBAR_BENCH_HUB_RAMP";
/// Fleet sizes without [`NODES_ENV`].
const DEFAULT_SIZES: [usize; 3] = [1_000, 10_000, 20_000];
/// Steady window without [`SECS_ENV`].
const DEFAULT_SECS: u64 = 90;
/// Nodes started per second without [`RAMP_ENV`].
const DEFAULT_RAMP: u64 = 500;
/// Most simulated nodes in one child (each holds one or two sockets; the limit is 20,000).
const MAX_PER_CHILD: usize = 8_000;
/// `heartbeat_s` written to `hub.toml`.
const HEARTBEAT_S: u64 = 60;
/// `long_poll_s` written to `hub.toml` (the hub's default).
const LONG_POLL_S: u64 = 25;
/// The `wait` a node asks for on `GET /v1/manifest` (the hub caps it at `long_poll_s`).
const WAIT_S: u64 = 30;
/// Services in each heartbeat.
const SERVICES: u64 = 5;
/// Longest backoff after a failed request (the node's default `backoff_max_ms`).
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A node's timeout for a whole request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
/// A node's connect timeout (as the fleet client's).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Size of the published component.
const COMPONENT_BYTES: usize = 2_000_000;
/// Nodes per page of the admin listing.
const PAGE: usize = 2_000;
/// Nodes notified within this long of the publish count as "notified in time".
const NOTIFY_WITHIN: Duration = Duration::from_secs(60);
/// No progress for this long: the fleet has settled (or stalled).
const SETTLE: Duration = Duration::from_secs(30);
/// Longest wait for the deliveries of a publish.
const PUBLISH_MAX: Duration = Duration::from_secs(240);
/// Tries of `busbar hub publish` (a full hub answers 503).
const PUBLISH_TRIES: u32 = 10;
/// Retries of one admin request answered 503 or not answered.
const ADMIN_RETRIES: u32 = 20;
/// The target column.
const GOAL: &str = "20,000 nodes on 2 cores: heartbeat p99 ≤ 50 ms, publish → all notified \
                    ≤ 60 s, listing all ≤ 5 s, RSS ≤ 1 GB";

// ---------------------------------------------------------------------------------------
// The child: simulated nodes.
// ---------------------------------------------------------------------------------------

/// Runs this process as a node simulator child, as [`SIM_ENV`] (`spec`) says, until its
/// stdin closes.
pub fn simulate(spec: &str) -> anyhow::Result<()> {
    let spec = SimSpec::parse(spec)?;
    let limits = busbar_base::serve::raise_open_files_limit();
    eprintln!(
        "B12 sim: nodes {}..{} at {:.0}/s, open files {limits:?} (before, after)",
        spec.first,
        spec.first + spec.count,
        spec.rate
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(run_simulation(spec));
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

/// What a child simulates, from [`SIM_ENV`].
#[derive(Debug)]
struct SimSpec {
    /// The hub's base URL.
    url: String,
    /// Index of its first node (line of the tokens file, from 0).
    first: usize,
    /// How many nodes.
    count: usize,
    /// Nodes started per second.
    rate: f64,
    /// The `ID TOKEN` lines.
    tokens: PathBuf,
}

impl SimSpec {
    /// Parses `<url>,<first>,<count>,<per second>,<tokens file>`.
    fn parse(spec: &str) -> anyhow::Result<Self> {
        let parts: Vec<&str> = spec.splitn(5, ',').collect();
        let [url, first, count, rate, tokens] = parts.as_slice() else {
            anyhow::bail!("{SIM_ENV}=`{spec}`: expected URL,FIRST,COUNT,PER_SECOND,TOKENS_FILE");
        };
        let rate: f64 = rate
            .parse()
            .with_context(|| format!("{SIM_ENV}: `{rate}` is not a rate"))?;
        anyhow::ensure!(rate > 0.0, "{SIM_ENV}: the rate must be above 0");
        Ok(Self {
            url: (*url).to_owned(),
            first: first
                .parse()
                .with_context(|| format!("{SIM_ENV}: `{first}` is not a node index"))?,
            count: count
                .parse()
                .with_context(|| format!("{SIM_ENV}: `{count}` is not a count"))?,
            rate,
            tokens: PathBuf::from(*tokens),
        })
    }
}

/// Builds a node's HTTP client bound to a loopback source address.
type MakeClient = Box<dyn Fn(IpAddr) -> anyhow::Result<reqwest::Client> + Send + Sync>;

/// What a child's simulated nodes share.
struct Sim {
    /// The hub's base URL.
    url: String,
    /// JSON lines for stdout.
    events: tokio::sync::mpsc::UnboundedSender<String>,
    /// Makes each node its own client (its own connection pool, like a real node).
    make_client: MakeClient,
    /// Nodes that signed in at least once.
    signed_in: AtomicUsize,
    /// Nodes that got their first manifest (and hold their long poll since).
    ready: AtomicUsize,
    /// Manifest requests in flight now.
    polling: AtomicUsize,
    /// `op kind` of the failures already described on stderr (each once).
    seen: Mutex<HashSet<String>>,
}

impl Sim {
    /// Sends one event to the parent.
    fn emit(&self, event: &Value) {
        let _ = self.events.send(event.to_string());
    }

    /// Reports a failed request of `node`; the first of each kind is described on stderr.
    fn failed(&self, node: usize, op: &str, failure: &Failure) {
        let key = format!("{op} {}", failure.kind);
        let first = lock(&self.seen).insert(key.clone());
        if first {
            eprintln!("B12 sim: first `{key}` (node {node}): {}", failure.detail);
        }
        self.emit(&json!({
            "e": "err", "n": node, "t": now_us(), "op": op, "kind": failure.kind,
        }));
    }
}

/// Why a request failed: a short kind to count (`http 503`, `connect`, `timeout`, `io`,
/// `body`) and the whole story.
#[derive(Debug)]
struct Failure {
    /// What is counted.
    kind: String,
    /// What is shown once.
    detail: String,
}

impl Failure {
    /// A transport error.
    fn transport(e: &reqwest::Error) -> Self {
        let kind = if e.is_timeout() {
            "timeout"
        } else if e.is_connect() {
            "connect"
        } else if e.is_body() || e.is_decode() {
            "body"
        } else {
            "io"
        };
        Self {
            kind: kind.to_owned(),
            detail: chain(e),
        }
    }

    /// An answer that is not a success.
    async fn answer(resp: reqwest::Response) -> Self {
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        Self {
            kind: format!("http {}", status.as_u16()),
            detail: busbar_base::net::error_text(body),
        }
    }

    /// Something else.
    fn other(kind: &str, detail: String) -> Self {
        Self {
            kind: kind.to_owned(),
            detail,
        }
    }
}

/// An error with its sources.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let _ = write!(text, ": {s}");
        source = s.source();
    }
    text
}

/// Microseconds since the Unix epoch: times comparable between processes of this machine.
fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The child's work: reads its tokens, starts its nodes at its rate, and reports progress
/// every second, until stdin closes.
async fn run_simulation(spec: SimSpec) -> anyhow::Result<()> {
    let text = tokio::fs::read_to_string(&spec.tokens)
        .await
        .with_context(|| format!("cannot read {}", spec.tokens.display()))?;
    let nodes = text
        .lines()
        .enumerate()
        .skip(spec.first)
        .take(spec.count)
        .map(|(i, line)| -> anyhow::Result<(usize, String, String)> {
            let (id, token) = line.split_once(' ').with_context(|| {
                format!("{} line {}: not `ID TOKEN`", spec.tokens.display(), i + 1)
            })?;
            Ok((i, id.to_owned(), token.to_owned()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    anyhow::ensure!(
        nodes.len() == spec.count,
        "{} has {} of the {} nodes asked for",
        spec.tokens.display(),
        nodes.len(),
        spec.count
    );
    let (events, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(write_events(rx));
    // Read the system's roots once; every node gets a copy (cheap: shared inside).
    let tls = busbar_base::net::tls_client_config(None, "")?;
    let make_client: MakeClient = Box::new(move |ip: IpAddr| -> anyhow::Result<reqwest::Client> {
        Ok(reqwest::Client::builder()
            .tls_backend_preconfigured(tls.clone())
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .local_address(ip)
            .pool_idle_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()?)
    });
    let sim = Arc::new(Sim {
        url: spec.url.trim_end_matches('/').to_owned(),
        events,
        make_client,
        signed_in: AtomicUsize::new(0),
        ready: AtomicUsize::new(0),
        polling: AtomicUsize::new(0),
        seen: Mutex::new(HashSet::new()),
    });
    tokio::spawn(report_progress(sim.clone()));
    tokio::select! {
        () = start_nodes(sim, nodes, spec.rate) => {}
        () = stdin_closed() => {}
    }
    Ok(())
}

/// Writes the events to stdout, a batch at a time; stops when stdout is gone.
async fn write_events(mut rx: tokio::sync::mpsc::UnboundedReceiver<String>) {
    let mut out = tokio::io::stdout();
    while let Some(first) = rx.recv().await {
        let mut batch = first;
        batch.push('\n');
        while batch.len() < 1 << 16 {
            match rx.try_recv() {
                Ok(more) => {
                    batch.push_str(&more);
                    batch.push('\n');
                }
                Err(_) => break,
            }
        }
        if out.write_all(batch.as_bytes()).await.is_err() || out.flush().await.is_err() {
            return;
        }
    }
}

/// Every second: the child's counters.
async fn report_progress(sim: Arc<Sim>) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    loop {
        every.tick().await;
        sim.emit(&json!({
            "e": "progress",
            "t": now_us(),
            "signed_in": sim.signed_in.load(Ordering::Relaxed),
            "ready": sim.ready.load(Ordering::Relaxed),
            "polling": sim.polling.load(Ordering::Relaxed),
        }));
    }
}

/// Resolves when stdin reaches its end (or fails): the parent is done with this child.
async fn stdin_closed() {
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 256];
    while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
}

/// Starts `nodes` (index, id, token) at `rate` per second; then waits forever.
async fn start_nodes(sim: Arc<Sim>, nodes: Vec<(usize, String, String)>, rate: f64) {
    let began = tokio::time::Instant::now();
    let every = Duration::from_secs_f64(1.0 / rate);
    for (k, (index, id, token)) in nodes.into_iter().enumerate() {
        tokio::time::sleep_until(began + every.mul_f64(k as f64)).await;
        tokio::spawn(SimNode::start(sim.clone(), index, id, token));
    }
    std::future::pending::<()>().await;
}

/// One simulated node.
struct SimNode {
    /// What the child's nodes share.
    sim: Arc<Sim>,
    /// Its index (line of the tokens file).
    index: usize,
    /// Its node id.
    id: String,
    /// Its token.
    token: String,
    /// Its own client.
    http: reqwest::Client,
}

impl SimNode {
    /// Makes node `index` a client on its loopback address (127.0.0.2 to 127.0.0.250, so the
    /// ephemeral ports of one source address do not run out) and runs it.
    async fn start(sim: Arc<Sim>, index: usize, id: String, token: String) {
        let last = u8::try_from(2 + index % 249).unwrap_or(2);
        let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, last));
        let http = match (sim.make_client)(ip) {
            Ok(http) => http,
            Err(e) => {
                sim.failed(index, "client", &Failure::other("build", format!("{e:#}")));
                return;
            }
        };
        Arc::new(Self {
            sim,
            index,
            id,
            token,
            http,
        })
        .run()
        .await;
    }

    /// The URL of `path` on the hub.
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sim.url)
    }

    /// The fleet client's loop: sign in (again after a failure), long-poll the manifest, and
    /// after a change download the blobs it does not have yet; jittered backoff after
    /// failures. Heartbeats run beside it from the first sign-in on.
    async fn run(self: Arc<Self>) {
        let mut failures = 0u32;
        let mut signed_in = false;
        let mut heartbeating = false;
        let mut ready = false;
        let mut etag: Option<String> = None;
        let mut have: Vec<String> = Vec::new();
        loop {
            if !signed_in {
                if let Err(f) = self.sign_in().await {
                    self.sim.failed(self.index, "sign-in", &f);
                    failures += 1;
                    tokio::time::sleep(busbar_base::net::backoff(failures, BACKOFF_MAX)).await;
                    continue;
                }
                signed_in = true;
                self.sim
                    .emit(&json!({ "e": "signin", "n": self.index, "t": now_us() }));
                if !heartbeating {
                    heartbeating = true;
                    self.sim.signed_in.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(self.clone().heartbeats());
                }
            }
            self.sim.polling.fetch_add(1, Ordering::Relaxed);
            let polled = self.manifest(etag.as_deref()).await;
            self.sim.polling.fetch_sub(1, Ordering::Relaxed);
            let (tag, blobs) = match polled {
                Ok(None) => {
                    failures = 0;
                    continue;
                }
                Ok(Some(changed)) => changed,
                Err(f) => {
                    self.sim.failed(self.index, "manifest", &f);
                    failures += 1;
                    signed_in = false;
                    tokio::time::sleep(busbar_base::net::backoff(failures, BACKOFF_MAX)).await;
                    continue;
                }
            };
            failures = 0;
            self.sim.emit(&json!({
                "e": "manifest", "n": self.index, "t": now_us(), "blobs": blobs.len(),
            }));
            if !ready {
                ready = true;
                self.sim.ready.fetch_add(1, Ordering::Relaxed);
            }
            let fresh: Vec<String> = blobs.into_iter().filter(|b| !have.contains(b)).collect();
            if !fresh.is_empty() {
                match self.download(&fresh).await {
                    Ok(bytes) => {
                        have.extend(fresh);
                        self.sim.emit(&json!({
                            "e": "blob", "n": self.index, "t": now_us(), "bytes": bytes,
                        }));
                    }
                    Err(f) => {
                        // The ETag is not taken: the next poll answers at once, and it tries
                        // again.
                        self.sim.failed(self.index, "blob", &f);
                        failures += 1;
                        tokio::time::sleep(busbar_base::net::backoff(failures, BACKOFF_MAX)).await;
                        continue;
                    }
                }
            }
            etag = Some(tag);
        }
    }

    /// `POST /v1/sign-in`.
    async fn sign_in(&self) -> Result<(), Failure> {
        let who = json!({
            "node_id": self.id,
            "hostname": format!("sim-host-{}", self.index),
            "target": "x86_64-unknown-linux-gnu",
            "runtime_version": env!("CARGO_PKG_VERSION"),
            "macs": [],
        });
        let resp = self
            .http
            .post(self.url("/v1/sign-in"))
            .bearer_auth(&self.token)
            .json(&who)
            .send()
            .await
            .map_err(|e| Failure::transport(&e))?;
        Self::read_through(resp).await
    }

    /// `GET /v1/manifest?wait=S` with the last ETag: `None` on 304, else the new ETag and
    /// the sha256 of every service the manifest lists.
    async fn manifest(&self, etag: Option<&str>) -> Result<Option<(String, Vec<String>)>, Failure> {
        let mut req = self
            .http
            .get(self.url(&format!("/v1/manifest?wait={WAIT_S}")))
            .bearer_auth(&self.token);
        if let Some(etag) = etag {
            req = req.header(reqwest::header::IF_NONE_MATCH, etag);
        }
        let resp = req.send().await.map_err(|e| Failure::transport(&e))?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_MODIFIED {
            let _ = resp.bytes().await;
            return Ok(None);
        }
        if !status.is_success() {
            return Err(Failure::answer(resp).await);
        }
        let tag = resp
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = resp.bytes().await.map_err(|e| Failure::transport(&e))?;
        if tag.is_empty() {
            return Err(Failure::other(
                "no etag",
                "a 200 manifest without ETag".into(),
            ));
        }
        let manifest: Value = serde_json::from_slice(&body)
            .map_err(|e| Failure::other("bad manifest", e.to_string()))?;
        let blobs: Vec<String> = manifest["services"]
            .as_array()
            .map(|services| {
                services
                    .iter()
                    .filter_map(|s| s["sha256"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Some((tag, blobs)))
    }

    /// `GET /v1/blobs/{sha}` for each of `shas`, bodies read to the end and dropped; the
    /// bytes read.
    async fn download(&self, shas: &[String]) -> Result<u64, Failure> {
        let mut bytes = 0u64;
        for sha in shas {
            let mut resp = self
                .http
                .get(self.url(&format!("/v1/blobs/{sha}")))
                .bearer_auth(&self.token)
                .send()
                .await
                .map_err(|e| Failure::transport(&e))?;
            if !resp.status().is_success() {
                return Err(Failure::answer(resp).await);
            }
            while let Some(chunk) = resp.chunk().await.map_err(|e| Failure::transport(&e))? {
                bytes += chunk.len() as u64;
            }
        }
        Ok(bytes)
    }

    /// Heartbeats: the first anywhere in the first interval, then every 0.9 to 1.1 of it
    /// (as the fleet client), each timed.
    async fn heartbeats(self: Arc<Self>) {
        let ms = HEARTBEAT_S * 1000;
        let mut wait = Duration::from_millis(rand::random_range(0..=ms));
        for beat in 1u64.. {
            tokio::time::sleep(wait).await;
            let (t, began) = (now_us(), Instant::now());
            match self.status(beat).await {
                Ok(()) => self.sim.emit(&json!({
                    "e": "hb", "n": self.index, "t": t,
                    "ns": u64::try_from(began.elapsed().as_nanos()).unwrap_or(u64::MAX),
                })),
                Err(f) => self.sim.failed(self.index, "status", &f),
            }
            wait = Duration::from_millis(rand::random_range(ms * 9 / 10..=ms * 11 / 10));
        }
    }

    /// `POST /v1/status` with five running services.
    async fn status(&self, beat: u64) -> Result<(), Failure> {
        let services: Vec<Value> = (1..=SERVICES)
            .map(|k| {
                json!({
                    "name": format!("svc{k}"),
                    "sha256": null,
                    "state": "running",
                    "restarts": 0,
                    "processed": beat * 1_000 * k,
                })
            })
            .collect();
        let resp = self
            .http
            .post(self.url("/v1/status"))
            .bearer_auth(&self.token)
            .json(&json!({ "services": services, "events": [] }))
            .send()
            .await
            .map_err(|e| Failure::transport(&e))?;
        Self::read_through(resp).await
    }

    /// Reads a success answer to its end (the connection goes back to the pool); anything
    /// else is a failure.
    async fn read_through(resp: reqwest::Response) -> Result<(), Failure> {
        if !resp.status().is_success() {
            return Err(Failure::answer(resp).await);
        }
        resp.bytes()
            .await
            .map(drop)
            .map_err(|e| Failure::transport(&e))
    }
}

// ---------------------------------------------------------------------------------------
// The parent: the hub, the children, the figures.
// ---------------------------------------------------------------------------------------

/// The latest counters of one child.
#[derive(Debug, Default, Clone, Copy)]
struct Progress {
    /// Nodes that signed in at least once.
    signed_in: usize,
    /// Nodes that got their first manifest.
    ready: usize,
    /// Manifest requests in flight.
    polling: usize,
}

/// A failed request, as a child reported it.
#[derive(Debug)]
struct Failed {
    /// The node.
    node: usize,
    /// When (µs since the epoch).
    t: u64,
    /// `op kind`, e.g. `status http 503`.
    what: String,
}

/// Everything the children reported.
#[derive(Debug, Default)]
struct Collected {
    /// Latest counters, by child.
    progress: HashMap<usize, Progress>,
    /// Manifests answered 200: node, time, blobs listed.
    manifests: Vec<(usize, u64, u64)>,
    /// Blob downloads done: node, time, bytes.
    blobs: Vec<(usize, u64, u64)>,
    /// Heartbeats answered: start time, latency in ns.
    heartbeats: Vec<(u64, u64)>,
    /// Sign-ins answered: node, time.
    signins: Vec<(usize, u64)>,
    /// Failed requests.
    errors: Vec<Failed>,
    /// Lines that were not events.
    bad_lines: usize,
}

/// A JSON number field, 0 when absent.
fn field(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or(0)
}

impl Collected {
    /// Takes one event of child `child`.
    fn record(&mut self, child: usize, v: &Value) {
        let node = usize::try_from(field(v, "n")).unwrap_or(usize::MAX);
        let t = field(v, "t");
        match v["e"].as_str() {
            Some("progress") => {
                let count = |key: &str| usize::try_from(field(v, key)).unwrap_or(0);
                self.progress.insert(
                    child,
                    Progress {
                        signed_in: count("signed_in"),
                        ready: count("ready"),
                        polling: count("polling"),
                    },
                );
            }
            Some("manifest") => self.manifests.push((node, t, field(v, "blobs"))),
            Some("blob") => self.blobs.push((node, t, field(v, "bytes"))),
            Some("hb") => self.heartbeats.push((t, field(v, "ns"))),
            Some("signin") => self.signins.push((node, t)),
            Some("err") => self.errors.push(Failed {
                node,
                t,
                what: format!(
                    "{} {}",
                    v["op"].as_str().unwrap_or("?"),
                    v["kind"].as_str().unwrap_or("?")
                ),
            }),
            _ => self.bad_lines += 1,
        }
    }

    /// The counters of all children.
    fn total(&self) -> Progress {
        self.progress
            .values()
            .fold(Progress::default(), |a, p| Progress {
                signed_in: a.signed_in + p.signed_in,
                ready: a.ready + p.ready,
                polling: a.polling + p.polling,
            })
    }

    /// By node: the first manifest listing blobs answered at or after `since`.
    fn notified(&self, since: u64) -> HashMap<usize, u64> {
        let mut first = HashMap::new();
        for &(node, t, blobs) in &self.manifests {
            if t >= since && blobs > 0 {
                first
                    .entry(node)
                    .and_modify(|e: &mut u64| *e = (*e).min(t))
                    .or_insert(t);
            }
        }
        first
    }

    /// By node: the first sign-in answered at or after `since`.
    fn signed_in_since(&self, since: u64) -> HashMap<usize, u64> {
        let mut first: HashMap<usize, u64> = HashMap::new();
        for &(node, t) in &self.signins {
            if t >= since && first.get(&node).is_none_or(|&seen| t < seen) {
                first.insert(node, t);
            }
        }
        first
    }

    /// By node: the first download done at or after `since`, and its bytes.
    fn downloaded(&self, since: u64) -> HashMap<usize, (u64, u64)> {
        let mut first: HashMap<usize, (u64, u64)> = HashMap::new();
        for &(node, t, bytes) in &self.blobs {
            if t >= since && first.get(&node).is_none_or(|&(seen, _)| t < seen) {
                first.insert(node, (t, bytes));
            }
        }
        first
    }

    /// Failures from `from` to `to` (µs), counted by `op kind`.
    fn errors_between(&self, from: u64, to: u64) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for f in self.errors.iter().filter(|f| (from..to).contains(&f.t)) {
            *counts.entry(f.what.clone()).or_insert(0) += 1;
        }
        counts
    }

    /// Distinct nodes that had a failure whose kind ends with `kind`.
    fn nodes_with(&self, kind: &str) -> usize {
        self.errors
            .iter()
            .filter(|f| f.what.ends_with(kind))
            .map(|f| f.node)
            .collect::<HashSet<_>>()
            .len()
    }
}

/// The node simulator children and the tasks reading their events.
#[derive(Debug)]
struct Sims {
    /// The children (killed when dropped).
    children: Vec<tokio::process::Child>,
    /// One reader of each child's stdout.
    readers: Vec<tokio::task::JoinHandle<()>>,
    /// What they reported.
    collected: Arc<Mutex<Collected>>,
}

impl Sims {
    /// Starts children of this executable for `n` nodes of the tokens file `tokens`, at
    /// most [`MAX_PER_CHILD`] each, together starting `ramp` nodes per second.
    fn spawn(url: &str, tokens: &Path, n: usize, ramp: u64) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("the bench's own executable")?;
        let count = n.div_ceil(MAX_PER_CHILD).max(1);
        let per = n.div_ceil(count);
        let rate = ramp as f64 / count as f64;
        let collected = Arc::new(Mutex::new(Collected::default()));
        let (mut children, mut readers) = (Vec::new(), Vec::new());
        for c in 0..count {
            let first = c * per;
            let take = per.min(n.saturating_sub(first));
            if take == 0 {
                continue;
            }
            let mut child = tokio::process::Command::new(&exe)
                .env(
                    SIM_ENV,
                    format!("{url},{first},{take},{rate},{}", tokens.display()),
                )
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .context("cannot start a node simulator")?;
            let stdout = child
                .stdout
                .take()
                .context("a node simulator without stdout")?;
            readers.push(tokio::spawn(read_events(c, stdout, collected.clone())));
            children.push(child);
        }
        Ok(Self {
            children,
            readers,
            collected,
        })
    }

    /// Fails when a child has exited.
    fn check(&mut self) -> anyhow::Result<()> {
        for (i, child) in self.children.iter_mut().enumerate() {
            if let Some(status) = child.try_wait()? {
                anyhow::bail!("node simulator {i} exited ({status}); see its lines above");
            }
        }
        Ok(())
    }

    /// `f` of what the children reported so far.
    fn snapshot<T>(&self, f: impl FnOnce(&Collected) -> T) -> T {
        let collected = lock(&self.collected);
        f(&collected)
    }

    /// Stops the children and their readers.
    async fn stop(self) {
        for mut child in self.children {
            let _ = child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
        }
        for reader in self.readers {
            let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
        }
    }

    /// A progress line on stderr.
    fn show(&self, n: usize, phase: &str) {
        let (p, errors, bad) = self.snapshot(|c| (c.total(), c.errors.len(), c.bad_lines));
        eprintln!(
            "B12 {n}: {phase}: {} signed in, {} got a manifest, {} long polls open, {errors} \
             failed requests so far{}",
            p.signed_in,
            p.ready,
            p.polling,
            if bad > 0 {
                format!(", {bad} unreadable lines")
            } else {
                String::new()
            }
        );
    }
}

/// Reads the events of child `child` into `into` until its stdout ends.
async fn read_events(
    child: usize,
    stdout: tokio::process::ChildStdout,
    into: Arc<Mutex<Collected>>,
) {
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        match serde_json::from_str::<Value>(&line) {
            Ok(v) => lock(&into).record(child, &v),
            Err(_) => lock(&into).bad_lines += 1,
        }
    }
}

/// The hub process, seen through `/proc`.
#[derive(Debug)]
struct HubProbe {
    /// Its pid.
    pid: u32,
}

impl HubProbe {
    /// Its RSS now, in MB.
    fn rss_mb(&self) -> anyhow::Result<f64> {
        Ok(crate::memory::status_kib(self.pid, "VmRSS")? as f64 / 1024.0)
    }

    /// Its peak RSS so far (VmHWM), in MB.
    fn hwm_mb(&self) -> anyhow::Result<f64> {
        Ok(crate::memory::status_kib(self.pid, "VmHWM")? as f64 / 1024.0)
    }

    /// Its CPU time so far (utime + stime), in clock ticks.
    fn cpu_ticks(&self) -> anyhow::Result<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))?;
        // The command name may hold spaces: the fields are counted after its `)`.
        let (_, rest) = stat
            .rsplit_once(')')
            .context("/proc/PID/stat without `)`")?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let tick = |i: usize| -> anyhow::Result<u64> {
            Ok(fields
                .get(i)
                .context("/proc/PID/stat is too short")?
                .parse()?)
        };
        // Fields 14 (utime) and 15 (stime); `rest` starts at field 3.
        Ok(tick(11)? + tick(12)?)
    }
}

/// CPU `ticks` over `secs`, as % of one core.
fn cpu_pct(ticks: u64, secs: f64) -> f64 {
    let per_second = rustix::param::clock_ticks_per_second().max(1) as f64;
    ticks as f64 / per_second / secs.max(1e-9) * 100.0
}

/// What a publish to every node gave.
#[derive(Debug)]
struct Delivery {
    /// Runs of `busbar hub publish` (more than one when the hub refused it).
    tries: u32,
    /// Seconds the successful `busbar hub publish` took.
    command_s: f64,
    /// Hub CPU from the publish to the end of the deliveries, % of a core.
    cpu_pct: f64,
    /// Nodes notified.
    notified: usize,
    /// Nodes notified within [`NOTIFY_WITHIN`].
    notified_in_time: usize,
    /// Publish → notified, p50/p99/max, s.
    notify_s: Option<(f64, f64, f64)>,
    /// Nodes that downloaded the blob.
    downloaded: usize,
    /// Publish → downloaded, p50/p99/max, s.
    download_s: Option<(f64, f64, f64)>,
    /// Downloads of another size than the component's.
    short: usize,
    /// Failed requests meanwhile, by kind.
    errors: BTreeMap<String, usize>,
}

/// What listing every node took.
#[derive(Debug)]
struct Listing {
    /// Seconds, all pages.
    secs: f64,
    /// Body bytes, all pages.
    bytes: u64,
    /// Records listed.
    nodes: usize,
    /// Pages.
    pages: usize,
    /// Requests answered 503 (or not answered) and sent again.
    retries: u32,
}

/// Everything measured at one fleet size.
#[derive(Debug)]
struct Figures {
    /// Nodes in `hub.toml`.
    nodes: usize,
    /// Simulator children.
    sims: usize,
    /// Seconds from the first node started to the window.
    ramp_s: f64,
    /// Nodes that ever signed in.
    signed_in: usize,
    /// Nodes that got their first manifest (so signed in and long-polled).
    ready: usize,
    /// Long polls in flight when the window began.
    polling_start: usize,
    /// Long polls in flight when the window ended.
    polling_end: usize,
    /// Distinct nodes answered 503 at least once (the hub's connection limit).
    nodes_503: usize,
    /// Distinct nodes that timed out at least once.
    nodes_timeout: usize,
    /// Failed requests before the window, by kind.
    ramp_errors: BTreeMap<String, usize>,
    /// The window, s.
    window_s: f64,
    /// Hub CPU over the window, % of a core.
    cpu_pct: f64,
    /// Highest sampled RSS during the window, MB.
    rss_window_mb: f64,
    /// RSS at the end of the window, MB.
    rss_end_mb: f64,
    /// VmHWM at the end of the run (the whole life of the hub), MB.
    rss_hwm_mb: f64,
    /// Heartbeats answered in the window.
    heartbeats: usize,
    /// Their latency p50/p99/max, ms.
    heartbeat_ms: Option<(f64, f64, f64)>,
    /// Failed requests in the window, by kind.
    window_errors: BTreeMap<String, usize>,
    /// The publish, or why it failed.
    publish: Result<Delivery, String>,
    /// The listing, or why it failed.
    listing: Result<Listing, String>,
    /// `GET /v1/admin/summary`: its time, or why it failed.
    summary: String,
    /// The hub's log line about its open-files limit (and its connection limit).
    open_files: String,
    /// What the hub's log says about refused connections.
    hub_refusals: String,
    /// The hub stopped (SIGTERM) and started again: how soon nodes signed in again.
    restart: Result<String, String>,
}

/// B12.
pub async fn hub_scale() -> anyhow::Result<Vec<Row>> {
    let sizes = sizes()?;
    let window = Duration::from_secs(env_number(SECS_ENV, DEFAULT_SECS)?.max(1));
    let ramp = env_number(RAMP_ENV, DEFAULT_RAMP)?.max(1);
    let mut runs = Vec::with_capacity(sizes.len());
    for n in sizes {
        eprintln!("B12: {n} simulated nodes, {ramp} started per second, window {window:?} ...");
        runs.push(one_size(n, window, ramp).await?);
    }
    let Some(base) = runs.first() else {
        return Ok(Vec::new());
    };
    Ok(runs
        .iter()
        .enumerate()
        .map(|(i, f)| row(f, base, i == 0))
        .collect())
}

/// `sizes` and, when the largest needs more open files than a process may have here (a
/// node holds about one connection at the hub), the largest that fits (the hard limit less
/// 1,000, in thousands) before it: measured, not only the refusals at the limit.
fn with_largest_that_fits(mut sizes: Vec<usize>) -> Vec<usize> {
    let _ = busbar_base::serve::raise_open_files_limit();
    let limit = busbar_base::serve::open_files_limit()
        .and_then(|l| usize::try_from(l).ok())
        .unwrap_or(usize::MAX);
    if let Some(&largest) = sizes.last()
        && largest.saturating_add(1_000) > limit
    {
        let fits = limit.saturating_sub(1_000) / 1_000 * 1_000;
        if fits > 0 && !sizes.contains(&fits) {
            eprintln!(
                "B12: {largest} nodes need more than this machine's {limit} open files at the \
                 hub: also measuring {fits}"
            );
            sizes.push(fits);
            sizes.sort_unstable();
        }
    }
    sizes
}

/// The fleet sizes: [`NODES_ENV`] or [`DEFAULT_SIZES`] (with the largest that fits), smallest
/// first.
fn sizes() -> anyhow::Result<Vec<usize>> {
    let Ok(list) = std::env::var(NODES_ENV) else {
        return Ok(with_largest_that_fits(DEFAULT_SIZES.to_vec()));
    };
    let mut sizes = list
        .split(',')
        .map(|s| {
            s.trim()
                .parse::<usize>()
                .with_context(|| format!("{NODES_ENV}: `{s}` is not a number of nodes"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    sizes.sort_unstable();
    sizes.dedup();
    anyhow::ensure!(
        sizes.first().is_some_and(|&n| n > 0),
        "{NODES_ENV}=`{list}`: at least one size above 0"
    );
    Ok(sizes)
}

/// A number from the environment variable `name`, else `default`.
fn env_number(name: &str, default: u64) -> anyhow::Result<u64> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .with_context(|| format!("{name}=`{v}` is not a number")),
        Err(_) => Ok(default),
    }
}

/// One fleet size: a fresh hub with `n` nodes, the children simulating them, the figures.
async fn one_size(n: usize, window: Duration, ramp: u64) -> anyhow::Result<Figures> {
    // `busbar hub keygen` + `init` + `serve`; stopped to write the nodes into `hub.toml`
    // (`busbar hub add-node` takes far too long for 20,000), then served again on the same
    // address.
    let mut hub = Hub::start();
    hub.stop();
    let tokens = hub.dir.path().join("b12-tokens.txt");
    write_fleet(&hub.fleet_dir(), &tokens, n)?;
    hub.restart();
    let pid = hub
        .process
        .as_ref()
        .map(|p| p.id())
        .context("the hub did not start")?;
    let open_files = open_files_line(&hub);
    eprintln!("B12 {n}: hub {} (pid {pid}); {open_files}", hub.url);
    let probe = HubProbe { pid };
    let mut sims = Sims::spawn(&hub.url, &tokens, n, ramp)?;
    let measured = measure(n, window, ramp, &hub, &probe, &mut sims).await;
    let restart = match measured {
        Ok(_) => restart_all(n, &mut hub, &mut sims).await,
        Err(_) => Err("not measured".to_owned()),
    };
    sims.stop().await;
    let mut figures = measured?;
    figures.restart = restart;
    figures.open_files = open_files;
    figures.hub_refusals = hub_refusals(&hub);
    Ok(figures)
}

/// Waits for the fleet, then the window, the publish and the listing.
async fn measure(
    n: usize,
    window: Duration,
    ramp: u64,
    hub: &Hub,
    probe: &HubProbe,
    sims: &mut Sims,
) -> anyhow::Result<Figures> {
    let ramp_s = wait_ready(n, ramp, probe, sims).await?;
    let (start, ramp_errors) = sims.snapshot(|c| (c.total(), c.errors_between(0, now_us())));

    // The steady window.
    sims.show(n, "window begins");
    let (w0, cpu0, began) = (now_us(), probe.cpu_ticks()?, Instant::now());
    let mut rss_window_mb = probe.rss_mb()?;
    let mut shown = Instant::now();
    while began.elapsed() < window {
        let left = window.saturating_sub(began.elapsed());
        tokio::time::sleep(left.min(Duration::from_secs(1))).await;
        sims.check()?;
        rss_window_mb = rss_window_mb.max(probe.rss_mb()?);
        if shown.elapsed() >= Duration::from_secs(15) {
            sims.show(n, "window");
            shown = Instant::now();
        }
    }
    let (window_s, cpu1, w1) = (began.elapsed().as_secs_f64(), probe.cpu_ticks()?, now_us());
    let rss_end_mb = probe.rss_mb()?;
    let (heartbeat_ns, window_errors, polling_end) = sims.snapshot(|c| {
        let ns: Vec<u64> = c
            .heartbeats
            .iter()
            .filter(|(t, _)| (w0..w1).contains(t))
            .map(|&(_, ns)| ns)
            .collect();
        (ns, c.errors_between(w0, w1), c.total().polling)
    });
    let heartbeats = heartbeat_ns.len();

    let publish = publish_all(n, hub, probe, sims)
        .await
        .map_err(|e| format!("{e:#}"));
    let http = admin_client()?;
    sims.show(n, "listing every node");
    let listing = list_all(&http, hub, n).await.map_err(|e| format!("{e:#}"));
    let summary = summary_time(&http, hub).await;
    let rss_hwm_mb = probe.hwm_mb()?;
    let (nodes_503, nodes_timeout) =
        sims.snapshot(|c| (c.nodes_with("http 503"), c.nodes_with("timeout")));
    Ok(Figures {
        nodes: n,
        sims: sims.children.len(),
        ramp_s,
        signed_in: start.signed_in,
        ready: start.ready,
        polling_start: start.polling,
        polling_end,
        nodes_503,
        nodes_timeout,
        ramp_errors,
        window_s,
        cpu_pct: cpu_pct(cpu1.saturating_sub(cpu0), window_s),
        rss_window_mb,
        rss_end_mb,
        rss_hwm_mb,
        heartbeats,
        heartbeat_ms: spread(heartbeat_ns, 1e3),
        window_errors,
        publish,
        listing,
        summary,
        open_files: String::new(),
        hub_refusals: String::new(),
        restart: Err("not measured".to_owned()),
    })
}

/// Stops the hub (SIGTERM), starts it again on the same address, and waits (at most two
/// minutes) until every node has its long poll open at the new hub: how long that took, and
/// how soon the nodes that lost their session signed in again (a node whose long poll went
/// straight to the new hub keeps its session).
async fn restart_all(n: usize, hub: &mut Hub, sims: &mut Sims) -> Result<String, String> {
    sims.show(n, "restarting the hub");
    hub.stop();
    let t0 = now_us();
    hub.restart();
    let began = Instant::now();
    // The children report their counters every second: wait for a report after the restart.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let all_polling = loop {
        // 99.9%: between one long poll and the next a node has none open for a moment.
        let polling = sims.snapshot(|c| c.total().polling);
        if polling.saturating_mul(1000) >= n.saturating_mul(999) {
            break Some(began.elapsed().as_secs_f64());
        }
        if began.elapsed() > Duration::from_secs(120) {
            break None;
        }
        sims.check().map_err(|e| format!("{e:#}"))?;
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let back = sims.snapshot(|c| c.signed_in_since(t0));
    let ns: Vec<u64> = back
        .values()
        .map(|&t| t.saturating_sub(t0).saturating_mul(1000))
        .collect();
    let polling = match all_polling {
        Some(s) => format!("99.9% of the {n} long polls open again within {s:.1} s"),
        None => format!(
            "{} of {n} long polls open again after 120 s",
            sims.snapshot(|c| c.total().polling)
        ),
    };
    Ok(format!(
        "hub restarted: {polling}; {} nodes signed in again, {}",
        back.len(),
        show_spread(spread(ns, 1e6), "s")
    ))
}

/// Waits until every node got its first manifest (signed in and long-polling), or nothing
/// moved for [`SETTLE`] after the ramp, or the ramp plus 180 s passed. Returns the seconds
/// it took.
async fn wait_ready(n: usize, ramp: u64, probe: &HubProbe, sims: &mut Sims) -> anyhow::Result<f64> {
    let ramp_s = n as f64 / ramp as f64;
    let give_up = Duration::from_secs_f64(ramp_s) + Duration::from_secs(180);
    let began = Instant::now();
    let (mut last, mut moved, mut shown) = (0usize, Instant::now(), Instant::now());
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        sims.check()?;
        // Fails when the hub is gone.
        probe.rss_mb()?;
        let ready = sims.snapshot(|c| c.total().ready);
        if ready != last {
            (last, moved) = (ready, Instant::now());
        }
        if ready >= n {
            sims.show(n, "all nodes long-polling");
            break;
        }
        if shown.elapsed() >= Duration::from_secs(5) {
            sims.show(n, "starting nodes");
            shown = Instant::now();
        }
        if began.elapsed().as_secs_f64() > ramp_s + 5.0 && moved.elapsed() >= SETTLE {
            sims.show(
                n,
                "no more nodes got a manifest for 30 s; measuring with those",
            );
            break;
        }
        if began.elapsed() >= give_up {
            sims.show(n, "gave up waiting for the rest; measuring with those");
            break;
        }
    }
    Ok(began.elapsed().as_secs_f64())
}

/// Publishes a fresh ~2 MB component to every node (tag `sim`) with `busbar hub publish`,
/// then waits until every node that got a manifest was notified and downloaded it (or
/// nothing moved for [`SETTLE`] after [`NOTIFY_WITHIN`], or [`PUBLISH_MAX`] passed).
async fn publish_all(
    n: usize,
    hub: &Hub,
    probe: &HubProbe,
    sims: &mut Sims,
) -> anyhow::Result<Delivery> {
    let (component, size) = padded_component(hub.dir.path(), n)?;
    let path = component
        .to_str()
        .context("the component's path is not UTF-8")?;
    let args = [
        "publish",
        "--hub",
        hub.url.as_str(),
        "--key",
        "signing.key",
        "--service",
        "b12",
        "--component",
        path,
        "--tag",
        "sim",
        "--no-artifacts",
    ];
    sims.show(n, "publishing");
    let mut tries = 0u32;
    let (p0, command_s) = loop {
        tries += 1;
        let (p0, began) = (now_us(), Instant::now());
        let out = hub.cli(&args);
        if out.status.success() {
            break (p0, began.elapsed().as_secs_f64());
        }
        anyhow::ensure!(
            tries < PUBLISH_TRIES,
            "`busbar hub publish` failed {tries} times, last: {}",
            tail(&out.all(), 300)
        );
        eprintln!(
            "B12 {n}: publish try {tries} failed: {}",
            tail(&out.all(), 300)
        );
        tokio::time::sleep(busbar_base::net::backoff(tries, Duration::from_secs(5))).await;
    };
    let (cpu0, began) = (probe.cpu_ticks()?, Instant::now());
    let (mut last, mut moved, mut shown) = (0usize, Instant::now(), Instant::now());
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        sims.check()?;
        // Fails when the hub is gone.
        probe.rss_mb()?;
        let (notified, downloaded, ready) = sims.snapshot(|c| {
            (
                c.notified(p0).len(),
                c.downloaded(p0).len(),
                c.total().ready,
            )
        });
        if ready > 0 && notified >= ready && downloaded >= ready {
            break;
        }
        if notified + downloaded != last {
            (last, moved) = (notified + downloaded, Instant::now());
        }
        if shown.elapsed() >= Duration::from_secs(5) {
            eprintln!(
                "B12 {n}: delivering: {notified} notified, {downloaded} downloaded of {ready}"
            );
            shown = Instant::now();
        }
        if (began.elapsed() >= NOTIFY_WITHIN && moved.elapsed() >= SETTLE)
            || began.elapsed() >= PUBLISH_MAX
        {
            break;
        }
    }
    let (secs, cpu1, p1) = (began.elapsed().as_secs_f64(), probe.cpu_ticks()?, now_us());
    let within = u64::try_from(NOTIFY_WITHIN.as_micros()).unwrap_or(u64::MAX);
    Ok(sims.snapshot(|c| {
        let notified = c.notified(p0);
        let downloaded = c.downloaded(p0);
        let since = |t: u64| t.saturating_sub(p0);
        Delivery {
            tries,
            command_s,
            cpu_pct: cpu_pct(cpu1.saturating_sub(cpu0), secs),
            notified: notified.len(),
            notified_in_time: notified.values().filter(|&&t| since(t) <= within).count(),
            notify_s: spread(notified.values().map(|&t| since(t) * 1_000).collect(), 1e6),
            downloaded: downloaded.len(),
            download_s: spread(
                downloaded
                    .values()
                    .map(|&(t, _)| since(t) * 1_000)
                    .collect(),
                1e6,
            ),
            short: downloaded.values().filter(|&&(_, b)| b != size).count(),
            errors: c.errors_between(p0, p1),
        }
    }))
}

/// A client for the admin API.
fn admin_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(busbar_base::net::tls_client_config(None, "")?)
        .no_proxy()
        .timeout(Duration::from_secs(120))
        .build()?)
}

/// `GET url` with the admin token, sent again (with backoff) when answered 503 or not
/// answered; the answer and how many times it was sent again.
async fn admin_get(
    http: &reqwest::Client,
    url: &str,
    token: &str,
) -> anyhow::Result<(reqwest::Response, u32)> {
    let mut retries = 0u32;
    loop {
        match http.get(url).bearer_auth(token).send().await {
            Ok(resp) if resp.status().is_success() => return Ok((resp, retries)),
            Ok(resp)
                if resp.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE
                    && retries < ADMIN_RETRIES =>
            {
                let _ = resp.bytes().await;
            }
            Ok(resp) => {
                let status = resp.status();
                let body = resp.text().await.unwrap_or_default();
                anyhow::bail!(
                    "{url}: {status} {} (after {retries} retries)",
                    busbar_base::net::error_text(body)
                );
            }
            Err(_) if retries < ADMIN_RETRIES => {}
            Err(e) => anyhow::bail!("{url}: {} (after {retries} retries)", chain(&e)),
        }
        retries += 1;
        tokio::time::sleep(busbar_base::net::backoff(retries, Duration::from_secs(2))).await;
    }
}

/// Pages through `GET /v1/admin/nodes?limit=PAGE` following `x-busbar-next-after` to the
/// end.
async fn list_all(http: &reqwest::Client, hub: &Hub, n: usize) -> anyhow::Result<Listing> {
    let began = Instant::now();
    let (mut after, mut bytes, mut nodes, mut pages, mut retries) =
        (None::<String>, 0u64, 0usize, 0usize, 0u32);
    loop {
        let url = match &after {
            Some(a) => format!("{}/v1/admin/nodes?limit={PAGE}&after={a}", hub.url),
            None => format!("{}/v1/admin/nodes?limit={PAGE}", hub.url),
        };
        let (resp, again) = admin_get(http, &url, &hub.admin_token).await?;
        retries += again;
        let next = resp
            .headers()
            .get("x-busbar-next-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = resp.bytes().await.with_context(|| format!("{url}: body"))?;
        bytes += body.len() as u64;
        pages += 1;
        let page: Vec<Value> = serde_json::from_slice(&body)
            .with_context(|| format!("{url}: not a JSON array of nodes"))?;
        nodes += page.len();
        match next {
            None => break,
            Some(next) => {
                anyhow::ensure!(
                    after.as_deref() != Some(next.as_str()),
                    "the listing gave the page after `{next}` twice"
                );
                after = Some(next);
            }
        }
        anyhow::ensure!(
            pages <= n / PAGE + 10,
            "{pages} pages for {n} nodes: the listing does not end"
        );
    }
    Ok(Listing {
        secs: began.elapsed().as_secs_f64(),
        bytes,
        nodes,
        pages,
        retries,
    })
}

/// The time of `GET /v1/admin/summary` (body read), or why it failed.
async fn summary_time(http: &reqwest::Client, hub: &Hub) -> String {
    let began = Instant::now();
    let url = format!("{}/v1/admin/summary", hub.url);
    match admin_get(http, &url, &hub.admin_token).await {
        Ok((resp, retries)) => match resp.bytes().await {
            Ok(body) => format!(
                "{:.0} ms ({:.1} KB{})",
                began.elapsed().as_secs_f64() * 1e3,
                body.len() as f64 / 1e3,
                if retries > 0 {
                    format!(", {retries} retries")
                } else {
                    String::new()
                }
            ),
            Err(e) => format!("failed: {}", chain(&e)),
        },
        Err(e) => format!("failed: {}", one_line(&format!("{e:#}"))),
    }
}

/// Node id `i` (from 1): `sim-00001`.
fn node_id(i: usize) -> String {
    format!("sim-{i:05}")
}

/// Rewrites `hub.toml` of the stopped hub in `fleet`: its admin token and public key kept,
/// `heartbeat_s` and `long_poll_s` set, and `n` nodes `sim-00001`... tagged `sim`, each with
/// a fresh token; the tokens go to `tokens` as `ID TOKEN` lines.
fn write_fleet(fleet: &Path, tokens: &Path, n: usize) -> anyhow::Result<()> {
    use busbar_hub::config::{HubConfig, NodeEntry, fresh_token, token_sha256};
    let mut list = String::with_capacity(n * 80);
    HubConfig::edit(fleet, |config| {
        config.heartbeat_s = HEARTBEAT_S;
        config.long_poll_s = LONG_POLL_S;
        for i in 1..=n {
            let (id, token) = (node_id(i), fresh_token());
            config.nodes.insert(
                id.clone(),
                NodeEntry {
                    token_sha256: token_sha256(&token),
                    tags: vec!["sim".into()],
                    ..NodeEntry::default()
                },
            );
            let _ = writeln!(list, "{id} {token}");
        }
        Ok(())
    })?;
    std::fs::write(tokens, list).with_context(|| format!("cannot write {}", tokens.display()))
}

/// The echo guest grown to [`COMPONENT_BYTES`] by a custom section (still a valid
/// component), with a tag making it a version no run published before; its path and size.
fn padded_component(dir: &Path, n: usize) -> anyhow::Result<(PathBuf, u64)> {
    let mut wasm = std::fs::read(busbar_tests::guest("echo"))?;
    let name = b"busbar-bench-padding";
    let tag = format!("b12-{n}-{}", now_us());
    let filler = COMPONENT_BYTES.saturating_sub(wasm.len() + name.len() + tag.len() + 16);
    let mut section = Vec::with_capacity(name.len() + tag.len() + filler + 8);
    leb128(name.len() as u64, &mut section);
    section.extend_from_slice(name);
    section.extend_from_slice(tag.as_bytes());
    section.resize(section.len() + filler, 0xa5);
    wasm.push(0);
    leb128(section.len() as u64, &mut wasm);
    wasm.extend_from_slice(&section);
    let path = dir.join(format!("b12-{n}.wasm"));
    std::fs::write(&path, &wasm).with_context(|| format!("cannot write {}", path.display()))?;
    Ok((path, wasm.len() as u64))
}

/// Appends `v` as unsigned LEB128 (wasm's sizes).
fn leb128(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// The fields of a JSON log line of the hub (`fields`, else the whole object).
fn log_fields(line: &str) -> Option<Value> {
    let v: Value = serde_json::from_str(line).ok()?;
    let fields = v.get("fields").cloned();
    Some(fields.unwrap_or(v))
}

/// The hub's log lines so far.
fn hub_log(hub: &Hub) -> Vec<String> {
    hub.process.as_ref().map(|p| p.stderr()).unwrap_or_default()
}

/// What the hub logged about its open-files limit and its connection limit.
fn open_files_line(hub: &Hub) -> String {
    let log = hub_log(hub);
    let limit = match log.iter().find(|l| l.contains("open-files limit")) {
        None => "no open-files line in the hub's log".to_owned(),
        Some(line) => match log_fields(line) {
            Some(f) if f.get("after").is_some() => format!(
                "open-files limit {} → {}, the hub says it holds about {} nodes",
                f["before"], f["after"], f["nodes"]
            ),
            _ => tail(line, 200),
        },
    };
    let max = log
        .iter()
        .find(|l| l.contains("hub listening on"))
        .and_then(|l| log_fields(l)?.get("max_connections")?.as_u64());
    match max {
        Some(max) => format!("hub log: {limit}; max_connections {max}"),
        None => format!("hub log: {limit}"),
    }
}

/// What the hub logged about connections it refused (it logs the 1st, 2nd, 4th, 8th...).
fn hub_refusals(hub: &Hub) -> String {
    let log = hub_log(hub);
    let refused = log
        .iter()
        .filter(|l| l.contains("connection refused: too many open"))
        .filter_map(|l| log_fields(l)?.get("refused")?.as_u64())
        .max();
    let accept = log
        .iter()
        .filter(|l| l.contains("cannot accept connections"))
        .count();
    format!(
        "hub refused connections (503): {}; accept failures logged: {accept}",
        refused.map_or_else(|| "none".to_owned(), |r| format!("at least {r}"))
    )
}

/// p50, p99 and max of durations in ns, in units of `scale` µs (1e3: ms, 1e6: s); None
/// when there are none.
fn spread(mut ns: Vec<u64>, scale: f64) -> Option<(f64, f64, f64)> {
    ns.sort_unstable();
    let max = *ns.last()? as f64 / 1e3 / scale;
    Some((pct_us(&ns, 50.0) / scale, pct_us(&ns, 99.0) / scale, max))
}

/// `p50/p99/max a/b/c unit`, or `none`.
fn show_spread(s: Option<(f64, f64, f64)>, unit: &str) -> String {
    match s {
        Some((p50, p99, max)) => format!("p50/p99/max {p50:.1}/{p99:.1}/{max:.1} {unit}"),
        None => "none".to_owned(),
    }
}

/// Failure counts as `kind ×n, ...`, or `none`.
fn show_errors(errors: &BTreeMap<String, usize>) -> String {
    if errors.is_empty() {
        return "none".to_owned();
    }
    errors
        .iter()
        .map(|(kind, n)| format!("{kind} ×{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `text` on one line, safe in a table cell.
fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ").replace('|', "/")
}

/// The last `max` characters of `text`, on one line.
fn tail(text: &str, max: usize) -> String {
    let chars: Vec<char> = text.chars().collect();
    let from = chars.len().saturating_sub(max);
    one_line(&chars[from..].iter().collect::<String>())
}

/// Whether this size meets the goal's bounds: heartbeat p99, every node notified in time,
/// every node listed in time, peak RSS.
fn met(f: &Figures) -> bool {
    let heartbeats = f.heartbeat_ms.is_some_and(|(_, p99, _)| p99 <= 50.0);
    let notified = f
        .publish
        .as_ref()
        .is_ok_and(|d| d.notified_in_time >= f.nodes);
    let listing = f
        .listing
        .as_ref()
        .is_ok_and(|l| l.secs <= 5.0 && l.nodes >= f.nodes);
    heartbeats && notified && listing && f.rss_hwm_mb <= 1024.0
}

/// The busbar column: every figure of one size.
fn figures_text(f: &Figures) -> String {
    let mut s = format!(
        "served {} of {} (signed in {}, {} long polls open at the window's start, {} at its \
         end; nodes answered 503: {}, nodes timed out: {}; {:.0} s to start; failures before \
         the window: {})",
        f.ready,
        f.nodes,
        f.signed_in,
        f.polling_start,
        f.polling_end,
        f.nodes_503,
        f.nodes_timeout,
        f.ramp_s,
        show_errors(&f.ramp_errors)
    );
    let _ = write!(
        s,
        "; over {:.0} s: hub CPU {:.0}% of a core, RSS {:.0} MB peak / {:.0} MB end \
         (VmHWM of the whole run {:.0} MB); heartbeats {} answered, {}; failures: {}",
        f.window_s,
        f.cpu_pct,
        f.rss_window_mb,
        f.rss_end_mb,
        f.rss_hwm_mb,
        f.heartbeats,
        show_spread(f.heartbeat_ms, "ms"),
        show_errors(&f.window_errors)
    );
    match &f.publish {
        Ok(d) => {
            let _ = write!(
                s,
                "; publish 2 MB ({} run(s) of `busbar hub publish`, {:.1} s): notified {} \
                 ({} within 60 s), {}; downloaded {}, {}{}; hub CPU meanwhile {:.0}%; \
                 failures: {}",
                d.tries,
                d.command_s,
                d.notified,
                d.notified_in_time,
                show_spread(d.notify_s, "s"),
                d.downloaded,
                show_spread(d.download_s, "s"),
                if d.short > 0 {
                    format!(" ({} of another size)", d.short)
                } else {
                    String::new()
                },
                d.cpu_pct,
                show_errors(&d.errors)
            );
        }
        Err(e) => {
            let _ = write!(s, "; publish failed: {}", tail(e, 300));
        }
    }
    match &f.listing {
        Ok(l) => {
            let _ = write!(
                s,
                "; listing {} nodes: {:.2} s, {} pages, {:.1} MB{}",
                l.nodes,
                l.secs,
                l.pages,
                l.bytes as f64 / 1e6,
                if l.retries > 0 {
                    format!(", {} retries", l.retries)
                } else {
                    String::new()
                }
            );
        }
        Err(e) => {
            let _ = write!(s, "; listing failed: {}", tail(e, 300));
        }
    }
    let _ = write!(
        s,
        "; summary {}; {}; {}; {}",
        f.summary,
        match &f.restart {
            Ok(r) => r.clone(),
            Err(e) => format!("restart: {}", tail(e, 200)),
        },
        f.open_files,
        f.hub_refusals
    );
    one_line(&s)
}

/// The baseline column: the same load at the smallest size.
fn baseline_text(b: &Figures) -> String {
    let notified = match &b.publish {
        Ok(d) => show_spread(d.notify_s, "s"),
        Err(_) => "publish failed".to_owned(),
    };
    let listing = match &b.listing {
        Ok(l) => format!("{:.2} s for {} nodes", l.secs, l.nodes),
        Err(_) => "failed".to_owned(),
    };
    format!(
        "same load at {} nodes: served {} of {}, hub CPU {:.0}%, RSS {:.0} MB (VmHWM), \
         heartbeat {}, notified {}, listing {}",
        b.nodes,
        b.ready,
        b.nodes,
        b.cpu_pct,
        b.rss_hwm_mb,
        show_spread(b.heartbeat_ms, "ms"),
        notified,
        listing
    )
}

/// The row of one size; `base` is the smallest size (`is_base`: this is it).
fn row(f: &Figures, base: &Figures, is_base: bool) -> Row {
    let target = if f.nodes >= 20_000 {
        verdict(GOAL, met(f))
    } else {
        format!(
            "{} (the goal is for 20,000 nodes; the same bounds at {})",
            verdict(GOAL, met(f)),
            f.nodes
        )
    };
    Row {
        id: "B12",
        what: format!(
            "hub with {} simulated nodes ({} simulator processes; heartbeat {HEARTBEAT_S} s, \
             long poll {LONG_POLL_S} s): nodes served; hub CPU, RSS; heartbeat p50/p99; \
             publish 2 MB → notified / downloaded p50/p99/max; listing all nodes; summary",
            f.nodes, f.sims
        ),
        busbar: figures_text(f),
        baseline: if is_base {
            "this is the smallest size: the baseline of the larger ones (same load, same run)"
                .to_owned()
        } else {
            one_line(&baseline_text(base))
        },
        target,
    }
}
