//! How a replica joins its group: [`GroupConfig`], the `--peers` list, the flags a
//! launcher starts a replica with, why a start fails, and the group's timing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agora_proto::Trust;
use agora_store::Durability;

/// How one replica joins its group.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// This replica's id in the group (`--node-id`).
    pub node_id: u64,
    /// Every voter of the group at its first start, this one included: id -> address of
    /// the database's port (`--peers`).
    pub peers: BTreeMap<u64, String>,
    /// The replica's data directory: `raft.db`, the stamp and the snapshots go here,
    /// beside the database file.
    pub data_dir: PathBuf,
    /// This node's credentials; their component is the group's.
    pub trust: Trust,
    /// The group's name, as every message names it: the component's (`product-db`),
    /// unless one component runs several groups, each named `<component>/<n>` (the
    /// product catalogue's shards). `None`: the component's.
    pub name: Option<String>,
    /// What an acknowledged write survives; the log follows the database's setting.
    pub durability: Durability,
    /// Log entries between snapshots.
    pub snapshot_every: u64,
    /// How long a proposal or a linearizable read waits for the group (a leader cut
    /// off from its majority cannot commit) before it answers `timeout`. A proposal that
    /// timed out may still be applied later; its op id makes a retry safe.
    pub patience: Duration,
    /// Where this node dials other members instead of the address the membership gives
    /// them, by member id. The membership's addresses are the group's, the same on every
    /// node; these are this node's alone: for a node that reaches a peer through a relay
    /// (a tunnel, a NAT). Tests route each link through a proxy they can cut this way
    /// (tests/partition.rs), which no shared address could do. Empty by default.
    pub routes: BTreeMap<u64, String>,
}

impl GroupConfig {
    /// Defaults for node `node_id` of `peers`, with its files in `data_dir`.
    pub fn new(
        node_id: u64,
        peers: BTreeMap<u64, String>,
        data_dir: impl Into<PathBuf>,
        trust: Trust,
    ) -> Self {
        GroupConfig {
            node_id,
            peers,
            data_dir: data_dir.into(),
            trust,
            durability: Durability::default(),
            name: None,
            snapshot_every: 10_000,
            patience: Duration::from_secs(5),
            routes: BTreeMap::new(),
        }
    }

    /// The group's name ([`GroupConfig::name`]).
    pub fn group_name(&self) -> String {
        match &self.name {
            Some(name) => name.clone(),
            None => self.trust.component().name().to_owned(),
        }
    }

    /// openraft's settings for this group (the timing below).
    pub(crate) fn raft_config(&self) -> Result<openraft::Config, GroupError> {
        openraft::Config {
            cluster_name: self.group_name(),
            heartbeat_interval: HEARTBEAT_MS,
            election_timeout_min: ELECTION_MIN_MS,
            election_timeout_max: ELECTION_MAX_MS,
            install_snapshot_timeout: INSTALL_SNAPSHOT_TIMEOUT_MS,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_every.max(1)),
            snapshot_max_chunk_size: SNAPSHOT_CHUNK,
            // A follower cut off for a while, or restarted with a short log, asks first
            // whether it could win before it raises its term: a healthy leader is not
            // deposed when it comes back.
            enable_pre_vote: Some(true),
            // A leader restarted takes part in an election like any node: openraft 0.10
            // would otherwise let it lead again at once, on a log it has not confirmed
            // with anyone, while the others may have elected another meanwhile.
            enable_leader_restore: Some(false),
            // After an unreachable member: 25 ms, 50 ms, then every heartbeat interval
            // (DESIGN.md, "Timing").
            backoff: format!(
                "25ms 50ms {HEARTBEAT_MS}ms {HEARTBEAT_MS}ms {HEARTBEAT_MS}ms ..{HEARTBEAT_MS}ms"
            ),
            ..Default::default()
        }
        .validate()
        .map_err(|e| GroupError::Start(e.to_string()))
    }
}

/// Who a replica is in its group (`--node-id`, `--peers`): its id, and the address of
/// every member, its own included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peers {
    /// This replica's id.
    pub node_id: u64,
    /// Every member's id and the address its database listens on.
    pub peers: BTreeMap<u64, String>,
    /// Where this node dials some members instead of where the group's membership says
    /// they listen ([`GroupConfig::routes`]); empty by default.
    pub routes: BTreeMap<u64, String>,
}

impl Peers {
    /// Node `node_id` of `peers`, dialling each where its address says.
    pub fn new(node_id: u64, peers: BTreeMap<u64, String>) -> Peers {
        Peers { node_id, peers, routes: BTreeMap::new() }
    }

    /// The group settings of this replica, whose files live in `data_dir`.
    pub fn config(
        &self,
        data_dir: impl Into<PathBuf>,
        trust: Trust,
        durability: Durability,
    ) -> GroupConfig {
        GroupConfig {
            durability,
            routes: self.routes.clone(),
            ..GroupConfig::new(self.node_id, self.peers.clone(), data_dir, trust)
        }
    }
}

