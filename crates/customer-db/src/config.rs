//! What the customer database can be told at start.

use std::path::PathBuf;
use std::time::Duration;

use agora_proto::{ServerConfig, Trust};
use agora_replication::{Clock, Peers};

/// Everything the customer database can be told at start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where `customer.db` lives.
    pub data_dir: PathBuf,
    /// A session ends after this long without activity.
    pub session_timeout: Duration,
    /// The most sessions one account may have alive at once; a login past it is refused
    /// `overloaded` (each session holds its own copy of the saved cart).
    pub max_sessions_per_account: usize,
    /// How often session activity is written to disk.
    pub activity_flush: Duration,
    /// The clock sessions are measured by.
    pub clock: Clock,
    /// Connection and frame limits.
    pub server: ServerConfig,
    /// Reader threads.
    pub readers: usize,
    /// What an acknowledged write survives.
    pub durability: agora_store::Durability,
    /// Product database addresses: purchases reserve units there.
    pub product_db: Vec<String>,
    /// Payments service addresses: purchases are charged there.
    pub payments: Vec<String>,
    /// How often unfinished purchases are driven to their end.
    pub recovery_interval: Duration,
    /// How long recovery leaves a purchase it finds `Started` (payments never asked, so
    /// nothing charged) to a retry of its request, which carries the card recovery does
    /// not have, before cancelling it (DESIGN.md, "Recovery").
    pub retry_grace: Duration,
    /// This database's credentials: only components of the cluster may connect, and it
    /// proves itself with them to the product database and payments.
    pub trust: Trust,
    /// This replica's place in the database's group; `None` runs it alone.
    pub group: Option<Peers>,
}

impl Config {
    /// Defaults, with data under `data_dir` and the cluster credentials `trust`.
    pub fn new(data_dir: impl Into<PathBuf>, trust: Trust) -> Self {
        Config {
            trust,
            data_dir: data_dir.into(),
            session_timeout: Duration::from_secs(300),
            max_sessions_per_account: crate::sessions::DEFAULT_MAX_PER_ACCOUNT,
            activity_flush: Duration::from_secs(10),
            clock: Clock::system(),
            server: ServerConfig::default(),
            readers: 2,
            durability: agora_store::Durability::default(),
            product_db: vec!["127.0.0.1:7402".into()],
            payments: vec!["127.0.0.1:7405".into()],
            recovery_interval: Duration::from_secs(1),
            retry_grace: Duration::from_secs(10),
            group: None,
        }
    }
}
