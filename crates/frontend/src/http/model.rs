//! The JSON shapes of the HTTP API: item ids as `"3:17"`, money as decimal strings
//! (`"12.34"`, never a float), conditions and votes as lower-case words. Each type derives
//! its OpenAPI schema, so /openapi.json is generated from the very types the routes use.
//!
//! Patterns in the schemas state the domain's rules exactly (crates/domain/src/limits.rs),
//! including its trimming of surrounding white space, so that generated clients and
//! property-based testers agree with the server on what is valid.

use agora_domain::{
    Card, CartLine, Categories, CategoryCount, Condition, Feedback, Item, ItemId, Money, NewItem,
    PAGE_DEFAULT, Page, Purchase, SellerRating,
};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{Array, ArrayBuilder, Object, ObjectBuilder, Type};
use utoipa::{IntoParams, ToSchema};

use super::error::Error;
use super::extract::QueryParams;

// White space as Rust's `str::trim` sees it, and the characters names and keywords may not
// hold (agora_domain's `invisible`: Unicode Cc, Cf in the Basic Multilingual Plane, Zl,
// Zp), as regular-expression character ranges.
macro_rules! ws {
    () => {
        r"\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
    };
}
macro_rules! ctrl {
    () => {
        r"\x00-\x1f\x7f-\x9f\xad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb"
    };
}
/// 1 to 32 characters once trimmed, none of them a control character (`check_name`).
macro_rules! name {
    () => {
        concat!(
            "[",
            ws!(),
            "]*[^",
            ws!(),
            ctrl!(),
            "]([^",
            ctrl!(),
            "]{0,30}[^",
            ws!(),
            ctrl!(),
            "])?[",
            ws!(),
            "]*"
        )
    };
}

/// An item's name (`check_name`).
const NAME: &str = concat!("^", name!(), "$");
/// An account's display name: blank (then the username) or a name.
const ACCOUNT_NAME: &str = concat!("^([", ws!(), "]*|", name!(), ")$");
/// A keyword (`check_keywords`): trimmed, 1 to 8 characters, no space or control character.
/// Leaves out `İ` (U+0130), the one character whose lower case is two characters long: the
/// rule counts characters after lower-casing.
const KEYWORD: &str = concat!("^[", ws!(), "]*[^", ws!(), ctrl!(), r"\u0130]{1,8}[", ws!(), "]*$");
/// A price (`Money::from_str` and `check_price`): 0.01 to 1000000.00, at most two decimals.
const PRICE: &str = concat!(
    "^[",
    ws!(),
    r"]*(0\.(0[1-9]|[1-9][0-9]?)|[1-9][0-9]{0,5}(\.[0-9]{1,2})?|1000000(\.00?)?)[",
    ws!(),
    "]*$"
);
/// An item id (`ItemId::from_str`), `category:number`.
pub const ITEM_ID: &str = concat!("^[", ws!(), r"]*\+?[0-9]{1,9}:\+?[0-9]{1,18}[", ws!(), "]*$");

/// A card holder (`Card::validate`): 1 to 64 characters once trimmed, no control character.
const CARD_HOLDER: &str = concat!(
    "^[",
    ws!(),
    "]*[^",
    ws!(),
    ctrl!(),
    "]([^",
    ctrl!(),
    "]{0,62}[^",
    ws!(),
    ctrl!(),
    "])?[",
    ws!(),
    "]*$"
);
/// A card number: 12 to 19 digits; spaces and dashes are ignored.
const CARD_NUMBER: &str = r"^[ \-]*([0-9][ \-]*){12,19}$";
/// A card's expiry, `MM/YY`: two digits each side.
const CARD_EXPIRY: &str = concat!("^[", ws!(), r"]*(0[1-9]|1[0-2])/[0-9]{2}[", ws!(), "]*$");
/// A purchase key: 1 to 64 visible ASCII characters (spaces allowed inside).
const PURCHASE_KEY: &str = r"^[\x21-\x7e]([\x20-\x7e]{0,62}[\x21-\x7e])?$";

/// A string schema with a pattern, an example and a description.
fn text(pattern: &str, example: &str, description: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(pattern))
        .examples([serde_json::json!(example)])
        .description(Some(description))
        .build()
}

