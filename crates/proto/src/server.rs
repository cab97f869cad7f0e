//! The server side every component runs: an accept loop with a cap on connections (a share
//! of it per client address, the connection idle longest shed when full: `admission.rs`),
//! one task per connection, many requests in flight per connection, answers in any order,
//! deadlines that shed idle, silent, trickling and non-reading clients, and a graceful
//! shutdown that finishes the requests in hand. docs/protocol.md ("Limits") is the
//! contract.
//!
//! Data flow on one connection:
//!
//! ```text
//! socket -> FrameReader -> decode -> (one task per request) Handler::handle
//!                                                  |
//! socket <- write_loop  <- mpsc of encoded frames <-+
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::admission::{Admission, Full, Place};
use crate::frame::{DEFAULT_MAX_FRAME, Kind};
use crate::io::{FrameReader, ReadError, write_loop};
use crate::trust::{Acceptor, BoxStream, Caller, TLS_HANDSHAKE};
use crate::{ApiError, ErrorCode, Service, encode_frame};

tokio::task_local! {
    /// The address of the client whose request the current task serves.
    static PEER: std::net::SocketAddr;
    /// Who that client is, as its certificate says.
    static CALLER: Caller;
}

/// The address of the client whose request the current task is serving, where a server
/// loop said ([`serve`] for every request; the HTTP API with [`serving`]). Only for
/// limits that are per client address: who the caller *is* comes from its session or,
/// between components, its certificate.
pub fn peer() -> Option<std::net::SocketAddr> {
    PEER.try_with(|peer| *peer).ok()
}

/// Who the caller of the request the current task serves is (from its certificate; the
/// service's `authorize` has already let it send this request), for a handler whose
/// answer depends on it beyond that rule.
pub fn caller() -> Option<Caller> {
    CALLER.try_with(|caller| *caller).ok()
}

/// Runs `work` as serving a client at `peer`, so that [`peer`] answers inside it.
pub async fn serving<F: Future>(peer: std::net::SocketAddr, work: F) -> F::Output {
    PEER.scope(peer, work).await
}

/// Serves one [`Service`]: turns a request into a response or an error.
pub trait Handler<S: Service>: Send + Sync + 'static {
    /// Handles one request. Runs concurrently with the connection's other requests.
    fn handle(
        &self,
        request: S::Request,
    ) -> impl Future<Output = Result<S::Response, ApiError>> + Send;
}

/// A service a server's connections carry beside its main one, by the frame's service id:
/// a database's port also carries its group's Raft messages ([`crate::Replication`]).
/// Its requests may be as large as its own `max_frame`; the main service's keep the
/// server's.
#[derive(Clone)]
pub struct Extra {
    id: u8,
    max_frame: u32,
    answer: Answer,
}

/// Answers one request frame's payload with the encoded response frame.
type Answer = Arc<
    dyn Fn(Caller, u64, Bytes) -> Pin<Box<dyn Future<Output = Option<Bytes>> + Send>> + Send + Sync,
>;

impl Extra {
    /// `handler` serving service `E`, whose requests may be as large as `max_frame`.
    pub fn new<E: Service, H: Handler<E>>(handler: Arc<H>, max_frame: u32) -> Extra {
        let answer: Answer = Arc::new(move |caller, id, payload| {
            let handler = handler.clone();
            Box::pin(async move { answer::<E, H>(&*handler, caller, id, &payload).await })
        });
        Extra { id: E::ID as u8, max_frame, answer }
    }
}

