//! [`SellerClient`]: the seller's interface, one method per call.

use std::sync::Arc;
use std::time::Duration;

use agora_domain::{CategoryCount, Item, ItemId, Money, NewItem, Page, SellerRating, UserId};
use agora_proto::messages::front::{Response, SellerRequest};
use agora_proto::messages::new_op_id;
use agora_proto::{PoolConfig, SellerServer};

use crate::caller::{Caller, Wraps, unexpected_answer};
use crate::{ClientError, pool_config};

/// A client of the seller server. Cheap to clone: a clone is the same client, sharing its
/// connection and its session. For a second session, build a second client.
#[derive(Clone)]
pub struct SellerClient {
    inner: Arc<Caller<SellerServer>>,
}

impl std::fmt::Debug for SellerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.debug("SellerClient", f)
    }
}

impl Wraps for SellerClient {
    type Service = SellerServer;
    fn caller(&self) -> &Caller<SellerServer> {
        &self.inner
    }
}

impl SellerClient {
    /// A client of the seller servers at `addrs` (host:port, tried in turn), with the
    /// default deadlines. Connects lazily, on the first call.
    pub fn new(addrs: Vec<String>) -> Self {
        Self::with_config(pool_config(addrs, None, None))
    }

    /// Like [`SellerClient::new`], with a deadline on connecting and one on each call
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
        SellerClient { inner: Arc::new(Caller::new(config)) }
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

    /// Checks that a seller server answers; with `deep`, that it reaches its databases too.
    pub async fn ping(&self, deep: bool) -> Result<(), ClientError> {
        self.inner.ping(deep).await
    }

    /// CreateAccount: a new seller with `username`, `password` and display `name`; returns
    /// the seller id. Does not log in.
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
    /// longer knows is forgotten too, and its refusal returned.
    pub async fn logout(&self) -> Result<(), ClientError> {
        self.inner.logout().await
    }

    /// GetSellerRating: this seller's feedback and units sold.
    pub async fn get_rating(&self) -> Result<SellerRating, ClientError> {
        match self.inner.call_with_session(|session| SellerRequest::GetRating { session }).await? {
            Response::Rating(rating) => Ok(rating),
            other => Err(unexpected_answer("get_rating", &other)),
        }
    }

    /// RegisterItemForSale: lists `item`; returns its new id.
    pub async fn register_item(&self, item: NewItem) -> Result<ItemId, ClientError> {
        // One id for every resend of this call: applied at most once.
        let op = new_op_id();
        let answer = self
            .inner
            .call_with_session(|session| SellerRequest::RegisterItem { op, session, item })
            .await?;
        match answer {
            Response::ItemId(id) => Ok(id),
            other => Err(unexpected_answer("register_item", &other)),
        }
    }

    /// ChangeItemPrice: sets a new sale price for one of this seller's items.
    pub async fn change_price(&self, item: ItemId, price: Money) -> Result<(), ClientError> {
        let answer = self
            .inner
            .call_with_session(|session| SellerRequest::ChangePrice { session, item, price })
            .await?;
        match answer {
            Response::Done => Ok(()),
            other => Err(unexpected_answer("change_price", &other)),
        }
    }

    /// UpdateUnitsForSale: takes `quantity` units of one of this seller's items off sale;
    /// returns the units left.
    pub async fn remove_units(&self, item: ItemId, quantity: u32) -> Result<u32, ClientError> {
        // One id for every resend of this call: applied at most once.
        let op = new_op_id();
        let answer = self
            .inner
            .call_with_session(|session| SellerRequest::RemoveUnits { op, session, item, quantity })
            .await?;
        match answer {
            Response::Quantity(left) => Ok(left),
            other => Err(unexpected_answer("remove_units", &other)),
        }
    }

    /// The marketplace's named categories; with `counts`, each with how many items it
    /// has for sale.
    pub async fn categories(&self, counts: bool) -> Result<Vec<CategoryCount>, ClientError> {
        let answer = self
            .inner
            .call_with_session(|session| SellerRequest::Categories { session, counts })
            .await?;
        match answer {
            Response::Categories(list) => Ok(list),
            other => Err(unexpected_answer("categories", &other)),
        }
    }

    /// DisplayItemsForSale: one page of this seller's items.
    pub async fn list_items(&self, page: Page) -> Result<Vec<Item>, ClientError> {
        let answer = self
            .inner
            .call_with_session(|session| SellerRequest::ListItems { session, page })
            .await?;
        match answer {
            Response::Items(items) => Ok(items),
            other => Err(unexpected_answer("list_items", &other)),
        }
    }
}
