//! The report: what was measured and how ([`Settings`], [`Machine`]), and per scenario
//! the figures of every call, of all calls together, of each run, of the floor and of the
//! servers. Printed as Locust-like tables, written as JSON (stable field names, documented
//! in docs/bench.md) and CSV.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use comfy_table::{CellAlignment, LineStyle, Table, TableStyle};
use serde::Serialize;

use crate::args::{Condition, Shape};
use crate::machine::Machine;
use crate::spawn::ServerReport;
use crate::stats::{RunStats, Stats};

/// Locust's look: columns, and one line under the header.
const STYLE: TableStyle =
    TableStyle::new().header_separator(LineStyle::none().fill('─').junction('─'));

/// Version of the JSON layout; bumped only when a field changes meaning or goes away.
pub const FORMAT: u32 = 1;

/// How the bench was run.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// The scenarios run, in order.
    pub scenarios: Vec<Shape>,
    /// Calls each user makes in each run.
    pub calls_per_client: u64,
    /// Timed runs per scenario.
    pub runs: u32,
    /// Untimed calls per user before the first run.
    pub warmup_calls: u64,
    /// `closed` (each user waits for an answer before its next call) or `open` (`--rate`).
    pub load: &'static str,
    /// With an open loop: the total calls per second aimed for.
    pub rate_ops_per_s: Option<f64>,
    /// Weight of every call in the mix (per role, relative).
    pub mix: BTreeMap<String, f64>,
    /// Seed of the users' random streams.
    pub seed: u64,
    /// Whether the bench started its own servers.
    pub spawned: bool,
    /// The seller servers called (without spawning).
    pub seller_server: Vec<String>,
    /// The buyer servers called (without spawning).
    pub buyer_server: Vec<String>,
    /// Items each simulated seller lists during set-up.
    pub items_per_seller: u32,
    /// Extra catalogue items.
    pub catalogue: u64,
    /// How the extra items were loaded: `none`, `api` or `bulk`.
    pub catalogue_loaded: &'static str,
    /// Categories items are listed in.
    pub categories: u32,
    /// Pings per user for each floor measurement.
    pub floor_calls: u64,
    /// Deadline on each call, ms.
    pub timeout_ms: u64,
    /// Threads the bench's clients ran on.
    pub client_threads: usize,
    /// With `--spawn`: the `AGORA_*` environment variables the servers inherited, which
    /// change their settings (`AGORA_SPIN`, `AGORA_PAGE_CACHE_MIB`, ...). Empty otherwise.
    pub server_env: BTreeMap<String, String>,
}

/// The floor: pings that do no work, through the same client, connection and servers.
#[derive(Debug, Clone, Serialize)]
pub struct Floor {
    /// Client → frontend → both databases (in parallel) → back.
    pub ping_deep: Stats,
    /// Client → frontend → back.
    pub ping: Stats,
}

/// Everything measured in one scenario under one condition.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    /// Its name and size.
    pub scenario: Shape,
    /// What failed in each run (`none`: nothing).
    pub condition: Condition,
    /// Seller servers, and buyer servers, the users were spread over (1 without --spawn).
    pub frontends: u16,
    /// Replicas of each database and of payments (1 without --spawn).
    pub replicas: u16,
    /// Items buyers could find in the catalogue (the sample set-up learnt).
    pub catalogue_sample: usize,
    /// Each run, all calls together.
    pub runs: Vec<RunStats>,
    /// All calls of all runs.
    pub total: Stats,
    /// Each call, by name, over all runs.
    pub apis: BTreeMap<String, Stats>,
    /// The floor, if measured.
    pub floor: Option<Floor>,
    /// Spawned servers' peak memory and CPU time (empty without --spawn).
    pub servers: Vec<ServerReport>,
    /// CPU time the bench itself used during the runs, s.
    pub bench_cpu_s: f64,
    /// CPU time the whole machine used during the runs (all processes), s.
    pub machine_cpu_s: f64,
    /// CPU time spent in interrupts during the runs (loopback networking, disk), s.
    pub irq_cpu_s: f64,
    /// CPU time used during the runs by processes other than the bench and the servers
    /// it spawned, s: other load that disturbed the measurement (without --spawn, this
    /// includes the servers).
    pub other_cpu_s: f64,
    /// The bench's own peak memory, KiB.
    pub bench_peak_rss_kib: u64,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Layout version ([`FORMAT`]).
    pub format: u32,
    /// How the bench was run.
    pub settings: Settings,
    /// Where.
    pub machine: Machine,
    /// Every scenario run, in order.
    pub scenarios: Vec<ScenarioReport>,
    /// When exactly one scenario ran, its fields (`scenario`, `runs`, `total`, `apis`,
    /// `floor`, `servers`, ...) also stand at the top level.
    #[serde(flatten)]
    pub single: Option<ScenarioReport>,
}

