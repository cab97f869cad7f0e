//! The customer database's writes as decided commands, and the deterministic machine that
//! applies them (crates/replication explains the split).
//!
//! The handler and the purchase coordinator decide: they check requests, hash passwords,
//! draw session tokens, talk to the product database and payments, and put everything
//! they decided into a [`Command`]. [`CustomerMachine::apply`] only applies: it reads the
//! time from the [`Context`], draws nothing, and touches nothing but the connection, so
//! every replica applying the same commands holds the same rows and gives the same
//! answers. Apply checks again whatever the decision relied on (the session still
//! exists, the purchase is still in the state the driver saw), because the rows may have
//! changed between the decision and its turn in the log.

use agora_domain::{CART_LINES_MAX, CartLine, ItemId, Money, Purchase, PurchaseLine, Role, UserId};
use agora_proto::messages::OpId;
use agora_proto::{ApiError, ErrorCode};
use agora_replication::{Context, StateMachine, store_answer, store_error};
use agora_store::{Op, at_most_once};
use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use crate::sessions::Key;
use crate::storage::purchase_log::{self, State, Tx};
use crate::storage::{accounts, carts, history, sessions};

/// A decided write to the customer database.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Command {
    /// A new account. The password's salted argon2id hash was computed by the handler (in
    /// the bounded hashing queue): a salt is random, so a replica could not compute the
    /// same one. Applied at most once per `op`.
    CreateAccount {
        /// The request's op id.
        op: OpId,
        /// Buyer or seller.
        role: Role,
        /// Checked by the handler.
        username: String,
        /// Checked by the handler; the username if none was given.
        name: String,
        /// The PHC string of the password.
        password_hash: String,
    },
    /// A new session of an account whose password the handler verified. The handler drew
    /// the token; the command carries its SHA-256 only, so the token is in neither the log
    /// nor the file.
    StartSession {
        /// The new session's key.
        session: Key,
        /// Whose session.
        account: UserId,
        /// Its role.
        role: Role,
    },
    /// Logout: the session and its unsaved cart go. Applied at most once per `op`, so a
    /// resend learns that the session was there to end.
    EndSession {
        /// The frontend's op id for this logout.
        op: OpId,
        /// The session's key.
        session: Key,
    },
    /// Session activity held in memory, and sessions expired long enough to be forgotten.
    FlushSessions {
        /// Sessions and their latest activity (Unix ms).
        seen: Vec<(Key, i64)>,
        /// Sessions to delete, with their carts.
        ended: Vec<Key>,
    },
    /// Units of an item added to a buyer session's cart. Applied at most once per
    /// `(buyer, op)`.
    AddToCart {
        /// The request's op id.
        op: OpId,
        /// The buyer: the op id's scope.
        buyer: UserId,
        /// The buyer's session.
        session: Key,
        /// The item.
        item: ItemId,
        /// Units to add (checked by the handler: 1 or more).
        quantity: u32,
        /// Units of the item for sale when the frontend asked the product database.
        available: u32,
    },
    /// Units of an item taken out of a buyer session's cart. Applied at most once per
    /// `(buyer, op)`.
    RemoveFromCart {
        /// The request's op id.
        op: OpId,
        /// The buyer: the op id's scope.
        buyer: UserId,
        /// The buyer's session.
        session: Key,
        /// The item.
        item: ItemId,
        /// Units to take out (1 or more).
        quantity: u32,
    },
    /// The session's cart becomes the buyer's saved cart.
    SaveCart {
        /// The buyer's session.
        session: Key,
        /// The buyer.
        buyer: UserId,
    },
    /// The session's cart is emptied.
    ClearCart {
        /// The buyer's session.
        session: Key,
    },
    /// Step 1 of a purchase: claim the session's cart in a new `Started` log row, unless
    /// the key was used before or another purchase holds the cart.
    BeginPurchase {
        /// The buyer's session.
        session: Key,
        /// The buyer.
        buyer: UserId,
        /// The buyer's purchase key (checked: 1 to 64 bytes).
        key: String,
    },
    /// `Started` → `Reserved`: the product database reserved these lines.
    PurchaseReserved {
        /// The purchase.
        id: u64,
        /// What was reserved, with sellers, names and prices.
        lines: Vec<PurchaseLine>,
        /// Their total: what will be charged.
        total: Money,
    },
    /// `Reserved` → `Resolving`: the charge's answer was lost and payments cannot be
    /// asked now.
    PurchaseResolving {
        /// The purchase.
        id: u64,
    },
    /// `from` (`Started`, `Reserved` or `Resolving`) → `Aborting`: it will not happen,
    /// and the units it may hold are to be released.
    PurchaseAborting {
        /// The purchase.
        id: u64,
        /// The state its driver saw it in.
        from: State,
        /// What the buyer is told, now and on every retry.
        error: ApiError,
    },
    /// `from` (`Aborting`, or `Started` when the reservation was refused and so holds
    /// nothing) → `Aborted`.
    PurchaseAborted {
        /// The purchase.
        id: u64,
        /// The state its driver saw it in.
        from: State,
        /// What the buyer is told, if not recorded on the way to `Aborting` already.
        error: Option<ApiError>,
    },
    /// The commit point, `from` (`Reserved` or `Resolving`) → `Committed`: payments
    /// charged it. History, the buyer's and sellers' counters and the carts change in the
    /// same transaction.
    PurchaseCommit {
        /// The purchase.
        id: u64,
        /// The state its driver saw it in.
        from: State,
    },
    /// `Committed` → `Done`: the product database confirmed the units sold.
    PurchaseDone {
        /// The purchase.
        id: u64,
    },
}