/// Decodes a request of service `S`, checks that `caller` may send it
/// ([`Service::authorize`], each service's one rule), has `handler` answer it and encodes
/// the answer as the response frame `id`: the one path of every request, of the main
/// service and of an [`Extra`] alike.
async fn answer<S: Service, H: Handler<S>>(
    handler: &H,
    caller: Caller,
    id: u64,
    payload: &[u8],
) -> Option<Bytes> {
    let reply = match postcard::from_bytes::<S::Request>(payload) {
        Ok(request) => match S::authorize(caller, &request) {
            Ok(()) => CALLER.scope(caller, handler.handle(request)).await,
            Err(refusal) => {
                // Only a holder of the cluster's credentials gets this far: a refusal is a
                // misconfiguration or an insider, worth an operator's look either way.
                let from = PEER.try_with(|peer| peer.to_string()).unwrap_or_default();
                tracing::warn!("refused a request from {caller} at {from}: {}", refusal.message);
                Err(refusal)
            }
        },
        Err(e) => Err(ApiError::new(
            ErrorCode::BadRequest,
            format!("could not decode the request for {}: {e}", S::ID.name()),
        )),
    };
    match encode_frame(Kind::Response, S::ID as u8, id, &reply) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            warn!(service = S::ID.name(), error = %e, "could not encode an answer");
            None
        }
    }
}

/// A server's limits. docs/protocol.md ("Limits") says what happens at each.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Most connections open at once. A new one past it takes the place of the connection
    /// idle longest, or, when none is idle, is refused with `Overloaded` and closed.
    pub max_connections: usize,
    /// Most connections open at once from one client address (its share of
    /// `max_connections`); past it, a new one takes the place of that address's connection
    /// idle longest, or is refused.
    pub max_connections_per_address: usize,
    /// A new connection must finish its TLS handshake (internal services) and start its
    /// first request within this, or it is closed: connecting and saying nothing holds a
    /// place for seconds, not for the idle timeout.
    pub first_request_timeout: Duration,
    /// Largest request payload, in bytes.
    pub max_frame: u32,
    /// Most requests in flight on one connection; past it the server stops reading that
    /// connection until answers have gone out (backpressure, not an error).
    pub max_in_flight: usize,
    /// A connection with no request and nothing in flight for this long is closed with a
    /// goodbye (`unavailable`) that tells the client nothing it sent was lost.
    pub idle_timeout: Duration,
    /// Once a frame's first byte is in, the whole frame must arrive within this, or the
    /// connection is closed with a goodbye (`timeout`): a client trickling bytes is cut off.
    pub frame_timeout: Duration,
    /// If writing answers makes no progress for this long (the client is not reading),
    /// the connection is closed.
    pub write_timeout: Duration,
    /// How connections are taken: in the clear for a public door, or mutual TLS for the
    /// internal services (crates/proto/src/trust.rs). The handshake must finish within
    /// `first_request_timeout`.
    pub acceptor: Acceptor,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_connections: 4096,
            max_connections_per_address: 1024,
            first_request_timeout: Duration::from_secs(5),
            max_frame: DEFAULT_MAX_FRAME,
            max_in_flight: 256,
            idle_timeout: Duration::from_secs(300),
            frame_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            acceptor: Acceptor::Open,
        }
    }
}

/// Accepts connections on `listener` and serves them with `handler` until `shutdown` is
/// cancelled; then stops accepting, lets every connection finish the requests it has read,
/// and returns when all are answered.
pub async fn serve<S: Service, H: Handler<S>>(
    listener: TcpListener,
    handler: Arc<H>,
    config: ServerConfig,
    shutdown: CancellationToken,
) {
    serve_with(listener, handler, config, None, shutdown).await
}

