//! The client against a small fake seller server on 127.0.0.1:0: sessions are kept, sent
//! and forgotten as they should be, and every kind of failure comes back as its own error.

use std::sync::Arc;
use std::time::Duration;

use agora_client::{ClientError, ErrorCode, SellerClient};
use agora_domain::{Feedback, ItemId, Money, SellerRating};
use agora_proto::messages::front::{Response, SellerRequest};
use agora_proto::{ApiError, Handler, SellerServer, ServerConfig};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Knows one account (alice / password1) with session `s1`; session `old` has expired.
struct Fake;

impl Handler<SellerServer> for Fake {
    async fn handle(&self, request: SellerRequest) -> Result<Response, ApiError> {
        let check = |session: &str| match session {
            "s1" => Ok(()),
            "old" => Err(ApiError::new(ErrorCode::SessionExpired, "session expired")),
            _ => Err(ApiError::not_logged_in()),
        };
        match request {
            SellerRequest::Ping { .. } => Ok(Response::Pong),
            SellerRequest::Login { username, password } => {
                if username == "alice" && password == "password1" {
                    Ok(Response::LoggedIn { session: "s1".into(), id: 7 })
                } else {
                    Err(ApiError::new(ErrorCode::WrongCredentials, "wrong username or password"))
                }
            }
            SellerRequest::Logout { session, .. } => check(&session).map(|()| Response::Done),
            SellerRequest::GetRating { session } => check(&session).map(|()| {
                Response::Rating(SellerRating {
                    seller_id: 7,
                    name: "Alice".into(),
                    feedback: Feedback { up: 2, down: 1 },
                    items_sold: 5,
                })
            }),
            // A server that answers the wrong thing.
            SellerRequest::ChangePrice { .. } => Ok(Response::Pong),
            other => Err(ApiError::internal(format!("fake does not do {other:?}"))),
        }
    }
}

async fn start() -> (String, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let shutdown = CancellationToken::new();
    tokio::spawn(agora_proto::serve::<SellerServer, _>(
        listener,
        Arc::new(Fake),
        ServerConfig::default(),
        shutdown.clone(),
    ));
    (addr, shutdown)
}

#[tokio::test]
async fn calls_without_a_session_fail_before_the_network() {
    // Nothing listens on this address, so a round trip would be a transport error.
    let client = SellerClient::new(vec!["127.0.0.1:9".into()]);
    let err = client.get_rating().await.expect_err("no session");
    assert!(matches!(err, ClientError::NotLoggedIn), "{err:?}");
    assert_eq!(err.code(), Some(ErrorCode::NotLoggedIn));
    assert!(matches!(client.logout().await, Err(ClientError::NotLoggedIn)));
}

#[tokio::test]
async fn login_keeps_the_session_and_logout_drops_it() {
    let (addr, shutdown) = start().await;
    let client = SellerClient::new(vec![addr]);
    client.ping(false).await.expect("ping");

    let err = client.login("alice", "nope").await.expect_err("wrong password");
    assert_eq!(err.code(), Some(ErrorCode::WrongCredentials));
    assert!(!err.is_transport());

    assert_eq!(client.login("alice", "password1").await.expect("login"), "s1");
    assert_eq!(client.session().as_deref(), Some("s1"));
    let clone = client.clone();
    assert_eq!(clone.get_rating().await.expect("rating").items_sold, 5, "clones share it");

    client.logout().await.expect("logout");
    assert_eq!(client.session(), None);
    assert!(matches!(clone.get_rating().await, Err(ClientError::NotLoggedIn)));
    shutdown.cancel();
}

#[tokio::test]
async fn an_expired_session_is_forgotten() {
    let (addr, shutdown) = start().await;
    let client = SellerClient::new(vec![addr]);
    client.set_session(Some("old".into()));
    let err = client.get_rating().await.expect_err("expired");
    assert_eq!(err.code(), Some(ErrorCode::SessionExpired));
    assert!(err.needs_login());
    assert_eq!(client.session(), None);
    shutdown.cancel();
}

#[tokio::test]
async fn an_unexpected_answer_is_an_error() {
    let (addr, shutdown) = start().await;
    let client = SellerClient::new(vec![addr]);
    client.set_session(Some("s1".into()));
    let item = ItemId { category: 3, number: 17 };
    let err = client.change_price(item, Money::from_cents(150)).await.expect_err("wrong answer");
    assert!(matches!(&err, ClientError::Unexpected { call: "change_price", got } if got == "Pong"));
    assert_eq!(client.session().as_deref(), Some("s1"), "not a reason to drop the session");
    shutdown.cancel();
}

#[tokio::test]
async fn an_unreachable_server_is_a_transport_error_naming_the_address() {
    // Bind and drop a listener to find a port where nothing listens.
    let addr = {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        listener.local_addr().expect("addr").to_string()
    };
    let client =
        SellerClient::with_timeouts(vec![addr.clone()], Some(Duration::from_secs(1)), None);
    let err = client.ping(false).await.expect_err("nothing listens");
    assert!(err.is_transport(), "{err:?}");
    assert_eq!(err.code(), None);
    assert!(err.to_string().contains(&addr), "{err}");
}

#[tokio::test]
async fn the_next_address_is_tried_when_the_first_is_down() {
    let (addr, shutdown) = start().await;
    let dead = {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        listener.local_addr().expect("addr").to_string()
    };
    let client = SellerClient::new(vec![dead, addr]);
    client.ping(true).await.expect("second address answers");
    shutdown.cancel();
}
