//! The write path's batches: jobs queued by callers run as one transaction, each in its
//! own savepoint, with one commit for all (group commit), on the callers' runtime
//! ([`InlineWriter`], `Durability::Process`) or on a writer thread ([`write_loop`],
//! `Durability::Machine`). The crate's documentation says why each.

use std::sync::{Arc, Mutex, mpsc};

use rusqlite::Connection;
use tracing::{error, warn};

/// A job for the writer: runs inside the batch's transaction and returns whether it
/// succeeded (a failed job's savepoint is rolled back) and what to do once the batch's
/// fate is known (`true`: committed).
pub(crate) type WriteJob = Box<dyn FnOnce(&Connection) -> (bool, Completion) + Send>;
pub(crate) type Completion = Box<dyn FnOnce(bool) + Send>;

/// The write connection. Whoever holds the lock may write; the checkpointer takes it now
/// and then to hold writes back for a moment (see `checkpoint.rs`), so waiting for it must
/// not block an async runtime: it is an async mutex.
pub(crate) type WriteConn = Arc<tokio::sync::Mutex<Connection>>;

pub(crate) struct InlineWriter {
    pub(crate) queue: Mutex<Queue>,
    pub(crate) conn: WriteConn,
    pub(crate) max_batch: usize,
}

pub(crate) struct Queue {
    pub(crate) jobs: Vec<WriteJob>,
    /// A task that will run the queue has been spawned and has not yet found it empty.
    pub(crate) flush_scheduled: bool,
}

impl InlineWriter {
    /// Runs the queue, batch after batch, until it is empty. Awaits only the connection
    /// (held by the checkpointer for a moment now and then); each batch runs on this
    /// thread, as short as a commit without fsync.
    pub(crate) fn flush(self: Arc<Self>) -> impl std::future::Future<Output = ()> + Send {
        // Armed now, not when the task first runs: if the task is dropped before it has
        // emptied the queue (its runtime shuts down before polling it, or while it waits
        // for the connection), the next write must schedule a flush of its own, or the
        // jobs queued from then on would wait for ever.
        let unscheduled = Unschedule { writer: self.clone(), armed: true };
        async move {
            // Moved in whole (a closure would capture only the field it writes).
            let mut unscheduled = unscheduled;
            let conn = self.conn.lock().await;
            let mut completions = Vec::new();
            loop {
                let mut jobs = {
                    let mut queue = lock(&self.queue);
                    if queue.jobs.is_empty() {
                        queue.flush_scheduled = false;
                        unscheduled.armed = false;
                        break;
                    }
                    let n = queue.jobs.len().min(self.max_batch);
                    queue.jobs.drain(..n).collect::<Vec<_>>()
                };
                run_batch(&conn, &mut jobs, &mut completions);
            }
        }
    }
}

/// While armed, marks the queue as having no flush scheduled when dropped.
struct Unschedule {
    writer: Arc<InlineWriter>,
    armed: bool,
}

impl Drop for Unschedule {
    fn drop(&mut self) {
        if self.armed {
            lock(&self.writer.queue).flush_scheduled = false;
        }
    }
}