impl Report {
    /// The report of `scenarios`.
    pub fn new(settings: Settings, machine: Machine, scenarios: Vec<ScenarioReport>) -> Report {
        let single = if scenarios.len() == 1 { scenarios.first().cloned() } else { None };
        Report { format: FORMAT, settings, machine, scenarios, single }
    }

    /// Writes the JSON report to `path`.
    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        let json = serde_json::to_string_pretty(self).context("cannot encode the report")?;
        std::fs::write(path, json + "\n")
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// Writes one CSV row per call, floor ping and total, for every scenario, to `path`.
    pub fn write_csv(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::write(path, self.csv()).with_context(|| format!("cannot write {}", path.display()))
    }

    fn csv(&self) -> String {
        let mut out = String::from(
            "scenario,kind,name,calls,errors,throughput_ops_per_s,avg_response_us,\
             min_response_us,p50_response_us,p90_response_us,p95_response_us,p99_response_us,\
             p999_response_us,max_response_us,throughput_mean,throughput_stddev,\
             avg_response_mean_us,avg_response_stddev_us,condition\n",
        );
        for s in &self.scenarios {
            let mut rows: Vec<(&str, &str, &Stats)> =
                s.apis.iter().map(|(name, st)| ("api", name.as_str(), st)).collect();
            if let Some(floor) = &s.floor {
                rows.push(("floor", "ping_deep", &floor.ping_deep));
                rows.push(("floor", "ping", &floor.ping));
            }
            rows.push(("total", "total", &s.total));
            for (kind, name, st) in rows {
                let _ = writeln!(
                    out,
                    "{},{kind},{name},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                    s.scenario.name,
                    st.calls,
                    st.errors,
                    st.throughput_ops_per_s,
                    st.avg_response_us,
                    st.min_response_us,
                    st.p50_response_us,
                    st.p90_response_us,
                    st.p95_response_us,
                    st.p99_response_us,
                    st.p999_response_us,
                    st.max_response_us,
                    st.throughput_mean,
                    st.throughput_stddev,
                    st.avg_response_mean_us,
                    st.avg_response_stddev_us,
                    s.condition,
                );
            }
        }
        out
    }
}

