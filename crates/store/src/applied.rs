//! The op-id table: the answers of applied mutations, so that a repeat of a request gets
//! the first answer instead of being applied again (docs/protocol.md, "Retries").

use rusqlite::Connection;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::StoreError;

/// A request's operation id: 16 bytes its sender chose at random (the protocol's `OpId`).
/// All zero means none.
pub type OpId = [u8; 16];

/// The answers of applied mutations, by the caller's scope (the account acting, so one
/// account can never read another's answer) and the request's [`OpId`].
pub(crate) const APPLIED_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS applied_ops (
    scope  INTEGER NOT NULL,
    op     BLOB    NOT NULL,
    answer BLOB    NOT NULL,
    at_ms  INTEGER NOT NULL,
    PRIMARY KEY (scope, op)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS applied_ops_by_age ON applied_ops (at_ms);";

/// How long an applied mutation's answer is remembered.
pub const APPLIED_MEMORY_MS: i64 = 24 * 3600 * 1000;

/// Runs the mutation `f` at most once per `(scope, op)`: inside a write job, returns the
/// recorded answer if this op was applied before, else runs `f` and records its answer
/// in the same transaction. Failures are not recorded (they changed nothing, so a
/// repeat may try again). An all-zero `op` is not recorded at all.
///
/// `f`'s answer, refusal included, comes back inside `Ok`; `Err` is the op table's own
/// failure (SQLite, or a recorded answer that does not decode). A job that passes either
/// on as its error has its work undone.
///
/// `now_ms` is the time the answer is recorded at, and answers older than
/// [`APPLIED_MEMORY_MS`] before it are forgotten now and then. It is an argument, not a
/// reading of this machine's clock, so that replicas applying the same command with the
/// same time (the leader's) keep the same table.
pub fn at_most_once<T, E, F>(
    c: &Connection,
    scope: i64,
    op: &OpId,
    now_ms: i64,
    f: F,
) -> Result<Result<T, E>, StoreError>
where
    T: Serialize + DeserializeOwned,
    F: FnOnce(&Connection) -> Result<T, E>,
{
    if op == &[0; 16] {
        return Ok(f(c));
    }
    let recorded: Option<Vec<u8>> = c
        .prepare_cached("SELECT answer FROM applied_ops WHERE scope = ?1 AND op = ?2")
        .and_then(|mut st| {
            use rusqlite::OptionalExtension;
            st.query_row(rusqlite::params![scope, &op[..]], |r| r.get(0)).optional()
        })?;
    if let Some(answer) = recorded {
        return postcard::from_bytes(&answer).map(Ok).map_err(StoreError::CorruptAnswer);
    }
    let answer = match f(c) {
        Ok(answer) => answer,
        refused => return Ok(refused),
    };
    let encoded = postcard::to_allocvec(&answer).map_err(StoreError::Encode)?;
    let now = now_ms;
    c.prepare_cached("INSERT INTO applied_ops (scope, op, answer, at_ms) VALUES (?1, ?2, ?3, ?4)")
        .and_then(|mut st| st.execute(rusqlite::params![scope, &op[..], encoded, now]))?;
    // Forget old answers now and then (about one write in 256), in the same batch.
    if op[0] == 0 {
        c.prepare_cached("DELETE FROM applied_ops WHERE at_ms < ?1")
            .and_then(|mut st| st.execute([now - APPLIED_MEMORY_MS]))?;
    }
    Ok(Ok(answer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Durability, Store, StoreConfig};

    const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS t(k INTEGER PRIMARY KEY, v TEXT NOT NULL);";

    /// Each test runs with both writers: inline (process) and on a thread (machine).
    const BOTH: [Durability; 2] = [Durability::Process, Durability::Machine];

    fn store(dir: &tempfile::TempDir, durability: Durability) -> Store {
        let config = StoreConfig { durability, ..StoreConfig::new(dir.path().join("t.db")) };
        Store::open(&config, SCHEMA).expect("open")
    }

    #[tokio::test]
    async fn a_repeated_op_gets_the_first_answer_and_changes_nothing() {
        for durability in BOTH {
            a_repeated_op_gets_the_first_answer_and_changes_nothing_with(durability).await;
        }
    }

    async fn a_repeated_op_gets_the_first_answer_and_changes_nothing_with(durability: Durability) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(&dir, durability);
        let insert = |scope: i64, op: OpId, k: i64| {
            let store = store.clone();
            async move {
                store
                    .write(move |c| {
                        at_most_once(c, scope, &op, T0, |c| {
                            c.execute("INSERT INTO t VALUES (?1, 'x')", [k])?;
                            Ok::<_, StoreError>(k)
                        })?
                    })
                    .await
            }
        };
        assert_eq!(insert(1, [7; 16], 10).await, Ok(Ok(10)));
        // The repeat would insert 11; it gets the first answer instead.
        assert_eq!(insert(1, [7; 16], 11).await, Ok(Ok(10)));
        // Another scope with the same op is another request.
        assert_eq!(insert(2, [7; 16], 12).await, Ok(Ok(12)));
        let n = store
            .read(|c| c.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0)))
            .await
            .expect("read")
            .expect("count");
        assert_eq!(n, 2);
    }

    /// A connection with the op table and a counter `f` bumps: how many times it ran.
    fn ops_table() -> Connection {
        let c = Connection::open_in_memory().expect("open");
        c.execute_batch(APPLIED_SCHEMA).expect("schema");
        c.execute_batch("CREATE TABLE n(v INTEGER); INSERT INTO n VALUES (0);").expect("n");
        c
    }

    /// The time the tests' answers are recorded at.
    const T0: i64 = 1_800_000_000_000;

    fn bump(c: &Connection) -> rusqlite::Result<i64> {
        c.execute("UPDATE n SET v = v + 1", [])?;
        c.query_row("SELECT v FROM n", [], |r| r.get(0))
    }

    /// [`at_most_once`] with [`bump`]: the op table's answer, and then bump's.
    fn once(c: &Connection, op: &OpId) -> rusqlite::Result<i64> {
        at_most_once(c, 7, op, T0, bump).expect("op table")
    }

    /// Moves the recorded answer of `op` back in time by `age_ms`.
    fn age(c: &Connection, op: &OpId, age_ms: i64) {
        let n = c
            .execute(
                "UPDATE applied_ops SET at_ms = at_ms - ?2 WHERE op = ?1",
                rusqlite::params![&op[..], age_ms],
            )
            .expect("age");
        assert_eq!(n, 1, "one recorded answer");
    }

    /// docs/protocol.md promises that a repeat is recognised for 24 hours.
    #[test]
    fn answers_are_remembered_for_the_24_hours_the_protocol_promises() {
        assert_eq!(APPLIED_MEMORY_MS, 86_400_000);
    }

    #[test]
    fn recorded_answers_are_forgotten_after_their_memory() {
        let c = ops_table();
        // Ops whose first byte is 0 also sweep out answers past their memory.
        let (old, recent, sweep) =
            ([1; 16], [2; 16], [0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
        assert_eq!(once(&c, &old).expect("first"), 1);
        assert_eq!(once(&c, &recent).expect("first"), 2);
        // Repeats get the recorded answers and change nothing.
        assert_eq!(once(&c, &old).expect("repeat"), 1);
        assert_eq!(once(&c, &recent).expect("repeat"), 2);

        // One answer just past its memory, one a minute short of it.
        age(&c, &old, APPLIED_MEMORY_MS + 1_000);
        age(&c, &recent, APPLIED_MEMORY_MS - 60_000);
        assert_eq!(once(&c, &sweep).expect("sweep"), 3);
        // The old op is new again, and runs; the recent one is still remembered.
        assert_eq!(once(&c, &old).expect("forgotten"), 4);
        assert_eq!(once(&c, &recent).expect("remembered"), 2);
        assert_eq!(once(&c, &old).expect("recorded again"), 4);
    }

    /// The boundary, to the millisecond: an answer exactly as old as the memory is still
    /// remembered; one a millisecond older is forgotten at the next sweep.
    #[test]
    fn an_answer_is_remembered_to_the_last_millisecond_of_its_memory() {
        let c = ops_table();
        let (edge, past) = ([1; 16], [2; 16]);
        // First byte 0: sweeps; not all zero: recorded.
        let mut sweep = [3; 16];
        sweep[0] = 0;
        assert_eq!(once(&c, &edge).expect("first"), 1);
        assert_eq!(once(&c, &past).expect("first"), 2);
        age(&c, &edge, APPLIED_MEMORY_MS);
        age(&c, &past, APPLIED_MEMORY_MS + 1);
        assert_eq!(once(&c, &sweep).expect("sweep"), 3);
        assert_eq!(once(&c, &edge).expect("remembered"), 1);
        assert_eq!(once(&c, &past).expect("forgotten, so run again"), 4);
    }

    /// Only an op whose first byte is 0 sweeps (about one in 256), so most writes do not
    /// pay for it; any op is recorded, and the all-zero op (no op id) never is.
    #[test]
    fn only_some_ops_sweep_and_the_zero_op_is_never_recorded() {
        let c = ops_table();
        let (old, other) = ([1; 16], [2; 16]);
        assert_eq!(once(&c, &old).expect("first"), 1);
        age(&c, &old, APPLIED_MEMORY_MS + 1);
        // Not a sweeping op: the old answer is still there.
        assert_eq!(once(&c, &other).expect("other"), 2);
        assert_eq!(once(&c, &old).expect("not swept yet"), 1);
        // No op id: runs every time, recorded never.
        assert_eq!(once(&c, &[0; 16]).expect("zero"), 3);
        assert_eq!(once(&c, &[0; 16]).expect("zero again"), 4);
        let recorded: i64 =
            c.query_row("SELECT count(*) FROM applied_ops", [], |r| r.get(0)).expect("count");
        assert_eq!(recorded, 2);
    }
}
