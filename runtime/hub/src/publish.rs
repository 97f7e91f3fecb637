//! `busbar hub publish`: compile the component for the engines of the nodes it reaches (on
//! the publisher's machine, with the compiler the `busbar` binary brings), sign the entry and
//! each artifact, upload them, then publish.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use super::client::{AdminArgs, HubClient};
use super::entry::{EntryArgs, Signed, sign_entry};
use crate::protocol::{
    self, Artifact, Engines, NodeEngine, Publish, Published, SIGNATURE_HEADER, Targets,
};
use busbar_base::digest::{Fingerprint, Sha256};

/// What `busbar hub publish` needs to make precompiled artifacts: a compiler. The hub crate
/// has no wasmtime; the `busbar` binary brings one (or none, in a build without compiler).
pub trait ArtifactCompiler: Send + Sync {
    /// The engine of a node of `target` with the `[engine]` settings of `node_config` (or
    /// the defaults): what `--target` publishes for.
    fn engine_for(
        &self,
        target: &str,
        node_config: Option<&std::path::Path>,
    ) -> anyhow::Result<NodeEngine>;
    /// The fingerprint this compiler gives an engine for `target` with `engine`'s settings:
    /// when it is not the one the node announced, the node runs another busbar or wasmtime
    /// and no artifact made here would load there.
    fn fingerprint(&self, target: &str, engine: &NodeEngine) -> Fingerprint;
    /// Compiles `wasm` for `target` and `engine`: the artifact file.
    fn compile(&self, wasm: &[u8], target: &str, engine: &NodeEngine) -> anyhow::Result<Vec<u8>>;
}

/// `busbar hub publish`.
#[derive(Debug, Args)]
pub struct HubPublishArgs {
    /// How to reach the hub.
    #[command(flatten)]
    pub admin: AdminArgs,
    /// The entry.
    #[command(flatten)]
    pub entry: EntryArgs,
    /// Publish to this node (repeatable).
    #[arg(long = "node")]
    pub nodes: Vec<String>,
    /// Publish to nodes with this tag (repeatable). No --node and no --tag: every node.
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Compile artifacts for this node target (repeatable), with the `[engine]` settings of
    /// --node-config. Without it: for every target and engine the nodes reached announced.
    #[arg(long = "target")]
    pub targets: Vec<String>,
    /// The node config whose `[engine]` settings --target compiles for (default: the
    /// built-in ones).
    #[arg(long)]
    pub node_config: Option<PathBuf>,
    /// Publish the component alone: nodes compile it themselves (gateway builds cannot).
    #[arg(long, conflicts_with = "targets")]
    pub no_artifacts: bool,
}

/// The targets and engines to compile for, with the nodes of each: those `--target` names,
/// else those the nodes reached announced. Says which nodes get no artifact and why.
async fn engines_wanted(
    hub: &HubClient,
    args: &HubPublishArgs,
    compiler: Option<&dyn ArtifactCompiler>,
) -> anyhow::Result<Vec<(String, NodeEngine, Vec<String>)>> {
    if args.no_artifacts {
        return Ok(Vec::new());
    }
    let Some(compiler) = compiler else {
        anyhow::ensure!(
            args.targets.is_empty(),
            "--target: this busbar was built without a compiler; publish from the full build"
        );
        println!(
            "this busbar has no compiler: publishing the component without artifacts (nodes \
             compile it themselves; gateway builds cannot)"
        );
        return Ok(Vec::new());
    };
    if !args.targets.is_empty() {
        let mut targets = args.targets.clone();
        targets.sort();
        targets.dedup();
        anyhow::ensure!(
            targets.len() <= crate::bounds::MAX_ARTIFACTS,
            "--target: at most {} targets",
            crate::bounds::MAX_ARTIFACTS
        );
        let mut out = Vec::new();
        for t in &targets {
            crate::bounds::check_target(t).map_err(|e| anyhow::anyhow!("--target: {e}"))?;
            out.push((
                t.clone(),
                compiler.engine_for(t, args.node_config.as_deref())?,
                Vec::new(),
            ));
        }
        return Ok(out);
    }
    let engines: Engines = hub
        .send(
            hub.request(reqwest::Method::POST, "/v1/admin/engines")
                .json(&Targets {
                    nodes: args.nodes.clone(),
                    tags: args.tags.clone(),
                }),
        )
        .await?
        .json()
        .await
        .context("the hub's answer about its nodes' engines is not JSON")?;
    if !engines.unknown.is_empty() {
        println!(
            "no artifact for {}: not signed in yet with an engine (they compile the component \
             themselves; gateway builds cannot: publish again once they signed in)",
            engines.unknown.join(", ")
        );
    }
    let mut out = Vec::new();
    for group in engines.engines {
        if out.len() == crate::bounds::MAX_ARTIFACTS {
            println!(
                "no artifact for {} ({}, engine {}): an entry holds at most {} artifacts",
                group.nodes.join(", "),
                group.target,
                group.engine.fingerprint,
                crate::bounds::MAX_ARTIFACTS
            );
            continue;
        }
        crate::bounds::check_target(&group.target)
            .map_err(|e| anyhow::anyhow!("the hub's engines: {e}"))?;
        let ours = compiler.fingerprint(&group.target, &group.engine);
        if ours == group.engine.fingerprint {
            out.push((group.target, group.engine, group.nodes));
        } else {
            println!(
                "no artifact for {} ({}, engine {}): they run another busbar or wasmtime than \
                 this one (which makes engine {ours} for them); publish from their busbar \
                 version{}",
                group.nodes.join(", "),
                group.target,
                group.engine.fingerprint,
                if group.engine.compiler {
                    ", or let them compile it"
                } else {
                    " (they have no compiler and will refuse this version)"
                }
            );
        }
    }
    Ok(out)
}

