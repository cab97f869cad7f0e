//! MakePurchase end to end: the happy path, declines, short stock, retries, a race for the
//! last units, and crash injection at every named step with the invariants checked on the
//! databases' own files afterwards.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use agora_client::{BuyerClient, ClientError, ErrorCode, SellerClient};
use agora_customer_db::{FINISHED_STATES, PAYMENT_KEY_PREFIX};
use agora_domain::{Card, Condition, ItemId, Money, NewItem, Page};
use agora_testkit::{Cluster, Options, Process};

const AGORA: &str = env!("CARGO_BIN_EXE_agora");

fn card() -> Card {
    Card {
        holder: "Bea Buyer".into(),
        number: "4111 1111 1111 1111".into(),
        expiry: "12/99".into(),
    }
}

fn mug(quantity: u32) -> NewItem {
    NewItem {
        name: "Mug".into(),
        category: 2,
        keywords: vec!["mug".into()],
        condition: Condition::New,
        price: Money::from_cents(450),
        quantity,
    }
}

async fn seller(addr: String) -> SellerClient {
    let seller = SellerClient::new(vec![addr]);
    seller.create_account("ann", "password1", "").await.unwrap();
    seller.login("ann", "password1").await.unwrap();
    seller
}

async fn buyer(addr: String, name: &str) -> BuyerClient {
    let buyer = BuyerClient::new(vec![addr]);
    buyer.create_account(name, "password1", "").await.unwrap();
    buyer.login(name, "password1").await.unwrap();
    buyer
}

fn code<T: std::fmt::Debug>(result: Result<T, ClientError>) -> ErrorCode {
    let error = result.expect_err("should fail");
    error.code().unwrap_or_else(|| panic!("no code in {error:?}"))
}

#[tokio::test]
async fn a_purchase_buys_the_cart_records_it_and_empties_the_cart() {
    let cluster = Cluster::start().await;
    let seller = seller(cluster.seller_addr()).await;
    let a = seller.register_item(mug(10)).await.unwrap();
    let b = seller
        .register_item(NewItem { name: "Plate".into(), price: Money::from_cents(1_000), ..mug(4) })
        .await
        .unwrap();
    let buyer = buyer(cluster.buyer_addr(), "bea").await;
    buyer.add_to_cart(a, 3).await.unwrap();
    buyer.add_to_cart(b, 4).await.unwrap();
    buyer.save_cart().await.unwrap();

    let purchase = buyer.make_purchase(card()).await.unwrap();
    assert_eq!(purchase.total, Money::from_cents(3 * 450 + 4 * 1_000));
    let lines: Vec<_> = purchase.lines.iter().map(|l| (l.item, l.quantity, l.unit_price)).collect();
    assert_eq!(lines, vec![(a, 3, Money::from_cents(450)), (b, 4, Money::from_cents(1_000))]);

    assert!(buyer.display_cart().await.unwrap().is_empty());
    assert_eq!(buyer.get_purchases(Page::default()).await.unwrap(), vec![purchase.clone()]);
    assert_eq!(buyer.get_item(a).await.unwrap().quantity, 7);
    assert_eq!(buyer.get_item(b).await.unwrap().quantity, 0);
    // Sold out: gone from search and from the seller's list.
    assert_eq!(buyer.search(2, vec!["mug".into()], Page::default()).await.unwrap().len(), 1);
    assert_eq!(seller.get_rating().await.unwrap().items_sold, 7);
    // The saved cart held what was bought, so it is empty too.
    buyer.logout().await.unwrap();
    buyer.login("bea", "password1").await.unwrap();
    assert!(buyer.display_cart().await.unwrap().is_empty());
    // A new purchase of an empty cart is refused.
    assert_eq!(code(buyer.make_purchase(card()).await), ErrorCode::InvalidArgument);
    cluster.stop().await;
}

