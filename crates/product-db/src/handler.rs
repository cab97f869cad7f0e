//! The product database's request handling.

use std::time::{SystemTime, UNIX_EPOCH};

use agora_domain::{
    Condition, Feedback, Item, ItemId, Money, NewItem, Page, UserId, check_quantity,
};
use agora_proto::messages::product::{Request, Response};
use agora_proto::{ApiError, ErrorCode, Handler, fault};
use agora_store::{Store, db_error, once};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::{postings, reserve, search};

/// The product database's state.
#[derive(Debug)]
pub struct ProductDb {
    store: Store,
    search_candidates: u32,
}

/// The columns [`item_from_row`] reads, in its order.
pub(crate) const ITEM_COLUMNS: &str =
    "number, category, seller, name, keywords, condition, price, quantity, up, down";

/// An item from a row selected with [`ITEM_COLUMNS`].
pub(crate) fn item_from_row(r: &Row<'_>) -> rusqlite::Result<Item> {
    let keywords: String = r.get(4)?;
    Ok(Item {
        id: ItemId { number: r.get::<_, i64>(0)? as u64, category: r.get(1)? },
        seller_id: r.get::<_, i64>(2)? as UserId,
        name: r.get(3)?,
        keywords: keywords.split_whitespace().map(str::to_owned).collect(),
        condition: if r.get::<_, i64>(5)? == 0 { Condition::New } else { Condition::Used },
        price: Money::from_cents(r.get(6)?),
        quantity: r.get(7)?,
        feedback: Feedback { up: r.get::<_, i64>(8)? as u64, down: r.get::<_, i64>(9)? as u64 },
    })
}

/// The item `id`, sold out or not; `UnknownItem` if the number is unknown or its category
/// is not the one in the id.
pub(crate) fn item(c: &Connection, id: ItemId) -> Result<Item, ApiError> {
    let found = c
        .prepare_cached(&format!("SELECT {ITEM_COLUMNS} FROM items WHERE number = ?1"))
        .and_then(|mut st| st.query_row([id.number as i64], item_from_row).optional())
        .map_err(db_error)?;
    match found {
        Some(item) if item.id.category == id.category => Ok(item),
        _ => Err(ApiError::unknown_item(id)),
    }
}

/// The item `id` if `seller` listed it.
fn own_item(c: &Connection, id: ItemId, seller: UserId) -> Result<Item, ApiError> {
    let item = item(c, id)?;
    if item.seller_id != seller {
        return Err(ApiError::new(
            ErrorCode::NotYourItem,
            format!("item {id} belongs to another seller"),
        ));
    }
    Ok(item)
}

impl Handler<agora_proto::ProductDb> for ProductDb {
    async fn handle(&self, request: Request) -> Result<Response, ApiError> {
        match request {
            Request::Ping => Ok(Response::Pong),
            Request::RegisterItem { op, seller_id, item } => {
                let item = item.validate()?;
                let scope = seller_id as i64;
                let id = self
                    .store
                    .write(move |c| {
                        once(c, scope, &op, now_ms(), |c| register(c, seller_id, &item))
                    })
                    .await?;
                Ok(Response::ItemId(id))
            }
            Request::ChangePrice { seller_id, item, price } => {
                let price = price.check_price()?;
                self.store
                    .write(move |c| {
                        own_item(c, item, seller_id)?;
                        c.prepare_cached("UPDATE items SET price = ?2 WHERE number = ?1")
                            .and_then(|mut st| {
                                st.execute(params![item.number as i64, price.cents()])
                            })
                            .map_err(db_error)
                    })
                    .await?;
                Ok(Response::Done)
            }
            Request::RemoveUnits { op, seller_id, item, quantity } => {
                check_quantity(quantity)?;
                let scope = seller_id as i64;
                let left = self
                    .store
                    .write(move |c| {
                        once(c, scope, &op, now_ms(), |c| {
                            remove_units(c, seller_id, item, quantity)
                        })
                    })
                    .await?;
                Ok(Response::Quantity(left))
            }
            Request::SellerItems { seller_id, page } => {
                let page = page.validate()?;
                let items = self.store.read(move |c| seller_items(c, seller_id, page)).await?;
                Ok(Response::Items(items))
            }
            Request::Search { category, keywords, page } => {
                let page = page.validate()?;
                let keywords = agora_domain::check_keywords(&keywords)?;
                let cap = self.search_candidates;
                let items = self
                    .store
                    .read(move |c| search::search(c, category, &keywords, page, cap))
                    .await?;
                Ok(Response::Items(items))
            }
            Request::GetItem { item: id } => {
                Ok(Response::Item(self.store.read(move |c| item(c, id)).await?))
            }
            Request::Vote { buyer_id, item, up } => {
                let feedback = self.store.write(move |c| vote(c, buyer_id, item, up)).await?;
                Ok(Response::Feedback(feedback))
            }
            Request::Reserve { purchase, lines } => {
                let now = now_ms();
                let reserved =
                    self.store.write(move |c| reserve::reserve(c, purchase, &lines, now)).await?;
                fault::crash_point("reserve-before-ack");
                Ok(Response::Reserved(reserved))
            }
            Request::Release { purchase } => {
                self.store.write(move |c| reserve::release(c, purchase)).await?;
                Ok(Response::Done)
            }
            Request::Confirm { purchase } => {
                self.store.write(move |c| reserve::confirm(c, purchase)).await?;
                Ok(Response::Done)
            }
            Request::Held { open, next } => {
                let now = now_ms();
                let released = self
                    .store
                    .write(move |c| reserve::release_unclaimed(c, &open, next, now))
                    .await?;
                Ok(Response::Released(released))
            }
            Request::SellerFeedback { seller_id } => {
                let feedback = self
                    .store
                    .read(move |c| {
                        c.prepare_cached("SELECT up, down FROM seller_feedback WHERE seller = ?1")
                            .and_then(|mut st| {
                                st.query_row([seller_id as i64], |r| {
                                    Ok(Feedback {
                                        up: r.get::<_, i64>(0)? as u64,
                                        down: r.get::<_, i64>(1)? as u64,
                                    })
                                })
                                .optional()
                            })
                            .map_err(db_error)
                    })
                    .await?;
                Ok(Response::Feedback(feedback.unwrap_or_default()))
            }
        }
    }
}