/// Reads a peer list as `--peers` takes it: `1=host:port,2=host:port,...`.
pub fn parse_peers(text: &str) -> Result<BTreeMap<u64, String>, String> {
    let mut peers = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|item| !item.is_empty()) {
        let (id, addr) =
            item.split_once('=').ok_or_else(|| format!("{item:?} is not ID=HOST:PORT"))?;
        let id: u64 = id.trim().parse().map_err(|_| format!("{id:?} is not a node id"))?;
        if id == 0 {
            return Err(format!("{item:?}: node ids start at 1"));
        }
        let addr = addr.trim();
        let valid = addr
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !valid {
            return Err(format!("{addr:?} is not HOST:PORT"));
        }
        if peers.insert(id, addr.to_owned()).is_some() {
            return Err(format!("node {id} is listed twice"));
        }
    }
    if peers.is_empty() {
        return Err("no peers: list every voter as ID=HOST:PORT, separated by commas".into());
    }
    Ok(peers)
}

/// The flags that start replica `node_id` of a group as a process of its own (`agora
/// <database> ...`): its data directory, the cluster's credentials, its node id, and every
/// voter's address as `--peers` takes it ([`parse_peers`]). For launchers that start a
/// whole group on one machine (`agora up --replicas`, `agora bench --spawn --replicas`).
pub fn replica_flags(
    node_id: u64,
    peers: &BTreeMap<u64, String>,
    data_dir: &Path,
    credentials: &Path,
) -> Vec<String> {
    let peers: Vec<String> = peers.iter().map(|(id, addr)| format!("{id}={addr}")).collect();
    vec![
        "--data-dir".into(),
        data_dir.display().to_string(),
        "--credentials".into(),
        credentials.display().to_string(),
        "--node-id".into(),
        node_id.to_string(),
        "--peers".into(),
        peers.join(","),
    ]
}

/// Why a replica could not start in its group.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    /// The data directory belongs to another group, cluster or node.
    #[error(
        "{dir} holds the data of {found}, but this is {expected}: point --data-dir at this \
         replica's own directory (nothing was changed)"
    )]
    Foreign {
        /// The data directory.
        dir: PathBuf,
        /// What its stamp says.
        found: String,
        /// What this start is.
        expected: String,
    },
    /// The configuration cannot work.
    #[error("{0}")]
    Config(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// Which file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The log or the state machine could not be opened, or openraft refused to start.
    #[error("cannot start replication: {0}")]
    Start(String),
}

/// Timing of the group (DESIGN.md, "Timing", says why these numbers).
///
/// The heartbeat interval is also the timeout openraft gives every append, so it must
/// leave room for a follower's commit (an fsync with `--durability machine`) on a busy
/// machine: 100 ms. A follower that hears nothing from its leader for its election
/// timeout (150 to 300 ms) asks the others whether it could win (Pre-Vote); they refuse
/// while their own leader lease (`election_timeout_max`) since they last heard from the
/// leader runs, so a failover takes between 300 and 600 ms plus an election round.
pub(crate) const HEARTBEAT_MS: u64 = 100;
pub(crate) const ELECTION_MIN_MS: u64 = 150;
pub(crate) const ELECTION_MAX_MS: u64 = 300;
const INSTALL_SNAPSHOT_TIMEOUT_MS: u64 = 10_000;
pub(crate) const SNAPSHOT_CHUNK: u64 = 512 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_flags_name_the_node_and_a_peer_list_parse_peers_reads_back() {
        let peers: BTreeMap<u64, String> =
            [(1, "127.0.0.1:7402".to_owned()), (2, "[::1]:7412".to_owned())].into();
        let flags = replica_flags(2, &peers, Path::new("/d/p-2"), Path::new("/d/creds"));
        let value = |flag: &str| {
            let at = flags.iter().position(|f| f == flag).expect(flag);
            flags[at + 1].clone()
        };
        assert_eq!(value("--node-id"), "2");
        assert_eq!(value("--data-dir"), "/d/p-2");
        assert_eq!(value("--credentials"), "/d/creds");
        assert_eq!(parse_peers(&value("--peers")), Ok(peers));
    }

    #[test]
    fn an_unreachable_member_is_tried_again_after_25_then_50_then_every_100_ms() {
        let dir = tempfile::tempdir().expect("tempdir");
        let trust = agora_testkit::trust(dir.path(), agora_proto::Component::ProductDb);
        let config = GroupConfig::new(1, BTreeMap::new(), dir.path(), trust);
        let steps: Vec<Duration> =
            config.raft_config().expect("valid").build_backoff().take(6).collect();
        let ms = |n| Duration::from_millis(n);
        assert_eq!(steps, [ms(25), ms(50), ms(100), ms(100), ms(100), ms(100)]);
    }

    #[test]
    fn a_peer_list_reads_as_ids_and_addresses() {
        let peers = parse_peers("1=10.0.0.1:7402, 2=db2:7402,3=[::1]:7402").expect("valid");
        assert_eq!(peers.len(), 3);
        assert_eq!(peers[&2], "db2:7402");
        assert_eq!(peers[&3], "[::1]:7402");
        for bad in ["", "1", "x=a:1", "1=a", "1=:7402", "1=a:port", "1=a:1,1=b:2"] {
            assert!(parse_peers(bad).is_err(), "{bad:?} was taken");
        }
    }
}
