//! Sessions and carts across logins: expiry, several sessions of one user, saved carts,
//! and frontends restarted under a logged-in client.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use agora_client::{BuyerClient, ErrorCode, SellerClient};
use agora_customer_db::Clock;
use agora_domain::{Condition, ItemId, Money, NewItem, Page};
use agora_testkit::{Cluster, Options};

async fn listed_item(cluster: &Cluster) -> (SellerClient, ItemId) {
    let seller = SellerClient::new(vec![cluster.seller_addr()]);
    seller.create_account("ann", "password1", "").await.unwrap();
    seller.login("ann", "password1").await.unwrap();
    let item = NewItem {
        name: "Mug".into(),
        category: 1,
        keywords: vec!["mug".into()],
        condition: Condition::Used,
        price: Money::from_cents(500),
        quantity: 50,
    };
    let id = seller.register_item(item).await.unwrap();
    (seller, id)
}

fn buyer_client(cluster: &Cluster) -> BuyerClient {
    BuyerClient::new(vec![cluster.buyer_addr()])
}

#[tokio::test]
async fn a_session_expires_after_the_timeout_without_activity() {
    let clock = Clock::manual(1_700_000_000_000);
    let options = Options::manual_clock(&clock, Duration::from_secs(60));
    let cluster = Cluster::start_with(options).await;
    let (seller, _) = listed_item(&cluster).await;

    // Activity keeps it alive...
    for _ in 0..3 {
        clock.advance(Duration::from_secs(50));
        seller.list_items(Page::default()).await.unwrap();
    }
    // ...and inactivity ends it.
    clock.advance(Duration::from_secs(61));
    let error = seller.list_items(Page::default()).await.expect_err("expired");
    assert_eq!(error.code(), Some(ErrorCode::SessionExpired));
    assert!(error.needs_login());
    seller.login("ann", "password1").await.unwrap();
    seller.list_items(Page::default()).await.unwrap();
    cluster.stop().await;
}

#[tokio::test]
async fn an_expired_session_loses_its_unsaved_cart_but_not_the_saved_one() {
    let clock = Clock::manual(1_700_000_000_000);
    let options = Options::manual_clock(&clock, Duration::from_secs(60));
    let cluster = Cluster::start_with(options).await;
    let (_, mug) = listed_item(&cluster).await;
    let buyer = buyer_client(&cluster);
    buyer.create_account("bea", "password1", "").await.unwrap();
    buyer.login("bea", "password1").await.unwrap();
    buyer.add_to_cart(mug, 2).await.unwrap();
    buyer.save_cart().await.unwrap();
    buyer.add_to_cart(mug, 5).await.unwrap();
    clock.advance(Duration::from_secs(61));
    assert_eq!(buyer.display_cart().await.unwrap_err().code(), Some(ErrorCode::SessionExpired));
    buyer.login("bea", "password1").await.unwrap();
    let cart = buyer.display_cart().await.unwrap();
    assert_eq!(cart.iter().map(|l| (l.item, l.quantity)).collect::<Vec<_>>(), vec![(mug, 2)]);
    cluster.stop().await;
}

#[tokio::test]
async fn one_buyer_in_two_sessions_at_once() {
    let cluster = Cluster::start().await;
    let (_, mug) = listed_item(&cluster).await;
    let laptop = buyer_client(&cluster);
    laptop.create_account("bea", "password1", "").await.unwrap();
    laptop.login("bea", "password1").await.unwrap();
    let phone = buyer_client(&cluster);
    phone.login("bea", "password1").await.unwrap();
    assert_ne!(laptop.session(), phone.session());

    // Each session has its own cart, and both work at the same time.
    let (a, b) = tokio::join!(laptop.add_to_cart(mug, 1), phone.add_to_cart(mug, 4));
    assert_eq!(a.unwrap()[0].quantity, 1);
    assert_eq!(b.unwrap()[0].quantity, 4);

    // What one session saves, the next login starts from; logging one out leaves the other.
    phone.save_cart().await.unwrap();
    phone.logout().await.unwrap();
    assert_eq!(laptop.display_cart().await.unwrap()[0].quantity, 1);
    let tablet = buyer_client(&cluster);
    tablet.login("bea", "password1").await.unwrap();
    assert_eq!(tablet.display_cart().await.unwrap()[0].quantity, 4);
    cluster.stop().await;
}

