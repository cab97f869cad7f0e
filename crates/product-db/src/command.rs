//! The product database's writes as decided commands, and the deterministic state machine
//! that applies them (crates/replication). The handler checks a request and proposes one
//! of these; [`ProductMachine::apply`] changes the file the same way on every replica: the
//! time comes from the [`Context`], every other value from the command or the file.

use agora_domain::{CartLine, ItemId, Money, NewItem, UserId};
use agora_proto::ApiError;
use agora_proto::messages::OpId;
use agora_proto::messages::product::Response;
use agora_replication::{Context, StateMachine, store_answer, store_error};
use agora_store::{Op, at_most_once};
use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use crate::{feedback, items, reserve};

/// A decided write to the product database. Values are checked for form before they are
/// proposed; rules that depend on the state (whose item it is, how many units are left,
/// where a reservation stands) are checked when the command is applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Lists `item` (validated) for `seller_id`, once per `op` in the seller's scope of
    /// recorded answers; answers `ItemId`.
    RegisterItem { op: OpId, seller_id: UserId, item: NewItem },
    /// Sets the price (checked) of one of the seller's items; answers `Done`.
    ChangePrice { seller_id: UserId, item: ItemId, price: Money },
    /// Takes `quantity` (checked) units of one of the seller's items off sale, once per
    /// `op` in the seller's scope; answers `Quantity`, the units left.
    RemoveUnits { op: OpId, seller_id: UserId, item: ItemId, quantity: u32 },
    /// A buyer's vote on an item, replacing the buyer's earlier one; answers `Feedback`.
    Vote { buyer_id: UserId, item: ItemId, thumbs_up: bool },
    /// Takes the lines' units off sale for `purchase`, all or none; answers `Reserved`.
    Reserve { purchase: u64, lines: Vec<CartLine> },
    /// Puts `purchase`'s units back on sale, or leaves a tombstone; answers `Done`.
    Release { purchase: u64 },
    /// Marks `purchase`'s units as sold; answers `Done`.
    Confirm { purchase: u64 },
    /// The sweep of reservations no purchase claims (`Request::Held`): `open` and `next`
    /// are the coordinator's, read together; answers `Released`.
    ReleaseUnclaimed { open: Vec<u64>, next: u64 },
}

/// The op of a request of seller `seller` asking `request`: scoped by the seller, as
/// earlier releases scoped it too.
fn seller_op(op: &OpId, seller: UserId, request: &impl Serialize) -> Result<Op, ApiError> {
    let scope = [&b"seller\0"[..], &seller.to_be_bytes()].concat();
    Op::new(*op, scope, seller as i64, request, seller as i64).map_err(store_error)
}

/// The product database's state machine: stateless itself, everything it knows is in the
/// connection it is given.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProductMachine;

impl StateMachine for ProductMachine {
    type Command = Command;
    type Output = Response;

