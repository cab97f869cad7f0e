//! Every call of the seller's and the buyer's interfaces, through the client library over
//! TCP against real servers: the happy path and each class of error.
#![allow(clippy::unwrap_used)]

use agora_client::{BuyerClient, ClientError, ErrorCode, SellerClient};
use agora_domain::{Condition, ItemId, Money, NewItem, Page};
use agora_proto::Component;
use agora_testkit::Cluster;

fn pen(quantity: u32) -> NewItem {
    NewItem {
        name: "Blue pen".into(),
        category: 3,
        keywords: vec!["pen".into(), "blue".into()],
        condition: Condition::New,
        price: Money::from_cents(150),
        quantity,
    }
}

fn code<T: std::fmt::Debug>(result: Result<T, ClientError>) -> ErrorCode {
    let error = result.expect_err("the call should fail");
    error.code().unwrap_or_else(|| panic!("no error code in {error:?}"))
}

async fn seller(cluster: &Cluster, username: &str) -> SellerClient {
    let client = SellerClient::new(vec![cluster.seller_addr()]);
    client.create_account(username, "password1", "Ann's Pens").await.unwrap();
    client.login(username, "password1").await.unwrap();
    client
}

async fn buyer(cluster: &Cluster, username: &str) -> BuyerClient {
    let client = BuyerClient::new(vec![cluster.buyer_addr()]);
    client.create_account(username, "password1", "").await.unwrap();
    client.login(username, "password1").await.unwrap();
    client
}

#[tokio::test]
async fn seller_interface() {
    let cluster = Cluster::start().await;
    let seller = seller(&cluster, "ann").await;
    seller.ping(true).await.unwrap();

    let id = seller.register_item(pen(10)).await.unwrap();
    assert_eq!(id.category, 3);
    let items = seller.list_items(Page::default()).await.unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].id, id);
    assert_eq!(items[0].keywords, vec!["pen".to_string(), "blue".to_string()]);
    assert_eq!(items[0].quantity, 10);

    seller.change_price(id, Money::from_cents(199)).await.unwrap();
    assert_eq!(seller.remove_units(id, 4).await.unwrap(), 6);
    let item = &seller.list_items(Page::default()).await.unwrap()[0];
    assert_eq!((item.price, item.quantity), (Money::from_cents(199), 6));

    // Removing every unit takes the item off sale.
    assert_eq!(seller.remove_units(id, 6).await.unwrap(), 0);
    assert!(seller.list_items(Page::default()).await.unwrap().is_empty());

    let rating = seller.get_rating().await.unwrap();
    assert_eq!((rating.name.as_str(), rating.feedback.up, rating.items_sold), ("Ann's Pens", 0, 0));

    seller.logout().await.unwrap();
    assert_eq!(code(seller.get_rating().await), ErrorCode::NotLoggedIn);
    cluster.stop().await;
}

