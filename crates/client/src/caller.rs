//! [`Caller`]: what both clients share, a connection pool to one frontend service, the
//! session id that calls carry, and the calls both frontends take alike (ping and the
//! account calls). [`Client`] offers the session and the account calls as a trait, for
//! code that serves either role.

use std::fmt;
use std::future::Future;
use std::sync::{Mutex, MutexGuard};

use agora_domain::UserId;
use agora_proto::messages::front::{BuyerRequest, Response, SellerRequest};
use agora_proto::messages::{OpId, new_op_id};
use agora_proto::{
    ApiError, BuyerServer, CallError, ErrorCode, FrameError, Pool, PoolConfig, SellerServer,
    Service,
};

use crate::ClientError;

/// A frontend service: the requests that both frontends take, built for this one.
pub(crate) trait Frontend: Service<Response = Response> {
    /// Who uses it, in a sentence: "seller" or "buyer".
    const ROLE: &'static str;
    /// Its TCP port under `agora up`'s defaults.
    const DEFAULT_PORT: u16;
    fn ping(deep: bool) -> Self::Request;
    fn create_account(op: OpId, username: String, password: String, name: String) -> Self::Request;
    fn login(username: String, password: String) -> Self::Request;
    fn logout(op: OpId, session: String) -> Self::Request;
}

/// Implements [`Frontend`] for `$service`, whose requests are `$request`: both frontends'
/// request enums spell the shared requests alike, variant for variant.
macro_rules! frontend {
    ($service:ty, $request:ident, $role:literal, $port:literal) => {
        impl Frontend for $service {
            const ROLE: &'static str = $role;
            const DEFAULT_PORT: u16 = $port;
            fn ping(deep: bool) -> $request {
                $request::Ping { deep }
            }
            fn create_account(
                op: OpId,
                username: String,
                password: String,
                name: String,
            ) -> $request {
                $request::CreateAccount { op, username, password, name }
            }
            fn login(username: String, password: String) -> $request {
                $request::Login { username, password }
            }
            fn logout(op: OpId, session: String) -> $request {
                $request::Logout { op, session }
            }
        }
    };
}

frontend!(SellerServer, SellerRequest, "seller", 7403);
frontend!(BuyerServer, BuyerRequest, "buyer", 7404);

/// A pool to service `S` and the current session.
pub(crate) struct Caller<S: Service> {
    pool: Pool<S>,
    // A std Mutex: it is held only to read or replace the string, never across an await.
    session: Mutex<Option<String>>,
}

impl<S: Frontend> Caller<S> {
    pub(crate) fn new(config: PoolConfig) -> Self {
        Caller { pool: Pool::new(config), session: Mutex::new(None) }
    }

    pub(crate) fn addrs(&self) -> &[String] {
        &self.pool.config().addrs
    }

    fn lock(&self) -> MutexGuard<'_, Option<String>> {
        self.session.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn session(&self) -> Option<String> {
        self.lock().clone()
    }

    pub(crate) fn set_session(&self, session: Option<String>) {
        *self.lock() = session;
    }

    /// Formats the client called `name` for `Debug`: its addresses and whether it is logged
    /// in. The session id is a credential: say whether there is one, not what it is.
    pub(crate) fn debug(&self, name: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(name)
            .field("addrs", &self.addrs())
            .field("logged_in", &self.session().is_some())
            .finish()
    }

    /// Forgets `session` if it is still the current one; a login that happened meanwhile
    /// keeps its new session.
    pub(crate) fn forget(&self, session: &str) {
        let mut current = self.lock();
        if current.as_deref() == Some(session) {
            *current = None;
        }
    }

    /// Sends a request that needs no session.
    async fn call(&self, request: &S::Request) -> Result<S::Response, ClientError> {
        self.pool.call(request).await.map_err(|e| self.wrong_port(self.http_port(e)))
    }

    /// Turns the refusal of another of Agora's servers (an internal one that wants the
    /// cluster's credentials, or the other frontend) into one that says which port this
    /// role's server uses, as [`Caller::http_port`] does for an HTTP port.
    fn wrong_port(&self, error: ClientError) -> ClientError {
        let message = match &error {
            ClientError::Refused(e) => e.message.as_str(),
            ClientError::Transport(CallError::Lost { reason, .. })
            | ClientError::Transport(CallError::Unreachable { reason, .. }) => reason.as_str(),
            _ => return error,
        };
        let service = match message.split_once(" serves only Agora's own components") {
            Some((service, _)) => format!("{service}, one of Agora's internal services"),
            None => match message.strip_prefix("this is ").and_then(|m| m.split_once(", not ")) {
                Some((service, _)) => service.to_owned(),
                None => return error,
            },
        };
        ClientError::Refused(ApiError::new(
            ErrorCode::BadRequest,
            format!(
                "{} is {service}, not the {role} server: the {role} server's TCP port is {port} \
                 (N+{offset} under `agora up --port-base N`; the banner of `agora up` shows the \
                 --server to use)",
                self.addrs().join(", "),
                role = S::ROLE,
                port = S::DEFAULT_PORT,
                offset = S::DEFAULT_PORT - 7400,
            ),
        ))
    }

    /// Turns the failure of a call that reached an HTTP server into a refusal that says
    /// so. The server's `HTTP/1.1 400 …` reads as a frame of protocol version 72 (`H`),
    /// which would otherwise be all the user is told.
    fn http_port(&self, error: CallError) -> ClientError {
        let (CallError::Lost { reason, .. } | CallError::Unreachable { reason, .. }) = &error
        else {
            return error.into();
        };
        if !reason.contains(&FrameError::Version(b'H').to_string()) {
            return error.into();
        }
        ClientError::Refused(ApiError::new(
            ErrorCode::BadRequest,
            format!(
                "{} answered in HTTP: this is an HTTP port; the {role} TCP port is {port} \
                 (N+{offset} under `agora up --port-base N`)",
                self.addrs().join(", "),
                role = S::ROLE,
                port = S::DEFAULT_PORT,
                offset = S::DEFAULT_PORT - 7400,
            ),
        ))
    }

