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
