//! `agora up` as a user meets it: a real process starting the five servers as its
//! children, what it says when one cannot start, how Ctrl-C stops them, and how they stop
//! when `agora up` is killed or one of them is sent SIGTERM, and how a server that dies is
//! started again.
#![allow(clippy::unwrap_used)]

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;

const AGORA: &str = env!("CARGO_BIN_EXE_agora");

/// Long enough for a loaded machine; every wait below ends as soon as its condition holds.
const DEADLINE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_taken_port_is_named_with_the_fix() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let data = tempfile::tempdir().unwrap();
    // The log copier and the early exit once raced: repeat to give the race its chances.
    for _ in 0..5 {
        let out = Command::new(AGORA)
            .arg("up")
            .arg("--data-dir")
            .arg(data.path())
            .args(["--product-db-listen", &format!("127.0.0.1:{port}")])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(DEADLINE, out).await.expect("agora up ends").unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(err.contains("Address already in use"), "the cause is missing:\n{err}");
        let holder = format!(
            "port {port} is taken by a server listening on it (process {} ",
            std::process::id()
        );
        assert!(err.contains(&holder), "the holder is missing:\n{err}");
        assert!(err.contains("stop it (another agora?) or use --port-base"), "no fix:\n{err}");
    }
}

/// A port an outgoing connection holds (the kernel picks those from its ephemeral range,
/// 32768-60999) is named as such, not blamed on another agora, and a --port-base in that
/// range is warned about before anything starts.
#[tokio::test]
async fn a_port_held_by_an_outgoing_connection_is_told_apart() {
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = std::net::TcpStream::connect(server.local_addr().unwrap()).unwrap();
    let port = client.local_addr().unwrap().port();
    let data = tempfile::tempdir().unwrap();
    // product-db, the first to start, listens on N+2.
    let base = (port - 2).to_string();
    let out = Command::new(AGORA)
        .arg("up")
        .arg("--data-dir")
        .arg(data.path())
        .args(["--port-base", &base])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(DEADLINE, out).await.expect("agora up ends").unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains(&format!("--port-base {base} puts servers on ports")), "{err}");
    assert!(err.contains("where the kernel picks the ports of outgoing connections"), "{err}");
    let said = format!("port {port} is the local end of a connection (established)");
    assert!(err.contains(&said), "the holder is missing:\n{err}");
    assert!(err.contains("not by another agora"), "{err}");
    drop(client);
}

/// The process group `pid` belongs to, from /proc.
fn process_group(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // `pid (comm) state ppid pgrp ...`; comm may hold spaces, so count from its ')'.
    let after = &stat[stat.rfind(')').unwrap() + 1..];
    after.split_whitespace().nth(2).unwrap().parse().unwrap()
}

#[tokio::test]
async fn ctrl_c_at_the_terminal_stops_the_frontends_first() {
    let data = tempfile::tempdir().unwrap();
    // `agora up` leads a process group of its own, as a shell's foreground job does: a
    // Ctrl-C at a terminal is a SIGINT to that whole group.
    let (mut up, log, banner) = up_on_free_ports(data.path(), true).await;
    let pid = up.id().unwrap();
    let banner = banner.join("\n");

    // On free ports, the lines to copy name the servers.
    assert!(banner.contains("Scripts:  agora seller --server 127.0.0.1:"), "{banner}");
    assert!(banner.contains("Buyers:   agora buyer --server 127.0.0.1:"), "{banner}");

    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
    let children: Vec<u32> = children.split_whitespace().map(|c| c.parse().unwrap()).collect();
    assert_eq!(children.len(), 5, "{children:?}");
    for child in children {
        assert_ne!(process_group(child), pid, "child {child} would get the terminal's Ctrl-C");
    }

    let kill =
        Command::new("kill").args(["-s", "INT", "--", &format!("-{pid}")]).status().await.unwrap();
    assert!(kill.success());
    let status = tokio::time::timeout(DEADLINE, up.wait()).await;
    if status.is_err() {
        let _ = up.start_kill();
    }
    let log = log.await.unwrap();
    let status = status.unwrap_or_else(|_| panic!("agora up did not stop:\n{log}")).unwrap();
    assert!(status.success(), "{status}\n{log}");
    // The log says where each server listens, in the words a server alone prints.
    assert!(log.contains("   product-db | listening on 127.0.0.1:"), "{log}");
    assert!(log.contains(" buyer-server | http listening on 127.0.0.1:"), "{log}");
    let stopped = |name: &str| {
        log.lines()
            .position(|l| l.trim_start().starts_with(name) && l.ends_with("stopping"))
            .unwrap_or_else(|| panic!("{name} did not log stopping:\n{log}"))
    };
    for frontend in ["seller-server", "buyer-server"] {
        for database in ["customer-db", "product-db", "payments"] {
            assert!(stopped(frontend) < stopped(database), "{frontend} after {database}:\n{log}");
        }
    }
}

