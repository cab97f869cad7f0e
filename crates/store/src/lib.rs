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
//! Callers are async; jobs are closures, answers come back through oneshot channels.
//!
//! [`once`] makes a mutation idempotent: its answer is recorded under the request's
//! [`OpId`] in the same transaction, and a repeat gets the recorded answer.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;

use agora_proto::ApiError;
use agora_proto::messages::OpId;
use rusqlite::Connection;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;
use tracing::{error, warn};

/// A job for the writer: runs inside the batch's transaction and returns whether it
/// succeeded (a failed job's savepoint is rolled back) and what to do once the batch's
/// fate is known (`true`: committed).
type WriteJob = Box<dyn FnOnce(&Connection) -> (bool, Completion) + Send>;
type Completion = Box<dyn FnOnce(bool) + Send>;
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

/// The write connection. Whoever holds the lock may write; the checkpointer takes it now
/// and then to hold writes back for a moment (see [`checkpoint_loop`]), so waiting for it
/// must not block an async runtime: it is an async mutex.
type WriteConn = Arc<tokio::sync::Mutex<Connection>>;

struct InlineWriter {
    queue: Mutex<Queue>,
    conn: WriteConn,
    max_batch: usize,
}

struct Queue {
    jobs: Vec<WriteJob>,
    /// A task that will run the queue has been spawned and has not yet found it empty.
    flush_scheduled: bool,
}

impl InlineWriter {
    /// Runs the queue, batch after batch, until it is empty. Awaits only the connection
    /// (held by the checkpointer for a moment now and then); each batch runs on this
    /// thread, as short as a commit without fsync.
    async fn flush(self: Arc<Self>) {
        // If this task is dropped before it empties the queue (its runtime shuts down while
        // it waits for the connection), the next write must schedule a flush of its own.
        let unscheduled = Unschedule(&self.queue);
        let conn = self.conn.lock().await;
        let mut completions = Vec::new();
        loop {
            let mut jobs = {
                let mut queue = lock(&self.queue);
                if queue.jobs.is_empty() {
                    queue.flush_scheduled = false;
                    std::mem::forget(unscheduled);
                    break;
                }
                let n = queue.jobs.len().min(self.max_batch);
                queue.jobs.drain(..n).collect::<Vec<_>>()
            };
            run_batch(&conn, &mut jobs, &mut completions);
        }
    }
}

/// Marks the queue as having no flush scheduled when dropped.
struct Unschedule<'a>(&'a Mutex<Queue>);

impl Drop for Unschedule<'_> {
    fn drop(&mut self) {
        lock(self.0).flush_scheduled = false;
    }
}

/// Locks `m`, taking over a lock poisoned by a panic (the data is a queue or a
/// connection, both still usable).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
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
    pub async fn read<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, ApiError> + Send + 'static,
    {
        // `f` does not await, so the lock is held for one read and never across a yield.
        if let Ok(conn) = self.inline.try_lock() {
            return f(&conn);
        }
        let (tx, rx) = oneshot::channel();
        let job: ReadJob = Box::new(move |conn| {
            let _ = tx.send(f(conn));
        });
        if self.reads.send(job).is_err() {
            return Err(ApiError::unavailable("storage is shutting down"));
        }
        rx.await.map_err(|_| ApiError::internal("storage reader stopped"))?
    }

    /// Runs `f` in the writer's current batch. `Ok` is returned only once the batch is
    /// durably committed; an `Err` from `f` undoes everything `f` did, and nothing else.
    pub async fn write<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, ApiError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: WriteJob = Box::new(move |conn| {
            let result = f(conn);
            let ok = result.is_ok();
            let completion: Completion = Box::new(move |committed| {
                let _ = tx.send(match result {
                    Ok(_) if !committed => Err(ApiError::internal("storage commit failed")),
                    other => other,
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
                        return Err(ApiError::internal("storage used outside an async runtime"));
                    };
                    runtime.spawn(writer.clone().flush());
                }
            }
            Writer::Thread(writes) => {
                if writes.send(job).is_err() {
                    return Err(ApiError::unavailable("storage is shutting down"));
                }
            }
        }
        rx.await.map_err(|_| ApiError::internal("storage writer stopped"))?
    }
}