#[tokio::test]
async fn seller_errors() {
    let cluster = Cluster::start().await;
    let ann = seller(&cluster, "ann").await;
    let bob = seller(&cluster, "bob").await;
    let id = ann.register_item(pen(5)).await.unwrap();

    // Accounts.
    let fresh = SellerClient::new(vec![cluster.seller_addr()]);
    assert_eq!(code(fresh.create_account("ann", "password1", "").await), ErrorCode::UsernameTaken);
    assert_eq!(
        code(fresh.create_account("a b", "password1", "").await),
        ErrorCode::InvalidArgument
    );
    assert_eq!(code(fresh.create_account("carl", "short", "").await), ErrorCode::InvalidArgument);
    assert_eq!(code(fresh.login("ann", "wrong-password").await), ErrorCode::WrongCredentials);
    assert_eq!(code(fresh.login("nobody", "password1").await), ErrorCode::WrongCredentials);
    assert_eq!(code(fresh.list_items(Page::default()).await), ErrorCode::NotLoggedIn);
    fresh.set_session(Some("0".repeat(64)));
    assert_eq!(code(fresh.list_items(Page::default()).await), ErrorCode::NotLoggedIn);

    // Items: limits name the field.
    for (bad, field) in [
        (NewItem { name: "x".repeat(33), ..pen(1) }, "name"),
        (NewItem { keywords: vec!["toolongkw".into()], ..pen(1) }, "keywords"),
        (NewItem { keywords: (0..6).map(|i| format!("k{i}")).collect(), ..pen(1) }, "keywords"),
        (NewItem { price: Money::from_cents(0), ..pen(1) }, "price"),
        (NewItem { quantity: 0, ..pen(1) }, "quantity"),
    ] {
        let error = ann.register_item(bad).await.expect_err("refused");
        assert_eq!(error.code(), Some(ErrorCode::InvalidArgument));
        assert!(error.to_string().contains(field), "{error} should name {field}");
    }

    // Ownership and existence.
    assert_eq!(code(bob.change_price(id, Money::from_cents(1)).await), ErrorCode::NotYourItem);
    assert_eq!(code(bob.remove_units(id, 1).await), ErrorCode::NotYourItem);
    let missing = ItemId { category: 3, number: 999_999 };
    assert_eq!(code(ann.change_price(missing, Money::from_cents(1)).await), ErrorCode::UnknownItem);
    let wrong_category = ItemId { category: 4, number: id.number };
    assert_eq!(code(ann.remove_units(wrong_category, 1).await), ErrorCode::UnknownItem);
    assert_eq!(code(ann.remove_units(id, 6).await), ErrorCode::NotEnoughUnits);
    assert_eq!(
        code(ann.list_items(Page { offset: 0, limit: 1000 }).await),
        ErrorCode::InvalidArgument
    );

    // Nothing above changed the item.
    let item = &ann.list_items(Page::default()).await.unwrap()[0];
    assert_eq!((item.price, item.quantity), (Money::from_cents(150), 5));

    // A buyer session is not a seller session.
    let buyer = buyer(&cluster, "ann").await;
    ann.set_session(buyer.session());
    assert_eq!(code(ann.list_items(Page::default()).await), ErrorCode::NotLoggedIn);
    cluster.stop().await;
}

#[tokio::test]
async fn buyer_interface() {
    let cluster = Cluster::start().await;
    let seller = seller(&cluster, "ann").await;
    let blue = seller.register_item(pen(10)).await.unwrap();
    let red = seller
        .register_item(NewItem {
            name: "Red pen".into(),
            keywords: vec!["pen".into(), "red".into()],
            ..pen(3)
        })
        .await
        .unwrap();
    let _other_category = seller.register_item(NewItem { category: 4, ..pen(1) }).await.unwrap();
    let buyer = buyer(&cluster, "bea").await;

    // Search: more matching keywords first, then newest.
    let found = buyer.search(3, vec!["pen".into(), "blue".into()], Page::default()).await.unwrap();
    assert_eq!(found.iter().map(|i| i.id).collect::<Vec<_>>(), vec![blue, red]);
    let second = Page { offset: 1, limit: 1 };
    let found = buyer.search(3, vec!["blue".into(), "pen".into()], second).await.unwrap();
    assert_eq!(found.iter().map(|i| i.id).collect::<Vec<_>>(), vec![red]);
    let found = buyer.search(3, vec!["PEN".into()], Page::default()).await.unwrap();
    assert_eq!(found.iter().map(|i| i.id).collect::<Vec<_>>(), vec![red, blue]);
    let found = buyer.search(3, vec![], Page { offset: 1, limit: 1 }).await.unwrap();
    assert_eq!(found.iter().map(|i| i.id).collect::<Vec<_>>(), vec![blue]);
    assert!(buyer.search(3, vec!["nothing".into()], Page::default()).await.unwrap().is_empty());
    assert_eq!(buyer.get_item(red).await.unwrap().name, "Red pen");

    // Cart.
    let cart = buyer.add_to_cart(blue, 2).await.unwrap();
    assert_eq!((cart[0].item, cart[0].quantity), (blue, 2));
    buyer.add_to_cart(red, 3).await.unwrap();
    let cart = buyer.add_to_cart(blue, 1).await.unwrap();
    assert_eq!(
        cart.iter().map(|l| (l.item, l.quantity)).collect::<Vec<_>>(),
        vec![(blue, 3), (red, 3)]
    );
    let cart = buyer.remove_from_cart(blue, 3).await.unwrap();
    assert_eq!(cart.iter().map(|l| (l.item, l.quantity)).collect::<Vec<_>>(), vec![(red, 3)]);
    buyer.save_cart().await.unwrap();
    buyer.clear_cart().await.unwrap();
    assert!(buyer.display_cart().await.unwrap().is_empty());

    // Feedback: one vote per buyer per item, a new vote replaces the old.
    let f = buyer.provide_feedback(blue, true).await.unwrap();
    assert_eq!((f.up, f.down), (1, 0));
    let f = buyer.provide_feedback(blue, true).await.unwrap();
    assert_eq!((f.up, f.down), (1, 0));
    let f = buyer.provide_feedback(blue, false).await.unwrap();
    assert_eq!((f.up, f.down), (0, 1));
    let other = self::buyer(&cluster, "cid").await;
    other.provide_feedback(red, true).await.unwrap();
    let rating = buyer.get_seller_rating(blue_seller(&seller).await).await.unwrap();
    assert_eq!((rating.feedback.up, rating.feedback.down), (1, 1));
    assert_eq!(seller.get_rating().await.unwrap().feedback, rating.feedback);

    assert!(buyer.get_purchases(Page::default()).await.unwrap().is_empty());
    buyer.ping(true).await.unwrap();
    buyer.logout().await.unwrap();
    assert_eq!(code(buyer.display_cart().await), ErrorCode::NotLoggedIn);
    cluster.stop().await;
}

