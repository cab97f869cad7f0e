//! Durability: databases as real processes, killed with SIGKILL while clients write, then
//! restarted. Every write that was acknowledged must still be there.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use agora_client::{BuyerClient, ClientError, SellerClient};
use agora_domain::{Condition, ItemId, Money, NewItem, Page};
use agora_testkit::Process;

const AGORA: &str = env!("CARGO_BIN_EXE_agora");

/// How long a test waits for a condition (servers back, writes acknowledged, threads
/// asleep): far longer than any of them takes, so that one that never comes fails the
/// test instead of hanging it.
const BOUND: Duration = Duration::from_secs(30);

struct System {
    customer_db: Process,
    product_db: Process,
    seller: Process,
    buyer: Process,
    _data: tempfile::TempDir,
}

fn start() -> System {
    start_with(&[], &[])
}

/// The four servers, each with `extra` flags, the two databases also with `storage`.
fn start_with(storage: &[&str], extra: &[&str]) -> System {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap().to_owned();
    let credentials = agora_testkit::credentials(data.path()).to_str().unwrap().to_owned();
    let exe = std::path::Path::new(AGORA);
    let db = |name| {
        let mut args = vec![name, "--listen", "127.0.0.1:0", "--data-dir", &dir, "--log", "warn"];
        args.extend(storage);
        args.extend(extra);
        Process::spawn(exe, &args)
    };
    let customer_db = db("customer-db");
    let product_db = db("product-db");
    let frontend = |name| {
        let mut args = vec![
            name,
            "--listen",
            "127.0.0.1:0",
            "--log",
            "warn",
            "--credentials",
            &credentials,
            "--customer-db",
            &customer_db.addr,
            "--product-db",
            &product_db.addr,
        ];
        args.extend(extra);
        Process::spawn(exe, &args)
    };
    let seller = frontend("seller-server");
    let buyer = frontend("buyer-server");
    System { customer_db, product_db, seller, buyer, _data: data }
}

