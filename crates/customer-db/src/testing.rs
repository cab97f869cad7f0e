//! For the unit tests of the handler and the coordinator: a customer database over a real
//! store in a temporary directory, its handler called directly, with a real product
//! database and payments service on `127.0.0.1:0` (started as the integration tests
//! start them, crates/testkit).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use agora_domain::{Card, Condition, ItemId, Money, NewItem, Role, UserId};
use agora_proto::messages::customer::{Request, Response};
use agora_proto::messages::{payments, product};
use agora_proto::{
    ApiError, Channel, Component, DEFAULT_MAX_FRAME, Handler, Payments, Pool, PoolConfig, ProductDb,
};
use agora_replication::Replica;
use agora_store::{Store, StoreConfig};
use agora_testkit::{Options, Running};

use crate::command::CustomerMachine;
use crate::purchase::Coordinator;
use crate::storage::purchase_log::{self, State};
use crate::{Clock, Config, CustomerDb, SCHEMA};

const WAIT: Duration = Duration::from_secs(5);

/// A good card: payments (set to approve every good card) approves it.
pub fn card() -> Card {
    Card {
        holder: "Bea Buyer".into(),
        number: "4111 1111 1111 1111".into(),
        expiry: "12/99".into(),
    }
}

/// A card payments declines: its check digit is wrong.
pub fn bad_card() -> Card {
    Card { number: "4111 1111 1111 1112".into(), ..card() }
}

fn pool<S: agora_proto::Service>(addrs: &[String], config: &Config) -> Pool<S> {
    Pool::new(PoolConfig {
        call_timeout: Duration::from_secs(2),
        connector: config.trust.connector(),
        ..PoolConfig::new(addrs.to_vec())
    })
}

async fn connect<S: agora_proto::Service>(
    addr: std::net::SocketAddr,
    trust: &agora_proto::Trust,
) -> Channel<S> {
    Channel::connect_with(&addr.to_string(), WAIT, DEFAULT_MAX_FRAME, &trust.connector())
        .await
        .unwrap()
}

/// A customer database (handler, coordinator, replica) and the two parties it buys from.
pub struct Rig {
    pub dir: tempfile::TempDir,
    pub config: Config,
    pub replica: Replica<CustomerMachine>,
    pub coordinator: Arc<Coordinator>,
    pub db: Arc<CustomerDb>,
    /// The product database, spoken to as the seller server (to list items).
    as_seller: Channel<ProductDb>,
    /// The product database, spoken to as the customer database (to reserve by hand).
    pub as_coordinator: Channel<ProductDb>,
    /// Payments, spoken to as the customer database (to charge by hand).
    pub payments_channel: Channel<Payments>,
    _product_db: Running,
    _payments: Running,
    op: std::sync::atomic::AtomicU8,
}

