//! Agora's wire protocol and the networking every component shares.
//!
//! - [`frame`]: the frame grammar (version, kind, service, length, request id).
//! - [`messages`]: what each server understands, one [`Service`] per server.
//! - [`server`]: the accept loop and per-connection handling every server runs.
//! - [`admission`]: who gets a connection place: a cap, a share per address, shedding.
//! - [`client`]: [`Channel`], one multiplexed connection with many requests in flight.
//! - [`pool`]: [`Pool`], a few channels to one service that reconnect by themselves.
//! - [`trust`]: who is calling: mutual TLS between components, open public doors.
//!
//! docs/protocol.md is the specification; this crate follows it.

pub mod admission;
pub mod client;
mod error;
pub mod fault;
pub mod frame;
mod io;
pub mod messages;
pub mod pool;
pub mod ports;
pub mod server;
pub mod trust;

pub use client::{CallError, Channel};
pub use error::{ApiError, ErrorCode};
pub use frame::{DEFAULT_MAX_FRAME, Frame, FrameError, Kind, ServiceId};
pub use io::{FrameReader, ReadError, frames_read};
pub use messages::{
    BuyerServer, CustomerDb, Payments, ProductDb, Replication, SellerServer, Service,
};
pub use pool::{Pool, PoolConfig};
pub use server::{Extra, Handler, ServerConfig, serve, serve_with};
pub use trust::{Acceptor, Caller, Component, Connector, Trust, TrustError};

/// Encodes `value` as a frame of `kind` for `service` with request id `id`, header and
/// payload in one buffer, ready to write.
pub(crate) fn encode_frame<T: serde::Serialize>(
    kind: Kind,
    service: u8,
    id: u64,
    value: &T,
) -> Result<bytes::Bytes, postcard::Error> {
    let mut out = Vec::with_capacity(128);
    out.resize(frame::HEADER_LEN, 0);
    let mut out = postcard::to_extend(value, out)?;
    let len = (out.len() - frame::HEADER_LEN) as u32;
    let mut header = &mut out[..frame::HEADER_LEN];
    Frame::put_header(&mut header, kind, service, id, len);
    Ok(out.into())
}
