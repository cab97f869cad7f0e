//! Logins and sign-ups per client address: each address may start [`RATE_PER_S`] a second
//! on average, in bursts of up to [`BURST`]; past that the frontend answers `overloaded`
//! without asking the customer database. One address cannot then take the password
//! hashing that every user's login needs (docs/semantics.md, "Accounts").
//!
//! Per frontend and in memory, like the rest of a frontend's state: it is a brake on a
//! flood, not a record. Bounded: at most [`MAX_ADDRESSES`] addresses (fixed-size keys).
//! Addresses of this host (loopback) are not limited unless asked: a reverse proxy or a
//! load test on the same machine would otherwise share one allowance.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use agora_proto::{ApiError, ErrorCode};

/// Logins and sign-ups per second one address may start, on average.
pub const RATE_PER_S: f64 = 5.0;
/// How many one address may start at once after a quiet spell.
pub const BURST: f64 = 20.0;
/// Most addresses tracked; past it, the addresses whose bucket has refilled go first.
const MAX_ADDRESSES: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets per client address.
#[derive(Debug, Default)]
pub struct AddressThrottle {
    /// Whether loopback addresses are limited too.
    loopback: bool,
    // Held for one lookup and update; nothing awaits under it.
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl AddressThrottle {
    /// A throttle that limits loopback addresses too if `loopback`.
    pub fn new(loopback: bool) -> Self {
        AddressThrottle { loopback, buckets: Mutex::default() }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<IpAddr, Bucket>> {
        self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes one login from `address`'s allowance, or says `overloaded` if it is spent.
    /// An unknown address (no server loop said) is not limited here.
    pub fn admit(&self, address: Option<IpAddr>) -> Result<(), ApiError> {
        match address {
            Some(address) if self.loopback || !address.is_loopback() => {
                self.admit_at(address, Instant::now())
            }
            _ => Ok(()),
        }
    }

    fn admit_at(&self, address: IpAddr, now: Instant) -> Result<(), ApiError> {
        let mut buckets = self.lock();
        if buckets.len() >= MAX_ADDRESSES && !buckets.contains_key(&address) {
            buckets.retain(|_, b| refilled(*b, now) < BURST);
            if buckets.len() >= MAX_ADDRESSES {
                buckets.clear();
            }
        }
        let bucket = buckets.entry(address).or_insert(Bucket { tokens: BURST, at: now });
        bucket.tokens = refilled(*bucket, now);
        bucket.at = now;
        if bucket.tokens < 1.0 {
            return Err(ApiError::new(
                ErrorCode::Overloaded,
                "too many logins and sign-ups from your address; try again in a few seconds",
            ));
        }
        bucket.tokens -= 1.0;
        Ok(())
    }
}

fn refilled(bucket: Bucket, now: Instant) -> f64 {
    let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
    (bucket.tokens + elapsed * RATE_PER_S).min(BURST)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn an_address_gets_a_burst_then_its_rate() {
        let throttle = AddressThrottle::default();
        let (one, other) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        let start = Instant::now();
        for _ in 0..BURST as usize {
            assert!(throttle.admit_at(one, start).is_ok());
        }
        let refused = throttle.admit_at(one, start).expect_err("burst spent");
        assert_eq!(refused.code, ErrorCode::Overloaded);
        assert!(throttle.admit_at(other, start).is_ok(), "other addresses are not affected");
        let later = start + Duration::from_secs_f64(1.0 / RATE_PER_S);
        assert!(throttle.admit_at(one, later).is_ok());
        assert!(throttle.admit_at(one, later).is_err());
        assert!(throttle.admit(None).is_ok());
        let local = Some(IpAddr::from([127, 0, 0, 1]));
        for _ in 0..2 * BURST as usize {
            assert!(throttle.admit(local).is_ok(), "loopback is limited only when asked");
        }
        let strict = AddressThrottle::new(true);
        for _ in 0..BURST as usize {
            assert!(strict.admit(local).is_ok());
        }
        assert!(strict.admit(local).is_err());
    }

    #[test]
    fn the_table_stays_bounded() {
        let throttle = AddressThrottle::default();
        let now = Instant::now();
        for i in 0..MAX_ADDRESSES as u32 + 100 {
            let _ = throttle.admit_at(IpAddr::from(i.to_be_bytes()), now);
        }
        assert!(throttle.lock().len() <= MAX_ADDRESSES);
    }
}
