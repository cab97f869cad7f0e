//! What the group's log carries and what travels between replicas.

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use agora_proto::ApiError;
use openraft::raft::{AppendEntriesRequest, TransferLeaderRequest, VoteRequest};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};

openraft::declare_raft_types!(
    /// The group's types for openraft: entries carry a [`Batch`], applying one answers
    /// [`Answers`], members are [`Member`]s. Terms, leader ids and votes are openraft's
    /// defaults (the same layout 0.9 wrote, so a log written by the earlier release reads
    /// back: DESIGN.md, "Upgrades").
    pub TypeConfig:
        D = Batch,
        R = Answers,
        NodeId = u64,
        Node = Member,
);

/// A log id of this group's log.
pub type LogId = openraft::type_config::alias::LogIdOf<TypeConfig>;
/// A vote of this group.
pub type Vote = openraft::type_config::alias::VoteOf<TypeConfig>;
/// A log entry of this group.
pub type Entry = openraft::type_config::alias::EntryOf<TypeConfig>;
/// The membership as the state machine records it.
pub type StoredMembership = openraft::type_config::alias::StoredMembershipOf<TypeConfig>;
/// What a snapshot covers.
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<TypeConfig>;
/// A snapshot: its meta and its SQLite file.
pub type Snapshot = openraft::type_config::alias::SnapshotOf<TypeConfig, SnapshotFile>;
/// openraft's metrics of this group.
pub type Metrics = openraft::RaftMetrics<TypeConfig>;

/// One log entry's commands: everything proposed while the previous entry was being
/// appended (group commit), with the proposer's clock when it formed the batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// The proposer's time, in Unix milliseconds: [`crate::Context::now_ms`] of each
    /// command.
    pub now_ms: i64,
    /// The commands, each encoded with postcard (the database's `Command` type).
    pub commands: Vec<Vec<u8>>,
}

impl std::fmt::Display for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bytes: usize = self.commands.iter().map(Vec::len).sum();
        write!(f, "{} commands, {bytes} bytes, at {}", self.commands.len(), self.now_ms)
    }
}

/// What applying an entry answered: one result per command of its batch, each output
/// encoded with postcard (the database's `Output` type). Empty for entries without
/// commands (blank and membership entries).
pub type Answers = Vec<Result<Vec<u8>, ApiError>>;

/// A member of the group as the group's membership records it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Where it listens: the database's own port (host:port).
    pub addr: String,
    /// A random number drawn when its data directory was first stamped (0: unknown). A
    /// node whose directory was wiped comes back with another one, and the group's
    /// messages to the old one are refused until it is removed and added again.
    pub incarnation: u64,
}

impl std::fmt::Display for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.addr)
    }
}

/// A replication message's body, inside [`agora_proto::messages::replication::Request`].
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Envelope {
    /// The incarnation the sender's membership records for the addressee (0: do not
    /// check).
    pub to_incarnation: u64,
    pub message: Message,
}

/// Every message a replica, or the cluster's admin, sends a replica. New variants go at
/// the end: the body is postcard, which numbers variants by position.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Message {
    /// Who are you, and do you belong to a group yet? Answered with a [`Hello`].
    Hello,
    /// How does the group stand, as you see it? Answered with a [`crate::Status`]; one of
    /// the messages the cluster's admin may send (`agora cluster status`), to any node
    /// (addressee 0).
    Status,
    /// Add node `id`, listening at `addr`, as a learner, and answer once it has caught up
    /// (`agora cluster add`, first step). Only the leader can.
    AddLearner {
        id: u64,
        addr: String,
    },
    /// Make `voters` the group's voters: a learner among them becomes one, a member left
    /// out leaves the group (`agora cluster add`, second step, and `remove`). Only the
    /// leader can.
    SetVoters {
        voters: std::collections::BTreeSet<u64>,
    },
    Vote(VoteRequest<TypeConfig>),
    Append(AppendEntriesRequest<TypeConfig>),
    /// A piece of a snapshot file: `offset` is where `data` goes; `done` once it is the
    /// last. The receiver installs the file when the last piece is in.
    SnapshotChunk(SnapshotChunk),
    /// Would you vote for this candidate? (Pre-Vote: nothing is persisted.)
    PreVote(VoteRequest<TypeConfig>),
    /// The leader hands its leadership to the node the request names.
    TransferLeader(TransferLeaderRequest<TypeConfig>),
    /// Hand your leadership over (to `to`, or to the most up-to-date voter) and answer
    /// once another node leads (`agora cluster transfer-leader`). Only the leader can.
    HandOver {
        to: Option<u64>,
    },
    /// Member `id` now listens at `addr` (it moved to another host or port): the group's
    /// membership records the new address (`agora cluster set-address`). Only the leader
    /// can.
    SetAddress {
        id: u64,
        addr: String,
    },
}

/// One piece of a snapshot in transfer ([`Message::SnapshotChunk`]).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SnapshotChunk {
    /// The leader's vote: the receiver refuses a snapshot from a leader it no longer
    /// follows.
    pub vote: Vote,
    /// What the whole snapshot covers; the same in every piece of one transfer.
    pub meta: SnapshotMeta,
    /// A number the sender draws for this transfer: a piece of another transfer (a retry
    /// after a failure) starts the file over.
    pub transfer: u64,
    pub offset: u64,
    pub data: Vec<u8>,
    pub done: bool,
}

/// The answer to [`Message::Hello`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Hello {
    /// Whether this node already holds a group's state (a vote, log or membership).
    pub initialized: bool,
    /// Its [`Member::incarnation`].
    pub incarnation: u64,
}

/// A snapshot: a SQLite file, open, with its path (installing one reads it as a database,
/// not as a stream).
#[derive(Debug)]
pub struct SnapshotFile {
    pub(crate) file: tokio::fs::File,
    pub(crate) path: PathBuf,
}

impl AsyncRead for SnapshotFile {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_read(cx, buf)
    }
}

impl AsyncWrite for SnapshotFile {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.file).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_shutdown(cx)
    }
}

impl AsyncSeek for SnapshotFile {
    fn start_seek(mut self: Pin<&mut Self>, position: io::SeekFrom) -> io::Result<()> {
        Pin::new(&mut self.file).start_seek(position)
    }

    fn poll_complete(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        Pin::new(&mut self.file).poll_complete(cx)
    }
}
