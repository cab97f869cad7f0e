//! Items for sale: how a row of `items` maps to an [`Item`], and the storage functions that
//! list, reprice, count and withdraw them. The handler reads through these and the state
//! machine writes through them; nothing here calls back up.

use agora_domain::{Condition, Feedback, Item, ItemId, Money, NewItem, Page, UserId};
use agora_proto::{ApiError, ErrorCode};
use agora_replication::db_error;
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::postings;

/// The columns [`item_from_row`] reads, in its order. `up` and `down` are the SQL names of
/// the item's vote totals.
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
/// is not the one in the id (the number alone is unique, but an id is only as good as
/// both halves: docs/semantics.md).
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

/// The item `id` if `seller` listed it: a seller changes only their own listings.
pub(crate) fn own_item(c: &Connection, id: ItemId, seller: UserId) -> Result<Item, ApiError> {
    let item = item(c, id)?;
    if item.seller_id != seller {
        return Err(ApiError::new(
            ErrorCode::NotYourItem,
            format!("item {id} belongs to another seller"),
        ));
    }
    Ok(item)
}

/// Lists `item` (already validated) for `seller`, as listed at `listed_ms`, and puts it in
/// the search index under each of its keywords. Its number is the next one SQLite's
/// AUTOINCREMENT gives: a function of the table's history, so the same on every replica.
pub(crate) fn register(
    c: &Connection,
    seller: UserId,
    item: &NewItem,
    listed_ms: i64,
) -> Result<ItemId, ApiError> {
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
            listed_ms
        ])
    })
    .map_err(db_error)?;
    let number = c.last_insert_rowid();
    for keyword in &item.keywords {
        postings::add(c, keyword, item.category, number).map_err(db_error)?;
    }
    Ok(ItemId { category: item.category, number: number as u64 })
}

/// Sets the price of one of `seller`'s items. Setting the same price again changes nothing,
/// so the change needs no op id. Reservations keep the price they were made at.
pub(crate) fn change_price(
    c: &Connection,
    seller: UserId,
    id: ItemId,
    price: Money,
) -> Result<(), ApiError> {
    own_item(c, id, seller)?;
    c.prepare_cached("UPDATE items SET price = ?2 WHERE number = ?1")
        .and_then(|mut st| st.execute(params![id.number as i64, price.cents()]))
        .map_err(db_error)?;
    Ok(())
}

/// Takes `quantity` units of one of `seller`'s items off sale; returns the units left.
/// Quantities only go down (docs/semantics.md), so removing more than are left is refused
/// rather than clamped: the seller asked for something that cannot be done.
pub(crate) fn remove_units(
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

/// Whether the seller took item `id` down to 0 units: then it is off sale for good, and
/// units a cancelled purchase gives back do not return it to sale.
pub(crate) fn is_withdrawn(c: &Connection, id: ItemId) -> Result<bool, ApiError> {
    c.prepare_cached("SELECT 1 FROM withdrawn WHERE number = ?1")
        .and_then(|mut st| st.exists([id.number as i64]))
        .map_err(db_error)
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

/// One page of `seller`'s items that still have units for sale, oldest listing first.
pub(crate) fn seller_items(
    c: &Connection,
    seller: UserId,
    page: Page,
) -> Result<Vec<Item>, ApiError> {
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

/// How many items with units for sale each of `categories` holds, in order. Each count
/// walks the category's part of the index of items for sale.
pub(crate) fn count_for_sale(c: &Connection, categories: &[u32]) -> Result<Vec<u64>, ApiError> {
    let mut st = c
        .prepare_cached("SELECT count(*) FROM items WHERE category = ?1 AND quantity > 0")
        .map_err(db_error)?;
    categories
        .iter()
        .map(|category| {
            st.query_row([i64::from(*category)], |r| r.get::<_, i64>(0))
                .map(|n| n.max(0) as u64)
                .map_err(db_error)
        })
        .collect()
}
