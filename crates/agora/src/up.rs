//! `agora up`: the whole marketplace on one machine, each component its own process.
//!
//! Starts the databases and payments, learns their real addresses from their `listening on` line,
//! starts the frontends pointed at them (their HTTP APIs announce themselves on the line
//! after, `http listening on`), prints where everything is, and forwards each
//! child's log lines prefixed with its name. Ctrl-C or SIGTERM stops the frontends, then
//! the databases, by closing their standard input (so they also stop if `agora up` itself
//! is killed). The children run in their own process group, so a Ctrl-C at the terminal
//! reaches `agora up` alone and that order holds. A component that dies is started again
//! on the same addresses, after a back-off that grows while it keeps dying
//! (`--restart`); one left down stops the rest, unless it is a replica, whose group goes
//! on without it. If one fails to start, its own words say why.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

/// `agora up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Directory for the databases' files (created if missing).
    #[arg(long, env = "AGORA_DATA_DIR", default_value = "agora-data")]
    pub data_dir: PathBuf,
    /// Move every port at once: customer-db N+1, product-db N+2, seller-server N+3,
    /// buyer-server N+4, payments N+5, and the HTTP APIs of the seller and buyer servers
    /// N+1003 and N+1004. 0 puts every server on a free port. A --*-listen flag still
    /// moves its one server. Keep the ports below 32768: Linux gives 32768-60999 to
    /// outgoing connections, which may hold one when a server wants it (warned about).
    #[arg(
        long,
        env = "AGORA_PORT_BASE",
        value_name = "N",
        default_value_t = DEFAULT_PORT_BASE,
        value_parser = parse_port_base,
        allow_hyphen_values = true
    )]
    pub port_base: u16,
    /// Customer database listen address. [default: 127.0.0.1:N+1]
    #[arg(long, env = "AGORA_CUSTOMER_DB_LISTEN")]
    pub customer_db_listen: Option<String>,
    /// Product database listen address. [default: 127.0.0.1:N+2]
    #[arg(long, env = "AGORA_PRODUCT_DB_LISTEN")]
    pub product_db_listen: Option<String>,
    /// Payments service listen address. [default: 127.0.0.1:N+5]
    #[arg(long, env = "AGORA_PAYMENTS_LISTEN")]
    pub payments_listen: Option<String>,
    /// Chance (0 to 1) that payments approves a valid card.
    #[arg(long, env = "AGORA_APPROVE_PROBABILITY", default_value = "0.9")]
    pub approve_probability: String,
    /// Seller server listen address. [default: 127.0.0.1:N+3]
    #[arg(long, env = "AGORA_SELLER_LISTEN")]
    pub seller_listen: Option<String>,
    /// Buyer server listen address. [default: 127.0.0.1:N+4]
    #[arg(long, env = "AGORA_BUYER_LISTEN")]
    pub buyer_listen: Option<String>,
    /// Seller server HTTP/JSON API address, or `off`. [default: 127.0.0.1:N+1003]
    #[arg(long, env = "AGORA_SELLER_HTTP_LISTEN")]
    pub seller_http_listen: Option<String>,
    /// Buyer server HTTP/JSON API address, or `off`. [default: 127.0.0.1:N+1004]
    #[arg(long, env = "AGORA_BUYER_HTTP_LISTEN")]
    pub buyer_http_listen: Option<String>,
    /// A session ends after this long without activity (e.g. 300s, 5m).
    #[arg(long, env = "AGORA_SESSION_TIMEOUT", default_value = "5m")]
    pub session_timeout: String,
    /// What the components log (error, warn, info, debug, trace).
    #[arg(long, env = "AGORA_LOG", default_value = "info")]
    pub log: String,
    /// What an acknowledged write survives: `process` (kill -9 of a database; the
    /// default) or `machine` (also a power loss: every commit batch is fsynced).
    #[arg(long, env = "AGORA_DURABILITY", default_value = "process")]
    pub durability: String,
    /// Seller servers, and buyer servers, to run: with more than one, `seller-server-1`
    /// takes the usual ports and server K listens 10 × (K − 1) ports above them (free
    /// ports with --port-base 0). Clients given all their addresses move to the next when
    /// one dies.
    #[arg(long, env = "AGORA_FRONTENDS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub frontends: u16,
    /// Replicas of each database and of payments (1, 3 or 5 make sense: a group survives
    /// the loss of any minority). With more than one, replica K of each is its own
    /// process, with its own data directory (DATA_DIR/<name>-K) and 10 × (K − 1) ports
    /// above the usual one (free ports with --port-base 0); the replicas of each keep one
    /// log in agreement (crates/replication/DESIGN.md). On the data of a marketplace run
    /// without replicas, every replica is first seeded with a copy of it (the originals
    /// go to DATA_DIR/before-replicas/); on groups of another size, agora up refuses.
    #[arg(long, env = "AGORA_REPLICAS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=9))]
    pub replicas: u16,
    /// What to do when a server dies: `on-failure` starts it again (after 0.1 s, doubling
    /// while it keeps dying within 10 s of its start; after five such deaths in a row it
    /// is left down), as systemd's Restart=on-failure does; `never` leaves it down (a
    /// replica's group goes on without it; any other server's death stops the rest). A
    /// server that stops cleanly (exit status 0, as after SIGTERM) is never restarted.
    #[arg(long, env = "AGORA_RESTART", value_enum, default_value_t = Restart::OnFailure)]
    pub restart: Restart,
    /// A file naming the categories (one a line: the number, then the name), given to
    /// every frontend; `agora seller-server --help` says more. [default: ten names, 0
    /// Other to 9 Art and collectibles]
    #[arg(long, env = "AGORA_CATEGORIES", value_name = "FILE")]
    pub categories: Option<PathBuf>,
}

