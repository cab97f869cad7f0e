//! The op-id table: the answers of applied mutations, so that a repeat of a request gets
//! the first answer instead of being applied again (docs/protocol.md, "Retries").
//!
//! An op id means something only inside its caller's **scope** (a session, a role and
//! username for a sign-up, a seller): the same 16 bytes sent by anyone else are another
//! request. A repeat must also be the same **request**: the table keeps a digest of what
//! the first one asked, and a different request under a recorded op id is refused rather
//! than answered with someone else's answer or applied. And each **owner** (the account
//! the op is for) keeps at most [`APPLIED_PER_OWNER`] answers: its newest op takes the
//! place of its oldest, so that no account can make the table grow without bound.
//!
//! Earlier releases kept `applied_ops (scope INTEGER, op, answer, at_ms)`, scoped by
//! account id alone and without a digest. [`upgrade`] moves its rows here once, when the
//! file is opened, under a legacy scope ([`Op::legacy_scope`]) that a repeat of such a
//! request still finds for the 24 hours its answer is remembered; they are never refused
//! for their request, which was not recorded.

use rusqlite::{Connection, OptionalExtension};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::error::StoreError;

/// A request's operation id: 16 bytes its sender chose at random (the protocol's `OpId`).
/// All zero means none.
pub type OpId = [u8; 16];

