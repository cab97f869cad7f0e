//! A refused connection: final at once for a pool that never reached its server (a
//! wrong port, a server not running: a command-line client said so only after riding
//! through its whole deadline, 4.8 s), and ridden through by one that did (a restart).
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use agora_proto::messages::front::{BuyerRequest, Response};
use agora_proto::{
    ApiError, BuyerServer, CallError, Frame, FrameReader, Kind, Pool, PoolConfig, Service,
};
use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// Far longer than the test's own deadline: a pool that waited it out fails the test.
const CALL_DEADLINE: Duration = Duration::from_secs(3600);
/// Long enough for a loaded machine; each wait ends as soon as its condition holds.
const DEADLINE: Duration = Duration::from_secs(60);

fn riding_through(addr: String) -> Pool<BuyerServer> {
    Pool::new(PoolConfig {
        connections: 1,
        ride_through: true,
        call_timeout: CALL_DEADLINE,
        ..PoolConfig::new(vec![addr])
    })
}

fn pong(id: u64) -> Bytes {
    let answer: Result<Response, ApiError> = Ok(Response::Pong);
    let payload = postcard::to_allocvec(&answer).unwrap();
    Frame { kind: Kind::Response, service: BuyerServer::ID as u8, id, payload: payload.into() }
        .to_bytes()
}

/// Answers one Ping on each connection it accepts on `listener`, `connections` times.
async fn answer(listener: TcpListener, connections: usize) {
    for _ in 0..connections {
        let (socket, _) = listener.accept().await.unwrap();
        let (read, mut write) = socket.into_split();
        let mut reader = FrameReader::new(read, 1 << 20);
        let request = reader.read_frame().await.unwrap().unwrap();
        write.write_all(&pong(request.id)).await.unwrap();
        // Closed once the client has read it and gone, or at the next accept's turn.
        let _ = tokio::time::timeout(Duration::from_millis(50), reader.read_frame()).await;
    }
}

#[tokio::test]
async fn a_refused_first_connection_is_final_at_once() {
    let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let pool = riding_through(port.to_string());
    let ping = BuyerRequest::Ping { deep: false };
    let answer = tokio::time::timeout(DEADLINE, pool.call(&ping)).await;
    let error = answer.expect("the refusal comes at once, not at the call's deadline");
    match error {
        Err(CallError::Unreachable { reason, .. }) => {
            assert_eq!(reason, agora_proto::client::CONNECTION_REFUSED);
        }
        other => panic!("not unreachable: {other:?}"),
    }
}

#[tokio::test]
async fn a_server_that_answered_once_is_waited_for_while_it_restarts() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let pool = riding_through(addr.to_string());
    let ping = BuyerRequest::Ping { deep: false };
    let first = tokio::spawn(answer(listener, 1));
    assert_eq!(pool.call(&ping).await.unwrap(), Response::Pong);
    first.await.unwrap();

    // Gone (its port refuses), then back on the same port while the call rides through.
    let call = tokio::spawn(async move { pool.call(&ping).await });
    tokio::task::yield_now().await;
    let back = loop {
        match TcpListener::bind(addr).await {
            Ok(listener) => break listener,
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    };
    let server = tokio::spawn(answer(back, 1));
    let answered = tokio::time::timeout(DEADLINE, call).await.expect("answered").unwrap();
    assert_eq!(answered.unwrap(), Response::Pong);
    server.await.unwrap();
}
