//! Logins as a hostile client sends them: guesses at one account are slowed down, and
//! usernames cannot be doubled by changing their case. (The flood of logins has a test
//! binary of its own, login_flood.rs: the hashing queue is the process's.)
#![allow(clippy::unwrap_used)]

use agora_client::{BuyerClient, ErrorCode};
use agora_testkit::Cluster;

#[tokio::test]
async fn guessing_one_accounts_password_is_slowed_down() {
    let cluster = Cluster::start().await;
    let buyer = BuyerClient::new(vec![cluster.buyer_addr()]);
    buyer.create_account("bea", "password1", "").await.unwrap();
    let guesser = BuyerClient::new(vec![cluster.buyer_addr()]);
    for _ in 0..5 {
        let wrong = guesser.login("bea", "password2").await.unwrap_err();
        assert_eq!(wrong.code(), Some(ErrorCode::WrongCredentials));
    }
    // The sixth try within ten seconds is refused without being checked, even with the
    // right password, and whatever the letter case of the username.
    for username in ["bea", "BEA"] {
        let slowed = guesser.login(username, "password1").await.unwrap_err();
        assert_eq!(slowed.code(), Some(ErrorCode::Overloaded), "{slowed:?}");
        assert!(slowed.to_string().contains("too many wrong passwords"), "{slowed}");
    }
    // Other accounts are not affected.
    buyer.create_account("cy", "password1", "").await.unwrap();
    buyer.login("cy", "password1").await.unwrap();
    cluster.stop().await;
}

#[tokio::test]
async fn usernames_are_unique_whatever_their_case() {
    let cluster = Cluster::start().await;
    let buyer = BuyerClient::new(vec![cluster.buyer_addr()]);
    buyer.create_account("Bea", "password1", "").await.unwrap();
    let taken = buyer.create_account("bEA", "password2", "").await.unwrap_err();
    assert_eq!(taken.code(), Some(ErrorCode::UsernameTaken), "{taken:?}");
    // The account logs in by any case of its name.
    buyer.login("bea", "password1").await.unwrap();
    cluster.stop().await;
}

#[tokio::test]
async fn one_address_cannot_take_every_login() {
    let cluster = Cluster::start().await;
    // A frontend that limits this host's address too, as it does every other address.
    let upstream = agora_frontend::Config {
        throttle_loopback: true,
        ..cluster.upstream_for(agora_proto::Component::BuyerServer)
    };
    let frontend = agora_testkit::start_buyer(&upstream, "127.0.0.1:0").await;
    // Twice the burst at once (the allowance refills at 5 a second, far slower than
    // these arrive).
    let burst = agora_frontend::throttle::BURST as usize;
    let mut flood = tokio::task::JoinSet::new();
    for i in 0..2 * burst {
        let client = BuyerClient::new(vec![frontend.addr.to_string()]);
        flood.spawn(async move { client.login(&format!("nobody{i}"), "password1").await });
    }
    let mut refused = 0;
    while let Some(answer) = flood.join_next().await {
        match answer.unwrap() {
            Err(e) if e.code() == Some(ErrorCode::Overloaded) => {
                assert!(e.to_string().contains("from your address"), "{e}");
                refused += 1;
            }
            Err(e) => assert_eq!(e.code(), Some(ErrorCode::WrongCredentials), "{e:?}"),
            Ok(_) => panic!("a made-up account logged in"),
        }
    }
    assert!(refused >= burst / 2, "only {refused} of {} were refused", 2 * burst);
    // The cluster's own frontend, which exempts loopback, still lets this host in.
    let other = BuyerClient::new(vec![cluster.buyer_addr()]);
    other.create_account("bea", "password1", "").await.unwrap();
    frontend.stop().await;
    cluster.stop().await;
}
