//! The customer database's request handling: one method per request, each a few lines of
//! checks and decisions, then one proposed [`Command`] or one read. The rules a write
//! must still meet when its turn comes are checked where it is applied (`command.rs`).
//!
//! What lives in this process's memory, besides what the rows say:
//!
//! - the session table (`sessions.rs`): filled from the rows at start and when this
//!   replica becomes the leader, then from what each applied `StartSession` answered;
//!   entries leave after their `EndSession` or `FlushSessions` is applied. Activity is
//!   recorded here and reaches the rows every `activity_flush`, so it is leader-local
//!   for up to that long: a new leader may see a session up to that much older than it
//!   is (a session may then time out that much early, as after a crash), never younger.
//! - the login throttle (`throttle.rs`): leader-local on purpose, never replicated. A
//!   failover forgets the failures it counted, which costs an attacker a failover of
//!   ours (as a restart does today) and never locks the owner out.

use std::sync::Arc;

use agora_domain::{ItemId, Role, check_name, check_password, check_quantity, check_username};
use agora_proto::messages::OpId;
use agora_proto::messages::customer::{Request, Response};
use agora_proto::{ApiError, ErrorCode, Handler};
use agora_replication::Replica;

use crate::command::{Command, CustomerMachine, Output};
use crate::config::Config;
use crate::password;
use crate::purchase::Coordinator;
use crate::sessions::{EXPIRED_GRACE_MS, Key, Session, Sessions, new_token, parse_token};
use crate::storage::{accounts, carts, history, sessions as session_rows};
use crate::throttle::LoginThrottle;

/// The customer database's request handler: its replica, the live sessions, the
/// purchase coordinator and the login throttle.
#[derive(Debug)]
pub struct CustomerDb {
    replica: Replica<CustomerMachine>,
    sessions: Sessions,
    coordinator: Arc<Coordinator>,
    /// Recent wrong passwords per account; leader-local (see the module's documentation).
    throttle: LoginThrottle,
    /// The most sessions an account may have alive at once.
    max_sessions: usize,
    /// Held (shared) by a login, logout or flush from proposing its command until the
    /// session table shows what it applied; held (exclusive) while the table is refilled
    /// from the rows, so that a refill can neither miss nor undo one of them.
    session_writes: tokio::sync::RwLock<()>,
    /// Whether the session table holds the rows as of this replica's current leadership:
    /// false from losing the lead until the next refill after taking it again.
    sessions_current: std::sync::atomic::AtomicBool,
}

