//! The buyer's interface. Reads that need both a session check and a product lookup do
//! the two at once; writes authenticate first.

use agora_domain::{Role, check_keywords, check_quantity};
use agora_proto::messages::front::{BuyerRequest, Response};
use agora_proto::messages::{customer, product, unexpected};
use agora_proto::{ApiError, BuyerServer, Handler};

use crate::Upstream;

/// The buyer server's handler. Holds no state but its database connections.
#[derive(Debug)]
pub struct BuyerFrontend {
    up: Upstream,
}

impl BuyerFrontend {
    /// A handler over these database connections.
    pub fn new(up: Upstream) -> Self {
        BuyerFrontend { up }
    }
}

/// The cart in a customer database answer.
fn cart(response: customer::Response) -> Result<Response, ApiError> {
    match response {
        customer::Response::Cart(lines) => Ok(Response::Cart(lines)),
        other => Err(unexpected(&other)),
    }
}

impl Handler<BuyerServer> for BuyerFrontend {
    async fn handle(&self, request: BuyerRequest) -> Result<Response, ApiError> {
        let up = &self.up;
        match request {
            BuyerRequest::Ping { deep } => {
                if deep {
                    up.ping_both().await?;
                }
                Ok(Response::Pong)
            }
            BuyerRequest::CreateAccount { op, username, password, name } => {
                let id = up.create_account(op, Role::Buyer, username, password, name).await?;
                Ok(Response::Account { id })
            }
            BuyerRequest::Login { username, password } => {
                let (session, id) = up.login(Role::Buyer, username, password).await?;
                Ok(Response::LoggedIn { session, id })
            }
            BuyerRequest::Logout { session } => {
                up.logout(session, Role::Buyer).await?;
                Ok(Response::Done)
            }
            BuyerRequest::Search { session, category, keywords, page } => {
                let keywords = check_keywords(&keywords)?;
                let page = page.validate()?;
                let (who, found) = tokio::join!(
                    up.authenticate(&session, Role::Buyer),
                    up.product(product::Request::Search { category, keywords, page }),
                );
                who?;
                match found? {
                    product::Response::Items(items) => Ok(Response::Items(items)),
                    other => Err(unexpected(&other)),
                }
            }
            BuyerRequest::GetItem { session, item } => {
                let (who, item) =
                    tokio::join!(up.authenticate(&session, Role::Buyer), up.item(item));
                who?;
                Ok(Response::Item(item?))
            }
            BuyerRequest::AddToCart { op, session, item, quantity } => {
                check_quantity(quantity)?;
                let (who, found) =
                    tokio::join!(up.authenticate(&session, Role::Buyer), up.item(item));
                who?;
                let available = found?.quantity;
                let request =
                    customer::Request::AddToCart { op, session, item, quantity, available };
                cart(up.customer(request).await?)
            }
            BuyerRequest::RemoveFromCart { op, session, item, quantity } => {
                check_quantity(quantity)?;
                cart(
                    up.customer(customer::Request::RemoveFromCart { op, session, item, quantity })
                        .await?,
                )
            }
            BuyerRequest::SaveCart { session } => {
                up.customer(customer::Request::SaveCart { session }).await?;
                Ok(Response::Done)
            }
            BuyerRequest::ClearCart { session } => {
                up.customer(customer::Request::ClearCart { session }).await?;
                Ok(Response::Done)
            }
            BuyerRequest::DisplayCart { session } => {
                cart(up.customer(customer::Request::GetCart { session }).await?)
            }
            BuyerRequest::ProvideFeedback { session, item, up: thumbs_up } => {
                let buyer_id = up.authenticate(&session, Role::Buyer).await?;
                match up.product(product::Request::Vote { buyer_id, item, up: thumbs_up }).await? {
                    product::Response::Feedback(f) => Ok(Response::Feedback(f)),
                    other => Err(unexpected(&other)),
                }
            }
            BuyerRequest::GetSellerRating { session, seller_id } => {
                let (who, rating) = tokio::join!(
                    up.authenticate(&session, Role::Buyer),
                    up.seller_rating(seller_id)
                );
                who?;
                Ok(Response::Rating(rating?))
            }
            BuyerRequest::MakePurchase { session, key, card } => {
                // Checked here too, so bad input never reaches the coordinator.
                let card = card.validate()?;
                match up.customer(customer::Request::Purchase { session, key, card }).await? {
                    customer::Response::Purchased(p) => Ok(Response::Purchase(p)),
                    other => Err(unexpected(&other)),
                }
            }
            BuyerRequest::GetPurchases { session, page } => {
                let page = page.validate()?;
                match up.customer(customer::Request::Purchases { session, page }).await? {
                    customer::Response::Purchases(p) => Ok(Response::Purchases(p)),
                    other => Err(unexpected(&other)),
                }
            }
        }
    }
}