fn name_schema() -> Object {
    text(
        NAME,
        "Blue pen",
        "1 to 32 characters (surrounding white space is dropped), no control characters.",
    )
}

fn account_name_schema() -> Object {
    text(
        ACCOUNT_NAME,
        "Ann's Pens",
        "Display name, 1 to 32 characters; the username if absent or blank.",
    )
}

fn keyword_schema() -> Object {
    text(KEYWORD, "pen", "1 to 8 characters without spaces; stored lower-case.")
}

/// Up to five keywords.
pub fn keywords_schema() -> Array {
    ArrayBuilder::new()
        .items(keyword_schema())
        .max_items(Some(agora_domain::KEYWORDS_MAX))
        .examples([serde_json::json!(["pen", "blue"])])
        .description(Some("Up to five keywords; duplicates are dropped."))
        .build()
}

fn price_schema() -> Object {
    text(PRICE, "12.34", "From 0.01 to 1000000.00, as a decimal string with at most two decimals.")
}

fn card_holder_schema() -> Object {
    text(CARD_HOLDER, "Bea Buyer", "The cardholder's name, 1 to 64 characters.")
}

fn card_number_schema() -> Object {
    text(CARD_NUMBER, "4111 1111 1111 1111", "12 to 19 digits; spaces and dashes are ignored.")
}

fn card_expiry_schema() -> Object {
    text(CARD_EXPIRY, "09/29", "Expiry month and year, `MM/YY`.")
}

fn purchase_key_schema() -> Object {
    text(
        PURCHASE_KEY,
        "3f2a9c1e-7d4b-4e0a-9b1c-2d5e8f7a6b3c",
        "Makes a retry safe: a key this buyer already used answers with that purchase's \
         outcome instead of buying again. Without one, every request is a new purchase.",
    )
}

/// An item id in a body or a path.
pub fn item_id_schema() -> Object {
    text(ITEM_ID, "3:17", "An item id, `category:number`.")
}

/// A seller id in a path (`u64::from_str` after trimming).
const USER_ID: &str = concat!("^[", ws!(), r"]*\+?[0-9]{1,19}[", ws!(), "]*$");

fn user_id_schema() -> Object {
    text(USER_ID, "1", "A seller's id, a whole number.")
}

/// A whole number in `min..=max`, stating that rule (ours, not the width of the type
/// that holds it) when the value breaks it.
struct Whole {
    min: u32,
    max: u32,
}

impl Whole {
    const ANY: Whole = Whole { min: 0, max: u32::MAX };
    const QUANTITY: Whole = Whole { min: 1, max: agora_domain::QUANTITY_MAX };
    const LIMIT: Whole = Whole { min: 1, max: agora_domain::PAGE_MAX };

    fn check<E: de::Error>(&self, v: Option<u64>) -> Result<u32, E> {
        v.filter(|v| (u64::from(self.min)..=u64::from(self.max)).contains(v))
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| E::custom(format!("must be {}", self.rule())))
    }

    /// Reads a query parameter's text.
    fn parse<E: de::Error>(&self, text: &str) -> Result<u32, E> {
        self.check(text.trim().parse::<u64>().ok())
    }

    fn rule(&self) -> String {
        format!("a whole number from {} to {}", self.min, self.max)
    }
}

impl Visitor<'_> for Whole {
    type Value = u32;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(&self.rule())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u32, E> {
        self.check(Some(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u32, E> {
        self.check(u64::try_from(v).ok())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<u32, E> {
        let whole =
            (v.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&v)).then_some(v as u64);
        self.check(whole)
    }
}

/// Reads a whole number from 0 to `u32::MAX`, also when it is written `12.0`: JSON has
/// one number type, and JSON Schema counts `12.0` as an integer.
fn whole<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    deserializer.deserialize_any(Whole::ANY)
}

/// Reads a quantity, 1 to 1,000,000, as [`whole`] reads numbers.
fn quantity<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    deserializer.deserialize_any(Whole::QUANTITY)
}

/// A query parameter's text, which the query deserializer hands over as a string.
fn query_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    String::deserialize(deserializer)
}

/// A whole number in a query, from 0 to `u32::MAX` (a category).
fn query_whole<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    Whole::ANY.parse(&query_text(deserializer)?)
}

