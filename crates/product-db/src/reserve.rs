//! The product database's part in a purchase (crates/customer-db/DESIGN.md): reserve the
//! units, then confirm or release them. Each step is one transaction and idempotent, keyed
//! by the purchase id, because the coordinator repeats steps after crashes.

use std::collections::BTreeMap;

use agora_domain::{CART_LINES_MAX, CartLine, ItemId, PurchaseLine, QUANTITY_MAX};
use agora_proto::{ApiError, ErrorCode};
use agora_store::db_error;
use rusqlite::{Connection, OptionalExtension, params};

use crate::handler::{item, set_quantity};

/// A reservation's units are off sale, waiting for confirm or release. The numbers are
/// stored in `reservations.state`; never renumber.
pub const RESERVED: i64 = 1;
/// The purchase happened: the units are sold.
pub const CONFIRMED: i64 = 2;
/// The purchase will not happen: the units are back on sale (or were never taken, the
/// row then a tombstone that refuses a late reserve).
pub const RELEASED: i64 = 3;

fn recorded(c: &Connection, purchase: u64) -> Result<Option<(i64, Vec<PurchaseLine>)>, ApiError> {
    let row: Option<(i64, Vec<u8>)> = c
        .prepare_cached("SELECT state, lines FROM reservations WHERE purchase = ?1")
        .and_then(|mut st| {
            st.query_row([purchase as i64], |r| Ok((r.get(0)?, r.get(1)?))).optional()
        })
        .map_err(db_error)?;
    match row {
        None => Ok(None),
        Some((state, blob)) => {
            let lines = postcard::from_bytes(&blob)
                .map_err(|e| ApiError::internal(format!("corrupt reservation {purchase}: {e}")))?;
            Ok(Some((state, lines)))
        }
    }
}

fn aborted(purchase: u64) -> ApiError {
    ApiError::new(ErrorCode::Aborted, format!("purchase {purchase} was cancelled"))
}

/// Takes every line's units off sale, all or none.
pub(crate) fn reserve(
    c: &Connection,
    purchase: u64,
    lines: &[CartLine],
) -> Result<Vec<PurchaseLine>, ApiError> {
    match recorded(c, purchase)? {
        Some((RELEASED, _)) => return Err(aborted(purchase)),
        Some((_, lines)) => return Ok(lines),
        None => {}
    }
    if lines.is_empty() || lines.len() > CART_LINES_MAX {
        return Err(ApiError::new(
            ErrorCode::InvalidArgument,
            format!("invalid lines: a purchase has 1 to {CART_LINES_MAX} items"),
        ));
    }
    // One line per item, whatever the caller sent.
    let mut wanted: BTreeMap<ItemId, u64> = BTreeMap::new();
    for line in lines {
        *wanted.entry(line.item).or_default() += u64::from(line.quantity);
    }
    let mut reserved = Vec::with_capacity(wanted.len());
    for (id, quantity) in wanted {
        let item = item(c, id)?;
        if quantity == 0 || quantity > u64::from(QUANTITY_MAX) {
            return Err(ApiError::new(ErrorCode::InvalidArgument, "invalid quantity"));
        }
        if quantity > u64::from(item.quantity) {
            // Returning an error rolls back the lines already reserved in this job.
            return Err(ApiError::new(
                ErrorCode::NotEnoughUnits,
                format!(
                    "not enough units of item {id} ({}): {} left, the cart has {quantity}",
                    item.name, item.quantity
                ),
            ));
        }
        let quantity = quantity as u32;
        set_quantity(c, &item, item.quantity - quantity)?;
        reserved.push(PurchaseLine {
            item: id,
            seller_id: item.seller_id,
            name: item.name,
            quantity,
            unit_price: item.price,
        });
    }
    store(c, purchase, RESERVED, &reserved)?;
    Ok(reserved)
}

/// Puts a reservation's units back on sale; for an unknown purchase, leaves a tombstone.
pub(crate) fn release(c: &Connection, purchase: u64) -> Result<(), ApiError> {
    match recorded(c, purchase)? {
        None => store(c, purchase, RELEASED, &[]),
        Some((RELEASED, _)) => Ok(()),
        Some((CONFIRMED, _)) => Err(ApiError::new(
            ErrorCode::InvalidArgument,
            format!("purchase {purchase} is complete and cannot be released"),
        )),
        Some((_, lines)) => {
            for line in &lines {
                let item = item(c, line.item)?;
                set_quantity(c, &item, item.quantity + line.quantity)?;
            }
            c.prepare_cached("UPDATE reservations SET state = ?2 WHERE purchase = ?1")
                .and_then(|mut st| st.execute(params![purchase as i64, RELEASED]))
                .map_err(db_error)?;
            Ok(())
        }
    }
}

/// Marks a reservation as sold.
pub(crate) fn confirm(c: &Connection, purchase: u64) -> Result<(), ApiError> {
    match recorded(c, purchase)? {
        None => Err(ApiError::new(
            ErrorCode::InvalidArgument,
            format!("no reservation for purchase {purchase}"),
        )),
        Some((RELEASED, _)) => Err(aborted(purchase)),
        Some((CONFIRMED, _)) => Ok(()),
        Some(_) => c
            .prepare_cached("UPDATE reservations SET state = ?2 WHERE purchase = ?1")
            .and_then(|mut st| st.execute(params![purchase as i64, CONFIRMED]))
            .map(|_| ())
            .map_err(db_error),
    }
}

fn store(
    c: &Connection,
    purchase: u64,
    state: i64,
    lines: &[PurchaseLine],
) -> Result<(), ApiError> {
    let blob = postcard::to_allocvec(lines).map_err(|e| ApiError::internal(e.to_string()))?;
    c.prepare_cached("INSERT INTO reservations (purchase, state, lines) VALUES (?1, ?2, ?3)")
        .and_then(|mut st| st.execute(params![purchase as i64, state, blob]))
        .map_err(db_error)?;
    Ok(())
}
