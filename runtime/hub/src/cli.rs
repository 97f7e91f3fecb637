//! `busbar hub ...`: set up a fleet dir, manage its nodes, serve it, and talk to a running
//! hub as an admin.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use super::client::{self, AdminArgs};
use super::config::{HubConfig, NodeEntry, check_id, fresh_token, token_sha256};
use super::entry::{self, HubSignArgs};
use super::files::FleetDir;
use super::publish::{self, ArtifactCompiler, HubPublishArgs};
use super::server::HubServer;
use crate::protocol;

/// `busbar hub`: the fleet hub.
#[derive(Debug, Args)]
pub struct HubArgs {
    #[command(subcommand)]
    command: HubCommand,
}

/// The hub's commands.
#[derive(Debug, Subcommand)]
enum HubCommand {
    /// Make a signing key pair: FILE (secret seed, hex) and FILE.pub (public key, hex).
    Keygen {
        /// Where to write the secret key (FILE.pub gets the public key).
        #[arg(long)]
        out: PathBuf,
    },
    /// Create a fleet dir: hub.toml with a fresh admin token (printed once), and its dirs.
    Init {
        /// The fleet dir.
        #[arg(long)]
        dir: PathBuf,
        /// The public key published components are checked against (as `keygen` writes).
        #[arg(long)]
        public_key: PathBuf,
    },
    /// Add a node with a fresh token (printed once).
    AddNode {
        /// The fleet dir.
        #[arg(long)]
        dir: PathBuf,
        /// The node's id (its `node_id`).
        id: String,
        /// A tag: the node runs what is published to it (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
    },
    /// Refuse a node's token from now on.
    RevokeNode {
        /// The fleet dir.
        #[arg(long)]
        dir: PathBuf,
        /// The node's id.
        id: String,
    },
    /// Turn a node's log forwarding on or off.
    SetDebug {
        /// The fleet dir.
        #[arg(long)]
        dir: PathBuf,
        /// The node's id.
        id: String,
        /// on or off.
        state: Switch,
    },
    /// Serve the fleet dir to nodes and admins until Ctrl-C or SIGTERM.
    Serve {
        /// The fleet dir.
        #[arg(long)]
        dir: PathBuf,
        /// Address to listen on (port 0: any free port).
        #[arg(long, default_value = "127.0.0.1:8440")]
        listen: SocketAddr,
        /// Most connections open at once (each node holds about two); capped by the
        /// open-files limit.
        #[arg(long, default_value_t = super::server::DEFAULT_MAX_CONNECTIONS)]
        max_connections: usize,
    },
    /// Upload a component, signed, and publish it as a service to nodes, tags or all nodes.
    Publish(Box<HubPublishArgs>),
    /// Sign a component's entry into a file, without a hub: the console publishes it with the
    /// component (nodes compile it themselves).
    Sign(Box<HubSignArgs>),
    /// Take a service out of the manifests of nodes, tags or all nodes.
    Remove(client::RemoveArgs),
    /// List the nodes: last contact, target, version, services, events.
    Nodes(AdminArgs),
    /// Print a node's forwarded log lines.
    Logs {
        /// How to reach the hub.
        #[command(flatten)]
        admin: AdminArgs,
        /// The node's id.
        node: String,
    },
}

/// On or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Switch {
    /// On.
    On,
    /// Off.
    Off,
}

/// Runs `busbar hub ...` until it is done or `shutdown` fires; `publish` makes artifacts
/// with `compiler`.
pub async fn run(
    args: HubArgs,
    compiler: Option<&dyn ArtifactCompiler>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    match args.command {
        HubCommand::Keygen { out } => keygen(&out),
        HubCommand::Init { dir, public_key } => init(&dir, &public_key),
        HubCommand::AddNode { dir, id, tags } => add_node(&dir, &id, tags),
        HubCommand::RevokeNode { dir, id } => {
            edit_node(&dir, &id, |n| n.revoked = true).map(|()| println!("node `{id}` revoked"))
        }
        HubCommand::SetDebug { dir, id, state } => {
            let on = state == Switch::On;
            edit_node(&dir, &id, |n| n.debug = on).map(|()| {
                println!("node `{id}`: debug {}", if on { "on" } else { "off" });
            })
        }
        HubCommand::Serve {
            dir,
            listen,
            max_connections,
        } => {
            let server = HubServer::start(&dir, listen, max_connections).await?;
            let failed = tokio::select! {
                () = shutdown.cancelled() => None,
                task = server.failed() => Some(task),
            };
            server.stop().await;
            match failed {
                Some(task) => {
                    anyhow::bail!("the hub's `{task}` task failed for good; the hub stopped")
                }
                None => Ok(()),
            }
        }
        HubCommand::Publish(args) => {
            busbar_base::command::until(shutdown, publish::publish(&args, compiler)).await
        }
        HubCommand::Sign(args) => entry::sign(&args),
        HubCommand::Remove(args) => {
            busbar_base::command::until(shutdown, client::remove(&args)).await
        }
        HubCommand::Nodes(args) => {
            busbar_base::command::until(shutdown, client::nodes(&args)).await
        }
        HubCommand::Logs { admin, node } => {
            busbar_base::command::until(shutdown, client::logs(&admin, &node)).await
        }
    }
}

/// Creates `path` with `contents`, readable by the owner only; refuses an existing file.
fn create_new(path: &Path, contents: &str, private: bool) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow::anyhow!("{} already exists: not overwriting it", path.display())
        } else {
            anyhow::anyhow!("cannot create {}: {e}", path.display())
        }
    })?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The public key file next to a secret key file: `FILE.pub`.
