//! A replica in a group: the openraft node, its start (stamp, initialization, the guard
//! that keeps a restarted node out of elections for a lease), membership changes, and
//! leadership handed over on purpose. Proposals (`propose.rs`), linearizable reads
//! (`read.rs`) and the messages it serves (`serve.rs`) are beside it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agora_proto::{ApiError, ErrorCode};
use openraft::ServerState;
use openraft::async_runtime::WatchReceiver;
use openraft::error::{ClientWriteError, InitializeError, RaftError};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::Clock;
use crate::admin::{MemberStatus, Status};
use crate::config::{ELECTION_MAX_MS, GroupConfig, GroupError};
use crate::log_store::LogStore;
use crate::machine::{Apply, Machine};
use crate::network::{Channels, Identity, Network, Peer};
use crate::propose::Proposals;
use crate::stamp::check_stamp;
use crate::transfer::Receiving;
use crate::types::{Hello, Member, Message, Metrics, TypeConfig};

/// This group's openraft node.
pub(crate) type Raft = openraft::Raft<TypeConfig, Machine>;

/// How long after its start a replica neither stands for election nor answers a vote: a
/// leader lease. openraft 0.10 starts a node with no memory of the leader it followed, so
/// a replica restarted a moment after it acknowledged a leader could otherwise help elect
/// another at once, while that leader still answers reads from its lease (`read.rs`).
pub(crate) const START_GUARD: Duration = Duration::from_millis(ELECTION_MAX_MS);

/// How long a node left out of its membership waits for a leader to send it anything
/// before it takes itself for removed: a leader sends every member a heartbeat every
/// 100 ms.
const LEAVING_FOR: Duration = Duration::from_secs(5);

/// Where a node stands in a membership.
#[derive(Debug, PartialEq, Eq)]
enum Standing {
    /// The membership is empty: a node waiting to be added, which no membership names yet.
    Unnamed,
    /// A voter of the newest configuration, or a learner.
    Member,
    /// Left out of the newest configuration, as voter and as learner; its voters.
    Out(BTreeSet<u64>),
}

fn standing(membership: &openraft::Membership<u64, Member>, me: u64) -> Standing {
    let newest: BTreeSet<u64> = membership.get_joint_config().last().cloned().unwrap_or_default();
    if newest.is_empty() {
        Standing::Unnamed
    } else if newest.contains(&me) || membership.learner_ids().any(|id| id == me) {
        Standing::Member
    } else {
        Standing::Out(newest)
    }
}

/// A running replica of the group.
pub(crate) struct Group {
    pub raft: Raft,
    pub me: Identity,
    /// This node's incarnation (its stamp's): messages for another are refused.
    pub incarnation: u64,
    /// [`GroupConfig::routes`].
    routes: Arc<BTreeMap<u64, String>>,
    /// The connections this process's groups share (for the hellos sent outside openraft).
    channels: Channels,
    pub(crate) clock: Clock,
    pub(crate) patience: Duration,
    pub(crate) proposals: Proposals,
    /// A snapshot being received from the leader, piece by piece.
    pub(crate) receiving: Mutex<Option<Receiving>>,
    /// Where snapshots are received (the state machine's directory).
    pub(crate) snapshot_dir: PathBuf,
    /// When this node started: votes wait until [`START_GUARD`] has passed.
    pub(crate) started: tokio::time::Instant,
    /// True while this node leads (followed from openraft's metrics).
    leading: watch::Receiver<bool>,
    /// When a leader last sent this node something ([`Group::heard_from_leader`]).
    leader_heard_at: Mutex<tokio::time::Instant>,
    stop: CancellationToken,
}

/// Makes the files an earlier release left readable by others (the log, the stamp, the
/// snapshots: they hold the database's rows) its owner's only, as everything this
/// release writes is (`agora_store::private_dir`).
fn tighten(dir: &std::path::Path) -> Result<(), GroupError> {
    let io = |path: &std::path::Path| {
        let path = path.to_owned();
        move |source| GroupError::Io { path, source }
    };
    for name in ["raft.db", "raft.db-wal", "raft.db-shm", crate::stamp::STAMP] {
        let path = dir.join(name);
        agora_store::private_file(&path).map_err(io(&path))?;
    }
    let snapshots = dir.join("snapshots");
    if snapshots.exists() {
        agora_store::private_dir(&snapshots).map_err(io(&snapshots))?;
        for entry in std::fs::read_dir(&snapshots).map_err(io(&snapshots))?.flatten() {
            agora_store::private_file(&entry.path()).map_err(io(&entry.path()))?;
        }
    }
    Ok(())
}

