//! Command-line arguments of the `busbar` binary and what each command does.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use busbar_base::command::until;

use crate::config::NodeConfig;
use crate::logging::LogFormat;
use crate::manifest::Manifest;

/// The demo manifest compiled into the binary.
const DEMO_MANIFEST: &str = include_str!("../demo/manifest.toml");
/// Where the demo's components are looked for unless `BUSBAR_DEMO_DIR` says otherwise.
const DEMO_DIR: &str = "guests/target/wasm32-wasip2/release";

/// busbar: WebAssembly services for IoT edge gateways.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Write the log to this file (rotated, see --log-rotation) instead of stderr.
    #[arg(long, global = true)]
    pub log_file: Option<PathBuf>,
    /// How often the log file is rotated.
    #[arg(long, global = true, value_enum, default_value = "daily")]
    pub log_rotation: crate::logging::LogRotation,
    /// How many rotated log files to keep.
    #[arg(long, global = true, default_value_t = 7)]
    pub log_keep: usize,
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node until Ctrl-C or SIGTERM (with no manifest: the bundled demo).
    Run(NodeArgs),
    /// Check a manifest and load every component it names, then exit.
    Check(NodeArgs),
    /// Compile a component ahead of time for a node of another (or this) target.
    Compile(CompileArgs),
    /// Show a running node's services: state, restarts, counters, version.
    Status(crate::client::ConnectArgs),
    /// Print a running node's log lines (the last ones, then new ones with --follow).
    Logs(crate::client::LogsArgs),
    /// Watch messages on a running node's bus: source → destination:action, size, latency.
    Monitor(crate::client::MonitorArgs),
    /// Send a message to a service of a running node without waiting for it to be handled.
    Publish(crate::client::PublishArgs),
    /// Call a service action on a running node and print its reply.
    Call(crate::client::CallArgs),
    /// The fleet hub: keys, fleet dir, nodes, serve, publish.
    #[cfg(feature = "hub")]
    Hub(busbar_hub::HubArgs),
}

/// `busbar compile --target TRIPLE in.wasm -o out.cwasm`.
#[derive(Debug, Args)]
pub struct CompileArgs {
    /// The node's target triple, e.g. aarch64-unknown-linux-gnu or
    /// armv7-unknown-linux-gnueabihf (default: this machine's).
    #[arg(long)]
    pub target: Option<String>,
    /// The node configuration whose `[engine]` settings the node runs with (default: the
    /// built-in defaults). An artifact compiled with other settings is not used by the node.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// The component (.wasm).
    pub input: PathBuf,
    /// Where to write the artifact.
    #[arg(long, short)]
    pub output: PathBuf,
}

/// Where the node's manifest and configuration come from.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// Manifest of the services to run (TOML, or JSON when it ends in .json).
    #[arg(long, short)]
    pub manifest: Option<PathBuf>,
    /// Node configuration (TOML).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// The node's data dir (overrides `data_dir` of the config).
    #[arg(long, env = "BUSBAR_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address of the admin API (overrides `admin.listen` of the config), e.g.
    /// 127.0.0.1:0 for any free port.
    #[arg(long, env = "BUSBAR_ADMIN_LISTEN")]
    pub admin_listen: Option<std::net::SocketAddr>,
    /// Write the process id to this file while running (overrides `pid_file`).
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
}

impl NodeArgs {
    fn load(&self) -> anyhow::Result<(NodeConfig, Manifest)> {
        let mut config = node_config(self.config.as_deref())?;
        if let Some(dir) = &self.data_dir {
            config.data_dir = Some(dir.clone());
        }
        if let Some(addr) = self.admin_listen {
            config.admin.listen = addr;
        }
        if let Some(path) = &self.pid_file {
            config.pid_file = Some(path.clone());
        }
        let manifest = match (&self.manifest, &config.hub) {
            (Some(p), None) => Manifest::load(p)?,
            (None, None) => demo_manifest()?,
            // The fleet client fetches it.
            (None, Some(_)) => Manifest::default(),
            (Some(p), Some(hub)) => anyhow::bail!(
                "--manifest {}: this node takes its services from the hub {} ([hub] in the node \
                 config); drop --manifest or the [hub] section",
                p.display(),
                hub.url
            ),
        };
        Ok((config, manifest))
    }
}

