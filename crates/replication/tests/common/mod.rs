//! The replication tests' harness: replicas of a toy key-value database in one process,
//! each with its own store, data directory and TCP listener on 127.0.0.1, over real
//! mutual TLS. Each test file uses part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use agora_proto::{ApiError, Component, ErrorCode, ServerConfig, Trust};
use agora_replication::{Clock, Context, GroupConfig, GroupError, Hosted, Replica, StateMachine};
use agora_store::{Durability, Store, StoreConfig};
use rusqlite::{Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A key-value table: the smallest database with commands and refusals.
pub struct Kv;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Command {
    /// Sets `key` to `value`; answers the log index it was applied at.
    Put(String, i64),
    /// Writes a row, then refuses: the row must not stay.
    Refuse(String),
}

pub const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v INTEGER NOT NULL);";

impl StateMachine for Kv {
    type Command = Command;
    type Output = u64;

    fn apply(&self, conn: &Connection, command: &Command, ctx: &Context) -> Result<u64, ApiError> {
        let put = |k: &str, v: i64| {
            conn.execute(
                "INSERT OR REPLACE INTO kv (k, v) VALUES (?1, ?2)",
                rusqlite::params![k, v],
            )
            .map_err(|e| ApiError::internal(e.to_string()))
        };
        match command {
            Command::Put(k, v) => {
                put(k, *v)?;
                Ok(ctx.index)
            }
            Command::Refuse(k) => {
                put(k, 0)?;
                Err(ApiError::new(ErrorCode::InvalidArgument, format!("{k} is refused")))
            }
        }
    }
}

pub fn get(conn: &Connection, key: &str) -> Result<Option<i64>, ApiError> {
    conn.query_row("SELECT v FROM kv WHERE k = ?1", [key], |r| r.get(0))
        .optional()
        .map_err(|e| ApiError::internal(e.to_string()))
}

pub fn count(conn: &Connection) -> Result<i64, ApiError> {
    conn.query_row("SELECT count(*) FROM kv", [], |r| r.get(0))
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// One replica: its replica handle, its server, its files.
pub struct Node {
    pub id: u64,
    pub addr: String,
    pub dir: PathBuf,
    pub replica: Replica<Kv>,
    server: CancellationToken,
    served: tokio::task::JoinHandle<()>,
}

impl Node {
    /// Stops the node's server and its part in the group.
    pub async fn stop(self) -> (u64, String, PathBuf) {
        self.server.cancel();
        self.replica.shutdown().await;
        let _ = self.served.await;
        (self.id, self.addr, self.dir)
    }
}

/// Changes a node's settings before it starts (and each time it restarts).
pub type Tune = Arc<dyn Fn(&mut GroupConfig) + Send + Sync>;

pub struct Cluster {
    _tmp: tempfile::TempDir,
    durability: Durability,
    pub credentials: PathBuf,
    pub peers: BTreeMap<u64, String>,
    pub nodes: Vec<Node>,
    tune: Tune,
}

/// A cluster's listeners, bound and not yet serving: where a test can put what it needs
/// between the nodes (proxies) before they start.
pub struct Bound {
    tmp: tempfile::TempDir,
    credentials: PathBuf,
    /// Every node's real address.
    pub peers: BTreeMap<u64, String>,
    listeners: Vec<(u64, TcpListener)>,
}

impl Bound {
    /// Starts every node, each with its settings changed by `tune`.
    pub async fn start(self, durability: Durability, tune: Tune) -> Cluster {
        let Bound { tmp, credentials, peers, listeners } = self;
        let mut nodes = Vec::new();
        for (id, listener) in listeners {
            let dir = tmp.path().join(format!("node-{id}"));
            let node =
                start_node(&credentials, &peers, id, &dir, listener, durability, &tune).await;
            nodes.push(node.expect("start"));
        }
        Cluster { _tmp: tmp, durability, credentials, peers, nodes, tune }
    }
}

pub const DEADLINE: Duration = Duration::from_secs(10);

/// Polls `check` until it answers `Some`, for at most [`DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits for `step` at most [`DEADLINE`].
pub async fn within<T>(step: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, step).await.expect("done within the deadline")
}

