//! The calls the bench measures ([`Api`]) and how often each simulated user makes each one
//! ([`Mix`]). The default mix and its reasoning are in docs/bench.md.

use std::fmt;
use std::str::FromStr;

use rand::{Rng, RngExt};

/// Which side of the marketplace a simulated user plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Talks to the seller server.
    Seller,
    /// Talks to the buyer server.
    Buyer,
}

/// Declares [`Api`] once: variant, report name, role, and default weight in the mix.
macro_rules! apis {
    ($($variant:ident = $name:literal, $role:ident, $weight:literal;)*) => {
        /// One call of the seller's or the buyer's interface, as the report names it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Api {
            $(
                #[doc = concat!("`", $name, "`")]
                $variant,
            )*
        }

        impl Api {
            /// Every call, sellers' first, in report order.
            pub const ALL: &'static [Api] = &[$(Api::$variant),*];

            /// The stable name used in reports, `--mix` and the JSON and CSV files.
            pub fn name(self) -> &'static str {
                match self { $(Api::$variant => $name),* }
            }

            /// Whose interface the call belongs to.
            pub fn role(self) -> Role {
                match self { $(Api::$variant => Role::$role),* }
            }

            /// Weight in the default mix, per mille of that role's draws.
            fn default_weight(self) -> f64 {
                match self { $(Api::$variant => $weight as f64),* }
            }
        }
    };
}

// Per mille of each role's draws. Reads dominate; writes are present. A user logs in
// again about once per run of 1,000 calls (the spec's scenarios give each client one
// session per run) and one user in five signs up anew per run; docs/bench.md says why
// these rates matter so much (each is an argon2 hash, ~12 ms of a core).
// `relogin` is Logout, after which the user's next call is Login: two calls per draw.
apis! {
    SellerDisplayItems = "seller.display_items", Seller, 456.8;
    SellerRating = "seller.rating", Seller, 302;
    SellerRegisterItem = "seller.register_item", Seller, 80;
    SellerChangePrice = "seller.change_price", Seller, 80;
    SellerUpdateUnits = "seller.update_units", Seller, 80;
    SellerRelogin = "seller.relogin", Seller, 1;
    SellerLogin = "seller.login", Seller, 0;
    SellerCreateAccount = "seller.create_account", Seller, 0.2;
    BuyerSearch = "buyer.search", Buyer, 306.8;
    BuyerGetItem = "buyer.get_item", Buyer, 252;
    BuyerDisplayCart = "buyer.display_cart", Buyer, 150;
    BuyerSellerRating = "buyer.seller_rating", Buyer, 100;
    BuyerPurchases = "buyer.purchases", Buyer, 50;
    BuyerAddToCart = "buyer.add_to_cart", Buyer, 50;
    BuyerRemoveFromCart = "buyer.remove_from_cart", Buyer, 25;
    BuyerFeedback = "buyer.feedback", Buyer, 25;
    BuyerSaveCart = "buyer.save_cart", Buyer, 20;
    BuyerClearCart = "buyer.clear_cart", Buyer, 10;
    BuyerMakePurchase = "buyer.make_purchase", Buyer, 10;
    BuyerRelogin = "buyer.relogin", Buyer, 1;
    BuyerLogin = "buyer.login", Buyer, 0;
    BuyerCreateAccount = "buyer.create_account", Buyer, 0.2;
}

impl Api {
    /// Its position in [`Api::ALL`], for per-call arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether the mix can draw it. Login is never drawn: it follows a relogin's Logout
    /// (and any call that found the user logged out).
    pub fn drawable(self) -> bool {
        !matches!(self, Api::SellerLogin | Api::BuyerLogin)
    }

    /// The Logout of a relogin is reported under its own name, so the report has a row for
    /// every call of both interfaces: `seller.logout`, `buyer.logout`.
    pub fn report_name(self) -> &'static str {
        match self {
            Api::SellerRelogin => "seller.logout",
            Api::BuyerRelogin => "buyer.logout",
            other => other.name(),
        }
    }
}

impl fmt::Display for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.report_name())
    }
}

impl FromStr for Api {
    type Err = String;

    /// A full name (`buyer.search`), the Logout alias of a relogin (`buyer.logout`), or a
    /// name without its role when only one role has it (`search`).
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let exact = Api::ALL.iter().find(|a| a.name() == s || a.report_name() == s);
        if let Some(api) = exact {
            return Ok(*api);
        }
        let short: Vec<Api> = Api::ALL
            .iter()
            .copied()
            .filter(|a| a.name().split_once('.').is_some_and(|(_, rest)| rest == s))
            .collect();
        match short.as_slice() {
            [one] => Ok(*one),
            [] => Err(format!("unknown call {s:?}; the calls are: {}", names())),
            _ => Err(format!(
                "{s:?} is both a seller and a buyer call: write seller.{s} or buyer.{s}"
            )),
        }
    }
}

fn names() -> String {
    Api::ALL.iter().filter(|a| a.drawable()).map(|a| a.name()).collect::<Vec<_>>().join(", ")
}

/// How often each call is drawn: one weight per drawable [`Api`]. Weights are relative
/// within a role; a zero weight means never.
#[derive(Debug, Clone, PartialEq)]
pub struct Mix {
    weights: Vec<f64>,
}

impl Default for Mix {
    fn default() -> Self {
        Mix { weights: Api::ALL.iter().map(|a| a.default_weight()).collect() }
    }
}

impl Mix {
    /// The weight of `api`.
    pub fn weight(&self, api: Api) -> f64 {
        self.weights[api.index()]
    }

    /// Whether the mix draws any call of `role`.
    pub fn has_calls(&self, role: Role) -> bool {
        Api::ALL.iter().any(|a| a.role() == role && self.weight(*a) > 0.0)
    }

