//! [`BuyerClient`]: the buyer's interface, one method per call.

use std::sync::Arc;
use std::time::Duration;

use agora_domain::{
    Card, CartLine, CategoryCount, Feedback, Item, ItemId, Money, Page, Purchase, SellerRating,
    UserId,
};
use agora_proto::messages::front::{BuyerRequest, Response};
use agora_proto::messages::new_op_id;
use agora_proto::{BuyerServer, PoolConfig};

use crate::caller::{Caller, Wraps, unexpected_answer};
use crate::{ClientError, pool_config};

/// A client of the buyer server. Cheap to clone: a clone is the same client, sharing its
/// connection and its session. For a second session, build a second client.
#[derive(Clone)]
pub struct BuyerClient {
    inner: Arc<Caller<BuyerServer>>,
}

impl std::fmt::Debug for BuyerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.debug("BuyerClient", f)
    }
}

impl Wraps for BuyerClient {
    type Service = BuyerServer;
    fn caller(&self) -> &Caller<BuyerServer> {
        &self.inner
    }
}

impl BuyerClient {
    /// A client of the buyer servers at `addrs` (host:port, tried in turn), with the
    /// default deadlines. Connects lazily, on the first call.
    pub fn new(addrs: Vec<String>) -> Self {
        Self::with_config(pool_config(addrs, None, None))
    }

    /// Like [`BuyerClient::new`], with a deadline on connecting and one on each call
    /// (reconnecting included) replacing the defaults when given.
    pub fn with_timeouts(
        addrs: Vec<String>,
        connect: Option<Duration>,
        call: Option<Duration>,
    ) -> Self {
        Self::with_config(pool_config(addrs, connect, call))
    }

    /// A client with full control over its connection pool.
    pub fn with_config(config: PoolConfig) -> Self {
        BuyerClient { inner: Arc::new(Caller::new(config)) }
    }

    /// The server addresses this client tries.
    pub fn addrs(&self) -> &[String] {
        self.inner.addrs()
    }

    /// The current session id, if logged in.
    pub fn session(&self) -> Option<String> {
        self.inner.session()
    }

    /// Replaces the session id: to resume a session saved elsewhere, or `None` to drop it
    /// without telling the server.
    pub fn set_session(&self, session: Option<String>) {
        self.inner.set_session(session);
    }

    /// Checks that a buyer server answers; with `deep`, that it reaches its databases too.
    pub async fn ping(&self, deep: bool) -> Result<(), ClientError> {
        self.inner.ping(deep).await
    }

    /// CreateAccount: a new buyer with `username`, `password` and display `name`; returns
    /// the buyer id. Does not log in.
    pub async fn create_account(
        &self,
        username: &str,
        password: &str,
        name: &str,
    ) -> Result<UserId, ClientError> {
        self.inner.create_account(username, password, name).await
    }

    /// Login: starts a session, which this client keeps and sends from now on; returns the
    /// session id.
    pub async fn login(&self, username: &str, password: &str) -> Result<String, ClientError> {
        self.inner.login(username, password).await
    }

    /// Logout: ends the session on the server and forgets it here. A session the server no
    /// longer knows is forgotten too, and its refusal returned. An unsaved cart is gone.
    pub async fn logout(&self) -> Result<(), ClientError> {
        self.inner.logout().await
    }

    /// SearchItemsForSale: one page of the available items in `category` matching up to
    /// five `keywords`, best match first.
    pub async fn search(
        &self,
        category: u32,
        keywords: Vec<String>,
        page: Page,
    ) -> Result<Vec<Item>, ClientError> {
        let answer = self
            .inner
            .call_with_session(|session| BuyerRequest::Search { session, category, keywords, page })
            .await?;
        match answer {
            Response::Items(items) => Ok(items),
            other => Err(unexpected_answer("search", &other)),
        }
    }

    /// The marketplace's named categories; with `counts`, each with how many items it
    /// has for sale.
    pub async fn categories(&self, counts: bool) -> Result<Vec<CategoryCount>, ClientError> {
        let answer = self
            .inner
            .call_with_session(|session| BuyerRequest::Categories { session, counts })
            .await?;
        match answer {
            Response::Categories(list) => Ok(list),
            other => Err(unexpected_answer("categories", &other)),
        }
    }

    /// GetItem: the attributes of one item.
    pub async fn get_item(&self, item: ItemId) -> Result<Item, ClientError> {
        match self
            .inner
            .call_with_session(|session| BuyerRequest::GetItem { session, item })
            .await?
        {
            Response::Item(item) => Ok(item),
            other => Err(unexpected_answer("get_item", &other)),
        }
    }

    /// AddItemToCart: adds `quantity` units of `item`, only if that many are available;
    /// returns the cart.
    pub async fn add_to_cart(
        &self,
        item: ItemId,
        quantity: u32,
    ) -> Result<Vec<CartLine>, ClientError> {
        // One id for every resend of this call: applied at most once.
        let op = new_op_id();
        let answer = self
            .inner
            .call_with_session(|session| BuyerRequest::AddToCart { op, session, item, quantity })
            .await?;
        match answer {
            Response::Cart(lines) => Ok(lines),
            other => Err(unexpected_answer("add_to_cart", &other)),
        }
    }