async fn blue_seller(seller: &SellerClient) -> u64 {
    seller.get_rating().await.unwrap().seller_id
}

#[tokio::test]
async fn buyer_errors() {
    let cluster = Cluster::start().await;
    let seller = seller(&cluster, "ann").await;
    let id = seller.register_item(pen(2)).await.unwrap();
    let buyer = buyer(&cluster, "bea").await;
    let missing = ItemId { category: 3, number: 424_242 };

    assert_eq!(code(buyer.get_item(missing).await), ErrorCode::UnknownItem);
    assert_eq!(code(buyer.add_to_cart(missing, 1).await), ErrorCode::UnknownItem);
    assert_eq!(code(buyer.add_to_cart(id, 3).await), ErrorCode::NotEnoughUnits);
    buyer.add_to_cart(id, 2).await.unwrap();
    let error = buyer.add_to_cart(id, 1).await.expect_err("only two");
    assert_eq!(error.code(), Some(ErrorCode::NotEnoughUnits));
    assert!(error.to_string().contains("already holds 2"), "{error}");
    assert_eq!(code(buyer.add_to_cart(id, 0).await), ErrorCode::InvalidArgument);
    assert_eq!(code(buyer.remove_from_cart(missing, 1).await), ErrorCode::UnknownItem);
    assert_eq!(code(buyer.remove_from_cart(id, 5).await), ErrorCode::InvalidArgument);
    assert_eq!(buyer.display_cart().await.unwrap()[0].quantity, 2, "failed calls changed nothing");

    let long_keywords: Vec<String> = (0..6).map(|i| format!("k{i}")).collect();
    assert_eq!(
        code(buyer.search(3, long_keywords, Page::default()).await),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        code(buyer.search(3, vec!["waytoolong".into()], Page::default()).await),
        ErrorCode::InvalidArgument
    );
    assert_eq!(code(buyer.provide_feedback(missing, true).await), ErrorCode::UnknownItem);
    assert_eq!(code(buyer.get_seller_rating(987_654).await), ErrorCode::UnknownUser);

    let stranger = BuyerClient::new(vec![cluster.buyer_addr()]);
    assert_eq!(code(stranger.search(3, vec![], Page::default()).await), ErrorCode::NotLoggedIn);
    assert_eq!(
        code(stranger.create_account("bea", "password1", "").await),
        ErrorCode::UsernameTaken
    );
    // Seller and buyer usernames are separate namespaces.
    stranger.create_account("ann", "password1", "").await.unwrap();
    cluster.stop().await;
}

#[tokio::test]
async fn a_database_that_is_down_answers_unavailable_without_waiting_for_a_deadline() {
    let cluster = Cluster::start().await;
    let buyer = buyer(&cluster, "bea").await;
    // The frontend's deadline on a database call is 5 s; this client gives up after 3 s. So
    // a frontend that waited for the dead database would show up here as a client timeout
    // (a transport error), not as the frontend's "unavailable" answer.
    // It does not ride through outages, so it sees the frontend's first answer.
    let impatient = BuyerClient::with_config(agora_client::PoolConfig {
        ride_through: false,
        ..agora_client::pool_config(
            vec![cluster.buyer_addr()],
            None,
            Some(std::time::Duration::from_secs(3)),
        )
    });
    impatient.set_session(buyer.session());
    cluster.product_db.stop().await;
    let error = impatient.search(3, vec![], Page::default()).await.expect_err("down");
    assert_eq!(error.code(), Some(ErrorCode::Unavailable), "{error:?}");
    assert!(error.to_string().contains("product-db"), "{error}");
    // The customer side still works.
    impatient.display_cart().await.unwrap();
}

