//! The simulated users: one seller or buyer each, with its own client (so its own TCP
//! connection and its own session), its own seeded random stream, and just enough memory of
//! its own state (items, cart) to choose calls that normally succeed.
//!
//! [`User::step`] makes exactly one call and records it; the driver decides how many steps
//! a run has and when each starts.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use agora_client::{BuyerClient, ClientError, SellerClient};
use agora_domain::{Card, CartLine, Condition, ItemId, Money, NewItem, Page, UserId};
use rand::rngs::SmallRng;
use rand::{Rng, RngExt};

use crate::mix::{Api, Mix, Role};

/// The password of every account the bench creates.
pub const PASSWORD: &str = "bench-password";

/// Keywords of the items the bench lists through the API (at most 8 characters each).
pub const VOCABULARY: &[&str] = &[
    "pen", "pencil", "paper", "book", "lamp", "chair", "table", "desk", "phone", "case", "cable",
    "charger", "shirt", "shoe", "sock", "hat", "watch", "ring", "bag", "wallet", "cup", "mug",
    "plate", "bowl", "bike", "helmet", "tent", "stove", "camera", "lens", "tripod", "guitar",
    "drum", "piano", "sofa", "rug", "clock", "toy", "puzzle", "game", "card", "ball", "kite",
    "red", "blue", "green", "black", "white", "small", "large", "vintage", "classic", "wooden",
    "steel", "cotton", "leather", "retro", "modern", "kids", "outdoor", "travel", "garden",
    "kitchen", "office",
];

/// Slots a [`Recorder`] keeps: one per [`Api`], then the two pings of the floor.
pub const SLOTS: usize = Api::ALL.len() + 2;
/// Slot of the deep ping: client → frontend → both databases and back.
pub const FLOOR_DEEP: usize = Api::ALL.len();
/// Slot of the shallow ping: client → frontend and back.
pub const FLOOR_SHALLOW: usize = Api::ALL.len() + 1;

/// What the buyers know about the catalogue: learnt during set-up, shared read-only.
#[derive(Debug, Default)]
pub struct Catalogue {
    /// Items to view, add to carts and vote on (a sample of the catalogue).
    pub items: Vec<ItemId>,
    /// Categories that have items, each with the keywords seen on them: what to search.
    pub categories: Vec<(u32, Vec<String>)>,
    /// Sellers whose rating buyers ask for.
    pub sellers: Vec<UserId>,
}

/// One call's outcome.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Which slot (an [`Api`] index or a floor slot).
    pub slot: u8,
    /// Whether the call succeeded.
    pub ok: bool,
    /// Response time in nanoseconds (failed calls included).
    pub nanos: u64,
    /// When the answer (or the failure) came: for the timeline of a run.
    pub end: Instant,
}

/// A user's record of one phase: every call's response time, and why the failed ones
/// failed. Raw samples (32 bytes a call) rather than a histogram per user and call: with
/// two hundred users a histogram each would cost hundreds of MiB; the driver records the
/// samples into one HDR histogram per call after the phase, losing nothing.
#[derive(Debug)]
pub struct Recorder {
    /// Every call, in order.
    pub samples: Vec<Sample>,
    /// `(slot, reason)` of every failed call.
    pub errors: Vec<(u8, String)>,
    progress: Arc<AtomicU64>,
    trigger: Option<Trigger>,
}

/// Rung once, by the call that brings the phase's count of finished calls to `after`.
#[derive(Debug, Clone)]
pub struct Trigger {
    /// The count that rings it.
    pub after: u64,
    /// Where it rings.
    pub bell: Arc<tokio::sync::Notify>,
}

impl Recorder {
    /// A recorder for about `calls` calls that counts them in `progress` as they finish,
    /// ringing `trigger` when the count reaches it.
    pub fn new(calls: u64, progress: Arc<AtomicU64>, trigger: Option<Trigger>) -> Self {
        let capacity = usize::try_from(calls).unwrap_or(0).min(1 << 24);
        Recorder { samples: Vec::with_capacity(capacity), errors: Vec::new(), progress, trigger }
    }

