//! `--spawn`: the servers as child processes of the `agora` binary on a fresh data
//! directory, the way `agora up` runs them: `--listen 127.0.0.1:0`, the bound address read
//! from the `listening on` line, stopped by closing standard input (`--supervised`), frontends
//! first. Each server's log goes to `<data dir>/<name>.log`. Just before stopping, each
//! server's peak resident memory (VmHWM) is read from /proc.
//!
//! For the failure conditions (`--fail`), [`Spawned::kill`] ends one server with SIGKILL
//! and [`Spawned::restart`] starts it again with the same flags on the same address.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

/// How long a server may take to announce its address, or to stop.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// One spawned server's figures.
#[derive(Debug, Clone, Serialize)]
pub struct ServerReport {
    /// `customer-db`, `product-db`, `payments`, `seller-server` or `buyer-server`; with
    /// several frontends, `seller-server-1` and so on.
    pub name: String,
    /// Its process id.
    pub pid: u32,
    /// Peak resident set size (VmHWM) over its whole life, KiB.
    pub peak_rss_kib: u64,
    /// Peak resident set size until the runs started (set-up: accounts, catalogue), KiB.
    pub peak_rss_setup_kib: u64,
    /// Peak resident set size from the start of the runs to the end (floor included),
    /// KiB; 0 if the kernel would not reset the peak.
    pub peak_rss_runs_kib: u64,
    /// CPU time (user + system) it used during the measured runs, s. For a server killed
    /// and started again during the runs, that of the process running at the end.
    pub cpu_s: f64,
}

/// What the servers used before and during the runs, index by index in start order.
#[derive(Debug, Clone, Default)]
pub struct Window {
    /// Peak memory until the runs started, KiB.
    pub setup_peak_kib: Vec<u64>,
    /// CPU seconds when the runs started.
    pub cpu_before: Vec<f64>,
    /// CPU seconds when they ended.
    pub cpu_after: Vec<f64>,
}

struct Server {
    /// Its name in reports and log file names.
    name: String,
    /// The `agora` subcommand that runs it.
    command: &'static str,
    /// Its flags, but for `--listen`: what a restart starts it with again.
    args: Vec<String>,
    child: Child,
    stdin: Option<ChildStdin>,
    addr: String,
    pid: u32,
    /// CPU seconds of the earlier processes of this server (killed, then started
    /// again), so that its CPU time across a run counts them too.
    earlier_cpu_s: f64,
}

/// The servers, running.
pub struct Spawned {
    servers: Vec<Server>,
    dir: PathBuf,
    /// Deletes the directory when dropped (unless kept).
    _temp: Option<tempfile::TempDir>,
}

/// Settings for [`Spawned::start`].
#[derive(Debug, Clone)]
pub struct SpawnOptions {
    /// The `agora` executable.
    pub exe: PathBuf,
    /// Where to make the fresh data directory (the system's temporary directory if `None`).
    pub parent: Option<PathBuf>,
    /// Leave the data directory behind.
    pub keep: bool,
    /// The servers' `--log` filter.
    pub log: String,
    /// Items to bulk-load into product.db before the product database starts, and the
    /// seller id they belong to.
    pub bulk_catalogue: Option<(u64, u64)>,
    /// Seller servers, and buyer servers, to start.
    pub frontends: u16,
    /// Replicas of each database and of payments.
    pub replicas: u16,
    /// Chance that payments approves a valid card (`--approve-probability`).
    pub approve_probability: f64,
}

