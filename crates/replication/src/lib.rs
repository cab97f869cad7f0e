//! Replicated state machines for Agora's databases.
//!
//! A database is split in two halves that meet at a **command**:
//!
//! - its handlers *decide*: they check the request, read what they need and take every
//!   decision that could come out differently on another machine (random tokens, salts and
//!   password hashes, card approvals) into a command of the database's own type;
//! - its [`StateMachine::apply`] *applies* a command to the SQLite file: deterministic, so
//!   that every replica that applies the same commands in the same order holds the same
//!   rows. Whatever apply may know besides the command (the command's log position, the
//!   leader's clock when it proposed it) comes in the [`Context`].
//!
//! A [`Replica`] stands between the two. Alone ([`Replica::single`]) it applies each
//! command on this process's store at once, in the store's group-committed batches: the
//! unreplicated database, as fast as before. In a group it proposes the command to the
//! group's log and answers once the command is committed on a majority and applied here
//! (DESIGN.md beside this crate).

use std::fmt::Debug;
use std::sync::Arc;

use agora_proto::ApiError;
use agora_store::Store;
use rusqlite::Connection;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

mod admin;
mod clock;
mod config;
mod group;
mod host;
mod log_store;
mod machine;
mod network;
mod propose;
mod read;
mod serve;
mod stamp;
mod store_errors;
mod transfer;
mod types;

pub use admin::{
    MemberStatus, Status, add_learner_at, agreed_leader, set_address_at, set_voters_at, status_of,
    transfer_leader_at,
};
pub use clock::Clock;
pub use config::{GroupConfig, GroupError, Peers, parse_peers, replica_flags};
pub use host::{Database, HostError, Hosting};
pub use serve::Hosted;
pub use stamp::check_stamp;
pub use store_errors::{db_error, store_answer, store_error};
pub use types::{Member, Metrics, TypeConfig};

impl Peers {
    /// How a database whose files live in `data_dir` runs: alone without `peers`, else
    /// with these group settings, once a directory that belongs to another group,
    /// cluster or node has been refused. Called before the database opens its file
    /// there, so that a refused directory is left exactly as it was.
    pub fn prepare(
        peers: Option<&Peers>,
        data_dir: &std::path::Path,
        trust: &agora_proto::Trust,
        durability: agora_store::Durability,
    ) -> Result<Option<GroupConfig>, GroupError> {
        let Some(peers) = peers else { return Ok(None) };
        let config = peers.config(data_dir, trust.clone(), durability);
        config.refuse_foreign_data()?;
        Ok(Some(config))
    }
}

/// What applying a command may know besides the command itself: the same on every replica
/// that applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Context {
    /// The command's position in its group's log; 0 for a database that is not replicated.
    pub index: u64,
    /// The proposer's clock when it proposed the command, in milliseconds since the Unix
    /// epoch. Apply reads the time from here, never from the machine it runs on.
    pub now_ms: i64,
}

/// A database's deterministic half: how a decided command changes its SQLite file.
pub trait StateMachine: Send + Sync + 'static {
    /// A decided write. It carries every value that a replica could not compute by itself
    /// the same way (see the crate's documentation).
    type Command: Serialize + DeserializeOwned + Debug + Clone + Send + Sync + 'static;
    /// What applying a command answers.
    type Output: Serialize + DeserializeOwned + Debug + Send + Sync + 'static;

    /// Applies `command` inside the open write transaction. The same state, command and
    /// context must give the same changes and the same answer on every machine: no clock,
    /// no randomness, no state outside the connection. An `Err` is an answer too (a
    /// refusal, such as "not enough units"): everything the command wrote is undone and
    /// the error goes back to the proposer.
    fn apply(
        &self,
        conn: &Connection,
        command: &Self::Command,
        ctx: &Context,
    ) -> Result<Self::Output, ApiError>;
}

/// This process's member of a database's group: where the database's handlers send
/// commands and reads.
pub struct Replica<M: StateMachine> {
    store: Store,
    machine: Arc<M>,
    /// The proposer's clock, read into each command's [`Context`].
    clock: Clock,
    leader: watch::Receiver<bool>,
    /// Kept, alone, so that `leader` never reports a closed channel.
    _leads: Option<Arc<watch::Sender<bool>>>,
    /// The group this replica belongs to; `None` alone.
    pub(crate) group: Option<Arc<group::Group>>,
}

