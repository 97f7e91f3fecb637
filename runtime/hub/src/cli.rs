//! `busbar hub ...`: set up a fleet dir, manage its nodes, serve it, and talk to a running
//! hub as an admin.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use super::client::{self, AdminArgs};
use super::entry::{self, HubSignArgs};
use super::publish::{self, ArtifactCompiler, HubPublishArgs};
use super::server::HubServer;
use super::setup::{add_node, edit_node, init, keygen};

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
    /// Add a node with a fresh token (printed once); a revoked node comes back with a new one.
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

#[cfg(test)]
mod tests {
    use super::*;

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
