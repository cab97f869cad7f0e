//! `agora bench`: Agora's evaluation harness. It measures what users judge the system by —
//! the average response time of each call and the server throughput — in the spec's three
//! scenarios or any other shape, against running servers or servers it spawns itself.
//!
//! The path of one scenario (docs/bench.md says the same for users):
//!
//! ```text
//! spawn.rs     --spawn: the server processes, on a fresh data directory
//! setup.rs     untimed: accounts, logins, the catalogue, browsing it
//! driver.rs    per run: every user on its own task, a barrier, N calls each
//! workload.rs  one user's next call, drawn from the mix (mix.rs), timed
//! stats.rs     samples → HDR histograms, merged over runs
//! timeline.rs  a run over time: 100 ms buckets, gaps, recovery after a kill (--fail)
//! report.rs    tables, JSON, CSV;  plot.rs: SVG charts
//! ```
//!
//! The bench is the body of a subcommand, not a library boundary other code builds on, so
//! its errors are `anyhow` errors with context, printed by `agora` like any other failure.

mod args;
mod driver;
mod machine;
mod mix;
mod plot;
mod report;
mod setup;
mod spawn;
mod stats;
mod timeline;
mod workload;

pub use args::{BenchArgs, Condition, Shape};
pub use machine::Machine;
pub use mix::{Api, Mix, Role};
pub use report::{Floor, Report, ScenarioReport, Settings};
pub use spawn::{ServerReport, SpawnOptions, Spawned, Window};
pub use stats::{RunStats, Stats};
pub use timeline::{Bucket, Failure};

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};

use crate::driver::{Work, phase};
use crate::setup::{Plan, Targets};
use crate::stats::Accum;
use crate::timeline::Kill;
use crate::workload::{FLOOR_DEEP, FLOOR_SHALLOW, SLOTS, Trigger};

/// Runs `agora bench` with `args`: prints the settings, runs every scenario, prints the
/// report and writes the files asked for.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
        .max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(bench(args)).map(|_| ())
}

/// Like [`run`], on the caller's runtime, returning the report.
pub async fn bench(args: BenchArgs) -> anyhow::Result<Report> {
    let shapes = args.shapes();
    check(&args, &shapes)?;
    let machine = Machine::detect();
    let exe = match &args.exe {
        Some(exe) => exe.clone(),
        None => std::env::current_exe().context("cannot find the agora executable")?,
    };
    // Replicas are filled through their group's log, so a catalogue is listed through the
    // API for them rather than bulk-loaded into one file.
    let bulk =
        args.spawn && args.catalogue > 0 && args.replicas <= 1 && spawn::can_bulk_load(&exe).await;
    let settings = settings(&args, &shapes, bulk);
    let data_note = match &args.data_dir {
        Some(dir) => format!(" under {}", dir.display()),
        None => String::new(),
    };
    report::print_settings(&settings, &machine, &data_note);

    let mut scenarios = Vec::with_capacity(shapes.len());
    for condition in conditions(&args) {
        for shape in &shapes {
            let scenario = scenario(&args, shape, condition, &exe, bulk).await?;
            report::print_scenario(&scenario, args.runs, machine.cores);
            scenarios.push(scenario);
        }
    }
    let report = Report::new(settings, machine, scenarios);
    if let Some(path) = &args.json {
        report.write_json(path)?;
        println!("JSON report: {}", path.display());
    }
    if let Some(path) = &args.csv {
        report.write_csv(path)?;
        println!("CSV report: {}", path.display());
    }
    if let Some(dir) = &args.plot {
        for path in plot::write_all(&report, dir)? {
            println!("Chart: {}", path.display());
        }
    }
    Ok(report)
}

/// The conditions to measure, each once, in the order given.
fn conditions(args: &BenchArgs) -> Vec<Condition> {
    let mut conditions: Vec<Condition> = Vec::new();
    for condition in &args.fail {
        if !conditions.contains(condition) {
            conditions.push(*condition);
        }
    }
    if conditions.is_empty() {
        conditions.push(Condition::None);
    }
    conditions
}

