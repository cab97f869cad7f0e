//! The Raft log in `raft.db`: the vote, the entries and the last purged log id, in a
//! SQLite file of its own beside the database.
//!
//! Every write waits for an append twice: the leader's own, then a follower's (openraft
//! counts an entry held by a node only once its append is flushed). Where it runs follows
//! the durability:
//! - `Durability::Process` (`synchronous=NORMAL`, no fsync): on the caller's thread, under
//!   a lock. A commit is a few writes to the page cache, tens of microseconds; handing it
//!   to another thread and back cost two thread wake-ups, more than the commit itself.
//! - `Durability::Machine` (`synchronous=FULL`, an fsync per commit): on a thread of its
//!   own, so that a slow disk holds up the log's callers, never the runtime that sends
//!   heartbeats. Jobs run in the order they were sent, so an append, a truncation and a
//!   purge never overtake each other.
//!
//! Either way a vote and a purge are committed (and, with `FULL`, fsynced) before the
//! call returns, and an append's callback fires only after its commit.

use std::collections::VecDeque;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};

use agora_store::Durability;
use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::{EntryPayload, LogState, OptionalSend, RaftLogReader};
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use crate::types::{Entry, LogId, TypeConfig, Vote};

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS log (idx INTEGER PRIMARY KEY, entry BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);";

/// A handle to the log. Cheap to clone (the log reader is a clone); the log's thread, if
/// it has one, stops when the last handle is dropped.
#[derive(Clone)]
pub struct LogStore {
    writer: Writer,
    tail: Arc<Mutex<Tail>>,
}

/// Where the log's jobs run (the module's documentation says why).
#[derive(Clone)]
enum Writer {
    /// On the caller's thread; a checkpointer thread copies the WAL into the file (held
    /// here so that it runs as long as the log is open).
    Inline {
        conn: Arc<Mutex<Connection>>,
        #[cfg_attr(not(test), allow(dead_code))]
        checkpointer: Arc<Checkpointer>,
    },
    /// On the log's thread, in order.
    Thread(mpsc::Sender<Job>),
}

/// The newest entries, in memory, for the reads of the replication streams.
///
/// A leader sends each new entry to its followers right after appending it; read from
/// `raft.db`, that read would be a SQLite query per entry (and, on the log's thread, a
/// job queued behind other log writes). From here it costs a copy. Holds a contiguous
/// run of indexes, the newest ones, at most
/// [`TAIL_ENTRIES`] entries and [`TAIL_BYTES`] bytes of commands; a read it cannot answer
/// whole goes to the file.
#[derive(Default)]
struct Tail {
    entries: VecDeque<Entry>,
    bytes: usize,
}

const TAIL_ENTRIES: usize = 1024;
const TAIL_BYTES: usize = 8 << 20;

fn entry_bytes(entry: &Entry) -> usize {
    match &entry.payload {
        EntryPayload::Normal(batch) => batch.commands.iter().map(Vec::len).sum(),
        _ => 0,
    }
}

impl Tail {
    fn first(&self) -> Option<u64> {
        self.entries.front().map(|e| e.log_id.index)
    }

    fn push(&mut self, entry: Entry) {
        let next = self.entries.back().map(|e| e.log_id.index + 1);
        if next.is_some_and(|next| next != entry.log_id.index) {
            // Not contiguous (openraft appends after a truncation it told us of, so this
            // does not happen): start over rather than hold a hole.
            self.entries.clear();
            self.bytes = 0;
        }
        self.bytes += entry_bytes(&entry);
        self.entries.push_back(entry);
        while self.entries.len() > TAIL_ENTRIES
            || (self.bytes > TAIL_BYTES && self.entries.len() > 1)
        {
            if let Some(old) = self.entries.pop_front() {
                self.bytes -= entry_bytes(&old);
            }
        }
    }

    /// Forgets every entry from index `from` on.
    fn truncate(&mut self, from: u64) {
        while self.entries.back().is_some_and(|e| e.log_id.index >= from) {
            if let Some(gone) = self.entries.pop_back() {
                self.bytes -= entry_bytes(&gone);
            }
        }
    }

    /// Forgets every entry up to index `upto`.
    fn purge(&mut self, upto: u64) {
        while self.entries.front().is_some_and(|e| e.log_id.index <= upto) {
            if let Some(gone) = self.entries.pop_front() {
                self.bytes -= entry_bytes(&gone);
            }
        }
    }

