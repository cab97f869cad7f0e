//! Only the marketplace's own components may call a database or payments, and each only
//! what its job needs: callers without the cluster's credentials, with another cluster's,
//! or with a component's that has no business sending a request, change nothing.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use agora_client::{BuyerClient, SellerClient};
use agora_domain::{Card, CartLine, Condition, ItemId, Money, NewItem};
use agora_proto::messages::{customer, payments, product};
use agora_proto::{
    CallError, Channel, Component, Connector, CustomerDb, DEFAULT_MAX_FRAME, ErrorCode, Payments,
    ProductDb, Service, Trust,
};
use agora_testkit::Cluster;

const WAIT: Duration = Duration::from_secs(5);

/// A seller with one item of 10 units at $1.50; returns the item.
async fn listed(cluster: &Cluster) -> ItemId {
    let seller = SellerClient::new(vec![cluster.seller_addr()]);
    seller.create_account("ann", "password1", "").await.unwrap();
    seller.login("ann", "password1").await.unwrap();
    seller
        .register_item(NewItem {
            name: "Pen".into(),
            category: 3,
            keywords: vec!["pen".into()],
            condition: Condition::New,
            price: Money::from_cents(150),
            quantity: 10,
        })
        .await
        .unwrap()
}

/// The item as a buyer sees it: price and units left.
async fn seen(cluster: &Cluster, item: ItemId) -> (Money, u32) {
    let buyer = BuyerClient::new(vec![cluster.buyer_addr()]);
    let _ = buyer.create_account("spy", "password1", "").await;
    buyer.login("spy", "password1").await.unwrap();
    let item = buyer.get_item(item).await.unwrap();
    (item.price, item.quantity)
}

async fn channel<S: Service>(addr: std::net::SocketAddr, connector: &Connector) -> Channel<S> {
    Channel::connect_with(&addr.to_string(), WAIT, DEFAULT_MAX_FRAME, connector).await.unwrap()
}

fn card() -> Card {
    Card { holder: "Mallory".into(), number: "4111111111111111".into(), expiry: "12/99".into() }
}

fn forbidden(answer: Result<impl std::fmt::Debug, CallError>) -> String {
    match answer {
        Err(CallError::Remote(e)) if e.code == ErrorCode::Forbidden => e.message,
        other => panic!("expected forbidden, got {other:?}"),
    }
}

#[tokio::test]
async fn a_caller_without_credentials_changes_nothing() {
    let cluster = Cluster::start().await;
    let item = listed(&cluster).await;
    let before = seen(&cluster, item).await;

    // In the clear, as anyone who can reach the port could.
    let products = channel::<ProductDb>(cluster.product_db.addr, &Connector::Open).await;
    let change = product::Request::ChangePrice { seller_id: 1, item, price: Money::from_cents(1) };
    let message = forbidden(products.call(&change, WAIT).await);
    assert!(message.contains("credentials"), "{message}");
    let products = channel::<ProductDb>(cluster.product_db.addr, &Connector::Open).await;
    let grab = product::Request::Reserve {
        purchase: 999_999,
        lines: vec![CartLine { item, quantity: 10 }],
    };
    forbidden(products.call(&grab, WAIT).await);

    let ledger = channel::<Payments>(cluster.payments.addr, &Connector::Open).await;
    let charge = payments::Request::Charge {
        key: "agora-purchase-1".into(),
        card: card(),
        amount: Money::from_cents(1),
        payer: 2,
    };
    forbidden(ledger.call(&charge, WAIT).await);

    let customers = channel::<CustomerDb>(cluster.customer_db.addr, &Connector::Open).await;
    let check = customer::Request::Authenticate {
        session: "0".repeat(64),
        role: agora_domain::Role::Buyer,
    };
    forbidden(customers.call(&check, WAIT).await);

    assert_eq!(seen(&cluster, item).await, before);
    cluster.stop().await;
}