/// Refuses settings that cannot give a meaningful figure, saying what to change.
fn check(args: &BenchArgs, shapes: &[Shape]) -> anyhow::Result<()> {
    if args.calls == 0 || args.runs == 0 {
        bail!("--calls and --runs must be at least 1");
    }
    if conditions(args).iter().any(|c| *c != Condition::None) && !args.spawn {
        bail!("--fail kills servers the bench started itself: add --spawn");
    }
    let replicated = [Condition::Follower, Condition::Leader, Condition::Restart];
    if conditions(args).iter().any(|c| replicated.contains(c)) && args.replicas < 3 {
        bail!(
            "--fail follower, leader and restart stop one replica of a group at a time, which \
             must go on with a majority: give --replicas 3 or more"
        );
    }
    if conditions(args).contains(&Condition::Frontend) && args.frontends < 2 {
        bail!(
            "--fail frontend kills one frontend of each kind while users go on with the others: \
             give --frontends 2 or more"
        );
    }
    if args.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        bail!("--rate must be a positive number of calls per second");
    }
    for shape in shapes {
        if shape.sellers + shape.buyers == 0 {
            bail!("nobody to simulate: give --sellers or --buyers a number above 0");
        }
        if shape.sellers > 0 && !args.mix.has_calls(Role::Seller) {
            bail!("the mix gives sellers no calls: add seller calls to --mix, or pass --sellers 0");
        }
        if shape.buyers > 0 && !args.mix.has_calls(Role::Buyer) {
            bail!("the mix gives buyers no calls: add buyer calls to --mix, or pass --buyers 0");
        }
        if shape.buyers > 0 && shape.sellers == 0 && args.catalogue == 0 {
            bail!("without sellers the catalogue is empty: give --catalogue N items");
        }
    }
    Ok(())
}

fn settings(args: &BenchArgs, shapes: &[Shape], bulk: bool) -> Settings {
    Settings {
        scenarios: shapes.to_vec(),
        calls_per_client: args.calls,
        runs: args.runs,
        warmup_calls: args.warmup,
        load: if args.rate.is_some() { "open" } else { "closed" },
        rate_ops_per_s: args.rate,
        mix: args.mix.entries().into_iter().map(|(n, w)| (n.to_owned(), w)).collect(),
        seed: args.seed,
        spawned: args.spawn,
        seller_server: if args.spawn { Vec::new() } else { args.seller_server.clone() },
        buyer_server: if args.spawn { Vec::new() } else { args.buyer_server.clone() },
        items_per_seller: args.items_per_seller,
        catalogue: args.catalogue,
        catalogue_loaded: match (args.catalogue, bulk) {
            (0, _) => "none",
            (_, true) => "bulk",
            (_, false) => "api",
        },
        categories: args.categories,
        floor_calls: floor_calls(args),
        timeout_ms: u64::try_from(args.timeout.as_millis()).unwrap_or(u64::MAX),
        client_threads: args
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)),
        server_env: if args.spawn { server_env(std::env::vars_os()) } else { BTreeMap::new() },
    }
}

/// The `AGORA_*` variables in `vars`: spawned servers inherit them, and they change how the
/// servers run, so a report says which were set.
fn server_env(
    vars: impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> BTreeMap<String, String> {
    vars.filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| k.starts_with("AGORA_"))
        .collect()
}

fn floor_calls(args: &BenchArgs) -> u64 {
    args.floor_calls.unwrap_or(args.calls)
}

/// How `--spawn` starts the servers.
fn spawn_options(args: &BenchArgs, exe: &std::path::Path, bulk: bool) -> SpawnOptions {
    SpawnOptions {
        exe: exe.to_owned(),
        parent: args.data_dir.clone(),
        keep: args.keep_data,
        log: args.server_log.clone(),
        // A fresh customer database gives its first account id 1: the catalogue's owner.
        bulk_catalogue: bulk.then_some((args.catalogue, 1)),
        frontends: args.frontends,
        replicas: args.replicas,
        // The bench measures the purchase path, not the processor's whims.
        approve_probability: 1.0,
    }
}

