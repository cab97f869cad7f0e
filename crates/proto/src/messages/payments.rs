//! The payments service's messages. Every charge carries an idempotency key: the first
//! request with a key decides; every later request with that key gets the same answer.

use agora_domain::{Card, Money, UserId};
use serde::{Deserialize, Serialize};

use crate::trust::Component;

/// A request to the payments service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Answers `Pong`.
    Ping,
    /// Charges `amount` to `card` on behalf of the buyer `payer`, once per `key`; answers
    /// `Charge`.
    Charge { key: String, card: Card, amount: Money, payer: UserId },
    /// The final state of the charge with `key`. A key never seen is recorded as
    /// cancelled, so a charge that was sent but not yet received can no longer succeed;
    /// answers `Charge`.
    Resolve { key: String },
    /// The outcome of the charge with `key` if one was decided, changing nothing: answers
    /// `Charge`, or `NoCharge` if no request with `key` has been decided (a charge sent
    /// but not yet received may still succeed).
    Lookup { key: String },
}

/// What became of a charge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The money was taken from `payer`; `authorization` is the processor's reference.
    /// The purchase coordinator checks `amount` and `payer` against its purchase before
    /// it counts the charge as that purchase's.
    Approved { authorization: String, amount: Money, payer: UserId },
    /// The card was declined, for `reason`; nothing was taken.
    Declined { reason: String },
    /// Resolved before any charge arrived; nothing was or will be taken.
    Cancelled,
}

/// A successful answer of the payments service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// To `Ping`.
    Pong,
    /// The charge's outcome.
    Charge(Outcome),
    /// To `Lookup`: nothing is recorded under the key.
    NoCharge,
}

/// Who may send `request` to payments: only the purchase coordinator (the customer
/// database) charges, resolves or looks up; anyone of ours may ping.
pub fn may_send(request: &Request) -> &'static [Component] {
    match request {
        Request::Ping => &Component::ALL,
        Request::Charge { .. } | Request::Resolve { .. } | Request::Lookup { .. } => {
            &[Component::CustomerDb]
        }
    }
}
