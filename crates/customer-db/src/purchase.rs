//! MakePurchase: the customer database coordinates a purchase across itself, the product
//! database and the payments service, all or nothing, surviving a crash of any of them at
//! any step. DESIGN.md beside this crate explains the protocol and why it is correct.
//!
//! Every step is recorded in `purchase_tx` before the next one starts:
//!
//! ```text
//! Started ──reserve ok──► Reserved ──charge approved──► Committed ──confirm ok──► Done
//!    │                      │   └─charge outcome unknown─► Resolving ──resolve──┘ or ┐
//!    │                      └──declined──► Aborting ──release ok──► Aborted ◄────────┘
//!    └──reserve refused──► Aborted;  reserve unreachable ──► Aborting
//! ```

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agora_domain::{Card, Money, Purchase, PurchaseLine, UserId};
use agora_proto::messages::payments::{self, Outcome};
use agora_proto::messages::product;
use agora_proto::{ApiError, CallError, ErrorCode, Payments, Pool, ProductDb, fault};
use agora_store::{Store, db_error};
use rusqlite::{Connection, OptionalExtension, params};
use tracing::{debug, error, info, warn};

use crate::Clock;
use crate::sessions::Key;

/// Where a purchase stands. The numbers are stored; never renumber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Recorded; units may or may not be reserved; payments not contacted.
    Started = 1,
    /// Units reserved; the charge may or may not have been sent.
    Reserved = 2,
    /// The charge was sent and its answer lost: payments decides.
    Resolving = 3,
    /// It will not happen; reserved units (if any) are being released.
    Aborting = 4,
    /// It did not happen; nothing is reserved or charged.
    Aborted = 5,
    /// It happened: charged, recorded in history; the product database not yet told.
    Committed = 6,
    /// It happened, and every party knows.
    Done = 7,
}

impl State {
    /// The state stored as `n`; a number that names none is a corrupt log, refused
    /// rather than taken for any state (least of all `Done`).
    fn from_i64(n: i64) -> Result<State, ApiError> {
        Ok(match n {
            1 => State::Started,
            2 => State::Reserved,
            3 => State::Resolving,
            4 => State::Aborting,
            5 => State::Aborted,
            6 => State::Committed,
            7 => State::Done,
            _ => return Err(ApiError::internal(format!("corrupt purchase log: state {n}"))),
        })
    }
}

/// What beginning a purchase found.
enum Begun {
    /// A new purchase of these cart lines, recorded as `Started`.
    New(u64, Vec<agora_domain::CartLine>),
    /// The buyer already used this purchase key: that purchase.
    Earlier(Tx),
    /// Another purchase (this id) holds the session's cart until it ends.
    Busy(u64),
}

/// Most unfinished purchases reported to the product database at once (about 90 KiB).
const MAX_HELD_REPORT: usize = 10_000;

/// How long a purchase waits for another purchase of the same cart to end before it
/// answers `purchase_pending`: under the frontends' deadline on a customer-db call.
const CART_HELD_WAIT: Duration = Duration::from_secs(3);

/// One purchase's row in the log.
#[derive(Debug)]
struct Tx {
    id: u64,
    buyer: UserId,
    session: Key,
    state: State,
    lines: Option<Vec<PurchaseLine>>,
    error: Option<ApiError>,
}

/// The purchase coordinator.
#[derive(Debug)]
pub struct Coordinator {
    store: Store,
    products: Pool<ProductDb>,
    payments: Pool<Payments>,
    clock: Clock,
    /// Purchases a request is driving right now; recovery leaves them alone. A new
    /// purchase enters the set inside the transaction that creates its row, so recovery
    /// (which reads committed rows only) can never see it first.
    in_flight: Arc<Mutex<HashSet<u64>>>,
    /// Woken whenever a purchase stops being driven, for purchases waiting for another
    /// purchase of the same cart to end.
    finished: tokio::sync::Notify,
}

