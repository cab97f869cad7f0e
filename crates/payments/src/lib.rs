//! The payments service: the financial-transactions service a purchase pays through.
//!
//! It approves or declines a charge as a card processor would: a number that fails the
//! Luhn check, or a card past its expiry month, is declined; any other card is approved
//! with a configurable probability, decided by a hash of the seed and the idempotency
//! key, so tests are deterministic. Every decision goes into a durable ledger
//! (`payments.db`) before it is answered, and the ledger is keyed by the idempotency key:
//! the first request with a key decides, every later one gets the same answer.
//!
//! Card numbers are never stored: the ledger keeps the last four digits.
//!
//! A request is checked and decided in [`handler`] ([`decision`] is the processor's
//! policy), which proposes a [`Command`] to its [`Replica`]; [`PaymentsMachine`] applies
//! it to the ledger ([`ledger`]). Modules only call downwards: `handler` uses `command`
//! and `decision`; `command` uses `ledger`.

mod command;
mod decision;
mod handler;
mod ledger;

use std::path::PathBuf;
use std::sync::Arc;

use agora_proto::{ServerConfig, Trust};
use agora_replication::{Membership, Replica};
use agora_store::{Store, StoreConfig};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use agora_replication::Clock;
pub use command::{Command, PaymentsMachine};
pub use decision::luhn;
pub use handler::PaymentsService;
pub use ledger::{APPROVED, CANCELLED, DECLINED, SCHEMA};

/// Everything the payments service can be told at start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where `payments.db` lives.
    pub data_dir: PathBuf,
    /// Chance that a valid, unexpired card is approved.
    pub approve_probability: f64,
    /// Seed of the approval decision.
    pub seed: u64,
    /// What an acknowledged charge survives.
    pub durability: agora_store::Durability,
    /// Connection and frame limits.
    pub server: ServerConfig,
    /// The service's credentials: only the cluster's components may connect.
    pub trust: Trust,
    /// The clock charges are decided by (a card's expiry) and recorded at.
    pub clock: Clock,
    /// This replica's place in the service's group; `None` runs it alone.
    pub group: Option<Membership>,
}

impl Config {
    /// Defaults: 90% approval; data under `data_dir`, the cluster credentials `trust`.
    pub fn new(data_dir: impl Into<PathBuf>, trust: Trust) -> Self {
        Config {
            trust,
            data_dir: data_dir.into(),
            approve_probability: 0.9,
            seed: 0,
            durability: agora_store::Durability::default(),
            server: ServerConfig::default(),
            clock: Clock::system(),
            group: None,
        }
    }
}

/// Starting the payments service failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory could not be created.
    #[error("cannot create data directory {0}: {1}")]
    DataDir(PathBuf, std::io::Error),
    /// The ledger could not be opened.
    #[error(transparent)]
    Open(#[from] agora_store::OpenError),
    /// The ledger of an earlier version could not be brought up to date.
    #[error("cannot upgrade the ledger {0}: {1}")]
    Upgrade(PathBuf, String),
    /// The replica could not join its group.
    #[error(transparent)]
    Group(#[from] agora_replication::GroupError),
}

/// Serves the payments service on `listener` until `shutdown` is cancelled.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    agora_store::private_dir(&config.data_dir)
        .map_err(|e| StartError::DataDir(config.data_dir.clone(), e))?;
    let path = config.data_dir.join("payments.db");
    // Before the file is opened: a directory of another group is left as it is.
    let group = Membership::prepare(
        config.group.as_ref(),
        &config.data_dir,
        &config.trust,
        config.durability,
    )?;
    let store = Store::open(
        &StoreConfig { durability: config.durability, ..StoreConfig::new(&path) },
        SCHEMA,
    )?;
    // Upgrades run at start, outside commands: they depend only on the file's own
    // version, so every replica does the same.
    agora_replication::store_answer(store.write(ledger::upgrade).await)
        .map_err(|e| StartError::Upgrade(path.clone(), e.to_string()))?;
    let (replica, hook) =
        Replica::start(group, store, PaymentsMachine, config.clock.clone()).await?;
    let stopping = replica.clone();
    if agora_store::seed::seeded(&config.data_dir) {
        tokio::spawn(seal_seed(replica.clone(), config.data_dir.clone()));
    }
    let handler = Arc::new(PaymentsService::new(replica, config.approve_probability, config.seed));
    info!(addr = ?listener.local_addr().ok(), path = %path.display(), "payments serving");
    let server = ServerConfig { acceptor: config.trust.acceptor(), ..config.server.clone() };
    agora_proto::serve_with(listener, handler, server, hook, shutdown).await;
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
