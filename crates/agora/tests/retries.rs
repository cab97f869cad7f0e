//! Mutating requests carry an op id; a repeat of the same id (a client resending after a
//! lost answer) is applied at most once and gets the first answer.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use agora_client::{BuyerClient, SellerClient};
use agora_domain::{Condition, Money, NewItem, Page};
use agora_proto::messages::front::{BuyerRequest, Response, SellerRequest};
use agora_proto::{BuyerServer, Channel, DEFAULT_MAX_FRAME, SellerServer};
use agora_testkit::Cluster;

const WAIT: Duration = Duration::from_secs(5);

fn lamp() -> NewItem {
    NewItem {
        name: "Lamp".into(),
        category: 5,
        keywords: vec!["lamp".into()],
        condition: Condition::Used,
        price: Money::from_cents(2_000),
        quantity: 10,
    }
}

#[tokio::test]
async fn a_repeated_op_is_applied_once_and_answers_the_same() {
    let cluster = Cluster::start().await;
    let seller = SellerClient::new(vec![cluster.seller_addr()]);
    seller.create_account("ann", "password1", "").await.unwrap();
    let session = seller.login("ann", "password1").await.unwrap();
    let raw = Channel::<SellerServer>::connect(&cluster.seller_addr(), WAIT, DEFAULT_MAX_FRAME)
        .await
        .unwrap();

    let register =
        SellerRequest::RegisterItem { op: [1; 16], session: session.clone(), item: lamp() };
    let first = raw.call(&register, WAIT).await.unwrap();
    let again = raw.call(&register, WAIT).await.unwrap();
    assert_eq!(first, again);
    let Response::ItemId(id) = first else { panic!("{first:?}") };
    assert_eq!(seller.list_items(Page::default()).await.unwrap().len(), 1);

    let remove =
        SellerRequest::RemoveUnits { op: [2; 16], session: session.clone(), item: id, quantity: 3 };
    assert_eq!(raw.call(&remove, WAIT).await.unwrap(), Response::Quantity(7));
    assert_eq!(raw.call(&remove, WAIT).await.unwrap(), Response::Quantity(7));
    assert_eq!(seller.list_items(Page::default()).await.unwrap()[0].quantity, 7);

    // A buyer's cart: the same add twice adds once.
    let buyer = BuyerClient::new(vec![cluster.buyer_addr()]);
    buyer.create_account("bea", "password1", "").await.unwrap();
    let token = buyer.login("bea", "password1").await.unwrap();
    let raw = Channel::<BuyerServer>::connect(&cluster.buyer_addr(), WAIT, DEFAULT_MAX_FRAME)
        .await
        .unwrap();
    let add =
        BuyerRequest::AddToCart { op: [3; 16], session: token.clone(), item: id, quantity: 2 };
    let first = raw.call(&add, WAIT).await.unwrap();
    assert_eq!(raw.call(&add, WAIT).await.unwrap(), first);
    let Response::Cart(cart) = first else { panic!("{first:?}") };
    assert_eq!(cart.iter().map(|l| (l.item, l.quantity)).collect::<Vec<_>>(), vec![(id, 2)]);
    assert_eq!(buyer.display_cart().await.unwrap(), cart);
    let remove =
        BuyerRequest::RemoveFromCart { op: [4; 16], session: token.clone(), item: id, quantity: 1 };
    let first = raw.call(&remove, WAIT).await.unwrap();
    assert_eq!(raw.call(&remove, WAIT).await.unwrap(), first);
    let Response::Cart(cart) = first else { panic!("{first:?}") };
    assert_eq!(cart.iter().map(|l| (l.item, l.quantity)).collect::<Vec<_>>(), vec![(id, 1)]);
    assert_eq!(buyer.display_cart().await.unwrap(), cart);

    // CreateAccount: the repeat returns the same id instead of "username taken".
    let create = BuyerRequest::CreateAccount {
        op: [5; 16],
        username: "cid".into(),
        password: "password1".into(),
        name: String::new(),
    };
    assert_eq!(raw.call(&create, WAIT).await.unwrap(), raw.call(&create, WAIT).await.unwrap());

    // Logout: a resend of the same op after the first ended the session (a client riding
    // through a failover) answers Done again; a new Logout of the ended session does not.
    let logout = BuyerRequest::Logout { op: [6; 16], session: token.clone() };
    assert_eq!(raw.call(&logout, WAIT).await.unwrap(), Response::Done);
    assert_eq!(raw.call(&logout, WAIT).await.unwrap(), Response::Done);
    let another = BuyerRequest::Logout { op: [7; 16], session: token };
    match raw.call(&another, WAIT).await {
        Err(agora_proto::CallError::Remote(e)) => {
            assert_eq!(e.code, agora_proto::ErrorCode::NotLoggedIn, "{e}");
        }
        other => panic!("a second Logout answered {other:?}"),
    }
    cluster.stop().await;
}

#[tokio::test]
async fn one_account_never_gets_another_accounts_recorded_answer() {
    let cluster = Cluster::start().await;
    let raw = Channel::<SellerServer>::connect(&cluster.seller_addr(), WAIT, DEFAULT_MAX_FRAME)
        .await
        .unwrap();
    let mut sellers = Vec::new();
    for name in ["ann", "bob"] {
        let s = SellerClient::new(vec![cluster.seller_addr()]);
        let id = s.create_account(name, "password1", "").await.unwrap();
        let session = s.login(name, "password1").await.unwrap();
        sellers.push((s, id, session));
    }
    let as_ann =
        SellerRequest::RegisterItem { op: [9; 16], session: sellers[0].2.clone(), item: lamp() };
    let as_bob =
        SellerRequest::RegisterItem { op: [9; 16], session: sellers[1].2.clone(), item: lamp() };
    let (a, b) = (raw.call(&as_ann, WAIT).await.unwrap(), raw.call(&as_bob, WAIT).await.unwrap());
    assert_ne!(a, b, "the same op id from two sellers is two requests");

    // Each registration made an item of its own seller's.
    let buyer = BuyerClient::new(vec![cluster.buyer_addr()]);
    buyer.create_account("bea", "password1", "").await.unwrap();
    buyer.login("bea", "password1").await.unwrap();
    for (answer, (seller, seller_id, _)) in [a, b].into_iter().zip(&sellers) {
        let Response::ItemId(id) = answer else { panic!("{answer:?}") };
        let listed = seller.list_items(Page::default()).await.unwrap();
        assert_eq!(listed.iter().map(|i| i.id).collect::<Vec<_>>(), vec![id]);
        let item = buyer.get_item(id).await.unwrap();
        assert_eq!((item.seller_id, item.name.as_str()), (*seller_id, "Lamp"));
    }
    cluster.stop().await;
}
