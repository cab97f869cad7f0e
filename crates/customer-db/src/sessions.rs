//! Sessions: unguessable tokens, checked in memory on every call.
//!
//! The database keeps every session (so a restart keeps users logged in), but checking a
//! session must not cost a disk write per call. So the customer database holds all live
//! sessions in this table, records activity here, and a background task writes the
//! latest activity times to disk every `activity_flush` (see docs/semantics.md: after a
//! crash a session may time out up to that much early). Login and logout write through
//! to disk before they are acknowledged.
//!
//! Tokens are 256 random bits from the OS, shown as 64 hex digits. Only their SHA-256
//! is stored, so a copy of the database file does not hand out live sessions.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use agora_domain::{Role, UserId};
use agora_proto::{ApiError, ErrorCode};
use sha2::{Digest, Sha256};

use agora_replication::Clock;

/// How long an expired session answers `SessionExpired` before it is forgotten and
/// answers `NotLoggedIn`.
pub const EXPIRED_GRACE_MS: i64 = 3_600_000;

/// The stored form of a session token: its SHA-256.
pub type Key = [u8; 32];

/// A live session.
#[derive(Debug, Clone, Copy)]
pub struct Session {
    /// Whose it is.
    pub account: UserId,
    /// Seller or buyer.
    pub role: Role,
    /// Last activity, Unix ms.
    pub last_seen: i64,
    /// Last activity as written to disk.
    pub stored_last_seen: i64,
}

/// A new random token, and its key.
pub fn new_token() -> Result<(String, Key), ApiError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| ApiError::internal(format!("no randomness: {e}")))?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let key = key_of(&token);
    Ok((token, key))
}

/// The key of a token the client sent, or `NotLoggedIn` if it cannot be one of ours.
pub fn parse_token(token: &str) -> Result<Key, ApiError> {
    match agora_domain::canonical_token(token) {
        Some(canonical) => Ok(key_of(&canonical)),
        None => Err(ApiError::not_logged_in()),
    }
}

fn key_of(token: &str) -> Key {
    Sha256::digest(token.as_bytes()).into()
}

/// The most sessions an account may have alive at once, unless configured otherwise.
pub const DEFAULT_MAX_PER_ACCOUNT: usize = 32;

/// All sessions, in memory.
#[derive(Debug)]
pub struct Sessions {
    // Held only for a map lookup or update; nothing awaits under it.
    table: Mutex<Table>,
    timeout_ms: i64,
    clock: Clock,
}

/// The sessions, and for each account the keys of its sessions (alive or expired) and
/// how many of its logins are under way, kept together under one lock.
#[derive(Debug, Default)]
struct Table {
    map: HashMap<Key, Session>,
    by_account: HashMap<UserId, Account>,
}

/// One account's share of the [`Table`].
#[derive(Debug, Default)]
struct Account {
    keys: HashSet<Key>,
    /// Logins admitted ([`Sessions::admit`]) whose session is not in the table yet.
    pending: usize,
}

impl Table {
    fn insert(&mut self, key: Key, session: Session) {
        if let Some(old) = self.map.insert(key, session)
            && old.account != session.account
        {
            self.unindex(&key, old.account);
        }
        self.by_account.entry(session.account).or_default().keys.insert(key);
    }

    fn remove(&mut self, key: &Key) -> Option<Session> {
        let session = self.map.remove(key)?;
        self.unindex(key, session.account);
        Some(session)
    }

    fn unindex(&mut self, key: &Key, account: UserId) {
        if let Some(entry) = self.by_account.get_mut(&account) {
            entry.keys.remove(key);
            if entry.keys.is_empty() && entry.pending == 0 {
                self.by_account.remove(&account);
            }
        }
    }
}

/// A login admitted under its account's cap, until its session is in the table (or the
/// login failed): dropping it frees its place.
#[derive(Debug)]
pub struct Admitted<'a> {
    sessions: &'a Sessions,
    account: UserId,
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        let mut table = self.sessions.lock();
        if let Some(entry) = table.by_account.get_mut(&self.account) {
            entry.pending = entry.pending.saturating_sub(1);
            if entry.keys.is_empty() && entry.pending == 0 {
                table.by_account.remove(&self.account);
            }
        }
    }
}

