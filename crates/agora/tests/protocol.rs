//! Protocol abuse against a real server, in raw bytes: each bad connection gets an error
//! or is closed, and the server goes on serving everyone else.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use agora_proto::messages::customer;
use agora_proto::messages::front::{BuyerRequest, Response};
use agora_proto::{ApiError, ErrorCode, Frame, Kind, ServiceId};
use agora_testkit::Cluster;
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// How long a test waits for the server to answer or to close: far longer than either
/// takes, so that a server doing neither fails the test instead of hanging it.
const BOUND: Duration = Duration::from_secs(10);

fn request(service: ServiceId, id: u64, payload: Vec<u8>) -> Bytes {
    Frame { kind: Kind::Request, service: service as u8, id, payload: payload.into() }.to_bytes()
}

fn ping(id: u64) -> Bytes {
    request(
        ServiceId::Buyer,
        id,
        postcard::to_allocvec(&BuyerRequest::Ping { deep: false }).unwrap(),
    )
}

/// Reads until the server closes the connection; returns the frames it sent.
async fn frames_until_close(socket: &mut TcpStream) -> Vec<Frame> {
    let mut bytes = Vec::new();
    timeout(BOUND, socket.read_to_end(&mut bytes))
        .await
        .expect("the server closes the connection in time")
        .unwrap();
    let mut buf = BytesMut::from(&bytes[..]);
    let mut frames = Vec::new();
    while let Some(frame) = Frame::parse(&mut buf, 1 << 20).unwrap() {
        frames.push(frame);
    }
    frames
}

fn goodbye_code(frames: &[Frame]) -> ErrorCode {
    let last = frames.last().expect("a goodbye frame before the close");
    assert_eq!(last.kind, Kind::Goodbye);
    postcard::from_bytes::<ApiError>(&last.payload).unwrap().code
}

/// Reads what has arrived into `buf`; 0 at the close.
async fn read_more(socket: &mut TcpStream, buf: &mut BytesMut) -> usize {
    timeout(BOUND, socket.read_buf(buf)).await.expect("the server answers in time").unwrap()
}

/// A well-behaved connection still gets answers.
async fn still_serves(cluster: &Cluster) {
    let mut socket = TcpStream::connect(cluster.buyer_addr()).await.unwrap();
    socket.write_all(&ping(1)).await.unwrap();
    let mut buf = BytesMut::new();
    let frame = loop {
        if let Some(frame) = Frame::parse(&mut buf, 1 << 20).unwrap() {
            break frame;
        }
        assert!(read_more(&mut socket, &mut buf).await > 0, "closed before answering");
    };
    assert_eq!(frame.id, 1);
    let reply: Result<Response, ApiError> = postcard::from_bytes(&frame.payload).unwrap();
    assert_eq!(reply, Ok(Response::Pong));
}

#[tokio::test]
async fn garbage_bytes_get_a_protocol_error_and_a_close() {
    let cluster = Cluster::start().await;
    let mut socket = TcpStream::connect(cluster.buyer_addr()).await.unwrap();
    socket.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    assert_eq!(goodbye_code(&frames_until_close(&mut socket).await), ErrorCode::Protocol);
    still_serves(&cluster).await;
}

#[tokio::test]
async fn an_unknown_version_gets_a_protocol_error_and_a_close() {
    let cluster = Cluster::start().await;
    let mut socket = TcpStream::connect(cluster.buyer_addr()).await.unwrap();
    let mut frame = ping(1).to_vec();
    frame[0] = 2;
    socket.write_all(&frame).await.unwrap();
    assert_eq!(goodbye_code(&frames_until_close(&mut socket).await), ErrorCode::Protocol);
    still_serves(&cluster).await;
}

