//! Buyer and seller accounts: usernames, password hashes and the units-bought or
//! units-sold counter.

use agora_domain::{Role, UserId};
use agora_proto::{ApiError, ErrorCode};
use agora_replication::db_error;
use rusqlite::{Connection, OptionalExtension, params};

/// How `role` is stored.
pub fn role_code(role: Role) -> i64 {
    match role {
        Role::Seller => 1,
        Role::Buyer => 2,
    }
}

/// The role stored as `code`, or `None` for a number that names no role (a corrupt row,
/// which must not become a buyer's session by default).
pub fn role_of(code: i64) -> Option<Role> {
    match code {
        1 => Some(Role::Seller),
        2 => Some(Role::Buyer),
        _ => None,
    }
}

fn taken(role: Role, username: &str) -> ApiError {
    ApiError::new(
        ErrorCode::UsernameTaken,
        format!("username {username:?} is taken by another {role}"),
    )
}

/// Creates an account and returns its id, or `username_taken` if another account of
/// `role` has this username in any letter case (`Ann` is `ann`).
pub fn create(
    c: &Connection,
    role: Role,
    username: &str,
    name: &str,
    password_hash: &str,
    now_ms: i64,
) -> Result<UserId, ApiError> {
    // Checked and inserted in one write transaction: no other can slip between. The
    // UNIQUE constraint alone would let `Ann` in beside `ann`.
    let existing: Option<String> = c
        .prepare_cached(
            "SELECT username FROM accounts \
             WHERE role = ?1 AND username = ?2 COLLATE NOCASE LIMIT 1",
        )
        .and_then(|mut st| {
            st.query_row(params![role_code(role), username], |r| r.get(0)).optional()
        })
        .map_err(db_error)?;
    if let Some(existing) = existing {
        return Err(taken(role, &existing));
    }
    let inserted = c.execute(
        "INSERT INTO accounts (role, username, name, password_hash, created_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![role_code(role), username, name, password_hash, now_ms],
    );
    match inserted {
        Ok(_) => Ok(c.last_insert_rowid() as UserId),
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Err(taken(role, username))
        }
        Err(e) => Err(db_error(e)),
    }
}

/// The id and stored password hash of the `role` account named `username` in any letter
/// case (the exact spelling first, for accounts from before names were case-blind).
pub fn credentials(
    c: &Connection,
    role: Role,
    username: &str,
) -> Result<Option<(UserId, String)>, ApiError> {
    c.prepare_cached(
        "SELECT id, password_hash FROM accounts \
         WHERE role = ?1 AND username = ?2 COLLATE NOCASE \
         ORDER BY username = ?2 DESC LIMIT 1",
    )
    .and_then(|mut st| {
        st.query_row(params![role_code(role), username], |r| {
            Ok((r.get::<_, i64>(0)? as UserId, r.get::<_, String>(1)?))
        })
        .optional()
    })
    .map_err(db_error)
}

/// A seller's name and units sold, if `id` is a seller.
pub fn seller(c: &Connection, id: UserId) -> Result<Option<(String, u64)>, ApiError> {
    c.prepare_cached("SELECT name, items_count FROM accounts WHERE id = ?1 AND role = ?2")
        .and_then(|mut st| {
            st.query_row(params![id as i64, role_code(Role::Seller)], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64))
            })
            .optional()
        })
        .map_err(db_error)
}

/// Adds `units` to an account's counter: units bought for a buyer, sold for a seller.
pub fn count_units(c: &Connection, account: UserId, units: i64) -> Result<(), ApiError> {
    c.prepare_cached("UPDATE accounts SET items_count = items_count + ?2 WHERE id = ?1")
        .and_then(|mut st| st.execute(params![account as i64, units]))
        .map_err(db_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_and_unknown_codes_are_refused() {
        for role in [Role::Seller, Role::Buyer] {
            assert_eq!(role_of(role_code(role)), Some(role));
        }
        for corrupt in [0, 3, -1, i64::MAX] {
            assert_eq!(role_of(corrupt), None, "{corrupt}");
        }
    }
}
