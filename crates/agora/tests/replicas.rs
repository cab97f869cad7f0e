//! `agora up --replicas 3`: every database and payments as a group of three processes.
//! The leaders of the customer and product databases are killed with SIGKILL in the middle
//! of a session; the marketplace goes on, with nothing acknowledged lost and no purchase
//! made twice.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use agora_client::{BuyerClient, SellerClient};
use agora_domain::{Card, Condition, ItemId, Money, NewItem, Page};
use agora_proto::messages::{customer, product};
use agora_proto::{CallError, Channel, Component, DEFAULT_MAX_FRAME, ErrorCode, Service, Trust};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const AGORA: &str = env!("CARGO_BIN_EXE_agora");

/// Long enough for a loaded machine; every wait below ends as soon as its condition holds.
const DEADLINE: Duration = Duration::from_secs(60);

/// The replica of `group` that leads it now, asked of each in turn: a follower answers
/// `not_leader`. Waits, within the deadline, while an election is under way.
async fn leader(servers: &BTreeMap<String, String>, group: &str, trust: &Trust) -> String {
    let started = tokio::time::Instant::now();
    loop {
        for (name, addr) in servers.iter().filter(|(n, _)| n.starts_with(&format!("{group}-"))) {
            if leads(group, addr, trust).await {
                return name.clone();
            }
        }
        assert!(started.elapsed() < DEADLINE, "no replica of {group} leads");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether the replica at `addr` answers a read itself rather than sending it on.
async fn leads(group: &str, addr: &str, trust: &Trust) -> bool {
    match group {
        "product-db" => {
            let read = product::Request::GetItem { item: ItemId { category: 0, number: 0 } };
            answers::<agora_proto::ProductDb>(addr, trust, read).await
        }
        _ => {
            let read = customer::Request::GetSeller { seller_id: 1 };
            answers::<agora_proto::CustomerDb>(addr, trust, read).await
        }
    }
}

/// Whether `request` to the replica at `addr` is answered (refusals included) rather
/// than sent to the leader, or left unanswered by a replica taking over.
async fn answers<S: Service>(addr: &str, trust: &Trust, request: S::Request) -> bool {
    let timeout = Duration::from_secs(2);
    let connector = trust.connector();
    let Ok(channel) =
        Channel::<S>::connect_with(addr, timeout, DEFAULT_MAX_FRAME, &connector).await
    else {
        return false;
    };
    match channel.call(&request, timeout).await {
        Ok(_) => true,
        Err(CallError::Remote(e)) => {
            !matches!(e.code, ErrorCode::NotLeader | ErrorCode::Unavailable)
        }
        Err(_) => false,
    }
}

/// `agora up --replicas 3 --port-base 0` as a child process, with the addresses its banner
/// gave each server (`product-db-2` -> `127.0.0.1:PORT`).
struct Up {
    child: tokio::process::Child,
    pid: u32,
    servers: BTreeMap<String, String>,
}

impl Up {
    /// Starts it on a fresh data directory and reads its banner. A server killed here
    /// stays down (`--restart never`), as the failures these tests make need.
    async fn start() -> (tempfile::TempDir, Up) {
        Up::start_with(&["--restart", "never"], &[]).await
    }

    /// [`Up::start`] with extra flags and environment variables for every server.
    async fn start_with(flags: &[&str], env: &[(&str, &str)]) -> (tempfile::TempDir, Up) {
        let data = tempfile::tempdir().unwrap();
        let up = Up::start_in(data.path(), flags, env).await;
        (data, up)
    }

    /// [`Up::start_with`] on the data directory `data`, which may hold data already.
    async fn start_in(data: &std::path::Path, flags: &[&str], env: &[(&str, &str)]) -> Up {
        let stderr = match std::env::var_os("AGORA_TEST_LOG") {
            Some(_) => Stdio::inherit(),
            None => Stdio::null(),
        };
        Up::start_logging(data, flags, env, stderr).await
    }

    /// [`Up::start_in`], its log (every server's, by name) to `stderr`.
    async fn start_logging(
        data: &std::path::Path,
        flags: &[&str],
        env: &[(&str, &str)],
        stderr: Stdio,
    ) -> Up {
        let mut child = Command::new(AGORA)
            .arg("up")
            .arg("--data-dir")
            .arg(data)
            .args(["--port-base", "0", "--replicas", "3", "--log", "warn"])
            .args(flags)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pid = child.id().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        // The banner's table: NAME ADDR [http://...].
        let mut servers = BTreeMap::new();
        tokio::time::timeout(DEADLINE, async {
            while let Some(line) = stdout.next_line().await.unwrap() {
                if line.starts_with("Ctrl-C stops everything") {
                    break;
                }
                let words: Vec<&str> = line.split_whitespace().collect();
                if let [name, addr, ..] = words[..]
                    && addr.starts_with("127.0.0.1:")
                {
                    servers.insert(name.to_owned(), addr.to_owned());
                }
            }
        })
        .await
        .expect("the banner comes");
        Up { child, pid, servers }
    }

    /// Kills server `name` with SIGKILL.
    fn kill(&self, name: &str) {
        let pid = pid_listening_on(self.pid, &self.servers[name]);
        let killed =
            std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
        assert!(killed.success(), "kill {name}");
    }

    /// Stops it as Ctrl-C would, and waits for it.
    async fn stop(mut self) {
        let _ = std::process::Command::new("kill").args(["-INT", &self.pid.to_string()]).status();
        let _ = tokio::time::timeout(DEADLINE, self.child.wait()).await;
    }
}

/// The process id of the child of `up` listening on `addr`.
fn pid_listening_on(up: u32, addr: &str) -> u32 {
    let children = std::fs::read_to_string(format!("/proc/{up}/task/{up}/children")).unwrap();
    for child in children.split_whitespace() {
        let cmdline = std::fs::read(format!("/proc/{child}/cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if args.windows(2).any(|w| w[0] == b"--listen" && w[1] == addr.as_bytes()) {
            return child.parse().unwrap();
        }
    }
    panic!("no child of agora up listens on {addr}")
}

/// Ann, a seller, lists ten blue pens at 1.50; Bea, a buyer, is logged in through the
/// first buyer server: her client and the pen.
async fn seller_with_a_pen_and_a_buyer(
    servers: &BTreeMap<String, String>,
) -> (BuyerClient, ItemId) {
    let seller = SellerClient::new(vec![servers["seller-server"].clone()]);
    let buyer = BuyerClient::new(vec![servers["buyer-server"].clone()]);
    seller.create_account("ann", "long enough", "Ann").await.unwrap();
    seller.login("ann", "long enough").await.unwrap();
    let item = seller
        .register_item(NewItem {
            name: "Blue pen".into(),
            category: 3,
            keywords: vec!["pen".into()],
            condition: Condition::New,
            price: Money::from_cents(150),
            quantity: 10,
        })
        .await
        .unwrap();
    buyer.create_account("bea", "long enough", "Bea").await.unwrap();
    buyer.login("bea", "long enough").await.unwrap();
    (buyer, item)
}

/// Bea's card, which payments approves.
fn bea_card() -> Card {
    Card { holder: "Bea B".into(), number: "4111111111111111".into(), expiry: "12/39".into() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leaders_die_mid_session_and_nothing_acknowledged_is_lost() {
    let (data, mut up) = Up::start().await;
    let servers = up.servers.clone();
    for group in ["customer-db", "product-db", "payments"] {
        for k in 1..=3 {
            assert!(servers.contains_key(&format!("{group}-{k}")), "{group}-{k}: {servers:?}");
        }
    }
    let (buyer, item) = seller_with_a_pen_and_a_buyer(&servers).await;
    let card = bea_card();
    buyer.add_to_cart(item, 2).await.unwrap();
    let first = buyer.make_purchase_with_key("first", card.clone()).await.unwrap();

    // The leaders of both databases die at once, in the middle of the buyer's session.
    let trust = Trust::load(&data.path().join("credentials"), Component::SellerServer).unwrap();
    let mut killed = Vec::new();
    for group in ["customer-db", "product-db"] {
        let name = leader(&servers, group, &trust).await;
        up.kill(&name);
        killed.push((group, name));
    }

    // The session, the cart's purchase and the stock are all still there, through the
    // new leaders; a new purchase is made once.
    let history = buyer.get_purchases(Page { offset: 0, limit: 10 }).await.unwrap();
    assert_eq!(history, vec![first.clone()]);
    buyer.add_to_cart(item, 3).await.unwrap();
    let second = buyer.make_purchase_with_key("second", card.clone()).await.unwrap();
    let again = buyer.make_purchase_with_key("second", card).await.unwrap();
    assert_eq!(again, second, "a retried purchase is answered, not bought twice");
    assert_eq!(buyer.get_item(item).await.unwrap().quantity, 5);
    let history = buyer.get_purchases(Page { offset: 0, limit: 10 }).await.unwrap();
    assert_eq!(history.len(), 2);
    for (group, old) in &killed {
        let new = leader(&servers, group, &trust).await;
        assert_ne!(&new, old, "{group}: another replica leads");
    }
    // `agora cluster status` sees the same: the killed replicas do not answer, and the
    // others name the new leaders.
    let status = Command::new(AGORA)
        .args(["cluster", "status", "--json", "--data-dir"])
        .arg(data.path())
        .output()
        .await
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let report: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    for (group, old) in &killed {
        let answers = report[group].as_array().unwrap();
        assert_eq!(answers.len(), 3, "{group}: {answers:?}");
        let new = leader(&servers, group, &trust).await;
        for answer in answers {
            let name = answer["name"].as_str().unwrap();
            if name == old {
                assert!(answer["error"].is_string(), "{name} answered: {answer}");
            } else {
                let leader_id = answer["status"]["leader"].as_u64().unwrap();
                assert_eq!(format!("{group}-{leader_id}"), new, "{name}: {answer}");
            }
        }
    }
    // A replica's death is not the marketplace's: `agora up` runs on.
    assert!(up.child.try_wait().unwrap().is_none(), "agora up stopped");
    up.stop().await;
    // Everything the servers wrote is their owner's only: the databases, the Raft logs,
    // the stamps, the snapshots, the credentials, the cluster map.
    assert_eq!(agora_testkit::not_private(data.path()), vec![]);
}

/// A replica pointed at another group's data directory refuses to start, and leaves the
/// directory exactly as it was.
#[tokio::test]
async fn a_replica_on_another_groups_data_refuses_and_changes_nothing() {
    let data = tempfile::tempdir().unwrap();
    let credentials = data.path().join("credentials");
    agora_proto::trust::create(&credentials).unwrap();
    agora_proto::trust::issue_replicas(&credentials, 1).unwrap();
    let dir = data.path().join("product-db-1");
    let args = |command: &str| {
        let mut cmd = std::process::Command::new(AGORA);
        cmd.args([
            command,
            "--listen",
            "127.0.0.1:0",
            "--node-id",
            "1",
            "--peers",
            "1=127.0.0.1:9",
        ])
        .arg("--data-dir")
        .arg(&dir)
        .arg("--credentials")
        .arg(&credentials)
        .args(["--log", "warn"]);
        cmd
    };
    // A product-db replica's directory: stamped at its first start.
    let mut product = tokio::process::Command::from(args("product-db"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stamp = dir.join("replica.stamp");
    tokio::time::timeout(DEADLINE, async {
        while !stamp.exists() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the directory is stamped");
    product.kill().await.unwrap();
    let listing = |dir: &std::path::Path| {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let before = listing(&dir);
    let stamped = std::fs::read(&stamp).unwrap();

    let refused =
        tokio::time::timeout(DEADLINE, tokio::process::Command::from(args("customer-db")).output())
            .await
            .expect("it stops by itself")
            .unwrap();
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("holds the data of node 1 of product-db"), "{said}");
    assert!(said.contains("nothing was changed"), "{said}");
    assert_eq!(listing(&dir), before, "no customer.db beside product.db");
    assert_eq!(std::fs::read(&stamp).unwrap(), stamped);
}

/// `agora cluster remove` refuses a change whose voters could not commit it (one of the
/// voters it would leave is down: the group would take no write until it is back), and
/// changes nothing; a live replica it does take out stops by itself and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_that_could_not_commit_is_refused_and_a_removed_replica_stops() {
    let data = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("up.log");
    let stderr = std::fs::File::create(&log).unwrap();
    let up = Up::start_logging(data.path(), &["--restart", "never"], &[], stderr.into()).await;
    let servers = up.servers.clone();
    let cluster = |args: &[&str]| {
        std::process::Command::new(AGORA)
            .arg("cluster")
            .args(args)
            .arg("--data-dir")
            .arg(data.path())
            .output()
            .unwrap()
    };
    // payments-3 is down; taking out node 2 would leave voters 1 and 3, one of them dead.
    up.kill("payments-3");
    let refused = cluster(&["remove", "--group", "payments", "--node-id", "2"]);
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{said}");
    assert!(said.contains("refusing to remove node 2"), "{said}");
    assert!(said.contains("--force") && said.contains("nothing was changed"), "{said}");
    // Nothing changed: payments still has voters 1, 2 and 3, and a purchase goes through.
    let status = cluster(&["status", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    // Each replica that answered names the same voters.
    for answer in report["payments"].as_array().unwrap() {
        let Some(members) = answer["status"]["members"].as_array() else { continue };
        let voters: Vec<u64> = members
            .iter()
            .filter(|m| m["voter"] == true)
            .filter_map(|m| m["id"].as_u64())
            .collect();
        assert_eq!(voters, vec![1, 2, 3], "{report}");
    }
    let (buyer, pen) = seller_with_a_pen_and_a_buyer(&servers).await;
    buyer.add_to_cart(pen, 1).await.unwrap();
    buyer.make_purchase(bea_card()).await.unwrap();

    // A live replica taken out stops by itself, and its log says why.
    let pid = pid_listening_on(up.pid, &servers["product-db-3"]);
    let removed = cluster(&["remove", "--group", "product-db", "--node-id", "3"]);
    assert!(removed.status.success(), "{}", String::from_utf8_lossy(&removed.stderr));
    let gone = tokio::time::timeout(DEADLINE, async {
        while std::path::Path::new(&format!("/proc/{pid}")).exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(gone.is_ok(), "product-db-3 is still running after its removal");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("node 3 was removed from the product-db group"), "{logged}");
    up.stop().await;
}

/// A dead replica is replaced by a new, empty one: `agora cluster remove` takes it out,
/// `agora cluster add` brings the new one in as a learner that catches up and then votes.
/// The proof that it votes: with another of the original replicas killed too, the group
/// still has a majority (the survivor and the new one) and the marketplace writes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_replica_is_replaced_by_an_empty_one_that_catches_up_and_votes() {
    // A dead machine: nothing starts its replica again.
    let (data, up) = Up::start_with(&["--restart", "never"], &[]).await;
    let servers = up.servers.clone();
    let seller = SellerClient::new(vec![servers["seller-server"].clone()]);
    seller.create_account("ann", "long enough", "Ann").await.unwrap();
    seller.login("ann", "long enough").await.unwrap();
    let pen = |n: u32| NewItem {
        name: format!("Pen {n}"),
        category: 3,
        keywords: vec!["pen".into()],
        condition: Condition::New,
        price: Money::from_cents(150),
        quantity: 10,
    };
    for n in 0..5 {
        seller.register_item(pen(n)).await.unwrap();
    }
    let cluster = |args: &[&str]| {
        let mut cmd = std::process::Command::new(AGORA);
        cmd.arg("cluster").args(args).arg("--data-dir").arg(data.path());
        cmd
    };
    let run = |mut cmd: std::process::Command| {
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };

    // Replica 1 dies for good and is taken out.
    up.kill("product-db-1");
    let removed = run(cluster(&["remove", "--group", "product-db", "--node-id", "1"]));
    assert!(removed.contains("voters now 2, 3"), "{removed}");

    // A new machine: an empty directory, the cluster's credentials with node 4's own.
    issue(&data.path().join("credentials"), "product-db", 4);
    let addr = format!("127.0.0.1:{}", agora_proto::ports::free_port("127.0.0.1").unwrap());
    let peers = format!("2={},3={},4={addr}", servers["product-db-2"], servers["product-db-3"]);
    let mut fourth = Command::new(AGORA)
        .args([
            "product-db",
            "--listen",
            &addr,
            "--node-id",
            "4",
            "--peers",
            &peers,
            "--log",
            "warn",
        ])
        .arg("--data-dir")
        .arg(data.path().join("product-db-4"))
        .arg("--credentials")
        .arg(data.path().join("credentials"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut said = BufReader::new(fourth.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(DEADLINE, said.next_line()).await.unwrap().unwrap();
    assert_eq!(first.as_deref(), Some(format!("listening on {addr}").as_str()));
    let added = run(cluster(&["add", "--group", "product-db", "--node-id", "4", "--addr", &addr]));
    assert!(added.contains("voters now 2, 3, 4"), "{added}");

    // It holds what was written before it came.
    let report: serde_json::Value =
        serde_json::from_str(&run(cluster(&["status", "--json"]))).unwrap();
    let replicas = report["product-db"].as_array().unwrap();
    let applied = |name: &str| {
        replicas.iter().find(|r| r["name"] == name).unwrap()["status"]["applied_index"].as_u64()
    };
    let (new, old) = (applied("product-db-4").unwrap(), applied("product-db-3").unwrap());
    // Five listings and the group's own entries; the membership change may be in flight.
    assert!(new >= 5 && new + 2 >= old, "product-db-4 applied {new}, product-db-3 {old}");

    // Replica 2 dies too: 3 and 4 are a majority of the three voters, and writes go on.
    up.kill("product-db-2");
    let item = seller.register_item(pen(9)).await.unwrap();
    let listed = seller.list_items(Page { offset: 0, limit: 20 }).await.unwrap();
    assert_eq!(listed.len(), 6);
    assert!(listed.iter().any(|i| i.id == item));
    let _ = fourth.kill().await;
    up.stop().await;
}

/// The customer database's leader dies (an injected crash) after recording a purchase and
/// before asking payments. The new leader cannot charge it (cards are never stored), so
/// it leaves the purchase to the buyer's retry, which carries the card: the retry with
/// the same key buys it, once. (Before, the new leader cancelled it at once and the retry
/// answered `aborted`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purchase_whose_leader_died_before_payment_is_bought_by_its_retry_once() {
    // Every replica would crash there, but only a leader's request reaches that point:
    // a retry taking a purchase over does not pass it, and nothing else is bought.
    let flags = ["--approve-probability", "1", "--restart", "never"];
    let (data, up) = Up::start_with(&flags, &[("AGORA_CRASH_AT", "after-begin")]).await;
    let servers = up.servers.clone();
    let trust = Trust::load(&data.path().join("credentials"), Component::SellerServer).unwrap();
    let (buyer, item) = seller_with_a_pen_and_a_buyer(&servers).await;
    buyer.add_to_cart(item, 3).await.unwrap();
    let old = leader(&servers, "customer-db", &trust).await;
    let card = bea_card();

    // The buyer asks, and asks again with the same key while the call fails on the way
    // (the leader gone, an election under way).
    let started = tokio::time::Instant::now();
    let bought = loop {
        match buyer.make_purchase_with_key("k1", card.clone()).await {
            Ok(purchase) => break purchase,
            Err(e)
                if e.is_transport()
                    || matches!(
                        e.code(),
                        Some(
                            ErrorCode::PurchasePending
                                | ErrorCode::Unavailable
                                | ErrorCode::Timeout
                                | ErrorCode::NotLeader
                        )
                    ) =>
            {
                assert!(started.elapsed() < DEADLINE, "never settled: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("the retried purchase failed: {e}"),
        }
    };
    let new = leader(&servers, "customer-db", &trust).await;
    assert_ne!(new, old, "the leader crashed and another took over");
    assert!(
        !answers::<agora_proto::CustomerDb>(
            &servers[&old],
            &trust,
            customer::Request::GetSeller { seller_id: 1 }
        )
        .await
    );

    // Bought once: the stock dropped once, the history has it once, the cart is empty.
    assert_eq!(bought.total, Money::from_cents(450));
    assert_eq!(buyer.get_item(item).await.unwrap().quantity, 7);
    let history = buyer.get_purchases(Page { offset: 0, limit: 10 }).await.unwrap();
    assert_eq!(history, vec![bought.clone()]);
    assert!(buyer.display_cart().await.unwrap().is_empty());
    let again = buyer.make_purchase_with_key("k1", card).await.unwrap();
    assert_eq!(again, bought, "the key answers the same purchase");
    // Charged once, under the purchase's key: every payments replica's ledger comes to
    // say so (each applies the group's log in its own time).
    let expected = vec![(format!("agora-purchase-{}", bought.id), 450)];
    for k in 1..=3 {
        let path = data.path().join(format!("payments-{k}")).join("payments.db");
        loop {
            let ledger = rusqlite::Connection::open_with_flags(
                &path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .unwrap();
            let approved = ledger
                .prepare("SELECT key, amount FROM charges WHERE state = ?1 ORDER BY key")
                .unwrap()
                .query_map([agora_payments::APPROVED], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .collect::<Result<Vec<(String, i64)>, _>>()
                .unwrap();
            if approved == expected {
                break;
            }
            assert!(approved.is_empty(), "payments-{k}: {approved:?}");
            assert!(started.elapsed() < DEADLINE, "payments-{k} never applied the charge");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    up.stop().await;
}

/// The data directory of a marketplace that ran alone, made by the release at 9100716
/// (fixtures/README.md says what it holds), unpacked into a new directory: `DIR/single`.
fn single_fixture() -> (tempfile::TempDir, std::path::PathBuf) {
    let data = tempfile::tempdir().unwrap();
    let archive = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/single-9100716.tgz");
    let status = std::process::Command::new("tar")
        .args(["xzf", archive, "-C"])
        .arg(data.path())
        .status()
        .unwrap();
    assert!(status.success(), "tar xzf {archive}");
    let dir = data.path().join("single");
    (data, dir)
}

/// `agora up --replicas 3` on the data of a marketplace that ran alone keeps it: every
/// replica of each group is seeded with a copy, and the originals are put aside. A replica
/// added later on an empty directory is sent the seeded state too, since each replica cuts
/// its log behind a snapshot once its group has started (before that seal, the new replica
/// was sent the log alone, replayed onto an empty file: none of the fixture's items).
/// Started again with another number of replicas, `agora up` refuses and says which.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_a_marketplace_that_ran_alone_keep_its_data() {
    let (_data, dir) = single_fixture();
    let up = Up::start_in(&dir, &["--restart", "never"], &[]).await;
    let servers = up.servers.clone();
    assert!(servers.contains_key("customer-db-3"), "{servers:?}");
    for file in ["customer.db", "product.db", "payments.db"] {
        assert!(!dir.join(file).exists(), "{file} is put aside");
        assert!(dir.join("before-replicas").join(file).exists(), "{file} is kept");
    }

    // Everything the fixture holds, served by the groups.
    let buyer = BuyerClient::new(vec![servers["buyer-server"].clone()]);
    buyer.login("bea", "long enough").await.unwrap();
    let purchases = buyer.get_purchases(Page { offset: 0, limit: 20 }).await.unwrap();
    assert_eq!(purchases.len(), 1);
    assert_eq!(purchases[0].total, Money::from_cents(1500));
    let cart = buyer.display_cart().await.unwrap();
    assert_eq!(cart.len(), 1, "the saved cart: {cart:?}");
    let pen = buyer.get_item(ItemId { category: 3, number: 1 }).await.unwrap();
    assert_eq!(pen.quantity, 7);
    let seller = SellerClient::new(vec![servers["seller-server"].clone()]);
    seller.login("ann", "long enough").await.unwrap();
    assert_eq!(seller.list_items(Page { offset: 0, limit: 20 }).await.unwrap().len(), 3);

    // Each replica seals its seed once its group has started.
    let started = tokio::time::Instant::now();
    let unsealed = || {
        ["customer-db", "product-db", "payments"]
            .iter()
            .flat_map(|g| (1..=3).map(move |k| format!("{g}-{k}")))
            .filter(|r| dir.join(r).join("seeded-from-single").exists())
            .collect::<Vec<_>>()
    };
    while !unsealed().is_empty() {
        assert!(started.elapsed() < DEADLINE, "not sealed: {:?}", unsealed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Replica 1 of product-db is replaced by an empty one, which is sent the seed.
    let cluster = |args: &[&str]| {
        let out = std::process::Command::new(AGORA)
            .arg("cluster")
            .args(args)
            .arg("--data-dir")
            .arg(&dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    up.kill("product-db-1");
    cluster(&["remove", "--group", "product-db", "--node-id", "1"]);
    issue(&dir.join("credentials"), "product-db", 4);
    let addr = format!("127.0.0.1:{}", agora_proto::ports::free_port("127.0.0.1").unwrap());
    let peers = format!("2={},3={},4={addr}", servers["product-db-2"], servers["product-db-3"]);
    let fourth_dir = dir.join("product-db-4");
    let mut fourth = Command::new(AGORA)
        .args(["product-db", "--listen", &addr, "--node-id", "4", "--peers", &peers])
        .args(["--log", "warn"])
        .arg("--data-dir")
        .arg(&fourth_dir)
        .arg("--credentials")
        .arg(dir.join("credentials"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut said = BufReader::new(fourth.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(DEADLINE, said.next_line()).await.unwrap().unwrap();
    assert_eq!(first.as_deref(), Some(format!("listening on {addr}").as_str()));
    cluster(&["add", "--group", "product-db", "--node-id", "4", "--addr", &addr]);
    let items_in_the_fourth = || {
        let conn = rusqlite::Connection::open(fourth_dir.join("product.db")).unwrap();
        conn.query_row("SELECT count(*) FROM items", [], |r| r.get::<_, i64>(0)).unwrap()
    };
    let started = tokio::time::Instant::now();
    while items_in_the_fourth() < 3 {
        assert!(started.elapsed() < DEADLINE, "product-db-4 holds {} items", items_in_the_fourth());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = fourth.kill().await;
    up.stop().await;

    // Now a marketplace of groups of three: one replica, or five, would leave it unused.
    for replicas in ["1", "5"] {
        let out = std::process::Command::new(AGORA)
            .args(["up", "--port-base", "0", "--replicas", replicas, "--data-dir"])
            .arg(&dir)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "--replicas {replicas} starts: {stderr}");
        assert!(stderr.contains("Run `agora up --replicas 3` to use it"), "{stderr}");
        assert!(!dir.join("product-db-5").exists() && !dir.join("customer.db").exists());
    }
}

/// `agora credentials issue`: replica `node_id` of `component`'s own certificate, made
/// where the cluster's CA is, before the replica starts.
fn issue(credentials: &std::path::Path, component: &str, node_id: u64) {
    let out = std::process::Command::new(AGORA)
        .args(["credentials", "issue", "--component", component, "--node-id"])
        .arg(node_id.to_string())
        .arg("--dir")
        .arg(credentials)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains(&format!("{component}-{node_id}.crt")), "{said}");
}
