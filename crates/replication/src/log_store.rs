//! The Raft log in `raft.db`: the vote, the entries and the last purged log id, in a
//! SQLite file of its own beside the database, on a thread of its own.
//!
//! Every call is a job for that thread, answered through a oneshot: a slow disk holds up
//! the log's own callers, never the runtime that sends heartbeats. Jobs run in the order
//! they were sent, so an append, a truncation and a purge never overtake each other. An
//! append, a vote and a purge are committed (and, with `synchronous=FULL`, fsynced)
//! before the call returns.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::mpsc;

use agora_store::Durability;
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    Entry, LogId, LogState, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote,
};
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use crate::types::TypeConfig;

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS log (idx INTEGER PRIMARY KEY, entry BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);";

/// A handle to the log's thread. Cheap to clone (the log reader is a clone); the thread
/// stops when the last handle is dropped.
#[derive(Clone)]
pub struct LogStore {
    jobs: mpsc::Sender<Job>,
}

/// Why a job failed: SQLite's error, or the thread is gone.
#[derive(Debug, thiserror::Error)]
enum LogError {
    #[error(transparent)]
    Sql(#[from] rusqlite::Error),
    #[error("cannot encode or decode a log record: {0}")]
    Codec(#[from] postcard::Error),
    #[error("the log's thread has stopped")]
    Stopped,
}

impl LogStore {
    /// Opens (creating) `path` and starts the log's thread. `synchronous` follows the
    /// database's durability: FULL fsyncs every commit.
    pub fn open(path: &Path, durability: Durability) -> rusqlite::Result<LogStore> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        let synchronous = match durability {
            Durability::Machine => "FULL",
            Durability::Process => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", synchronous)?;
        conn.execute_batch(SCHEMA)?;
        let (jobs, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("raft-log".into())
            .spawn(move || {
                let mut conn = conn;
                while let Ok(job) = rx.recv() {
                    job(&mut conn);
                }
            })
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        Ok(LogStore { jobs })
    }

    /// Runs `f` on the log's thread and waits for its answer.
    async fn run<T, F>(&self, f: F) -> Result<T, LogError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, LogError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let _ = tx.send(f(conn));
        });
        self.jobs.send(job).map_err(|_| LogError::Stopped)?;
        rx.await.map_err(|_| LogError::Stopped)?
    }
}

fn get_meta<T: serde::de::DeserializeOwned>(
    conn: &Connection,
    key: &str,
) -> Result<Option<T>, LogError> {
    let value: Option<Vec<u8>> =
        conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0)).optional()?;
    Ok(value.map(|v| postcard::from_bytes(&v)).transpose()?)
}

fn put_meta<T: serde::Serialize>(conn: &Connection, key: &str, value: &T) -> Result<(), LogError> {
    let value = postcard::to_allocvec(value)?;
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)", params![key, value])?;
    Ok(())
}

/// A log index as SQLite's signed integer (indexes past i64::MAX do not occur).
fn sql_index(index: u64) -> i64 {
    i64::try_from(index).unwrap_or(i64::MAX)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<u64>> {
        let start = match range.start_bound() {
            Bound::Included(&i) => sql_index(i),
            Bound::Excluded(&i) => sql_index(i).saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&i) => sql_index(i).saturating_add(1),
            Bound::Excluded(&i) => sql_index(i),
            Bound::Unbounded => i64::MAX,
        };
        self.run(move |conn| {
            let mut st = conn.prepare_cached(
                "SELECT entry FROM log WHERE idx >= ?1 AND idx < ?2 ORDER BY idx",
            )?;
            let rows = st.query_map(params![start, end], |r| r.get::<_, Vec<u8>>(0))?;
            let mut entries = Vec::new();
            for row in rows {
                entries.push(postcard::from_bytes(&row?)?);
            }
            Ok(entries)
        })
        .await
        .map_err(|e| StorageIOError::read_logs(openraft::AnyError::new(&e)).into())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<u64>> {
        self.run(|conn| {
            let purged: Option<LogId<u64>> = get_meta(conn, "purged")?;
            let last: Option<Vec<u8>> = conn
                .query_row("SELECT entry FROM log ORDER BY idx DESC LIMIT 1", [], |r| r.get(0))
                .optional()?;
            let last = match last {
                Some(bytes) => Some(postcard::from_bytes::<Entry<TypeConfig>>(&bytes)?.log_id),
                None => purged,
            };
            Ok(LogState { last_purged_log_id: purged, last_log_id: last })
        })
        .await
        .map_err(|e| StorageIOError::read_logs(openraft::AnyError::new(&e)).into())
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError<u64>> {
        let vote = *vote;
        self.run(move |conn| put_meta(conn, "vote", &vote))
            .await
            .map_err(|e| StorageIOError::write_vote(openraft::AnyError::new(&e)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError<u64>> {
        self.run(|conn| get_meta(conn, "vote"))
            .await
            .map_err(|e| StorageIOError::read_vote(openraft::AnyError::new(&e)).into())
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<u64>>,
    ) -> Result<(), StorageError<u64>> {
        self.run(move |conn| put_meta(conn, "committed", &committed))
            .await
            .map_err(|e| StorageIOError::write(openraft::AnyError::new(&e)).into())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, StorageError<u64>> {
        self.run(|conn| Ok(get_meta::<Option<LogId<u64>>>(conn, "committed")?.flatten()))
            .await
            .map_err(|e| StorageIOError::read(openraft::AnyError::new(&e)).into())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut rows = Vec::new();
        for entry in entries {
            let bytes = postcard::to_allocvec(&entry)
                .map_err(|e| StorageIOError::write_logs(openraft::AnyError::new(&e)))?;
            rows.push((sql_index(entry.log_id.index), bytes));
        }
        // The callback fires on the log's thread right after the commit: only then are
        // the entries durable (as durable as `synchronous` makes a commit).
        let result = self
            .run(move |conn| {
                let tx = conn.transaction()?;
                {
                    let mut st = tx.prepare_cached(
                        "INSERT OR REPLACE INTO log (idx, entry) VALUES (?1, ?2)",
                    )?;
                    for (idx, bytes) in &rows {
                        st.execute(params![idx, bytes])?;
                    }
                }
                tx.commit()?;
                Ok(())
            })
            .await;
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(StorageIOError::write_logs(openraft::AnyError::new(&e)).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        let from = sql_index(log_id.index);
        self.run(move |conn| {
            conn.execute("DELETE FROM log WHERE idx >= ?1", [from])?;
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write_logs(openraft::AnyError::new(&e)).into())
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        let upto = sql_index(log_id.index);
        self.run(move |conn| {
            let tx = conn.transaction()?;
            put_meta(&tx, "purged", &log_id)?;
            tx.execute("DELETE FROM log WHERE idx <= ?1", [upto])?;
            tx.commit()?;
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write_logs(openraft::AnyError::new(&e)).into())
    }
}
