//! The state machine openraft drives: the database's [`StateMachine`] over its
//! [`Store`], with the last applied log id and membership kept in the database file
//! itself, and snapshots that are copies of that file.
//!
//! - **Apply**: a run of entries is one job of the store's write path. Each command runs
//!   in a savepoint of its own, so a refusal undoes only itself; the applied log id and
//!   membership are written last, in the same transaction, so the file always says
//!   exactly which entries it holds.
//! - **Build a snapshot**: `VACUUM INTO` a new file (a consistent copy, applied state
//!   included), fsync it, rename it over `snapshot.db`.
//! - **Install a snapshot**: the received file is fsynced, attached to a connection of
//!   our own on a blocking thread, and every table of it copied into the live database
//!   in one write transaction: the store stays open and its readers see either the old
//!   state or the new one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use agora_proto::ApiError;
use agora_store::Store;
use futures_util::TryStreamExt;
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use rusqlite::{Connection, OptionalExtension, params};

use crate::types::{
    Answers, Entry, LogId, Snapshot, SnapshotFile, SnapshotMeta, StoredMembership, TypeConfig,
};
use crate::{Context, StateMachine};

/// The table this crate keeps inside the database file: one row, the state the file's
/// contents correspond to.
const APPLIED_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS raft_applied (
    id         INTEGER PRIMARY KEY CHECK (id = 0),
    log_id     BLOB NOT NULL,
    membership BLOB NOT NULL
);";

type Membership = StoredMembership;

/// A database's [`StateMachine`] with its commands and outputs as bytes, so that the
/// group's machinery is written once for every database.
pub(crate) trait Apply: Send + Sync + 'static {
    fn apply(&self, conn: &Connection, command: &[u8], ctx: &Context) -> Result<Vec<u8>, ApiError>;
}

/// Adapts a typed [`StateMachine`] to [`Apply`].
pub(crate) struct Typed<M>(pub Arc<M>);

impl<M: StateMachine> Apply for Typed<M> {
    fn apply(&self, conn: &Connection, command: &[u8], ctx: &Context) -> Result<Vec<u8>, ApiError> {
        // A command that does not decode was proposed by another build: refused the same
        // way on every replica.
        let command: M::Command = postcard::from_bytes(command)
            .map_err(|e| ApiError::internal(format!("undecodable command: {e}")))?;
        let output = self.0.apply(conn, &command, ctx)?;
        postcard::to_allocvec(&output).map_err(|e| ApiError::internal(e.to_string()))
    }
}

/// The state machine half of the group's storage.
pub(crate) struct Machine {
    store: Store,
    apply: Arc<dyn Apply>,
    /// The database file (for `VACUUM INTO` on a connection of our own).
    db_path: PathBuf,
    /// Where snapshots are built and received.
    dir: PathBuf,
}

/// Files made in the snapshot directory get distinct names.
static NEXT_FILE: AtomicU64 = AtomicU64::new(1);

fn sm_error(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(format!("state machine: {e}"))
}

fn snapshot_error(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(format!("snapshot: {e}"))
}

impl Machine {
    /// Creates the applied-state table in the database (if missing) and the snapshot
    /// directory `dir`.
    pub async fn open(store: Store, apply: Arc<dyn Apply>, dir: &Path) -> Result<Self, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        // Files a crash left half made or half received are of no use: only
        // snapshot.db is ever complete (it is renamed into place).
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                if name.to_str().is_some_and(|n| !n.starts_with("snapshot.db")) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        store
            .write(|c| c.execute_batch(APPLIED_SCHEMA))
            .await
            .and_then(|created| Ok(created?))
            .map_err(|e| format!("cannot prepare the database for replication: {e}"))?;
        let db_path = store
            .read(|c| c.path().map(PathBuf::from))
            .await
            .map_err(|e| e.to_string())?
            .ok_or("the database has no file")?;
        Ok(Machine { store, apply, db_path, dir: dir.to_owned() })
    }

    fn snapshot_path(&self) -> PathBuf {
        self.dir.join("snapshot.db")
    }
}

/// The applied state a database file records.
fn read_applied(conn: &Connection) -> rusqlite::Result<(Option<LogId>, Membership)> {
    let row: Option<(Vec<u8>, Vec<u8>)> = conn
        .prepare_cached("SELECT log_id, membership FROM raft_applied WHERE id = 0")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((log_id, membership)) = row else {
        return Ok((None, Membership::default()));
    };
    let decode = |e: postcard::Error| rusqlite::Error::ToSqlConversionFailure(Box::new(e));
    Ok((
        postcard::from_bytes(&log_id).map_err(decode)?,
        postcard::from_bytes(&membership).map_err(decode)?,
    ))
}

