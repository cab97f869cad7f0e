//! A replica in a group: the openraft node, its start (stamp, initialization), and the
//! two queues that let many callers share one log append (proposals) and one leadership
//! check (linearizable reads).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use agora_proto::server::ReplicationHook;
use agora_proto::{ApiError, Component, ErrorCode, Trust};
use agora_store::Durability;
use openraft::error::{CheckIsLeaderError, ClientWriteError, InitializeError, RaftError};
use openraft::{Config, Raft, ServerState, SnapshotPolicy};
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::Clock;
use crate::log_store::LogStore;
use crate::machine::{Apply, Machine};
use crate::network::{Channels, Hook, Identity, Network, Peer};
use crate::types::{Batch, Hello, Member, Message, TypeConfig};

/// How one replica joins its group.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// This replica's id in the group (`--node-id`).
    pub node_id: u64,
    /// Every voter of the group at its first start, this one included: id -> address of
    /// the database's port (`--peers`).
    pub peers: BTreeMap<u64, String>,
    /// The replica's data directory: `raft.db`, the stamp and the snapshots go here,
    /// beside the database file.
    pub data_dir: PathBuf,
    /// This node's credentials; their component names the group.
    pub trust: Trust,
    /// What an acknowledged write survives; the log follows the database's setting.
    pub durability: Durability,
    /// Log entries between snapshots.
    pub snapshot_every: u64,
    /// How long a proposal or a linearizable read waits for the group (a leader cut
    /// off from its majority cannot commit) before it answers `timeout`. A proposal that
    /// timed out may still be applied later; its op id makes a retry safe.
    pub patience: Duration,
    /// Where this node dials other members instead of the address the membership gives
    /// them, by member id. The membership's addresses are the group's, the same on every
    /// node; these are this node's alone: for a node that reaches a peer through a relay
    /// (a tunnel, a NAT). Tests route each link through a proxy they can cut this way
    /// (tests/partition.rs), which no shared address could do. Empty by default.
    pub routes: BTreeMap<u64, String>,
}

impl GroupConfig {
    /// Defaults for node `node_id` of `peers`, with its files in `data_dir`.
    pub fn new(
        node_id: u64,
        peers: BTreeMap<u64, String>,
        data_dir: impl Into<PathBuf>,
        trust: Trust,
    ) -> Self {
        GroupConfig {
            node_id,
            peers,
            data_dir: data_dir.into(),
            trust,
            durability: Durability::default(),
            snapshot_every: 10_000,
            patience: Duration::from_secs(5),
            routes: BTreeMap::new(),
        }
    }
}

/// Reads a peer list as `--peers` takes it: `1=host:port,2=host:port,...`.
pub fn parse_peers(text: &str) -> Result<BTreeMap<u64, String>, String> {
    let mut peers = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|item| !item.is_empty()) {
        let (id, addr) =
            item.split_once('=').ok_or_else(|| format!("{item:?} is not ID=HOST:PORT"))?;
        let id: u64 = id.trim().parse().map_err(|_| format!("{id:?} is not a node id"))?;
        if id == 0 {
            return Err(format!("{item:?}: node ids start at 1"));
        }
        let addr = addr.trim();
        let valid = addr
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !valid {
            return Err(format!("{addr:?} is not HOST:PORT"));
        }
        if peers.insert(id, addr.to_owned()).is_some() {
            return Err(format!("node {id} is listed twice"));
        }
    }
    if peers.is_empty() {
        return Err("no peers: list every voter as ID=HOST:PORT, separated by commas".into());
    }
    Ok(peers)
}

/// The flags that start replica `node_id` of a group as a process of its own (`agora
/// <database> ...`): its data directory, the cluster's credentials, its node id, and every
/// voter's address as `--peers` takes it ([`parse_peers`]). For launchers that start a
/// whole group on one machine (`agora up --replicas`, `agora bench --spawn --replicas`).
pub fn replica_flags(
    node_id: u64,
    peers: &BTreeMap<u64, String>,
    data_dir: &Path,
    credentials: &Path,
) -> Vec<String> {
    let peers: Vec<String> = peers.iter().map(|(id, addr)| format!("{id}={addr}")).collect();
    vec![
        "--data-dir".into(),
        data_dir.display().to_string(),
        "--credentials".into(),
        credentials.display().to_string(),
        "--node-id".into(),
        node_id.to_string(),
        "--peers".into(),
        peers.join(","),
    ]
}