/// Sends the replicas' logs to the test's output when `AGORA_TEST_LOG` names a filter
/// (`AGORA_TEST_LOG=openraft=info,agora_replication=debug`): for reading a failure.
pub fn log_if_asked() {
    if let Ok(filter) = std::env::var("AGORA_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}

pub fn trust(credentials: &Path, component: Component) -> Trust {
    match component.is_database() {
        true => replica_trust(credentials, component, 1),
        false => Trust::load(credentials, component).expect("credentials"),
    }
}

/// Replica `node_id`'s own credentials (made if needed).
pub fn replica_trust(credentials: &Path, component: Component, node_id: u64) -> Trust {
    agora_proto::trust::issue(credentials, component, node_id).expect("issue");
    Trust::load_replica(credentials, component, node_id).expect("credentials")
}

pub async fn start_node(
    credentials: &Path,
    peers: &BTreeMap<u64, String>,
    id: u64,
    dir: &Path,
    listener: TcpListener,
    durability: Durability,
    tune: &Tune,
) -> Result<Node, GroupError> {
    log_if_asked();
    let trust = replica_trust(credentials, Component::ProductDb, id);
    std::fs::create_dir_all(dir).expect("data dir");
    let store_config = StoreConfig { durability, ..StoreConfig::new(dir.join("kv.db")) };
    let store = Store::open(&store_config, SCHEMA).expect("store");
    let mut config =
        GroupConfig { durability, ..GroupConfig::new(id, peers.clone(), dir, trust.clone()) };
    tune(&mut config);
    let hosted = Hosted::default();
    let replica = Replica::group(config, store, Kv, Clock::system(), &hosted).await?;
    let server = CancellationToken::new();
    let served = tokio::spawn(agora_proto::serve(
        listener,
        Arc::new(hosted),
        ServerConfig { acceptor: trust.acceptor(), ..Default::default() },
        server.clone(),
    ));
    Ok(Node { id, addr: peers[&id].clone(), dir: dir.to_owned(), replica, server, served })
}

impl Cluster {
    pub async fn start(n: u64) -> Cluster {
        Cluster::start_with(n, Durability::Process).await
    }

    pub async fn start_with(n: u64, durability: Durability) -> Cluster {
        Cluster::bind(n).await.start(durability, Arc::new(|_: &mut GroupConfig| {})).await
    }

    /// Binds `n` nodes' listeners and makes the cluster's credentials.
    pub async fn bind(n: u64) -> Bound {
        let tmp = tempfile::tempdir().expect("tempdir");
        let credentials = tmp.path().join("credentials");
        agora_proto::trust::create(&credentials).expect("credentials");
        let mut listeners = Vec::new();
        let mut peers = BTreeMap::new();
        for id in 1..=n {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            peers.insert(id, listener.local_addr().expect("addr").to_string());
            listeners.push((id, listener));
        }
        Bound { tmp, credentials, peers, listeners }
    }

    /// Starts node `id` again on its directory and its address.
    pub async fn restart(&mut self, id: u64, dir: &Path) {
        let listener = TcpListener::bind(&self.peers[&id]).await.expect("rebind");
        let (peers, durability) = (&self.peers, self.durability);
        let node = start_node(&self.credentials, peers, id, dir, listener, durability, &self.tune)
            .await
            .expect("restart");
        self.nodes.push(node);
    }

    /// Takes node `id` out of the cluster, stopped.
    pub async fn stop(&mut self, id: u64) -> PathBuf {
        let at = self.nodes.iter().position(|n| n.id == id).expect("node");
        self.nodes.remove(at).stop().await.2
    }

    pub fn node(&self, id: u64) -> &Node {
        self.nodes.iter().find(|n| n.id == id).expect("node")
    }

    /// Waits until one running node leads and every running node knows it.
    pub async fn leader(&self) -> u64 {
        self.leader_among(|_| true).await
    }

    /// Waits until one of the running nodes `member` picks leads and every one of them
    /// knows it (the side of a partition that can still elect).
    pub async fn leader_among(&self, member: impl Fn(u64) -> bool) -> u64 {
        let side = || self.nodes.iter().filter(|n| member(n.id));
        eventually("a leader all running nodes agree on", || async {
            let leaders: Vec<u64> =
                side().filter(|n| *n.replica.leadership().borrow()).map(|n| n.id).collect();
            let [leader] = leaders[..] else { return None };
            let known = side()
                .all(|n| n.replica.metrics().is_some_and(|m| m.current_leader == Some(leader)));
            known.then_some(leader)
        })
        .await
    }

    /// Waits until every running node holds `rows` rows.
    pub async fn converged(&self, rows: i64) {
        for node in &self.nodes {
            eventually(&format!("node {} to hold {rows} rows", node.id), || async {
                let n = node.replica.read_local(count).await.ok()?;
                (n == rows).then_some(())
            })
            .await;
        }
    }
}

impl Cluster {
    /// Writes `keys` through whichever node leads, concurrently, and returns once all are
    /// acknowledged: a write a deposed leader refused goes again to the next leader (a
    /// put is safe to repeat). For tests that are about the data, not about one leader.
    pub async fn put_all_through_the_leader(&self, keys: std::ops::Range<i64>) {
        let mut left: Vec<i64> = keys.collect();
        while !left.is_empty() {
            let leader = &self.node(self.leader().await).replica;
            let writes = left.iter().map(|&i| {
                let replica = leader.clone();
                tokio::spawn(
                    async move { (i, replica.propose(Command::Put(format!("k{i}"), i)).await) },
                )
            });
            let mut refused = Vec::new();
            for write in writes.collect::<Vec<_>>() {
                match write.await.expect("task") {
                    (_, Ok(_)) => {}
                    (i, Err(e)) if e.code == ErrorCode::NotLeader => refused.push(i),
                    (i, Err(e)) => panic!("write {i}: {e:?}"),
                }
            }
            left = refused;
        }
    }
}

/// Writes `keys` through `replica`, concurrently, and returns once all are acknowledged.
pub async fn put_all(replica: &Replica<Kv>, keys: std::ops::Range<i64>) {
    let writes = keys.map(|i| {
        let replica = replica.clone();
        tokio::spawn(async move { replica.propose(Command::Put(format!("k{i}"), i)).await })
    });
    for write in writes.collect::<Vec<_>>() {
        // The replica's own patience (5 s) bounds each write.
        write.await.expect("task").expect("acknowledged write");
    }
}