impl Sessions {
    /// A table whose sessions expire after `timeout_ms` without activity.
    pub fn new(timeout_ms: i64, clock: Clock) -> Self {
        Sessions { table: Mutex::new(Table::default()), timeout_ms, clock }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Admits a login of `account` if it has fewer than `max` sessions alive (expired ones
    /// do not count) and logins under way together; else `overloaded`, saying why. The
    /// place is held until the returned guard is dropped, after the new session is
    /// inserted, so that logins at once cannot pass the cap together.
    pub fn admit(&self, account: UserId, max: usize) -> Result<Admitted<'_>, ApiError> {
        let now = self.clock.now_ms();
        let mut table = self.lock();
        let Table { map, by_account } = &mut *table;
        let entry = by_account.entry(account).or_default();
        let alive = entry
            .keys
            .iter()
            .filter_map(|key| map.get(key))
            .filter(|s| now - s.last_seen <= self.timeout_ms)
            .count();
        if alive + entry.pending >= max {
            if entry.keys.is_empty() && entry.pending == 0 {
                by_account.remove(&account);
            }
            return Err(ApiError::new(
                ErrorCode::Overloaded,
                format!(
                    "this account already has {max} sessions open, the most it may have: log \
                     out of one, or wait for an idle one to end ({} s without activity)",
                    self.timeout_ms / 1000
                ),
            ));
        }
        entry.pending += 1;
        Ok(Admitted { sessions: self, account })
    }

    /// The clock sessions are measured by.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// How long a session lives without activity, in ms.
    pub fn timeout_ms(&self) -> i64 {
        self.timeout_ms
    }

    /// Makes the table what the rows say: sessions not among `stored` go (they ended
    /// elsewhere), the others come in; a session in both keeps the later activity.
    pub fn replace(&self, stored: Vec<(Key, Session)>) {
        let mut table = self.lock();
        let mut fresh = Table::default();
        for (key, mut session) in stored {
            if let Some(known) = table.map.get(&key) {
                session.last_seen = session.last_seen.max(known.last_seen);
            }
            fresh.insert(key, session);
        }
        // Logins under way keep their places.
        for (account, entry) in &table.by_account {
            if entry.pending > 0 {
                fresh.by_account.entry(*account).or_default().pending = entry.pending;
            }
        }
        *table = fresh;
    }

    /// Adds a session (after it is on disk).
    pub fn insert(&self, key: Key, session: Session) {
        self.lock().insert(key, session);
    }

    /// Forgets a session (after it is off disk).
    pub fn remove(&self, key: &Key) -> Option<Session> {
        self.lock().remove(key)
    }

    /// The role of the session under `key`, alive or expired, if there is one.
    pub fn role_of(&self, key: &Key) -> Option<Role> {
        self.lock().map.get(key).map(|s| s.role)
    }

    /// The session under `key` if it is alive and of `role`, recording this as activity.
    pub fn check(&self, key: &Key, role: Role) -> Result<Session, ApiError> {
        let now = self.clock.now_ms();
        let mut table = self.lock();
        let Some(session) = table.map.get_mut(key) else {
            return Err(ApiError::not_logged_in());
        };
        if session.role != role {
            return Err(ApiError::new(
                ErrorCode::NotLoggedIn,
                format!("this is a {} session; log in as a {role}", session.role),
            ));
        }
        if now - session.last_seen > self.timeout_ms {
            return Err(ApiError::new(
                ErrorCode::SessionExpired,
                format!(
                    "session expired after {} s without activity; log in again",
                    self.timeout_ms / 1000
                ),
            ));
        }
        session.last_seen = session.last_seen.max(now);
        Ok(*session)
    }

    /// Activity not yet on disk, marked as written: the caller writes it next.
    pub fn take_unstored(&self) -> Vec<(Key, i64)> {
        let mut table = self.lock();
        table
            .map
            .iter_mut()
            .filter(|(_, s)| s.last_seen > s.stored_last_seen)
            .map(|(key, s)| {
                s.stored_last_seen = s.last_seen;
                (*key, s.last_seen)
            })
            .collect()
    }

    /// Removes sessions that expired more than `grace_ms` ago and returns their keys, for
    /// deletion from disk. Until then an expired session answers `SessionExpired` rather
    /// than `NotLoggedIn`.
    pub fn take_long_expired(&self, grace_ms: i64) -> Vec<Key> {
        let cutoff = self.clock.now_ms() - self.timeout_ms - grace_ms;
        let mut table = self.lock();
        let old: Vec<Key> =
            table.map.iter().filter(|(_, s)| s.last_seen < cutoff).map(|(k, _)| *k).collect();
        for key in &old {
            table.remove(key);
        }
        old
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn tokens_are_long_random_and_checked() {
        let (a, ka) = new_token().expect("token");
        let (b, _) = new_token().expect("token");
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert_eq!(parse_token(&a).expect("parses"), ka);
        assert_eq!(parse_token(&a.to_uppercase()).expect("parses"), ka);
        assert!(parse_token("short").is_err());
        assert!(parse_token(&"z".repeat(64)).is_err());
    }

    #[test]
    fn refilling_from_the_rows_drops_ended_sessions_and_keeps_later_activity() {
        let clock = Clock::manual(1_000_000);
        let sessions = Sessions::new(60_000, clock.clone());
        let at = |last_seen| Session {
            account: 9,
            role: Role::Buyer,
            last_seen,
            stored_last_seen: last_seen,
        };
        let (kept, ended, new) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        sessions.insert(kept, at(1_000_000));
        sessions.insert(ended, at(1_000_000));
        clock.advance(Duration::from_secs(50));
        sessions.check(&kept, Role::Buyer).expect("activity not yet in the rows");
        // The rows: `kept` as last flushed, `ended` gone (logged out elsewhere), `new`.
        sessions.replace(vec![(kept, at(1_000_000)), (new, at(1_040_000))]);
        assert_eq!(sessions.role_of(&ended), None);
        assert_eq!(sessions.check(&new, Role::Buyer).expect("new").account, 9);
        clock.advance(Duration::from_secs(30));
        // 80 s after the stored activity, 30 s after the one in memory: alive.
        sessions.check(&kept, Role::Buyer).expect("kept its later activity");
    }

    #[test]
    fn expiry_role_and_activity() {
        let clock = Clock::manual(1_000_000);
        let sessions = Sessions::new(60_000, clock.clone());
        let key = [7u8; 32];
        let now = clock.now_ms();
        sessions.insert(
            key,
            Session { account: 9, role: Role::Buyer, last_seen: now, stored_last_seen: now },
        );
        assert_eq!(sessions.check(&key, Role::Buyer).expect("alive").account, 9);
        assert_eq!(
            sessions.check(&key, Role::Seller).expect_err("role").code,
            ErrorCode::NotLoggedIn
        );
        clock.advance(Duration::from_secs(59));
        sessions.check(&key, Role::Buyer).expect("activity keeps it alive");
        assert_eq!(sessions.take_unstored().len(), 1);
        assert!(sessions.take_unstored().is_empty(), "activity is written once");
        clock.advance(Duration::from_secs(61));
        assert_eq!(
            sessions.check(&key, Role::Buyer).expect_err("expired").code,
            ErrorCode::SessionExpired
        );
        assert!(sessions.take_long_expired(3_600_000).is_empty());
        clock.advance(Duration::from_secs(3_601));
        assert_eq!(sessions.take_long_expired(3_600_000), vec![key]);
        assert_eq!(
            sessions.check(&key, Role::Buyer).expect_err("gone").code,
            ErrorCode::NotLoggedIn
        );
    }

    /// An account has at most `max` sessions alive, logins under way included; expired
    /// and ended ones free their places, and other accounts are not affected.
    #[test]
    fn an_account_holds_at_most_its_cap_of_live_sessions() {
        let clock = Clock::manual(1_000_000);
        let sessions = Sessions::new(60_000, clock.clone());
        let now = clock.now_ms();
        let of =
            |account| Session { account, role: Role::Buyer, last_seen: now, stored_last_seen: now };
        for n in 0..3u8 {
            let admitted = sessions.admit(9, 3).expect("under the cap");
            sessions.insert([n; 32], of(9));
            drop(admitted);
        }
        let refused = sessions.admit(9, 3).expect_err("at the cap");
        assert_eq!(refused.code, ErrorCode::Overloaded);
        assert!(refused.message.contains("3 sessions"), "{refused}");
        sessions.admit(8, 3).expect("another account");
        // Two logins at once take two places before either session exists.
        sessions.remove(&[0; 32]);
        let first = sessions.admit(9, 3).expect("a place freed by a logout");
        assert!(sessions.admit(9, 3).is_err(), "the place is taken by the login under way");
        drop(first);
        // An expired session holds no place.
        clock.advance(Duration::from_secs(61));
        sessions.check(&[1; 32], Role::Buyer).expect_err("expired");
        let _a = sessions.admit(9, 3).expect("expired ones do not count");
        let _b = sessions.admit(9, 3).expect("expired ones do not count");
    }

    /// A session of account 9 last active at `at`.
    fn buyer_at(at: i64) -> Session {
        Session { account: 9, role: Role::Buyer, last_seen: at, stored_last_seen: at }
    }

    /// "Expires after the timeout without activity": idle for exactly the timeout it is
    /// still alive; one millisecond more and it has expired.
    #[test]
    fn a_session_idle_for_exactly_the_timeout_is_still_alive() {
        let clock = Clock::manual(1_000_000);
        let sessions = Sessions::new(60_000, clock.clone());
        let (edge, past) = ([1u8; 32], [2u8; 32]);
        sessions.insert(edge, buyer_at(1_000_000));
        sessions.insert(past, buyer_at(1_000_000 - 1));
        clock.advance(Duration::from_millis(60_000));
        sessions.check(&edge, Role::Buyer).expect("idle exactly the timeout: alive");
        let expired = sessions.check(&past, Role::Buyer).expect_err("a millisecond more");
        assert_eq!(expired.code, ErrorCode::SessionExpired);
        assert!(expired.message.contains("after 60 s"), "{expired}");
    }

    /// The sweep forgets a session once it has been expired for longer than the grace:
    /// at exactly timeout + grace it is kept (and answers `SessionExpired`), a
    /// millisecond later it is gone (and answers `NotLoggedIn`).
    #[test]
    fn the_sweep_forgets_a_session_a_millisecond_after_its_grace() {
        let clock = Clock::manual(1_000_000);
        let sessions = Sessions::new(60_000, clock.clone());
        let (edge, past, alive) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        let start = clock.now_ms();
        let grace = 3_600_000;
        sessions.insert(edge, buyer_at(start));
        sessions.insert(past, buyer_at(start - 1));
        sessions.insert(alive, buyer_at(start + grace + 60_000));
        clock.advance(Duration::from_millis(60_000 + 3_600_000));
        assert_eq!(sessions.take_long_expired(grace), vec![past]);
        assert_eq!(
            sessions.check(&edge, Role::Buyer).expect_err("in its grace").code,
            ErrorCode::SessionExpired
        );
        assert_eq!(
            sessions.check(&past, Role::Buyer).expect_err("gone").code,
            ErrorCode::NotLoggedIn
        );
        clock.advance(Duration::from_millis(1));
        assert_eq!(sessions.take_long_expired(grace), vec![edge]);
        assert!(sessions.take_long_expired(grace).is_empty(), "taken once");
        sessions.check(&alive, Role::Buyer).expect("the active one stays");
    }
}
