//! busbar: a service runtime for IoT edge gateways — the node.
//!
//! Every service is a WebAssembly component behind the `busbar:service` WIT contract
//! (`wit/`). A [`node::Node`] runs many of them. The modules, from the bottom up; a module
//! uses only its own layer and those below (`tests/layers` checks it):
//!
//! 1. **Message types**: [`bindings`] (the one `bindgen!`), [`message`] (ids, errors, the
//!    JSON form of messages and replies).
//! 2. **What a node keeps**: [`observe`] (traffic, log lines, service counters), [`dead_letter`],
//!    [`desired`] (the desired state), [`engine`], [`cache`] and [`precompiled`] (compiled
//!    code), [`grants`] (capabilities made concrete).
//! 3. **[`bus`]**: routing only — the route table, bounded mailboxes, `send`, `call`, and one
//!    `finish` for every delivery.
//! 4. **[`host`]** (the imports a service calls) and [`manifest`] (which services run).
//! 5. **[`component`]** (loading and checking components) and [`service`] (one task per
//!    service: lifecycle, serving, hot swap, rollback).
//! 6. **Internal services** on the bus: [`internal`] (their shared loop), [`logger`],
//!    [`orchestrator`], [`com`] (the link towards the IoT hub), [`topics`] (services' MQTT
//!    broker connections), [`fabric`] (services on other nodes, over one of them).
//! 7. **[`node`]**, the composition root: it owns Com's stats, the dead letters and the
//!    desired state, and hands each part only what it needs; [`config`] says how it runs.
//! 8. **Edges**: [`fleet`] (the node's side of the fleet hub), [`admin`] (the operators' HTTP
//!    API) and [`client`] (its command-line side), [`daemon`] (the long-running process),
//!    [`logging`], [`publisher`] (the compiler `busbar hub publish` makes artifacts with),
//!    and [`cli`], which the `busbar` binary wraps.
//!
//! Below all of them: `busbar_base` (what the node and the hub share: the service-entry
//! vocabulary, bounded input, serving, supervision) and `busbar_hub` (the fleet protocol and
//! the hub), neither of which builds wasmtime.

pub mod admin;
pub mod bindings;
pub mod bus;
pub mod cache;
pub mod cli;
pub mod client;
pub mod com;
pub mod component;
pub mod config;
pub mod daemon;
pub mod dead_letter;
pub mod desired;
pub mod engine;
pub mod fabric;
pub mod fleet;
pub mod grants;
pub mod host;
pub mod internal;
pub mod logger;
pub mod logging;
pub mod manifest;
pub mod message;
pub mod node;
pub mod observe;
pub mod orchestrator;
pub mod precompiled;
#[cfg(feature = "hub")]
pub mod publisher;
pub mod service;
pub mod topics;
