//! The payments service's request handling: check a charge, decide it as a processor
//! would (this process's policy and clock), then propose the decision to the replica.

use agora_proto::messages::payments::{Request, Response};
use agora_proto::{ApiError, ErrorCode, Handler};
use agora_replication::Replica;

use crate::command::{Command, PaymentsMachine};
use crate::decision::Approver;

/// The payments service's handler.
#[derive(Debug)]
pub struct PaymentsService {
    replica: Replica<PaymentsMachine>,
    approver: Approver,
}

impl PaymentsService {
    /// A handler over `replica` that approves a valid, unexpired card with probability
    /// `approve_probability` (clamped to 0..=1), rolled from `seed` and the charge's key.
    pub fn new(replica: Replica<PaymentsMachine>, approve_probability: f64, seed: u64) -> Self {
        let approver = Approver { probability: approve_probability.clamp(0.0, 1.0), seed };
        PaymentsService { replica, approver }
    }
}

impl Handler<agora_proto::Payments> for PaymentsService {
    async fn handle(&self, request: Request) -> Result<Response, ApiError> {
        match request {
            Request::Ping => Ok(Response::Pong),
            Request::Charge { key, card, amount, payer } => {
                check_key(&key)?;
                let card = card.validate()?;
                if amount.cents() <= 0 {
                    return Err(ApiError::new(
                        ErrorCode::InvalidArgument,
                        "invalid amount: must be positive",
                    ));
                }
                // Decided even if the key already has an outcome: applying answers the
                // recorded one then, and this decision is dropped.
                let now_ms = self.replica.clock().now_ms();
                let decision = self.approver.decide(&key, &card, amount, payer, now_ms);
                let last4 = card.last4().to_owned();
                let command =
                    Command::Charge { key, decision, amount, payer, holder: card.holder, last4 };
                let outcome = self.replica.propose(command).await?;
                agora_proto::fault::crash_point("charge-before-ack");
                Ok(Response::Charge(outcome))
            }
            Request::Resolve { key } => {
                check_key(&key)?;
                Ok(Response::Charge(self.replica.propose(Command::Resolve { key }).await?))
            }
            Request::Lookup { key } => {
                check_key(&key)?;
                let recorded =
                    self.replica.read(move |c| crate::ledger::outcome_of(c, &key)).await?;
                Ok(recorded.map_or(Response::NoCharge, Response::Charge))
            }
        }
    }
}

/// An idempotency key is 1 to 128 bytes: enough for any caller's scheme, small in a log.
fn check_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty() || key.len() > 128 {
        return Err(ApiError::new(
            ErrorCode::InvalidArgument,
            "invalid key: must be 1 to 128 bytes",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use agora_domain::{Card, Money};
    use agora_proto::messages::payments::Outcome;
    use agora_replication::Clock;
    use agora_store::{Store, StoreConfig};

    use super::*;

    /// 2023-11-14, in the middle of November.
    const NOVEMBER_2023: i64 = 1_700_000_000_000;

    fn service(p: f64) -> (PaymentsService, Clock, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            Store::open(&StoreConfig::new(dir.path().join("p.db")), crate::SCHEMA).expect("open");
        let clock = Clock::manual(NOVEMBER_2023);
        let replica = Replica::single(store, PaymentsMachine, clock.clone());
        (PaymentsService::new(replica, p, 7), clock, dir)
    }

    fn card(number: &str, expiry: &str) -> Card {
        Card { holder: "Bea".into(), number: number.into(), expiry: expiry.into() }
    }

    async fn charge(s: &PaymentsService, key: &str, card: Card) -> Outcome {
        let request =
            Request::Charge { key: key.into(), card, amount: Money::from_cents(500), payer: 7 };
        match s.handle(request).await.expect("answer") {
            Response::Charge(o) => o,
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_key_is_charged_once_and_answers_the_same_forever() {
        let (s, _clock, _dir) = service(1.0);
        let first = charge(&s, "k1", card("4111 1111 1111 1111", "12/99")).await;
        assert!(matches!(first, Outcome::Approved { amount, .. } if amount.cents() == 500));
        // A different card on the same key changes nothing: the key already decided.
        assert_eq!(charge(&s, "k1", card("4111111111111112", "12/99")).await, first);
        let resolved = s.handle(Request::Resolve { key: "k1".into() }).await.expect("resolve");
        assert_eq!(resolved, Response::Charge(first));
    }

    #[tokio::test]
    async fn a_lookup_answers_a_decided_key_and_decides_nothing_itself() {
        let (s, _clock, _dir) = service(1.0);
        let lookup = |key: &str| Request::Lookup { key: key.into() };
        assert_eq!(s.handle(lookup("k1")).await, Ok(Response::NoCharge));
        // Unlike a `Resolve`, the lookup did not cancel the key: its charge still goes in.
        let charged = charge(&s, "k1", card("4111 1111 1111 1111", "12/99")).await;
        assert!(matches!(charged, Outcome::Approved { .. }), "{charged:?}");
        assert_eq!(s.handle(lookup("k1")).await, Ok(Response::Charge(charged)));
        let refused = s.handle(lookup("")).await.expect_err("an empty key");
        assert_eq!(refused.code, ErrorCode::InvalidArgument);
    }

    #[tokio::test]
    async fn bad_numbers_and_expired_cards_are_declined() {
        let (s, _clock, _dir) = service(1.0);
        assert!(matches!(
            charge(&s, "a", card("4111111111111112", "12/99")).await,
            Outcome::Declined { .. }
        ));
        assert!(matches!(
            charge(&s, "b", card("4111111111111111", "01/20")).await,
            Outcome::Declined { .. }
        ));
        let (never, _clock, _dir) = service(0.0);
        assert!(matches!(
            charge(&never, "c", card("4111111111111111", "12/99")).await,
            Outcome::Declined { .. }
        ));
    }

    /// Expiry is judged by the proposer's clock: a card good through November 2023 is
    /// approved in November and declined once the clock reaches December.
    #[tokio::test]
    async fn expiry_is_judged_by_the_service_clock() {
        let (s, clock, _dir) = service(1.0);
        let good = charge(&s, "nov", card("4111111111111111", "11/23")).await;
        assert!(matches!(good, Outcome::Approved { .. }), "{good:?}");
        clock.advance(Duration::from_secs(20 * 86_400));
        assert_eq!(
            charge(&s, "dec", card("4111111111111111", "11/23")).await,
            Outcome::Declined { reason: "card expired 11/23".into() }
        );
    }

    #[tokio::test]
    async fn a_resolved_key_can_no_longer_be_charged() {
        let (s, _clock, _dir) = service(1.0);
        let resolved = s.handle(Request::Resolve { key: "late".into() }).await.expect("resolve");
        assert_eq!(resolved, Response::Charge(Outcome::Cancelled));
        assert_eq!(charge(&s, "late", card("4111111111111111", "12/99")).await, Outcome::Cancelled);
    }
}
