//! The checkpointer: a thread of its own that copies the WAL into the database file, so
//! that no commit waits for it.

use std::sync::mpsc;

use rusqlite::Connection;
use tracing::warn;

use crate::batch::WriteConn;

/// How often the checkpointer copies new WAL frames into the database file.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// How long a RESTART checkpoint (with writes held back) waits for readers still in the
/// WAL before giving up until the next round.
pub(crate) const RESTART_PATIENCE: std::time::Duration = std::time::Duration::from_millis(20);

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
pub(crate) fn checkpoint_loop(conn: Connection, writer: WriteConn, stop: mpsc::Receiver<()>) {
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
