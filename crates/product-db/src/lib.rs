//! The product database: items for sale, their quantities, buyers' feedback, and search.
//!
//! A library with one entry point, [`run`]; `agora product-db` binds a listener and calls
//! it. Requests arrive as [`agora_proto::messages::product::Request`] and are checked in
//! [`handler`], which reads through its [`Replica`] and turns every write into a
//! [`Command`]; [`ProductMachine`] applies commands (crates/replication). Storage is kept
//! per concept, called by both halves: items in [`items`], votes in [`feedback`],
//! reservations in [`reserve`], the search index in [`postings`] and ranking in [`search`].
//!
//! Modules only call downwards, never back up: `handler` uses `command` (writes) and
//! `items`, `feedback`, `search` (reads); `command` uses `items`, `feedback`, `reserve`;
//! those use `items`, which with `search` uses `postings`.

mod command;
mod feedback;
mod handler;
mod items;
mod postings;
mod reserve;
mod search;
pub mod seed;

use std::path::PathBuf;
use std::sync::Arc;

use agora_proto::{ServerConfig, Trust};
use agora_replication::{Membership, Replica};
use agora_store::{Store, StoreConfig};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use agora_replication::Clock;
pub use command::{Command, ProductMachine};
pub use handler::ProductDb;

/// The states of a row of `reservations`, a purchase's units at this database.
pub mod reservation {
    pub use crate::reserve::{CONFIRMED, RELEASED, RESERVED};
}

/// The tables, created on first start.
pub const SCHEMA: &str = include_str!("schema.sql");

/// Everything the product database can be told at start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where `product.db` lives.
    pub data_dir: PathBuf,
    /// Connection and frame limits.
    pub server: ServerConfig,
    /// Reader threads.
    pub readers: usize,
    /// What an acknowledged write survives.
    pub durability: agora_store::Durability,
    /// Most postings one search keyword reads (newest first): bounds a search's cost
    /// however large the catalogue grows. See docs/semantics.md.
    pub search_candidates: u32,
    /// SQLite page cache, in MiB, of the connection that serves reads.
    pub page_cache_mib: u32,
    /// This database's credentials: only components of the cluster may connect.
    pub trust: Trust,
    /// The clock commands are proposed with: the time a listing or a reservation is
    /// recorded at, and what the sweep of unclaimed reservations measures against.
    pub clock: Clock,
    /// This replica's place in the database's group; `None` runs it alone.
    pub group: Option<Membership>,
}

/// The product database's page cache unless configured otherwise, in MiB: room for the
/// index and the newest part of a large catalogue, which is what searches read.
pub const DEFAULT_PAGE_CACHE_MIB: u32 = 16;

impl Config {
    /// Defaults, with data under `data_dir` and the cluster credentials `trust`.
    pub fn new(data_dir: impl Into<PathBuf>, trust: Trust) -> Self {
        Config {
            trust,
            data_dir: data_dir.into(),
            server: ServerConfig::default(),
            readers: 2,
            durability: agora_store::Durability::default(),
            search_candidates: 1000,
            page_cache_mib: DEFAULT_PAGE_CACHE_MIB,
            clock: Clock::system(),
            group: None,
        }
    }
}

/// Starting the product database failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory could not be created.
    #[error("cannot create data directory {0}: {1}")]
    DataDir(PathBuf, std::io::Error),
    /// The database file could not be opened.
    #[error(transparent)]
    Open(#[from] agora_store::OpenError),
    /// The search index of an earlier version could not be moved to blocks.
    #[error("cannot upgrade the search index of {0}: {1}")]
    Upgrade(PathBuf, String),
    /// Seeding a synthetic catalogue failed.
    #[error("cannot seed {0}: {1}")]
    Seed(PathBuf, rusqlite::Error),
    /// The replica could not join its group.
    #[error(transparent)]
    Group(#[from] agora_replication::GroupError),
}

/// Serves the product database on `listener` until `shutdown` is cancelled.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    agora_store::private_dir(&config.data_dir)
        .map_err(|e| StartError::DataDir(config.data_dir.clone(), e))?;
    let path = config.data_dir.join("product.db");
    // Before the file is opened: a directory of another group is left as it is.
    let group = Membership::prepare(
        config.group.as_ref(),
        &config.data_dir,
        &config.trust,
        config.durability,
    )?;
    let store = Store::open(
        &StoreConfig {
            readers: config.readers,
            durability: config.durability,
            page_cache_kib: config.page_cache_mib.saturating_mul(1024),
            ..StoreConfig::new(&path)
        },
        SCHEMA,
    )?;
    // A database from before the index was kept in blocks moves over once, at start; one
    // from before reservations were timed gains the column. Upgrades run outside commands:
    // they depend only on the file's own version, so every replica does the same.
    let moved = agora_replication::store_answer(
        store
            .write(|c| {
                reserve::upgrade(c).map_err(agora_replication::db_error)?;
                postings::upgrade(c).map_err(agora_replication::db_error)
            })
            .await,
    )
    .map_err(|e| StartError::Upgrade(path.clone(), e.to_string()))?;
    if moved > 0 {
        info!(postings = moved, "search index moved to blocks");
    }
    let (replica, hook) =
        Replica::start(group, store, ProductMachine, config.clock.clone()).await?;
    let stopping = replica.clone();
    if agora_store::seed::seeded(&config.data_dir) {
        tokio::spawn(seal_seed(replica.clone(), config.data_dir.clone()));
    }
    let db = Arc::new(ProductDb::new(replica, config.search_candidates));
    info!(addr = ?listener.local_addr().ok(), path = %path.display(), "product-db serving");
    let server = ServerConfig { acceptor: config.trust.acceptor(), ..config.server.clone() };
    agora_proto::serve_with(listener, db, server, hook, shutdown).await;
    stopping.shutdown().await;
    Ok(())
}

/// Seals a replica seeded from a database that ran alone (`agora_store::seed`): once it
/// has applied its group's first entry, a snapshot of its file (the seed included) is
/// taken and its log cut behind it, so that a member added to the group later is sent
/// that snapshot instead of the log replayed onto an empty file. Until then the marker
/// stays, and a restart tries again. The same in customer-db, product-db and payments.
async fn seal_seed<M: agora_replication::StateMachine>(replica: Replica<M>, dir: PathBuf) {
    let Some(mut metrics) = replica.metrics() else { return };
    let applied = match metrics.wait_for(|m| m.last_applied.is_some()).await {
        Ok(m) => m.last_applied.map_or(0, |id| id.index),
        Err(_) => return,
    };
    if replica.snapshot().await.is_err() {
        return;
    }
    let built =
        metrics.wait_for(|m| m.snapshot.is_some_and(|id| id.index >= applied)).await.is_ok();
    if !built || replica.purge_log(applied).await.is_err() {
        return;
    }
    if metrics.wait_for(|m| m.purged.is_some_and(|id| id.index >= applied)).await.is_err() {
        return;
    }
    match agora_store::seed::sealed(&dir) {
        Ok(()) => info!(upto = applied, "the seeded database is sealed into a snapshot"),
        Err(e) => warn!(error = %e, "cannot remove the seed marker; sealed again at next start"),
    }
}
