//! Raft messages over our own protocol: the client side openraft sends through
//! ([`Network`], one [`Peer`] per member) and the server side a database's port serves
//! ([`Hook`], registered with `agora_proto::serve_with`).
//!
//! News of a commit: openraft 0.9 tells each follower of every commit in a message of its
//! own, an AppendEntries with no entries, although every AppendEntries carries the commit
//! index. Under a steady run of single writes that doubles the messages, the wake-ups
//! and the answers of every follower. So a replication stream's peer holds such news back
//! for at most [`COMMIT_NEWS_WAIT`]: if the leader has or appends an entry the stream has
//! not sent yet, the news goes with that entry (the stream sends it next) and this
//! message is not sent; if not, it is sent as it was. A member that has heard nothing from
//! the stream for a heartbeat interval gets the news at once, whatever follows. Why
//! leaving it unsent is safe, and why it never costs an election: see
//! [`Peer::news_rides_with_next_entries`].
//!
//! Every message travels in an envelope that names the group (the component), the
//! sender and the addressee; the receiver refuses one meant for another group or node,
//! or for an earlier incarnation of itself (a wiped data directory). Transport failures
//! go back to openraft as such; it retries on its own schedule (heartbeats, backoff), so
//! nothing here resends.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use agora_proto::messages::replication::{Request, Response};
use agora_proto::server::ReplicationHandler;
use agora_proto::{ApiError, CallError, Caller, Channel, Component, Connector, ErrorCode};
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{LogId, Raft};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::types::{Envelope, Hello, Member, Message, TypeConfig};

/// The largest message a sender puts in one frame; the receiver reads up to
/// `agora_proto::messages::replication::MAX_FRAME`. Runs of log entries longer than this
/// are sent in parts (openraft asks again for fewer entries).
const SEND_LIMIT: usize = 1 << 20;

/// The longest wait between tries to reach a member that did not answer.
const HEARTBEAT_BACKOFF_MS: u64 = 100;

/// How long connecting to a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// How long a stream's news of a commit waits for the next entries to go with them: the
/// gap between writes in steady use (a few milliseconds in bench scenario 1), and well
/// within openraft's timeout for one AppendEntries (a heartbeat interval, 100 ms). A
/// follower learns of the last commit before a pause this much later, so it applies it
/// this much later; nothing reads a follower's copy.
const COMMIT_NEWS_WAIT: Duration = Duration::from_millis(20);

/// A member that has heard nothing from a stream for this long gets its news of a commit
/// at once: one heartbeat interval (`group::HEARTBEAT_MS`), so a follower hears from its
/// leader at least as often as heartbeats alone would make it, whatever the stream does
/// meanwhile (a snapshot it sends, entries a stalled commit holds back).
const SILENCE_LIMIT: Duration = Duration::from_millis(crate::group::HEARTBEAT_MS);

/// Who this node is to the others: what every message it sends says about it.
#[derive(Clone)]
pub(crate) struct Identity {
    pub group: Component,
    pub node_id: u64,
    pub connector: Connector,
}

/// Makes a [`Peer`] for each member openraft sends to.
pub(crate) struct Network {
    pub me: Identity,
    /// This node's own addresses for some members (`GroupConfig::routes`).
    pub routes: Arc<std::collections::BTreeMap<u64, String>>,
    pub channels: Channels,
    /// The index of the last entry this node's log appended.
    pub appended: watch::Receiver<u64>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: u64, node: &Member) -> Peer {
        self.peer(target, node)
    }
}

impl Network {
    fn peer(&self, target: u64, node: &Member) -> Peer {
        let mut member = node.clone();
        if let Some(addr) = self.routes.get(&target) {
            member.addr.clone_from(addr);
        }
        Peer {
            me: self.me.clone(),
            target,
            member,
            channel: None,
            shared: Some(self.channels.clone()),
            appended: Some(self.appended.clone()),
            answered: false,
            commit_heard: None,
            last_sent: None,
            sent_up_to: None,
        }
    }
}

/// One open channel per member, shared by every [`Peer`] of it.
///
/// openraft 0.9 makes a new client for each leadership check (every linearizable read's
/// round of heartbeats) and each vote, beside the long-lived one of the replication
/// stream. Without this, each of those would open a new TLS connection: a read would
/// pay a handshake per follower (about a millisecond) instead of a round trip. Channels
/// are multiplexed, so the stream, the checks and the votes share one connection; one
/// that breaks is dropped here by whoever sees it break. Bounded by the group's size
/// (keyed by member id and address; a member's new address replaces its old one).
#[derive(Clone, Default)]
pub(crate) struct Channels(Arc<Mutex<HashMap<u64, Channel<agora_proto::Replication>>>>);