impl Spawned {
    /// Makes a fresh data directory and starts the databases, then the frontends.
    pub async fn start(options: &SpawnOptions) -> anyhow::Result<Spawned> {
        let mut builder = tempfile::Builder::new();
        builder.prefix("agora-bench-");
        let temp = match &options.parent {
            Some(parent) => {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
                builder.tempdir_in(parent)
            }
            None => builder.tempdir(),
        }
        .context("cannot create a data directory")?;
        let (dir, temp) =
            if options.keep { (temp.keep(), None) } else { (temp.path().to_owned(), Some(temp)) };
        let mut spawned = Spawned { servers: Vec::new(), dir: dir.clone(), _temp: temp };

        if let Some((items, seller)) = options.bulk_catalogue {
            bulk_load(&options.exe, &dir, items, seller).await?;
        }
        let log = options.log.as_str();
        // An agora whose components authenticate each other needs the cluster's
        // credentials first (the databases find them under their data directory).
        let credentials = dir.join("credentials").display().to_string();
        let mut frontend_args = vec!["--log", log];
        if accepts(&options.exe, &["credentials", "create"]).await {
            // A release whose replicas each have their own certificate is told how many.
            let replicas = options.replicas.max(1).to_string();
            let per_replica = accepts(&options.exe, &["credentials", "issue"]).await;
            let more: &[&str] = if per_replica { &["--replicas", &replicas] } else { &[] };
            make_credentials(&options.exe, &credentials, more).await?;
            frontend_args.extend(["--credentials", &credentials]);
        }
        let product = spawned.launch_group(options, "product-db", &["--log", log]).await?;
        let mut customer_args = vec!["--log", log];
        // An agora with MakePurchase has a payments service, which the customer database
        // calls along with the product database.
        let payments;
        if accepts(&options.exe, &["payments"]).await {
            let approve = options.approve_probability.to_string();
            let args = ["--log", log, "--approve-probability", &approve];
            payments = spawned.launch_group(options, "payments", &args).await?;
            customer_args.extend(["--product-db", &product, "--payments", &payments]);
        }
        let customer = spawned.launch_group(options, "customer-db", &customer_args).await?;
        let frontends = options.frontends.max(1);
        for command in ["seller-server", "buyer-server"] {
            for k in 1..=frontends {
                let name =
                    if frontends == 1 { command.to_owned() } else { format!("{command}-{k}") };
                let databases = ["--customer-db", &customer, "--product-db", &product];
                spawned
                    .launch(options, command, &name, &[&databases[..], &frontend_args].concat())
                    .await?;
            }
        }
        Ok(spawned)
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the seller servers listen, in start order.
    pub fn seller_addrs(&self) -> Vec<String> {
        self.addrs_of("seller-server")
    }

    /// Where the buyer servers listen, in start order.
    pub fn buyer_addrs(&self) -> Vec<String> {
        self.addrs_of("buyer-server")
    }

    fn addrs_of(&self, command: &str) -> Vec<String> {
        self.servers.iter().filter(|s| s.command == command).map(|s| s.addr.clone()).collect()
    }

    /// The names of the servers `command` runs, in start order.
    pub fn names_of(&self, command: &str) -> Vec<String> {
        self.servers.iter().filter(|s| s.command == command).map(|s| s.name.clone()).collect()
    }

    /// Ends the server `name` with SIGKILL and waits until its process is gone. Returns its
    /// process id.
    pub async fn kill(&mut self, name: &str) -> anyhow::Result<u32> {
        let server = self
            .servers
            .iter_mut()
            .find(|s| s.name == name)
            .with_context(|| format!("no server named {name}"))?;
        // Its CPU time so far, read while the process still exists.
        server.earlier_cpu_s += cpu_seconds(server.pid).unwrap_or(0.0);
        server.child.start_kill().with_context(|| format!("cannot kill {name}"))?;
        tokio::time::timeout(STOP_TIMEOUT, server.child.wait())
            .await
            .with_context(|| format!("{name} did not die within {STOP_TIMEOUT:?} of SIGKILL"))?
            .with_context(|| format!("cannot wait for {name}"))?;
        server.stdin.take();
        Ok(server.pid)
    }

    /// Stops the server `name` as an operator would (its standard input closed: the same
    /// clean stop as Ctrl-C or SIGTERM, a leader handing its leadership over first) and
    /// waits until its process is gone. Returns its process id.
    pub async fn stop_one(&mut self, name: &str) -> anyhow::Result<u32> {
        let server = self
            .servers
            .iter_mut()
            .find(|s| s.name == name)
            .with_context(|| format!("no server named {name}"))?;
        server.earlier_cpu_s += cpu_seconds(server.pid).unwrap_or(0.0);
        server.stdin.take();
        tokio::time::timeout(STOP_TIMEOUT, server.child.wait())
            .await
            .with_context(|| format!("{name} did not stop within {STOP_TIMEOUT:?}"))?
            .with_context(|| format!("cannot wait for {name}"))?;
        Ok(server.pid)
    }

    /// Waits until the replica `name` follows its group's leader and has applied what the
    /// leader had when the wait began.
    pub async fn caught_up(&self, name: &str) -> anyhow::Result<()> {
        let server = self
            .servers
            .iter()
            .find(|s| s.name == name)
            .with_context(|| format!("no server named {name}"))?;
        let group = server.command;
        let leader = self.leader_of(group).await?;
        let leader_addr = self.addrs_of(group).into_iter().zip(self.names_of(group));
        let leader_addr = leader_addr.filter(|(_, n)| *n == leader).map(|(a, _)| a).next();
        let credentials = self.dir.join("credentials");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut target = None;
        loop {
            if target.is_none()
                && let Some(addr) = &leader_addr
            {
                target = status(group, addr, &credentials).await.and_then(|s| s.applied_index);
            }
            let mine = status(group, &server.addr, &credentials).await;
            if let (Some(target), Some(mine)) = (target, mine)
                && mine.leader.is_some()
                && mine.applied_index.is_some_and(|a| a >= target)
            {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("{name} did not catch up with its group's leader within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether the process of server `name` is still running.
    pub fn is_running(&mut self, name: &str) -> bool {
        self.servers
            .iter_mut()
            .find(|s| s.name == name)
            .is_some_and(|s| matches!(s.child.try_wait(), Ok(None)))
    }

    /// Starts server `name` again, after [`Spawned::kill`], with the same flags on the same
    /// address, so that the clients that had it in their list find it there again.
    pub async fn restart(&mut self, options: &SpawnOptions, name: &str) -> anyhow::Result<()> {
        let index = self
            .servers
            .iter()
            .position(|s| s.name == name)
            .with_context(|| format!("no server named {name}"))?;
        let old = self.servers.remove(index);
        let args: Vec<&str> = old.args.iter().map(String::as_str).collect();
        let started = self.start_process(options, old.command, &old.name, &old.addr, &args).await;
        match started {
            Ok(mut server) => {
                server.earlier_cpu_s = old.earlier_cpu_s;
                self.servers.insert(index, server);
                Ok(())
            }
            Err(e) => {
                self.servers.insert(index, old);
                Err(e.context(format!("cannot start {name} again")))
            }
        }
    }

    /// Reads each server's peak memory so far, then resets the peak (`clear_refs`), so
    /// that the peak read at the end is that of the runs alone.
    pub fn reset_peaks(&self) -> Vec<u64> {
        self.servers
            .iter()
            .map(|s| {
                let peak = peak_rss_kib(s.pid).unwrap_or(0);
                let _ = std::fs::write(format!("/proc/{}/clear_refs", s.pid), "5");
                peak
            })
            .collect()
    }

    /// CPU seconds each server has used so far, in start order: its running process's
    /// and those of the processes it ran as before a kill.
    pub fn cpu_seconds(&self) -> Vec<f64> {
        self.servers.iter().map(|s| s.earlier_cpu_s + cpu_seconds(s.pid).unwrap_or(0.0)).collect()
    }

    /// Starts the database or service `command` with `args`: one process over the data
    /// directory, or `--replicas` processes, each a replica of the group with its own
    /// directory under it. Returns the addresses, comma-separated (what its clients are
    /// given).
    async fn launch_group(
        &mut self,
        options: &SpawnOptions,
        command: &'static str,
        args: &[&str],
    ) -> anyhow::Result<String> {
        let data = self.dir.display().to_string();
        if options.replicas <= 1 {
            let own = [&["--data-dir", data.as_str()][..], args].concat();
            return self.launch(options, command, command, &own).await;
        }
        // Every replica is told every member's address before any starts: free ports,
        // found now.
        let mut peers = std::collections::BTreeMap::new();
        for k in 1..=options.replicas {
            let port = agora_proto::ports::free_port("127.0.0.1").context("no free port")?;
            peers.insert(u64::from(k), format!("127.0.0.1:{port}"));
        }
        let credentials = self.dir.join("credentials");
        let mut addrs = Vec::new();
        for (k, addr) in &peers {
            let name = format!("{command}-{k}");
            let own =
                agora_replication::replica_flags(*k, &peers, &self.dir.join(&name), &credentials);
            let own: Vec<&str> = own.iter().map(String::as_str).collect();
            let server = self
                .start_process(options, command, &name, addr, &[&own[..], args].concat())
                .await?;
            addrs.push(server.addr.clone());
            self.servers.push(server);
        }
        Ok(addrs.join(","))
    }

    /// The replica of `group` that leads it now: each is asked in turn whether it does.
    /// Waits up to 10 s for an election to end.
    pub async fn leader_of(&self, group: &str) -> anyhow::Result<String> {
        let credentials = self.dir.join("credentials");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let replicas: Vec<&Server> = self.servers.iter().filter(|s| s.command == group).collect();
        loop {
            let mut statuses = Vec::new();
            for server in &replicas {
                statuses.push(status(group, &server.addr, &credentials).await);
            }
            if let Some(at) = agora_replication::agreed_leader(&statuses) {
                return Ok(replicas[at].name.clone());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("no replica of {group} leads with a majority's agreement");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts `agora <command>` as server `name` on a free port and returns its address.
    async fn launch(
        &mut self,
        options: &SpawnOptions,
        command: &'static str,
        name: &str,
        args: &[&str],
    ) -> anyhow::Result<String> {
        let server = self.start_process(options, command, name, "127.0.0.1:0", args).await?;
        let addr = server.addr.clone();
        self.servers.push(server);
        Ok(addr)
    }

    async fn start_process(
        &self,
        options: &SpawnOptions,
        command: &'static str,
        name: &str,
        listen: &str,
        args: &[&str],
    ) -> anyhow::Result<Server> {
        let log_path = self.dir.join(format!("{name}.log"));
        // Appended to: a restarted server's log follows the one it replaces.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let mut child = Command::new(&options.exe)
            .arg(command)
            .args(["--listen", listen])
            .args(args)
            .arg("--supervised")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {} {name}", options.exe.display()))?;
        let pid = child.id().unwrap_or(0);
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("no stdout pipe")?;
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(START_TIMEOUT, lines.next_line()).await;
        let addr = match first {
            Ok(Ok(Some(line))) => match line.strip_prefix("listening on ") {
                Some(addr) => addr.trim().to_owned(),
                None => bail!("{name} said {line:?} instead of where it listens"),
            },
            Ok(_) => bail!("{name} failed to start; see {}", log_path.display()),
            Err(_) => {
                bail!("{name} did not start within {START_TIMEOUT:?}; see {}", log_path.display())
            }
        };
        // Nothing more is printed on stdout, but keep the pipe drained all the same.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let args = args.iter().map(|a| (*a).to_owned()).collect();
        Ok(Server {
            name: name.to_owned(),
            command,
            args,
            child,
            stdin,
            addr,
            pid,
            earlier_cpu_s: 0.0,
        })
    }

    /// Reads each server's peak memory, then stops them in the reverse of start order
    /// (frontends first, so no request is cut off by a server going away under it), each
    /// by closing its standard input (killed if it has not stopped in 15 s). `cpu_before`
    /// and `cpu_after` are [`Spawned::cpu_seconds`] at the start and end of the runs.
    pub async fn stop(mut self, window: &Window) -> Vec<ServerReport> {
        let mut reports: Vec<ServerReport> = self
            .servers
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let setup = window.setup_peak_kib.get(i).copied().unwrap_or(0);
                let since = peak_rss_kib(s.pid).unwrap_or(0);
                let cpu = window.cpu_after.get(i).copied().unwrap_or(0.0)
                    - window.cpu_before.get(i).copied().unwrap_or(0.0);
                ServerReport {
                    name: s.name.clone(),
                    pid: s.pid,
                    peak_rss_kib: setup.max(since),
                    peak_rss_setup_kib: setup,
                    peak_rss_runs_kib: if window.setup_peak_kib.is_empty() { 0 } else { since },
                    // A restarted process started its count again.
                    cpu_s: (cpu.max(0.0) * 100.0).round() / 100.0,
                }
            })
            .collect();
        for server in self.servers.iter_mut().rev() {
            server.stdin.take();
            let stopped = tokio::time::timeout(STOP_TIMEOUT, server.child.wait()).await;
            if !matches!(stopped, Ok(Ok(_))) {
                let _ = server.child.kill().await;
            }
        }
        reports.sort_by_key(|r| {
            let order = ["customer-db", "product-db", "payments", "seller-server", "buyer-server"];
            (order.iter().position(|n| r.name.starts_with(n)), r.name.clone())
        });
        reports
    }
}

/// How the replica of `group` at `addr` says its group stands, asked with the cluster's
/// admin credentials (as `agora cluster status` asks); `None` if it does not answer.
async fn status(group: &str, addr: &str, credentials: &Path) -> Option<agora_replication::Status> {
    use agora_proto::{Component, Trust};
    let component = Component::from_name(group)?;
    let admin = Trust::load(credentials, Component::Admin).ok()?;
    let timeout = Duration::from_secs(1);
    agora_replication::status_of(component, addr, &admin, timeout).await.ok()
}

/// Whether this `agora` can bulk-load a catalogue (`agora product-db seed`).
pub async fn can_bulk_load(exe: &Path) -> bool {
    accepts(exe, &["product-db", "seed"]).await
}

/// Whether this `agora` has the (sub)command `words`.
async fn accepts(exe: &Path, words: &[&str]) -> bool {
    Command::new(exe)
        .args(words)
        .arg("--help")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success())
}

/// `agora credentials create --dir DIR`, and `more` flags.
async fn make_credentials(exe: &Path, dir: &str, more: &[&str]) -> anyhow::Result<()> {
    let output = Command::new(exe)
        .args(["credentials", "create", "--dir", dir])
        .args(more)
        .stdin(Stdio::null())
        .output()
        .await
        .context("cannot run agora credentials create")?;
    if !output.status.success() {
        anyhow::bail!(
            "agora credentials create failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// `agora product-db seed --data-dir DIR --items N --seller ID`: writes the items straight
/// into product.db, before the server starts.
async fn bulk_load(exe: &Path, dir: &Path, items: u64, seller: u64) -> anyhow::Result<()> {
    let output = Command::new(exe)
        .args(["product-db", "seed", "--data-dir"])
        .arg(dir)
        .args(["--items", &items.to_string(), "--seller", &seller.to_string()])
        .stdin(Stdio::null())
        .output()
        .await
        .context("cannot run agora product-db seed")?;
    if !output.status.success() {
        bail!(
            "agora product-db seed failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// A `/proc/<pid>/status` field in KiB (`VmHWM:   12345 kB`).
fn status_kib(pid: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..].trim().trim_end_matches("kB").trim().parse().ok()
}

/// Peak resident set size of process `pid`, KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    status_kib(&pid.to_string(), "VmHWM:")
}

/// Peak resident set size of this process, KiB.
pub fn own_peak_rss_kib() -> Option<u64> {
    status_kib("self", "VmHWM:")
}

/// User plus system CPU time of process `pid` (all its threads), s. Linux counts it in
/// clock ticks of 1/100 s (USER_HZ) on every architecture we run on.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    proc_cpu_seconds(&pid.to_string())
}

/// User plus system CPU time of this process, s.
pub fn own_cpu_seconds() -> Option<f64> {
    proc_cpu_seconds("self")
}

/// CPU time of the whole machine so far (every core), s: busy in processes (user, nice,
/// system, steal), and in interrupts (irq, softirq: loopback networking runs there), from
/// the `cpu` line of /proc/stat.
pub fn machine_cpu_seconds() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let t: Vec<f64> = line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let field = |i: usize| t.get(i).copied().unwrap_or(0.0);
    Some(((field(0) + field(1) + field(2) + field(7)) / 100.0, (field(5) + field(6)) / 100.0))
}

fn proc_cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields after its closing parenthesis
    // start at field 3, so utime and stime (14 and 15) are the 12th and 13th.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_peak_rss_and_cpu_time() {
        assert!(own_peak_rss_kib().is_some_and(|kib| kib > 0));
        assert!(own_cpu_seconds().is_some());
    }
}
