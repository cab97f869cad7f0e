//! The customer database: buyer and seller accounts, sessions, carts and purchase history.
//!
//! A library with one entry point, [`run`]: the `agora customer-db` command binds a
//! listener and calls it; tests do the same on port 0. Requests arrive as
//! [`agora_proto::messages::customer::Request`] and are handled in `handler.rs`, which
//! checks and decides, then proposes a [`Command`] to the database's
//! [`Replica`](agora_replication::Replica); [`CustomerMachine`] applies it.
//!
//! ```text
//! handler.rs ─┬─► purchase.rs (the coordinator) ─┐
//!             ├──────────────────────────────────┴─► command.rs (Command, apply) ─┐
//!             └─► storage/ (reads) ◄────────────────────────────────────────────────┘
//!                 accounts, sessions, carts, history, purchase_log
//! ```

mod command;
mod config;
mod handler;
mod password;
mod purchase;
mod sessions;
mod storage;
#[cfg(test)]
mod testing;
mod throttle;

use std::sync::Arc;
use std::time::Duration;

use agora_proto::{Pool, PoolConfig};
use agora_replication::{Database, HostError};
use agora_store::StoreConfig;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use agora_replication::Clock;
pub use command::{Begun, Command, CustomerMachine, Output, Transition};
pub use config::Config;
pub use handler::CustomerDb;
pub use purchase::{FINISHED_STATES, PAYMENT_KEY_PREFIX};
pub use sessions::DEFAULT_MAX_PER_ACCOUNT as DEFAULT_MAX_SESSIONS_PER_ACCOUNT;
pub use storage::purchase_log::{State, Tx};

/// The tables, created on first start.
pub const SCHEMA: &str = include_str!("schema.sql");

/// Starting the customer database failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The file, the directory or the replica (agora_replication::host).
    #[error(transparent)]
    Host(#[from] HostError),
    /// The sessions could not be loaded.
    #[error("cannot load sessions: {0}")]
    Load(agora_proto::ApiError),
}

/// How long a clean stop waits for the purchases in hand to end before it hands the
/// leadership over (a purchase takes milliseconds; one stuck on an unreachable party is
/// left to the next leader).
const DRAIN_WITHIN: Duration = Duration::from_secs(2);

/// Serves the customer database on `listener` until `shutdown` is cancelled.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    let database = Database {
        data_dir: config.data_dir.clone(),
        file: "customer.db",
        store: StoreConfig {
            readers: config.readers,
            durability: config.durability,
            ..StoreConfig::new("")
        },
        schema: SCHEMA,
        machine: CustomerMachine,
        peers: config.group.clone(),
        trust: config.trust.clone(),
        clock: config.clock.clone(),
    };
    let hosting = database.open(|_| Ok(())).await?;
    let replica = hosting.replica.clone();
    let upstream = |addrs: &[String]| PoolConfig {
        call_timeout: Duration::from_secs(2),
        connector: config.trust.connector(),
        ..PoolConfig::new(addrs.to_vec())
    };
    let coordinator = Arc::new(purchase::Coordinator::new(
        replica.clone(),
        Pool::new(upstream(&config.product_db)),
        Pool::new(upstream(&config.payments)),
        config.retry_grace,
    ));
    let leadership = replica.leadership();
    let db = Arc::new(
        CustomerDb::load(replica, &config, coordinator.clone()).await.map_err(StartError::Load)?,
    );
    let background = shutdown.child_token();
    let flusher =
        tokio::spawn(flush_activity(db.clone(), config.activity_flush, background.clone()));
    let leader_work = tokio::spawn(lead(
        leadership,
        db.clone(),
        coordinator.clone(),
        config.recovery_interval,
        background.clone(),
    ));
    let stopping = db.clone();
    let before_stop = async move {
        let _ = flusher.await;
        let _ = leader_work.await;
        // Purchases in hand end while this replica still leads.
        coordinator.drain(DRAIN_WITHIN).await;
        // Last activity goes to disk on a clean stop (in a group, only the leader's
        // counts): before the leadership is handed over.
        if let Err(e) = stopping.flush_sessions().await {
            warn!(error = %e, "could not write session activity at shutdown");
        }
    };
    hosting.serve(listener, db, config.server.clone(), shutdown, before_stop).await;
    Ok(())
}

