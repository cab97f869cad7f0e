//! The customer database's messages: accounts, sessions, carts, purchase history.

use agora_domain::{Card, CartLine, ItemId, Money, Page, Purchase, Role, UserId};

use super::OpId;
use crate::trust::Component;
use serde::{Deserialize, Serialize};

/// A request to the customer database. Session-bound requests name the session; the
/// database checks it, records the activity and answers `NotLoggedIn` or `SessionExpired`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Answers `Pong`; measures the transport.
    Ping,
    /// Creates an account; answers `Account`.
    CreateAccount { op: OpId, role: Role, username: String, password: String, name: String },
    /// Checks credentials and opens a session; answers `LoggedIn`.
    Login { role: Role, username: String, password: String },
    /// Ends a session of `role` and drops its unsaved cart; answers `Done`. A session of
    /// the other role is refused (`NotLoggedIn`) and left alone. Applied at most once per
    /// `op`: a resend (after a lost answer or a failover) gets the first answer, not
    /// `NotLoggedIn` for the session it ended.
    Logout { op: OpId, session: String, role: Role },
    /// Checks a session of `role` and records activity; answers `Authenticated`.
    Authenticate { session: String, role: Role },
    /// A seller's public record; answers `Seller`.
    GetSeller { seller_id: UserId },
    /// The session's cart; answers `Cart`.
    GetCart { session: String },
    /// Adds units of an item to the session's cart, refusing to hold more than
    /// `available` in all; answers `Cart`.
    AddToCart { op: OpId, session: String, item: ItemId, quantity: u32, available: u32 },
    /// Removes units of an item from the session's cart; answers `Cart`.
    RemoveFromCart { op: OpId, session: String, item: ItemId, quantity: u32 },
    /// Keeps the session's cart as the buyer's saved cart; answers `Done`.
    SaveCart { session: String },
    /// Empties the session's cart; answers `Done`.
    ClearCart { session: String },
    /// The buyer's purchase history, newest first; answers `Purchases`.
    Purchases { session: String, page: Page },
    /// MakePurchase: buys the session's cart with `card`, all or nothing, coordinated by
    /// the customer database (crates/customer-db/DESIGN.md). `key` names this purchase
    /// for the buyer: a request with a key already used returns that purchase's outcome
    /// instead of buying again. Answers `Purchased`.
    Purchase { session: String, key: String, card: Card },
    /// `Purchase` at the `total` the buyer agreed to: a purchase whose total at the
    /// reserved prices is another is cancelled before payments is asked, its units
    /// released, and answered `PriceChanged` with the new total. Appended after the
    /// variants of earlier releases, which keep their wire numbers.
    PurchaseAt { session: String, key: String, card: Card, total: Money },
}

/// A successful answer of the customer database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// To `Ping`.
    Pong,
    /// The new account's id.
    Account { id: UserId },
    /// A new session.
    LoggedIn { session: String, account: UserId },
    /// The session is valid and belongs to `account`.
    Authenticated { account: UserId },
    /// A seller's name and units sold.
    Seller { seller_id: UserId, name: String, items_sold: u64 },
    /// A cart's lines, in the order the items were first added.
    Cart(Vec<CartLine>),
    /// Purchase history.
    Purchases(Vec<Purchase>),
    /// A completed purchase.
    Purchased(Purchase),
    /// The request took effect.
    Done,
}

/// Who may send `request` to the customer database: each frontend what its interface
/// needs; operators only `Ping`.
pub fn may_send(request: &Request) -> &'static [Component] {
    const ANY: &[Component] = &Component::ALL;
    const FRONTENDS: &[Component] = &[Component::SellerServer, Component::BuyerServer];
    const BUYERS: &[Component] = &[Component::BuyerServer];
    match request {
        Request::Ping => ANY,
        Request::CreateAccount { .. }
        | Request::Login { .. }
        | Request::Logout { .. }
        | Request::Authenticate { .. }
        | Request::GetSeller { .. } => FRONTENDS,
        Request::GetCart { .. }
        | Request::AddToCart { .. }
        | Request::RemoveFromCart { .. }
        | Request::SaveCart { .. }
        | Request::ClearCart { .. }
        | Request::Purchases { .. }
        | Request::Purchase { .. }
        | Request::PurchaseAt { .. } => BUYERS,
    }
}
