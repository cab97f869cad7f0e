//! Raft messages over our own protocol, the receiving side: [`Hosted`], every group this
//! process hosts by name, is what a database's port serves beside the database
//! (`agora_proto::serve_with`). A message names its group, sender and addressee; it is
//! handed to that group's node after the checks below (a snapshot's pieces to
//! `transfer.rs`).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use agora_proto::messages::replication::{Request, Response};
use agora_proto::{ApiError, Caller, Component, ErrorCode, Handler};
use openraft::error::RaftError;
use serde::Serialize;

use crate::group::Group;
use crate::network::Channels;
use crate::types::{Envelope, Hello, Message};

/// How long `agora cluster transfer-leader` waits for the new leader.
const HAND_OVER_WITHIN: Duration = Duration::from_secs(5);

/// Every group this process hosts, by name: what its port serves for the groups'
/// messages, and the connections they all send theirs over. Cheap to clone.
#[derive(Clone, Default)]
pub struct Hosted {
    groups: Arc<RwLock<BTreeMap<String, Arc<Group>>>>,
    channels: Channels,
}

impl Hosted {
    /// The groups' messages as a service of their database's port, beside the database
    /// (`agora_proto::serve_with`).
    pub fn service(self) -> agora_proto::Extra {
        agora_proto::Extra::new::<agora_proto::Replication, _>(
            Arc::new(self),
            agora_proto::messages::replication::MAX_FRAME,
        )
    }

    pub(crate) fn add(&self, group: Arc<Group>) {
        let mut groups = self.groups.write().unwrap_or_else(|e| e.into_inner());
        groups.insert(group.me.name.to_string(), group);
    }

    /// The connections every group hosted here sends its messages over.
    pub(crate) fn channels(&self) -> Channels {
        self.channels.clone()
    }

    fn get(&self, name: &str) -> Option<Arc<Group>> {
        self.groups.read().unwrap_or_else(|e| e.into_inner()).get(name).cloned()
    }

    /// The names of the groups hosted here, for a refusal that says which there are.
    fn names(&self) -> String {
        let groups = self.groups.read().unwrap_or_else(|e| e.into_inner());
        groups.keys().cloned().collect::<Vec<_>>().join(", ")
    }

    async fn answer(&self, caller: Caller, request: Request) -> Result<Response, ApiError> {
        let Some(node) = self.get(&request.group) else {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                format!(
                    "this node is a replica of {}, not of {}: check --peers",
                    self.names(),
                    request.group
                ),
            ));
        };
        let group = node.me.name.clone();
        // Addressee 0 is "whichever node this is": only the operator's messages use it.
        if request.to != node.me.node_id && request.to != 0 {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                format!(
                    "a message for node {} of {group} reached node {}: check --peers",
                    request.to, node.me.node_id
                ),
            ));
        }
        let envelope: Envelope = postcard::from_bytes(&request.body).map_err(|e| {
            ApiError::new(ErrorCode::BadRequest, format!("undecodable replication message: {e}"))
        })?;
        // The operator's messages (`agora cluster`): for the group's own nodes and the
        // admin, to any node.
        match envelope.message {
            Message::Status => return encode(&node.status().await),
            Message::AddLearner { id, addr } => return encode(&node.add_learner(id, &addr).await?),
            Message::SetVoters { voters } => return encode(&node.change_membership(voters).await?),
            Message::HandOver { to } => {
                return encode(&node.hand_over(to, HAND_OVER_WITHIN).await?);
            }
            Message::SetAddress { id, addr } => {
                return encode(&node.set_address(id, &addr).await?);
            }
            _ => {}
        }
        if caller == Caller::Node(Component::Admin) {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "the admin may ask how a group stands, change its members and their addresses \
                 and move its leadership, nothing else",
            ));
        }
        if request.to != node.me.node_id {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                format!("a Raft message must name its addressee, node {}", node.me.node_id),
            ));
        }
        if let Message::Hello = envelope.message {
            let initialized = node.raft.is_initialized().await.unwrap_or(false);
            return encode(&Hello { initialized, incarnation: node.incarnation });
        }
        if envelope.to_incarnation != 0 && envelope.to_incarnation != node.incarnation {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                format!(
                    "node {} of {group} was started on a new data directory since it joined the \
                     group: remove it from the group and add it again",
                    node.me.node_id
                ),
            ));
        }
        // The sender named in the envelope is the one whose vote the message carries.
        let claimed = match &envelope.message {
            Message::Vote(rpc) | Message::PreVote(rpc) => rpc.vote.leader_id.node_id,
            Message::Append(rpc) => rpc.vote.leader_id.node_id,
            Message::SnapshotChunk(chunk) => chunk.vote.leader_id.node_id,
            Message::TransferLeader(rpc) => rpc.from_leader().leader_id.node_id,
            _ => request.from,
        };
        if claimed != request.from {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                format!(
                    "a message from node {} of {group} carries node {claimed}'s vote",
                    request.from
                ),
            ));
        }
        match envelope.message {
            // A replica that started a moment ago may have acknowledged a leader just before:
            // it grants no vote until that leader's lease has run out.
            Message::Vote(_) | Message::PreVote(_) if node.guarded() => encode(&node.refuse_vote()),
            Message::Vote(rpc) => encode(&node.raft.vote(rpc).await),
            Message::PreVote(rpc) => encode(&node.raft.pre_vote(rpc).await),
            Message::Append(rpc) => {
                node.heard_from_leader();
                encode(&node.raft.append_entries(rpc).await)
            }
            Message::TransferLeader(rpc) => {
                let answer = node.raft.handle_transfer_leader(rpc).await;
                encode(&answer.map_err(RaftError::<crate::TypeConfig>::Fatal))
            }
            Message::SnapshotChunk(chunk) => {
                node.heard_from_leader();
                encode(&crate::transfer::receive(&node, chunk).await?)
            }
            Message::Hello
            | Message::Status
            | Message::AddLearner { .. }
            | Message::SetVoters { .. }
            | Message::HandOver { .. }
            | Message::SetAddress { .. } => Err(ApiError::internal("a message answered twice")),
        }
    }
}

impl Handler<agora_proto::Replication> for Hosted {
    async fn handle(&self, request: Request) -> Result<Response, ApiError> {
        // The server loop has checked that the caller is a node of the group the message
        // names, or the cluster's admin (`Replication::authorize`); what the admin may ask
        // is checked here.
        let caller = agora_proto::server::caller().unwrap_or(Caller::Public);
        self.answer(caller, request).await
    }
}

fn encode<T: Serialize>(value: &T) -> Result<Response, ApiError> {
    postcard::to_allocvec(value).map_err(|e| ApiError::internal(format!("cannot encode: {e}")))
}