    /// Calls recorded so far.
    pub fn calls(&self) -> u64 {
        self.samples.len() as u64
    }

    /// Records a call to `slot` that started at `start` and ended now.
    pub fn record<T>(&mut self, slot: usize, start: Instant, result: &Result<T, ClientError>) {
        let end = Instant::now();
        let nanos = u64::try_from(end.duration_since(start).as_nanos()).unwrap_or(u64::MAX);
        let slot = u8::try_from(slot).unwrap_or(u8::MAX);
        if let Err(e) = result {
            self.errors.push((slot, error_kind(e)));
        }
        self.samples.push(Sample { slot, ok: result.is_ok(), nanos, end });
        let done = self.progress.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(trigger) = &self.trigger
            && done == trigger.after
        {
            trigger.bell.notify_one();
        }
    }
}

/// A failure's stable code (`not_enough_units`, `unavailable`, ...), as the report counts it.
fn error_kind(e: &ClientError) -> String {
    match e {
        ClientError::Transport(_) => format!("transport: {e}"),
        ClientError::Unexpected { .. } => "unexpected_answer".into(),
        other => match other.code() {
            Some(code) => format!("{code:?}"),
            None => other.to_string(),
        },
    }
}

/// A simulated seller.
pub struct Seller {
    /// Its client: its own connection and session.
    pub client: SellerClient,
    /// Login name.
    pub username: String,
    /// Its items for sale.
    pub items: Vec<ItemId>,
    /// Categories to list new items in.
    pub categories: u32,
    /// Username prefix for the accounts it creates.
    pub prefix: String,
    /// Accounts created so far (for unique names).
    pub created: u64,
    /// Its random stream.
    pub rng: SmallRng,
}

/// A simulated buyer.
pub struct Buyer {
    /// Its client: its own connection and session.
    pub client: BuyerClient,
    /// Login name.
    pub username: String,
    /// What there is to buy.
    pub catalogue: Arc<Catalogue>,
    /// The active cart, as the last answer showed it.
    pub cart: Vec<CartLine>,
    /// The saved cart: what the next login starts with.
    pub saved: Vec<CartLine>,
    /// Username prefix for the accounts it creates.
    pub prefix: String,
    /// Accounts created so far (for unique names).
    pub created: u64,
    /// Its random stream.
    pub rng: SmallRng,
}

/// A simulated user of either role.
pub enum User {
    /// A seller.
    Seller(Box<Seller>),
    /// A buyer.
    Buyer(Box<Buyer>),
}

impl User {
    /// Makes one call drawn from `mix` (or the login a logged-out user needs) and records
    /// it as starting at `start`: now for a closed loop, the intended start for an open one.
    /// With `last`, the call does not end the session.
    pub async fn step(
        &mut self,
        mix: &Mix,
        last: bool,
        start: Option<Instant>,
        rec: &mut Recorder,
    ) {
        match self {
            User::Seller(s) => s.step(mix, last, start, rec).await,
            User::Buyer(b) => b.step(mix, last, start, rec).await,
        }
    }

    /// One ping, deep (through the frontend to both databases) or not, recorded in its
    /// floor slot.
    pub async fn ping(&mut self, deep: bool, rec: &mut Recorder) {
        let slot = if deep { FLOOR_DEEP } else { FLOOR_SHALLOW };
        let start = Instant::now();
        let result = match self {
            User::Seller(s) => s.client.ping(deep).await,
            User::Buyer(b) => b.client.ping(deep).await,
        };
        rec.record(slot, start, &result);
    }
}

/// The card every simulated buyer pays with: a number that passes the Luhn check, an
/// expiry far ahead.
fn card() -> Card {
    Card { holder: "Bench Buyer".into(), number: "4111111111111111".into(), expiry: "12/49".into() }
}