    fn apply(
        &self,
        c: &Connection,
        command: &Command,
        ctx: &Context,
    ) -> Result<Response, ApiError> {
        // Op ids are recorded per seller: the caller as this database knows it (it never
        // sees sessions; a seller's sessions are one person's), and the account whose
        // places they take. A repeat must ask the same. The answers `at_most_once` records
        // keep the types they had before commands existed (an `ItemId`, a `u32`), so
        // answers recorded by an earlier version still decode.
        match command {
            Command::RegisterItem { op, seller_id, item } => {
                let op = seller_op(op, *seller_id, &("RegisterItem", item))?;
                let id =
                    store_answer(at_most_once(c, &op, ctx.now_ms, ApiError::reused_op, |c| {
                        items::register(c, *seller_id, item, ctx.now_ms)
                    }))?;
                Ok(Response::ItemId(id))
            }
            Command::ChangePrice { seller_id, item, price } => {
                items::change_price(c, *seller_id, *item, *price)?;
                Ok(Response::Done)
            }
            Command::RemoveUnits { op, seller_id, item, quantity } => {
                let op = seller_op(op, *seller_id, &("RemoveUnits", item, quantity))?;
                let left =
                    store_answer(at_most_once(c, &op, ctx.now_ms, ApiError::reused_op, |c| {
                        items::remove_units(c, *seller_id, *item, *quantity)
                    }))?;
                Ok(Response::Quantity(left))
            }
            Command::Vote { buyer_id, item, thumbs_up } => {
                Ok(Response::Feedback(feedback::vote(c, *buyer_id, *item, *thumbs_up)?))
            }
            Command::Reserve { purchase, lines } => {
                Ok(Response::Reserved(reserve::reserve(c, *purchase, lines, ctx.now_ms)?))
            }
            Command::Release { purchase } => {
                reserve::release(c, *purchase)?;
                Ok(Response::Done)
            }
            Command::Confirm { purchase } => {
                reserve::confirm(c, *purchase)?;
                Ok(Response::Done)
            }
            Command::ReleaseUnclaimed { open, next } => {
                Ok(Response::Released(reserve::release_unclaimed(c, open, *next, ctx.now_ms)?))
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use agora_domain::Condition;
    use agora_proto::ErrorCode;
    use agora_store::{Store, StoreConfig};
    use tempfile::TempDir;

    use super::*;
    use crate::reserve::{CONFIRMED, RELEASED, RESERVED, UNCLAIMED_AFTER_MS};

    /// The proposer's time of the first command; later ones are a second apart.
    const T0: i64 = 1_800_000_000_000;
    const SELLER: UserId = 1;
    /// The first two items registered: 10 pens, 5 inks, both in category 3.
    const PEN: ItemId = ItemId { category: 3, number: 1 };
    const INK: ItemId = ItemId { category: 3, number: 2 };

    /// A fresh product database, opened the way the server opens it.
    fn fresh() -> (Store, TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Store::open(&StoreConfig::new(dir.path().join("product.db")), crate::SCHEMA).unwrap();
        (store, dir)
    }

    /// Applies `command` as `Replica::single` does: one job of the store's batch, its
    /// writes undone if it answers an error.
    async fn apply(store: &Store, command: &Command, ctx: Context) -> Result<Response, ApiError> {
        let command = command.clone();
        store_answer(store.write(move |c| ProductMachine.apply(c, &command, &ctx)).await)
    }

    async fn at(store: &Store, now_ms: i64, command: Command) -> Result<Response, ApiError> {
        apply(store, &command, Context { index: 0, now_ms }).await
    }

    /// Every row of every table (the search index and SQLite's AUTOINCREMENT counters
    /// included), table by table, rows sorted.
    async fn rows(store: &Store) -> Vec<(String, Vec<String>)> {
        store
            .read(|c| {
                let mut tables = c
                    .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
                    .unwrap();
                let names: Vec<String> =
                    tables.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
                names
                    .into_iter()
                    .map(|name| {
                        let mut st = c.prepare(&format!("SELECT * FROM \"{name}\"")).unwrap();
                        let width = st.column_count();
                        let mut all: Vec<String> = st
                            .query_map([], |r| {
                                let values: Vec<rusqlite::types::Value> =
                                    (0..width).map(|i| r.get(i)).collect::<Result<_, _>>()?;
                                Ok(format!("{values:?}"))
                            })
                            .unwrap()
                            .map(Result::unwrap)
                            .collect();
                        all.sort();
                        (name, all)
                    })
                    .collect()
            })
            .await
            .unwrap()
    }

    async fn units_left(store: &Store, id: ItemId) -> u32 {
        store.read(move |c| items::item(c, id)).await.unwrap().unwrap().quantity
    }

    async fn reservation_state(store: &Store, purchase: u64) -> Option<i64> {
        store
            .read(move |c| {
                use rusqlite::OptionalExtension;
                c.query_row(
                    "SELECT state FROM reservations WHERE purchase = ?1",
                    [purchase as i64],
                    |r| r.get(0),
                )
                .optional()
                .unwrap()
            })
            .await
            .unwrap()
    }

    fn new_item(name: &str, keywords: &[&str], quantity: u32) -> NewItem {
        NewItem {
            name: name.into(),
            category: 3,
            keywords: keywords.iter().map(|k| k.to_string()).collect(),
            condition: Condition::New,
            price: Money::from_cents(150),
            quantity,
        }
    }

    fn register(op: u8, name: &str, keywords: &[&str], quantity: u32) -> Command {
        Command::RegisterItem {
            op: [op; 16],
            seller_id: SELLER,
            item: new_item(name, keywords, quantity),
        }
    }

    fn reserve(purchase: u64, lines: &[(ItemId, u32)]) -> Command {
        let lines = lines.iter().map(|&(item, quantity)| CartLine { item, quantity }).collect();
        Command::Reserve { purchase, lines }
    }

    /// A store holding 10 pens and 5 inks of [`SELLER`].
    async fn with_pens_and_ink() -> (Store, TempDir) {
        let (store, dir) = fresh();
        at(&store, T0, register(1, "Pen", &["pen"], 10)).await.unwrap();
        at(&store, T0, register(2, "Ink", &["ink", "pen"], 5)).await.unwrap();
        (store, dir)
    }

    /// Every kind of command, refusals and repeats included, each with its own context.
    fn history() -> Vec<(Command, Context)> {
        let commands = vec![
            register(1, "Pen", &["pen"], 10),
            register(2, "Ink", &["ink", "pen"], 5),
            register(1, "Pen", &["pen"], 10), // a repeated op: the first answer, no new item
            Command::ChangePrice { seller_id: SELLER, item: PEN, price: Money::from_cents(175) },
            Command::ChangePrice { seller_id: 2, item: PEN, price: Money::from_cents(1) },
            Command::RemoveUnits { op: [3; 16], seller_id: SELLER, item: PEN, quantity: 1 },
            Command::RemoveUnits { op: [3; 16], seller_id: SELLER, item: PEN, quantity: 1 },
            Command::RemoveUnits { op: [4; 16], seller_id: SELLER, item: INK, quantity: 50 },
            Command::Vote { buyer_id: 7, item: PEN, thumbs_up: true },
            Command::Vote { buyer_id: 8, item: PEN, thumbs_up: false },
            Command::Vote { buyer_id: 7, item: PEN, thumbs_up: false },
            reserve(1, &[(PEN, 2), (INK, 1), (PEN, 1)]),
            reserve(1, &[(PEN, 9)]), // a repeat: the first lines
            reserve(2, &[(INK, 4)]),
            reserve(3, &[(INK, 1)]), // not enough left: nothing held
            Command::Confirm { purchase: 1 },
            Command::Release { purchase: 2 },
            Command::Release { purchase: 4 }, // a tombstone
            reserve(4, &[(PEN, 1)]),          // refused by it
            reserve(5, &[(PEN, 1)]),
            reserve(60, &[(PEN, 1)]), // an id the coordinator has not given
            // Withdrawn: its units held by purchase 5 stay off sale when it is released.
            Command::RemoveUnits { op: [5; 16], seller_id: SELLER, item: PEN, quantity: 4 },
            Command::ReleaseUnclaimed { open: vec![], next: 10 },
            Command::ReleaseUnclaimed { open: vec![], next: 10 },
            Command::Confirm { purchase: 2 },
            Command::Release { purchase: 1 },
        ];
        let mut history: Vec<(Command, Context)> = commands
            .into_iter()
            .enumerate()
            .map(|(i, command)| {
                (command, Context { index: i as u64 + 1, now_ms: T0 + i as i64 * 1000 })
            })
            .collect();
        // The sweep again, once the never-given id has been held long enough.
        let late = T0 + UNCLAIMED_AFTER_MS + 60_000;
        let index = history.len() as u64 + 1;
        history.push((
            Command::ReleaseUnclaimed { open: vec![], next: 10 },
            Context { index, now_ms: late },
        ));
        history
    }

    #[tokio::test]
    async fn the_same_commands_give_the_same_rows_and_answers() {
        let mut runs = Vec::new();
        for _ in 0..2 {
            let (store, dir) = fresh();
            let mut answers = Vec::new();
            for (command, ctx) in history() {
                answers.push(apply(&store, &command, ctx).await);
            }
            runs.push((answers, rows(&store).await, store, dir));
        }
        let (second, first) = (runs.pop().unwrap(), runs.pop().unwrap());
        assert_eq!(first.0, second.0, "the same answers");
        assert_eq!(first.1, second.1, "the same rows");

        // The history did what it says, so the comparison covered every kind of write.
        let answers = &first.0;
        assert_eq!(answers[2], answers[0], "a repeated op answers the first time's answer");
        assert_eq!(answers[4].as_ref().unwrap_err().code, ErrorCode::NotYourItem);
        assert_eq!(answers[6], Ok(Response::Quantity(9)));
        assert_eq!(answers[14].as_ref().unwrap_err().code, ErrorCode::NotEnoughUnits);
        assert_eq!(answers[18].as_ref().unwrap_err().code, ErrorCode::Aborted);
        assert_eq!(answers[22], Ok(Response::Released(1)), "purchase 5, below next");
        assert_eq!(answers[23], Ok(Response::Released(0)));
        assert_eq!(answers[24].as_ref().unwrap_err().code, ErrorCode::Aborted);
        assert_eq!(answers[25].as_ref().unwrap_err().code, ErrorCode::InvalidArgument);
        assert_eq!(answers[26], Ok(Response::Released(1)), "purchase 60, held long enough");
        let store = &first.2;
        assert_eq!(units_left(store, PEN).await, 0, "withdrawn: released units stay off sale");
        assert_eq!(units_left(store, INK).await, 4, "purchase 2's units came back");

        // The time in every row is the proposer's, from the context.
        let times = store
            .read(|c| {
                let listed: i64 = c
                    .query_row("SELECT listed_ms FROM items WHERE number = 2", [], |r| r.get(0))
                    .unwrap();
                let reserved: i64 = c
                    .query_row(
                        "SELECT reserved_ms FROM reservations WHERE purchase = 60",
                        [],
                        |r| r.get(0),
                    )
                    .unwrap();
                let answered: i64 = c
                    .query_row("SELECT max(at_ms) FROM applied_requests", [], |r| r.get(0))
                    .unwrap();
                (listed, reserved, answered)
            })
            .await
            .unwrap();
        assert_eq!(times, (T0 + 1000, T0 + 20_000, T0 + 21_000));
    }

    /// A Release that overtakes its Reserve (issue 17): the tombstone refuses the Reserve.
    #[tokio::test]
    async fn a_release_tombstone_refuses_a_late_reserve() {
        let (store, _dir) = with_pens_and_ink().await;
        assert_eq!(at(&store, T0, Command::Release { purchase: 9 }).await, Ok(Response::Done));
        assert_eq!(reservation_state(&store, 9).await, Some(RELEASED));
        let before = rows(&store).await;
        let late = at(&store, T0 + 1, reserve(9, &[(PEN, 2)])).await.unwrap_err();
        assert_eq!(late.code, ErrorCode::Aborted);
        assert_eq!(units_left(&store, PEN).await, 10, "nothing taken off sale");
        // The Release again, and the Reserve again: the same answers, nothing changes.
        assert_eq!(at(&store, T0 + 2, Command::Release { purchase: 9 }).await, Ok(Response::Done));
        assert_eq!(at(&store, T0 + 3, reserve(9, &[(PEN, 2)])).await, Err(late));
        assert_eq!(rows(&store).await, before);
    }

    /// Issue 17's "confirm after release": a released purchase cannot become a sale, and
    /// its units come back once however often Release is applied.
    #[tokio::test]
    async fn confirm_after_release_is_refused_and_the_units_come_back_once() {
        let (store, _dir) = with_pens_and_ink().await;
        at(&store, T0, reserve(1, &[(PEN, 3)])).await.unwrap();
        assert_eq!(units_left(&store, PEN).await, 7);
        assert_eq!(at(&store, T0, Command::Release { purchase: 1 }).await, Ok(Response::Done));
        assert_eq!(units_left(&store, PEN).await, 10);
        let before = rows(&store).await;
        for _ in 0..2 {
            let refused = at(&store, T0, Command::Confirm { purchase: 1 }).await.unwrap_err();
            assert_eq!(refused.code, ErrorCode::Aborted);
            assert_eq!(at(&store, T0, Command::Release { purchase: 1 }).await, Ok(Response::Done));
        }
        assert_eq!(rows(&store).await, before, "units back once, still released");
        assert_eq!(reservation_state(&store, 1).await, Some(RELEASED));
    }

    /// A sold purchase stays sold: a late Release is refused and gives nothing back.
    #[tokio::test]
    async fn release_after_confirm_is_refused_and_the_units_stay_sold() {
        let (store, _dir) = with_pens_and_ink().await;
        at(&store, T0, reserve(1, &[(PEN, 3)])).await.unwrap();
        assert_eq!(at(&store, T0, Command::Confirm { purchase: 1 }).await, Ok(Response::Done));
        let before = rows(&store).await;
        assert_eq!(at(&store, T0, Command::Confirm { purchase: 1 }).await, Ok(Response::Done));
        for _ in 0..2 {
            let refused = at(&store, T0, Command::Release { purchase: 1 }).await.unwrap_err();
            assert_eq!(refused.code, ErrorCode::InvalidArgument);
        }
        // Nor does the sweep touch it, whatever the coordinator says.
        assert_eq!(
            at(
                &store,
                T0 + UNCLAIMED_AFTER_MS,
                Command::ReleaseUnclaimed { open: vec![], next: 2 }
            )
            .await,
            Ok(Response::Released(0))
        );
        assert_eq!(rows(&store).await, before);
        assert_eq!(reservation_state(&store, 1).await, Some(CONFIRMED));
        assert_eq!(units_left(&store, PEN).await, 7);
    }

    /// A Reserve applied again (a retry, a log entry handed over twice) answers the first
    /// one's lines, at the first one's prices, and takes nothing more.
    #[tokio::test]
    async fn a_repeated_reserve_answers_the_first_lines_and_takes_nothing() {
        let (store, _dir) = with_pens_and_ink().await;
        let first = at(&store, T0, reserve(1, &[(PEN, 2), (INK, 1)])).await.unwrap();
        let price = Money::from_cents(999);
        at(&store, T0, Command::ChangePrice { seller_id: SELLER, item: PEN, price }).await.unwrap();
        let before = rows(&store).await;
        assert_eq!(at(&store, T0 + 5, reserve(1, &[(PEN, 7)])).await, Ok(first));
        assert_eq!(rows(&store).await, before);
        assert_eq!(reservation_state(&store, 1).await, Some(RESERVED));
        assert_eq!((units_left(&store, PEN).await, units_left(&store, INK).await), (8, 4));
    }
}