/// Why a replica could not start in its group.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    /// The data directory belongs to another group, cluster or node.
    #[error(
        "{dir} holds the data of {found}, but this is {expected}: point --data-dir at this \
         replica's own directory (nothing was changed)"
    )]
    Foreign {
        /// The data directory.
        dir: PathBuf,
        /// What its stamp says.
        found: String,
        /// What this start is.
        expected: String,
    },
    /// The configuration cannot work.
    #[error("{0}")]
    Config(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// Which file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The log or the state machine could not be opened, or openraft refused to start.
    #[error("cannot start replication: {0}")]
    Start(String),
}

/// Timing of the group (DESIGN.md says why these numbers).
///
/// openraft 0.9 gives every append (heartbeats included) the heartbeat interval as its
/// timeout, so the interval must leave room for a follower's commit (an fsync with
/// `--durability machine`) on a busy machine: 100 ms, not the 50 ms first planned.
/// openraft also makes a follower that has a leader wait out a lease of
/// `election_timeout_max` before its election timeout starts, so a follower stands after
/// 450 to 600 ms without a heartbeat (4.5 to 6 heartbeats lost): failover in about half a
/// second plus one election round.
pub(crate) const HEARTBEAT_MS: u64 = 100;
const ELECTION_MIN_MS: u64 = 150;
const ELECTION_MAX_MS: u64 = 300;
const INSTALL_SNAPSHOT_TIMEOUT_MS: u64 = 10_000;
const SNAPSHOT_CHUNK: u64 = 512 * 1024;

/// Most commands in one log entry, and most bytes of them.
const BATCH_COMMANDS: usize = 512;
const BATCH_BYTES: usize = 256 * 1024;

/// Largest command, encoded: an entry holding it must fit one replication message
/// (`network::SEND_LIMIT`), whatever the database's own frame limit lets in.
pub(crate) const MAX_COMMAND: usize = 512 * 1024;

/// A running replica of the group.
pub(crate) struct Group {
    pub raft: Raft<TypeConfig>,
    pub me: Identity,
    /// [`GroupConfig::routes`].
    routes: Arc<BTreeMap<u64, String>>,
    clock: Clock,
    patience: Duration,
    proposals: Mutex<Queue<Proposal>>,
    reads: Mutex<Queue<oneshot::Sender<Result<(), ApiError>>>>,
    lease: Mutex<Option<Lease>>,
    stop: CancellationToken,
}

/// How long after a leadership check began the leader serves reads without another
/// (DESIGN.md, "Reads"). openraft's followers refuse to vote for `election_timeout_max`
/// after they last heard from a leader (a restarted one too: its lease starts at its
/// start), and every follower that answered the check heard from this leader after the
/// check began; so no other leader can exist before `election_timeout_max` has passed
/// since. The lease stops 50 ms short of that, for clock drift between hosts.
const LEASE: Duration = Duration::from_millis(ELECTION_MAX_MS - 50);

/// A leadership confirmed by a majority: valid until `until`, in `term`, under the
/// membership of log id `membership` (a changed membership ends it: a new majority may
/// not contain the one that confirmed).
#[derive(Clone, Copy)]
struct Lease {
    until: tokio::time::Instant,
    term: u64,
    membership: Option<openraft::LogId<u64>>,
}

impl Lease {
    /// The lease's leadership as the metrics show it now.
    fn holds(&self, metrics: &openraft::RaftMetrics<u64, Member>) -> bool {
        metrics.state == ServerState::Leader
            && metrics.current_term == self.term
            && metrics.membership_config.log_id() == &self.membership
    }
}

/// A command waiting for its entry, and where its answer goes.
type Proposal = (Vec<u8>, oneshot::Sender<Result<Vec<u8>, ApiError>>);

/// Work waiting for the task that runs it, and whether that task is running.
struct Queue<T> {
    waiting: Vec<T>,
    running: bool,
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Queue { waiting: Vec::new(), running: false }
    }
}