/// [`serve`], and when `extra` is given, its service on the same connections.
pub async fn serve_with<S: Service, H: Handler<S>>(
    listener: TcpListener,
    handler: Arc<H>,
    config: ServerConfig,
    extra: Option<Extra>,
    shutdown: CancellationToken,
) {
    let tracker = TaskTracker::new();
    let places = Admission::new(config.max_connections, config.max_connections_per_address);
    let mut backoff = Duration::from_millis(1);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (socket, peer) = match accepted {
            Ok(pair) => {
                backoff = Duration::from_millis(1);
                pair
            }
            Err(e) => {
                // Out of file descriptors and the like: wait a little instead of spinning;
                // the connections already open go on being served.
                warn!(error = %e, "accept failed; backing off {:?}", backoff);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        // A place, maybe by shedding the connection idle longest; none when every place
        // (of the server, or of this address) is busy.
        let place = match places.admit(peer.ip()) {
            Ok(place) => Arc::new(place),
            Err(full) => {
                debug!(%peer, ?full, "refusing connection: no place");
                tracker.spawn(refuse::<S>(socket, full, config.write_timeout));
                continue;
            }
        };
        let conn = Conn::<S, H> {
            _service: std::marker::PhantomData,
            handler: handler.clone(),
            extra: extra.clone(),
            config: config.clone(),
            shutdown: shutdown.clone(),
            tracker: tracker.clone(),
        };
        let accepted = Instant::now();
        tracker.spawn(async move {
            // The handshake runs on the connection's own task, under the first request's
            // deadline, so a caller that connects and stalls holds one place for seconds,
            // and never the accept loop.
            if let Some((stream, caller)) = conn.handshake(socket, peer, &place).await
                && let Err(e) = conn.run(stream, caller, peer, place, accepted).await
            {
                debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    info!(service = S::ID.name(), "shutting down: finishing requests in flight");
    tracker.close();
    tracker.wait().await;
}

/// Tells a connection that found no place why it is closed, then closes it.
async fn refuse<S: Service>(socket: TcpStream, full: Full, write_timeout: Duration) {
    let message = match full {
        Full::Server { cap } => {
            format!("{} is at its limit of {cap} connections; try again later", S::ID.name())
        }
        Full::Address { share } => format!(
            "{} holds its limit of {share} connections from your address, all busy; close \
             one or try again later",
            S::ID.name()
        ),
    };
    say_goodbye::<S, _>(socket, ErrorCode::Overloaded, message, write_timeout).await;
}

/// Writes one Goodbye frame saying why the connection is refused; gives up after a
/// second if the peer does not read.
async fn say_goodbye<S: Service, W: AsyncWrite + Unpin>(
    socket: W,
    code: ErrorCode,
    message: String,
    write_timeout: Duration,
) {
    let error = ApiError::new(code, message);
    if let Ok(frame) = encode_frame(Kind::Goodbye, S::ID as u8, 0, &error) {
        let (tx, rx) = mpsc::channel(1);
        let _ = tx.send(frame).await;
        drop(tx);
        let stall = write_timeout.min(Duration::from_secs(1));
        let _ = write_loop(socket, rx, Some(stall)).await;
    }
}

struct Conn<S, H> {
    handler: Arc<H>,
    extra: Option<Extra>,
    config: ServerConfig,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    #[allow(dead_code)]
    _service: std::marker::PhantomData<fn() -> S>,
}

/// How a connection's read loop ended.
enum End {
    /// The peer closed, or broke the protocol and has been told so.
    Closed(Result<(), ReadError>),
    /// Idle, or the server is shutting down: answer what was read, then say goodbye.
    GoingAway(String),
    /// The writer gave up (the peer stopped reading, or the socket failed).
    WriterGone,
}

impl<S: Service, H: Handler<S>> Conn<S, H> {
    /// Sets the connection up with the server's acceptor and learns who the caller is.
    /// `None` when the caller is refused (told why if it speaks our protocol in the
    /// clear; logged either way).
    async fn handshake(
        &self,
        socket: TcpStream,
        peer: std::net::SocketAddr,
        place: &Place,
    ) -> Option<(BoxStream, Caller)> {
        let acceptor = &self.config.acceptor;
        let deadline = self.config.first_request_timeout;
        if acceptor.is_mutual_tls() {
            // A caller of ours without credentials writes a frame, not a TLS hello: say
            // what it lacks in a frame it can read, instead of a TLS alert it cannot.
            let mut first = [0u8; 1];
            let peeked = tokio::time::timeout(deadline, socket.peek(&mut first)).await;
            if matches!(peeked, Ok(Ok(1))) && first[0] != TLS_HANDSHAKE {
                warn!(%peer, "refused a connection without TLS: the caller has no cluster credentials");
                let message = format!(
                    "{} serves only Agora's own components: connect with the cluster's \
                     credentials (mutual TLS)",
                    S::ID.name()
                );
                let (_, write_half) = socket.into_split();
                say_goodbye::<S, _>(
                    write_half,
                    ErrorCode::Forbidden,
                    message,
                    self.config.write_timeout,
                )
                .await;
                return None;
            }
        }
        let accepting = tokio::time::timeout(deadline, acceptor.accept(socket));
        // Until its handshake is done a connection is idle: the first to go when full.
        let accepted = tokio::select! {
            accepted = accepting => accepted,
            () = place.shed() => {
                debug!(%peer, "shed during its handshake: the server is full");
                return None;
            }
        };
        match accepted {
            Ok(Ok(accepted)) => Some(accepted),
            Ok(Err(e)) => {
                warn!(%peer, service = S::ID.name(), "refused a connection: {}", crate::trust::explain(&e));
                None
            }
            Err(_) => {
                debug!(%peer, "no TLS handshake within {deadline:?}; closed");
                None
            }
        }
    }

    async fn run(
        self,
        stream: BoxStream,
        caller: Caller,
        peer: std::net::SocketAddr,
        place: Arc<Place>,
        accepted: Instant,
    ) -> Result<(), ReadError> {
        let config = &self.config;
        let (read_half, write_half): (ReadHalf<BoxStream>, _) = tokio::io::split(stream);
        let max_read = match &self.extra {
            Some(extra) => config.max_frame.max(extra.max_frame),
            None => config.max_frame,
        };
        // The first request has what is left of its own deadline; the next ones, the idle
        // timeout.
        let hello = config.first_request_timeout.min(config.idle_timeout);
        let hello = hello.saturating_sub(accepted.elapsed());
        let read_half = Watched { inner: read_half, place: place.clone() };
        let mut reader = FrameReader::new(read_half, max_read)
            .with_timeouts(Some(hello), Some(config.frame_timeout));
        let mut first = true;
        // Bounded by max_in_flight, like the tasks that fill it: a client that never
        // reads makes request tasks wait here, which stops the reader (backpressure), and
        // after write_timeout the writer gives up and the connection closes.
        let (out, rx) = mpsc::channel::<Bytes>(config.max_in_flight);
        let writer = tokio::spawn(write_loop(write_half, rx, Some(config.write_timeout)));
        let in_flight = Arc::new(Semaphore::new(config.max_in_flight));
        // This connection's request tasks (also on the server-wide tracker for shutdown).
        let answering = TaskTracker::new();
        let end = loop {
            let frame = tokio::select! {
                _ = self.shutdown.cancelled() => break End::GoingAway(format!(
                    "{} is shutting down; requests without an answer were not processed",
                    S::ID.name()
                )),
                _ = out.closed() => break End::WriterGone,
                () = place.shed() => break End::GoingAway(format!(
                    "{} is full and closes the connection idle longest; reconnect to go on",
                    S::ID.name()
                )),
                frame = reader.read_frame() => frame,
            };
            let frame = match frame {
                Ok(Some(frame)) => frame,
                Err(ReadError::Idle(after)) if first => {
                    break End::GoingAway(format!(
                        "{} closes connections that send no request within {after:?}; \
                         reconnect and send one",
                        S::ID.name()
                    ));
                }
                Ok(None) => break End::Closed(Ok(())),
                // Waiting for its answers is not idleness.
                Err(ReadError::Idle(_)) if !answering.is_empty() => continue,
                Err(ReadError::Idle(after)) => {
                    break End::GoingAway(format!(
                        "{} closes connections idle for {after:?}; reconnect to go on",
                        S::ID.name()
                    ));
                }
                Err(e) => {
                    let code = match &e {
                        ReadError::Frame(_) => Some(ErrorCode::Protocol),
                        ReadError::SlowFrame(_) => Some(ErrorCode::Timeout),
                        ReadError::Io(_) | ReadError::Idle(_) => None,
                    };
                    if let Some(code) = code {
                        goodbye::<S>(&out, 0, code, e.to_string()).await;
                    }
                    break End::Closed(Err(e));
                }
            };
            // In hand until answered; nothing more arriving unless the buffer holds the
            // start of the next frame.
            let busy = place.busy();
            if reader.buffered() == 0 {
                place.received();
            }
            if std::mem::take(&mut first) {
                reader.set_idle_timeout(Some(config.idle_timeout));
            }
            if frame.kind != Kind::Request {
                goodbye::<S>(&out, frame.id, ErrorCode::Protocol, "expected a request frame").await;
                break End::Closed(Ok(()));
            }
            let extra = self.extra.as_ref().filter(|extra| frame.service == extra.id);
            let max_frame = extra.map_or(config.max_frame, |extra| extra.max_frame);
            if frame.payload.len() > max_frame as usize {
                // Read under the largest of the services' limits; each applies its own.
                let error =
                    crate::FrameError::TooLarge { len: frame.payload.len() as u32, max: max_frame };
                goodbye::<S>(&out, frame.id, ErrorCode::Protocol, error.to_string()).await;
                break End::Closed(Ok(()));
            }
            if frame.service != S::ID as u8 && extra.is_none() {
                let wanted = crate::ServiceId::from_u8(frame.service).map_or_else(
                    || format!("unknown service {}", frame.service),
                    |s| s.name().into(),
                );
                let message = format!("this is {}, not {wanted}: check the address", S::ID.name());
                goodbye::<S>(&out, frame.id, ErrorCode::BadRequest, message).await;
                break End::Closed(Ok(()));
            }
            // Waits (and so stops reading this socket) while the connection is at its limit.
            let permit = tokio::select! {
                permit = in_flight.clone().acquire_owned() => permit,
                _ = out.closed() => break End::WriterGone,
            };
            let Ok(permit) = permit else { break End::Closed(Ok(())) };
            let out = out.clone();
            // The main service's answer is not boxed: it is the hot path.
            let answered = match extra {
                Some(extra) => Either::Left((extra.answer)(caller, frame.id, frame.payload)),
                None => {
                    let handler = self.handler.clone();
                    Either::Right(async move {
                        answer::<S, H>(&*handler, caller, frame.id, &frame.payload).await
                    })
                }
            };
            self.tracker.spawn(answering.track_future(serving(peer, async move {
                if let Some(bytes) = answered.await {
                    let _ = out.send(bytes).await;
                }
                drop((permit, busy));
            })));
        };
        answering.close();
        let result = match end {
            End::Closed(result) => result,
            End::WriterGone => {
                // Nothing more can reach the peer: close at once, unread requests and all.
                let reason = match writer.await {
                    Ok(Err(e)) => e,
                    _ => std::io::Error::other("the connection's writer ended"),
                };
                return Err(ReadError::Io(reason));
            }
            End::GoingAway(reason) => {
                // Every request read so far is answered before the goodbye, so the client
                // knows that whatever it has had no answer to was never read and may be
                // sent again on a new connection.
                tokio::select! {
                    _ = answering.wait() => {}
                    _ = out.closed() => {}
                }
                goodbye::<S>(&out, 0, ErrorCode::Unavailable, reason).await;
                drop(out);
                let _ = writer.await;
                // On an idle close, requests racing our goodbye are read and dropped, not
                // left unread: closing on unread bytes would reset the connection.
                if !self.shutdown.is_cancelled() {
                    tokio::select! {
                        _ = reader.discard_until_closed(LINGER) => {}
                        _ = self.shutdown.cancelled() => {}
                    }
                }
                return Ok(());
            }
        };
        // The writer ends once every request task has sent its answer and dropped its sender.
        drop(out);
        let _ = writer.await;
        result
    }
}

/// The read half of a connection, telling the connection's [`Place`] when bytes of a
/// request arrive: from then until the request is whole, the connection is not idle, and
/// is not shed.
struct Watched<R> {
    inner: R,
    place: Arc<Place>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Watched<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.place.receiving();
        }
        polled
    }
}

/// How long an idle close waits for the peer to close its side after the goodbye.
const LINGER: Duration = Duration::from_secs(1);

/// Queues a Goodbye frame: the reason the server is about to close the connection.
async fn goodbye<S: Service>(
    out: &mpsc::Sender<Bytes>,
    id: u64,
    code: ErrorCode,
    message: impl Into<String>,
) {
    let error = ApiError::new(code, message);
    debug!(%error, "closing connection");
    if let Ok(frame) = encode_frame(Kind::Goodbye, S::ID as u8, id, &error) {
        let _ = out.send(frame).await;
    }
}