/// Removes a purchase from the in-flight set when its request is done, however it ends.
struct Driving<'a>(&'a Coordinator, u64);

impl Drop for Driving<'_> {
    fn drop(&mut self) {
        self.0.in_flight_set().remove(&self.1);
        self.0.finished.notify_waiters();
    }
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, ApiError> {
    postcard::to_allocvec(value).map_err(|e| ApiError::internal(e.to_string()))
}

fn decode<T: serde::de::DeserializeOwned>(blob: &[u8]) -> Result<T, ApiError> {
    postcard::from_bytes(blob).map_err(|e| ApiError::internal(format!("corrupt purchase log: {e}")))
}

/// What every purchase's charge key at the payments service starts with; the purchase id
/// follows.
pub const PAYMENT_KEY_PREFIX: &str = "agora-purchase-";

/// The states, as stored, of a purchase that has ended (aborted, or done and confirmed):
/// every other is unfinished and recovery drives it on.
pub const FINISHED_STATES: [i64; 2] = [State::Aborted as i64, State::Done as i64];

/// The idempotency key of a purchase's charge at the payments service.
fn payment_key(id: u64) -> String {
    format!("{PAYMENT_KEY_PREFIX}{id}")
}

fn pending(id: u64) -> ApiError {
    ApiError::new(
        ErrorCode::PurchasePending,
        format!(
            "purchase {id} is still being completed (a service it needs did not answer); \
             it will complete or be cancelled shortly: ask again with the same purchase key"
        ),
    )
}

impl Coordinator {
    /// A coordinator over the customer store and pools to the other two parties.
    pub fn new(
        store: Store,
        products: Pool<ProductDb>,
        payments: Pool<Payments>,
        clock: Clock,
    ) -> Self {
        Coordinator {
            store,
            products,
            payments,
            clock,
            in_flight: Arc::default(),
            finished: tokio::sync::Notify::new(),
        }
    }

    // Held for a set insert or remove; nothing awaits under it.
    fn in_flight_set(&self) -> std::sync::MutexGuard<'_, HashSet<u64>> {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Buys the session's cart. `key` makes retries safe: a key already used returns that
    /// purchase's outcome.
    pub async fn purchase(
        &self,
        session: Key,
        buyer: UserId,
        key: String,
        card: Card,
    ) -> Result<Purchase, ApiError> {
        if key.is_empty() || key.len() > 64 {
            return Err(ApiError::new(
                ErrorCode::InvalidArgument,
                "invalid purchase key: must be 1 to 64 bytes",
            ));
        }
        let card = card.validate()?;
        // A session's cart is bought by one purchase at a time: while another holds it,
        // wait for that one to end (then its bought lines are gone from the cart), so
        // that concurrent requests cannot buy the same lines twice.
        let deadline = tokio::time::Instant::now() + CART_HELD_WAIT;
        let (id, cart) = loop {
            let finished = self.finished.notified();
            tokio::pin!(finished);
            finished.as_mut().enable();
            match self.begin(session, buyer, key.clone()).await? {
                Begun::New(id, cart) => break (id, cart),
                Begun::Earlier(earlier) => return self.outcome(earlier).await,
                Begun::Busy(other) => {
                    if tokio::time::timeout_at(deadline, finished).await.is_err() {
                        return Err(ApiError::new(
                            ErrorCode::PurchasePending,
                            format!(
                                "purchase {other} of this cart is still being completed; \
                                 ask again shortly"
                            ),
                        ));
                    }
                }
            }
        };
        self.drive(id, buyer, cart, card).await
    }

