//! `agora bench --fail`: short runs of each condition against servers the bench starts
//! itself, checking that the failure really happened (the killed process is gone, and is
//! back for the next run) and that the report counts every call, failed ones included.
//! Nothing here asserts on timings.
#![allow(clippy::unwrap_used)]

use agora_bench::{BenchArgs, Condition, bench};
use clap::Parser;

const AGORA: &str = env!("CARGO_BIN_EXE_agora");

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: BenchArgs,
}

const USERS: u64 = 4;
const CALLS: u64 = 300;
const RUNS: u64 = 2;

/// `agora bench --spawn` of a tiny shape (2 sellers, 2 buyers, a small catalogue, no
/// floor) on servers under `data`, with `flags` for the rest.
async fn tiny_bench(data: &tempfile::TempDir, flags: &[&str]) -> agora_bench::Report {
    let mut argv = vec!["bench", "--spawn", "--exe", AGORA, "--quiet"];
    argv.extend(["--data-dir", data.path().to_str().unwrap()]);
    argv.extend(["--sellers", "2", "--buyers", "2", "--items-per-seller", "5"]);
    argv.extend(["--categories", "4", "--floor-calls", "0"]);
    argv.extend_from_slice(flags);
    bench(Cli::try_parse_from(argv).unwrap().args).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frontend_killed_mid_run_is_gone_and_every_call_is_counted() {
    let data = tempfile::tempdir().unwrap();
    let (calls, runs) = (CALLS.to_string(), RUNS.to_string());
    let flags = ["--frontends", "2", "--fail", "none,frontend", "--calls", &calls, "--runs", &runs];
    let report = tiny_bench(&data, &flags).await;
    assert_eq!(report.scenarios.len(), 2, "one report per condition");
    let none = &report.scenarios[0];
    let frontend = &report.scenarios[1];
    assert_eq!((none.condition, frontend.condition), (Condition::None, Condition::Frontend));

    for scenario in [none, frontend] {
        assert_eq!(scenario.frontends, 2);
        assert_eq!(scenario.total.calls, RUNS * USERS * CALLS, "{}", scenario.condition);
        let errors: u64 = scenario.runs.iter().map(|r| r.errors).sum();
        assert_eq!(scenario.total.errors, errors, "{}", scenario.condition);
        for run in &scenario.runs {
            // The timeline holds every call of the run, failed ones too.
            let ok: u64 = run.timeline.iter().map(|b| b.ok).sum();
            let failed: u64 = run.timeline.iter().map(|b| b.errors).sum();
            assert_eq!((ok + failed, failed), (run.calls, run.errors), "run {}", run.run);
            assert!(run.longest_gap_ms > 0.0);
        }
    }
    assert!(none.runs.iter().all(|r| r.failure.is_none()), "nothing fails under none");

    for run in &frontend.runs {
        let failure = run.failure.as_ref().unwrap_or_else(|| panic!("run {}: no kill", run.run));
        assert_eq!(failure.killed, ["seller-server-1", "buyer-server-1"]);
        assert!(failure.gone, "run {}: the killed servers were still running", run.run);
        for pid in &failure.killed_pids {
            assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "{pid} lives");
        }
        assert!(failure.killed_at_s > 0.0 && failure.killed_at_s < run.duration_s);
        assert!(failure.errors_after_kill <= run.errors);
        assert!(failure.unavailable_ms >= 0.0);
    }
    // Each run killed the server started for it: the first run's victim was started again.
    let first: Vec<u32> = frontend.runs[0].failure.as_ref().unwrap().killed_pids.clone();
    let second: Vec<u32> = frontend.runs[1].failure.as_ref().unwrap().killed_pids.clone();
    assert!(first.iter().all(|pid| !second.contains(pid)), "{first:?} then {second:?}");
    // And after the last run too: every server is running when the bench stops them.
    let names: Vec<&str> = frontend.servers.iter().map(|s| s.name.as_str()).collect();
    for name in ["seller-server-1", "seller-server-2", "buyer-server-1", "buyer-server-2"] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_leader_or_follower_killed_mid_run_is_gone_and_another_leads() {
    let data = tempfile::tempdir().unwrap();
    let flags = [
        "--replicas",
        "3",
        "--fail",
        "follower,leader",
        "--fail-group",
        "customer-db,product-db",
        "--calls",
        "200",
        "--runs",
        "1",
    ];
    let report = tiny_bench(&data, &flags).await;
    assert_eq!(report.scenarios.len(), 2, "one report per condition");
    for scenario in &report.scenarios {
        assert_eq!(scenario.replicas, 3);
        assert_eq!(scenario.total.calls, USERS * 200, "{}", scenario.condition);
        let run = &scenario.runs[0];
        let failure = run.failure.as_ref().unwrap();
        assert_eq!(failure.killed.len(), 2, "one replica of each group: {:?}", failure.killed);
        assert!(failure.killed[0].starts_with("customer-db-"), "{:?}", failure.killed);
        assert!(failure.killed[1].starts_with("product-db-"), "{:?}", failure.killed);
        assert!(failure.gone, "{}: the killed replicas were still running", scenario.condition);
        for pid in &failure.killed_pids {
            assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "{pid} lives");
        }
        let ok: u64 = run.timeline.iter().map(|b| b.ok).sum();
        let failed: u64 = run.timeline.iter().map(|b| b.errors).sum();
        assert_eq!((ok + failed, failed), (run.calls, run.errors));
        match scenario.condition {
            Condition::Leader => {
                // Other replicas lead now, one per group, none of them a killed one.
                let took_over = failure.took_over.clone().unwrap();
                let leaders: Vec<&str> = took_over.split(", ").collect();
                assert_eq!(leaders.len(), 2, "{took_over}");
                for leader in leaders {
                    assert!(!failure.killed.iter().any(|k| k == leader), "{took_over}");
                }
            }
            condition => {
                assert_eq!(condition, Condition::Follower);
                assert_eq!(failure.took_over, None);
            }
        }
    }
}

#[tokio::test]
async fn a_failure_the_bench_cannot_cause_is_refused_before_anything_runs() {
    let refuse = |argv: &[&str]| {
        let mut full = vec!["bench", "--quiet"];
        full.extend_from_slice(argv);
        Cli::try_parse_from(full).map(|cli| cli.args)
    };
    let one_frontend = refuse(&["--spawn", "--exe", AGORA, "--fail", "frontend"]).unwrap();
    let err = bench(one_frontend).await.unwrap_err().to_string();
    assert!(err.contains("--frontends 2 or more"), "{err}");
    assert!(refuse(&["--fail", "frontend"]).is_err(), "--fail needs --spawn");
    assert!(refuse(&["--spawn", "--fail", "meteor"]).is_err());
    assert!(refuse(&["--spawn", "--fail-at", "1.5"]).is_err());
    let one_replica = refuse(&["--spawn", "--exe", AGORA, "--fail", "leader"]).unwrap();
    let err = bench(one_replica).await.unwrap_err().to_string();
    assert!(err.contains("--replicas 3 or more"), "{err}");
    assert!(refuse(&["--spawn", "--fail-group", "seller-server"]).is_err());
}