/// An optional whole number in a query, from 0 to `u32::MAX` (an offset).
fn query_offset<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
    Whole::ANY.parse(&query_text(deserializer)?).map(Some)
}

/// A page size in a query, 1 to 100.
fn query_limit<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
    Whole::LIMIT.parse(&query_text(deserializer)?).map(Some)
}

/// A quantity in a query, 1 to 1,000,000.
fn query_quantity<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    Whole::QUANTITY.parse(&query_text(deserializer)?)
}

/// Reads a nested object, refusing an array: serde would read one into the fields by
/// position. Names the field inside that broke the schema.
fn object<'de, D: Deserializer<'de>, T: de::DeserializeOwned>(
    deserializer: D,
) -> Result<T, D::Error> {
    let value = serde_json::Value::deserialize(deserializer)?;
    if !value.is_object() {
        return Err(de::Error::custom("must be a JSON object"));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        de::Error::custom(format!("{path}: {}", e.into_inner()))
    })
}

/// A new account of either role.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAccount {
    /// 1 to 32 letters, digits, `_`, `-` or `.`; unique per role.
    #[schema(pattern = r"^[A-Za-z0-9_.\-]{1,32}$", example = "ann")]
    pub username: String,
    /// At least 8 characters, at most 128 bytes (UTF-8).
    #[schema(min_length = 8, max_length = 128, example = "long enough")]
    pub password: String,
    /// Display name, 1 to 32 characters; the username if absent or blank.
    #[serde(default, deserialize_with = "some_string")]
    #[schema(schema_with = account_name_schema)]
    pub name: Option<String>,
}

/// A field that may be left out but, when present, is a string: `null` is refused, as
/// the schema says.
fn some_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    String::deserialize(deserializer).map(Some)
}

/// A username and password, to log in.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// The account's username.
    #[schema(example = "ann")]
    pub username: String,
    /// The account's password.
    #[schema(example = "long enough")]
    pub password: String,
}

/// A new account's id.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AccountCreated {
    /// The seller or buyer id, unique.
    #[schema(example = 1)]
    pub id: u64,
}

/// A new seller session.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SellerSession {
    /// Send as `Authorization: Bearer <session>` on every later call.
    #[schema(example = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")]
    pub session: String,
    /// The seller's id.
    #[schema(example = 1)]
    pub seller_id: u64,
}

/// A new buyer session.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BuyerSession {
    /// Send as `Authorization: Bearer <session>` on every later call.
    #[schema(example = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")]
    pub session: String,
    /// The buyer's id.
    #[schema(example = 2)]
    pub buyer_id: u64,
}

/// Thumbs up and thumbs down.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Votes {
    /// Thumbs up.
    pub up: u64,
    /// Thumbs down.
    pub down: u64,
}

impl From<Feedback> for Votes {
    fn from(f: Feedback) -> Self {
        Votes { up: f.up, down: f.down }
    }
}

/// A seller's public record.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Rating {
    /// The seller's id.
    pub seller_id: u64,
    /// The seller's display name.
    pub name: String,
    /// Votes summed over all the seller's items, sold out or not.
    pub feedback: Votes,
    /// Units the seller has sold.
    pub items_sold: u64,
}

impl From<SellerRating> for Rating {
    fn from(r: SellerRating) -> Self {
        Rating {
            seller_id: r.seller_id,
            name: r.name,
            feedback: r.feedback.into(),
            items_sold: r.items_sold,
        }
    }
}

/// New or used.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ItemCondition {
    /// Never used.
    New,
    /// Second hand.
    Used,
}

impl From<ItemCondition> for Condition {
    fn from(c: ItemCondition) -> Self {
        match c {
            ItemCondition::New => Condition::New,
            ItemCondition::Used => Condition::Used,
        }
    }
}

impl From<Condition> for ItemCondition {
    fn from(c: Condition) -> Self {
        match c {
            Condition::New => ItemCondition::New,
            Condition::Used => ItemCondition::Used,
        }
    }
}

