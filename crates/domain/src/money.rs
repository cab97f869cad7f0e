//! Money as a whole number of cents: never a binary float on the books.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Invalid;

/// An amount of money in cents, in the marketplace's one currency, US dollars
/// (docs/semantics.md, "Money"). Parsed from and shown as `12.34`, as programs get it;
/// [`Money::shown`] adds the currency, for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Money(i64);

impl Money {
    /// The largest price an item may have: 1,000,000.00.
    pub const MAX_PRICE: Money = Money(100_000_000);

    /// An amount of `cents` cents.
    pub const fn from_cents(cents: i64) -> Self {
        Money(cents)
    }

    /// The amount in cents.
    pub const fn cents(self) -> i64 {
        self.0
    }

    /// Checks that this is a valid sale price: from 0.01 to 1,000,000.00.
    pub fn check_price(self) -> Result<Self, Invalid> {
        if self.0 < 1 || self > Self::MAX_PRICE {
            return Err(Invalid::new("price", "must be from 0.01 to 1000000.00"));
        }
        Ok(self)
    }

    /// The amount with its currency, as pages and tables show it: `$12.34`.
    pub fn shown(self) -> String {
        if self.0 < 0 {
            return format!("-${}", Money(self.0.saturating_neg()));
        }
        format!("${self}")
    }

    /// `self * quantity`, or `None` on overflow.
    pub fn checked_mul(self, quantity: u32) -> Option<Money> {
        self.0.checked_mul(i64::from(quantity)).map(Money)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

impl FromStr for Money {
    type Err = Invalid;

    /// Accepts `12`, `12.3` and `12.34`; refuses signs, exponents and a third decimal.
    fn from_str(s: &str) -> Result<Self, Invalid> {
        let bad = || Invalid::new("price", "must be an amount like 12.34 (at most two decimals)");
        let s = s.trim();
        let (whole, frac) = match s.split_once('.') {
            Some((whole, frac)) => (whole, Some(frac)),
            None => (s, None),
        };
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        let frac_ok = frac.is_none_or(|f| digits(f) && f.len() <= 2);
        if !digits(whole) || !frac_ok || whole.len() > 12 {
            return Err(bad());
        }
        let whole: i64 = whole.parse().map_err(|_| bad())?;
        let frac: i64 = match frac {
            None => 0,
            Some(f) if f.len() == 1 => f.parse::<i64>().map_err(|_| bad())? * 10,
            Some(f) => f.parse().map_err(|_| bad())?,
        };
        Ok(Money(whole * 100 + frac))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn people_see_the_currency() {
        assert_eq!(Money::from_cents(150).shown(), "$1.50");
        assert_eq!(Money::from_cents(-5).shown(), "-$0.05");
        assert_eq!(Money::from_cents(150).to_string(), "1.50", "programs get the bare amount");
    }

    #[test]
    fn parses_and_prints_cents_exactly() {
        for (text, cents, shown) in [
            ("12.34", 1234, "12.34"),
            ("12", 1200, "12.00"),
            ("0.5", 50, "0.50"),
            ("0.07", 7, "0.07"),
        ] {
            let m: Money = text.parse().expect(text);
            assert_eq!(m.cents(), cents);
            assert_eq!(m.to_string(), shown);
        }
    }

    #[test]
    fn refuses_what_is_not_an_amount() {
        for text in ["", "-1", "1.234", "1e3", "abc", ".5", "1.", "NaN", "9999999999999"] {
            assert!(text.parse::<Money>().is_err(), "{text:?} parsed");
        }
    }

    #[test]
    fn price_limits() {
        assert!(Money::from_cents(0).check_price().is_err());
        assert!(Money::from_cents(1).check_price().is_ok());
        assert!(Money::MAX_PRICE.check_price().is_ok());
        assert!(Money::from_cents(Money::MAX_PRICE.cents() + 1).check_price().is_err());
    }
}