fn public_key_path(secret: &Path) -> PathBuf {
    let mut name = secret.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// `busbar hub keygen --out FILE`.
fn keygen(out: &Path) -> anyhow::Result<()> {
    let public_path = public_key_path(out);
    for p in [out, public_path.as_path()] {
        anyhow::ensure!(
            !p.exists(),
            "{} already exists: not overwriting it",
            p.display()
        );
    }
    let key = ed25519_dalek::SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    let public = hex::encode(key.verifying_key().to_bytes());
    create_new(out, &format!("{}\n", hex::encode(key.to_bytes())), true)?;
    create_new(&public_path, &format!("{public}\n"), false)?;
    println!("public key: {public}");
    println!(
        "secret key written to {} (keep it off the hub), public key to {}",
        out.display(),
        public_path.display()
    );
    Ok(())
}

/// `busbar hub init --dir DIR --public-key FILE.pub`.
fn init(dir: &Path, public_key: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(public_key)
        .with_context(|| format!("cannot read public key {}", public_key.display()))?;
    let key = protocol::parse_public_key(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", public_key.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let token = fresh_token();
    let config = HubConfig::new(token_sha256(&token), hex::encode(key.to_bytes()));
    let text = toml::to_string(&config).context("cannot serialize hub.toml")?;
    create_new(&dir.join(super::config::HUB_TOML), &text, true)?;
    FleetDir::new(dir)
        .create_subdirs()
        .with_context(|| format!("cannot create the dirs of {}", dir.display()))?;
    println!("admin token: {token}");
    println!(
        "fleet dir {} ready (the token is stored only hashed: keep it)",
        dir.display()
    );
    Ok(())
}

/// `busbar hub add-node --dir DIR ID [--tag T]...`.
fn add_node(dir: &Path, id: &str, tags: Vec<String>) -> anyhow::Result<()> {
    check_id(id).map_err(|e| anyhow::anyhow!("node id: {e}"))?;
    for t in &tags {
        check_id(t).map_err(|e| anyhow::anyhow!("--tag: {e}"))?;
    }
    let token = fresh_token();
    HubConfig::edit(dir, |config| {
        anyhow::ensure!(
            !config.nodes.contains_key(id),
            "hub.toml already has node `{id}` (revoke it, or pick another id)"
        );
        config.nodes.insert(
            id.into(),
            NodeEntry {
                token_sha256: token_sha256(&token),
                tags,
                debug: false,
                revoked: false,
            },
        );
        Ok(())
    })?;
    println!("node token: {token}");
    Ok(())
}

/// Changes node `id` of `hub.toml` with `change`.
fn edit_node(dir: &Path, id: &str, change: impl FnOnce(&mut NodeEntry)) -> anyhow::Result<()> {
    HubConfig::edit(dir, |config| {
        change(config.node_mut(id)?);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keygen_init_and_node_edits_make_a_valid_hub_toml() {
        let tmp = tempfile::tempdir().unwrap();
        let key = tmp.path().join("fleet.key");
        keygen(&key).unwrap();
        assert!(
            keygen(&key)
                .unwrap_err()
                .to_string()
                .contains("already exists")
        );
        let secret = std::fs::read_to_string(&key).unwrap();
        let public = std::fs::read_to_string(public_key_path(&key)).unwrap();
        assert_eq!(
            protocol::parse_secret_key(&secret).unwrap().verifying_key(),
            protocol::parse_public_key(&public).unwrap()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        let dir = tmp.path().join("fleet");
        init(&dir, &public_key_path(&key)).unwrap();
        assert!(init(&dir, &public_key_path(&key)).is_err());
        assert!(dir.join("blobs").is_dir() && dir.join("logs").is_dir());
        add_node(&dir, "gw1", vec!["lab".into()]).unwrap();
        assert!(
            add_node(&dir, "gw1", vec![])
                .unwrap_err()
                .to_string()
                .contains("already")
        );
        assert!(add_node(&dir, "bad id", vec![]).is_err());
        edit_node(&dir, "gw1", |n| n.debug = true).unwrap();
        edit_node(&dir, "gw1", |n| n.revoked = true).unwrap();
        assert!(edit_node(&dir, "gw9", |_| ()).is_err());
        let config = HubConfig::load(&dir).unwrap();
        let gw1 = &config.nodes["gw1"];
        assert!(gw1.debug && gw1.revoked && gw1.tags == ["lab"]);
    }

    #[test]
    fn the_command_lines_parse() {
        use clap::{CommandFactory as _, Parser as _};
        /// `busbar` with only its `hub` command.
        #[derive(clap::Parser)]
        struct Cli {
            #[command(subcommand)]
            command: Command,
        }
        #[derive(clap::Subcommand)]
        enum Command {
            Hub(HubArgs),
        }
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "busbar",
            "hub",
            "publish",
            "--hub",
            "http://h",
            "--token",
            "t",
            "--key",
            "k",
            "--service",
            "echo",
            "--component",
            "e.wasm",
            "--node",
            "gw1",
            "--tag",
            "lab",
            "--config",
            "n=3",
            "--disabled",
        ])
        .unwrap();
        let Command::Hub(HubArgs {
            command: HubCommand::Publish(p),
        }) = cli.command
        else {
            panic!("not hub publish");
        };
        assert_eq!((p.nodes, p.tags), (vec!["gw1".into()], vec!["lab".into()]));
        for line in [
            &["busbar", "hub", "set-debug", "--dir", "d", "gw1", "on"][..],
            &["busbar", "hub", "logs", "--hub", "h", "--token", "t", "gw1"],
            &[
                "busbar",
                "hub",
                "serve",
                "--dir",
                "d",
                "--listen",
                "127.0.0.1:0",
            ],
            &[
                "busbar", "hub", "add-node", "--dir", "d", "gw1", "--tag", "a", "--tag", "b",
            ],
        ] {
            Cli::try_parse_from(line).unwrap();
        }
    }
}