/// The work only the leader does, started each time this replica becomes the leader and
/// stopped when it stops being one: the purchase coordinator's recovery rounds and `Held`
/// reports. A replica that becomes the leader again first refills its session table from
/// the rows, which the other leader changed meanwhile. (A single replica always leads.)
async fn lead(
    mut leadership: watch::Receiver<bool>,
    db: Arc<CustomerDb>,
    coordinator: Arc<purchase::Coordinator>,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut first = true;
    loop {
        // Wait to lead.
        while !*leadership.borrow_and_update() {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = leadership.changed() => if changed.is_err() { return },
            }
        }
        // Loaded at start by a replica that led from the start; else (re)loaded now, and
        // again until it works while this replica leads (until then it answers
        // `unavailable`, and callers retry).
        if !(first && db.sessions_loaded()) {
            while let Err(e) = db.load_sessions().await {
                warn!(error = %e, "cannot load sessions on becoming the leader; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
                if !*leadership.borrow() {
                    break;
                }
            }
        }
        first = false;
        info!("leading: recovering purchases");
        let stop = shutdown.child_token();
        let rounds =
            tokio::spawn(purchase::recover_forever(coordinator.clone(), every, stop.clone()));
        // Lead until told otherwise. A change that still reads "leading" may hide a lost
        // and regained leadership (a watch keeps only the latest value), and another
        // leader's sessions in between: reload them.
        let led_out = loop {
            tokio::select! {
                _ = shutdown.cancelled() => break false,
                changed = leadership.changed() => {
                    if changed.is_err() {
                        break false;
                    }
                    if !*leadership.borrow_and_update() {
                        break true;
                    }
                    if let Err(e) = db.load_sessions().await {
                        warn!(error = %e, "cannot reload sessions on leading again");
                    }
                }
            }
        };
        stop.cancel();
        let _ = rounds.await;
        if !led_out {
            return;
        }
        db.sessions_stale();
        info!("no longer leading: purchase recovery stopped");
    }
}

async fn flush_activity(db: Arc<CustomerDb>, every: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = db.flush_sessions().await {
            warn!(error = %e, "could not write session activity");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use agora_domain::{ItemId, Role};
    use agora_proto::Handler;
    use agora_proto::messages::customer::Request;

    use super::*;
    use crate::testing::Rig;

    /// Polls `done` until it holds, failing after a deadline.
    async fn eventually<F, Fut>(what: &str, mut done: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !done().await {
            assert!(tokio::time::Instant::now() < deadline, "never: {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn recovery_starts_on_becoming_the_leader_which_also_reloads_sessions() {
        let rig = Rig::start().await;
        let (buyer, token) = rig.account(Role::Buyer, "bea").await;
        rig.add(&token, ItemId { category: 3, number: 7 }, 1, 5).await;
        let session = sessions::parse_token(&token).expect("token");
        let begin = Command::BeginPurchase { session, buyer, key: "k".into() };
        rig.replica.propose(begin).await.expect("begun");

        let (leads, leadership) = watch::channel(false);
        let stop = CancellationToken::new();
        let task = tokio::spawn(lead(
            leadership,
            rig.db.clone(),
            rig.coordinator.clone(),
            Duration::from_millis(10),
            stop.clone(),
        ));
        leads.send(true).expect("send");
        eventually("the leader recovers the purchase left Started", || async {
            rig.state(1).await == State::Aborted
        })
        .await;

        // While another replica led, a session was started there.
        leads.send(false).expect("send");
        let (other, other_key) = sessions::new_token().expect("token");
        let raw = rusqlite::Connection::open(rig.dir.path().join("customer.db")).expect("open");
        raw.execute(
            "INSERT INTO sessions (key, account, role, created_ms, last_seen_ms) \
             VALUES (?1, ?2, 2, ?3, ?3)",
            rusqlite::params![&other_key[..], buyer as i64, rig.config.clock.now_ms()],
        )
        .expect("insert");
        leads.send(true).expect("send");
        eventually("the new leader knows the other leader's session", || async {
            let check = Request::Authenticate { session: other.clone(), role: Role::Buyer };
            rig.db.handle(check).await.is_ok()
        })
        .await;
        stop.cancel();
        task.await.expect("stopped");
    }
}
