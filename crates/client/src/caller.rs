//! [`Caller`]: what both clients share, a connection pool to one frontend service and the
//! session id that calls carry.

use std::sync::{Mutex, MutexGuard};

use agora_proto::{Pool, PoolConfig, Service};

use crate::ClientError;

/// A pool to service `S` and the current session.
pub(crate) struct Caller<S: Service> {
    pool: Pool<S>,
    // A std Mutex: it is held only to read or replace the string, never across an await.
    session: Mutex<Option<String>>,
}

impl<S: Service> Caller<S> {
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

    /// Forgets `session` if it is still the current one; a login that happened meanwhile
    /// keeps its new session.
    pub(crate) fn forget(&self, session: &str) {
        let mut current = self.lock();
        if current.as_deref() == Some(session) {
            *current = None;
        }
    }

    /// Sends a request that needs no session.
    pub(crate) async fn call(&self, request: &S::Request) -> Result<S::Response, ClientError> {
        Ok(self.pool.call(request).await?)
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
    pub(crate) async fn end_session(
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

/// The error for an answer `call` does not expect; names the variant, not its contents.
pub(crate) fn unexpected_answer(call: &'static str, got: &impl std::fmt::Debug) -> ClientError {
    let text = format!("{got:?}");
    let variant = text.split(['(', ' ', '{']).next().unwrap_or("?");
    ClientError::Unexpected { call, got: variant.to_owned() }
}
