//! The session tables under their real mix: mostly lookups, an insert after each miss,
//! and one removal per hundred operations.
//!
//! Two shapes, as in the code:
//!
//! - **frontend** (`crates/frontend/src/sessions.rs`, `SessionCache`): 64-hex-digit
//!   `String` tokens; a lookup only reads. The `Mutex<HashMap>` variant here *is* that
//!   type; the others copy its lookup (role and age checked against `Instant::now()`).
//! - **customer-db** (`crates/customer-db/src/sessions.rs`, `Sessions`, private to its
//!   crate, so copied here line for line): 32-byte keys; a lookup (`check`) also records
//!   activity, so it writes.
//!
//! The mix per operation: look a random key up; on a miss, insert it (the frontend asks
//! the customer database and calls `checked`; the customer database's miss is a login);
//! every hundredth operation removes a random key instead (`forget`; a logout). In
//! scenario 3 a frontend sees ~170 calls per user per second and re-checks each session
//! once a second, so ~0.6 % of its operations are inserts: the same order.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use agora_domain::{Role, UserId};
use agora_frontend::sessions::SessionCache;
use dashmap::DashMap;

use crate::{Rng, on_threads};

/// One in this many operations is a removal.
pub const REMOVE_EVERY: u64 = 100;

/// How long a frontend trusts a check here: longer than any run, so entries leave only
/// by removal (the default, 1 s, would add misses that depend on the run's length).
const RECHECK: Duration = Duration::from_secs(3600);

/// A session table as the mix uses it.
pub trait Table<K: ?Sized>: Sync {
    /// Whether `key` is a live session (a customer-db lookup also records activity).
    fn lookup(&self, key: &K) -> bool;
    /// Adds `key` as a live session of account `account`.
    fn insert(&self, key: &K, account: UserId);
    /// Forgets `key`.
    fn remove(&self, key: &K);
}

/// Runs the mix on `table` over `keys` from `threads` threads, `ops` operations in all.
pub fn run_mix<K: ?Sized + Sync, T: Table<K> + ?Sized>(
    table: &T,
    keys: &[impl std::borrow::Borrow<K> + Sync],
    threads: usize,
    ops: u64,
) -> Duration {
    on_threads(threads, ops, |t, n| {
        let mut rng = Rng::for_thread(t);
        for i in 0..n {
            let k = rng.below(keys.len());
            let key = keys[k].borrow();
            if i % REMOVE_EVERY == REMOVE_EVERY - 1 {
                table.remove(key);
            } else if !table.lookup(key) {
                table.insert(key, k as UserId);
            }
        }
    })
}

// ---- frontend shape ----

/// A frontend's table variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrontendTable {
    /// `SessionCache` itself: `Mutex<HashMap<String, Entry>>`.
    Today,
    /// The same map behind a `RwLock`: lookups share it.
    RwLock,
    /// `DashMap<String, Entry>`: a read-write lock per shard.
    DashMap,
}

impl FrontendTable {
    /// Every variant, in the order of the tables.
    pub const ALL: [FrontendTable; 3] =
        [FrontendTable::Today, FrontendTable::RwLock, FrontendTable::DashMap];

    /// Its name in benchmark ids and tables.
    pub fn name(self) -> &'static str {
        match self {
            FrontendTable::Today => "Mutex<HashMap> (SessionCache, today)",
            FrontendTable::RwLock => "RwLock<HashMap>",
            FrontendTable::DashMap => "DashMap",
        }
    }
}

