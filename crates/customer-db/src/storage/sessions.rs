//! Session rows: which account and role each session key belongs to, and its last
//! activity as last written. The live table is in memory (`crate::sessions`); these rows
//! are what a restart, or a new leader, loads it from.

use agora_domain::{Role, UserId};
use agora_proto::ApiError;
use agora_replication::db_error;
use rusqlite::{Connection, OptionalExtension, params};

use crate::sessions::Key;
use crate::storage::{accounts, carts};

/// A stored session, as [`recent`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    /// The session's key.
    pub key: Key,
    /// Whose it is.
    pub account: UserId,
    /// Its role, or `None` if the stored code names none (the row is then not a session
    /// of anybody: see [`accounts::role_of`]).
    pub role: Option<Role>,
    /// Last activity written, Unix ms.
    pub last_seen_ms: i64,
}

/// Records a new session of `account`, active at `now_ms`.
pub fn start(
    c: &Connection,
    key: &Key,
    account: UserId,
    role: Role,
    now_ms: i64,
) -> Result<(), ApiError> {
    c.prepare_cached(
        "INSERT INTO sessions (key, account, role, created_ms, last_seen_ms) \
         VALUES (?1, ?2, ?3, ?4, ?4)",
    )
    .and_then(|mut st| {
        st.execute(params![&key[..], account as i64, accounts::role_code(role), now_ms])
    })
    .map_err(db_error)?;
    Ok(())
}

/// `not_logged_in` unless the session is stored: a cart write for a session that logged
/// out (or was swept) while the write was on its way must not recreate its cart.
pub fn require(c: &Connection, key: &Key) -> Result<(), ApiError> {
    let exists = c
        .prepare_cached("SELECT 1 FROM sessions WHERE key = ?1")
        .and_then(|mut st| st.exists([&key[..]]))
        .map_err(db_error)?;
    if exists { Ok(()) } else { Err(ApiError::not_logged_in()) }
}

/// The account whose session `key` is, if it is stored.
pub fn account(c: &Connection, key: &Key) -> Result<Option<UserId>, ApiError> {
    c.prepare_cached("SELECT account FROM sessions WHERE key = ?1")
        .and_then(|mut st| st.query_row([&key[..]], |r| r.get::<_, i64>(0)).optional())
        .map(|account| account.map(|a| a as UserId))
        .map_err(db_error)
}

/// Deletes a session and its unsaved cart; whether there was one.
pub fn end(c: &Connection, key: &Key) -> Result<bool, ApiError> {
    carts::clear(c, key)?;
    let deleted = c
        .prepare_cached("DELETE FROM sessions WHERE key = ?1")
        .and_then(|mut st| st.execute([&key[..]]))
        .map_err(db_error)?;
    Ok(deleted > 0)
}

/// Records activity at `at_ms`. Never moves it back: activity flushed late (by an old
/// leader, or a flush applied twice) cannot shorten a session.
pub fn touch(c: &Connection, key: &Key, at_ms: i64) -> Result<(), ApiError> {
    c.prepare_cached("UPDATE sessions SET last_seen_ms = MAX(last_seen_ms, ?2) WHERE key = ?1")
        .and_then(|mut st| st.execute(params![&key[..], at_ms]))
        .map_err(db_error)?;
    Ok(())
}

/// Sessions active at or after `cutoff_ms`; rows whose key is not 32 bytes are skipped.
pub fn recent(c: &Connection, cutoff_ms: i64) -> Result<Vec<Row>, ApiError> {
    let mut st = c
        .prepare("SELECT key, account, role, last_seen_ms FROM sessions WHERE last_seen_ms >= ?1")
        .map_err(db_error)?;
    let rows = st
        .query_map([cutoff_ms], |r| {
            Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?, r.get(3)?))
        })
        .map_err(db_error)?;
    let mut sessions = Vec::new();
    for row in rows {
        let (key, account, role, last_seen_ms) = row.map_err(db_error)?;
        let Ok(key) = Key::try_from(key.as_slice()) else { continue };
        sessions.push(Row {
            key,
            account: account as UserId,
            role: accounts::role_of(role),
            last_seen_ms,
        });
    }
    Ok(sessions)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `end` says whether there was a session to end: logging out twice ends one.
    #[test]
    fn ending_a_session_says_whether_there_was_one() {
        let c = Connection::open_in_memory().expect("open");
        c.execute_batch(crate::SCHEMA).expect("schema");
        let (key, other) = ([1u8; 32], [2u8; 32]);
        start(&c, &key, 1, Role::Buyer, 1_000).expect("start");
        start(&c, &other, 1, Role::Buyer, 1_000).expect("start");
        assert_eq!(end(&c, &key), Ok(true));
        assert_eq!(end(&c, &key), Ok(false));
        assert_eq!(require(&c, &key).map_err(|e| e.code), Err(agora_proto::ErrorCode::NotLoggedIn));
        // The other session is untouched.
        assert_eq!(require(&c, &other), Ok(()));
        assert_eq!(recent(&c, 0).expect("rows").len(), 1);
    }

    /// The rows a restart loads: those active at or after the cutoff, to the millisecond.
    #[test]
    fn recent_sessions_include_the_cutoff_itself() {
        let c = Connection::open_in_memory().expect("open");
        c.execute_batch(crate::SCHEMA).expect("schema");
        start(&c, &[1u8; 32], 1, Role::Buyer, 999).expect("start");
        start(&c, &[2u8; 32], 1, Role::Seller, 1_000).expect("start");
        let rows = recent(&c, 1_000).expect("rows");
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (rows[0].key, rows[0].role, rows[0].last_seen_ms),
            ([2u8; 32], Some(Role::Seller), 1_000)
        );
    }
}
