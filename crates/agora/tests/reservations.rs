//! The product database's side of a purchase (crates/customer-db/DESIGN.md): reserve,
//! then confirm or release, each keyed by the purchase id. The coordinator repeats steps
//! after crashes and may see them arrive late or out of order, so the states must refuse
//! what would undo a decision: a reserve after a release, a confirm after a release, a
//! release after a confirm. Spoken to as the coordinator, with the customer database's
//! credentials.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use agora_client::{BuyerClient, SellerClient};
use agora_domain::{CartLine, Condition, ItemId, Money, NewItem};
use agora_proto::messages::product::{Request, Response};
use agora_proto::{CallError, Channel, Component, DEFAULT_MAX_FRAME, ErrorCode, ProductDb};
use agora_testkit::Cluster;

const WAIT: Duration = Duration::from_secs(5);
const UNITS: u32 = 10;

/// A cluster with one item of [`UNITS`] units, a channel to its product database as the
/// purchase coordinator, and a buyer to look at the item with.
async fn setup() -> (Cluster, Channel<ProductDb>, BuyerClient, ItemId) {
    let cluster = Cluster::start().await;
    let seller = SellerClient::new(vec![cluster.seller_addr()]);
    seller.create_account("ann", "password1", "").await.unwrap();
    seller.login("ann", "password1").await.unwrap();
    let item = NewItem {
        name: "Pen".into(),
        category: 3,
        keywords: vec!["pen".into()],
        condition: Condition::New,
        price: Money::from_cents(150),
        quantity: UNITS,
    };
    let item = seller.register_item(item).await.unwrap();
    let connector = cluster.trust(Component::CustomerDb).connector();
    let addr = cluster.product_db.addr.to_string();
    let products = Channel::<ProductDb>::connect_with(&addr, WAIT, DEFAULT_MAX_FRAME, &connector)
        .await
        .unwrap();
    let buyer = BuyerClient::new(vec![cluster.buyer_addr()]);
    buyer.create_account("bea", "password1", "").await.unwrap();
    buyer.login("bea", "password1").await.unwrap();
    (cluster, products, buyer, item)
}

fn refused(answer: Result<Response, CallError>, code: ErrorCode) {
    match answer {
        Err(CallError::Remote(e)) => assert_eq!(e.code, code, "{e}"),
        other => panic!("expected {code}, got {other:?}"),
    }
}

/// The state stored for `purchase`'s reservation.
fn stored_state(cluster: &Cluster, purchase: u64) -> i64 {
    let db = rusqlite::Connection::open_with_flags(
        cluster.data.path().join("product.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    db.query_row("SELECT state FROM reservations WHERE purchase = ?1", [purchase as i64], |r| {
        r.get(0)
    })
    .unwrap()
}

#[tokio::test]
async fn a_release_before_the_reserve_leaves_a_tombstone_that_refuses_it() {
    let (cluster, products, buyer, item) = setup().await;
    let reserve = Request::Reserve { purchase: 1, lines: vec![CartLine { item, quantity: 2 }] };

    // The coordinator gave up on purchase 1 before its reserve arrived.
    assert_eq!(
        products.call(&Request::Release { purchase: 1 }, WAIT).await.unwrap(),
        Response::Done
    );
    assert_eq!(stored_state(&cluster, 1), agora_product_db::reservation::RELEASED);
    // The late reserve takes nothing, now or when repeated.
    for _ in 0..2 {
        refused(products.call(&reserve, WAIT).await, ErrorCode::Aborted);
        assert_eq!(buyer.get_item(item).await.unwrap().quantity, UNITS);
    }
    refused(products.call(&Request::Confirm { purchase: 1 }, WAIT).await, ErrorCode::Aborted);
    cluster.stop().await;
}

#[tokio::test]
async fn a_released_reservation_cannot_be_confirmed() {
    let (cluster, products, buyer, item) = setup().await;
    let reserve = Request::Reserve { purchase: 2, lines: vec![CartLine { item, quantity: 3 }] };
    let Response::Reserved(lines) = products.call(&reserve, WAIT).await.unwrap() else {
        panic!("not reserved")
    };
    assert_eq!(lines.iter().map(|l| (l.item, l.quantity)).collect::<Vec<_>>(), vec![(item, 3)]);
    assert_eq!(buyer.get_item(item).await.unwrap().quantity, UNITS - 3);

    // Released: the units are back, once, however often the release is repeated.
    for _ in 0..2 {
        let released = products.call(&Request::Release { purchase: 2 }, WAIT).await.unwrap();
        assert_eq!(released, Response::Done);
        assert_eq!(buyer.get_item(item).await.unwrap().quantity, UNITS);
    }
    // A confirm after that is refused and sells nothing; a repeated reserve takes nothing.
    refused(products.call(&Request::Confirm { purchase: 2 }, WAIT).await, ErrorCode::Aborted);
    refused(products.call(&reserve, WAIT).await, ErrorCode::Aborted);
    assert_eq!(buyer.get_item(item).await.unwrap().quantity, UNITS);
    cluster.stop().await;
}

#[tokio::test]
async fn a_confirmed_reservation_cannot_be_released() {
    let (cluster, products, buyer, item) = setup().await;
    let reserve = Request::Reserve { purchase: 3, lines: vec![CartLine { item, quantity: 4 }] };
    let first = products.call(&reserve, WAIT).await.unwrap();
    assert_eq!(
        products.call(&Request::Confirm { purchase: 3 }, WAIT).await.unwrap(),
        Response::Done
    );
    // Repeats of either step answer as the first time and take no more units.
    assert_eq!(products.call(&reserve, WAIT).await.unwrap(), first);
    assert_eq!(
        products.call(&Request::Confirm { purchase: 3 }, WAIT).await.unwrap(),
        Response::Done
    );
    refused(
        products.call(&Request::Release { purchase: 3 }, WAIT).await,
        ErrorCode::InvalidArgument,
    );
    assert_eq!(buyer.get_item(item).await.unwrap().quantity, UNITS - 4);
    assert_eq!(stored_state(&cluster, 3), agora_product_db::reservation::CONFIRMED);
    cluster.stop().await;
}
