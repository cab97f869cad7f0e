//! The write path's first step: group commit. Commands proposed while an entry is being
//! appended wait and go together in the next one (DESIGN.md, "The write path").

use std::sync::{Arc, Mutex};
use std::time::Duration;

use agora_proto::{ApiError, ErrorCode};
use openraft::error::{ClientWriteError, ForwardReason, RaftError};
use tokio::sync::oneshot;

use crate::group::{Group, lock};
use crate::types::{Answers, Batch};

/// Most commands in one log entry, and most bytes of them.
const BATCH_COMMANDS: usize = 512;
const BATCH_BYTES: usize = 256 * 1024;

/// Largest command, encoded: an entry holding it must fit one replication message
/// (`network::SEND_LIMIT`), whatever the database's own frame limit lets in.
pub(crate) const MAX_COMMAND: usize = 512 * 1024;

/// A command waiting for its entry, and where its answer goes.
type Proposal = (Vec<u8>, oneshot::Sender<Result<Vec<u8>, ApiError>>);

/// The commands waiting for the next entry, and whether a task is appending them.
#[derive(Default)]
pub(crate) struct Proposals(Mutex<Queue>);

#[derive(Default)]
struct Queue {
    waiting: Vec<Proposal>,
    running: bool,
}

impl Group {
    /// Queues `command` for the next log entry and waits for its answer.
    pub async fn propose(self: &Arc<Self>, command: Vec<u8>) -> Result<Vec<u8>, ApiError> {
        if command.len() > MAX_COMMAND {
            return Err(ApiError::new(
                ErrorCode::InvalidArgument,
                format!(
                    "a write of {} bytes is larger than a replicated database takes ({MAX_COMMAND})",
                    command.len()
                ),
            ));
        }
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut queue = lock(&self.proposals.0);
            queue.waiting.push((command, tx));
            !std::mem::replace(&mut queue.running, true)
        };
        if start {
            tokio::spawn(self.clone().run_proposals());
        }
        self.patiently(rx, "committed").await
    }

    /// Appends what is queued, one entry at a time, until the queue is empty: the
    /// commands that arrive while an entry is being appended go together in the next.
    async fn run_proposals(self: Arc<Self>) {
        loop {
            let batch = {
                let mut queue = lock(&self.proposals.0);
                if queue.waiting.is_empty() {
                    queue.running = false;
                    return;
                }
                let (mut n, mut bytes) = (0, 0);
                for (command, _) in &queue.waiting {
                    if n == BATCH_COMMANDS || (n > 0 && bytes + command.len() > BATCH_BYTES) {
                        break;
                    }
                    n += 1;
                    bytes += command.len();
                }
                queue.waiting.drain(..n).collect::<Vec<_>>()
            };
            let (commands, waiters): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
            let answers = match self.write(commands).await {
                Ok(data) if data.len() == waiters.len() => data,
                Ok(_) => {
                    vec![Err(ApiError::internal("an entry's answers were lost")); waiters.len()]
                }
                Err(error) => vec![Err(error); waiters.len()],
            };
            for (waiter, answer) in waiters.into_iter().zip(answers) {
                let _ = waiter.send(answer);
            }
        }
    }

    /// Appends one entry of `commands` and returns what applying them answered. A leader
    /// that has not heard from a majority for a lease refuses writes (openraft 0.10: a
    /// leader just elected has heard nothing yet, a loaded one may not have lately); that
    /// passes with the next round of answers, so the entry is tried again, within
    /// `patience`, as long as this node leads.
    async fn write(&self, commands: Vec<Vec<u8>>) -> Result<Answers, ApiError> {
        let deadline = tokio::time::Instant::now() + self.patience;
        let mut pause = Duration::from_millis(2);
        loop {
            let entry = Batch { now_ms: self.clock.now_ms(), commands: commands.clone() };
            let error = match self.raft.client_write(entry).await {
                Ok(written) => return Ok(written.data),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))
                    if f.reason == ForwardReason::LeaseExpired
                        && *self.leadership().borrow()
                        && tokio::time::Instant::now() + pause < deadline =>
                {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(crate::config::HEARTBEAT_MS));
                    continue;
                }
                Err(error) => error,
            };
            return Err(match error {
                RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
                    self.not_leader(f.leader_node)
                }
                RaftError::APIError(e) => ApiError::internal(e.to_string()),
                RaftError::Fatal(e) => ApiError::unavailable(format!("replication stopped: {e}")),
            });
        }
    }

    /// Waits for `answer` at most [`crate::GroupConfig::patience`], and no longer than a
    /// heartbeat interval once this node has stopped leading: openraft does not always
    /// answer an entry a leader appended just before it handed its leadership over (the
    /// new leader may never have it), and the caller had better ask the new leader than
    /// wait out its patience. The entry may still be applied; the command's op id makes
    /// the caller's retry safe, as after a timeout.
    pub(crate) async fn patiently<T>(
        &self,
        answer: oneshot::Receiver<Result<T, ApiError>>,
        what: &str,
    ) -> Result<T, ApiError> {
        let mut leading = self.leadership();
        let led = *leading.borrow_and_update();
        let deposed = async {
            // Only a leadership this call began under can be lost (a follower's proposal
            // is refused at once anyway).
            if !led || leading.wait_for(|leads| !*leads).await.is_err() {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(Duration::from_millis(crate::config::HEARTBEAT_MS)).await;
        };
        tokio::select! {
            answer = tokio::time::timeout(self.patience, answer) => match answer {
                Ok(Ok(answer)) => answer,
                Ok(Err(_)) => Err(ApiError::unavailable("the replica stopped before answering")),
                Err(_) => Err(self.impatient(what, self.patience)),
            },
            _ = deposed => Err(self.not_leader_here()),
        }
    }

    /// The `timeout` a caller gets when the group did not answer within `after`.
    pub(crate) fn impatient(&self, what: &str, after: Duration) -> ApiError {
        ApiError::new(
            ErrorCode::Timeout,
            format!(
                "{} could not be {what} by a majority of {} within {after:?}",
                if what == "committed" { "the write" } else { "the read" },
                self.me.name,
            ),
        )
    }
}