/// What applying a [`Command`] answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Output {
    /// The new (or, for a repeated op, the earlier) account's id.
    Account(UserId),
    /// The session as stored: active since `at_ms`, the command's time.
    SessionStarted {
        /// Whose session.
        account: UserId,
        /// Its role.
        role: Role,
        /// When it started (the command's time).
        at_ms: i64,
    },
    /// Whether there was a stored session to end.
    SessionEnded(bool),
    /// Applied; nothing to tell.
    Done,
    /// The cart after the change.
    Cart(Vec<CartLine>),
    /// What beginning a purchase found.
    Begun(Begun),
    /// What a purchase state transition did.
    Moved(Transition),
    /// What a commit did, and the purchase unless the commit was refused.
    Committed(Transition, Option<Purchase>),
}

impl Output {
    /// The error for a command answered with an output of another kind: a bug, said as
    /// such.
    pub fn unexpected(&self) -> ApiError {
        ApiError::internal(format!("unexpected answer from the state machine: {self:?}"))
    }
}

/// What beginning a purchase found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Begun {
    /// A new purchase (this id) of these cart lines, recorded as `Started`.
    New(u64, Vec<CartLine>),
    /// The buyer already used this purchase key: that purchase.
    Earlier(Tx),
    /// Another purchase (this id) holds the session's cart until it ends.
    Busy(u64),
}

/// What a purchase state transition did. Only `Moved` changed anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Transition {
    /// The purchase was in the expected state and is now in the new one.
    Moved,
    /// The purchase was already where the command leads (the command, or another with
    /// the same outcome, was applied before): nothing changed. Every repeat answers this.
    AlreadyDone,
    /// The purchase is in another state: the command's driver saw an old state (a stale
    /// coordinator, an old leader still running). Nothing changed.
    Refused {
        /// Where the purchase is.
        found: State,
    },
}

/// The scope earlier releases recorded logouts under (op ids came from the frontends,
/// scoped by none); today a logout's op id is its session's.
const LEGACY_LOGOUT_SCOPE: i64 = -1;

/// The scope earlier releases recorded sign-ups under: one for all.
const LEGACY_SIGNUP_SCOPE: i64 = 0;

/// The op of a request made in session `session` (a logout, a cart's change): its op id
/// means that request in that session only. `owner` is the account it counts against.
fn session_op(
    op: &OpId,
    session: &Key,
    legacy: i64,
    request: &impl Serialize,
    owner: UserId,
) -> Result<Op, ApiError> {
    let scope = [&b"session\0"[..], &session[..]].concat();
    Op::new(*op, scope, legacy, request, owner as i64).map_err(store_error)
}

