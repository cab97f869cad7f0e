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
use agora_replication::{Database, HostError, Peers};
use agora_store::StoreConfig;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

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
    pub group: Option<Peers>,
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

/// Serves the payments service on `listener` until `shutdown` is cancelled.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: CancellationToken,
) -> Result<(), HostError> {
    let database = Database {
        data_dir: config.data_dir.clone(),
        file: "payments.db",
        store: StoreConfig { durability: config.durability, ..StoreConfig::new("") },
        schema: SCHEMA,
        machine: PaymentsMachine,
        peers: config.group.clone(),
        trust: config.trust.clone(),
        clock: config.clock.clone(),
    };
    let hosting = database.open(ledger::upgrade).await?;
    let handler = Arc::new(PaymentsService::new(
        hosting.replica.clone(),
        config.approve_probability,
        config.seed,
    ));
    hosting.serve(listener, handler, config.server.clone(), shutdown, async {}).await;
    Ok(())
}
