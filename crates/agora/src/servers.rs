//! The server subcommands: flags and environment in, a bound listener and the component's
//! `run` out. Each prints `listening on ADDR` on stdout once it accepts connections (so
//! scripts and `agora up` know the real port when asked for port 0), and logs to stderr.
//! The frontends then print `http listening on ADDR` for their HTTP API, unless it is off.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agora_proto::{Component, ServerConfig, Trust};
use anyhow::Context;
use clap::Args;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Flags every server has.
#[derive(Debug, Args)]
pub struct Common {
    /// What to log on stderr: error, warn, info, debug, trace, or a filter such as
    /// `info,agora_proto=debug`.
    #[arg(long, env = "AGORA_LOG", default_value = "info")]
    pub log: String,
    /// Most client connections open at once. One more takes the place of the connection
    /// idle longest (told so and closed); when none is idle, the new one is told
    /// "overloaded" and closed at once, and the connections already open go on.
    #[arg(long, env = "AGORA_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,
    /// Most connections from one client address (IP) at once: its share of
    /// --max-connections, so that one address cannot take every place. Past it, a new
    /// connection takes the place of that address's idle longest, or is refused.
    #[arg(long, env = "AGORA_MAX_CONNECTIONS_PER_ADDRESS", default_value_t = 1024)]
    pub max_connections_per_address: usize,
    /// A new connection must finish its TLS handshake (databases and payments) and start
    /// its first request within this (e.g. 5s), or it is closed.
    #[arg(long, env = "AGORA_FIRST_REQUEST_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub first_request_timeout: Duration,
    /// Largest request accepted, in bytes. A frame declaring more is refused from its
    /// header, before any of it is buffered, and the connection is closed.
    #[arg(long, env = "AGORA_MAX_FRAME", default_value_t = agora_proto::DEFAULT_MAX_FRAME)]
    pub max_frame: u32,
    /// Most requests in flight on one connection. At the limit the server stops reading
    /// that connection until answers have gone out (backpressure, not an error).
    #[arg(long, env = "AGORA_MAX_IN_FLIGHT", default_value_t = 256)]
    pub max_in_flight: usize,
    /// Close a connection that has sent no request, and awaits no answer, for this long
    /// (e.g. 30s, 5m). Clients reconnect by themselves on their next call.
    #[arg(long, env = "AGORA_IDLE_TIMEOUT", default_value = "5m", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,
    /// Once the first byte of a request has arrived, the whole request must arrive within
    /// this, or the connection is closed: a client trickling bytes cannot hold it open.
    #[arg(long, env = "AGORA_FRAME_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub frame_timeout: Duration,
    /// Close a connection whose client has read none of its answers for this long, so
    /// that a client that never reads cannot make the server hold its answers for ever.
    #[arg(long, env = "AGORA_WRITE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub write_timeout: Duration,
    /// Stop when standard input closes (how `agora up` stops its children, even if it is
    /// killed itself).
    #[arg(long, hide = true)]
    pub supervised: bool,
    /// Threads running requests (0: one per core). The default, 1, runs the server on one
    /// thread with no hand-offs between threads (storage has its own threads either way):
    /// fastest when several servers share a small machine, as under `agora up`. On a host
    /// of its own, 0 uses every core.
    #[arg(long, env = "AGORA_THREADS", default_value_t = 1)]
    pub threads: usize,
    /// After reading a request or an answer, keep polling the sockets this long before
    /// sleeping, so that the next frame needs no wake-up (0, the default: sleep at once).
    /// Stops early when another thread needs the core. Lowers latency at light load on
    /// virtual machines whose idle cores halt at once (~25 % in bench scenario 1), at up to
    /// this much CPU after each frame; on a small machine under load it costs throughput
    /// (~10 % in scenario 2). docs/performance.md has the figures. Example: 200us; at
    /// most 10ms.
    #[arg(long, env = "AGORA_SPIN", default_value = "0s", value_parser = parse_spin)]
    pub spin: Duration,
    /// Directory of the cluster's credentials: ca.crt, and this component's certificate
    /// and key (`<component>.crt`, `<component>.key`; a database replica's own are
    /// `<component>-<node-id>.crt` and `.key`, node 1 when it runs alone). Every connection
    /// between the components is mutual TLS under that CA; the databases and payments
    /// refuse anyone else, and a replica accepts its group's Raft messages only from the
    /// replica they name. `agora up` makes them; for separate hosts, `agora credentials
    /// create --dir DIR --replicas N` once, then copy ca.crt and each component's or
    /// replica's pair to its host. [default:
    /// DATA_DIR/credentials for the databases and payments, agora-data/credentials for
    /// the frontends]
    #[arg(long, env = "AGORA_CREDENTIALS")]
    pub credentials: Option<PathBuf>,
}

