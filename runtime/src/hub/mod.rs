//! The fleet hub (`busbar hub ...`): serves nodes their manifests and signed components,
//! takes their status, events and forwarded logs, and lets admins publish.
//!
//! It keeps everything in one fleet dir ([`files`]): `hub.toml` ([`config`]) with the
//! tokens (hashed) and the nodes, the uploaded components, the manifest layers
//! ([`layers`]: all nodes, per tag, per node) and what nodes reported ([`records`]).
//! [`server`] serves the protocol of [`crate::fleet::protocol`]: [`node_api`] for nodes,
//! [`admin_api`] for admins; [`client`] is the admin's command-line side.

pub mod admin_api;
pub mod cli;
pub mod client;
pub mod config;
pub mod error;
pub mod files;
pub mod layers;
pub mod node_api;
pub mod range;
pub mod records;
pub mod server;
pub mod state;
#[cfg(test)]
mod tests;

pub use cli::{HubArgs, run};
pub use server::HubServer;