#[tokio::test]
async fn a_logout_takes_effect_at_once_here_and_within_the_recheck_elsewhere() {
    let recheck = Duration::from_millis(500);
    let cluster =
        Cluster::start_with(Options { session_recheck: recheck, ..Options::default() }).await;
    let (_, mug) = listed_item(&cluster).await;
    let other = agora_testkit::start_buyer(
        &cluster.upstream_for(agora_proto::Component::BuyerServer),
        "127.0.0.1:0",
    )
    .await;
    let here = buyer_client(&cluster);
    here.create_account("bea", "password1", "").await.unwrap();
    here.login("bea", "password1").await.unwrap();
    let there = BuyerClient::new(vec![other.addr.to_string()]);
    there.set_session(here.session());
    // Both frontends have checked the session and trust it for a while. The other one's
    // trust runs from the moment its check began, which is after `checked`.
    here.get_item(mug).await.unwrap();
    let checked = std::time::Instant::now();
    there.get_item(mug).await.unwrap();

    let session = here.session();
    here.logout().await.unwrap();
    here.set_session(session);
    let refused = here.get_item(mug).await.unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::NotLoggedIn), "{refused}");

    // The other frontend learns it when its check runs out: `recheck` after the check,
    // with half a recheck of slack for slow machines, so trusting it twice as long fails.
    let refused = loop {
        match there.get_item(mug).await {
            Ok(_) => {
                assert!(
                    checked.elapsed() < recheck + recheck / 2,
                    "trusted {:?} after its check, the recheck being {recheck:?}",
                    checked.elapsed()
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => break e,
        }
    };
    assert_eq!(refused.code(), Some(ErrorCode::NotLoggedIn), "{refused}");
    other.stop().await;
    cluster.stop().await;
}

#[tokio::test]
async fn logout_drops_the_unsaved_cart() {
    let cluster = Cluster::start().await;
    let (_, mug) = listed_item(&cluster).await;
    let buyer = buyer_client(&cluster);
    buyer.create_account("bea", "password1", "").await.unwrap();
    buyer.login("bea", "password1").await.unwrap();
    buyer.add_to_cart(mug, 3).await.unwrap();
    buyer.logout().await.unwrap();
    buyer.login("bea", "password1").await.unwrap();
    assert!(buyer.display_cart().await.unwrap().is_empty());
    cluster.stop().await;
}

#[tokio::test]
async fn frontends_restarted_mid_session_keep_the_session() {
    let mut cluster = Cluster::start().await;
    let (seller, mug) = listed_item(&cluster).await;
    let buyer = buyer_client(&cluster);
    buyer.create_account("bea", "password1", "").await.unwrap();
    buyer.login("bea", "password1").await.unwrap();
    buyer.add_to_cart(mug, 2).await.unwrap();

    cluster.restart_buyer().await;
    cluster.restart_seller().await;

    // Same clients, same sessions: they reconnect by themselves.
    assert_eq!(buyer.display_cart().await.unwrap()[0].quantity, 2);
    assert_eq!(seller.list_items(Page::default()).await.unwrap()[0].id, mug);
    cluster.stop().await;
}

#[tokio::test]
async fn a_client_fails_over_to_the_next_frontend_address() {
    let cluster = Cluster::start().await;
    let (_, mug) = listed_item(&cluster).await;
    // The first address refuses connections (a listener we bound and closed).
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let buyer = BuyerClient::new(vec![dead, cluster.buyer_addr()]);
    buyer.create_account("bea", "password1", "").await.unwrap();
    buyer.login("bea", "password1").await.unwrap();
    assert_eq!(buyer.get_item(mug).await.unwrap().id, mug);
    cluster.stop().await;
}

#[tokio::test]
async fn sessions_survive_a_customer_database_restart() {
    // No trust in the frontends: every call below asks the restarted database itself.
    let options = Options { session_recheck: Duration::ZERO, ..Options::default() };
    let mut cluster = Cluster::start_with(options).await;
    let (seller, mug) = listed_item(&cluster).await;
    let buyer = buyer_client(&cluster);
    buyer.create_account("bea", "password1", "").await.unwrap();
    buyer.login("bea", "password1").await.unwrap();
    buyer.add_to_cart(mug, 2).await.unwrap();

    cluster.restart_customer_db().await;

    assert_eq!(seller.list_items(Page::default()).await.unwrap()[0].id, mug);
    let cart = buyer.display_cart().await.unwrap();
    assert_eq!(cart.iter().map(|l| (l.item, l.quantity)).collect::<Vec<_>>(), vec![(mug, 2)]);
    cluster.stop().await;
}

#[tokio::test]
async fn a_buyer_session_cannot_be_ended_through_the_seller_server() {
    let cluster = Cluster::start().await;
    let (_, item) = listed_item(&cluster).await;
    let buyer = buyer_client(&cluster);
    buyer.create_account("bea", "password1", "").await.unwrap();
    let token = buyer.login("bea", "password1").await.unwrap();

    let impostor = SellerClient::new(vec![cluster.seller_addr()]);
    impostor.set_session(Some(token));
    let refused = impostor.logout().await.unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::NotLoggedIn), "{refused:?}");
    assert!(refused.to_string().contains("buyer session"), "{refused}");
    // The buyer's session goes on, and it is the customer database that says so.
    assert_eq!(buyer.get_item(item).await.unwrap().id, item);
    buyer.add_to_cart(item, 1).await.unwrap();
    cluster.stop().await;
}