impl Common {
    /// This component's credentials, from --credentials or else `default_dir`.
    fn trust(&self, component: Component, default_dir: &Path) -> anyhow::Result<Trust> {
        let dir = self.credentials.clone().unwrap_or_else(|| default_dir.to_owned());
        Ok(Trust::load(&dir, component)?)
    }

    /// A database replica's own credentials (node 1 for one that runs alone), from
    /// --credentials or else `default_dir`.
    fn replica_trust(
        &self,
        component: Component,
        storage: &Storage,
        default_dir: &Path,
    ) -> anyhow::Result<Trust> {
        let dir = self.credentials.clone().unwrap_or_else(|| default_dir.to_owned());
        Ok(Trust::load_replica(&dir, component, storage.node_id.unwrap_or(1))?)
    }
}

/// The longest `--spin`: past a few milliseconds a server would only burn CPU, since a
/// frame that far off is not a reply on its way.
const MAX_SPIN: Duration = Duration::from_millis(10);

fn parse_spin(text: &str) -> Result<Duration, String> {
    let spin = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if spin > MAX_SPIN {
        return Err(format!("at most {}", humantime::format_duration(MAX_SPIN)));
    }
    Ok(spin)
}

/// Flags of every server that keeps a database.
#[derive(Debug, Args)]
pub struct Storage {
    /// What an acknowledged write survives: `process` (a crash of this process, kill -9;
    /// no fsync per commit) or `machine` (also a crash of the machine or a power loss;
    /// each commit batch is fsynced, concurrent writes sharing one fsync).
    #[arg(long, env = "AGORA_DURABILITY", default_value = "process")]
    pub durability: agora_store::Durability,
    /// This replica's id in its group (a whole number from 1), with --peers: the database
    /// then runs as one replica of a group kept in agreement by consensus, and any minority
    /// of the group may fail (crates/replication/DESIGN.md). Without both, it runs alone.
    #[arg(long, env = "AGORA_NODE_ID", requires = "peers")]
    pub node_id: Option<u64>,
    /// Every replica of the group, this one included, as ID=HOST:PORT separated by commas
    /// (each the address that replica listens on), e.g.
    /// `1=10.0.0.1:7402,2=10.0.0.2:7402,3=10.0.0.3:7402`.
    #[arg(long, env = "AGORA_PEERS", value_parser = agora_replication::parse_peers, requires = "node_id")]
    pub peers: Option<std::collections::BTreeMap<u64, String>>,
}

impl Storage {
    /// This replica's place in its group, when --node-id and --peers say it is one;
    /// refuses a group that leaves this replica out.
    pub fn group(&self) -> anyhow::Result<Option<agora_replication::Peers>> {
        let (Some(me), Some(peers)) = (self.node_id, self.peers.clone()) else { return Ok(None) };
        if !peers.contains_key(&me) {
            let ids: Vec<String> = peers.keys().map(u64::to_string).collect();
            anyhow::bail!(
                "--node-id {me} is not among --peers ({}): list every replica, this one included",
                ids.join(", ")
            );
        }
        Ok(Some(agora_replication::Peers::new(me, peers)))
    }
}

impl Common {
    fn server_config(&self) -> ServerConfig {
        ServerConfig {
            max_connections: self.max_connections.max(1),
            max_connections_per_address: self.max_connections_per_address.max(1),
            first_request_timeout: self.first_request_timeout.max(Duration::from_millis(1)),
            max_frame: self.max_frame,
            max_in_flight: self.max_in_flight.max(1),
            // A zero deadline would close every connection at once.
            idle_timeout: self.idle_timeout.max(Duration::from_millis(1)),
            frame_timeout: self.frame_timeout.max(Duration::from_millis(1)),
            write_timeout: self.write_timeout.max(Duration::from_millis(1)),
            acceptor: agora_proto::Acceptor::Open,
        }
    }
}

