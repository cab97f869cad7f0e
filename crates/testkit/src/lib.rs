//! Helpers for tests: start Agora's servers on `127.0.0.1:0` and stop, restart or kill
//! them. Nothing here mocks a component: every server is the real one on a real socket.
//!
//! - [`Cluster`]: all four servers inside the test process, each with its own runtime
//!   tasks and shutdown; frontends can be restarted on the same port.
//! - [`Process`]: one component as a real child process of the `agora` binary, for tests
//!   that must `kill -9` it.
//! - [`Proxy`]: a TCP link a test can cut and heal (`proxy`).
//! - [`linearizability`]: a checker for histories recorded by concurrent clients.
#![allow(clippy::unwrap_used)]

pub mod linearizability;
pub mod proxy;

pub use proxy::Proxy;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use agora_customer_db::Clock;
use agora_proto::{Component, Trust};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A server running inside the test process.
#[derive(Debug)]
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl Running {
    /// Stops it gracefully and waits until it has.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}

/// Makes the cluster credentials under `dir` (in `dir/credentials`, where a database with
/// its data in `dir` looks by default), unless they are there already; returns where.
pub fn credentials(dir: &Path) -> PathBuf {
    let at = dir.join("credentials");
    agora_proto::trust::create(&at)
        .unwrap_or_else(|e| panic!("credentials in {}: {e}", at.display()));
    // Nodes 1 to 3 of every database, as `agora up --replicas 3` makes them.
    agora_proto::trust::issue_replicas(&at, 3)
        .unwrap_or_else(|e| panic!("replicas' credentials in {}: {e}", at.display()));
    at
}

/// Every file under `dir` (itself included) that is not its owner's only: a file not 0600,
/// a directory not 0700, with its mode. Symbolic links are not followed.
pub fn not_private(dir: &Path) -> Vec<(PathBuf, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(path) = pending.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
        let mode = meta.permissions().mode() & 0o777;
        if meta.is_dir() {
            if mode != 0o700 {
                found.push((path.clone(), mode));
            }
            for entry in std::fs::read_dir(&path).into_iter().flatten().flatten() {
                pending.push(entry.path());
            }
        } else if meta.is_file() && mode != 0o600 {
            found.push((path, mode));
        }
    }
    found.sort();
    found
}

/// `component`'s credentials of the cluster whose data is in `dir` (made if needed): a
/// database's are those of its node 1, as when it runs alone ([`replica_trust`]).
pub fn trust(dir: &Path, component: Component) -> Trust {
    match component.is_database() {
        true => replica_trust(dir, component, 1),
        false => Trust::load(&credentials(dir), component).unwrap(),
    }
}

/// The own credentials of replica `node_id` of `component`'s groups, of the cluster whose
/// data is in `dir` (made if needed).
pub fn replica_trust(dir: &Path, component: Component, node_id: u64) -> Trust {
    let at = credentials(dir);
    agora_proto::trust::issue(&at, component, node_id)
        .unwrap_or_else(|e| panic!("{component} node {node_id}'s credentials: {e}"));
    Trust::load_replica(&at, component, node_id).unwrap()
}

async fn bind(addr: &str) -> TcpListener {
    TcpListener::bind(addr).await.unwrap_or_else(|e| panic!("bind {addr}: {e}"))
}

/// Options for a [`Cluster`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Session inactivity timeout.
    pub session_timeout: Duration,
    /// The customer database's clock; a manual one lets a test move time.
    pub clock: Clock,
    /// How long the frontends trust a session they have checked. Tests that move a manual
    /// clock set it to zero: the frontends' own time does not move with it.
    pub session_recheck: Duration,
    /// Chance that payments approves a valid card.
    pub approve_probability: f64,
    /// Where the customer database finds the product database and payments (set by
    /// [`Cluster::start_with`]).
    pub upstream: Option<(SocketAddr, SocketAddr)>,
}

impl Options {
    /// Options with the customer database on `clock`, a manual clock a test moves, and
    /// sessions ending after `session_timeout`. The frontends then check every call with
    /// the customer database: their own time does not move with the manual clock.
    pub fn manual_clock(clock: &Clock, session_timeout: Duration) -> Options {
        Options {
            session_timeout,
            clock: clock.clone(),
            session_recheck: Duration::ZERO,
            ..Options::default()
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            session_timeout: Duration::from_secs(300),
            clock: Clock::system(),
            session_recheck: agora_frontend::DEFAULT_SESSION_RECHECK,
            approve_probability: 1.0,
            upstream: None,
        }
    }
}

