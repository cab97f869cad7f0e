//! The customer database's request handling: one method per request, each a few lines of
//! checks and one storage job.

use std::sync::Arc;

use agora_domain::{
    CART_LINES_MAX, CartLine, ItemId, Page, Purchase, Role, UserId, check_name, check_password,
    check_quantity, check_username,
};
use agora_proto::messages::OpId;
use agora_proto::messages::customer::{Request, Response};
use agora_proto::{ApiError, ErrorCode, Handler};
use agora_store::{Store, db_error, once};
use rusqlite::{Connection, OptionalExtension, params};

use crate::purchase::{Coordinator, load_purchase};
use crate::sessions::{Key, Session, Sessions, new_token, parse_token};
use crate::{Config, EXPIRED_GRACE_MS, password};

/// The customer database's state: its store and the live sessions.
#[derive(Debug)]
pub struct CustomerDb {
    store: Store,
    sessions: Sessions,
    coordinator: Arc<Coordinator>,
    /// Recent wrong passwords per account.
    throttle: crate::throttle::LoginThrottle,
}

fn role_code(role: Role) -> i64 {
    match role {
        Role::Seller => 1,
        Role::Buyer => 2,
    }
}

/// The role stored as `code`, or `None` for a number that names no role (a corrupt row,
/// which must not become a buyer's session by default).
fn role_of(code: i64) -> Option<Role> {
    match code {
        1 => Some(Role::Seller),
        2 => Some(Role::Buyer),
        _ => None,
    }
}

impl Handler<agora_proto::CustomerDb> for CustomerDb {
    async fn handle(&self, request: Request) -> Result<Response, ApiError> {
        match request {
            Request::Ping => Ok(Response::Pong),
            Request::CreateAccount { op, role, username, password, name } => {
                self.create_account(op, role, username, password, name).await
            }
            Request::Login { role, username, password } => {
                self.login(role, username, password).await
            }
            Request::Logout { session, role } => self.logout(&session, role).await,
            Request::Authenticate { session, role } => {
                let key = parse_token(&session)?;
                let account = self.sessions.check(&key, role)?.account;
                Ok(Response::Authenticated { account })
            }
            Request::GetSeller { seller_id } => self.get_seller(seller_id).await,
            Request::GetCart { session } => {
                let key = self.buyer(&session)?;
                let lines = self.store.read(move |c| cart_of(c, &key)).await?;
                Ok(Response::Cart(lines))
            }
            Request::AddToCart { op, session, item, quantity, available } => {
                self.add_to_cart(op, &session, item, quantity, available).await
            }
            Request::RemoveFromCart { op, session, item, quantity } => {
                self.remove_from_cart(op, &session, item, quantity).await
            }
            Request::SaveCart { session } => self.save_cart(&session).await,
            Request::ClearCart { session } => {
                let key = self.buyer(&session)?;
                self.store
                    .write(move |c| {
                        live(c, &key)?;
                        c.prepare_cached("DELETE FROM session_cart WHERE session = ?1")
                            .and_then(|mut st| st.execute([&key[..]]))
                            .map_err(db_error)
                    })
                    .await?;
                Ok(Response::Done)
            }
            Request::Purchase { session, key, card } => {
                let token = parse_token(&session)?;
                let buyer = self.sessions.check(&token, Role::Buyer)?.account;
                let purchase = self.coordinator.purchase(token, buyer, key, card).await?;
                Ok(Response::Purchased(purchase))
            }
            Request::Purchases { session, page } => {
                let page = page.validate()?;
                let key = parse_token(&session)?;
                let buyer = self.sessions.check(&key, Role::Buyer)?.account;
                let purchases = self.store.read(move |c| purchases_of(c, buyer, page)).await?;
                Ok(Response::Purchases(purchases))
            }
        }
    }
}

