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
  agora bench --spawn --scenario 2 --json out.json --csv out.csv --plot charts/
  agora bench --spawn --scenario 3 --frontends 4 --fail none,frontend --plot charts/

Failures (--fail): each condition is its own set of runs on fresh servers. In every run of a
condition other than `none`, the bench kills one server with SIGKILL once --fail-at of the
run's calls are done; it stays down for the rest of the run and is started again, on the
same address, before the next one. `frontend` kills one seller server and one buyer server
(each has clients on it, which move to the next frontend in their list). `restart` is no
kill: every replica of each --fail-group is stopped cleanly and started again, one at a
time, as in a rolling upgrade. The report adds, per run, when the kill happened, the
longest time without a successful call, and how long throughput took to come back to its
level before the kill.";

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
    /// With --spawn: how many seller servers and how many buyer servers to start. Each
    /// simulated user is given every frontend of its role, starting with a different one
    /// (user i with frontend i mod N), and moves to the next when one fails.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64), requires = "spawn")]
    pub frontends: u16,
    /// With --spawn: replicas of each database and of payments, each group kept in
    /// agreement by consensus (1: no replication).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=9), requires = "spawn")]
    pub replicas: u16,
    /// With --spawn: the conditions to measure, comma-separated, each its own set of runs
    /// on fresh servers: `none` (nothing fails), `frontend` (one seller server and one
    /// buyer server are killed in each run; needs --frontends 2 or more), `follower` (a
    /// replica that does not lead, of each group in --fail-group) or `leader` (the
    /// leader of each group in --fail-group); the last two need --replicas 3 or more.
    #[arg(long, value_delimiter = ',', default_value = "none", requires = "spawn")]
    pub fail: Vec<Condition>,
    /// The groups `follower` and `leader` kill a replica of, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "customer-db,product-db,payments", value_parser = ["customer-db", "product-db", "payments"])]
    pub fail_group: Vec<String>,
    /// When, in each run, the failure happens: the fraction of the run's calls done by then.
    #[arg(long, default_value = "0.33", value_parser = parse_fraction)]
    pub fail_at: f64,
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

fn parse_fraction(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(f) if f > 0.0 && f < 1.0 => Ok(f),
        _ => Err(format!("{s:?} is not a fraction between 0 and 1, such as 0.33")),
    }
}

/// What fails during a condition's runs (docs/bench.md, "Failures").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// Nothing: the baseline.
    None,
    /// One seller server and one buyer server, each with clients on it.
    Frontend,
    /// A replica that does not lead, of each group named.
    Follower,
    /// The leader of each group named.
    Leader,
    /// A rolling restart: every replica of each group named, one at a time (the leader
    /// last), stopped as an operator stops it (the leader hands its leadership over
    /// first) and started again, the next once it has caught up.
    Restart,
}

impl Condition {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Condition::None => "none",
            Condition::Frontend => "frontend",
            Condition::Follower => "follower",
            Condition::Leader => "leader",
            Condition::Restart => "restart",
        }
    }
}

impl std::fmt::Display for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
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
