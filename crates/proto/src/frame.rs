//! Frames: the unit between bytes on a socket and messages. See docs/protocol.md.
//!
//! ```text
//! 0       1      2         3      4               8                  16
//! +-------+------+---------+------+---------------+------------------+------------
//! |version| kind | service | flags| length (u32)  | request id (u64) | payload ...
//! +-------+------+---------+------+---------------+------------------+------------
//! ```
//! All integers are big-endian. `length` counts the payload only and is checked against
//! the receiver's maximum before a byte of the payload is buffered.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The protocol version this build speaks.
pub const VERSION: u8 = 1;
/// Bytes in a frame header.
pub const HEADER_LEN: usize = 16;
/// Default largest payload a peer accepts: 1 MiB.
pub const DEFAULT_MAX_FRAME: u32 = 1 << 20;
/// Most buffer space made ahead of the bytes received, so that what a connection holds
/// grows with what its peer has actually sent.
const READ_AHEAD: usize = 64 * 1024;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A request; the id is chosen by the client and echoed in the response.
    Request = 1,
    /// The response to the request with the same id.
    Response = 2,
    /// The sender is closing the connection because of a protocol violation; the payload
    /// is an encoded [`crate::ApiError`] that says why.
    Goodbye = 3,
}

/// Which server a request is meant for, so that a client pointed at the wrong address
/// gets a clear error instead of having its bytes read as some other server's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceId {
    /// The customer database.
    CustomerDb = 1,
    /// The product database.
    ProductDb = 2,
    /// The seller server.
    Seller = 3,
    /// The buyer server.
    Buyer = 4,
    /// The payments service.
    Payments = 5,
    /// Raft traffic between the replicas of one database's group, served on the
    /// database's own port beside its main service (crates/replication).
    Replication = 6,
}

impl ServiceId {
    /// The service with wire number `n`, if any.
    pub fn from_u8(n: u8) -> Option<ServiceId> {
        Some(match n {
            1 => ServiceId::CustomerDb,
            2 => ServiceId::ProductDb,
            3 => ServiceId::Seller,
            4 => ServiceId::Buyer,
            5 => ServiceId::Payments,
            6 => ServiceId::Replication,
            _ => return None,
        })
    }

    /// The component's name, as in `agora <name>`.
    pub fn name(self) -> &'static str {
        match self {
            ServiceId::CustomerDb => "customer-db",
            ServiceId::ProductDb => "product-db",
            ServiceId::Seller => "seller-server",
            ServiceId::Buyer => "buyer-server",
            ServiceId::Payments => "payments",
            ServiceId::Replication => "replication",
        }
    }
}

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// What it carries.
    pub kind: Kind,
    /// The wire number of the service it is for (a [`ServiceId`] on requests).
    pub service: u8,
    /// The request id.
    pub id: u64,
    /// The encoded message.
    pub payload: Bytes,
}

/// A violation of the frame grammar. Every one of them ends the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The first byte is not a version this build speaks.
    #[error("unsupported protocol version {0} (this server speaks version {VERSION})")]
    Version(u8),
    /// The kind byte names no kind.
    #[error("unknown frame kind {0}")]
    Kind(u8),
    /// Reserved flag bits were set.
    #[error("reserved flags {0:#04x} must be zero")]
    Flags(u8),
    /// The declared payload is larger than the receiver accepts.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Declared payload length.
        len: u32,
        /// The receiver's limit.
        max: u32,
    },
    /// The peer closed the connection in the middle of a frame.
    #[error("connection closed in the middle of a frame")]
    Truncated,
}

