//! The fleet control plane as a node sees it: sign in to the hub, follow its manifest,
//! download and verify components into a local cache, apply them (hot-swapping new versions),
//! remember the last good manifest for offline starts, and report back.

mod client;
mod download;
mod identity;
mod store;
mod sync;

pub use crate::config::fleet::FleetConfig;
pub use busbar_hub::{bounds, protocol, signing};
pub use client::{HubClient, HubError};
pub use store::{FleetState, Store};
pub use sync::Fleet;
