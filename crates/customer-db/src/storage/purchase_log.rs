//! The purchase log, `purchase_tx`: one row per MakePurchase, recording how far it got
//! (DESIGN.md beside this crate). A row's state only moves by [`move_state`], a
//! compare-and-set, so a driver that read an old state cannot move it back.

use agora_domain::{CartLine, Money, PurchaseLine, UserId};
use agora_proto::{ApiError, ErrorCode};
use agora_replication::db_error;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::sessions::Key;

/// Where a purchase stands. The numbers are stored; never renumber (schema.sql's partial
/// indexes name them too, and a test checks they agree).
///
/// ```text
/// Started ──reserve ok──► Reserved ──charge approved──► Committed ──confirm ok──► Done
///    │                      │   └─charge outcome unknown─► Resolving ──resolve──┘ or ┐
///    │                      └──declined──► Aborting ──release ok──► Aborted ◄────────┘
///    └──reserve refused──► Aborted;  reserve unreachable ──► Aborting
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum State {
    /// Recorded, holding the session's cart; units may or may not be reserved at the
    /// product database; payments not contacted, so nothing can have been charged.
    Started = 1,
    /// Units reserved, lines and total recorded; the charge may or may not have been
    /// sent, so only payments can say whether it is bought.
    Reserved = 2,
    /// The charge was sent and its answer lost: payments decides (`Resolve`), and the
    /// buyer hears `purchase_pending` until it has.
    Resolving = 3,
    /// Decided not to happen (nothing was or will be charged); reserved units, if any,
    /// are being released.
    Aborting = 4,
    /// Did not happen: nothing reserved, nothing charged. Final.
    Aborted = 5,
    /// Happened: charged, and in the buyer's history with counters and carts updated;
    /// the product database not yet told the units are sold.
    Committed = 6,
    /// Happened, and every party knows. Final.
    Done = 7,
}

impl State {
    /// Every state, in stored order.
    pub const ALL: [State; 7] = [
        State::Started,
        State::Reserved,
        State::Resolving,
        State::Aborting,
        State::Aborted,
        State::Committed,
        State::Done,
    ];

    /// The states a purchase ends in; recovery drives every other to one of them.
    pub const FINISHED: [State; 2] = [State::Aborted, State::Done];

    /// The states of a purchase that holds its session's cart: no other purchase of that
    /// cart may begin until it commits or aborts.
    pub const HOLDING_CART: [State; 3] = [State::Started, State::Reserved, State::Resolving];

    /// The state stored as `n`; a number that names none is a corrupt log, refused
    /// rather than taken for any state (least of all `Done`).
    pub fn from_i64(n: i64) -> Result<State, ApiError> {
        State::ALL
            .into_iter()
            .find(|s| *s as i64 == n)
            .ok_or_else(|| ApiError::internal(format!("corrupt purchase log: state {n}")))
    }
}

/// `states` as an SQL list, for `state IN (...)`. Literals rather than bound parameters,
/// so that SQLite can use the partial indexes (it cannot prove a parameter matches one).
pub fn sql_list(states: &[State]) -> String {
    states.iter().map(|s| (*s as i64).to_string()).collect::<Vec<_>>().join(", ")
}

/// One purchase's row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tx {
    /// The purchase id; the payment key is made from it.
    pub id: u64,
    /// Who is buying.
    pub buyer: UserId,
    /// The session whose cart is being bought.
    pub session: Key,
    /// How far it got.
    pub state: State,
    /// The lines reserved, with sellers and prices: from `Reserved` on.
    pub lines: Option<Vec<PurchaseLine>>,
    /// Why it was aborted, as the buyer was told.
    pub error: Option<ApiError>,
}