impl CustomerDb {
    /// Opens the handler over `store`, loading the sessions that have not long expired.
    pub async fn load(
        store: Store,
        config: &Config,
        coordinator: Arc<Coordinator>,
    ) -> Result<Self, ApiError> {
        let timeout_ms = config.session_timeout.as_millis() as i64;
        let sessions = Sessions::new(timeout_ms, config.clock.clone());
        let cutoff = config.clock.now_ms() - timeout_ms - EXPIRED_GRACE_MS;
        let rows = store
            .read(move |c| {
                let mut st = c
                    .prepare("SELECT key, account, role, last_seen_ms FROM sessions WHERE last_seen_ms >= ?1")
                    .map_err(db_error)?;
                let rows = st
                    .query_map([cutoff], |r| {
                        Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?, r.get(2)?, r.get(3)?))
                    })
                    .map_err(db_error)?;
                rows.collect::<Result<Vec<(Vec<u8>, i64, i64, i64)>, _>>().map_err(db_error)
            })
            .await?;
        for (key, account, role, last_seen) in rows {
            let Ok(key) = <Key>::try_from(key.as_slice()) else { continue };
            let Some(role) = role_of(role) else {
                tracing::warn!(account, role, "skipping a stored session of no known role");
                continue;
            };
            let session = Session {
                account: account as UserId,
                role,
                last_seen,
                stored_last_seen: last_seen,
            };
            sessions.insert(key, session);
        }
        let throttle = crate::throttle::LoginThrottle::new(config.clock.clone());
        Ok(CustomerDb { store, sessions, coordinator, throttle })
    }

    /// Writes recent session activity to disk, and deletes sessions long expired.
    pub async fn flush_sessions(&self) -> Result<(), ApiError> {
        let active = self.sessions.take_unstored();
        let expired = self.sessions.take_long_expired(EXPIRED_GRACE_MS);
        if active.is_empty() && expired.is_empty() {
            return Ok(());
        }
        self.store
            .write(move |c| {
                let mut touch = c
                    .prepare_cached("UPDATE sessions SET last_seen_ms = ?2 WHERE key = ?1")
                    .map_err(db_error)?;
                for (key, at) in &active {
                    touch.execute(params![&key[..], at]).map_err(db_error)?;
                }
                for key in &expired {
                    end_session(c, key)?;
                }
                Ok(())
            })
            .await
    }

    /// The key of a live buyer session, and the buyer.
    fn buyer(&self, session: &str) -> Result<Key, ApiError> {
        Ok(self.buyer_account(session)?.0)
    }

    fn buyer_account(&self, session: &str) -> Result<(Key, UserId), ApiError> {
        let key = parse_token(session)?;
        let account = self.sessions.check(&key, Role::Buyer)?.account;
        Ok((key, account))
    }

    async fn create_account(
        &self,
        op: OpId,
        role: Role,
        username: String,
        password: String,
        name: String,
    ) -> Result<Response, ApiError> {
        check_username(&username)?;
        check_password(&password)?;
        let name = if name.trim().is_empty() { username.clone() } else { name };
        let name = check_name("name", &name)?;
        let hash = password::hash(password).await?;
        let now = self.sessions.clock().now_ms();
        let id = self
            .store
            .write(move |c| {
                once(c, 0, &op, now, |c| {
                    let taken = |username: &str| {
                        ApiError::new(
                            ErrorCode::UsernameTaken,
                            format!("username {username:?} is taken by another {role}"),
                        )
                    };
                    // Checked and inserted in one write job: no other can slip between.
                    let existing: Option<String> = c
                        .prepare_cached(
                            "SELECT username FROM accounts \
                             WHERE role = ?1 AND username = ?2 COLLATE NOCASE LIMIT 1",
                        )
                        .and_then(|mut st| {
                            st.query_row(params![role_code(role), username], |r| r.get(0))
                                .optional()
                        })
                        .map_err(db_error)?;
                    if let Some(existing) = existing {
                        return Err(taken(&existing));
                    }
                    let inserted = c.execute(
                        "INSERT INTO accounts (role, username, name, password_hash, created_ms) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![role_code(role), username, name, hash, now],
                    );
                    match inserted {
                        Ok(_) => Ok(c.last_insert_rowid() as UserId),
                        Err(rusqlite::Error::SqliteFailure(e, _))
                            if e.code == rusqlite::ErrorCode::ConstraintViolation =>
                        {
                            Err(taken(&username))
                        }
                        Err(e) => Err(db_error(e)),
                    }
                })
            })
            .await?;
        Ok(Response::Account { id })
    }

    async fn login(
        &self,
        role: Role,
        username: String,
        password: String,
    ) -> Result<Response, ApiError> {
        let wrong = || ApiError::new(ErrorCode::WrongCredentials, "wrong username or password");
        if username.len() > 4 * agora_domain::USERNAME_MAX_CHARS
            || password.len() > agora_domain::PASSWORD_MAX_BYTES
        {
            return Err(wrong());
        }
        // A throttled account is refused before any hashing: guessing costs us nothing.
        self.throttle.check(role, &username)?;
        let name = username.clone();
        let account = self
            .store
            .read(move |c| {
                c.prepare_cached(
                    "SELECT id, password_hash FROM accounts \
                     WHERE role = ?1 AND username = ?2 COLLATE NOCASE \
                     ORDER BY username = ?2 DESC LIMIT 1",
                )
                .and_then(|mut st| {
                    st.query_row(params![role_code(role), name], |r| {
                        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                    })
                    .optional()
                })
                .map_err(db_error)
            })
            .await?;
        let (id, stored) = match account {
            Some((id, hash)) => (Some(id), Some(hash)),
            None => (None, None),
        };
        // Verified even for an unknown username, so timing does not tell which usernames exist.
        let matches = password::verify(password, stored).await?;
        let (Some(account), true) = (id, matches) else {
            self.throttle.failed(role, &username);
            return Err(wrong());
        };
        self.throttle.succeeded(role, &username);

        let (token, key) = new_token()?;
        let now = self.sessions.clock().now_ms();
        self.store
            .write(move |c| {
                c.execute(
                    "INSERT INTO sessions (key, account, role, created_ms, last_seen_ms) \
                     VALUES (?1, ?2, ?3, ?4, ?4)",
                    params![&key[..], account, role_code(role), now],
                )
                .map_err(db_error)?;
                if role == Role::Buyer {
                    // A new session starts from the buyer's saved cart.
                    c.execute(
                        "INSERT INTO session_cart (session, category, number, quantity) \
                         SELECT ?1, category, number, quantity FROM saved_cart \
                         WHERE buyer = ?2 ORDER BY line",
                        params![&key[..], account],
                    )
                    .map_err(db_error)?;
                }
                Ok(())
            })
            .await?;
        let session =
            Session { account: account as UserId, role, last_seen: now, stored_last_seen: now };
        self.sessions.insert(key, session);
        Ok(Response::LoggedIn { session: token, account: account as UserId })
    }

    async fn logout(&self, session: &str, role: Role) -> Result<Response, ApiError> {
        let key = parse_token(session)?;
        // A seller server cannot end a buyer's session, nor the reverse.
        match self.sessions.role_of(&key) {
            Some(actual) if actual != role => {
                return Err(ApiError::new(
                    ErrorCode::NotLoggedIn,
                    format!("this is a {actual} session; log in as a {role}"),
                ));
            }
            _ => {}
        }
        self.store.write(move |c| end_session(c, &key)).await?;
        // Logging out of an expired session is fine; of an unknown one, not.
        match self.sessions.remove(&key) {
            Some(_) => Ok(Response::Done),
            None => Err(ApiError::not_logged_in()),
        }
    }

    async fn get_seller(&self, seller_id: UserId) -> Result<Response, ApiError> {
        let found = self
            .store
            .read(move |c| {
                c.prepare_cached(
                    "SELECT name, items_count FROM accounts WHERE id = ?1 AND role = 1",
                )
                .and_then(|mut st| {
                    st.query_row([seller_id as i64], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
                    })
                    .optional()
                })
                .map_err(db_error)
            })
            .await?;
        match found {
            Some((name, sold)) => {
                Ok(Response::Seller { seller_id, name, items_sold: sold.max(0) as u64 })
            }
            None => {
                Err(ApiError::new(ErrorCode::UnknownUser, format!("no seller has id {seller_id}")))
            }
        }
    }

    async fn add_to_cart(
        &self,
        op: OpId,
        session: &str,
        item: ItemId,
        quantity: u32,
        available: u32,
    ) -> Result<Response, ApiError> {
        check_quantity(quantity)?;
        let (key, buyer) = self.buyer_account(session)?;
        let now = self.sessions.clock().now_ms();
        let lines = self
            .store
            .write(move |c| once(c, buyer as i64, &op, now, |c| {
                live(c, &key)?;
                let held = held(c, &key, item)?;
                let wanted = u64::from(held) + u64::from(quantity);
                if wanted > u64::from(available) {
                    let already = if held > 0 {
                        format!("; your cart already holds {held}")
                    } else {
                        String::new()
                    };
                    return Err(ApiError::new(
                        ErrorCode::NotEnoughUnits,
                        format!("only {available} units of item {item} are available{already}"),
                    ));
                }
                if held == 0 {
                    let lines: i64 = c
                        .prepare_cached("SELECT count(*) FROM session_cart WHERE session = ?1")
                        .and_then(|mut st| st.query_row([&key[..]], |r| r.get(0)))
                        .map_err(db_error)?;
                    if lines as usize >= CART_LINES_MAX {
                        return Err(ApiError::new(
                            ErrorCode::InvalidArgument,
                            format!("invalid item: a cart holds at most {CART_LINES_MAX} different items"),
                        ));
                    }
                }
                c.prepare_cached(
                    "INSERT INTO session_cart (session, category, number, quantity) \
                     VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT (session, number) DO UPDATE SET quantity = excluded.quantity",
                )
                .and_then(|mut st| st.execute(params![&key[..], item.category, item.number as i64, wanted as i64]))
                .map_err(db_error)?;
                cart_of(c, &key)
            }))
            .await?;
        Ok(Response::Cart(lines))
    }

    async fn remove_from_cart(
        &self,
        op: OpId,
        session: &str,
        item: ItemId,
        quantity: u32,
    ) -> Result<Response, ApiError> {
        check_quantity(quantity)?;
        let (key, buyer) = self.buyer_account(session)?;
        let now = self.sessions.clock().now_ms();
        let lines = self
            .store
            .write(move |c| once(c, buyer as i64, &op, now, |c| {
                live(c, &key)?;
                let held = held(c, &key, item)?;
                if held == 0 {
                    return Err(ApiError::new(
                        ErrorCode::UnknownItem,
                        format!("item {item} is not in your cart"),
                    ));
                }
                if quantity > held {
                    return Err(ApiError::new(
                        ErrorCode::InvalidArgument,
                        format!("invalid quantity: your cart holds only {held} of item {item}"),
                    ));
                }
                let sql = if quantity == held {
                    "DELETE FROM session_cart WHERE session = ?1 AND number = ?2 AND ?3 >= 0"
                } else {
                    "UPDATE session_cart SET quantity = quantity - ?3 WHERE session = ?1 AND number = ?2"
                };
                c.prepare_cached(sql)
                    .and_then(|mut st| st.execute(params![&key[..], item.number as i64, quantity]))
                    .map_err(db_error)?;
                cart_of(c, &key)
            }))
            .await?;
        Ok(Response::Cart(lines))
    }

    async fn save_cart(&self, session: &str) -> Result<Response, ApiError> {
        let key = parse_token(session)?;
        let buyer = self.sessions.check(&key, Role::Buyer)?.account;
        self.store
            .write(move |c| {
                live(c, &key)?;
                c.execute("DELETE FROM saved_cart WHERE buyer = ?1", [buyer as i64]).map_err(db_error)?;
                c.execute(
                    "INSERT INTO saved_cart (buyer, line, category, number, quantity) \
                     SELECT ?2, id, category, number, quantity FROM session_cart WHERE session = ?1",
                    params![&key[..], buyer as i64],
                )
                .map_err(db_error)?;
                Ok(())
            })
            .await?;
        Ok(Response::Done)
    }
}