/// `12345.6` as `12,346`.
pub fn thousands(x: f64) -> String {
    let n = x.round() as i64;
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// A response time in µs, to three significant figures at most below 1000.
fn us(x: f64) -> String {
    if x < 10.0 { format!("{x:.1}") } else { thousands(x) }
}

/// The settings, printed before anything runs.
pub fn print_settings(settings: &Settings, machine: &Machine, data_note: &str) {
    let shapes: Vec<String> = settings.scenarios.iter().map(Shape::describe).collect();
    println!("agora bench");
    println!("  scenarios   {}", shapes.join("; "));
    println!(
        "  load        {} loop{}, {} calls per user per run, {} run{}{}, each user its own connection and session",
        settings.load,
        settings
            .rate_ops_per_s
            .map(|r| format!(" at {} calls/s", thousands(r)))
            .unwrap_or_default(),
        thousands(settings.calls_per_client as f64),
        settings.runs,
        if settings.runs == 1 { "" } else { "s" },
        if settings.warmup_calls > 0 {
            format!(" after {} untimed calls", settings.warmup_calls)
        } else {
            String::new()
        },
    );
    for role in ["seller", "buyer"] {
        let entries: Vec<(&String, &f64)> =
            settings.mix.iter().filter(|(name, w)| name.starts_with(role) && **w > 0.0).collect();
        let total: f64 = entries.iter().map(|(_, w)| **w).sum();
        let mut entries = entries;
        entries.sort_by(|a, b| b.1.total_cmp(a.1));
        let text: Vec<String> = entries
            .iter()
            .map(|(name, w)| {
                let short = name.split_once('.').map(|(_, n)| n).unwrap_or(name);
                format!("{short} {:.1}%", **w / total * 100.0)
            })
            .collect();
        if !text.is_empty() {
            println!("  mix {:<7} {}", role, text.join(", "));
        }
    }
    if settings.spawned {
        println!(
            "  servers     spawned by the bench, fresh data directory per scenario{data_note}"
        );
        if !settings.server_env.is_empty() {
            let env: Vec<String> =
                settings.server_env.iter().map(|(k, v)| format!("{k}={v}")).collect();
            println!("  server env  {} (inherited by the servers)", env.join(" "));
        }
    } else {
        println!(
            "  servers     seller-server {}, buyer-server {}",
            settings.seller_server.join(","),
            settings.buyer_server.join(",")
        );
    }
    println!(
        "  catalogue   {} items per seller (through the API){}, {} categories",
        settings.items_per_seller,
        match settings.catalogue_loaded {
            "none" => String::new(),
            how => format!(" + {} ({how})", thousands(settings.catalogue as f64)),
        },
        settings.categories
    );
    println!(
        "  machine     {}; bench clients on {} threads",
        machine.describe(),
        settings.client_threads
    );
    if machine.build_profile == "debug" {
        println!();
        println!("  !!! WARNING: this is a DEBUG build: figures are several times worse than a");
        println!("  !!! release build's. Build with `cargo build --release -p agora` to measure.");
    }
    println!();
}

/// A scenario's tables, Locust style.
pub fn print_scenario(s: &ScenarioReport, runs: u32, cores: usize) {
    let mut title = s.scenario.describe();
    if s.frontends > 1 {
        title.push_str(&format!(", {} frontends of each kind", s.frontends));
    }
    if s.replicas > 1 {
        title.push_str(&format!(", {} replicas of each database", s.replicas));
    }
    if s.condition != Condition::None {
        title.push_str(&format!(", failure: {}", s.condition));
    }
    println!("== {title} ==");
    let floor_avg = s.floor.as_ref().map(|f| f.ping_deep.avg_response_us);
    let mut table = Table::new();
    table.load_style(STYLE);
    let mut header =
        vec!["Name", "# reqs", "# fails", "Avg µs", "Min", "p50", "p95", "p99", "Max", "req/s"];
    if floor_avg.is_some() {
        header.push("Avg − floor");
    }
    table.set_header(header);
    let row = |name: &str, st: &Stats| {
        let mut cells = vec![
            name.to_owned(),
            thousands(st.calls as f64),
            if st.errors == 0 {
                "0".to_owned()
            } else {
                format!(
                    "{} ({:.1}%)",
                    thousands(st.errors as f64),
                    st.errors as f64 * 100.0 / st.calls.max(1) as f64
                )
            },
            us(st.avg_response_us),
            us(st.min_response_us),
            us(st.p50_response_us),
            us(st.p95_response_us),
            us(st.p99_response_us),
            us(st.max_response_us),
            thousands(st.throughput_ops_per_s),
        ];
        if let Some(floor) = floor_avg {
            cells.push(us(st.avg_response_us - floor));
        }
        cells
    };
    for (name, st) in ordered_apis(&s.apis) {
        table.add_row(row(name, st));
    }
    table.add_row(row("Aggregated", &s.total));
    for i in 1..table.column_count() {
        if let Some(column) = table.column_mut(i) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    println!("{table}");

    let t = &s.total;
    println!(
        "Throughput {} ± {} calls/s, average response {} ± {} µs (mean ± standard deviation over {} run{}); {} errors",
        thousands(t.throughput_mean),
        thousands(t.throughput_stddev),
        us(t.avg_response_mean_us),
        us(t.avg_response_stddev_us),
        runs,
        if runs == 1 { "" } else { "s" },
        thousands(t.errors as f64),
    );
    let errors: Vec<String> = s
        .apis
        .iter()
        .flat_map(|(name, st)| {
            st.errors_by_kind.iter().map(move |(k, n)| format!("{name}: {n} × {k}"))
        })
        .collect();
    if !errors.is_empty() {
        println!("Errors: {}", errors.join("; "));
    }

    if s.runs.len() > 1 {
        let mut runs = Table::new();
        runs.load_style(STYLE);
        runs.set_header(vec![
            "Run", "Time s", "Calls", "Errors", "calls/s", "Avg µs", "p50", "p99", "Max",
        ]);
        for r in &s.runs {
            runs.add_row(vec![
                r.run.to_string(),
                format!("{:.2}", r.duration_s),
                thousands(r.calls as f64),
                thousands(r.errors as f64),
                thousands(r.throughput_ops_per_s),
                us(r.avg_response_us),
                us(r.p50_response_us),
                us(r.p99_response_us),
                us(r.max_response_us),
            ]);
        }
        for i in 0..runs.column_count() {
            if let Some(column) = runs.column_mut(i) {
                column.set_cell_alignment(CellAlignment::Right);
            }
        }
        println!("{runs}");
    }

    for r in &s.runs {
        if let Some(f) = &r.failure {
            let recovered = match f.recovered_after_ms {
                Some(ms) => format!("throughput back to 90 % of before after {} ms", us(ms)),
                None => "throughput not back to 90 % of before by the run's end".to_owned(),
            };
            let took_over =
                f.took_over.as_ref().map(|n| format!("; {n} took over")).unwrap_or_default();
            println!(
                "Run {}: killed {} at {:.2} s{}{took_over}; no successful call for {} ms; {} \
                 errors after the kill; {recovered}",
                r.run,
                f.killed.join(" and "),
                f.killed_at_s,
                if f.gone { "" } else { " (STILL RUNNING at the run's end)" },
                us(f.unavailable_ms),
                thousands(f.errors_after_kill as f64),
            );
        }
    }

    if let Some(floor) = &s.floor {
        println!(
            "Floor (pings that do no work, same clients and connections): \
             client → frontend → databases avg {} µs (p50 {}, p99 {}), {} calls/s; \
             client → frontend avg {} µs (p99 {}), {} calls/s",
            us(floor.ping_deep.avg_response_us),
            us(floor.ping_deep.p50_response_us),
            us(floor.ping_deep.p99_response_us),
            thousands(floor.ping_deep.throughput_ops_per_s),
            us(floor.ping.avg_response_us),
            us(floor.ping.p99_response_us),
            thousands(floor.ping.throughput_ops_per_s),
        );
        if t.avg_response_us > 0.0 {
            let transport = floor.ping_deep.avg_response_us.min(t.avg_response_us);
            println!(
                "  of the average call's {} µs, {} µs ({:.0}%) is the floor (transport, framing, \
                 scheduling) and {} µs is the calls' own work",
                us(t.avg_response_us),
                us(transport),
                transport / t.avg_response_us * 100.0,
                us(t.avg_response_us - transport),
            );
        }
    }
    if !s.servers.is_empty() {
        let servers: Vec<String> = s
            .servers
            .iter()
            .map(|r| {
                format!(
                    "{} {:.1} MiB (set-up {:.1}, runs {:.1}), {:.1} CPU s",
                    r.name,
                    mib(r.peak_rss_kib),
                    mib(r.peak_rss_setup_kib),
                    mib(r.peak_rss_runs_kib),
                    r.cpu_s
                )
            })
            .collect();
        println!("Servers: peak RSS (during set-up, during the runs), CPU time during the runs:");
        println!("  {}", servers.join("\n  "));
    }
    let seconds: f64 = s.runs.iter().map(|r| r.duration_s).sum();
    println!(
        "Bench itself: {:.1} CPU s during the runs, peak RSS {:.1} MiB. The machine: {:.1} CPU s \
         busy of {:.1} available ({} cores × {:.1} s), {:.1} of them in interrupts; other \
         processes: {:.1} CPU s{}",
        s.bench_cpu_s,
        mib(s.bench_peak_rss_kib),
        s.machine_cpu_s,
        seconds * cores as f64,
        cores,
        seconds,
        s.irq_cpu_s,
        s.other_cpu_s,
        if s.other_cpu_s > 0.05 * seconds * cores as f64 {
            "  <-- other load disturbed this measurement"
        } else {
            ""
        },
    );
    println!();
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The calls in report order (sellers' then buyers', as in the mix), not alphabetical.
pub fn ordered_apis(apis: &BTreeMap<String, Stats>) -> Vec<(&str, &Stats)> {
    crate::mix::Api::ALL
        .iter()
        .filter_map(|a| apis.get_key_value(a.report_name()))
        .map(|(k, v)| (k.as_str(), v))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(1234567.0), "1,234,567");
        assert_eq!(thousands(-1234.0), "-1,234");
    }
}
