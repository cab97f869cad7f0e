//! Reading frames from, and writing frames to, any async byte stream (a TCP socket in
//! production; anything `AsyncRead + AsyncWrite`, such as a simulated socket, in tests).

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;

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
}

/// The read half of a connection: buffers bytes and cuts them into frames.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    buf: BytesMut,
    max_payload: u32,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Reads frames of at most `max_payload` payload bytes from `inner`.
    pub fn new(inner: R, max_payload: u32) -> Self {
        FrameReader { inner, buf: BytesMut::with_capacity(8 * 1024), max_payload }
    }

    /// The next frame. `Ok(None)` is a clean end of stream between frames; an end of stream
    /// inside a frame is [`FrameError::Truncated`].
    pub async fn read_frame(&mut self) -> Result<Option<Frame>, ReadError> {
        loop {
            if let Some(frame) = Frame::parse(&mut self.buf, self.max_payload)? {
                return Ok(Some(frame));
            }
            if self.inner.read_buf(&mut self.buf).await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(FrameError::Truncated.into())
                };
            }
        }
    }
}

/// Writes encoded frames from `rx` to `inner` until every sender is gone or the socket
/// fails. Frames that queue up while a write is in progress go out together and are
/// flushed once, so a busy connection pays one system call for many answers.
pub(crate) async fn write_loop<W: AsyncWrite + Unpin>(
    inner: W,
    mut rx: mpsc::Receiver<Bytes>,
) -> std::io::Result<()> {
    let mut out = BufWriter::with_capacity(64 * 1024, inner);
    while let Some(frame) = rx.recv().await {
        out.write_all(&frame).await?;
        while let Ok(frame) = rx.try_recv() {
            out.write_all(&frame).await?;
        }
        out.flush().await?;
    }
    out.shutdown().await
}
