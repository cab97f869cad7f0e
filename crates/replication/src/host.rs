//! Hosting a database: the one start every database goes through (a private directory, a
//! foreign one refused before the file is touched, the store opened and brought up to
//! date, the replica started) and the one stop (the database's own last work, the
//! leadership handed over, the server drained, the replica stopped). The order is the
//! code's, not a comment's: a database gets its [`Replica`] only from
//! [`Database::open`], and serves only through [`Hosting::serve`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agora_proto::{ApiError, Handler, ServerConfig, Service, Trust};
use agora_store::{Store, StoreConfig};
use rusqlite::Connection;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{Clock, GroupError, Hosted, Peers, Replica, StateMachine, store_answer};

/// How long a leader that is asked to stop waits for another replica to take over before
/// it stops anyway (an election then follows, as after a crash).
const HAND_OVER_WITHIN: Duration = Duration::from_secs(2);

/// Everything a database's start needs.
pub struct Database<M> {
    /// Its data directory (created, readable by this user alone).
    pub data_dir: PathBuf,
    /// Its SQLite file's name in `data_dir`, and how the store runs it (the path is set
    /// from `data_dir` and `file`).
    pub file: &'static str,
    pub store: StoreConfig,
    /// Its tables, created on first start.
    pub schema: &'static str,
    /// How it applies commands.
    pub machine: M,
    /// Its place in a group; `None` runs it alone.
    pub peers: Option<Peers>,
    /// Its credentials: the component they name is the database.
    pub trust: Trust,
    /// The clock commands are proposed with.
    pub clock: Clock,
}

/// Why a database could not start.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The data directory could not be created.
    #[error("cannot create data directory {0}: {1}")]
    DataDir(PathBuf, std::io::Error),
    /// The database file could not be opened.
    #[error(transparent)]
    Open(#[from] agora_store::OpenError),
    /// The file of an earlier version could not be brought up to date.
    #[error("cannot upgrade {0}: {1}")]
    Upgrade(PathBuf, String),
    /// The replica could not join its group.
    #[error(transparent)]
    Group(#[from] GroupError),
}

impl<M: StateMachine> Database<M> {
    /// Opens the database and starts its replica. `upgrade` runs once on the file before
    /// the replica starts, outside commands: it depends only on the file's own version,
    /// so every replica does the same.
    pub async fn open<U>(self, upgrade: U) -> Result<Hosting<M>, HostError>
    where
        U: FnOnce(&Connection) -> Result<(), ApiError> + Send + 'static,
    {
        let dir = self.data_dir;
        agora_store::private_dir(&dir).map_err(|e| HostError::DataDir(dir.clone(), e))?;
        let path = dir.join(self.file);
        // Before the file is opened: a directory of another group is left as it is.
        let group = Peers::prepare(self.peers.as_ref(), &dir, &self.trust, self.store.durability)?;
        let store = Store::open(&StoreConfig { path: path.clone(), ..self.store }, self.schema)?;
        store_answer(store.write(upgrade).await)
            .map_err(|e| HostError::Upgrade(path.clone(), e.to_string()))?;
        let (replica, hosted) = Replica::start(group, store, self.machine, self.clock).await?;
        if let Some(group) = replica.group.clone()
            && agora_store::seed::seeded(&dir)
        {
            tokio::spawn(async move { group.seal_seed(dir).await });
        }
        Ok(Hosting { replica, hosted, trust: self.trust, path })
    }
}

/// A database whose file is open and whose replica runs: its handlers are built from
/// [`Hosting::replica`], then served.
pub struct Hosting<M: StateMachine> {
    /// The database's replica.
    pub replica: Replica<M>,
    hosted: Option<Hosted>,
    trust: Trust,
    path: PathBuf,
}

impl<M: StateMachine> Hosting<M> {
    /// The database file.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Serves `handler` (and the group's messages) on `listener` until `shutdown` is
    /// cancelled or the replica is removed from its group; then runs `before_stop` (the
    /// database's own last work, while it may still lead), hands the leadership over if
    /// this replica leads, so that the group does not wait for an election, stops serving
    /// once the requests in hand are answered, and stops the replica.
    pub async fn serve<S, H, F>(
        self,
        listener: TcpListener,
        handler: Arc<H>,
        server: ServerConfig,
        shutdown: CancellationToken,
        before_stop: F,
    ) where
        S: Service,
        H: Handler<S>,
        F: Future<Output = ()>,
    {
        let service = S::ID.name();
        info!(addr = ?listener.local_addr().ok(), path = %self.path.display(), "{service} serving");
        let server = ServerConfig { acceptor: self.trust.acceptor(), ..server };
        let stop_serving = CancellationToken::new();
        let serving = tokio::spawn(agora_proto::serve_with(
            listener,
            handler,
            server,
            self.hosted.map(Hosted::service),
            stop_serving.clone(),
        ));
        // A replica taken out of its group stops by itself, as a clean stop: a supervisor
        // that restarts failed servers leaves it down.
        tokio::select! {
            _ = shutdown.cancelled() => {}
            said = self.replica.removed() => warn!("{service}: {said}"),
        }
        before_stop.await;
        if *self.replica.leadership().borrow() && self.replica.metrics().is_some() {
            match self.replica.hand_over(None, HAND_OVER_WITHIN).await {
                Ok(to) => info!(to, "{service}: leadership handed over before stopping"),
                Err(e) => {
                    warn!(error = %e, "{service}: could not hand the leadership over; the group elects another")
                }
            }
        }
        stop_serving.cancel();
        if let Err(e) = serving.await {
            warn!(error = %e, "{service}: the server's task failed");
        }
        self.replica.shutdown().await;
    }
}
