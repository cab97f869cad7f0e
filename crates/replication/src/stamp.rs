//! The stamp in a replica's data directory: which group, cluster and node the directory
//! is, and its incarnation (DESIGN.md, "Membership and start").

use std::collections::BTreeMap;
use std::path::Path;

use agora_proto::Trust;

use crate::config::{GroupConfig, GroupError};

/// What a replica's stamp file says: which group, cluster and node its directory is.
#[derive(Debug, PartialEq, Eq)]
struct Stamp {
    group: String,
    cluster: String,
    node: u64,
    incarnation: u64,
}

pub(crate) const STAMP: &str = "replica.stamp";

impl Stamp {
    fn describe(&self) -> String {
        format!("node {} of {} in the cluster whose CA is {}", self.node, self.group, self.cluster)
    }

    fn parse(text: &str) -> Option<Stamp> {
        let mut fields = BTreeMap::new();
        for line in text.lines() {
            let (key, value) = line.split_once('=')?;
            fields.insert(key.trim(), value.trim());
        }
        Some(Stamp {
            group: fields.get("group")?.to_string(),
            cluster: fields.get("cluster")?.to_string(),
            node: fields.get("node")?.parse().ok()?,
            incarnation: fields.get("incarnation")?.parse().ok()?,
        })
    }

    fn render(&self) -> String {
        format!(
            "group={}\ncluster={}\nnode={}\nincarnation={}\n",
            self.group, self.cluster, self.node, self.incarnation
        )
    }
}

impl GroupConfig {
    /// Refuses, changing nothing, a data directory stamped by another group, cluster or
    /// node; a directory with no stamp yet passes (it is stamped when the replica joins).
    /// A database calls this before it opens its file there.
    pub fn refuse_foreign_data(&self) -> Result<(), GroupError> {
        if !self.data_dir.join(STAMP).exists() {
            return Ok(());
        }
        check_stamp(&self.data_dir, &self.group_name(), &self.trust, self.node_id).map(|_| ())
    }
}

/// Checks `dir`'s stamp against this start, or stamps a new directory. Returns the
/// directory's incarnation and whether it was new. A foreign stamp is an error and
/// nothing is written.
pub fn check_stamp(
    dir: &Path,
    group: &str,
    trust: &Trust,
    node_id: u64,
) -> Result<(u64, bool), GroupError> {
    let path = dir.join(STAMP);
    let io = |source| GroupError::Io { path: path.clone(), source };
    let expected = |incarnation| Stamp {
        group: group.to_owned(),
        cluster: trust.cluster_fingerprint().to_owned(),
        node: node_id,
        incarnation,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let found = Stamp::parse(&text).ok_or_else(|| GroupError::Foreign {
                dir: dir.to_owned(),
                found: format!("an unreadable stamp ({STAMP})"),
                expected: expected(0).describe(),
            })?;
            let wanted = expected(found.incarnation);
            if found != wanted {
                return Err(GroupError::Foreign {
                    dir: dir.to_owned(),
                    found: found.describe(),
                    expected: wanted.describe(),
                });
            }
            Ok((found.incarnation, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            agora_store::private_dir(dir).map_err(io)?;
            let mut bytes = [0u8; 8];
            getrandom::fill(&mut bytes).map_err(|e| io(std::io::Error::other(e.to_string())))?;
            // Zero means "unknown" in the membership.
            let incarnation = u64::from_le_bytes(bytes).max(1);
            let tmp = dir.join(format!("{STAMP}.tmp"));
            agora_store::write_private(&tmp, expected(incarnation).render().as_bytes())
                .map_err(io)?;
            std::fs::rename(&tmp, &path).map_err(io)?;
            std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
            Ok((incarnation, true))
        }
        Err(e) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_reads_back_as_written() {
        let stamp =
            Stamp { group: "payments".into(), cluster: "ab12".into(), node: 3, incarnation: 9 };
        assert_eq!(Stamp::parse(&stamp.render()), Some(stamp));
        assert_eq!(Stamp::parse("group=payments\ncluster=ab12\nnode=3\n"), None);
    }
}