/// Compiles, signs and uploads one artifact of the component `wasm` (sha256 `component`).
async fn make_artifact(
    hub: &HubClient,
    compiler: &dyn ArtifactCompiler,
    key: &ed25519_dalek::SigningKey,
    wasm: &std::sync::Arc<Vec<u8>>,
    component: &Sha256,
    target: &str,
    engine: &NodeEngine,
) -> anyhow::Result<Artifact> {
    // Compiling takes seconds of CPU (Python components: several per target).
    let bytes = tokio::task::block_in_place(|| compiler.compile(wasm, target, engine))?;
    let mut artifact = Artifact {
        target: target.to_owned(),
        fingerprint: engine.fingerprint.clone(),
        sha256: Sha256::of(&bytes),
        size: bytes.len() as u64,
        signature: String::new(),
    };
    anyhow::ensure!(
        artifact.size <= crate::bounds::MAX_ARTIFACT_BYTES,
        "the artifact has {} bytes, more than the {} the hub takes",
        artifact.size,
        crate::bounds::MAX_ARTIFACT_BYTES
    );
    protocol::sign_artifact(key, component, &mut artifact);
    hub.send(
        hub.request(
            reqwest::Method::PUT,
            &format!("/v1/admin/artifacts/{}", artifact.sha256),
        )
        .query(&[
            ("component", component.as_str()),
            ("target", target),
            ("fingerprint", artifact.fingerprint.as_str()),
        ])
        .header(SIGNATURE_HEADER, &artifact.signature)
        .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
        .body(bytes),
    )
    .await?;
    Ok(artifact)
}

/// `busbar hub publish`: compile the component for the nodes' engines (with `compiler`),
/// upload it and its artifacts with their signatures, then publish it.
pub async fn publish(
    args: &HubPublishArgs,
    compiler: Option<&dyn ArtifactCompiler>,
) -> anyhow::Result<()> {
    let Signed {
        key,
        wasm,
        digest,
        mut service,
        signature,
    } = sign_entry(&args.entry)?;
    let sha = digest.to_string();
    let hub = HubClient::new(&args.admin);
    let wanted = engines_wanted(&hub, args, compiler).await?;
    hub.send(
        hub.request(reqwest::Method::PUT, &format!("/v1/admin/blobs/{sha}"))
            .header(SIGNATURE_HEADER, &signature)
            .header(reqwest::header::CONTENT_TYPE, "application/wasm")
            .body(wasm.clone()),
    )
    .await?;
    if let Some(compiler) = compiler {
        let wasm = std::sync::Arc::new(wasm);
        for (target, engine, nodes) in wanted {
            let made = make_artifact(&hub, compiler, &key, &wasm, &digest, &target, &engine).await;
            let artifact = match made {
                Ok(a) => a,
                // Asked for by name: the publish fails.
                Err(e) if nodes.is_empty() => {
                    return Err(e.context(format!(
                        "compiling for {target} (engine {})",
                        engine.fingerprint
                    )));
                }
                // Announced by nodes: one engine that cannot be compiled for does not hold up
                // the others.
                Err(e) => {
                    println!(
                        "no artifact for {} ({target}, engine {}): {e:#}",
                        nodes.join(", "),
                        engine.fingerprint
                    );
                    continue;
                }
            };
            println!(
                "artifact for {target} (engine {}): {:.1} MB{}",
                artifact.fingerprint,
                artifact.size as f64 / 1e6,
                if nodes.is_empty() {
                    String::new()
                } else {
                    format!(", for {}", nodes.join(", "))
                }
            );
            service.artifacts.push(artifact);
        }
    }
    let publish = Publish {
        service,
        nodes: args.nodes.clone(),
        tags: args.tags.clone(),
    };
    let published: Published = hub
        .send(
            hub.request(reqwest::Method::POST, "/v1/admin/publish")
                .json(&publish),
        )
        .await?
        .json()
        .await
        .context("the hub's answer to the publish is not JSON")?;
    println!(
        "published {} {} to {}",
        args.entry.service,
        digest.short(),
        published.manifests.join(", ")
    );
    Ok(())
}