/// A new item with a name, category and one to three keywords drawn from `rng`.
pub fn random_item(rng: &mut impl Rng, number: u64, categories: u32) -> NewItem {
    let count = rng.random_range(1..=3);
    let mut keywords: Vec<String> = Vec::with_capacity(count);
    while keywords.len() < count {
        let word = VOCABULARY[rng.random_range(0..VOCABULARY.len())];
        if !keywords.iter().any(|k| k == word) {
            keywords.push(word.to_owned());
        }
    }
    NewItem {
        name: format!("{} no. {number}", keywords[0]),
        category: rng.random_range(0..categories.max(1)),
        keywords,
        condition: if rng.random_bool(0.7) { Condition::New } else { Condition::Used },
        price: Money::from_cents(rng.random_range(1..=100_000)),
        quantity: 1_000_000,
    }
}

impl Seller {
    async fn step(&mut self, mix: &Mix, last: bool, start: Option<Instant>, rec: &mut Recorder) {
        let c = &self.client;
        if c.session().is_none() {
            let t = start.unwrap_or_else(Instant::now);
            let result = c.login(&self.username, PASSWORD).await;
            rec.record(Api::SellerLogin.index(), t, &result);
            return;
        }
        let Some(mut api) = mix.draw(Role::Seller, &mut self.rng, last) else {
            return;
        };
        // Calls on one's own items need one: list an item instead (rare: every seller
        // lists items during set-up).
        if self.items.is_empty() && matches!(api, Api::SellerChangePrice | Api::SellerUpdateUnits) {
            api = Api::SellerRegisterItem;
        }
        let own = if self.items.is_empty() {
            None
        } else {
            Some(self.items[self.rng.random_range(0..self.items.len())])
        };
        let t = start.unwrap_or_else(Instant::now);
        let slot = api.index();
        match (api, own) {
            (Api::SellerDisplayItems, _) => {
                rec.record(slot, t, &c.list_items(Page::default()).await)
            }
            (Api::SellerRating, _) => rec.record(slot, t, &c.get_rating().await),
            (Api::SellerRegisterItem, _) => {
                let item = random_item(&mut self.rng, self.items.len() as u64, self.categories);
                let result = c.register_item(item).await;
                rec.record(slot, t, &result);
                if let Ok(id) = result {
                    self.items.push(id);
                }
            }
            (Api::SellerChangePrice, Some(item)) => {
                let price = Money::from_cents(self.rng.random_range(1..=100_000));
                rec.record(slot, t, &c.change_price(item, price).await);
            }
            // One unit at a time from a million: items never run out within a bench.
            (Api::SellerUpdateUnits, Some(item)) => {
                rec.record(slot, t, &c.remove_units(item, 1).await);
            }
            (Api::SellerRelogin, _) => rec.record(slot, t, &c.logout().await),
            (Api::SellerCreateAccount, _) => {
                self.created += 1;
                let username = format!("{}n{}", self.prefix, self.created);
                rec.record(slot, t, &c.create_account(&username, PASSWORD, "Bench seller").await);
            }
            // Buyer calls and Login are never drawn for a seller.
            _ => {}
        }
    }
}

