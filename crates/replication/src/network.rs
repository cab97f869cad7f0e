//! Raft messages over our own protocol, the sending side: the [`Network`] openraft makes a
//! [`Peer`] from for each member it talks to, and the [`Channels`] every group of this
//! process shares (one multiplexed, mutually authenticated connection per address, so
//! several groups hosted by one process talk to their peers over one connection).
//!
//! Every message travels in an envelope that names the group, the sender and the
//! addressee (`agora_proto::messages::replication::Request`); the receiver
//! (`serve.rs`) refuses one meant for another group or node, or for an earlier
//! incarnation of itself (a wiped data directory). Transport failures go back to openraft
//! as such; it retries on its own schedule (heartbeats, backoff), so nothing here resends.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agora_proto::messages::replication::{Request, Response};
use agora_proto::{ApiError, CallError, Channel, Component, Connector};
use openraft::error::{
    NetworkError, RPCError, RaftError, ReplicationClosed, StreamingError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::types::{Envelope, Member, Message, Snapshot, SnapshotFile, TypeConfig, Vote};

/// The largest message a sender puts in one frame; the receiver reads up to
/// `agora_proto::messages::replication::MAX_FRAME`. Runs of log entries longer than this
/// are sent in parts (openraft asks again for fewer entries).
const SEND_LIMIT: usize = 1 << 20;

/// How long connecting to a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// Who this node is to the others: what every message it sends says about it.
#[derive(Clone)]
pub(crate) struct Identity {
    /// The group's component: the certificate its members present.
    pub group: Component,
    /// The group's name, as every message names it (`GroupConfig::name`).
    pub name: Arc<str>,
    pub node_id: u64,
    pub connector: Connector,
}

/// Makes a [`Peer`] for each member openraft sends to.
pub(crate) struct Network {
    pub me: Identity,
    /// This node's own addresses for some members (`GroupConfig::routes`).
    pub routes: Arc<BTreeMap<u64, String>>,
    pub channels: Channels,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: u64, node: &Member) -> Peer {
        let mut member = node.clone();
        if let Some(addr) = self.routes.get(&target) {
            member.addr.clone_from(addr);
        }
        let shared = Some(self.channels.clone());
        Peer { me: self.me.clone(), target, member, shared, outage: Some(Outage::default()) }
    }
}

/// One open channel per address, shared by every [`Peer`] of this process's groups.
///
/// openraft makes a client for the replication stream of each member, another for its
/// heartbeats and one for each vote; without this each would open a TLS connection of its
/// own. Channels are multiplexed, so they all share one; one that breaks is dropped here
/// by whoever sees it break. Opening one is done once at a time per address (the groups
/// of a process start together and would otherwise each open their own). Bounded by the
/// number of distinct member addresses of the groups this process hosts.
#[derive(Clone, Default)]
pub(crate) struct Channels(Arc<Mutex<HashMap<String, Slot>>>);

/// An address's channel, and the lock whoever opens it holds.
#[derive(Default)]
struct Slot {
    channel: Option<Channel<agora_proto::Replication>>,
    opening: Arc<tokio::sync::Mutex<()>>,
}

impl Channels {
    /// The open channel to `addr`, or `None` with the lock to hold while opening one.
    fn get(
        &self,
        addr: &str,
    ) -> Result<Channel<agora_proto::Replication>, Arc<tokio::sync::Mutex<()>>> {
        let mut channels = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let slot = channels.entry(addr.to_owned()).or_default();
        match &slot.channel {
            Some(channel) if !channel.is_closed() => Ok(channel.clone()),
            _ => Err(slot.opening.clone()),
        }
    }

    fn put(&self, channel: &Channel<agora_proto::Replication>) {
        let mut channels = self.0.lock().unwrap_or_else(|e| e.into_inner());
        channels.entry(channel.addr().to_owned()).or_default().channel = Some(channel.clone());
    }

