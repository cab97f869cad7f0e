//! SQLite storage for Agora's databases, built for many concurrent callers:
//!
//! - **One write connection.** Write jobs queue up; the queue is run as one transaction,
//!   each job inside its own savepoint (so one job's refusal undoes only that job), with
//!   one commit for all (group commit). A job's answer is released only after the commit
//!   returned, so an acknowledged write is in the WAL: it survives a crash of the process
//!   (the default, [`Durability::Process`]: WAL with `synchronous=NORMAL`), or, with
//!   [`Durability::Machine`], also a crash of the machine (`synchronous=FULL`: the batch
//!   shares one fsync).
//!   Where the batch runs depends on the durability. With `Process` a commit is a write to
//!   the page cache, a few tens of microseconds, so the batch runs on the callers' own
//!   runtime: the first write queued spawns a task that runs everything queued by the
//!   time it is polled (a current-thread runtime has then polled every request that was
//!   ready). With `Machine` every commit waits for the disk, so batches run on a writer
//!   thread and the runtime goes on serving while it waits.
//! - **Reads** run on the caller's own thread (a read is a few tens of microseconds;
//!   handing it to another thread and back cost more than that): with `Process` on the
//!   write connection itself, whose page cache then stays warm (SQLite empties a
//!   connection's cache whenever another connection has written), with `Machine` on a
//!   read-only connection of their own. When that connection is busy (a batch or the
//!   checkpointer holds it, or another thread of a multi-threaded runtime reads), the
//!   read goes to a **reader thread** instead.
//!   In WAL mode reads see the last committed state without waiting for the writer.
//! - **Checkpoints** (copying the WAL into the database file, which syncs the file) run
//!   on a thread of their own with its own connection, never inside a commit, so no
//!   write waits for them.
//!
//! Callers are async; jobs are closures, answers come back through oneshot channels. A
//! job's answer, error type and all, is the caller's own; the store's failures (it is
//! shutting down, a batch did not commit, SQLite failed outside any job) are a
//! [`StoreError`], kept apart from it, for the caller to answer as it sees fit.
//!
//! [`at_most_once`] makes a mutation idempotent: its answer is recorded under the request's
//! [`OpId`] in the same transaction, and a repeat gets the recorded answer.

mod applied;
mod batch;
mod checkpoint;
mod error;
mod files;
pub mod seed;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;

use rusqlite::Connection;
use tokio::sync::oneshot;
use tracing::error;

pub use applied::{APPLIED_MEMORY_MS, APPLIED_PER_OWNER, Op, OpId, at_most_once};
pub use batch::{exec, undo_savepoint};
pub use error::StoreError;
pub use files::{private_dir, private_file, private_umask, write_private};

use applied::APPLIED_SCHEMA;
use batch::{Completion, InlineWriter, Queue, WriteConn, WriteJob, lock, write_loop};
use checkpoint::{RESTART_PATIENCE, checkpoint_loop};
use files::owner_only;

type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

/// Opening the store failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot open {path}: {source}")]
pub struct OpenError {
    path: PathBuf,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

/// What an acknowledged write survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// A crash of the database process (`kill -9`): the commit is in the operating
    /// system's page cache before it is acknowledged. No fsync per commit.
    #[default]
    Process,
    /// A crash of the whole machine or a power loss: every commit batch is fsynced before
    /// it is acknowledged.
    Machine,
}

impl std::str::FromStr for Durability {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "process" => Ok(Durability::Process),
            "machine" => Ok(Durability::Machine),
            other => Err(format!("{other:?} is not a durability: use process or machine")),
        }
    }
}

/// How to open a store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The database file.
    pub path: PathBuf,
    /// Reader threads (and read connections) for reads that cannot run on the caller's
    /// thread.
    pub readers: usize,
    /// Most write jobs in one transaction.
    pub max_batch: usize,
    /// What an acknowledged write survives.
    pub durability: Durability,
    /// SQLite's page cache, in KiB, of the connection most reads run on (the caller's
    /// thread's; see [`Store::read`]). The other connections keep SQLite's default.
    pub page_cache_kib: u32,
}

/// SQLite's own default page cache per connection, in KiB.
pub const DEFAULT_PAGE_CACHE_KIB: u32 = 2000;