/// `agora customer-db`.
#[derive(Debug, Args)]
pub struct CustomerDbArgs {
    /// Address to listen on (host:port; port 0 picks a free port).
    #[arg(long, env = "AGORA_CUSTOMER_DB_LISTEN", default_value = "127.0.0.1:7401")]
    pub listen: String,
    /// Directory for customer.db (created if missing).
    #[arg(long, env = "AGORA_DATA_DIR", default_value = "agora-data")]
    pub data_dir: PathBuf,
    /// A session ends after this long without activity (e.g. 300s, 5m, 1h).
    #[arg(long, env = "AGORA_SESSION_TIMEOUT", default_value = "5m", value_parser = humantime::parse_duration)]
    pub session_timeout: Duration,
    /// How often session activity is written to disk. After a crash, a session may time
    /// out up to this much early.
    #[arg(long, env = "AGORA_ACTIVITY_FLUSH", default_value = "10s", value_parser = humantime::parse_duration)]
    pub activity_flush: Duration,
    /// The most sessions one account may have alive at once (each holds a copy of the
    /// saved cart); a login past it is refused until one is logged out or times out.
    #[arg(
        long,
        env = "AGORA_MAX_SESSIONS_PER_ACCOUNT",
        default_value_t = agora_customer_db::DEFAULT_MAX_SESSIONS_PER_ACCOUNT
    )]
    pub max_sessions_per_account: usize,
    /// Reader threads (SQLite read connections), for reads arriving while the request
    /// thread's own connection is busy: a checkpoint is holding it, or --threads is not 1.
    #[arg(long, env = "AGORA_DB_READERS", default_value_t = 2)]
    pub readers: usize,
    /// Product database address(es), comma-separated: purchases reserve units there.
    #[arg(long, env = "AGORA_PRODUCT_DB", default_value = "127.0.0.1:7402", value_delimiter = ',')]
    pub product_db: Vec<String>,
    /// Payments service address(es), comma-separated: purchases are charged there.
    #[arg(long, env = "AGORA_PAYMENTS", default_value = "127.0.0.1:7405", value_delimiter = ',')]
    pub payments: Vec<String>,
    /// How often purchases interrupted by a crash or an unreachable service are driven to
    /// their end (completed or cancelled).
    #[arg(long, env = "AGORA_RECOVERY_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub recovery_interval: Duration,
    #[command(flatten)]
    pub storage: Storage,
    #[command(flatten)]
    pub common: Common,
}

/// `agora payments`.
#[derive(Debug, Args)]
pub struct PaymentsArgs {
    /// Address to listen on (host:port; port 0 picks a free port).
    #[arg(long, env = "AGORA_PAYMENTS_LISTEN", default_value = "127.0.0.1:7405")]
    pub listen: String,
    /// Directory for payments.db, the ledger (created if missing).
    #[arg(long, env = "AGORA_DATA_DIR", default_value = "agora-data")]
    pub data_dir: PathBuf,
    /// Chance (0 to 1) that a valid, unexpired card is approved. Numbers failing the Luhn
    /// check and expired cards are always declined.
    #[arg(long, env = "AGORA_APPROVE_PROBABILITY", default_value_t = 0.9)]
    pub approve_probability: f64,
    /// Seed of the approval decision: the same seed and purchase give the same answer.
    #[arg(long, env = "AGORA_PAYMENTS_SEED", default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub storage: Storage,
    #[command(flatten)]
    pub common: Common,
}

/// `agora product-db`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ProductDbArgs {
    #[command(subcommand)]
    pub action: Option<ProductDbAction>,
    /// Address to listen on (host:port; port 0 picks a free port).
    #[arg(long, env = "AGORA_PRODUCT_DB_LISTEN", default_value = "127.0.0.1:7402")]
    pub listen: String,
    /// Directory for product.db (created if missing).
    #[arg(long, env = "AGORA_DATA_DIR", default_value = "agora-data")]
    pub data_dir: PathBuf,
    /// Most items each search keyword considers, newest first. Bounds the cost of a search
    /// however large the catalogue grows.
    #[arg(long, env = "AGORA_SEARCH_CANDIDATES", default_value_t = 1000)]
    pub search_candidates: u32,
    /// SQLite page cache of the connection that serves reads, in MiB. Searches of a large
    /// catalogue read its newest items; with them in memory a search makes fewer system
    /// calls (docs/performance.md, "Search"). 1 to 4096.
    #[arg(
        long,
        env = "AGORA_PAGE_CACHE_MIB",
        default_value_t = agora_product_db::DEFAULT_PAGE_CACHE_MIB,
        value_parser = clap::value_parser!(u32).range(1..=4096)
    )]
    pub page_cache_mib: u32,
    /// Reader threads (SQLite read connections), for reads arriving while the request
    /// thread's own connection is busy: a checkpoint is holding it, or --threads is not 1.
    #[arg(long, env = "AGORA_DB_READERS", default_value_t = 2)]
    pub readers: usize,
    #[command(flatten)]
    pub storage: Storage,
    #[command(flatten)]
    pub common: Common,
}

