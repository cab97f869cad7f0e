//! What holds a port `agora up` could not listen on, and whether its ports sit where the
//! kernel picks the local ports of outgoing connections (Linux's ephemeral range,
//! `/proc/sys/net/ipv4/ip_local_port_range`, 32768 to 60999 by default). A port there
//! may be taken by any client's connection for a while, and a "port is taken" error is
//! then no other agora's doing. Read from `/proc/net/tcp` and `/proc/net/tcp6`; on a
//! system without them, nothing is said.

use std::ops::RangeInclusive;

/// The kernel's range for outgoing connections' local ports.
pub fn ephemeral_range() -> RangeInclusive<u16> {
    let default = 32768..=60999;
    let Ok(text) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range") else {
        return default;
    };
    let mut bounds = text.split_whitespace().map(str::parse::<u16>);
    match (bounds.next(), bounds.next()) {
        (Some(Ok(low)), Some(Ok(high))) if low <= high => low..=high,
        _ => default,
    }
}

/// Whether the ports `first..=last` reach into `range`.
pub fn overlaps(first: u16, last: u16, range: &RangeInclusive<u16>) -> bool {
    first <= *range.end() && last >= *range.start()
}

/// What holds a local TCP port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// A server listening on it, and the process, when it is one this user may see.
    Listener(Option<Process>),
    /// The local end of a connection (an outgoing one, usually), in this state.
    Connection { state: &'static str, process: Option<Process> },
}

/// A process that holds a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    /// Its id.
    pub pid: u32,
    /// Its command name (`/proc/PID/comm`).
    pub name: String,
}

impl Holder {
    /// The holder in words, for the error of a taken port.
    pub fn describe(&self, port: u16) -> String {
        let by = |process: &Option<Process>| match process {
            Some(p) => format!(" (process {} {})", p.pid, p.name),
            None => String::new(),
        };
        match self {
            Holder::Listener(process) => {
                format!("port {port} is taken by a server listening on it{}", by(process))
            }
            Holder::Connection { state, process } => format!(
                "port {port} is the local end of a connection ({state}){}: the kernel gave it \
                 to an outgoing connection",
                by(process)
            ),
        }
    }
}

/// One socket of `/proc/net/tcp*`: its local port, state and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Socket {
    port: u16,
    state: u8,
    inode: u64,
}

/// The sockets in the text of `/proc/net/tcp` or `/proc/net/tcp6`.
fn sockets(table: &str) -> Vec<Socket> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let port = fields.get(1)?.rsplit_once(':')?.1;
            Some(Socket {
                port: u16::from_str_radix(port, 16).ok()?,
                state: u8::from_str_radix(fields.get(3)?, 16).ok()?,
                inode: fields.get(9)?.parse().ok()?,
            })
        })
        .collect()
}

/// The kernel's name for a TCP state number (include/net/tcp_states.h).
fn state_name(state: u8) -> &'static str {
    match state {
        0x01 => "established",
        0x02 => "SYN sent",
        0x03 => "SYN received",
        0x04 => "FIN wait 1",
        0x05 => "FIN wait 2",
        0x06 => "time wait",
        0x07 => "closed",
        0x08 => "close wait",
        0x09 => "last ACK",
        0x0A => "listening",
        0x0B => "closing",
        _ => "unknown state",
    }
}

const LISTEN: u8 = 0x0A;

/// What holds local TCP port `port` now: a listener first, else a connection. `None`
/// when nothing does (it was freed meanwhile) or `/proc/net/tcp` cannot be read.
pub fn holder(port: u16) -> Option<Holder> {
    let mut found: Vec<Socket> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .flat_map(|table| sockets(&table))
        .filter(|s| s.port == port)
        .collect();
    // A listener explains a taken port best; then a live connection over one closing.
    found.sort_by_key(|s| (s.state != LISTEN, s.state != 0x01));
    let socket = found.first()?;
    let process = owner(socket.inode);
    Some(match socket.state {
        LISTEN => Holder::Listener(process),
        state => Holder::Connection { state: state_name(state), process },
    })
}

/// Most processes looked through for a socket's owner: the search is bounded, and a
/// port's holder is named only when it is found within them.
const PROCESSES_MAX: usize = 4096;

/// The process holding socket `inode`, among those this user may look into.
fn owner(inode: u64) -> Option<Process> {
    if inode == 0 {
        return None;
    }
    let wanted = format!("socket:[{inode}]");
    let processes = std::fs::read_dir("/proc").ok()?;
    for entry in processes.flatten().take(PROCESSES_MAX) {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else { continue };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|to| to.as_os_str() == wanted.as_str())
        });
        if holds {
            let name = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            return Some(Process { pid, name: name.trim().to_owned() });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_read_by_its_columns() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
             0: 0100007F:1CEA 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 302391 1 0 100 0 0 10 0\n\
             1: 0100007F:8001 0100007F:1CEA 01 00000000:00000000 00:00000000 00000000  1000        0 302400 1 0 20 4 30 10 -1\n\
             2: garbage\n";
        assert_eq!(
            sockets(table),
            [
                Socket { port: 7402, state: LISTEN, inode: 302391 },
                Socket { port: 32769, state: 0x01, inode: 302400 },
            ]
        );
    }

    #[test]
    fn ranges_overlap_at_their_ends() {
        let range = 32768..=60999;
        assert!(!overlaps(7401, 8404, &range));
        assert!(overlaps(31764, 32768, &range));
        assert!(overlaps(40001, 41004, &range));
        assert!(!overlaps(61000, 62004, &range));
    }

    #[test]
    fn a_listener_on_this_process_is_found_and_named() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        match holder(port) {
            Some(Holder::Listener(Some(process))) => assert_eq!(process.pid, std::process::id()),
            other => panic!("not our listener: {other:?}"),
        }
        let client = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let local = client.local_addr().expect("addr").port();
        match holder(local) {
            Some(Holder::Connection { state: "established", process: Some(p) }) => {
                assert_eq!(p.pid, std::process::id());
            }
            other => panic!("not our connection: {other:?}"),
        }
        let said = holder(local).expect("held").describe(local);
        assert!(said.contains("outgoing connection"), "{said}");
    }
}