#[tokio::test]
async fn a_token_in_capitals_is_the_same_session() {
    let cluster = Cluster::start().await;
    let (_, item) = listed_item(&cluster).await;
    let buyer = buyer_client(&cluster);
    buyer.create_account("bea", "password1", "").await.unwrap();
    let token = buyer.login("bea", "password1").await.unwrap();
    // Trusted by the frontend for a second from here on.
    buyer.get_item(item).await.unwrap();

    let shouting = buyer_client(&cluster);
    shouting.set_session(Some(token.to_ascii_uppercase()));
    assert_eq!(shouting.get_item(item).await.unwrap().id, item);
    shouting.logout().await.unwrap();
    // Logged out through the upper-case copy: the lower-case one ends at once, not after
    // the frontend's second of trust.
    let after = buyer.get_item(item).await.unwrap_err();
    assert_eq!(after.code(), Some(ErrorCode::NotLoggedIn), "{after:?}");
    cluster.stop().await;
}

#[tokio::test]
async fn a_malformed_token_is_refused_before_it_reaches_anything() {
    // Databases that are not there: a malformed token must not even need them.
    let closed = |_| std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let data = tempfile::tempdir().unwrap();
    let trust = agora_testkit::trust(data.path(), agora_proto::Component::BuyerServer);
    let upstream = agora_testkit::frontend_config(closed(0), closed(1), trust);
    let frontend = agora_testkit::start_buyer(&upstream, "127.0.0.1:0").await;
    let client = BuyerClient::new(vec![frontend.addr.to_string()]);
    for token in ["x".repeat(1_000_000), "g".repeat(64), "ab".into()] {
        client.set_session(Some(token.clone()));
        let read = client.get_item(ItemId { category: 1, number: 1 }).await.unwrap_err();
        // (The client forgets its session after a logout, refused or not.)
        client.set_session(Some(token));
        for refused in [read, client.logout().await.unwrap_err()] {
            assert_eq!(refused.code(), Some(ErrorCode::NotLoggedIn), "{refused:?}");
            assert!(refused.to_string().contains("not a session token"), "{refused}");
        }
    }
    frontend.stop().await;
}

/// An account holds at most 32 sessions alive: each login copies the saved cart into a
/// session of its own, so logins without logouts cannot grow the rows without bound. The
/// 33rd is refused, saying why; a logout frees a place; other accounts go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_holds_a_bounded_number_of_sessions() {
    let cluster = Cluster::start().await;
    let (_, mug) = listed_item(&cluster).await;
    let first = buyer_client(&cluster);
    first.create_account("bea", "password1", "").await.unwrap();
    first.login("bea", "password1").await.unwrap();
    first.add_to_cart(mug, 2).await.unwrap();
    first.save_cart().await.unwrap();
    let mut sessions = vec![first];
    for _ in 1..agora_customer_db::DEFAULT_MAX_SESSIONS_PER_ACCOUNT {
        let buyer = buyer_client(&cluster);
        buyer.login("bea", "password1").await.unwrap();
        sessions.push(buyer);
    }
    let one_more = buyer_client(&cluster);
    let refused = one_more.login("bea", "password1").await.unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::Overloaded), "{refused}");
    assert!(refused.to_string().contains("sessions open"), "{refused}");
    // Every session is still there, each with its copy of the saved cart.
    assert_eq!(sessions[1].display_cart().await.unwrap().len(), 1);
    // Another account is not affected.
    let other = buyer_client(&cluster);
    other.create_account("cy", "password1", "").await.unwrap();
    other.login("cy", "password1").await.unwrap();
    // A logout frees a place.
    sessions.pop().unwrap().logout().await.unwrap();
    one_more.login("bea", "password1").await.unwrap();
    cluster.stop().await;
}