/// Locks a mutex; a poisoned lock still holds usable state. Never held across an await.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Group {
    /// Starts this node's Raft over `store`, its messages sent over `channels` (shared by
    /// every group this process hosts).
    pub async fn start(
        config: GroupConfig,
        store: agora_store::Store,
        apply: Arc<dyn Apply>,
        clock: Clock,
        channels: Channels,
    ) -> Result<Arc<Group>, GroupError> {
        let group = config.trust.component();
        if !group.is_database() {
            return Err(GroupError::Config(format!("{group} is not a database: it has no group")));
        }
        // Its peers accept its Raft messages only in the name its certificate proves.
        if config.trust.replica() != Some(config.node_id) {
            let proves =
                config.trust.replica().map_or("no node".to_owned(), |n| format!("node {n}"));
            return Err(GroupError::Config(format!(
                "node {} of {group} was given credentials that prove {proves}: each replica \
                 needs its own (`agora credentials issue --component {group} --node-id {}`)",
                config.node_id, config.node_id
            )));
        }
        if !config.peers.contains_key(&config.node_id) {
            return Err(GroupError::Config(format!(
                "node {} is not among --peers ({}): list every voter, this one included",
                config.node_id,
                config.peers.keys().map(u64::to_string).collect::<Vec<_>>().join(", ")
            )));
        }
        let raft_config = Arc::new(config.raft_config()?);
        let dir = &config.data_dir;
        let (incarnation, fresh) =
            check_stamp(dir, &config.group_name(), &config.trust, config.node_id)?;
        tighten(dir)?;
        let log = LogStore::open(&dir.join("raft.db"), config.durability)
            .map_err(|e| GroupError::Start(format!("{}: {e}", dir.join("raft.db").display())))?;
        let snapshot_dir = dir.join("snapshots");
        let machine =
            Machine::open(store, apply, &snapshot_dir).await.map_err(GroupError::Start)?;
        let me = Identity {
            group,
            name: config.group_name().into(),
            node_id: config.node_id,
            connector: config.trust.connector(),
        };
        let routes = Arc::new(config.routes.clone());
        let network =
            Network { me: me.clone(), routes: routes.clone(), channels: channels.clone() };
        let raft = Raft::build(config.node_id, raft_config, network, log, machine)
            .await
            .map_err(|e| GroupError::Start(e.to_string()))?;
        // Out of elections until the start guard has passed (see START_GUARD).
        raft.runtime_config().elect(false);
        raft.run();
        let (leads, leading) = watch::channel(false);
        let node = Arc::new(Group {
            raft,
            me,
            incarnation,
            routes,
            channels,
            clock,
            patience: config.patience,
            proposals: Proposals::default(),
            receiving: Mutex::new(None),
            snapshot_dir,
            started: tokio::time::Instant::now(),
            leading,
            leader_heard_at: Mutex::new(tokio::time::Instant::now()),
            stop: CancellationToken::new(),
        });
        node.follow_leadership(leads);
        let guarded = node.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(START_GUARD) => guarded.raft.runtime_config().elect(true),
                _ = guarded.stop.cancelled() => {}
            }
        });
        let lowest = config.peers.keys().next().copied();
        let initialized = node.raft.is_initialized().await.unwrap_or(true);
        // A group is initialized once, by its lowest node on its very first start. A
        // restarted node never initializes: it waits for the group to reach it.
        if fresh && !initialized && lowest == Some(config.node_id) {
            let starter = node.clone();
            let peers = config.peers.clone();
            tokio::spawn(async move { starter.initialize(peers, incarnation).await });
        }
        Ok(node)
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
                info!(group = %self.me.name, "a peer already belongs to a group; not initializing");
                return;
            }
            if members.len() == peers.len() {
                match self.raft.initialize(members).await {
                    Ok(()) => info!(group = %self.me.name, "initialized the group"),
                    Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                    Err(e) => warn!(group = %self.me.name, error = %e, "cannot initialize"),
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
        let mut peer = Peer::probe(self.me.clone(), id, addr, Some(self.channels.clone()));
        peer.send(Message::Hello, timeout).await.map_err(|e| e.into_api())
    }

    /// Whether this node started less than [`START_GUARD`] ago, and so grants no vote.
    pub(crate) fn guarded(&self) -> bool {
        tokio::time::Instant::now() < self.started + START_GUARD
    }

    /// The answer to a vote asked while [`Group::guarded`]: not granted, with this node's
    /// own vote (and no log id: the refusal is not about the candidate's log, so it
    /// should not make the candidate wait longer than its own timeout).
    pub(crate) fn refuse_vote(
        &self,
    ) -> Result<openraft::raft::VoteResponse<TypeConfig>, RaftError<TypeConfig>> {
        Ok(openraft::raft::VoteResponse::new(self.metrics().vote, None, false))
    }

    /// openraft's metrics as they stand now.
    pub fn metrics(&self) -> Metrics {
        self.raft.metrics().borrow_watched().clone()
    }

    /// The address of the leader this node knows of, if any.
    fn leader_addr(&self) -> Option<String> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow_watched();
        let leader = metrics.current_leader?;
        metrics.membership_config.membership().get_node(&leader).map(|m| m.addr.clone())
    }

    /// `not_leader` as this node knows the leader now.
    pub fn not_leader_here(&self) -> ApiError {
        ApiError::not_leader(&self.me.name, self.leader_addr().as_deref())
    }

    pub(crate) fn not_leader(&self, leader: Option<Member>) -> ApiError {
        let addr = leader.map(|m| m.addr).or_else(|| self.leader_addr());
        ApiError::not_leader(&self.me.name, addr.as_deref())
    }

    /// Whether this node leads now, and a way to wait for that to change.
    pub fn leadership(&self) -> watch::Receiver<bool> {
        self.leading.clone()
    }

    /// Follows the metrics into `leads`: true while this node leads; false, and closed,
    /// once it stops.
    fn follow_leadership(&self, leads: watch::Sender<bool>) {
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

    /// Resolves once this node is no longer a member of its group, with a sentence that
    /// says so (`agora cluster remove` took it out). Three things must hold: the newest
    /// configuration of the membership in its log leaves it out (as voter and as learner);
    /// it has been a member of it, in this run or in its log when it started (a new node
    /// replaying the group's log sees memberships from before it was added); and no
    /// leader has sent it anything for [`LEAVING_FOR`] (the leader stops sending to a
    /// removed node as soon as it appends the membership without it, which may so never
    /// arrive, while a node catching up hears from the leader all along). Never resolves
    /// while it is a member.
    pub async fn removed(&self) -> String {
        let mut metrics = self.raft.metrics();
        type Watched = openraft::type_config::alias::WatchReceiverOf<TypeConfig, Metrics>;
        let me = self.me.node_id;
        let now = |m: &Watched| standing(m.borrow_watched().membership_config.membership(), me);
        // A membership in its log at start, with or without it, is one it was a member of.
        let mut was_member = now(&metrics) != Standing::Unnamed;
        loop {
            let left = match now(&metrics) {
                Standing::Unnamed => None,
                Standing::Member => {
                    was_member = true;
                    None
                }
                Standing::Out(voters) => Some(voters),
            };
            let mut wait = Duration::from_secs(3600);
            if let Some(voters) = left.filter(|_| was_member) {
                let silent =
                    self.leader_heard_at.lock().unwrap_or_else(|e| e.into_inner()).elapsed();
                if silent >= LEAVING_FOR {
                    return self.removal_said(&voters);
                }
                wait = LEAVING_FOR - silent;
            }
            tokio::select! {
                changed = tokio::time::timeout(wait, metrics.changed()) => {
                    if matches!(changed, Ok(Err(_))) {
                        return std::future::pending().await;
                    }
                }
                _ = self.stop.cancelled() => return std::future::pending().await,
            }
        }
    }

    /// Notes that a leader sent this node something (an append, a piece of a snapshot).
    pub(crate) fn heard_from_leader(&self) {
        *self.leader_heard_at.lock().unwrap_or_else(|e| e.into_inner()) =
            tokio::time::Instant::now();
    }

    fn removal_said(&self, voters: &BTreeSet<u64>) -> String {
        let voters: Vec<String> = voters.iter().map(u64::to_string).collect();
        format!(
            "node {} was removed from the {} group (its voters are now {}): stopping. Its data \
             directory is left as it is; to add it back, start it on an empty data directory \
             and run `agora cluster add`",
            self.me.node_id,
            self.me.name,
            voters.join(", ")
        )
    }

    /// The group as this node sees it, with the members that do not answer a hello.
    pub async fn status(&self) -> Status {
        let metrics = self.metrics();
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
            group: self.me.name.to_string(),
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

    /// Records that member `id` now listens at `addr`: every node dials it there from the
    /// time the change is committed, and `not_leader` answers name it there.
    pub async fn set_address(&self, id: u64, addr: &str) -> Result<(), ApiError> {
        let membership = self.metrics().membership_config.membership().clone();
        let Some(member) = membership.get_node(&id) else {
            return Err(ApiError::new(
                ErrorCode::InvalidArgument,
                format!("node {id} is not a member of {}", self.me.name),
            ));
        };
        let moved = Member { addr: addr.to_owned(), incarnation: member.incarnation };
        let nodes = BTreeMap::from([(id, moved)]);
        self.raft
            .change_membership(openraft::ChangeMembers::SetNodes(nodes), false)
            .await
            .map(|_| ())
            .map_err(|e| self.write_error(e))
    }

    /// Makes `voters` the group's voters (members not in it stay as learners).
    pub async fn change_membership(&self, voters: BTreeSet<u64>) -> Result<(), ApiError> {
        self.raft
            .change_membership(voters, false)
            .await
            .map(|_| ())
            .map_err(|e| self.write_error(e))
    }

    pub(crate) fn write_error(
        &self,
        e: RaftError<TypeConfig, ClientWriteError<TypeConfig>>,
    ) -> ApiError {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
                self.not_leader(f.leader_node)
            }
            RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
                ApiError::new(ErrorCode::InvalidArgument, e.to_string())
            }
            RaftError::APIError(e) => ApiError::unavailable(e.to_string()),
            RaftError::Fatal(e) => ApiError::unavailable(format!("replication stopped: {e}")),
        }
    }

    /// Hands this node's leadership to `to` (or to the voter whose log is the most up to
    /// date, if `None`) and waits, within `within`, until another node leads. Answers
    /// the new leader's id. Only the leader can.
    pub async fn hand_over(&self, to: Option<u64>, within: Duration) -> Result<u64, ApiError> {
        let metrics = self.metrics();
        if metrics.state != ServerState::Leader {
            return Err(self.not_leader_here());
        }
        let voters: BTreeSet<u64> = metrics.membership_config.membership().voter_ids().collect();
        let target = match to {
            Some(id) if id == self.me.node_id => {
                return Err(ApiError::new(
                    ErrorCode::InvalidArgument,
                    format!("node {id} already leads {}", self.me.name),
                ));
            }
            Some(id) if !voters.contains(&id) => {
                return Err(ApiError::new(
                    ErrorCode::InvalidArgument,
                    format!(
                        "node {id} is not a voter of {} (voters: {})",
                        self.me.name,
                        voters.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
            Some(id) => id,
            None => {
                // The voter that holds the most of the log takes over soonest.
                let matched = |id: &u64| {
                    metrics.replication.as_ref().and_then(|r| r.get(id).cloned().flatten())
                };
                let Some(best) =
                    voters.iter().filter(|&&id| id != self.me.node_id).max_by_key(|id| matched(id))
                else {
                    return Err(ApiError::new(
                        ErrorCode::InvalidArgument,
                        format!("{} has no other voter to hand its leadership to", self.me.name),
                    ));
                };
                *best
            }
        };
        let mut watch = self.raft.metrics();
        self.raft
            .trigger()
            .transfer_leader(target)
            .await
            .map_err(|e| ApiError::unavailable(format!("replication stopped: {e}")))?;
        let me = self.me.node_id;
        let handed = tokio::time::timeout(within, async {
            loop {
                let leader = {
                    let m = watch.borrow_and_update();
                    m.current_leader.filter(|&id| id != me && m.state != ServerState::Leader)
                };
                if let Some(leader) = leader {
                    return Ok(leader);
                }
                if watch.changed().await.is_err() {
                    return Err(ApiError::unavailable("replication stopped"));
                }
            }
        })
        .await;
        match handed {
            Ok(answer) => answer,
            Err(_) => Err(ApiError::new(
                ErrorCode::Timeout,
                format!("node {target} did not take over {} within {within:?}", self.me.name),
            )),
        }
    }

    /// Waits, while this node runs, until its metrics meet `ready`; returns them then.
    async fn until(&self, ready: impl Fn(&Metrics) -> bool) -> Option<Metrics> {
        let mut metrics = self.raft.metrics();
        loop {
            {
                let now = metrics.borrow_watched();
                if ready(&now) {
                    return Some(now.clone());
                }
            }
            tokio::select! {
                changed = metrics.changed() => changed.ok()?,
                _ = self.stop.cancelled() => return None,
            }
        }
    }

    /// Seals a replica seeded from a database that ran alone (`agora_store::seed`, by
    /// `agora up --replicas`): once it has applied its group's first entry, a snapshot
    /// of its file (the seed included) is taken and its log cut behind it, so that a
    /// member added to the group later is sent that snapshot rather than the log
    /// replayed onto an empty file. Until then the seed's marker stays in `dir`, and a
    /// restart tries again.
    pub(crate) async fn seal_seed(&self, dir: PathBuf) {
        let Some(applied) = self.until(|m| m.last_applied.is_some()).await else { return };
        let applied = applied.last_applied.map_or(0, |id| id.index);
        if self.raft.trigger().snapshot().await.is_err()
            || self.until(|m| m.snapshot.is_some_and(|id| id.index >= applied)).await.is_none()
            || self.raft.trigger().purge_log(applied).await.is_err()
            || self.until(|m| m.purged.is_some_and(|id| id.index >= applied)).await.is_none()
        {
            return;
        }
        match agora_store::seed::sealed(&dir) {
            Ok(()) => info!(upto = applied, "the seeded database is sealed into a snapshot"),
            Err(e) => {
                warn!(error = %e, "cannot remove the seed marker; sealed again at next start")
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn membership(configs: Vec<Vec<u64>>, learners: &[u64]) -> openraft::Membership<u64, Member> {
        let configs: Vec<BTreeSet<u64>> =
            configs.into_iter().map(|c| c.into_iter().collect()).collect();
        let mut nodes: BTreeMap<u64, Member> = BTreeMap::new();
        for id in configs.iter().flatten().chain(learners) {
            nodes.insert(*id, Member { addr: format!("n{id}"), incarnation: 0 });
        }
        openraft::Membership::new(configs, nodes).expect("membership")
    }

    #[test]
    fn a_node_is_left_out_only_when_the_newest_configuration_leaves_it_out() {
        let three = || vec![1, 2, 3];
        assert_eq!(standing(&membership(vec![three()], &[]), 2), Standing::Member);
        // Joint: the newer half leaves 2 out.
        let joint = membership(vec![three(), vec![1, 3]], &[]);
        assert_eq!(standing(&joint, 2), Standing::Out([1, 3].into()));
        assert_eq!(standing(&joint, 1), Standing::Member);
        // The final membership without it.
        let after = membership(vec![vec![1, 3]], &[]);
        assert_eq!(standing(&after, 2), Standing::Out([1, 3].into()));
        // A learner is a member; a node no membership names yet is neither in nor out.
        assert_eq!(standing(&membership(vec![three()], &[4]), 4), Standing::Member);
        assert_eq!(standing(&openraft::Membership::default(), 4), Standing::Unnamed);
    }
}
