//! The seller's interface: each request checked, its session authenticated, then the work
//! done in the product database.

use agora_domain::{Role, check_quantity};
use agora_proto::messages::front::{Response, SellerRequest};
use agora_proto::messages::{product, unexpected};
use agora_proto::{ApiError, Handler, SellerServer};

use crate::Upstream;

/// The seller server's handler. Holds no state but its database connections.
#[derive(Debug)]
pub struct SellerFrontend {
    up: Upstream,
}

impl SellerFrontend {
    /// A handler over these database connections.
    pub fn new(up: Upstream) -> Self {
        SellerFrontend { up }
    }
}

impl Handler<SellerServer> for SellerFrontend {
    async fn handle(&self, request: SellerRequest) -> Result<Response, ApiError> {
        let up = &self.up;
        match request {
            SellerRequest::Ping { deep } => {
                if deep {
                    up.ping_both().await?;
                }
                Ok(Response::Pong)
            }
            SellerRequest::CreateAccount { op, username, password, name } => {
                let id = up.create_account(op, Role::Seller, username, password, name).await?;
                Ok(Response::Account { id })
            }
            SellerRequest::Login { username, password } => {
                let (session, id) = up.login(Role::Seller, username, password).await?;
                Ok(Response::LoggedIn { session, id })
            }
            SellerRequest::Logout { session } => {
                up.logout(session, Role::Seller).await?;
                Ok(Response::Done)
            }
            SellerRequest::GetRating { session } => {
                let seller_id = up.authenticate(&session, Role::Seller).await?;
                Ok(Response::Rating(up.seller_rating(seller_id).await?))
            }
            SellerRequest::RegisterItem { op, session, item } => {
                // Refuse bad input before spending a round trip on the session.
                let item = item.validate()?;
                let seller_id = up.authenticate(&session, Role::Seller).await?;
                match up.product(product::Request::RegisterItem { op, seller_id, item }).await? {
                    product::Response::ItemId(id) => Ok(Response::ItemId(id)),
                    other => Err(unexpected(&other)),
                }
            }
            SellerRequest::ChangePrice { session, item, price } => {
                let price = price.check_price()?;
                let seller_id = up.authenticate(&session, Role::Seller).await?;
                up.product(product::Request::ChangePrice { seller_id, item, price }).await?;
                Ok(Response::Done)
            }
            SellerRequest::RemoveUnits { op, session, item, quantity } => {
                check_quantity(quantity)?;
                let seller_id = up.authenticate(&session, Role::Seller).await?;
                match up
                    .product(product::Request::RemoveUnits { op, seller_id, item, quantity })
                    .await?
                {
                    product::Response::Quantity(left) => Ok(Response::Quantity(left)),
                    other => Err(unexpected(&other)),
                }
            }
            SellerRequest::ListItems { session, page } => {
                let page = page.validate()?;
                let seller_id = up.authenticate(&session, Role::Seller).await?;
                match up.product(product::Request::SellerItems { seller_id, page }).await? {
                    product::Response::Items(items) => Ok(Response::Items(items)),
                    other => Err(unexpected(&other)),
                }
            }
        }
    }
}
