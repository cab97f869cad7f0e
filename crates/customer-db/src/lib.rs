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

#[cfg(test)]
mod testing;
mod throttle;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agora_proto::{Pool, PoolConfig, ServerConfig};
use agora_replication::{Membership, Replica};
use agora_store::{Store, StoreConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use agora_replication::Clock;
pub use command::{Begun, Command, CustomerMachine, Output, Transition};
pub use config::Config;
pub use handler::CustomerDb;
pub use purchase::{FINISHED_STATES, PAYMENT_KEY_PREFIX};
pub use storage::purchase_log::{State, Tx};

/// The tables, created on first start.
pub const SCHEMA: &str = include_str!("schema.sql");

/// Starting the customer database failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory could not be created.
    #[error("cannot create data directory {0}: {1}")]
    DataDir(PathBuf, std::io::Error),
    /// The database file could not be opened or loaded.
    #[error(transparent)]
    Open(#[from] agora_store::OpenError),
    /// The sessions could not be loaded.
    #[error("cannot load sessions: {0}")]
    Load(agora_proto::ApiError),
    /// The replica could not join its group.
    #[error(transparent)]
    Group(#[from] agora_replication::GroupError),
}

/// Serves the customer database on `listener` until `shutdown` is cancelled.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    agora_store::private_dir(&config.data_dir)
        .map_err(|e| StartError::DataDir(config.data_dir.clone(), e))?;
    let path = config.data_dir.join("customer.db");
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
            ..StoreConfig::new(&path)
        },
        SCHEMA,
    )?;
    let upstream = |addrs: &[String]| PoolConfig {
        call_timeout: Duration::from_secs(2),
        connector: config.trust.connector(),
        ..PoolConfig::new(addrs.to_vec())
    };
    let (replica, hook) =
        Replica::start(group, store, CustomerMachine, config.clock.clone()).await?;
    let stopping = replica.clone();
    if agora_store::seed::seeded(&config.data_dir) {
        tokio::spawn(seal_seed(replica.clone(), config.data_dir.clone()));
    }
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
    info!(addr = ?listener.local_addr().ok(), path = %path.display(), "customer-db serving");

    let flusher = tokio::spawn(flush_activity(db.clone(), config.activity_flush, shutdown.clone()));
    let leader_work = tokio::spawn(lead(
        leadership,
        db.clone(),
        coordinator,
        config.recovery_interval,
        shutdown.clone(),
    ));
    let server = ServerConfig { acceptor: config.trust.acceptor(), ..config.server.clone() };
    agora_proto::serve_with(listener, db.clone(), server, hook, shutdown).await;
    let _ = flusher.await;
    let _ = leader_work.await;
    // Last activity goes to disk on a clean stop (in a group, only the leader's counts).
    if let Err(e) = db.flush_sessions().await {
        warn!(error = %e, "could not write session activity at shutdown");
    }
    stopping.shutdown().await;
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