impl Buyer {
    async fn step(&mut self, mix: &Mix, last: bool, start: Option<Instant>, rec: &mut Recorder) {
        let c = &self.client;
        if c.session().is_none() {
            let t = start.unwrap_or_else(Instant::now);
            let result = c.login(&self.username, PASSWORD).await;
            rec.record(Api::BuyerLogin.index(), t, &result);
            // A new session starts with a copy of the saved cart.
            if result.is_ok() {
                self.cart = self.saved.clone();
            }
            return;
        }
        let Some(mut api) = mix.draw(Role::Buyer, &mut self.rng, last) else {
            return;
        };
        // Removing and buying need something in the cart: add instead when it is empty.
        if matches!(api, Api::BuyerRemoveFromCart | Api::BuyerMakePurchase) && self.cart.is_empty()
        {
            api = Api::BuyerAddToCart;
        }
        let catalogue = Arc::clone(&self.catalogue);
        let item = catalogue.items[self.rng.random_range(0..catalogue.items.len())];
        let t = start.unwrap_or_else(Instant::now);
        let slot = api.index();
        match api {
            Api::BuyerSearch => {
                let (category, words) =
                    &catalogue.categories[self.rng.random_range(0..catalogue.categories.len())];
                let count = if self.rng.random_bool(0.7) { 1 } else { 2 };
                let keywords: Vec<String> = (0..count.min(words.len()))
                    .map(|_| words[self.rng.random_range(0..words.len())].clone())
                    .collect();
                rec.record(slot, t, &c.search(*category, keywords, Page::default()).await);
            }
            Api::BuyerGetItem => rec.record(slot, t, &c.get_item(item).await),
            Api::BuyerDisplayCart => {
                let result = c.display_cart().await;
                rec.record(slot, t, &result);
                if let Ok(lines) = result {
                    self.cart = lines;
                }
            }
            Api::BuyerSellerRating => {
                let seller = catalogue.sellers[self.rng.random_range(0..catalogue.sellers.len())];
                rec.record(slot, t, &c.get_seller_rating(seller).await);
            }
            Api::BuyerPurchases => rec.record(slot, t, &c.get_purchases(Page::default()).await),
            Api::BuyerAddToCart => {
                // A cart holds at most 100 different items: when full, add to a line in it.
                let item = if self.cart.len() >= 100 {
                    self.cart[self.rng.random_range(0..self.cart.len())].item
                } else {
                    item
                };
                let result = c.add_to_cart(item, 1).await;
                rec.record(slot, t, &result);
                if let Ok(lines) = result {
                    self.cart = lines;
                }
            }
            Api::BuyerRemoveFromCart => {
                let line = self.cart[self.rng.random_range(0..self.cart.len())];
                let result = c.remove_from_cart(line.item, 1).await;
                rec.record(slot, t, &result);
                if let Ok(lines) = result {
                    self.cart = lines;
                }
            }
            Api::BuyerFeedback => {
                let up = self.rng.random_bool(0.8);
                rec.record(slot, t, &c.provide_feedback(item, up).await);
            }
            Api::BuyerSaveCart => {
                let result = c.save_cart().await;
                rec.record(slot, t, &result);
                if result.is_ok() {
                    self.saved = self.cart.clone();
                }
            }
            Api::BuyerClearCart => {
                let result = c.clear_cart().await;
                rec.record(slot, t, &result);
                if result.is_ok() {
                    self.cart.clear();
                }
            }
            Api::BuyerMakePurchase => {
                let bought = std::mem::take(&mut self.cart);
                let result = c.make_purchase(card()).await;
                rec.record(slot, t, &result);
                match result {
                    // What was bought leaves the active cart and the saved one.
                    Ok(_) => {
                        for line in &bought {
                            if let Some(saved) = self.saved.iter_mut().find(|s| s.item == line.item)
                            {
                                saved.quantity = saved.quantity.saturating_sub(line.quantity);
                            }
                        }
                        self.saved.retain(|s| s.quantity > 0);
                    }
                    Err(_) => self.cart = bought,
                }
            }
            Api::BuyerRelogin => {
                let result = c.logout().await;
                rec.record(slot, t, &result);
                // The unsaved cart ends with the session.
                self.cart.clear();
            }
            Api::BuyerCreateAccount => {
                self.created += 1;
                let username = format!("{}n{}", self.prefix, self.created);
                rec.record(slot, t, &c.create_account(&username, PASSWORD, "").await);
            }
            // Seller calls and Login are never drawn for a buyer.
            _ => {}
        }
    }
}
