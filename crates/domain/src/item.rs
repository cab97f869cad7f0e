//! Items, accounts, carts and the small records the interfaces return.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Invalid, Money, PAGE_DEFAULT, PAGE_MAX, check_keywords, check_name, check_quantity};

/// A seller or buyer id: unique, assigned by the customer database.
pub type UserId = u64;

/// Which side of the marketplace an account or session belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Lists items for sale.
    Seller,
    /// Searches, fills carts and buys.
    Buyer,
}

impl Role {
    /// `seller` or `buyer`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Seller => "seller",
            Role::Buyer => "buyer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An item id: the seller's category and a number the product database assigns.
/// The number alone is unique; the category is part of the id because the contract says so,
/// and an id whose category does not match its number names no item. Written `3:17`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ItemId {
    /// The category the seller chose.
    pub category: u32,
    /// The number the product database assigned, unique across categories.
    pub number: u64,
}

impl fmt::Display for ItemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.category, self.number)
    }
}

impl FromStr for ItemId {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Invalid> {
        let bad = || Invalid::new("item", format!("{s:?} is not an item id like 3:17"));
        let (category, number) = s.trim().split_once(':').ok_or_else(bad)?;
        Ok(ItemId {
            category: category.parse().map_err(|_| bad())?,
            number: number.parse().map_err(|_| bad())?,
        })
    }
}

/// The state of an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Condition {
    /// Never used.
    New,
    /// Second hand.
    Used,
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Condition::New => "new",
            Condition::Used => "used",
        })
    }
}

impl FromStr for Condition {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Invalid> {
        match s.trim().to_ascii_lowercase().as_str() {
            "new" => Ok(Condition::New),
            "used" => Ok(Condition::Used),
            _ => Err(Invalid::new("condition", "must be new or used")),
        }
    }
}

/// Thumbs up and thumbs down, for an item or (summed over its items) a seller.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feedback {
    /// Thumbs up.
    pub up: u64,
    /// Thumbs down.
    pub down: u64,
}

/// What a seller fills in to list an item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewItem {
    /// 1 to 32 characters, not unique.
    pub name: String,
    /// Any category number.
    pub category: u32,
    /// Up to five keywords of up to eight characters.
    pub keywords: Vec<String>,
    /// New or used.
    pub condition: Condition,
    /// Sale price, 0.01 to 1,000,000.00.
    pub price: Money,
    /// Units for sale, 1 to 1,000,000.
    pub quantity: u32,
}

impl NewItem {
    /// Checks every field against the contract, and returns the item with its name trimmed
    /// and its keywords normalised (see [`check_keywords`]).
    pub fn validate(self) -> Result<NewItem, Invalid> {
        Ok(NewItem {
            name: check_name("name", &self.name)?,
            keywords: check_keywords(&self.keywords)?,
            price: self.price.check_price()?,
            quantity: check_quantity(self.quantity)?,
            ..self
        })
    }
}

/// An item as the marketplace shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// Its id.
    pub id: ItemId,
    /// Its name.
    pub name: String,
    /// Its keywords, lower-case.
    pub keywords: Vec<String>,
    /// New or used.
    pub condition: Condition,
    /// Current sale price.
    pub price: Money,
    /// Units still for sale.
    pub quantity: u32,
    /// The seller who listed it.
    pub seller_id: UserId,
    /// Buyers' votes on it.
    pub feedback: Feedback,
}

/// A seller's public record: what GetSellerRating returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SellerRating {
    /// The seller's id.
    pub seller_id: UserId,
    /// The seller's display name.
    pub name: String,
    /// Votes summed over all the seller's items.
    pub feedback: Feedback,
    /// Units the seller has sold.
    pub items_sold: u64,
}

/// An account as its owner sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The id.
    pub id: UserId,
    /// Seller or buyer.
    pub role: Role,
    /// The unique login name.
    pub username: String,
    /// The display name.
    pub name: String,
    /// Units sold (sellers) or purchased (buyers).
    pub items_count: u64,
}

/// One line of a cart: an item and how many units of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartLine {
    /// The item.
    pub item: ItemId,
    /// Units in the cart.
    pub quantity: u32,
}

/// One line of a completed purchase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurchaseLine {
    /// The item bought.
    pub item: ItemId,
    /// The seller it was bought from.
    pub seller_id: UserId,
    /// Its name at the time.
    pub name: String,
    /// Units bought.
    pub quantity: u32,
    /// Unit price at the time.
    pub unit_price: Money,
}