/// The answers of applied mutations, by the caller's scope and the request's [`OpId`],
/// with the digest of the request, its owner and its place among the owner's
/// ([`APPLIED_PER_OWNER`] places, reused oldest first).
pub(crate) const APPLIED_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS applied_requests (
    scope   BLOB    NOT NULL,
    op      BLOB    NOT NULL,
    request BLOB    NOT NULL,
    answer  BLOB    NOT NULL,
    at_ms   INTEGER NOT NULL,
    owner   INTEGER NOT NULL,
    slot    INTEGER,
    PRIMARY KEY (scope, op)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS applied_requests_by_age ON applied_requests (at_ms);
CREATE UNIQUE INDEX IF NOT EXISTS applied_requests_by_owner ON applied_requests (owner, slot);
CREATE TABLE IF NOT EXISTS applied_owners (
    owner INTEGER PRIMARY KEY,
    next  INTEGER NOT NULL
);";

/// How long an applied mutation's answer is remembered.
pub const APPLIED_MEMORY_MS: i64 = 24 * 3600 * 1000;

/// The most answers remembered per owner: an account's newest op id takes the place of
/// its oldest past this. Far more than any client has in flight, so only a client that
/// resends an op after ten thousand newer ones of the same account can see it applied
/// again.
pub const APPLIED_PER_OWNER: i64 = 10_000;

/// What [`at_most_once`] needs to know of a request besides its answer.
#[derive(Debug, Clone)]
pub struct Op {
    /// The request's op id.
    pub id: OpId,
    /// The caller's scope, in which the op id means this request (a session's key, a
    /// role and username, a seller id: bytes that differ for different callers).
    pub scope: Vec<u8>,
    /// The scope earlier releases recorded this kind of request under (the acting
    /// account's id, 0 for sign-ups, -1 for logouts), so that their answers are still
    /// found after an upgrade.
    pub legacy: i64,
    /// SHA-256 of what the request asks (its kind and arguments, never its op id): a
    /// repeat must ask the same.
    pub request: [u8; 32],
    /// The account whose places the answer takes (0 for none).
    pub owner: i64,
}

impl Op {
    /// `id` in `scope`, asking `request` (any serialisable value that names the kind of
    /// request and its arguments), for `owner`, recorded by earlier releases under
    /// `legacy`.
    pub fn new(
        id: OpId,
        scope: impl Into<Vec<u8>>,
        legacy: i64,
        request: &impl Serialize,
        owner: i64,
    ) -> Result<Op, StoreError> {
        let encoded = postcard::to_allocvec(request).map_err(StoreError::Encode)?;
        let request = Sha256::digest(encoded).into();
        Ok(Op { id, scope: scope.into(), legacy, request, owner })
    }

    /// How earlier releases' answers are found: their integer scope, as [`upgrade`]
    /// wrote it.
    pub fn legacy_scope(&self) -> Vec<u8> {
        legacy_scope(self.legacy)
    }
}

fn legacy_scope(scope: i64) -> Vec<u8> {
    format!("legacy:{scope}").into_bytes()
}

/// Runs the mutation `f` at most once per op (scope and op id): inside a write job,
/// returns the recorded answer if this op was applied before, else runs `f` and records
/// its answer in the same transaction. Failures are not recorded (they changed nothing,
/// so a repeat may try again). An all-zero op id is not recorded at all. A recorded op id
/// sent with another request than the one recorded is answered `reused()` and runs
/// nothing.
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
    op: &Op,
    now_ms: i64,
    reused: impl FnOnce() -> E,
    f: F,
) -> Result<Result<T, E>, StoreError>
where
    T: Serialize + DeserializeOwned,
    F: FnOnce(&Connection) -> Result<T, E>,
{
    if op.id == [0; 16] {
        return Ok(f(c));
    }
    let recorded: Option<(Vec<u8>, Vec<u8>)> = c
        .prepare_cached(
            "SELECT request, answer FROM applied_requests \
             WHERE op = ?1 AND scope IN (?2, ?3) ORDER BY scope = ?2 DESC LIMIT 1",
        )
        .and_then(|mut st| {
            let params = rusqlite::params![&op.id[..], &op.scope, op.legacy_scope()];
            st.query_row(params, |r| Ok((r.get(0)?, r.get(1)?))).optional()
        })?;
    if let Some((request, answer)) = recorded {
        // An empty digest is an earlier release's row, which recorded none.
        if !request.is_empty() && request != op.request {
            return Ok(Err(reused()));
        }
        return postcard::from_bytes(&answer).map(Ok).map_err(StoreError::CorruptAnswer);
    }
    let answer = match f(c) {
        Ok(answer) => answer,
        refused => return Ok(refused),
    };
    let encoded = postcard::to_allocvec(&answer).map_err(StoreError::Encode)?;
    // The owner's next place, taking it from the owner's oldest answer once all are used.
    let next: i64 = c
        .prepare_cached(
            "INSERT INTO applied_owners (owner, next) VALUES (?1, 1) \
             ON CONFLICT (owner) DO UPDATE SET next = next + 1 RETURNING next",
        )
        .and_then(|mut st| st.query_row([op.owner], |r| r.get(0)))?;
    let slot = next.rem_euclid(APPLIED_PER_OWNER);
    c.prepare_cached("DELETE FROM applied_requests WHERE owner = ?1 AND slot = ?2")
        .and_then(|mut st| st.execute([op.owner, slot]))?;
    c.prepare_cached(
        "INSERT INTO applied_requests (scope, op, request, answer, at_ms, owner, slot) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut st| {
        st.execute(rusqlite::params![
            &op.scope,
            &op.id[..],
            &op.request[..],
            encoded,
            now_ms,
            op.owner,
            slot
        ])
    })?;
    // Forget old answers now and then (about one write in 256), in the same batch.
    if op.id[0] == 0 {
        c.prepare_cached("DELETE FROM applied_requests WHERE at_ms < ?1")
            .and_then(|mut st| st.execute([now_ms - APPLIED_MEMORY_MS]))?;
    }
    Ok(Ok(answer))
}

