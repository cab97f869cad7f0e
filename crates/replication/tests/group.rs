//! Three replicas of a toy key-value database in one process, each with its own store,
//! data directory and TCP listener on 127.0.0.1, over real mutual TLS: elections,
//! failover, restarts, catching up by snapshot, redirects and refusals.

mod common;

use std::time::Duration;

use agora_proto::messages::replication::Request as Envelope;
use agora_proto::{Channel, Component, ErrorCode};
use agora_replication::GroupError;
use agora_store::Durability;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_is_elected_and_writes_apply_on_every_replica() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let replica = &cluster.node(leader).replica;
    put_all(replica, 0..50).await;
    // A refusal is an answer, and undoes only itself.
    let refused = replica.propose(Command::Refuse("no".into())).await;
    assert_eq!(refused.map_err(|e| e.code), Err(ErrorCode::InvalidArgument));
    cluster.converged(50).await;
    for node in &cluster.nodes {
        assert_eq!(node.replica.read_local(|c| get(c, "no")).await.expect("read"), None);
        assert_eq!(node.replica.read_local(|c| get(c, "k49")).await.expect("read"), Some(49));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_after_an_acknowledged_write_sees_it() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let replica = &cluster.node(leader).replica;
    for i in 0..20 {
        replica.propose(Command::Put("x".into(), i)).await.expect("write");
        let seen = replica.read(|c| get(c, "x")).await.expect("read");
        assert_eq!(seen, Some(i));
    }
    // A follower refuses a linearizable read: it cannot vouch for being up to date.
    let follower = cluster.nodes.iter().find(|n| n.id != leader).expect("follower");
    let refused = follower.replica.read(|c| get(c, "x")).await;
    assert_eq!(refused.map_err(|e| e.code), Err(ErrorCode::NotLeader));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proposal_on_a_follower_answers_not_leader_with_the_leaders_address() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let follower = cluster.nodes.iter().find(|n| n.id != leader).expect("follower");
    let error = follower
        .replica
        .propose(Command::Put("k".into(), 1))
        .await
        .expect_err("a follower does not take writes");
    assert_eq!(error.code, ErrorCode::NotLeader);
    assert_eq!(error.leader(), Some(cluster.peers[&leader].as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_leader_stops_the_others_elect_a_new_one_and_keep_every_acknowledged_write() {
    let mut cluster = Cluster::start(3).await;
    let first = cluster.leader().await;
    put_all(&cluster.node(first).replica, 0..30).await;
    cluster.stop(first).await;
    let second = cluster.leader().await;
    assert_ne!(first, second);
    put_all(&cluster.node(second).replica, 30..60).await;
    cluster.converged(60).await;
    for node in &cluster.nodes {
        for key in ["k0", "k29", "k30", "k59"] {
            let found = node.replica.read_local(move |c| get(c, key)).await.expect("read");
            assert!(found.is_some(), "node {} lost {key}", node.id);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_follower_rejoins_and_catches_up() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    put_all(&cluster.node(leader).replica, 0..10).await;
    let follower = cluster.nodes.iter().map(|n| n.id).find(|&id| id != leader).expect("follower");
    let dir = cluster.stop(follower).await;
    put_all(&cluster.node(leader).replica, 10..40).await;
    cluster.restart(follower, &dir).await;
    cluster.converged(40).await;
    // It rejoined the group as it was: no second initialization, same leader.
    assert_eq!(cluster.leader().await, leader);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_far_behind_catches_up_by_snapshot() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let follower = cluster.nodes.iter().map(|n| n.id).find(|&id| id != leader).expect("follower");
    let dir = cluster.stop(follower).await;
    put_all(&cluster.node(leader).replica, 0..100).await;
    // The log it misses is gone from the leader: only a snapshot can bring it up to date.
    let replica = &cluster.node(leader).replica;
    replica.snapshot().await.expect("snapshot");
    let snapshot = eventually("the leader's snapshot", || async {
        replica.metrics().expect("in a group").snapshot.map(|id| id.index)
    })
    .await;
    replica.purge_log(snapshot).await.expect("purge");
    eventually("the leader's purge", || async {
        let purged = replica.metrics().expect("in a group").purged.map(|id| id.index);
        (purged == Some(snapshot)).then_some(())
    })
    .await;
    cluster.restart(follower, &dir).await;
    cluster.converged(100).await;
    // Its rows came from the snapshot (the metrics say so once the install is done).
    let caught_up = &cluster.node(follower).replica;
    eventually(&format!("node {follower} to record the installed snapshot"), || async {
        let installed = caught_up.metrics().expect("in a group").snapshot;
        installed.is_some_and(|id| id.index >= snapshot).then_some(())
    })
    .await;
    // And it goes on with the log after it.
    put_all(&cluster.node(leader).replica, 100..110).await;
    cluster.converged(110).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_another_group_is_refused() {
    let cluster = Cluster::start(3).await;
    cluster.leader().await;
    let target = &cluster.nodes[0];
    let (credentials, addr) = (&cluster.credentials, &target.addr);
    let connect = |component| async move {
        let trust = trust(credentials, component);
        Channel::<agora_proto::Replication>::connect_to(
            addr,
            Duration::from_secs(2),
            agora_proto::DEFAULT_MAX_FRAME,
            &trust.connector(),
            Some(Component::ProductDb),
        )
        .await
        .expect("connect")
    };
    let envelope =
        |group: &str| Envelope { group: group.into(), from: 9, to: target.id, body: vec![] };
    // A customer-db node posing as a product-db replica: its certificate says otherwise.
    let customer = connect(Component::CustomerDb).await;
    let refused = customer.call(&envelope("product-db"), DEADLINE).await;
    assert!(
        matches!(&refused, Err(agora_proto::CallError::Remote(e)) if e.code == ErrorCode::Forbidden),
        "{refused:?}"
    );
    // A customer-db replica's message, sent to a product-db node by a wrong --peers.
    let wrong_peers =
        Envelope { group: "customer-db".into(), from: 1, to: target.id, body: vec![] };
    let refused = customer.call(&wrong_peers, DEADLINE).await;
    match refused {
        Err(agora_proto::CallError::Remote(e)) => {
            assert_eq!(e.code, ErrorCode::Forbidden);
            assert!(e.message.contains("replica of product-db"), "{}", e.message);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // A replica of the group, but the message is for another node (a wrong --peers).
    let peer = connect(Component::ProductDb).await;
    let misaddressed = Envelope { group: "product-db".into(), from: 1, to: 99, body: vec![] };
    match peer.call(&misaddressed, DEADLINE).await {
        Err(agora_proto::CallError::Remote(e)) => {
            assert_eq!(e.code, ErrorCode::BadRequest);
            assert!(e.message.contains("for node 99"), "{}", e.message);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // A frontend may not speak for any group.
    let frontend = connect(Component::BuyerServer).await;
    let refused = frontend.call(&envelope("product-db"), DEADLINE).await;
    assert!(
        matches!(&refused, Err(agora_proto::CallError::Remote(e)) if e.code == ErrorCode::Forbidden)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_cannot_send_raft_messages_in_another_replicas_name() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    put_all(&cluster.node(leader).replica, 0..10).await;
    let mut followers = cluster.nodes.iter().map(|n| n.id).filter(|&id| id != leader);
    let (victim, insider) =
        (followers.next().expect("follower"), followers.next().expect("one more"));
    // The insider holds its own key, and dials the victim as its peers do.
    let trust = replica_trust(&cluster.credentials, Component::ProductDb, insider);
    let victim_addr = &cluster.node(victim).addr;
    let channel = Channel::<agora_proto::Replication>::connect_to_replica(
        victim_addr,
        Duration::from_secs(2),
        agora_proto::DEFAULT_MAX_FRAME,
        &trust.connector(),
        Component::ProductDb,
        victim,
    )
    .await
    .expect("connect");
    // A message in the leader's name (its AppendEntries would carry the leader's vote) is
    // refused before its body is read, whatever the body.
    for body in [vec![], vec![0; 200]] {
        let forged = Envelope { group: "product-db".into(), from: leader, to: victim, body };
        match channel.call(&forged, DEADLINE).await {
            Err(agora_proto::CallError::Remote(e)) => {
                assert_eq!(e.code, ErrorCode::Forbidden, "{}", e.message);
                assert!(e.message.contains(&format!("node {leader}'s name")), "{}", e.message);
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
    // A replica cannot pose as another at the TLS layer either: dialing the victim as if it
    // were the leader fails the handshake (the victim's certificate names the victim).
    let posing = Channel::<agora_proto::Replication>::connect_to_replica(
        victim_addr,
        Duration::from_secs(2),
        agora_proto::DEFAULT_MAX_FRAME,
        &trust.connector(),
        Component::ProductDb,
        leader,
    )
    .await;
    assert!(posing.is_err(), "the victim proved it is node {leader}");
    // Nothing changed: the group goes on, every replica with the same rows.
    put_all(&cluster.node(leader).replica, 10..20).await;
    cluster.converged(20).await;
    let current = cluster.leader().await;
    assert_eq!(current, leader, "the refused messages deposed nobody");
}

#[test]
fn a_replica_starts_only_with_its_own_certificate() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let credentials = tmp.path().join("credentials");
    agora_proto::trust::create(&credentials).expect("credentials");
    agora_proto::trust::issue(&credentials, Component::ProductDb, 2).expect("issue");
    // Node 2's pair copied under node 3's name still proves node 2.
    for ext in ["crt", "key"] {
        let from = credentials.join(format!("product-db-2.{ext}"));
        std::fs::copy(from, credentials.join(format!("product-db-3.{ext}"))).expect("copy");
    }
    let refused = agora_proto::Trust::load_replica(&credentials, Component::ProductDb, 3)
        .expect_err("node 2's certificate as node 3's");
    assert!(refused.to_string().contains("product-db node 2"), "{refused}");
    // And a database without its replica's certificate says how to make it.
    let missing = agora_proto::Trust::load_replica(&credentials, Component::ProductDb, 4)
        .expect_err("no certificate");
    assert!(missing.to_string().contains("agora credentials issue"), "{missing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_of_another_group_or_cluster_refuses_to_start_and_is_left_alone() {
    let cluster = Cluster::start(1).await;
    let node = &cluster.nodes[0];
    let stamp = std::fs::read(node.dir.join("replica.stamp")).expect("stamp");
    // The same directory as a customer-db replica.
    let customer = trust(&cluster.credentials, Component::CustomerDb);
    let refused = agora_replication::check_stamp(&node.dir, "customer-db", &customer, 1);
    assert!(matches!(refused, Err(GroupError::Foreign { .. })), "{refused:?}");
    // As node 2.
    let product = trust(&cluster.credentials, Component::ProductDb);
    let refused = agora_replication::check_stamp(&node.dir, "product-db", &product, 2);
    assert!(matches!(refused, Err(GroupError::Foreign { .. })), "{refused:?}");
    // With another cluster's credentials.
    let other = tempfile::tempdir().expect("tempdir");
    agora_proto::trust::create(other.path()).expect("credentials");
    let stranger = trust(other.path(), Component::ProductDb);
    let refused = agora_replication::check_stamp(&node.dir, "product-db", &stranger, 1);
    let message = refused.expect_err("another cluster's data").to_string();
    assert!(message.contains("nothing was changed"), "{message}");
    assert_eq!(std::fs::read(node.dir.join("replica.stamp")).expect("stamp"), stamp);
    // Its own start still passes.
    assert!(agora_replication::check_stamp(&node.dir, "product-db", &product, 1).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_replica_is_refused_until_it_is_removed_and_added_again() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    put_all(&cluster.node(leader).replica, 0..20).await;
    let wiped = cluster.nodes.iter().map(|n| n.id).find(|&id| id != leader).expect("follower");
    let dir = cluster.stop(wiped).await;
    std::fs::remove_dir_all(&dir).expect("wipe");
    cluster.restart(wiped, &dir).await;
    // Serving, reachable, and yet given nothing: it voted and acknowledged entries in its
    // former life that it no longer has, so it may not take that life's place.
    let replica = &cluster.node(leader).replica;
    eventually("the wiped node to answer", || async {
        let status = replica.status().await?;
        (!status.unreachable.contains(&wiped)).then_some(())
    })
    .await;
    put_all(replica, 20..30).await;
    replica.read(count).await.expect("a read through the majority");
    let rows = cluster.node(wiped).replica.read_local(count).await.expect("read");
    assert_eq!(rows, 0, "the wiped node was silently taken back");
    // Removed and added again, it catches up as the new member it is.
    let others: std::collections::BTreeSet<u64> =
        cluster.peers.keys().copied().filter(|&id| id != wiped).collect();
    within(replica.change_membership(others.clone())).await.expect("remove");
    within(replica.add_learner(wiped, &cluster.peers[&wiped])).await.expect("add as learner");
    let all = cluster.peers.keys().copied().collect();
    within(replica.change_membership(all)).await.expect("promote");
    cluster.converged(30).await;
    let status = replica.status().await.expect("in a group");
    assert!(status.members.iter().all(|m| m.voter), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_too_large_for_one_replication_message_is_refused_before_the_log() {
    let cluster = Cluster::start(1).await;
    let leader = cluster.leader().await;
    let replica = &cluster.node(leader).replica;
    let huge = "x".repeat(2 << 20);
    let refused = replica.propose(Command::Put(huge, 1)).await;
    assert_eq!(refused.map_err(|e| e.code), Err(ErrorCode::InvalidArgument));
    // The group goes on.
    replica.propose(Command::Put("small".into(), 1)).await.expect("write");
    assert_eq!(replica.read(count).await.expect("read"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_group_restarted_on_its_directories_goes_on_where_it_was() {
    // Machine durability: the store's writer thread and a fully synced log.
    let mut cluster = Cluster::start_with(3, Durability::Machine).await;
    cluster.put_all_through_the_leader(0..30).await;
    let leader = cluster.leader().await;
    let before = cluster.node(leader).replica.status().await.expect("in a group");
    let mut dirs = Vec::new();
    for id in 1..=3 {
        dirs.push((id, cluster.stop(id).await));
    }
    for (id, dir) in &dirs {
        cluster.restart(*id, dir).await;
    }
    // No node initializes again: the group goes on from its logs and votes (openraft
    // lets a leader whose vote was committed take up its term again).
    cluster.leader().await;
    cluster.converged(30).await;
    cluster.put_all_through_the_leader(30..40).await;
    cluster.converged(40).await;
    let leader = cluster.leader().await;
    let after = cluster.node(leader).replica.status().await.expect("in a group");
    assert!(after.term >= before.term, "{before:?} then {after:?}");
    let shape = |s: &agora_replication::Status| {
        s.members.iter().map(|m| (m.id, m.addr.clone(), m.voter)).collect::<Vec<_>>()
    };
    assert_eq!(shape(&after), shape(&before));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_hands_its_leadership_over_to_the_replica_named_or_the_most_up_to_date() {
    let cluster = Cluster::start(3).await;
    let first = cluster.leader().await;
    put_all(&cluster.node(first).replica, 0..10).await;
    let named = cluster.nodes.iter().map(|n| n.id).find(|&id| id != first).expect("follower");
    let within = Duration::from_secs(5);
    let took = cluster.node(first).replica.hand_over(Some(named), within).await;
    assert_eq!(took.expect("handed over"), named);
    assert_eq!(cluster.leader().await, named);
    put_all(&cluster.node(named).replica, 10..20).await;

    // Unnamed, it goes to another voter.
    let third = cluster.node(named).replica.hand_over(None, within).await.expect("handed over");
    assert_ne!(third, named);
    assert_eq!(cluster.leader().await, third);
    put_all(&cluster.node(third).replica, 20..30).await;
    cluster.converged(30).await;

    // Refused: to itself, to a node that is not a voter, and by a follower.
    let leader = &cluster.node(third).replica;
    let code = |answer: Result<u64, agora_proto::ApiError>| answer.map_err(|e| e.code);
    assert_eq!(code(leader.hand_over(Some(third), within).await), Err(ErrorCode::InvalidArgument));
    assert_eq!(code(leader.hand_over(Some(9), within).await), Err(ErrorCode::InvalidArgument));
    let follower = &cluster.node(named).replica;
    assert_eq!(code(follower.hand_over(None, within).await), Err(ErrorCode::NotLeader));
    assert_eq!(cluster.leader().await, third, "a refused handover moved the leadership");
}
