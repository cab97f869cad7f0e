//! The buyer's interface: the buyer service, one typed method per operation, and the TCP
//! handler, a thin adapter from the wire's requests to those methods. The HTTP/JSON
//! routes and the web pages call the same methods. Reads that need both a session check
//! and a product lookup do the two at once; writes authenticate first.

use agora_domain::{
    Card, CartLine, Feedback, Item, ItemId, Money, Page, Purchase, Role, SellerRating, UserId,
    check_keywords, check_quantity,
};
use agora_proto::messages::front::{BuyerRequest, Response};
use agora_proto::messages::{OpId, customer, product, unexpected};
use agora_proto::{ApiError, BuyerServer, Handler};

use crate::Upstream;

/// The buyer service. Holds no state but its database connections.
#[derive(Debug)]
pub struct BuyerFrontend {
    up: Upstream,
}

/// The cart in a customer database answer.
fn cart(response: customer::Response) -> Result<Vec<CartLine>, ApiError> {
    match response {
        customer::Response::Cart(lines) => Ok(lines),
        other => Err(unexpected(&other)),
    }
}

impl BuyerFrontend {
    /// A service over these database connections.
    pub fn new(up: Upstream) -> Self {
        BuyerFrontend { up }
    }

    /// The database connections this service calls through.
    pub(crate) fn upstream(&self) -> &Upstream {
        &self.up
    }

    /// Ping: with `deep`, a round trip to both databases too.
    pub async fn ping(&self, deep: bool) -> Result<(), ApiError> {
        if deep {
            self.up.ping_both().await?;
        }
        Ok(())
    }

    /// CreateAccount: a new buyer account; its id.
    pub async fn create_account(
        &self,
        op: OpId,
        username: String,
        password: String,
        name: String,
    ) -> Result<UserId, ApiError> {
        self.up.create_account(op, Role::Buyer, username, password, name).await
    }

    /// Login: a new buyer session and the buyer's id.
    pub async fn login(
        &self,
        username: String,
        password: String,
    ) -> Result<(String, UserId), ApiError> {
        self.up.login(Role::Buyer, username, password).await
    }

    /// Logout: ends a buyer session.
    pub async fn logout(&self, op: OpId, session: String) -> Result<(), ApiError> {
        self.up.logout(op, session, Role::Buyer).await
    }

    /// The buyer behind a live session, without doing anything else.
    pub async fn whoami(&self, session: &str) -> Result<UserId, ApiError> {
        self.up.authenticate(session, Role::Buyer).await
    }

    /// SearchItemsForSale: one page of a category's items with units left, best match
    /// first.
    pub async fn search(
        &self,
        session: &str,
        category: u32,
        keywords: &[String],
        page: Page,
    ) -> Result<Vec<Item>, ApiError> {
        let keywords = check_keywords(keywords)?;
        let page = page.validate()?;
        let (who, found) = tokio::join!(
            self.up.authenticate(session, Role::Buyer),
            self.up.product(product::Request::Search { category, keywords, page }),
        );
        who?;
        match found? {
            product::Response::Items(items) => Ok(items),
            other => Err(unexpected(&other)),
        }
    }

    /// GetItem: one item, sold out or not.
    pub async fn get_item(&self, session: &str, item: ItemId) -> Result<Item, ApiError> {
        let (who, item) =
            tokio::join!(self.up.authenticate(session, Role::Buyer), self.up.item(item));
        who?;
        item
    }

    /// AddItemToCart: the whole cart after adding.
    pub async fn add_to_cart(
        &self,
        op: OpId,
        session: &str,
        item: ItemId,
        quantity: u32,
    ) -> Result<Vec<CartLine>, ApiError> {
        check_quantity(quantity)?;
        let (who, found) =
            tokio::join!(self.up.authenticate(session, Role::Buyer), self.up.item(item));
        who?;
        let available = found?.quantity;
        let session = session.to_owned();
        let request = customer::Request::AddToCart { op, session, item, quantity, available };
        cart(self.up.customer(request).await?)
    }

    /// RemoveItemFromCart: the whole cart after removing.
    pub async fn remove_from_cart(
        &self,
        op: OpId,
        session: &str,
        item: ItemId,
        quantity: u32,
    ) -> Result<Vec<CartLine>, ApiError> {
        check_quantity(quantity)?;
        let session = session.to_owned();
        let request = customer::Request::RemoveFromCart { op, session, item, quantity };
        cart(self.up.customer(request).await?)
    }

    /// SaveCart: the saved cart becomes a copy of this session's cart.
    pub async fn save_cart(&self, session: &str) -> Result<(), ApiError> {
        let session = session.to_owned();
        self.up.customer(customer::Request::SaveCart { session }).await?;
        Ok(())
    }

    /// ClearCart: empties this session's cart.
    pub async fn clear_cart(&self, session: &str) -> Result<(), ApiError> {
        let session = session.to_owned();
        self.up.customer(customer::Request::ClearCart { session }).await?;
        Ok(())
    }

    /// DisplayCart: this session's cart.
    pub async fn cart(&self, session: &str) -> Result<Vec<CartLine>, ApiError> {
        let session = session.to_owned();
        cart(self.up.customer(customer::Request::GetCart { session }).await?)
    }

