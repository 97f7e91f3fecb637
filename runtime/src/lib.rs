//! busbar: a service runtime for IoT edge gateways.
//!
//! Every service is a WebAssembly component behind the `busbar:service` WIT contract
//! (`wit/`). A [`node::Node`] runs many of them:
//!
//! - [`engine`] builds the one wasmtime engine (pooling allocator, epoch deadlines);
//!   [`component`] loads and checks components, [`cache`] keeps compiled ones on disk,
//!   [`precompiled`] reads and writes artifacts compiled for other machines.
//! - [`bus`] is the orchestrator's routing: one entry point, a lock-free routing table and a
//!   bounded mailbox per service.
//! - [`service`] runs one service: an instance in its own store, fed its mailbox by a
//!   supervising task that restarts it after faults; [`host`] implements its imports.
//! - [`com`] is the link towards the IoT hub; [`logger`] turns messages into log lines;
//!   [`orchestrator`] answers questions about the node's services.
//! - [`manifest`] says which services run; [`config`] says how the node runs.
//! - [`admin`] is the operators' HTTP API (JSON-RPC, events, status, metrics), fed by
//!   [`observe`]; [`client`] is its command-line side.
//!
//! - [`fleet`] is the protocol between nodes and the fleet hub; [`hub`] is the hub.
//! - What keeps outsiders in bounds: [`digest`] (sha256 checked where it enters),
//!   [`read_file`] (regular files of bounded size), [`serve`] (HTTP with a connection cap
//!   and header deadlines, for the admin API and the hub), [`fleet::bounds`] (the sizes of
//!   the fleet protocol's bodies); [`supervise`] watches the long-lived tasks.
//!
//! The `busbar` binary ([`cli`]) wraps all of it.

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
pub mod service;
