//! Agora's domain: the objects of the marketplace, their limits and the rules that check
//! them. Pure data and functions, no I/O, so every component (and every client) applies the
//! same rules and names the same field when it refuses something.

mod category;
mod item;
mod limits;
mod money;

pub use category::{CATEGORIES_MAX, Categories, Category, CategoryCount};
pub use item::{
    Account, Card, CartLine, Condition, Feedback, Item, ItemId, NewItem, Page, Purchase,
    PurchaseLine, Role, SellerRating, UserId,
};
pub use limits::*;
pub use money::Money;

/// A value outside the contract's limits: which field, and which rule it broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {rule}")]
pub struct Invalid {
    /// The field as the user knows it (`name`, `keywords`, `price`, ...).
    pub field: &'static str,
    /// The rule, phrased so that the message alone tells the user what to change.
    pub rule: String,
}

impl Invalid {
    /// A refusal of `field` for breaking `rule`.
    pub fn new(field: &'static str, rule: impl Into<String>) -> Self {
        Invalid { field, rule: rule.into() }
    }
}
