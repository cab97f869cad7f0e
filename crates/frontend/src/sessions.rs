//! The sessions a frontend has checked lately, so that a user's calls in quick succession
//! cost one session check at the customer database per `recheck` instead of one each.
//!
//! A session found here and checked less than `recheck` ago is taken as live without
//! asking. What that changes for users (docs/semantics.md, "Sessions"):
//!
//! - A logout through this frontend takes effect at once (the session is dropped here
//!   before the customer database is told). A logout through another frontend takes
//!   effect here within `recheck`.
//! - The customer database sees a session's activity at least once per `recheck` while
//!   it is in use, so an idle session may end up to `recheck` before its five minutes.
//! - A session can never outlive its timeout through this table: a session idle for its
//!   timeout has not been checked for at least that long, and `recheck` is far shorter.
//!
//! Only sessions the customer database accepted are kept; a made-up token always goes to
//! the database (and costs this table nothing).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use agora_domain::{Role, UserId};

/// Most sessions held; past it, entries too old to be used are dropped, then all.
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Entry {
    account: UserId,
    role: Role,
    checked: Instant,
}

/// Sessions checked at the customer database less than `recheck` ago.
#[derive(Debug)]
pub struct SessionCache {
    recheck: Duration,
    // Held for one map lookup or update; nothing awaits under it.
    map: Mutex<HashMap<String, Entry>>,
}

impl SessionCache {
    /// A table that trusts a check for `recheck` (zero: never, every call is checked).
    pub fn new(recheck: Duration) -> Self {
        SessionCache { recheck, map: Mutex::new(HashMap::new()) }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.map.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The account of `token` if it was checked as a session of `role` within `recheck`.
    pub fn get(&self, token: &str, role: Role) -> Option<UserId> {
        self.get_at(token, role, Instant::now())
    }

    fn get_at(&self, token: &str, role: Role, now: Instant) -> Option<UserId> {
        if self.recheck.is_zero() {
            return None;
        }
        let map = self.lock();
        let entry = map.get(token)?;
        let fresh = now.saturating_duration_since(entry.checked) < self.recheck;
        (entry.role == role && fresh).then_some(entry.account)
    }

    /// Records that the customer database has just accepted `token` as a session of
    /// `account` in `role`.
    pub fn checked(&self, token: &str, role: Role, account: UserId) {
        self.checked_at(token, role, account, Instant::now());
    }

    fn checked_at(&self, token: &str, role: Role, account: UserId, now: Instant) {
        if self.recheck.is_zero() {
            return;
        }
        let mut map = self.lock();
        if map.len() >= MAX_ENTRIES && !map.contains_key(token) {
            map.retain(|_, e| now.saturating_duration_since(e.checked) < self.recheck);
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
        }
        map.insert(token.to_owned(), Entry { account, role, checked: now });
    }

    /// Forgets `token`: it is being logged out, or the database refused it.
    pub fn forget(&self, token: &str) {
        self.lock().remove(token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checked_session_is_trusted_for_its_role_only() {
        let cache = SessionCache::new(Duration::from_secs(60));
        assert_eq!(cache.get("t", Role::Buyer), None);
        cache.checked("t", Role::Buyer, 7);
        assert_eq!(cache.get("t", Role::Buyer), Some(7));
        assert_eq!(cache.get("t", Role::Seller), None);
        cache.forget("t");
        assert_eq!(cache.get("t", Role::Buyer), None);
    }

    #[test]
    fn zero_recheck_keeps_nothing() {
        let cache = SessionCache::new(Duration::ZERO);
        cache.checked("t", Role::Buyer, 7);
        assert_eq!(cache.get("t", Role::Buyer), None);
    }

    #[test]
    fn an_old_check_is_not_trusted() {
        let cache = SessionCache::new(Duration::from_secs(1));
        let then = Instant::now();
        cache.checked_at("t", Role::Seller, 3, then);
        assert_eq!(cache.get_at("t", Role::Seller, then + Duration::from_millis(999)), Some(3));
        assert_eq!(cache.get_at("t", Role::Seller, then + Duration::from_secs(1)), None);
    }

    #[test]
    fn the_table_stays_bounded() {
        let cache = SessionCache::new(Duration::from_secs(60));
        for i in 0..MAX_ENTRIES + 10 {
            cache.checked(&i.to_string(), Role::Buyer, i as UserId);
        }
        assert!(cache.lock().len() <= MAX_ENTRIES);
        // The newest check is always kept.
        let last = (MAX_ENTRIES + 9).to_string();
        assert_eq!(cache.get(&last, Role::Buyer), Some((MAX_ENTRIES + 9) as UserId));
    }
}