impl Frame {
    /// Tries to take one whole frame off the front of `buf`.
    ///
    /// `Ok(None)` means "not enough bytes yet", never an error. Header fields are checked as
    /// soon as their bytes are there, so garbage is refused after one byte and an oversized
    /// length before any of its payload is buffered.
    pub fn parse(buf: &mut BytesMut, max_payload: u32) -> Result<Option<Frame>, FrameError> {
        if let Some(&version) = buf.first()
            && version != VERSION
        {
            return Err(FrameError::Version(version));
        }
        if buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let kind = match buf[1] {
            1 => Kind::Request,
            2 => Kind::Response,
            3 => Kind::Goodbye,
            other => return Err(FrameError::Kind(other)),
        };
        if buf[3] != 0 {
            return Err(FrameError::Flags(buf[3]));
        }
        let len = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        if len > max_payload {
            return Err(FrameError::TooLarge { len, max: max_payload });
        }
        let total = HEADER_LEN + len as usize;
        if buf.len() < total {
            // Room for what is still to come, but never more than READ_AHEAD beyond the
            // bytes in hand: a header alone must not make the receiver allocate its
            // declared length (found by fuzzing; see fuzz/README.md).
            buf.reserve((total - buf.len()).min(READ_AHEAD));
            return Ok(None);
        }
        let service = buf[2];
        buf.advance(8);
        let id = buf.get_u64();
        let payload = buf.split_to(len as usize).freeze();
        Ok(Some(Frame { kind, service, id, payload }))
    }

    /// Appends the header for a payload of `len` bytes to `out`.
    pub fn put_header(out: &mut impl BufMut, kind: Kind, service: u8, id: u64, len: u32) {
        out.put_u8(VERSION);
        out.put_u8(kind as u8);
        out.put_u8(service);
        out.put_u8(0);
        out.put_u32(len);
        out.put_u64(id);
    }

    /// The frame as bytes.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(HEADER_LEN + self.payload.len());
        Frame::put_header(&mut out, self.kind, self.service, self.id, self.payload.len() as u32);
        out.extend_from_slice(&self.payload);
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: &[u8]) -> Frame {
        Frame { kind: Kind::Request, service: 4, id: 77, payload: Bytes::copy_from_slice(payload) }
    }

    #[test]
    fn round_trip_byte_by_byte() {
        let f = frame(b"hello");
        let bytes = f.to_bytes();
        let mut buf = BytesMut::new();
        for (i, b) in bytes.iter().enumerate() {
            buf.put_u8(*b);
            let got = Frame::parse(&mut buf, 1024).expect("valid prefix");
            if i + 1 < bytes.len() {
                assert!(got.is_none(), "frame complete after {} of {} bytes", i + 1, bytes.len());
            } else {
                assert_eq!(got, Some(f.clone()));
            }
        }
        assert!(buf.is_empty());
    }

    #[test]
    fn two_frames_in_one_read() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&frame(b"a").to_bytes());
        buf.extend_from_slice(&frame(b"bc").to_bytes());
        assert_eq!(Frame::parse(&mut buf, 16).expect("ok").map(|f| f.payload), Some("a".into()));
        assert_eq!(Frame::parse(&mut buf, 16).expect("ok").map(|f| f.payload), Some("bc".into()));
        assert_eq!(Frame::parse(&mut buf, 16), Ok(None));
    }

    #[test]
    fn oversized_length_is_refused_from_the_header_alone() {
        let mut buf = BytesMut::new();
        Frame::put_header(&mut buf, Kind::Request, 4, 1, u32::MAX);
        assert_eq!(
            Frame::parse(&mut buf, 1024),
            Err(FrameError::TooLarge { len: u32::MAX, max: 1024 })
        );
        assert!(buf.capacity() < 4096, "nothing was allocated for the declared length");
    }

    #[test]
    fn garbage_is_refused_at_the_first_byte() {
        let mut buf = BytesMut::from(&b"G"[..]);
        assert_eq!(Frame::parse(&mut buf, 1024), Err(FrameError::Version(b'G')));
        let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\n\r\n"[..]);
        assert_eq!(Frame::parse(&mut buf, 1024), Err(FrameError::Version(b'G')));
    }

    #[test]
    fn bad_kind_and_flags() {
        let mut bytes = BytesMut::from(&frame(b"x").to_bytes()[..]);
        bytes[1] = 9;
        assert_eq!(Frame::parse(&mut bytes.clone(), 16), Err(FrameError::Kind(9)));
        bytes[1] = 1;
        bytes[3] = 0x80;
        assert_eq!(Frame::parse(&mut bytes, 16), Err(FrameError::Flags(0x80)));
    }
}
