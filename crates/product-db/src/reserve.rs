//! The product database's part in a purchase (crates/customer-db/DESIGN.md): reserve the
//! units, then confirm or release them. Each step is one transaction and idempotent, keyed
//! by the purchase id, because the coordinator repeats steps after crashes, and a
//! replicated log may hand the same command over again or late.
//!
//! A reservation's life, one row of `reservations` per purchase id:
//!
//! ```text
//!   (none) ──Reserve──► RESERVED ──Confirm──► CONFIRMED   (sold; final)
//!     │                    │
//!     │                    └──Release / the unclaimed sweep──► RELEASED   (units back; final)
//!     └──Release──► RELEASED (a tombstone: nothing was taken, a late Reserve is refused)
//! ```
//!
//! Every arrow is a compare-and-set on the row's current state (an `INSERT` that the
//! primary key refuses if the row exists, or an `UPDATE ... WHERE state = <from>`), and
//! units move only when that write changed the row. A step that finds the row already
//! where it leads answers as it did the first time and changes nothing.

use std::collections::{BTreeMap, HashSet};

use agora_domain::{CART_LINES_MAX, CartLine, ItemId, PurchaseLine, QUANTITY_MAX};
use agora_proto::{ApiError, ErrorCode};
use agora_replication::db_error;
use rusqlite::{Connection, OptionalExtension, params};

use crate::items::{is_withdrawn, item, set_quantity};

/// A reservation's units are off sale, waiting for confirm or release. The numbers are
/// stored in `reservations.state`; never renumber.
pub const RESERVED: i64 = 1;
/// The purchase happened: the units are sold.
pub const CONFIRMED: i64 = 2;
/// The purchase will not happen: the units are back on sale (or were never taken, the
/// row then a tombstone that refuses a late reserve).
pub const RELEASED: i64 = 3;

/// How long a reservation of a purchase id the coordinator has never given may be held
/// before it is released: far longer than any request can be on its way.
pub(crate) const UNCLAIMED_AFTER_MS: i64 = 10 * 60_000;

/// A purchase's row of `reservations`.
struct Reservation {
    /// [`RESERVED`], [`CONFIRMED`] or [`RELEASED`].
    state: i64,
    /// What was taken off sale, as answered to the first Reserve (none for a tombstone).
    lines: Vec<PurchaseLine>,
}

/// The reservation of `purchase`, if any step of it has been recorded.
fn reservation(c: &Connection, purchase: u64) -> Result<Option<Reservation>, ApiError> {
    let row: Option<(i64, Vec<u8>)> = c
        .prepare_cached("SELECT state, lines FROM reservations WHERE purchase = ?1")
        .and_then(|mut st| {
            st.query_row([purchase as i64], |r| Ok((r.get(0)?, r.get(1)?))).optional()
        })
        .map_err(db_error)?;
    let Some((state, blob)) = row else { return Ok(None) };
    if ![RESERVED, CONFIRMED, RELEASED].contains(&state) {
        // Written by a newer version, or damaged: guessing what it means could sell or
        // free units that are not ours to, so every step on it is refused.
        return Err(ApiError::internal(format!(
            "reservation {purchase} is in state {state}, which this version does not know"
        )));
    }
    let lines = postcard::from_bytes(&blob)
        .map_err(|e| ApiError::internal(format!("corrupt reservation {purchase}: {e}")))?;
    Ok(Some(Reservation { state, lines }))
}

/// The answer to a step on a purchase that has been released: the coordinator cancelled it
/// (or a tombstone stands for it), so it can no longer take or sell units.
fn cancelled(purchase: u64) -> ApiError {
    ApiError::new(ErrorCode::Aborted, format!("purchase {purchase} was cancelled"))
}

/// Moves `purchase`'s reservation from state `from` to `to`, only if it is in `from` now.
/// Callers have read the state in the same transaction, so the guard never fails in
/// practice; it is there so that the write itself carries the rule, whoever calls it.
fn transition(c: &Connection, purchase: u64, from: i64, to: i64) -> Result<(), ApiError> {
    let changed = c
        .prepare_cached("UPDATE reservations SET state = ?3 WHERE purchase = ?1 AND state = ?2")
        .and_then(|mut st| st.execute(params![purchase as i64, from, to]))
        .map_err(db_error)?;
    if changed != 1 {
        return Err(ApiError::internal(format!(
            "reservation {purchase} is no longer in state {from}"
        )));
    }
    Ok(())
}

