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
//!   node) and what nodes reported ([`records`]). [`server`] serves [`node_api`] for nodes and
//!   [`admin_api`] for admins; [`client`] and [`cli`] are the admin's command-line side.

pub mod bounds;
pub mod protocol;
pub mod signing;

pub mod admin_api;
pub mod cli;
pub mod client;
pub mod config;
pub mod error;
pub mod files;
pub mod layers;
pub mod node_api;
pub mod records;
pub mod server;
pub mod state;
#[cfg(test)]
mod tests;

pub use cli::{HubArgs, run};
pub use server::HubServer;
