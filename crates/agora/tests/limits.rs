//! The server's limits against real servers on 127.0.0.1:0 (docs/protocol.md, "Limits"):
//! each misbehaving connection is refused or cut off, and everyone else goes on being
//! served. Deadlines here are generous bounds on "eventually", never timing assertions.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use agora_client::{BuyerClient, PoolConfig};
use agora_proto::messages::front::{BuyerRequest, Response};
use agora_proto::{ApiError, ErrorCode, Frame, Kind, ServerConfig, ServiceId};
use agora_testkit::Cluster;
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout;

/// How long "promptly" and "eventually" may take before a test fails.
const BOUND: Duration = Duration::from_secs(10);

fn ping(id: u64) -> Bytes {
    let payload = postcard::to_allocvec(&BuyerRequest::Ping { deep: false }).unwrap();
    Frame { kind: Kind::Request, service: ServiceId::Buyer as u8, id, payload: payload.into() }
        .to_bytes()
}

/// Sends a ping on `socket` and waits for its answer.
async fn ping_pong(socket: &mut TcpStream, id: u64) {
    socket.write_all(&ping(id)).await.unwrap();
    let mut buf = BytesMut::new();
    let frame = timeout(BOUND, async {
        loop {
            if let Some(frame) = Frame::parse(&mut buf, 1 << 20).unwrap() {
                break frame;
            }
            assert!(socket.read_buf(&mut buf).await.unwrap() > 0, "closed before answering");
        }
    })
    .await
    .expect("an answer");
    assert_eq!((frame.kind, frame.id), (Kind::Response, id));
    let reply: Result<Response, ApiError> = postcard::from_bytes(&frame.payload).unwrap();
    assert_eq!(reply, Ok(Response::Pong));
}

/// Reads until the server closes the connection (an end of stream, or a reset after it
/// dropped unread bytes), within [`BOUND`]; returns the frames it sent before.
async fn frames_until_closed(socket: &mut TcpStream) -> Vec<Frame> {
    let mut bytes = BytesMut::new();
    timeout(BOUND, async { while matches!(socket.read_buf(&mut bytes).await, Ok(n) if n > 0) {} })
        .await
        .expect("the server closes the connection");
    let mut frames = Vec::new();
    while let Ok(Some(frame)) = Frame::parse(&mut bytes, 1 << 20) {
        frames.push(frame);
    }
    frames
}

fn goodbye_code(frame: &Frame) -> ErrorCode {
    assert_eq!(frame.kind, Kind::Goodbye);
    postcard::from_bytes::<ApiError>(&frame.payload).unwrap().code
}

async fn connect(addr: std::net::SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.unwrap()
}

/// The first `n` bytes of a ping: a request begun and not finished.
fn half_a_ping(n: usize) -> Bytes {
    ping(1).slice(..n)
}

async fn connect_from(local: [u8; 4], addr: std::net::SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind((std::net::Ipv4Addr::from(local), 0).into()).unwrap();
    socket.connect(addr).await.unwrap()
}