/// What `agora product-db` can do besides serving.
#[derive(Debug, clap::Subcommand)]
pub enum ProductDbAction {
    /// Bulk-load synthetic items into product.db (with the server stopped), for
    /// benchmarks on large catalogues. Items spread over categories 0-99, with one to three
    /// keywords each from a fixed vocabulary of 100 words (pen, lamp, mug, ...).
    Seed(SeedArgs),
}

/// `agora product-db seed`.
#[derive(Debug, Args)]
pub struct SeedArgs {
    /// Directory of product.db (created if missing).
    #[arg(long, env = "AGORA_DATA_DIR", default_value = "agora-data")]
    pub data_dir: PathBuf,
    /// Items to add.
    #[arg(long)]
    pub items: u64,
    /// Seller id the items are listed under.
    #[arg(long, default_value_t = 1)]
    pub seller: u64,
    /// Seed of the generator: the same seed gives the same catalogue.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// Where a frontend finds the databases.
#[derive(Debug, Args)]
pub struct UpstreamArgs {
    /// Customer database address(es), comma-separated, tried in turn.
    #[arg(
        long,
        env = "AGORA_CUSTOMER_DB",
        default_value = "127.0.0.1:7401",
        value_delimiter = ','
    )]
    pub customer_db: Vec<String>,
    /// Product database address(es), comma-separated, tried in turn.
    #[arg(long, env = "AGORA_PRODUCT_DB", default_value = "127.0.0.1:7402", value_delimiter = ',')]
    pub product_db: Vec<String>,
    /// Connections held to each database; requests are multiplexed over them. One is
    /// fastest: requests that meet on it go out in one write and come back in one read.
    /// Each connection carries at most the database's --max-in-flight requests at once.
    #[arg(long, env = "AGORA_DB_CONNECTIONS", default_value_t = 1)]
    pub db_connections: usize,
    /// Deadline on each database call.
    #[arg(long, env = "AGORA_CALL_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub call_timeout: Duration,
    /// How long a session the customer database has accepted is trusted here without
    /// asking it again (0 asks on every call). A logout through this server takes effect at
    /// once; one through another frontend takes effect here within this long.
    #[arg(long, env = "AGORA_SESSION_RECHECK", default_value = "1s", value_parser = humantime::parse_duration)]
    pub session_recheck: Duration,
    /// Limit logins and sign-ups from loopback addresses too. Each client address may
    /// start 5 a second on average, in bursts of 20 (more are answered `overloaded`);
    /// addresses of this host are exempt unless this is set, since a reverse proxy or a
    /// load test here would otherwise share one allowance.
    #[arg(long, env = "AGORA_THROTTLE_LOOPBACK")]
    pub throttle_loopback: bool,
    /// A file naming the categories shown beside their numbers: one a line, the number
    /// then the name (`3 Office and stationery`; `#` starts a comment), at most 100, each
    /// name up to 32 characters. Give every frontend the same file. [default: 0 Other, 1
    /// Books, 2 Music and films, 3 Office and stationery, 4 Computers and phones, 5
    /// Clothing and shoes, 6 Toys and games, 7 Home and garden, 8 Sports and outdoors, 9
    /// Art and collectibles]
    #[arg(long, env = "AGORA_CATEGORIES", value_name = "FILE")]
    pub categories: Option<PathBuf>,
}

impl UpstreamArgs {
    fn config(&self, trust: Trust) -> anyhow::Result<agora_frontend::Config> {
        let categories = match &self.categories {
            None => agora_domain::Categories::default(),
            Some(path) => read_categories(path)?,
        };
        Ok(agora_frontend::Config {
            connections: self.db_connections.max(1),
            call_timeout: self.call_timeout,
            session_recheck: self.session_recheck,
            throttle_loopback: self.throttle_loopback,
            categories: std::sync::Arc::new(categories),
            ..agora_frontend::Config::new(self.customer_db.clone(), self.product_db.clone(), trust)
        })
    }
}

/// The categories named in the file at `path` (see `--categories`).
pub fn read_categories(path: &Path) -> anyhow::Result<agora_domain::Categories> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the categories file {}", path.display()))?;
    agora_domain::Categories::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Where the frontends look for credentials when not told: `agora up`'s data directory.
const FRONTEND_CREDENTIALS: &str = "agora-data/credentials";