#[tokio::test]
async fn another_clusters_credentials_are_refused_at_the_handshake() {
    let cluster = Cluster::start().await;
    let item = listed(&cluster).await;
    let before = seen(&cluster, item).await;
    let elsewhere = tempfile::tempdir().unwrap();
    let stranger = agora_testkit::trust(elsewhere.path(), Component::SellerServer);

    let change = product::Request::ChangePrice { seller_id: 1, item, price: Money::from_cents(1) };
    let connected = Channel::<ProductDb>::connect_with(
        &cluster.product_db.addr.to_string(),
        WAIT,
        DEFAULT_MAX_FRAME,
        &stranger.connector(),
    )
    .await;
    // Either side may end it: our client does not trust their certificate, or (TLS 1.3)
    // the server refuses ours after our half of the handshake.
    match connected {
        Err(CallError::Unreachable { reason, .. }) => {
            assert!(reason.contains("not trusted"), "{reason}")
        }
        Ok(channel) => match channel.call(&change, WAIT).await {
            Err(CallError::Lost { reason, .. }) => assert!(reason.contains("refused"), "{reason}"),
            other => panic!("a stranger's call went through: {other:?}"),
        },
        Err(other) => panic!("{other:?}"),
    }
    assert_eq!(seen(&cluster, item).await, before);
    cluster.stop().await;
}

#[tokio::test]
async fn each_component_may_send_only_what_its_job_needs() {
    let cluster = Cluster::start().await;
    let item = listed(&cluster).await;
    let before = seen(&cluster, item).await;
    let as_ = |component| -> Trust { cluster.trust(component) };

    // A frontend may not reserve units or charge cards: that is the coordinator's job.
    let buyer_side = as_(Component::BuyerServer).connector();
    let products = channel::<ProductDb>(cluster.product_db.addr, &buyer_side).await;
    let grab = product::Request::Reserve {
        purchase: 999_999,
        lines: vec![CartLine { item, quantity: 10 }],
    };
    let message = forbidden(products.call(&grab, WAIT).await);
    assert_eq!(message, "buyer-server may not send Reserve to product-db");
    // The buyer server does not manage listings.
    let change = product::Request::ChangePrice { seller_id: 1, item, price: Money::from_cents(1) };
    forbidden(products.call(&change, WAIT).await);
    let ledger = channel::<Payments>(cluster.payments.addr, &buyer_side).await;
    let charge = payments::Request::Charge {
        key: "agora-purchase-1".into(),
        card: card(),
        amount: Money::from_cents(1),
        payer: 2,
    };
    forbidden(ledger.call(&charge, WAIT).await);
    // The seller server has no carts; an operator's tool may only ping.
    let customers =
        channel::<CustomerDb>(cluster.customer_db.addr, &as_(Component::SellerServer).connector())
            .await;
    forbidden(
        customers.call(&customer::Request::ClearCart { session: "0".repeat(64) }, WAIT).await,
    );
    let admin = as_(Component::Admin).connector();
    let products = channel::<ProductDb>(cluster.product_db.addr, &admin).await;
    assert_eq!(
        products.call(&product::Request::Ping, WAIT).await.unwrap(),
        product::Response::Pong
    );
    forbidden(products.call(&change, WAIT).await);
    assert_eq!(seen(&cluster, item).await, before);

    // The rule lets the right component through: the coordinator may reserve.
    let coordinator = as_(Component::CustomerDb).connector();
    let products = channel::<ProductDb>(cluster.product_db.addr, &coordinator).await;
    let lines = vec![CartLine { item, quantity: 2 }];
    let answer = products.call(&product::Request::Reserve { purchase: 999_999, lines }, WAIT).await;
    assert!(matches!(answer, Ok(product::Response::Reserved(_))), "{answer:?}");
    assert_eq!(seen(&cluster, item).await.1, before.1 - 2);
    cluster.stop().await;
}