impl Channels {
    fn get(&self, target: u64, addr: &str) -> Option<Channel<agora_proto::Replication>> {
        let channels = self.0.lock().unwrap_or_else(|e| e.into_inner());
        channels.get(&target).filter(|c| !c.is_closed() && c.addr() == addr).cloned()
    }

    fn put(&self, target: u64, channel: &Channel<agora_proto::Replication>) {
        let mut channels = self.0.lock().unwrap_or_else(|e| e.into_inner());
        channels.insert(target, channel.clone());
    }

    /// Forgets `channel` if it is still the one kept for `target`.
    fn drop_broken(&self, target: u64, channel: &Channel<agora_proto::Replication>) {
        let mut channels = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if channels.get(&target).is_some_and(|c| c.same_connection(channel)) {
            channels.remove(&target);
        }
    }
}

/// The connection to one member: the channel shared by the node's peers of it (or its
/// own, for a probe outside openraft), opened on demand and dropped when it breaks; a
/// message is sent once.
pub(crate) struct Peer {
    me: Identity,
    target: u64,
    member: Member,
    channel: Option<Channel<agora_proto::Replication>>,
    shared: Option<Channels>,
    /// The index of the last entry this node's log appended (none for a probe).
    appended: Option<watch::Receiver<u64>>,
    /// The member accepted the last AppendEntries sent through this peer.
    answered: bool,
    /// The newest commit index the member accepted from this peer.
    commit_heard: Option<LogId<u64>>,
    /// When this peer last sent an AppendEntries.
    last_sent: Option<Instant>,
    /// The index of the last entry this peer has sent. None: it has sent no entries, so it
    /// is not a replication stream's but a leadership check's or a vote's (openraft makes a
    /// new peer for each of those).
    sent_up_to: Option<u64>,
}

/// Why a message got no answer of openraft's: the transport failed, or the receiver
/// refused the envelope.
type SendError = CallError;

impl Peer {
    /// A peer to ask [`Message::Hello`] of, outside openraft.
    pub fn probe(me: Identity, target: u64, addr: &str) -> Peer {
        Peer {
            me,
            target,
            member: Member { addr: addr.to_owned(), incarnation: 0 },
            channel: None,
            shared: None,
            appended: None,
            answered: false,
            commit_heard: None,
            last_sent: None,
            sent_up_to: None,
        }
    }

    /// Sends `message` and decodes the answer as `T`.
    pub async fn send<T: DeserializeOwned>(
        &mut self,
        message: Message,
        timeout: Duration,
    ) -> Result<T, SendError> {
        let body = encode(&Envelope { to_incarnation: self.member.incarnation, message })?;
        self.send_body(body, timeout).await
    }

