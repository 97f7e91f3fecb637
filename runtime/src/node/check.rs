//! A service entry checked as `run` would take it: its component loaded (digest, imports,
//! world) and instantiated in the sandbox the node would give it (its limits and grants),
//! without calling `start`. `busbar check`, SIGHUP and the fleet client use it, so what one
//! says ok also starts.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;

use super::NodeSettings;
use crate::component::{ComponentSource, LoadedComponent, Loader};
use crate::config::NodeConfig;
use crate::manifest::ServiceEntry;

/// Loads `entry`'s component and instantiates it in its sandbox, its data folder (when
/// granted) under `data_dir`; says how the compiled code was obtained.
pub(super) async fn trial(
    loader: &Loader,
    settings: &NodeSettings,
    entry: &ServiceEntry,
    data_dir: &Path,
) -> anyhow::Result<Arc<LoadedComponent>> {
    let component = loader.load(&ComponentSource::of(entry)).await?;
    let spec = settings.spec(entry, data_dir)?;
    spec.trial(&component)
        .await
        .map_err(|fault| anyhow::anyhow!("it does not instantiate in its sandbox: {fault}"))?;
    Ok(component)
}

/// What `busbar check` does for one entry of a node with `config`: [`trial`] with a scratch
/// data folder, so checking writes nothing where the node keeps its state.
pub async fn check_entry(
    loader: &Loader,
    config: &NodeConfig,
    entry: &ServiceEntry,
) -> anyhow::Result<Arc<LoadedComponent>> {
    let scratch = tempfile::tempdir().context("creating a scratch folder for the check")?;
    trial(loader, &NodeSettings::of(config), entry, scratch.path()).await
}
