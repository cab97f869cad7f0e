//! Inputs with which the fuzz targets (fuzz/) found a problem, kept as tests once fixed.
//! Each input is also in the target's seed corpus, fuzz/corpus/<target>/regression-*.
#![allow(clippy::unwrap_used)]

use agora_proto::{DEFAULT_MAX_FRAME, Frame, Kind};
use bytes::BytesMut;

/// The `frame` target's input format: a 4-byte big-endian limit, then the bytes.
fn split(input: &[u8]) -> (u32, BytesMut) {
    let (limit, bytes) = input.split_first_chunk::<4>().unwrap();
    (u32::from_be_bytes(*limit), BytesMut::from(bytes))
}

/// Found by the `frame` target (out of memory): a header declaring 2.7 GB, under a limit
/// of 4 GB, made `Frame::parse` reserve all of it before a byte of payload had come. With
/// the default 1 MiB limit, 16 bytes pinned 1 MiB per connection.
#[test]
fn a_header_alone_does_not_make_the_receiver_allocate_its_declared_length() {
    let input = include_bytes!("../../../fuzz/corpus/frame/regression-header-reserve");
    let (max, mut buf) = split(input);
    assert_eq!(Frame::parse(&mut buf, max), Ok(None));
    assert!(buf.capacity() < 1 << 20, "reserved {} bytes for a header", buf.capacity());

    let mut header = BytesMut::new();
    Frame::put_header(&mut header, Kind::Request, 4, 1, DEFAULT_MAX_FRAME);
    assert_eq!(Frame::parse(&mut header, DEFAULT_MAX_FRAME), Ok(None));
    assert!(header.capacity() < 128 * 1024, "reserved {} bytes", header.capacity());
}

/// The fix must not cost big frames: they still arrive whole, the buffer growing with
/// the bytes that come.
#[test]
fn a_frame_at_the_limit_still_arrives_in_pieces() {
    let payload: Vec<u8> = (0..DEFAULT_MAX_FRAME).map(|i| i as u8).collect();
    let bytes = Frame { kind: Kind::Response, service: 2, id: 5, payload: payload.clone().into() }
        .to_bytes();
    let mut buf = BytesMut::new();
    let mut frame = None;
    for piece in bytes.chunks(100_000) {
        assert!(frame.is_none(), "a frame before all of it came");
        buf.extend_from_slice(piece);
        frame = Frame::parse(&mut buf, DEFAULT_MAX_FRAME).unwrap();
    }
    assert_eq!(frame.unwrap().payload, payload);
    assert!(buf.is_empty());
}