/// The limits of a frontend's HTTP API (docs/http.md, "Limits").
#[derive(Debug, Args)]
pub struct HttpArgs {
    /// Most HTTP connections open at once. One more is answered 503 `overloaded` and
    /// closed; the connections already open go on being served. At most half the
    /// open-file limit (`ulimit -n`) is used, whatever this says: the rest is left to the
    /// TCP side and the database connections.
    #[arg(
        long,
        env = "AGORA_HTTP_MAX_CONNECTIONS",
        default_value_t = agora_frontend::http::DEFAULT_MAX_CONNECTIONS,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub http_max_connections: u32,
    /// Most HTTP connections from one client address (IP) at once: its share of
    /// --http-max-connections. Past it, a new connection takes the place of that
    /// address's idle longest, or is answered 503 `overloaded`.
    #[arg(
        long,
        env = "AGORA_HTTP_MAX_CONNECTIONS_PER_ADDRESS",
        default_value_t = agora_frontend::http::DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub http_max_connections_per_address: u32,
    /// Once the first byte of an HTTP request has arrived (for a connection's first
    /// request: once it is opened), its request line and headers must arrive within this
    /// (e.g. 10s), or the connection is closed: a client trickling a header, or
    /// connecting and saying nothing, cannot hold it open.
    #[arg(long, env = "AGORA_HTTP_HEADER_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub http_header_timeout: Duration,
    /// Close an HTTP connection that has had no request in hand for this long (e.g. 60s,
    /// 5m). Clients open a new one by themselves.
    #[arg(long, env = "AGORA_HTTP_IDLE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub http_idle_timeout: Duration,
}

impl HttpArgs {
    fn limits(&self) -> agora_frontend::http::Limits {
        agora_frontend::http::Limits {
            max_connections: self.http_max_connections.max(1) as usize,
            max_connections_per_address: self.http_max_connections_per_address.max(1) as usize,
            // A zero deadline would close every connection at once.
            header_timeout: self.http_header_timeout.max(Duration::from_millis(1)),
            idle_timeout: self.http_idle_timeout.max(Duration::from_millis(1)),
            ..Default::default()
        }
    }
}

/// `agora seller-server`.
#[derive(Debug, Args)]
pub struct SellerServerArgs {
    /// Address to listen on for seller clients (host:port; port 0 picks a free port).
    #[arg(long, env = "AGORA_SELLER_LISTEN", default_value = "127.0.0.1:7403")]
    pub listen: String,
    /// Address of the HTTP/JSON API (host:port), or `off`. [default: 127.0.0.1:8403, or a
    /// free port on the --listen host when --listen asks for port 0]
    #[arg(long, env = "AGORA_SELLER_HTTP_LISTEN")]
    pub http_listen: Option<String>,
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub upstream: UpstreamArgs,
    #[command(flatten)]
    pub common: Common,
}

/// `agora buyer-server`.
#[derive(Debug, Args)]
pub struct BuyerServerArgs {
    /// Address to listen on for buyer clients (host:port; port 0 picks a free port).
    #[arg(long, env = "AGORA_BUYER_LISTEN", default_value = "127.0.0.1:7404")]
    pub listen: String,
    /// Address of the HTTP/JSON API (host:port), or `off`. [default: 127.0.0.1:8404, or a
    /// free port on the --listen host when --listen asks for port 0]
    #[arg(long, env = "AGORA_BUYER_HTTP_LISTEN")]
    pub http_listen: Option<String>,
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub upstream: UpstreamArgs,
    #[command(flatten)]
    pub common: Common,
}

pub fn customer_db(args: CustomerDbArgs) -> anyhow::Result<()> {
    let credentials = args.data_dir.join("credentials");
    let trust = args.common.replica_trust(Component::CustomerDb, &args.storage, &credentials)?;
    let config = agora_customer_db::Config {
        session_timeout: args.session_timeout,
        activity_flush: args.activity_flush.max(Duration::from_millis(10)),
        max_sessions_per_account: args.max_sessions_per_account.max(1),
        server: args.common.server_config(),
        readers: args.readers.max(1),
        durability: args.storage.durability,
        product_db: args.product_db.clone(),
        payments: args.payments.clone(),
        recovery_interval: args.recovery_interval.max(Duration::from_millis(10)),
        group: args.storage.group()?,
        ..agora_customer_db::Config::new(&args.data_dir, trust)
    };
    serve(&args.common, &args.listen, |listener, shutdown| async move {
        Ok(agora_customer_db::run(listener, config, shutdown).await?)
    })
}

