//! [`Pool`]: a few [`Channel`]s to one service that reconnect by themselves.
//!
//! Frontends hold one pool per database; clients hold one pool over a list of frontend
//! addresses. A broken channel is replaced on the next call; while a server is down, calls
//! fail fast with `Unreachable` (one connect attempt per `retry_after`, not one per call),
//! and every call has a deadline.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::frame::DEFAULT_MAX_FRAME;
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
        }
    }
}

struct Slot<S: Service> {
    channel: Option<Channel<S>>,
    /// When the last connect attempt failed, and why.
    failed: Option<(Instant, CallError)>,
}

/// A self-healing set of connections to one service.
pub struct Pool<S: Service> {
    config: PoolConfig,
    slots: Vec<Mutex<Slot<S>>>,
    /// Serialises reconnects so a burst of calls after an outage makes one attempt.
    connecting: tokio::sync::Mutex<()>,
    next: AtomicUsize,
    /// Index into `addrs` of the address that answered last.
    preferred: AtomicUsize,
}

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
            slots: (0..connections)
                .map(|_| Mutex::new(Slot { channel: None, failed: None }))
                .collect(),
            config,
            connecting: tokio::sync::Mutex::new(()),
            next: AtomicUsize::new(0),
            preferred: AtomicUsize::new(0),
        }
    }

    /// The pool's settings.
    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// Sends `request` on one of the pool's connections, reconnecting if needed, and waits
    /// for the answer until the call deadline. A request that is safe to repeat
    /// ([`Service::idempotent`]) is sent once more on a fresh connection if the first one
    /// broke before its answer came.
    pub async fn call(&self, request: &S::Request) -> Result<S::Response, CallError> {
        let deadline = self.config.call_timeout;
        let attempt = async {
            let mut tries = 0;
            loop {
                tries += 1;
                let channel = self.channel().await?;
                match channel.call(request, deadline).await {
                    Err(CallError::Lost { .. }) if tries == 1 && S::idempotent(request) => continue,
                    // Closed between our check and the send: nothing went out; try anew.
                    Err(CallError::Unreachable { .. }) if tries == 1 => continue,
                    other => return other,
                }
            }
        };
        match tokio::time::timeout(deadline, attempt).await {
            Ok(result) => result,
            Err(_) => Err(CallError::Timeout { service: S::ID.name(), after: deadline }),
        }
    }

    /// An open channel from the next slot, connecting it if it is not.
    async fn channel(&self) -> Result<Channel<S>, CallError> {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        if let Some(channel) = self.open_channel(index)? {
            return Ok(channel);
        }
        let _one_at_a_time = self.connecting.lock().await;
        // Another call may have reconnected this slot while we waited.
        if let Some(channel) = self.open_channel(index)? {
            return Ok(channel);
        }
        let result = self.connect_any().await;
        let mut slot = self.lock(index);
        match result {
            Ok(channel) => {
                slot.channel = Some(channel.clone());
                slot.failed = None;
                Ok(channel)
            }
            Err(e) => {
                slot.failed = Some((Instant::now(), e.clone()));
                Err(e)
            }
        }
    }

    /// The slot's channel if it is open; `Err` if it failed to connect very recently.
    fn open_channel(&self, index: usize) -> Result<Option<Channel<S>>, CallError> {
        let slot = self.lock(index);
        if let Some(channel) = &slot.channel
            && !channel.is_closed()
        {
            return Ok(Some(channel.clone()));
        }
        if let Some((at, error)) = &slot.failed
            && at.elapsed() < self.config.retry_after
        {
            return Err(error.clone());
        }
        Ok(None)
    }

    /// Tries each address in turn, starting with the one that answered last.
    async fn connect_any(&self) -> Result<Channel<S>, CallError> {
        let addrs = &self.config.addrs;
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
            let connected =
                Channel::connect(&addrs[index], self.config.connect_timeout, self.config.max_frame)
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
    fn lock(&self, index: usize) -> std::sync::MutexGuard<'_, Slot<S>> {
        self.slots[index].lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
