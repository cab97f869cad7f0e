//! Seeding a replica's database from the file of a database that ran alone: how `agora up
//! --replicas N` keeps the data of a marketplace that ran without replicas. Every replica
//! of a group gets the same copy before the group first starts, so they all begin
//! identical; the marker left beside each copy tells the database to seal it (cut its
//! log behind a snapshot) once the group has started, so that a member added later is
//! sent the seeded state rather than a log that assumes an empty file.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

/// The file beside a seeded copy until its replica has sealed it.
pub const SEEDED_MARKER: &str = "seeded-from-single";

/// Copies the database at `from` (a consistent copy, its WAL included) to `dir/name`,
/// readable by its owner only, and leaves the [`SEEDED_MARKER`] in `dir`. The copy is made
/// under a temporary name and renamed into place, so a crash leaves no half copy. Refuses
/// a file that was itself a replica's: its replication state would follow it.
pub fn seed_copy(from: &Path, dir: &Path, name: &str) -> Result<(), String> {
    let fail = |what: &str, e: &dyn std::fmt::Display| format!("{what}: {e}");
    // Read-write, not read-only: SQLite rebuilds a missing -shm file only with write access.
    let source = Connection::open_with_flags(from, OpenFlags::SQLITE_OPEN_READ_WRITE)
        .map_err(|e| fail(&format!("cannot open {}", from.display()), &e))?;
    let replicated: bool = source
        .query_row("SELECT count(*) > 0 FROM sqlite_schema WHERE name = 'raft_applied'", [], |r| {
            r.get(0)
        })
        .map_err(|e| fail(&format!("cannot read {}", from.display()), &e))?;
    if replicated {
        return Err(format!(
            "{} was a replica's database (it holds replication state): only a database that \
             ran alone can seed a group",
            from.display()
        ));
    }
    crate::private_dir(dir).map_err(|e| fail(&format!("cannot create {}", dir.display()), &e))?;
    let target = dir.join(name);
    let tmp = dir.join(format!("{name}.seeding"));
    let _ = std::fs::remove_file(&tmp);
    let tmp_text = tmp.to_str().ok_or_else(|| format!("{} is not UTF-8", tmp.display()))?;
    source
        .execute("VACUUM INTO ?1", [tmp_text])
        .map_err(|e| fail(&format!("cannot copy {} to {}", from.display(), tmp.display()), &e))?;
    drop(source);
    let io = |e: std::io::Error| fail(&format!("cannot seed {}", target.display()), &e);
    crate::files::owner_only(&tmp).map_err(io)?;
    std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(io)?;
    // Files of an earlier attempt that never started: the copy replaces them whole.
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.join(format!("{name}{suffix}")));
    }
    std::fs::rename(&tmp, &target).map_err(io)?;
    std::fs::write(dir.join(SEEDED_MARKER), format!("{}\n", from.display())).map_err(io)?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    Ok(())
}

/// Whether the database in `dir` was seeded and is not sealed yet.
pub fn seeded(dir: &Path) -> bool {
    dir.join(SEEDED_MARKER).exists()
}

/// Records that the database in `dir` is sealed: its log no longer reaches back past the
/// seed.
pub fn sealed(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(dir.join(SEEDED_MARKER)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_holds_the_rows_and_the_marker_and_a_replica_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let from = dir.path().join("one.db");
        let conn = Connection::open(&from).expect("open");
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; CREATE TABLE t (x); INSERT INTO t VALUES (1), (2);",
        )
        .expect("rows");
        let replica = dir.path().join("r-1");
        seed_copy(&from, &replica, "one.db").expect("seeded");
        let copy = Connection::open(replica.join("one.db")).expect("copy");
        let rows: i64 = copy.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).expect("n");
        assert_eq!(rows, 2, "the rows still in the WAL are copied too");
        assert!(seeded(&replica));
        sealed(&replica).expect("sealed");
        assert!(!seeded(&replica));

        copy.execute_batch("CREATE TABLE raft_applied (id)").expect("replica state");
        drop(copy);
        let err = seed_copy(&replica.join("one.db"), &dir.path().join("r-2"), "one.db")
            .expect_err("a replica's file");
        assert!(err.contains("was a replica's database"), "{err}");
        drop(conn);
    }
}