/// One scenario under one condition: servers (if spawned), set-up, warm-up, the runs, the
/// floor, and the servers stopped whatever happened.
async fn scenario(
    args: &BenchArgs,
    shape: &Shape,
    condition: Condition,
    exe: &std::path::Path,
    bulk: bool,
) -> anyhow::Result<ScenarioReport> {
    let options = spawn_options(args, exe, bulk);
    let mut spawned = if args.spawn {
        let spawned = Spawned::start(&options).await?;
        if args.keep_data {
            eprintln!("data and server logs in {}", spawned.dir().display());
        }
        Some(spawned)
    } else {
        None
    };
    let targets = Targets {
        seller: spawned.as_ref().map(|s| s.seller_addrs()).unwrap_or(args.seller_server.clone()),
        buyer: spawned.as_ref().map(|s| s.buyer_addrs()).unwrap_or(args.buyer_server.clone()),
        timeout: args.timeout,
    };
    let groups = &args.fail_group;
    let failing =
        spawned.as_mut().map(|spawned| Failing { spawned, options: &options, condition, groups });
    let measured = measure(args, shape, &targets, failing, bulk).await;
    match (spawned, measured) {
        (Some(spawned), Ok((mut report, window))) => {
            report.servers = spawned.stop(&window).await;
            Ok(report)
        }
        (Some(spawned), Err(e)) => {
            let dir: PathBuf = spawned.dir().to_owned();
            spawned.stop(&Window::default()).await;
            Err(e.context(format!(
                "scenario {} failed (server logs were in {}; --keep-data keeps them)",
                shape.name,
                dir.display()
            )))
        }
        (None, measured) => measured.map(|(report, ..)| report),
    }
    .map(|mut report| {
        report.condition = condition;
        report.frontends = if args.spawn { args.frontends } else { 1 };
        report.replicas = if args.spawn { args.replicas } else { 1 };
        report
    })
}

/// The spawned servers, and what to do to them in each run.
struct Failing<'a> {
    spawned: &'a mut Spawned,
    options: &'a SpawnOptions,
    condition: Condition,
    groups: &'a [String],
}

impl Failing<'_> {
    /// The servers the condition kills.
    async fn victims(&self) -> anyhow::Result<Vec<String>> {
        let mut victims = Vec::new();
        match self.condition {
            Condition::None => {}
            // The first of each kind: users 0, N, 2N ... start on it.
            Condition::Frontend => {
                for command in ["seller-server", "buyer-server"] {
                    victims.extend(self.spawned.names_of(command).into_iter().next());
                }
            }
            Condition::Leader | Condition::Follower => {
                for group in self.groups {
                    let leader = self.spawned.leader_of(group).await?;
                    let victim = if self.condition == Condition::Leader {
                        Some(leader)
                    } else {
                        // The last replica that does not lead.
                        self.spawned.names_of(group).into_iter().rev().find(|n| *n != leader)
                    };
                    victims.extend(victim);
                }
            }
            // Every replica, one at a time; the leader last, as an operator would.
            Condition::Restart => {
                for group in self.groups {
                    let leader = self.spawned.leader_of(group).await?;
                    let mut replicas = self.spawned.names_of(group);
                    replicas.retain(|n| *n != leader);
                    replicas.push(leader);
                    victims.extend(replicas);
                }
            }
        }
        Ok(victims)
    }

    /// Who leads the groups a victim belonged to now, where a leader was killed.
    async fn took_over(&self) -> Option<String> {
        if !matches!(self.condition, Condition::Leader | Condition::Restart) {
            return None;
        }
        let mut leaders = Vec::new();
        for group in self.groups {
            leaders.push(
                self.spawned.leader_of(group).await.unwrap_or_else(|e| format!("{group}: {e}")),
            );
        }
        Some(leaders.join(", "))
    }
}

