//! Capabilities a manifest grants a service, as it states them (default deny). The node makes
//! them concrete (`busbar::grants::Granted`).

use serde::{Deserialize, Serialize};

/// Where a service sees its data folder.
pub const GUEST_DATA_DIR: &str = "/data";

/// What the manifest grants one service. Everything is off by default.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Grants {
    /// Environment variables it sees, copied from the node's environment when set there.
    pub env: Vec<String>,
    /// A folder of its own, `{data_dir}/services/{name}`, seen as `/data`.
    pub data: Option<DataAccess>,
    /// Services it may address with `submit-action` and `call`; `*` for any (and broadcast).
    pub destinations: Vec<String>,
    /// May use the control actions of the internal services (e.g. `orchestrator`
    /// `dead-letters`, which shows other services' messages).
    pub privileged: bool,
    /// Addresses it may connect and send to over TCP and UDP (`wasi:sockets`). Empty (the
    /// default): every socket call fails with "access denied". Never listening, never name
    /// lookup. Left out of the encoding when empty, so entries signed before it existed keep
    /// their signature.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub network: Vec<crate::outbound::OutboundRule>,
}

/// How a service may use its data folder.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum DataAccess {
    /// Read files, list folders.
    ReadOnly,
    /// Also create, write and delete.
    ReadWrite,
}
