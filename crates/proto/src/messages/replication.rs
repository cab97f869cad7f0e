//! The envelope of a replication message (crates/replication says what travels inside).

use serde::{Deserialize, Serialize};

/// Largest replication message a server reads, in bytes: room for a snapshot chunk or a
/// run of log entries (senders keep theirs well under it), whatever the main service's
/// own limit.
pub const MAX_FRAME: u32 = 2 << 20;

/// One Raft message from a replica to another of the same group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The group: the component whose replicas these are (`product-db`, ...).
    pub group: String,
    /// The sender's node id.
    pub from: u64,
    /// The node id the sender meant to reach.
    pub to: u64,
    /// The message itself, encoded by the replication crate.
    pub body: Vec<u8>,
}

/// The answer, encoded by the replication crate.
pub type Response = Vec<u8>;