    /// Sends the request `make` builds around the current session, or fails with
    /// [`ClientError::NotLoggedIn`] without a round trip when there is none. A session the
    /// server no longer knows is forgotten, so the next call fails fast too.
    pub(crate) async fn call_with_session(
        &self,
        make: impl FnOnce(String) -> S::Request,
    ) -> Result<S::Response, ClientError> {
        self.session_call(make, false).await
    }

    /// Like [`Caller::call_with_session`] for Logout: the session is forgotten once the
    /// server has answered, since it has ended either way.
    async fn end_session(
        &self,
        make: impl FnOnce(String) -> S::Request,
    ) -> Result<S::Response, ClientError> {
        self.session_call(make, true).await
    }

    async fn session_call(
        &self,
        make: impl FnOnce(String) -> S::Request,
        ends_session: bool,
    ) -> Result<S::Response, ClientError> {
        let session = self.session().ok_or(ClientError::NotLoggedIn)?;
        let result = self.call(&make(session.clone())).await;
        let ended = match &result {
            Ok(_) => ends_session,
            Err(e) => e.needs_login(),
        };
        if ended {
            self.forget(&session);
        }
        result
    }
}

/// The calls both frontends take alike. Each client's method of the same name calls these,
/// under a doc comment that names its role.
impl<S: Frontend> Caller<S> {
    pub(crate) async fn ping(&self, deep: bool) -> Result<(), ClientError> {
        match self.call(&S::ping(deep)).await? {
            Response::Pong => Ok(()),
            other => Err(unexpected_answer("ping", &other)),
        }
    }

    pub(crate) async fn create_account(
        &self,
        username: &str,
        password: &str,
        name: &str,
    ) -> Result<UserId, ClientError> {
        let request = S::create_account(
            new_op_id(),
            username.to_owned(),
            password.to_owned(),
            name.to_owned(),
        );
        match self.call(&request).await? {
            Response::Account { id } => Ok(id),
            other => Err(unexpected_answer("create_account", &other)),
        }
    }

    pub(crate) async fn login(
        &self,
        username: &str,
        password: &str,
    ) -> Result<String, ClientError> {
        match self.call(&S::login(username.to_owned(), password.to_owned())).await? {
            Response::LoggedIn { session, .. } => {
                self.set_session(Some(session.clone()));
                Ok(session)
            }
            other => Err(unexpected_answer("login", &other)),
        }
    }

    pub(crate) async fn logout(&self) -> Result<(), ClientError> {
        // One id for every resend of this call: a resend after the first attempt ended the
        // session (the frontend answered `unavailable` meanwhile) answers `Done`.
        let op = new_op_id();
        match self.end_session(|session| S::logout(op, session)).await? {
            Response::Done => Ok(()),
            other => Err(unexpected_answer("logout", &other)),
        }
    }
}

/// What [`SellerClient`](crate::SellerClient) and [`BuyerClient`](crate::BuyerClient) do
/// alike: the session they keep and the account calls. For code that serves either role,
/// as the command-line clients do; each method behaves as the client's own method of the
/// same name.
pub trait Client {
    /// The server addresses this client tries.
    fn addrs(&self) -> &[String];

    /// The current session id, if logged in.
    fn session(&self) -> Option<String>;

    /// Replaces the session id: to resume a session saved elsewhere, or `None` to drop it
    /// without telling the server.
    fn set_session(&self, session: Option<String>);

    /// CreateAccount: a new account with `username`, `password` and display `name`;
    /// returns its id. Does not log in.
    fn create_account(
        &self,
        username: &str,
        password: &str,
        name: &str,
    ) -> impl Future<Output = Result<UserId, ClientError>> + Send;

    /// Login: starts a session, which this client keeps and sends from now on; returns the
    /// session id.
    fn login(
        &self,
        username: &str,
        password: &str,
    ) -> impl Future<Output = Result<String, ClientError>> + Send;

    /// Logout: ends the session on the server and forgets it here. A session the server no
    /// longer knows is forgotten too, and its refusal returned.
    fn logout(&self) -> impl Future<Output = Result<(), ClientError>> + Send;
}

/// A client built around a [`Caller`]; this is how both clients get [`Client`].
pub(crate) trait Wraps {
    type Service: Frontend;
    fn caller(&self) -> &Caller<Self::Service>;
}

impl<C: Wraps> Client for C {
    fn addrs(&self) -> &[String] {
        self.caller().addrs()
    }

    fn session(&self) -> Option<String> {
        self.caller().session()
    }

    fn set_session(&self, session: Option<String>) {
        self.caller().set_session(session);
    }

    fn create_account(
        &self,
        username: &str,
        password: &str,
        name: &str,
    ) -> impl Future<Output = Result<UserId, ClientError>> + Send {
        self.caller().create_account(username, password, name)
    }

    fn login(
        &self,
        username: &str,
        password: &str,
    ) -> impl Future<Output = Result<String, ClientError>> + Send {
        self.caller().login(username, password)
    }

    fn logout(&self) -> impl Future<Output = Result<(), ClientError>> + Send {
        self.caller().logout()
    }
}

/// The error for an answer `call` does not expect; names the variant, not its contents.
pub(crate) fn unexpected_answer(call: &'static str, got: &impl std::fmt::Debug) -> ClientError {
    let text = format!("{got:?}");
    let variant = text.split(['(', ' ', '{']).next().unwrap_or("?");
    ClientError::Unexpected { call, got: variant.to_owned() }
}
