//! Typed errors that cross the wire: a stable code for programs and a message for people.

use std::fmt;

use agora_domain::Invalid;
use serde::{Deserialize, Serialize};

/// The stable error codes. Their wire numbers and names never change meaning; new codes
/// are added at the end. docs/protocol.md lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorCode {
    /// A field broke a rule; the message names the field and the rule.
    InvalidArgument,
    /// The call needs a session and none (or an unknown one) was given.
    NotLoggedIn,
    /// The session timed out after inactivity; log in again.
    SessionExpired,
    /// No item has that id.
    UnknownItem,
    /// The item belongs to another seller.
    NotYourItem,
    /// Fewer units are available than asked for.
    NotEnoughUnits,
    /// Another account of this role already has that username.
    UsernameTaken,
    /// Username and password do not match an account.
    WrongCredentials,
    /// No seller (or buyer) has that id.
    UnknownUser,
    /// A server this call needs could not be reached.
    Unavailable,
    /// The call did not finish before its deadline.
    Timeout,
    /// The request could not be decoded, or went to the wrong kind of server.
    BadRequest,
    /// The connection broke the frame grammar; the sender closes it.
    Protocol,
    /// The server is at a limit (connections, requests in flight); try again later.
    Overloaded,
    /// A fault inside the server; details are in its log.
    Internal,
    /// The payments service declined the card; nothing was charged or bought.
    PaymentDeclined,
    /// A purchase's outcome is not known yet (a server it needs was unreachable mid-way);
    /// it will complete or be cancelled shortly. Retry with the same purchase key.
    PurchasePending,
    /// The request belongs to a purchase that was already cancelled.
    Aborted,
    /// The caller may not make this request: an internal service refuses anyone without
    /// the cluster's credentials, and each component may send only what its role needs.
    Forbidden,
    /// This replica does not lead its group, so it cannot take writes or linearizable
    /// reads; the message ends with the leader's address when it is known
    /// ([`ApiError::leader`] reads it), and callers try there or another replica.
    NotLeader,
    /// A purchase's total, at the prices of the moment, is not the total the buyer agreed
    /// to (a price changed since the cart was shown); nothing was bought or charged. The
    /// message says the new total.
    PriceChanged,
    /// A request sent under an op id (over HTTP, an `Idempotency-Key`) its caller already
    /// used, within the 24 hours op ids are remembered, for a different request: it is
    /// neither applied nor answered with the other request's answer.
    OpReused,
}

impl ErrorCode {
    /// Every code, in wire order.
    pub const ALL: [ErrorCode; 22] = [
        ErrorCode::InvalidArgument,
        ErrorCode::NotLoggedIn,
        ErrorCode::SessionExpired,
        ErrorCode::UnknownItem,
        ErrorCode::NotYourItem,
        ErrorCode::NotEnoughUnits,
        ErrorCode::UsernameTaken,
        ErrorCode::WrongCredentials,
        ErrorCode::UnknownUser,
        ErrorCode::Unavailable,
        ErrorCode::Timeout,
        ErrorCode::BadRequest,
        ErrorCode::Protocol,
        ErrorCode::Overloaded,
        ErrorCode::Internal,
        ErrorCode::PaymentDeclined,
        ErrorCode::PurchasePending,
        ErrorCode::Aborted,
        ErrorCode::Forbidden,
        ErrorCode::NotLeader,
        ErrorCode::PriceChanged,
        ErrorCode::OpReused,
    ];

    /// The code named `name` (as [`ErrorCode::as_str`] writes it), if any.
    pub fn from_name(name: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// The code's name in `snake_case`, as shown by the CLIs and the HTTP API.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::NotLoggedIn => "not_logged_in",
            ErrorCode::SessionExpired => "session_expired",
            ErrorCode::UnknownItem => "unknown_item",
            ErrorCode::NotYourItem => "not_your_item",
            ErrorCode::NotEnoughUnits => "not_enough_units",
            ErrorCode::UsernameTaken => "username_taken",
            ErrorCode::WrongCredentials => "wrong_credentials",
            ErrorCode::UnknownUser => "unknown_user",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Timeout => "timeout",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Protocol => "protocol",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::Internal => "internal",
            ErrorCode::PaymentDeclined => "payment_declined",
            ErrorCode::PurchasePending => "purchase_pending",
            ErrorCode::Aborted => "aborted",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotLeader => "not_leader",
            ErrorCode::PriceChanged => "price_changed",
            ErrorCode::OpReused => "op_reused",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal or failure as it travels between components and reaches the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// What kind of failure.
    pub code: ErrorCode,
    /// What happened, for a person.
    pub message: String,
}

impl ApiError {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError { code, message: message.into() }
    }

    /// A fault inside the server. The caller sees only that; log the details.
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::Internal, message)
    }

    /// A server this call needs is down.
    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::Unavailable, message)
    }

    /// The call needs a session it did not have.
    pub fn not_logged_in() -> Self {
        ApiError::new(ErrorCode::NotLoggedIn, "not logged in: log in first")
    }

    /// A request sent under an op id its caller already used, within the 24 hours op ids
    /// are remembered, for a different request: it is neither applied nor answered with
    /// the other request's answer.
    pub fn reused_op() -> Self {
        ApiError::new(
            ErrorCode::OpReused,
            "op id already used for a different request (over HTTP, the \
             Idempotency-Key, which a retry sends with the same request); use a new one",
        )
    }

    /// No item `id`.
    pub fn unknown_item(id: agora_domain::ItemId) -> Self {
        ApiError::new(ErrorCode::UnknownItem, format!("unknown item {id}"))
    }
}

/// What a `not_leader` message says just before the leader's address.
const LEADER_AT: &str = "; the leader is at ";

impl ApiError {
    /// This replica of `group` does not lead it; `leader` is the leader's address when
    /// known. The address ends the message, where [`ApiError::leader`] finds it.
    pub fn not_leader(group: &str, leader: Option<&str>) -> Self {
        let message = match leader {
            Some(addr) => {
                format!("this replica of {group} does not lead its group{LEADER_AT}{addr}")
            }
            None => {
                format!("this replica of {group} does not lead its group; no leader is known yet")
            }
        };
        ApiError::new(ErrorCode::NotLeader, message)
    }

    /// The leader's address a `not_leader` answer names, if it names one.
    pub fn leader(&self) -> Option<&str> {
        if self.code != ErrorCode::NotLeader {
            return None;
        }
        let (_, addr) = self.message.rsplit_once(LEADER_AT)?;
        (!addr.is_empty()).then_some(addr)
    }
}

impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> Self {
        ApiError::new(ErrorCode::InvalidArgument, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_distinct_name_that_parses_back() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_name(code.as_str()), Some(code));
        }
        let mut names: Vec<_> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ErrorCode::ALL.len());
        assert_eq!(ErrorCode::from_name("no_such_code"), None);
    }

    #[test]
    fn a_not_leader_answer_names_the_leader_where_callers_find_it() {
        let redirect = ApiError::not_leader("product-db", Some("10.0.0.2:7402"));
        assert_eq!(redirect.code, ErrorCode::NotLeader);
        assert_eq!(redirect.leader(), Some("10.0.0.2:7402"));
        assert_eq!(ApiError::not_leader("product-db", None).leader(), None);
        let other = ApiError::unavailable("x; the leader is at 10.0.0.2:7402");
        assert_eq!(other.leader(), None);
    }
}
