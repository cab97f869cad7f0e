//! [`Channel`]: one TCP connection to a server with many requests in flight. Each request
//! gets an id; a reader task hands each answer to the call waiting for that id, so answers
//! may arrive in any order.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::ReadHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use crate::frame::Kind;
use crate::io::{FrameReader, ReadError, write_loop};
use crate::trust::{BoxStream, Connector};
use crate::{ApiError, ErrorCode, Service, encode_frame};

/// The reason of an [`CallError::Unreachable`] whose connection was refused: nothing
/// listens at that address (the server is down, or the port is wrong).
pub const CONNECTION_REFUSED: &str = "connection refused (nothing listens there)";

/// Why a call did not produce a response. "Could not reach the server" and "the server
/// refused" stay apart: only [`CallError::Remote`] is the server's own answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The server answered with an error.
    #[error(transparent)]
    Remote(ApiError),
    /// The request was never sent: no connection could be had.
    #[error("{service} at {addr} is unreachable: {reason}")]
    Unreachable {
        /// Which server.
        service: &'static str,
        /// Where we tried.
        addr: String,
        /// What went wrong.
        reason: String,
    },
    /// The connection broke after the request may have been sent: it may or may not have
    /// taken effect.
    #[error("connection to {service} lost before its answer came ({reason})")]
    Lost {
        /// Which server.
        service: &'static str,
        /// Why the connection ended.
        reason: String,
    },
    /// No answer before the deadline: the request may or may not have taken effect.
    #[error("{service} did not answer within {after:?}")]
    Timeout {
        /// Which server.
        service: &'static str,
        /// The deadline.
        after: Duration,
    },
    /// The server sent an answer this client cannot decode.
    #[error("undecodable answer from {service}: {reason}")]
    Decode {
        /// Which server.
        service: &'static str,
        /// The decoder's complaint.
        reason: String,
    },
}

impl CallError {
    /// The error as an [`ApiError`] to pass on to our own caller: a refusal keeps its code,
    /// a transport failure becomes `Unavailable` or `Timeout`. The message names the
    /// service but never its address: an answer that reaches the public must not map the
    /// cluster (the pool logs the address where it failed).
    pub fn into_api(self) -> ApiError {
        match self {
            CallError::Remote(e) => e,
            CallError::Unreachable { service, .. } => {
                ApiError::unavailable(format!("{service} is unreachable; try again shortly"))
            }
            CallError::Lost { service, .. } => ApiError::unavailable(format!(
                "the connection to {service} was lost before its answer came"
            )),
            e @ CallError::Timeout { .. } => ApiError::new(ErrorCode::Timeout, e.to_string()),
            e @ CallError::Decode { .. } => ApiError::internal(e.to_string()),
        }
    }
}

impl From<CallError> for ApiError {
    fn from(e: CallError) -> Self {
        e.into_api()
    }
}

type Waiter = oneshot::Sender<Result<Bytes, CallError>>;

struct State {
    /// Why the connection is closed, once it is; no new call may register after that.
    closed: Option<String>,
    pending: HashMap<u64, Waiter>,
}

struct Shared {
    state: Mutex<State>,
    next_id: AtomicU64,
    service: &'static str,
    addr: String,
}

impl Shared {
    // No await happens under this lock, so a std Mutex is right: it is held for a map
    // insert or remove.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Marks the connection closed and fails every call still waiting.
    fn close(&self, reason: String) {
        let mut state = self.lock();
        if state.closed.is_none() {
            state.closed = Some(reason.clone());
        }
        for (_, waiter) in state.pending.drain() {
            let _ =
                waiter.send(Err(CallError::Lost { service: self.service, reason: reason.clone() }));
        }
    }
}

/// One multiplexed connection to a server of service `S`. Cheap to clone; clones share
/// the connection. The connection closes when the last clone is dropped.
pub struct Channel<S: Service> {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Bytes>,
    addr: String,
    _service: PhantomData<fn() -> S>,
}

impl<S: Service> Clone for Channel<S> {
    fn clone(&self) -> Self {
        Channel {
            shared: self.shared.clone(),
            tx: self.tx.clone(),
            addr: self.addr.clone(),
            _service: PhantomData,
        }
    }
}