/// An item as the marketplace shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ItemView {
    /// `category:number`.
    #[schema(example = "3:17")]
    pub id: String,
    /// Its name.
    #[schema(example = "Blue pen")]
    pub name: String,
    /// The category, as in the id.
    #[schema(example = 3)]
    pub category: u32,
    /// The category's name, or null for a category without one (`GET /v1/categories`
    /// lists those with a name).
    #[schema(example = "Office and stationery")]
    pub category_name: Option<String>,
    /// Keywords, lower-case.
    #[schema(example = json!(["pen", "blue"]))]
    pub keywords: Vec<String>,
    /// New or used.
    pub condition: ItemCondition,
    /// Sale price, a decimal string with two decimals.
    #[schema(example = "1.50")]
    pub price: String,
    /// Units still for sale.
    #[schema(example = 10)]
    pub quantity: u32,
    /// The seller who listed it.
    #[schema(example = 1)]
    pub seller_id: u64,
    /// Buyers' votes on it.
    pub feedback: Votes,
}

impl ItemView {
    /// `i` as the API shows it, its category named from `names`.
    pub fn new(i: Item, names: &Categories) -> Self {
        ItemView {
            id: i.id.to_string(),
            name: i.name,
            category: i.id.category,
            category_name: names.name(i.id.category).map(str::to_owned),
            keywords: i.keywords,
            condition: i.condition.into(),
            price: i.price.to_string(),
            quantity: i.quantity,
            seller_id: i.seller_id,
            feedback: i.feedback.into(),
        }
    }
}

/// One page of items.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ItemPage {
    /// At most `limit` items.
    pub items: Vec<ItemView>,
    /// The `offset` of the next page, or null on the last page.
    pub next_offset: Option<u32>,
}

impl ItemPage {
    /// A page of `items` asked for with `page`.
    pub fn new(items: Vec<Item>, page: Page, names: &Categories) -> Self {
        ItemPage {
            next_offset: next_offset(items.len(), page),
            items: items.into_iter().map(|i| ItemView::new(i, names)).collect(),
        }
    }
}

/// The offset of the page after a full one, or `None` after a short one (the last).
fn next_offset(len: usize, page: Page) -> Option<u32> {
    if len < page.limit as usize {
        return None;
    }
    page.offset.checked_add(page.limit)
}

/// What a seller fills in to list an item.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewItemBody {
    /// 1 to 32 characters (surrounding white space is dropped), no control characters.
    #[schema(schema_with = name_schema)]
    pub name: String,
    /// Any category number; it becomes the first part of the item id.
    #[serde(deserialize_with = "whole")]
    #[schema(example = 3, minimum = 0, maximum = 4294967295.0, format = Int64)]
    pub category: u32,
    /// Up to five keywords of 1 to 8 characters without spaces; stored lower-case,
    /// duplicates dropped.
    #[serde(default)]
    #[schema(schema_with = keywords_schema)]
    pub keywords: Vec<String>,
    /// New or used.
    pub condition: ItemCondition,
    /// Sale price from 0.01 to 1000000.00, as a decimal string with at most two decimals.
    #[schema(schema_with = price_schema)]
    pub price: String,
    /// Units for sale, 1 to 1,000,000.
    #[serde(deserialize_with = "quantity")]
    #[schema(minimum = 1, maximum = 1000000, example = 10)]
    pub quantity: u32,
}

impl NewItemBody {
    /// The domain's new item; its rules are checked by the handler.
    pub fn into_domain(self) -> Result<NewItem, Error> {
        Ok(NewItem {
            name: self.name,
            category: self.category,
            keywords: self.keywords,
            condition: self.condition.into(),
            price: self.price.parse()?,
            quantity: self.quantity,
        })
    }
}

/// A new item's id.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ItemCreated {
    /// `category:number`.
    #[schema(example = "3:17")]
    pub id: String,
}

impl From<ItemId> for ItemCreated {
    fn from(id: ItemId) -> Self {
        ItemCreated { id: id.to_string() }
    }
}

/// A new sale price.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceChange {
    /// From 0.01 to 1000000.00, at most two decimals.
    #[schema(schema_with = price_schema)]
    pub price: String,
}

impl PriceChange {
    /// The price as money; its range is checked by the handler.
    pub fn money(&self) -> Result<Money, Error> {
        Ok(self.price.parse()?)
    }
}

/// Units to take off sale.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnitsRemoval {
    /// 1 to 1,000,000, at most the units left.
    #[serde(deserialize_with = "quantity")]
    #[schema(minimum = 1, maximum = 1000000, example = 4)]
    pub quantity: u32,
}