impl Rig {
    pub async fn start() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let product_db = agora_testkit::start_product_db(dir.path(), "127.0.0.1:0").await;
        let payments =
            agora_testkit::start_payments(dir.path(), &Options::default(), "127.0.0.1:0").await;
        let trust = agora_testkit::trust(dir.path(), Component::CustomerDb);
        let config = Config {
            clock: Clock::manual(1_800_000_000_000),
            product_db: vec![product_db.addr.to_string()],
            payments: vec![payments.addr.to_string()],
            // Recovery cancels a `Started` purchase at once unless a test says otherwise.
            retry_grace: Duration::ZERO,
            ..Config::new(dir.path(), trust.clone())
        };
        let store = Store::open(&StoreConfig::new(dir.path().join("customer.db")), SCHEMA).unwrap();
        let replica = Replica::single(store, CustomerMachine, config.clock.clone());
        let coordinator = Arc::new(Rig::coordinator_over(&replica, &config));
        let db = Arc::new(
            CustomerDb::load(replica.clone(), &config, coordinator.clone()).await.unwrap(),
        );
        let seller_trust = agora_testkit::trust(dir.path(), Component::SellerServer);
        Rig {
            as_seller: connect(product_db.addr, &seller_trust).await,
            as_coordinator: connect(product_db.addr, &trust).await,
            payments_channel: connect(payments.addr, &trust).await,
            dir,
            config,
            replica,
            coordinator,
            db,
            _product_db: product_db,
            _payments: payments,
            op: std::sync::atomic::AtomicU8::new(1),
        }
    }

    /// Another coordinator over the same database: what a new leader (or an old one
    /// still running) is to this one.
    pub fn coordinator_over(replica: &Replica<CustomerMachine>, config: &Config) -> Coordinator {
        Coordinator::new(
            replica.clone(),
            pool(&config.product_db, config),
            pool(&config.payments, config),
            config.retry_grace,
        )
    }

    /// The handler again over the same rows, as after a restart.
    pub async fn restart_handler(&mut self) {
        let db = CustomerDb::load(self.replica.clone(), &self.config, self.coordinator.clone());
        self.db = Arc::new(db.await.unwrap());
    }

    /// A fresh op id.
    pub fn op(&self) -> [u8; 16] {
        [self.op.fetch_add(1, std::sync::atomic::Ordering::SeqCst); 16]
    }

    pub async fn call(&self, request: Request) -> Result<Response, ApiError> {
        self.db.handle(request).await
    }

    /// A new account of `role` named `username` (password "password1"), logged in: its
    /// id and session token.
    pub async fn account(&self, role: Role, username: &str) -> (UserId, String) {
        let password = "password1".to_owned();
        let created = self
            .call(Request::CreateAccount {
                op: self.op(),
                role,
                username: username.into(),
                password: password.clone(),
                name: String::new(),
            })
            .await
            .unwrap();
        let Response::Account { id } = created else { panic!("{created:?}") };
        (id, self.login(role, username).await)
    }

    /// A new session of an existing account.
    pub async fn login(&self, role: Role, username: &str) -> String {
        let request =
            Request::Login { role, username: username.into(), password: "password1".into() };
        match self.call(request).await.unwrap() {
            Response::LoggedIn { session, .. } => session,
            other => panic!("{other:?}"),
        }
    }

    /// Lists `units` of an item of `seller` at `cents` each.
    pub async fn list(&self, seller: UserId, cents: i64, units: u32) -> ItemId {
        let item = NewItem {
            name: "Pen".into(),
            category: 3,
            keywords: vec!["pen".into()],
            condition: Condition::New,
            price: Money::from_cents(cents),
            quantity: units,
        };
        let request = product::Request::RegisterItem { op: self.op(), seller_id: seller, item };
        match self.as_seller.call(&request, WAIT).await.unwrap() {
            product::Response::ItemId(id) => id,
            other => panic!("{other:?}"),
        }
    }

    /// Units of `item` still for sale.
    pub async fn units_left(&self, item: ItemId) -> u32 {
        match self.as_seller.call(&product::Request::GetItem { item }, WAIT).await.unwrap() {
            product::Response::Item(item) => item.quantity,
            other => panic!("{other:?}"),
        }
    }

    /// Adds `quantity` of `item` (of which `available` are for sale) to the cart.
    pub async fn add(&self, session: &str, item: ItemId, quantity: u32, available: u32) {
        let request = Request::AddToCart {
            op: self.op(),
            session: session.into(),
            item,
            quantity,
            available,
        };
        self.call(request).await.unwrap();
    }

    pub async fn cart(&self, session: &str) -> Vec<agora_domain::CartLine> {
        match self.call(Request::GetCart { session: session.into() }).await.unwrap() {
            Response::Cart(lines) => lines,
            other => panic!("{other:?}"),
        }
    }

    pub async fn purchase(
        &self,
        session: &str,
        key: &str,
        card: Card,
    ) -> Result<agora_domain::Purchase, ApiError> {
        let request = Request::Purchase { session: session.into(), key: key.into(), card };
        match self.call(request).await? {
            Response::Purchased(purchase) => Ok(purchase),
            other => panic!("{other:?}"),
        }
    }

    /// A purchase at the `total` the buyer agreed to.
    pub async fn purchase_at(
        &self,
        session: &str,
        key: &str,
        card: Card,
        total: Money,
    ) -> Result<agora_domain::Purchase, ApiError> {
        let request = Request::PurchaseAt { session: session.into(), key: key.into(), card, total };
        match self.call(request).await? {
            Response::Purchased(purchase) => Ok(purchase),
            other => panic!("{other:?}"),
        }
    }

    /// Sets the price of `item` of `seller` to `cents`, as the seller would.
    pub async fn change_price(&self, seller: UserId, item: ItemId, cents: i64) {
        let price = Money::from_cents(cents);
        let request = product::Request::ChangePrice { seller_id: seller, item, price };
        self.as_seller.call(&request, WAIT).await.unwrap();
    }

    /// Where purchase `id` stands in the log.
    pub async fn state(&self, id: u64) -> State {
        self.replica.read(move |c| purchase_log::load(c, id)).await.unwrap().state
    }

    /// An account's units-bought or units-sold counter.
    pub async fn units_counted(&self, account: UserId) -> i64 {
        self.replica
            .read(move |c| {
                c.query_row(
                    "SELECT items_count FROM accounts WHERE id = ?1",
                    [account as i64],
                    |r| r.get(0),
                )
                .map_err(agora_replication::db_error)
            })
            .await
            .unwrap()
    }

    /// Rows in the purchase history.
    pub async fn history_rows(&self) -> i64 {
        self.replica
            .read(|c| {
                c.query_row("SELECT count(*) FROM purchases", [], |r| r.get(0))
                    .map_err(agora_replication::db_error)
            })
            .await
            .unwrap()
    }

    /// Charges purchase `id`'s key by hand, as a coordinator that crashed after sending
    /// the charge would have.
    pub async fn charge(&self, id: u64, amount: Money, payer: UserId) {
        let charge = payments::Request::Charge {
            key: format!("{}{id}", crate::PAYMENT_KEY_PREFIX),
            card: card(),
            amount,
            payer,
        };
        match self.payments_channel.call(&charge, WAIT).await.unwrap() {
            payments::Response::Charge(payments::Outcome::Approved { .. }) => {}
            other => panic!("{other:?}"),
        }
    }
}