#[tokio::test]
async fn a_charge_that_is_not_the_purchases_buys_nothing() {
    let cluster = Cluster::start().await;
    let item = listed(&cluster).await;
    // Pre-recorded under the key the next purchase will use, for one cent and another
    // buyer: even a caller with the coordinator's own credentials cannot pay for a
    // purchase this way.
    let coordinator = cluster.trust(Component::CustomerDb).connector();
    let ledger = channel::<Payments>(cluster.payments.addr, &coordinator).await;
    let charge = payments::Request::Charge {
        key: "agora-purchase-1".into(),
        card: card(),
        amount: Money::from_cents(1),
        payer: 999,
    };
    let answer = ledger.call(&charge, WAIT).await.unwrap();
    assert!(matches!(answer, payments::Response::Charge(payments::Outcome::Approved { .. })));

    let buyer = BuyerClient::new(vec![cluster.buyer_addr()]);
    buyer.create_account("bea", "password1", "").await.unwrap();
    buyer.login("bea", "password1").await.unwrap();
    buyer.add_to_cart(item, 6).await.unwrap();
    let refused = buyer.make_purchase(card()).await.unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::Aborted), "{refused:?}");
    assert!(buyer.get_purchases(agora_domain::Page::default()).await.unwrap().is_empty());
    assert_eq!(buyer.display_cart().await.unwrap(), vec![CartLine { item, quantity: 6 }]);
    // The units came back on sale.
    assert_eq!(seen(&cluster, item).await.1, 10);
    cluster.stop().await;
}

#[tokio::test]
async fn a_reservation_no_purchase_claims_is_released() {
    let cluster = Cluster::start().await;
    let item = listed(&cluster).await;
    // One real purchase, so that purchase ids up to 1 have been given.
    let buyer = BuyerClient::new(vec![cluster.buyer_addr()]);
    buyer.create_account("bea", "password1", "").await.unwrap();
    buyer.login("bea", "password1").await.unwrap();
    buyer.add_to_cart(item, 1).await.unwrap();
    buyer.make_purchase(card()).await.unwrap();
    assert_eq!(seen(&cluster, item).await.1, 9);

    // A reservation under a purchase id that was given but is not unfinished (as a bug
    // or a stray request could leave) takes 5 units...
    let coordinator = cluster.trust(Component::CustomerDb).connector();
    let products = channel::<ProductDb>(cluster.product_db.addr, &coordinator).await;
    let lines = vec![CartLine { item, quantity: 5 }];
    let taken = products.call(&product::Request::Reserve { purchase: 0, lines }, WAIT).await;
    assert!(matches!(taken, Ok(product::Response::Reserved(_))), "{taken:?}");
    // ...and the coordinator's next report, within its recovery interval (so perhaps
    // before we can even look), frees them.
    let deadline = tokio::time::Instant::now() + WAIT;
    while seen(&cluster, item).await.1 != 9 {
        assert!(tokio::time::Instant::now() < deadline, "the units were never released");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.stop().await;
}

#[tokio::test]
async fn units_of_a_cancelled_purchase_do_not_bring_back_a_withdrawn_item() {
    let cluster = Cluster::start().await;
    let item = listed(&cluster).await;
    // A purchase holds 3 units (its outcome unknown, say payments is down)...
    let coordinator = cluster.trust(Component::CustomerDb).connector();
    let products = channel::<ProductDb>(cluster.product_db.addr, &coordinator).await;
    let lines = vec![CartLine { item, quantity: 3 }];
    products.call(&product::Request::Reserve { purchase: 77, lines }, WAIT).await.unwrap();
    // ...the seller takes the other 7 off sale: the item is withdrawn...
    let seller = SellerClient::new(vec![cluster.seller_addr()]);
    seller.login("ann", "password1").await.unwrap();
    assert_eq!(seller.remove_units(item, 7).await.unwrap(), 0);
    // ...and when the purchase is cancelled, its units do not put it back on sale.
    products.call(&product::Request::Release { purchase: 77 }, WAIT).await.unwrap();
    assert_eq!(seen(&cluster, item).await.1, 0);
    let buyer = BuyerClient::new(vec![cluster.buyer_addr()]);
    buyer.login("spy", "password1").await.unwrap();
    let found = buyer.search(3, vec!["pen".into()], agora_domain::Page::default()).await.unwrap();
    assert!(found.is_empty(), "{found:?}");
    cluster.stop().await;
}

#[tokio::test]
async fn data_and_credentials_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let cluster = Cluster::start().await;
    listed(&cluster).await;
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let data = cluster.data.path();
    for file in ["customer.db", "product.db", "payments.db", "product.db-wal"] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
    let credentials = data.join("credentials");
    assert_eq!(mode(&credentials), 0o700);
    for key in ["ca.key", "customer-db-1.key", "buyer-server.key"] {
        assert_eq!(mode(&credentials.join(key)), 0o600, "{key}");
    }
    // Everything else the servers wrote too: certificates, logs, whatever comes.
    assert_eq!(agora_testkit::not_private(data), vec![]);
    cluster.stop().await;
    // A directory the servers create themselves is private too.
    let parent = tempfile::tempdir().unwrap();
    let fresh = parent.path().join("new");
    let running = agora_testkit::start_product_db(&fresh, "127.0.0.1:0").await;
    assert_eq!(mode(&fresh), 0o700);
    running.stop().await;
}