pub(crate) fn write_loop(conn: WriteConn, rx: mpsc::Receiver<WriteJob>, max_batch: usize) {
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

/// Runs one statement of transaction control, prepared once per connection: these run
/// several times for every write, and parsing them each time showed in profiles.
pub fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// Undoes the work since savepoint `name` and ends it.
pub fn undo_savepoint(conn: &Connection, name: &str) -> rusqlite::Result<()> {
    exec(conn, &format!("ROLLBACK TO {name}"))?;
    exec(conn, &format!("RELEASE {name}"))
}

/// Runs `batch` as one transaction, each job in its own savepoint, commits, and then
/// tells every job whether its work is committed. If the transaction stops being one the
/// batch can vouch for (a savepoint cannot be ended, or SQLite rolled the transaction back
/// itself after an I/O error), the rest of the batch is not run and all of it is undone.
fn run_batch(conn: &Connection, batch: &mut Vec<WriteJob>, completions: &mut Vec<Completion>) {
    if !conn.is_autocommit() {
        // Left open by an earlier batch whose COMMIT and ROLLBACK both failed.
        let _ = exec(conn, "ROLLBACK");
    }
    if let Err(e) = exec(conn, "BEGIN IMMEDIATE") {
        warn!(error = %e, "cannot begin a write batch");
        batch.clear();
        return;
    }
    let mut intact = true;
    for job in batch.drain(..) {
        if !intact || exec(conn, "SAVEPOINT job").is_err() {
            // Without a savepoint the job could not be undone alone: fail it unrun.
            drop(job);
            continue;
        }
        // A job that panics (a bug) fails alone: its work is undone, its caller gets an
        // error when its answer is dropped, and the batch and the store go on.
        let (ended, completion) =
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(conn))) {
                Ok((true, completion)) => (exec(conn, "RELEASE job"), Some(completion)),
                Ok((false, completion)) => (undo_savepoint(conn, "job"), Some(completion)),
                Err(_) => {
                    error!("a write job panicked; its work is undone");
                    (undo_savepoint(conn, "job"), None)
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
        && match exec(conn, "COMMIT") {
            Ok(()) => true,
            Err(e) => {
                error!(error = %e, "write batch failed to commit");
                false
            }
        };
    if !committed
        && !conn.is_autocommit()
        && let Err(e) = exec(conn, "ROLLBACK")
    {
        error!(error = %e, "cannot roll back a failed write batch");
    }
    for completion in completions.drain(..) {
        completion(committed);
    }
}

/// Locks `m`, taking over a lock poisoned by a panic (the data is a queue or a
/// connection, both still usable).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection to a fresh database with a table `t(k)`.
    fn conn() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().expect("tempdir");
        let conn = Connection::open(dir.path().join("t.db")).expect("open");
        conn.execute_batch("CREATE TABLE t(k INTEGER PRIMARY KEY);").expect("schema");
        (dir, conn)
    }

    /// A job running `sql`, recording in `fates` whether its batch committed.
    fn job(sql: &'static str, fates: &Arc<Mutex<Vec<(&'static str, bool)>>>) -> WriteJob {
        let fates = fates.clone();
        Box::new(move |c| {
            let ok = c.execute_batch(sql).is_ok();
            let completion: Completion =
                Box::new(move |committed| lock(&fates).push((sql, committed)));
            (ok, completion)
        })
    }

    fn keys(c: &Connection) -> Vec<i64> {
        let mut st = c.prepare("SELECT k FROM t ORDER BY k").expect("prepare");
        let rows = st.query_map([], |r| r.get(0)).expect("query");
        rows.collect::<Result<_, _>>().expect("rows")
    }

    /// The writer thread takes at most `max_batch` jobs into one transaction, and as many
    /// as are waiting up to that. Seen through a job that breaks its batch: it fails the
    /// jobs of its own batch and no others.
    #[test]
    fn the_writer_thread_batches_at_most_max_batch_jobs() {
        let (_dir, c) = conn();
        let fates = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        // Queued before the writer starts: [1, breaker] is the first batch, [3, 4] the next.
        let jobs = [
            "INSERT INTO t VALUES (1)",
            "RELEASE job",
            "INSERT INTO t VALUES (3)",
            "INSERT INTO t VALUES (4)",
        ];
        for sql in jobs {
            tx.send(job(sql, &fates)).expect("send");
        }
        drop(tx);
        write_loop(Arc::new(tokio::sync::Mutex::new(c)), rx, 2);
        let fates = lock(&fates).clone();
        let committed: Vec<bool> = fates.iter().map(|(_, committed)| *committed).collect();
        assert_eq!(committed, [false, false, true, true], "{fates:?}");
    }

    /// A transaction left open (an earlier batch's COMMIT and ROLLBACK both failed) is
    /// rolled back before the next batch begins, so the store does not stop writing.
    #[test]
    fn a_batch_after_a_transaction_left_open_still_commits() {
        let (_dir, c) = conn();
        c.execute_batch("BEGIN; INSERT INTO t VALUES (1);").expect("left open");
        let fates = Arc::new(Mutex::new(Vec::new()));
        let mut batch = vec![job("INSERT INTO t VALUES (2)", &fates)];
        run_batch(&c, &mut batch, &mut Vec::new());
        assert_eq!(*lock(&fates), [("INSERT INTO t VALUES (2)", true)]);
        assert!(c.is_autocommit());
        // The half-done work of the transaction left open is gone; the batch's is in.
        assert_eq!(keys(&c), [2]);
    }
}
