//! MakePurchase: the customer database coordinates a purchase across itself, the product
//! database and the payments service, all or nothing, surviving a crash of any of them at
//! any step. DESIGN.md beside this crate explains the protocol and why it is correct.
//!
//! The coordinator talks to the other two parties and decides; every step it records is
//! a [`Command`] proposed to the customer database's replica, applied as a
//! compare-and-set on the purchase's state (`storage::purchase_log::State` draws the
//! states and their moves). A step whose purchase is no longer where this coordinator
//! saw it changes nothing: another coordinator (a new leader's recovery) has taken the
//! purchase over, and this one steps aside.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use agora_domain::{Card, CartLine, Money, Purchase, UserId};
use agora_proto::messages::payments::{self, Outcome};
use agora_proto::messages::product;
use agora_proto::{ApiError, CallError, ErrorCode, Payments, Pool, ProductDb, fault};
use agora_replication::Replica;
use tracing::{debug, error, info, warn};

use crate::command::{Begun, Command, CustomerMachine, Output, Transition};
use crate::sessions::Key;
use crate::storage::history;
use crate::storage::purchase_log::{self, State, Tx};

/// Most unfinished purchases reported to the product database at once (about 90 KiB).
const MAX_HELD_REPORT: usize = 10_000;

/// How long a purchase waits for another purchase of the same cart to end before it
/// answers `purchase_pending`: under the frontends' deadline on a customer-db call.
const CART_HELD_WAIT: Duration = Duration::from_secs(3);

/// How long a retried purchase waits for the outcome of the earlier one with its key,
/// while another driver finishes it, before it answers `purchase_pending`: as long as a
/// purchase waits for its cart, under the frontends' deadline on a customer-db call.
const OUTCOME_WAIT: Duration = CART_HELD_WAIT;

/// The first and the longest pause between two reads of a purchase's row while its
/// outcome is awaited and no driver in this process holds it.
const OUTCOME_POLL_FIRST: Duration = Duration::from_millis(10);
const OUTCOME_POLL_MAX: Duration = Duration::from_millis(200);

/// What every purchase's charge key at the payments service starts with; the purchase id
/// follows.
pub const PAYMENT_KEY_PREFIX: &str = "agora-purchase-";

/// The states, as stored, of a purchase that has ended (aborted, or done and confirmed):
/// every other is unfinished and recovery drives it on.
pub const FINISHED_STATES: [i64; 2] = [State::FINISHED[0] as i64, State::FINISHED[1] as i64];

/// The idempotency key of a purchase's charge at the payments service.
fn payment_key(id: u64) -> String {
    format!("{PAYMENT_KEY_PREFIX}{id}")
}

/// The refusal of a purchase whose `total` at the reserved prices is not the one the
/// buyer `agreed` to, if it is not; none when the buyer agreed to no total (a client of an
/// earlier release).
fn price_changed(agreed: Option<Money>, total: Money) -> Option<ApiError> {
    let agreed = agreed.filter(|agreed| *agreed != total)?;
    Some(ApiError::new(
        ErrorCode::PriceChanged,
        format!(
            "the cart's total is now {total}, not the {agreed} you agreed to: a price changed; \
             nothing was bought or charged (look at the cart again and buy at the new total)"
        ),
    ))
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

/// The purchase coordinator: drives purchases for requests, and recovers the unfinished
/// ones while this replica leads.
#[derive(Debug)]
pub struct Coordinator {
    replica: Replica<CustomerMachine>,
    products: Pool<ProductDb>,
    payments: Pool<Payments>,
    /// Purchases this process is driving now (for a request, or in a recovery round);
    /// recovery leaves them alone. Per process, in memory: after a crash, or on a new
    /// leader, it is empty and everything unfinished is recovered. That is safe even
    /// while an old leader still drives one of them: every step is a compare-and-set,
    /// so whichever driver moves a purchase first wins and the other's proposals change
    /// nothing (or fail: the old leader can no longer commit to the log at all).
    driven_here: Mutex<HashSet<u64>>,
    /// Held (shared) by a request from proposing its `BeginPurchase` until the new
    /// purchase is in `driven_here`; held (exclusive) by recovery while it lists the
    /// unfinished purchases. So recovery never takes a purchase a request here has just
    /// begun, and aborts it under the request's feet.
    begin_gate: tokio::sync::RwLock<()>,
    /// Woken whenever a purchase stops being driven, for purchases waiting for another
    /// purchase of the same cart to end and for retries awaiting a purchase's outcome.
    finished: tokio::sync::Notify,
    /// How long recovery leaves a purchase whose charge was never placed (`Started`, or
    /// `Reserved` with nothing recorded at payments) to a retry of its request.
    retry_grace: Duration,
    /// When recovery first found each such purchase with no driver here, since this
    /// replica began to lead: it cancels one only once `retry_grace` has passed since.
    left_seen: Mutex<HashMap<u64, tokio::time::Instant>>,
    /// Set when this replica is about to stop ([`Coordinator::drain`]): it begins no new
    /// purchase, so that those it drives end before it hands its leadership over.
    draining: std::sync::atomic::AtomicBool,
}

/// Removes a purchase from `driven_here` when its driver is done, however it ends.
struct Driving<'a>(&'a Coordinator, u64);

impl Drop for Driving<'_> {
    fn drop(&mut self) {
        self.0.driven_here().remove(&self.1);
        self.0.finished.notify_waiters();
    }
}