/// The four servers of Agora in this process, with their data in a temporary directory.
#[derive(Debug)]
pub struct Cluster {
    /// The customer database.
    pub customer_db: Running,
    /// The product database.
    pub product_db: Running,
    /// The payments service.
    pub payments: Running,
    /// The seller server.
    pub seller: Running,
    /// The buyer server.
    pub buyer: Running,
    /// The data directory (deleted on drop).
    pub data: tempfile::TempDir,
    options: Options,
}

impl Cluster {
    /// Starts all four servers with default options.
    pub async fn start() -> Cluster {
        Cluster::start_with(Options::default()).await
    }

    /// Starts all four servers.
    pub async fn start_with(options: Options) -> Cluster {
        let data = tempfile::tempdir().unwrap();
        let product_db = start_product_db(data.path(), "127.0.0.1:0").await;
        let payments = start_payments(data.path(), &options, "127.0.0.1:0").await;
        let options = Options { upstream: Some((product_db.addr, payments.addr)), ..options };
        let customer_db = start_customer_db(data.path(), &options, "127.0.0.1:0").await;
        let mut cluster = Cluster {
            customer_db,
            product_db,
            payments,
            seller: spare_placeholder(),
            buyer: spare_placeholder(),
            data,
            options,
        };
        cluster.seller =
            start_seller(&cluster.upstream_for(Component::SellerServer), "127.0.0.1:0").await;
        cluster.buyer =
            start_buyer(&cluster.upstream_for(Component::BuyerServer), "127.0.0.1:0").await;
        cluster
    }

    /// The seller server's address.
    pub fn seller_addr(&self) -> String {
        self.seller.addr.to_string()
    }

    /// The buyer server's address.
    pub fn buyer_addr(&self) -> String {
        self.buyer.addr.to_string()
    }

    /// The settings this cluster's frontend of kind `component` (the seller or the buyer
    /// server) runs with.
    pub fn upstream_for(&self, component: Component) -> agora_frontend::Config {
        let trust = trust(self.data.path(), component);
        upstream(self.customer_db.addr, self.product_db.addr, trust, &self.options)
    }

    /// `component`'s credentials in this cluster, to call its servers as that component.
    pub fn trust(&self, component: Component) -> Trust {
        trust(self.data.path(), component)
    }

    /// Stops the seller server and starts a new one on the same address.
    pub async fn restart_seller(&mut self) {
        let addr = self.seller.addr.to_string();
        let old = std::mem::replace(&mut self.seller, spare_placeholder());
        old.stop().await;
        self.seller = start_seller(&self.upstream_for(Component::SellerServer), &addr).await;
    }

    /// Stops the buyer server and starts a new one on the same address.
    pub async fn restart_buyer(&mut self) {
        let addr = self.buyer.addr.to_string();
        let old = std::mem::replace(&mut self.buyer, spare_placeholder());
        old.stop().await;
        self.buyer = start_buyer(&self.upstream_for(Component::BuyerServer), &addr).await;
    }

    /// Stops the customer database and starts it again on the same address and data.
    pub async fn restart_customer_db(&mut self) {
        let addr = self.customer_db.addr.to_string();
        let old = std::mem::replace(&mut self.customer_db, spare_placeholder());
        old.stop().await;
        self.customer_db = start_customer_db(self.data.path(), &self.options, &addr).await;
    }

    /// Stops every server.
    pub async fn stop(self) {
        self.seller.stop().await;
        self.buyer.stop().await;
        self.customer_db.stop().await;
        self.product_db.stop().await;
        self.payments.stop().await;
    }
}

/// A stopped stand-in, used while a server is swapped.
fn spare_placeholder() -> Running {
    Running {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        shutdown: CancellationToken::new(),
        task: tokio::spawn(async {}),
    }
}