/// The customer database's state machine: how each [`Command`] changes the rows.
#[derive(Debug, Clone, Copy, Default)]
pub struct CustomerMachine;

impl StateMachine for CustomerMachine {
    type Command = Command;
    type Output = Output;

    fn apply(&self, c: &Connection, command: &Command, ctx: &Context) -> Result<Output, ApiError> {
        let now = ctx.now_ms;
        match command {
            Command::CreateAccount { op, role, username, name, password_hash } => {
                // The op id means this sign-up for this role and username only (in any
                // letter case, as the username itself); a repeat must name the same name.
                // The password cannot be compared here (its hash is salted anew by each
                // attempt): the handler checks a repeat's password against the account's.
                let lower = username.to_ascii_lowercase();
                let role_byte = accounts::role_code(*role) as u8;
                let scope = [&b"account\0"[..], &[role_byte], lower.as_bytes()].concat();
                let request = ("CreateAccount", role_byte, &lower, name);
                let op =
                    Op::new(*op, scope, LEGACY_SIGNUP_SCOPE, &request, 0).map_err(store_error)?;
                let id = store_answer(at_most_once(c, &op, now, ApiError::reused_op, |c| {
                    accounts::create(c, *role, username, name, password_hash, now)
                }))?;
                Ok(Output::Account(id))
            }
            Command::StartSession { session, account, role } => {
                sessions::start(c, session, *account, *role, now)?;
                if *role == Role::Buyer {
                    // A new session starts from the buyer's saved cart.
                    carts::restore_saved(c, session, *account)?;
                }
                Ok(Output::SessionStarted { account: *account, role: *role, at_ms: now })
            }
            Command::EndSession { op, session } => {
                // A logout's op id is its session's: another session's op id ends this
                // one, not answers for it.
                let owner = sessions::account(c, session)?.unwrap_or(0);
                let op = session_op(op, session, LEGACY_LOGOUT_SCOPE, &"EndSession", owner)?;
                let ended = store_answer(at_most_once(c, &op, now, ApiError::reused_op, |c| {
                    sessions::end(c, session)
                }))?;
                Ok(Output::SessionEnded(ended))
            }
            Command::FlushSessions { seen, ended } => {
                for (session, at_ms) in seen {
                    sessions::touch(c, session, *at_ms)?;
                }
                for session in ended {
                    sessions::end(c, session)?;
                }
                Ok(Output::Done)
            }
            Command::AddToCart { op, buyer, session, item, quantity, available } => {
                // `available` is what the frontend saw, not what the buyer asked.
                let request = ("AddToCart", item, quantity);
                let op = session_op(op, session, *buyer as i64, &request, *buyer)?;
                let lines = store_answer(at_most_once(c, &op, now, ApiError::reused_op, |c| {
                    add_to_cart(c, session, *item, *quantity, *available)
                }))?;
                Ok(Output::Cart(lines))
            }
            Command::RemoveFromCart { op, buyer, session, item, quantity } => {
                let request = ("RemoveFromCart", item, quantity);
                let op = session_op(op, session, *buyer as i64, &request, *buyer)?;
                let lines = store_answer(at_most_once(c, &op, now, ApiError::reused_op, |c| {
                    remove_from_cart(c, session, *item, *quantity)
                }))?;
                Ok(Output::Cart(lines))
            }
            Command::SaveCart { session, buyer } => {
                sessions::require(c, session)?;
                carts::save(c, session, *buyer)?;
                Ok(Output::Done)
            }
            Command::ClearCart { session } => {
                sessions::require(c, session)?;
                carts::clear(c, session)?;
                Ok(Output::Done)
            }
            Command::BeginPurchase { session, buyer, key } => {
                Ok(Output::Begun(begin_purchase(c, session, *buyer, key, now)?))
            }
            Command::PurchaseReserved { id, lines, total } => {
                let moved = transition(c, *id, State::Started, State::Reserved, |c| {
                    purchase_log::set_lines(c, *id, lines, *total)
                })?;
                Ok(Output::Moved(moved))
            }
            Command::PurchaseResolving { id } => {
                let moved = transition(c, *id, State::Reserved, State::Resolving, |_| Ok(()))?;
                Ok(Output::Moved(moved))
            }
            Command::PurchaseAborting { id, from, error } => {
                let moved = transition(c, *id, *from, State::Aborting, |c| {
                    purchase_log::set_error(c, *id, &recorded_error(error))
                })?;
                Ok(Output::Moved(moved))
            }
            Command::PurchaseAborted { id, from, error } => {
                let moved = transition(c, *id, *from, State::Aborted, |c| match error {
                    Some(error) => purchase_log::set_error(c, *id, &recorded_error(error)),
                    None => Ok(()),
                })?;
                Ok(Output::Moved(moved))
            }
            Command::PurchaseCommit { id, from } => {
                let moved = transition(c, *id, *from, State::Committed, |c| commit(c, *id, now))?;
                let purchase = match moved {
                    Transition::Moved | Transition::AlreadyDone => Some(history::load(c, *id)?),
                    Transition::Refused { .. } => None,
                };
                Ok(Output::Committed(moved, purchase))
            }
            Command::PurchaseDone { id } => {
                let moved = transition(c, *id, State::Committed, State::Done, |_| Ok(()))?;
                Ok(Output::Moved(moved))
            }
        }
    }
}

