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

mod clock;
pub use clock::Clock;

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
    /// Kept so that `leader` never reports a closed channel.
    _leads: Arc<watch::Sender<bool>>,
}

impl<M: StateMachine> Clone for Replica<M> {
    fn clone(&self) -> Self {
        Replica {
            store: self.store.clone(),
            machine: self.machine.clone(),
            clock: self.clock.clone(),
            leader: self.leader.clone(),
            _leads: self._leads.clone(),
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
        Replica { store, machine: Arc::new(machine), clock, leader, _leads: Arc::new(leads) }
    }

    /// Applies `command` on the group and returns what applying it answered, once it is as
    /// durable as the group promises (committed on a majority and applied here). A replica
    /// that does not lead answers `not_leader` with the leader's address when it knows it.
    pub async fn propose(&self, command: M::Command) -> Result<M::Output, ApiError> {
        let machine = self.machine.clone();
        let ctx = Context { index: 0, now_ms: self.clock.now_ms() };
        self.store.write(move |c| machine.apply(c, &command, &ctx)).await
    }

    /// Runs `f` on a state that includes every write acknowledged before this call began
    /// (a linearizable read).
    pub async fn read<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, ApiError> + Send + 'static,
    {
        self.store.read(f).await
    }

    /// Runs `f` on this replica's own copy, which may lag the group's latest writes: for
    /// the calls docs/semantics.md allows to be stale.
    pub async fn read_local<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, ApiError> + Send + 'static,
    {
        self.store.read(f).await
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
}