    /// The entries `[start, end)`, if all of them are here.
    fn get(&self, start: u64, end: u64) -> Option<Vec<Entry>> {
        let first = self.first()?;
        let last = first + self.entries.len() as u64;
        if start < first || end > last || start >= end {
            return None;
        }
        let from = usize::try_from(start - first).ok()?;
        let to = usize::try_from(end - first).ok()?;
        Some(self.entries.range(from..to).cloned().collect())
    }
}

/// Why a job failed: SQLite's error, or the thread is gone.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LogError {
    #[error(transparent)]
    Sql(#[from] rusqlite::Error),
    #[error("cannot encode or decode a log record: {0}")]
    Codec(#[from] postcard::Error),
    #[error("the log's thread has stopped")]
    Stopped,
}

impl From<LogError> for std::io::Error {
    fn from(e: LogError) -> std::io::Error {
        std::io::Error::other(e.to_string())
    }
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
        let writer = match durability {
            Durability::Process => {
                // A commit on the caller's thread must not also checkpoint (a checkpoint
                // syncs the file): the checkpointer's thread does.
                conn.pragma_update(None, "wal_autocheckpoint", 0)?;
                let checkpointer = Checkpointer::start(path)?;
                Writer::Inline {
                    conn: Arc::new(Mutex::new(conn)),
                    checkpointer: Arc::new(checkpointer),
                }
            }
            Durability::Machine => {
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
                Writer::Thread(jobs)
            }
        };
        Ok(LogStore { writer, tail: Arc::default() })
    }

    /// Runs `job` where the log's jobs run: now, or queued for the log's thread.
    fn submit(&self, job: Job) -> Result<(), LogError> {
        match &self.writer {
            Writer::Inline { conn, .. } => {
                job(&mut conn.lock().unwrap_or_else(|e| e.into_inner()));
                Ok(())
            }
            Writer::Thread(jobs) => jobs.send(job).map_err(|_| LogError::Stopped),
        }
    }

    /// Runs `f` where the log's jobs run and waits for its answer.
    async fn run<T, F>(&self, f: F) -> Result<T, LogError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, LogError> + Send + 'static,
    {
        if let Writer::Inline { conn, .. } = &self.writer {
            return f(&mut conn.lock().unwrap_or_else(|e| e.into_inner()));
        }
        let (tx, rx) = oneshot::channel();
        self.submit(Box::new(move |conn| {
            let _ = tx.send(f(conn));
        }))?;
        rx.await.map_err(|_| LogError::Stopped)?
    }
}

/// How often the checkpointer of an inline log copies the WAL into `raft.db`.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// Copies the WAL of an inline log into `raft.db` every [`CHECKPOINT_EVERY`], on a thread
/// with its own connection (a PASSIVE checkpoint runs beside the writer; once it has
/// copied everything, the next append starts the WAL over, so the WAL holds about one
/// period of appends). When dropped, checkpoints once more and stops before the drop
/// returns, so that a stopped log leaves its files alone.
struct Checkpointer {
    /// Checkpoints run so far (for tests to wait on).
    #[cfg_attr(not(test), allow(dead_code))]
    done: Arc<std::sync::atomic::AtomicU64>,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Checkpointer {
    fn start(path: &Path) -> rusqlite::Result<Checkpointer> {
        let conn = Connection::open(path)?;
        let (stop, stopped) = mpsc::channel::<()>();
        let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = done.clone();
        let checkpoint = move || {
            if let Err(e) =
                conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(0))
            {
                tracing::warn!(error = %e, "cannot checkpoint the raft log");
            }
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        };
        let thread = std::thread::Builder::new()
            .name("raft-log-checkpoint".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(CHECKPOINT_EVERY)
                {
                    checkpoint();
                }
                checkpoint();
            })
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        Ok(Checkpointer { done, stop: Some(stop), thread: Some(thread) })
    }
}

/// Runs `f` in a transaction, committed if `f` succeeds. The statements that begin and end
/// it are prepared once (the log writes several times per client write; parsing them
/// showed in profiles).
fn in_transaction<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, LogError>,
) -> Result<T, LogError> {
    agora_store::exec(conn, "BEGIN")?;
    match f(conn) {
        Ok(value) => {
            if let Err(e) = agora_store::exec(conn, "COMMIT") {
                let _ = agora_store::exec(conn, "ROLLBACK");
                return Err(e.into());
            }
            Ok(value)
        }
        Err(e) => {
            let _ = agora_store::exec(conn, "ROLLBACK");
            Err(e)
        }
    }
}