/// Locks a queue; a poisoned lock still holds a usable queue. Never held across an
/// await: it guards a push or a drain.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What a replica's stamp file says: which group, cluster and node its directory is.
#[derive(Debug, PartialEq, Eq)]
struct Stamp {
    group: String,
    cluster: String,
    node: u64,
    incarnation: u64,
}

const STAMP: &str = "replica.stamp";

impl Stamp {
    fn describe(&self) -> String {
        format!("node {} of {} in the cluster whose CA is {}", self.node, self.group, self.cluster)
    }

    fn parse(text: &str) -> Option<Stamp> {
        let mut fields = BTreeMap::new();
        for line in text.lines() {
            let (key, value) = line.split_once('=')?;
            fields.insert(key.trim(), value.trim());
        }
        Some(Stamp {
            group: fields.get("group")?.to_string(),
            cluster: fields.get("cluster")?.to_string(),
            node: fields.get("node")?.parse().ok()?,
            incarnation: fields.get("incarnation")?.parse().ok()?,
        })
    }

    fn render(&self) -> String {
        format!(
            "group={}\ncluster={}\nnode={}\nincarnation={}\n",
            self.group, self.cluster, self.node, self.incarnation
        )
    }
}

/// How the group `group` stands as its replica at `addr` sees it, asked with `trust`
/// (the admin's credentials, or a node's of that group): `agora cluster status`.
pub async fn status_of(
    group: Component,
    addr: &str,
    trust: &Trust,
    timeout: Duration,
) -> Result<Status, ApiError> {
    let me = Identity { group, node_id: 0, connector: trust.connector() };
    let mut peer = Peer::probe(me, 0, addr);
    peer.send(Message::Status, timeout).await.map_err(|e| e.into_api())
}

/// Adds node `id` at `addr` to group `group` as a learner, through its leader at
/// `leader`, and returns once it has caught up (`agora cluster add`, first step).
pub async fn add_learner_at(
    group: Component,
    leader: &str,
    trust: &Trust,
    id: u64,
    addr: &str,
    timeout: Duration,
) -> Result<(), ApiError> {
    let me = Identity { group, node_id: 0, connector: trust.connector() };
    let message = Message::AddLearner { id, addr: addr.to_owned() };
    Peer::probe(me, 0, leader).send(message, timeout).await.map_err(|e| e.into_api())
}

/// Makes `voters` the voters of group `group`, through its leader at `leader`
/// (`agora cluster add`, second step, and `remove`).
pub async fn set_voters_at(
    group: Component,
    leader: &str,
    trust: &Trust,
    voters: BTreeSet<u64>,
    timeout: Duration,
) -> Result<(), ApiError> {
    let me = Identity { group, node_id: 0, connector: trust.connector() };
    let message = Message::SetVoters { voters };
    Peer::probe(me, 0, leader).send(message, timeout).await.map_err(|e| e.into_api())
}

impl GroupConfig {
    /// Refuses, changing nothing, a data directory stamped by another group, cluster or
    /// node; a directory with no stamp yet passes (it is stamped when the replica joins).
    /// A database calls this before it opens its file there.
    pub fn refuse_foreign_data(&self) -> Result<(), GroupError> {
        if !self.data_dir.join(STAMP).exists() {
            return Ok(());
        }
        check_stamp(&self.data_dir, self.trust.component(), &self.trust, self.node_id).map(|_| ())
    }
}