/// Units of an item left for sale.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UnitsLeft {
    /// The item.
    #[schema(example = "3:17")]
    pub id: String,
    /// Units still for sale.
    #[schema(example = 6)]
    pub quantity: u32,
}

/// Which page of a list: `limit` entries after skipping `offset`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Most entries to return, 1 to 100 (default 20).
    #[serde(default, deserialize_with = "query_limit")]
    #[param(minimum = 1, maximum = 100, default = 20)]
    pub limit: Option<u32>,
    /// Entries to skip (default 0); the previous page's `next_offset`.
    #[serde(default, deserialize_with = "query_offset")]
    #[param(minimum = 0, maximum = 4294967295.0, format = Int64, default = 0)]
    pub offset: Option<u32>,
}

impl QueryParams for PageQuery {}

impl PageQuery {
    /// The page, with defaults for what is absent; its limit is checked by the handler.
    pub fn page(&self) -> Page {
        Page { offset: self.offset.unwrap_or(0), limit: self.limit.unwrap_or(PAGE_DEFAULT) }
    }
}

/// A search: a category and up to five keywords.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// The item category to search.
    #[serde(deserialize_with = "query_whole")]
    #[param(minimum = 0, maximum = 4294967295.0, format = Int64, example = 3)]
    pub category: u32,
    /// Up to five keywords, repeated: `keyword=pen&keyword=blue`. Items matching more of
    /// them rank first; with none, the category's newest items.
    #[serde(default)]
    #[param(schema_with = keywords_schema, style = Form, explode)]
    pub keyword: Vec<String>,
    /// Most items to return, 1 to 100 (default 20).
    #[serde(default, deserialize_with = "query_limit")]
    #[param(minimum = 1, maximum = 100, default = 20)]
    pub limit: Option<u32>,
    /// Items to skip (default 0); the previous page's `next_offset`.
    #[serde(default, deserialize_with = "query_offset")]
    #[param(minimum = 0, maximum = 4294967295.0, format = Int64, default = 0)]
    pub offset: Option<u32>,
}

impl QueryParams for SearchQuery {
    const LISTS: &'static [&'static str] = &["keyword"];
}

impl SearchQuery {
    /// The page asked for, with the defaults of [`PageQuery`].
    pub fn page(&self) -> Page {
        PageQuery { limit: self.limit, offset: self.offset }.page()
    }
}

/// An item id in the path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ItemIdParam {
    /// The item, `category:number`.
    #[param(schema_with = item_id_schema)]
    pub id: String,
}

/// A seller id in the path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SellerIdParam {
    /// The seller's id.
    #[param(schema_with = user_id_schema)]
    pub id: String,
}

/// Units of an item to take out of the cart.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct QuantityQuery {
    /// 1 to 1,000,000, at most what the cart holds.
    #[serde(deserialize_with = "query_quantity")]
    #[param(minimum = 1, maximum = 1000000, example = 1)]
    pub quantity: u32,
}

impl QueryParams for QuantityQuery {}

/// Units of an item to put in the cart.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CartAddition {
    /// The item, `category:number`.
    #[schema(schema_with = item_id_schema)]
    pub item: String,
    /// 1 to 1,000,000; the cart's total of the item may not exceed the units available.
    #[serde(deserialize_with = "quantity")]
    #[schema(minimum = 1, maximum = 1000000, example = 2)]
    pub quantity: u32,
}

/// One line of a cart, with its item as it is now.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CartLineView {
    /// The item.
    #[schema(example = "3:17")]
    pub item: String,
    /// Units in the cart.
    #[schema(example = 2)]
    pub quantity: u32,
    /// The item's name.
    #[schema(example = "Blue pen")]
    pub name: String,
    /// The item's category's name, or null for a category without one.
    #[schema(example = "Office and stationery")]
    pub category_name: Option<String>,
    /// The item's price now.
    #[schema(example = "1.50")]
    pub unit_price: String,
    /// `quantity` × `unit_price`.
    #[schema(example = "3.00")]
    pub line_total: String,
}