    /// RemoveItemFromCart: takes `quantity` units of `item` out of the cart; returns the cart.
    pub async fn remove_from_cart(
        &self,
        item: ItemId,
        quantity: u32,
    ) -> Result<Vec<CartLine>, ClientError> {
        // One id for every resend of this call: applied at most once.
        let op = new_op_id();
        let answer = self
            .inner
            .call_with_session(|session| BuyerRequest::RemoveFromCart {
                op,
                session,
                item,
                quantity,
            })
            .await?;
        match answer {
            Response::Cart(lines) => Ok(lines),
            other => Err(unexpected_answer("remove_from_cart", &other)),
        }
    }

    /// SaveCart: keeps the cart across this buyer's sessions.
    pub async fn save_cart(&self) -> Result<(), ClientError> {
        match self.inner.call_with_session(|session| BuyerRequest::SaveCart { session }).await? {
            Response::Done => Ok(()),
            other => Err(unexpected_answer("save_cart", &other)),
        }
    }

    /// ClearCart: empties the cart.
    pub async fn clear_cart(&self) -> Result<(), ClientError> {
        match self.inner.call_with_session(|session| BuyerRequest::ClearCart { session }).await? {
            Response::Done => Ok(()),
            other => Err(unexpected_answer("clear_cart", &other)),
        }
    }

    /// DisplayCart: the items and quantities in the cart.
    pub async fn display_cart(&self) -> Result<Vec<CartLine>, ClientError> {
        match self.inner.call_with_session(|session| BuyerRequest::DisplayCart { session }).await? {
            Response::Cart(lines) => Ok(lines),
            other => Err(unexpected_answer("display_cart", &other)),
        }
    }

    /// ProvideFeedback: a thumbs up (`up`) or down for `item` and so for its seller; returns
    /// the item's new totals.
    pub async fn provide_feedback(&self, item: ItemId, up: bool) -> Result<Feedback, ClientError> {
        let answer = self
            .inner
            .call_with_session(|session| BuyerRequest::ProvideFeedback { session, item, up })
            .await?;
        match answer {
            Response::Feedback(feedback) => Ok(feedback),
            other => Err(unexpected_answer("provide_feedback", &other)),
        }
    }

    /// GetSellerRating: the feedback and units sold of seller `seller_id`.
    pub async fn get_seller_rating(&self, seller_id: UserId) -> Result<SellerRating, ClientError> {
        let answer = self
            .inner
            .call_with_session(|session| BuyerRequest::GetSellerRating { session, seller_id })
            .await?;
        match answer {
            Response::Rating(rating) => Ok(rating),
            other => Err(unexpected_answer("get_seller_rating", &other)),
        }
    }

    /// GetBuyerPurchases: one page of this buyer's purchase history.
    pub async fn get_purchases(&self, page: Page) -> Result<Vec<Purchase>, ClientError> {
        let answer = self
            .inner
            .call_with_session(|session| BuyerRequest::GetPurchases { session, page })
            .await?;
        match answer {
            Response::Purchases(purchases) => Ok(purchases),
            other => Err(unexpected_answer("get_purchases", &other)),
        }
    }

    /// MakePurchase: buys everything in the cart with `card`, all or nothing. A fresh
    /// purchase key is made for this call, so the automatic resend after a lost connection
    /// can never buy twice. To retry by hand after an unclear failure (`purchase_pending`,
    /// a transport error), use [`BuyerClient::make_purchase_with_key`] with the same key.
    pub async fn make_purchase(&self, card: Card) -> Result<Purchase, ClientError> {
        self.make_purchase_with_key(&new_purchase_key(), card).await
    }

    /// MakePurchase at the `total` the buyer agreed to (say, the [`BuyerClient::cart_total`]
    /// shown to them), under purchase `key`: if a price changed since, so that the cart
    /// costs another total now, nothing is bought or charged and the answer is
    /// `price_changed`, whose message says the new total.
    pub async fn make_purchase_at(
        &self,
        key: &str,
        card: Card,
        total: Money,
    ) -> Result<Purchase, ClientError> {
        let answer = self
            .inner
            .call_with_session(|session| BuyerRequest::MakePurchaseAt {
                session,
                key: key.to_owned(),
                card: card.clone(),
                total,
            })
            .await?;
        match answer {
            Response::Purchase(purchase) => Ok(purchase),
            other => Err(unexpected_answer("make_purchase", &other)),
        }
    }

    /// What the cart costs at today's prices: each line's units at its item's price, as
    /// a purchase would charge them now.
    pub async fn cart_total(&self) -> Result<Money, ClientError> {
        let mut cents = 0i64;
        for line in self.display_cart().await? {
            let price = self.get_item(line.item).await?.price.cents();
            cents = cents.saturating_add(price.saturating_mul(i64::from(line.quantity)));
        }
        Ok(Money::from_cents(cents))
    }

    /// MakePurchase under a purchase key of the caller's (1 to 64 characters): a key
    /// already used returns that purchase's outcome instead of buying again. It buys at
    /// whatever the cart costs at that moment; [`BuyerClient::make_purchase_at`] buys only
    /// at a total the buyer agreed to.
    pub async fn make_purchase_with_key(
        &self,
        key: &str,
        card: Card,
    ) -> Result<Purchase, ClientError> {
        let answer = self
            .inner
            .call_with_session(|session| BuyerRequest::MakePurchase {
                session,
                key: key.to_owned(),
                card: card.clone(),
            })
            .await?;
        match answer {
            Response::Purchase(purchase) => Ok(purchase),
            other => Err(unexpected_answer("make_purchase", &other)),
        }
    }
}

/// A random purchase key: 128 bits as 32 hex digits.
pub fn new_purchase_key() -> String {
    let mut bytes = [0u8; 16];
    // Without OS randomness, fall back to the clock: still unique enough per buyer.
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes = nanos.to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
