//! Carts: each buyer session's active cart, and each buyer's saved cart.
//!
//! A cart line is an item and a number of units; lines keep the order they were first
//! added in. An item is named by category and number, but the number alone is unique:
//! a line of the same number under another category is not that item.

use agora_domain::{CartLine, ItemId, UserId};
use agora_proto::ApiError;
use agora_replication::db_error;
use rusqlite::{Connection, OptionalExtension, params};

use crate::sessions::Key;

/// The session's active cart, in the order lines were first added.
pub fn lines(c: &Connection, session: &Key) -> Result<Vec<CartLine>, ApiError> {
    let mut st = c
        .prepare_cached(
            "SELECT category, number, quantity FROM session_cart WHERE session = ?1 ORDER BY id",
        )
        .map_err(db_error)?;
    let rows = st
        .query_map([&session[..]], |r| {
            Ok(CartLine {
                item: ItemId { category: r.get(0)?, number: r.get::<_, i64>(1)? as u64 },
                quantity: r.get(2)?,
            })
        })
        .map_err(db_error)?;
    rows.collect::<Result<_, _>>().map_err(db_error)
}

/// Units of `item` in the session's active cart (0 if it has no line of that item).
pub fn units_of(c: &Connection, session: &Key, item: ItemId) -> Result<u32, ApiError> {
    let line: Option<(i64, i64)> = c
        .prepare_cached(
            "SELECT category, quantity FROM session_cart WHERE session = ?1 AND number = ?2",
        )
        .and_then(|mut st| {
            st.query_row(params![&session[..], item.number as i64], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .map_err(db_error)?;
    Ok(match line {
        Some((category, quantity)) if category == i64::from(item.category) => quantity as u32,
        // A line of this number under another category: the buyer named an item that
        // does not exist, so the cart holds none of it (and the line is not touched).
        _ => 0,
    })
}

/// How many different items the session's active cart holds.
pub fn line_count(c: &Connection, session: &Key) -> Result<usize, ApiError> {
    let lines: i64 = c
        .prepare_cached("SELECT count(*) FROM session_cart WHERE session = ?1")
        .and_then(|mut st| st.query_row([&session[..]], |r| r.get(0)))
        .map_err(db_error)?;
    Ok(lines.max(0) as usize)
}

/// Sets the units of `item` in the active cart to `quantity` (at least 1), adding a line
/// at the end if it has none.
pub fn set_units(
    c: &Connection,
    session: &Key,
    item: ItemId,
    quantity: u64,
) -> Result<(), ApiError> {
    c.prepare_cached(
        "INSERT INTO session_cart (session, category, number, quantity) \
         VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (session, number) DO UPDATE SET quantity = excluded.quantity",
    )
    .and_then(|mut st| {
        st.execute(params![&session[..], item.category, item.number as i64, quantity as i64])
    })
    .map_err(db_error)?;
    Ok(())
}

/// Takes `quantity` units of `item` out of the active cart, which holds `held` of them
/// (`quantity <= held`); the line goes when none are left.
pub fn take_units(
    c: &Connection,
    session: &Key,
    item: ItemId,
    quantity: u32,
    held: u32,
) -> Result<(), ApiError> {
    // A cart never keeps a line of 0 units: taking them all takes the line. (`?3 >= 0`
    // only binds the third parameter, which both statements are given.)
    let sql = if quantity == held {
        "DELETE FROM session_cart WHERE session = ?1 AND number = ?2 AND ?3 >= 0"
    } else {
        "UPDATE session_cart SET quantity = quantity - ?3 WHERE session = ?1 AND number = ?2"
    };
    c.prepare_cached(sql)
        .and_then(|mut st| st.execute(params![&session[..], item.number as i64, quantity]))
        .map_err(db_error)?;
    Ok(())
}

/// Empties the session's active cart.
pub fn clear(c: &Connection, session: &Key) -> Result<(), ApiError> {
    c.prepare_cached("DELETE FROM session_cart WHERE session = ?1")
        .and_then(|mut st| st.execute([&session[..]]))
        .map_err(db_error)?;
    Ok(())
}

/// Makes the session's active cart the buyer's saved cart, replacing what was saved. The
/// saved cart is per buyer, not per session: it is what the buyer's next session starts
/// with, so the last save from any session wins.
pub fn save(c: &Connection, session: &Key, buyer: UserId) -> Result<(), ApiError> {
    c.prepare_cached("DELETE FROM saved_cart WHERE buyer = ?1")
        .and_then(|mut st| st.execute([buyer as i64]))
        .map_err(db_error)?;
    c.prepare_cached(
        "INSERT INTO saved_cart (buyer, line, category, number, quantity) \
         SELECT ?2, id, category, number, quantity FROM session_cart WHERE session = ?1",
    )
    .and_then(|mut st| st.execute(params![&session[..], buyer as i64]))
    .map_err(db_error)?;
    Ok(())
}

/// Fills a new session's active cart with a copy of the buyer's saved cart.
pub fn restore_saved(c: &Connection, session: &Key, buyer: UserId) -> Result<(), ApiError> {
    c.prepare_cached(
        "INSERT INTO session_cart (session, category, number, quantity) \
         SELECT ?1, category, number, quantity FROM saved_cart \
         WHERE buyer = ?2 ORDER BY line",
    )
    .and_then(|mut st| st.execute(params![&session[..], buyer as i64]))
    .map_err(db_error)?;
    Ok(())
}

/// Takes `quantity` bought units of item number `number` out of the buying session's
/// active cart and the buyer's saved cart. Only what was bought leaves: units added
/// while the purchase ran stay, and a line that held no more than was bought goes.
pub fn remove_bought(
    c: &Connection,
    session: &Key,
    buyer: UserId,
    number: u64,
    quantity: u32,
) -> Result<(), ApiError> {
    for (table, owner, value) in [
        ("session_cart", "session", rusqlite::types::Value::Blob(session.to_vec())),
        ("saved_cart", "buyer", rusqlite::types::Value::Integer(buyer as i64)),
    ] {
        c.prepare_cached(&format!(
            "DELETE FROM {table} WHERE {owner} = ?1 AND number = ?2 AND quantity <= ?3"
        ))
        .and_then(|mut st| st.execute(params![value, number as i64, quantity]))
        .map_err(db_error)?;
        c.prepare_cached(&format!(
            "UPDATE {table} SET quantity = quantity - ?3 WHERE {owner} = ?1 AND number = ?2"
        ))
        .and_then(|mut st| st.execute(params![value, number as i64, quantity]))
        .map_err(db_error)?;
    }
    Ok(())
}
