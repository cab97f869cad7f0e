//! The frontends' side of the databases: multiplexed connections to each (one by
//! default), which reconnect by themselves, fail fast while a database is down, and put a
//! deadline on every call (see [`agora_proto::Pool`]). Each method is one database call
//! with its answer unpacked.

use std::sync::Arc;
use std::time::Duration;

use agora_domain::{Categories, CategoryCount, Feedback, Item, ItemId, Role, SellerRating, UserId};
use agora_proto::messages::{OpId, customer, new_op_id, product, unexpected};
use agora_proto::{ApiError, CustomerDb, Pool, PoolConfig, ProductDb, Trust};

use crate::sessions::SessionCache;

/// How long a frontend trusts a session it has checked, unless configured otherwise.
pub const DEFAULT_SESSION_RECHECK: Duration = Duration::from_secs(1);

/// Where the databases are and how to talk to them.
#[derive(Debug, Clone)]
pub struct Config {
    /// Customer database addresses (host:port), tried in turn.
    pub customer_db: Vec<String>,
    /// Product database addresses (host:port), tried in turn.
    pub product_db: Vec<String>,
    /// Connections to hold to each database.
    pub connections: usize,
    /// Deadline on each database call.
    pub call_timeout: Duration,
    /// How long a session the customer database accepted is trusted without asking again
    /// (see [`SessionCache`]); zero asks on every call.
    pub session_recheck: Duration,
    /// This frontend's credentials, which it proves itself with to the databases.
    pub trust: Trust,
    /// Whether the per-address limit on logins and sign-ups also applies to loopback
    /// addresses (see [`crate::throttle`]).
    pub throttle_loopback: bool,
    /// The names of categories shown beside their numbers (every frontend of a
    /// marketplace is given the same).
    pub categories: Arc<Categories>,
}

impl Config {
    /// Defaults for databases at these addresses, reached with the credentials `trust`.
    pub fn new(customer_db: Vec<String>, product_db: Vec<String>, trust: Trust) -> Self {
        Config {
            trust,
            throttle_loopback: false,
            customer_db,
            product_db,
            connections: 1,
            call_timeout: Duration::from_secs(5),
            session_recheck: DEFAULT_SESSION_RECHECK,
            categories: Arc::new(Categories::default()),
        }
    }
}

/// Connections to both databases.
#[derive(Debug)]
pub struct Upstream {
    /// The customer database.
    pub customers: Pool<CustomerDb>,
    /// The customer database again, on connections of their own for logins and sign-ups:
    /// their password hashing is slow, and a flood of them must not hold up the session
    /// checks and reads queued behind them on a shared connection.
    accounts: Pool<CustomerDb>,
    /// The product database.
    pub products: Pool<ProductDb>,
    /// Sessions checked lately.
    sessions: SessionCache,
    /// Logins and sign-ups per client address.
    addresses: crate::throttle::AddressThrottle,
    /// The key of the storefront's login forms, from this frontend's credentials.
    form_key: ring::hmac::Key,
    /// The categories' names.
    categories: Arc<Categories>,
}

impl Upstream {
    /// Pools over the configured addresses; they connect on first use.
    pub fn new(config: &Config) -> Self {
        let pool = |addrs: &[String]| PoolConfig {
            connections: config.connections,
            call_timeout: config.call_timeout,
            connector: config.trust.connector(),
            ..PoolConfig::new(addrs.to_vec())
        };
        Upstream {
            customers: Pool::new(pool(&config.customer_db)),
            accounts: Pool::new(pool(&config.customer_db)),
            products: Pool::new(pool(&config.product_db)),
            sessions: SessionCache::new(config.session_recheck),
            addresses: crate::throttle::AddressThrottle::new(config.throttle_loopback),
            form_key: crate::web::form_key(&config.trust),
            categories: config.categories.clone(),
        }
    }

    /// The key the storefront's login and sign-up forms are signed with.
    pub(crate) fn form_key(&self) -> &ring::hmac::Key {
        &self.form_key
    }

    /// A request to the customer database.
    pub async fn customer(
        &self,
        request: customer::Request,
    ) -> Result<customer::Response, ApiError> {
        Ok(self.customers.call(&request).await?)
    }

    /// A request to the product database.
    pub async fn product(&self, request: product::Request) -> Result<product::Response, ApiError> {
        Ok(self.products.call(&request).await?)
    }

    /// Round trips to both databases.
    pub async fn ping_both(&self) -> Result<(), ApiError> {
        let (c, p) = tokio::join!(
            self.customer(customer::Request::Ping),
            self.product(product::Request::Ping)
        );
        c?;
        p?;
        Ok(())
    }