impl Handler<agora_proto::CustomerDb> for CustomerDb {
    async fn handle(&self, request: Request) -> Result<Response, ApiError> {
        // Sessions are checked from memory, a copy of the applied rows kept by the leader:
        // a follower's copy may be stale, so a follower answers only pings and sends
        // everyone else to the leader, and a leader answers only once a majority has
        // confirmed it still leads (within its lease, at once).
        if !matches!(request, Request::Ping) {
            self.replica.ensure_leader().await?;
            if !self.sessions_current.load(std::sync::atomic::Ordering::Acquire) {
                return Err(ApiError::unavailable(
                    "this replica is taking over as leader; try again in a moment",
                ));
            }
        }
        match request {
            Request::Ping => Ok(Response::Pong),
            Request::CreateAccount { op, role, username, password, name } => {
                self.create_account(op, role, username, password, name).await
            }
            Request::Login { role, username, password } => {
                self.login(role, username, password).await
            }
            Request::Logout { op, session, role } => self.logout(op, &session, role).await,
            Request::Authenticate { session, role } => {
                let key = parse_token(&session)?;
                let account = self.sessions.check(&key, role)?.account;
                Ok(Response::Authenticated { account })
            }
            Request::GetSeller { seller_id } => {
                match self.replica.read(move |c| accounts::seller(c, seller_id)).await? {
                    Some((name, items_sold)) => {
                        Ok(Response::Seller { seller_id, name, items_sold })
                    }
                    None => Err(ApiError::new(
                        ErrorCode::UnknownUser,
                        format!("no seller has id {seller_id}"),
                    )),
                }
            }
            Request::GetCart { session } => {
                let (key, _) = self.buyer(&session)?;
                let lines = self.replica.read(move |c| carts::lines(c, &key)).await?;
                Ok(Response::Cart(lines))
            }
            Request::AddToCart { op, session, item, quantity, available } => {
                self.add_to_cart(op, &session, item, quantity, available).await
            }
            Request::RemoveFromCart { op, session, item, quantity } => {
                check_quantity(quantity)?;
                let (session, buyer) = self.buyer(&session)?;
                let command = Command::RemoveFromCart { op, buyer, session, item, quantity };
                self.cart_answer(command).await
            }
            Request::SaveCart { session } => {
                let (session, buyer) = self.buyer(&session)?;
                self.replica.propose(Command::SaveCart { session, buyer }).await?;
                Ok(Response::Done)
            }
            Request::ClearCart { session } => {
                let (session, _) = self.buyer(&session)?;
                self.replica.propose(Command::ClearCart { session }).await?;
                Ok(Response::Done)
            }
            Request::Purchase { session, key, card } => {
                let (session, buyer) = self.buyer(&session)?;
                let purchase = self.coordinator.purchase(session, buyer, key, card, None).await?;
                Ok(Response::Purchased(purchase))
            }
            Request::PurchaseAt { session, key, card, total } => {
                let (session, buyer) = self.buyer(&session)?;
                let coordinator = &self.coordinator;
                let purchase = coordinator.purchase(session, buyer, key, card, Some(total)).await?;
                Ok(Response::Purchased(purchase))
            }
            Request::Purchases { session, page } => {
                let page = page.validate()?;
                let (_, buyer) = self.buyer(&session)?;
                let purchases =
                    self.replica.read(move |c| history::of_buyer(c, buyer, page)).await?;
                Ok(Response::Purchases(purchases))
            }
        }
    }
}

impl CustomerDb {
    /// The handler over `replica`, with the sessions that have not long expired loaded.
    pub async fn load(
        replica: Replica<CustomerMachine>,
        config: &Config,
        coordinator: Arc<Coordinator>,
    ) -> Result<Self, ApiError> {
        let timeout_ms = config.session_timeout.as_millis() as i64;
        let db = CustomerDb {
            sessions: Sessions::new(timeout_ms, config.clock.clone()),
            throttle: LoginThrottle::new(config.clock.clone()),
            max_sessions: config.max_sessions_per_account.max(1),
            replica,
            coordinator,
            session_writes: tokio::sync::RwLock::new(()),
            sessions_current: std::sync::atomic::AtomicBool::new(false),
        };
        // Alone, this replica leads from the start and loads its sessions now; in a group,
        // it loads them each time it becomes the leader (a read needs a leader), in
        // `lead()`, never at start: a replica restarted may believe for a moment that it
        // still leads.
        if db.replica.metrics().is_none() {
            db.load_sessions().await?;
        }
        Ok(db)
    }

