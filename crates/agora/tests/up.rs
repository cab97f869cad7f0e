//! `agora up` as a user meets it: a real process starting the five servers as its
//! children, what it says when one cannot start, and how Ctrl-C stops them.
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
        assert!(
            err.contains(&format!("running on {port}; stop it or use --port-base")),
            "the fix is missing:\n{err}"
        );
    }
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
    let mut up = Command::new(AGORA)
        .arg("up")
        .arg("--data-dir")
        .arg(data.path())
        .args(["--port-base", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = up.id().unwrap();
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