    /// Step 1: records a new purchase of the session's cart, unless the key was used
    /// before or another purchase holds the cart. One transaction: two requests racing
    /// for one cart are serialised by the store's single writer.
    async fn begin(&self, session: Key, buyer: UserId, key: String) -> Result<Begun, ApiError> {
        let now = self.clock.now_ms();
        let in_flight = self.in_flight.clone();
        self.store
            .write(move |c| {
                crate::handler::live(c, &session)?;
                if let Some(tx) = find(c, buyer, &key)? {
                    return Ok(Begun::Earlier(tx));
                }
                if let Some(other) = holding(c, &session)? {
                    return Ok(Begun::Busy(other));
                }
                let cart = crate::handler::cart_of(c, &session)?;
                if cart.is_empty() {
                    return Err(ApiError::new(
                        ErrorCode::InvalidArgument,
                        "invalid cart: your cart is empty",
                    ));
                }
                c.prepare_cached(
                    "INSERT INTO purchase_tx (buyer, key, session, state, cart, created_ms) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .and_then(|mut st| {
                    st.execute(params![
                        buyer as i64,
                        key,
                        &session[..],
                        State::Started as i64,
                        encode(&cart).unwrap_or_default(),
                        now
                    ])
                })
                .map_err(db_error)?;
                let id = c.last_insert_rowid() as u64;
                in_flight.lock().unwrap_or_else(|p| p.into_inner()).insert(id);
                Ok(Begun::New(id, cart))
            })
            .await
    }

    /// Steps 2 to 5 of a purchase just begun: reserve, charge, commit, confirm.
    async fn drive(
        &self,
        id: u64,
        buyer: UserId,
        cart: Vec<agora_domain::CartLine>,
        card: Card,
    ) -> Result<Purchase, ApiError> {
        let _driving = Driving(self, id);
        fault::crash_point("after-begin");

        // Phase one: reserve the units.
        let lines = match self
            .products
            .call(&product::Request::Reserve { purchase: id, lines: cart })
            .await
        {
            Ok(product::Response::Reserved(lines)) => lines,
            Ok(other) => {
                return Err(self.abort(id, agora_proto::messages::unexpected(&other), true).await);
            }
            // Refused: nothing was reserved.
            Err(CallError::Remote(refusal)) => return Err(self.abort(id, refusal, false).await),
            Err(e) => {
                let error = ApiError::unavailable(format!(
                    "{e}; nothing was charged and the purchase is cancelled"
                ));
                return Err(self.abort(id, error, true).await);
            }
        };
        let total = lines
            .iter()
            .try_fold(0i64, |sum, l| {
                l.unit_price.checked_mul(l.quantity).and_then(|m| sum.checked_add(m.cents()))
            })
            .map(Money::from_cents);
        let Some(total) = total else {
            let error = ApiError::new(ErrorCode::InvalidArgument, "invalid cart: total too large");
            return Err(self.abort(id, error, true).await);
        };
        let blob = encode(&lines)?;
        self.set_state(id, State::Reserved, move |c| {
            c.execute(
                "UPDATE purchase_tx SET lines = ?2, total = ?3 WHERE id = ?1",
                params![id as i64, blob, total.cents()],
            )
            .map(|_| ())
        })
        .await?;
        fault::crash_point("after-reserve");

        // The charge.
        let charge =
            payments::Request::Charge { key: payment_key(id), card, amount: total, payer: buyer };
        let charged = match self.payments.call(&charge).await {
            Ok(payments::Response::Charge(approved @ Outcome::Approved { .. })) => {
                Some(is_this_purchase(id, &approved, total, buyer))
            }
            Ok(payments::Response::Charge(Outcome::Declined { reason })) => {
                let error = ApiError::new(
                    ErrorCode::PaymentDeclined,
                    format!("payment declined: {reason}; nothing was bought"),
                );
                return Err(self.abort(id, error, true).await);
            }
            Ok(payments::Response::Charge(Outcome::Cancelled)) => Some(false),
            Ok(other) => {
                warn!(id, ?other, "unexpected answer from payments; resolving");
                self.resolve(id, total, buyer).await
            }
            Err(CallError::Remote(refusal)) => return Err(self.abort(id, refusal, true).await),
            Err(e) => {
                // The charge may or may not have arrived: only payments knows.
                warn!(id, error = %e, "charge outcome unknown; resolving");
                self.resolve(id, total, buyer).await
            }
        };
        fault::crash_point("after-charge");
        match charged {
            Some(true) => {}
            Some(false) => {
                let error =
                    ApiError::new(ErrorCode::Aborted, "purchase cancelled; nothing was charged");
                return Err(self.abort(id, error, true).await);
            }
            None => {
                self.set_state(id, State::Resolving, |_| Ok(())).await?;
                return Err(pending(id));
            }
        }
        let purchase = self.commit(id).await?;
        fault::crash_point("after-commit");
        self.confirm(id).await;
        Ok(purchase)
    }

    /// Whether the charge of purchase `id` (of `total`, paid by `buyer`) went through:
    /// `Some(true)` charged, `Some(false)` never will be, `None` payments cannot be asked
    /// right now. `Resolve` is idempotent and cancels a charge that has not arrived, so
    /// its answer is final.
    async fn resolve(&self, id: u64, total: Money, buyer: UserId) -> Option<bool> {
        match self.payments.call(&payments::Request::Resolve { key: payment_key(id) }).await {
            Ok(payments::Response::Charge(approved @ Outcome::Approved { .. })) => {
                Some(is_this_purchase(id, &approved, total, buyer))
            }
            Ok(payments::Response::Charge(_)) => Some(false),
            Ok(_) | Err(_) => None,
        }
    }

    /// Records that the purchase will not happen and releases its units. `release` is
    /// false only when the product database refused the reservation (so holds nothing).
    async fn abort(&self, id: u64, error: ApiError, release: bool) -> ApiError {
        // A retry later learns the final outcome: a transient cause is recorded as what it
        // led to, a cancelled purchase.
        let code = match error.code {
            ErrorCode::Unavailable | ErrorCode::Timeout => ErrorCode::Aborted,
            code => code,
        };
        let (code, message) = (code.as_str().to_owned(), error.message.clone());
        let state = if release { State::Aborting } else { State::Aborted };
        let recorded = self
            .set_state(id, state, move |c| {
                c.execute(
                    "UPDATE purchase_tx SET error_code = ?2, error = ?3 WHERE id = ?1",
                    params![id as i64, code, message],
                )
                .map(|_| ())
            })
            .await;
        if let Err(e) = recorded {
            warn!(id, error = %e, "cannot record an aborted purchase; recovery will finish it");
        } else if release {
            self.release(id).await;
        }
        error
    }

    /// Tells the product database to put the units back; on success the purchase is
    /// aborted for good. On failure it stays `Aborting` and recovery tries again.
    async fn release(&self, id: u64) {
        match self.products.call(&product::Request::Release { purchase: id }).await {
            Ok(_) => {
                if let Err(e) = self.set_state(id, State::Aborted, |_| Ok(())).await {
                    warn!(id, error = %e, "cannot record a released purchase");
                }
            }
            Err(e) => warn!(id, error = %e, "cannot release a purchase yet; will retry"),
        }
    }

    /// The commit point: history, counters and carts in one transaction.
    async fn commit(&self, id: u64) -> Result<Purchase, ApiError> {
        let now = self.clock.now_ms();
        self.store
            .write(move |c| {
                let tx = load_tx(c, id)?;
                if matches!(tx.state, State::Committed | State::Done) {
                    return load_purchase(c, id);
                }
                if !matches!(tx.state, State::Reserved | State::Resolving) {
                    return Err(ApiError::internal(format!("purchase {id} cannot commit from {:?}", tx.state)));
                }
                let lines = tx.lines.unwrap_or_default();
                let total: i64 = lines.iter().map(|l| l.unit_price.cents() * i64::from(l.quantity)).sum();
                c.execute(
                    "INSERT INTO purchases (id, buyer, at_ms, total) VALUES (?1, ?2, ?3, ?4)",
                    params![id as i64, tx.buyer as i64, now, total],
                )
                .map_err(db_error)?;
                let mut line_insert = c
                    .prepare_cached(
                        "INSERT INTO purchase_lines (purchase, line, category, number, seller, name, quantity, unit_price) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    )
                    .map_err(db_error)?;
                let mut count = c
                    .prepare_cached("UPDATE accounts SET items_count = items_count + ?2 WHERE id = ?1")
                    .map_err(db_error)?;
                let mut units = 0i64;
                for (n, l) in lines.iter().enumerate() {
                    line_insert
                        .execute(params![
                            id as i64, n as i64, l.item.category, l.item.number as i64,
                            l.seller_id as i64, l.name, l.quantity, l.unit_price.cents()
                        ])
                        .map_err(db_error)?;
                    count.execute(params![l.seller_id as i64, l.quantity]).map_err(db_error)?;
                    units += i64::from(l.quantity);
                    // What was bought leaves the buying session's cart and the saved cart;
                    // anything added meanwhile stays.
                    for (table, owner, value) in [
                        ("session_cart", "session", rusqlite::types::Value::Blob(tx.session.to_vec())),
                        ("saved_cart", "buyer", rusqlite::types::Value::Integer(tx.buyer as i64)),
                    ] {
                        c.execute(
                            &format!("DELETE FROM {table} WHERE {owner} = ?1 AND number = ?2 AND quantity <= ?3"),
                            params![value, l.item.number as i64, l.quantity],
                        )
                        .map_err(db_error)?;
                        c.execute(
                            &format!("UPDATE {table} SET quantity = quantity - ?3 WHERE {owner} = ?1 AND number = ?2"),
                            params![value, l.item.number as i64, l.quantity],
                        )
                        .map_err(db_error)?;
                    }
                }
                count.execute(params![tx.buyer as i64, units]).map_err(db_error)?;
                c.execute("UPDATE purchase_tx SET state = ?2 WHERE id = ?1", params![id as i64, State::Committed as i64])
                    .map_err(db_error)?;
                load_purchase(c, id)
            })
            .await
    }

    /// Tells the product database the units are sold; recovery retries on failure.
    async fn confirm(&self, id: u64) {
        match self.products.call(&product::Request::Confirm { purchase: id }).await {
            Ok(_) => {
                if let Err(e) = self.set_state(id, State::Done, |_| Ok(())).await {
                    warn!(id, error = %e, "cannot record a confirmed purchase");
                }
            }
            Err(e) => warn!(id, error = %e, "cannot confirm a purchase yet; will retry"),
        }
    }

    /// What a retried request learns about an earlier purchase with the same key.
    async fn outcome(&self, tx: Tx) -> Result<Purchase, ApiError> {
        match tx.state {
            State::Committed | State::Done => {
                let id = tx.id;
                self.store.read(move |c| load_purchase(c, id)).await
            }
            State::Aborted => Err(tx
                .error
                .unwrap_or_else(|| ApiError::new(ErrorCode::Aborted, "purchase cancelled"))),
            _ => Err(pending(tx.id)),
        }
    }

    /// Drives every purchase left unfinished (by a crash, or a party that was down) to its
    /// end. Safe to run at any time: purchases a request is driving are skipped, and every
    /// step is idempotent.
    pub async fn recover(&self) {
        let open = self
            .store
            .read(|c| {
                let mut st = c
                    .prepare_cached(
                        "SELECT id FROM purchase_tx WHERE state NOT IN (5, 7) ORDER BY id",
                    )
                    .map_err(db_error)?;
                let ids = st.query_map([], |r| r.get::<_, i64>(0)).map_err(db_error)?;
                ids.collect::<Result<Vec<_>, _>>().map_err(db_error)
            })
            .await;
        let Ok(open) = open else { return };
        for id in open {
            let id = id as u64;
            if !self.in_flight_set().insert(id) {
                continue;
            }
            let _driving = Driving(self, id);
            let Ok(tx) = self.tx(id).await else { continue };
            info!(id, state = ?tx.state, "recovering purchase");
            match tx.state {
                // Payments was never asked; the units may be reserved.
                State::Started | State::Aborting => {
                    if tx.state == State::Started {
                        let error = ApiError::new(
                            ErrorCode::Aborted,
                            "purchase interrupted before payment; nothing was charged",
                        );
                        let _ = self.abort(id, error, true).await;
                    } else {
                        self.release(id).await;
                    }
                }
                // The charge may have been sent: payments decides.
                State::Reserved | State::Resolving => {
                    match self.resolve(id, total_of(&tx), tx.buyer).await {
                        Some(true) => {
                            let committed = self.commit(id).await;
                            if committed.is_ok() {
                                self.confirm(id).await;
                            }
                        }
                        Some(false) => {
                            let error = ApiError::new(
                                ErrorCode::Aborted,
                                "purchase interrupted; nothing was charged",
                            );
                            let _ = self.abort(id, error, true).await;
                        }
                        None => {}
                    }
                }
                State::Committed => self.confirm(id).await,
                State::Aborted | State::Done => {}
            }
        }
    }

    /// Tells the product database which purchases may hold units (the unfinished ones),
    /// so that it releases any reservation none of them claims: one left by a bug, or
    /// made under an invented purchase id. Skipped (and said) when there are too many
    /// unfinished purchases for one message; tried again next time round.
    pub async fn report_held(&self) {
        let read = self
            .store
            .read(|c| {
                let open: Vec<u64> = {
                    let mut st = c
                        .prepare_cached(&format!(
                            "SELECT id FROM purchase_tx WHERE state NOT IN ({}, {}) \
                             ORDER BY id LIMIT {}",
                            State::Aborted as i64,
                            State::Done as i64,
                            MAX_HELD_REPORT + 1
                        ))
                        .map_err(db_error)?;
                    let ids = st.query_map([], |r| r.get::<_, i64>(0)).map_err(db_error)?;
                    ids.map(|id| id.map(|id| id as u64))
                        .collect::<Result<_, _>>()
                        .map_err(db_error)?
                };
                // In the same read: every id below `next` existed when `open` was read.
                let next: i64 = c
                    .query_row("SELECT COALESCE(MAX(id), 0) + 1 FROM purchase_tx", [], |r| r.get(0))
                    .map_err(db_error)?;
                Ok((open, next as u64))
            })
            .await;
        let Ok((open, next)) = read else { return };
        if open.len() > MAX_HELD_REPORT {
            warn!(open = open.len(), "too many unfinished purchases to report; not sweeping");
            return;
        }
        if let Err(e) = self.products.call(&product::Request::Held { open, next }).await {
            debug!(error = %e, "cannot report held purchases yet");
        }
    }

    async fn tx(&self, id: u64) -> Result<Tx, ApiError> {
        self.store.read(move |c| load_tx(c, id)).await
    }

    async fn set_state<F>(&self, id: u64, state: State, also: F) -> Result<(), ApiError>
    where
        F: FnOnce(&Connection) -> rusqlite::Result<()> + Send + 'static,
    {
        self.store
            .write(move |c| {
                c.execute(
                    "UPDATE purchase_tx SET state = ?2 WHERE id = ?1",
                    params![id as i64, state as i64],
                )
                .map_err(db_error)?;
                also(c).map_err(db_error)
            })
            .await
    }
}