#[tokio::test]
async fn a_retry_with_the_same_key_never_buys_twice() {
    let cluster = Cluster::start().await;
    let seller = seller(cluster.seller_addr()).await;
    let a = seller.register_item(mug(10)).await.unwrap();
    let buyer = buyer(cluster.buyer_addr(), "bea").await;
    buyer.add_to_cart(a, 2).await.unwrap();
    let first = buyer.make_purchase_with_key("order-1", card()).await.unwrap();
    // The buyer refills the cart, then the retry of order-1 arrives.
    buyer.add_to_cart(a, 2).await.unwrap();
    let again = buyer.make_purchase_with_key("order-1", card()).await.unwrap();
    assert_eq!(first, again);
    assert_eq!(buyer.get_item(a).await.unwrap().quantity, 8);
    assert_eq!(buyer.get_purchases(Page::default()).await.unwrap().len(), 1);
    assert_eq!(buyer.display_cart().await.unwrap()[0].quantity, 2);
    cluster.stop().await;
}

#[tokio::test]
async fn declined_cards_change_nothing_and_say_why() {
    let cluster =
        Cluster::start_with(Options { approve_probability: 0.0, ..Options::default() }).await;
    let seller = seller(cluster.seller_addr()).await;
    let a = seller.register_item(mug(5)).await.unwrap();
    let buyer = buyer(cluster.buyer_addr(), "bea").await;
    buyer.add_to_cart(a, 2).await.unwrap();

    for (card, reason) in [
        (card(), "declined"),
        (Card { number: "4111 1111 1111 1112".into(), ..card() }, "invalid card number"),
        (Card { expiry: "01/20".into(), ..card() }, "expired"),
    ] {
        let error = buyer.make_purchase(card).await.expect_err("declined");
        assert_eq!(error.code(), Some(ErrorCode::PaymentDeclined));
        assert!(error.to_string().contains(reason), "{error}");
    }
    // Malformed card details never reach payments.
    let error =
        buyer.make_purchase(Card { expiry: "13/30".into(), ..card() }).await.expect_err("bad");
    assert_eq!(error.code(), Some(ErrorCode::InvalidArgument));
    assert!(error.to_string().contains("expiry"), "{error}");

    assert_eq!(buyer.get_item(a).await.unwrap().quantity, 5);
    assert_eq!(buyer.display_cart().await.unwrap()[0].quantity, 2);
    assert!(buyer.get_purchases(Page::default()).await.unwrap().is_empty());
    cluster.stop().await;
}

#[tokio::test]
async fn short_stock_names_the_item_and_what_is_left() {
    let cluster = Cluster::start().await;
    let seller = seller(cluster.seller_addr()).await;
    let a = seller.register_item(mug(5)).await.unwrap();
    let b = seller.register_item(NewItem { name: "Plate".into(), ..mug(5) }).await.unwrap();
    let buyer = buyer(cluster.buyer_addr(), "bea").await;
    buyer.add_to_cart(a, 2).await.unwrap();
    buyer.add_to_cart(b, 5).await.unwrap();
    seller.remove_units(b, 3).await.unwrap();

    let error = buyer.make_purchase(card()).await.expect_err("short");
    assert_eq!(error.code(), Some(ErrorCode::NotEnoughUnits));
    let message = error.to_string();
    assert!(message.contains(&b.to_string()) && message.contains("2 left"), "{message}");
    // All or nothing: the other line was not bought either.
    assert_eq!(buyer.get_item(a).await.unwrap().quantity, 5);
    assert_eq!(buyer.get_item(b).await.unwrap().quantity, 2);
    assert_eq!(buyer.display_cart().await.unwrap().len(), 2);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_buyers_racing_for_the_last_units() {
    let cluster = Cluster::start().await;
    let seller = seller(cluster.seller_addr()).await;
    let a = seller.register_item(mug(5)).await.unwrap();
    let mut buyers = Vec::new();
    for i in 0..16 {
        let buyer = buyer(cluster.buyer_addr(), &format!("b{i}")).await;
        buyer.add_to_cart(a, 1).await.unwrap();
        buyers.push(buyer);
    }
    let results = futures_join_all(buyers.iter().map(|b| b.make_purchase(card()))).await;
    let bought = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(bought, 5);
    for r in results.iter().filter(|r| r.is_err()) {
        assert_eq!(r.as_ref().unwrap_err().code(), Some(ErrorCode::NotEnoughUnits));
    }
    assert_eq!(seller.list_items(Page::default()).await.unwrap().len(), 0);
    assert_eq!(buyers[0].get_item(a).await.unwrap().quantity, 0);
    assert_eq!(seller.get_rating().await.unwrap().items_sold, 5);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_purchases_of_one_cart_buy_it_once() {
    let cluster = Cluster::start().await;
    let seller = seller(cluster.seller_addr()).await;
    let a = seller.register_item(mug(10)).await.unwrap();
    let buyer = buyer(cluster.buyer_addr(), "bea").await;
    buyer.add_to_cart(a, 2).await.unwrap();
    // Five purchases of the same session's cart at once, each with its own key, as five
    // browser tabs or a double-clicking script would send them.
    let results = futures_join_all((0..5).map(|_| buyer.make_purchase(card()))).await;
    let bought: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(bought.len(), 1, "{results:?}");
    assert_eq!(bought[0].total, Money::from_cents(900));
    for refused in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(refused.code(), Some(ErrorCode::InvalidArgument), "{refused:?}");
        assert!(refused.to_string().contains("cart is empty"), "{refused}");
    }
    assert_eq!(buyer.get_item(a).await.unwrap().quantity, 8);
    assert_eq!(buyer.get_purchases(Page::default()).await.unwrap().len(), 1);
    assert!(buyer.display_cart().await.unwrap().is_empty());
    assert_eq!(seller.get_rating().await.unwrap().items_sold, 2);
    cluster.stop().await;
}

/// Runs futures concurrently on this task and collects their results in order.
async fn futures_join_all<F: std::future::Future>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done { std::task::Poll::Ready(()) } else { std::task::Poll::Pending }
    })
    .await;
    out.into_iter().map(|v| v.unwrap()).collect()
}