/// `--restart`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Restart {
    /// Start a server that died again, with a growing back-off.
    OnFailure,
    /// Leave it down.
    Never,
}

/// The first wait before a restart; each death within [`QUICK_DEATH`] of its start
/// doubles it.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// A server that dies sooner than this after it started is dying again and again.
const QUICK_DEATH: Duration = Duration::from_secs(10);

/// Quick deaths in a row after which a server is left down.
const MOST_QUICK_DEATHS: u32 = 5;

/// How long to wait before restarting a server after its `deaths`-th quick death in a
/// row: 0.1 s, 0.2 s, 0.4 s, ...; `None` once it has died too often to go on.
fn backoff(deaths: u32) -> Option<Duration> {
    if deaths == 0 || deaths > MOST_QUICK_DEATHS {
        return None;
    }
    Some(FIRST_BACKOFF * 2u32.pow(deaths - 1))
}

/// A child's end, as its watcher reports it.
struct Exit {
    name: String,
    /// How it ended, for the log (`signal: 9 (SIGKILL)`).
    status: String,
    /// Whether it failed (a non-zero status or a signal), rather than stopped cleanly.
    failed: bool,
}

/// The port base of the contract's addresses: 7401 to 7405, and 8403 and 8404.
pub const DEFAULT_PORT_BASE: u16 = 7400;

/// The highest port base: its last port, N+1004, must still be a port.
const MAX_PORT_BASE: u16 = u16::MAX - 1004;

fn parse_port_base(text: &str) -> Result<u16, String> {
    let rule = || {
        format!(
            "the port base is a whole number from 0 to {MAX_PORT_BASE} (ports N+1 to N+1004 \
             are used; 0 picks free ports)"
        )
    };
    let base: u16 = text.trim().parse().map_err(|_| rule())?;
    if base > MAX_PORT_BASE {
        return Err(rule());
    }
    Ok(base)
}

/// A warning when the ports `--port-base` gives reach into the range the kernel takes
/// outgoing connections' ports from: any client may hold one of them, and a server then
/// cannot listen there.
fn ephemeral_warning(args: &UpArgs) -> Option<String> {
    if args.port_base == 0 {
        return None;
    }
    let base = u32::from(args.port_base);
    let spread = 10 * (u32::from(args.replicas.max(args.frontends).max(1)) - 1);
    let first = u16::try_from(base + 1).ok()?;
    let last = u16::try_from(base + 1004 + spread).unwrap_or(u16::MAX);
    let range = crate::ports::ephemeral_range();
    crate::ports::overlaps(first, last, &range).then(|| {
        format!(
            "--port-base {} puts servers on ports {first}-{last}, inside {}-{}, where the kernel \
             picks the ports of outgoing connections: a client's connection may hold one when \
             a server wants it. A base below {} avoids that",
            args.port_base,
            range.start(),
            range.end(),
            range.start().saturating_sub(1005).saturating_sub(spread as u16)
        )
    })
}

/// Where each component listens: the flag if given, else its port above the port base.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Addresses {
    customer_db: String,
    product_db: String,
    seller: String,
    buyer: String,
    payments: String,
    seller_http: String,
    buyer_http: String,
}

impl UpArgs {
    fn addresses(&self) -> Addresses {
        let base = self.port_base;
        let pick = |given: &Option<String>, offset: u16| match given {
            Some(addr) => addr.clone(),
            // Port base 0 asks for free ports, not for ports 1 to 1004.
            None if base == 0 => "127.0.0.1:0".to_owned(),
            None => format!("127.0.0.1:{}", base + offset),
        };
        Addresses {
            customer_db: pick(&self.customer_db_listen, 1),
            product_db: pick(&self.product_db_listen, 2),
            seller: pick(&self.seller_listen, 3),
            buyer: pick(&self.buyer_listen, 4),
            payments: pick(&self.payments_listen, 5),
            seller_http: pick(&self.seller_http_listen, 1003),
            buyer_http: pick(&self.buyer_http_listen, 1004),
        }
    }
}

