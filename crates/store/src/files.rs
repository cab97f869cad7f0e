//! Files only their owner may read: the databases hold password hashes and cardholders'
//! names, the Raft logs and snapshots hold the same rows, and the credentials hold keys.
//!
//! This module is the one place a server sets file modes. [`private_dir`], which every
//! server calls on its data directory before it writes anything, also sets the process's
//! umask to 077: from then on every file this process creates is 0600 and every
//! directory 0700, whichever code creates it (the store, SQLite's `-wal` and `-shm`, the
//! Raft log, snapshots, stamps, maps). [`private_file`] tightens a file an earlier release
//! left readable by others; [`write_private`] writes a small file whole.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode bits for "the owner may read and write; nobody else may do anything".
const FILE_MODE: u32 = 0o600;
/// Mode bits for "only the owner may enter, list or change".
const DIR_MODE: u32 = 0o700;

/// Creates `dir` (and its parents) so that only its owner may enter it, or tightens an
/// existing one to that; and makes every file and directory this process creates from
/// now on its owner's only (umask 077).
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    private_umask();
    std::fs::DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE))
}

/// Makes every file and directory this process creates from now on private to its
/// owner, whatever mode the creating code asks for: the kernel masks group and other
/// bits off (umask 077). Process-wide and idempotent.
pub fn private_umask() {
    use rustix::fs::Mode;
    rustix::process::umask(Mode::RWXG | Mode::RWXO);
}

/// Makes the file at `path` readable and writable by its owner only, if it exists: a
/// file written by an earlier release (or under another umask) is tightened in place.
pub fn private_file(path: &Path) -> std::io::Result<()> {
    match std::fs::set_permissions(path, std::fs::Permissions::from_mode(FILE_MODE)) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Writes `bytes` as the whole content of `path`, created 0600 (an existing file is
/// tightened to 0600 first), and syncs it to disk.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Makes the database file readable and writable by its owner only (0600), creating it
/// empty if it does not exist, so that SQLite gives its -wal and -shm files the same mode.
pub(crate) fn owner_only(path: &Path) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(path)?;
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        private_file(Path::new(&file))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
    }

    #[test]
    fn after_private_dir_whatever_the_process_creates_is_private() {
        let parent = tempfile::tempdir().expect("tempdir");
        let dir = parent.path().join("data");
        private_dir(&dir).expect("private dir");
        assert_eq!(mode(&dir), 0o700);
        // Code that asks for world-readable modes gets private ones.
        std::fs::write(dir.join("plain"), b"x").expect("write");
        assert_eq!(mode(&dir.join("plain")), 0o600);
        std::fs::create_dir(dir.join("sub")).expect("mkdir");
        assert_eq!(mode(&dir.join("sub")), 0o700);
    }

    #[test]
    fn private_files_are_tightened_and_written_0600() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = dir.path().join("old");
        std::fs::write(&old, b"x").expect("write");
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        private_file(&old).expect("tighten");
        assert_eq!(mode(&old), 0o600);
        private_file(&dir.path().join("missing")).expect("a missing file is no error");
        write_private(&old, b"new").expect("rewrite");
        assert_eq!((mode(&old), std::fs::read(&old).expect("read")), (0o600, b"new".to_vec()));
        let fresh = dir.path().join("fresh");
        write_private(&fresh, b"y").expect("write");
        assert_eq!(mode(&fresh), 0o600);
    }
}
