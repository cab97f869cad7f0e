//! A flood of logins at a public door is refused where it lands, and everyone else goes on
//! being served. Alone in its test binary: the password hashing queue belongs to the
//! process, and this test fills it on purpose.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use agora_client::{BuyerClient, ErrorCode, SellerClient};
use agora_domain::{Condition, Money, NewItem};
use agora_proto::messages::front::BuyerRequest;
use agora_proto::{BuyerServer, CallError, Channel, DEFAULT_MAX_FRAME};
use agora_testkit::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_flood_does_not_hold_up_other_users() {
    let cluster = Cluster::start().await;
    let seller = SellerClient::new(vec![cluster.seller_addr()]);
    seller.create_account("ann", "password1", "").await.unwrap();
    seller.login("ann", "password1").await.unwrap();
    let item = seller
        .register_item(NewItem {
            name: "Pen".into(),
            category: 3,
            keywords: vec!["pen".into()],
            condition: Condition::New,
            price: Money::from_cents(150),
            quantity: 10,
        })
        .await
        .unwrap();
    let buyer = BuyerClient::new(vec![cluster.buyer_addr()]);
    buyer.create_account("bea", "password1", "").await.unwrap();
    buyer.login("bea", "password1").await.unwrap();

    // 1,200 wrong-password logins pipelined on four connections, for 1,200 usernames (so
    // that no per-account throttle spares the hashing): about 20 s of argon2 on two
    // threads if it were all queued.
    let mut flood = tokio::task::JoinSet::new();
    for connection in 0..4 {
        let raw = Channel::<BuyerServer>::connect(
            &cluster.buyer_addr(),
            Duration::from_secs(5),
            DEFAULT_MAX_FRAME,
        )
        .await
        .unwrap();
        for i in 0..300 {
            let raw = raw.clone();
            flood.spawn(async move {
                let login = BuyerRequest::Login {
                    username: format!("guess{connection}x{i}"),
                    password: "not it at all".into(),
                };
                raw.call(&login, Duration::from_secs(60)).await
            });
        }
    }
    // Meanwhile bea's session check and read, on the same frontend, are answered well
    // within the client's deadline, not after the flood.
    let during = tokio::time::timeout(Duration::from_secs(3), buyer.get_item(item)).await;
    assert_eq!(during.expect("bea waited behind the flood").unwrap().id, item);

    let mut overloaded = 0;
    while let Some(answer) = flood.join_next().await {
        match answer.unwrap() {
            Err(CallError::Remote(e)) if e.code == ErrorCode::Overloaded => overloaded += 1,
            Err(CallError::Remote(e)) => assert_eq!(e.code, ErrorCode::WrongCredentials, "{e}"),
            other => panic!("{other:?}"),
        }
    }
    assert!(overloaded > 0, "the flood was queued whole: password work has no bound");
    cluster.stop().await;
}