/// Writes encoded entries (index, bytes) in one transaction, replacing any at the same
/// indexes.
fn insert_entries(conn: &Connection, rows: &[(i64, Vec<u8>)]) -> Result<(), LogError> {
    in_transaction(conn, |conn| {
        let mut st =
            conn.prepare_cached("INSERT OR REPLACE INTO log (idx, entry) VALUES (?1, ?2)")?;
        for (idx, bytes) in rows {
            st.execute(params![idx, bytes])?;
        }
        Ok(())
    })
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
    ) -> Result<Vec<Entry>, std::io::Error> {
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
        // The newest entries, whole, from memory (the tail's newest entry is the log's
        // last one, so an open end stops there too).
        let cached = {
            let tail = self.tail.lock().unwrap_or_else(|e| e.into_inner());
            let last = tail.first().map(|first| first + tail.entries.len() as u64);
            let (start, end) = (u64::try_from(start).ok(), u64::try_from(end).ok());
            match (start, end, last) {
                (Some(start), Some(end), Some(last)) => tail.get(start, end.min(last)),
                _ => None,
            }
        };
        if let Some(entries) = cached {
            return Ok(entries);
        }
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
        .map_err(std::io::Error::from)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, std::io::Error> {
        self.run(|conn| get_meta(conn, "vote")).await.map_err(std::io::Error::from)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, std::io::Error> {
        self.run(|conn| {
            let purged: Option<LogId> = get_meta(conn, "purged")?;
            let last: Option<Vec<u8>> = conn
                .query_row("SELECT entry FROM log ORDER BY idx DESC LIMIT 1", [], |r| r.get(0))
                .optional()?;
            let last = match last {
                Some(bytes) => Some(postcard::from_bytes::<Entry>(&bytes)?.log_id),
                None => purged,
            };
            Ok(LogState { last_purged_log_id: purged, last_log_id: last })
        })
        .await
        .map_err(std::io::Error::from)
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), std::io::Error> {
        let vote = *vote;
        self.run(move |conn| put_meta(conn, "vote", &vote)).await.map_err(std::io::Error::from)
    }

    // `save_committed` / `read_committed` keep openraft's defaults (nothing saved): the
    // core awaits `save_committed` before every apply, and a log job there (behind the
    // appends queued on the log's thread) slowed every write on every replica. Nothing
    // needs it: the applied position is in the database file, and a restarted node
    // learns the commit index from its leader.

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), std::io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut rows = Vec::new();
        let mut appended = Vec::new();
        for entry in entries {
            let bytes = postcard::to_allocvec(&entry).map_err(std::io::Error::other)?;
            rows.push((sql_index(entry.log_id.index), bytes));
            appended.push(entry);
        }
        {
            let mut tail = self.tail.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(first) = appended.first() {
                // An append over existing indexes replaces them (openraft truncates
                // first; this keeps the tail right if it did not).
                tail.truncate(first.log_id.index);
            }
            for entry in appended {
                tail.push(entry);
            }
        }
        // The callback fires right after the commit: only then are the entries durable
        // (as durable as `synchronous` makes a commit). Jobs run in order, so a read sent
        // after this append sees its entries.
        let job: Job = Box::new(move |conn| {
            let written = insert_entries(conn, &rows);
            callback.io_completed(written.map_err(std::io::Error::from));
        });
        self.submit(job).map_err(std::io::Error::from)
    }

    async fn truncate_after(&mut self, last: Option<LogId>) -> Result<(), std::io::Error> {
        let from = last.map_or(0, |id| id.index + 1);
        self.tail.lock().unwrap_or_else(|e| e.into_inner()).truncate(from);
        let from = sql_index(from);
        self.run(move |conn| {
            conn.execute("DELETE FROM log WHERE idx >= ?1", [from])?;
            Ok(())
        })
        .await
        .map_err(std::io::Error::from)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), std::io::Error> {
        self.tail.lock().unwrap_or_else(|e| e.into_inner()).purge(log_id.index);
        let upto = sql_index(log_id.index);
        self.run(move |conn| {
            in_transaction(conn, |conn| {
                put_meta(conn, "purged", &log_id)?;
                conn.execute("DELETE FROM log WHERE idx <= ?1", [upto])?;
                Ok(())
            })
        })
        .await
        .map_err(std::io::Error::from)
    }
}