// ---------------------------------------------------------------------------------------
// Crash injection: every component is a real process; one of them aborts at a named step.

struct System {
    customer_db: Process,
    product_db: Process,
    payments: Process,
    _seller: Process,
    buyer: Process,
    seller_addr: String,
    data: tempfile::TempDir,
}

fn start(crash: (&str, &str)) -> System {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap().to_owned();
    let credentials = agora_testkit::credentials(data.path()).to_str().unwrap().to_owned();
    let exe = std::path::Path::new(AGORA);
    let env_for = |component: &str| {
        if component == crash.0 { vec![("AGORA_CRASH_AT", crash.1)] } else { vec![] }
    };
    let base = ["--listen", "127.0.0.1:0", "--data-dir", dir.as_str(), "--log", "error"];
    let product_db = Process::spawn_with_env(
        exe,
        &[&["product-db"][..], &base].concat(),
        &env_for("product-db"),
    );
    let payments = Process::spawn_with_env(
        exe,
        &[&["payments", "--approve-probability", "1"][..], &base].concat(),
        &env_for("payments"),
    );
    let customer_db = Process::spawn_with_env(
        exe,
        &[
            &[
                "customer-db",
                "--recovery-interval",
                "50ms",
                "--product-db",
                &product_db.addr,
                "--payments",
                &payments.addr,
            ][..],
            &base,
        ]
        .concat(),
        &env_for("customer-db"),
    );
    let frontend = |name| {
        Process::spawn(
            exe,
            &[
                name,
                "--listen",
                "127.0.0.1:0",
                "--log",
                "error",
                "--credentials",
                &credentials,
                "--customer-db",
                &customer_db.addr,
                "--product-db",
                &product_db.addr,
            ],
        )
    };
    let seller = frontend("seller-server");
    let buyer = frontend("buyer-server");
    let seller_addr = seller.addr.clone();
    System { customer_db, product_db, payments, _seller: seller, buyer, seller_addr, data }
}

/// Counts from the databases' own files.
struct Books {
    left: i64,
    sold: i64,
    purchases: Vec<i64>,
    charged: Vec<i64>,
    open_purchases: i64,
    open_reservations: i64,
}