/// Records the first step of `purchase`: the row does not exist yet, and the primary key
/// refuses a second one, so a reservation is created exactly once.
fn insert(
    c: &Connection,
    purchase: u64,
    state: i64,
    lines: &[PurchaseLine],
    reserved_ms: i64,
) -> Result<(), ApiError> {
    let blob = postcard::to_allocvec(lines).map_err(|e| ApiError::internal(e.to_string()))?;
    c.prepare_cached(
        "INSERT INTO reservations (purchase, state, lines, reserved_ms) VALUES (?1, ?2, ?3, ?4)",
    )
    .and_then(|mut st| st.execute(params![purchase as i64, state, blob, reserved_ms]))
    .map_err(db_error)?;
    Ok(())
}

/// Takes every line's units off sale, all or none, as reserved at `now_ms`; answers each
/// line's seller, name and unit price at this moment.
pub(crate) fn reserve(
    c: &Connection,
    purchase: u64,
    lines: &[CartLine],
    now_ms: i64,
) -> Result<Vec<PurchaseLine>, ApiError> {
    match reservation(c, purchase)? {
        // Released, or a tombstone: a Reserve that arrives after its purchase was cancelled
        // (delayed in the network, repeated after a crash) must not lock units for ever.
        Some(r) if r.state == RELEASED => return Err(cancelled(purchase)),
        // A repeat: the first Reserve took the units; answer what it took, take nothing.
        Some(r) => return Ok(r.lines),
        None => {}
    }
    if lines.is_empty() || lines.len() > CART_LINES_MAX {
        return Err(ApiError::new(
            ErrorCode::InvalidArgument,
            format!("invalid lines: a purchase has 1 to {CART_LINES_MAX} items"),
        ));
    }
    // One line per item, whatever the caller sent; in item order, so the same lines give
    // the same writes everywhere.
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
            // Returning an error rolls back the lines already reserved in this command, so
            // a purchase holds all its units or none.
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
    // none → RESERVED.
    insert(c, purchase, RESERVED, &reserved, now_ms)?;
    Ok(reserved)
}

/// Puts a reservation's units back on sale; for an unknown purchase, leaves a tombstone.
pub(crate) fn release(c: &Connection, purchase: u64) -> Result<(), ApiError> {
    let Some(found) = reservation(c, purchase)? else {
        // none → RELEASED: the Reserve may still be on its way; the tombstone refuses it.
        // `reserved_ms` 0: nothing was held, and the unclaimed sweep reads only RESERVED.
        return insert(c, purchase, RELEASED, &[], 0);
    };
    match found.state {
        // Already released: the units went back the first time.
        RELEASED => Ok(()),
        // Sold: the buyer paid for these units; the coordinator only releases a purchase it
        // did not commit, so this is a caller's mistake, refused the same way every time.
        CONFIRMED => Err(ApiError::new(
            ErrorCode::InvalidArgument,
            format!("purchase {purchase} is complete and cannot be released"),
        )),
        _ => {
            // RESERVED → RELEASED first: only the command that makes this move gives the
            // units back, so they come back once however often Release is applied.
            transition(c, purchase, RESERVED, RELEASED)?;
            for line in &found.lines {
                // Units of an item its seller has withdrawn stay off sale.
                if is_withdrawn(c, line.item)? {
                    continue;
                }
                let item = item(c, line.item)?;
                set_quantity(c, &item, item.quantity + line.quantity)?;
            }
            Ok(())
        }
    }
}

/// Marks a reservation as sold.
pub(crate) fn confirm(c: &Connection, purchase: u64) -> Result<(), ApiError> {
    let Some(found) = reservation(c, purchase)? else {
        // The coordinator confirms only what it reserved: nothing is recorded, so a Reserve
        // that comes later still works as if this had never arrived.
        return Err(ApiError::new(
            ErrorCode::InvalidArgument,
            format!("no reservation for purchase {purchase}"),
        ));
    };
    match found.state {
        // Released (or a tombstone): its units may be in another buyer's hands by now, so
        // it cannot become a sale. The same refusal every time.
        RELEASED => Err(cancelled(purchase)),
        // Already sold.
        CONFIRMED => Ok(()),
        // RESERVED → CONFIRMED: the units were already off sale; nothing else moves.
        _ => transition(c, purchase, RESERVED, CONFIRMED),
    }
}