    /// The items of a cart's `lines` as they are now (name, price, ...), in order: one
    /// call to the product database for them all. What the pages and the HTTP API show
    /// beside each line.
    pub async fn cart_items(
        &self,
        lines: Vec<CartLine>,
    ) -> Result<Vec<(CartLine, Item)>, ApiError> {
        if lines.is_empty() {
            return Ok(Vec::new());
        }
        let items = lines.iter().map(|l| l.item).collect();
        match self.up.product(product::Request::GetItems { items }).await? {
            product::Response::Items(found) if found.len() == lines.len() => {
                Ok(lines.into_iter().zip(found).collect())
            }
            other => Err(unexpected(&other)),
        }
    }

    /// ProvideFeedback: this buyer's vote on an item; the item's new totals.
    pub async fn feedback(
        &self,
        session: &str,
        item: ItemId,
        up: bool,
    ) -> Result<Feedback, ApiError> {
        let buyer_id = self.up.authenticate(session, Role::Buyer).await?;
        match self.up.product(product::Request::Vote { buyer_id, item, up }).await? {
            product::Response::Feedback(f) => Ok(f),
            other => Err(unexpected(&other)),
        }
    }

    /// GetSellerRating: any seller's feedback and units sold.
    pub async fn seller_rating(
        &self,
        session: &str,
        seller_id: UserId,
    ) -> Result<SellerRating, ApiError> {
        let (who, rating) = tokio::join!(
            self.up.authenticate(session, Role::Buyer),
            self.up.seller_rating(seller_id)
        );
        who?;
        rating
    }

    /// MakePurchase: buys this session's whole cart with `card`, under purchase `key`. With
    /// `total`, the total the buyer agreed to, only at that total: if a price changed,
    /// nothing is bought or charged (`PriceChanged`, with the new total).
    pub async fn purchase(
        &self,
        session: &str,
        key: String,
        card: Card,
        total: Option<Money>,
    ) -> Result<Purchase, ApiError> {
        // Checked here too, so bad input never reaches the coordinator.
        let card = card.validate()?;
        let session = session.to_owned();
        // Without a total, the request of earlier releases, which a customer database of
        // an earlier release also understands.
        let request = match total {
            Some(total) => customer::Request::PurchaseAt { session, key, card, total },
            None => customer::Request::Purchase { session, key, card },
        };
        match self.up.customer(request).await? {
            customer::Response::Purchased(p) => Ok(p),
            other => Err(unexpected(&other)),
        }
    }

    /// GetBuyerPurchases: one page of this buyer's purchases, newest first.
    pub async fn purchases(&self, session: &str, page: Page) -> Result<Vec<Purchase>, ApiError> {
        let page = page.validate()?;
        let session = session.to_owned();
        match self.up.customer(customer::Request::Purchases { session, page }).await? {
            customer::Response::Purchases(p) => Ok(p),
            other => Err(unexpected(&other)),
        }
    }

    /// The named categories; with `counts`, each with how many items it has for sale.
    pub async fn categories(
        &self,
        session: &str,
        counts: bool,
    ) -> Result<Vec<agora_domain::CategoryCount>, ApiError> {
        self.up.categories(session, Role::Buyer, counts).await
    }

    /// The categories' names, to show beside their numbers.
    pub fn category_names(&self) -> &agora_domain::Categories {
        self.up.category_names()
    }
}

impl Handler<BuyerServer> for BuyerFrontend {
    async fn handle(&self, request: BuyerRequest) -> Result<Response, ApiError> {
        Ok(match request {
            BuyerRequest::Ping { deep } => {
                self.ping(deep).await?;
                Response::Pong
            }
            BuyerRequest::CreateAccount { op, username, password, name } => {
                Response::Account { id: self.create_account(op, username, password, name).await? }
            }
            BuyerRequest::Login { username, password } => {
                let (session, id) = self.login(username, password).await?;
                Response::LoggedIn { session, id }
            }
            BuyerRequest::Logout { op, session } => {
                self.logout(op, session).await?;
                Response::Done
            }
            BuyerRequest::Search { session, category, keywords, page } => {
                Response::Items(self.search(&session, category, &keywords, page).await?)
            }
            BuyerRequest::GetItem { session, item } => {
                Response::Item(self.get_item(&session, item).await?)
            }
            BuyerRequest::AddToCart { op, session, item, quantity } => {
                Response::Cart(self.add_to_cart(op, &session, item, quantity).await?)
            }
            BuyerRequest::RemoveFromCart { op, session, item, quantity } => {
                Response::Cart(self.remove_from_cart(op, &session, item, quantity).await?)
            }
            BuyerRequest::SaveCart { session } => {
                self.save_cart(&session).await?;
                Response::Done
            }
            BuyerRequest::ClearCart { session } => {
                self.clear_cart(&session).await?;
                Response::Done
            }
            BuyerRequest::DisplayCart { session } => Response::Cart(self.cart(&session).await?),
            BuyerRequest::ProvideFeedback { session, item, up } => {
                Response::Feedback(self.feedback(&session, item, up).await?)
            }
            BuyerRequest::GetSellerRating { session, seller_id } => {
                Response::Rating(self.seller_rating(&session, seller_id).await?)
            }
            BuyerRequest::MakePurchase { session, key, card } => {
                Response::Purchase(self.purchase(&session, key, card, None).await?)
            }
            BuyerRequest::MakePurchaseAt { session, key, card, total } => {
                Response::Purchase(self.purchase(&session, key, card, Some(total)).await?)
            }
            BuyerRequest::GetPurchases { session, page } => {
                Response::Purchases(self.purchases(&session, page).await?)
            }
            BuyerRequest::Categories { session, counts } => {
                Response::Categories(self.categories(&session, counts).await?)
            }
        })
    }
}