/// A completed purchase in a buyer's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Purchase {
    /// The purchase's id.
    pub id: u64,
    /// When it happened, Unix milliseconds.
    pub at_unix_ms: i64,
    /// What was bought.
    pub lines: Vec<PurchaseLine>,
    /// The amount charged.
    pub total: Money,
}

/// Which slice of a list to return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    /// Entries to skip.
    pub offset: u32,
    /// Most entries to return, 1 to [`PAGE_MAX`].
    pub limit: u32,
}

impl Default for Page {
    fn default() -> Self {
        Page { offset: 0, limit: PAGE_DEFAULT }
    }
}

impl Page {
    /// Checks the limit against [`PAGE_MAX`].
    pub fn validate(self) -> Result<Page, Invalid> {
        if self.limit == 0 || self.limit > PAGE_MAX {
            return Err(Invalid::new("limit", format!("must be from 1 to {PAGE_MAX}")));
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_two_digits_slash_two_digits() {
        assert_eq!(Card::expiry_month("09/29"), Some((2029, 9)));
        assert_eq!(Card::expiry_month(" 12/99 "), Some((2099, 12)));
        for bad in
            ["+1/99", "1/99", "01/+9", "13/29", "00/29", "0a/29", "09-29", "09/2029", "٠٩/٢٩"]
        {
            assert_eq!(Card::expiry_month(bad), None, "{bad}");
        }
    }

    #[test]
    fn item_ids_round_trip() {
        let id: ItemId = "3:17".parse().expect("parses");
        assert_eq!(id, ItemId { category: 3, number: 17 });
        assert_eq!(id.to_string(), "3:17");
        for bad in ["3", "3:", ":17", "-1:2", "a:b", "3:17:1"] {
            assert!(bad.parse::<ItemId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn new_item_validation_names_the_field() {
        let item = NewItem {
            name: "Blue pen".into(),
            category: 3,
            keywords: vec!["Pen".into()],
            condition: Condition::New,
            price: Money::from_cents(150),
            quantity: 10,
        };
        let ok = item.clone().validate().expect("valid");
        assert_eq!(ok.keywords, vec!["pen".to_string()]);
        let err = NewItem { quantity: 0, ..item.clone() }.validate().expect_err("quantity 0");
        assert_eq!(err.field, "quantity");
        let err = NewItem { name: "x".repeat(40), ..item }.validate().expect_err("long name");
        assert_eq!(err.field, "name");
    }
}

/// Card details for a purchase. Checked for form here; whether the card is good (Luhn
/// check digit, expiry, funds) is for the payments service to decide.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Card {
    /// The cardholder's name, 1 to 64 characters.
    pub holder: String,
    /// 12 to 19 digits; spaces and dashes are ignored.
    pub number: String,
    /// Expiry month and year, `MM/YY`.
    pub expiry: String,
}

impl fmt::Debug for Card {
    // Never print a card number, even in debug logs: only its last four digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Card")
            .field("holder", &self.holder)
            .field("number", &format_args!("****{}", self.last4()))
            .field("expiry", &self.expiry)
            .finish()
    }
}

impl Card {
    /// The card with its number reduced to digits and every field checked for form.
    pub fn validate(self) -> Result<Card, Invalid> {
        let holder = self.holder.trim();
        if holder.is_empty() || holder.chars().count() > 64 || holder.chars().any(char::is_control)
        {
            return Err(Invalid::new("card holder", "must be 1 to 64 characters"));
        }
        let number: String = self.number.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
        if !(12..=19).contains(&number.len()) || !number.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Invalid::new("card number", "must be 12 to 19 digits"));
        }
        if Card::expiry_month(&self.expiry).is_none() {
            return Err(Invalid::new("card expiry", "must be MM/YY, e.g. 09/29"));
        }
        Ok(Card { holder: holder.to_owned(), number, expiry: self.expiry.trim().to_owned() })
    }

    /// The last four digits of the number.
    pub fn last4(&self) -> &str {
        let n = self.number.len();
        self.number.get(n.saturating_sub(4)..).unwrap_or("")
    }

    /// `MM/YY` as (year, month), e.g. `(2029, 9)`.
    pub fn expiry_month(expiry: &str) -> Option<(i32, u32)> {
        let (mm, yy) = expiry.trim().split_once('/')?;
        // Digits only: `parse` alone would take `+1` as a month.
        let two_digits = |part: &str| part.len() == 2 && part.bytes().all(|b| b.is_ascii_digit());
        if !two_digits(mm) || !two_digits(yy) {
            return None;
        }
        let month: u32 = mm.parse().ok()?;
        let year: i32 = yy.parse().ok()?;
        (1..=12).contains(&month).then_some((2000 + year, month))
    }
}
