//! The ledger: one row of `charges` per idempotency key, holding the first decision made
//! for it. A key's row is inserted once and never changed, so the first decision is the
//! answer for that key for ever; that is what makes a charge safe to repeat.

use agora_domain::{Money, UserId};
use agora_proto::ApiError;
use agora_proto::messages::payments::Outcome;
use agora_replication::db_error;
use rusqlite::{Connection, OptionalExtension, params};

/// The ledger's table.
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS charges (
    key           TEXT    PRIMARY KEY,
    state         INTEGER NOT NULL,   -- APPROVED, DECLINED or CANCELLED
    amount        INTEGER NOT NULL,   -- cents
    holder        TEXT    NOT NULL,
    last4         TEXT    NOT NULL,
    authorization TEXT    NOT NULL,   -- approval reference, or decline reason
    at_ms         INTEGER NOT NULL,
    payer         INTEGER NOT NULL DEFAULT 0  -- the buyer charged (0: recorded before payers were)
) WITHOUT ROWID;";

/// `charges.state` of an approved charge. The numbers are stored; never renumber.
pub const APPROVED: i64 = 1;
/// `charges.state` of a declined charge.
pub const DECLINED: i64 = 2;
/// `charges.state` of a charge cancelled before it arrived.
pub const CANCELLED: i64 = 3;

/// A charge as the ledger records it. Never the card number: its last four digits.
#[derive(Debug)]
pub(crate) struct Entry<'a> {
    pub key: &'a str,
    pub outcome: &'a Outcome,
    pub amount: Money,
    pub payer: UserId,
    pub holder: &'a str,
    pub last4: &'a str,
    /// When it was decided: the proposer's time.
    pub at_ms: i64,
}

/// The outcome recorded for `key`, if any request with it has been decided.
pub(crate) fn outcome_of(c: &Connection, key: &str) -> Result<Option<Outcome>, ApiError> {
    let row: Option<(i64, i64, String, i64)> = c
        .prepare_cached("SELECT state, amount, authorization, payer FROM charges WHERE key = ?1")
        .and_then(|mut st| {
            st.query_row([key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).optional()
        })
        .map_err(db_error)?;
    let Some((state, amount, text, payer)) = row else { return Ok(None) };
    match state {
        APPROVED => Ok(Some(Outcome::Approved {
            authorization: text,
            amount: Money::from_cents(amount),
            payer: payer as UserId,
        })),
        DECLINED => Ok(Some(Outcome::Declined { reason: text })),
        CANCELLED => Ok(Some(Outcome::Cancelled)),
        // Written by a newer version, or damaged: calling it anything could make the
        // coordinator commit or cancel a purchase wrongly, so it is refused.
        other => Err(ApiError::internal(format!(
            "charge {key:?} is in state {other}, which this version does not know"
        ))),
    }
}

/// Records the first decision for `entry.key`. The key is the primary key, so a second
/// row for it cannot be written: callers look for one first, and answer it instead.
pub(crate) fn insert(c: &Connection, entry: &Entry<'_>) -> Result<(), ApiError> {
    let (state, text) = match entry.outcome {
        Outcome::Approved { authorization, .. } => (APPROVED, authorization.as_str()),
        Outcome::Declined { reason } => (DECLINED, reason.as_str()),
        Outcome::Cancelled => (CANCELLED, ""),
    };
    c.prepare_cached(
        "INSERT INTO charges (key, state, amount, holder, last4, authorization, at_ms, payer) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .and_then(|mut st| {
        st.execute(params![
            entry.key,
            state,
            entry.amount.cents(),
            entry.holder,
            entry.last4,
            text,
            entry.at_ms,
            entry.payer as i64
        ])
    })
    .map_err(db_error)?;
    Ok(())
}

/// Gives a ledger from before charges named their payer the column (0 for old rows).
pub(crate) fn upgrade(c: &Connection) -> Result<(), ApiError> {
    let has_payer = c
        .prepare("SELECT 1 FROM pragma_table_info('charges') WHERE name = 'payer'")
        .and_then(|mut st| st.exists([]))
        .map_err(db_error)?;
    if !has_payer {
        c.execute_batch("ALTER TABLE charges ADD COLUMN payer INTEGER NOT NULL DEFAULT 0")
            .map_err(db_error)?;
    }
    Ok(())
}
