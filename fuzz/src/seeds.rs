//! Seed inputs: a few valid encodings of each message type and of frames carrying them,
//! so that fuzzing starts from the shapes real traffic has. `examples/seed_corpus.rs`
//! writes them to `corpus/<target>/`.

use agora_domain::{
    Card, CartLine, Condition, Feedback, Item, ItemId, Money, NewItem, Page, Purchase,
    PurchaseLine, Role, SellerRating,
};
use agora_proto::messages::{customer, front, payments, product};
use agora_proto::{ApiError, ErrorCode, Frame, Kind, ServiceId};
use serde::Serialize;

/// The seeds of every target: (target name, inputs).
pub fn all() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    vec![
        ("frame", frames()),
        ("customer_request", encode_all(&customer_requests())),
        ("customer_response", encode_all(&results(customer_responses()))),
        ("product_request", encode_all(&product_requests())),
        ("product_response", encode_all(&results(product_responses()))),
        ("seller_request", encode_all(&seller_requests())),
        ("buyer_request", encode_all(&buyer_requests())),
        ("front_response", encode_all(&results(front_responses()))),
        ("payments_request", encode_all(&payments_requests())),
        ("payments_response", encode_all(&results(payments_responses()))),
        ("goodbye", encode_all(&errors())),
        ("money", texts(&["12.34", "0.5", "7", "999999999999.99", "1.234", "-1", " 3.10 "])),
        ("item_id", texts(&["3:17", " 0:1 ", "4294967295:18446744073709551615", "3:", "+3:17"])),
        (
            "card",
            texts(&["Bea B\n4111 1111 1111 1111\n12/29", "A\n4111-1111-1111\n01/00", "\n1\n13/99"]),
        ),
    ]
}

fn texts(inputs: &[&str]) -> Vec<Vec<u8>> {
    inputs.iter().map(|t| t.as_bytes().to_vec()).collect()
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("seeds encode")
}

fn encode_all<T: Serialize>(values: &[T]) -> Vec<Vec<u8>> {
    values.iter().map(encode).collect()
}

/// Each response as an answer, followed by each error as a refusal.
fn results<T>(responses: Vec<T>) -> Vec<Result<T, ApiError>> {
    responses.into_iter().map(Ok).chain(errors().into_iter().map(Err)).collect()
}

fn errors() -> Vec<ApiError> {
    vec![
        ApiError::new(ErrorCode::NotEnoughUnits, "only 3 units of 3:17 are available"),
        ApiError::new(ErrorCode::Overloaded, "buyer-server is at its limit of 4096 connections"),
        ApiError::new(ErrorCode::Unavailable, "closing a connection idle for 300s"),
        ApiError::new(ErrorCode::PriceChanged, "the cart's total is now 6.00, not the 3.00"),
    ]
}

/// The id a client gives a mutating request.
const OP: agora_proto::messages::OpId = [0x5a; 16];

fn session() -> String {
    "5f0c2a9e4b7d1e3a8c6f0b2d4e6a8c0e".into()
}

fn item_id() -> ItemId {
    ItemId { category: 3, number: 17 }
}

fn card() -> Card {
    Card { holder: "Bea B".into(), number: "4111 1111 1111 1111".into(), expiry: "12/29".into() }
}

fn new_item() -> NewItem {
    NewItem {
        name: "Blue pen".into(),
        category: 3,
        keywords: vec!["pen".into(), "blue".into()],
        condition: Condition::New,
        price: Money::from_cents(150),
        quantity: 10,
    }
}

fn item() -> Item {
    Item {
        id: item_id(),
        name: "Blue pen".into(),
        keywords: vec!["pen".into(), "blue".into()],
        condition: Condition::Used,
        price: Money::from_cents(150),
        quantity: 10,
        seller_id: 1,
        feedback: Feedback { up: 4, down: 1 },
    }
}

fn purchase() -> Purchase {
    Purchase {
        id: 9,
        at_unix_ms: 1_767_225_600_000,
        lines: vec![PurchaseLine {
            item: item_id(),
            seller_id: 1,
            name: "Blue pen".into(),
            quantity: 2,
            unit_price: Money::from_cents(150),
        }],
        total: Money::from_cents(300),
    }
}

