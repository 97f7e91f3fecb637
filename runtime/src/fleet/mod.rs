//! The fleet control plane as a node sees it: the protocol it shares with the hub.

pub mod protocol;