/// `n` tokens shaped like real ones (64 hex digits).
pub fn frontend_tokens(n: usize) -> Vec<String> {
    (0..n as u64).map(|i| format!("{:064x}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15))).collect()
}

/// A frontend's entry, as in `SessionCache`.
#[derive(Debug, Clone, Copy)]
struct Entry {
    account: UserId,
    role: Role,
    at: Instant,
}

impl Entry {
    fn live(&self) -> Option<UserId> {
        (self.role == Role::Buyer && self.at.elapsed() < RECHECK).then_some(self.account)
    }
}

impl Table<str> for SessionCache {
    fn lookup(&self, key: &str) -> bool {
        self.get(key, Role::Buyer).is_some()
    }
    fn insert(&self, key: &str, account: UserId) {
        self.checked(key, Role::Buyer, account, Instant::now());
    }
    fn remove(&self, key: &str) {
        self.forget(key);
    }
}

/// `RwLock<HashMap>` with `SessionCache`'s lookup.
#[derive(Debug, Default)]
pub struct RwLockFrontend(RwLock<HashMap<String, Entry>>);

impl Table<str> for RwLockFrontend {
    fn lookup(&self, key: &str) -> bool {
        let map = self.0.read().unwrap_or_else(|p| p.into_inner());
        map.get(key).and_then(Entry::live).is_some()
    }
    fn insert(&self, key: &str, account: UserId) {
        let entry = Entry { account, role: Role::Buyer, at: Instant::now() };
        self.0.write().unwrap_or_else(|p| p.into_inner()).insert(key.to_owned(), entry);
    }
    fn remove(&self, key: &str) {
        self.0.write().unwrap_or_else(|p| p.into_inner()).remove(key);
    }
}

/// `DashMap` with `SessionCache`'s lookup.
#[derive(Debug, Default)]
pub struct DashFrontend(DashMap<String, Entry>);

impl Table<str> for DashFrontend {
    fn lookup(&self, key: &str) -> bool {
        self.0.get(key).and_then(|e| e.live()).is_some()
    }
    fn insert(&self, key: &str, account: UserId) {
        self.0.insert(key.to_owned(), Entry { account, role: Role::Buyer, at: Instant::now() });
    }
    fn remove(&self, key: &str) {
        self.0.remove(key);
    }
}

/// A frontend table of `variant` holding all of `tokens`.
pub fn frontend_table(variant: FrontendTable, tokens: &[String]) -> Box<dyn Table<str>> {
    let table: Box<dyn Table<str>> = match variant {
        FrontendTable::Today => Box::new(SessionCache::new(RECHECK)),
        FrontendTable::RwLock => Box::new(RwLockFrontend::default()),
        FrontendTable::DashMap => Box::new(DashFrontend::default()),
    };
    for (i, t) in tokens.iter().enumerate() {
        table.insert(t, i as UserId);
    }
    table
}

// ---- customer-db shape ----

/// The customer database's key: a token's SHA-256.
pub type Key = [u8; 32];

/// The customer database's table variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbTable {
    /// `Mutex<HashMap<Key, Session>>`, as `Sessions` is today.
    Today,
    /// The same map behind a `RwLock`; a check still takes the write lock, since it
    /// records activity.
    RwLockWrite,
    /// A `RwLock`, with activity in an `AtomicI64` per session so a check needs only the
    /// read lock.
    RwLockAtomic,
    /// `DashMap<Key, Session>`; a check takes its shard's write lock.
    DashMap,
}

impl DbTable {
    /// Every variant, in the order of the tables.
    pub const ALL: [DbTable; 4] =
        [DbTable::Today, DbTable::RwLockWrite, DbTable::RwLockAtomic, DbTable::DashMap];

    /// Its name in benchmark ids and tables.
    pub fn name(self) -> &'static str {
        match self {
            DbTable::Today => "Mutex<HashMap> (Sessions, today)",
            DbTable::RwLockWrite => "RwLock<HashMap>, check writes",
            DbTable::RwLockAtomic => "RwLock<HashMap>, atomic last_seen",
            DbTable::DashMap => "DashMap",
        }
    }
}

/// `n` keys (in the code, SHA-256 digests; any 32 bytes hash alike).
pub fn db_keys(n: usize) -> Vec<Key> {
    (0..n as u64)
        .map(|i| {
            let mut key = [0u8; 32];
            for (j, chunk) in key.chunks_mut(8).enumerate() {
                let word = (i ^ (j as u64).wrapping_mul(0xA24B_AED4_963E_E407))
                    .wrapping_mul(0x9E37_79B9_7F4A_7C15);
                chunk.copy_from_slice(&word.to_le_bytes());
            }
            key
        })
        .collect()
}

/// Unix milliseconds, as `Clock::system()` reads them.
fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

const TIMEOUT_MS: i64 = 300_000;

/// A live session, as in `Sessions`.
#[derive(Debug, Clone, Copy)]
pub struct Session {
    account: UserId,
    role: Role,
    last_seen: i64,
    stored_last_seen: i64,
}

impl Session {
    fn new(account: UserId) -> Self {
        let now = now_ms();
        Session { account, role: Role::Buyer, last_seen: now, stored_last_seen: now }
    }

    /// `Sessions::check` on one entry: role, expiry, then activity.
    fn check(&mut self, now: i64) -> bool {
        if self.role != Role::Buyer || now - self.last_seen > TIMEOUT_MS {
            return false;
        }
        self.last_seen = self.last_seen.max(now);
        self.account != UserId::MAX
    }
}

