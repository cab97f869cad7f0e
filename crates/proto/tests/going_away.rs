//! A server's "going away" goodbye (`unavailable`: an idle close or a shutdown) promises
//! that it answered everything it read. A call that was on its way when the goodbye came
//! was never processed, so the pool sends it again on a new connection, and the caller
//! never sees the close.
#![allow(clippy::unwrap_used)]

use agora_proto::messages::front::{BuyerRequest, Response};
use agora_proto::{
    ApiError, BuyerServer, ErrorCode, Frame, FrameReader, Kind, Pool, PoolConfig, Service,
};
use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

fn encode<T: serde::Serialize>(kind: Kind, id: u64, value: &T) -> Bytes {
    let payload = postcard::to_allocvec(value).unwrap();
    Frame { kind, service: BuyerServer::ID as u8, id, payload: payload.into() }.to_bytes()
}

#[tokio::test]
async fn a_call_caught_by_a_going_away_goodbye_goes_again_on_a_new_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        // First connection: the request arrives just as the server goes away.
        let (socket, _) = listener.accept().await.unwrap();
        let (read, mut write) = socket.into_split();
        let mut reader = FrameReader::new(read, 1 << 20);
        let first = reader.read_frame().await.unwrap().unwrap();
        let bye = ApiError::new(ErrorCode::Unavailable, "closing idle connection");
        write.write_all(&encode(Kind::Goodbye, 0, &bye)).await.unwrap();
        write.shutdown().await.unwrap();
        // Second connection: the same request again, answered this time.
        let (socket, _) = listener.accept().await.unwrap();
        let (read, mut write) = socket.into_split();
        let mut reader = FrameReader::new(read, 1 << 20);
        let again = reader.read_frame().await.unwrap().unwrap();
        assert_eq!(again.payload, first.payload, "the same request");
        let answer: Result<Response, ApiError> = Ok(Response::Pong);
        write.write_all(&encode(Kind::Response, again.id, &answer)).await.unwrap();
        // Held open until the client has read the answer.
        let _ = reader.read_frame().await;
    });

    let pool = Pool::<BuyerServer>::new(PoolConfig {
        connections: 1,
        ..PoolConfig::new(vec![addr.to_string()])
    });
    let request = BuyerRequest::Ping { deep: false };
    assert_eq!(pool.call(&request).await.unwrap(), Response::Pong);
    drop(pool);
    server.await.unwrap();
}