impl Coordinator {
    /// A coordinator recording through `replica`, with pools to the other two parties.
    pub fn new(
        replica: Replica<CustomerMachine>,
        products: Pool<ProductDb>,
        payments: Pool<Payments>,
        retry_grace: Duration,
    ) -> Self {
        Coordinator {
            replica,
            products,
            payments,
            driven_here: Mutex::default(),
            begin_gate: tokio::sync::RwLock::new(()),
            finished: tokio::sync::Notify::new(),
            retry_grace,
            left_seen: Mutex::default(),
            draining: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Before a clean stop, while this replica still leads: begins no new purchase (a
    /// request answers `not_leader`, which its frontend sends again, to the next leader
    /// once this one has handed over) and waits, at most `within`, until every purchase
    /// driven here has ended. A purchase cut off by the handover would otherwise be left to
    /// the new leader's recovery, and its buyer's repeat would wait for it and answer
    /// `purchase_pending`.
    pub async fn drain(&self, within: Duration) {
        self.draining.store(true, std::sync::atomic::Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let finished = self.finished.notified();
            tokio::pin!(finished);
            finished.as_mut().enable();
            let driving = self.driven_here().len();
            if driving == 0 {
                return;
            }
            if tokio::time::timeout_at(deadline, finished).await.is_err() {
                warn!(
                    "stopping with {driving} purchases still being driven: the next leader finishes them"
                );
                return;
            }
        }
    }

    // Held for a set insert or remove; nothing awaits under it.
    fn driven_here(&self) -> MutexGuard<'_, HashSet<u64>> {
        self.driven_here.lock().unwrap_or_else(|p| p.into_inner())
    }

    // Held for a look-up, insert or sweep; nothing awaits under it.
    fn left_seen(&self) -> MutexGuard<'_, HashMap<u64, tokio::time::Instant>> {
        self.left_seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Purchase `id` becomes driven here, unless a driver here already holds it; the
    /// guard lets go of it however the driving ends.
    fn claim(&self, id: u64) -> Option<Driving<'_>> {
        // The set's lock ends with this statement: a guard made (and dropped) under it
        // would lock it again. And no guard for a purchase already held: dropping one
        // would take the purchase from the driver that holds it.
        let claimed = self.driven_here().insert(id);
        claimed.then(|| Driving(self, id))
    }

    /// Buys the session's cart. `key` makes retries safe: a key already used returns that
    /// purchase's outcome. With `agreed`, the total the buyer saw and agreed to, a cart
    /// whose total at the reserved prices is another is not bought (`PriceChanged`): its
    /// units are released before payments is asked.
    pub async fn purchase(
        &self,
        session: Key,
        buyer: UserId,
        key: String,
        card: Card,
        agreed: Option<Money>,
    ) -> Result<Purchase, ApiError> {
        if key.is_empty() || key.len() > 64 {
            return Err(ApiError::new(
                ErrorCode::InvalidArgument,
                "invalid purchase key: must be 1 to 64 bytes",
            ));
        }
        let card = card.validate()?;
        if self.draining.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(ApiError::not_leader("customer-db", None));
        }
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
                Begun::Earlier(earlier) => return self.outcome(earlier, card, agreed).await,
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
        // `begin` put the purchase in `driven_here`: from here on the guard owns it.
        let driving = Driving(self, id);
        fault::crash_point("after-begin");
        self.drive(driving, id, buyer, cart, card, agreed).await
    }

    /// Step 1: claims the session's cart for a new purchase (or finds the key's earlier
    /// purchase, or the purchase holding the cart), and marks a new one as driven here.
    async fn begin(&self, session: Key, buyer: UserId, key: String) -> Result<Begun, ApiError> {
        let _beginning = self.begin_gate.read().await;
        match self.replica.propose(Command::BeginPurchase { session, buyer, key }).await? {
            Output::Begun(begun) => {
                if let Begun::New(id, _) = &begun {
                    self.driven_here().insert(*id);
                }
                Ok(begun)
            }
            other => Err(other.unexpected()),
        }
    }