/// The rules of adding to a cart, checked when the command applies (the cart may have
/// changed since the handler looked):
///
/// - the session must still exist: a logout queued first wins, and its cart stays gone;
/// - the cart may not hold more units of an item (what it holds plus what is added) than
///   the product database had for sale when the frontend asked (`available`): a cart
///   never asks for what cannot be bought. It is a check at that moment, not a
///   reservation: units are only set aside when the cart is bought;
/// - a cart holds at most [`CART_LINES_MAX`] different items, which bounds every cart,
///   purchase message and reservation. Adding to a line it already has is always fine.
fn add_to_cart(
    c: &Connection,
    session: &Key,
    item: ItemId,
    quantity: u32,
    available: u32,
) -> Result<Vec<CartLine>, ApiError> {
    sessions::require(c, session)?;
    let held = carts::units_of(c, session, item)?;
    let wanted = u64::from(held) + u64::from(quantity);
    if wanted > u64::from(available) {
        let already =
            if held > 0 { format!("; your cart already holds {held}") } else { String::new() };
        return Err(ApiError::new(
            ErrorCode::NotEnoughUnits,
            format!("only {available} units of item {item} are available{already}"),
        ));
    }
    if held == 0 && carts::line_count(c, session)? >= CART_LINES_MAX {
        return Err(ApiError::new(
            ErrorCode::InvalidArgument,
            format!("invalid item: a cart holds at most {CART_LINES_MAX} different items"),
        ));
    }
    carts::set_units(c, session, item, wanted)?;
    carts::lines(c, session)
}

/// The rules of taking out of a cart: the session must still exist, the item must be in
/// the cart, and no more units may be taken out than it holds (taking them all removes
/// the line).
fn remove_from_cart(
    c: &Connection,
    session: &Key,
    item: ItemId,
    quantity: u32,
) -> Result<Vec<CartLine>, ApiError> {
    sessions::require(c, session)?;
    let held = carts::units_of(c, session, item)?;
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
    carts::take_units(c, session, item, quantity, held)?;
    carts::lines(c, session)
}

/// Step 1 of a purchase. A session's cart is bought by one purchase at a time: the check
/// that no other purchase holds it and the new row are one transaction, so two requests
/// racing for one cart cannot both claim it.
fn begin_purchase(
    c: &Connection,
    session: &Key,
    buyer: UserId,
    key: &str,
    now: i64,
) -> Result<Begun, ApiError> {
    sessions::require(c, session)?;
    if let Some(tx) = purchase_log::find(c, buyer, key)? {
        return Ok(Begun::Earlier(tx));
    }
    if let Some(other) = purchase_log::holding(c, session)? {
        return Ok(Begun::Busy(other));
    }
    let cart = carts::lines(c, session)?;
    if cart.is_empty() {
        return Err(ApiError::new(ErrorCode::InvalidArgument, "invalid cart: your cart is empty"));
    }
    let id = purchase_log::begin(c, buyer, key, session, &cart, now)?;
    Ok(Begun::New(id, cart))
}