impl UpArgs {
    /// Where frontend `k` (1-based) of a kind listens, given where the first does: 10 × (k
    /// − 1) ports higher, or a free port when the first's is 0.
    fn frontend_address(&self, first: &str, k: u16) -> String {
        if k <= 1 {
            return first.to_owned();
        }
        match first.rsplit_once(':').map(|(host, port)| (host, port.parse::<u32>())) {
            Some((host, Ok(0))) | Some((host, Err(_))) => format!("{host}:0"),
            Some((host, Ok(port))) => match u16::try_from(port + 10 * u32::from(k - 1)) {
                Ok(port) => format!("{host}:{port}"),
                Err(_) => format!("{host}:0"),
            },
            None => first.to_owned(),
        }
    }
}

/// How `agora up` starts the databases and payments: alone, as today, or as groups of
/// replicas.
struct Databases<'a> {
    exe: &'a std::path::Path,
    replicas: u16,
    data_dir: &'a std::path::Path,
    credentials: &'a str,
    exited: &'a mpsc::Sender<Exit>,
}

impl Databases<'_> {
    /// Starts `agora <command>` with `flags`: one process listening on `first` over the
    /// shared data directory, or `replicas` processes, each its own replica of the group.
    async fn start(
        &self,
        command: &'static str,
        first: &str,
        flags: &[&str],
    ) -> anyhow::Result<Vec<Component>> {
        if self.replicas <= 1 {
            let data_dir = self.data_dir.display().to_string();
            let own = ["--listen", first, "--data-dir", &data_dir];
            let args = [&own[..], flags].concat();
            return Ok(vec![start(self.exe, command, command, &args, self.exited).await?]);
        }
        // Every replica is told every member's address before any starts.
        let mut peers = std::collections::BTreeMap::new();
        for k in 1..=self.replicas {
            peers.insert(u64::from(k), replica_address(first, k)?);
        }
        let mut started = Vec::new();
        for (k, addr) in &peers {
            let name = format!("{command}-{k}");
            let data_dir = self.data_dir.join(&name);
            let own = agora_replication::replica_flags(
                *k,
                &peers,
                &data_dir,
                std::path::Path::new(self.credentials),
            );
            let own: Vec<&str> = own.iter().map(String::as_str).collect();
            let args = [&["--listen", addr.as_str()][..], &own, flags].concat();
            started.push(start(self.exe, command, &name, &args, self.exited).await?);
        }
        Ok(started)
    }
}

/// Where replica `k` (1-based) of a group listens, given where the first would: ten ports
/// higher per replica before it, or, for port 0, a port free now (its peers must know it
/// before it starts).
fn replica_address(first: &str, k: u16) -> anyhow::Result<String> {
    let (host, port) =
        first.rsplit_once(':').with_context(|| format!("{first:?} is not HOST:PORT"))?;
    let port: u16 = port.parse().with_context(|| format!("{first:?} is not HOST:PORT"))?;
    if port == 0 {
        let port = agora_proto::ports::free_port(host)
            .with_context(|| format!("cannot find a free port on {host}"))?;
        return Ok(format!("{host}:{port}"));
    }
    let port = u32::from(port) + 10 * u32::from(k - 1);
    let port = u16::try_from(port)
        .with_context(|| format!("replica {k} of {first} would need port {port}"))?;
    Ok(format!("{host}:{port}"))
}

/// Whether `name` is one replica of a replicated group (`product-db-2`), whose death its
/// group survives, rather than a component the marketplace cannot do without.
fn is_replica(name: &str) -> bool {
    ["customer-db-", "product-db-", "payments-"]
        .iter()
        .any(|group| name.strip_prefix(group).is_some_and(|k| k.parse::<u16>().is_ok()))
}

/// The addresses of `components`, comma-separated: what a client of their group is given.
fn addrs(components: &[Component]) -> String {
    components.iter().map(|c| c.addr.as_str()).collect::<Vec<_>>().join(",")
}

/// A running child: its name, the pipe whose closing stops it, and where it listens.
struct Component {
    name: String,
    stdin: Option<ChildStdin>,
    addr: String,
    /// Where its HTTP API listens, for a frontend that has one.
    http: Option<String>,
    /// How to start it again: its subcommand and flags, on the addresses it listens on now
    /// (a port 0 asked for the first time is the port it got).
    command: &'static str,
    args: Vec<String>,
    /// When it last started, and how many times in a row it died soon after a start.
    since: tokio::time::Instant,
    quick_deaths: u32,
}

