//! The payments service's writes as decided commands, and the deterministic state machine
//! that applies them to the ledger (crates/replication). The approval decision is taken
//! by the handler that proposes (see [`crate::decision`]): another replica's seed,
//! probability or clock may differ, so the command carries the decision, not the card.

use agora_domain::{Money, UserId};
use agora_proto::ApiError;
use agora_proto::messages::payments::Outcome;
use agora_replication::{Context, StateMachine};
use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use crate::ledger::{self, Entry};

/// A decided write to the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Records `decision` for a charge of `amount` to `payer` under `key`, unless the key
    /// has already been decided; answers the key's outcome. The card is named by its
    /// holder and last four digits: its number never enters the log.
    Charge {
        key: String,
        decision: Outcome,
        amount: Money,
        payer: UserId,
        holder: String,
        last4: String,
    },
    /// The final outcome of `key`: the recorded one, or, for a key never seen, a
    /// cancellation recorded now so that the charge can no longer succeed if it arrives
    /// late; answers the key's outcome.
    Resolve { key: String },
}

/// The payments service's state machine: stateless itself, everything it knows is in the
/// ledger it is given.
#[derive(Debug, Clone, Copy, Default)]
pub struct PaymentsMachine;

impl StateMachine for PaymentsMachine {
    type Command = Command;
    type Output = Outcome;

    fn apply(&self, c: &Connection, command: &Command, ctx: &Context) -> Result<Outcome, ApiError> {
        let key = match command {
            Command::Charge { key, .. } | Command::Resolve { key } => key,
        };
        // The only transition a key has is none → decided, by the insert below (the key
        // is the primary key). A key already decided answers its first decision and
        // changes nothing, so a repeated, late or overtaken command is harmless: a Charge
        // after the Resolve that cancelled its key answers `Cancelled`, and a Resolve
        // after a charge answers the charge.
        if let Some(first) = ledger::outcome_of(c, key)? {
            return Ok(first);
        }
        match command {
            Command::Charge { key, decision, amount, payer, holder, last4 } => {
                ledger::insert(
                    c,
                    &Entry {
                        key,
                        outcome: decision,
                        amount: *amount,
                        payer: *payer,
                        holder,
                        last4,
                        at_ms: ctx.now_ms,
                    },
                )?;
                Ok(decision.clone())
            }
            Command::Resolve { key } => {
                let cancelled = Outcome::Cancelled;
                ledger::insert(
                    c,
                    &Entry {
                        key,
                        outcome: &cancelled,
                        amount: Money::from_cents(0),
                        payer: 0,
                        holder: "-",
                        last4: "",
                        at_ms: ctx.now_ms,
                    },
                )?;
                Ok(cancelled)
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use agora_store::{Store, StoreConfig};
    use tempfile::TempDir;

    use super::*;

    const T0: i64 = 1_800_000_000_000;

    fn fresh() -> (Store, TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Store::open(&StoreConfig::new(dir.path().join("payments.db")), crate::SCHEMA).unwrap();
        (store, dir)
    }

    /// Applies `command` as `Replica::single` does: one job of the store's batch.
    async fn apply(store: &Store, command: &Command, ctx: Context) -> Result<Outcome, ApiError> {
        let command = command.clone();
        agora_replication::store_answer(
            store.write(move |c| PaymentsMachine.apply(c, &command, &ctx)).await,
        )
    }

    /// Every row of the ledger, sorted by key.
    async fn rows(store: &Store) -> Vec<String> {
        store
            .read(|c| {
                let mut st = c.prepare("SELECT * FROM charges ORDER BY key").unwrap();
                let width = st.column_count();
                let rows = st
                    .query_map([], |r| {
                        let values: Vec<rusqlite::types::Value> =
                            (0..width).map(|i| r.get(i)).collect::<Result<_, _>>()?;
                        Ok(format!("{values:?}"))
                    })
                    .unwrap();
                rows.map(Result::unwrap).collect()
            })
            .await
            .unwrap()
    }

    fn approved(reference: &str) -> Outcome {
        Outcome::Approved {
            authorization: reference.into(),
            amount: Money::from_cents(500),
            payer: 7,
        }
    }

    fn charge(key: &str, decision: Outcome) -> Command {
        Command::Charge {
            key: key.into(),
            decision,
            amount: Money::from_cents(500),
            payer: 7,
            holder: "Bea".into(),
            last4: "1111".into(),
        }
    }

    fn resolve(key: &str) -> Command {
        Command::Resolve { key: key.into() }
    }

    #[tokio::test]
    async fn the_same_commands_give_the_same_rows_and_answers() {
        let declined = Outcome::Declined { reason: "declined by the issuer".into() };
        let history = [
            charge("k1", approved("A1B2C3")),
            // The same key decided otherwise on another proposer: the first decision holds.
            charge("k1", declined.clone()),
            charge("k2", declined.clone()),
            resolve("k3"),
            charge("k3", approved("FFFFFF")), // arrives after its cancellation
            resolve("k1"),
            resolve("k2"),
        ];
        let mut runs = Vec::new();
        for _ in 0..2 {
            let (store, dir) = fresh();
            let mut answers = Vec::new();
            for (i, command) in history.iter().enumerate() {
                let ctx = Context { index: i as u64 + 1, now_ms: T0 + i as i64 * 1000 };
                answers.push(apply(&store, command, ctx).await.unwrap());
            }
            runs.push((answers, rows(&store).await, store, dir));
        }
        assert_eq!(runs[0].0, runs[1].0, "the same answers");
        assert_eq!(runs[0].1, runs[1].1, "the same rows");
        assert_eq!(
            runs[0].0,
            vec![
                approved("A1B2C3"),
                approved("A1B2C3"),
                declined.clone(),
                Outcome::Cancelled,
                Outcome::Cancelled,
                approved("A1B2C3"),
                declined,
            ]
        );
        // One row per key, stamped with the time of the command that decided it.
        let at: Vec<i64> = runs[0]
            .2
            .read(|c| {
                let mut st = c.prepare("SELECT at_ms FROM charges ORDER BY key").unwrap();
                st.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
            })
            .await
            .unwrap();
        assert_eq!(at, vec![T0, T0 + 2000, T0 + 3000]);
    }
}