    /// Forgets `channel` if it is still the one kept for its address.
    fn drop_broken(&self, channel: &Channel<agora_proto::Replication>) {
        let mut channels = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = channels.get_mut(channel.addr())
            && slot.channel.as_ref().is_some_and(|c| c.same_connection(channel))
        {
            slot.channel = None;
        }
    }
}

/// The connection to one member: the channel this process shares for its address (or
/// one of its own, for a probe outside openraft), opened on demand and dropped when it
/// breaks; a message is sent once.
pub(crate) struct Peer {
    me: Identity,
    target: u64,
    member: Member,
    shared: Option<Channels>,
    /// openraft's peers only (not the operator's probes): the outage being logged.
    outage: Option<Outage>,
}

/// How often a peer that stays unreachable is reported again.
const OUTAGE_REPORT: Duration = Duration::from_secs(30);

/// A peer's failures as the log tells them: the first one, then one line every
/// [`OUTAGE_REPORT`] while they go on, and the recovery, instead of a line per heartbeat.
#[derive(Default)]
struct Outage {
    /// When the failures began and when they were last reported, while they go on.
    down: Option<(Instant, Instant)>,
}

impl Outage {
    fn note(&mut self, group: &str, target: u64, addr: &str, failure: Option<&CallError>) {
        let now = Instant::now();
        match (failure, self.down) {
            (Some(e), None) => {
                tracing::warn!(
                    "{group} node {target} at {addr} is unreachable ({e}); retrying, and \
                     reporting every {} s while it lasts",
                    OUTAGE_REPORT.as_secs()
                );
                self.down = Some((now, now));
            }
            (Some(e), Some((since, reported))) if now - reported >= OUTAGE_REPORT => {
                tracing::warn!(
                    "{group} node {target} at {addr} unreachable for {} s ({e})",
                    (now - since).as_secs()
                );
                self.down = Some((since, now));
            }
            (Some(_), Some(_)) => {}
            (None, Some((since, _))) => {
                tracing::info!(
                    "{group} node {target} at {addr} reachable again after {:.1} s",
                    (now - since).as_secs_f64()
                );
                self.down = None;
            }
            (None, None) => {}
        }
    }
}

impl Peer {
    /// A peer to ask one of the operator's or the start's messages of, outside openraft:
    /// over `shared` connections (a node's), or a connection of its own (the admin's).
    pub fn probe(me: Identity, target: u64, addr: &str, shared: Option<Channels>) -> Peer {
        let member = Member { addr: addr.to_owned(), incarnation: 0 };
        Peer { me, target, member, shared, outage: None }
    }

    /// Sends `message` and decodes the answer as `T`.
    pub async fn send<T: DeserializeOwned>(
        &mut self,
        message: Message,
        timeout: Duration,
    ) -> Result<T, CallError> {
        let body = encode(&Envelope { to_incarnation: self.member.incarnation, message })?;
        self.send_body(body, timeout).await
    }

