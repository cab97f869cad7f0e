//! The messages each server understands. Client and server import the same types, so they
//! cannot drift apart; payloads are encoded with postcard (see docs/protocol.md).
//!
//! Each server is a [`Service`]: a wire id, a request type and a response type. A response
//! travels as `Result<Response, ApiError>`.

pub mod customer;
pub mod front;
pub mod payments;
pub mod product;
pub mod replication;

use std::fmt::Debug;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::trust::{Caller, Component};
use crate::{ApiError, ErrorCode, ServiceId};

/// The id a client gives one mutating request (CreateAccount, RegisterItemForSale,
/// UpdateUnitsForSale, AddItemToCart, RemoveItemFromCart, Logout): 128 random bits. The
/// database that applies the request records the id in its caller's scope (the session;
/// the role and username of a sign-up; the seller) with its answer, in the same
/// transaction, and answers a repeat of the id with the recorded answer instead of
/// applying it again, for 24 hours; a repeat that asks something else is refused
/// (docs/protocol.md, "Retries"). All zeros means "no id": applied every time.
pub type OpId = [u8; 16];

/// A fresh random [`OpId`].
pub fn new_op_id() -> OpId {
    let mut op = [0u8; 16];
    if getrandom::fill(&mut op).is_err() || op == [0; 16] {
        // No OS randomness: the clock's nanoseconds are unique enough per client.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos());
        op = nanos.to_le_bytes();
    }
    op
}

/// A server's vocabulary.
pub trait Service: Send + Sync + 'static {
    /// The wire id requests carry.
    const ID: ServiceId;
    /// What clients send.
    type Request: Serialize + DeserializeOwned + Debug + Send + Sync + 'static;
    /// What the server answers when the request succeeds.
    type Response: Serialize + DeserializeOwned + Debug + Send + Sync + 'static;

    /// Whether sending `request` twice has the same effect as sending it once, so that a
    /// client may resend it when a connection breaks before the answer arrives. Every
    /// request of Agora's services is: reads and absolute writes by nature, mutations by
    /// their [`OpId`], purchases by their purchase key.
    fn idempotent(_request: &Self::Request) -> bool {
        true
    }

    /// Whether `caller` may send `request`: the service's whole rule of who may do what,
    /// checked by the server loop before the handler sees the request. The public
    /// frontends let anyone in (users are checked by session); the internal services let
    /// in only the roles whose job needs each request.
    fn authorize(caller: Caller, request: &Self::Request) -> Result<(), ApiError>;
}

/// `Ok` if `caller` is one of `components`; otherwise a `forbidden` refusal that names
/// the request's kind and the service.
pub(crate) fn only(
    caller: Caller,
    components: &[Component],
    service: ServiceId,
    request: &impl Debug,
) -> Result<(), ApiError> {
    if caller.is(components) {
        return Ok(());
    }
    let text = format!("{request:?}");
    let kind = text.split(['(', ' ', '{']).next().unwrap_or("?");
    let message = match caller {
        Caller::Public => format!(
            "{} serves only Agora's own components: connect with the cluster's credentials",
            service.name()
        ),
        Caller::Node(_) | Caller::Replica(..) => {
            format!("{caller} may not send {kind} to {}", service.name())
        }
    };
    Err(ApiError::new(ErrorCode::Forbidden, message))
}

/// The customer database.
#[derive(Debug)]
pub struct CustomerDb;

impl Service for CustomerDb {
    const ID: ServiceId = ServiceId::CustomerDb;
    type Request = customer::Request;
    type Response = customer::Response;

    fn authorize(caller: Caller, request: &Self::Request) -> Result<(), ApiError> {
        only(caller, customer::may_send(request), Self::ID, request)
    }
}

/// The payments service.
#[derive(Debug)]
pub struct Payments;

impl Service for Payments {
    const ID: ServiceId = ServiceId::Payments;
    type Request = payments::Request;
    type Response = payments::Response;

    fn authorize(caller: Caller, request: &Self::Request) -> Result<(), ApiError> {
        only(caller, payments::may_send(request), Self::ID, request)
    }
}

/// The product database.
#[derive(Debug)]
pub struct ProductDb;

impl Service for ProductDb {
    const ID: ServiceId = ServiceId::ProductDb;
    type Request = product::Request;
    type Response = product::Response;

    fn authorize(caller: Caller, request: &Self::Request) -> Result<(), ApiError> {
        only(caller, product::may_send(request), Self::ID, request)
    }
}

/// Raft traffic between the replicas of one database's group, on the database's own
/// port. The payload is the replication crate's own (opaque here); the envelope names
/// the group and both ends so that a message that reached the wrong node is refused.
#[derive(Debug)]
pub struct Replication;

impl Service for Replication {
    const ID: ServiceId = ServiceId::Replication;
    type Request = replication::Request;
    type Response = replication::Response;

    /// Only a replica of the same group, by its own certificate (a node of the component
    /// the message names: the group is named `<component>`, or `<component>/<n>` when one
    /// component runs several) and in its own name (the sender the request names is the
    /// node its certificate proves), or the cluster's admin (`agora cluster`), whom the
    /// receiving replica (`agora_replication`'s `Hosted`) lets ask only how the group
    /// stands and change it. The replica also checks that the group is one it hosts.
    fn authorize(caller: Caller, request: &Self::Request) -> Result<(), ApiError> {
        let component = request.group.split_once('/').map_or(&*request.group, |(c, _)| c);
        match caller {
            Caller::Replica(node, id) if node.name() == component && id == request.from => Ok(()),
            Caller::Replica(node, _) if node.name() == component => Err(ApiError::new(
                ErrorCode::Forbidden,
                format!(
                    "{caller} may not send {}'s replication traffic in node {}'s name",
                    request.group, request.from
                ),
            )),
            Caller::Node(node) if node.name() == component => Err(ApiError::new(
                ErrorCode::Forbidden,
                format!(
                    "{caller}'s shared certificate may not send replication traffic: every \
                     replica needs its own (`agora credentials issue --component {node} \
                     --node-id {}`)",
                    request.from
                ),
            )),
            Caller::Node(Component::Admin) => Ok(()),
            _ => Err(ApiError::new(
                ErrorCode::Forbidden,
                format!(
                    "{caller} may not send replication traffic for the {} group: only its \
                     own replicas may",
                    request.group
                ),
            )),
        }
    }
}

/// The seller server.
#[derive(Debug)]
pub struct SellerServer;

impl Service for SellerServer {
    const ID: ServiceId = ServiceId::Seller;
    type Request = front::SellerRequest;
    type Response = front::Response;

    /// A public door: anyone may call; the session inside each request is the check.
    fn authorize(_caller: Caller, _request: &Self::Request) -> Result<(), ApiError> {
        Ok(())
    }
}

/// The buyer server.
#[derive(Debug)]
pub struct BuyerServer;

impl Service for BuyerServer {
    const ID: ServiceId = ServiceId::Buyer;
    type Request = front::BuyerRequest;
    type Response = front::Response;

    /// A public door: anyone may call; the session inside each request is the check.
    fn authorize(_caller: Caller, _request: &Self::Request) -> Result<(), ApiError> {
        Ok(())
    }
}

/// Names the response variant a caller did not expect, for an `Internal` error.
pub fn unexpected(response: &impl Debug) -> crate::ApiError {
    let text = format!("{response:?}");
    let variant = text.split(['(', ' ', '{']).next().unwrap_or("?");
    crate::ApiError::internal(format!("unexpected response {variant}"))
}