    async fn send_body<T: DeserializeOwned>(
        &mut self,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<T, SendError> {
        let request = Request {
            group: self.me.group.name().to_owned(),
            from: self.me.node_id,
            to: self.target,
            body,
        };
        let kept = self.channel.as_ref().filter(|c| !c.is_closed()).cloned();
        let shared = || self.shared.as_ref()?.get(self.target, &self.member.addr);
        let channel = match kept.or_else(shared) {
            Some(channel) => channel,
            None => {
                let channel = Channel::connect_to(
                    &self.member.addr,
                    CONNECT_TIMEOUT.min(timeout),
                    agora_proto::DEFAULT_MAX_FRAME,
                    &self.me.connector,
                    Some(self.me.group),
                )
                .await?;
                if let Some(shared) = &self.shared {
                    shared.put(self.target, &channel);
                }
                channel
            }
        };
        self.channel = Some(channel.clone());
        let answer: Response = match channel.call(&request, timeout).await {
            Ok(answer) => answer,
            Err(e) => {
                if !matches!(e, CallError::Remote(_)) {
                    self.channel = None;
                    if let Some(shared) = &self.shared {
                        shared.drop_broken(self.target, &channel);
                    }
                }
                return Err(e);
            }
        };
        postcard::from_bytes(&answer)
            .map_err(|e| CallError::Decode { service: "replication", reason: e.to_string() })
    }

    /// Sends an openraft RPC and turns every failure into openraft's error.
    async fn rpc<R, E>(
        &mut self,
        message: Message,
        option: &RPCOption,
    ) -> Result<R, RPCError<u64, Member, RaftError<u64, E>>>
    where
        R: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let answer: Result<R, RaftError<u64, E>> =
            self.send(message, option.hard_ttl()).await.map_err(transport_error)?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    /// Whether the AppendEntries `rpc`, which carries no entries, is news of a commit that
    /// can go with the next entries instead; waits up to [`COMMIT_NEWS_WAIT`] for them.
    ///
    /// Only a replication stream's news qualifies: its `leader_commit` is newer than what
    /// the member accepted; the member accepted the last message (a member that does not
    /// answer gets every message, so that openraft sees the failures and backs off); the
    /// stream sent it something less than [`SILENCE_LIMIT`] ago; and the leader has, or
    /// appends within the wait, an entry past that commit that this stream has not sent.
    /// The stream sends that entry next, with the commit index; this message is answered
    /// `Success` unsent.
    ///
    /// Why that never costs an election: a follower stands after at least 450 ms without a
    /// message (the lease of `group::ELECTION_MAX_MS`, then its election timeout). Held
    /// news means either the follower heard from this stream under a heartbeat interval
    /// ago, or an entry it has not been sent yet goes to it next. A stream that sends
    /// nothing for a while (it is sending a snapshot, or every entry is sent and the commit
    /// waits on other members) reaches the silence limit, and its next heartbeat is sent.
    ///
    /// Why that answer misleads nothing (openraft =0.9.25, `replication/mod.rs` and
    /// `engine/handler/replication_handler`; check again before upgrading): an
    /// AppendEntries without entries moves no match index, so no entry is counted as held
    /// by anyone it was not; it also records the member's acknowledgement time
    /// (`clock_progress`), which 0.9.25 reads only for the `millis_since_quorum_ack`
    /// metric. A member that has meanwhile moved to a newer term, or lost entries, says
    /// so to the next message (the entries), one round trip later. Heartbeats proper (no
    /// news) and every leadership check are sent at once: the read lease (DESIGN.md) rests
    /// on the checks' answers only.
    async fn news_rides_with_next_entries(
        &mut self,
        rpc: &AppendEntriesRequest<TypeConfig>,
    ) -> bool {
        let (Some(appended), Some(sent_up_to)) = (self.appended.as_mut(), self.sent_up_to) else {
            return false;
        };
        let heard_lately = self.last_sent.is_some_and(|at| at.elapsed() < SILENCE_LIMIT);
        if !self.answered || !heard_lately || rpc.leader_commit <= self.commit_heard {
            return false;
        }
        let unsent = rpc.leader_commit.map_or(0, |c| c.index).max(sent_up_to);
        let next = tokio::time::timeout(COMMIT_NEWS_WAIT, appended.wait_for(|&i| i > unsent));
        matches!(next.await, Ok(Ok(_)))
    }
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CallError> {
    postcard::to_allocvec(value).map_err(|e| {
        CallError::Remote(ApiError::internal(format!("cannot encode a replication message: {e}")))
    })
}

/// A transport failure as openraft's error: unreachable (openraft backs off) or a
/// network error (it retries at the next heartbeat).
fn transport_error<E: std::error::Error>(e: CallError) -> RPCError<u64, Member, RaftError<u64, E>> {
    match &e {
        CallError::Unreachable { .. } => RPCError::Unreachable(Unreachable::new(&e)),
        _ => RPCError::Network(NetworkError::new(&e)),
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    /// After a member could not be reached, openraft waits this long before each next
    /// try: 25, 50, then every 100 ms (one heartbeat). openraft's default, 500 ms each
    /// time, left a replica restarted after a crash without the entries it missed for up
    /// to half a second; if the leader died then, that replica (its log short) stood for
    /// election, was refused, and its own vote made the others' first election fail too:
    /// failovers of 1.2 to 1.8 s instead of 0.6. Refused connections on a dead member
    /// cost little; a host that drops packets costs a connect timeout per try anyway.
    fn backoff(&self) -> openraft::network::Backoff {
        let steps = [25, 50].into_iter().chain(std::iter::repeat(HEARTBEAT_BACKOFF_MS));
        openraft::network::Backoff::new(steps.map(Duration::from_millis))
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, Member, RaftError<u64>>> {
        let called = Instant::now();
        let entries = rpc.entries.len() as u64;
        if entries == 0 && self.news_rides_with_next_entries(&rpc).await {
            return Ok(AppendEntriesResponse::Success);
        }
        let commit = rpc.leader_commit;
        let last_entry = rpc.entries.last().map(|entry| entry.log_id.index);
        let envelope =
            Envelope { to_incarnation: self.member.incarnation, message: Message::Append(rpc) };
        let body = encode(&envelope).map_err(transport_error)?;
        if body.len() > SEND_LIMIT && entries > 1 {
            // Too long for one frame: openraft sends again with at most this many.
            return Err(RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint(entries / 2)));
        }
        // Until an answer says otherwise, the member has not accepted this message: openraft
        // drops this future when its own timeout ends first.
        self.answered = false;
        self.last_sent = Some(Instant::now());
        self.sent_up_to = self.sent_up_to.max(last_entry);
        // openraft's timeout counts from the call, the wait for news included.
        let ttl = option.hard_ttl().saturating_sub(called.elapsed());
        let answer: Result<Result<AppendEntriesResponse<u64>, RaftError<u64>>, _> =
            self.send_body(body, ttl).await;
        self.answered = matches!(answer, Ok(Ok(AppendEntriesResponse::Success)));
        if self.answered && commit > self.commit_heard {
            self.commit_heard = commit;
        }
        answer
            .map_err(transport_error)?
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, Member, RaftError<u64, InstallSnapshotError>>,
    > {
        self.rpc(Message::Snapshot(rpc), &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, Member, RaftError<u64>>> {
        self.rpc(Message::Vote(rpc), &option).await
    }
}

/// Serves the group's messages that reach this node's port.
pub(crate) struct Hook {
    pub group: Component,
    pub node_id: u64,
    pub incarnation: u64,
    /// Set once the node's Raft is running; until then messages are refused as
    /// unavailable (the sender retries).
    pub raft: Arc<OnceLock<Raft<TypeConfig>>>,
    /// The node, for [`Message::Status`]; set once it runs.
    pub node: Arc<OnceLock<Weak<crate::group::Group>>>,
}

impl Hook {
    async fn answer(&self, caller: Caller, request: Request) -> Result<Response, ApiError> {
        if request.group != self.group.name() {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                format!(
                    "this node is a replica of {}, not of {}: check --peers",
                    self.group, request.group
                ),
            ));
        }
        // Addressee 0 is "whichever node this is": only the operator's messages use it.
        if request.to != self.node_id && request.to != 0 {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                format!(
                    "a message for node {} of {} reached node {}: check --peers",
                    request.to, self.group, self.node_id
                ),
            ));
        }
        let envelope: Envelope = postcard::from_bytes(&request.body).map_err(|e| {
            ApiError::new(ErrorCode::BadRequest, format!("undecodable replication message: {e}"))
        })?;
        // The operator's messages (`agora cluster`): for the group's own nodes and the
        // admin, to any node.
        if let Message::Status | Message::AddLearner { .. } | Message::SetVoters { .. } =
            &envelope.message
        {
            let node = self.node.get().and_then(Weak::upgrade);
            let Some(node) = node else {
                return Err(ApiError::unavailable("this replica is starting"));
            };
            return match envelope.message {
                Message::AddLearner { id, addr } => answer(&node.add_learner(id, &addr).await?),
                Message::SetVoters { voters } => answer(&node.change_membership(voters).await?),
                _ => answer(&node.status().await),
            };
        }
        if caller == Caller::Node(Component::Admin) {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "the admin may ask how a group stands and change its members, nothing else",
            ));
        }
        if request.to != self.node_id {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                format!("a Raft message must name its addressee, node {}", self.node_id),
            ));
        }
        let Some(raft) = self.raft.get() else {
            return Err(ApiError::unavailable("this replica is starting"));
        };
        if let Message::Hello = envelope.message {
            let initialized = raft.is_initialized().await.unwrap_or(false);
            return answer(&Hello { initialized, incarnation: self.incarnation });
        }
        if envelope.to_incarnation != 0 && envelope.to_incarnation != self.incarnation {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                format!(
                    "node {} of {} was started on a new data directory since it joined the \
                     group: remove it from the group and add it again",
                    self.node_id, self.group
                ),
            ));
        }
        // The sender named in the envelope is the one whose vote the message carries.
        let claimed = match &envelope.message {
            Message::Hello | Message::Status => None,
            Message::AddLearner { .. } | Message::SetVoters { .. } => None,
            Message::Vote(rpc) => rpc.vote.leader_id().voted_for(),
            Message::Append(rpc) => rpc.vote.leader_id().voted_for(),
            Message::Snapshot(rpc) => rpc.vote.leader_id().voted_for(),
        };
        if claimed.is_some_and(|node| node != request.from) {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                format!(
                    "a message from node {} of {} carries node {:?}'s vote",
                    request.from, self.group, claimed
                ),
            ));
        }
        match envelope.message {
            Message::Hello
            | Message::Status
            | Message::AddLearner { .. }
            | Message::SetVoters { .. } => unreachable_hello(),
            Message::Vote(rpc) => answer(&raft.vote(rpc).await),
            Message::Append(rpc) => answer(&raft.append_entries(rpc).await),
            Message::Snapshot(rpc) => answer(&raft.install_snapshot(rpc).await),
        }
    }
}