/// A cart: its lines in the order the items were first added, with what it would cost
/// at today's prices.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Cart {
    /// At most 100 lines.
    pub lines: Vec<CartLineView>,
    /// The sum of the lines' totals.
    #[schema(example = "3.00")]
    pub total: String,
}

impl Cart {
    /// The cart of `lines`, each with its item, categories named from `names`.
    pub fn new(lines: Vec<(CartLine, Item)>, names: &Categories) -> Self {
        let mut total = 0i64;
        let lines = lines
            .into_iter()
            .map(|(line, item)| {
                let cents = item.price.cents().saturating_mul(i64::from(line.quantity));
                total = total.saturating_add(cents);
                CartLineView {
                    item: line.item.to_string(),
                    quantity: line.quantity,
                    category_name: names.name(line.item.category).map(str::to_owned),
                    name: item.name,
                    unit_price: item.price.to_string(),
                    line_total: Money::from_cents(cents).to_string(),
                }
            })
            .collect();
        Cart { lines, total: Money::from_cents(total).to_string() }
    }
}

/// A named category.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CategoryView {
    /// The number items carry (the first part of an item id).
    #[schema(example = 3)]
    pub id: u32,
    /// Its name.
    #[schema(example = "Office and stationery")]
    pub name: String,
    /// Items of it with units for sale now.
    #[schema(example = 12)]
    pub items: u64,
}

/// The marketplace's named categories, by number. Items may carry other numbers too:
/// those categories have no name.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CategoryList {
    /// At most 100.
    pub categories: Vec<CategoryView>,
}

impl From<Vec<CategoryCount>> for CategoryList {
    fn from(list: Vec<CategoryCount>) -> Self {
        CategoryList {
            categories: list
                .into_iter()
                .map(|c| CategoryView { id: c.id, name: c.name, items: c.items.unwrap_or(0) })
                .collect(),
        }
    }
}

/// Thumbs up or down.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Thumb {
    /// Thumbs up.
    Up,
    /// Thumbs down.
    Down,
}

/// A buyer's vote on an item; voting again replaces the earlier vote.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Vote {
    /// `up` or `down`.
    pub vote: Thumb,
}

/// One line of a purchase.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PurchaseLineView {
    /// The item bought.
    #[schema(example = "3:17")]
    pub item: String,
    /// The seller it was bought from.
    pub seller_id: u64,
    /// Its name at the time.
    pub name: String,
    /// Units bought.
    pub quantity: u32,
    /// Unit price at the time, a decimal string.
    #[schema(example = "1.50")]
    pub unit_price: String,
}

/// A completed purchase.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PurchaseView {
    /// The purchase's id.
    pub id: u64,
    /// When it happened, Unix milliseconds.
    pub at_unix_ms: i64,
    /// What was bought.
    pub lines: Vec<PurchaseLineView>,
    /// The amount charged, a decimal string.
    #[schema(example = "3.00")]
    pub total: String,
}

impl From<Purchase> for PurchaseView {
    fn from(p: Purchase) -> Self {
        PurchaseView {
            id: p.id,
            at_unix_ms: p.at_unix_ms,
            lines: p
                .lines
                .into_iter()
                .map(|l| PurchaseLineView {
                    item: l.item.to_string(),
                    seller_id: l.seller_id,
                    name: l.name,
                    quantity: l.quantity,
                    unit_price: l.unit_price.to_string(),
                })
                .collect(),
            total: p.total.to_string(),
        }
    }
}

/// Card details, to pay for a purchase.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CardBody {
    /// The cardholder's name.
    #[schema(schema_with = card_holder_schema)]
    pub holder: String,
    /// The card number.
    #[schema(schema_with = card_number_schema)]
    pub number: String,
    /// `MM/YY`.
    #[schema(schema_with = card_expiry_schema)]
    pub expiry: String,
}

/// A purchase of everything in this session's cart.
///
/// The document's example leaves `total` out: a total is only right for one cart, and an
/// example must be one the server can take whatever the cart holds.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "card": {"holder": "Bea Buyer", "number": "4111 1111 1111 1111", "expiry": "09/29"}
}))]
pub struct PurchaseOrder {
    /// The card to pay with; its number is never stored.
    #[serde(deserialize_with = "object")]
    pub card: CardBody,
    /// The cart's total the buyer agreed to pay, as shown to them. If a price changed
    /// since, so that the cart costs another total now, nothing is bought or charged: 409
    /// `price_changed`, whose message says the new total. Without it, the cart is bought
    /// at whatever it costs at the moment of the purchase.
    #[serde(default, deserialize_with = "some_string")]
    #[schema(schema_with = total_schema)]
    pub total: Option<String>,
}

