//! Login throttling per account: password guessing against one account slows to one try
//! per [`SPACING_MS`] after [`FREE_FAILURES`] wrong passwords, without hashing anything,
//! while other accounts and the account's owner (once the spacing has passed) log in as
//! usual. docs/semantics.md ("Sessions") states the rule.
//!
//! Kept in memory only, on the replica that leads (it is never replicated): a restart or
//! a failover forgets it, which costs an attacker a restart or failover of ours, never
//! the owner's account. Bounded: at most [`MAX_ACCOUNTS`] accounts are tracked, and
//! usernames are at most 32 ASCII characters, so the table stays under a few MiB.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use agora_domain::Role;
use agora_proto::{ApiError, ErrorCode};

use agora_replication::Clock;

/// Wrong passwords allowed in a row before tries are spaced out.
pub const FREE_FAILURES: u32 = 5;
/// Once throttled, one try per this long.
pub const SPACING_MS: i64 = 10_000;
/// Failures older than this are forgotten.
const FORGET_MS: i64 = 15 * 60_000;
/// Most accounts tracked at once.
const MAX_ACCOUNTS: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last_ms: i64,
}

/// Recent failed logins per account.
#[derive(Debug)]
pub struct LoginThrottle {
    clock: Clock,
    // Held for one lookup or update; nothing awaits under it.
    failures: Mutex<HashMap<(Role, String), Failures>>,
}

fn key(role: Role, username: &str) -> (Role, String) {
    (role, username.to_ascii_lowercase())
}

impl LoginThrottle {
    /// An empty table on `clock`.
    pub fn new(clock: Clock) -> Self {
        LoginThrottle { clock, failures: Mutex::new(HashMap::new()) }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<(Role, String), Failures>> {
        self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `Err(overloaded)` if this account has failed too often to be tried now.
    pub fn check(&self, role: Role, username: &str) -> Result<(), ApiError> {
        let now = self.clock.now_ms();
        let Some(f) = self.lock().get(&key(role, username)).copied() else { return Ok(()) };
        let wait = f.last_ms + SPACING_MS - now;
        if f.count >= FREE_FAILURES && wait > 0 && now - f.last_ms < FORGET_MS {
            return Err(ApiError::new(
                ErrorCode::Overloaded,
                format!(
                    "too many wrong passwords for this account: try again in {} s",
                    (wait + 999) / 1000
                ),
            ));
        }
        Ok(())
    }

    /// Records a wrong password (or unknown username) for this account.
    pub fn failed(&self, role: Role, username: &str) {
        let now = self.clock.now_ms();
        let mut map = self.lock();
        if map.len() >= MAX_ACCOUNTS && !map.contains_key(&key(role, username)) {
            map.retain(|_, f| now - f.last_ms < FORGET_MS);
            if map.len() >= MAX_ACCOUNTS {
                // Still full of fresh entries: drop the oldest tenth.
                let mut ages: Vec<i64> = map.values().map(|f| f.last_ms).collect();
                ages.sort_unstable();
                let cut = ages[ages.len() / 10];
                map.retain(|_, f| f.last_ms > cut);
            }
        }
        let entry = map.entry(key(role, username)).or_insert(Failures { count: 0, last_ms: now });
        if now - entry.last_ms >= FORGET_MS {
            entry.count = 0;
        }
        entry.count = entry.count.saturating_add(1);
        entry.last_ms = now;
    }

    /// A successful login clears the account's failures.
    pub fn succeeded(&self, role: Role, username: &str) {
        self.lock().remove(&key(role, username));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guesses_are_spaced_out_after_five_and_a_success_clears_them() {
        let clock = Clock::manual(1_000_000);
        let throttle = LoginThrottle::new(clock.clone());
        for _ in 0..FREE_FAILURES {
            assert!(throttle.check(Role::Buyer, "bea").is_ok());
            throttle.failed(Role::Buyer, "bea");
        }
        let refused = throttle.check(Role::Buyer, "BEA").expect_err("throttled");
        assert_eq!(refused.code, ErrorCode::Overloaded);
        assert!(refused.message.contains("10 s"), "{}", refused.message);
        // Another account, and the same name as a seller, are not affected.
        assert!(throttle.check(Role::Buyer, "cy").is_ok());
        assert!(throttle.check(Role::Seller, "bea").is_ok());
        clock.advance(std::time::Duration::from_millis(SPACING_MS as u64 - 1));
        assert!(throttle.check(Role::Buyer, "bea").is_err());
        clock.advance(std::time::Duration::from_millis(1));
        assert!(throttle.check(Role::Buyer, "bea").is_ok());
        throttle.succeeded(Role::Buyer, "bea");
        throttle.failed(Role::Buyer, "bea");
        assert!(throttle.check(Role::Buyer, "bea").is_ok());
    }

    #[test]
    fn the_table_stays_bounded() {
        let throttle = LoginThrottle::new(Clock::manual(0));
        for i in 0..MAX_ACCOUNTS + 100 {
            throttle.failed(Role::Buyer, &format!("user{i}"));
        }
        assert!(throttle.lock().len() <= MAX_ACCOUNTS);
    }
}