fn books(dir: &std::path::Path, item: ItemId) -> Books {
    let open = |name: &str| {
        rusqlite::Connection::open_with_flags(
            dir.join(name),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap()
    };
    let product = open("product.db");
    let customer = open("customer.db");
    let payments = open("payments.db");
    let one =
        |c: &rusqlite::Connection, sql: &str| c.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
    let many = |c: &rusqlite::Connection, sql: &str| {
        let mut st = c.prepare(sql).unwrap();
        let rows = st.query_map([], |r| r.get::<_, i64>(0)).unwrap();
        let mut v: Vec<i64> = rows.map(|r| r.unwrap()).collect();
        v.sort_unstable();
        v
    };
    Books {
        left: one(&product, &format!("SELECT quantity FROM items WHERE number = {}", item.number)),
        sold: one(
            &customer,
            &format!(
                "SELECT coalesce(sum(quantity), 0) FROM purchase_lines WHERE number = {}",
                item.number
            ),
        ),
        purchases: many(&customer, "SELECT id FROM purchases"),
        charged: many(
            &payments,
            &format!(
                "SELECT CAST(substr(key, {from}) AS INTEGER) FROM charges \
                 WHERE state = {approved} AND key LIKE '{prefix}%'",
                from = PAYMENT_KEY_PREFIX.len() + 1,
                approved = agora_payments::APPROVED,
                prefix = PAYMENT_KEY_PREFIX,
            ),
        ),
        open_purchases: one(
            &customer,
            &format!(
                "SELECT count(*) FROM purchase_tx WHERE state NOT IN ({}, {})",
                FINISHED_STATES[0], FINISHED_STATES[1]
            ),
        ),
        open_reservations: one(
            &product,
            &format!(
                "SELECT count(*) FROM reservations WHERE state = {}",
                agora_product_db::reservation::RESERVED
            ),
        ),
    }
}

async fn crash_and_recover(component: &str, point: &str, expect_bought: bool) {
    let mut system = start((component, point));
    let seller = seller(system.seller_addr.clone()).await;
    let item = seller.register_item(mug(10)).await.unwrap();
    let buyer = buyer(system.buyer.addr.clone(), "bea").await;
    buyer.add_to_cart(item, 3).await.unwrap();

    // The crash makes this call fail one way or another (or, after the commit, may even
    // look like success to nobody): only the eventual outcome matters.
    let first = buyer.make_purchase_with_key("k1", card()).await;
    assert!(first.is_err(), "{point}: the crash should cut the call off, got {first:?}");
    let crashed = match component {
        "customer-db" => &mut system.customer_db,
        "product-db" => &mut system.product_db,
        _ => &mut system.payments,
    };
    let status = crashed.wait();
    assert!(!status.success(), "{point}: {component} should have crashed");
    crashed.restart();

    // Retry with the same key until the protocol has settled.
    let mut outcome = None;
    for _ in 0..400 {
        match buyer.make_purchase_with_key("k1", card()).await {
            Ok(p) => {
                outcome = Some(Ok(p));
                break;
            }
            Err(e)
                if e.is_transport()
                    || matches!(
                        e.code(),
                        Some(
                            ErrorCode::PurchasePending
                                | ErrorCode::Unavailable
                                | ErrorCode::Timeout
                        )
                    ) =>
            {
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            Err(e) => {
                outcome = Some(Err(e));
                break;
            }
        }
    }
    let outcome = outcome.unwrap_or_else(|| panic!("{point}: the purchase never settled"));
    assert_eq!(outcome.is_ok(), expect_bought, "{point}: outcome {outcome:?}");

    // Recovery also finishes the bookkeeping (confirm or release) in the background.
    let mut b = books(system.data.path(), item);
    for _ in 0..400 {
        if b.open_purchases == 0 && b.open_reservations == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
        b = books(system.data.path(), item);
    }
    assert_eq!((b.open_purchases, b.open_reservations), (0, 0), "{point}: left unfinished");
    assert_eq!(b.left + b.sold, 10, "{point}: units sold + units left = units listed");
    assert_eq!(
        b.purchases, b.charged,
        "{point}: each charge has one purchase and each purchase one charge"
    );
    assert_eq!(b.sold, if expect_bought { 3 } else { 0 }, "{point}");
    // The buyer's cart is empty exactly when the purchase happened.
    let cart = buyer.display_cart().await.unwrap();
    assert_eq!(cart.is_empty(), expect_bought, "{point}: cart {cart:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_of_the_coordinator_after_begin() {
    // Payments was never asked: the retry, which has the card, finishes the purchase.
    crash_and_recover("customer-db", "after-begin", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_of_the_coordinator_after_reserve() {
    // Reserved, and payments never got the charge: the retry, which has the card, places
    // it under the purchase's key and finishes the purchase.
    crash_and_recover("customer-db", "after-reserve", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_of_the_coordinator_after_charge() {
    crash_and_recover("customer-db", "after-charge", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_of_the_coordinator_after_commit() {
    crash_and_recover("customer-db", "after-commit", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_of_the_product_database_before_acknowledging_a_reservation() {
    crash_and_recover("product-db", "reserve-before-ack", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_of_payments_before_acknowledging_a_charge() {
    crash_and_recover("payments", "charge-before-ack", true).await;
}

/// A TCP proxy in front of `upstream` that holds every byte coming back from it for
/// `latency`: a slow link, or a slow card processor.
async fn slow_answers(upstream: std::net::SocketAddr, latency: Duration) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(upstream).await else { continue };
            let (mut client_in, mut client_out) = client.into_split();
            let (mut server_in, mut server_out) = server.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut client_in, &mut server_out).await;
                let _ = server_out.shutdown().await;
            });
            let (late, mut due) = tokio::sync::mpsc::unbounded_channel();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n @ 1..) = server_in.read(&mut buf).await {
                    let at = tokio::time::Instant::now() + latency;
                    if late.send((at, buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
            });
            tokio::spawn(async move {
                while let Some((at, bytes)) = due.recv().await {
                    tokio::time::sleep_until(at).await;
                    if client_out.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
                let _ = client_out.shutdown().await;
            });
        }
    });
    addr
}

/// The buyer gives up on a purchase while the customer database is still completing it
/// (payments answers slowly), as when the frontend carrying it dies, and asks again with
/// the same key: the retry waits for the purchase and answers it, rather than
/// `purchase_pending`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_while_the_purchase_is_being_completed_answers_its_outcome() {
    use agora_proto::Component;
    use agora_testkit::{
        frontend_config, start_buyer, start_customer_db, start_payments, start_product_db,
        start_seller, trust,
    };
    let data = tempfile::tempdir().unwrap();
    let dir = data.path();
    let product_db = start_product_db(dir, "127.0.0.1:0").await;
    let payments = start_payments(dir, &Options::default(), "127.0.0.1:0").await;
    // Each answer from payments (its TLS handshake, then the charge's approval) comes
    // 400 ms late: the charge is approved about 800 ms after it is sent.
    let slow_payments = slow_answers(payments.addr, Duration::from_millis(400)).await;
    let options =
        Options { upstream: Some((product_db.addr, slow_payments)), ..Options::default() };
    let customer_db = start_customer_db(dir, &options, "127.0.0.1:0").await;
    let front =
        |component| frontend_config(customer_db.addr, product_db.addr, trust(dir, component));
    let seller_server = start_seller(&front(Component::SellerServer), "127.0.0.1:0").await;
    let buyer_server = start_buyer(&front(Component::BuyerServer), "127.0.0.1:0").await;

    let seller = seller(seller_server.addr.to_string()).await;
    let mugs = seller.register_item(mug(10)).await.unwrap();
    let buyer = buyer(buyer_server.addr.to_string(), "bea").await;

    // The same buyer in another session, on a client that gives up after 150 ms.
    let impatient = BuyerClient::with_timeouts(
        vec![buyer_server.addr.to_string()],
        None,
        Some(Duration::from_millis(150)),
    );
    impatient.login("bea", "password1").await.unwrap();
    impatient.add_to_cart(mugs, 3).await.unwrap();
    let first = impatient.make_purchase_with_key("k1", card()).await;
    assert!(first.is_err(), "the charge takes longer than the buyer waits: {first:?}");

    // Asked again at once, while the customer database still waits for payments.
    let again = buyer.make_purchase_with_key("k1", card()).await;
    let purchase = again.expect("the retry answers the purchase once it is made");
    assert_eq!(purchase.total, Money::from_cents(3 * 450));
    assert_eq!(buyer.get_purchases(Page::default()).await.unwrap(), vec![purchase.clone()]);
    assert_eq!(buyer.get_item(mugs).await.unwrap().quantity, 7);
    // And again, once it is all done: the same answer.
    assert_eq!(buyer.make_purchase_with_key("k1", card()).await.unwrap(), purchase);

    for server in [seller_server, buyer_server, customer_db, product_db, payments] {
        server.stop().await;
    }
}
