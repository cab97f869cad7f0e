//! Snapshots in transfer: sent to a follower piece by piece over our protocol (a SQLite
//! file can be larger than any one message), received into a file of the state machine's
//! directory, and installed by openraft once the last piece is in.

use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use agora_proto::{ApiError, ErrorCode};
use openraft::error::{NetworkError, RPCError, StreamingError};
use openraft::network::RPCOption;
use openraft::raft::SnapshotResponse;
use tokio::io::AsyncReadExt;

use crate::group::{Group, lock};
use crate::network::{Peer, transport_error};
use crate::types::{Message, Snapshot, SnapshotChunk, SnapshotFile, TypeConfig, Vote};

/// Sends `snapshot` in pieces of at most `chunk` bytes, each answered before the next
/// goes; the answer to the last is the receiver's after it installed the snapshot.
pub(crate) async fn send(
    peer: &mut Peer,
    vote: Vote,
    snapshot: Snapshot,
    chunk: usize,
    option: &RPCOption,
) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
    let Snapshot { meta, snapshot: SnapshotFile { mut file, .. } } = snapshot;
    let size = file.metadata().await.map_err(network_error)?.len();
    let mut transfer = [0u8; 8];
    getrandom::fill(&mut transfer).map_err(network_error)?;
    let transfer = u64::from_le_bytes(transfer);
    let mut offset = 0u64;
    loop {
        let left = usize::try_from(size.saturating_sub(offset)).unwrap_or(usize::MAX);
        let mut data = vec![0u8; left.min(chunk)];
        file.read_exact(&mut data).await.map_err(network_error)?;
        let done = offset + data.len() as u64 >= size;
        let piece = SnapshotChunk { vote, meta: meta.clone(), transfer, offset, data, done };
        offset += piece.data.len() as u64;
        let answer: Option<SnapshotResponse<TypeConfig>> = peer
            .send(Message::SnapshotChunk(piece), option.soft_ttl())
            .await
            .map_err(|e| match transport_error(e) {
                RPCError::Unreachable(e) => StreamingError::Unreachable(e),
                RPCError::Network(e) => StreamingError::Network(e),
                other => StreamingError::Network(NetworkError::new(&other)),
            })?;
        match answer {
            // The receiver follows a newer leader: it says so, and openraft steps down.
            Some(answer) if answer.vote != vote || done => return Ok(answer),
            _ if done => {
                return Err(StreamingError::Network(NetworkError::from_string(
                    "the receiver did not answer the last piece of the snapshot",
                )));
            }
            _ => {}
        }
    }
}

fn network_error(e: impl std::fmt::Display) -> NetworkError<TypeConfig> {
    NetworkError::from_string(e.to_string())
}

/// A snapshot being received: the transfer it belongs to and the file it goes into.
pub(crate) struct Receiving {
    transfer: u64,
    file: std::fs::File,
    path: PathBuf,
    /// Where the next piece must start.
    next: u64,
}

/// Files made for received snapshots get distinct names.
static NEXT_FILE: AtomicU64 = AtomicU64::new(1);

/// Takes one piece of a snapshot: `None` until the last piece is in; then installs the
/// file and answers openraft's response. A piece of another transfer than the one in
/// progress (a retry) starts the file over; a piece out of order is refused, and the
/// leader sends the snapshot again.
pub(crate) async fn receive(
    node: &Arc<Group>,
    chunk: SnapshotChunk,
) -> Result<Option<SnapshotResponse<TypeConfig>>, ApiError> {
    let SnapshotChunk { vote, meta, transfer, offset, data, done } = chunk;
    // A newer leader than the sender: say so at once, and the sender steps down.
    let mine = node.metrics().vote;
    if mine > vote {
        return Ok(Some(SnapshotResponse::new(mine)));
    }
    let receiver = node.clone();
    let write = move || -> Result<Option<(PathBuf, std::fs::File)>, ApiError> {
        let io = |e: std::io::Error| {
            ApiError::internal(format!("cannot write a received snapshot: {e}"))
        };
        let mut receiving = lock(&receiver.receiving);
        let fresh = receiving.as_ref().is_none_or(|r| r.transfer != transfer);
        if fresh {
            if offset != 0 {
                return Err(ApiError::new(
                    ErrorCode::BadRequest,
                    "a snapshot's piece arrived before its start: send it again from the start",
                ));
            }
            if let Some(old) = receiving.take() {
                let _ = std::fs::remove_file(&old.path);
            }
            let n = NEXT_FILE.fetch_add(1, Ordering::Relaxed);
            let path = receiver.snapshot_dir.join(format!("receiving-{n}.db"));
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .map_err(io)?;
            *receiving = Some(Receiving { transfer, file, path, next: 0 });
        }
        let Some(state) = receiving.as_mut() else {
            return Err(ApiError::internal("the snapshot in progress vanished"));
        };
        if offset != state.next {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                format!(
                    "a snapshot's piece at offset {} arrived where {} was expected: send it \
                     again from the start",
                    offset, state.next
                ),
            ));
        }
        state.file.seek(SeekFrom::Start(offset)).map_err(io)?;
        state.file.write_all(&data).map_err(io)?;
        state.next += data.len() as u64;
        if !done {
            return Ok(None);
        }
        let Some(done) = receiving.take() else {
            return Err(ApiError::internal("the snapshot in progress vanished"));
        };
        done.file.sync_all().map_err(io)?;
        Ok(Some((done.path, done.file)))
    };
    let received = tokio::task::spawn_blocking(write)
        .await
        .map_err(|e| ApiError::internal(format!("receiving a snapshot failed: {e}")))??;
    let Some((path, file)) = received else { return Ok(None) };
    let file = tokio::fs::File::from_std(file);
    let snapshot = Snapshot { meta, snapshot: SnapshotFile { file, path } };
    node.raft
        .install_full_snapshot(vote, snapshot)
        .await
        .map(Some)
        .map_err(|e| ApiError::unavailable(format!("replication stopped: {e}")))
}
