//! The frontends' messages: the seller's and the buyer's interfaces of the contract.
//! Every request but `Ping`, `CreateAccount` and `Login` names a session.

use agora_domain::{
    Card, CartLine, CategoryCount, Feedback, Item, ItemId, Money, NewItem, Page, Purchase,
    SellerRating, UserId,
};
use serde::{Deserialize, Serialize};

use super::OpId;

/// A request to the seller server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SellerRequest {
    /// Answers `Pong`; with `deep`, only after a round trip to each database.
    Ping { deep: bool },
    /// CreateAccount; answers `Account`.
    CreateAccount { op: OpId, username: String, password: String, name: String },
    /// Login; answers `LoggedIn`.
    Login { username: String, password: String },
    /// Logout; answers `Done`. `op` is picked per call and kept for its resends: a resend
    /// after the first attempt ended the session answers `Done` too.
    Logout { op: OpId, session: String },
    /// GetSellerRating of this session's seller; answers `Rating`.
    GetRating { session: String },
    /// RegisterItemForSale; answers `ItemId`.
    RegisterItem { op: OpId, session: String, item: NewItem },
    /// ChangeItemPrice; answers `Done`.
    ChangePrice { session: String, item: ItemId, price: Money },
    /// UpdateUnitsForSale: removes `quantity` units; answers `Quantity` (units left).
    RemoveUnits { op: OpId, session: String, item: ItemId, quantity: u32 },
    /// DisplayItemsForSale; answers `Items`.
    ListItems { session: String, page: Page },
    /// The named categories; with `counts`, each with its items for sale. Answers
    /// `Categories`.
    Categories { session: String, counts: bool },
}

/// A request to the buyer server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BuyerRequest {
    /// Answers `Pong`; with `deep`, only after a round trip to each database.
    Ping { deep: bool },
    /// CreateAccount; answers `Account`.
    CreateAccount { op: OpId, username: String, password: String, name: String },
    /// Login; answers `LoggedIn`.
    Login { username: String, password: String },
    /// Logout; answers `Done`. `op` is picked per call and kept for its resends: a resend
    /// after the first attempt ended the session answers `Done` too.
    Logout { op: OpId, session: String },
    /// SearchItemsForSale; answers `Items`.
    Search { session: String, category: u32, keywords: Vec<String>, page: Page },
    /// GetItem; answers `Item`.
    GetItem { session: String, item: ItemId },
    /// AddItemToCart; answers `Cart`.
    AddToCart { op: OpId, session: String, item: ItemId, quantity: u32 },
    /// RemoveItemFromCart; answers `Cart`.
    RemoveFromCart { op: OpId, session: String, item: ItemId, quantity: u32 },
    /// SaveCart; answers `Done`.
    SaveCart { session: String },
    /// ClearCart; answers `Done`.
    ClearCart { session: String },
    /// DisplayCart; answers `Cart`.
    DisplayCart { session: String },
    /// ProvideFeedback; answers `Feedback` with the item's new totals.
    ProvideFeedback { session: String, item: ItemId, up: bool },
    /// GetSellerRating of any seller; answers `Rating`.
    GetSellerRating { session: String, seller_id: UserId },
    /// GetBuyerPurchases; answers `Purchases`.
    GetPurchases { session: String, page: Page },
    /// MakePurchase: buys the session's cart with `card`; answers `Purchase`. `key` (1 to
    /// 64 characters, chosen by the client) makes a retry safe: the same key never buys or
    /// charges twice, and returns the first attempt's outcome.
    MakePurchase { session: String, key: String, card: Card },
    /// MakePurchase at the `total` the buyer agreed to (the cart's total as shown): if the
    /// cart's total at the prices of the moment is another, nothing is bought or charged
    /// and the answer is `PriceChanged` with the new total. Otherwise as `MakePurchase`,
    /// which stays for clients of earlier releases (docs/protocol.md, "Payloads").
    MakePurchaseAt { session: String, key: String, card: Card, total: Money },
    /// The named categories; with `counts`, each with its items for sale. Answers
    /// `Categories`.
    Categories { session: String, counts: bool },
}

/// A successful answer of either frontend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// To `Ping`.
    Pong,
    /// The new account's id.
    Account { id: UserId },
    /// A new session, to send with every later call.
    LoggedIn { session: String, id: UserId },
    /// A seller's rating.
    Rating(SellerRating),
    /// A new item's id.
    ItemId(ItemId),
    /// Units left.
    Quantity(u32),
    /// A page of items.
    Items(Vec<Item>),
    /// One item.
    Item(Item),
    /// A cart.
    Cart(Vec<CartLine>),
    /// Vote totals.
    Feedback(Feedback),
    /// Purchase history.
    Purchases(Vec<Purchase>),
    /// A completed purchase.
    Purchase(Purchase),
    /// The request took effect.
    Done,
    /// The named categories.
    Categories(Vec<CategoryCount>),
}