impl<M: StateMachine> Clone for Replica<M> {
    fn clone(&self) -> Self {
        Replica {
            store: self.store.clone(),
            machine: self.machine.clone(),
            clock: self.clock.clone(),
            leader: self.leader.clone(),
            _leads: self._leads.clone(),
            group: self.group.clone(),
        }
    }
}

impl<M: StateMachine> Debug for Replica<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica").field("leader", &*self.leader.borrow()).finish()
    }
}

impl<M: StateMachine> Replica<M> {
    /// A database that is not replicated: it leads itself, and a command is applied in
    /// the store's next batch, acknowledged once that batch is committed. `clock` gives
    /// each command's time.
    pub fn single(store: Store, machine: M, clock: Clock) -> Self {
        let (leads, leader) = watch::channel(true);
        Replica {
            store,
            machine: Arc::new(machine),
            clock,
            leader,
            _leads: Some(Arc::new(leads)),
            group: None,
        }
    }

    /// A replica of its database's group (DESIGN.md): `store` is this replica's own
    /// database file and `config` says who the group is. The group's messages reach it
    /// through `hosted`, which the database's port serves (`agora_proto::serve_with`);
    /// every group of one process shares it, and with it one connection per peer.
    ///
    /// Refuses to start, changing nothing, on a data directory stamped by another group,
    /// cluster or node. On a new directory the lowest node id initializes the group once
    /// every peer has answered that it belongs to none yet; a restarted replica never
    /// initializes, it rejoins.
    pub async fn group(
        config: GroupConfig,
        store: Store,
        machine: M,
        clock: Clock,
        hosted: &Hosted,
    ) -> Result<Self, GroupError> {
        let machine = Arc::new(machine);
        let apply = Arc::new(machine::Typed(machine.clone()));
        let node =
            group::Group::start(config, store.clone(), apply, clock.clone(), hosted.channels())
                .await?;
        hosted.add(node.clone());
        let leader = node.leadership();
        Ok(Replica { store, machine, clock, leader, _leads: None, group: Some(node) })
    }

    /// The replica a database runs as, the one way every database starts one: alone
    /// without `group`, else a member of it, its messages served through the returned
    /// [`Hosted`] (what the database's server must serve beside the database,
    /// `agora_proto::serve_with`).
    pub async fn start(
        group: Option<GroupConfig>,
        store: Store,
        machine: M,
        clock: Clock,
    ) -> Result<(Self, Option<Hosted>), GroupError> {
        match group {
            None => Ok((Replica::single(store, machine, clock), None)),
            Some(config) => {
                let hosted = Hosted::default();
                let replica = Replica::group(config, store, machine, clock, &hosted).await?;
                Ok((replica, Some(hosted)))
            }
        }
    }

    /// `Ok` once this replica may answer from what it holds in memory: it is alone, or it
    /// has confirmed with a majority that it still leads and has applied everything
    /// committed before the call (as [`Replica::read`] does); else `not_leader`, naming
    /// the leader where it is known, or `timeout`. For answers that come from a cache of
    /// applied state rather than through [`Replica::read`]: a leader cut off from its
    /// majority must not answer them from memory once the others may have elected
    /// another.
    pub async fn ensure_leader(&self) -> Result<(), ApiError> {
        match &self.group {
            Some(group) if !*self.leader.borrow() => Err(group.not_leader_here()),
            Some(group) => group.linearize().await,
            None => Ok(()),
        }
    }

    /// Resolves, with a sentence for the log, once this replica has been taken out of its
    /// group (`agora cluster remove`); never for one that runs alone or stays a member.
    pub async fn removed(&self) -> String {
        match &self.group {
            Some(group) => group.removed().await,
            None => std::future::pending().await,
        }
    }

    /// Hands this replica's leadership to node `to` (or to the most up-to-date voter) and
    /// answers the new leader's id once it leads: before a planned restart, so that no
    /// call waits for an election. Only the leader can.
    pub async fn hand_over(
        &self,
        to: Option<u64>,
        within: std::time::Duration,
    ) -> Result<u64, ApiError> {
        self.in_group()?.hand_over(to, within).await
    }