fn page() -> Page {
    Page { offset: 20, limit: 10 }
}

fn customer_requests() -> Vec<customer::Request> {
    use customer::Request::*;
    vec![
        Ping,
        CreateAccount {
            op: OP,
            role: Role::Buyer,
            username: "bea".into(),
            password: "long enough".into(),
            name: "Bea".into(),
        },
        Login { role: Role::Seller, username: "ann".into(), password: "long enough".into() },
        Logout { op: OP, session: session(), role: Role::Buyer },
        Authenticate { session: session(), role: Role::Seller },
        GetSeller { seller_id: 1 },
        GetCart { session: session() },
        AddToCart { op: OP, session: session(), item: item_id(), quantity: 2, available: 10 },
        RemoveFromCart { op: OP, session: session(), item: item_id(), quantity: 1 },
        SaveCart { session: session() },
        ClearCart { session: session() },
        Purchases { session: session(), page: page() },
        Purchase { session: session(), key: "k-1".into(), card: card() },
        PurchaseAt {
            session: session(),
            key: "k-2".into(),
            card: card(),
            total: Money::from_cents(300),
        },
    ]
}

fn customer_responses() -> Vec<customer::Response> {
    use customer::Response::*;
    vec![
        Pong,
        Account { id: 7 },
        LoggedIn { session: session(), account: 7 },
        Authenticated { account: 7 },
        Seller { seller_id: 1, name: "Ann's Pens".into(), items_sold: 12 },
        Cart(vec![CartLine { item: item_id(), quantity: 2 }]),
        Purchases(vec![purchase()]),
        Purchased(purchase()),
        Done,
    ]
}

fn product_requests() -> Vec<product::Request> {
    use product::Request::*;
    vec![
        Ping,
        RegisterItem { op: OP, seller_id: 1, item: new_item() },
        ChangePrice { seller_id: 1, item: item_id(), price: Money::from_cents(99) },
        RemoveUnits { op: OP, seller_id: 1, item: item_id(), quantity: 1 },
        SellerItems { seller_id: 1, page: page() },
        Search { category: 3, keywords: vec!["pen".into()], page: page() },
        GetItem { item: item_id() },
        Vote { buyer_id: 7, item: item_id(), up: true },
        SellerFeedback { seller_id: 1 },
        Reserve { purchase: 9, lines: vec![CartLine { item: item_id(), quantity: 2 }] },
        Release { purchase: 9 },
        Confirm { purchase: 9 },
        Held { open: vec![9, 11], next: 12 },
        CountItems { categories: vec![0, 3, 7] },
        GetItems { items: vec![item_id(), item_id()] },
    ]
}

fn product_responses() -> Vec<product::Response> {
    use product::Response::*;
    vec![
        Pong,
        ItemId(item_id()),
        Quantity(8),
        Items(vec![item(), item()]),
        Item(item()),
        Feedback(agora_domain::Feedback { up: 4, down: 1 }),
        Reserved(purchase().lines),
        Released(2),
        Done,
        Counts(vec![0, 12, 1]),
    ]
}

fn seller_requests() -> Vec<front::SellerRequest> {
    use front::SellerRequest::*;
    vec![
        Ping { deep: true },
        CreateAccount {
            op: OP,
            username: "ann".into(),
            password: "long enough".into(),
            name: "Ann's Pens".into(),
        },
        Login { username: "ann".into(), password: "long enough".into() },
        Logout { op: OP, session: session() },
        GetRating { session: session() },
        RegisterItem { op: OP, session: session(), item: new_item() },
        ChangePrice { session: session(), item: item_id(), price: Money::from_cents(99) },
        RemoveUnits { op: OP, session: session(), item: item_id(), quantity: 1 },
        ListItems { session: session(), page: page() },
        Categories { session: session(), counts: true },
    ]
}