/// Refuses a cart write for a session that logged out while the write was queued.
pub(crate) fn live(c: &Connection, key: &Key) -> Result<(), ApiError> {
    let exists = c
        .prepare_cached("SELECT 1 FROM sessions WHERE key = ?1")
        .and_then(|mut st| st.exists([&key[..]]))
        .map_err(db_error)?;
    if exists { Ok(()) } else { Err(ApiError::not_logged_in()) }
}

/// Deletes a session and its unsaved cart.
fn end_session(c: &Connection, key: &Key) -> Result<(), ApiError> {
    c.prepare_cached("DELETE FROM session_cart WHERE session = ?1")
        .and_then(|mut st| st.execute([&key[..]]))
        .map_err(db_error)?;
    c.prepare_cached("DELETE FROM sessions WHERE key = ?1")
        .and_then(|mut st| st.execute([&key[..]]))
        .map_err(db_error)?;
    Ok(())
}

/// Units of `item` in the session's cart.
fn held(c: &Connection, key: &Key, item: ItemId) -> Result<u32, ApiError> {
    let held: Option<(i64, i64)> = c
        .prepare_cached(
            "SELECT category, quantity FROM session_cart WHERE session = ?1 AND number = ?2",
        )
        .and_then(|mut st| {
            st.query_row(params![&key[..], item.number as i64], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .map_err(db_error)?;
    Ok(match held {
        Some((category, quantity)) if category == i64::from(item.category) => quantity as u32,
        _ => 0,
    })
}

pub(crate) fn cart_of(c: &Connection, key: &Key) -> Result<Vec<CartLine>, ApiError> {
    let mut st = c
        .prepare_cached(
            "SELECT category, number, quantity FROM session_cart WHERE session = ?1 ORDER BY id",
        )
        .map_err(db_error)?;
    let rows = st
        .query_map([&key[..]], |r| {
            Ok(CartLine {
                item: ItemId { category: r.get(0)?, number: r.get::<_, i64>(1)? as u64 },
                quantity: r.get(2)?,
            })
        })
        .map_err(db_error)?;
    rows.collect::<Result<_, _>>().map_err(db_error)
}

fn purchases_of(c: &Connection, buyer: UserId, page: Page) -> Result<Vec<Purchase>, ApiError> {
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
    ids.into_iter().map(|id| load_purchase(c, id as u64)).collect()
}