/// `agora up` on free ports with its data in `data` (leading a process group of its own
/// if `own_group`), once its banner is out: the process, the task collecting its stderr,
/// and the banner's lines.
async fn up_on_free_ports(
    data: &std::path::Path,
    own_group: bool,
) -> (tokio::process::Child, tokio::task::JoinHandle<String>, Vec<String>) {
    up_on_free_ports_with(data, own_group, &[]).await
}

/// [`up_on_free_ports`] with more flags.
async fn up_on_free_ports_with(
    data: &std::path::Path,
    own_group: bool,
    flags: &[&str],
) -> (tokio::process::Child, tokio::task::JoinHandle<String>, Vec<String>) {
    let mut command = Command::new(AGORA);
    command
        .arg("up")
        .arg("--data-dir")
        .arg(data)
        .args(["--port-base", "0"])
        .args(flags)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if own_group {
        command.process_group(0);
    }
    let mut up = command.spawn().unwrap();
    let mut stderr = up.stderr.take().unwrap();
    let log = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    let mut stdout = BufReader::new(up.stdout.take().unwrap()).lines();
    let mut banner = Vec::new();
    tokio::time::timeout(DEADLINE, async {
        while let Some(line) = stdout.next_line().await.unwrap() {
            let done = line.starts_with("Ctrl-C stops everything");
            banner.push(line);
            if done {
                break;
            }
        }
    })
    .await
    .expect("the banner comes");
    // Keep reading, so that the pipe never fills.
    tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
    (up, log, banner)
}

/// `agora up`'s children, each with its command name and start time (so that a pid used
/// again by another process is not taken for it). A child that has just died (a zombie
/// not yet reaped, or gone between the two reads) is left out.
fn children(pid: u32) -> Vec<(u32, String, String)> {
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
    children
        .split_whitespace()
        .filter_map(|child| {
            let child: u32 = child.parse().unwrap();
            let cmdline = std::fs::read_to_string(format!("/proc/{child}/cmdline")).ok()?;
            let command = cmdline.split('\0').nth(1).unwrap_or_default().to_owned();
            Some((child, command, start_time(child)?))
        })
        .collect()
}