fn demo_manifest() -> anyhow::Result<Manifest> {
    let dir =
        std::env::var_os("BUSBAR_DEMO_DIR").map_or_else(|| PathBuf::from(DEMO_DIR), PathBuf::from);
    let manifest = Manifest::parse(DEMO_MANIFEST, false, "<bundled demo>", &dir)?;
    if let Some(missing) = manifest.services.iter().find(|s| !s.component.exists()) {
        anyhow::bail!(
            "the bundled demo needs the example components, but {} is missing: build them with \
             `just build-guests` (or point BUSBAR_DEMO_DIR at them), or pass --manifest",
            missing.component.display()
        );
    }
    tracing::info!(components = %dir.display(), "running the bundled demo");
    Ok(manifest)
}

impl Cli {
    /// Where the log goes.
    pub fn log_output(&self) -> crate::logging::LogOutput {
        crate::logging::LogOutput {
            format: self.log_format,
            file: self.log_file.clone(),
            rotation: self.log_rotation,
            keep: self.log_keep,
        }
    }
}

/// Runs the parsed command line until it is done or `shutdown` fires.
pub async fn run(cli: Cli, shutdown: CancellationToken) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(args) => crate::daemon::run(|| args.load(), shutdown).await,
        Command::Check(args) => {
            let (config, manifest) = args.load()?;
            check(&config, &manifest).await
        }
        Command::Compile(args) => compile(&args),
        Command::Status(args) => until(shutdown, crate::client::status(&args)).await,
        Command::Logs(args) => until(shutdown, crate::client::logs(&args)).await,
        Command::Monitor(args) => until(shutdown, crate::client::monitor(&args)).await,
        Command::Publish(args) => until(shutdown, crate::client::publish(&args)).await,
        Command::Call(args) => until(shutdown, crate::client::call(&args)).await,
        #[cfg(feature = "hub")]
        Command::Hub(args) => {
            let compiler = crate::publisher::Compiler;
            let compiler: Option<&dyn busbar_hub::publish::ArtifactCompiler> =
                crate::engine::HAS_COMPILER.then_some(&compiler);
            busbar_hub::run(args, compiler, shutdown).await
        }
    }
}

/// The node config from `--config`, or the built-in defaults.
fn node_config(path: Option<&std::path::Path>) -> anyhow::Result<NodeConfig> {
    path.map_or_else(|| Ok(NodeConfig::default()), NodeConfig::load)
}

fn compile(args: &CompileArgs) -> anyhow::Result<()> {
    let config = node_config(args.config.as_deref())?;
    let target = args
        .target
        .as_deref()
        .unwrap_or(crate::precompiled::HOST_TARGET);
    let wasm = busbar_base::read_file::read_bounded(
        &args.input,
        busbar_base::read_file::MAX_COMPONENT_BYTES,
    )
    .with_context(|| format!("cannot read component {}", args.input.display()))?;
    let engine = config.engine.build_for(Some(target))?;
    let fingerprint = config.engine.fingerprint(target);
    let header = crate::precompiled::write(&engine, &wasm, target, &fingerprint, &args.output)
        .with_context(|| format!("component {}", args.input.display()))?;
    println!(
        "{} -> {} (target {target}, engine fingerprint {fingerprint}, sha256 {})",
        args.input.display(),
        args.output.display(),
        header.sha256
    );
    Ok(())
}

async fn check(config: &NodeConfig, manifest: &Manifest) -> anyhow::Result<()> {
    // What `run` refuses against the engine, `check` refuses with the same words.
    manifest
        .fit_engine(&config.engine)
        .map_err(|e| anyhow::anyhow!("the manifest: {e}"))?;
    let engine = config.engine.build()?;
    let _epochs = crate::engine::EpochTicker::start(
        engine.clone(),
        std::time::Duration::from_millis(config.engine.epoch_tick_ms),
    );
    let cache = crate::cache::CompileCache::new(&engine, config.cache_dir())?;
    let loader = crate::component::Loader::new(engine, cache)?
        .with_fingerprint(config.engine.fingerprint(crate::precompiled::HOST_TARGET));
    let mut failures = Vec::new();
    for s in &manifest.services {
        // Loaded, then instantiated in the sandbox `run` gives it (not started).
        match crate::node::check_entry(&loader, config, s).await {
            Ok(c) => println!(
                "ok      {:<24} sha256 {} ({})",
                s.name,
                c.digest(),
                c.origin()
            ),
            Err(e) => {
                println!("FAILED  {:<24} {e:#}", s.name);
                failures.push(s.name.clone());
            }
        }
    }
    anyhow::ensure!(
        failures.is_empty(),
        "{} service(s) failed to load: {}",
        failures.len(),
        failures.join(", ")
    );
    Ok(())
}