#[tokio::test]
async fn past_max_connections_the_idle_longest_is_shed_and_busy_ones_keep_their_places() {
    let cluster = Cluster::start().await;
    let buyer =
        cluster.start_buyer_with(ServerConfig { max_connections: 2, ..Default::default() }).await;
    let (mut first, mut second) = (connect(buyer.addr).await, connect(buyer.addr).await);
    // An answer on each shows that both hold a place; both are idle now.
    ping_pong(&mut first, 1).await;
    ping_pong(&mut second, 1).await;

    // A third takes the place of the one idle longest, which is told why and closed.
    let mut third = connect(buyer.addr).await;
    ping_pong(&mut third, 1).await;
    let frames = frames_until_closed(&mut first).await;
    assert_eq!(frames.len(), 1, "only a goodbye: {frames:?}");
    assert_eq!(goodbye_code(&frames[0]), ErrorCode::Unavailable);

    // With a request arriving on each, nobody is shed: a new connection is refused.
    second.write_all(&half_a_ping(10)).await.unwrap();
    third.write_all(&half_a_ping(10)).await.unwrap();
    let refused = timeout(BOUND, async {
        loop {
            let mut next = connect(buyer.addr).await;
            let frames = frames_until_closed(&mut next).await;
            // Until the server has read the halves, it may still take one for idle.
            if let [frame] = &frames[..]
                && goodbye_code(frame) == ErrorCode::Overloaded
            {
                break;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(refused.is_ok(), "a connection with a request arriving was shed");
    // The halves are finished and answered: both were kept.
    for socket in [&mut second, &mut third] {
        socket.write_all(&ping(1).slice(10..)).await.unwrap();
        let frame = frames_until_first(socket).await;
        assert_eq!((frame.kind, frame.id), (Kind::Response, 1));
    }
    buyer.stop().await;
}

/// A flood of connections that never send a byte, from one address (127.0.0.2: the
/// loopback network is all of 127/8), takes that address's share of the places and no
/// more, and keeps shedding its own; another address is served throughout.
#[tokio::test]
async fn a_flood_of_silent_connections_from_one_address_leaves_the_door_open_to_others() {
    let cluster = Cluster::start().await;
    let config =
        ServerConfig { max_connections: 8, max_connections_per_address: 4, ..Default::default() };
    let buyer = cluster.start_buyer_with(config).await;
    let mut flood = Vec::new();
    for _ in 0..50 {
        flood.push(connect_from([127, 0, 0, 2], buyer.addr).await);
    }
    // Another address is served, on connections of its own, however many it opens.
    let mut served = Vec::new();
    for id in 0..4 {
        let mut socket = connect(buyer.addr).await;
        ping_pong(&mut socket, id).await;
        served.push(socket);
    }
    // The flood keeps at most its share: all but 4 of it are told to go (a goodbye, or
    // the close).
    let (told, mut told_rx) = tokio::sync::mpsc::unbounded_channel();
    for mut socket in flood {
        let told = told.clone();
        tokio::spawn(async move {
            let _ = socket.read_u8().await;
            let _ = told.send(());
        });
    }
    let shed = timeout(BOUND, async {
        for _ in 0..46 {
            told_rx.recv().await;
        }
    })
    .await;
    assert!(shed.is_ok(), "more than 4 silent connections from one address kept a place");
    for socket in &mut served {
        ping_pong(socket, 9).await;
    }
    buyer.stop().await;
}

/// A connection that says nothing is closed at the first request's deadline, long
/// before the idle one.
#[tokio::test]
async fn a_connection_that_sends_no_request_is_closed_at_its_first_deadline() {
    let cluster = Cluster::start().await;
    let config = ServerConfig {
        first_request_timeout: Duration::from_millis(200),
        idle_timeout: Duration::from_secs(300),
        ..Default::default()
    };
    let buyer = cluster.start_buyer_with(config).await;
    let mut silent = connect(buyer.addr).await;
    let frames = frames_until_closed(&mut silent).await;
    assert_eq!(frames.len(), 1, "only a goodbye: {frames:?}");
    assert_eq!(goodbye_code(&frames[0]), ErrorCode::Unavailable);
    // One that sends its first request in time is served, and then idles for the idle
    // deadline.
    let mut talking = connect(buyer.addr).await;
    ping_pong(&mut talking, 1).await;
    let idle = timeout(Duration::from_millis(500), talking.read_u8()).await;
    assert!(idle.is_err(), "closed at the first request's deadline though it sent one");
    ping_pong(&mut talking, 2).await;
    buyer.stop().await;
}

/// The first frame the server sends on `socket`.
async fn frames_until_first(socket: &mut TcpStream) -> Frame {
    let mut buf = BytesMut::new();
    loop {
        if let Some(frame) = Frame::parse(&mut buf, 1 << 20).unwrap() {
            return frame;
        }
        assert!(socket.read_buf(&mut buf).await.unwrap() > 0, "closed without a frame");
    }
}

#[tokio::test]
async fn a_client_trickling_a_frame_is_cut_off_while_others_are_served() {
    let cluster = Cluster::start().await;
    let config = ServerConfig { frame_timeout: Duration::from_millis(300), ..Default::default() };
    let buyer = cluster.start_buyer_with(config).await;

    let (mut reader, mut writer) = connect(buyer.addr).await.into_split();
    let frame = ping(1);
    // One byte every 100 ms: 25 bytes would take 2.5 s, far past the frame deadline.
    let trickle = tokio::spawn(async move {
        for byte in frame.iter() {
            if writer.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });

    let mut normal = connect(buyer.addr).await;
    ping_pong(&mut normal, 1).await;

    let mut bytes = BytesMut::new();
    timeout(BOUND, async { while matches!(reader.read_buf(&mut bytes).await, Ok(n) if n > 0) {} })
        .await
        .expect("the trickling connection is closed");
    // A goodbye saying why, if the close did not reset the connection first; never an
    // answer to the trickled request.
    while let Ok(Some(frame)) = Frame::parse(&mut bytes, 1 << 20) {
        assert_eq!(goodbye_code(&frame), ErrorCode::Timeout);
    }
    trickle.abort();

    ping_pong(&mut normal, 2).await;
    buyer.stop().await;
}

#[tokio::test]
async fn an_idle_connection_is_closed_and_a_client_reconnects_by_itself() {
    let cluster = Cluster::start().await;
    let config = ServerConfig { idle_timeout: Duration::from_millis(200), ..Default::default() };
    let buyer = cluster.start_buyer_with(config).await;

    // A raw connection that says nothing is told why, then closed.
    let mut idle = connect(buyer.addr).await;
    let frames = frames_until_closed(&mut idle).await;
    assert_eq!(frames.len(), 1, "only a goodbye: {frames:?}");
    assert_eq!(goodbye_code(&frames[0]), ErrorCode::Unavailable);

    // One connection in the pool, so every call goes over the one the server closes.
    let client = BuyerClient::with_config(PoolConfig {
        connections: 1,
        ..PoolConfig::new(vec![buyer.addr.to_string()])
    });
    client.ping(false).await.unwrap();
    sit_out_idle_timeout(buyer.addr).await;
    client.ping(false).await.expect("a call after an idle close");
    sit_out_idle_timeout(buyer.addr).await;
    // A write too. The client saw the goodbye and sends it on a fresh connection; had the
    // close caught it in flight, the pool would send it again, which its op id makes safe
    // (every request is, Service::idempotent). Either way it is applied once, and the
    // answer is the first one, not `username_taken` from a second attempt.
    client.create_account("idler", "long enough", "Idle Ida").await.expect("a write after it");
    client.login("idler", "long enough").await.unwrap();
    let again = client.create_account("idler", "long enough", "").await.unwrap_err();
    assert_eq!(again.code(), Some(ErrorCode::UsernameTaken), "{again}");
    client.ping(false).await.unwrap();
    buyer.stop().await;
}

#[tokio::test]
async fn a_server_shutting_down_answers_what_it_read_then_says_goodbye() {
    let cluster = Cluster::start().await;
    let buyer = cluster.start_buyer_with(ServerConfig::default()).await;
    let mut socket = connect(buyer.addr).await;
    ping_pong(&mut socket, 1).await;
    buyer.stop().await;
    let frames = frames_until_closed(&mut socket).await;
    assert_eq!(frames.len(), 1, "only a goodbye: {frames:?}");
    assert_eq!(goodbye_code(&frames[0]), ErrorCode::Unavailable);
}

/// Returns once a connection opened now has been closed for idleness, and so every
/// connection that has been idle since before this call has been too.
async fn sit_out_idle_timeout(addr: std::net::SocketAddr) {
    let mut clock = connect(addr).await;
    frames_until_closed(&mut clock).await;
}

#[tokio::test]
async fn a_client_that_never_reads_is_cut_off_and_cannot_make_the_server_buffer() {
    let cluster = Cluster::start().await;
    let config = ServerConfig {
        max_in_flight: 4,
        write_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let buyer = cluster.start_buyer_with(config).await;

    // A small receive window, so the answers back up soon.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let flooder = socket.connect(buyer.addr).await.unwrap();
    let (_unread, mut writer) = flooder.into_split();
    const BATCH: u64 = 1000;
    const MOST: u64 = 2_000_000;
    let flood = tokio::spawn(async move {
        let mut sent = 0;
        while sent < MOST {
            let mut batch = Vec::new();
            for id in sent..sent + BATCH {
                batch.extend_from_slice(&ping(id));
            }
            if let Err(e) = writer.write_all(&batch).await {
                return (sent, Some(e));
            }
            sent += BATCH;
        }
        (sent, None)
    });

    // Others are served while the flood goes on (or after it was cut off).
    let mut normal = connect(buyer.addr).await;
    for id in 1..=5 {
        ping_pong(&mut normal, id).await;
    }

    // The server stops reading once its few answers in flight cannot go out, so the
    // flooder's writes stall; after the write timeout the server closes the connection,
    // and the flooder's next write fails.
    let flooded = timeout(Duration::from_secs(60), flood).await.expect("the flooder is cut off");
    let (sent, error) = flooded.unwrap();
    assert!(error.is_some(), "the server read all {sent} requests");

    ping_pong(&mut normal, 6).await;
    buyer.stop().await;
}

/// The same at an internal port, where a caller must finish a TLS handshake with the
/// cluster's credentials: a flood of sockets that never start one, from one address,
/// takes that address's share and no more, and the components calling from another
/// address are served.
#[tokio::test]
async fn a_flood_of_silent_sockets_at_an_internal_port_leaves_it_open_to_the_cluster() {
    let data = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let trust = agora_testkit::trust(data.path(), agora_proto::Component::ProductDb);
    let config = agora_product_db::Config {
        server: ServerConfig {
            max_connections: 8,
            max_connections_per_address: 4,
            ..Default::default()
        },
        ..agora_product_db::Config::new(data.path(), trust)
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(agora_product_db::run(listener, config, shutdown.clone()));

    let mut flood = Vec::new();
    for _ in 0..50 {
        flood.push(connect_from([127, 0, 0, 2], addr).await);
    }
    let seller = agora_testkit::trust(data.path(), agora_proto::Component::SellerServer);
    for _ in 0..4 {
        let channel = agora_proto::Channel::<agora_proto::ProductDb>::connect_with(
            &addr.to_string(),
            BOUND,
            agora_proto::DEFAULT_MAX_FRAME,
            &seller.connector(),
        )
        .await
        .expect("a handshake");
        let pong = channel.call(&agora_proto::messages::product::Request::Ping, BOUND).await;
        assert!(pong.is_ok(), "the cluster's own caller was not served: {pong:?}");
    }
    drop(flood);
    shutdown.cancel();
    server.await.unwrap().unwrap();
}
