//! Several groups in one process: three nodes each host two groups of the toy database
//! (`product-db/1` and `product-db/2`) behind one listener, every link between two nodes
//! through a proxy that counts its connections. The groups share one connection per pair
//! of nodes, and elect apart.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use agora_proto::{Component, ServerConfig};
use agora_replication::{Clock, GroupConfig, Hosted, Replica};
use agora_store::{Store, StoreConfig};
use agora_testkit::Proxy;
use common::*;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const GROUPS: [&str; 2] = ["product-db/1", "product-db/2"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_groups_share_one_connection_per_pair_of_nodes_and_elect_apart() {
    log_if_asked();
    let tmp = tempfile::tempdir().expect("tempdir");
    let credentials = tmp.path().join("credentials");
    agora_proto::trust::create(&credentials).expect("credentials");
    let mut listeners = BTreeMap::new();
    let mut peers = BTreeMap::new();
    for id in 1..=3u64 {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        peers.insert(id, listener.local_addr().expect("addr").to_string());
        listeners.insert(id, listener);
    }
    let mut proxies = BTreeMap::new();
    for &from in peers.keys() {
        for (&to, addr) in &peers {
            if from != to {
                proxies.insert((from, to), Proxy::start(addr.clone()).await.expect("proxy"));
            }
        }
    }
    // Node id → group → its replica; one server (and one `Hosted`) per node.
    let mut replicas: BTreeMap<u64, BTreeMap<&str, Replica<Kv>>> = BTreeMap::new();
    let mut servers = Vec::new();
    for (id, listener) in listeners {
        let trust = replica_trust(&credentials, Component::ProductDb, id);
        let routes = proxies
            .iter()
            .filter(|((from, _), _)| *from == id)
            .map(|((_, to), proxy)| (*to, proxy.addr().to_string()))
            .collect();
        let hosted = Hosted::default();
        for name in GROUPS {
            let dir = tmp.path().join(format!("node-{id}")).join(name.replace('/', "-"));
            std::fs::create_dir_all(&dir).expect("data dir");
            let store = Store::open(&StoreConfig::new(dir.join("kv.db")), SCHEMA).expect("store");
            let config = GroupConfig {
                name: Some(name.to_owned()),
                routes: BTreeMap::clone(&routes),
                ..GroupConfig::new(id, peers.clone(), &dir, trust.clone())
            };
            let replica =
                Replica::group(config, store, Kv, Clock::system(), &hosted).await.expect("start");
            replicas.entry(id).or_default().insert(name, replica);
        }
        let stop = CancellationToken::new();
        servers.push((
            stop.clone(),
            tokio::spawn(agora_proto::serve(
                listener,
                Arc::new(hosted),
                ServerConfig { acceptor: trust.acceptor(), ..Default::default() },
                stop,
            )),
        ));
    }
    let leader_of = |name: &'static str, among: Vec<u64>| {
        let replicas = &replicas;
        async move {
            eventually(&format!("a leader of {name}"), || async {
                let leaders: Vec<u64> = among
                    .iter()
                    .copied()
                    .filter(|id| *replicas[id][name].leadership().borrow())
                    .collect();
                let [leader] = leaders[..] else { return None };
                let known = among.iter().all(|id| {
                    replicas[id][name].metrics().is_some_and(|m| m.current_leader == Some(leader))
                });
                known.then_some(leader)
            })
            .await
        }
    };
    let all = vec![1, 2, 3];
    let (a, b) = (leader_of(GROUPS[0], all.clone()).await, leader_of(GROUPS[1], all).await);
    put_all(&replicas[&a][GROUPS[0]], 0..20).await;
    put_all(&replicas[&b][GROUPS[1]], 0..30).await;
    for id in 1..=3 {
        for (name, rows) in [(GROUPS[0], 20), (GROUPS[1], 30)] {
            eventually(&format!("node {id} of {name} to hold {rows} rows"), || async {
                let n = replicas[&id][name].read_local(count).await.ok()?;
                (n == rows).then_some(())
            })
            .await;
        }
    }
    // Everything both groups sent each other went over one connection per direction at
    // most (a node whose messages all were answers opened none): hellos, votes, appends
    // and heartbeats of two groups.
    for ((from, to), proxy) in &proxies {
        assert!(
            proxy.connections() <= 1,
            "{} connections from node {from} to node {to}",
            proxy.connections()
        );
    }
    assert!(
        proxies.values().map(Proxy::connections).sum::<u64>() >= 2,
        "the leaders reached nobody"
    );

    // The first group's leader stops; the first group elects another, and the second
    // keeps its leader in the same term.
    let term = replicas[&b][GROUPS[1]].metrics().expect("in a group").current_term;
    replicas[&a][GROUPS[0]].shutdown().await;
    let others: Vec<u64> = (1..=3).filter(|&id| id != a).collect();
    let new = leader_of(GROUPS[0], others.clone()).await;
    assert_ne!(new, a);
    put_all(&replicas[&new][GROUPS[0]], 20..25).await;
    let second = &replicas[&b][GROUPS[1]].metrics().expect("in a group");
    assert_eq!((second.current_leader, second.current_term), (Some(b), term));
    put_all(&replicas[&b][GROUPS[1]], 30..35).await;

    for (stop, served) in servers {
        stop.cancel();
        let _ = served.await;
    }
}
