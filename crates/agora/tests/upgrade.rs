//! An upgrade in place: data directories written by an earlier release (tests/fixtures,
//! README.md there says what they hold and how they were made) open with this one and
//! keep every row, and the marketplace goes on writing to them.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agora_client::{BuyerClient, SellerClient};
use agora_domain::{Condition, ItemId, Money, NewItem, Page};
use agora_proto::{Component, Trust};
use agora_replication::Peers;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const PASSWORD: &str = "long enough";
/// How long one admin call may take.
const WAIT: Duration = Duration::from_secs(2);

/// Unpacks `tests/fixtures/<name>` into `into` with the system's `tar`.
fn unpack(name: &str, into: &Path) -> PathBuf {
    let archive = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    let status = std::process::Command::new("tar")
        .arg("xzf")
        .arg(&archive)
        .arg("-C")
        .arg(into)
        .status()
        .expect("tar runs");
    assert!(status.success(), "tar could not unpack {}", archive.display());
    let top = name.split('-').next().unwrap();
    into.join(top)
}

struct Server {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

fn serve<F, Fut>(listener: TcpListener, run: F) -> Server
where
    F: FnOnce(TcpListener, CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let stop = CancellationToken::new();
    let task = tokio::spawn(run(listener, stop.clone()));
    Server { stop, task }
}

async fn listeners(n: usize) -> (Vec<TcpListener>, BTreeMap<u64, String>) {
    let mut bound = Vec::new();
    let mut peers = BTreeMap::new();
    for id in 1..=n as u64 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        peers.insert(id, listener.local_addr().unwrap().to_string());
        bound.push(listener);
    }
    (bound, peers)
}

/// Replica `id` of a group now at `peers`: its membership still holds the addresses
/// the earlier run used, so it dials every member where it listens now.
fn peers(id: u64, peers: &BTreeMap<u64, String>) -> Option<Peers> {
    Some(Peers { routes: peers.clone(), ..Peers::new(id, peers.clone()) })
}

fn trust(data: &Path, component: Component) -> Trust {
    Trust::load(&data.join("credentials"), component).unwrap()
}

