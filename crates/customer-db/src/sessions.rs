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

use std::collections::HashMap;
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

/// All sessions, in memory.
#[derive(Debug)]
pub struct Sessions {
    // Held only for a map lookup or update; nothing awaits under it.
    map: Mutex<HashMap<Key, Session>>,
    timeout_ms: i64,
    clock: Clock,
}

impl Sessions {
    /// A table whose sessions expire after `timeout_ms` without activity.
    pub fn new(timeout_ms: i64, clock: Clock) -> Self {
        Sessions { map: Mutex::new(HashMap::new()), timeout_ms, clock }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Session>> {
        self.map.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
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
        let mut map = self.lock();
        let mut fresh: HashMap<Key, Session> = HashMap::with_capacity(stored.len());
        for (key, mut session) in stored {
            if let Some(known) = map.get(&key) {
                session.last_seen = session.last_seen.max(known.last_seen);
            }
            fresh.insert(key, session);
        }
        *map = fresh;
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
        self.lock().get(key).map(|s| s.role)
    }

    /// The session under `key` if it is alive and of `role`, recording this as activity.
    pub fn check(&self, key: &Key, role: Role) -> Result<Session, ApiError> {
        let now = self.clock.now_ms();
        let mut map = self.lock();
        let Some(session) = map.get_mut(key) else { return Err(ApiError::not_logged_in()) };
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
        let mut map = self.lock();
        map.iter_mut()
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
        let mut map = self.lock();
        let old: Vec<Key> =
            map.iter().filter(|(_, s)| s.last_seen < cutoff).map(|(k, _)| *k).collect();
        for key in &old {
            map.remove(key);
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