impl Session {
    /// Activity not yet on disk (what `take_unstored` reads), so the field is used.
    pub fn unstored(&self) -> bool {
        self.last_seen > self.stored_last_seen
    }
}

/// `Mutex<HashMap>`, as `Sessions` is today.
#[derive(Debug, Default)]
pub struct MutexDb(Mutex<HashMap<Key, Session>>);

impl Table<Key> for MutexDb {
    fn lookup(&self, key: &Key) -> bool {
        let now = now_ms();
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get_mut(key).is_some_and(|s| s.check(now))
    }
    fn insert(&self, key: &Key, account: UserId) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(*key, Session::new(account));
    }
    fn remove(&self, key: &Key) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }
}

/// `RwLock<HashMap>` whose checks take the write lock, as a drop-in for `Sessions` would.
#[derive(Debug, Default)]
pub struct RwLockWriteDb(RwLock<HashMap<Key, Session>>);

impl Table<Key> for RwLockWriteDb {
    fn lookup(&self, key: &Key) -> bool {
        let now = now_ms();
        let mut map = self.0.write().unwrap_or_else(|p| p.into_inner());
        map.get_mut(key).is_some_and(|s| s.check(now))
    }
    fn insert(&self, key: &Key, account: UserId) {
        self.0.write().unwrap_or_else(|p| p.into_inner()).insert(*key, Session::new(account));
    }
    fn remove(&self, key: &Key) {
        self.0.write().unwrap_or_else(|p| p.into_inner()).remove(key);
    }
}

/// A session whose activity is an atomic, so that a check under a read lock can record it.
#[derive(Debug)]
pub struct AtomicSession {
    account: UserId,
    role: Role,
    last_seen: AtomicI64,
    stored_last_seen: AtomicI64,
}

/// `RwLock<HashMap>` of [`AtomicSession`]: checks share the lock.
#[derive(Debug, Default)]
pub struct RwLockAtomicDb(RwLock<HashMap<Key, AtomicSession>>);

impl Table<Key> for RwLockAtomicDb {
    fn lookup(&self, key: &Key) -> bool {
        let now = now_ms();
        let map = self.0.read().unwrap_or_else(|p| p.into_inner());
        let Some(s) = map.get(key) else { return false };
        if s.role != Role::Buyer || now - s.last_seen.load(Ordering::Relaxed) > TIMEOUT_MS {
            return false;
        }
        s.last_seen.fetch_max(now, Ordering::Relaxed);
        s.account != UserId::MAX
    }
    fn insert(&self, key: &Key, account: UserId) {
        let now = now_ms();
        let session = AtomicSession {
            account,
            role: Role::Buyer,
            last_seen: AtomicI64::new(now),
            stored_last_seen: AtomicI64::new(now),
        };
        self.0.write().unwrap_or_else(|p| p.into_inner()).insert(*key, session);
    }
    fn remove(&self, key: &Key) {
        self.0.write().unwrap_or_else(|p| p.into_inner()).remove(key);
    }
}

impl AtomicSession {
    /// Activity not yet on disk (what `take_unstored` reads), so the field is used.
    pub fn unstored(&self) -> bool {
        self.last_seen.load(Ordering::Relaxed) > self.stored_last_seen.load(Ordering::Relaxed)
    }
}

/// `DashMap<Key, Session>`; a check takes its shard's write lock.
#[derive(Debug, Default)]
pub struct DashDb(DashMap<Key, Session>);

impl Table<Key> for DashDb {
    fn lookup(&self, key: &Key) -> bool {
        let now = now_ms();
        self.0.get_mut(key).is_some_and(|mut s| s.check(now))
    }
    fn insert(&self, key: &Key, account: UserId) {
        self.0.insert(*key, Session::new(account));
    }
    fn remove(&self, key: &Key) {
        self.0.remove(key);
    }
}

/// A customer-db table of `variant` holding all of `keys`.
pub fn db_table(variant: DbTable, keys: &[Key]) -> Box<dyn Table<Key>> {
    let table: Box<dyn Table<Key>> = match variant {
        DbTable::Today => Box::new(MutexDb::default()),
        DbTable::RwLockWrite => Box::new(RwLockWriteDb::default()),
        DbTable::RwLockAtomic => Box::new(RwLockAtomicDb::default()),
        DbTable::DashMap => Box::new(DashDb::default()),
    };
    for (i, k) in keys.iter().enumerate() {
        table.insert(k, i as UserId);
    }
    table
}