/// Releases the held reservations no purchase claims (see `Request::Held`): those of a
/// purchase below `next` that is not `open`, and those of an id at or above `next` held
/// since before `now_ms - UNCLAIMED_AFTER_MS`. Returns how many. `now_ms` is the
/// proposer's time, so every replica releases the same ones.
pub(crate) fn release_unclaimed(
    c: &Connection,
    open: &[u64],
    next: u64,
    now_ms: i64,
) -> Result<u64, ApiError> {
    let claimed: HashSet<u64> = open.iter().copied().collect();
    let still_reserved: Vec<(u64, i64)> = {
        // In purchase order (the partial index's), so every replica releases in one order.
        let mut st = c
            .prepare_cached(&format!(
                "SELECT purchase, reserved_ms FROM reservations WHERE state = {RESERVED} \
                 ORDER BY purchase"
            ))
            .map_err(db_error)?;
        let rows = st
            .query_map([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)?)))
            .map_err(db_error)?;
        rows.collect::<Result<_, _>>().map_err(db_error)?
    };
    let mut released = 0;
    for (purchase, reserved_ms) in still_reserved {
        // Below `next`: an id the coordinator gave, whose purchase has ended if it is not
        // open. At or above: an id never given, which only time can rule out.
        let unclaimed = !claimed.contains(&purchase)
            && (purchase < next || now_ms - reserved_ms >= UNCLAIMED_AFTER_MS);
        if unclaimed {
            tracing::warn!(purchase, "releasing a reservation no purchase claims");
            release(c, purchase)?;
            released += 1;
        }
    }
    Ok(released)
}

