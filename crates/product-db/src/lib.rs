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
use agora_replication::{Database, HostError, Peers};
use agora_store::StoreConfig;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

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
    pub group: Option<Peers>,
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
    /// The file, the directory or the replica (agora_replication::host).
    #[error(transparent)]
    Host(#[from] HostError),
    /// Seeding a synthetic catalogue failed.
    #[error("cannot seed {0}: {1}")]
    Seed(PathBuf, rusqlite::Error),
}

/// Serves the product database on `listener` until `shutdown` is cancelled.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    let database = Database {
        data_dir: config.data_dir.clone(),
        file: "product.db",
        store: StoreConfig {
            readers: config.readers,
            durability: config.durability,
            page_cache_kib: config.page_cache_mib.saturating_mul(1024),
            ..StoreConfig::new("")
        },
        schema: SCHEMA,
        machine: ProductMachine,
        peers: config.group.clone(),
        trust: config.trust.clone(),
        clock: config.clock.clone(),
    };
    // A database from before the index was kept in blocks moves over once, at start; one
    // from before reservations were timed gains the column.
    let hosting = database
        .open(|c| {
            reserve::upgrade(c).map_err(agora_replication::db_error)?;
            let moved = postings::upgrade(c).map_err(agora_replication::db_error)?;
            if moved > 0 {
                info!(postings = moved, "search index moved to blocks");
            }
            Ok(())
        })
        .await?;
    let db = Arc::new(ProductDb::new(hosting.replica.clone(), config.search_candidates));
    hosting.serve(listener, db, config.server.clone(), shutdown, async {}).await;
    Ok(())
}
