//! The session file: where a one-shot `login` leaves its session id so that the next
//! command, or a shell, goes on with it.
//!
//! The file is `<state dir>/<seller|buyer>-session`, mode 0600, in a directory of mode
//! 0700, with one line per server address: `127.0.0.1:7404 SESSION`. A session is one
//! marketplace's, so a command sent to another server does not find it, and a refusal
//! from that server does not remove it. The state directory is `$AGORA_STATE_DIR`, else `$XDG_STATE_HOME/agora`, else
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

/// Most servers a session file remembers a session for; the oldest goes first.
const SERVERS_MAX: usize = 64;

/// The saved sessions of one role, in one state directory: one per server address, since
/// a session is one marketplace's. A session saved for the servers `a,b` (a login through
/// `--server a,b`) is found through either.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionStore {
    dir: Option<PathBuf>,
    role: Role,
}

/// One line of the file: a server address and the session saved for it. A line with no
/// address (a file written before sessions were kept per server) holds a session for
/// whichever server is asked, as that file did.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    server: String,
    session: String,
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

    /// The session file: `<dir>/<role>-session`, one `SERVER SESSION` a line.
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

    fn entries(&self) -> io::Result<Vec<Entry>> {
        let Some(path) = self.path() else { return Ok(Vec::new()) };
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        };
        Ok(text
            .lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                match (words.next(), words.next()) {
                    (Some(server), Some(session)) => {
                        Some(Entry { server: server.to_owned(), session: session.to_owned() })
                    }
                    (Some(session), None) => {
                        Some(Entry { server: String::new(), session: session.to_owned() })
                    }
                    _ => None,
                }
            })
            .collect())
    }

    /// The session saved for the first of `servers` that has one (else one saved before
    /// sessions were kept per server); `None` if there is none.
    pub fn load(&self, servers: &[String]) -> io::Result<Option<String>> {
        let entries = self.entries()?;
        let for_server = servers
            .iter()
            .find_map(|server| entries.iter().find(|e| e.server == *server))
            .or_else(|| entries.iter().find(|e| e.server.is_empty()));
        Ok(for_server.map(|e| e.session.clone()))
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

    /// Saves `session` for each of `servers`, readable by the user alone, keeping what is
    /// saved for other servers; returns the file's path.
    pub fn save(&self, servers: &[String], session: &str) -> io::Result<PathBuf> {
        let mut entries = self.entries()?;
        // A session from before the file named servers: this login replaces it.
        entries.retain(|e| !e.server.is_empty() && !servers.contains(&e.server));
        for server in servers {
            entries.push(Entry { server: server.clone(), session: session.to_owned() });
        }
        let over = entries.len().saturating_sub(SERVERS_MAX);
        entries.drain(..over);
        self.write(&entries)
    }

    /// Removes `session` where it is saved for one of `servers` (and where it was saved
    /// for any server), since one of them ended it; returns whether it did. What is saved
    /// for other servers, or another session (a later login), is left alone: a server of
    /// another marketplace refusing a session says nothing of this one's.
    pub fn forget(&self, servers: &[String], session: &str) -> io::Result<bool> {
        let mut entries = self.entries()?;
        let before = entries.len();
        entries.retain(|e| {
            e.session != session || !(e.server.is_empty() || servers.contains(&e.server))
        });
        if entries.len() == before {
            return Ok(false);
        }
        self.write(&entries)?;
        Ok(true)
    }

    fn write(&self, entries: &[Entry]) -> io::Result<PathBuf> {
        self.ensure_dir()?;
        let path = self.path().ok_or_else(|| io::Error::other("no session file"))?;
        if entries.is_empty() {
            return match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    Err(io::Error::new(e.kind(), format!("{}: {e}", path.display())))
                }
                _ => Ok(path),
            };
        }
        let write = || -> io::Result<()> {
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&path)?;
            // `mode` applies only to a new file; an older one may have looser permissions.
            file.set_permissions(Permissions::from_mode(0o600))?;
            for entry in entries {
                writeln!(file, "{} {}", entry.server, entry.session)?;
            }
            file.sync_all()
        };
        write().map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        Ok(path)
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

    fn servers(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn save_load_forget() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("deep").join("agora");
        let store = SessionStore::new(Some(dir.clone()), Role::Seller);
        let here = servers(&["a:1"]);
        assert_eq!(store.load(&here).expect("load"), None);

        let path = store.save(&here, "abc123").expect("save");
        assert_eq!(path, dir.join("seller-session"));
        assert_eq!(store.load(&here).expect("load").as_deref(), Some("abc123"));
        let mode = fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = fs::metadata(&dir).expect("stat").permissions().mode() & 0o777;
        assert_eq!(dir_mode, 0o700);

        assert!(!store.forget(&here, "other").expect("forget"), "another session stays");
        assert!(store.forget(&here, "abc123").expect("forget"));
        assert_eq!(store.load(&here).expect("load"), None);
        assert!(!store.forget(&here, "abc123").expect("forget twice"));
    }

    #[test]
    fn a_session_is_one_servers_and_another_server_cannot_remove_it() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = SessionStore::new(Some(tmp.path().to_path_buf()), Role::Buyer);
        store.save(&servers(&["a:1", "b:2"]), "ours").expect("save");
        store.save(&servers(&["c:3"]), "theirs").expect("save");
        assert_eq!(store.load(&servers(&["b:2"])).expect("load").as_deref(), Some("ours"));
        assert_eq!(store.load(&servers(&["c:3"])).expect("load").as_deref(), Some("theirs"));
        assert_eq!(store.load(&servers(&["d:4"])).expect("load"), None, "nothing for d");
        // c refusing its session leaves a's and b's alone, and the other way round.
        assert!(!store.forget(&servers(&["c:3"]), "ours").expect("forget"));
        assert!(store.forget(&servers(&["c:3"]), "theirs").expect("forget"));
        assert_eq!(store.load(&servers(&["a:1"])).expect("load").as_deref(), Some("ours"));
        assert!(store.forget(&servers(&["a:1", "b:2"]), "ours").expect("forget"));
        assert!(!store.path().expect("path").exists(), "nothing left, no file");
    }

    #[test]
    fn a_file_from_before_serves_any_server_until_the_next_login() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = SessionStore::new(Some(tmp.path().to_path_buf()), Role::Buyer);
        fs::write(store.path().expect("path"), "old\n").expect("write");
        assert_eq!(store.load(&servers(&["a:1"])).expect("load").as_deref(), Some("old"));
        store.save(&servers(&["a:1"]), "new").expect("save");
        assert_eq!(store.load(&servers(&["b:2"])).expect("load"), None, "replaced");
    }

    #[test]
    fn saving_tightens_an_existing_file() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = SessionStore::new(Some(tmp.path().to_path_buf()), Role::Buyer);
        let path = store.path().expect("path");
        fs::write(&path, "old").expect("write");
        fs::set_permissions(&path, Permissions::from_mode(0o644)).expect("chmod");
        store.save(&servers(&["a:1"]), "new").expect("save");
        assert_eq!(fs::metadata(&path).expect("stat").permissions().mode() & 0o777, 0o600);
        assert_eq!(store.load(&servers(&["a:1"])).expect("load").as_deref(), Some("new"));
    }

    #[test]
    fn without_a_directory_nothing_is_remembered() {
        let store = SessionStore::new(None, Role::Seller);
        let here = servers(&["a:1"]);
        assert_eq!(store.load(&here).expect("load"), None);
        assert!(store.save(&here, "x").is_err());
        assert!(!store.forget(&here, "x").expect("forget"));
    }
}