/// Adds `reserved_ms` to a reservations table from before it was kept.
pub(crate) fn upgrade(c: &Connection) -> rusqlite::Result<()> {
    let timed = c
        .prepare("SELECT 1 FROM pragma_table_info('reservations') WHERE name = 'reserved_ms'")?
        .exists([])?;
    if !timed {
        c.execute_batch(
            "ALTER TABLE reservations ADD COLUMN reserved_ms INTEGER NOT NULL DEFAULT 0",
        )?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    /// A product database with one item of 10 units, number 1 in category 3.
    fn db() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(crate::SCHEMA).unwrap();
        c.execute(
            "INSERT INTO items (category, seller, name, keywords, condition, price, quantity, \
             listed_ms) VALUES (3, 1, 'Pen', 'pen', 0, 150, 10, 0)",
            [],
        )
        .unwrap();
        crate::postings::add(&c, "pen", 3, 1).unwrap();
        c
    }

    const PEN: ItemId = ItemId { category: 3, number: 1 };

    fn left(c: &Connection) -> u32 {
        item(c, PEN).unwrap().quantity
    }

    fn take(c: &Connection, purchase: u64, quantity: u32, at: i64) {
        reserve(c, purchase, &[CartLine { item: PEN, quantity }], at).unwrap();
    }

    #[test]
    fn reservations_no_purchase_claims_are_released() {
        let c = db();
        take(&c, 4, 1, NOW); // an open purchase: claimed
        take(&c, 2, 2, NOW); // below `next`, not open: its purchase ended
        take(&c, 50, 3, NOW); // an id never given, just now: may be on its way
        take(&c, 60, 4, NOW - UNCLAIMED_AFTER_MS); // an id never given, long held
        assert_eq!(left(&c), 0);
        assert_eq!(release_unclaimed(&c, &[4], 10, NOW).unwrap(), 2);
        assert_eq!(left(&c), 6);
        // Released for good: a late Reserve of the same purchase is refused.
        let late = reserve(&c, 2, &[CartLine { item: PEN, quantity: 1 }], NOW).unwrap_err();
        assert_eq!(late.code, ErrorCode::Aborted);
        // Nothing more to do the second time; the claimed one is untouched.
        assert_eq!(release_unclaimed(&c, &[4], 10, NOW).unwrap(), 0);
        confirm(&c, 4).unwrap();
        assert_eq!(release_unclaimed(&c, &[], 10, NOW + UNCLAIMED_AFTER_MS).unwrap(), 1);
        assert_eq!(left(&c), 9);
    }

    /// Adds `n` items of `units` each (numbers 2 on), for tests that need many.
    fn more_items(c: &Connection, n: usize, units: u32) -> Vec<ItemId> {
        (0..n)
            .map(|_| {
                c.execute(
                    "INSERT INTO items (category, seller, name, keywords, condition, price, \
                     quantity, listed_ms) VALUES (3, 1, 'Cup', 'cup', 0, 100, ?1, 0)",
                    [units],
                )
                .unwrap();
                ItemId { category: 3, number: c.last_insert_rowid() as u64 }
            })
            .collect()
    }

    fn code(answer: Result<Vec<PurchaseLine>, ApiError>) -> ErrorCode {
        answer.unwrap_err().code
    }

    /// A purchase has 1 to `CART_LINES_MAX` lines, counted as sent.
    #[test]
    fn a_purchase_has_one_to_the_most_lines_a_cart_holds() {
        let c = db();
        let items = more_items(&c, CART_LINES_MAX + 1, 5);
        let lines: Vec<CartLine> =
            items.iter().map(|&item| CartLine { item, quantity: 1 }).collect();
        assert_eq!(code(reserve(&c, 1, &[], NOW)), ErrorCode::InvalidArgument);
        assert_eq!(code(reserve(&c, 2, &lines, NOW)), ErrorCode::InvalidArgument);
        let most = reserve(&c, 3, &lines[..CART_LINES_MAX], NOW).unwrap();
        assert_eq!(most.len(), CART_LINES_MAX);
    }

    /// An item's quantity, summed over the lines that name it, is 1 to `QUANTITY_MAX`;
    /// outside that the request is wrong (`invalid_argument`), whatever is in stock.
    #[test]
    fn a_line_asks_for_one_to_the_most_units_a_line_may_hold() {
        let c = db();
        let [big] = more_items(&c, 1, QUANTITY_MAX + 1)[..] else { unreachable!() };
        let line = |quantity| CartLine { item: big, quantity };
        assert_eq!(code(reserve(&c, 1, &[line(0)], NOW)), ErrorCode::InvalidArgument);
        let over = [line(QUANTITY_MAX), line(1)];
        assert_eq!(code(reserve(&c, 2, &over, NOW)), ErrorCode::InvalidArgument);
        let most = reserve(&c, 3, &[line(QUANTITY_MAX)], NOW).unwrap();
        assert_eq!(most[0].quantity, QUANTITY_MAX);
        // Asking for more than is left is another matter: not enough units.
        assert_eq!(code(reserve(&c, 4, &[line(2)], NOW)), ErrorCode::NotEnoughUnits);
    }

    /// The sweep's two rules at their edges: an id equal to `next` was never given (so
    /// only time releases it), and an unclaimed id is released after 10 minutes held,
    /// not a millisecond before.
    #[test]
    fn the_unclaimed_sweep_at_its_edges() {
        let c = db();
        take(&c, 10, 1, NOW); // == next: not given yet
        take(&c, 11, 2, NOW - 10 * 60_000); // held exactly 10 minutes
        take(&c, 12, 3, NOW - 10 * 60_000 + 1); // a millisecond short of it
        assert_eq!(left(&c), 4);
        assert_eq!(release_unclaimed(&c, &[], 10, NOW).unwrap(), 1);
        assert_eq!(left(&c), 6, "only the one held 10 minutes");
        assert_eq!(release_unclaimed(&c, &[], 11, NOW).unwrap(), 1);
        assert_eq!(left(&c), 7, "10 is below next now, and not open");
    }

    /// A reservations table from before `reserved_ms` was kept gets the column (its rows
    /// 0, long held); a table that has it is left alone, however often this runs.
    #[test]
    fn upgrade_adds_the_reservation_time_once() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE reservations (purchase INTEGER PRIMARY KEY, state INTEGER NOT NULL, \
             lines BLOB NOT NULL); INSERT INTO reservations VALUES (1, 1, x'00');",
        )
        .unwrap();
        upgrade(&c).unwrap();
        upgrade(&c).unwrap();
        let at: i64 =
            c.query_row("SELECT reserved_ms FROM reservations", [], |r| r.get(0)).unwrap();
        assert_eq!(at, 0);
        let current = db();
        upgrade(&current).unwrap();
    }
}
