//! What a data directory holds before `agora up` starts anything, and what `--replicas N`
//! does with it. A marketplace that ran alone keeps `customer.db`, `product.db` and
//! `payments.db` at the top; groups of replicas keep one directory per replica
//! (`customer-db-1/`, ...), stamped at its first start (`replica.stamp`,
//! crates/replication/DESIGN.md, "Membership and start"). `agora up` never starts an
//! empty marketplace beside data it would not use:
//!
//! - `--replicas N` on a marketplace that ran alone **seeds** every replica of each new
//!   group with a copy of its database (`agora_store::seed`), so all start identical and
//!   go on from there; the originals are moved, untouched, into `before-replicas/`.
//! - A number of replicas other than the groups' own, one included, is refused with what
//!   is there and the command that runs it: a group's size changes while it runs
//!   (`agora cluster add` and `remove`), not by starting it with another number.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, bail};

/// Each group and the file its database keeps.
const DATABASES: [(&str, &str); 3] =
    [("customer-db", "customer.db"), ("product-db", "product.db"), ("payments", "payments.db")];

/// The file a replica writes in its directory at its first start.
const STAMP: &str = "replica.stamp";

/// Where the databases of a marketplace that ran alone go once they have seeded groups.
pub const BEFORE_REPLICAS: &str = "before-replicas";

/// What `data_dir` holds.
#[derive(Debug, Default, PartialEq, Eq)]
struct Found {
    /// The databases of a marketplace that ran alone, by file name.
    single: Vec<&'static str>,
    /// The replica directories that have started (hold a stamp), by name.
    replicas: Vec<String>,
    /// The most replicas a group has: on the cluster map when there is one, else the
    /// highest replica number started.
    group_size: u16,
}

fn look(data_dir: &Path) -> anyhow::Result<Found> {
    let mut found = Found::default();
    for (_, file) in DATABASES {
        if data_dir.join(file).exists() {
            found.single.push(file);
        }
    }
    let entries = match std::fs::read_dir(data_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", data_dir.display())),
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(k) = DATABASES.iter().find_map(|(group, _)| replica_number(&name, group)) else {
            continue;
        };
        if entry.path().join(STAMP).exists() {
            found.group_size = found.group_size.max(k);
            found.replicas.push(name);
        }
    }
    found.replicas.sort();
    // After `agora cluster add` and `remove` the map, which they keep, says how many each
    // group has now; the directories only how many it ever had.
    if found.group_size > 0 && data_dir.join(crate::cluster::MAP_FILE).exists() {
        let map = crate::cluster::ClusterMap::read(data_dir)?;
        let most = map.groups.values().map(Vec::len).max().unwrap_or(0);
        found.group_size = u16::try_from(most).unwrap_or(u16::MAX);
    }
    Ok(found)
}

/// K, when `name` is the directory of replica K of `group` (`product-db-2`).
fn replica_number(name: &str, group: &str) -> Option<u16> {
    name.strip_prefix(group)?.strip_prefix('-')?.parse().ok().filter(|k| *k > 0)
}

/// Makes `data_dir` ready for `agora up --replicas replicas`, or says why it is not and
/// what to run instead. Returns what it did, for the log.
pub fn prepare(data_dir: &Path, replicas: u16) -> anyhow::Result<Option<String>> {
    let found = look(data_dir)?;
    let dir = data_dir.display();
    let listed = |names: &[String]| names.join(", ");
    let singles: Vec<String> = found.single.iter().map(|f| (*f).to_owned()).collect();
    let size = found.group_size;
    if replicas <= 1 {
        if size > 0 {
            bail!(
                "{dir} holds a marketplace of groups of {size} replicas ({}): without \
                 --replicas, agora up would start an empty one beside it. Run `agora up \
                 --replicas {size}` to use it (or --data-dir for a new marketplace)",
                listed(&found.replicas)
            );
        }
        return Ok(None);
    }
    if size > 0 && size != replicas {
        bail!(
            "{dir} holds groups of {size} replicas ({}): --replicas {replicas} would start \
             replicas that hold none of their data. Run `agora up --replicas {size}` to use \
             it; a group's size changes while it runs, with `agora cluster add` and `agora \
             cluster remove` (README, \"Replicated?\")",
            listed(&found.replicas)
        );
    }
    if size > 0 {
        if !singles.is_empty() {
            bail!(
                "{dir} holds both the databases of a marketplace run without replicas ({}) and \
                 groups of {size} replicas ({}); agora up uses the replicas, so move the other \
                 files out of the directory (they are not read) and start again",
                listed(&singles),
                listed(&found.replicas)
            );
        }
        return Ok(None);
    }
    if singles.is_empty() {
        return Ok(None);
    }
    seed(data_dir, replicas, &found).map(Some)
}

