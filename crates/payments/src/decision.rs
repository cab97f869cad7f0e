//! What a card processor would say to a charge: taken by the handler, before it proposes,
//! because it depends on this process's configuration and clock. Pure functions of their
//! arguments.

use agora_domain::{Card, Money, UserId};
use agora_proto::messages::payments::Outcome;
use sha2::{Digest, Sha256};

/// The processor's policy: which valid, unexpired cards it approves.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Approver {
    /// Chance that a valid, unexpired card is approved, 0 to 1.
    pub probability: f64,
    /// Seed of the approval roll.
    pub seed: u64,
}

impl Approver {
    /// The decision for a charge of `amount` to `card` for `payer` under `key`, at
    /// `now_ms`. A number failing the Luhn check, or a card past its expiry month, is
    /// declined as a processor would; any other card is approved if the roll, a hash of
    /// the seed and the key, falls under the probability: the same key always rolls the
    /// same, so tests and retries are deterministic.
    pub fn decide(
        &self,
        key: &str,
        card: &Card,
        amount: Money,
        payer: UserId,
        now_ms: i64,
    ) -> Outcome {
        if !luhn(&card.number) {
            return Outcome::Declined { reason: "invalid card number".into() };
        }
        let (year, month) = Card::expiry_month(&card.expiry).unwrap_or((0, 0));
        let (this_year, this_month) = year_month(now_ms);
        if (year, month) < (this_year, this_month) {
            return Outcome::Declined { reason: format!("card expired {}", card.expiry) };
        }
        let digest = Sha256::digest(format!("{}:{key}", self.seed).as_bytes());
        let roll =
            u64::from_be_bytes(digest[..8].try_into().unwrap_or([0; 8])) as f64 / u64::MAX as f64;
        if roll >= self.probability {
            return Outcome::Declined { reason: "declined by the issuer".into() };
        }
        let authorization: String = digest[8..14].iter().map(|b| format!("{b:02X}")).collect();
        Outcome::Approved { authorization, amount, payer }
    }
}

/// Whether `number` passes the Luhn check digit.
pub fn luhn(number: &str) -> bool {
    let mut sum = 0;
    for (i, b) in number.bytes().rev().enumerate() {
        if !b.is_ascii_digit() {
            return false;
        }
        let mut d = u32::from(b - b'0');
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    !number.is_empty() && sum % 10 == 0
}

/// (year, month) of a Unix time in ms, UTC.
fn year_month(ms: i64) -> (i32, u32) {
    // Civil-from-days (Howard Hinnant's algorithm), to avoid a date library for one use.
    let days = ms.div_euclid(86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
    (year, month)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_check_digit() {
        assert!(luhn("4111111111111111"));
        assert!(luhn("79927398713"));
        assert!(!luhn("4111111111111112"));
        assert!(!luhn(""));
    }

    #[test]
    fn calendar() {
        assert_eq!(year_month(0), (1970, 1));
        assert_eq!(year_month(1_700_000_000_000), (2023, 11));
        assert_eq!(year_month(951_782_400_000), (2000, 2)); // 2000-02-29
    }
}
