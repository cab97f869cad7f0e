//! A measurement, not a check (timed figures belong in benchmarks, never in assertions):
//! how long from stopping a group's leader to the first write its successor
//! acknowledges, over ten leader stops in a row, each after the group has healed.
//!
//! `cargo test --release -p agora-replication --test failover -- --ignored --nocapture`
//! prints the ten times, sorted, with their median and maximum (docs/performance.md).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;

const KILLS: i64 = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run it with --ignored --nocapture"]
async fn failover_times() {
    let mut cluster = Cluster::start(3).await;
    let mut times = Vec::new();
    for round in 0..KILLS {
        let leader = cluster.leader().await;
        let before = Command::Put(format!("before-{round}"), round);
        cluster.node(leader).replica.propose(before).await.expect("a write before the stop");
        let stopped = Instant::now();
        let dir = cluster.stop(leader).await;
        let others: Vec<u64> = cluster.nodes.iter().map(|n| n.id).collect();
        // Every remaining node is asked in turn until one acknowledges the write; a
        // follower or a candidate refuses at once.
        'acknowledged: loop {
            for id in &others {
                let after = Command::Put(format!("after-{round}"), round);
                if cluster.node(*id).replica.propose(after).await.is_ok() {
                    break 'acknowledged;
                }
            }
            assert!(stopped.elapsed() < Duration::from_secs(30), "no successor within 30 s");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        times.push(stopped.elapsed());
        cluster.restart(leader, &dir).await;
        cluster.converged(2 * (round + 1)).await;
    }
    times.sort();
    let ms: Vec<u128> = times.iter().map(Duration::as_millis).collect();
    let median = (times[4] + times[5]) / 2;
    println!("failover, ms, sorted: {ms:?}; median {} ms, max {} ms", median.as_millis(), ms[9]);
}