/// Moves the op-id table of a file written by an earlier release (`applied_ops`, scoped
/// by an integer, no digest) into today's, in the caller's transaction, and drops it.
/// Returns how many answers moved. Its answers keep their time, so they are forgotten
/// when they would have been; they take no owner's place.
pub(crate) fn upgrade(c: &Connection) -> rusqlite::Result<usize> {
    let old: Option<String> = c
        .query_row(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'applied_ops'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if old.is_none() {
        return Ok(0);
    }
    let moved = c.execute(
        "INSERT OR IGNORE INTO applied_requests (scope, op, request, answer, at_ms, owner, slot) \
         SELECT CAST('legacy:' || scope AS BLOB), op, x'', answer, at_ms, scope, NULL \
         FROM applied_ops",
        [],
    )?;
    c.execute_batch("DROP TABLE applied_ops")?;
    Ok(moved)
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

    /// The op `id` in scope `scope` asking `request`, for owner 1, legacy scope `scope`.
    fn op(id: &OpId, scope: i64, request: &str) -> Op {
        Op::new(*id, scope.to_be_bytes().to_vec(), scope, &request, 1).expect("op")
    }

    /// What a reused op id is answered in these tests.
    const REUSED: i64 = -99;

    #[tokio::test]
    async fn a_repeated_op_gets_the_first_answer_and_changes_nothing() {
        for durability in BOTH {
            a_repeated_op_gets_the_first_answer_and_changes_nothing_with(durability).await;
        }
    }

    async fn a_repeated_op_gets_the_first_answer_and_changes_nothing_with(durability: Durability) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(&dir, durability);
        let insert = |scope: i64, id: OpId, k: i64| {
            let store = store.clone();
            async move {
                store
                    .write(move |c| {
                        let op = op(&id, scope, "insert");
                        at_most_once(
                            c,
                            &op,
                            T0,
                            || StoreError::CommitFailed,
                            |c| {
                                c.execute("INSERT INTO t VALUES (?1, 'x')", [k])?;
                                Ok::<_, StoreError>(k)
                            },
                        )?
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

    /// [`at_most_once`] with [`bump`] in scope 7 asking "bump": the op table's answer, and
    /// then bump's.
    fn once(c: &Connection, id: &OpId) -> rusqlite::Result<i64> {
        at_most_once(c, &op(id, 7, "bump"), T0, || rusqlite::Error::InvalidQuery, bump)
            .expect("op table")
    }

    /// Moves the recorded answer of `op` back in time by `age_ms`.
    fn age(c: &Connection, op: &OpId, age_ms: i64) {
        let n = c
            .execute(
                "UPDATE applied_requests SET at_ms = at_ms - ?2 WHERE op = ?1",
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
            c.query_row("SELECT count(*) FROM applied_requests", [], |r| r.get(0)).expect("count");
        assert_eq!(recorded, 2);
    }

    /// The same op id with another request in the same scope is refused and runs
    /// nothing; in another scope it is another request.
    #[test]
    fn a_recorded_op_id_sent_with_another_request_is_refused() {
        let c = ops_table();
        let run = |scope: i64, request: &str| {
            let op = op(&[5; 16], scope, request);
            at_most_once(&c, &op, T0, || REUSED, |c| bump(c).map_err(|_| 0)).expect("op table")
        };
        assert_eq!(run(7, "add 3:1 x2"), Ok(1));
        assert_eq!(run(7, "add 3:1 x2"), Ok(1), "the same request: the first answer");
        assert_eq!(run(7, "add 3:1 x9"), Err(REUSED), "another request: refused");
        assert_eq!(run(8, "add 3:1 x9"), Ok(2), "another caller's op");
        let bumped: i64 = c.query_row("SELECT v FROM n", [], |r| r.get(0)).expect("n");
        assert_eq!(bumped, 2);
    }

    /// An owner keeps at most [`APPLIED_PER_OWNER`] answers: its newest takes the place of
    /// its oldest, and another owner's are untouched.
    #[test]
    fn each_owner_keeps_at_most_its_quota_of_answers() {
        let c = ops_table();
        // Op `n`: its number in bytes 1 to 4, never sweeping (first byte 1).
        let id = |n: u32| {
            let mut id = [9; 16];
            id[1..5].copy_from_slice(&n.to_be_bytes());
            id[0] = 1;
            id
        };
        let record = |owner: i64, n: u32| {
            let op = Op::new(id(n), owner.to_be_bytes().to_vec(), owner, &n, owner).expect("op");
            at_most_once(&c, &op, T0, || REUSED, |_| Ok::<_, i64>(n)).expect("op table")
        };
        let quota = APPLIED_PER_OWNER as u32;
        assert_eq!(record(2, 0), Ok(0));
        for n in 0..quota + 5 {
            assert_eq!(record(1, n), Ok(n));
        }
        let count = |owner: i64| -> i64 {
            c.query_row("SELECT count(*) FROM applied_requests WHERE owner = ?1", [owner], |r| {
                r.get(0)
            })
            .expect("count")
        };
        assert_eq!(count(1), APPLIED_PER_OWNER, "bounded");
        assert_eq!(count(2), 1, "another owner's answer stays");
        // The newest are remembered; the five oldest are forgotten, so they run again (each
        // taking the place of the oldest remembered then: looked at last).
        let ran = std::cell::Cell::new(false);
        for (n, remembered) in [(quota + 4, true), (5, true), (0, false), (4, false)] {
            ran.set(false);
            let op = Op::new(id(n), 1i64.to_be_bytes().to_vec(), 1, &n, 1).expect("op");
            let answer = at_most_once(
                &c,
                &op,
                T0,
                || REUSED,
                |_| {
                    ran.set(true);
                    Ok::<_, i64>(n)
                },
            );
            assert_eq!(answer.expect("op table"), Ok(n));
            assert_eq!(ran.get(), !remembered, "op {n}");
        }
    }

    /// A file of the previous release: its op table moves over once, and a repeat of an
    /// op it recorded is still answered from it, whatever the request (none was kept).
    #[test]
    fn an_earlier_releases_op_table_moves_over_and_its_answers_still_count() {
        let c = Connection::open_in_memory().expect("open");
        c.execute_batch(
            "CREATE TABLE applied_ops (scope INTEGER NOT NULL, op BLOB NOT NULL, \
             answer BLOB NOT NULL, at_ms INTEGER NOT NULL, PRIMARY KEY (scope, op)) \
             WITHOUT ROWID;
             CREATE TABLE n(v INTEGER); INSERT INTO n VALUES (0);",
        )
        .expect("old schema");
        let answer = postcard::to_allocvec(&41i64).expect("encode");
        c.execute(
            "INSERT INTO applied_ops VALUES (7, ?1, ?2, ?3)",
            rusqlite::params![&[4u8; 16][..], answer, T0],
        )
        .expect("old row");
        c.execute_batch(APPLIED_SCHEMA).expect("schema");
        assert_eq!(upgrade(&c).expect("upgrade"), 1);
        assert_eq!(upgrade(&c).expect("again"), 0, "once");
        let gone: Option<String> = c
            .query_row("SELECT name FROM sqlite_master WHERE name = 'applied_ops'", [], |r| {
                r.get(0)
            })
            .optional()
            .expect("query");
        assert_eq!(gone, None);
        // Its scope was account 7; today's scope differs, the legacy one finds it.
        let id = [4u8; 16];
        let op = Op::new(id, b"session-of-7".to_vec(), 7, &"anything", 7).expect("op");
        let answer = at_most_once(&c, &op, T0, || REUSED, |c| bump(c).map_err(|_| 0));
        assert_eq!(answer.expect("op table"), Ok(41), "the recorded answer");
        // Another account's legacy scope does not.
        let op = Op::new(id, b"session-of-8".to_vec(), 8, &"anything", 8).expect("op");
        let answer = at_most_once(&c, &op, T0, || REUSED, |c| bump(c).map_err(|_| 0));
        assert_eq!(answer.expect("op table"), Ok(1), "run: another caller");
    }
}