    async fn send_body<T: DeserializeOwned>(
        &mut self,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<T, CallError> {
        let answer = self.exchange(body, timeout).await;
        if let Some(outage) = &mut self.outage {
            // A peer that answered, even with a refusal, is reachable.
            let failure = answer.as_ref().err().filter(|e| !matches!(e, CallError::Remote(_)));
            outage.note(&self.me.name, self.target, &self.member.addr, failure);
        }
        answer
    }

    async fn exchange<T: DeserializeOwned>(
        &mut self,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<T, CallError> {
        let request = Request {
            group: self.me.name.to_string(),
            from: self.me.node_id,
            to: self.target,
            body,
        };
        let channel = match &self.shared {
            Some(shared) => match shared.get(&self.member.addr) {
                Ok(channel) => channel,
                Err(opening) => {
                    let _opening = opening.lock().await;
                    match shared.get(&self.member.addr) {
                        Ok(channel) => channel,
                        Err(_) => {
                            let channel = self.connect(timeout).await?;
                            shared.put(&channel);
                            channel
                        }
                    }
                }
            },
            None => self.connect(timeout).await?,
        };
        let answer: Response = match channel.call(&request, timeout).await {
            Ok(answer) => answer,
            Err(e) => {
                if !matches!(e, CallError::Remote(_))
                    && let Some(shared) = &self.shared
                {
                    shared.drop_broken(&channel);
                }
                return Err(e);
            }
        };
        postcard::from_bytes(&answer)
            .map_err(|e| CallError::Decode { service: "replication", reason: e.to_string() })
    }

    async fn connect(
        &self,
        timeout: Duration,
    ) -> Result<Channel<agora_proto::Replication>, CallError> {
        let (addr, timeout) = (&self.member.addr, CONNECT_TIMEOUT.min(timeout));
        let (connector, max_frame) = (&self.me.connector, agora_proto::DEFAULT_MAX_FRAME);
        match self.target {
            // The operator's probe of "whichever replica listens there".
            0 => {
                Channel::connect_to(addr, timeout, max_frame, connector, Some(self.me.group)).await
            }
            // A node of the group: the one it is meant for, by its own certificate.
            target => {
                let group = self.me.group;
                Channel::connect_to_replica(addr, timeout, max_frame, connector, group, target)
                    .await
            }
        }
    }

    /// Sends one of openraft's messages and turns every failure into openraft's error.
    async fn rpc<R: DeserializeOwned>(
        &mut self,
        message: Message,
        option: &RPCOption,
    ) -> Result<R, RPCError<TypeConfig>> {
        let answer: Result<R, RaftError<TypeConfig>> =
            self.send(message, option.soft_ttl()).await.map_err(transport_error)?;
        // The only error a peer's Raft answers with is that it stopped.
        answer.map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))
    }
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CallError> {
    postcard::to_allocvec(value).map_err(|e| {
        CallError::Remote(ApiError::internal(format!("cannot encode a replication message: {e}")))
    })
}

/// A transport failure as openraft's error: unreachable (openraft backs off) or a
/// network error (it retries at the next heartbeat).
pub(crate) fn transport_error(e: CallError) -> RPCError<TypeConfig> {
    match &e {
        CallError::Unreachable { .. } => RPCError::Unreachable(Unreachable::new(&e)),
        _ => RPCError::Network(NetworkError::new(&e)),
    }
}

impl RaftNetworkV2<TypeConfig> for Peer {
    type SnapshotData = SnapshotFile;

    async fn append_entries(
        &mut self,
        mut rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        // A run too long for one frame goes in part: the first half that fits is sent and
        // answered as a partial success, and openraft sends the rest next.
        let mut shortened = false;
        let body = loop {
            let envelope =
                Envelope { to_incarnation: self.member.incarnation, message: Message::Append(rpc) };
            let body = encode(&envelope).map_err(transport_error)?;
            let Message::Append(back) = envelope.message else {
                unreachable!("the envelope holds the append it was built with")
            };
            rpc = back;
            if body.len() <= SEND_LIMIT || rpc.entries.len() <= 1 {
                break body;
            }
            rpc.entries.truncate(rpc.entries.len() / 2);
            shortened = true;
        };
        let last_sent = rpc.entries.last().map(|entry| entry.log_id);
        let answer: Result<AppendEntriesResponse<TypeConfig>, RaftError<TypeConfig>> =
            self.send_body(body, option.soft_ttl()).await.map_err(transport_error)?;
        match answer {
            Ok(AppendEntriesResponse::Success) if shortened => {
                Ok(AppendEntriesResponse::PartialSuccess(last_sent))
            }
            Ok(answer) => Ok(answer),
            Err(e) => Err(RPCError::Unreachable(Unreachable::new(&e))),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.rpc(Message::Vote(rpc), &option).await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.rpc(Message::PreVote(rpc), &option).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + openraft::OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let chunk = usize::try_from(crate::config::SNAPSHOT_CHUNK).unwrap_or(512 * 1024);
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            sent = crate::transfer::send(self, vote, snapshot, chunk, &option) => sent,
        }
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.rpc(Message::TransferLeader(req), &option).await
    }
}
