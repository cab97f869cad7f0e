//! [`Pool`]: a few [`Channel`]s to one service that reconnect by themselves.
//!
//! Frontends hold one pool per database; clients hold one pool over a list of frontend
//! addresses. A broken channel is replaced on the next call; while a server is down, calls
//! fail fast with `Unreachable` (one connect attempt per `retry_after`, not one per call),
//! and every call has a deadline.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tracing::warn;

use crate::frame::DEFAULT_MAX_FRAME;
use crate::trust::Connector;
use crate::{CallError, Channel, Service};

/// How a pool connects and how long it waits.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Addresses to try in turn (host:port). Several name replicas of the same service.
    pub addrs: Vec<String>,
    /// Connections to hold; calls are spread over them.
    pub connections: usize,
    /// Deadline on one TCP connect.
    pub connect_timeout: Duration,
    /// Deadline on one call, reconnecting included.
    pub call_timeout: Duration,
    /// After a failed connect, calls fail at once for this long before the next attempt.
    pub retry_after: Duration,
    /// Largest answer accepted, in bytes.
    pub max_frame: u32,
    /// Keep retrying a request that is safe to repeat, with backoff, until the call
    /// deadline, while the server is unreachable, the connection breaks, or the server
    /// answers `unavailable` (a server behind it is down). Clients set this to ride
    /// through restarts; frontends leave it off so that they answer `unavailable` at once
    /// and the client decides.
    pub ride_through: bool,
    /// How connections are set up: in the clear to a public frontend, mutual TLS with
    /// this component's credentials to an internal service.
    pub connector: Connector,
}

impl PoolConfig {
    /// Defaults for a pool over `addrs`.
    pub fn new(addrs: Vec<String>) -> Self {
        PoolConfig {
            addrs,
            connections: 2,
            connect_timeout: Duration::from_millis(1000),
            call_timeout: Duration::from_secs(5),
            retry_after: Duration::from_millis(200),
            max_frame: DEFAULT_MAX_FRAME,
            ride_through: false,
            connector: Connector::Open,
        }
    }
}

/// A self-healing set of connections to one service.
pub struct Pool<S: Service> {
    config: PoolConfig,
    slots: Vec<Mutex<Option<Channel<S>>>>,
    /// When the last connect attempt failed, and why; cleared by a successful connect.
    /// Pool-wide, so one good reconnect makes every slot try again at once.
    failed: Mutex<Option<(Instant, CallError)>>,
    /// Serialises reconnects so a burst of calls after an outage makes one attempt.
    connecting: tokio::sync::Mutex<()>,
    next: AtomicUsize,
    /// Index into [`Pool::addrs`] of the address that answered last.
    preferred: AtomicUsize,
    /// Whether a connection was ever made. Until then a refused connection is final at
    /// once, even when riding through: nothing listens there (a wrong port, a server that
    /// is not running), and waiting out the deadline would only delay saying so. After,
    /// a refusal is a server restarting, and is ridden through.
    connected_once: std::sync::atomic::AtomicBool,
    /// Leaders' addresses learnt from `not_leader` answers that were not among the
    /// configured ones (a replica added to its group since this pool was set up); at most
    /// [`MAX_LEARNT`], the oldest forgotten first. Each comes from a server that proved
    /// itself with the cluster's credentials, and is connected to with them too.
    learnt: Mutex<Vec<String>>,
}

/// Most leader addresses a pool learns beyond its configured ones.
const MAX_LEARNT: usize = 8;

impl<S: Service> std::fmt::Debug for Pool<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("service", &S::ID.name())
            .field("addrs", &self.config.addrs)
            .finish()
    }
}

