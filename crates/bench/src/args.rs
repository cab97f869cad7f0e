//! `agora bench` flags, and the scenarios they name.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::mix::Mix;

/// How `agora bench` works, shown after the flags by `--help`.
const HOW: &str = "\
Each simulated seller and buyer has its own connection and its own session, and makes --calls
calls per run, each waiting for the previous answer (a closed loop; --rate for an open one).
Set-up (accounts, logins, catalogue) is not timed; a barrier starts all users together. Calls
are drawn from a mix that covers every call of both interfaces (docs/bench.md). After the
runs, a floor is measured: pings through the same stack, which do no work.

Examples:
  agora bench --spawn --scenario 1,2,3          the spec's three scenarios, own servers
  agora bench --scenario 2 --seller-server h:7403 --buyer-server h:7404
  agora bench --spawn --sellers 0 --buyers 10 --mix search=1 --catalogue 1000000
  agora bench --spawn --scenario 2 --json out.json --csv out.csv --plot charts/";

/// `agora bench`: measure response time and throughput of a running or spawned marketplace.
#[derive(Debug, Clone, Args)]
#[command(after_help = HOW)]
pub struct BenchArgs {
    /// The spec's scenarios, comma-separated: 1 = one seller and one buyer, 2 = ten and
    /// ten, 3 = a hundred and a hundred. The default when no --sellers or --buyers is given:
    /// 1.
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u8).range(1..=3),
          conflicts_with_all = ["sellers", "buyers"])]
    pub scenario: Vec<u8>,
    /// Simulated sellers (instead of --scenario).
    #[arg(long)]
    pub sellers: Option<usize>,
    /// Simulated buyers (instead of --scenario).
    #[arg(long)]
    pub buyers: Option<usize>,
    /// Calls each user makes in each run.
    #[arg(long, default_value_t = 1000)]
    pub calls: u64,
    /// Timed runs; figures are given over all of them, with mean and spread across runs.
    #[arg(long, default_value_t = 10)]
    pub runs: u32,
    /// Untimed calls per user before the first run (warms caches and connections).
    #[arg(long, default_value_t = 0)]
    pub warmup: u64,
    /// The mix: `name=weight,...` (calls not named are never made), or `default,name=weight`
    /// to change some calls of the default mix. Names: seller.display_items, seller.rating,
    /// seller.register_item, seller.change_price, seller.update_units, seller.relogin
    /// (Logout, then Login), seller.create_account, buyer.search, buyer.get_item,
    /// buyer.display_cart, buyer.seller_rating, buyer.purchases, buyer.add_to_cart,
    /// buyer.remove_from_cart, buyer.feedback, buyer.save_cart, buyer.clear_cart,
    /// buyer.make_purchase, buyer.relogin, buyer.create_account; the role may be left out when only one role has
    /// the call (`search=1`).
    #[arg(long, default_value = "default", value_parser = parse_mix)]
    pub mix: Mix,
    /// Open loop: the total calls per second to aim for, spread evenly over the users. Each
    /// response time is counted from the call's intended start, so a stall shows up in the
    /// figures (no coordinated omission). Without it, a closed loop.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Seed of the users' random streams: the same seed draws the same calls.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Seller server address(es), comma-separated, tried in turn (without --spawn).
    #[arg(
        long,
        env = "AGORA_SELLER_SERVER",
        default_value = "127.0.0.1:7403",
        value_delimiter = ','
    )]
    pub seller_server: Vec<String>,
    /// Buyer server address(es), comma-separated, tried in turn (without --spawn).
    #[arg(
        long,
        env = "AGORA_BUYER_SERVER",
        default_value = "127.0.0.1:7404",
        value_delimiter = ','
    )]
    pub buyer_server: Vec<String>,
    /// Start the servers as processes of this binary, on a fresh data directory, for
    /// each scenario, and stop them afterwards; their peak memory goes into the report.
    /// They inherit this environment, so `AGORA_*` variables set their options (for
    /// example AGORA_SPIN=200us); the report lists the ones that were set.
    #[arg(long)]
    pub spawn: bool,
    /// With --spawn: make the fresh data directory inside this one (default: the system's
    /// temporary directory). The servers' logs are written there too.
    #[arg(long, requires = "spawn")]
    pub data_dir: Option<PathBuf>,
    /// With --spawn: keep the data directory and logs afterwards.
    #[arg(long, requires = "spawn")]
    pub keep_data: bool,
    /// With --spawn: what the servers log (into their log files).
    #[arg(long, default_value = "warn", requires = "spawn")]
    pub server_log: String,
    /// With --spawn: the `agora` executable to start (default: this one).
    #[arg(long, hide = true)]
    pub exe: Option<PathBuf>,
    /// Deadline on each call; a call past it counts as an error.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    /// Items each simulated seller lists during set-up.
    #[arg(long, default_value_t = 20)]
    pub items_per_seller: u32,
    /// Items to add to the catalogue during set-up, listed by sellers of the bench's own.
    /// With --spawn and an `agora product-db seed` that can, they are bulk-loaded before the
    /// product database starts; otherwise listed through the API.
    #[arg(long, default_value_t = 0)]
    pub catalogue: u64,
    /// Categories items are listed in (0 to N-1).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub categories: u32,

    /// Pings per user for the floor (twice: through to the databases, and to the frontend
    /// only). Default: --calls. 0 skips the floor.
    #[arg(long)]
    pub floor_calls: Option<u64>,

    /// Write the report as JSON (field names in docs/bench.md).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write one CSV row per call, per floor ping and per total.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// Write SVG charts into this directory: latency percentiles per call, and throughput
    /// per scenario (or per run).
    #[arg(long, value_name = "DIR")]
    pub plot: Option<PathBuf>,
    /// No progress bars (the report is still printed).
    #[arg(long, short)]
    pub quiet: bool,
    /// Threads the bench's own clients run on (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
}

fn parse_mix(s: &str) -> Result<Mix, String> {
    s.parse()
}

/// The shape of one scenario.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Shape {
    /// `1`, `2`, `3`, or `custom`.
    pub name: String,
    /// Simulated sellers.
    pub sellers: usize,
    /// Simulated buyers.
    pub buyers: usize,
}

impl BenchArgs {
    /// The scenarios to run, in order.
    pub fn shapes(&self) -> Vec<Shape> {
        if self.sellers.is_some() || self.buyers.is_some() {
            return vec![Shape {
                name: "custom".into(),
                sellers: self.sellers.unwrap_or(0),
                buyers: self.buyers.unwrap_or(0),
            }];
        }
        let scenarios = if self.scenario.is_empty() { vec![1] } else { self.scenario.clone() };
        scenarios
            .into_iter()
            .map(|s| {
                let n = match s {
                    1 => 1,
                    2 => 10,
                    _ => 100,
                };
                Shape { name: s.to_string(), sellers: n, buyers: n }
            })
            .collect()
    }
}

impl Shape {
    /// "scenario 2: 10 sellers + 10 buyers".
    pub fn describe(&self) -> String {
        let who = format!(
            "{} seller{} + {} buyer{}",
            self.sellers,
            if self.sellers == 1 { "" } else { "s" },
            self.buyers,
            if self.buyers == 1 { "" } else { "s" }
        );
        if self.name == "custom" { who } else { format!("scenario {}: {who}", self.name) }
    }
}