#[cfg(test)]
mod tests {
    use openraft::EntryPayload;
    use openraft::impls::leader_id_adv::LeaderId;

    use super::*;
    use crate::types::Batch;

    fn entry(index: u64, bytes: usize) -> Entry {
        Entry {
            log_id: LogId::new(LeaderId { term: 1, node_id: 1 }, index),
            payload: EntryPayload::Normal(Batch { now_ms: 0, commands: vec![vec![0; bytes]] }),
        }
    }

    fn indexes(entries: Option<Vec<Entry>>) -> Option<Vec<u64>> {
        entries.map(|e| e.iter().map(|e| e.log_id.index).collect())
    }

    #[test]
    fn the_tail_answers_only_runs_it_holds_whole() {
        let mut tail = Tail::default();
        for i in 5..10 {
            tail.push(entry(i, 1));
        }
        assert_eq!(indexes(tail.get(6, 9)), Some(vec![6, 7, 8]));
        assert_eq!(indexes(tail.get(5, 10)), Some(vec![5, 6, 7, 8, 9]));
        assert_eq!(indexes(tail.get(4, 7)), None, "index 4 is only in the file");
        assert_eq!(indexes(tail.get(8, 11)), None, "index 10 does not exist");
        tail.truncate(8);
        assert_eq!(indexes(tail.get(5, 10)), None);
        assert_eq!(indexes(tail.get(5, 8)), Some(vec![5, 6, 7]));
        tail.purge(6);
        assert_eq!(indexes(tail.get(5, 8)), None);
        assert_eq!(indexes(tail.get(7, 8)), Some(vec![7]));
        tail.push(entry(20, 1));
        assert_eq!(indexes(tail.get(7, 8)), None, "a gap starts the tail over");
        assert_eq!(indexes(tail.get(20, 21)), Some(vec![20]));
    }

    /// Writes `entries` entries of `bytes` at `first..` as an append does.
    async fn append(log: &LogStore, first: u64, entries: u64, bytes: usize) {
        let rows = (first..first + entries)
            .map(|i| (sql_index(i), postcard::to_allocvec(&entry(i, bytes)).expect("encode")))
            .collect::<Vec<_>>();
        log.run(move |conn| insert_entries(conn, &rows)).await.expect("append");
    }

    #[tokio::test]
    async fn an_inline_log_s_wal_is_checkpointed_off_the_writer_s_thread() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("raft.db");
        let mut log = LogStore::open(&path, Durability::Process).expect("open");
        let Writer::Inline { checkpointer, .. } = log.writer.clone() else {
            panic!("a process-durable log runs inline");
        };
        let checkpoints = || checkpointer.done.load(std::sync::atomic::Ordering::Relaxed);
        let wal = dir.path().join("raft.db-wal");
        // Five rounds of 40 entries of 16 KiB (640 KiB each), a checkpoint between them:
        // the WAL starts over after each, so it stays near one round's size.
        for round in 0..5 {
            append(&log, round * 40 + 1, 40, 16 << 10).await;
            let before = checkpoints();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while checkpoints() < before + 2 {
                assert!(std::time::Instant::now() < deadline, "no checkpoint in 10 s");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
        let size = std::fs::metadata(&wal).expect("wal").len();
        assert!(size < 2 * 640 * 1024, "the WAL holds {size} bytes after 3.2 MB of appends");
        let read = log.try_get_log_entries(1..201).await.expect("read");
        assert_eq!(read.len(), 200);
    }

    #[test]
    fn the_tail_keeps_its_bounds() {
        let mut tail = Tail::default();
        for i in 0..(TAIL_ENTRIES as u64 + 10) {
            tail.push(entry(i, 1));
        }
        assert_eq!(tail.entries.len(), TAIL_ENTRIES);
        assert_eq!(tail.first(), Some(10));
        let big = TAIL_BYTES / 4 + 1;
        for i in 0..8 {
            tail.push(entry(TAIL_ENTRIES as u64 + 10 + i, big));
        }
        assert!(tail.bytes <= TAIL_BYTES, "{} bytes held", tail.bytes);
        assert_eq!(tail.bytes, tail.entries.iter().map(entry_bytes).sum::<usize>());
    }
}
