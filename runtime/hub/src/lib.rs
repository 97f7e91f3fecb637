//! busbar-hub: the fleet protocol and the fleet hub, without wasmtime (a hub runs on a cloud
//! machine and never runs a service).
//!
//! - The protocol between nodes and the hub: [`protocol`] (the bodies), [`bounds`] (their
//!   sizes, checked on both sides), [`signing`] (publisher signatures over components and
//!   service entries).
//! - The hub (`busbar hub ...`) serves nodes their manifests and signed components, takes
//!   their status, events and forwarded logs, and lets admins publish. It keeps everything in
//!   one fleet dir ([`files`]): `hub.toml` ([`config`]) with the tokens (hashed) and the
//!   nodes, the uploaded components, the manifest layers ([`layers`]: all nodes, per tag, per
//!   node) and what nodes reported ([`store`], SQLite). [`server`] serves [`node_api`] for nodes and
//!   [`admin_api`] for admins; [`client`] and [`cli`] are the admin's command-line side.
//!   All of the hub is the `hub` feature (default): a gateway's node, built without it, keeps
//!   only the protocol.

pub mod bounds;
pub mod protocol;
pub mod signing;

#[cfg(feature = "hub")]
pub mod admin_api;
#[cfg(feature = "hub")]
pub mod blobs;
#[cfg(feature = "hub")]
pub mod cli;
#[cfg(feature = "hub")]
pub mod client;
#[cfg(feature = "hub")]
pub mod config;
#[cfg(feature = "hub")]
pub mod console;
#[cfg(feature = "hub")]
pub mod entry;
#[cfg(feature = "hub")]
pub mod error;
#[cfg(feature = "hub")]
pub mod files;
#[cfg(feature = "hub")]
pub mod layers;
#[cfg(feature = "hub")]
pub mod node_admin;
#[cfg(feature = "hub")]
pub mod node_api;
#[cfg(feature = "hub")]
pub mod publish;
#[cfg(feature = "hub")]
pub mod rollout;
#[cfg(feature = "hub")]
pub mod server;
#[cfg(feature = "hub")]
pub mod setup;
#[cfg(feature = "hub")]
pub mod state;
#[cfg(feature = "hub")]
pub mod store;
#[cfg(feature = "hub")]
pub mod summary;
#[cfg(all(test, feature = "hub"))]
mod tests;
#[cfg(feature = "hub")]
pub mod views;

#[cfg(feature = "hub")]
pub use cli::{HubArgs, run};
#[cfg(feature = "hub")]
pub use server::HubServer;
