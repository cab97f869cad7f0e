//! Network partitions, and histories checked for linearizability.
//!
//! Three replicas of the toy key-value database, every link between two of them routed
//! through its own [`Proxy`] (node A dials node B through proxy A→B, by
//! `GroupConfig::routes`), so that a test can cut one replica off from the others in both
//! directions and heal it, while the replicas and their TLS stay exactly as in
//! production. Concurrent clients record what they asked and what they were answered;
//! `agora_testkit::linearizability` checks the history.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agora_proto::{ApiError, ErrorCode};
use agora_replication::{GroupConfig, Replica};
use agora_store::Durability;
use agora_testkit::Proxy;
use agora_testkit::linearizability::{
    DEFAULT_BUDGET, History, KeyValue, KvInput, KvOutput, Operation, Verdict, check_by,
};
use common::*;
use tokio_util::sync::CancellationToken;

/// How long a proposal or a read waits for the majority: short, so that a call on a
/// cut-off replica gives up within the test's time.
const PATIENCE: Duration = Duration::from_secs(1);

/// One proxy per direction of every link: `(from, to)` → the proxy `from` dials `to` by.
struct Links(BTreeMap<(u64, u64), Proxy>);

impl Links {
    /// Cuts every link to and from `id`.
    fn isolate(&self, id: u64) {
        for ((from, to), proxy) in &self.0 {
            if *from == id || *to == id {
                proxy.cut();
            }
        }
    }

    fn heal(&self) {
        self.0.values().for_each(Proxy::heal);
    }

    /// The proxies `id` dials the others by.
    fn from(&self, id: u64) -> impl Iterator<Item = &Proxy> {
        self.0.iter().filter(move |((from, _), _)| *from == id).map(|(_, proxy)| proxy)
    }
}

/// `n` replicas whose every link goes through a proxy; `PATIENCE` for their calls.
async fn partitionable(n: u64) -> (Cluster, Links) {
    let bound = Cluster::bind(n).await;
    let mut proxies = BTreeMap::new();
    let mut routes: BTreeMap<u64, BTreeMap<u64, String>> = BTreeMap::new();
    for &from in bound.peers.keys() {
        for (&to, addr) in &bound.peers {
            if from != to {
                let proxy = Proxy::start(addr.clone()).await.expect("proxy");
                routes.entry(from).or_default().insert(to, proxy.addr().to_string());
                proxies.insert((from, to), proxy);
            }
        }
    }
    let tune: Tune = Arc::new(move |config: &mut GroupConfig| {
        config.routes = routes.get(&config.node_id).cloned().unwrap_or_default();
        config.patience = PATIENCE;
    });
    (bound.start(Durability::Process, tune).await, Links(proxies))
}