/// Runs recovery now and then every `every` until `shutdown`.
pub async fn recover_forever(
    coordinator: Arc<Coordinator>,
    every: Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    loop {
        coordinator.recover().await;
        coordinator.report_held().await;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// Whether an approved charge under purchase `id`'s key is that purchase's: for its total
/// and its buyer. Anything else was not made by this coordinator for this purchase (a
/// charge recorded under the key by someone else, or a bug), so it must not buy it.
fn is_this_purchase(id: u64, approved: &Outcome, total: Money, buyer: UserId) -> bool {
    let Outcome::Approved { amount, payer, .. } = approved else { return false };
    let ours = *amount == total && *payer == buyer;
    if !ours {
        error!(
            id,
            charged = %amount, expected = %total, payer, buyer,
            "the approved charge under this purchase's key is not for this purchase; not buying"
        );
    }
    ours
}

/// A logged purchase's total, from its reserved lines (zero before it has any).
fn total_of(tx: &Tx) -> Money {
    let cents = tx.lines.iter().flatten().fold(0i64, |sum, l| {
        sum.saturating_add(l.unit_price.cents().saturating_mul(i64::from(l.quantity)))
    });
    Money::from_cents(cents)
}

/// The purchase that holds the session's cart, if any: one not yet committed or aborted.
fn holding(c: &Connection, session: &Key) -> Result<Option<u64>, ApiError> {
    // The states as literals, as in the partial index `purchase_tx_holding`, so that
    // SQLite can use it (it cannot prove a bound parameter matches the index).
    let sql = format!(
        "SELECT id FROM purchase_tx WHERE session = ?1 AND state IN ({}, {}, {}) LIMIT 1",
        State::Started as i64,
        State::Reserved as i64,
        State::Resolving as i64
    );
    c.prepare_cached(&sql)
        .and_then(|mut st| st.query_row(params![&session[..]], |r| r.get::<_, i64>(0)).optional())
        .map(|id| id.map(|id| id as u64))
        .map_err(db_error)
}

fn find(c: &Connection, buyer: UserId, key: &str) -> Result<Option<Tx>, ApiError> {
    let id: Option<i64> = c
        .prepare_cached("SELECT id FROM purchase_tx WHERE buyer = ?1 AND key = ?2")
        .and_then(|mut st| st.query_row(params![buyer as i64, key], |r| r.get(0)).optional())
        .map_err(db_error)?;
    id.map(|id| load_tx(c, id as u64)).transpose()
}

fn load_tx(c: &Connection, id: u64) -> Result<Tx, ApiError> {
    type Row = (i64, Vec<u8>, i64, Option<Vec<u8>>, Option<String>, Option<String>);
    let row: Row = c
        .prepare_cached(
            "SELECT buyer, session, state, lines, error_code, error FROM purchase_tx WHERE id = ?1",
        )
        .and_then(|mut st| {
            st.query_row([id as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
            })
        })
        .map_err(db_error)?;
    let (buyer, session, state, lines, code, message) = row;
    let error = match (code, message) {
        (Some(code), Some(message)) => Some(ApiError::new(code_of(&code), message)),
        _ => None,
    };
    Ok(Tx {
        id,
        buyer: buyer as UserId,
        session: Key::try_from(session.as_slice()).unwrap_or([0; 32]),
        state: State::from_i64(state)?,
        lines: lines.map(|b| decode(&b)).transpose()?,
        error,
    })
}

fn code_of(name: &str) -> ErrorCode {
    ErrorCode::from_name(name).unwrap_or(ErrorCode::Internal)
}

/// A purchase from the history tables.
pub(crate) fn load_purchase(c: &Connection, id: u64) -> Result<Purchase, ApiError> {
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
                item: agora_domain::ItemId {
                    category: r.get(0)?,
                    number: r.get::<_, i64>(1)? as u64,
                },
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

#[cfg(test)]
mod state_tests {
    use super::*;

    #[test]
    fn every_stored_state_reads_back_and_no_other_number_does() {
        for state in [
            State::Started,
            State::Reserved,
            State::Resolving,
            State::Aborting,
            State::Aborted,
            State::Committed,
            State::Done,
        ] {
            assert_eq!(State::from_i64(state as i64).ok(), Some(state));
        }
        for corrupt in [0, 8, -1, i64::MAX] {
            assert!(State::from_i64(corrupt).is_err(), "{corrupt}");
        }
    }
}
