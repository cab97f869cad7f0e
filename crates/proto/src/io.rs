//! Reading frames from, and writing frames to, any async byte stream (a TCP socket in
//! production; anything `AsyncRead + AsyncWrite`, such as a simulated socket, in tests).
//!
//! Both halves can carry deadlines, which is how a server sheds peers that hold a
//! connection without using it: one that sends nothing ([`ReadError::Idle`]), one that
//! trickles a frame byte by byte ([`ReadError::SlowFrame`]), and one that never reads its
//! answers (the writer's stall deadline).

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::frame::{Frame, FrameError};

/// Why reading a frame failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The bytes broke the frame grammar.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// No byte of a new frame arrived within the idle timeout. Nothing was lost: the
    /// buffer held no partial frame, so reading may go on.
    #[error("no request for {0:?}")]
    Idle(Duration),
    /// A frame had begun but did not arrive whole within the frame timeout.
    #[error("a frame did not arrive whole within {0:?}")]
    SlowFrame(Duration),
}

/// Frames read by every [`FrameReader`] in this process.
static FRAMES_READ: AtomicU64 = AtomicU64::new(0);

/// How many frames this process has read so far, on every connection: a cheap sign of
/// traffic (a server's runtime uses it to decide whether to poll a little longer before
/// it sleeps).
pub fn frames_read() -> u64 {
    FRAMES_READ.load(Ordering::Relaxed)
}

/// The read half of a connection: buffers bytes and cuts them into frames.
///
/// The buffer holds about one frame: a frame's declared length is checked against
/// `max_payload` from its header, and room for it is made as its bytes arrive.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    buf: BytesMut,
    max_payload: u32,
    idle_timeout: Option<Duration>,
    frame_timeout: Option<Duration>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Reads frames of at most `max_payload` payload bytes from `inner`, with no deadlines.
    pub fn new(inner: R, max_payload: u32) -> Self {
        FrameReader {
            inner,
            buf: BytesMut::with_capacity(8 * 1024),
            max_payload,
            idle_timeout: None,
            frame_timeout: None,
        }
    }

    /// Sets the deadlines of [`FrameReader::read_frame`]: `idle` for the first byte of the
    /// next frame, `frame` for the rest of it once it has begun. `None` waits for ever.
    pub fn with_timeouts(mut self, idle: Option<Duration>, frame: Option<Duration>) -> Self {
        self.idle_timeout = idle;
        self.frame_timeout = frame;
        self
    }

    /// Changes the idle deadline of the next calls (see [`FrameReader::with_timeouts`]).
    pub fn set_idle_timeout(&mut self, idle: Option<Duration>) {
        self.idle_timeout = idle;
    }

    /// Bytes read and not yet returned as a frame: the start of the next one.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next frame. `Ok(None)` is a clean end of stream between frames; an end of stream
    /// inside a frame is [`FrameError::Truncated`].
    ///
    /// The idle clock starts with the call; the frame clock when the frame's first byte is
    /// in hand (at the call, if an earlier read brought it), so time the caller spends not
    /// reading is never held against the peer. Cancel-safe: bytes already read stay
    /// buffered for the next call.
    pub async fn read_frame(&mut self) -> Result<Option<Frame>, ReadError> {
        let idle = self.idle_timeout.map(|t| (Instant::now() + t, t));
        let mut started: Option<(Instant, Duration)> = None;
        loop {
            if let Some(frame) = Frame::parse(&mut self.buf, self.max_payload)? {
                FRAMES_READ.fetch_add(1, Ordering::Relaxed);
                return Ok(Some(frame));
            }
            let deadline = if self.buf.is_empty() {
                idle.map(|(at, t)| (at, ReadError::Idle(t)))
            } else {
                if started.is_none() {
                    started = self.frame_timeout.map(|t| (Instant::now() + t, t));
                }
                started.map(|(at, t)| (at, ReadError::SlowFrame(t)))
            };
            let read = self.inner.read_buf(&mut self.buf);
            let n = match deadline {
                None => read.await?,
                Some((at, timed_out)) => match tokio::time::timeout_at(at, read).await {
                    Ok(n) => n?,
                    Err(_) => return Err(timed_out),
                },
            };
            if n == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(FrameError::Truncated.into())
                };
            }
        }
    }

    /// Reads and throws away whatever the peer sends, until it closes or `limit` passes.
    /// A server calls this after its goodbye, so that requests already on their way do not
    /// make its close a reset, which could destroy the goodbye before the peer reads it.
    pub(crate) async fn discard_until_closed(&mut self, limit: Duration) {
        let _ = tokio::time::timeout(limit, async {
            loop {
                self.buf.clear();
                if !matches!(self.inner.read_buf(&mut self.buf).await, Ok(n) if n > 0) {
                    break;
                }
            }
        })
        .await;
    }
}

