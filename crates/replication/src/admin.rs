//! What the cluster's operator asks of a group (`agora cluster`): how it stands, members
//! added and removed, leadership handed over; and how the answers of several replicas
//! name one leader.

use std::collections::BTreeSet;
use std::time::Duration;

use agora_proto::{ApiError, Component, Trust};

use crate::network::{Identity, Peer};
use crate::types::Message;

/// How the group `group` stands as its replica at `addr` sees it, asked with `trust`
/// (the admin's credentials, or a node's of that group): `agora cluster status`.
pub async fn status_of(
    group: Component,
    addr: &str,
    trust: &Trust,
    timeout: Duration,
) -> Result<Status, ApiError> {
    let me =
        Identity { group, name: group.name().into(), node_id: 0, connector: trust.connector() };
    let mut peer = Peer::probe(me, 0, addr, None);
    peer.send(Message::Status, timeout).await.map_err(|e| e.into_api())
}

/// Adds node `id` at `addr` to group `group` as a learner, through its leader at
/// `leader`, and returns once it has caught up (`agora cluster add`, first step).
pub async fn add_learner_at(
    group: Component,
    leader: &str,
    trust: &Trust,
    id: u64,
    addr: &str,
    timeout: Duration,
) -> Result<(), ApiError> {
    let me =
        Identity { group, name: group.name().into(), node_id: 0, connector: trust.connector() };
    let message = Message::AddLearner { id, addr: addr.to_owned() };
    Peer::probe(me, 0, leader, None).send(message, timeout).await.map_err(|e| e.into_api())
}

/// Makes `voters` the voters of group `group`, through its leader at `leader`
/// (`agora cluster add`, second step, and `remove`).
pub async fn set_voters_at(
    group: Component,
    leader: &str,
    trust: &Trust,
    voters: BTreeSet<u64>,
    timeout: Duration,
) -> Result<(), ApiError> {
    let me =
        Identity { group, name: group.name().into(), node_id: 0, connector: trust.connector() };
    let message = Message::SetVoters { voters };
    Peer::probe(me, 0, leader, None).send(message, timeout).await.map_err(|e| e.into_api())
}

/// Records, through the leader of group `group` at `leader`, that member `id` now
/// listens at `addr` (`agora cluster set-address`).
pub async fn set_address_at(
    group: Component,
    leader: &str,
    trust: &Trust,
    id: u64,
    addr: &str,
    timeout: Duration,
) -> Result<(), ApiError> {
    let me =
        Identity { group, name: group.name().into(), node_id: 0, connector: trust.connector() };
    let message = Message::SetAddress { id, addr: addr.to_owned() };
    Peer::probe(me, 0, leader, None).send(message, timeout).await.map_err(|e| e.into_api())
}

/// Asks the leader of group `group`, at `leader`, to hand its leadership over (to `to`,
/// or to the voter whose log is the most up to date) and returns the new leader's id
/// once another node leads (`agora cluster transfer-leader`).
pub async fn transfer_leader_at(
    group: Component,
    leader: &str,
    trust: &Trust,
    to: Option<u64>,
    timeout: Duration,
) -> Result<u64, ApiError> {
    let me =
        Identity { group, name: group.name().into(), node_id: 0, connector: trust.connector() };
    let message = Message::HandOver { to };
    Peer::probe(me, 0, leader, None).send(message, timeout).await.map_err(|e| e.into_api())
}

/// Which of the replicas (by position) leads: one that says it leads, is a voter of the
/// membership it reports, leads in the highest term any of those voters reports, and is
/// named as leader by a majority of them. A replica restarted a moment ago may still call
/// itself the leader of the term it led before it was killed, and one removed from the
/// group may stand for election in ever higher terms; asked alone, either would be taken
/// for the leader. Replicas that are not voters of the leader's membership are not
/// counted at all.
pub fn agreed_leader(statuses: &[Option<Status>]) -> Option<usize> {
    let answered = || statuses.iter().enumerate().filter_map(|(at, s)| Some((at, s.as_ref()?)));
    answered().filter(|(_, s)| s.leader == Some(s.node_id)).find_map(|(at, candidate)| {
        let voters: BTreeSet<u64> =
            candidate.members.iter().filter(|m| m.voter).map(|m| m.id).collect();
        if !voters.contains(&candidate.node_id) {
            return None;
        }
        let members = || answered().map(|(_, s)| s).filter(|s| voters.contains(&s.node_id));
        let newest = members().map(|s| s.term).max()?;
        let naming = members().filter(|s| s.leader == Some(candidate.node_id)).count();
        (candidate.term == newest && naming * 2 > voters.len()).then_some(at)
    })
}

/// A group as one of its replicas sees it (`agora cluster status`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Status {
    /// The group (the component's name).
    pub group: String,
    /// The replica that answered.
    pub node_id: u64,
    /// The leader it knows of.
    pub leader: Option<u64>,
    /// Its current term.
    pub term: u64,
    /// The last index in its log.
    pub last_log_index: Option<u64>,
    /// The last index applied to its database.
    pub applied_index: Option<u64>,
    /// The members, voters and learners.
    pub members: Vec<MemberStatus>,
    /// Members that did not answer this replica just now.
    pub unreachable: Vec<u64>,
}

/// One member in a [`Status`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MemberStatus {
    /// Its node id.
    pub id: u64,
    /// Its address.
    pub addr: String,
    /// Whether it votes (else a learner).
    pub voter: bool,
    /// The last index the leader knows it holds (only on the leader).
    pub matched: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(node_id: u64, leader: Option<u64>, term: u64) -> Option<Status> {
        seen_with(node_id, leader, term, &[1, 2, 3])
    }

    fn seen_with(node_id: u64, leader: Option<u64>, term: u64, voters: &[u64]) -> Option<Status> {
        let members = voters
            .iter()
            .map(|&id| MemberStatus { id, addr: String::new(), voter: true, matched: None })
            .collect();
        Some(Status {
            group: "customer-db".into(),
            node_id,
            leader,
            term,
            last_log_index: None,
            applied_index: None,
            members,
            unreachable: Vec::new(),
        })
    }

    #[test]
    fn the_leader_is_the_one_a_majority_names_in_the_newest_term() {
        // Replica 1, restarted, still calls itself the leader of term 3; 2 leads term 4.
        let statuses = [seen(1, Some(1), 3), seen(2, Some(2), 4), seen(3, Some(2), 4)];
        assert_eq!(agreed_leader(&statuses), Some(1));
        // Before the others have heard of 2, nobody leads with a majority.
        let statuses = [seen(1, Some(1), 3), seen(2, Some(2), 4), seen(3, Some(1), 3)];
        assert_eq!(agreed_leader(&statuses), None);
        // One that does not answer is not counted as naming anyone.
        let statuses = [None, seen(2, Some(2), 4), None];
        assert_eq!(agreed_leader(&statuses), None);
    }

    #[test]
    fn a_replica_removed_from_the_group_is_not_counted() {
        // 2 was removed (voters now 1, 3), still believes in the old membership, and
        // stands for election alone in ever higher terms.
        let statuses = [
            seen_with(1, Some(1), 4, &[1, 3]),
            seen_with(2, Some(2), 9, &[1, 2, 3]),
            seen_with(3, Some(1), 4, &[1, 3]),
        ];
        assert_eq!(agreed_leader(&statuses), Some(0));
        // A leader of a membership it is not a voter of leads nothing.
        let statuses = [seen_with(1, Some(1), 4, &[2, 3]), seen_with(2, Some(1), 4, &[2, 3])];
        assert_eq!(agreed_leader(&statuses), None);
    }
}