/// Checks `dir`'s stamp against this start, or stamps a new directory. Returns the
/// directory's incarnation and whether it was new. A foreign stamp is an error and
/// nothing is written.
pub fn check_stamp(
    dir: &Path,
    group: Component,
    trust: &Trust,
    node_id: u64,
) -> Result<(u64, bool), GroupError> {
    let path = dir.join(STAMP);
    let io = |source| GroupError::Io { path: path.clone(), source };
    let expected = |incarnation| Stamp {
        group: group.name().to_owned(),
        cluster: trust.cluster_fingerprint().to_owned(),
        node: node_id,
        incarnation,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let found = Stamp::parse(&text).ok_or_else(|| GroupError::Foreign {
                dir: dir.to_owned(),
                found: format!("an unreadable stamp ({STAMP})"),
                expected: expected(0).describe(),
            })?;
            let wanted = expected(found.incarnation);
            if found != wanted {
                return Err(GroupError::Foreign {
                    dir: dir.to_owned(),
                    found: found.describe(),
                    expected: wanted.describe(),
                });
            }
            Ok((found.incarnation, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            agora_store::private_dir(dir).map_err(io)?;
            let mut bytes = [0u8; 8];
            getrandom::fill(&mut bytes).map_err(|e| io(std::io::Error::other(e.to_string())))?;
            // Zero means "unknown" in the membership.
            let incarnation = u64::from_le_bytes(bytes).max(1);
            let tmp = dir.join(format!("{STAMP}.tmp"));
            std::fs::write(&tmp, expected(incarnation).render()).map_err(io)?;
            std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(io)?;
            std::fs::rename(&tmp, &path).map_err(io)?;
            std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
            Ok((incarnation, true))
        }
        Err(e) => Err(io(e)),
    }
}

impl Group {
    /// Starts this node's Raft over `store` and returns it with the hook its server
    /// registers.
    pub async fn start(
        config: GroupConfig,
        store: agora_store::Store,
        apply: Arc<dyn Apply>,
        clock: Clock,
    ) -> Result<(Arc<Group>, ReplicationHook), GroupError> {
        let group = config.trust.component();
        if !matches!(group, Component::CustomerDb | Component::ProductDb | Component::Payments) {
            return Err(GroupError::Config(format!("{group} is not a database: it has no group")));
        }
        if !config.peers.contains_key(&config.node_id) {
            return Err(GroupError::Config(format!(
                "node {} is not among --peers ({}): list every voter, this one included",
                config.node_id,
                config.peers.keys().map(u64::to_string).collect::<Vec<_>>().join(", ")
            )));
        }
        let dir = &config.data_dir;
        let (incarnation, fresh) = check_stamp(dir, group, &config.trust, config.node_id)?;
        let log = LogStore::open(&dir.join("raft.db"), config.durability)
            .map_err(|e| GroupError::Start(format!("{}: {e}", dir.join("raft.db").display())))?;
        let machine =
            Machine::open(store, apply, &dir.join("snapshots")).await.map_err(GroupError::Start)?;
        let raft_config = Config {
            cluster_name: group.name().to_owned(),
            heartbeat_interval: HEARTBEAT_MS,
            election_timeout_min: ELECTION_MIN_MS,
            election_timeout_max: ELECTION_MAX_MS,
            install_snapshot_timeout: INSTALL_SNAPSHOT_TIMEOUT_MS,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every.max(1)),
            snapshot_max_chunk_size: SNAPSHOT_CHUNK,
            ..Default::default()
        }
        .validate()
        .map_err(|e| GroupError::Start(e.to_string()))?;
        let me = Identity { group, node_id: config.node_id, connector: config.trust.connector() };
        let routes = Arc::new(config.routes.clone());
        let network = Network {
            me: me.clone(),
            routes: routes.clone(),
            channels: Channels::default(),
            appended: log.appended(),
        };
        let raft = Raft::new(config.node_id, Arc::new(raft_config), network, log, machine)
            .await
            .map_err(|e| GroupError::Start(e.to_string()))?;
        let cell = Arc::new(OnceLock::new());
        let _ = cell.set(raft.clone());
        let node_cell = Arc::new(OnceLock::new());
        let hook: ReplicationHook = Arc::new(Hook {
            group,
            node_id: config.node_id,
            incarnation,
            raft: cell,
            node: node_cell.clone(),
        });
        let node = Arc::new(Group {
            raft,
            me,
            routes,
            clock,
            patience: config.patience,
            proposals: Mutex::new(Queue::default()),
            reads: Mutex::new(Queue::default()),
            lease: Mutex::new(None),
            stop: CancellationToken::new(),
        });
        let _ = node_cell.set(Arc::downgrade(&node));
        let lowest = config.peers.keys().next().copied();
        let initialized = node.raft.is_initialized().await.unwrap_or(true);
        // A group is initialized once, by its lowest node on its very first start. A
        // restarted node never initializes: it waits for the group to reach it.
        if fresh && !initialized && lowest == Some(config.node_id) {
            let starter = node.clone();
            let peers = config.peers.clone();
            tokio::spawn(async move { starter.initialize(peers, incarnation).await });
        }
        Ok((node, hook))
    }

    /// Initializes the group with `peers` as voters once every other peer has answered
    /// that it belongs to no group yet; gives up if one already does (the group exists:
    /// this node was added to it, or its directory was wiped) or this node stops.
    async fn initialize(self: Arc<Self>, peers: BTreeMap<u64, String>, incarnation: u64) {
        let mut pause = Duration::from_millis(20);
        loop {
            if self.raft.is_initialized().await.unwrap_or(true) {
                return;
            }
            let mut members = BTreeMap::new();
            let mut exists = false;
            for (&id, addr) in &peers {
                if id == self.me.node_id {
                    members.insert(id, Member { addr: addr.clone(), incarnation });
                    continue;
                }
                match self.hello(id, addr, Duration::from_millis(500)).await {
                    Ok(hello) if hello.initialized => exists = true,
                    Ok(hello) => {
                        members.insert(
                            id,
                            Member { addr: addr.clone(), incarnation: hello.incarnation },
                        );
                    }
                    Err(_) => {}
                }
            }
            if exists {
                info!(group = %self.me.group, "a peer already belongs to a group; not initializing");
                return;
            }
            if members.len() == peers.len() {
                match self.raft.initialize(members).await {
                    Ok(()) => info!(group = %self.me.group, "initialized the group"),
                    Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                    Err(e) => warn!(group = %self.me.group, error = %e, "cannot initialize"),
                }
                return;
            }
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    /// Asks node `id` at `addr` (or where [`GroupConfig::routes`] sends it) who it is.
    pub async fn hello(&self, id: u64, addr: &str, timeout: Duration) -> Result<Hello, ApiError> {
        let addr = self.routes.get(&id).map_or(addr, String::as_str);
        let mut peer = Peer::probe(self.me.clone(), id, addr);
        peer.send(Message::Hello, timeout).await.map_err(|e| e.into_api())
    }

    /// The address of the leader this node knows of, if any.
    fn leader_addr(&self) -> Option<String> {
        let metrics = self.raft.metrics().borrow().clone();
        let leader = metrics.current_leader?;
        metrics.membership_config.membership().get_node(&leader).map(|m| m.addr.clone())
    }

    /// `not_leader` as this node knows the leader now.
    pub fn not_leader_here(&self) -> ApiError {
        ApiError::not_leader(self.me.group.name(), self.leader_addr().as_deref())
    }

    fn not_leader(&self, leader: Option<Member>) -> ApiError {
        let addr = leader.map(|m| m.addr).or_else(|| self.leader_addr());
        ApiError::not_leader(self.me.group.name(), addr.as_deref())
    }

    /// Queues `command` for the next log entry and waits for its answer.
    pub async fn propose(self: &Arc<Self>, command: Vec<u8>) -> Result<Vec<u8>, ApiError> {
        if command.len() > MAX_COMMAND {
            return Err(ApiError::new(
                ErrorCode::InvalidArgument,
                format!(
                    "a write of {} bytes is larger than a replicated database takes ({MAX_COMMAND})",
                    command.len()
                ),
            ));
        }
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut queue = lock(&self.proposals);
            queue.waiting.push((command, tx));
            !std::mem::replace(&mut queue.running, true)
        };
        if start {
            tokio::spawn(self.clone().run_proposals());
        }
        self.patiently(rx, "committed").await
    }

    /// Appends what is queued, one entry at a time, until the queue is empty: the
    /// commands that arrive while an entry is being appended go together in the next.
    async fn run_proposals(self: Arc<Self>) {
        loop {
            let batch = {
                let mut queue = lock(&self.proposals);
                if queue.waiting.is_empty() {
                    queue.running = false;
                    return;
                }
                let (mut n, mut bytes) = (0, 0);
                for (command, _) in &queue.waiting {
                    if n == BATCH_COMMANDS || (n > 0 && bytes + command.len() > BATCH_BYTES) {
                        break;
                    }
                    n += 1;
                    bytes += command.len();
                }
                queue.waiting.drain(..n).collect::<Vec<_>>()
            };
            let (commands, waiters): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
            let entry = Batch { now_ms: self.clock.now_ms(), commands };
            match self.raft.client_write(entry).await {
                Ok(written) if written.data.len() == waiters.len() => {
                    for (waiter, answer) in waiters.into_iter().zip(written.data) {
                        let _ = waiter.send(answer);
                    }
                }
                Ok(_) => {
                    for waiter in waiters {
                        let _ =
                            waiter.send(Err(ApiError::internal("an entry's answers were lost")));
                    }
                }
                Err(e) => {
                    let error = match e {
                        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
                            self.not_leader(f.leader_node)
                        }
                        RaftError::APIError(e) => ApiError::internal(e.to_string()),
                        RaftError::Fatal(e) => {
                            ApiError::unavailable(format!("replication stopped: {e}"))
                        }
                    };
                    for waiter in waiters {
                        let _ = waiter.send(Err(error.clone()));
                    }
                }
            }
        }
    }

    /// Waits until this node has confirmed, with a majority, that it leads, and has
    /// applied everything committed before: the reads that arrive while one check is in
    /// flight share the next one. Within the lease of a check, answers at once (and,
    /// past the lease's middle, starts the next check without waiting for it).
    pub async fn linearize(self: &Arc<Self>) -> Result<(), ApiError> {
        let lease = *lock(&self.lease);
        if let Some(lease) = lease {
            let now = tokio::time::Instant::now();
            if now < lease.until && lease.holds(&self.raft.metrics().borrow()) {
                if now + LEASE / 2 >= lease.until {
                    let start = !std::mem::replace(&mut lock(&self.reads).running, true);
                    if start {
                        tokio::spawn(self.clone().run_reads(true));
                    }
                }
                return Ok(());
            }
        }
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut queue = lock(&self.reads);
            queue.waiting.push(tx);
            !std::mem::replace(&mut queue.running, true)
        };
        if start {
            tokio::spawn(self.clone().run_reads(false));
        }
        self.patiently(rx, "confirmed").await
    }

    /// Waits for `answer` at most [`GroupConfig::patience`].
    async fn patiently<T>(
        &self,
        answer: oneshot::Receiver<Result<T, ApiError>>,
        what: &str,
    ) -> Result<T, ApiError> {
        match tokio::time::timeout(self.patience, answer).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(ApiError::unavailable("the replica stopped before answering")),
            Err(_) => Err(ApiError::new(
                ErrorCode::Timeout,
                format!(
                    "{} could not be {what} by a majority of {} within {:?}",
                    if what == "committed" { "the write" } else { "the read" },
                    self.me.group,
                    self.patience
                ),
            )),
        }
    }

    /// Runs leadership checks while reads wait for one; `renew` runs one even if none
    /// waits (a lease past its middle, renewed before it ends).
    async fn run_reads(self: Arc<Self>, mut renew: bool) {
        loop {
            let waiters = {
                let mut queue = lock(&self.reads);
                if queue.waiting.is_empty() && !renew {
                    queue.running = false;
                    return;
                }
                std::mem::take(&mut queue.waiting)
            };
            renew = false;
            // A round of heartbeats that missed the majority (a follower slower than
            // the heartbeat interval this once) is tried again while the readers wait.
            let deadline = tokio::time::Instant::now() + self.patience;
            let checked = loop {
                let began = tokio::time::Instant::now();
                let before = {
                    let metrics = self.raft.metrics();
                    let m = metrics.borrow();
                    Lease {
                        until: began + LEASE,
                        term: m.current_term,
                        membership: *m.membership_config.log_id(),
                    }
                };
                let checked = self.raft.ensure_linearizable().await;
                *lock(&self.lease) = match checked {
                    Ok(_) if before.holds(&self.raft.metrics().borrow()) => Some(before),
                    _ => None,
                };
                let missed = matches!(
                    checked,
                    Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_)))
                );
                let pause = Duration::from_millis(HEARTBEAT_MS);
                if !missed || tokio::time::Instant::now() + pause >= deadline {
                    break checked;
                }
                tokio::time::sleep(pause).await;
            };
            let result = match checked {
                Ok(_) => Ok(()),
                Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                    Err(self.not_leader(f.leader_node))
                }
                Err(RaftError::APIError(e)) => Err(ApiError::unavailable(format!(
                    "{} cannot confirm its leadership: {e}",
                    self.me.group
                ))),
                Err(RaftError::Fatal(e)) => {
                    Err(ApiError::unavailable(format!("replication stopped: {e}")))
                }
            };
            for waiter in waiters {
                let _ = waiter.send(result.clone());
            }
        }
    }

    /// Follows the metrics into `leads`: true while this node leads.
    pub fn watch_leadership(&self, leads: Arc<watch::Sender<bool>>) {
        let mut metrics = self.raft.metrics();
        let stop = self.stop.clone();
        tokio::spawn(async move {
            loop {
                let leading = metrics.borrow_and_update().state == ServerState::Leader;
                leads.send_if_modified(|now| std::mem::replace(now, leading) != leading);
                tokio::select! {
                    changed = metrics.changed() => if changed.is_err() { break },
                    _ = stop.cancelled() => break,
                }
            }
            leads.send_if_modified(|now| std::mem::replace(now, false));
        });
    }

    /// The group as this node sees it, with the members that do not answer a hello.
    pub async fn status(&self) -> Status {
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let mut members = Vec::new();
        let mut unreachable = Vec::new();
        for (&id, member) in membership.nodes() {
            members.push(MemberStatus {
                id,
                addr: member.addr.clone(),
                voter: voters.contains(&id),
                matched: metrics
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(&id).cloned().flatten())
                    .map(|log_id| log_id.index),
            });
            if id != self.me.node_id
                && self.hello(id, &member.addr, Duration::from_millis(500)).await.is_err()
            {
                unreachable.push(id);
            }
        }
        Status {
            group: self.me.group.name().to_owned(),
            node_id: self.me.node_id,
            leader: metrics.current_leader,
            term: metrics.current_term,
            last_log_index: metrics.last_log_index,
            applied_index: metrics.last_applied.map(|id| id.index),
            members,
            unreachable,
        }
    }

    /// Adds node `id` at `addr` as a learner (it starts catching up) after asking it
    /// for its incarnation; waits until it has caught up.
    pub async fn add_learner(&self, id: u64, addr: &str) -> Result<(), ApiError> {
        let hello = self.hello(id, addr, Duration::from_secs(2)).await?;
        // A node that already holds a group's state (it initialized one of its own, or it
        // is another group's) would take this group's log on top of its own.
        if hello.initialized {
            return Err(ApiError::new(
                ErrorCode::InvalidArgument,
                format!(
                    "node {id} at {addr} already belongs to a group: start it on an empty data \
                     directory with --peers listing this group's replicas and itself"
                ),
            ));
        }
        let member = Member { addr: addr.to_owned(), incarnation: hello.incarnation };
        self.raft.add_learner(id, member, true).await.map(|_| ()).map_err(|e| self.write_error(e))
    }

    /// Makes `voters` the group's voters (members not in it stay as learners).
    pub async fn change_membership(&self, voters: BTreeSet<u64>) -> Result<(), ApiError> {
        self.raft
            .change_membership(voters, false)
            .await
            .map(|_| ())
            .map_err(|e| self.write_error(e))
    }

    fn write_error(&self, e: RaftError<u64, ClientWriteError<u64, Member>>) -> ApiError {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
                self.not_leader(f.leader_node)
            }
            RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
                ApiError::new(ErrorCode::InvalidArgument, e.to_string())
            }
            RaftError::Fatal(e) => ApiError::unavailable(format!("replication stopped: {e}")),
        }
    }

    /// Stops this node's Raft and its tasks.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        if let Err(e) = self.raft.shutdown().await {
            warn!(error = %e, "replication did not stop cleanly");
        }
    }
}