/// Runs one timed run of `calls` calls per user; under a failure condition, kills its
/// victims once `fail_at` of the run's calls are done, and starts them again after the run.
async fn run_once(
    args: &BenchArgs,
    users: Vec<workload::User>,
    mix: &Arc<mix::Mix>,
    bar: &indicatif::ProgressBar,
    failing: &mut Option<Failing<'_>>,
) -> anyhow::Result<(Vec<workload::User>, driver::Phase, Option<Kill>)> {
    let victims = match failing.as_ref() {
        Some(failing) => failing.victims().await?,
        None => Vec::new(),
    };
    let (Some(failing), false) = (failing.as_mut(), victims.is_empty()) else {
        let (users, measured) =
            phase(users, mix, Work::Mix, args.calls, args.rate, bar, None).await?;
        return Ok((users, measured, None));
    };
    let total = args.calls * users.len() as u64;
    let bell = Arc::new(tokio::sync::Notify::new());
    let trigger = Trigger { after: ((total as f64 * args.fail_at).ceil() as u64).max(1), bell };
    let ring = trigger.bell.clone();
    let run = phase(users, mix, Work::Mix, args.calls, args.rate, bar, Some(trigger));
    tokio::pin!(run);
    let mut killed_at: Option<Instant> = None;
    let mut pids = Vec::with_capacity(victims.len());
    let (users, measured) = loop {
        tokio::select! {
            done = &mut run => break done?,
            _ = ring.notified(), if killed_at.is_none() => {
                killed_at = Some(Instant::now());
                for victim in &victims {
                    if failing.condition == Condition::Restart {
                        // The users go on meanwhile: each runs on a task of its own.
                        pids.push(failing.spawned.stop_one(victim).await?);
                        failing.spawned.restart(failing.options, victim).await?;
                        failing.spawned.caught_up(victim).await?;
                    } else {
                        pids.push(failing.spawned.kill(victim).await?);
                    }
                }
            }
        }
    };
    let Some(killed_at) = killed_at else {
        return Ok((users, measured, None));
    };
    let restarted = failing.condition == Condition::Restart;
    let gone = restarted || victims.iter().all(|v| !failing.spawned.is_running(v));
    let took_over = failing.took_over().await;
    for victim in victims.iter().filter(|_| !restarted) {
        failing.spawned.restart(failing.options, victim).await?;
    }
    let kill = Kill {
        condition: failing.condition,
        killed: victims,
        pids,
        at: killed_at.saturating_duration_since(measured.started),
        gone,
        took_over,
    };
    Ok((users, measured, Some(kill)))
}