impl Tx {
    /// The total of the reserved lines (zero before there are any).
    pub fn total(&self) -> Money {
        let cents = self.lines.iter().flatten().fold(0i64, |sum, l| {
            sum.saturating_add(l.unit_price.cents().saturating_mul(i64::from(l.quantity)))
        });
        Money::from_cents(cents)
    }
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, ApiError> {
    postcard::to_allocvec(value).map_err(|e| ApiError::internal(e.to_string()))
}

fn decode<T: serde::de::DeserializeOwned>(blob: &[u8]) -> Result<T, ApiError> {
    postcard::from_bytes(blob).map_err(|e| ApiError::internal(format!("corrupt purchase log: {e}")))
}

/// Records a new purchase of `cart` as `Started` and returns its id. Ids come from
/// AUTOINCREMENT: the same on every replica that applies the same inserts.
pub fn begin(
    c: &Connection,
    buyer: UserId,
    key: &str,
    session: &Key,
    cart: &[CartLine],
    now_ms: i64,
) -> Result<u64, ApiError> {
    let cart = encode(&cart)?;
    c.prepare_cached(
        "INSERT INTO purchase_tx (buyer, key, session, state, cart, created_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut st| {
        st.execute(params![buyer as i64, key, &session[..], State::Started as i64, cart, now_ms])
    })
    .map_err(db_error)?;
    Ok(c.last_insert_rowid() as u64)
}

/// The buyer's purchase made with purchase key `key`, if any.
pub fn find(c: &Connection, buyer: UserId, key: &str) -> Result<Option<Tx>, ApiError> {
    let id: Option<i64> = c
        .prepare_cached("SELECT id FROM purchase_tx WHERE buyer = ?1 AND key = ?2")
        .and_then(|mut st| st.query_row(params![buyer as i64, key], |r| r.get(0)).optional())
        .map_err(db_error)?;
    id.map(|id| load(c, id as u64)).transpose()
}

/// The purchase that holds the session's cart, if any (at most one does).
pub fn holding(c: &Connection, session: &Key) -> Result<Option<u64>, ApiError> {
    let sql = format!(
        "SELECT id FROM purchase_tx WHERE session = ?1 AND state IN ({}) LIMIT 1",
        sql_list(&State::HOLDING_CART)
    );
    c.prepare_cached(&sql)
        .and_then(|mut st| st.query_row(params![&session[..]], |r| r.get::<_, i64>(0)).optional())
        .map(|id| id.map(|id| id as u64))
        .map_err(db_error)
}

/// Purchase `id`'s row; an error if there is none.
pub fn load(c: &Connection, id: u64) -> Result<Tx, ApiError> {
    type Row = (i64, Vec<u8>, i64, Option<Vec<u8>>, Option<String>, Option<String>);
    let row: Option<Row> = c
        .prepare_cached(
            "SELECT buyer, session, state, lines, error_code, error FROM purchase_tx WHERE id = ?1",
        )
        .and_then(|mut st| {
            st.query_row([id as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
            })
            .optional()
        })
        .map_err(db_error)?;
    let Some((buyer, session, state, lines, code, message)) = row else {
        return Err(ApiError::internal(format!("no purchase {id} in the log")));
    };
    let error = match (code, message) {
        (Some(code), Some(message)) => {
            Some(ApiError::new(ErrorCode::from_name(&code).unwrap_or(ErrorCode::Internal), message))
        }
        _ => None,
    };
    let session = Key::try_from(session.as_slice())
        .map_err(|_| ApiError::internal(format!("corrupt purchase log: session of {id}")))?;
    Ok(Tx {
        id,
        buyer: buyer as UserId,
        session,
        state: State::from_i64(state)?,
        lines: lines.map(|b| decode(&b)).transpose()?,
        error,
    })
}

/// The cart lines purchase `id` was begun with: what a retry taking it over reserves.
pub fn cart(c: &Connection, id: u64) -> Result<Vec<CartLine>, ApiError> {
    let blob: Option<Vec<u8>> = c
        .prepare_cached("SELECT cart FROM purchase_tx WHERE id = ?1")
        .and_then(|mut st| st.query_row([id as i64], |r| r.get(0)).optional())
        .map_err(db_error)?;
    let blob = blob.ok_or_else(|| ApiError::internal(format!("no purchase {id} in the log")))?;
    decode(&blob)
}