    /// CreateAccount of `role`; the new account's id.
    pub async fn create_account(
        &self,
        op: OpId,
        role: Role,
        username: String,
        password: String,
        name: String,
    ) -> Result<UserId, ApiError> {
        self.addresses.admit(agora_proto::server::peer().map(|p| p.ip()))?;
        let request = customer::Request::CreateAccount { op, role, username, password, name };
        match self.accounts.call(&request).await? {
            customer::Response::Account { id } => Ok(id),
            other => Err(unexpected(&other)),
        }
    }

    /// Login of `role`: the new session and the account's id.
    pub async fn login(
        &self,
        role: Role,
        username: String,
        password: String,
    ) -> Result<(String, UserId), ApiError> {
        self.addresses.admit(agora_proto::server::peer().map(|p| p.ip()))?;
        let request = customer::Request::Login { role, username, password };
        match self.accounts.call(&request).await? {
            customer::Response::LoggedIn { session, account } => Ok((session, account)),
            other => Err(unexpected(&other)),
        }
    }

    /// Logout of a session of `role`, under the caller's `op` (a fresh one if it sent
    /// none), kept for every attempt: a resend after the first attempt ended the session,
    /// by this frontend to a new leader or by the client after an `unavailable`, answers
    /// `Done`, not `not_logged_in`.
    pub async fn logout(&self, op: OpId, session: String, role: Role) -> Result<(), ApiError> {
        let session = canonical(&session)?;
        let op = if op == [0; 16] { new_op_id() } else { op };
        // Untrusted here first, so this frontend stops trusting it even if the call fails,
        // and again after: until the database has answered it may still accept the session.
        self.sessions.logged_out(&session);
        let request = customer::Request::Logout { op, session: session.clone(), role };
        let answer = self.customer(request).await;
        self.sessions.logged_out(&session);
        answer?;
        Ok(())
    }

    /// The account behind a live session of `role`: from the sessions checked lately, or
    /// else from the customer database.
    pub async fn authenticate(&self, session: &str, role: Role) -> Result<UserId, ApiError> {
        let session = canonical(session)?;
        if let Some(account) = self.sessions.get(&session, role) {
            return Ok(account);
        }
        let request = customer::Request::Authenticate { session: session.clone(), role };
        let began = std::time::Instant::now();
        match self.customer(request).await {
            Ok(customer::Response::Authenticated { account }) => {
                self.sessions.checked(&session, role, account, began);
                Ok(account)
            }
            Ok(other) => Err(unexpected(&other)),
            Err(e) => {
                self.sessions.forget(&session);
                Err(e)
            }
        }
    }

    /// The categories' names, for the pages and the HTTP API to show beside numbers.
    pub fn category_names(&self) -> &Categories {
        &self.categories
    }

    /// The named categories, for a live session of `role`; with `counts`, each with how
    /// many items it has for sale (one call to the product database for them all).
    pub async fn categories(
        &self,
        session: &str,
        role: Role,
        counts: bool,
    ) -> Result<Vec<CategoryCount>, ApiError> {
        self.authenticate(session, role).await?;
        let ids: Vec<u32> = self.categories.iter().map(|c| c.id).collect();
        let counts: Vec<Option<u64>> = if counts && !ids.is_empty() {
            match self.product(product::Request::CountItems { categories: ids.clone() }).await? {
                product::Response::Counts(counts) if counts.len() == ids.len() => {
                    counts.into_iter().map(Some).collect()
                }
                other => return Err(unexpected(&other)),
            }
        } else {
            vec![None; ids.len()]
        };
        Ok(self
            .categories
            .iter()
            .zip(counts)
            .map(|(c, items)| CategoryCount { id: c.id, name: c.name.clone(), items })
            .collect())
    }

    /// One item.
    pub async fn item(&self, item: ItemId) -> Result<Item, ApiError> {
        match self.product(product::Request::GetItem { item }).await? {
            product::Response::Item(item) => Ok(item),
            other => Err(unexpected(&other)),
        }
    }

    /// A seller's record, joined from both databases.
    pub async fn seller_rating(&self, seller_id: UserId) -> Result<SellerRating, ApiError> {
        let (account, feedback) = tokio::join!(
            self.customer(customer::Request::GetSeller { seller_id }),
            self.product(product::Request::SellerFeedback { seller_id }),
        );
        let (name, items_sold) = match account? {
            customer::Response::Seller { name, items_sold, .. } => (name, items_sold),
            other => return Err(unexpected(&other)),
        };
        let feedback: Feedback = match feedback? {
            product::Response::Feedback(f) => f,
            other => return Err(unexpected(&other)),
        };
        Ok(SellerRating { seller_id, name, feedback, items_sold })
    }
}

/// The token in its canonical form, or `NotLoggedIn` before it touches any table if it
/// cannot be a token at all (a made-up, oversized or garbage string).
fn canonical(session: &str) -> Result<String, ApiError> {
    agora_domain::canonical_token(session).ok_or_else(|| {
        ApiError::new(
            agora_proto::ErrorCode::NotLoggedIn,
            "not logged in: that is not a session token (64 hex digits); log in first",
        )
    })
}