/// Set-up, runs and floor; returns the report and what the spawned servers used before and
/// during the runs.
async fn measure(
    args: &BenchArgs,
    shape: &Shape,
    targets: &Targets,
    mut failing: Option<Failing<'_>>,
    bulk: bool,
) -> anyhow::Result<(ScenarioReport, Window)> {
    let bar = driver::bar(args.quiet, format!("scenario {} set-up", shape.name));
    if bulk {
        let owner = setup::catalogue_owner(targets).await?;
        if owner != 1 {
            eprintln!(
                "note: the bulk-loaded catalogue belongs to seller 1, but its owner got id {owner}"
            );
        }
    }
    let plan = Plan {
        sellers: shape.sellers,
        buyers: shape.buyers,
        items_per_seller: args.items_per_seller,
        catalogue_via_api: if bulk { 0 } else { args.catalogue },
        categories: args.categories,
        // A bulk-loaded catalogue spreads over categories 0 to 99.
        browse_categories: if bulk { args.categories.max(100) } else { args.categories },
        seed: args.seed,
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{prefix:>18} {wide_bar} {pos:>7}/{len:7} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let world = setup::setup(targets, &plan, &bar).await?;
    bar.finish_and_clear();
    let catalogue_sample = world.catalogue.items.len();
    let mut users = world.users;
    let mix = Arc::new(args.mix.clone());

    if args.warmup > 0 {
        let bar = driver::bar(args.quiet, format!("scenario {} warm-up", shape.name));
        users = phase(users, &mix, Work::Mix, args.warmup, args.rate, &bar, None).await?.0;
        bar.finish_and_clear();
    }

    let mut window = Window::default();
    if let Some(failing) = &failing {
        window.setup_peak_kib = failing.spawned.reset_peaks();
        window.cpu_before = failing.spawned.cpu_seconds();
    }
    let bench_cpu_before = spawn::own_cpu_seconds().unwrap_or(0.0);
    let machine_cpu_before = spawn::machine_cpu_seconds().unwrap_or((0.0, 0.0));
    let mut slots: Vec<Accum> = (0..SLOTS).map(|_| Accum::new()).collect();
    let mut total = Accum::new();
    let mut runs = Vec::with_capacity(args.runs as usize);
    for run in 1..=args.runs {
        let bar =
            driver::bar(args.quiet, format!("scenario {} run {run}/{}", shape.name, args.runs));
        let (back, measured, kill) = run_once(args, users, &mix, &bar, &mut failing).await?;
        bar.finish_and_clear();
        users = back;
        let mut all = Accum::new();
        for (slot, accum) in measured.slots.iter().enumerate().take(Api::ALL.len()) {
            all.merge(accum);
            slots[slot].absorb_run(accum, measured.duration);
        }
        total.absorb_run(&all, measured.duration);
        let mut r = RunStats::new(run, &all, measured.duration);
        r.longest_gap_ms = measured.timeline.longest_gap_ms;
        r.failure = kill.map(|kill| {
            let samples: Vec<&workload::Sample> = measured.samples.iter().collect();
            timeline::failure(kill, &measured.timeline, &samples, measured.started)
        });
        r.timeline = measured.timeline.buckets;
        if !args.quiet {
            eprintln!(
                "scenario {} run {run}/{}: {} calls in {:.2} s, {} calls/s, avg {} µs, p99 {} µs, {} errors",
                shape.name,
                args.runs,
                r.calls,
                r.duration_s,
                report::thousands(r.throughput_ops_per_s),
                report::thousands(r.avg_response_us),
                report::thousands(r.p99_response_us),
                r.errors
            );
        }
        runs.push(r);
    }
    window.cpu_after = failing.as_ref().map(|f| f.spawned.cpu_seconds()).unwrap_or_default();
    let bench_cpu_s = spawn::own_cpu_seconds().unwrap_or(0.0) - bench_cpu_before;
    let machine_cpu_after = spawn::machine_cpu_seconds().unwrap_or((0.0, 0.0));
    let irq_cpu_s = machine_cpu_after.1 - machine_cpu_before.1;
    let machine_cpu_s = machine_cpu_after.0 - machine_cpu_before.0 + irq_cpu_s;
    let servers_cpu_s: f64 =
        window.cpu_after.iter().zip(&window.cpu_before).map(|(after, before)| after - before).sum();

    let floor = if floor_calls(args) > 0 {
        let mut floor = Vec::with_capacity(2);
        for (deep, slot, what) in [(true, FLOOR_DEEP, "ping_deep"), (false, FLOOR_SHALLOW, "ping")]
        {
            let bar = driver::bar(args.quiet, format!("scenario {} {what}", shape.name));
            let (back, measured) =
                phase(users, &mix, Work::Ping { deep }, floor_calls(args), None, &bar, None)
                    .await?;
            bar.finish_and_clear();
            users = back;
            let mut accum = Accum::new();
            accum.absorb_run(&measured.slots[slot], measured.duration);
            floor.push(accum.stats(None));
        }
        let ping = floor.pop();
        let ping_deep = floor.pop();
        ping_deep.zip(ping).map(|(ping_deep, ping)| Floor { ping_deep, ping })
    } else {
        None
    };
    drop(users);

    let apis: BTreeMap<String, Stats> = Api::ALL
        .iter()
        .filter(|api| slots[api.index()].calls() > 0)
        .map(|api| (api.report_name().to_owned(), slots[api.index()].stats(None)))
        .collect();
    let report = ScenarioReport {
        scenario: shape.clone(),
        condition: Condition::None,
        frontends: 1,
        replicas: 1,
        catalogue_sample,
        runs,
        total: total.stats(None),
        apis,
        floor,
        servers: Vec::new(),
        bench_cpu_s: round2(bench_cpu_s),
        machine_cpu_s: round2(machine_cpu_s),
        irq_cpu_s: round2(irq_cpu_s),
        other_cpu_s: round2((machine_cpu_s - irq_cpu_s - bench_cpu_s - servers_cpu_s).max(0.0)),
        bench_peak_rss_kib: spawn::own_peak_rss_kib().unwrap_or(0),
    };
    Ok((report, window))
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::server_env;

    #[test]
    fn the_report_names_only_the_servers_settings() {
        let vars = [("AGORA_SPIN", "200us"), ("PATH", "/bin"), ("AGORA_THREADS", "2")]
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()));
        let env = server_env(vars);
        assert_eq!(
            env.into_iter().collect::<Vec<_>>(),
            vec![("AGORA_SPIN".into(), "200us".into()), ("AGORA_THREADS".into(), "2".into())]
        );
    }
}