/// Moves purchase `id` from `from` to `to` if it is in `from` now (a compare-and-set);
/// whether it moved.
pub fn move_state(c: &Connection, id: u64, from: State, to: State) -> Result<bool, ApiError> {
    let moved = c
        .prepare_cached("UPDATE purchase_tx SET state = ?3 WHERE id = ?1 AND state = ?2")
        .and_then(|mut st| st.execute(params![id as i64, from as i64, to as i64]))
        .map_err(db_error)?;
    Ok(moved == 1)
}

/// Records the reserved lines and their total.
pub fn set_lines(
    c: &Connection,
    id: u64,
    lines: &[PurchaseLine],
    total: Money,
) -> Result<(), ApiError> {
    let blob = encode(&lines)?;
    c.prepare_cached("UPDATE purchase_tx SET lines = ?2, total = ?3 WHERE id = ?1")
        .and_then(|mut st| st.execute(params![id as i64, blob, total.cents()]))
        .map_err(db_error)?;
    Ok(())
}

/// Records why the purchase was aborted, as a retry will be told.
pub fn set_error(c: &Connection, id: u64, error: &ApiError) -> Result<(), ApiError> {
    c.prepare_cached("UPDATE purchase_tx SET error_code = ?2, error = ?3 WHERE id = ?1")
        .and_then(|mut st| st.execute(params![id as i64, error.code.as_str(), error.message]))
        .map_err(db_error)?;
    Ok(())
}

/// The unfinished purchases, oldest first, at most `limit`.
pub fn unfinished(c: &Connection, limit: i64) -> Result<Vec<u64>, ApiError> {
    let sql = format!(
        "SELECT id FROM purchase_tx WHERE state NOT IN ({}) ORDER BY id LIMIT {limit}",
        sql_list(&State::FINISHED)
    );
    let mut st = c.prepare_cached(&sql).map_err(db_error)?;
    let ids = st.query_map([], |r| r.get::<_, i64>(0)).map_err(db_error)?;
    ids.map(|id| id.map(|id| id as u64)).collect::<Result<_, _>>().map_err(db_error)
}

/// The id the next purchase will get: every id below it has been given.
pub fn next_id(c: &Connection) -> Result<u64, ApiError> {
    let next: i64 = c
        .query_row("SELECT COALESCE(MAX(id), 0) + 1 FROM purchase_tx", [], |r| r.get(0))
        .map_err(db_error)?;
    Ok(next as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stored_state_reads_back_and_no_other_number_does() {
        for state in State::ALL {
            assert_eq!(State::from_i64(state as i64).ok(), Some(state));
        }
        for corrupt in [0, 8, -1, i64::MAX] {
            assert!(State::from_i64(corrupt).is_err(), "{corrupt}");
        }
    }

    /// schema.sql cannot name `State`: its partial indexes spell the numbers out. They
    /// must be the ones the queries above use, or SQLite would ignore the indexes.
    #[test]
    fn the_schemas_partial_indexes_name_the_same_states() {
        let schema = crate::SCHEMA;
        let open = format!("WHERE state NOT IN ({});", sql_list(&State::FINISHED));
        let holding = format!("WHERE state IN ({});", sql_list(&State::HOLDING_CART));
        assert!(schema.contains(&open), "purchase_tx_open should say {open}");
        assert!(schema.contains(&holding), "purchase_tx_holding should say {holding}");
    }

    /// `next_id` is what the product database's sweep trusts: every id below it was given
    /// by this log, so a reservation under such an id that is not open has no purchase.
    #[test]
    fn the_next_id_is_one_past_the_highest_given() {
        let c = Connection::open_in_memory().expect("open");
        c.execute_batch(crate::SCHEMA).expect("schema");
        assert_eq!(next_id(&c), Ok(1));
        let cart =
            [CartLine { item: agora_domain::ItemId { category: 1, number: 1 }, quantity: 1 }];
        for key in ["k1", "k2", "k3"] {
            begin(&c, 5, key, &[0; 32], &cart, 0).expect("begin");
        }
        assert_eq!(next_id(&c), Ok(4));
    }
}
