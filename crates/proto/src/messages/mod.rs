//! The messages each server understands. Client and server import the same types, so they
//! cannot drift apart; payloads are encoded with postcard (see docs/protocol.md).
//!
//! Each server is a [`Service`]: a wire id, a request type and a response type. A response
//! travels as `Result<Response, ApiError>`.

pub mod customer;
pub mod front;
pub mod product;

use std::fmt::Debug;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ServiceId;

/// A server's vocabulary.
pub trait Service: Send + Sync + 'static {
    /// The wire id requests carry.
    const ID: ServiceId;
    /// What clients send.
    type Request: Serialize + DeserializeOwned + Debug + Send + Sync + 'static;
    /// What the server answers when the request succeeds.
    type Response: Serialize + DeserializeOwned + Debug + Send + Sync + 'static;

    /// Whether sending `request` twice has the same effect as sending it once, so that a
    /// client may resend it when a connection breaks before the answer arrives.
    fn idempotent(request: &Self::Request) -> bool;
}

/// The customer database.
#[derive(Debug)]
pub struct CustomerDb;

impl Service for CustomerDb {
    const ID: ServiceId = ServiceId::CustomerDb;
    type Request = customer::Request;
    type Response = customer::Response;

    fn idempotent(request: &customer::Request) -> bool {
        use customer::Request::*;
        !matches!(request, CreateAccount { .. } | AddToCart { .. } | RemoveFromCart { .. })
    }
}

/// The product database.
#[derive(Debug)]
pub struct ProductDb;

impl Service for ProductDb {
    const ID: ServiceId = ServiceId::ProductDb;
    type Request = product::Request;
    type Response = product::Response;

    fn idempotent(request: &product::Request) -> bool {
        use product::Request::*;
        !matches!(request, RegisterItem { .. } | RemoveUnits { .. })
    }
}

/// The seller server.
#[derive(Debug)]
pub struct SellerServer;

impl Service for SellerServer {
    const ID: ServiceId = ServiceId::Seller;
    type Request = front::SellerRequest;
    type Response = front::Response;

    fn idempotent(request: &front::SellerRequest) -> bool {
        use front::SellerRequest::*;
        !matches!(request, CreateAccount { .. } | RegisterItem { .. } | RemoveUnits { .. })
    }
}

/// The buyer server.
#[derive(Debug)]
pub struct BuyerServer;

impl Service for BuyerServer {
    const ID: ServiceId = ServiceId::Buyer;
    type Request = front::BuyerRequest;
    type Response = front::Response;

    fn idempotent(request: &front::BuyerRequest) -> bool {
        use front::BuyerRequest::*;
        !matches!(request, CreateAccount { .. } | AddToCart { .. } | RemoveFromCart { .. })
    }
}

/// Names the response variant a caller did not expect, for an `Internal` error.
pub fn unexpected(response: &impl Debug) -> crate::ApiError {
    let text = format!("{response:?}");
    let variant = text.split(['(', ' ', '{']).next().unwrap_or("?");
    crate::ApiError::internal(format!("unexpected response {variant}"))
}