/// Bytes gathered into one write when answers queue up.
const BATCH: usize = 64 * 1024;

/// Writes encoded frames from `rx` to `inner` until every sender is gone or the socket
/// fails. Frames that queue up while a write is in progress go out together, so a busy
/// connection pays one system call for many answers.
///
/// With `stall` set, a write that makes no progress for that long fails with `TimedOut`:
/// the peer is not reading. The caller's queue (`rx`) is bounded, so until then what the
/// connection holds is bounded too: the queue, one batch, and the kernel's buffers.
pub(crate) async fn write_loop<W: AsyncWrite + Unpin>(
    mut inner: W,
    mut rx: mpsc::Receiver<Bytes>,
    stall: Option<Duration>,
) -> io::Result<()> {
    let mut batch = BytesMut::new();
    while let Some(frame) = rx.recv().await {
        batch.extend_from_slice(&frame);
        while batch.len() < BATCH
            && let Ok(frame) = rx.try_recv()
        {
            batch.extend_from_slice(&frame);
        }
        while !batch.is_empty() {
            let n = within(stall, inner.write(&batch)).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            batch.advance(n);
        }
        within(stall, inner.flush()).await?;
        if batch.capacity() > 2 * BATCH {
            // One big answer does not pin its size for the connection's lifetime.
            batch = BytesMut::new();
        }
    }
    within(stall, inner.shutdown()).await
}

/// `io` within `limit`, or a `TimedOut` error saying the peer took nothing for that long.
async fn within<T>(
    limit: Option<Duration>,
    io: impl Future<Output = io::Result<T>>,
) -> io::Result<T> {
    let Some(limit) = limit else { return io.await };
    match tokio::time::timeout(limit, io).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the peer read nothing for {limit:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{HEADER_LEN, Kind};

    fn frame_bytes() -> Bytes {
        Frame { kind: Kind::Request, service: 4, id: 9, payload: Bytes::from_static(b"hi") }
            .to_bytes()
    }

    fn reader(stream: tokio::io::DuplexStream) -> FrameReader<tokio::io::DuplexStream> {
        FrameReader::new(stream, 1024)
            .with_timeouts(Some(Duration::from_secs(300)), Some(Duration::from_secs(10)))
    }

    #[tokio::test(start_paused = true)]
    async fn silence_is_idle_and_leaves_the_reader_usable() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut reader = reader(server);
        assert!(matches!(reader.read_frame().await, Err(ReadError::Idle(_))));
        client.write_all(&frame_bytes()).await.expect("write");
        assert!(matches!(reader.read_frame().await, Ok(Some(f)) if f.id == 9));
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickled_frame_misses_its_deadline() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut reader = reader(server);
        tokio::spawn(async move {
            for byte in frame_bytes().iter() {
                if client.write_all(&[*byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        assert!(matches!(reader.read_frame().await, Err(ReadError::SlowFrame(_))));
    }

    #[tokio::test(start_paused = true)]
    async fn a_frame_in_pieces_within_its_deadline_is_read() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut reader = reader(server);
        let bytes = frame_bytes();
        tokio::spawn(async move {
            for piece in bytes.chunks(HEADER_LEN / 2) {
                let _ = client.write_all(piece).await;
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            // Held open, so that the end of stream is not what ends the read.
            std::future::pending::<()>().await;
        });
        assert!(matches!(reader.read_frame().await, Ok(Some(f)) if f.payload == "hi"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_never_reads_stalls_the_writer_into_an_error() {
        let (_unread, server) = tokio::io::duplex(64);
        let (tx, rx) = mpsc::channel(4);
        let writer = tokio::spawn(write_loop(server, rx, Some(Duration::from_secs(10))));
        // Fills the 64-byte pipe; nothing more can go out.
        for _ in 0..4 {
            if tx.send(frame_bytes()).await.is_err() {
                break;
            }
        }
        let result = writer.await.expect("the writer task");
        assert_eq!(result.map_err(|e| e.kind()).err(), Some(io::ErrorKind::TimedOut));
    }
}