pub fn product_db(args: ProductDbArgs) -> anyhow::Result<()> {
    if let Some(ProductDbAction::Seed(seed)) = args.action {
        let started = std::time::Instant::now();
        let (first, last) =
            agora_product_db::seed::synthetic(&seed.data_dir, seed.items, seed.seller, seed.seed)?;
        println!(
            "seeded {} items (numbers {first}..={last}) in {:.1?}",
            seed.items,
            started.elapsed()
        );
        return Ok(());
    }
    let credentials = args.data_dir.join("credentials");
    let trust = args.common.replica_trust(Component::ProductDb, &args.storage, &credentials)?;
    let config = agora_product_db::Config {
        server: args.common.server_config(),
        readers: args.readers.max(1),
        durability: args.storage.durability,
        search_candidates: args.search_candidates,
        page_cache_mib: args.page_cache_mib,
        group: args.storage.group()?,
        ..agora_product_db::Config::new(&args.data_dir, trust)
    };
    serve(&args.common, &args.listen, |listener, shutdown| async move {
        Ok(agora_product_db::run(listener, config, shutdown).await?)
    })
}

pub fn payments(args: PaymentsArgs) -> anyhow::Result<()> {
    let credentials = args.data_dir.join("credentials");
    let trust = args.common.replica_trust(Component::Payments, &args.storage, &credentials)?;
    let config = agora_payments::Config {
        approve_probability: args.approve_probability,
        seed: args.seed,
        durability: args.storage.durability,
        server: args.common.server_config(),
        group: args.storage.group()?,
        ..agora_payments::Config::new(&args.data_dir, trust)
    };
    serve(&args.common, &args.listen, |listener, shutdown| async move {
        Ok(agora_payments::run(listener, config, shutdown).await?)
    })
}

pub fn seller_server(args: SellerServerArgs) -> anyhow::Result<()> {
    let trust = args.common.trust(Component::SellerServer, Path::new(FRONTEND_CREDENTIALS))?;
    let (upstream, server) = (args.upstream.config(trust)?, args.common.server_config());
    let limits = args.http.limits();
    let http = http_address(args.http_listen.as_deref(), &args.listen, "127.0.0.1:8403");
    serve(&args.common, &args.listen, |listener, shutdown| async move {
        let http = bind_http(http).await?.map(|listener| (listener, limits));
        agora_frontend::run_seller_with_http(listener, http, upstream, server, shutdown).await;
        Ok(())
    })
}

pub fn buyer_server(args: BuyerServerArgs) -> anyhow::Result<()> {
    let trust = args.common.trust(Component::BuyerServer, Path::new(FRONTEND_CREDENTIALS))?;
    let (upstream, server) = (args.upstream.config(trust)?, args.common.server_config());
    let limits = args.http.limits();
    let http = http_address(args.http_listen.as_deref(), &args.listen, "127.0.0.1:8404");
    serve(&args.common, &args.listen, |listener, shutdown| async move {
        let http = bind_http(http).await?.map(|listener| (listener, limits));
        agora_frontend::run_buyer_with_http(listener, http, upstream, server, shutdown).await;
        Ok(())
    })
}

/// Whether an `--http-listen` value turns the HTTP API off.
pub fn http_off(value: &str) -> bool {
    matches!(value.trim().to_ascii_lowercase().as_str(), "" | "off" | "none")
}

/// Where a frontend's HTTP API listens, or `None` when it is off. Unless told, on the
/// contract's port; but when the TCP address asks for a free port (tests, benchmarks,
/// several clusters on one host), on a free port too, so that they never collide.
fn http_address(asked: Option<&str>, tcp_listen: &str, default: &str) -> Option<String> {
    match asked {
        Some(value) if http_off(value) => None,
        Some(value) => Some(value.trim().to_owned()),
        None => match tcp_listen.rsplit_once(':') {
            Some((host, "0")) => Some(format!("{host}:0")),
            _ => Some(default.to_owned()),
        },
    }
}

/// Binds the HTTP listener and announces it on stdout, as the line after `listening on`.
async fn bind_http(addr: Option<String>) -> anyhow::Result<Option<TcpListener>> {
    use std::io::Write;
    let Some(addr) = addr else { return Ok(None) };
    let listener = TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen for HTTP on {addr}"))?;
    let bound = listener.local_addr().context("cannot read the bound HTTP address")?;
    // A launcher that wanted only the first line may have closed the pipe: not an error.
    let _ = writeln!(std::io::stdout(), "http listening on {bound}");
    Ok(Some(listener))
}