    /// `(name, weight)` for every drawable call, in report order.
    pub fn entries(&self) -> Vec<(&'static str, f64)> {
        Api::ALL.iter().filter(|a| a.drawable()).map(|a| (a.name(), self.weight(*a))).collect()
    }

    /// Draws the next call for a user of `role`. With `last` (one call left in the run),
    /// a relogin is not drawn, so the run ends logged in and the count of calls is exact.
    pub fn draw(&self, role: Role, rng: &mut impl Rng, last: bool) -> Option<Api> {
        let eligible = |a: &&Api| {
            a.role() == role
                && !(last && matches!(a, Api::SellerRelogin | Api::BuyerRelogin))
                && self.weight(**a) > 0.0
        };
        let total: f64 = Api::ALL.iter().filter(eligible).map(|a| self.weight(*a)).sum();
        if total <= 0.0 {
            return None;
        }
        let mut ticket = rng.random_range(0.0..total);
        let mut chosen = None;
        for api in Api::ALL.iter().filter(eligible) {
            chosen = Some(*api);
            ticket -= self.weight(*api);
            if ticket < 0.0 {
                break;
            }
        }
        chosen
    }
}

impl FromStr for Mix {
    type Err = String;

    /// `name=weight,...`. Calls not named get weight 0, unless the list starts with
    /// `default`, which starts from the default mix and changes only the calls named.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = s.split(',').map(str::trim).filter(|p| !p.is_empty()).peekable();
        let mut mix = if parts.peek() == Some(&"default") {
            parts.next();
            Mix::default()
        } else {
            Mix { weights: vec![0.0; Api::ALL.len()] }
        };
        for part in parts {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?} is not name=weight (e.g. buyer.search=30)"))?;
            let api: Api = name.parse()?;
            if !api.drawable() {
                return Err(format!(
                    "{name} is not drawn by itself: it follows a relogin's logout; weight {} instead",
                    if api.role() == Role::Seller { "seller.relogin" } else { "buyer.relogin" }
                ));
            }
            let weight: f64 = weight
                .trim()
                .parse()
                .ok()
                .filter(|w: &f64| w.is_finite() && *w >= 0.0)
                .ok_or_else(|| format!("weight of {name} must be a number >= 0, not {weight:?}"))?;
            mix.weights[api.index()] = weight;
        }
        if !mix.has_calls(Role::Seller) && !mix.has_calls(Role::Buyer) {
            return Err("the mix gives every call weight 0".into());
        }
        Ok(mix)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    use super::*;

    #[test]
    fn every_call_has_a_unique_name_that_parses_back() {
        for api in Api::ALL {
            assert_eq!(api.name().parse::<Api>(), Ok(*api));
            assert_eq!(api.report_name().parse::<Api>(), Ok(*api));
        }
        let mut names: Vec<_> = Api::ALL.iter().map(|a| a.report_name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Api::ALL.len());
    }

    #[test]
    fn short_names_must_be_unambiguous() {
        assert_eq!("search".parse::<Api>(), Ok(Api::BuyerSearch));
        assert!("create_account".parse::<Api>().unwrap_err().contains("seller.create_account"));
        assert!("nothing".parse::<Api>().unwrap_err().contains("unknown call"));
    }

    #[test]
    fn a_mix_names_what_it_draws() {
        let mix: Mix = "search=1".parse().unwrap();
        assert!(mix.has_calls(Role::Buyer));
        assert!(!mix.has_calls(Role::Seller));
        let mut rng = SmallRng::seed_from_u64(1);
        for _ in 0..100 {
            assert_eq!(mix.draw(Role::Buyer, &mut rng, false), Some(Api::BuyerSearch));
        }
        assert_eq!(mix.draw(Role::Seller, &mut rng, false), None);

        assert!("default,buyer.login=1".parse::<Mix>().unwrap_err().contains("buyer.relogin"));
        let tweaked: Mix = "default,buyer.relogin=0".parse().unwrap();
        assert_eq!(tweaked.weight(Api::BuyerRelogin), 0.0);
        assert_eq!(tweaked.weight(Api::BuyerSearch), Mix::default().weight(Api::BuyerSearch));
        assert!("search=-1".parse::<Mix>().is_err());
        assert!("search=0".parse::<Mix>().is_err());
    }

    #[test]
    fn the_default_mix_draws_every_call_of_both_roles() {
        let mix = Mix::default();
        let mut rng = SmallRng::seed_from_u64(7);
        let mut seen = std::collections::HashSet::new();
        for role in [Role::Seller, Role::Buyer] {
            for _ in 0..20_000 {
                seen.insert(mix.draw(role, &mut rng, false).unwrap());
            }
        }
        for api in Api::ALL.iter().filter(|a| a.drawable()) {
            assert!(seen.contains(api), "{api} never drawn");
        }
        let sellers: f64 =
            Api::ALL.iter().filter(|a| a.role() == Role::Seller).map(|a| mix.weight(*a)).sum();
        let buyers: f64 =
            Api::ALL.iter().filter(|a| a.role() == Role::Buyer).map(|a| mix.weight(*a)).sum();
        assert_eq!((sellers, buyers), (1000.0, 1000.0));
    }

    #[test]
    fn the_last_call_of_a_run_is_never_a_relogin() {
        let mix: Mix = "buyer.relogin=1,buyer.get_item=1".parse().unwrap();
        let mut rng = SmallRng::seed_from_u64(3);
        for _ in 0..100 {
            assert_eq!(mix.draw(Role::Buyer, &mut rng, true), Some(Api::BuyerGetItem));
        }
    }
}