impl StoreConfig {
    /// Defaults for the database file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        StoreConfig {
            path: path.into(),
            readers: 2,
            max_batch: 512,
            durability: Durability::default(),
            page_cache_kib: DEFAULT_PAGE_CACHE_KIB,
        }
    }
}

/// Prepared statements kept per connection.
const STATEMENT_CACHE: usize = 128;

/// A handle to the store's connections and threads. Cheap to clone; the threads stop when
/// the last handle is dropped, after finishing the jobs already queued.
#[derive(Clone)]
pub struct Store {
    writer: Writer,
    reads: crossbeam_channel::Sender<ReadJob>,
    /// The connection reads run on in the caller's thread: with [`Durability::Process`]
    /// the write connection itself, else a read-only one. (SQLite empties a connection's
    /// page cache whenever another connection has written; on the writer's own connection
    /// the cache stays warm from one transaction to the next.)
    inline: WriteConn,
    /// Dropped with the last handle, which stops the checkpointer.
    _checkpoints: Arc<mpsc::Sender<()>>,
}

/// Where write batches run.
#[derive(Clone)]
enum Writer {
    /// On the callers' runtime ([`Durability::Process`]).
    Inline(Arc<InlineWriter>),
    /// On a writer thread ([`Durability::Machine`]).
    Thread(mpsc::Sender<WriteJob>),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl Store {
    /// Opens (creating if needed) the database, runs `schema` (idempotent SQL: `CREATE ...
    /// IF NOT EXISTS`) and starts the threads.
    pub fn open(config: &StoreConfig, schema: &str) -> Result<Store, OpenError> {
        let fail = |source: rusqlite::Error| OpenError {
            path: config.path.clone(),
            source: source.into(),
        };
        owner_only(&config.path)
            .map_err(|e| OpenError { path: config.path.clone(), source: e.into() })?;
        let writer = open_connection(&config.path, false).map_err(fail)?;
        let synchronous = match config.durability {
            Durability::Process => "NORMAL",
            Durability::Machine => "FULL",
        };
        writer.pragma_update(None, "synchronous", synchronous).map_err(fail)?;
        writer.execute_batch(schema).map_err(fail)?;
        writer.execute_batch(APPLIED_SCHEMA).map_err(fail)?;
        // A file of an earlier release keeps its op-id answers (applied.rs).
        let moved = applied::upgrade(&writer).map_err(fail)?;
        if moved > 0 {
            tracing::info!(moved, path = %config.path.display(), "op-id table moved to its new form");
        }
        let mut readers = Vec::new();
        for _ in 0..config.readers.max(1) {
            readers.push(open_connection(&config.path, true).map_err(fail)?);
        }

        // Checkpoints are the checkpointer thread's job, not the committing writer's.
        writer.pragma_update(None, "wal_autocheckpoint", 0).map_err(fail)?;
        // Negative: in KiB rather than pages.
        let page_cache = -i64::from(config.page_cache_kib.max(1));
        if config.durability == Durability::Process {
            writer.pragma_update(None, "cache_size", page_cache).map_err(fail)?;
        }
        let writer: WriteConn = Arc::new(tokio::sync::Mutex::new(writer));
        let inline = match config.durability {
            // Writes run on the caller's thread too, so reads share their connection.
            Durability::Process => writer.clone(),
            Durability::Machine => {
                let conn = open_connection(&config.path, true).map_err(fail)?;
                conn.pragma_update(None, "cache_size", page_cache).map_err(fail)?;
                Arc::new(tokio::sync::Mutex::new(conn))
            }
        };
        let checkpointer = open_connection(&config.path, false).map_err(fail)?;
        // Its RESTART holds writes back while it waits for readers: never for long.
        checkpointer.busy_timeout(RESTART_PATIENCE).map_err(fail)?;
        let (checkpoints, stop_rx) = mpsc::channel::<()>();
        let paused = writer.clone();
        spawn_named("store-checkpoint", move || checkpoint_loop(checkpointer, paused, stop_rx));

        let max_batch = config.max_batch.max(1);
        let writer = match config.durability {
            Durability::Process => Writer::Inline(Arc::new(InlineWriter {
                queue: Mutex::new(Queue { jobs: Vec::new(), flush_scheduled: false }),
                conn: writer,
                max_batch,
            })),
            Durability::Machine => {
                let (writes, write_rx) = mpsc::channel::<WriteJob>();
                spawn_named("store-writer", move || write_loop(writer, write_rx, max_batch));
                Writer::Thread(writes)
            }
        };
        let (reads, read_rx) = crossbeam_channel::unbounded::<ReadJob>();
        for (i, conn) in readers.into_iter().enumerate() {
            let rx = read_rx.clone();
            spawn_named(&format!("store-reader-{i}"), move || {
                while let Ok(job) = rx.recv() {
                    job(&conn);
                }
            });
        }
        Ok(Store { writer, reads, inline, _checkpoints: Arc::new(checkpoints) })
    }

    /// Runs `f` on a read connection: a consistent snapshot of committed data. On the
    /// calling thread if the store's inline connection is free, else on a reader thread.
    /// Returns what `f` returned, or why the store could not run it.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> T + Send + 'static,
    {
        // `f` does not await, so the lock is held for one read and never across a yield.
        if let Ok(conn) = self.inline.try_lock() {
            return Ok(f(&conn));
        }
        let (tx, rx) = oneshot::channel();
        let job: ReadJob = Box::new(move |conn| {
            let _ = tx.send(f(conn));
        });
        if self.reads.send(job).is_err() {
            return Err(StoreError::ShuttingDown);
        }
        rx.await.map_err(|_| StoreError::ReaderStopped)
    }

    /// Runs `f` in the writer's current batch. An `Err` from `f` undoes everything `f`
    /// did, and nothing else. Returns what `f` returned, its `Ok` only once the batch is
    /// durably committed; or why the store could not run `f` or keep its work.
    pub async fn write<T, E, F>(&self, f: F) -> Result<Result<T, E>, StoreError>
    where
        T: Send + 'static,
        E: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: WriteJob = Box::new(move |conn| {
            let result = f(conn);
            let ok = result.is_ok();
            let completion: Completion = Box::new(move |committed| {
                let _ = tx.send(match result {
                    Ok(_) if !committed => Err(StoreError::CommitFailed),
                    answer => Ok(answer),
                });
            });
            (ok, completion)
        });
        match &self.writer {
            Writer::Inline(writer) => {
                let spawn = {
                    let mut queue = lock(&writer.queue);
                    queue.jobs.push(job);
                    !std::mem::replace(&mut queue.flush_scheduled, true)
                };
                // A task of its own, not this call: it runs after the other requests ready
                // now have queued their writes too, and it runs even if this call is
                // dropped, so a queued job is never left behind.
                if spawn {
                    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                        lock(&writer.queue).flush_scheduled = false;
                        return Err(StoreError::NoRuntime);
                    };
                    runtime.spawn(writer.clone().flush());
                }
            }
            Writer::Thread(writes) => {
                if writes.send(job).is_err() {
                    return Err(StoreError::ShuttingDown);
                }
            }
        }
        rx.await.map_err(|_| StoreError::WriterStopped)?
    }
}