impl<S: Service> Pool<S> {
    /// A pool that connects lazily, on the first call.
    pub fn new(config: PoolConfig) -> Self {
        let connections = config.connections.max(1);
        Pool {
            slots: (0..connections).map(|_| Mutex::new(None)).collect(),
            failed: Mutex::new(None),
            config,
            connecting: tokio::sync::Mutex::new(()),
            next: AtomicUsize::new(0),
            preferred: AtomicUsize::new(0),
            connected_once: std::sync::atomic::AtomicBool::new(false),
            learnt: Mutex::new(Vec::new()),
        }
    }

    /// The addresses to try: the configured ones, then any leaders learnt since.
    fn addrs(&self) -> Vec<String> {
        let learnt = self.learnt.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        self.config.addrs.iter().chain(learnt.iter()).cloned().collect()
    }

    /// The pool's settings.
    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// Sends `request` on one of the pool's connections, reconnecting if needed, and waits
    /// for the answer until the call deadline.
    ///
    /// Retries: a request that never went out (no connection) is tried again; a request
    /// that is safe to repeat ([`Service::idempotent`]) is sent again on a fresh connection
    /// if the first one broke before its answer came. Without `ride_through` that happens
    /// once, at once; with it, again and again with backoff until the deadline, and also
    /// when the server answers `unavailable`. When the deadline passes, the last failure
    /// is returned (or `Timeout` if an attempt was cut off).
    pub async fn call(&self, request: &S::Request) -> Result<S::Response, CallError> {
        let timeout = self.config.call_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let repeatable = S::idempotent(request);
        let mut backoff = Duration::from_millis(5);
        let mut last: Option<CallError> = None;
        for tries in 1.. {
            let attempt = async {
                let channel = self.channel().await?;
                channel.call(request, timeout).await
            };
            let error = match tokio::time::timeout_at(deadline, attempt).await {
                Ok(Ok(response)) => return Ok(response),
                Ok(Err(e)) => e,
                Err(_) => return Err(CallError::Timeout { service: S::ID.name(), after: timeout }),
            };
            // A replica that does not lead its group names the leader when it knows it:
            // go there (or to the next replica) and ask again until the deadline, since a
            // not_leader answer means the request was not applied.
            if let CallError::Remote(e) = &error
                && e.code == crate::ErrorCode::NotLeader
                && repeatable
            {
                let moved = self.follow_leader(e.leader());
                if !moved {
                    // No new leader known yet: an election is under way.
                    if tokio::time::Instant::now() + backoff >= deadline {
                        return Err(error);
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(100));
                }
                last = Some(error);
                continue;
            }
            let retry = match &error {
                CallError::Unreachable { .. } => true,
                CallError::Lost { .. } => repeatable,
                CallError::Remote(e) => {
                    self.config.ride_through
                        && repeatable
                        && e.code == crate::ErrorCode::Unavailable
                }
                CallError::Timeout { .. } | CallError::Decode { .. } => false,
            };
            let refused_from_the_start = !self.connected_once.load(Ordering::Relaxed)
                && matches!(&error, CallError::Unreachable { reason, .. }
                    if reason == crate::client::CONNECTION_REFUSED);
            if !retry || refused_from_the_start || (!self.config.ride_through && tries >= 2) {
                return Err(error);
            }
            if self.config.ride_through && tries >= 2 {
                let now = tokio::time::Instant::now();
                if now + backoff >= deadline {
                    return Err(error);
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(250));
            }
            last = Some(error);
        }
        Err(last.unwrap_or(CallError::Timeout { service: S::ID.name(), after: timeout }))
    }