/// Records `log_id` as the last applied, the membership unchanged (the default one if none
/// was recorded yet).
fn write_applied_log_id(conn: &Connection, log_id: &Option<LogId>) -> Result<(), ApiError> {
    let encoded = postcard::to_allocvec(log_id).map_err(|e| ApiError::internal(e.to_string()))?;
    let updated = conn
        .prepare_cached("UPDATE raft_applied SET log_id = ?1 WHERE id = 0")
        .and_then(|mut st| st.execute(params![encoded]))
        .map_err(crate::db_error)?;
    if updated == 0 {
        // No row yet: no membership recorded, which reads as the default one.
        write_applied(conn, log_id, &Membership::default())?;
    }
    Ok(())
}

fn write_applied(
    conn: &Connection,
    log_id: &Option<LogId>,
    membership: &Membership,
) -> Result<(), ApiError> {
    let encode = |e: postcard::Error| ApiError::internal(e.to_string());
    let log_id = postcard::to_allocvec(log_id).map_err(encode)?;
    let membership = postcard::to_allocvec(membership).map_err(encode)?;
    conn.prepare_cached(
        "INSERT OR REPLACE INTO raft_applied (id, log_id, membership) VALUES (0, ?1, ?2)",
    )
    .and_then(|mut st| st.execute(params![log_id, membership]))
    .map_err(crate::db_error)?;
    Ok(())
}

/// Applies `commands` in order, each in a savepoint of its own: one refusal (or panic)
/// undoes only itself.
fn apply_batch(
    conn: &Connection,
    apply: &dyn Apply,
    commands: &[Vec<u8>],
    ctx: &Context,
) -> Answers {
    let mut answers = Vec::with_capacity(commands.len());
    for command in commands {
        if let Err(e) = agora_store::exec(conn, "SAVEPOINT command") {
            answers.push(Err(crate::db_error(e)));
            continue;
        }
        let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            apply.apply(conn, command, ctx)
        }))
        .unwrap_or_else(|_| Err(ApiError::internal("applying the command panicked")));
        let end = if answer.is_ok() {
            agora_store::exec(conn, "RELEASE command")
        } else {
            agora_store::undo_savepoint(conn, "command")
        };
        if let Err(e) = end {
            answers.push(Err(crate::db_error(e)));
            continue;
        }
        answers.push(answer);
    }
    answers
}

/// Replaces every table's rows in the live database with those of the snapshot
/// attached as `snap`, inside the caller's transaction. Columns are matched by name, so
/// a column order that differs between the two files does no harm.
fn copy_tables(conn: &Connection) -> rusqlite::Result<()> {
    let tables = |schema: &str| -> rusqlite::Result<Vec<String>> {
        let mut st = conn.prepare(&format!(
            "SELECT name FROM {schema}.sqlite_master WHERE type = 'table' \
             AND name NOT LIKE 'sqlite_%' ORDER BY name"
        ))?;
        st.query_map([], |r| r.get(0))?.collect()
    };
    let columns = |schema: &str, table: &str| -> rusqlite::Result<Vec<String>> {
        let mut st = conn.prepare("SELECT name FROM pragma_table_info(?1, ?2)")?;
        st.query_map([table, schema], |r| r.get(0))?.collect()
    };
    let quote = |name: &str| format!("\"{}\"", name.replace('"', "\"\""));
    let live = tables("main")?;
    for table in &live {
        conn.execute(&format!("DELETE FROM main.{}", quote(table)), [])?;
    }
    for table in tables("snap")? {
        if !live.contains(&table) {
            tracing::warn!(%table, "the snapshot has a table this database does not; skipped");
            continue;
        }
        let ours = columns("main", &table)?;
        let shared: Vec<String> = columns("snap", &table)?
            .into_iter()
            .filter(|c| ours.contains(c))
            .map(|c| quote(&c))
            .collect();
        let list = shared.join(", ");
        conn.execute(
            &format!(
                "INSERT INTO main.{t} ({list}) SELECT {list} FROM snap.{t}",
                t = quote(&table)
            ),
            [],
        )?;
    }
    Ok(())
}