/// Which of the replicas (by position) leads: one that says it leads, in the highest
/// term any of them reports, and that a majority of the group names as leader. A replica
/// restarted a moment ago may still call itself the leader of the term it led before it
/// was killed; asked alone, it would be taken for the leader.
pub fn agreed_leader(statuses: &[Option<Status>]) -> Option<usize> {
    let newest = statuses.iter().flatten().map(|s| s.term).max()?;
    let at = statuses.iter().position(|s| {
        s.as_ref().is_some_and(|s| s.term == newest && s.leader == Some(s.node_id))
    })?;
    let id = statuses[at].as_ref()?.node_id;
    let naming = statuses.iter().flatten().filter(|s| s.leader == Some(id)).count();
    (naming * 2 > statuses.len()).then_some(at)
}

/// A group as one of its replicas sees it (`agora cluster status`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Status {
    /// The group (the component's name).
    pub group: String,
    /// The replica that answered.
    pub node_id: u64,
    /// The leader it knows of.
    pub leader: Option<u64>,
    /// Its current term.
    pub term: u64,
    /// The last index in its log.
    pub last_log_index: Option<u64>,
    /// The last index applied to its database.
    pub applied_index: Option<u64>,
    /// The members, voters and learners.
    pub members: Vec<MemberStatus>,
    /// Members that did not answer this replica just now.
    pub unreachable: Vec<u64>,
}

