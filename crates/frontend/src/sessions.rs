//! The sessions a frontend has checked lately, so that a user's calls in quick succession
//! cost one session check at the customer database per `recheck` instead of one each.
//!
//! A session found here and checked less than `recheck` ago is taken as live without
//! asking. What that changes for users (docs/semantics.md, "Sessions"):
//!
//! - A logout through this frontend takes effect at once: the session is marked logged
//!   out here before the customer database is told and again once it has answered, and a
//!   check that was under way meanwhile cannot bring it back. A logout through another
//!   frontend takes effect here within `recheck`.
//! - The customer database sees a session's activity at least once per `recheck` while
//!   it is in use, so an idle session may end up to `recheck` before its five minutes.
//! - A session can never outlive its timeout through this table: a session idle for its
//!   timeout has not been checked for at least that long, and `recheck` is far shorter.
//!
//! Only sessions the customer database accepted are kept (and logout marks, for
//! `recheck`); a made-up token always goes to the database and costs this table
//! nothing. A check is trusted from the moment it began, so a slow answer does not
//! stretch it.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use agora_domain::{Role, UserId};

/// Most entries held; past it, entries too old to matter are dropped, then all.
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, Clone, Copy)]
enum Entry {
    /// The customer database accepted the session in a check that began at `at`.
    Checked { account: UserId, role: Role, at: Instant },
    /// Logged out through this frontend at `at`: a check that began before then and ends
    /// after it must not put the session back.
    LoggedOut { at: Instant },
}

impl Entry {
    fn at(&self) -> Instant {
        match *self {
            Entry::Checked { at, .. } | Entry::LoggedOut { at } => at,
        }
    }
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
        match self.lock().get(token) {
            Some(&Entry::Checked { account, role: checked_as, at })
                if checked_as == role && now.saturating_duration_since(at) < self.recheck =>
            {
                Some(account)
            }
            _ => None,
        }
    }

    /// Records that the customer database accepted `token` as a session of `account` in
    /// `role`, in a check that began at `began` (taken before the request went out, so that
    /// a slow answer does not stretch how long it is trusted). Ignored if the session was
    /// logged out through this frontend since `began`.
    pub fn checked(&self, token: &str, role: Role, account: UserId, began: Instant) {
        if self.recheck.is_zero() {
            return;
        }
        let mut map = self.lock();
        if let Some(&Entry::LoggedOut { at }) = map.get(token)
            && at >= began
        {
            return;
        }
        self.make_room(&mut map, token, Instant::now());
        map.insert(token.to_owned(), Entry::Checked { account, role, at: began });
    }

    /// Stops trusting `token`: the database refused it, or a call with it failed. A made-up
    /// token leaves nothing behind.
    pub fn forget(&self, token: &str) {
        let mut map = self.lock();
        if let Some(Entry::Checked { .. }) = map.get(token) {
            map.remove(token);
        }
    }

    /// Stops trusting `token` because it is being (or has just been) logged out through
    /// this frontend, including for checks already under way. Called before the customer
    /// database is told and again once it has answered: until then it may still accept
    /// the session.
    pub fn logged_out(&self, token: &str) {
        if self.recheck.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut map = self.lock();
        self.make_room(&mut map, token, now);
        map.insert(token.to_owned(), Entry::LoggedOut { at: now });
    }

    /// Keeps the table within [`MAX_ENTRIES`]: entries older than `recheck` no longer
    /// matter (a check that old is not trusted, and a check that began before a logout
    /// that old is stale on arrival), so they go first; if that is not enough, all go.
    fn make_room(&self, map: &mut HashMap<String, Entry>, token: &str, now: Instant) {
        if map.len() >= MAX_ENTRIES && !map.contains_key(token) {
            map.retain(|_, e| now.saturating_duration_since(e.at()) < self.recheck);
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checked_session_is_trusted_for_its_role_only() {
        let cache = SessionCache::new(Duration::from_secs(60));
        assert_eq!(cache.get("t", Role::Buyer), None);
        cache.checked("t", Role::Buyer, 7, Instant::now());
        assert_eq!(cache.get("t", Role::Buyer), Some(7));
        assert_eq!(cache.get("t", Role::Seller), None);
        cache.forget("t");
        assert_eq!(cache.get("t", Role::Buyer), None);
    }

    #[test]
    fn zero_recheck_keeps_nothing() {
        let cache = SessionCache::new(Duration::ZERO);
        cache.checked("t", Role::Buyer, 7, Instant::now());
        assert_eq!(cache.get("t", Role::Buyer), None);
        cache.logged_out("t");
        assert!(cache.lock().is_empty());
    }

    #[test]
    fn a_check_is_trusted_from_when_it_began() {
        let cache = SessionCache::new(Duration::from_secs(1));
        let began = Instant::now();
        cache.checked("t", Role::Seller, 3, began);
        let at = |ms| began + Duration::from_millis(ms);
        assert_eq!(cache.get_at("t", Role::Seller, at(999)), Some(3));
        assert_eq!(cache.get_at("t", Role::Seller, at(1000)), None);
    }

    #[test]
    fn a_check_under_way_at_a_logout_does_not_bring_the_session_back() {
        let cache = SessionCache::new(Duration::from_secs(60));
        let began = Instant::now();
        cache.checked("t", Role::Buyer, 7, began);
        // A call checks the session again; while its check is under way, the user logs out.
        let second_check = Instant::now();
        cache.logged_out("t");
        assert_eq!(cache.get("t", Role::Buyer), None);
        cache.checked("t", Role::Buyer, 7, second_check);
        assert_eq!(cache.get("t", Role::Buyer), None);
        // Errors leave the logout's mark in place.
        cache.forget("t");
        cache.checked("t", Role::Buyer, 7, second_check);
        assert_eq!(cache.get("t", Role::Buyer), None);
    }

    #[test]
    fn made_up_tokens_leave_nothing_behind() {
        let cache = SessionCache::new(Duration::from_secs(60));
        cache.forget("made-up");
        assert!(cache.lock().is_empty());
    }

    #[test]
    fn the_table_stays_bounded() {
        let cache = SessionCache::new(Duration::from_secs(60));
        let now = Instant::now();
        for i in 0..MAX_ENTRIES + 10 {
            cache.checked(&i.to_string(), Role::Buyer, i as UserId, now);
        }
        assert!(cache.lock().len() <= MAX_ENTRIES);
        // The newest check is always kept.
        let last = (MAX_ENTRIES + 9).to_string();
        assert_eq!(cache.get(&last, Role::Buyer), Some((MAX_ENTRIES + 9) as UserId));
    }
}