/// Copies the snapshot file `snapshot` into the database file `db` in one transaction of
/// a connection of its own (on a blocking thread: a large copy must not hold the
/// runtime that sends heartbeats), with the applied state set to the snapshot's meta.
/// The store stays open: its readers see the old state until the commit, then the new;
/// its writer waits for the commit (busy timeout).
fn install_file(
    db: &Path,
    snapshot: &Path,
    last: &Option<LogId>,
    membership: &Membership,
) -> Result<(), String> {
    let sql = |e: rusqlite::Error| e.to_string();
    let conn = Connection::open(db).map_err(sql)?;
    conn.busy_timeout(std::time::Duration::from_secs(30)).map_err(sql)?;
    let name = snapshot.to_str().ok_or("the snapshot path is not UTF-8")?;
    conn.execute("ATTACH DATABASE ?1 AS snap", [name]).map_err(sql)?;
    let copied = (|| -> Result<(), String> {
        conn.execute_batch("BEGIN IMMEDIATE").map_err(sql)?;
        copy_tables(&conn).map_err(sql)?;
        // The meta openraft hands over is the truth; the file says the same.
        write_applied(&conn, last, membership).map_err(|e| e.to_string())?;
        conn.execute_batch("COMMIT").map_err(sql)
    })();
    if copied.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    let _ = conn.execute_batch("DETACH DATABASE snap");
    copied
}