/// One member in a [`Status`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MemberStatus {
    /// Its node id.
    pub id: u64,
    /// Its address.
    pub addr: String,
    /// Whether it votes (else a learner).
    pub voter: bool,
    /// The last index the leader knows it holds (only on the leader).
    pub matched: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_flags_name_the_node_and_a_peer_list_parse_peers_reads_back() {
        let peers: BTreeMap<u64, String> =
            [(1, "127.0.0.1:7402".to_owned()), (2, "[::1]:7412".to_owned())].into();
        let flags = replica_flags(2, &peers, Path::new("/d/p-2"), Path::new("/d/creds"));
        let value = |flag: &str| {
            let at = flags.iter().position(|f| f == flag).expect(flag);
            flags[at + 1].clone()
        };
        assert_eq!(value("--node-id"), "2");
        assert_eq!(value("--data-dir"), "/d/p-2");
        assert_eq!(value("--credentials"), "/d/creds");
        assert_eq!(parse_peers(&value("--peers")), Ok(peers));
    }

    fn seen(node_id: u64, leader: Option<u64>, term: u64) -> Option<Status> {
        Some(Status {
            group: "customer-db".into(),
            node_id,
            leader,
            term,
            last_log_index: None,
            applied_index: None,
            members: Vec::new(),
            unreachable: Vec::new(),
        })
    }

    #[test]
    fn the_leader_is_the_one_a_majority_names_in_the_newest_term() {
        // Replica 1, restarted, still calls itself the leader of term 3; 2 leads term 4.
        let statuses = [seen(1, Some(1), 3), seen(2, Some(2), 4), seen(3, Some(2), 4)];
        assert_eq!(agreed_leader(&statuses), Some(1));
        // Before the others have heard of 2, nobody leads with a majority.
        let statuses = [seen(1, Some(1), 3), seen(2, Some(2), 4), seen(3, Some(1), 3)];
        assert_eq!(agreed_leader(&statuses), None);
        // One that does not answer is not counted as naming anyone.
        let statuses = [None, seen(2, Some(2), 4), None];
        assert_eq!(agreed_leader(&statuses), None);
    }

    #[test]
    fn a_peer_list_reads_as_ids_and_addresses() {
        let peers = parse_peers("1=10.0.0.1:7402, 2=db2:7402,3=[::1]:7402").expect("valid");
        assert_eq!(peers.len(), 3);
        assert_eq!(peers[&2], "db2:7402");
        assert_eq!(peers[&3], "[::1]:7402");
        for bad in ["", "1", "x=a:1", "1=a", "1=:7402", "1=a:port", "1=a:1,1=b:2"] {
            assert!(parse_peers(bad).is_err(), "{bad:?} was taken");
        }
    }

    #[test]
    fn a_stamp_reads_back_as_written() {
        let stamp =
            Stamp { group: "payments".into(), cluster: "ab12".into(), node: 3, incarnation: 9 };
        assert_eq!(Stamp::parse(&stamp.render()), Some(stamp));
        assert_eq!(Stamp::parse("group=payments\ncluster=ab12\nnode=3\n"), None);
    }
}