#[tokio::test]
async fn frontends_fail_over_to_the_next_database_address() {
    let cluster = Cluster::start().await;
    // Each database list starts with an address that refuses connections (a listener
    // bound and closed), then the live one.
    let dead = || {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let config = |component| agora_frontend::Config {
        customer_db: vec![dead(), cluster.customer_db.addr.to_string()],
        product_db: vec![dead(), cluster.product_db.addr.to_string()],
        ..cluster.upstream_for(component)
    };
    let seller_server =
        agora_testkit::start_seller(&config(Component::SellerServer), "127.0.0.1:0").await;
    let buyer_server =
        agora_testkit::start_buyer(&config(Component::BuyerServer), "127.0.0.1:0").await;

    let seller = SellerClient::new(vec![seller_server.addr.to_string()]);
    seller.create_account("ann", "password1", "").await.unwrap();
    seller.login("ann", "password1").await.unwrap();
    let id = seller.register_item(pen(5)).await.unwrap();
    let buyer = BuyerClient::new(vec![buyer_server.addr.to_string()]);
    buyer.create_account("bea", "password1", "").await.unwrap();
    buyer.login("bea", "password1").await.unwrap();
    assert_eq!(buyer.get_item(id).await.unwrap().quantity, 5);
    assert_eq!(buyer.add_to_cart(id, 2).await.unwrap()[0].quantity, 2);
    seller_server.stop().await;
    buyer_server.stop().await;
    cluster.stop().await;
}

/// The two reads the frontends make for the pages and the HTTP API's cart and categories:
/// counts of many categories and items in one call, each bounded, each refusal named.
#[tokio::test]
async fn category_counts_and_item_batches_are_bounded() {
    use agora_proto::messages::product::{Request, Response};
    use agora_proto::{Channel, DEFAULT_MAX_FRAME, ProductDb};
    let cluster = Cluster::start().await;
    let seller = seller(&cluster, "ann").await;
    let first = seller.register_item(pen(3)).await.unwrap();
    let second = seller.register_item(NewItem { category: 7, ..pen(1) }).await.unwrap();
    let wait = std::time::Duration::from_secs(10);
    let connector = cluster.trust(Component::BuyerServer).connector();
    let addr = cluster.product_db.addr.to_string();
    let products = Channel::<ProductDb>::connect_with(&addr, wait, DEFAULT_MAX_FRAME, &connector)
        .await
        .unwrap();

    let counts = products.call(&Request::CountItems { categories: vec![7, 3, 4] }, wait).await;
    assert_eq!(counts.unwrap(), Response::Counts(vec![1, 1, 0]));
    let both = products.call(&Request::GetItems { items: vec![second, first] }, wait).await;
    let Response::Items(items) = both.unwrap() else { panic!("not items") };
    assert_eq!(items.iter().map(|i| i.id).collect::<Vec<_>>(), [second, first]);

    let refused = |answer: Result<Response, agora_proto::CallError>| match answer {
        Err(agora_proto::CallError::Remote(e)) => (e.code, e.message),
        other => panic!("not refused: {other:?}"),
    };
    let many = Request::CountItems { categories: (0..101).collect() };
    let (code, message) = refused(products.call(&many, wait).await);
    assert_eq!(code, agora_proto::ErrorCode::InvalidArgument);
    assert!(message.contains("at most 100"), "{message}");
    let many = Request::GetItems { items: vec![first; 101] };
    assert_eq!(
        refused(products.call(&many, wait).await).0,
        agora_proto::ErrorCode::InvalidArgument
    );
    let unknown = ItemId { category: 3, number: 999 };
    let missing = Request::GetItems { items: vec![first, unknown] };
    assert_eq!(refused(products.call(&missing, wait).await).0, agora_proto::ErrorCode::UnknownItem);
    cluster.stop().await;
}