    /// Whether the session table is loaded for this replica's current leadership.
    pub fn sessions_loaded(&self) -> bool {
        self.sessions_current.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Marks the session table as stale (this replica stopped leading) until the next
    /// [`CustomerDb::load_sessions`].
    pub fn sessions_stale(&self) {
        self.sessions_current.store(false, std::sync::atomic::Ordering::Release);
    }

    /// Fills the session table from the rows: at start, and when this replica becomes the
    /// leader (its table may be missing what the old leader's sessions did meanwhile).
    /// A session in both keeps the later activity.
    pub async fn load_sessions(&self) -> Result<(), ApiError> {
        let _refill = self.session_writes.write().await;
        let clock = self.sessions.clock();
        let cutoff = clock.now_ms() - self.sessions.timeout_ms() - EXPIRED_GRACE_MS;
        let rows = self.replica.read(move |c| session_rows::recent(c, cutoff)).await?;
        let mut stored = Vec::with_capacity(rows.len());
        for row in rows {
            let Some(role) = row.role else {
                tracing::warn!(account = row.account, "skipping a stored session of no known role");
                continue;
            };
            let session = Session {
                account: row.account,
                role,
                last_seen: row.last_seen_ms,
                stored_last_seen: row.last_seen_ms,
            };
            stored.push((row.key, session));
        }
        self.sessions.replace(stored);
        self.sessions_current.store(true, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// Writes recent session activity to the rows, and deletes sessions long expired.
    pub async fn flush_sessions(&self) -> Result<(), ApiError> {
        let _writing = self.session_writes.read().await;
        let seen = self.sessions.take_unstored();
        let ended = self.sessions.take_long_expired(EXPIRED_GRACE_MS);
        if seen.is_empty() && ended.is_empty() {
            return Ok(());
        }
        self.replica.propose(Command::FlushSessions { seen, ended }).await?;
        Ok(())
    }

    /// The key of a live buyer session, and the buyer.
    fn buyer(&self, session: &str) -> Result<(Key, agora_domain::UserId), ApiError> {
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
        // The salt is random: decided here, before proposing, in the bounded queue.
        let password_hash = password::hash(password.clone()).await?;
        let ours = password_hash.clone();
        let (lookup, shown) = (username.clone(), username.clone());
        let command = Command::CreateAccount { op, role, username, name, password_hash };
        let id = match self.replica.propose(command).await? {
            Output::Account(id) => id,
            other => return Err(other.unexpected()),
        };
        // The account holds the hash this attempt made: it made the account. Another
        // hash: the op id's recorded answer, an account an earlier attempt made. It is
        // this sign-up's only if the password is the same too; otherwise someone else
        // holds the username (and the op id: an Idempotency-Key guessed or reused).
        let stored = self.replica.read(move |c| accounts::credentials(c, role, &lookup)).await?;
        match stored {
            Some((stored_id, hash)) if stored_id == id && hash == ours => {}
            Some((stored_id, hash)) if stored_id == id => {
                if !password::verify(password, Some(hash)).await? {
                    return Err(ApiError::new(
                        ErrorCode::UsernameTaken,
                        format!("username {shown:?} is taken by another {role}"),
                    ));
                }
            }
            // An answer an earlier release recorded under its one scope of all sign-ups,
            // for another username: not this request's.
            _ => return Err(ApiError::reused_op()),
        }
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
        let account = self.replica.read(move |c| accounts::credentials(c, role, &name)).await?;
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
        // Each session costs rows (its copy of the saved cart too): an account holds a
        // bounded number alive. The place is held until the new session is in the table.
        let _admitted = self.sessions.admit(account, self.max_sessions)?;

        let (token, session) = new_token()?;
        let _writing = self.session_writes.read().await;
        match self.replica.propose(Command::StartSession { session, account, role }).await? {
            Output::SessionStarted { account, role, at_ms } => {
                // The table learns the session as it was stored, once it is.
                let stored = Session { account, role, last_seen: at_ms, stored_last_seen: at_ms };
                self.sessions.insert(session, stored);
                Ok(Response::LoggedIn { session: token, account })
            }
            other => Err(other.unexpected()),
        }
    }

    async fn logout(&self, op: OpId, session: &str, role: Role) -> Result<Response, ApiError> {
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
        let _writing = self.session_writes.read().await;
        let ended = match self.replica.propose(Command::EndSession { op, session: key }).await? {
            Output::SessionEnded(ended) => ended,
            other => return Err(other.unexpected()),
        };
        // Logging out of an expired session is fine; of an unknown one, not. The file
        // (through the op table, for a resend) says whether the session was there.
        let held = self.sessions.remove(&key).is_some();
        if ended || held { Ok(Response::Done) } else { Err(ApiError::not_logged_in()) }
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
        let (session, buyer) = self.buyer(session)?;
        self.cart_answer(Command::AddToCart { op, buyer, session, item, quantity, available }).await
    }

    async fn cart_answer(&self, command: Command) -> Result<Response, ApiError> {
        match self.replica.propose(command).await? {
            Output::Cart(lines) => Ok(Response::Cart(lines)),
            other => Err(other.unexpected()),
        }
    }
}

#[cfg(test)]
mod tests {
    use agora_domain::{CartLine, ItemId};

    use super::*;
    use crate::testing::Rig;

    fn code<T: std::fmt::Debug>(answer: Result<T, ApiError>) -> ErrorCode {
        answer.expect_err("refused").code
    }

    #[tokio::test]
    async fn usernames_are_unique_in_any_case_and_a_repeated_sign_up_answers_the_same_id() {
        let rig = Rig::start().await;
        let sign_up = |op: OpId, role, username: &str| Request::CreateAccount {
            op,
            role,
            username: username.into(),
            password: "password1".into(),
            name: String::new(),
        };
        let op = rig.op();
        let first = rig.call(sign_up(op, Role::Buyer, "Ann")).await.expect("created");
        // The same request again (a retry after a lost answer) is the same account.
        assert_eq!(rig.call(sign_up(op, Role::Buyer, "Ann")).await.expect("repeat"), first);
        let taken = rig.call(sign_up(rig.op(), Role::Buyer, "aNN")).await;
        assert_eq!(code(taken), ErrorCode::UsernameTaken);
        // A seller may have a buyer's username.
        rig.call(sign_up(rig.op(), Role::Seller, "ann")).await.expect("seller");
        let rows: i64 = rig
            .replica
            .read(|c| {
                c.query_row("SELECT count(*) FROM accounts", [], |r| r.get(0))
                    .map_err(agora_replication::db_error)
            })
            .await
            .expect("count");
        assert_eq!(rows, 2);
    }

    /// An op id is its caller's: a sign-up's for its role and username, a logout's and a
    /// cart change's for their session. The same bytes from another caller are another
    /// request, and from the same caller with another request, a refusal.
    #[tokio::test]
    async fn op_ids_are_scoped_by_their_caller_and_a_repeat_must_ask_the_same() {
        let rig = Rig::start().await;
        let sign_up = |op: OpId, role, username: &str, password: &str| Request::CreateAccount {
            op,
            role,
            username: username.into(),
            password: password.into(),
            name: String::new(),
        };
        // A seller's sign-up with a buyer's op id makes the seller.
        let shared = rig.op();
        let buyer = rig.call(sign_up(shared, Role::Buyer, "bea", "password1")).await;
        let seller = rig.call(sign_up(shared, Role::Seller, "sam", "password1")).await;
        assert_ne!(seller, buyer, "not the buyer's answer");
        let login = Request::Login {
            role: Role::Seller,
            username: "sam".into(),
            password: "password1".into(),
        };
        assert!(rig.call(login).await.is_ok(), "the seller exists");
        // Someone who signs up first with another's username and op id does not make
        // the other's sign-up look done: it is told the username is taken. The same
        // password is the same sign-up repeated.
        let op = rig.op();
        let first = rig.call(sign_up(op, Role::Buyer, "cy", "password1")).await.expect("made");
        let other = rig.call(sign_up(op, Role::Buyer, "cy", "password2")).await;
        assert_eq!(code(other), ErrorCode::UsernameTaken);
        assert_eq!(rig.call(sign_up(op, Role::Buyer, "cy", "password1")).await, Ok(first));

        // A logout with another session's op id ends this session.
        let token_a = rig.login(Role::Buyer, "bea").await;
        let token_b = rig.login(Role::Buyer, "bea").await;
        let logout =
            |op, session: &str| Request::Logout { op, session: session.into(), role: Role::Buyer };
        let op = rig.op();
        assert_eq!(rig.call(logout(op, &token_a)).await, Ok(Response::Done));
        assert_eq!(rig.call(logout(op, &token_b)).await, Ok(Response::Done));
        let check = Request::Authenticate { session: token_b.clone(), role: Role::Buyer };
        assert_eq!(code(rig.call(check).await), ErrorCode::NotLoggedIn, "b ended too");
        let mut rig = rig;
        rig.restart_handler().await;
        let check = Request::Authenticate { session: token_b, role: Role::Buyer };
        assert_eq!(code(rig.call(check).await), ErrorCode::NotLoggedIn, "and stays ended");

        // A cart change: one op id in two sessions is two changes; in one session with
        // another item or quantity, a refusal that changes nothing.
        let (token_a, token_b) =
            (rig.login(Role::Buyer, "bea").await, rig.login(Role::Buyer, "bea").await);
        let item = ItemId { category: 3, number: 1 };
        let add = |op, session: &str, quantity| Request::AddToCart {
            op,
            session: session.into(),
            item,
            quantity,
            available: 10,
        };
        let op = rig.op();
        rig.call(add(op, &token_a, 2)).await.expect("added in a");
        rig.call(add(op, &token_b, 2)).await.expect("added in b");
        assert_eq!(rig.cart(&token_b).await, vec![CartLine { item, quantity: 2 }]);
        let again = rig.call(add(op, &token_a, 2)).await.expect("a repeat");
        assert_eq!(again, Response::Cart(vec![CartLine { item, quantity: 2 }]));
        let reused = rig.call(add(op, &token_a, 5)).await;
        let refused = reused.expect_err("another request");
        assert_eq!(refused.code, ErrorCode::OpReused);
        assert!(refused.message.contains("op id"), "{refused}");
        assert_eq!(rig.cart(&token_a).await, vec![CartLine { item, quantity: 2 }]);
    }

    #[tokio::test]
    async fn sessions_are_checked_per_role_and_end_at_logout() {
        let rig = Rig::start().await;
        let (bea, token) = rig.account(Role::Buyer, "bea").await;
        let wrong = Request::Login {
            role: Role::Buyer,
            username: "bea".into(),
            password: "password2".into(),
        };
        assert_eq!(code(rig.call(wrong).await), ErrorCode::WrongCredentials);
        let check = |role| Request::Authenticate { session: token.clone(), role };
        assert_eq!(
            rig.call(check(Role::Buyer)).await,
            Ok(Response::Authenticated { account: bea })
        );
        assert_eq!(code(rig.call(check(Role::Seller)).await), ErrorCode::NotLoggedIn);
        // The seller server cannot end a buyer's session: it goes on.
        let logout = |op, role| Request::Logout { op, session: token.clone(), role };
        assert_eq!(code(rig.call(logout(rig.op(), Role::Seller)).await), ErrorCode::NotLoggedIn);
        assert!(rig.call(check(Role::Buyer)).await.is_ok());
        let op = rig.op();
        assert_eq!(rig.call(logout(op, Role::Buyer)).await, Ok(Response::Done));
        assert_eq!(code(rig.call(logout(rig.op(), Role::Buyer)).await), ErrorCode::NotLoggedIn);
        assert_eq!(code(rig.call(check(Role::Buyer)).await), ErrorCode::NotLoggedIn);
        // Gone from the rows too: a restart (a new leader, its memory empty) does not bring
        // it back, and answers a resend of the logout as the first time.
        let mut rig = rig;
        rig.restart_handler().await;
        assert_eq!(code(rig.call(check(Role::Buyer)).await), ErrorCode::NotLoggedIn);
        assert_eq!(rig.call(logout(op, Role::Buyer)).await, Ok(Response::Done));
        assert_eq!(code(rig.call(logout(rig.op(), Role::Buyer)).await), ErrorCode::NotLoggedIn);
    }

    #[tokio::test]
    async fn a_restart_keeps_sessions_and_their_activity_but_not_rows_of_no_known_role() {
        let mut rig = Rig::start().await;
        let (_, token) = rig.account(Role::Buyer, "bea").await;
        // Activity after login reaches the rows at the next flush.
        rig.config.clock.advance(std::time::Duration::from_secs(200));
        let check =
            |token: &str| Request::Authenticate { session: token.into(), role: Role::Buyer };
        rig.call(check(&token)).await.expect("alive");
        rig.db.flush_sessions().await.expect("flush");
        // Two sessions written by hand: one of a known role, one of a code that names none.
        let (good, good_key) = new_token().expect("token");
        let (corrupt, corrupt_key) = new_token().expect("token");
        let now = rig.config.clock.now_ms();
        let path = rig.dir.path().join("customer.db");
        let raw = rusqlite::Connection::open(path).expect("open");
        for (key, role) in [(good_key, 2), (corrupt_key, 3)] {
            raw.execute(
                "INSERT INTO sessions (key, account, role, created_ms, last_seen_ms) \
                 VALUES (?1, 1, ?2, ?3, ?3)",
                rusqlite::params![&key[..], role, now],
            )
            .expect("insert");
        }
        rig.restart_handler().await;
        // 200 s + 200 s: alive only because the flushed activity came back with it.
        rig.config.clock.advance(std::time::Duration::from_secs(200));
        rig.call(check(&token)).await.expect("the logged-in session survived");
        rig.call(check(&good)).await.expect("a stored buyer session");
        assert_eq!(code(rig.call(check(&corrupt)).await), ErrorCode::NotLoggedIn);
        let as_seller = Request::Authenticate { session: corrupt, role: Role::Seller };
        assert_eq!(code(rig.call(as_seller).await), ErrorCode::NotLoggedIn);
    }

    #[tokio::test]
    async fn cart_rules_and_a_new_session_starts_from_the_saved_cart() {
        let rig = Rig::start().await;
        let (_, token) = rig.account(Role::Buyer, "bea").await;
        let pen = ItemId { category: 3, number: 7 };
        rig.add(&token, pen, 2, 3).await;
        // 2 held + 2 more > 3 available.
        let more = Request::AddToCart {
            op: rig.op(),
            session: token.clone(),
            item: pen,
            quantity: 2,
            available: 3,
        };
        let refused = rig.call(more).await.expect_err("too many");
        assert_eq!(refused.code, ErrorCode::NotEnoughUnits);
        assert!(refused.message.contains("already holds 2"), "{refused}");
        let remove = |item, quantity| Request::RemoveFromCart {
            op: rig.op(),
            session: token.clone(),
            item,
            quantity,
        };
        assert_eq!(code(rig.call(remove(pen, 3)).await), ErrorCode::InvalidArgument);
        let cup = ItemId { category: 4, number: 8 };
        assert_eq!(code(rig.call(remove(cup, 1)).await), ErrorCode::UnknownItem);
        // The same number under another category is not the pen.
        let not_pen = ItemId { category: 4, number: 7 };
        assert_eq!(code(rig.call(remove(not_pen, 1)).await), ErrorCode::UnknownItem);
        rig.call(remove(pen, 1)).await.expect("one out");
        let saved = vec![CartLine { item: pen, quantity: 1 }];
        assert_eq!(rig.cart(&token).await, saved);

        rig.call(Request::SaveCart { session: token.clone() }).await.expect("saved");
        rig.call(Request::ClearCart { session: token.clone() }).await.expect("cleared");
        assert!(rig.cart(&token).await.is_empty());
        let second = rig.login(Role::Buyer, "bea").await;
        assert_eq!(rig.cart(&second).await, saved);
        // A session that logged out has no cart to write to.
        let out = Request::Logout { op: rig.op(), session: second.clone(), role: Role::Buyer };
        rig.call(out).await.expect("logged out");
        let add = Request::AddToCart {
            op: rig.op(),
            session: second,
            item: pen,
            quantity: 1,
            available: 3,
        };
        assert_eq!(code(rig.call(add).await), ErrorCode::NotLoggedIn);
    }

    #[tokio::test]
    async fn a_cart_holds_at_most_the_limit_of_different_items() {
        let rig = Rig::start().await;
        let (_, token) = rig.account(Role::Buyer, "bea").await;
        for n in 0..agora_domain::CART_LINES_MAX as u64 {
            rig.add(&token, ItemId { category: 1, number: 100 + n }, 1, 9).await;
        }
        let one_more = Request::AddToCart {
            op: rig.op(),
            session: token.clone(),
            item: ItemId { category: 1, number: 1 },
            quantity: 1,
            available: 9,
        };
        assert_eq!(code(rig.call(one_more).await), ErrorCode::InvalidArgument);
        // More of an item already in the cart is still fine.
        rig.add(&token, ItemId { category: 1, number: 100 }, 1, 9).await;
    }

    /// A restart loads the sessions that may still answer `session_expired`: those active
    /// within the timeout and the grace after it, to the millisecond. Older rows stay
    /// behind, and their tokens answer `not_logged_in`.
    #[tokio::test]
    async fn a_restart_loads_sessions_expired_within_their_grace_and_no_older() {
        let mut rig = Rig::start().await;
        let (_, older) = rig.account(Role::Buyer, "bea").await;
        rig.config.clock.advance(std::time::Duration::from_millis(1));
        let edge = rig.login(Role::Buyer, "bea").await;
        let timeout = rig.config.session_timeout.as_millis() as u64;
        let grace = crate::sessions::EXPIRED_GRACE_MS as u64;
        rig.config.clock.advance(std::time::Duration::from_millis(timeout + grace));
        rig.restart_handler().await;
        let check =
            |token: &str| Request::Authenticate { session: token.into(), role: Role::Buyer };
        assert_eq!(code(rig.call(check(&edge)).await), ErrorCode::SessionExpired);
        assert_eq!(code(rig.call(check(&older)).await), ErrorCode::NotLoggedIn);
    }

    /// Rows of `table` (the tests' own SQL: what is on disk, not what the table in memory
    /// says).
    async fn count(rig: &Rig, table: &'static str) -> i64 {
        rig.replica
            .read(move |c| {
                c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
                    .map_err(agora_replication::db_error)
            })
            .await
            .expect("count")
    }

    /// The flush sweeps sessions expired for longer than the grace off disk, cart and all;
    /// one expired exactly the grace ago stays, answering `session_expired`.
    #[tokio::test]
    async fn the_flush_deletes_sessions_past_their_grace_with_their_carts() {
        let rig = Rig::start().await;
        let (_, older) = rig.account(Role::Buyer, "bea").await;
        rig.add(&older, ItemId { category: 3, number: 7 }, 1, 5).await;
        rig.config.clock.advance(std::time::Duration::from_millis(1));
        let edge = rig.login(Role::Buyer, "bea").await;
        assert_eq!((count(&rig, "sessions").await, count(&rig, "session_cart").await), (2, 1));
        let timeout = rig.config.session_timeout.as_millis() as u64;
        let grace = crate::sessions::EXPIRED_GRACE_MS as u64;
        rig.config.clock.advance(std::time::Duration::from_millis(timeout + grace));
        rig.db.flush_sessions().await.expect("flush");
        assert_eq!((count(&rig, "sessions").await, count(&rig, "session_cart").await), (1, 0));
        let check =
            |token: &str| Request::Authenticate { session: token.into(), role: Role::Buyer };
        assert_eq!(code(rig.call(check(&older)).await), ErrorCode::NotLoggedIn);
        assert_eq!(code(rig.call(check(&edge)).await), ErrorCode::SessionExpired);
    }
}