pub fn run(args: UpArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(up(args))
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find the agora executable")?;
    let stop = stop_signal()?;
    agora_store::private_dir(&args.data_dir)
        .with_context(|| format!("cannot create data directory {}", args.data_dir.display()))?;
    let data_dir = args.data_dir.display().to_string();
    if let Some(warning) = ephemeral_warning(&args) {
        eprintln!("agora: {warning}");
    }
    // A bad categories file is refused before anything starts, once rather than per frontend.
    if let Some(path) = &args.categories {
        crate::servers::read_categories(path)?;
    }
    // Never an empty marketplace beside one it would not use: seed or refuse first.
    if let Some(said) = crate::layout::prepare(&args.data_dir, args.replicas.max(1))? {
        eprintln!("agora: {said}");
    }
    // Zero configuration: the cluster's credentials live with its data, made on first use.
    let credentials = args.data_dir.join("credentials");
    agora_proto::trust::create(&credentials)?;
    // Each replica its own certificate, also for credentials made before replicas had them.
    agora_proto::trust::issue_replicas(&credentials, u64::from(args.replicas.max(1)))?;
    let credentials = credentials.display().to_string();
    let listen = args.addresses();
    let (exited_tx, mut exited) = mpsc::channel::<Exit>(8);

    let mut started: Vec<Component> = Vec::new();
    let result = async {
        let databases = Databases {
            exe: &exe,
            replicas: args.replicas.max(1),
            data_dir: &args.data_dir,
            credentials: &credentials,
            exited: &exited_tx,
        };
        let common = ["--durability", args.durability.as_str(), "--log", args.log.as_str()];
        let product = databases.start("product-db", &listen.product_db, &common).await?;
        let product_addr = addrs(&product);
        started.extend(product);
        let payments_flags = [&common[..], &["--approve-probability", &args.approve_probability]];
        let payments =
            databases.start("payments", &listen.payments, &payments_flags.concat()).await?;
        let payments_addr = addrs(&payments);
        started.extend(payments);
        // The customer database coordinates purchases, so it needs the other two.
        let customer_flags = [
            &common[..],
            &["--session-timeout", &args.session_timeout],
            &["--product-db", &product_addr, "--payments", &payments_addr],
        ];
        let customer =
            databases.start("customer-db", &listen.customer_db, &customer_flags.concat()).await?;
        let customer_addr = addrs(&customer);
        started.extend(customer);
        let frontends = args.frontends.max(1);
        let kinds = [
            ("seller-server", &listen.seller, &listen.seller_http),
            ("buyer-server", &listen.buyer, &listen.buyer_http),
        ];
        for (command, first, first_http) in kinds {
            for k in 1..=frontends {
                let name =
                    if frontends == 1 { command.to_owned() } else { format!("{command}-{k}") };
                let listen = args.frontend_address(first, k);
                let http = if crate::servers::http_off(first_http) {
                    "off".to_owned()
                } else {
                    args.frontend_address(first_http, k)
                };
                let categories = args.categories.as_ref().map(|p| p.display().to_string());
                let mut flags = vec![
                    "--listen",
                    &listen,
                    "--http-listen",
                    &http,
                    "--customer-db",
                    &customer_addr,
                    "--product-db",
                    &product_addr,
                    "--credentials",
                    &credentials,
                    "--log",
                    &args.log,
                ];
                if let Some(file) = &categories {
                    flags.extend(["--categories", file.as_str()]);
                }
                let frontend = start(&exe, command, &name, &flags, &exited_tx).await?;
                started.push(frontend);
            }
        }
        anyhow::Ok(())
    }
    .await;

    // Children that died on their own: replicas, whose groups go on without them, or the
    // component whose death stops the rest.
    let mut gone: Vec<String> = Vec::new();
    let outcome = match result {
        Err(e) => Err(e),
        Ok(()) => {
            let leaders = if args.replicas > 1 {
                map_the_groups(&started, &args.data_dir).await?
            } else {
                Vec::new()
            };
            print_banner(&started, &data_dir, &leaders);
            let mut stop = std::pin::pin!(stop);
            // Servers being started again: each task waits out its back-off, then starts it.
            let mut restarts: tokio::task::JoinSet<(usize, anyhow::Result<Component>)> =
                tokio::task::JoinSet::new();
            let outcome = loop {
                tokio::select! {
                    _ = &mut stop => {
                        eprintln!("agora: stopping");
                        break Ok(());
                    }
                    Some(exit) = exited.recv() => {
                        let Some(at) = started.iter().position(|c| c.name == exit.name) else {
                            continue;
                        };
                        // Gone: not waited for again below, unless it is started again.
                        gone.push(exit.name.clone());
                        let component = &mut started[at];
                        component.stdin = None;
                        if exit.failed && args.restart == Restart::OnFailure {
                            let quick = component.since.elapsed() < QUICK_DEATH;
                            component.quick_deaths =
                                if quick { component.quick_deaths + 1 } else { 1 };
                            if let Some(wait) = backoff(component.quick_deaths) {
                                eprintln!(
                                    "agora: {} exited ({}); starting it again in {} (restart \
                                     {} in a row; --restart never leaves it down)",
                                    exit.name,
                                    exit.status,
                                    humantime::format_duration(wait),
                                    component.quick_deaths
                                );
                                restarts.spawn(restart(&exe, component, at, wait, &exited_tx));
                                continue;
                            }
                        }
                        if let Err(e) = left_down(&exit.name, &exit.status, component.quick_deaths)
                        {
                            break Err(e);
                        }
                    }
                    Some(done) = restarts.join_next() => {
                        let Ok((at, result)) = done else { continue };
                        let component = &mut started[at];
                        match result {
                            Ok(mut again) => {
                                eprintln!("agora: {} is running again, on {}", again.name, again.addr);
                                gone.retain(|name| *name != again.name);
                                again.quick_deaths = component.quick_deaths;
                                *component = again;
                            }
                            Err(e) => {
                                // A start that fails is one more quick death.
                                component.quick_deaths += 1;
                                let name = component.name.clone();
                                match backoff(component.quick_deaths) {
                                    Some(wait) => {
                                        eprintln!(
                                            "agora: {e:#}; trying again in {}",
                                            humantime::format_duration(wait)
                                        );
                                        restarts
                                            .spawn(restart(&exe, component, at, wait, &exited_tx));
                                    }
                                    None => {
                                        let status = format!("{e:#}");
                                        if let Err(e) =
                                            left_down(&name, &status, component.quick_deaths)
                                        {
                                            break Err(e);
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            };
            // A server half started again is stopped with the task (its child is killed
            // on drop); one already up is stopped below with the rest.
            while let Some(done) = restarts.try_join_next() {
                if let Ok((at, Ok(again))) = done {
                    gone.retain(|name| *name != again.name);
                    started[at] = again;
                }
            }
            restarts.abort_all();
            outcome
        }
    };
    // Frontends first, so no request is cut off by a database going away under it.
    for component in started.iter_mut().rev() {
        component.stdin.take();
        if gone.contains(&component.name) {
            continue;
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), exited.recv()).await;
    }
    outcome
}

/// Starts `component` again after `wait`: the task's answer, with its place in the list.
fn restart(
    exe: &std::path::Path,
    component: &Component,
    at: usize,
    wait: Duration,
    exited: &mpsc::Sender<Exit>,
) -> impl std::future::Future<Output = (usize, anyhow::Result<Component>)> + use<> {
    let (exe, exited) = (exe.to_owned(), exited.clone());
    let (command, name, args) = (component.command, component.name.clone(), component.args.clone());
    async move {
        tokio::time::sleep(wait).await;
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        (at, start(&exe, command, &name, &args, &exited).await)
    }
}

/// What a server that stays down means: a replica's group goes on without it; any other
/// server's death stops the rest (the error).
fn left_down(name: &str, status: &str, quick_deaths: u32) -> anyhow::Result<()> {
    let why = if quick_deaths > MOST_QUICK_DEATHS {
        format!("{name} died {quick_deaths} times in a row soon after starting ({status})")
    } else {
        format!("{name} exited unexpectedly ({status})")
    };
    if !is_replica(name) {
        anyhow::bail!("{why}; stopping the rest");
    }
    eprintln!("agora: {why}; left down, its group goes on while a majority of it runs");
    Ok(())
}

/// Starts `agora <command> <args> --supervised`, known in the log as `name`, and waits
/// for its `listening on` line (and, when `args` turn an HTTP API on, the `http listening
/// on` line after it).
async fn start(
    exe: &std::path::Path,
    command: &'static str,
    name: &str,
    args: &[&str],
    exited: &mpsc::Sender<Exit>,
) -> anyhow::Result<Component> {
    let http = args.windows(2).any(|w| w[0] == "--http-listen" && !crate::servers::http_off(w[1]));
    let mut child: Child = Command::new(exe)
        .arg(command)
        .args(args)
        .arg("--supervised")
        .env("AGORA_LOG_COLOR", if std::io::stderr().is_terminal() { "1" } else { "0" })
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A process group of its own: the terminal's Ctrl-C goes to the foreground group,
        // which is then `agora up` alone, and it stops the children in order.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {name}"))?;
    let stdin = child.stdin.take();
    let stdout = child.stdout.take().context("no stdout pipe")?;
    let stderr = child.stderr.take().context("no stderr pipe")?;
    let stderr = tokio::spawn(forward(name.to_owned(), BufReader::new(stderr).lines()));
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await;
    let addr = match first {
        Ok(Ok(Some(line))) => match listening(name, &line, "listening on ") {
            Some(addr) => addr.trim().to_owned(),
            None => bail!("{name} said {line:?} instead of where it listens"),
        },
        Ok(_) => return Err(failed_to_start(name, args, child, stderr).await),
        Err(_) => bail!("{name} did not start within 30 s"),
    };
    let http = match http {
        false => None,
        true => match tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await {
            Ok(Ok(Some(line))) => match listening(name, &line, "http listening on ") {
                Some(addr) => Some(addr.trim().to_owned()),
                None => bail!("{name} said {line:?} instead of where its HTTP API listens"),
            },
            Ok(_) => return Err(failed_to_start(name, args, child, stderr).await),
            Err(_) => bail!("{name} did not start its HTTP API within 30 s"),
        },
    };
    tokio::spawn(forward(name.to_owned(), lines));
    let exited = exited.clone();
    let (name, component) = (name.to_owned(), name.to_owned());
    tokio::spawn(async move {
        let (status, failed) = match child.wait().await {
            Ok(s) => (s.to_string(), !s.success()),
            Err(e) => (e.to_string(), true),
        };
        let _ = exited.send(Exit { name, status, failed }).await;
    });
    // Started again, it listens where it listens now: its peers and clients know that.
    let mut again: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    for (flag, bound) in [("--listen", Some(&addr)), ("--http-listen", http.as_ref())] {
        if let (Some(at), Some(bound)) = (again.iter().position(|a| a == flag), bound)
            && let Some(value) = again.get_mut(at + 1)
        {
            *value = bound.clone();
        }
    }
    Ok(Component {
        name: component,
        stdin,
        addr,
        http,
        command,
        args: again,
        since: tokio::time::Instant::now(),
        quick_deaths: 0,
    })
}

/// The address in a child's `<prefix>ADDR` line, which also goes to the log as the
/// server's other output does, so that the log says where each server listens.
fn listening<'a>(name: &str, line: &'a str, prefix: &str) -> Option<&'a str> {
    let addr = line.strip_prefix(prefix)?;
    eprintln!("{name:>13} | {line}");
    Some(addr)
}

/// The error for a child that exited before saying where it listens. Waits for its log to
/// be copied first, so that the log is shown, and names the cause from it with the fix.
async fn failed_to_start(
    name: &str,
    args: &[&str],
    mut child: Child,
    stderr: tokio::task::JoinHandle<Vec<String>>,
) -> anyhow::Error {
    let status = child.wait().await.map(|s| s.to_string()).unwrap_or_default();
    // The child has exited, so its stderr ends at once; the deadline only guards against
    // a descendant that kept the pipe open.
    let log = match tokio::time::timeout(Duration::from_secs(5), stderr).await {
        Ok(Ok(log)) => log,
        _ => Vec::new(),
    };
    let cause = startup_cause(&log);
    let addresses: Vec<&str> =
        args.windows(2).filter(|w| w[0].ends_with("listen")).map(|w| w[1]).collect();
    let holder = taken_port(&cause, &addresses).and_then(crate::ports::holder);
    match startup_fix(&cause, &addresses, holder.as_ref()) {
        Some(fix) => anyhow::anyhow!("{name} failed to start ({status}): {cause}\n{fix}"),
        None => anyhow::anyhow!("{name} failed to start ({status}): {cause}"),
    }
}

/// What a child's log says made it fail: its error line (`agora: ...` from a failed
/// start, `error: ...` from a refused flag), else its last line.
fn startup_cause(log: &[String]) -> String {
    let error = log
        .iter()
        .find_map(|line| line.strip_prefix("agora: ").or_else(|| line.strip_prefix("error: ")));
    match error.or_else(|| log.last().map(String::as_str)) {
        Some(cause) => cause.trim().to_owned(),
        None => "it printed nothing".to_owned(),
    }
}

/// Whether `cause` says an address was in use.
fn in_use(cause: &str) -> bool {
    let lower = cause.to_ascii_lowercase();
    lower.contains("address already in use") || lower.contains("address in use")
}

/// The port a child could not listen on because it is taken, from its cause and the
/// `addresses` it was asked to listen on.
fn taken_port(cause: &str, addresses: &[&str]) -> Option<u16> {
    if !in_use(cause) {
        return None;
    }
    addresses
        .iter()
        .find(|addr| cause.contains(*addr))
        .and_then(|addr| addr.rsplit_once(':'))
        .and_then(|(_, port)| port.parse().ok())
}

/// The fix for a cause `agora up` recognises; `addresses` are the ones the child was asked
/// to listen on, `holder` what holds the port it could not have, when that is known.
fn startup_fix(
    cause: &str,
    addresses: &[&str],
    holder: Option<&crate::ports::Holder>,
) -> Option<String> {
    let lower = cause.to_ascii_lowercase();
    if in_use(cause) {
        let elsewhere = "--port-base 17400: ports 17401-17405, 18403 and 18404";
        let Some(port) = taken_port(cause, addresses) else {
            return Some(format!(
                "another program is running on that port; stop it or use --port-base \
                 ({elsewhere})"
            ));
        };
        let range = crate::ports::ephemeral_range();
        return Some(match holder {
            Some(holder @ crate::ports::Holder::Connection { .. }) => format!(
                "{}, not by another agora: ports {}-{} are where the kernel picks outgoing \
                 connections' ports (/proc/sys/net/ipv4/ip_local_port_range), so any client \
                 may hold one for a while. Choose a --port-base whose ports stay outside them \
                 ({elsewhere})",
                holder.describe(port),
                range.start(),
                range.end()
            ),
            Some(holder) => format!(
                "{}; stop it (another agora?) or use --port-base ({elsewhere})",
                holder.describe(port)
            ),
            None => format!(
                "another agora (or another program) is running on {port}; stop it or use \
                 --port-base ({elsewhere})"
            ),
        });
    }
    if lower.contains("permission denied") || lower.contains("read-only") {
        return Some(
            "the data directory must be readable and writable by you: fix its permissions, \
             or choose another with --data-dir"
                .to_owned(),
        );
    }
    None
}

/// Copies a child's output lines to our stderr, prefixed with its name; returns the last
/// few, from which a failed start is explained.
async fn forward<R: tokio::io::AsyncBufRead + Unpin>(
    name: String,
    mut lines: tokio::io::Lines<R>,
) -> Vec<String> {
    const KEPT: usize = 20;
    let mut last = Vec::new();
    while let Ok(Some(line)) = lines.next_line().await {
        eprintln!("{name:>13} | {line}");
        if last.len() == KEPT {
            last.remove(0);
        }
        last.push(line);
    }
    last
}

/// Writes the cluster map (`agora cluster status` reads it) and waits, as `agora cluster`
/// does, for each group to elect its leader; returns each group's leader, by name.
async fn map_the_groups(
    started: &[Component],
    data_dir: &std::path::Path,
) -> anyhow::Result<Vec<(String, String)>> {
    use crate::cluster::{ClusterMap, Replica};
    let mut map = ClusterMap::default();
    for component in started.iter().filter(|c| is_replica(&c.name)) {
        let Some((group, _)) = component.name.rsplit_once('-') else { continue };
        let replica = Replica { name: component.name.clone(), addr: component.addr.clone() };
        map.groups.entry(group.to_owned()).or_default().push(replica);
    }
    map.write(data_dir)?;
    let trust =
        agora_proto::Trust::load(&data_dir.join("credentials"), agora_proto::Component::Admin)?;
    let mut leaders = Vec::new();
    for (group, replicas) in &map.groups {
        let Some(component) = agora_proto::Component::from_name(group) else { continue };
        let leader = match crate::cluster::leader_of(component, &map, &trust).await {
            Ok(addr) => replicas.iter().find(|r| r.addr == addr).map(|r| r.name.clone()),
            Err(_) => None,
        };
        leaders.push((group.clone(), leader.unwrap_or_else(|| "not elected yet".to_owned())));
    }
    Ok(leaders)
}

fn print_banner(started: &[Component], data_dir: &str, leaders: &[(String, String)]) {
    // Every server of a kind (`seller-server`, or `seller-server-1` and on).
    let of_kind = |kind: &'static str| {
        started.iter().filter(move |c| c.name == kind || c.name.starts_with(&format!("{kind}-")))
    };
    let addrs =
        |kind: &'static str| of_kind(kind).map(|c| c.addr.as_str()).collect::<Vec<_>>().join(",");
    println!("Agora is up. Data in {data_dir}/");
    for c in started {
        match &c.http {
            Some(http) => println!("  {:<16} {:<21} http://{http}", c.name, c.addr),
            None => println!("  {:<16} {}", c.name, c.addr),
        }
    }
    let groups = started.iter().filter(|c| c.name.starts_with("product-db-")).count();
    if groups > 1 {
        println!(
            "  Each database and payments: a group of {groups} replicas keeping one log; \
             clients and frontends find its leader by themselves."
        );
        let leading: Vec<String> =
            leaders.iter().map(|(group, leader)| format!("{group}: {leader}")).collect();
        println!("  Leaders now: {}. `agora cluster status` shows more.", leading.join(", "));
    }
    println!();
    // The copy-paste lines name the servers only when the clients would not find them.
    let client = |role: &str, kind: &'static str, default: &str| match addrs(kind) {
        addrs if addrs == default => format!("agora {role}"),
        addrs => format!("agora {role} --server {addrs}"),
    };
    let seller = client("seller", "seller-server", agora_cli::DEFAULT_SELLER_SERVER);
    let buyer = client("buyer", "buyer-server", agora_cli::DEFAULT_BUYER_SERVER);
    println!("Sellers:  {seller}   (interactive shell; `help` lists commands)");
    println!("Buyers:   {buyer}");
    println!("Scripts:  {seller} create-account --username ann --password 'long enough'");
    println!("          {seller} login --username ann    (asks for the password)");
    let http = |kind: &'static str| of_kind(kind).find_map(|c| c.http.clone());
    if let (Some(buyer), Some(seller)) = (http("buyer-server"), http("seller-server")) {
        println!(
            "Browser:  shop at http://{buyer}/  sell at http://{seller}/  (docs/storefront.md)"
        );
    }
    if let Some(buyer) = http("buyer-server") {
        println!(
            "HTTP:     curl --json '{{\"username\":\"cy\",\"password\":\"long enough\"}}' http://{buyer}/v1/buyers"
        );
        println!("          API docs at http://{buyer}/docs and /openapi.json (docs/http.md)");
    }
    if let Some(seller) = http("seller-server") {
        println!("          seller API at http://{seller}/docs");
    }
    println!();
    println!("Ctrl-C stops everything.");
}

/// Ctrl-C and SIGTERM, listened for from the moment this is called: one that arrives
/// while the components start is not lost, and is acted on once they have. A server too
/// listens from before it says where it listens: a signal sent after that line is never
/// met by the default action, which would end it without a clean stop.
pub(crate) fn stop_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for Ctrl-C")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        up: UpArgs,
    }

    fn addresses(line: &[&str]) -> Result<Addresses, clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("up").chain(line.iter().copied()))?;
        Ok(cli.up.addresses())
    }

    #[test]
    fn the_port_base_moves_every_port() {
        let ports = |a: Addresses| {
            [
                a.customer_db,
                a.product_db,
                a.seller,
                a.buyer,
                a.payments,
                a.seller_http,
                a.buyer_http,
            ]
        };
        let contract = [
            "127.0.0.1:7401",
            "127.0.0.1:7402",
            "127.0.0.1:7403",
            "127.0.0.1:7404",
            "127.0.0.1:7405",
            "127.0.0.1:8403",
            "127.0.0.1:8404",
        ];
        assert_eq!(ports(addresses(&[]).expect("defaults")), contract);
        let moved = ports(addresses(&["--port-base", "17400"]).expect("moved"));
        assert_eq!(moved[1], "127.0.0.1:17402");
        assert_eq!(moved[6], "127.0.0.1:18404");
        let free = addresses(&["--port-base", "0", "--buyer-listen", "0.0.0.0:9"]).expect("0");
        assert_eq!(free.customer_db, "127.0.0.1:0");
        assert_eq!(free.buyer_http, "127.0.0.1:0");
        assert_eq!(free.buyer, "0.0.0.0:9", "a flag still moves its one server");
        for bad in ["64532", "-1", "ten"] {
            let err = addresses(&["--port-base", bad]).expect_err(bad).to_string();
            assert!(err.contains("from 0 to 64531"), "{bad}: {err}");
        }
    }

    #[test]
    fn more_frontends_listen_ten_ports_apart_or_on_free_ports() {
        let cli = Cli::try_parse_from(["up", "--frontends", "3"]).expect("parses");
        let args = cli.up;
        assert_eq!(args.frontend_address("127.0.0.1:7403", 1), "127.0.0.1:7403");
        assert_eq!(args.frontend_address("127.0.0.1:7403", 3), "127.0.0.1:7423");
        assert_eq!(args.frontend_address("0.0.0.0:8404", 2), "0.0.0.0:8414");
        assert_eq!(args.frontend_address("127.0.0.1:0", 2), "127.0.0.1:0");
        assert_eq!(args.frontend_address("127.0.0.1:65530", 2), "127.0.0.1:0");
        assert!(Cli::try_parse_from(["up", "--frontends", "0"]).is_err());
    }

    #[test]
    fn the_backoff_doubles_then_gives_up() {
        let waits: Vec<Option<u64>> =
            (1..=6).map(|n| backoff(n).map(|d| d.as_millis() as u64)).collect();
        assert_eq!(waits, [Some(100), Some(200), Some(400), Some(800), Some(1600), None]);
        let cli = Cli::try_parse_from(["up"]).expect("parses");
        assert_eq!(cli.up.restart, Restart::OnFailure);
        let cli = Cli::try_parse_from(["up", "--restart", "never"]).expect("parses");
        assert_eq!(cli.up.restart, Restart::Never);
    }

    #[test]
    fn a_failed_start_names_its_cause_and_fix() {
        let log = [
            "2026-01-01T00:00:00Z  INFO opening product.db".to_owned(),
            "agora: cannot listen on 127.0.0.1:7402: Address already in use (os error 98)"
                .to_owned(),
        ];
        let cause = startup_cause(&log);
        assert!(cause.starts_with("cannot listen on 127.0.0.1:7402"), "{cause}");
        let fix = startup_fix(&cause, &["127.0.0.1:7402"], None).expect("a fix");
        assert!(fix.contains("running on 7402; stop it or use --port-base"), "{fix}");
        let listener = crate::ports::Holder::Listener(Some(crate::ports::Process {
            pid: 42,
            name: "nginx".into(),
        }));
        let fix = startup_fix(&cause, &["127.0.0.1:7402"], Some(&listener)).expect("a fix");
        assert!(
            fix.starts_with(
                "port 7402 is taken by a server listening on it (process 42 nginx); stop it"
            ),
            "{fix}"
        );
        let outgoing = crate::ports::Holder::Connection { state: "established", process: None };
        let fix = startup_fix(&cause, &["127.0.0.1:7402"], Some(&outgoing)).expect("a fix");
        assert!(fix.contains("the local end of a connection (established)"), "{fix}");
        assert!(fix.contains("not by another agora"), "{fix}");

        let clap = ["error: invalid value 'x' for '--durability <DURABILITY>'".to_owned()];
        assert!(startup_cause(&clap).starts_with("invalid value 'x'"));
        assert_eq!(startup_cause(&[]), "it printed nothing");
        let denied = "cannot open agora-data/product.db: Permission denied (os error 13)";
        assert!(startup_fix(denied, &[], None).expect("a fix").contains("--data-dir"));
    }
}