    /// An open channel from the next slot, connecting it if it is not. While connecting
    /// is failing, any other slot's open channel serves instead.
    async fn channel(&self) -> Result<Channel<S>, CallError> {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        if let Some(channel) = self.open_channel(index) {
            return Ok(channel);
        }
        if let Err(e) = self.recently_failed() {
            return self.any_open_channel().ok_or(e);
        }
        let _one_at_a_time = self.connecting.lock().await;
        // Another call may have reconnected this slot while we waited.
        if let Some(channel) = self.open_channel(index) {
            return Ok(channel);
        }
        if let Err(e) = self.recently_failed() {
            return self.any_open_channel().ok_or(e);
        }
        match self.connect_any().await {
            Ok(channel) => {
                *self.lock(index) = Some(channel.clone());
                *self.lock_failed() = None;
                self.connected_once.store(true, Ordering::Relaxed);
                Ok(channel)
            }
            Err(e) => {
                // Said once per outage, with the address: the error itself travels on
                // without it (CallError::into_api), so the public never sees where we are.
                if self.lock_failed().is_none() {
                    warn!(service = S::ID.name(), "cannot connect: {e}");
                }
                *self.lock_failed() = Some((Instant::now(), e.clone()));
                self.any_open_channel().ok_or(e)
            }
        }
    }

    /// Points the pool at the leader a `not_leader` answer named (or, when it named none
    /// or one not in `addrs`, at the next address) and drops the open channels, so that
    /// the next call connects there. Returns whether it moved to a named leader.
    fn follow_leader(&self, leader: Option<&str>) -> bool {
        if let Some(hint) = leader
            && !self.addrs().iter().any(|a| a == hint)
        {
            let mut learnt = self.learnt.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if learnt.len() == MAX_LEARNT {
                learnt.remove(0);
            }
            learnt.push(hint.to_owned());
        }
        let addrs = self.addrs();
        if addrs.is_empty() {
            return false;
        }
        let current = self.preferred.load(Ordering::Relaxed);
        let named = leader.and_then(|hint| addrs.iter().position(|a| a == hint));
        let next = named.unwrap_or((current + 1) % addrs.len());
        if next == current && self.any_open_channel().is_some_and(|c| c.addr() == addrs[next]) {
            // Already there: the named leader has not taken over yet.
            return false;
        }
        self.preferred.store(next, Ordering::Relaxed);
        for index in 0..self.slots.len() {
            *self.lock(index) = None;
        }
        *self.lock_failed() = None;
        named.is_some()
    }

    /// The slot's channel if it is open.
    fn open_channel(&self, index: usize) -> Option<Channel<S>> {
        self.lock(index).as_ref().filter(|c| !c.is_closed()).cloned()
    }

    fn any_open_channel(&self) -> Option<Channel<S>> {
        (0..self.slots.len()).find_map(|i| self.open_channel(i))
    }

    /// `Err` if a connect failed less than `retry_after` ago: fail fast, don't hammer.
    fn recently_failed(&self) -> Result<(), CallError> {
        match &*self.lock_failed() {
            Some((at, error)) if at.elapsed() < self.config.retry_after => Err(error.clone()),
            _ => Ok(()),
        }
    }

    fn lock_failed(&self) -> std::sync::MutexGuard<'_, Option<(Instant, CallError)>> {
        self.failed.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Tries each address in turn, starting with the one that answered last.
    async fn connect_any(&self) -> Result<Channel<S>, CallError> {
        let addrs = self.addrs();
        if addrs.is_empty() {
            return Err(CallError::Unreachable {
                service: S::ID.name(),
                addr: String::new(),
                reason: "no address configured".into(),
            });
        }
        let first = self.preferred.load(Ordering::Relaxed);
        let mut last_error = None;
        for offset in 0..addrs.len() {
            let index = (first + offset) % addrs.len();
            let connected = Channel::connect_with(
                &addrs[index],
                self.config.connect_timeout,
                self.config.max_frame,
                &self.config.connector,
            )
            .await;
            match connected {
                Ok(channel) => {
                    self.preferred.store(index, Ordering::Relaxed);
                    return Ok(channel);
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| CallError::Unreachable {
            service: S::ID.name(),
            addr: addrs.join(","),
            reason: "no address answered".into(),
        }))
    }

    // Held only to clone or replace a channel; never across an await.
    fn lock(&self, index: usize) -> std::sync::MutexGuard<'_, Option<Channel<S>>> {
        self.slots[index].lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
