//! Raft messages over our own protocol: the client side openraft sends through
//! ([`Network`], one [`Peer`] per member) and the server side a database's port serves
//! ([`Hook`], registered with `agora_proto::serve_with`).
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
use std::time::Duration;

use agora_proto::messages::replication::{Request, Response};
use agora_proto::server::ReplicationHandler;
use agora_proto::{ApiError, CallError, Caller, Channel, Component, Connector, ErrorCode};
use openraft::Raft;
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::types::{Envelope, Hello, Member, Message, TypeConfig};

/// The largest message a sender puts in one frame; the receiver reads up to
/// `agora_proto::messages::replication::MAX_FRAME`. Runs of log entries longer than this
/// are sent in parts (openraft asks again for fewer entries).
const SEND_LIMIT: usize = 1 << 20;

/// The longest wait between tries to reach a member that did not answer.
const HEARTBEAT_BACKOFF_MS: u64 = 100;

/// How long connecting to a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

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
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: u64, node: &Member) -> Peer {
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
        let entries = rpc.entries.len() as u64;
        let envelope =
            Envelope { to_incarnation: self.member.incarnation, message: Message::Append(rpc) };
        let body = encode(&envelope).map_err(transport_error)?;
        if body.len() > SEND_LIMIT && entries > 1 {
            // Too long for one frame: openraft sends again with at most this many.
            return Err(RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint(entries / 2)));
        }
        let answer: Result<AppendEntriesResponse<u64>, RaftError<u64>> =
            self.send_body(body, option.hard_ttl()).await.map_err(transport_error)?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
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
