//! The product database's request handling: check a request, then read through the
//! replica or propose a [`Command`] to it. Nothing here writes to the file directly.

use agora_domain::check_quantity;
use agora_proto::messages::product::{Request, Response};
use agora_proto::{ApiError, Handler, fault};
use agora_replication::Replica;

use crate::command::{Command, ProductMachine};
use crate::{feedback, items, search};

/// The product database's handler.
#[derive(Debug)]
pub struct ProductDb {
    replica: Replica<ProductMachine>,
    search_candidates: u32,
}

impl Handler<agora_proto::ProductDb> for ProductDb {
    async fn handle(&self, request: Request) -> Result<Response, ApiError> {
        match request {
            Request::Ping => Ok(Response::Pong),
            // A listing is checked here (name, keywords, price, units), so a bad one never
            // reaches the log; its op id makes a retry answer the same item rather than list
            // it twice.
            Request::RegisterItem { op, seller_id, item } => {
                let item = item.validate()?;
                self.replica.propose(Command::RegisterItem { op, seller_id, item }).await
            }
            // No op id: setting a price twice leaves it set. Units already reserved keep the
            // price they were reserved at; a seller changes only their own items.
            Request::ChangePrice { seller_id, item, price } => {
                let price = price.check_price()?;
                self.replica.propose(Command::ChangePrice { seller_id, item, price }).await
            }
            // An op id, since removing twice would remove twice as many. Units only go down,
            // and an item taken to 0 is withdrawn for good (items.rs).
            Request::RemoveUnits { op, seller_id, item, quantity } => {
                check_quantity(quantity)?;
                self.replica.propose(Command::RemoveUnits { op, seller_id, item, quantity }).await
            }
            Request::SellerItems { seller_id, page } => {
                let page = page.validate()?;
                let found =
                    self.replica.read(move |c| items::seller_items(c, seller_id, page)).await?;
                Ok(Response::Items(found))
            }
            Request::Search { category, keywords, page } => {
                let page = page.validate()?;
                let keywords = agora_domain::check_keywords(&keywords)?;
                let cap = self.search_candidates;
                let found = self
                    .replica
                    .read(move |c| search::search(c, category, &keywords, page, cap))
                    .await?;
                Ok(Response::Items(found))
            }
            Request::GetItem { item } => {
                Ok(Response::Item(self.replica.read(move |c| items::item(c, item)).await?))
            }
            Request::GetItems { items: ids } => {
                if ids.len() > agora_domain::CART_LINES_MAX {
                    return Err(ApiError::new(
                        agora_proto::ErrorCode::InvalidArgument,
                        format!(
                            "invalid items: at most {} may be asked for at once",
                            agora_domain::CART_LINES_MAX
                        ),
                    ));
                }
                let read = move |c: &rusqlite::Connection| {
                    ids.iter().map(|id| items::item(c, *id)).collect::<Result<Vec<_>, _>>()
                };
                Ok(Response::Items(self.replica.read(read).await?))
            }
            // One vote per buyer and item: a new vote replaces the earlier one, so a repeat
            // changes nothing and needs no op id.
            Request::Vote { buyer_id, item, up } => {
                self.replica.propose(Command::Vote { buyer_id, item, thumbs_up: up }).await
            }
            // The purchase coordinator's steps (only the customer database may send them):
            // keyed by purchase id, each idempotent, in the order reserve.rs draws.
            Request::Reserve { purchase, lines } => {
                let reserved = self.replica.propose(Command::Reserve { purchase, lines }).await?;
                fault::crash_point("reserve-before-ack");
                Ok(reserved)
            }
            Request::Release { purchase } => {
                self.replica.propose(Command::Release { purchase }).await
            }
            Request::Confirm { purchase } => {
                self.replica.propose(Command::Confirm { purchase }).await
            }
            Request::Held { open, next } => {
                self.replica.propose(Command::ReleaseUnclaimed { open, next }).await
            }
            Request::SellerFeedback { seller_id } => {
                let totals =
                    self.replica.read(move |c| feedback::seller_feedback(c, seller_id)).await?;
                Ok(Response::Feedback(totals))
            }
            Request::CountItems { categories } => {
                if categories.len() > agora_domain::CATEGORIES_MAX {
                    return Err(ApiError::new(
                        agora_proto::ErrorCode::InvalidArgument,
                        format!(
                            "invalid categories: at most {} may be counted at once",
                            agora_domain::CATEGORIES_MAX
                        ),
                    ));
                }
                let counts =
                    self.replica.read(move |c| items::count_for_sale(c, &categories)).await?;
                Ok(Response::Counts(counts))
            }
        }
    }
}

impl ProductDb {
    /// A handler over `replica`; searches read at most `search_candidates` postings per
    /// keyword.
    pub fn new(replica: Replica<ProductMachine>, search_candidates: u32) -> Self {
        ProductDb { replica, search_candidates: search_candidates.max(1) }
    }
}
