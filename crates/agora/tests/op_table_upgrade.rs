//! The op-id table changed form (scoped by caller, with a digest of each request, a quota
//! per account: crates/store/src/applied.rs). A data directory written by the previous
//! release (tests/fixtures/single-9100716.tgz) still opens: its answers move into the new
//! table, every row of the marketplace is kept, and its users go on.
#![allow(clippy::unwrap_used)]

use agora_client::BuyerClient;
use agora_domain::Page;
use agora_proto::Component;

/// Unpacks the fixture `name` into a fresh temporary directory.
fn unpack(name: &str) -> tempfile::TempDir {
    let into = tempfile::tempdir().unwrap();
    let archive =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    let status = std::process::Command::new("tar")
        .arg("xzf")
        .arg(&archive)
        .arg("-C")
        .arg(into.path())
        .status()
        .unwrap();
    assert!(status.success(), "tar xzf {}", archive.display());
    into
}

/// The op-id tables `customer.db` holds now: the old one's name, if still there, and the
/// scopes of the new one's rows.
fn op_tables(dir: &std::path::Path) -> (bool, Vec<String>) {
    let c = rusqlite::Connection::open(dir.join("customer.db")).unwrap();
    let old: bool = c
        .query_row("SELECT count(*) > 0 FROM sqlite_master WHERE name = 'applied_ops'", [], |r| {
            r.get(0)
        })
        .unwrap();
    let scopes = c
        .prepare("SELECT scope FROM applied_requests ORDER BY at_ms")
        .and_then(|mut st| {
            st.query_map([], |r| r.get::<_, Vec<u8>>(0))?
                .map(|s| s.map(|s| String::from_utf8_lossy(&s).into_owned()))
                .collect::<Result<Vec<_>, _>>()
        })
        .unwrap_or_default();
    (old, scopes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_previous_releases_data_opens_with_its_op_ids_moved_over() {
    let unpacked = unpack("single-9100716.tgz");
    let dir = unpacked.path().join("single");
    {
        let c = rusqlite::Connection::open(dir.join("customer.db")).unwrap();
        let rows: i64 = c.query_row("SELECT count(*) FROM applied_ops", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, 5, "the fixture: two sign-ups and three cart changes");
    }
    let options = agora_testkit::Options::default();
    let product_db = agora_testkit::start_product_db(&dir, "127.0.0.1:0").await;
    let payments = agora_testkit::start_payments(&dir, &options, "127.0.0.1:0").await;
    let options =
        agora_testkit::Options { upstream: Some((product_db.addr, payments.addr)), ..options };
    let customer_db = agora_testkit::start_customer_db(&dir, &options, "127.0.0.1:0").await;
    let trust = agora_testkit::trust(&dir, Component::BuyerServer);
    let upstream = agora_testkit::frontend_config(customer_db.addr, product_db.addr, trust);
    let buyer_server = agora_testkit::start_buyer(&upstream, "127.0.0.1:0").await;

    // Bea's purchase and saved cart are there, and she buys on.
    let bea = BuyerClient::new(vec![buyer_server.addr.to_string()]);
    bea.login("bea", "long enough").await.unwrap();
    let history = bea.get_purchases(Page { offset: 0, limit: 10 }).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].total, agora_domain::Money::from_cents(1500));
    let cart = bea.display_cart().await.unwrap();
    assert_eq!(cart.len(), 1, "the saved cart: {cart:?}");
    bea.add_to_cart(cart[0].item, 1).await.unwrap();

    // The old table is gone; its five answers are in the new one, under their old
    // scopes, beside the answer just recorded under the session's.
    let (old, scopes) = op_tables(&dir);
    assert!(!old, "applied_ops is still there");
    assert_eq!(scopes.len(), 6, "{scopes:?}");
    assert_eq!(scopes[..2], ["legacy:0", "legacy:0"], "the sign-ups");
    assert_eq!(scopes[2..5], ["legacy:2", "legacy:2", "legacy:2"], "bea's cart changes");
    assert!(scopes[5].starts_with("session\0"), "{scopes:?}");

    for server in [buyer_server, customer_db, payments, product_db] {
        server.stop().await;
    }
}
