//! busbar-base: what every busbar program shares, and nothing that runs wasm (no wasmtime).
//!
//! - The vocabulary of a service entry, as manifests and the fleet protocol state it:
//!   [`names`], [`address`] (`service@node` across gateways), [`limits`], [`grants`] (with [`outbound`] network rules and [`topic`]
//!   filters), and [`digest`]
//!   (sha256 checked where it enters).
//! - What keeps outsiders in bounds: [`read_file`] (regular files of bounded size),
//!   [`serve`] (HTTP with a connection cap and header deadlines), [`net`] (HTTP client, TLS,
//!   backoff).
//! - Plumbing: [`supervise`] (long-lived tasks restarted with backoff), [`files`] (atomic
//!   writes), [`sync`] (poison-tolerant locks), [`time`], and for the command-line tools
//!   [`command`] and [`exit`] (exit codes).
//!
//! The node (`busbar`) and the fleet hub (`busbar-hub`) both build on it.

pub mod address;
pub mod command;
pub mod digest;
pub mod exit;
pub mod files;
pub mod grants;
pub mod limits;
pub mod names;
pub mod net;
pub mod outbound;
pub mod read_file;
pub mod serve;
pub mod supervise;
pub mod sync;
pub mod time;
pub mod topic;