impl ProductDb {
    /// A handler over `store`; searches read at most `search_candidates` postings per keyword.
    pub fn new(store: Store, search_candidates: u32) -> Self {
        ProductDb { store, search_candidates: search_candidates.max(1) }
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn register(c: &Connection, seller: UserId, item: &NewItem) -> Result<ItemId, ApiError> {
    let condition = match item.condition {
        Condition::New => 0,
        Condition::Used => 1,
    };
    c.prepare_cached(
        "INSERT INTO items (category, seller, name, keywords, condition, price, quantity, listed_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .and_then(|mut st| {
        st.execute(params![
            item.category,
            seller as i64,
            item.name,
            item.keywords.join(" "),
            condition,
            item.price.cents(),
            item.quantity,
            now_ms()
        ])
    })
    .map_err(db_error)?;
    let number = c.last_insert_rowid();
    for keyword in &item.keywords {
        postings::add(c, keyword, item.category, number).map_err(db_error)?;
    }
    Ok(ItemId { category: item.category, number: number as u64 })
}

fn remove_units(
    c: &Connection,
    seller: UserId,
    id: ItemId,
    quantity: u32,
) -> Result<u32, ApiError> {
    let item = own_item(c, id, seller)?;
    if quantity > item.quantity {
        return Err(ApiError::new(
            ErrorCode::NotEnoughUnits,
            format!(
                "item {id} has only {} units for sale; cannot remove {quantity}",
                item.quantity
            ),
        ));
    }
    let left = item.quantity - quantity;
    set_quantity(c, &item, left)?;
    if left == 0 {
        // Taken down by its seller: units of a purchase cancelled later stay off sale.
        c.prepare_cached("INSERT OR IGNORE INTO withdrawn (number) VALUES (?1)")
            .and_then(|mut st| st.execute([id.number as i64]))
            .map_err(db_error)?;
    }
    Ok(left)
}

/// Sets an item's units for sale, keeping the search index in step: an item with no units
/// leaves the index, and comes back if units return (a cancelled purchase).
pub(crate) fn set_quantity(c: &Connection, item: &Item, quantity: u32) -> Result<(), ApiError> {
    let number = item.id.number as i64;
    c.prepare_cached("UPDATE items SET quantity = ?2 WHERE number = ?1")
        .and_then(|mut st| st.execute(params![number, quantity]))
        .map_err(db_error)?;
    let change = match (item.quantity, quantity) {
        (0, q) if q > 0 => postings::add,
        (q, 0) if q > 0 => postings::remove,
        _ => return Ok(()),
    };
    for keyword in &item.keywords {
        change(c, keyword, item.id.category, number).map_err(db_error)?;
    }
    Ok(())
}

fn seller_items(c: &Connection, seller: UserId, page: Page) -> Result<Vec<Item>, ApiError> {
    let mut st = c
        .prepare_cached(&format!(
            "SELECT {ITEM_COLUMNS} FROM items WHERE seller = ?1 AND quantity > 0 \
             ORDER BY number LIMIT ?2 OFFSET ?3"
        ))
        .map_err(db_error)?;
    let rows = st
        .query_map(params![seller as i64, page.limit, page.offset], item_from_row)
        .map_err(db_error)?;
    rows.collect::<Result<_, _>>().map_err(db_error)
}

/// Records a buyer's vote, replacing an earlier one, and keeps the item's and its seller's
/// totals in step; returns the item's totals.
fn vote(c: &Connection, buyer: UserId, id: ItemId, up: bool) -> Result<Feedback, ApiError> {
    let item = item(c, id)?;
    let previous: Option<bool> = c
        .prepare_cached("SELECT up FROM votes WHERE number = ?1 AND buyer = ?2")
        .and_then(|mut st| {
            st.query_row(params![id.number as i64, buyer as i64], |r| r.get(0)).optional()
        })
        .map_err(db_error)?;
    let (mut d_up, mut d_down) = (0i64, 0i64);
    match previous {
        Some(p) if p == up => return Ok(item.feedback),
        Some(true) => d_up -= 1,
        Some(false) => d_down -= 1,
        None => {}
    }
    if up {
        d_up += 1
    } else {
        d_down += 1
    }
    c.prepare_cached("INSERT OR REPLACE INTO votes (number, buyer, up) VALUES (?1, ?2, ?3)")
        .and_then(|mut st| st.execute(params![id.number as i64, buyer as i64, up]))
        .map_err(db_error)?;
    c.prepare_cached("UPDATE items SET up = up + ?2, down = down + ?3 WHERE number = ?1")
        .and_then(|mut st| st.execute(params![id.number as i64, d_up, d_down]))
        .map_err(db_error)?;
    c.prepare_cached(
        "INSERT INTO seller_feedback (seller, up, down) VALUES (?1, ?2, ?3) \
         ON CONFLICT (seller) DO UPDATE SET up = up + excluded.up, down = down + excluded.down",
    )
    .and_then(|mut st| st.execute(params![item.seller_id as i64, d_up, d_down]))
    .map_err(db_error)?;
    Ok(Feedback {
        up: (item.feedback.up as i64 + d_up) as u64,
        down: (item.feedback.down as i64 + d_down) as u64,
    })
}
