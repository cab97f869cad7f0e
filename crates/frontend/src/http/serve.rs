//! Serving the API over TCP with the limits the TCP protocol has (docs/http.md, "Limits"):
//! a cap on open connections with a share of it per client address, the connection idle
//! longest shed when a new one finds no place (`agora_proto::admission`), a deadline on a
//! request's head once its first byte has arrived (on the first request's, from the
//! connection's opening), and an idle deadline between requests. Without them, a few
//! hundred sockets left open, or trickling a header a byte at a time, hold a descriptor
//! each until the process runs out and stops answering everyone.
//!
//! hyper's own `header_read_timeout` also runs while a keep-alive connection waits for
//! its next request, so it cannot tell "idle" from "slow"; each connection here keeps a
//! [`Phase`] instead, fed by its socket (bytes arrived) and its service (a request began
//! or ended), and a watchdog closes it when the phase's deadline passes.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};

use agora_proto::ErrorCode;
use agora_proto::admission::{Admission, Full, Place};
use axum::Router;
use axum::http::{Request, StatusCode};
use axum::response::IntoResponse;
use hyper::body::Incoming;
use hyper::server::conn::http1::Builder;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::Service;
use tracing::{debug, error, info, warn};

use super::Limits;
use super::error::{Error, ErrorBody, ErrorDetail};

/// Most connections past the cap being told `overloaded` at once; past those too, a new
/// connection is closed without an answer.
const REFUSALS_MAX: usize = 64;

/// Largest request head (request line and headers) hyper buffers; past it, 431.
pub const HEAD_MAX: usize = 64 * 1024;

/// Serves `app` on `listener` until `shutdown` is cancelled; then stops accepting, lets
/// the requests in hand finish (for at most the request timeout), closes idle
/// connections, and returns when every connection is closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: CancellationToken,
) {
    info!(addr = ?listener.local_addr().ok(), "http serving");
    let mut builder = Builder::new();
    // Our watchdog keeps the deadlines; hyper's header timer would also cut idle
    // keep-alive connections at the header deadline.
    builder.header_read_timeout(None).max_header_size(HEAD_MAX);
    let builder = Arc::new(builder);
    let cap = connection_cap(limits.max_connections.max(1), open_file_limit());
    let places = Admission::new(cap, limits.max_connections_per_address.max(1));
    // Refusals hold descriptors too, a few of the cap's worth at most.
    let refusing = Arc::new(Semaphore::new((cap / 16).clamp(1, REFUSALS_MAX)));
    let tasks = TaskTracker::new();
    let mut backoff = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                backoff = Duration::from_millis(10);
                accepted
            }
            Err(e) => {
                // Out of descriptors, most likely: wait for some to close rather than spin.
                warn!(error = %e, "http accept failed; retrying in {backoff:?}");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        // Answers are written whole; don't let Nagle hold them back.
        let _ = stream.set_nodelay(true);
        // A place, maybe by shedding the connection idle longest; none when every place
        // (of the server, or of this address) is busy.
        match places.admit(peer.ip()) {
            Ok(place) => {
                let (app, builder, shutdown) = (app.clone(), builder.clone(), shutdown.clone());
                let limits = limits.clone();
                // Per-address limits (logins) learn the client's address from the task.
                tasks.spawn(agora_proto::server::serving(peer, async move {
                    connection(stream, app, &builder, &limits, &shutdown, Arc::new(place)).await;
                }));
            }
            Err(full) => match refusing.clone().try_acquire_owned() {
                Ok(permit) => {
                    let deadline = limits.header_timeout;
                    tasks.spawn(async move {
                        refuse(stream, full, deadline).await;
                        drop(permit);
                    });
                }
                Err(_) => debug!("http connection dropped: no place and busy refusing"),
            },
        }
    }
    tasks.close();
    tasks.wait().await;
}

/// The most connections to hold: `configured`, but at most half the process's open-file
/// limit, so that the TCP side, the database connections and the refusals keep
/// descriptors to work with however many sockets HTTP clients leave open.
fn connection_cap(configured: usize, open_files: Option<u64>) -> usize {
    let Some(files) = open_files else { return configured };
    let half = usize::try_from(files / 2).unwrap_or(usize::MAX).max(1);
    if configured > half {
        info!(
            "HTTP connections capped at {half}, half the open-file limit of {files} \
             (--http-max-connections is {configured})"
        );
        return half;
    }
    configured
}