/// Runs `run(listener, shutdown)` on a task and hands back its handle: the shape every
/// server of Agora has.
fn spawn<F, Fut>(listener: TcpListener, run: F) -> Running
where
    F: FnOnce(TcpListener, CancellationToken) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run(listener, shutdown.clone()));
    Running { addr, shutdown, task }
}

/// The settings of a cluster's frontends: [`frontend_config`] with the options' recheck.
fn upstream(
    customer_db: SocketAddr,
    product_db: SocketAddr,
    trust: Trust,
    options: &Options,
) -> agora_frontend::Config {
    agora_frontend::Config {
        session_recheck: options.session_recheck,
        ..frontend_config(customer_db, product_db, trust)
    }
}

/// Frontend settings for databases at these addresses, reached with `trust`, with short
/// deadlines for tests.
pub fn frontend_config(
    customer_db: SocketAddr,
    product_db: SocketAddr,
    trust: Trust,
) -> agora_frontend::Config {
    agora_frontend::Config {
        call_timeout: Duration::from_secs(5),
        ..agora_frontend::Config::new(
            vec![customer_db.to_string()],
            vec![product_db.to_string()],
            trust,
        )
    }
}

/// Starts a customer database on `addr` with data in `dir`.
pub async fn start_customer_db(dir: &Path, options: &Options, addr: &str) -> Running {
    let mut config = agora_customer_db::Config {
        session_timeout: options.session_timeout,
        clock: options.clock.clone(),
        recovery_interval: Duration::from_millis(100),
        ..agora_customer_db::Config::new(dir, trust(dir, Component::CustomerDb))
    };
    if let Some((product_db, payments)) = options.upstream {
        config.product_db = vec![product_db.to_string()];
        config.payments = vec![payments.to_string()];
    }
    spawn(bind(addr).await, |listener, token| async move {
        agora_customer_db::run(listener, config, token).await.unwrap();
    })
}

/// Starts a product database on `addr` with data in `dir`.
pub async fn start_product_db(dir: &Path, addr: &str) -> Running {
    let config = agora_product_db::Config::new(dir, trust(dir, Component::ProductDb));
    spawn(bind(addr).await, |listener, token| async move {
        agora_product_db::run(listener, config, token).await.unwrap();
    })
}

/// Starts a payments service on `addr` with its ledger in `dir`.
pub async fn start_payments(dir: &Path, options: &Options, addr: &str) -> Running {
    let config = agora_payments::Config {
        approve_probability: options.approve_probability,
        ..agora_payments::Config::new(dir, trust(dir, Component::Payments))
    };
    spawn(bind(addr).await, |listener, token| async move {
        agora_payments::run(listener, config, token).await.unwrap();
    })
}

/// Starts a seller server on `addr`.
pub async fn start_seller(upstream: &agora_frontend::Config, addr: &str) -> Running {
    let upstream = upstream.clone();
    spawn(bind(addr).await, |listener, token| {
        agora_frontend::run_seller(listener, upstream, Default::default(), token)
    })
}

/// Starts a buyer server on `addr`.
pub async fn start_buyer(upstream: &agora_frontend::Config, addr: &str) -> Running {
    start_buyer_with(upstream, addr, Default::default()).await
}

/// One component as a child process of the `agora` binary.
#[derive(Debug)]
pub struct Process {
    child: Child,
    /// Where it listens, as it announced.
    pub addr: String,
    exe: PathBuf,
    args: Vec<String>,
}

impl Process {
    /// Runs `exe <args...>` (a server subcommand with `--listen`), and waits for its
    /// `listening on` line.
    pub fn spawn(exe: &Path, args: &[&str]) -> Process {
        Process::spawn_with_env(exe, args, &[])
    }

    /// Like [`Process::spawn`], with extra environment variables for this first run only
    /// (a crash point, say: [`Process::restart`] starts it without them).
    pub fn spawn_with_env(exe: &Path, args: &[&str], env: &[(&str, &str)]) -> Process {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let (child, addr) = launch(exe, &args, env);
        Process { child, addr, exe: exe.to_owned(), args }
    }

