//! Purchase history: what each buyer bought, at what prices, when. Written only by a
//! purchase's commit, under the purchase's id, so a purchase is in it at most once.

use agora_domain::{ItemId, Money, Page, Purchase, PurchaseLine, UserId};
use agora_proto::ApiError;
use agora_replication::db_error;
use rusqlite::{Connection, params};

/// Records purchase `id` of `lines` by `buyer` at `at_ms`, with their total. A second
/// record of the same id fails (primary key), undoing the transaction it is in.
pub fn record(
    c: &Connection,
    id: u64,
    buyer: UserId,
    at_ms: i64,
    lines: &[PurchaseLine],
) -> Result<(), ApiError> {
    let total: i64 = lines.iter().map(|l| l.unit_price.cents() * i64::from(l.quantity)).sum();
    c.prepare_cached("INSERT INTO purchases (id, buyer, at_ms, total) VALUES (?1, ?2, ?3, ?4)")
        .and_then(|mut st| st.execute(params![id as i64, buyer as i64, at_ms, total]))
        .map_err(db_error)?;
    let mut insert = c
        .prepare_cached(
            "INSERT INTO purchase_lines \
             (purchase, line, category, number, seller, name, quantity, unit_price) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .map_err(db_error)?;
    for (n, l) in lines.iter().enumerate() {
        insert
            .execute(params![
                id as i64,
                n as i64,
                l.item.category,
                l.item.number as i64,
                l.seller_id as i64,
                l.name,
                l.quantity,
                l.unit_price.cents()
            ])
            .map_err(db_error)?;
    }
    Ok(())
}

/// Purchase `id` from the history.
pub fn load(c: &Connection, id: u64) -> Result<Purchase, ApiError> {
    let (at, total): (i64, i64) = c
        .prepare_cached("SELECT at_ms, total FROM purchases WHERE id = ?1")
        .and_then(|mut st| st.query_row([id as i64], |r| Ok((r.get(0)?, r.get(1)?))))
        .map_err(db_error)?;
    let mut st = c
        .prepare_cached(
            "SELECT category, number, seller, name, quantity, unit_price FROM purchase_lines \
             WHERE purchase = ?1 ORDER BY line",
        )
        .map_err(db_error)?;
    let lines = st
        .query_map([id as i64], |r| {
            Ok(PurchaseLine {
                item: ItemId { category: r.get(0)?, number: r.get::<_, i64>(1)? as u64 },
                seller_id: r.get::<_, i64>(2)? as UserId,
                name: r.get(3)?,
                quantity: r.get(4)?,
                unit_price: Money::from_cents(r.get(5)?),
            })
        })
        .map_err(db_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db_error)?;
    Ok(Purchase { id, at_unix_ms: at, lines, total: Money::from_cents(total) })
}

/// One page of a buyer's purchases, newest first.
pub fn of_buyer(c: &Connection, buyer: UserId, page: Page) -> Result<Vec<Purchase>, ApiError> {
    let mut st = c
        .prepare_cached(
            "SELECT id FROM purchases WHERE buyer = ?1 ORDER BY id DESC LIMIT ?2 OFFSET ?3",
        )
        .map_err(db_error)?;
    let ids = st
        .query_map(params![buyer as i64, page.limit, page.offset], |r| r.get::<_, i64>(0))
        .map_err(db_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db_error)?;
    ids.into_iter().map(|id| load(c, id as u64)).collect()
}
