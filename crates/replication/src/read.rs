//! The read path: a linearizable read waits until this node has confirmed, with a
//! majority, that it leads, and has applied everything committed before (DESIGN.md, "The
//! read path"). A confirmation is a leader lease: reads within it need no round trip.

use std::time::Duration;

use agora_proto::ApiError;
use openraft::LinearizerOption;
use openraft::error::{LinearizableReadError, RaftError};

use crate::config::ELECTION_MAX_MS;
use crate::group::Group;

/// How old the newest majority's acknowledgement may be for a read to go on without
/// another round trip: an acknowledgement of a message this leader sent at time *t*
/// proves that no other leader can exist before *t* + `election_timeout_max`, because a
/// follower that accepted it refuses to vote (and, by the start guard, a restarted one
/// too) for that long after. 50 ms short of that, for clock drift between hosts.
pub(crate) const LEASE: Duration = Duration::from_millis(ELECTION_MAX_MS - 50);

impl Group {
    /// Waits until a read of this node's file includes every write acknowledged before
    /// the call began; at most [`crate::GroupConfig::patience`]. Within the lease of the
    /// newest acknowledgement it answers at once; otherwise it makes the leader send a
    /// round of heartbeats and waits for a majority to answer one (or for any message the
    /// leader sends meanwhile to be acknowledged), then for the apply to catch up.
    pub async fn linearize(&self) -> Result<(), ApiError> {
        let option = LinearizerOption::new(Some(LEASE), true).with_wait_timeout(self.patience);
        let checked =
            tokio::time::timeout(self.patience, self.raft.ensure_linearizable(option)).await;
        match checked {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(f)))) => {
                Err(self.not_leader(f.leader_node))
            }
            Ok(Err(RaftError::APIError(LinearizableReadError::QuorumNotEnough(_)))) | Err(_) => {
                Err(self.impatient("confirmed", self.patience))
            }
            Ok(Err(RaftError::Fatal(e))) => {
                Err(ApiError::unavailable(format!("replication stopped: {e}")))
            }
        }
    }
}
