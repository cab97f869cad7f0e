//! The seller's interface: the seller service, one typed method per operation, each
//! checking its input, authenticating the session and doing the work in the product
//! database; and the TCP handler, a thin adapter from the wire's requests to those
//! methods. The HTTP/JSON routes and the web pages call the same methods.

use agora_domain::{
    Item, ItemId, Money, NewItem, Page, Role, SellerRating, UserId, check_quantity,
};
use agora_proto::messages::front::{Response, SellerRequest};
use agora_proto::messages::{OpId, product, unexpected};
use agora_proto::{ApiError, Handler, SellerServer};

use crate::Upstream;

/// The seller service. Holds no state but its database connections.
#[derive(Debug)]
pub struct SellerFrontend {
    up: Upstream,
}

impl SellerFrontend {
    /// A service over these database connections.
    pub fn new(up: Upstream) -> Self {
        SellerFrontend { up }
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

    /// CreateAccount: a new seller account; its id.
    pub async fn create_account(
        &self,
        op: OpId,
        username: String,
        password: String,
        name: String,
    ) -> Result<UserId, ApiError> {
        self.up.create_account(op, Role::Seller, username, password, name).await
    }

    /// Login: a new seller session and the seller's id.
    pub async fn login(
        &self,
        username: String,
        password: String,
    ) -> Result<(String, UserId), ApiError> {
        self.up.login(Role::Seller, username, password).await
    }

    /// Logout: ends a seller session.
    pub async fn logout(&self, op: OpId, session: String) -> Result<(), ApiError> {
        self.up.logout(op, session, Role::Seller).await
    }

    /// The seller behind a live session, without doing anything else.
    pub async fn whoami(&self, session: &str) -> Result<UserId, ApiError> {
        self.up.authenticate(session, Role::Seller).await
    }

    /// GetSellerRating: this seller's feedback and units sold.
    pub async fn rating(&self, session: &str) -> Result<SellerRating, ApiError> {
        let seller_id = self.up.authenticate(session, Role::Seller).await?;
        self.up.seller_rating(seller_id).await
    }

    /// RegisterItemForSale: lists a new item; its id.
    pub async fn register_item(
        &self,
        op: OpId,
        session: &str,
        item: NewItem,
    ) -> Result<ItemId, ApiError> {
        // Refuse bad input before spending a round trip on the session.
        let item = item.validate()?;
        let seller_id = self.up.authenticate(session, Role::Seller).await?;
        match self.up.product(product::Request::RegisterItem { op, seller_id, item }).await? {
            product::Response::ItemId(id) => Ok(id),
            other => Err(unexpected(&other)),
        }
    }

    /// ChangeItemPrice: a new price for one of this seller's items.
    pub async fn change_price(
        &self,
        session: &str,
        item: ItemId,
        price: Money,
    ) -> Result<(), ApiError> {
        let price = price.check_price()?;
        let seller_id = self.up.authenticate(session, Role::Seller).await?;
        self.up.product(product::Request::ChangePrice { seller_id, item, price }).await?;
        Ok(())
    }

    /// UpdateUnitsForSale: takes units of one of this seller's items off sale; the units
    /// left.
    pub async fn remove_units(
        &self,
        op: OpId,
        session: &str,
        item: ItemId,
        quantity: u32,
    ) -> Result<u32, ApiError> {
        check_quantity(quantity)?;
        let seller_id = self.up.authenticate(session, Role::Seller).await?;
        let request = product::Request::RemoveUnits { op, seller_id, item, quantity };
        match self.up.product(request).await? {
            product::Response::Quantity(left) => Ok(left),
            other => Err(unexpected(&other)),
        }
    }

    /// DisplayItemsForSale: one page of this seller's items with units left.
    pub async fn list_items(&self, session: &str, page: Page) -> Result<Vec<Item>, ApiError> {
        let page = page.validate()?;
        let seller_id = self.up.authenticate(session, Role::Seller).await?;
        match self.up.product(product::Request::SellerItems { seller_id, page }).await? {
            product::Response::Items(items) => Ok(items),
            other => Err(unexpected(&other)),
        }
    }

    /// The named categories; with `counts`, each with how many items it has for sale.
    pub async fn categories(
        &self,
        session: &str,
        counts: bool,
    ) -> Result<Vec<agora_domain::CategoryCount>, ApiError> {
        self.up.categories(session, Role::Seller, counts).await
    }

    /// The categories' names, to show beside their numbers.
    pub fn category_names(&self) -> &agora_domain::Categories {
        self.up.category_names()
    }
}

impl Handler<SellerServer> for SellerFrontend {
    async fn handle(&self, request: SellerRequest) -> Result<Response, ApiError> {
        Ok(match request {
            SellerRequest::Ping { deep } => {
                self.ping(deep).await?;
                Response::Pong
            }
            SellerRequest::CreateAccount { op, username, password, name } => {
                Response::Account { id: self.create_account(op, username, password, name).await? }
            }
            SellerRequest::Login { username, password } => {
                let (session, id) = self.login(username, password).await?;
                Response::LoggedIn { session, id }
            }
            SellerRequest::Logout { op, session } => {
                self.logout(op, session).await?;
                Response::Done
            }
            SellerRequest::GetRating { session } => Response::Rating(self.rating(&session).await?),
            SellerRequest::RegisterItem { op, session, item } => {
                Response::ItemId(self.register_item(op, &session, item).await?)
            }
            SellerRequest::ChangePrice { session, item, price } => {
                self.change_price(&session, item, price).await?;
                Response::Done
            }
            SellerRequest::RemoveUnits { op, session, item, quantity } => {
                Response::Quantity(self.remove_units(op, &session, item, quantity).await?)
            }
            SellerRequest::ListItems { session, page } => {
                Response::Items(self.list_items(&session, page).await?)
            }
            SellerRequest::Categories { session, counts } => {
                Response::Categories(self.categories(&session, counts).await?)
            }
        })
    }
}