/// The answers of applied mutations, by the caller's scope (the account acting, so one
/// account can never read another's answer) and the request's [`OpId`].
const APPLIED_SCHEMA: &str = "
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
/// `now_ms` is the time the answer is recorded at, and answers older than
/// [`APPLIED_MEMORY_MS`] before it are forgotten now and then. It is an argument, not a
/// reading of this machine's clock, so that replicas applying the same command with the
/// same time (the leader's) keep the same table.
pub fn once<T, F>(c: &Connection, scope: i64, op: &OpId, now_ms: i64, f: F) -> Result<T, ApiError>
where
    T: Serialize + DeserializeOwned,
    F: FnOnce(&Connection) -> Result<T, ApiError>,
{
    if op == &[0; 16] {
        return f(c);
    }
    let recorded: Option<Vec<u8>> = c
        .prepare_cached("SELECT answer FROM applied_ops WHERE scope = ?1 AND op = ?2")
        .and_then(|mut st| {
            use rusqlite::OptionalExtension;
            st.query_row(rusqlite::params![scope, &op[..]], |r| r.get(0)).optional()
        })
        .map_err(db_error)?;
    if let Some(answer) = recorded {
        return postcard::from_bytes(&answer)
            .map_err(|e| ApiError::internal(format!("corrupt recorded answer: {e}")));
    }
    let answer = f(c)?;
    let encoded = postcard::to_allocvec(&answer).map_err(|e| ApiError::internal(e.to_string()))?;
    let now = now_ms;
    c.prepare_cached("INSERT INTO applied_ops (scope, op, answer, at_ms) VALUES (?1, ?2, ?3, ?4)")
        .and_then(|mut st| st.execute(rusqlite::params![scope, &op[..], encoded, now]))
        .map_err(db_error)?;
    // Forget old answers now and then (about one write in 256), in the same batch.
    if op[0] == 0 {
        c.prepare_cached("DELETE FROM applied_ops WHERE at_ms < ?1")
            .and_then(|mut st| st.execute([now - APPLIED_MEMORY_MS]))
            .map_err(db_error)?;
    }
    Ok(answer)
}

/// Maps a SQLite failure inside a job to an internal error, logging the details.
/// Creates `dir` (and its parents) so that only its owner may enter it, or tightens an
/// existing one to that: the databases hold password hashes and cardholders' names.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Makes the database file readable and writable by its owner only (0600), creating it
/// empty if it does not exist, so that SQLite gives its -wal and -shm files the same mode.
fn owner_only(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new().write(true).create(true).truncate(false).mode(0o600).open(path)?;
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        match std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

pub fn db_error(e: rusqlite::Error) -> ApiError {
    error!(error = %e, "storage error");
    ApiError::internal("storage error")
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

fn write_loop(conn: WriteConn, rx: mpsc::Receiver<WriteJob>, max_batch: usize) {
    let mut batch = Vec::with_capacity(max_batch);
    let mut completions = Vec::with_capacity(max_batch);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        run_batch(&conn.blocking_lock(), &mut batch, &mut completions);
    }
}

/// Runs `batch` as one transaction, each job in its own savepoint, commits, and then
/// tells every job whether its work is committed. If the transaction stops being one the
/// batch can vouch for (a savepoint cannot be ended, or SQLite rolled the transaction back
/// itself after an I/O error), the rest of the batch is not run and all of it is undone.
fn run_batch(conn: &Connection, batch: &mut Vec<WriteJob>, completions: &mut Vec<Completion>) {
    if !conn.is_autocommit() {
        // Left open by an earlier batch whose COMMIT and ROLLBACK both failed.
        let _ = conn.execute_batch("ROLLBACK");
    }
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        warn!(error = %e, "cannot begin a write batch");
        batch.clear();
        return;
    }
    let mut intact = true;
    for job in batch.drain(..) {
        if !intact || conn.execute_batch("SAVEPOINT job").is_err() {
            // Without a savepoint the job could not be undone alone: fail it unrun.
            drop(job);
            continue;
        }
        // A job that panics (a bug) fails alone: its work is undone, its caller gets an
        // error when its answer is dropped, and the batch and the store go on.
        let (ended, completion) =
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(conn))) {
                Ok((true, completion)) => (conn.execute_batch("RELEASE job"), Some(completion)),
                Ok((false, completion)) => {
                    (conn.execute_batch("ROLLBACK TO job; RELEASE job"), Some(completion))
                }
                Err(_) => {
                    error!("a write job panicked; its work is undone");
                    (conn.execute_batch("ROLLBACK TO job; RELEASE job"), None)
                }
            };
        if let Err(e) = &ended {
            error!(error = %e, "cannot end a job's savepoint; undoing its whole batch");
        }
        if ended.is_err() || conn.is_autocommit() {
            intact = false;
        }
        completions.extend(completion);
    }
    let committed = intact
        && match conn.execute_batch("COMMIT") {
            Ok(()) => true,
            Err(e) => {
                error!(error = %e, "write batch failed to commit");
                false
            }
        };
    if !committed
        && !conn.is_autocommit()
        && let Err(e) = conn.execute_batch("ROLLBACK")
    {
        error!(error = %e, "cannot roll back a failed write batch");
    }
    for completion in completions.drain(..) {
        completion(committed);
    }
}