/// Hello and the operator's messages were answered above; this arm exists for the match to be complete.
fn unreachable_hello() -> Result<Response, ApiError> {
    Err(ApiError::internal("hello or status handled twice"))
}

fn answer<T: Serialize>(value: &T) -> Result<Response, ApiError> {
    postcard::to_allocvec(value).map_err(|e| ApiError::internal(format!("cannot encode: {e}")))
}

impl ReplicationHandler for Hook {
    fn handle(
        &self,
        caller: Caller,
        request: Request,
    ) -> Pin<Box<dyn Future<Output = Result<Response, ApiError>> + Send + '_>> {
        Box::pin(self.answer(caller, request))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use openraft::{CommittedLeaderId, Vote};

    use super::*;

    fn log_id(index: u64) -> LogId<u64> {
        LogId::new(CommittedLeaderId::new(1, 1), index)
    }

    /// News of commit `committed` from leader 1: an AppendEntries with no entries.
    fn news(committed: u64) -> AppendEntriesRequest<TypeConfig> {
        AppendEntriesRequest {
            vote: Vote::new_committed(1, 1),
            prev_log_id: Some(log_id(committed)),
            leader_commit: Some(log_id(committed)),
            entries: Vec::new(),
        }
    }

    /// An address nothing listens on: a message sent there fails at once.
    fn nobody() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address").to_string()
    }

    /// A replication stream's peer of member 2 at `addr` that has just sent entries up to
    /// 2 and had commit 1 accepted; `appended` stands for the leader's log.
    fn stream_peer(dir: &std::path::Path, addr: &str, appended: &watch::Sender<u64>) -> Peer {
        let trust = agora_testkit::trust(dir, Component::ProductDb);
        let me = Identity { group: Component::ProductDb, node_id: 1, connector: trust.connector() };
        let mut peer = Network {
            me,
            routes: Arc::default(),
            channels: Channels::default(),
            appended: appended.subscribe(),
        }
        .peer(2, &Member { addr: addr.to_owned(), incarnation: 1 });
        peer.answered = true;
        peer.commit_heard = Some(log_id(1));
        peer.last_sent = Some(Instant::now());
        peer.sent_up_to = Some(2);
        peer
    }

    /// Whether `answer` is that of a message sent to [`nobody`].
    fn sent(
        answer: &Result<AppendEntriesResponse<u64>, RPCError<u64, Member, RaftError<u64>>>,
    ) -> bool {
        matches!(answer, Err(RPCError::Unreachable(_)))
    }

    fn option() -> RPCOption {
        RPCOption::new(Duration::from_secs(1))
    }

    #[tokio::test]
    async fn news_of_a_commit_goes_with_the_entry_appended_after_it_unsent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (appended, _) = watch::channel(2);
        let mut peer = stream_peer(dir.path(), &nobody(), &appended);

        // Entry 3 is already appended: the stream sends it next, commit 2 with it.
        appended.send_replace(3);
        let answer = peer.append_entries(news(2), option()).await;
        assert!(matches!(answer, Ok(AppendEntriesResponse::Success)), "{answer:?}");

        // Entry 4 is appended while the news waits.
        let later = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            appended.send_replace(4);
            appended
        });
        let answer = peer.append_entries(news(3), option()).await;
        assert!(matches!(answer, Ok(AppendEntriesResponse::Success)), "{answer:?}");
        drop(later.await);
    }

    #[tokio::test]
    async fn news_of_a_commit_no_entry_follows_is_sent_after_the_wait() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (appended, _) = watch::channel(2);
        let mut peer = stream_peer(dir.path(), &nobody(), &appended);
        let started = Instant::now();
        let answer = peer.append_entries(news(2), option()).await;
        assert!(sent(&answer), "not sent: {answer:?}");
        assert!(started.elapsed() >= COMMIT_NEWS_WAIT);
    }

    #[tokio::test]
    async fn news_of_a_commit_is_not_held_for_an_entry_the_stream_already_sent() {
        // Entry 3 is appended and sent, but not committed (the commit waits on other
        // members): nothing else goes to this member, so the news must.
        let dir = tempfile::tempdir().expect("tempdir");
        let (appended, _) = watch::channel(3);
        let mut peer = stream_peer(dir.path(), &nobody(), &appended);
        peer.sent_up_to = Some(3);
        let answer = peer.append_entries(news(2), option()).await;
        assert!(sent(&answer), "held: {answer:?}");
    }

    #[tokio::test]
    async fn a_message_openraft_gave_up_on_leaves_the_next_news_unheld() {
        // A member that takes connections and never answers: openraft's own timeout
        // drops the call while it waits, before any answer could say how it went.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = silent.local_addr().expect("address").to_string();
        let dir = tempfile::tempdir().expect("tempdir");
        let (appended, _) = watch::channel(2);
        let mut peer = stream_peer(dir.path(), &addr, &appended);
        let call = peer.append_entries(news(2), option());
        let given_up = tokio::time::timeout(COMMIT_NEWS_WAIT * 3, call).await;
        assert!(given_up.is_err(), "the member answered: {given_up:?}");
        assert!(!peer.answered, "a message nobody answered counts as accepted");
    }

    #[tokio::test]
    async fn a_peer_remembers_what_it_sent_and_when_answered_or_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (appended, _) = watch::channel(3);
        let mut peer = stream_peer(dir.path(), &nobody(), &appended);
        peer.last_sent = None;
        let mut entries = news(2);
        entries
            .entries
            .push(openraft::Entry { log_id: log_id(3), payload: openraft::EntryPayload::Blank });
        let before = Instant::now();
        assert!(sent(&peer.append_entries(entries, option()).await));
        assert_eq!(peer.sent_up_to, Some(3));
        assert!(peer.last_sent.is_some_and(|at| at >= before), "{:?}", peer.last_sent);
    }

    #[tokio::test]
    async fn a_member_the_stream_left_silent_for_a_heartbeat_interval_gets_the_news() {
        // Entry 3 is appended and unsent, but the stream sends nothing (a snapshot, say):
        // the member must hear from its leader before it stands for election.
        let dir = tempfile::tempdir().expect("tempdir");
        let (appended, _) = watch::channel(3);
        let mut peer = stream_peer(dir.path(), &nobody(), &appended);
        peer.last_sent = Instant::now().checked_sub(SILENCE_LIMIT);
        assert!(peer.last_sent.is_some(), "this machine's clock started too recently");
        let answer = peer.append_entries(news(2), option()).await;
        assert!(sent(&answer), "held: {answer:?}");

        // A peer that never sent anything has left its member silent too.
        let mut peer = stream_peer(dir.path(), &nobody(), &appended);
        peer.last_sent = None;
        assert!(sent(&peer.append_entries(news(2), option()).await));
    }

    #[tokio::test]
    async fn heartbeats_checks_and_members_that_did_not_answer_get_every_message_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (appended, _) = watch::channel(5);
        let addr = nobody();

        // No news: commit 1 is what the member has.
        let mut peer = stream_peer(dir.path(), &addr, &appended);
        assert!(sent(&peer.append_entries(news(1), option()).await));

        // A peer that never sent entries: a leadership check's (the read lease rests on
        // its answers) or a new stream's.
        let mut peer = stream_peer(dir.path(), &addr, &appended);
        peer.sent_up_to = None;
        assert!(sent(&peer.append_entries(news(2), option()).await));

        // The member did not accept the last message: openraft must see every failure.
        let mut peer = stream_peer(dir.path(), &addr, &appended);
        peer.answered = false;
        assert!(sent(&peer.append_entries(news(2), option()).await));
        // ... and a failure leaves the next news unheld too.
        assert!(sent(&peer.append_entries(news(3), option()).await));
    }
}