fn open_connection(path: &Path, read_only: bool) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // WAL: readers never wait for the writer. The writer's `synchronous` follows the
    // configured durability (see `Durability`).
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // Plan each statement once. Without this SQLite re-plans (re-parses) a cached
    // statement whenever a new value is bound where it used a bound integer as a constant
    // (our `LIMIT ?` and `OFFSET ?`): a full prepare on most reads.
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    // Room for every statement a database prepares (two dozen each, reads and writes on
    // one connection): past rusqlite's default of 16, a statement evicted from the cache
    // is parsed again on its next use.
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    if read_only {
        conn.pragma_update(None, "query_only", true)?;
    }
    Ok(conn)
}

fn spawn_named(name: &str, f: impl FnOnce() + Send + 'static) {
    if let Err(e) = thread::Builder::new().name(name.to_owned()).spawn(f) {
        error!(error = %e, "cannot start storage thread {name}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS t(k INTEGER PRIMARY KEY, v TEXT NOT NULL);";

    fn store(dir: &tempfile::TempDir, durability: Durability) -> Store {
        let config = StoreConfig { durability, ..StoreConfig::new(dir.path().join("t.db")) };
        Store::open(&config, SCHEMA).expect("open")
    }

    /// The keys in `t`, in order.
    async fn keys(store: &Store) -> Vec<i64> {
        store
            .read(|c| {
                let mut st = c.prepare("SELECT k FROM t ORDER BY k").map_err(StoreError::from)?;
                let rows = st.query_map([], |r| r.get::<_, i64>(0)).map_err(StoreError::from)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(StoreError::from)
            })
            .await
            .expect("read")
            .expect("rows")
    }

    /// Each test runs with both writers: inline (process) and on a thread (machine).
    const BOTH: [Durability; 2] = [Durability::Process, Durability::Machine];

    #[tokio::test]
    async fn reads_run_with_the_configured_page_cache() {
        for durability in BOTH {
            let dir = tempfile::tempdir().expect("tempdir");
            let config = StoreConfig {
                durability,
                page_cache_kib: 8192,
                ..StoreConfig::new(dir.path().join("t.db"))
            };
            let store = Store::open(&config, SCHEMA).expect("open");
            let size = store
                .read(|c| {
                    c.query_row("PRAGMA cache_size", [], |r| r.get::<_, i64>(0))
                        .map_err(StoreError::from)
                })
                .await
                .expect("read")
                .expect("pragma");
            assert_eq!(size, -8192, "{durability:?}");
        }
    }

    #[tokio::test]
    async fn a_failed_job_undoes_only_itself() {
        for durability in BOTH {
            a_failed_job_undoes_only_itself_with(durability).await;
        }
    }

    async fn a_failed_job_undoes_only_itself_with(durability: Durability) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(&dir, durability);
        let ok = |k: i64| {
            let store = store.clone();
            async move {
                store
                    .write(move |c| {
                        c.execute("INSERT INTO t VALUES (?1, 'x')", [k]).map_err(StoreError::from)
                    })
                    .await
            }
        };
        // The job's own error type, not the store's: it comes back as it was.
        let refused = store.write(|c| {
            c.execute("INSERT INTO t VALUES (100, 'y')", []).map_err(|_| "insert failed")?;
            Err::<(), _>("no")
        });
        let (a, b, r) = tokio::join!(ok(1), ok(2), refused);
        assert_eq!((a, b, r), (Ok(Ok(1)), Ok(Ok(1)), Ok(Err("no"))));
        let keys = keys(&store).await;
        assert_eq!(keys, vec![1, 2]);
    }

    /// A job that ends the batch's savepoint itself leaves a transaction the batch cannot
    /// vouch for: every job of the batch fails (the one before it too, the one after it
    /// never runs), and nothing of it stays visible, not even to reads on the write
    /// connection. The store goes on.
    #[tokio::test]
    async fn a_job_that_breaks_its_batch_fails_the_whole_batch_and_leaves_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(&dir, Durability::Process);
        let insert = |k: i64| {
            let store = store.clone();
            async move {
                store
                    .write(move |c| {
                        c.execute("INSERT INTO t VALUES (?1, 'x')", [k]).map_err(StoreError::from)
                    })
                    .await
            }
        };
        let breaker = store.write(|c| c.execute_batch("RELEASE job").map_err(StoreError::from));
        // Queued together on this one-thread runtime, before the flush task runs: one batch.
        let (before, broke, after) = tokio::join!(insert(1), breaker, insert(3));
        assert!(before.is_err(), "{before:?}");
        assert!(broke.is_err(), "{broke:?}");
        assert!(after.is_err(), "{after:?}");
        assert_eq!(keys(&store).await, Vec::<i64>::new());
        assert_eq!(insert(4).await, Ok(Ok(1)));
        assert_eq!(keys(&store).await, vec![4]);
    }

    /// The runtime that a write scheduled its flush on shuts down before running it: the
    /// next write, on another runtime, still gets its batch run.
    #[test]
    fn a_write_after_a_runtime_died_with_its_flush_unrun_still_runs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(&dir, Durability::Process);
        let runtime =
            || tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let first = runtime();
        first.block_on(async {
            let write = store.write(|c| {
                c.execute("INSERT INTO t VALUES (1, 'x')", []).map_err(StoreError::from)
            });
            // Polled once: the job is queued and a flush spawned on `first`, not yet run.
            let mut write = std::pin::pin!(write);
            let polled =
                std::future::poll_fn(|cx| std::task::Poll::Ready(write.as_mut().poll(cx))).await;
            assert!(polled.is_pending(), "the write cannot have finished without its flush");
        });
        drop(first);
        let second = runtime();
        let written = second.block_on(async {
            let write = store.write(|c| {
                c.execute("INSERT INTO t VALUES (2, 'y')", []).map_err(StoreError::from)
            });
            tokio::time::timeout(std::time::Duration::from_secs(10), write).await
        });
        assert_eq!(written.expect("the second write ran"), Ok(Ok(1)));
    }

    #[tokio::test]
    async fn a_panicking_job_fails_alone_and_the_store_goes_on() {
        for durability in BOTH {
            a_panicking_job_fails_alone_and_the_store_goes_on_with(durability).await;
        }
    }

    async fn a_panicking_job_fails_alone_and_the_store_goes_on_with(durability: Durability) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(&dir, durability);
        let insert = |k: i64| {
            let store = store.clone();
            async move {
                store
                    .write(move |c| {
                        c.execute("INSERT INTO t VALUES (?1, 'x')", [k])?;
                        assert!(k != 2, "a bug in a job");
                        Ok::<_, StoreError>(k)
                    })
                    .await
            }
        };
        let (a, b, c) = tokio::join!(insert(1), insert(2), insert(3));
        assert_eq!((a, c), (Ok(Ok(1)), Ok(Ok(3))));
        assert_eq!(b, Err(StoreError::WriterStopped));
        assert_eq!(insert(4).await, Ok(Ok(4)));
        let keys = keys(&store).await;
        assert_eq!(keys, vec![1, 3, 4]);
    }

    /// The WAL's salt (header bytes 16..24) changes each time the writer starts it over.
    fn wal_salt(db: &Path) -> Option<[u8; 8]> {
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        let bytes = std::fs::read(wal).ok()?;
        bytes.get(16..24)?.try_into().ok()
    }

    #[tokio::test]
    async fn a_steady_stream_of_writes_does_not_grow_the_wal_without_end() {
        for durability in BOTH {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = store(&dir, durability);
            let db = dir.path().join("t.db");
            let blob = "x".repeat(16 * 1024);
            // Readers of their own all along, as a busy server has: they keep the WAL in use,
            // so it starts over only if the checkpointer waits them out.
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let reader = {
                let (db, stop) = (db.clone(), stop.clone());
                std::thread::spawn(move || {
                    let conn = open_connection(&db, true).expect("reader");
                    let mut reads = 0u64;
                    // Each read holds its snapshot for a while (a long query), back to back.
                    let long_read = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 \
                                     FROM c WHERE x < 20000) SELECT count(*) FROM c, \
                                     (SELECT count(*) FROM t)";
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let n: i64 = conn.query_row(long_read, [], |r| r.get(0)).expect("read");
                        assert_eq!(n, 20000);
                        reads += 1;
                    }
                    reads
                })
            };
            let mut first_salt = None;
            let started = std::time::Instant::now();
            for k in 0.. {
                let v = blob.clone();
                store
                    .write(move |c| {
                        c.execute("INSERT OR REPLACE INTO t VALUES (?1, ?2)", (k % 100, v))
                            .map_err(StoreError::from)
                    })
                    .await
                    .expect("write")
                    .expect("insert");
                let salt = wal_salt(&db);
                if first_salt.is_none() {
                    first_salt = salt;
                } else if salt != first_salt {
                    break; // started over
                }
                assert!(
                    started.elapsed() < std::time::Duration::from_secs(60),
                    "{durability:?}: the WAL never started over after {k} writes"
                );
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            assert!(reader.join().expect("reader thread") > 0);
        }
    }

    #[tokio::test]
    async fn writes_survive_reopening() {
        for durability in BOTH {
            writes_survive_reopening_with(durability).await;
        }
    }

    async fn writes_survive_reopening_with(durability: Durability) {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = store(&dir, durability);
            for k in 0..50 {
                store
                    .write(move |c| {
                        c.execute("INSERT INTO t VALUES (?1, 'v')", [k]).map_err(StoreError::from)
                    })
                    .await
                    .expect("write")
                    .expect("insert");
            }
        }
        let store = store(&dir, durability);
        let n = store
            .read(|c| {
                c.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0))
                    .map_err(StoreError::from)
            })
            .await
            .expect("read")
            .expect("count");
        assert_eq!(n, 50);
    }
}