impl<S: Service> std::fmt::Debug for Channel<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel").field("service", &S::ID.name()).field("addr", &self.addr).finish()
    }
}

impl<S: Service> Channel<S> {
    /// Connects to `addr` (host:port) in the clear, giving up after `timeout`: how
    /// clients reach the public frontends.
    pub async fn connect(addr: &str, timeout: Duration, max_frame: u32) -> Result<Self, CallError> {
        Channel::connect_with(addr, timeout, max_frame, &Connector::Open).await
    }

    /// Connects to `addr` (host:port) and sets the connection up with `connector` (mutual
    /// TLS for the internal services), all within `timeout`.
    pub async fn connect_with(
        addr: &str,
        timeout: Duration,
        max_frame: u32,
        connector: &Connector,
    ) -> Result<Self, CallError> {
        let server = crate::Component::serving(S::ID);
        Channel::connect_to(addr, timeout, max_frame, connector, server).await
    }

    /// Like [`Channel::connect_with`], to a server that must prove it is `server`: for a
    /// service several components serve ([`crate::ServiceId::Replication`]).
    pub async fn connect_to(
        addr: &str,
        timeout: Duration,
        max_frame: u32,
        connector: &Connector,
        server: Option<crate::Component>,
    ) -> Result<Self, CallError> {
        let setup = |socket| connector.connect_to(socket, server);
        Channel::open(addr, timeout, max_frame, setup).await
    }

    /// Like [`Channel::connect_to`], to replica `node_id` of `component`'s groups, which
    /// must prove it is that replica ([`Connector::connect_to_replica`]).
    pub async fn connect_to_replica(
        addr: &str,
        timeout: Duration,
        max_frame: u32,
        connector: &Connector,
        component: crate::Component,
        node_id: u64,
    ) -> Result<Self, CallError> {
        let setup = |socket| connector.connect_to_replica(socket, component, node_id);
        Channel::open(addr, timeout, max_frame, setup).await
    }

    /// Connects to `addr` and has `setup` set the connection up, all within `timeout`.
    async fn open<F, Setup>(
        addr: &str,
        timeout: Duration,
        max_frame: u32,
        setup: F,
    ) -> Result<Self, CallError>
    where
        F: FnOnce(TcpStream) -> Setup,
        Setup: Future<Output = std::io::Result<crate::trust::BoxStream>>,
    {
        let unreachable = |reason: String| CallError::Unreachable {
            service: S::ID.name(),
            addr: addr.to_owned(),
            reason,
        };
        let connect = async {
            let socket = TcpStream::connect(addr).await?;
            let _ = socket.set_nodelay(true);
            setup(socket).await
        };
        let stream = match tokio::time::timeout(timeout, connect).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                return Err(unreachable(CONNECTION_REFUSED.to_owned()));
            }
            Ok(Err(e)) => {
                let reason = crate::trust::explain(&e);
                if e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) {
                    warn!(service = S::ID.name(), %addr, "cannot connect: {reason}");
                }
                return Err(unreachable(reason));
            }
            Err(_) => return Err(unreachable(format!("no connection within {timeout:?}"))),
        };
        let (read_half, write_half) = tokio::io::split(stream);
        let shared = Arc::new(Shared {
            state: Mutex::new(State { closed: None, pending: HashMap::new() }),
            next_id: AtomicU64::new(1),
            service: S::ID.name(),
            addr: addr.to_owned(),
        });
        let (tx, rx) = mpsc::channel::<Bytes>(1024);
        let writer_shared = shared.clone();
        tokio::spawn(async move {
            // No stall deadline here: each call has its own.
            let reason = match write_loop(write_half, rx, None).await {
                Ok(()) => "channel dropped".to_owned(),
                Err(e) => format!("write failed: {e}"),
            };
            writer_shared.close(reason);
        });
        tokio::spawn(read_loop(FrameReader::new(read_half, max_frame), shared.clone()));
        Ok(Channel { shared, tx, addr: addr.to_owned(), _service: PhantomData })
    }

    /// The address this channel is connected to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Whether `other` is a clone of this channel (the same connection).
    pub fn same_connection(&self, other: &Channel<S>) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// Whether the connection has ended; a closed channel fails every call.
    pub fn is_closed(&self) -> bool {
        self.shared.lock().closed.is_some()
    }

    /// Sends `request` and waits up to `timeout` for its answer.
    pub async fn call(
        &self,
        request: &S::Request,
        timeout: Duration,
    ) -> Result<S::Response, CallError> {
        let service = S::ID.name();
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = encode_frame(Kind::Request, S::ID as u8, id, request).map_err(|e| {
            CallError::Remote(ApiError::new(
                ErrorCode::InvalidArgument,
                format!("cannot encode: {e}"),
            ))
        })?;
        let (waiter, answer) = oneshot::channel();
        {
            let mut state = self.shared.lock();
            if let Some(reason) = &state.closed {
                return Err(self.unreachable(reason.clone()));
            }
            state.pending.insert(id, waiter);
        }
        if self.tx.send(frame).await.is_err() {
            self.shared.lock().pending.remove(&id);
            return Err(self.unreachable("connection closed".into()));
        }
        let payload = match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(Ok(payload))) => payload,
            Ok(Ok(Err(e))) => return Err(e),
            Ok(Err(_)) => return Err(CallError::Lost { service, reason: "reader ended".into() }),
            Err(_) => {
                self.shared.lock().pending.remove(&id);
                return Err(CallError::Timeout { service, after: timeout });
            }
        };
        match postcard::from_bytes::<Result<S::Response, ApiError>>(&payload) {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(refusal)) => Err(CallError::Remote(refusal)),
            Err(e) => Err(CallError::Decode { service, reason: e.to_string() }),
        }
    }

    fn unreachable(&self, reason: String) -> CallError {
        CallError::Unreachable { service: S::ID.name(), addr: self.addr.clone(), reason }
    }
}