/// The soft limit on this process's open files, where the system says (Linux).
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    // "Max open files  1024  524288  files": the soft limit, or "unlimited".
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Serves one connection until it closes, its deadline passes, it is shed (idle, while
/// the server is full), or shutdown has let its requests finish.
async fn connection(
    stream: TcpStream,
    app: Router,
    builder: &Builder,
    limits: &Limits,
    shutdown: &CancellationToken,
    place: Arc<Place>,
) {
    let activity = Activity::new(place.clone());
    let io = TokioIo::new(Watched { inner: stream, activity: activity.clone(), answer: None });
    let service = hyper::service::service_fn({
        let activity = activity.clone();
        move |request: Request<Incoming>| {
            let busy = activity.busy();
            let answer = app.clone().call(request);
            async move {
                let answer = answer.await;
                drop(busy);
                answer
            }
        }
    });
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    // Once closing, the moment to give up waiting for it.
    let mut closing: Option<Instant> = None;
    loop {
        let wake = match (closing, activity.phase()) {
            (Some(end), _) => end,
            (None, Phase::Head(since) | Phase::Opened(since)) => since + limits.header_timeout,
            (None, Phase::Idle(since)) => since + limits.idle_timeout,
            // A request's own time is bounded by the request timeout; look again then.
            (None, Phase::Busy(_)) => Instant::now() + limits.request_timeout,
        };
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    debug!(error = %e, "http connection ended");
                }
                return;
            }
            () = activity.changed() => {}
            // Only an idle connection is shed: nothing is lost by closing it now.
            () = place.shed() => {
                debug!("http connection closed: shed, idle while the server was full");
                return;
            }
            () = shutdown.cancelled(), if closing.is_none() => {
                conn.as_mut().graceful_shutdown();
                closing = Some(Instant::now() + limits.request_timeout);
            }
            () = tokio::time::sleep_until(wake) => {
                let now = Instant::now();
                if closing.is_some_and(|end| now >= end) {
                    debug!("http connection closed: it did not finish closing in time");
                    return;
                }
                match activity.phase() {
                    Phase::Head(since) if closing.is_none() && now >= since + limits.header_timeout => {
                        debug!("http connection closed: its request head took too long");
                        return;
                    }
                    Phase::Opened(since) if closing.is_none() && now >= since + limits.header_timeout => {
                        debug!("http connection closed: no request within the header deadline of its opening");
                        return;
                    }
                    Phase::Idle(since) if closing.is_none() && now >= since + limits.idle_timeout => {
                        debug!("http connection closed: idle");
                        conn.as_mut().graceful_shutdown();
                        closing = Some(now + limits.header_timeout);
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Answers every request on a connection that found no place with 503 `overloaded`,
/// then closes it, as the TCP side does; within `deadline` in all.
async fn refuse(stream: TcpStream, full: Full, deadline: Duration) {
    let message = match full {
        Full::Server { .. } => "too many HTTP connections are open: try again shortly",
        Full::Address { .. } => {
            "too many HTTP connections are open from your address, all busy: close one or \
             try again shortly"
        }
    };
    let service = hyper::service::service_fn(move |_: Request<Incoming>| async move {
        let error = Error::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Overloaded, message);
        Ok::<_, Infallible>(error.into_response())
    });
    let mut builder = Builder::new();
    builder.keep_alive(false).header_read_timeout(None).max_header_size(HEAD_MAX);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    match tokio::time::timeout(deadline, conn).await {
        Ok(Ok(())) => debug!("http connection refused: over the cap"),
        Ok(Err(e)) => debug!(error = %e, "http connection over the cap ended"),
        Err(_) => debug!("http connection over the cap closed: too slow"),
    }
}

/// What a connection is doing, for its deadlines.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Opened then, no byte of its first request yet.
    Opened(Instant),
    /// Waiting for a request, since then.
    Idle(Instant),
    /// A request's head is arriving, since its first byte.
    Head(Instant),
    /// This many requests are in the application.
    Busy(usize),
}

/// A connection's [`Phase`], shared by its socket, its service and its watchdog, and told
/// to its [`Place`]: idle (and so the first to go when the server is full) while opened
/// or waiting, not while a request arrives or is in hand.
#[derive(Clone)]
struct Activity(Arc<(Mutex<Phase>, Notify, Arc<Place>)>);

impl Activity {
    fn new(place: Arc<Place>) -> Self {
        Activity(Arc::new((Mutex::new(Phase::Opened(Instant::now())), Notify::new(), place)))
    }

    fn phase(&self) -> Phase {
        // Nothing awaits under this lock; a panic under it cannot leave a torn value.
        *self.0.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, change: impl FnOnce(Phase) -> Phase) {
        let mut phase = self.0.0.lock().unwrap_or_else(PoisonError::into_inner);
        *phase = change(*phase);
        drop(phase);
        self.0.1.notify_one();
    }

    /// Resolves after the phase changed (at once if it changed since the last call).
    async fn changed(&self) {
        self.0.1.notified().await;
    }

    /// Bytes arrived: the head of a request starts, unless one is already in hand. The
    /// first request's head is timed from the connection's opening.
    fn bytes_read(&self) {
        if matches!(self.phase(), Phase::Idle(_) | Phase::Opened(_)) {
            self.0.2.receiving();
            self.set(|phase| match phase {
                Phase::Idle(_) => Phase::Head(Instant::now()),
                Phase::Opened(since) => Phase::Head(since),
                other => other,
            });
        }
    }

    /// A request reached the application, until the guard is dropped.
    fn busy(&self) -> Busy {
        let place = self.0.2.busy();
        self.0.2.received();
        self.set(|phase| match phase {
            Phase::Busy(n) => Phase::Busy(n + 1),
            _ => Phase::Busy(1),
        });
        Busy { activity: self.clone(), _place: place }
    }
}

/// A request in the application; dropping it (answered or abandoned) ends it.
struct Busy {
    activity: Activity,
    /// The connection's place is busy as long.
    _place: agora_proto::admission::Busy,
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.activity.set(|phase| match phase {
            Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
            _ => Phase::Idle(Instant::now()),
        });
    }
}

/// A socket that reports arriving bytes to its connection's [`Activity`], and gives
/// hyper's own refusals of an unreadable request head (400, 431; written by hyper before
/// any route sees the request, with an empty body) the API's one error shape.
struct Watched {
    inner: TcpStream,
    activity: Activity,
    /// An answer written in place of hyper's, and how much of it is out.
    answer: Option<(Vec<u8>, usize)>,
}

impl Watched {
    /// Writes out the replacement answer, if any.
    fn poll_answer(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, done)) = &mut self.answer {
            if *done == bytes.len() {
                self.answer = None;
                break;
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*done..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *done += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.bytes_read();
        }
        result
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_answer(cx))?;
        if let Some(answer) = error_shape(buf) {
            this.answer = Some((answer, 0));
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_answer(cx))?;
        if let Some(first) = bufs.iter().find(|b| !b.is_empty())
            && let Some(answer) = error_shape(first)
        {
            this.answer = Some((answer, 0));
            return Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()));
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_answer(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_answer(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// If `head` is hyper's own answer to a request head it could not read (a status line
/// of 400, 414 or 431 and an empty body, which no route answers: their errors always
/// carry a body), the same answer in the one error shape.
fn error_shape(head: &[u8]) -> Option<Vec<u8>> {
    let rest = head.strip_prefix(b"HTTP/1.1 ")?;
    let (status, message) = match rest.get(..4)? {
        b"400 " => (StatusCode::BAD_REQUEST, "the request is not well-formed HTTP".to_owned()),
        b"414 " => (StatusCode::URI_TOO_LONG, "the URI is too long".to_owned()),
        b"431 " => (
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "the request line and headers are over {} KiB, or over 100 headers",
                HEAD_MAX / 1024
            ),
        ),
        _ => return None,
    };
    let end = head.windows(4).position(|w| w == b"\r\n\r\n")?;
    let lower = head[..end + 2].to_ascii_lowercase();
    let empty = b"\r\ncontent-length: 0\r\n";
    if !lower.windows(empty.len()).any(|w| w == empty) {
        return None;
    }
    let body = ErrorBody {
        error: ErrorDetail { code: ErrorCode::BadRequest.as_str().to_owned(), message },
    };
    let body = match serde_json::to_vec(&body) {
        Ok(body) => body,
        Err(e) => {
            error!(error = %e, "cannot serialise an error body");
            return None;
        }
    };
    let mut answer = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes();
    answer.extend_from_slice(&body);
    Some(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_open_files_for_the_rest() {
        assert_eq!(connection_cap(1024, Some(128)), 64);
        assert_eq!(connection_cap(1024, Some(1)), 1);
        assert_eq!(connection_cap(100, Some(20000)), 100);
        assert_eq!(connection_cap(1024, None), 1024);
        assert!(open_file_limit().is_none_or(|n| n > 0));
    }

    #[test]
    fn only_hyper_s_empty_refusals_are_reshaped() {
        let hyper =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let answer = error_shape(hyper).expect("reshaped");
        let text = String::from_utf8(answer).expect("text");
        assert!(text.starts_with("HTTP/1.1 431 "), "{text}");
        assert!(text.contains("\"code\":\"bad_request\""), "{text}");
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 70\r\n\r\n{";
        assert!(error_shape(ours).is_none());
        assert!(error_shape(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(error_shape(b"{\"items\": []}").is_none());
    }
}