/// The states each purchase state may be entered from, and the states in which a
/// command leading there finds it already done. Any other pair is a bug in the proposer.
fn rule(to: State) -> (&'static [State], &'static [State]) {
    match to {
        // Only `begin_purchase` creates a purchase, never a move.
        State::Started => (&[], &[]),
        // The product database took the units: the lines and total are now fixed, and
        // the charge may be sent.
        State::Reserved => (&[State::Started], &[State::Reserved]),
        // The charge was sent and its answer lost: from here only payments' `Resolve`
        // decides, never the coordinator's guess.
        State::Resolving => (&[State::Reserved], &[State::Resolving]),
        // Decided not to happen, before anything was charged (payments declined, or
        // cancelled the key on `Resolve`); units may still be reserved and are released
        // next. Not from `Committed`: what payments charged is never undone.
        State::Aborting => (
            &[State::Started, State::Reserved, State::Resolving],
            &[State::Aborting, State::Aborted],
        ),
        // Nothing is held any more: straight from `Started` when the product database
        // refused the reservation (it took nothing), else once the release is done.
        State::Aborted => (&[State::Started, State::Aborting], &[State::Aborted]),
        // Payments charged exactly this purchase: the commit point. History, counters
        // and carts change in the same transaction as the state.
        State::Committed => {
            (&[State::Reserved, State::Resolving], &[State::Committed, State::Done])
        }
        // The product database knows the units are sold: nothing is left to do.
        State::Done => (&[State::Committed], &[State::Done]),
    }
}

/// Moves purchase `id` from `from` to `to` and applies `also`, only if it is in `from`
/// now (a compare-and-set). Otherwise nothing changes and the answer says whether it is
/// already past `to` or somewhere else.
fn transition(
    c: &Connection,
    id: u64,
    from: State,
    to: State,
    also: impl FnOnce(&Connection) -> Result<(), ApiError>,
) -> Result<Transition, ApiError> {
    let (sources, done) = rule(to);
    if !sources.contains(&from) {
        return Err(ApiError::internal(format!(
            "purchase {id} cannot move from {from:?} to {to:?}"
        )));
    }
    if purchase_log::move_state(c, id, from, to)? {
        also(c)?;
        return Ok(Transition::Moved);
    }
    let found = purchase_log::load(c, id)?.state;
    Ok(if done.contains(&found) { Transition::AlreadyDone } else { Transition::Refused { found } })
}

/// What an abort records for retries: a transient cause is recorded as what it led to, a
/// cancelled purchase.
fn recorded_error(error: &ApiError) -> ApiError {
    match error.code {
        ErrorCode::Unavailable | ErrorCode::Timeout => {
            ApiError::new(ErrorCode::Aborted, error.message.clone())
        }
        _ => error.clone(),
    }
}

/// The commit point's writes: the purchase enters the buyer's history at `now` with the
/// reserved lines and prices, the buyer's units-bought and each seller's units-sold
/// counters rise, and the bought units leave the buying session's cart and the saved cart.
fn commit(c: &Connection, id: u64, now: i64) -> Result<(), ApiError> {
    let tx = purchase_log::load(c, id)?;
    let lines = tx.lines.unwrap_or_default();
    history::record(c, id, tx.buyer, now, &lines)?;
    let mut units = 0i64;
    for l in &lines {
        accounts::count_units(c, l.seller_id, i64::from(l.quantity))?;
        units += i64::from(l.quantity);
        carts::remove_bought(c, &tx.session, tx.buyer, l.item.number, l.quantity)?;
    }
    accounts::count_units(c, tx.buyer, units)
}

#[cfg(test)]
mod tests {
    use agora_domain::PurchaseLine;
    use agora_store::{Store, StoreConfig};
    use rusqlite::types::ValueRef;

    use super::*;

    const T0: i64 = 1_800_000_000_000;
    const BUYER_SESSION: Key = [1; 32];
    const LATER_SESSION: Key = [2; 32];