    /// Steps 2 to 5 of a purchase left `Started` (just begun, or taken over by a retry),
    /// driven here for as long as `_driving` lives: reserve, charge, commit, confirm. A
    /// reservation whose total is not the `agreed` one is released, and nothing charged.
    async fn drive(
        &self,
        _driving: Driving<'_>,
        id: u64,
        buyer: UserId,
        cart: Vec<CartLine>,
        card: Card,
        agreed: Option<Money>,
    ) -> Result<Purchase, ApiError> {
        // Phase one: reserve the units.
        let lines = match self
            .products
            .call(&product::Request::Reserve { purchase: id, lines: cart })
            .await
        {
            Ok(product::Response::Reserved(lines)) => lines,
            Ok(other) => {
                let error = agora_proto::messages::unexpected(&other);
                return Err(self.abort(id, State::Started, error, true).await);
            }
            // Refused: nothing was reserved.
            Err(CallError::Remote(refusal)) => {
                return Err(self.abort(id, State::Started, refusal, false).await);
            }
            Err(e) => {
                let error = ApiError::unavailable(format!(
                    "{e}; nothing was charged and the purchase is cancelled"
                ));
                return Err(self.abort(id, State::Started, error, true).await);
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
            return Err(self.abort(id, State::Started, error, true).await);
        };
        // The prices are the reservation's: the ones that would be charged. The buyer
        // agreed to others; the units go back, and payments is never asked.
        if let Some(error) = price_changed(agreed, total) {
            return Err(self.abort(id, State::Started, error, true).await);
        }
        if let Transition::Refused { found } =
            self.step(Command::PurchaseReserved { id, lines, total }).await?
        {
            return Err(overtaken(id, found));
        }
        fault::crash_point("after-reserve");
        self.charge(id, buyer, total, card).await
    }

    /// Steps 3 to 5 of a purchase `Reserved` for `total` (by this driver a moment ago, or
    /// by one that is gone, for a retry taking it over), driven here as long as the
    /// caller's `Driving` lives: charge, commit, confirm.
    async fn charge(
        &self,
        id: u64,
        buyer: UserId,
        total: Money,
        card: Card,
    ) -> Result<Purchase, ApiError> {
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
                return Err(self.abort(id, State::Reserved, error, true).await);
            }
            Ok(payments::Response::Charge(Outcome::Cancelled)) => Some(false),
            Ok(other) => {
                warn!(id, ?other, "unexpected answer from payments; resolving");
                self.resolve(id, total, buyer).await
            }
            Err(CallError::Remote(refusal)) => {
                return Err(self.abort(id, State::Reserved, refusal, true).await);
            }
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
                return Err(self.abort(id, State::Reserved, error, true).await);
            }
            None => {
                // Recovery asks payments again until it answers; the buyer may ask too.
                self.step(Command::PurchaseResolving { id }).await?;
                return Err(pending(id));
            }
        }
        let purchase = self.commit(id, State::Reserved).await?;
        fault::crash_point("after-commit");
        self.confirm(id).await;
        Ok(purchase)
    }

    /// Proposes a purchase state transition and returns what it did.
    async fn step(&self, command: Command) -> Result<Transition, ApiError> {
        match self.replica.propose(command).await? {
            Output::Moved(transition) => Ok(transition),
            other => Err(other.unexpected()),
        }
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

    /// What payments recorded for the charge of purchase `id`, without deciding anything:
    /// `Some(Some(outcome))`, `Some(None)` if no charge has been decided yet, `None` if
    /// payments cannot be asked right now.
    async fn lookup(&self, id: u64) -> Option<Option<Outcome>> {
        match self.payments.call(&payments::Request::Lookup { key: payment_key(id) }).await {
            Ok(payments::Response::Charge(outcome)) => Some(Some(outcome)),
            Ok(payments::Response::NoCharge) => Some(None),
            Ok(_) | Err(_) => None,
        }
    }

    /// Records that purchase `id`, seen in state `from`, will not happen, and releases its
    /// units; returns what the buyer is told. `release` is false only when the product
    /// database refused the reservation (so holds nothing): then it is aborted at once.
    async fn abort(&self, id: u64, from: State, error: ApiError, release: bool) -> ApiError {
        let command = if release {
            Command::PurchaseAborting { id, from, error: error.clone() }
        } else {
            Command::PurchaseAborted { id, from, error: Some(error.clone()) }
        };
        match self.step(command).await {
            Ok(Transition::Moved | Transition::AlreadyDone) => {
                if release {
                    self.release(id).await;
                }
                error
            }
            Ok(Transition::Refused { found }) => overtaken(id, found),
            Err(e) => {
                warn!(id, error = %e, "cannot record an aborted purchase; recovery will finish it");
                error
            }
        }
    }

    /// Tells the product database to put the units back; on success the purchase is
    /// aborted for good. On failure it stays `Aborting` and recovery tries again.
    async fn release(&self, id: u64) {
        match self.products.call(&product::Request::Release { purchase: id }).await {
            Ok(_) => {
                let released = Command::PurchaseAborted { id, from: State::Aborting, error: None };
                match self.step(released).await {
                    Ok(Transition::Moved | Transition::AlreadyDone) => {}
                    Ok(Transition::Refused { found }) => {
                        warn!(id, ?found, "a released purchase was no longer aborting");
                    }
                    Err(e) => warn!(id, error = %e, "cannot record a released purchase"),
                }
            }
            Err(e) => warn!(id, error = %e, "cannot release a purchase yet; will retry"),
        }
    }

    /// The commit point (payments charged purchase `id`, seen in state `from`): history,
    /// counters and carts in one transaction. Committing a purchase already committed
    /// answers the same purchase and changes nothing.
    async fn commit(&self, id: u64, from: State) -> Result<Purchase, ApiError> {
        match self.replica.propose(Command::PurchaseCommit { id, from }).await? {
            Output::Committed(_, Some(purchase)) => Ok(purchase),
            Output::Committed(Transition::Refused { found }, None) => {
                if matches!(found, State::Aborting | State::Aborted) {
                    // Payments' answer for a key never changes, so no driver can have
                    // aborted what payments charged: a bug, and money taken.
                    error!(id, ?found, "payments charged a purchase another driver aborted");
                }
                Err(overtaken(id, found))
            }
            other => Err(other.unexpected()),
        }
    }

    /// Tells the product database the units are sold; recovery retries on failure.
    async fn confirm(&self, id: u64) {
        match self.products.call(&product::Request::Confirm { purchase: id }).await {
            Ok(_) => match self.step(Command::PurchaseDone { id }).await {
                Ok(Transition::Moved | Transition::AlreadyDone) => {}
                Ok(Transition::Refused { found }) => {
                    warn!(id, ?found, "a confirmed purchase was not committed");
                }
                Err(e) => warn!(id, error = %e, "cannot record a confirmed purchase"),
            },
            Err(e) => warn!(id, error = %e, "cannot confirm a purchase yet; will retry"),
        }
    }

    /// What a retried request learns about an earlier purchase with the same key: the
    /// purchase, or the error its first try was (or will be) told. While another driver
    /// is still finishing it (the first try's, which lost its buyer when a frontend died;
    /// recovery here, after the leader that began it died), waits up to `OUTCOME_WAIT`
    /// for the outcome, holding no lock: woken when a driver here lets go of a purchase,
    /// and reading the row again with a growing pause for drivers elsewhere. Still
    /// unknown at the deadline: `purchase_pending`.
    ///
    /// A purchase still `Started` that no driver here holds lost its driver before
    /// payments was asked (with a crashed process or an old leader), and recovery, which
    /// has no card, leaves it to its retry for a while: this retry carries `card` and
    /// drives the purchase on itself, under its id, and answers what that gives.
    ///
    /// A retry that drives a purchase on holds it to the total it agreed to (`agreed`), as
    /// the first request would have been held to its own.
    async fn outcome(
        &self,
        mut tx: Tx,
        card: Card,
        agreed: Option<Money>,
    ) -> Result<Purchase, ApiError> {
        let (id, buyer) = (tx.id, tx.buyer);
        let mut card = Some(card);
        let deadline = tokio::time::Instant::now() + OUTCOME_WAIT;
        let mut pause = OUTCOME_POLL_FIRST;
        loop {
            let total = tx.total();
            match (tx.state, tx.error) {
                (State::Committed | State::Done, _) => {
                    return self.replica.read(move |c| history::load(c, id)).await;
                }
                (State::Aborted, error) => {
                    return Err(error.unwrap_or_else(|| {
                        ApiError::new(ErrorCode::Aborted, "purchase cancelled")
                    }));
                }
                // Decided: nothing is or will be charged, only the units are still on
                // their way back; the first try was told this error.
                (State::Aborting, Some(error)) => return Err(error),
                (state @ (State::Started | State::Reserved), _) => {
                    if let Some(driving) = self.claim_left_purchase(id).await
                        && let Some(card) = card.take()
                    {
                        return self
                            .take_over(driving, state, id, buyer, total, card, agreed)
                            .await;
                    }
                }
                (State::Resolving | State::Aborting, _) => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(pending(id));
            }
            // Until a driver here lets go of this purchase (no need to read the row
            // before), or, when none here holds it, for a pause.
            loop {
                let let_go = self.finished.notified();
                tokio::pin!(let_go);
                let_go.as_mut().enable();
                let wake = if self.driven_here().contains(&id) {
                    deadline
                } else {
                    let wake = (tokio::time::Instant::now() + pause).min(deadline);
                    pause = (pause * 2).min(OUTCOME_POLL_MAX);
                    wake
                };
                let timed_out = tokio::time::timeout_at(wake, let_go).await.is_err();
                if timed_out || !self.driven_here().contains(&id) {
                    break;
                }
            }
            tx = self.replica.read(move |c| purchase_log::load(c, id)).await?;
        }
    }

    /// Claims purchase `id` for a retry taking it over, unless a driver here holds it.
    /// The write side of `begin_gate` first lets every `BeginPurchase` in flight here
    /// record its purchase in `driven_here`: the request that began this purchase here a
    /// moment ago, and is about to drive it, keeps it.
    async fn claim_left_purchase(&self, id: u64) -> Option<Driving<'_>> {
        let _begins_recorded = self.begin_gate.write().await;
        self.claim(id)
    }

    /// A retry drives on purchase `id` of `buyer`, found in `state` (`Started`, or
    /// `Reserved` for `total`) with no driver here, with its own card. It is the same
    /// purchase: the same id, so the same reservation (a reserve answers the lines
    /// recorded under the id) and the same payment key (payments charges a key at most
    /// once, whichever card comes first, and answers a repeat with the first outcome: a
    /// charge the old driver placed is not placed again). A driver of it elsewhere (an old
    /// leader) is safe beside this one as recovery is: every step is a compare-and-set and
    /// every remote step idempotent.
    #[allow(clippy::too_many_arguments)]
    async fn take_over(
        &self,
        driving: Driving<'_>,
        state: State,
        id: u64,
        buyer: UserId,
        total: Money,
        card: Card,
        agreed: Option<Money>,
    ) -> Result<Purchase, ApiError> {
        info!(id, ?state, "a retry takes over a purchase left before its charge");
        self.left_seen().remove(&id);
        if state == State::Reserved {
            let _driving = driving;
            if let Some(error) = price_changed(agreed, total) {
                return Err(self.abort(id, State::Reserved, error, true).await);
            }
            return self.charge(id, buyer, total, card).await;
        }
        let cart = self.replica.read(move |c| purchase_log::cart(c, id)).await?;
        self.drive(driving, id, buyer, cart, card, agreed).await
    }

    /// Whether recovery may cancel purchase `id`, found `Started` with no driver here:
    /// once `retry_grace` has passed since it first found it so.
    fn grace_over(&self, id: u64) -> bool {
        let now = tokio::time::Instant::now();
        let first = *self.left_seen().entry(id).or_insert(now);
        now.duration_since(first) >= self.retry_grace
    }

    /// Drives every purchase left unfinished (by a crash, a party that was down, or an
    /// old leader) to its end. Safe to run at any time: purchases driven here are
    /// skipped, and every step is idempotent and a compare-and-set.
    pub async fn recover(&self) {
        let open = {
            let _listing = self.begin_gate.write().await;
            self.replica.read(|c| purchase_log::unfinished(c, i64::MAX)).await
        };
        let Ok(open) = open else { return };
        let still_open: HashSet<u64> = open.iter().copied().collect();
        self.left_seen().retain(|id, _| still_open.contains(id));
        for id in open {
            if !self.driven_here().insert(id) {
                continue;
            }
            let _driving = Driving(self, id);
            let Ok(tx) = self.replica.read(move |c| purchase_log::load(c, id)).await else {
                continue;
            };
            if tx.state == State::Started && !self.grace_over(id) {
                // Left to a retry of its request, which has the card: `outcome`.
                continue;
            }
            if tx.state == State::Reserved && !self.grace_over(id) {
                // The charge may have been placed, or not: payments says, changing
                // nothing. Not placed: left to the retry like a `Started` one, since a
                // `Resolve` now would cancel a purchase nothing stands in the way of.
                if !matches!(self.lookup(id).await, Some(Some(_))) {
                    continue;
                }
            }
            info!(id, state = ?tx.state, "recovering purchase");
            match tx.state {
                // Payments was never asked; the units may be reserved. No retry came to
                // finish it within the grace.
                State::Started => {
                    let error = ApiError::new(
                        ErrorCode::Aborted,
                        "purchase interrupted before payment; nothing was charged",
                    );
                    let _ = self.abort(id, State::Started, error, true).await;
                }
                State::Aborting => self.release(id).await,
                // The charge may have been sent: payments decides.
                State::Reserved | State::Resolving => {
                    match self.resolve(id, tx.total(), tx.buyer).await {
                        Some(true) => {
                            let committed = self.commit(id, tx.state).await;
                            if committed.is_ok() {
                                self.confirm(id).await;
                            }
                        }
                        Some(false) => {
                            let error = ApiError::new(
                                ErrorCode::Aborted,
                                "purchase interrupted; nothing was charged",
                            );
                            let _ = self.abort(id, tx.state, error, true).await;
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
            .replica
            .read(|c| {
                let open = purchase_log::unfinished(c, MAX_HELD_REPORT as i64 + 1)?;
                // In the same read: every id below `next` existed when `open` was read.
                Ok((open, purchase_log::next_id(c)?))
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
}

/// What the buyer is told when purchase `id` moved on to `found` without this driver:
/// another driver (a new leader's recovery) took it over and will finish it, so its
/// outcome is not this driver's to tell. The same purchase key will tell it.
fn overtaken(id: u64, found: State) -> ApiError {
    warn!(id, ?found, "another coordinator is driving this purchase; stepping aside");
    pending(id)
}

/// Runs recovery now and then every `every` until `stop`.
pub async fn recover_forever(
    coordinator: Arc<Coordinator>,
    every: Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    // A new leadership gives every purchase it finds left before its charge the whole
    // grace.
    coordinator.left_seen().clear();
    loop {
        coordinator.recover().await;
        coordinator.report_held().await;
        tokio::select! {
            _ = stop.cancelled() => return,
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

#[cfg(test)]
mod tests {
    use agora_domain::{CartLine, ItemId, PurchaseLine, Role};

    use super::*;
    use crate::testing::{Rig, bad_card, card};

    #[tokio::test]
    async fn a_purchase_driven_here_cannot_be_claimed_again_and_is_free_after() {
        let rig = Rig::start().await;
        let coordinator = &rig.coordinator;
        let first = coordinator.claim(7).expect("a purchase nobody drives is claimed");
        // A second claim of the same purchase: refused, without locking up the process
        // (it once locked the set again under its own lock: the test then fails on the
        // deadline instead of hanging) or taking the purchase from its driver.
        let again = coordinator.clone();
        let second = tokio::task::spawn_blocking(move || again.claim(7).is_none());
        let refused = tokio::time::timeout(Duration::from_secs(10), second).await;
        assert!(matches!(refused, Ok(Ok(true))), "a second claim: {refused:?}");
        assert!(coordinator.driven_here().contains(&7), "the first driver still holds it");
        drop(first);
        assert!(!coordinator.driven_here().contains(&7));
        assert!(coordinator.claim(7).is_some(), "free again once its driver is done");
    }

    /// A rig with a seller's pen (5 units at 1.50) and a buyer holding 2 in the cart.
    async fn buyer_with_two_pens() -> (Rig, UserId, UserId, String, ItemId) {
        let rig = Rig::start().await;
        let (seller, _) = rig.account(Role::Seller, "ann").await;
        let (buyer, token) = rig.account(Role::Buyer, "bea").await;
        let pen = rig.list(seller, 150, 5).await;
        rig.add(&token, pen, 2, 5).await;
        (rig, seller, buyer, token, pen)
    }

    #[tokio::test]
    async fn a_purchase_reserves_charges_commits_confirms_and_a_retry_answers_the_same() {
        let (rig, seller, buyer, token, pen) = buyer_with_two_pens().await;
        let bought = rig.purchase(&token, "k1", card()).await.expect("bought");
        assert_eq!(bought.total, Money::from_cents(300));
        assert_eq!(bought.lines.len(), 1);
        assert_eq!((bought.lines[0].item, bought.lines[0].quantity), (pen, 2));
        assert_eq!(rig.state(bought.id).await, State::Done);
        assert_eq!(rig.units_left(pen).await, 3);
        assert!(rig.cart(&token).await.is_empty());
        assert_eq!((rig.units_counted(buyer).await, rig.units_counted(seller).await), (2, 2));
        // The same key again: the same purchase, nothing bought twice.
        assert_eq!(rig.purchase(&token, "k1", card()).await, Ok(bought));
        // A new key finds the bought lines gone.
        let again = rig.purchase(&token, "k2", card()).await.expect_err("empty");
        assert_eq!(again.code, ErrorCode::InvalidArgument);
        assert_eq!(rig.units_left(pen).await, 3);
        assert_eq!(rig.history_rows().await, 1);
        assert_eq!((rig.units_counted(buyer).await, rig.units_counted(seller).await), (2, 2));
    }

    #[tokio::test]
    async fn a_declined_card_aborts_releases_the_units_and_keeps_the_cart() {
        let (rig, _, buyer, token, pen) = buyer_with_two_pens().await;
        let declined = rig.purchase(&token, "k1", bad_card()).await.expect_err("declined");
        assert_eq!(declined.code, ErrorCode::PaymentDeclined);
        assert_eq!(rig.state(1).await, State::Aborted);
        assert_eq!(rig.units_left(pen).await, 5);
        assert_eq!(rig.cart(&token).await, vec![CartLine { item: pen, quantity: 2 }]);
        assert_eq!(rig.units_counted(buyer).await, 0);
        // A retry with the key learns the same refusal; a new key may buy the cart.
        let retried = rig.purchase(&token, "k1", card()).await.expect_err("recorded");
        assert_eq!(retried.code, ErrorCode::PaymentDeclined);
        rig.purchase(&token, "k2", card()).await.expect("bought with a good card");
        // More than is left is refused by the product database, naming what is left.
        rig.add(&token, pen, 4, 5).await;
        let short = rig.purchase(&token, "k3", card()).await.expect_err("not enough");
        assert_eq!(short.code, ErrorCode::NotEnoughUnits);
        assert_eq!(rig.state(3).await, State::Aborted);
        assert_eq!(rig.units_left(pen).await, 3);
    }

    /// Purchase 1 of two pens left as a crashed coordinator would leave it after the
    /// reservation: `Reserved` in the log, units reserved at the product database.
    async fn left_reserved(rig: &Rig, buyer: UserId, token: &str) -> Vec<PurchaseLine> {
        let session = crate::sessions::parse_token(token).expect("token");
        let begin = Command::BeginPurchase { session, buyer, key: "k1".into() };
        let Ok(Output::Begun(Begun::New(id, cart))) = rig.replica.propose(begin).await else {
            panic!("not begun")
        };
        assert_eq!(id, 1);
        let reserve = product::Request::Reserve { purchase: id, lines: cart };
        let lines = match rig.as_coordinator.call(&reserve, Duration::from_secs(5)).await {
            Ok(product::Response::Reserved(lines)) => lines,
            other => panic!("{other:?}"),
        };
        let total = Money::from_cents(300);
        let reserved = Command::PurchaseReserved { id, lines: lines.clone(), total };
        rig.replica.propose(reserved).await.expect("reserved");
        lines
    }

    #[tokio::test]
    async fn recovery_commits_a_charged_purchase_and_aborts_an_uncharged_one() {
        let (rig, seller, buyer, token, pen) = buyer_with_two_pens().await;
        left_reserved(&rig, buyer, &token).await;
        assert_eq!(rig.units_left(pen).await, 3);
        // Crashed after the charge went through: recovery asks payments and commits.
        rig.charge(1, Money::from_cents(300), buyer).await;
        rig.coordinator.recover().await;
        assert_eq!(rig.state(1).await, State::Done);
        assert_eq!(rig.history_rows().await, 1);
        assert_eq!((rig.units_counted(buyer).await, rig.units_counted(seller).await), (2, 2));
        assert!(rig.cart(&token).await.is_empty());

        // Crashed before the charge: `Resolve` cancels the key, recovery releases.
        rig.add(&token, pen, 1, 3).await;
        let session = crate::sessions::parse_token(&token).expect("token");
        let begin = Command::BeginPurchase { session, buyer, key: "k2".into() };
        let Ok(Output::Begun(Begun::New(id, cart))) = rig.replica.propose(begin).await else {
            panic!("not begun")
        };
        let reserve = product::Request::Reserve { purchase: id, lines: cart };
        rig.as_coordinator.call(&reserve, Duration::from_secs(5)).await.expect("reserved");
        assert_eq!(rig.units_left(pen).await, 2);
        // Still `Started` in the log: payments was never asked.
        rig.coordinator.recover().await;
        assert_eq!(rig.state(id).await, State::Aborted);
        assert_eq!(rig.units_left(pen).await, 3);
        assert_eq!(rig.cart(&token).await, vec![CartLine { item: pen, quantity: 1 }]);
        let retried = rig.purchase(&token, "k2", card()).await.expect_err("aborted");
        assert_eq!(retried.code, ErrorCode::Aborted);
    }

    /// Purchase 1 of two pens begun as a leader that died before payment would leave it:
    /// `Started` in the log, and (when `reserved`) the units reserved under its id.
    async fn left_started(rig: &Rig, buyer: UserId, token: &str, reserved: bool) {
        let session = crate::sessions::parse_token(token).expect("token");
        let begin = Command::BeginPurchase { session, buyer, key: "k1".into() };
        let Ok(Output::Begun(Begun::New(1, cart))) = rig.replica.propose(begin).await else {
            panic!("not begun")
        };
        if reserved {
            let reserve = product::Request::Reserve { purchase: 1, lines: cart };
            rig.as_coordinator.call(&reserve, Duration::from_secs(5)).await.expect("reserved");
        }
    }

    /// The coordinator of a new leader, which leaves `Started` purchases to their retries
    /// for a minute.
    fn patient_coordinator(rig: &Rig) -> Coordinator {
        let config = crate::Config { retry_grace: Duration::from_secs(60), ..rig.config.clone() };
        Rig::coordinator_over(&rig.replica, &config)
    }

    #[tokio::test]
    async fn a_retry_finishes_a_purchase_its_leader_left_before_payment_once() {
        // `Started` with nothing reserved, `Started` with the units reserved, and
        // `Reserved` in the log with no charge at payments.
        for (reserved, left) in
            [(false, State::Started), (true, State::Started), (true, State::Reserved)]
        {
            let (rig, seller, buyer, token, pen) = buyer_with_two_pens().await;
            if left == State::Reserved {
                left_reserved(&rig, buyer, &token).await;
            } else {
                left_started(&rig, buyer, &token, reserved).await;
            }
            // The new leader's recovery cannot charge (it has no card): it leaves it be.
            let new = patient_coordinator(&rig);
            new.recover().await;
            assert_eq!(rig.state(1).await, left);

            // The buyer's retry, with the card, buys it under the same id.
            let session = crate::sessions::parse_token(&token).expect("token");
            let bought =
                new.purchase(session, buyer, "k1".into(), card(), None).await.expect("bought");
            assert_eq!((bought.id, bought.total), (1, Money::from_cents(300)), "{reserved}");
            assert_eq!(rig.state(1).await, State::Done);
            assert_eq!(rig.units_left(pen).await, 3, "the units are taken once");
            assert_eq!(rig.history_rows().await, 1);
            assert_eq!((rig.units_counted(buyer).await, rig.units_counted(seller).await), (2, 2));
            assert!(rig.cart(&token).await.is_empty());
            let resolve = payments::Request::Resolve { key: payment_key(1) };
            match rig.payments_channel.call(&resolve, Duration::from_secs(5)).await {
                Ok(payments::Response::Charge(Outcome::Approved { amount, .. })) => {
                    assert_eq!(amount, Money::from_cents(300));
                }
                other => panic!("{other:?}"),
            }
            // Asked again, the key answers the same purchase and buys nothing more.
            let again = new.purchase(session, buyer, "k1".into(), card(), None).await;
            assert_eq!(again, Ok(bought));
            new.recover().await;
            assert_eq!(rig.units_left(pen).await, 3);
            assert_eq!(rig.history_rows().await, 1);
        }
    }

    /// Within the grace, recovery looks a `Reserved` purchase up at payments without
    /// deciding anything: charged by the old leader, it is bought at once; not charged,
    /// it is left to the retry (a `Resolve` would cancel it).
    #[tokio::test]
    async fn within_the_grace_recovery_buys_a_charged_reserved_purchase_and_leaves_the_rest() {
        let (rig, _, buyer, token, pen) = buyer_with_two_pens().await;
        left_reserved(&rig, buyer, &token).await;
        let new = patient_coordinator(&rig);
        new.recover().await;
        assert_eq!(rig.state(1).await, State::Reserved, "left to the retry");
        let lookup = payments::Request::Lookup { key: payment_key(1) };
        let answer = rig.payments_channel.call(&lookup, Duration::from_secs(5)).await;
        assert_eq!(answer.ok(), Some(payments::Response::NoCharge), "nothing decided");
        // The old leader's charge lands after all: the next round buys the purchase.
        rig.charge(1, Money::from_cents(300), buyer).await;
        new.recover().await;
        assert_eq!(rig.state(1).await, State::Done);
        assert_eq!(rig.units_left(pen).await, 3);
        assert_eq!(rig.history_rows().await, 1);
    }

    #[tokio::test]
    async fn a_retry_that_takes_over_with_a_declined_card_records_the_refusal() {
        let (rig, _, buyer, token, pen) = buyer_with_two_pens().await;
        left_started(&rig, buyer, &token, true).await;
        let new = patient_coordinator(&rig);
        let session = crate::sessions::parse_token(&token).expect("token");
        let declined = new.purchase(session, buyer, "k1".into(), bad_card(), None).await;
        assert_eq!(declined.map_err(|e| e.code), Err(ErrorCode::PaymentDeclined));
        assert_eq!(rig.state(1).await, State::Aborted);
        assert_eq!(rig.units_left(pen).await, 5);
        // A real refusal is the key's answer from now on, whatever card comes with it.
        let retried = new.purchase(session, buyer, "k1".into(), card(), None).await;
        assert_eq!(retried.map_err(|e| e.code), Err(ErrorCode::PaymentDeclined));
        assert_eq!(rig.history_rows().await, 0);
    }

    #[tokio::test]
    async fn recovery_cancels_a_started_purchase_no_retry_came_for_within_the_grace() {
        let (rig, _, buyer, token, pen) = buyer_with_two_pens().await;
        left_started(&rig, buyer, &token, true).await;
        let config = crate::Config { retry_grace: Duration::from_millis(50), ..rig.config.clone() };
        let new = Rig::coordinator_over(&rig.replica, &config);
        new.recover().await;
        assert_eq!(rig.state(1).await, State::Started, "within the grace");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while rig.state(1).await != State::Aborted {
            assert!(tokio::time::Instant::now() < deadline, "never cancelled");
            tokio::time::sleep(Duration::from_millis(10)).await;
            new.recover().await;
        }
        assert_eq!(rig.units_left(pen).await, 5);
        // Now the retry learns the cancellation: nothing was charged.
        let session = crate::sessions::parse_token(&token).expect("token");
        let retried = new.purchase(session, buyer, "k1".into(), card(), None).await;
        assert_eq!(retried.map_err(|e| e.code), Err(ErrorCode::Aborted));
        assert_eq!(rig.history_rows().await, 0);
    }

    #[tokio::test]
    async fn a_stale_coordinator_can_neither_undo_a_purchase_nor_finish_it_twice() {
        let (rig, seller, buyer, token, pen) = buyer_with_two_pens().await;
        left_reserved(&rig, buyer, &token).await;
        rig.charge(1, Money::from_cents(300), buyer).await;
        // The new leader's coordinator finishes the purchase.
        let new = Rig::coordinator_over(&rig.replica, &rig.config);
        new.recover().await;
        assert_eq!(rig.state(1).await, State::Done);
        let counted = (rig.units_counted(buyer).await, rig.units_counted(seller).await);
        assert_eq!(counted, (2, 2));

        // The old one still believes it `Reserved`. An abort (as if payments had said
        // no) is refused, so nothing is released and the buyer is told to ask again...
        let old = &rig.coordinator;
        let declined = ApiError::new(ErrorCode::PaymentDeclined, "declined");
        let told = old.abort(1, State::Reserved, declined, true).await;
        assert_eq!(told.code, ErrorCode::PurchasePending);
        assert_eq!(rig.state(1).await, State::Done);
        assert_eq!(rig.units_left(pen).await, 3, "sold units stay sold");
        // ...and a second commit answers the same purchase and counts nothing again.
        let purchase = old.commit(1, State::Reserved).await.expect("already committed");
        assert_eq!(purchase.id, 1);
        old.confirm(1).await;
        assert_eq!(rig.state(1).await, State::Done);
        assert_eq!(rig.history_rows().await, 1);
        assert_eq!((rig.units_counted(buyer).await, rig.units_counted(seller).await), counted);
        // The retry with the key sees the purchase.
        assert_eq!(rig.purchase(&token, "k1", card()).await.map(|p| p.id), Ok(1));
    }

    /// The cart showed 3.00; the seller then raised the price a million-fold. A purchase
    /// at the agreed 3.00 buys nothing, charges nothing, holds no units and says the new
    /// total; at the new total, it buys.
    #[tokio::test]
    async fn a_purchase_at_a_total_the_prices_no_longer_give_buys_and_charges_nothing() {
        let (rig, seller, buyer, token, pen) = buyer_with_two_pens().await;
        rig.change_price(seller, pen, 100_000_000).await;
        let agreed = Money::from_cents(300);
        let refused = rig.purchase_at(&token, "k1", card(), agreed).await.expect_err("refused");
        assert_eq!(refused.code, ErrorCode::PriceChanged, "{refused}");
        assert!(refused.message.contains("2000000.00"), "the new total: {refused}");
        assert!(refused.message.contains("3.00"), "the agreed one: {refused}");
        assert_eq!(rig.state(1).await, State::Aborted);
        assert_eq!(rig.units_left(pen).await, 5, "the units went back");
        assert_eq!(rig.history_rows().await, 0);
        assert_eq!(rig.units_counted(buyer).await, 0);
        let lookup = payments::Request::Lookup { key: payment_key(1) };
        let answer = rig.payments_channel.call(&lookup, Duration::from_secs(5)).await;
        assert_eq!(answer.ok(), Some(payments::Response::NoCharge), "payments never asked");
        assert_eq!(rig.cart(&token).await, vec![CartLine { item: pen, quantity: 2 }]);
        // The key's answer stays the refusal.
        let again = rig.purchase_at(&token, "k1", card(), agreed).await;
        assert_eq!(again.map_err(|e| e.code), Err(ErrorCode::PriceChanged));

        // At the total the prices give now, it is bought, at that total.
        let now = Money::from_cents(200_000_000);
        let bought = rig.purchase_at(&token, "k2", card(), now).await.expect("bought");
        assert_eq!(bought.total, now);
        assert_eq!(rig.units_left(pen).await, 3);
    }

    /// A retry that takes over a purchase its leader left reserved is held to the total
    /// it agreed to, as the first request was to its own.
    #[tokio::test]
    async fn a_retry_taking_over_is_held_to_the_total_it_agreed_to() {
        let (rig, _, buyer, token, pen) = buyer_with_two_pens().await;
        left_reserved(&rig, buyer, &token).await;
        let new = patient_coordinator(&rig);
        let session = crate::sessions::parse_token(&token).expect("token");
        let agreed = Some(Money::from_cents(299));
        let refused = new.purchase(session, buyer, "k1".into(), card(), agreed).await;
        assert_eq!(refused.map_err(|e| e.code), Err(ErrorCode::PriceChanged));
        assert_eq!(rig.state(1).await, State::Aborted);
        assert_eq!(rig.units_left(pen).await, 5);
        assert_eq!(rig.history_rows().await, 0);
    }

    #[tokio::test]
    async fn a_purchase_key_is_1_to_64_bytes() {
        let (rig, _, _, token, pen) = buyer_with_two_pens().await;
        for key in [String::new(), "k".repeat(65)] {
            let refused = rig.purchase(&token, &key, card()).await.expect_err("bad key");
            assert_eq!(refused.code, ErrorCode::InvalidArgument, "{key:?}");
            assert!(refused.message.contains("purchase key"), "{refused}");
        }
        assert_eq!(rig.units_left(pen).await, 5, "nothing reserved");
        let bought = rig.purchase(&token, &"k".repeat(64), card()).await.expect("64 bytes");
        assert_eq!(bought.id, 1, "the refused keys began no purchase");
    }

    /// Two purchases of one cart at once: the second waits for the first to end (woken
    /// when it does; were it not, it would answer `purchase_pending` at its deadline),
    /// then finds the cart bought, the bought lines gone, so nothing is bought twice.
    #[tokio::test]
    async fn a_second_purchase_of_a_cart_waits_for_the_first_and_finds_it_bought() {
        let (rig, _, _, token, pen) = buyer_with_two_pens().await;
        // Both begin in one batch of the store: the first holds the cart, the second waits.
        let (first, second) =
            tokio::join!(rig.purchase(&token, "k1", card()), rig.purchase(&token, "k2", card()));
        assert_eq!(first.map(|p| p.id), Ok(1));
        let second = second.expect_err("nothing left to buy");
        assert_eq!(second.code, ErrorCode::InvalidArgument, "{second}");
        assert_eq!(rig.units_left(pen).await, 3);
        assert_eq!(rig.history_rows().await, 1);
    }

    /// Crashed after the reservation, before the charge reached payments: recovery asks
    /// payments, whose `Resolve` cancels the key, and aborts, putting the units back.
    #[tokio::test]
    async fn recovery_aborts_a_reserved_purchase_payments_never_charged() {
        let (rig, _, buyer, token, pen) = buyer_with_two_pens().await;
        left_reserved(&rig, buyer, &token).await;
        rig.coordinator.recover().await;
        assert_eq!(rig.state(1).await, State::Aborted);
        assert_eq!(rig.units_left(pen).await, 5);
        assert_eq!(rig.history_rows().await, 0);
        assert_eq!(rig.units_counted(buyer).await, 0);
        assert_eq!(rig.cart(&token).await, vec![CartLine { item: pen, quantity: 2 }]);
    }

    /// An approved charge under the purchase's key for another amount is not this
    /// purchase's (someone else's charge, or a bug): the purchase is not bought on it.
    #[tokio::test]
    async fn a_charge_for_another_amount_under_the_key_does_not_buy_the_purchase() {
        let (rig, seller, buyer, token, pen) = buyer_with_two_pens().await;
        left_reserved(&rig, buyer, &token).await;
        rig.charge(1, Money::from_cents(299), buyer).await;
        rig.coordinator.recover().await;
        assert_eq!(rig.state(1).await, State::Aborted);
        assert_eq!(rig.history_rows().await, 0);
        assert_eq!((rig.units_counted(buyer).await, rig.units_counted(seller).await), (0, 0));
        assert_eq!(rig.units_left(pen).await, 5);
    }

    /// Writes `n` unfinished purchases (ids `from` on) straight into the log, as a long
    /// outage of payments would leave them.
    fn unfinished_purchases(rig: &Rig, from: i64, n: i64) {
        let raw = rusqlite::Connection::open(rig.dir.path().join("customer.db")).expect("open");
        raw.execute(
            "WITH RECURSIVE ids(id) AS (SELECT ?1 UNION ALL SELECT id + 1 FROM ids \
             WHERE id < ?1 + ?2 - 1) \
             INSERT INTO purchase_tx (id, buyer, key, session, state, cart, created_ms) \
             SELECT id, 0, 'k' || id, x'00', ?3, x'00', 0 FROM ids",
            rusqlite::params![from, n, State::Started as i64],
        )
        .expect("insert");
    }

    /// The coordinator reports its unfinished purchases so that the product database
    /// releases reservations none of them claims; with more unfinished purchases than fit
    /// in one report it sends none (a partial list would free the units of the others).
    #[tokio::test]
    async fn reporting_held_purchases_releases_unclaimed_units_and_never_a_partial_list() {
        let (rig, _, buyer, token, pen) = buyer_with_two_pens().await;
        // Purchase 1 aborted without its release reaching the product database.
        let session = crate::sessions::parse_token(&token).expect("token");
        let begin = Command::BeginPurchase { session, buyer, key: "k1".into() };
        let Ok(Output::Begun(Begun::New(1, cart))) = rig.replica.propose(begin).await else {
            panic!("not begun")
        };
        let reserve = product::Request::Reserve { purchase: 1, lines: cart };
        rig.as_coordinator.call(&reserve, Duration::from_secs(5)).await.expect("reserved");
        let error = Some(ApiError::new(ErrorCode::Aborted, "cancelled"));
        let aborted = Command::PurchaseAborted { id: 1, from: State::Started, error };
        rig.replica.propose(aborted).await.expect("aborted");
        assert_eq!(rig.units_left(pen).await, 3);

        // One more unfinished purchase than a report holds: no report at all.
        let max = MAX_HELD_REPORT as i64;
        unfinished_purchases(&rig, 2, max + 1);
        rig.coordinator.report_held().await;
        assert_eq!(rig.units_left(pen).await, 3, "nothing released on a partial list");

        // Exactly as many as a report holds: reported, and purchase 1's units come back.
        let raw = rusqlite::Connection::open(rig.dir.path().join("customer.db")).expect("open");
        raw.execute(
            "UPDATE purchase_tx SET state = ?2 WHERE id = ?1",
            rusqlite::params![max + 2, State::Aborted as i64],
        )
        .expect("finish one");
        rig.coordinator.report_held().await;
        assert_eq!(rig.units_left(pen).await, 5);
    }
}