fn buyer_requests() -> Vec<front::BuyerRequest> {
    use front::BuyerRequest::*;
    vec![
        Ping { deep: false },
        CreateAccount {
            op: OP,
            username: "bea".into(),
            password: "long enough".into(),
            name: "Bea".into(),
        },
        Login { username: "bea".into(), password: "long enough".into() },
        Logout { op: OP, session: session() },
        Search { session: session(), category: 3, keywords: vec!["pen".into()], page: page() },
        GetItem { session: session(), item: item_id() },
        AddToCart { op: OP, session: session(), item: item_id(), quantity: 2 },
        RemoveFromCart { op: OP, session: session(), item: item_id(), quantity: 1 },
        SaveCart { session: session() },
        ClearCart { session: session() },
        DisplayCart { session: session() },
        ProvideFeedback { session: session(), item: item_id(), up: false },
        GetSellerRating { session: session(), seller_id: 1 },
        GetPurchases { session: session(), page: page() },
        MakePurchase { session: session(), key: "k-1".into(), card: card() },
        MakePurchaseAt {
            session: session(),
            key: "k-2".into(),
            card: card(),
            total: Money::from_cents(300),
        },
        Categories { session: session(), counts: false },
    ]
}

fn front_responses() -> Vec<front::Response> {
    use front::Response::*;
    vec![
        Pong,
        Account { id: 7 },
        LoggedIn { session: session(), id: 7 },
        Rating(SellerRating {
            seller_id: 1,
            name: "Ann's Pens".into(),
            feedback: agora_domain::Feedback { up: 4, down: 1 },
            items_sold: 12,
        }),
        ItemId(item_id()),
        Quantity(8),
        Items(vec![item()]),
        Item(item()),
        Cart(vec![CartLine { item: item_id(), quantity: 2 }]),
        Feedback(agora_domain::Feedback { up: 4, down: 1 }),
        Purchases(vec![purchase()]),
        Purchase(purchase()),
        Done,
        Categories(vec![agora_domain::CategoryCount {
            id: 3,
            name: "Office and stationery".into(),
            items: Some(12),
        }]),
    ]
}

fn payments_requests() -> Vec<payments::Request> {
    use payments::Request::*;
    vec![
        Ping,
        Charge { key: "purchase-9".into(), card: card(), amount: Money::from_cents(300), payer: 7 },
        Resolve { key: "purchase-9".into() },
        Lookup { key: "purchase-9".into() },
    ]
}

fn payments_responses() -> Vec<payments::Response> {
    use payments::{Outcome, Response::*};
    vec![
        Pong,
        Charge(Outcome::Approved {
            authorization: "A1B2C3".into(),
            amount: Money::from_cents(300),
            payer: 7,
        }),
        Charge(Outcome::Declined { reason: "card declined".into() }),
        Charge(Outcome::Cancelled),
        NoCharge,
    ]
}

/// Inputs of the `frame` target: a 4-byte big-endian limit, then bytes off the wire.
fn frames() -> Vec<Vec<u8>> {
    let frame = |kind, service: ServiceId, id, payload: Vec<u8>| {
        Frame { kind, service: service as u8, id, payload: payload.into() }.to_bytes().to_vec()
    };
    let ping = frame(Kind::Request, ServiceId::Buyer, 1, encode(&buyer_requests()[0]));
    let search = frame(Kind::Request, ServiceId::Buyer, 2, encode(&buyer_requests()[4]));
    let answer = frame(Kind::Response, ServiceId::Buyer, 2, encode(&results(front_responses())[3]));
    let goodbye = frame(Kind::Goodbye, ServiceId::CustomerDb, 0, encode(&errors()[1]));
    let reserve = frame(Kind::Request, ServiceId::ProductDb, 3, encode(&product_requests()[9]));
    let with_limit = |max: u32, parts: &[&[u8]]| {
        let mut input = max.to_be_bytes().to_vec();
        for part in parts {
            input.extend_from_slice(part);
        }
        input
    };
    let default = agora_proto::DEFAULT_MAX_FRAME;
    vec![
        with_limit(default, &[&ping]),
        with_limit(default, &[&ping, &search, &answer]),
        with_limit(default, &[&goodbye]),
        with_limit(default, &[&reserve, &ping[..ping.len() - 3]]),
        // A limit the search's payload is over.
        with_limit(8, &[&ping, &search]),
        // Not this protocol at all.
        with_limit(default, &[b"GET / HTTP/1.1\r\n\r\n"]),
    ]
}