impl PurchaseOrder {
    /// The domain's card; its rules are checked by the handler.
    pub fn card(&self) -> Card {
        let card = &self.card;
        Card {
            holder: card.holder.clone(),
            number: card.number.clone(),
            expiry: card.expiry.clone(),
        }
    }

    /// The agreed total, if given, as money.
    pub fn total(&self) -> Result<Option<Money>, Error> {
        self.total.as_deref().map(parse_total).transpose()
    }
}

/// A total the buyer agreed to (in a body or a form), or the field's rule.
pub fn parse_total(text: &str) -> Result<Money, Error> {
    text.parse().map_err(|_| {
        Error::invalid("invalid total: must be an amount like 12.34 (at most two decimals)")
    })
}

fn total_schema() -> Object {
    text(TOTAL, "3.00", "The cart's total as shown to the buyer, with at most two decimals.")
}

/// An amount of money of any size a cart may reach (`Money::from_str`).
const TOTAL: &str = concat!("^[", ws!(), r"]*[0-9]{1,12}(\.[0-9]{1,2})?[", ws!(), "]*$");

/// The purchase key, from the `Idempotency-Key` header.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
pub struct PurchaseHeaders {
    /// Makes a retry safe (1 to 64 characters of the client's choosing).
    #[serde(rename = "Idempotency-Key")]
    #[param(rename = "Idempotency-Key", schema_with = purchase_key_schema)]
    pub idempotency_key: Option<String>,
}

fn idempotency_key_schema() -> Object {
    text(
        PURCHASE_KEY,
        "3f2a9c1e-7d4b-4e0a-9b1c-2d5e8f7a6b3c",
        "Makes a retry safe: a key already used in this session (for a new account, with \
         this username) for this operation answers with the first attempt's outcome instead \
         of doing it again. Without one, every request is a new attempt.",
    )
}

/// The `Idempotency-Key` header of a mutation.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
pub struct MutationHeaders {
    /// Makes a retry safe (1 to 64 characters of the client's choosing).
    #[serde(rename = "Idempotency-Key")]
    #[param(rename = "Idempotency-Key", schema_with = idempotency_key_schema)]
    pub idempotency_key: Option<String>,
}

/// One page of a buyer's purchases, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PurchasePage {
    /// At most `limit` purchases.
    pub purchases: Vec<PurchaseView>,
    /// The `offset` of the next page, or null on the last page.
    pub next_offset: Option<u32>,
}

impl PurchasePage {
    /// A page of `purchases` asked for with `page`.
    pub fn new(purchases: Vec<Purchase>, page: Page) -> Self {
        PurchasePage {
            next_offset: next_offset(purchases.len(), page),
            purchases: purchases.into_iter().map(Into::into).collect(),
        }
    }
}

/// The answer of the health endpoints.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok` (the process is up) or `ready` (both databases answered).
    #[schema(example = "ok")]
    pub status: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_numbers_may_be_written_as_floats() {
        let body = |q: &str| {
            serde_json::from_str::<UnitsRemoval>(&format!("{{\"quantity\": {q}}}"))
                .map(|b| b.quantity)
        };
        assert_eq!(body("12").ok(), Some(12));
        assert_eq!(body("12.0").ok(), Some(12));
        for bad in ["12.5", "-1", "0", "1000001", "4294967296", "1e20", "\"12\""] {
            assert!(body(bad).is_err(), "{bad}");
        }
        // The refusal states our rule, not the range of a u32.
        let message = body("99999999999").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("from 1 to 1000000"), "{message}");
    }

    #[test]
    fn the_next_offset_follows_only_a_full_page() {
        let page = Page { offset: 40, limit: 20 };
        assert_eq!(next_offset(20, page), Some(60));
        assert_eq!(next_offset(19, page), None);
        assert_eq!(next_offset(20, Page { offset: u32::MAX, limit: 20 }), None);
    }
}