    /// Applies `command` on the group and returns what applying it answered, once it is as
    /// durable as the group promises (committed on a majority and applied here). A replica
    /// that does not lead answers `not_leader` with the leader's address when it knows it.
    pub async fn propose(&self, command: M::Command) -> Result<M::Output, ApiError> {
        if let Some(group) = &self.group {
            let encoded = postcard::to_allocvec(&command)
                .map_err(|e| ApiError::internal(format!("cannot encode a command: {e}")))?;
            let output = group.propose(encoded).await?;
            return postcard::from_bytes(&output)
                .map_err(|e| ApiError::internal(format!("undecodable output: {e}")));
        }
        let machine = self.machine.clone();
        let ctx = Context { index: 0, now_ms: self.clock.now_ms() };
        store_answer(self.store.write(move |c| machine.apply(c, &command, &ctx)).await)
    }

    /// Runs `f` on a state that includes every write acknowledged before this call began
    /// (a linearizable read).
    pub async fn read<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, ApiError> + Send + 'static,
    {
        if let Some(group) = &self.group {
            group.linearize().await?;
        }
        store_answer(self.store.read(f).await)
    }

    /// Runs `f` on this replica's own copy, which may lag the group's latest writes: for
    /// the calls docs/semantics.md allows to be stale.
    pub async fn read_local<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, ApiError> + Send + 'static,
    {
        store_answer(self.store.read(f).await)
    }

    /// Whether this replica leads its group now, and a way to wait for that to change:
    /// work that only the leader does (the purchase coordinator) starts and stops by it.
    pub fn leadership(&self) -> watch::Receiver<bool> {
        self.leader.clone()
    }

    /// The machine the replica applies commands with.
    pub fn machine(&self) -> &M {
        &self.machine
    }

    /// The clock commands are proposed with.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The group as this replica sees it; `None` for a replica that is not in a group.
    pub async fn status(&self) -> Option<Status> {
        match &self.group {
            Some(group) => Some(group.status().await),
            None => None,
        }
    }

    /// Adds node `id`, listening at `addr`, to the group as a learner and waits until it
    /// has caught up (`agora cluster add`, first step). Only the leader can.
    pub async fn add_learner(&self, id: u64, addr: &str) -> Result<(), ApiError> {
        self.in_group()?.add_learner(id, addr).await
    }

    /// Makes `voters` the group's voters (`agora cluster add`, second step, and
    /// `remove`). Only the leader can.
    pub async fn change_membership(
        &self,
        voters: std::collections::BTreeSet<u64>,
    ) -> Result<(), ApiError> {
        self.in_group()?.change_membership(voters).await
    }

    /// Forces a snapshot of this replica's database now (tests, operators); the log
    /// before it may then be purged.
    pub async fn snapshot(&self) -> Result<(), ApiError> {
        let group = self.in_group()?;
        group
            .raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| ApiError::unavailable(format!("replication stopped: {e}")))
    }

    /// Removes this replica's log up to `index` (at most up to its last snapshot).
    pub async fn purge_log(&self, upto: u64) -> Result<(), ApiError> {
        let group = self.in_group()?;
        group
            .raft
            .trigger()
            .purge_log(upto)
            .await
            .map_err(|e| ApiError::unavailable(format!("replication stopped: {e}")))
    }

    /// The openraft node's metrics as they stand now, for callers that wait on its state;
    /// `None` for a replica that is not in a group.
    pub fn metrics(&self) -> Option<Metrics> {
        self.group.as_ref().map(|g| g.metrics())
    }

    /// Stops this replica's part in the group (its Raft and its tasks); the store stays
    /// open. Its server should stop too.
    pub async fn shutdown(&self) {
        if let Some(group) = &self.group {
            group.shutdown().await;
        }
    }

    fn in_group(&self) -> Result<&Arc<group::Group>, ApiError> {
        self.group.as_ref().ok_or_else(|| {
            ApiError::new(agora_proto::ErrorCode::BadRequest, "this database is not replicated")
        })
    }
}