/// What a replica cut off from its majority may answer: anything but success.
fn assert_refused<T: std::fmt::Debug>(what: &str, answer: Result<T, ApiError>) {
    match answer {
        Err(e) => assert!(
            matches!(e.code, ErrorCode::NotLeader | ErrorCode::Timeout | ErrorCode::Unavailable),
            "{what}: {e:?}"
        ),
        Ok(v) => panic!("{what} succeeded on a cut-off replica: {v:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_the_others_can_neither_write_nor_read_and_catches_up_after() {
    let (cluster, links) = partitionable(3).await;
    let old = cluster.leader().await;
    put_all(&cluster.node(old).replica, 0..10).await;
    // A read just before the cut: the leader now holds a lease (DESIGN.md, "Reads"),
    // which must have ended by the time the others have elected a new leader.
    assert_eq!(cluster.node(old).replica.read(count).await.expect("read"), 10);
    links.isolate(old);
    let new = cluster.leader_among(|id| id != old).await;
    put_all(&cluster.node(new).replica, 10..20).await;
    // The cut leader may still believe it leads; no majority answers it any more.
    let cut = &cluster.node(old).replica;
    let (write, read) = tokio::join!(cut.propose(Command::Put("lost".into(), 1)), cut.read(count));
    assert_refused("a write", write);
    assert_refused("a linearizable read", read);
    // Nor may it answer from what it holds in memory (customer-db's sessions).
    assert_refused("an answer from memory", cut.ensure_leader().await);
    // Its own copy is stale: a read that had answered would have been wrong.
    assert_eq!(cut.read_local(count).await.expect("local read"), 10);

    links.heal();
    cluster.leader().await;
    // Every acknowledged write everywhere, and the refused one nowhere.
    cluster.converged(20).await;
    for node in &cluster.nodes {
        let lost = node.replica.read_local(|c| get(c, "lost")).await.expect("read");
        assert_eq!(lost, None, "node {} applied a refused write", node.id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_cut_off_from_the_others_can_neither_write_nor_read_and_catches_up_after() {
    let (cluster, links) = partitionable(3).await;
    let leader = cluster.leader().await;
    put_all(&cluster.node(leader).replica, 0..10).await;
    let cut_id = cluster.nodes.iter().map(|n| n.id).find(|&id| id != leader).expect("follower");
    links.isolate(cut_id);
    // The leader and the other follower are still a majority.
    put_all(&cluster.node(leader).replica, 10..20).await;
    assert_eq!(cluster.node(leader).replica.read(count).await.expect("read"), 20);
    let cut = &cluster.node(cut_id).replica;
    let (write, read) = tokio::join!(cut.propose(Command::Put("lost".into(), 1)), cut.read(count));
    assert_refused("a write", write);
    assert_refused("a linearizable read", read);

    links.heal();
    cluster.leader().await;
    cluster.converged(20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_cut_off_for_a_while_does_not_depose_the_leader_once_healed() {
    let (cluster, links) = partitionable(3).await;
    let leader = cluster.leader().await;
    put_all(&cluster.node(leader).replica, 0..10).await;
    let term = cluster.node(leader).replica.metrics().expect("in a group").current_term;
    let cut_id = cluster.nodes.iter().map(|n| n.id).find(|&id| id != leader).expect("follower");
    links.isolate(cut_id);
    // Alone, it stands again and again: each time it dials the others through proxies
    // that refuse it. Three tries each, and it has had every chance to raise its term.
    eventually("the cut-off follower to try the others three times", || async {
        links.from(cut_id).all(|proxy| proxy.refused() >= 3).then_some(())
    })
    .await;
    links.heal();
    put_all(&cluster.node(leader).replica, 10..20).await;
    cluster.converged(20).await;
    // With Pre-Vote it asked whether it could win before raising its term, and nobody
    // said yes: the same leader leads in the same term, on every node.
    for node in &cluster.nodes {
        let metrics = node.replica.metrics().expect("in a group");
        assert_eq!(
            (metrics.current_term, metrics.current_leader),
            (term, Some(leader)),
            "node {} after the heal",
            node.id
        );
    }
}

/// The replicas the clients may call, by node id: a stopped node is taken out, a
/// restarted one put back. A std mutex: nothing awaits while it is held.
type Handles = Arc<Mutex<BTreeMap<u64, Replica<Kv>>>>;

fn handles(cluster: &Cluster) -> Handles {
    Arc::new(Mutex::new(cluster.nodes.iter().map(|n| (n.id, n.replica.clone())).collect()))
}

fn lock(handles: &Handles) -> std::sync::MutexGuard<'_, BTreeMap<u64, Replica<Kv>>> {
    handles.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

const KEYS: [&str; 3] = ["a", "b", "c"];

/// Most calls one client makes: bounds a run whatever happens to the faults.
const CALLS_PER_CLIENT: usize = 300;

/// How long a client waits for one call before it tries another node, as a client
/// with a deadline would: shorter than [`PATIENCE`], so that a cut-off leader that still
/// believes it leads costs a client a quarter of a second, not a second.
const CALL_DEADLINE: Duration = Duration::from_millis(250);

/// Concurrent clients doing puts and linearizable reads on [`KEYS`], recording a history.
struct Workload {
    history: History<KvInput, KvOutput>,
    /// Calls answered so far (not refused, not timed out).
    answered: Arc<AtomicUsize>,
    stop: CancellationToken,
    clients: Vec<tokio::task::JoinHandle<()>>,
}

impl Workload {
    fn start(handles: &Handles, peers: &BTreeMap<u64, String>, clients: usize) -> Workload {
        let history = History::new();
        let answered = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let clients = (0..clients)
            .map(|client| {
                let client = Client {
                    id: client,
                    handles: handles.clone(),
                    peers: peers.iter().map(|(id, addr)| (addr.clone(), *id)).collect(),
                    history: history.clone(),
                    answered: answered.clone(),
                    seed: 0x9e37_79b9_7f4a_7c15 ^ (client as u64 + 1),
                    hint: None,
                };
                tokio::spawn(client.run(stop.clone()))
            })
            .collect();
        Workload { history, answered, stop, clients }
    }

    /// Waits until the clients have had `n` more calls answered.
    async fn progress(&self, n: usize, what: &str) {
        let target = self.answered.load(Ordering::SeqCst) + n;
        eventually(what, || async {
            (self.answered.load(Ordering::SeqCst) >= target).then_some(())
        })
        .await;
    }

    /// Stops the clients (each finishes the call in hand) and returns the history.
    async fn finish(self) -> Vec<Operation<KvInput, KvOutput>> {
        self.stop.cancel();
        for client in self.clients {
            within(client).await.expect("a client panicked");
        }
        self.history.operations()
    }
}

struct Client {
    id: usize,
    handles: Handles,
    /// Address → node id, to follow a `not_leader` hint.
    peers: BTreeMap<String, u64>,
    history: History<KvInput, KvOutput>,
    answered: Arc<AtomicUsize>,
    seed: u64,
    /// The node a `not_leader` answer named.
    hint: Option<u64>,
}

impl Client {
    /// xorshift: enough to vary keys, calls and targets, and the same every run.
    fn random(&mut self, below: usize) -> usize {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        (self.seed % below as u64) as usize
    }

    /// The node to call: the one a refusal named, else one of those that believe they
    /// lead (during a cut, the old leader may still believe it; that is the point).
    fn target(&mut self) -> Option<Replica<Kv>> {
        let handles = lock(&self.handles).clone();
        if let Some(replica) = self.hint.take().and_then(|id| handles.get(&id).cloned()) {
            return Some(replica);
        }
        let leaders: Vec<&Replica<Kv>> =
            handles.values().filter(|r| *r.leadership().borrow()).collect();
        if leaders.is_empty() {
            return None;
        }
        let pick = self.random(leaders.len());
        Some(leaders[pick].clone())
    }

    fn refused(&mut self, error: &ApiError) {
        self.hint = error.leader().and_then(|addr| self.peers.get(addr).copied());
    }

    async fn run(mut self, stop: CancellationToken) {
        let mut seq = 0;
        while !stop.is_cancelled() && seq < CALLS_PER_CLIENT {
            let Some(replica) = self.target() else {
                // No node leads now (an election): a client's retry back-off, then look
                // again, until the test stops the run.
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(5)) => continue,
                }
            };
            seq += 1;
            let key = KEYS[self.random(KEYS.len())].to_owned();
            if self.random(2) == 0 {
                // Unique values: a read names the write it saw.
                let value = (self.id * 1_000_000 + seq) as i64;
                let call = self.history.call(self.id, KvInput::Put(key.clone(), value));
                let answer =
                    tokio::time::timeout(CALL_DEADLINE, replica.propose(Command::Put(key, value)));
                match answer
                    .await
                    .unwrap_or_else(|_| Err(ApiError::new(ErrorCode::Timeout, "deadline")))
                {
                    Ok(_) => {
                        call.returned(KvOutput::Written);
                        self.answered.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => {
                        // Given up, the write may still be applied. And even
                        // `not_leader` may come after the entry reached other replicas
                        // (a deposed leader's log is cut short): a later leader may
                        // still commit it.
                        call.unknown();
                        self.refused(&e);
                    }
                }
            } else {
                let call = self.history.call(self.id, KvInput::Get(key.clone()));
                let answer =
                    tokio::time::timeout(CALL_DEADLINE, replica.read(move |c| get(c, &key)));
                match answer
                    .await
                    .unwrap_or_else(|_| Err(ApiError::new(ErrorCode::Timeout, "deadline")))
                {
                    Ok(value) => {
                        call.returned(KvOutput::Value(value));
                        self.answered.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => {
                        // A failed or abandoned read changed nothing.
                        call.discard();
                        self.refused(&e);
                    }
                }
            }
        }
    }
}

fn verdict(history: &[Operation<KvInput, KvOutput>]) -> Verdict {
    check_by(&KeyValue, history, |input| input.key().to_owned(), DEFAULT_BUDGET)
}

/// Reads and writes: how many of each were answered.
fn answered(history: &[Operation<KvInput, KvOutput>]) -> (usize, usize) {
    let returned = |get: bool| {
        history
            .iter()
            .filter(|op| matches!(op.input, KvInput::Get(_)) == get)
            .filter(|op| !matches!(op.outcome, agora_testkit::linearizability::Outcome::Unknown))
            .count()
    };
    (returned(true), returned(false))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clients_see_a_linearizable_history_through_cuts_and_a_leader_kill() {
    let (mut cluster, links) = partitionable(3).await;
    let first = cluster.leader().await;
    let handles = handles(&cluster);
    let work = Workload::start(&handles, &cluster.peers, 4);
    work.progress(30, "calls answered before any fault").await;

    // The leader cut off: the others elect and go on; the old one may still believe it
    // leads for a while, and the clients may call it.
    links.isolate(first);
    cluster.leader_among(|id| id != first).await;
    work.progress(20, "calls answered by the majority side").await;
    links.heal();
    cluster.leader().await;
    work.progress(20, "calls answered after the heal").await;

    // The leader stopped, then restarted on its directory.
    let killed = cluster.leader().await;
    lock(&handles).remove(&killed);
    let dir = cluster.stop(killed).await;
    cluster.leader().await;
    work.progress(30, "calls answered by the survivors").await;
    cluster.restart(killed, &dir).await;
    lock(&handles).insert(killed, cluster.node(killed).replica.clone());
    cluster.leader().await;

    // A follower cut off, then healed.
    let leader = cluster.leader().await;
    let follower = cluster.nodes.iter().map(|n| n.id).find(|&id| id != leader).expect("follower");
    links.isolate(follower);
    work.progress(30, "calls answered with a follower cut off").await;
    links.heal();
    cluster.leader().await;
    work.progress(20, "calls answered at the end").await;

    let history = work.finish().await;
    let (reads, writes) = answered(&history);
    eprintln!("{} calls recorded: {reads} reads and {writes} writes answered", history.len());
    assert!(reads >= 20 && writes >= 20, "too little was answered: {reads} reads, {writes} writes");
    assert_eq!(verdict(&history), Verdict::Linearizable, "{} operations", history.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checker_catches_a_stale_read_planted_from_a_cut_off_replica() {
    let (cluster, links) = partitionable(3).await;
    let leader = cluster.leader().await;
    let handles = handles(&cluster);
    let work = Workload::start(&handles, &cluster.peers, 3);
    work.progress(30, "calls answered before the cut").await;
    let cut = cluster.nodes.iter().map(|n| n.id).find(|&id| id != leader).expect("follower");
    links.isolate(cut);
    work.progress(30, "calls answered with a follower cut off").await;
    // One more write the cut replica cannot have, acknowledged before the planted read.
    let history = work.history.clone();
    let put = history.call(99, KvInput::Put("a".into(), -1));
    cluster.node(leader).replica.propose(Command::Put("a".into(), -1)).await.expect("write");
    put.returned(KvOutput::Written);
    let honest = work.finish().await;
    assert_eq!(verdict(&honest), Verdict::Linearizable);

    // The planted read: the cut replica's own copy, as a read that skipped ReadIndex
    // would answer.
    let read = history.call(99, KvInput::Get("a".into()));
    let stale = cluster.node(cut).replica.read_local(|c| get(c, "a")).await.expect("read");
    read.returned(KvOutput::Value(stale));
    assert_ne!(stale, Some(-1), "the cut replica saw a write made after the cut");
    match verdict(&history.operations()) {
        Verdict::NotLinearizable { explanation } => {
            assert!(explanation.contains("client 99: Get(\"a\")"), "{explanation}");
        }
        other => panic!("the stale read was not caught: {other:?}"),
    }
    links.heal();
}