/// Retries `call` until it succeeds or 60 s pass (the groups elect their leaders first).
async fn eventually<T, E: std::fmt::Debug, Fut: Future<Output = Result<T, E>>>(
    what: &str,
    mut call: impl FnMut() -> Fut,
) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match call().await {
            Ok(value) => return value,
            Err(e) if tokio::time::Instant::now() > deadline => panic!("{what}: {e:?}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_written_by_the_openraft_0_9_release_keep_every_row() {
    let tmp = tempfile::tempdir().unwrap();
    let data = unpack("replicated-9100716.tgz", tmp.path());
    let mut servers = Vec::new();

    // That release shared one certificate among a group's replicas; its credentials hold
    // the CA's key, and each replica's own are made from it (`agora_testkit::replica_trust`)
    // as `agora up` makes them on its first start with this release.
    let (product_listeners, product_peers) = listeners(3).await;
    for (listener, id) in product_listeners.into_iter().zip(1..) {
        let config = agora_product_db::Config {
            group: peers(id, &product_peers),
            ..agora_product_db::Config::new(
                data.join(format!("product-db-{id}")),
                agora_testkit::replica_trust(&data, Component::ProductDb, id),
            )
        };
        servers.push(serve(listener, |l, stop| async move {
            agora_product_db::run(l, config, stop).await.unwrap();
        }));
    }
    let (payment_listeners, payment_peers) = listeners(3).await;
    for (listener, id) in payment_listeners.into_iter().zip(1..) {
        let config = agora_payments::Config {
            group: peers(id, &payment_peers),
            approve_probability: 1.0,
            ..agora_payments::Config::new(
                data.join(format!("payments-{id}")),
                agora_testkit::replica_trust(&data, Component::Payments, id),
            )
        };
        servers.push(serve(listener, |l, stop| async move {
            agora_payments::run(l, config, stop).await.unwrap();
        }));
    }
    let (customer_listeners, customer_peers) = listeners(3).await;
    for (listener, id) in customer_listeners.into_iter().zip(1..) {
        let config = agora_customer_db::Config {
            group: peers(id, &customer_peers),
            product_db: product_peers.values().cloned().collect(),
            payments: payment_peers.values().cloned().collect(),
            ..agora_customer_db::Config::new(
                data.join(format!("customer-db-{id}")),
                agora_testkit::replica_trust(&data, Component::CustomerDb, id),
            )
        };
        servers.push(serve(listener, |l, stop| async move {
            agora_customer_db::run(l, config, stop).await.unwrap();
        }));
    }
    // The membership still holds the addresses the earlier run used: each replica is
    // told where its group's members listen now, as an operator moving a group to other
    // machines would (`agora cluster set-address`).
    let admin = trust(&data, Component::Admin);
    for (group, peers) in [
        (Component::ProductDb, &product_peers),
        (Component::Payments, &payment_peers),
        (Component::CustomerDb, &customer_peers),
    ] {
        for (&id, addr) in peers {
            eventually(&format!("{group} records node {id} at {addr}"), || async {
                let mut statuses = Vec::new();
                for addr in peers.values() {
                    let status = agora_replication::status_of(group, addr, &admin, WAIT).await;
                    statuses.push(status.ok());
                }
                let leader = agora_replication::agreed_leader(&statuses)
                    .map(|at| peers.values().nth(at).cloned().unwrap_or_default())
                    .ok_or_else(|| "no leader yet".to_owned())?;
                agora_replication::set_address_at(group, &leader, &admin, id, addr, WAIT)
                    .await
                    .map_err(|e| e.to_string())
            })
            .await;
        }
    }
    let frontend = |component| agora_frontend::Config {
        call_timeout: Duration::from_secs(5),
        ..agora_frontend::Config::new(
            customer_peers.values().cloned().collect(),
            product_peers.values().cloned().collect(),
            trust(&data, component),
        )
    };
    let seller_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let seller_addr = seller_listener.local_addr().unwrap().to_string();
    let upstream = frontend(Component::SellerServer);
    servers.push(serve(seller_listener, |l, stop| async move {
        agora_frontend::run_seller(l, upstream, Default::default(), stop).await;
    }));
    let buyer_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let buyer_addr = buyer_listener.local_addr().unwrap().to_string();
    let upstream = frontend(Component::BuyerServer);
    servers.push(serve(buyer_listener, |l, stop| async move {
        agora_frontend::run_buyer(l, upstream, Default::default(), stop).await;
    }));

    // The accounts the earlier release made log in with their passwords.
    let seller = SellerClient::new(vec![seller_addr]);
    eventually("ann logs in", || seller.login("ann", PASSWORD)).await;
    let buyer = BuyerClient::new(vec![buyer_addr]);
    eventually("bea logs in", || buyer.login("bea", PASSWORD)).await;

    // Every item as it was left, with its sales and feedback.
    let items = seller.list_items(Page::default()).await.unwrap();
    let found: BTreeMap<String, (u32, Money, i64, i64)> = items
        .iter()
        .map(|i| {
            let votes = (i.feedback.up as i64, i.feedback.down as i64);
            (i.id.to_string(), (i.quantity, i.price, votes.0, votes.1))
        })
        .collect();
    let expected: BTreeMap<String, (u32, Money, i64, i64)> = [
        ("3:1".to_owned(), (7, Money::from_cents(150), 1, 0)),
        ("7:2".to_owned(), (1, Money::from_cents(1200), 0, 1)),
        ("3:3".to_owned(), (5, Money::from_cents(250), 0, 0)),
    ]
    .into();
    assert_eq!(found, expected);
    let rating = seller.get_rating().await.unwrap();
    assert_eq!((rating.items_sold, rating.name.as_str()), (3, "Ann's Pens"));

    // The purchase, and the saved cart.
    let purchases = buyer.get_purchases(Page::default()).await.unwrap();
    assert_eq!(purchases.len(), 1, "{purchases:?}");
    assert_eq!((purchases[0].id, purchases[0].total), (1, Money::from_cents(1500)));
    let cart = buyer.display_cart().await.unwrap();
    let cart: Vec<(String, u32)> = cart.iter().map(|l| (l.item.to_string(), l.quantity)).collect();
    assert_eq!(cart, [("3:3".to_owned(), 1)]);

    // And the groups go on: a new listing, and a purchase through all three.
    let lamp = NewItem {
        name: "New lamp".into(),
        category: 7,
        keywords: vec!["lamp".into()],
        condition: Condition::New,
        price: Money::from_cents(900),
        quantity: 3,
    };
    let added = seller.register_item(lamp).await.unwrap();
    assert_eq!(added, "7:4".parse::<ItemId>().unwrap(), "item numbers go on after the old ones");
    buyer.add_to_cart(added, 1).await.unwrap();
    let card = agora_domain::Card {
        holder: "Bea B".into(),
        number: "4111 1111 1111 1111".into(),
        expiry: "12/99".into(),
    };
    let bought = buyer.make_purchase(card).await.unwrap();
    assert_eq!((bought.id, bought.total), (2, Money::from_cents(900 + 250)));

    for server in servers {
        server.stop.cancel();
        let _ = server.task.await;
    }
    // The earlier release left its log, stamps and snapshot directories readable by
    // others; they hold the same rows as the databases, and are now their owner's only.
    for group in ["customer-db", "product-db", "payments"] {
        for id in 1..=3 {
            assert_private(&data.join(format!("{group}-{id}")));
        }
    }
}

/// Every file under `dir` is 0600 and every directory 0700.
fn assert_private(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
        if path.is_dir() {
            assert_eq!(mode, 0o700, "{}", path.display());
            assert_private(&path);
        } else {
            assert_eq!(mode, 0o600, "{}", path.display());
        }
    }
}
