//! The session file: where a one-shot `login` leaves its session id so that the next
//! command, or a shell, goes on with it.
//!
//! The file is `<state dir>/<seller|buyer>-session`, mode 0600, in a directory of mode
//! 0700. The state directory is `$AGORA_STATE_DIR`, else `$XDG_STATE_HOME/agora`, else
//! `$HOME/.local/state/agora`. The shell's history lives beside it.

use std::ffi::OsString;
use std::fs::{self, DirBuilder, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use agora_domain::Role;

/// Names the state directory directly, overriding the XDG rules (tests use it).
pub const STATE_DIR_ENV: &str = "AGORA_STATE_DIR";

/// The state directory from the process environment; `None` when no variable names one.
pub fn state_dir() -> Option<PathBuf> {
    state_dir_from(|name| std::env::var_os(name))
}

/// The state directory given a way to read environment variables: `AGORA_STATE_DIR`, else
/// `$XDG_STATE_HOME/agora` (only if absolute, as the XDG spec says), else
/// `$HOME/.local/state/agora`. Empty variables count as unset.
pub fn state_dir_from(var: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let set = |name: &str| var(name).filter(|value| !value.is_empty()).map(PathBuf::from);
    if let Some(dir) = set(STATE_DIR_ENV) {
        return Some(dir);
    }
    if let Some(xdg) = set("XDG_STATE_HOME").filter(|path| path.is_absolute()) {
        return Some(xdg.join("agora"));
    }
    set("HOME").map(|home| home.join(".local").join("state").join("agora"))
}

/// The saved session of one role, in one state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionStore {
    dir: Option<PathBuf>,
    role: Role,
}

impl SessionStore {
    /// The store of `role` in `dir`; with `None`, sessions are not remembered.
    pub fn new(dir: Option<PathBuf>, role: Role) -> Self {
        SessionStore { dir, role }
    }

    /// The store of `role` in the directory [`state_dir`] finds.
    pub fn from_env(role: Role) -> Self {
        SessionStore::new(state_dir(), role)
    }

    /// The state directory, if there is one.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The session file: `<dir>/<role>-session`.
    pub fn path(&self) -> Option<PathBuf> {
        self.file(&format!("{}-session", self.role))
    }

    /// The shell's history file: `<dir>/<role>-history`.
    pub fn history_path(&self) -> Option<PathBuf> {
        self.file(&format!("{}-history", self.role))
    }

    fn file(&self, name: &str) -> Option<PathBuf> {
        self.dir.as_ref().map(|dir| dir.join(name))
    }

    /// The saved session id; `None` if there is no file (or it is empty).
    pub fn load(&self) -> io::Result<Option<String>> {
        let Some(path) = self.path() else { return Ok(None) };
        match fs::read_to_string(&path) {
            Ok(text) => {
                let session = text.trim();
                Ok((!session.is_empty()).then(|| session.to_owned()))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        }
    }

    /// Creates the state directory (mode 0700) if needed and returns it.
    pub fn ensure_dir(&self) -> io::Result<PathBuf> {
        let dir = self.dir.clone().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no state directory: set {STATE_DIR_ENV}, XDG_STATE_HOME or HOME"),
            )
        })?;
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
        Ok(dir)
    }

    /// Saves `session`, readable by the user alone; returns the file's path.
    pub fn save(&self, session: &str) -> io::Result<PathBuf> {
        self.ensure_dir()?;
        let path = self.path().ok_or_else(|| io::Error::other("no session file"))?;
        let write = || -> io::Result<()> {
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&path)?;
            // `mode` applies only to a new file; an older one may have looser permissions.
            file.set_permissions(Permissions::from_mode(0o600))?;
            writeln!(file, "{session}")?;
            file.sync_all()
        };
        write().map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        Ok(path)
    }

    /// Removes the saved session if it is `session`; returns whether it did. A file
    /// holding another session (a later login) is left alone.
    pub fn forget(&self, session: &str) -> io::Result<bool> {
        if self.load()?.as_deref() != Some(session) {
            return Ok(false);
        }
        let Some(path) = self.path() else { return Ok(false) };
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let map: HashMap<String, OsString> =
            pairs.iter().map(|(k, v)| (k.to_string(), OsString::from(v))).collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn state_dir_follows_override_then_xdg_then_home() {
        let all = env(&[
            ("AGORA_STATE_DIR", "/tmp/agora-test"),
            ("XDG_STATE_HOME", "/xdg"),
            ("HOME", "/home/u"),
        ]);
        assert_eq!(state_dir_from(all), Some(PathBuf::from("/tmp/agora-test")));
        let xdg = env(&[("XDG_STATE_HOME", "/xdg"), ("HOME", "/home/u")]);
        assert_eq!(state_dir_from(xdg), Some(PathBuf::from("/xdg/agora")));
        let home = env(&[("HOME", "/home/u")]);
        assert_eq!(state_dir_from(home), Some(PathBuf::from("/home/u/.local/state/agora")));
        assert_eq!(state_dir_from(env(&[])), None);
    }

    #[test]
    fn empty_or_relative_variables_are_ignored() {
        let vars =
            env(&[("AGORA_STATE_DIR", ""), ("XDG_STATE_HOME", "relative/dir"), ("HOME", "/h")]);
        assert_eq!(state_dir_from(vars), Some(PathBuf::from("/h/.local/state/agora")));
    }

    #[test]
    fn files_are_named_by_role() {
        let store = SessionStore::new(Some("/s".into()), Role::Buyer);
        assert_eq!(store.path(), Some(PathBuf::from("/s/buyer-session")));
        assert_eq!(store.history_path(), Some(PathBuf::from("/s/buyer-history")));
        assert_eq!(SessionStore::new(None, Role::Seller).path(), None);
    }

    #[test]
    fn save_load_forget() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("deep").join("agora");
        let store = SessionStore::new(Some(dir.clone()), Role::Seller);
        assert_eq!(store.load().expect("load"), None);

        let path = store.save("abc123").expect("save");
        assert_eq!(path, dir.join("seller-session"));
        assert_eq!(store.load().expect("load").as_deref(), Some("abc123"));
        let mode = fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = fs::metadata(&dir).expect("stat").permissions().mode() & 0o777;
        assert_eq!(dir_mode, 0o700);

        assert!(!store.forget("other").expect("forget"), "another session stays");
        assert!(store.forget("abc123").expect("forget"));
        assert_eq!(store.load().expect("load"), None);
        assert!(!store.forget("abc123").expect("forget twice"));
    }

    #[test]
    fn saving_tightens_an_existing_file() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = SessionStore::new(Some(tmp.path().to_path_buf()), Role::Buyer);
        let path = store.path().expect("path");
        fs::write(&path, "old").expect("write");
        fs::set_permissions(&path, Permissions::from_mode(0o644)).expect("chmod");
        store.save("new").expect("save");
        assert_eq!(fs::metadata(&path).expect("stat").permissions().mode() & 0o777, 0o600);
        assert_eq!(store.load().expect("load").as_deref(), Some("new"));
    }

    #[test]
    fn without_a_directory_nothing_is_remembered() {
        let store = SessionStore::new(None, Role::Seller);
        assert_eq!(store.load().expect("load"), None);
        assert!(store.save("x").is_err());
        assert!(!store.forget("x").expect("forget"));
    }
}