/// Syncs a directory, so that a rename in it survives a crash of the machine.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// The snapshot in `path` with its meta, read from its own applied-state table.
async fn open_snapshot(path: PathBuf) -> Result<Option<Snapshot>, std::io::Error> {
    if !path.exists() {
        return Ok(None);
    }
    let read_path = path.clone();
    let (last, membership) = tokio::task::spawn_blocking(move || {
        let conn =
            Connection::open_with_flags(&read_path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        read_applied(&conn)
    })
    .await
    .map_err(snapshot_error)?
    .map_err(snapshot_error)?;
    let file = tokio::fs::File::open(&path).await.map_err(snapshot_error)?;
    let snapshot = SnapshotFile { file, path };
    Ok(Some(Snapshot { meta: snapshot_meta(last, membership), snapshot }))
}

fn snapshot_meta(last: Option<LogId>, membership: Membership) -> SnapshotMeta {
    SnapshotMeta { last_log_id: last, last_membership: membership }
}

/// Builds snapshots: a copy of the database file.
pub(crate) struct Builder {
    db_path: PathBuf,
    dir: PathBuf,
}

impl RaftSnapshotBuilder<TypeConfig> for Builder {
    type SnapshotData = SnapshotFile;

    async fn build_snapshot(&mut self) -> Result<Snapshot, std::io::Error> {
        let (db_path, dir) = (self.db_path.clone(), self.dir.clone());
        let path = dir.join("snapshot.db");
        let target = path.clone();
        tokio::task::spawn_blocking(move || -> Result<(), String> {
            let n = NEXT_FILE.fetch_add(1, Ordering::Relaxed);
            let tmp = dir.join(format!("building-{n}.db"));
            let _ = std::fs::remove_file(&tmp);
            let conn = Connection::open(&db_path).map_err(|e| e.to_string())?;
            conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(|e| e.to_string())?;
            let tmp_name = tmp.to_str().ok_or("the snapshot path is not UTF-8")?;
            conn.execute("VACUUM INTO ?1", [tmp_name]).map_err(|e| e.to_string())?;
            std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(|e| e.to_string())?;
            std::fs::rename(&tmp, &target).map_err(|e| e.to_string())?;
            sync_dir(&dir).map_err(|e| e.to_string())
        })
        .await
        .map_err(snapshot_error)?
        .map_err(snapshot_error)?;
        open_snapshot(path).await?.ok_or_else(|| snapshot_error("the snapshot vanished"))
    }
}

impl RaftStateMachine<TypeConfig> for Machine {
    type SnapshotData = SnapshotFile;
    type SnapshotBuilder = Builder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, Membership), std::io::Error> {
        self.store.read(read_applied).await.and_then(|applied| Ok(applied?)).map_err(sm_error)
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), std::io::Error>
    where
        Strm: futures_util::Stream<Item = Result<EntryResponder<TypeConfig>, std::io::Error>>
            + Unpin
            + OptionalSend,
    {
        // Everything openraft hands over at once is one job of the store's write path.
        let mut run: Vec<EntryResponder<TypeConfig>> = Vec::new();
        while let Some(item) = entries.try_next().await? {
            run.push(item);
        }
        if run.is_empty() {
            return Ok(());
        }
        let (entries, responders): (Vec<Entry>, Vec<_>) = run.into_iter().unzip();
        let apply = self.apply.clone();
        let answers = self
            .store
            .write(move |conn| apply_entries(conn, &*apply, &entries))
            .await
            .map_err(sm_error)?
            .map_err(sm_error)?;
        // Answered only once the transaction holding them has committed.
        for (responder, answer) in responders.into_iter().zip(answers) {
            if let Some(responder) = responder {
                responder.send(answer);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        Builder { db_path: self.db_path.clone(), dir: self.dir.clone() }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotFile,
    ) -> Result<(), std::io::Error> {
        let SnapshotFile { file, path } = snapshot;
        file.sync_all().await.map_err(snapshot_error)?;
        drop(file);
        let (last, membership) = (meta.last_log_id, meta.last_membership.clone());
        let (db, from) = (self.db_path.clone(), path.clone());
        tokio::task::spawn_blocking(move || install_file(&db, &from, &last, &membership))
            .await
            .map_err(snapshot_error)?
            .map_err(snapshot_error)?;
        // The installed file becomes this replica's latest snapshot: moved if it was
        // received here, copied if it is another's.
        let target = self.snapshot_path();
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            if path.parent() == Some(dir.as_path()) {
                std::fs::rename(&path, &target)?;
            } else {
                let n = NEXT_FILE.fetch_add(1, Ordering::Relaxed);
                let tmp = dir.join(format!("copying-{n}.db"));
                std::fs::copy(&path, &tmp)?;
                std::fs::File::open(&tmp)?.sync_all()?;
                std::fs::rename(&tmp, &target)?;
            }
            sync_dir(&dir)
        })
        .await
        .map_err(snapshot_error)?
        .map_err(snapshot_error)
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, std::io::Error> {
        open_snapshot(self.snapshot_path()).await
    }
}

/// Applies a run of entries inside the store's write transaction and records the last of
/// them as applied (the membership only when an entry changes it). One [`Answers`] per
/// entry.
fn apply_entries(
    conn: &Connection,
    apply: &dyn Apply,
    entries: &[Entry],
) -> Result<Vec<Answers>, ApiError> {
    let mut membership = None;
    let mut answers = Vec::with_capacity(entries.len());
    let mut last = None;
    for entry in entries {
        last = Some(entry.log_id);
        match &entry.payload {
            EntryPayload::Blank => answers.push(Vec::new()),
            EntryPayload::Normal(batch) => {
                let ctx = Context { index: entry.log_id.index, now_ms: batch.now_ms };
                answers.push(apply_batch(conn, apply, &batch.commands, &ctx));
            }
            EntryPayload::Membership(m) => {
                membership = Some(StoredMembership::new(Some(entry.log_id), m.clone()));
                answers.push(Vec::new());
            }
        }
    }
    match membership {
        Some(membership) => write_applied(conn, &last, &membership)?,
        None => write_applied_log_id(conn, &last)?,
    }
    Ok(answers)
}

#[cfg(test)]
mod tests {
    use openraft::testing::log::{StoreBuilder, Suite};

    use super::*;
    use crate::log_store::LogStore;

    /// A machine with no commands: openraft's suite applies only blank and membership
    /// entries.
    struct Nothing;

    impl Apply for Nothing {
        fn apply(&self, _: &Connection, _: &[u8], _: &Context) -> Result<Vec<u8>, ApiError> {
            Err(ApiError::internal("no commands here"))
        }
    }

    /// A new log (its jobs inline or on a thread, as the durability says) and machine.
    struct Fresh(agora_store::Durability);

    fn failed(e: impl std::fmt::Display) -> openraft::StorageError<TypeConfig> {
        openraft::StorageError::from_io_error(
            openraft::ErrorSubject::Store,
            openraft::ErrorVerb::Write,
            std::io::Error::other(e.to_string()),
        )
    }

    impl StoreBuilder<TypeConfig, LogStore, Machine, tempfile::TempDir> for Fresh {
        async fn build(
            &self,
        ) -> Result<(tempfile::TempDir, LogStore, Machine), openraft::StorageError<TypeConfig>>
        {
            let dir = tempfile::tempdir().map_err(failed)?;
            let log = LogStore::open(&dir.path().join("raft.db"), self.0).map_err(failed)?;
            let config = agora_store::StoreConfig::new(dir.path().join("db.sqlite"));
            let store = Store::open(&config, "").map_err(failed)?;
            let machine = Machine::open(store, Arc::new(Nothing), &dir.path().join("snapshots"))
                .await
                .map_err(failed)?;
            Ok((dir, log, machine))
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_log_and_the_state_machine_pass_openraft_s_storage_suite() {
        for durability in [agora_store::Durability::Process, agora_store::Durability::Machine] {
            if let Err(e) = Suite::test_all(Fresh(durability)).await {
                panic!("openraft's storage suite failed with durability {durability:?}: {e}");
            }
        }
    }
}
