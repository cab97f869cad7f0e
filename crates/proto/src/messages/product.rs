//! The product database's messages: items, quantities, feedback, search. Callers are the
//! frontends, which have already authenticated the seller or buyer they name.

use agora_domain::{CartLine, Feedback, Item, ItemId, Money, NewItem, Page, PurchaseLine, UserId};
use serde::{Deserialize, Serialize};

use super::OpId;
use crate::trust::Component;

/// A request to the product database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Answers `Pong`.
    Ping,
    /// Lists a new item; answers `ItemId`.
    RegisterItem { op: OpId, seller_id: UserId, item: NewItem },
    /// Sets the price of one of the seller's items; answers `Done`.
    ChangePrice { seller_id: UserId, item: ItemId, price: Money },
    /// Takes units of one of the seller's items off sale; answers `Quantity` (units left).
    RemoveUnits { op: OpId, seller_id: UserId, item: ItemId, quantity: u32 },
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
    /// Phase one of a purchase: takes the units of every line off sale, all or none, and
    /// records them under `purchase`; answers `Reserved` with each line's seller, name and
    /// unit price at this moment. Repeating it returns the same lines. Refused with
    /// `not_enough_units` (naming the item and what is left) or `aborted` if the purchase
    /// was already released.
    Reserve { purchase: u64, lines: Vec<CartLine> },
    /// The purchase will not happen: puts its reserved units back on sale. Idempotent; for
    /// a purchase never reserved, records it as released so a late `Reserve` is refused.
    Release { purchase: u64 },
    /// The purchase happened: the reserved units are sold. Idempotent.
    Confirm { purchase: u64 },
    /// The purchase coordinator's word on which reservations it still claims: `open` are
    /// its unfinished purchases and `next` the lowest id it has not given yet, read
    /// together. A held reservation of a purchase below `next` and not in `open` belongs
    /// to a purchase that has ended (or never existed) and is released; one of a purchase
    /// at or above `next` (an id never given) is released once it has been held for ten
    /// minutes. Answers `Released` with how many were.
    Held { open: Vec<u64>, next: u64 },
    /// How many items with units for sale each of `categories` holds (at most 100 of
    /// them, the named categories); answers `Counts`, in the same order.
    CountItems { categories: Vec<u32> },
    /// Several items at once, sold out or not (at most 100: a cart's lines); answers
    /// `Items` in the same order, or `unknown_item` naming the first that does not exist.
    GetItems { items: Vec<ItemId> },
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
    /// Lines reserved for a purchase.
    Reserved(Vec<PurchaseLine>),
    /// How many unclaimed reservations were released.
    Released(u64),
    /// The request took effect.
    Done,
    /// A count for each category asked for, in order.
    Counts(Vec<u64>),
}

/// Who may send `request` to the product database: the seller server manages listings,
/// both frontends read, the buyer server votes, and only the purchase coordinator (the
/// customer database) reserves, releases and confirms units.
pub fn may_send(request: &Request) -> &'static [Component] {
    const SELLERS: &[Component] = &[Component::SellerServer];
    const FRONTENDS: &[Component] = &[Component::SellerServer, Component::BuyerServer];
    match request {
        Request::Ping => &Component::ALL,
        Request::RegisterItem { .. }
        | Request::ChangePrice { .. }
        | Request::RemoveUnits { .. }
        | Request::SellerItems { .. } => SELLERS,
        Request::Search { .. }
        | Request::GetItem { .. }
        | Request::SellerFeedback { .. }
        | Request::CountItems { .. }
        | Request::GetItems { .. } => FRONTENDS,
        Request::Vote { .. } => &[Component::BuyerServer],
        Request::Reserve { .. }
        | Request::Release { .. }
        | Request::Confirm { .. }
        | Request::Held { .. } => &[Component::CustomerDb],
    }
}