    /// The process id, for looking at it from outside (its threads in `/proc`, say).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process to exit on its own (an injected crash, say).
    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }

    /// `kill -9`: no chance to flush, close or say goodbye.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the same command again, listening on the address it had, without the extra
    /// environment of [`Process::spawn_with_env`].
    pub fn restart(&mut self) {
        let mut args = self.args.clone();
        if let Some(i) = args.iter().position(|a| a == "--listen") {
            args[i + 1] = self.addr.clone();
        }
        let (child, addr) = launch(&self.exe, &args, &[]);
        self.child = child;
        self.addr = addr;
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn launch(exe: &Path, args: &[String], env: &[(&str, &str)]) -> (Child, String) {
    let stderr =
        if std::env::var_os("AGORA_TEST_LOG").is_some() { Stdio::inherit() } else { Stdio::null() };
    let mut child = Command::new(exe)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", exe.display()));
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let addr = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{args:?} printed {line:?} instead of its address"))
        .trim()
        .to_owned();
    (child, addr)
}

/// Starts a seller server on `addr` with its HTTP API on a free port of 127.0.0.1, one
/// handler behind both, as `agora seller-server` runs it. Returns it and the HTTP address.
pub async fn start_seller_with_http(
    upstream: &agora_frontend::Config,
    addr: &str,
) -> (Running, SocketAddr) {
    start_seller_with_http_limits(upstream, addr, Default::default()).await
}

/// [`start_seller_with_http`] with the given HTTP limits (connections, deadlines), for
/// tests of what happens at them.
pub async fn start_seller_with_http_limits(
    upstream: &agora_frontend::Config,
    addr: &str,
    limits: agora_frontend::http::Limits,
) -> (Running, SocketAddr) {
    let (listener, http) = (bind(addr).await, bind("127.0.0.1:0").await);
    let (http_addr, upstream) = (http.local_addr().unwrap(), upstream.clone());
    let running = spawn(listener, |listener, token| {
        agora_frontend::run_seller_with_http(
            listener,
            Some((http, limits)),
            upstream,
            Default::default(),
            token,
        )
    });
    (running, http_addr)
}

/// Starts a buyer server on `addr` with its HTTP API on a free port of 127.0.0.1, one
/// handler behind both, as `agora buyer-server` runs it. Returns it and the HTTP address.
pub async fn start_buyer_with_http(
    upstream: &agora_frontend::Config,
    addr: &str,
) -> (Running, SocketAddr) {
    start_buyer_with_http_limits(upstream, addr, Default::default()).await
}

/// [`start_buyer_with_http`] with the given HTTP limits (connections, deadlines), for
/// tests of what happens at them.
pub async fn start_buyer_with_http_limits(
    upstream: &agora_frontend::Config,
    addr: &str,
    limits: agora_frontend::http::Limits,
) -> (Running, SocketAddr) {
    let (listener, http) = (bind(addr).await, bind("127.0.0.1:0").await);
    let (http_addr, upstream) = (http.local_addr().unwrap(), upstream.clone());
    let running = spawn(listener, |listener, token| {
        agora_frontend::run_buyer_with_http(
            listener,
            Some((http, limits)),
            upstream,
            Default::default(),
            token,
        )
    });
    (running, http_addr)
}

impl Cluster {
    /// One more seller server, with its HTTP API, on this cluster's databases.
    pub async fn start_seller_with_http(&self) -> (Running, SocketAddr) {
        start_seller_with_http(&self.upstream_for(Component::SellerServer), "127.0.0.1:0").await
    }

    /// One more buyer server, with its HTTP API, on this cluster's databases.
    pub async fn start_buyer_with_http(&self) -> (Running, SocketAddr) {
        start_buyer_with_http(&self.upstream_for(Component::BuyerServer), "127.0.0.1:0").await
    }
}

/// Starts a buyer server on `addr` with the given limits (connections, timeouts), for
/// tests of what happens at them.
pub async fn start_buyer_with(
    upstream: &agora_frontend::Config,
    addr: &str,
    server: agora_proto::ServerConfig,
) -> Running {
    let upstream = upstream.clone();
    spawn(bind(addr).await, |listener, token| {
        agora_frontend::run_buyer(listener, upstream, server, token)
    })
}

impl Cluster {
    /// One more buyer server on this cluster's databases, with the given limits.
    pub async fn start_buyer_with(&self, server: agora_proto::ServerConfig) -> Running {
        start_buyer_with(&self.upstream_for(Component::BuyerServer), "127.0.0.1:0", server).await
    }
}