/// Retries `f` until it succeeds: after a restart the frontends reconnect on their own,
/// but the first calls may still see the database as down.
async fn eventually<T, F, Fut>(mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let mut last = None;
    let deadline = Instant::now() + BOUND;
    while Instant::now() < deadline {
        match f().await {
            Ok(v) => return v,
            Err(e)
                if e.is_transport() || e.code() == Some(agora_client::ErrorCode::Unavailable) =>
            {
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    panic!("not recovered within {BOUND:?}: {last:?}");
}

/// Waits until `condition` holds, checking every millisecond; fails the test if it does
/// not within [`BOUND`].
async fn wait_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + BOUND;
    while !condition().await {
        assert!(Instant::now() < deadline, "not within {BOUND:?}: {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Whether every thread of `process` is asleep: blocked in the kernel (state `S` in
/// `/proc`), not running or polling. A server past its `--spin` window with nothing to do
/// is; one still polling its sockets is not.
fn asleep(process: &Process) -> bool {
    let tasks = format!("/proc/{}/task", process.pid());
    let tasks = std::fs::read_dir(&tasks).unwrap_or_else(|e| panic!("{tasks}: {e}"));
    tasks.into_iter().all(|task| {
        // `pid (name) S ...`: the state follows the name, which may hold spaces.
        let stat = std::fs::read_to_string(task.unwrap().path().join("stat")).unwrap_or_default();
        let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
        // A thread that ended between the listing and the read counts as asleep.
        state.is_none_or(|s| s.starts_with('S'))
    })
}

fn item(n: u32) -> NewItem {
    NewItem {
        name: format!("item {n}"),
        category: 7,
        keywords: vec!["crash".into()],
        condition: Condition::New,
        price: Money::from_cents(100 + i64::from(n)),
        quantity: 1 + n % 5,
    }
}

/// `--spin` changes how a server waits for its sockets, not what it does: every call is
/// answered, while the servers poll between frames and while they go back to sleep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_that_poll_before_sleeping_answer_every_call() {
    let system = start_with(&[], &["--spin", "200us"]);
    let servers = [&system.customer_db, &system.product_db, &system.seller, &system.buyer];
    let seller = SellerClient::new(vec![system.seller.addr.clone()]);
    seller.create_account("spinner", "password1", "").await.unwrap();
    seller.login("spinner", "password1").await.unwrap();
    let buyer = BuyerClient::new(vec![system.buyer.addr.clone()]);
    buyer.create_account("watcher", "password1", "").await.unwrap();
    buyer.login("watcher", "password1").await.unwrap();
    let mut ids = Vec::new();
    for n in 0..20 {
        ids.push(seller.register_item(item(n)).await.unwrap());
        // Every other call once the servers have stopped polling, so that some frames
        // find them asleep.
        if n % 2 == 0 {
            wait_until("the servers go to sleep", || async {
                servers.iter().all(|server| asleep(server))
            })
            .await;
        }
    }
    let found = buyer.search(7, vec!["crash".into()], Page { offset: 0, limit: 50 }).await.unwrap();
    let mut found: Vec<ItemId> = found.iter().map(|i| i.id).collect();
    found.sort();
    ids.sort();
    assert_eq!(found, ids);
    let listed = seller.list_items(Page { offset: 0, limit: 50 }).await.unwrap();
    assert_eq!(listed.len(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_items_survive_kill_9_of_the_product_database() {
    let mut system = start();
    let mut sellers = Vec::new();
    for i in 0..4 {
        let seller = SellerClient::new(vec![system.seller.addr.clone()]);
        seller.create_account(&format!("s{i}"), "password1", "").await.unwrap();
        seller.login(&format!("s{i}"), "password1").await.unwrap();
        sellers.push(seller);
    }

    // Writers keep registering items; each keeps the ids it was given.
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for seller in sellers.clone() {
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let mut acked: Vec<(ItemId, NewItem)> = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                if let Ok(id) = seller.register_item(item(n)).await {
                    acked.push((id, item(n)));
                }
            }
            acked
        }));
    }
    // Kill in the middle of the stream, once a good number are acknowledged.
    let probe = sellers[0].clone();
    wait_until("30 items acknowledged", || async {
        probe.list_items(Page { offset: 0, limit: 100 }).await.map_or(0, |v| v.len()) >= 30
    })
    .await;
    system.product_db.kill9();
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for writer in writers {
        acked.push(writer.await.unwrap());
    }
    system.product_db.restart();

    for (seller, acked) in sellers.iter().zip(&acked) {
        assert!(!acked.is_empty());
        let mut stored = Vec::new();
        loop {
            let page = Page { offset: stored.len() as u32, limit: 100 };
            let items = eventually(|| seller.list_items(page)).await;
            let done = items.len() < 100;
            stored.extend(items);
            if done {
                break;
            }
        }
        for (id, listed) in acked {
            let found = stored.iter().find(|i| i.id == *id);
            let found = found.unwrap_or_else(|| panic!("acknowledged item {id} lost"));
            assert_eq!(
                (&found.name, found.price, found.quantity),
                (&listed.name, listed.price, listed.quantity)
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_cart_writes_and_sessions_survive_kill_9_of_the_customer_database() {
    let mut system = start();
    let seller = SellerClient::new(vec![system.seller.addr.clone()]);
    seller.create_account("ann", "password1", "").await.unwrap();
    seller.login("ann", "password1").await.unwrap();
    let stock = seller.register_item(NewItem { quantity: 1_000_000, ..item(0) }).await.unwrap();

    let mut buyers = Vec::new();
    for i in 0..4 {
        let buyer = BuyerClient::new(vec![system.buyer.addr.clone()]);
        buyer.create_account(&format!("b{i}"), "password1", "").await.unwrap();
        buyer.login(&format!("b{i}"), "password1").await.unwrap();
        buyers.push(buyer);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for buyer in buyers.clone() {
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            // The cart quantity the last acknowledged add reported.
            let mut acked = 0;
            while !stop.load(Ordering::Relaxed) {
                match buyer.add_to_cart(stock, 1).await {
                    Ok(cart) => acked = cart[0].quantity,
                    Err(_) => tokio::task::yield_now().await,
                }
            }
            acked
        }));
    }
    wait_until("20 units in a cart", || async {
        buyers[0].display_cart().await.map_or(0, |c| c.first().map_or(0, |l| l.quantity)) >= 20
    })
    .await;
    system.customer_db.kill9();
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for writer in writers {
        acked.push(writer.await.unwrap());
    }
    system.customer_db.restart();

    for (buyer, acked) in buyers.iter().zip(acked) {
        // Same session as before the crash; the cart holds every acknowledged unit, and at
        // most the one more whose answer the crash cut off.
        let cart = eventually(|| buyer.display_cart()).await;
        let held = cart.first().map_or(0, |l| l.quantity);
        assert!(held == acked || held == acked + 1, "acknowledged {acked}, stored {held}");
    }
}

/// `--durability machine` end to end: the databases run with it (a writer thread,
/// an fsync per commit batch), and what they acknowledged is there after `kill -9` of
/// both and a restart with the same flags.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_machine_durability_acknowledged_writes_survive_kill_9() {
    let mut system = start_with(&["--durability", "machine"], &[]);
    let seller = SellerClient::new(vec![system.seller.addr.clone()]);
    seller.create_account("ann", "password1", "").await.unwrap();
    seller.login("ann", "password1").await.unwrap();
    let mut listed = Vec::new();
    for n in 0..5 {
        listed.push((seller.register_item(item(n)).await.unwrap(), item(n)));
    }
    let buyer = BuyerClient::new(vec![system.buyer.addr.clone()]);
    buyer.create_account("bea", "password1", "").await.unwrap();
    buyer.login("bea", "password1").await.unwrap();
    let (first, _) = listed[4]; // 5 units
    buyer.add_to_cart(first, 1).await.unwrap();
    let cart = buyer.add_to_cart(first, 1).await.unwrap();

    system.customer_db.kill9();
    system.product_db.kill9();
    system.customer_db.restart();
    system.product_db.restart();

    let stored = eventually(|| seller.list_items(Page { offset: 0, limit: 50 })).await;
    let mut stored: Vec<_> = stored.iter().map(|i| (i.id, &i.name, i.price, i.quantity)).collect();
    stored.sort_by_key(|(id, ..)| *id);
    let listed: Vec<_> = listed.iter().map(|(id, i)| (*id, &i.name, i.price, i.quantity)).collect();
    assert_eq!(stored, listed);
    // The same session, and its cart as last acknowledged.
    assert_eq!(eventually(|| buyer.display_cart()).await, cart);
    assert_eq!(cart.iter().map(|l| (l.item, l.quantity)).collect::<Vec<_>>(), vec![(first, 2)]);
}