#[tokio::test]
async fn an_oversized_length_is_refused_before_its_payload_arrives() {
    let cluster = Cluster::start().await;
    let mut socket = TcpStream::connect(cluster.buyer_addr()).await.unwrap();
    let mut header = BytesMut::new();
    Frame::put_header(&mut header, Kind::Request, ServiceId::Buyer as u8, 1, u32::MAX);
    // Only the header is sent: the refusal cannot be waiting for 4 GiB of payload.
    socket.write_all(&header).await.unwrap();
    assert_eq!(goodbye_code(&frames_until_close(&mut socket).await), ErrorCode::Protocol);
    still_serves(&cluster).await;
}

#[tokio::test]
async fn a_truncated_frame_closes_only_that_connection() {
    let cluster = Cluster::start().await;
    let mut socket = TcpStream::connect(cluster.buyer_addr()).await.unwrap();
    let frame = ping(1);
    socket.write_all(&frame[..frame.len() - 1]).await.unwrap();
    socket.shutdown().await.unwrap();
    let frames = frames_until_close(&mut socket).await;
    assert!(frames.iter().all(|f| f.kind == Kind::Goodbye), "no answer to half a request");
    still_serves(&cluster).await;
}

#[tokio::test]
async fn an_undecodable_request_is_refused_and_the_connection_goes_on() {
    let cluster = Cluster::start().await;
    let mut socket = TcpStream::connect(cluster.buyer_addr()).await.unwrap();
    socket.write_all(&request(ServiceId::Buyer, 7, vec![0xff; 40])).await.unwrap();
    socket.write_all(&ping(8)).await.unwrap();
    let mut buf = BytesMut::new();
    let mut answers = Vec::new();
    while answers.len() < 2 {
        if let Some(frame) = Frame::parse(&mut buf, 1 << 20).unwrap() {
            answers.push(frame);
            continue;
        }
        assert!(read_more(&mut socket, &mut buf).await > 0, "closed early");
    }
    answers.sort_by_key(|f| f.id);
    let bad: Result<Response, ApiError> = postcard::from_bytes(&answers[0].payload).unwrap();
    assert_eq!(bad.unwrap_err().code, ErrorCode::BadRequest);
    let good: Result<Response, ApiError> = postcard::from_bytes(&answers[1].payload).unwrap();
    assert_eq!(good, Ok(Response::Pong));
}

#[tokio::test]
async fn a_request_for_another_service_is_refused_by_name() {
    let cluster = Cluster::start().await;
    let mut socket = TcpStream::connect(cluster.buyer_addr()).await.unwrap();
    let payload = postcard::to_allocvec(&customer::Request::Ping).unwrap();
    socket.write_all(&request(ServiceId::CustomerDb, 1, payload)).await.unwrap();
    let frames = frames_until_close(&mut socket).await;
    assert_eq!(goodbye_code(&frames), ErrorCode::BadRequest);
    let last = frames.last().unwrap();
    let message = postcard::from_bytes::<ApiError>(&last.payload).unwrap().message;
    assert!(message.contains("buyer-server") && message.contains("customer-db"), "{message}");
    still_serves(&cluster).await;
}

#[tokio::test]
async fn many_requests_in_flight_on_one_connection_all_come_back() {
    let cluster = Cluster::start().await;
    let mut socket = TcpStream::connect(cluster.buyer_addr()).await.unwrap();
    let mut batch = Vec::new();
    for id in 1..=500u64 {
        batch.extend_from_slice(&ping(id));
    }
    socket.write_all(&batch).await.unwrap();
    let mut buf = BytesMut::new();
    let mut ids = Vec::new();
    while ids.len() < 500 {
        if let Some(frame) = Frame::parse(&mut buf, 1 << 20).unwrap() {
            assert_eq!(frame.kind, Kind::Response);
            ids.push(frame.id);
            continue;
        }
        assert!(read_more(&mut socket, &mut buf).await > 0, "closed early");
    }
    ids.sort_unstable();
    assert_eq!(ids, (1..=500).collect::<Vec<_>>());
}