/// Sets up logging and the runtime, binds `listen`, announces the bound address, and runs
/// `body` until Ctrl-C, SIGTERM, or (when supervised) the end of standard input.
fn serve<F, Fut>(common: &Common, listen: &str, body: F) -> anyhow::Result<()>
where
    F: FnOnce(TcpListener, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    init_logging(&common.log);
    let mut builder = match common.threads {
        // One thread: no hand-offs between workers, which on a small machine shared by
        // several servers costs less than it gains.
        1 => tokio::runtime::Builder::new_current_thread(),
        0 => tokio::runtime::Builder::new_multi_thread(),
        n => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(n);
            builder
        }
    };
    let spin = crate::spin::Spin::install(&mut builder, common.spin);
    let runtime = builder.enable_all().build().context("cannot start the async runtime")?;
    runtime.block_on(async {
        spin.start();
        let stop = crate::up::stop_signal()?;
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr().context("cannot read the bound address")?;
        println!("listening on {addr}");
        let shutdown = CancellationToken::new();
        let stdin_closed = if common.supervised { Some(watch_stdin()?) } else { None };
        tokio::spawn(cancel_on_signal(shutdown.clone(), stop, stdin_closed));
        body(listener, shutdown).await
    })
}

pub fn init_logging(filter: &str) {
    use std::io::IsTerminal;
    // The consensus engine narrates every vote and heartbeat at `info`; our replication
    // code says what matters. `--log openraft=debug` (any filter naming it) shows it all.
    let filter = if filter.contains("openraft") {
        filter.to_owned()
    } else {
        format!("{filter},openraft=error")
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=error"));
    // Under `agora up` stderr is a pipe to the launcher, which says whether its own
    // stderr is a terminal that understands colours.
    let color = match std::env::var("AGORA_LOG_COLOR").as_deref() {
        Ok("1") => true,
        Ok(_) => false,
        Err(_) => std::io::stderr().is_terminal(),
    };
    // A log line that cannot be written is dropped: by default the subscriber reports the
    // failure with `eprintln!`, which panics when stderr is a pipe nobody reads any more,
    // as it is once a killed `agora up` has left its children behind. That panic would
    // kill whichever task logged, such as the one that stops the server.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(color)
        .with_writer(std::io::stderr)
        .log_internal_errors(false)
        .with_target(false)
        .try_init();
}

/// Cancels `token` once `stop` (Ctrl-C or SIGTERM) comes or, when given, `stdin_closed`
/// says standard input has ended.
async fn cancel_on_signal(
    token: CancellationToken,
    stop: impl Future<Output = ()>,
    stdin_closed: Option<tokio::sync::oneshot::Receiver<()>>,
) {
    let stdin_closed = async {
        match stdin_closed {
            Some(closed) => {
                let _ = closed.await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = stop => {}
        _ = stdin_closed => {}
    }
    // Cancelled when this ends, even by a panic: the log line must not stand between the
    // signal and the stop.
    let _cancel = token.drop_guard();
    tracing::info!("stopping");
}

/// Watches standard input, as `--supervised` asks: the receiver returned completes once
/// it ends (or cannot be read), which is how `agora up` stops its children, even when it
/// is killed itself. The read runs on a thread of its own, never joined, rather than on
/// the runtime's blocking pool: a read of stdin cannot be interrupted, and a runtime waits
/// for its blocking pool when it shuts down, so a server stopped by a signal while its
/// stdin was still open would never exit.
fn watch_stdin() -> anyhow::Result<tokio::sync::oneshot::Receiver<()>> {
    use std::io::Read;
    let (closed, receiver) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("stdin-watch".to_owned())
        .spawn(move || {
            let mut stdin = std::io::stdin();
            let mut buf = [0u8; 64];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let _ = closed.send(());
        })
        .context("cannot start the thread that watches standard input")?;
    Ok(receiver)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spin_is_a_short_duration() {
        assert_eq!(parse_spin("200us"), Ok(Duration::from_micros(200)));
        assert_eq!(parse_spin("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_spin("10ms"), Ok(MAX_SPIN));
        assert_eq!(parse_spin("11ms"), Err("at most 10ms".to_owned()));
        assert!(parse_spin("fast").is_err());
    }

    #[derive(Debug, clap::Parser)]
    struct StorageCli {
        #[command(flatten)]
        storage: Storage,
    }

    /// The replica's id and its peers in order, as `--node-id` and `--peers` give them.
    type Group = Option<(u64, Vec<(u64, String)>)>;

    fn group(line: &[&str]) -> Result<Group, String> {
        use clap::Parser as _;
        let cli = StorageCli::try_parse_from(std::iter::once("db").chain(line.iter().copied()))
            .map_err(|e| e.to_string())?;
        let group = cli.storage.group().map_err(|e| e.to_string())?;
        Ok(group.map(|m| (m.node_id, m.peers.into_iter().collect())))
    }

    #[test]
    fn a_replica_is_told_its_id_and_every_member_of_its_group() {
        assert_eq!(group(&[]), Ok(None), "alone without the flags");
        let three = "1=10.0.0.1:7402,2=10.0.0.2:7402,3=[::1]:7402";
        assert_eq!(
            group(&["--node-id", "2", "--peers", three]),
            Ok(Some((
                2,
                vec![
                    (1, "10.0.0.1:7402".to_owned()),
                    (2, "10.0.0.2:7402".to_owned()),
                    (3, "[::1]:7402".to_owned())
                ]
            )))
        );
        let refused = |line: &[&str], says: &str| {
            let err = group(line).expect_err(says);
            assert!(err.contains(says), "{line:?}: {err}");
        };
        refused(
            &["--node-id", "4", "--peers", three],
            "--node-id 4 is not among --peers (1, 2, 3)",
        );
        refused(&["--node-id", "1", "--peers", "1=a:1,1=b:2"], "node 1 is listed twice");
        refused(&["--node-id", "1", "--peers", "1=a"], "\"a\" is not HOST:PORT");
        refused(&["--node-id", "1", "--peers", "0=a:1"], "node ids start at 1");
        refused(&["--node-id", "1"], "--peers");
        refused(&["--peers", "1=a:1"], "--node-id");
    }
}

/// `agora credentials`.
#[derive(Debug, Args)]
pub struct CredentialsArgs {
    #[command(subcommand)]
    pub action: CredentialsAction,
}

/// What `agora credentials` can do.
#[derive(Debug, clap::Subcommand)]
pub enum CredentialsAction {
    /// Make a new cluster's credentials in DIR: a CA (ca.crt, ca.key), a certificate and
    /// key for the seller server, the buyer server and the admin, and one for each replica
    /// of customer-db, product-db and payments, nodes 1 to --replicas
    /// (`product-db-2.crt`, `product-db-2.key`). Keys are written readable by their owner
    /// only. A DIR that already holds a complete set is left as it is, and only missing
    /// replicas' pairs are added. Copy ca.crt and each component's or replica's .crt and
    /// .key to the host that runs it (never ca.key), and start it with `--credentials DIR`.
    Create {
        /// Where to write them (created if missing).
        #[arg(long, env = "AGORA_CREDENTIALS", default_value = FRONTEND_CREDENTIALS)]
        dir: PathBuf,
        /// How many replicas of each database to make certificates for (nodes 1 to N).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=99))]
        replicas: u64,
    },
    /// Make the certificate and key of one more database replica, signed by the CA in DIR
    /// (which must hold ca.key): for a replica about to join with `agora cluster add`, or
    /// one that runs on a host of its own. Its group accepts Raft messages from it only in
    /// its own node's name. A pair already there is left as it is.
    Issue {
        /// The cluster's credentials, with the CA's key.
        #[arg(long, env = "AGORA_CREDENTIALS", default_value = FRONTEND_CREDENTIALS)]
        dir: PathBuf,
        /// Whose replica: customer-db, product-db or payments.
        #[arg(long, value_parser = ["customer-db", "product-db", "payments"])]
        component: String,
        /// The replica's node id (from 1), as it will be started with --node-id.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        node_id: u64,
    },
}

pub fn credentials(args: CredentialsArgs) -> anyhow::Result<()> {
    match args.action {
        CredentialsAction::Create { dir, replicas } => {
            let created = agora_proto::trust::create(&dir)?;
            let made = agora_proto::trust::issue_replicas(&dir, replicas)?;
            match created {
                agora_proto::trust::Created::New => println!(
                    "made a new cluster's credentials in {}, with nodes 1 to {replicas} of each \
                     database",
                    dir.display()
                ),
                agora_proto::trust::Created::Existing if made > 0 => println!(
                    "{} already holds a cluster's credentials; added {made} replicas' \
                     certificates (nodes 1 to {replicas})",
                    dir.display()
                ),
                agora_proto::trust::Created::Existing => println!(
                    "{} already holds a cluster's credentials; left as they are",
                    dir.display()
                ),
            }
            Ok(())
        }
        CredentialsAction::Issue { dir, component, node_id } => {
            let component = Component::from_name(&component).context("not a database")?;
            let file = format!("{component}-{node_id}");
            match agora_proto::trust::issue(&dir, component, node_id)? {
                agora_proto::trust::Created::New => println!(
                    "made {file}.crt and {file}.key in {}: copy them and ca.crt to the host of \
                     {component} node {node_id}",
                    dir.display()
                ),
                agora_proto::trust::Created::Existing => {
                    println!("{} already holds {file}.crt and {file}.key", dir.display())
                }
            }
            Ok(())
        }
    }
}