/// How often the checkpointer copies new WAL frames into the database file.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// How long a RESTART checkpoint (with writes held back) waits for readers still in the
/// WAL before giving up until the next round.
const RESTART_PATIENCE: std::time::Duration = std::time::Duration::from_millis(20);

/// WAL frames (pages) past which the checkpointer holds writes back for one short
/// checkpoint so that the WAL can start over (about 4 MiB).
const RESTART_AFTER_FRAMES: i64 = 1000;

/// Checkpoints the WAL now and then until `stop` is dropped, then once more.
///
/// A checkpoint copies WAL frames into the database file and syncs it; this thread does
/// that work while writers go on (PASSIVE). But the writer starts the WAL over from its
/// beginning only if, when its transaction begins, every frame has been copied and no
/// reader still reads from the WAL, which under a steady stream of reads and writes
/// hardly ever happens by itself: the WAL would grow without end. So once it holds more
/// than [`RESTART_AFTER_FRAMES`] frames, the checkpointer takes the write connection's
/// lock and runs a RESTART checkpoint: it copies what was committed during the first
/// pass and waits for the readers still in the WAL (reads take microseconds; new ones
/// read the database file), so the next write transaction starts the WAL over. Writes
/// wait for that second pass (one or two syncs, and at most [`RESTART_PATIENCE`] for
/// readers); reads never do.
fn checkpoint_loop(conn: Connection, writer: WriteConn, stop: mpsc::Receiver<()>) {
    let checkpoint = |conn: &Connection, mode: &str| -> Option<i64> {
        // (busy, frames in the WAL, frames copied)
        let pragma = format!("PRAGMA wal_checkpoint({mode})");
        match conn.query_row(&pragma, [], |r| r.get::<_, i64>(1)) {
            Ok(frames) => Some(frames),
            Err(e) => {
                warn!(error = %e, "checkpoint failed");
                None
            }
        }
    };
    // The WAL's length at the last RESTART: it stays until the next write starts the WAL
    // over, and holding writes back again for it would be for nothing.
    let mut restarted_at = None;
    loop {
        let stopping = matches!(
            stop.recv_timeout(CHECKPOINT_EVERY),
            Err(mpsc::RecvTimeoutError::Disconnected)
        );
        let frames = checkpoint(&conn, "PASSIVE");
        if frames.is_some_and(|n| n > RESTART_AFTER_FRAMES) && frames != restarted_at {
            let _writes_held = writer.blocking_lock();
            restarted_at = checkpoint(&conn, "RESTART");
        }
        if stopping {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_proto::ErrorCode;

    const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS t(k INTEGER PRIMARY KEY, v TEXT NOT NULL);";

    fn store(dir: &tempfile::TempDir, durability: Durability) -> Store {
        let config = StoreConfig { durability, ..StoreConfig::new(dir.path().join("t.db")) };
        Store::open(&config, SCHEMA).expect("open")
    }

    /// The keys in `t`, in order.
    async fn keys(store: &Store) -> Vec<i64> {
        store
            .read(|c| {
                let mut st = c.prepare("SELECT k FROM t ORDER BY k").map_err(db_error)?;
                let rows = st.query_map([], |r| r.get::<_, i64>(0)).map_err(db_error)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(db_error)
            })
            .await
            .expect("read")
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
                    c.query_row("PRAGMA cache_size", [], |r| r.get::<_, i64>(0)).map_err(db_error)
                })
                .await
                .expect("read");
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
                        c.execute("INSERT INTO t VALUES (?1, 'x')", [k]).map_err(db_error)
                    })
                    .await
            }
        };
        let refused = store.write(|c| {
            c.execute("INSERT INTO t VALUES (100, 'y')", []).map_err(db_error)?;
            Err::<(), _>(ApiError::new(ErrorCode::InvalidArgument, "no"))
        });
        let (a, b, r) = tokio::join!(ok(1), ok(2), refused);
        assert!(a.is_ok() && b.is_ok() && r.is_err());
        let keys = keys(&store).await;
        assert_eq!(keys, vec![1, 2]);
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
                        once(c, scope, &op, T0, |c| {
                            c.execute("INSERT INTO t VALUES (?1, 'x')", [k]).map_err(db_error)?;
                            Ok(k)
                        })
                    })
                    .await
            }
        };
        assert_eq!(insert(1, [7; 16], 10).await, Ok(10));
        // The repeat would insert 11; it gets the first answer instead.
        assert_eq!(insert(1, [7; 16], 11).await, Ok(10));
        // Another scope with the same op is another request.
        assert_eq!(insert(2, [7; 16], 12).await, Ok(12));
        let n = store
            .read(|c| {
                c.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0)).map_err(db_error)
            })
            .await
            .expect("count");
        assert_eq!(n, 2);
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
                        c.execute("INSERT INTO t VALUES (?1, 'x')", [k]).map_err(db_error)?;
                        assert!(k != 2, "a bug in a job");
                        Ok(k)
                    })
                    .await
            }
        };
        let (a, b, c) = tokio::join!(insert(1), insert(2), insert(3));
        assert_eq!((a, c), (Ok(1), Ok(3)));
        assert_eq!(b.map_err(|e| e.code), Err(ErrorCode::Internal));
        assert_eq!(insert(4).await, Ok(4));
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
                            .map_err(db_error)
                    })
                    .await
                    .expect("write");
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
                        c.execute("INSERT INTO t VALUES (?1, 'v')", [k]).map_err(db_error)
                    })
                    .await
                    .expect("write");
            }
        }
        let store = store(&dir, durability);
        let n = store
            .read(|c| {
                c.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0)).map_err(db_error)
            })
            .await
            .expect("count");
        assert_eq!(n, 50);
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

    fn bump(c: &Connection) -> Result<i64, ApiError> {
        c.execute("UPDATE n SET v = v + 1", []).map_err(db_error)?;
        c.query_row("SELECT v FROM n", [], |r| r.get(0)).map_err(db_error)
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

    #[test]
    fn recorded_answers_are_forgotten_after_their_memory() {
        let c = ops_table();
        // Ops whose first byte is 0 also sweep out answers past their memory.
        let (old, recent, sweep) =
            ([1; 16], [2; 16], [0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
        assert_eq!(once(&c, 7, &old, T0, bump).expect("first"), 1);
        assert_eq!(once(&c, 7, &recent, T0, bump).expect("first"), 2);
        // Repeats get the recorded answers and change nothing.
        assert_eq!(once(&c, 7, &old, T0, bump).expect("repeat"), 1);
        assert_eq!(once(&c, 7, &recent, T0, bump).expect("repeat"), 2);

        // One answer just past its memory, one a minute short of it.
        age(&c, &old, APPLIED_MEMORY_MS + 1_000);
        age(&c, &recent, APPLIED_MEMORY_MS - 60_000);
        assert_eq!(once(&c, 7, &sweep, T0, bump).expect("sweep"), 3);
        // The old op is new again, and runs; the recent one is still remembered.
        assert_eq!(once(&c, 7, &old, T0, bump).expect("forgotten"), 4);
        assert_eq!(once(&c, 7, &recent, T0, bump).expect("remembered"), 2);
        assert_eq!(once(&c, 7, &old, T0, bump).expect("recorded again"), 4);
    }
}
