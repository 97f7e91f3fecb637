//! A service entry checked as `run` would take it: its component loaded (digest, imports,
//! world) and instantiated in the sandbox the node would give it (its limits and grants,
//! with a scratch data folder), without calling `start`. `busbar check`, SIGHUP and the
//! fleet client use it, so what one refuses, all refuse.

use std::sync::Arc;

use anyhow::Context as _;

use super::NodeSettings;
use crate::component::{ComponentSource, LoadedComponent, Loader};
use crate::config::NodeConfig;
use crate::manifest::ServiceEntry;
use crate::service::Fault;

/// Loads `entry`'s component and instantiates it in its sandbox, its data folder (when
/// granted) in a scratch folder. An engine with no free slot at the moment is not the
/// component's fault: then it is only loaded (its start instantiates it as this would).
pub(super) async fn trial(
    loader: &Loader,
    settings: &NodeSettings,
    entry: &ServiceEntry,
) -> anyhow::Result<Arc<LoadedComponent>> {
    let component = loader.load(&ComponentSource::of(entry)).await?;
    let scratch = tempfile::tempdir().context("creating a scratch folder for the check")?;
    let spec = settings.spec(entry, scratch.path())?;
    match spec.trial(&component).await {
        Ok(()) => Ok(component),
        Err(Fault::EngineFull(why)) => {
            tracing::info!(service = %entry.name, "not instantiated to check it now ({why}); its start will");
            Ok(component)
        }
        Err(fault) => Err(anyhow::anyhow!(
            "it does not instantiate in its sandbox: {fault}"
        )),
    }
}

/// What `busbar check` does for one entry of a node with `config`: [`trial`].
pub async fn check_entry(
    loader: &Loader,
    config: &NodeConfig,
    entry: &ServiceEntry,
) -> anyhow::Result<Arc<LoadedComponent>> {
    trial(loader, &NodeSettings::of(config)?, entry).await
}
