//! A tiny bench against a real cluster in this process: every call of both interfaces is
//! measured, none fails under the default mix, and the JSON, CSV and SVG files are written
//! with their documented fields. Nothing here asserts on timings.
#![allow(clippy::unwrap_used)]

use agora_bench::{Api, BenchArgs, bench};
use agora_testkit::Cluster;
use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: BenchArgs,
}

/// Calls each user makes: enough that the default mix, with the default seed, draws every
/// call at least once (the rarest, create_account, has weight 3 in 1000).
const CALLS: &str = "400";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_bench_measures_every_call_and_writes_its_reports() {
    let cluster = Cluster::start().await;
    let out = tempfile::tempdir().unwrap();
    let (json, csv, plots) =
        (out.path().join("r.json"), out.path().join("r.csv"), out.path().join("plots"));
    let argv = [
        "bench",
        "--seller-server",
        &cluster.seller_addr(),
        "--buyer-server",
        &cluster.buyer_addr(),
        "--sellers",
        "2",
        "--buyers",
        "2",
        "--calls",
        CALLS,
        "--runs",
        "1",
        "--items-per-seller",
        "5",
        "--categories",
        "4",
        "--floor-calls",
        "10",
        // Account calls are rare in the default mix; make them likely in a short run.
        "--mix",
        "default,seller.relogin=20,seller.create_account=10,buyer.relogin=20,buyer.create_account=10",
        "--quiet",
        "--json",
        json.to_str().unwrap(),
        "--csv",
        csv.to_str().unwrap(),
        "--plot",
        plots.to_str().unwrap(),
    ];
    let report = bench(Cli::try_parse_from(argv).unwrap().args).await.unwrap();

    let scenario = &report.scenarios[0];
    for api in Api::ALL {
        let stats = scenario
            .apis
            .get(api.report_name())
            .unwrap_or_else(|| panic!("{} is missing from the report", api.report_name()));
        assert!(stats.calls > 0, "{api}: no calls");
        assert_eq!(stats.errors, 0, "{api}: {:?}", stats.errors_by_kind);
    }
    assert_eq!(scenario.total.calls, 4 * CALLS.parse::<u64>().unwrap());
    assert_eq!(scenario.total.errors, 0);
    let floor = scenario.floor.as_ref().unwrap();
    assert_eq!((floor.ping_deep.calls, floor.ping.calls), (40, 40));

    // The JSON file: documented fields at the top level (one scenario) and per call.
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    for field in
        ["format", "settings", "machine", "scenarios", "runs", "total", "apis", "floor", "servers"]
    {
        assert!(doc.get(field).is_some(), "no {field} in the JSON report");
    }
    for field in [
        "calls",
        "errors",
        "throughput_ops_per_s",
        "avg_response_us",
        "p50_response_us",
        "p95_response_us",
        "p99_response_us",
        "max_response_us",
        "throughput_mean",
        "throughput_stddev",
    ] {
        assert!(doc["total"][field].is_number(), "total.{field} is not a number");
        assert!(doc["apis"]["buyer.search"][field].is_number(), "apis.buyer.search.{field}");
        assert!(doc["floor"]["ping_deep"][field].is_number(), "floor.ping_deep.{field}");
    }
    assert_eq!(doc["total"]["calls"], scenario.total.calls);
    assert_eq!(doc["runs"].as_array().unwrap().len(), 1);
    assert!(doc["machine"]["cores"].as_u64().unwrap() >= 1);
    assert_eq!(doc["settings"]["calls_per_client"], 400);

    // The CSV file: a header, one row per call, two floor rows and a total.
    let csv = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("scenario,kind,name,calls,errors,throughput_ops_per_s"));
    assert_eq!(lines.len(), 1 + Api::ALL.len() + 2 + 1);
    assert!(lines.last().unwrap().starts_with("custom,total,total,1600,0,"));

    // The charts.
    for chart in ["latency-custom.svg", "throughput.svg"] {
        let svg = std::fs::read_to_string(plots.join(chart)).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("</svg>"), "{chart} is not an SVG");
    }
    cluster.stop().await;
}

/// The error `agora bench ARGV` fails with (against servers that are not there).
async fn refuse(argv: &[&str]) -> String {
    let mut full = vec!["bench", "--quiet", "--seller-server", "127.0.0.1:1"];
    full.extend_from_slice(argv);
    bench(Cli::try_parse_from(full).unwrap().args).await.unwrap_err().to_string()
}

#[tokio::test]
async fn settings_that_cannot_be_measured_are_refused_before_anything_runs() {
    assert!(refuse(&["--mix", "search=1"]).await.contains("--sellers 0"));
    assert!(refuse(&["--sellers", "0", "--buyers", "1"]).await.contains("--catalogue"));
    assert!(refuse(&["--sellers", "0", "--buyers", "0"]).await.contains("nobody"));
    assert!(Cli::try_parse_from(["bench", "--scenario", "4"]).is_err());
    assert!(Cli::try_parse_from(["bench", "--scenario", "1", "--sellers", "3"]).is_err());
}