/// The start time of process `pid`, while it runs: `None` once it is gone or a zombie.
fn start_time(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`; the start time is the 22nd field, the 20th after comm.
    let after: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    (after[0] != "Z").then(|| after[19].to_owned())
}

/// Those of `children` still running.
fn running(children: &[(u32, String, String)]) -> Vec<&(u32, String, String)> {
    children.iter().filter(|(pid, _, started)| start_time(*pid).as_ref() == Some(started)).collect()
}

/// Kills those of `children` still running, so that a failed test leaves none behind;
/// returns them.
fn kill_the_rest(children: &[(u32, String, String)]) -> Vec<&(u32, String, String)> {
    let left = running(children);
    for (pid, _, _) in &left {
        let _ = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status();
    }
    left
}

#[tokio::test]
async fn the_servers_stop_when_agora_up_is_killed() {
    let data = tempfile::tempdir().unwrap();
    let (mut up, _log, _) = up_on_free_ports(data.path(), false).await;
    let children = children(up.id().unwrap());
    assert_eq!(children.len(), 5, "{children:?}");

    // SIGKILL: `agora up` stops nothing itself. Its children's stdin ends, and their
    // stderr is a pipe no one reads any more.
    up.kill().await.unwrap();
    let gone = tokio::time::timeout(DEADLINE, async {
        while !running(&children).is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let left = kill_the_rest(&children);
    assert!(gone.is_ok(), "still running after agora up was killed: {left:?}");
}

#[tokio::test]
async fn sigterm_stops_a_supervised_server() {
    let data = tempfile::tempdir().unwrap();
    let (mut up, log, _) = up_on_free_ports(data.path(), false).await;
    let children = children(up.id().unwrap());
    let (buyer, _, _) = children.iter().find(|(_, command, _)| command == "buyer-server").unwrap();

    // Its stdin still open: SIGTERM alone must stop it, and `agora up` then stops the rest.
    let kill = Command::new("kill").args(["-s", "TERM", &buyer.to_string()]).status().await;
    assert!(kill.unwrap().success());
    let status = tokio::time::timeout(DEADLINE, up.wait()).await;
    if status.is_err() {
        let _ = up.kill().await;
        kill_the_rest(&children);
    }
    let log = log.await.unwrap();
    let status = status.unwrap_or_else(|_| panic!("buyer-server did not stop:\n{log}")).unwrap();
    assert!(!status.success(), "{status}\n{log}");
    assert!(
        log.contains("buyer-server exited unexpectedly (exit status: 0)"),
        "buyer-server did not stop cleanly:\n{log}"
    );
}

/// The running child of `up` whose command is `command`, once there is one that is not
/// `not`: its pid and start time.
async fn running_child(up: u32, command: &str, not: Option<&(u32, String)>) -> (u32, String) {
    let started = tokio::time::Instant::now();
    loop {
        let found = children(up).into_iter().find(|(pid, c, since)| {
            c == command && not.is_none_or(|(p, s)| (p, s) != (pid, since))
        });
        if let Some((pid, _, since)) = found {
            return (pid, since);
        }
        assert!(started.elapsed() < DEADLINE, "no {command} running again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn kill9(pid: u32) {
    let killed = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status();
    assert!(killed.unwrap().success());
}

/// The address the banner gives `name`.
fn banner_addr(banner: &[String], name: &str) -> String {
    banner
        .iter()
        .find_map(|line| match line.split_whitespace().collect::<Vec<_>>()[..] {
            [n, addr, ..] if n == name => Some(addr.to_owned()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no {name} in {banner:?}"))
}

/// Registers a pen through `seller`, trying again while the product database is away.
async fn register_a_pen(seller: &agora_client::SellerClient) -> agora_domain::ItemId {
    use agora_domain::{Condition, Money, NewItem};
    let started = tokio::time::Instant::now();
    loop {
        let pen = NewItem {
            name: "Blue pen".into(),
            category: 3,
            keywords: vec!["pen".into()],
            condition: Condition::New,
            price: Money::from_cents(150),
            quantity: 10,
        };
        match seller.register_item(pen).await {
            Ok(item) => return item,
            Err(e) => assert!(started.elapsed() < DEADLINE, "cannot register: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// SIGKILL of a server under `agora up`: it is started again on its address, at once,
/// then after a longer wait when it dies again soon after, with each restart in the log;
/// what was written before is still there. (Before, its death stopped every server.)
#[tokio::test]
async fn a_killed_server_is_started_again_with_a_growing_backoff() {
    let data = tempfile::tempdir().unwrap();
    let (mut up, log, banner) = up_on_free_ports(data.path(), false).await;
    let pid = up.id().unwrap();
    let seller = agora_client::SellerClient::new(vec![banner_addr(&banner, "seller-server")]);
    seller.create_account("ann", "long enough", "Ann").await.unwrap();
    seller.login("ann", "long enough").await.unwrap();
    let first = register_a_pen(&seller).await;

    let product = running_child(pid, "product-db", None).await;
    kill9(product.0);
    let again = running_child(pid, "product-db", Some(&product)).await;
    register_a_pen(&seller).await;
    kill9(again.0);
    running_child(pid, "product-db", Some(&again)).await;
    let last = register_a_pen(&seller).await;
    let listed = seller.list_items(agora_domain::Page { offset: 0, limit: 20 }).await.unwrap();
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert!(listed.iter().any(|i| i.id == first) && listed.iter().any(|i| i.id == last));

    let _ = Command::new("kill").args(["-INT", &pid.to_string()]).status().await;
    let status = tokio::time::timeout(DEADLINE, up.wait()).await.unwrap().unwrap();
    let log = log.await.unwrap();
    assert!(status.success(), "{status}\n{log}");
    for said in [
        "agora: product-db exited (signal: 9 (SIGKILL)); starting it again in 100ms (restart 1 \
         in a row; --restart never leaves it down)",
        "agora: product-db exited (signal: 9 (SIGKILL)); starting it again in 200ms (restart 2",
        "agora: product-db is running again, on 127.0.0.1:",
    ] {
        assert!(log.contains(said), "no {said:?} in\n{log}");
    }
}

/// `--restart never`: a dead server stays down, and since the marketplace cannot do
/// without it, the rest are stopped.
#[tokio::test]
async fn restart_never_leaves_a_killed_server_down() {
    let data = tempfile::tempdir().unwrap();
    let (mut up, log, _) = up_on_free_ports_with(data.path(), false, &["--restart", "never"]).await;
    let product = running_child(up.id().unwrap(), "product-db", None).await;
    kill9(product.0);
    let status = tokio::time::timeout(DEADLINE, up.wait()).await.unwrap().unwrap();
    let log = log.await.unwrap();
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("product-db exited unexpectedly (signal: 9 (SIGKILL)); stopping the rest"),
        "{log}"
    );
}

/// `--categories FILE` names the categories every frontend shows; a bad file is refused
/// before anything starts, naming its line.
#[tokio::test]
async fn a_categories_file_names_them_and_a_bad_one_is_refused() {
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("categories.txt");
    std::fs::write(&file, "# ours\n3 Pens and ink\n12 Bikes\n").unwrap();
    let flags = ["--categories", file.to_str().unwrap()];
    let (mut up, _log, banner) = up_on_free_ports_with(&data.path().join("d"), false, &flags).await;
    let buyer_http = banner
        .iter()
        .find_map(|l| l.strip_prefix("Browser:  shop at http://"))
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .to_owned();
    let http = reqwest::Client::new();
    let account = serde_json::json!({"username": "cy", "password": "long enough"});
    let url = |path: &str| format!("http://{buyer_http}{path}");
    http.post(url("/v1/buyers")).json(&account).send().await.unwrap();
    let login: serde_json::Value = http
        .post(url("/v1/buyers/sessions"))
        .json(&account)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let session = login["session"].as_str().unwrap();
    let listed: serde_json::Value = http
        .get(url("/v1/categories"))
        .bearer_auth(session)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed,
        serde_json::json!({"categories": [
            {"id": 3, "name": "Pens and ink", "items": 0},
            {"id": 12, "name": "Bikes", "items": 0},
        ]})
    );
    let _ = Command::new("kill").args(["-INT", &up.id().unwrap().to_string()]).status().await;
    let _ = tokio::time::timeout(DEADLINE, up.wait()).await;

    std::fs::write(&file, "3 Pens\nx Bikes\n").unwrap();
    let out = Command::new(AGORA)
        .arg("up")
        .arg("--data-dir")
        .arg(data.path().join("d"))
        .args(["--port-base", "0"])
        .args(flags)
        .stdin(Stdio::null())
        .output();
    let out = tokio::time::timeout(DEADLINE, out).await.expect("agora up ends").unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("line 2: \"x\" is not a category number"), "{err}");
    assert!(!err.contains("listening on"), "nothing started: {err}");
}
