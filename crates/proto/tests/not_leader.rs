//! A replica that does not lead its group answers `not_leader`, naming the leader when it
//! knows it. The pool follows the name (or, without one, tries the next address) and asks
//! again within the call's deadline, so the caller sees only a slower call.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use agora_proto::messages::front::{BuyerRequest, Response};
use agora_proto::{ApiError, BuyerServer, CallError, ErrorCode, Handler, Pool, PoolConfig};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Answers every request as a replica would: as the leader, or redirecting to `leader`.
struct Replica {
    leads: bool,
    leader: Option<String>,
    calls: AtomicUsize,
}

impl Handler<BuyerServer> for Replica {
    async fn handle(&self, _request: BuyerRequest) -> Result<Response, ApiError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.leads {
            Ok(Response::Pong)
        } else {
            Err(ApiError::not_leader("buyer-server", self.leader.as_deref()))
        }
    }
}

async fn serve(replica: Replica, listener: TcpListener, stop: &CancellationToken) -> Arc<Replica> {
    let replica = Arc::new(replica);
    tokio::spawn(agora_proto::serve(listener, replica.clone(), Default::default(), stop.clone()));
    replica
}

/// A group of three: two followers, which name the leader or not, and the leader. Returns
/// the pool's addresses (the leader last) and the three servers in that order.
async fn group(named: bool, stop: &CancellationToken) -> (Vec<String>, [Arc<Replica>; 3]) {
    let listeners = [
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
    ];
    let addrs: Vec<String> =
        listeners.iter().map(|l| l.local_addr().unwrap().to_string()).collect();
    let [first, second, third] = listeners;
    let follower = || Replica {
        leads: false,
        leader: named.then(|| addrs[2].clone()),
        calls: AtomicUsize::new(0),
    };
    let leader = Replica { leads: true, leader: None, calls: AtomicUsize::new(0) };
    let servers = [
        serve(follower(), first, stop).await,
        serve(follower(), second, stop).await,
        serve(leader, third, stop).await,
    ];
    (addrs, servers)
}

fn calls(servers: &[Arc<Replica>; 3]) -> [usize; 3] {
    servers.each_ref().map(|s| s.calls.load(Ordering::SeqCst))
}

#[tokio::test]
async fn the_pool_follows_a_not_leader_answer_to_the_named_leader() {
    let stop = CancellationToken::new();
    let (addrs, servers) = group(true, &stop).await;
    let pool = Pool::<BuyerServer>::new(PoolConfig::new(addrs));
    for _ in 0..3 {
        assert_eq!(pool.call(&BuyerRequest::Ping { deep: false }).await.unwrap(), Response::Pong);
    }
    // Straight to the named leader, past the other follower, and it stays there.
    assert_eq!(calls(&servers), [1, 0, 3]);
    stop.cancel();
}

#[tokio::test]
async fn without_a_named_leader_the_pool_tries_the_next_address() {
    let stop = CancellationToken::new();
    let (addrs, servers) = group(false, &stop).await;
    let pool = Pool::<BuyerServer>::new(PoolConfig::new(addrs));
    assert_eq!(pool.call(&BuyerRequest::Ping { deep: false }).await.unwrap(), Response::Pong);
    assert_eq!(calls(&servers), [1, 1, 1]);
    stop.cancel();
}

#[tokio::test]
async fn with_no_leader_anywhere_the_call_ends_at_its_deadline_with_not_leader() {
    let stop = CancellationToken::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let lost = Replica { leads: false, leader: None, calls: AtomicUsize::new(0) };
    let lost = serve(lost, listener, &stop).await;
    let pool = Pool::<BuyerServer>::new(PoolConfig {
        call_timeout: Duration::from_millis(300),
        ..PoolConfig::new(vec![addr])
    });
    let started = tokio::time::Instant::now();
    match pool.call(&BuyerRequest::Ping { deep: false }).await {
        Err(CallError::Remote(e)) => assert_eq!(e.code, ErrorCode::NotLeader),
        other => panic!("expected not_leader, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    // It asked again while the deadline allowed, not once.
    assert!(lost.calls.load(Ordering::SeqCst) > 1);
    stop.cancel();
}