#[tokio::test]
async fn errors_that_reach_the_public_never_name_internal_addresses() {
    // A frontend whose databases are down, at addresses a user must not learn.
    let closed = |_| std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let (customer_db, product_db) = (closed(0), closed(1));
    let data = tempfile::tempdir().unwrap();
    let trust = agora_testkit::trust(data.path(), Component::BuyerServer);
    let upstream = agora_testkit::frontend_config(customer_db, product_db, trust);
    let frontend = agora_testkit::start_buyer(&upstream, "127.0.0.1:0").await;
    let buyer = BuyerClient::new(vec![frontend.addr.to_string()]);
    let down = buyer.create_account("bea", "password1", "").await.unwrap_err();
    let message = down.to_string();
    assert_eq!(down.code(), Some(ErrorCode::Unavailable), "{down:?}");
    assert!(message.contains("customer-db"), "{message}");
    for addr in [customer_db, product_db] {
        assert!(!message.contains(&addr.port().to_string()), "{message} names {addr}");
    }
    frontend.stop().await;
}

/// Credentials of the cluster in `dir` whose admin certificate is the seller server's: a
/// replica takes the handshake (the certificate is the cluster's) and refuses every
/// admin request.
fn seller_posing_as_admin(dir: &std::path::Path) -> tempfile::TempDir {
    let real = agora_testkit::credentials(dir);
    let posing = tempfile::tempdir().unwrap();
    std::fs::copy(real.join("ca.crt"), posing.path().join("ca.crt")).unwrap();
    std::fs::copy(real.join("seller-server.crt"), posing.path().join("admin.crt")).unwrap();
    std::fs::copy(real.join("seller-server.key"), posing.path().join("admin.key")).unwrap();
    posing
}

#[tokio::test]
async fn cluster_commands_with_refused_credentials_show_the_refusal() {
    // A product database as a group of one, which answers `agora cluster`.
    let data = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let trust = agora_testkit::trust(data.path(), Component::ProductDb);
    let config = agora_product_db::Config {
        group: Some(agora_replication::Peers::new(1, [(1, addr.clone())].into())),
        ..agora_product_db::Config::new(data.path(), trust)
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(agora_product_db::run(listener, config, shutdown.clone()));
    let posing = seller_posing_as_admin(data.path());
    // The command runs beside the server, which this test's runtime drives.
    let agora = |args: &[&str]| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_agora"))
            .arg("cluster")
            .args(args)
            .args(["--product-db", &addr])
            .env("AGORA_DATA_DIR", data.path())
            .output()
    };
    let posing = posing.path().to_str().unwrap();
    // Status: the replica's refusal, not "unreachable", and a failed command.
    let status = agora(&["status", "--credentials", posing]).await.unwrap();
    let (stdout, stderr) =
        (String::from_utf8_lossy(&status.stdout), String::from_utf8_lossy(&status.stderr));
    assert!(!status.status.success(), "{stdout}");
    assert!(stdout.contains("refused"), "{stdout}");
    assert!(!stdout.contains("unreachable"), "{stdout}");
    assert!(stderr.contains("refused: forbidden"), "{stderr}");
    // A membership change looks for the leader first: it says the replica refused,
    // not that no replica leads.
    let remove =
        agora(&["remove", "--group", "product-db", "--node-id", "1", "--credentials", posing])
            .await
            .unwrap();
    let stderr = String::from_utf8_lossy(&remove.stderr);
    assert!(!remove.status.success());
    assert!(stderr.contains("refused: forbidden"), "{stderr}");
    assert!(!stderr.contains("is a majority"), "{stderr}");
    // The real admin is answered.
    let real = agora(&["status"]).await.unwrap();
    assert!(real.status.success(), "{}", String::from_utf8_lossy(&real.stderr));
    shutdown.cancel();
    server.await.unwrap().unwrap();
}