    /// A fresh customer database in its own temporary directory.
    fn fresh() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&StoreConfig::new(dir.path().join("customer.db")), crate::SCHEMA)
            .expect("open");
        (dir, store)
    }

    /// Applies `command` with `ctx`, as a replica applies a log entry.
    async fn apply(store: &Store, command: &Command, ctx: Context) -> Result<Output, ApiError> {
        let command = command.clone();
        store_answer(store.write(move |c| CustomerMachine.apply(c, &command, &ctx)).await)
    }

    /// Every row of every table, in a fixed order, spelled out.
    async fn rows(store: &Store) -> Vec<String> {
        let rows = store
            .read(|c| {
                let mut all = Vec::new();
                let tables: Vec<String> = c
                    .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
                    .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>())
                    .map_err(agora_replication::db_error)?;
                for table in tables {
                    let mut st = c
                        .prepare(&format!("SELECT * FROM {table} ORDER BY 1, 2"))
                        .map_err(agora_replication::db_error)?;
                    let columns = st.column_count();
                    let mut found = st.query([]).map_err(agora_replication::db_error)?;
                    while let Some(row) = found.next().map_err(agora_replication::db_error)? {
                        let values: Vec<String> = (0..columns)
                            .map(|i| match row.get_ref(i) {
                                Ok(ValueRef::Null) => "NULL".to_owned(),
                                Ok(ValueRef::Integer(n)) => n.to_string(),
                                Ok(ValueRef::Real(x)) => x.to_string(),
                                Ok(ValueRef::Text(t)) => {
                                    format!("{:?}", String::from_utf8_lossy(t))
                                }
                                Ok(ValueRef::Blob(b)) => format!("x{b:02x?}"),
                                Err(e) => format!("<{e}>"),
                            })
                            .collect();
                        all.push(format!("{table}: {}", values.join(" | ")));
                    }
                }
                Ok(all)
            })
            .await;
        store_answer(rows).expect("rows")
    }

    fn line(item: ItemId, seller: UserId, quantity: u32, cents: i64) -> PurchaseLine {
        PurchaseLine {
            item,
            seller_id: seller,
            name: format!("item {}", item.number),
            quantity,
            unit_price: Money::from_cents(cents),
        }
    }

    /// A day in the life of the database: accounts, sessions, carts, a purchase bought
    /// and one aborted, refusals on the way. Seller 1, buyer 2.
    fn history_of_commands() -> Vec<Command> {
        let pen = ItemId { category: 3, number: 10 };
        let cup = ItemId { category: 4, number: 11 };
        let add = |op: u8, item, quantity| Command::AddToCart {
            op: [op; 16],
            buyer: 2,
            session: BUYER_SESSION,
            item,
            quantity,
            available: 5,
        };
        vec![
            Command::CreateAccount {
                op: [1; 16],
                role: Role::Seller,
                username: "ann".into(),
                name: "Ann".into(),
                password_hash: "$argon2id$seller".into(),
            },
            Command::CreateAccount {
                op: [2; 16],
                role: Role::Buyer,
                username: "bea".into(),
                name: "Bea".into(),
                password_hash: "$argon2id$buyer".into(),
            },
            // Taken in another letter case: refused.
            Command::CreateAccount {
                op: [3; 16],
                role: Role::Buyer,
                username: "BEA".into(),
                name: "Bea".into(),
                password_hash: "$argon2id$other".into(),
            },
            Command::StartSession { session: BUYER_SESSION, account: 2, role: Role::Buyer },
            add(4, pen, 2),
            add(5, cup, 1),
            add(5, cup, 1), // a repeated op: answered from the op table
            add(6, pen, 4), // 6 > 5 available: refused
            Command::RemoveFromCart {
                op: [7; 16],
                buyer: 2,
                session: BUYER_SESSION,
                item: cup,
                quantity: 1,
            },
            add(8, cup, 2),
            Command::SaveCart { session: BUYER_SESSION, buyer: 2 },
            Command::BeginPurchase { session: BUYER_SESSION, buyer: 2, key: "k1".into() },
            Command::BeginPurchase { session: BUYER_SESSION, buyer: 2, key: "k2".into() },
            Command::PurchaseReserved {
                id: 1,
                lines: vec![line(pen, 1, 2, 150), line(cup, 1, 2, 300)],
                total: Money::from_cents(900),
            },
            Command::PurchaseCommit { id: 1, from: State::Reserved },
            Command::PurchaseDone { id: 1 },
            Command::StartSession { session: LATER_SESSION, account: 2, role: Role::Buyer },
            Command::AddToCart {
                op: [9; 16],
                buyer: 2,
                session: LATER_SESSION,
                item: pen,
                quantity: 1,
                available: 5,
            },
            Command::BeginPurchase { session: LATER_SESSION, buyer: 2, key: "k3".into() },
            Command::PurchaseAborting {
                id: 2,
                from: State::Started,
                error: ApiError::unavailable("product database down"),
            },
            Command::PurchaseAborted { id: 2, from: State::Aborting, error: None },
            Command::FlushSessions { seen: vec![(LATER_SESSION, T0 + 30_000)], ended: vec![] },
            Command::EndSession { op: [10; 16], session: BUYER_SESSION },
            Command::ClearCart { session: BUYER_SESSION }, // logged out: refused
        ]
    }

    #[tokio::test]
    async fn the_same_commands_give_the_same_rows_and_answers_on_two_databases() {
        let commands = history_of_commands();
        let mut runs = Vec::new();
        for _ in 0..2 {
            let (dir, store) = fresh();
            let mut answers = Vec::new();
            for (i, command) in commands.iter().enumerate() {
                let ctx = Context { index: i as u64 + 1, now_ms: T0 + 1_000 * i as i64 };
                answers.push(apply(&store, command, ctx).await);
            }
            runs.push((answers, rows(&store).await, dir));
        }
        let (first, second) = (&runs[0], &runs[1]);
        assert_eq!(first.0, second.0, "answers");
        assert_eq!(first.1, second.1, "rows");

        // The run did what it says, so the comparison compared something.
        let answers = &first.0;
        assert_eq!(answers[0], Ok(Output::Account(1)));
        assert_eq!(answers[2].as_ref().map_err(|e| e.code), Err(ErrorCode::UsernameTaken));
        assert_eq!(answers[5], answers[6], "a repeated op answers as the first time");
        assert_eq!(answers[7].as_ref().map_err(|e| e.code), Err(ErrorCode::NotEnoughUnits));
        assert!(matches!(answers[11], Ok(Output::Begun(Begun::New(1, _)))));
        assert_eq!(answers[12], Ok(Output::Begun(Begun::Busy(1))));
        assert_eq!(answers[23].as_ref().map_err(|e| e.code), Err(ErrorCode::NotLoggedIn));
        // Times come from the context, never from the applying machine's clock.
        let rows = &first.1;
        let has = |prefix: &str, needle: &str| {
            rows.iter().any(|r| r.starts_with(prefix) && r.contains(needle))
        };
        assert!(has("accounts: 1 |", &format!("| {T0}")), "{rows:#?}");
        assert!(has("purchases: 1 |", &format!("| {} |", T0 + 14_000)), "{rows:#?}");
        assert!(has("sessions:", &format!("| {}", T0 + 30_000)), "{rows:#?}");
        assert!(has("purchase_tx: 2 |", "| \"aborted\" |"), "{rows:#?}");
    }

    /// Purchase 1 of two pens, taken as far as `Reserved`; the store and the lines.
    async fn reserved_purchase() -> (tempfile::TempDir, Store, Vec<PurchaseLine>) {
        let (dir, store) = fresh();
        let pen = ItemId { category: 3, number: 10 };
        let lines = vec![line(pen, 1, 2, 150)];
        let ctx = Context { index: 0, now_ms: T0 };
        let setup = [
            Command::StartSession { session: BUYER_SESSION, account: 2, role: Role::Buyer },
            Command::AddToCart {
                op: [1; 16],
                buyer: 2,
                session: BUYER_SESSION,
                item: pen,
                quantity: 2,
                available: 5,
            },
            Command::BeginPurchase { session: BUYER_SESSION, buyer: 2, key: "k".into() },
            Command::PurchaseReserved {
                id: 1,
                lines: lines.clone(),
                total: Money::from_cents(300),
            },
        ];
        for command in &setup {
            apply(&store, command, ctx).await.expect("setup");
        }
        (dir, store, lines)
    }

    #[tokio::test]
    async fn a_stale_transition_changes_nothing() {
        let (_dir, store, lines) = reserved_purchase().await;
        let ctx = Context { index: 0, now_ms: T0 + 5_000 };
        let before = rows(&store).await;
        // A driver that still thinks the purchase is `Started` (an old leader's request,
        // or a recovery round that read it before the reservation was recorded) may not
        // abort it, nor record other lines.
        let stale_abort = Command::PurchaseAborting {
            id: 1,
            from: State::Started,
            error: ApiError::unavailable("product database down"),
        };
        assert_eq!(
            apply(&store, &stale_abort, ctx).await,
            Ok(Output::Moved(Transition::Refused { found: State::Reserved }))
        );
        let other_lines = Command::PurchaseReserved {
            id: 1,
            lines: vec![line(ItemId { category: 3, number: 10 }, 1, 1, 1)],
            total: Money::from_cents(1),
        };
        assert_eq!(
            apply(&store, &other_lines, ctx).await,
            Ok(Output::Moved(Transition::AlreadyDone))
        );
        assert_eq!(rows(&store).await, before, "nothing changed");

        // Committed once; a second commit (two drivers both told "charged") answers the
        // same purchase and counts nothing twice; an abort can no longer take it back.
        let commit = Command::PurchaseCommit { id: 1, from: State::Reserved };
        let first = apply(&store, &commit, ctx).await.expect("commit");
        let Output::Committed(Transition::Moved, Some(purchase)) = first else {
            panic!("{first:?}")
        };
        assert_eq!(purchase.lines, lines);
        let committed = rows(&store).await;
        let again = Command::PurchaseCommit { id: 1, from: State::Resolving };
        assert_eq!(
            apply(&store, &again, ctx).await,
            Ok(Output::Committed(Transition::AlreadyDone, Some(purchase)))
        );
        let late_abort = Command::PurchaseAborting {
            id: 1,
            from: State::Reserved,
            error: ApiError::new(ErrorCode::PaymentDeclined, "declined"),
        };
        assert_eq!(
            apply(&store, &late_abort, ctx).await,
            Ok(Output::Moved(Transition::Refused { found: State::Committed }))
        );
        assert_eq!(rows(&store).await, committed, "nothing changed");

        // Done once, then only "already done".
        let done = Command::PurchaseDone { id: 1 };
        assert_eq!(apply(&store, &done, ctx).await, Ok(Output::Moved(Transition::Moved)));
        let finished = rows(&store).await;
        assert_eq!(apply(&store, &done, ctx).await, Ok(Output::Moved(Transition::AlreadyDone)));
        let resolving = Command::PurchaseResolving { id: 1 };
        assert_eq!(
            apply(&store, &resolving, ctx).await,
            Ok(Output::Moved(Transition::Refused { found: State::Done }))
        );
        assert_eq!(rows(&store).await, finished, "nothing changed");
    }

    #[tokio::test]
    async fn an_aborted_purchase_cannot_be_committed_and_a_transition_from_nowhere_is_a_bug() {
        let (_dir, store, _) = reserved_purchase().await;
        let ctx = Context { index: 0, now_ms: T0 };
        let declined = ApiError::new(ErrorCode::PaymentDeclined, "declined");
        let abort = Command::PurchaseAborting { id: 1, from: State::Reserved, error: declined };
        assert_eq!(apply(&store, &abort, ctx).await, Ok(Output::Moved(Transition::Moved)));
        let aborting = rows(&store).await;
        let commit = Command::PurchaseCommit { id: 1, from: State::Reserved };
        assert_eq!(
            apply(&store, &commit, ctx).await,
            Ok(Output::Committed(Transition::Refused { found: State::Aborting }, None))
        );
        // Committed is not a state a purchase may abort from, whatever the row says.
        let nonsense = Command::PurchaseAborted { id: 1, from: State::Committed, error: None };
        let refused = apply(&store, &nonsense, ctx).await.expect_err("a bug");
        assert_eq!(refused.code, ErrorCode::Internal);
        assert_eq!(rows(&store).await, aborting, "nothing changed");
    }
}