/// Hands each response to the call waiting for its id, until the connection ends.
async fn read_loop(mut reader: FrameReader<ReadHalf<BoxStream>>, shared: Arc<Shared>) {
    let reason = loop {
        match reader.read_frame().await {
            Ok(Some(frame)) => match frame.kind {
                Kind::Response => {
                    let waiter = shared.lock().pending.remove(&frame.id);
                    // No waiter: the call timed out and left; its late answer is dropped.
                    if let Some(waiter) = waiter {
                        let _ = waiter.send(Ok(frame.payload));
                    }
                }
                Kind::Goodbye => {
                    break match postcard::from_bytes::<ApiError>(&frame.payload) {
                        // The server is going away (idle close, shutdown) and has answered
                        // everything it read: the calls still waiting were never processed,
                        // so they fail as unsent and the pool sends them again elsewhere.
                        Ok(e) if e.code == ErrorCode::Unavailable => {
                            let mut state = shared.lock();
                            state.closed = Some(e.message.clone());
                            for (_, waiter) in state.pending.drain() {
                                let _ = waiter.send(Err(CallError::Unreachable {
                                    service: shared.service,
                                    addr: shared.addr.clone(),
                                    reason: e.message.clone(),
                                }));
                            }
                            e.message
                        }
                        Ok(e) => {
                            // A refusal at the door (overload, wrong service) is the server's
                            // answer to the calls in flight, not a transport failure.
                            let mut state = shared.lock();
                            state.closed = Some(e.message.clone());
                            for (_, waiter) in state.pending.drain() {
                                let _ = waiter.send(Err(CallError::Remote(e.clone())));
                            }
                            e.message
                        }
                        Err(_) => "server closed the connection".into(),
                    };
                }
                Kind::Request => break "server sent a request frame".into(),
            },
            Ok(None) => break "server closed the connection".into(),
            // With TLS 1.3 the server checks our certificate after our side of the
            // handshake is done: its refusal arrives as the first thing we read.
            Err(ReadError::Io(e)) if e.get_ref().is_some_and(|i| i.is::<rustls::Error>()) => {
                let reason = crate::trust::explain(&e);
                warn!(service = shared.service, addr = %shared.addr, "connection refused: {reason}");
                break reason;
            }
            Err(e) => break e.to_string(),
        }
    };
    shared.close(reason);
}
