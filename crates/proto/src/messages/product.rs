//! The product database's messages: items, quantities, feedback, search. Callers are the
//! frontends, which have already authenticated the seller or buyer they name.

use agora_domain::{Feedback, Item, ItemId, Money, NewItem, Page, UserId};
use serde::{Deserialize, Serialize};

/// A request to the product database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Answers `Pong`.
    Ping,
    /// Lists a new item; answers `ItemId`.
    RegisterItem { seller_id: UserId, item: NewItem },
    /// Sets the price of one of the seller's items; answers `Done`.
    ChangePrice { seller_id: UserId, item: ItemId, price: Money },
    /// Takes units of one of the seller's items off sale; answers `Quantity` (units left).
    RemoveUnits { seller_id: UserId, item: ItemId, quantity: u32 },
    /// The seller's items that still have units for sale; answers `Items`.
    SellerItems { seller_id: UserId, page: Page },
    /// Available items of a category, best match first (docs/semantics.md); answers `Items`.
    Search { category: u32, keywords: Vec<String>, page: Page },
    /// One item, sold out or not; answers `Item`.
    GetItem { item: ItemId },
    /// A buyer's thumbs up (`up`) or down for an item, replacing an earlier vote of the same
    /// buyer; answers `Feedback` with the item's new totals.
    Vote { buyer_id: UserId, item: ItemId, up: bool },
    /// Votes summed over a seller's items; answers `Feedback`.
    SellerFeedback { seller_id: UserId },
}

/// A successful answer of the product database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// To `Ping`.
    Pong,
    /// The id of a new item.
    ItemId(ItemId),
    /// Units left.
    Quantity(u32),
    /// A page of items.
    Items(Vec<Item>),
    /// One item.
    Item(Item),
    /// Vote totals.
    Feedback(Feedback),
    /// The request took effect.
    Done,
}