/// Seeds every replica of each group from the database of the marketplace that ran
/// alone, then moves those databases into `before-replicas/`. Replica directories of an
/// earlier attempt never started (no stamp), so a copy simply replaces what they hold.
fn seed(data_dir: &Path, replicas: u16, found: &Found) -> anyhow::Result<String> {
    let before = data_dir.join(BEFORE_REPLICAS);
    if before.exists() {
        bail!(
            "{} already exists: move it away before seeding replicas from {}",
            before.display(),
            found.single.join(", ")
        );
    }
    let mut seeded = Vec::new();
    for (group, file) in DATABASES {
        if !found.single.contains(&file) {
            continue;
        }
        for k in 1..=replicas {
            let dir = data_dir.join(format!("{group}-{k}"));
            agora_store::seed::seed_copy(&data_dir.join(file), &dir, file)
                .map_err(anyhow::Error::msg)?;
        }
        seeded.push((group, file));
    }
    agora_store::private_dir(&before)
        .with_context(|| format!("cannot create {}", before.display()))?;
    for (_, file) in &seeded {
        for suffix in ["", "-wal", "-shm"] {
            let name = format!("{file}{suffix}");
            let from = data_dir.join(&name);
            match std::fs::rename(&from, before.join(&name)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("cannot move {}", from.display()));
                }
                _ => {}
            }
        }
    }
    let mut said = String::from("seeded every replica from the marketplace that ran alone:");
    for (group, file) in &seeded {
        let _ = write!(said, " {file} -> {group}-1..{replicas}/;");
    }
    let _ = write!(
        said,
        " the originals, unchanged, are in {}/ (nothing reads them now)",
        before.display()
    );
    Ok(said)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
        std::fs::write(path, b"").expect("file");
    }

    #[test]
    fn replica_directories_are_told_apart_from_the_rest() {
        assert_eq!(replica_number("product-db-2", "product-db"), Some(2));
        assert_eq!(replica_number("product-db-0", "product-db"), None);
        assert_eq!(replica_number("product-db-x", "product-db"), None);
        assert_eq!(replica_number("product-dbx-1", "product-db"), None);
        assert_eq!(replica_number("payments-12", "payments"), Some(12));
    }

    #[test]
    fn another_number_of_replicas_than_the_groups_own_is_refused() {
        let data = tempfile::tempdir().expect("tempdir");
        for k in 1..=3 {
            touch(&data.path().join(format!("product-db-{k}")).join(STAMP));
        }
        let one = prepare(data.path(), 1).expect_err("one").to_string();
        assert!(one.contains("groups of 3 replicas (product-db-1, product-db-2"), "{one}");
        assert!(one.contains("`agora up --replicas 3`"), "{one}");
        let five = prepare(data.path(), 5).expect_err("five").to_string();
        assert!(five.contains("--replicas 5 would start replicas"), "{five}");
        assert!(five.contains("`agora cluster add`"), "{five}");
        assert_eq!(prepare(data.path(), 3).expect("three"), None);
        touch(&data.path().join("product.db"));
        let both = prepare(data.path(), 3).expect_err("both").to_string();
        assert!(both.contains("(product.db) and groups of 3"), "{both}");
    }

    #[test]
    fn nothing_there_is_nothing_to_do() {
        let data = tempfile::tempdir().expect("tempdir");
        assert_eq!(prepare(&data.path().join("new"), 3).expect("new"), None);
        assert_eq!(prepare(data.path(), 1).expect("one"), None);
    }
}
