//! Agora's async client library: one typed method per call of the seller's and the buyer's
//! interfaces, used by the CLIs, the benchmark and the integration tests.
//!
//! - [`SellerClient`] talks to the seller server, [`BuyerClient`] to the buyer server.
//!   Each is built from a list of frontend addresses, tried in turn, and holds the
//!   session id that [`SellerClient::login`] returns and later calls send.
//! - [`Client`] is what both clients do alike, the session and the account calls, for
//!   code that serves either role.
//! - [`ClientError`] keeps "could not reach the server" ([`ClientError::Transport`]) apart
//!   from "the server refused" ([`ClientError::Refused`]), and catches a call that needs a
//!   session before it goes out ([`ClientError::NotLoggedIn`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), agora_client::ClientError> {
//! use agora_client::BuyerClient;
//! use agora_domain::Page;
//!
//! let buyer = BuyerClient::new(vec!["127.0.0.1:7404".into()]);
//! buyer.login("alice", "correct horse").await?;
//! let pens = buyer.search(3, vec!["pen".into()], Page::default()).await?;
//! println!("{} pens for sale", pens.len());
//! # Ok(())
//! # }
//! ```

mod buyer;
mod caller;
mod seller;

pub use agora_proto::client::CONNECTION_REFUSED;
pub use agora_proto::{ApiError, CallError, ErrorCode, PoolConfig};
pub use buyer::{BuyerClient, new_purchase_key};
pub use caller::Client;
pub use seller::SellerClient;

use std::time::Duration;

/// Why a client call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The call needs a session and this client has none; nothing was sent.
    #[error("not logged in: log in first")]
    NotLoggedIn,
    /// The server answered with a refusal: a stable code and a message for people.
    #[error("{0}")]
    Refused(ApiError),
    /// The server could not be reached, the connection broke, or no answer came in time.
    /// Never holds [`CallError::Remote`]: refusals are [`ClientError::Refused`].
    #[error("{0}")]
    Transport(CallError),
    /// The server answered with a response this call does not expect: a version mismatch
    /// or a server fault. The call may have taken effect.
    #[error("unexpected answer from the server to {call}: {got}")]
    Unexpected {
        /// The call that was made.
        call: &'static str,
        /// What came back instead.
        got: String,
    },
}

impl ClientError {
    /// The error code, when there is one: the server's code for a refusal, and
    /// [`ErrorCode::NotLoggedIn`] for a call made without a session. `None` for a transport
    /// failure or an unexpected answer, which the server did not choose.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::NotLoggedIn => Some(ErrorCode::NotLoggedIn),
            ClientError::Refused(e) => Some(e.code),
            ClientError::Transport(_) | ClientError::Unexpected { .. } => None,
        }
    }

    /// Whether the server could not be reached or did not answer (as opposed to refusing).
    pub fn is_transport(&self) -> bool {
        matches!(self, ClientError::Transport(_))
    }

    /// Whether the session is missing, unknown or expired, so that logging in again is the
    /// way forward.
    pub fn needs_login(&self) -> bool {
        matches!(self.code(), Some(ErrorCode::NotLoggedIn | ErrorCode::SessionExpired))
    }

    /// The error as an [`ApiError`]: a refusal keeps its code; a transport failure becomes
    /// `Unavailable` or `Timeout`, an unexpected answer `Internal`.
    pub fn to_api(&self) -> ApiError {
        match self {
            ClientError::NotLoggedIn => ApiError::new(ErrorCode::NotLoggedIn, self.to_string()),
            ClientError::Refused(e) => e.clone(),
            ClientError::Transport(e) => e.clone().into_api(),
            ClientError::Unexpected { .. } => ApiError::internal(self.to_string()),
        }
    }
}

impl From<CallError> for ClientError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Remote(refusal) => ClientError::Refused(refusal),
            other => ClientError::Transport(other),
        }
    }
}

/// The pool settings a client uses for `addrs`: one connection, tried over the addresses
/// in turn, riding through restarts (see [`PoolConfig::ride_through`]), with `connect` and
/// `call` replacing the default deadlines when given.
pub fn pool_config(
    addrs: Vec<String>,
    connect: Option<Duration>,
    call: Option<Duration>,
) -> PoolConfig {
    let mut config = PoolConfig::new(addrs);
    config.connections = 1;
    // Ride through a restart of a frontend or a database: requests that are safe to
    // repeat are retried until the deadline.
    config.ride_through = true;
    if let Some(connect) = connect {
        config.connect_timeout = connect;
    }
    if let Some(call) = call {
        config.call_timeout = call;
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_and_transport_failures_stay_apart() {
        let refused: ClientError =
            CallError::Remote(ApiError::new(ErrorCode::UnknownItem, "unknown item 3:17")).into();
        assert!(matches!(refused, ClientError::Refused(_)));
        assert_eq!(refused.code(), Some(ErrorCode::UnknownItem));
        assert!(!refused.is_transport());
        assert_eq!(refused.to_string(), "unknown item 3:17");

        let down: ClientError = CallError::Unreachable {
            service: "seller-server",
            addr: "127.0.0.1:1".into(),
            reason: "connection refused".into(),
        }
        .into();
        assert!(down.is_transport());
        assert_eq!(down.code(), None);
        assert_eq!(down.to_api().code, ErrorCode::Unavailable);
        assert!(down.to_string().contains("127.0.0.1:1"));
    }

    #[test]
    fn login_is_needed_for_missing_or_expired_sessions() {
        assert!(ClientError::NotLoggedIn.needs_login());
        let expired = ClientError::Refused(ApiError::new(ErrorCode::SessionExpired, "expired"));
        assert!(expired.needs_login());
        let other = ClientError::Refused(ApiError::new(ErrorCode::NotYourItem, "not yours"));
        assert!(!other.needs_login());
    }

    #[test]
    fn pool_config_overrides_only_what_is_given() {
        let config = pool_config(vec!["a:1".into()], None, Some(Duration::from_secs(9)));
        assert_eq!(config.connections, 1);
        assert_eq!(config.call_timeout, Duration::from_secs(9));
        assert_eq!(config.connect_timeout, PoolConfig::new(vec![]).connect_timeout);
    }
}
