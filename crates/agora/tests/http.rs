//! The HTTP/JSON API of both frontends, over real sockets with a real HTTP client
//! (reqwest): every route's happy path, each class of error with its status and the one
//! error shape, a database down, the OpenAPI document, and the HTTP and TCP interfaces
//! sharing one set of semantics.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use agora_customer_db::Clock;
use agora_testkit::{Cluster, Options, Running};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// One HTTP API: a base URL and, once logged in, a session.
struct Api {
    base: String,
    http: reqwest::Client,
    session: Option<String>,
}

/// An answer: its status, headers and JSON body (`Null` when empty).
struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Answer {
    /// Asserts the status and returns the body.
    #[track_caller]
    fn expect(self, status: u16) -> Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        self.body
    }

    /// Asserts an error with this status and code, in the one error shape; returns its
    /// message.
    #[track_caller]
    fn error(self, status: u16, code: &str) -> String {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        let error = self.body["error"].as_object().unwrap_or_else(|| panic!("{}", self.body));
        assert_eq!(error.len(), 2, "{}", self.body);
        assert_eq!(error["code"], code, "{}", self.body);
        let content_type = self.headers["content-type"].to_str().unwrap();
        assert_eq!(content_type, "application/json");
        error["message"].as_str().unwrap().to_owned()
    }
}

impl Api {
    fn new(addr: SocketAddr) -> Api {
        Api { base: format!("http://{addr}"), http: reqwest::Client::new(), session: None }
    }

    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(session) = &self.session {
            request = request.bearer_auth(session);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let (status, headers) = (response.status(), response.headers().clone());
        let bytes = response.bytes().await.unwrap();
        let body =
            if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
        Answer { status, headers, body }
    }

    async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Answer {
        self.send(Method::POST, path, Some(body)).await
    }

    /// Creates an account of `role` and logs in; returns the account id.
    async fn sign_up(&mut self, role: &str, username: &str) -> u64 {
        let credentials = json!({"username": username, "password": "password1"});
        let id = self.post(&format!("/v1/{role}s"), credentials.clone()).await.expect(201)["id"]
            .as_u64()
            .unwrap();
        let login = self.post(&format!("/v1/{role}s/sessions"), credentials).await.expect(201);
        assert_eq!(login[format!("{role}_id")], id);
        self.session = Some(login["session"].as_str().unwrap().to_owned());
        id
    }
}

/// The cart was shown at 3.00; the seller then raises the price. A purchase at the agreed
/// total is refused with the new one and buys and charges nothing; the same purchase
/// without a total (clients of earlier releases) buys at the price of the moment.
#[tokio::test]
async fn a_purchase_is_bought_only_at_the_total_the_buyer_agreed_to() {
    let http = Http::start().await;
    let mut seller = http.seller();
    seller.sign_up("seller", "ann").await;
    let id = seller.post("/v1/items", pen(5)).await.expect(201)["id"].as_str().unwrap().to_owned();
    let mut buyer = http.buyer();
    buyer.sign_up("buyer", "bea").await;
    buyer.post("/v1/cart/items", json!({"item": id, "quantity": 2})).await.expect(200);
    let card = json!({"holder": "Bea", "number": "4111 1111 1111 1111", "expiry": "09/99"});

    seller
        .send(Method::PATCH, &format!("/v1/items/{id}"), Some(json!({"price": "1000000"})))
        .await
        .expect(204);
    let agreed = json!({"card": card, "total": "3.00"});
    let message = buyer.post("/v1/purchases", agreed).await.error(409, "price_changed");
    assert!(message.contains("2000000.00") && message.contains("3.00"), "{message}");
    assert_eq!(buyer.get(&format!("/v1/items/{id}")).await.expect(200)["quantity"], 5);
    assert_eq!(buyer.get("/v1/cart").await.expect(200)["lines"][0]["quantity"], 2);
    let history = buyer.get("/v1/purchases").await.expect(200);
    assert_eq!(history["purchases"], json!([]));

    // A total that is not an amount names the field; nothing is asked of anyone.
    let bad = json!({"card": card, "total": "three"});
    let message = buyer.post("/v1/purchases", bad).await.error(400, "invalid_argument");
    assert!(message.contains("total"), "{message}");

    // At the new total it is bought; without a total, at whatever it costs.
    let now = json!({"card": card, "total": "2000000.00"});
    let bought = buyer.post("/v1/purchases", now).await.expect(201);
    assert_eq!(bought["total"], "2000000.00");
    buyer.post("/v1/cart/items", json!({"item": id, "quantity": 1})).await.expect(200);
    let bought = buyer.post("/v1/purchases", json!({"card": card})).await.expect(201);
    assert_eq!(bought["total"], "1000000.00");
    http.stop().await;
}

fn pen(quantity: u32) -> Value {
    json!({
        "name": "Blue pen",
        "category": 3,
        "keywords": ["pen", "Blue"],
        "condition": "new",
        "price": "1.50",
        "quantity": quantity,
    })
}

/// A cluster plus a seller server and a buyer server that also speak HTTP.
struct Http {
    cluster: Cluster,
    seller: Running,
    buyer: Running,
    seller_http: SocketAddr,
    buyer_http: SocketAddr,
}

impl Http {
    async fn start() -> Http {
        Http::start_with(Options::default()).await
    }

    async fn start_with(options: Options) -> Http {
        let cluster = Cluster::start_with(options).await;
        let (seller, seller_http) = cluster.start_seller_with_http().await;
        let (buyer, buyer_http) = cluster.start_buyer_with_http().await;
        Http { cluster, seller, buyer, seller_http, buyer_http }
    }

    fn seller(&self) -> Api {
        Api::new(self.seller_http)
    }

    fn buyer(&self) -> Api {
        Api::new(self.buyer_http)
    }

    async fn stop(self) {
        self.seller.stop().await;
        self.buyer.stop().await;
        self.cluster.stop().await;
    }
}

#[tokio::test]
async fn seller_routes() {
    let http = Http::start().await;
    let mut seller = http.seller();
    let seller_id = seller.sign_up("seller", "ann").await;

    let id = seller.post("/v1/items", pen(10)).await.expect(201)["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("3:"), "{id}");
    for _ in 0..2 {
        seller.post("/v1/items", pen(1)).await.expect(201);
    }

    // Pages: oldest first, `next_offset` until a short page.
    let page = seller.get("/v1/sellers/me/items?limit=2").await.expect(200);
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    assert_eq!(page["next_offset"], 2);
    let first = &page["items"][0];
    assert_eq!(first["id"], id.as_str());
    assert_eq!(first["keywords"], json!(["pen", "blue"]));
    assert_eq!(first["price"], "1.50");
    assert_eq!(first["condition"], "new");
    assert_eq!(first["seller_id"], seller_id);
    assert_eq!(first["feedback"], json!({"up": 0, "down": 0}));
    let last = seller.get("/v1/sellers/me/items?limit=2&offset=2").await.expect(200);
    assert_eq!(last["items"].as_array().unwrap().len(), 1);
    assert_eq!(last["next_offset"], Value::Null);

    let change = json!({"price": "2.5"});
    let answer = seller.send(Method::PATCH, &format!("/v1/items/{id}"), Some(change)).await;
    assert_eq!(answer.expect(204), Value::Null);
    // The id may also come percent-encoded.
    let path = format!("/v1/items/{}/removals", id.replace(':', "%3A"));
    let left = seller.post(&path, json!({"quantity": 4})).await.expect(200);
    assert_eq!(left, json!({"id": id, "quantity": 6}));
    let items = seller.get("/v1/sellers/me/items").await.expect(200);
    assert_eq!(items["items"][0]["price"], "2.50");
    assert_eq!(items["items"][0]["quantity"], 6);

    let rating = seller.get("/v1/sellers/me/rating").await.expect(200);
    assert_eq!(
        rating,
        json!({"seller_id": seller_id, "name": "ann", "feedback": {"up": 0, "down": 0}, "items_sold": 0})
    );

    assert_eq!(
        seller.send(Method::DELETE, "/v1/sessions/current", None).await.expect(204),
        Value::Null
    );
    seller.get("/v1/sellers/me/rating").await.error(401, "not_logged_in");
    http.stop().await;
}

#[tokio::test]
async fn buyer_routes() {
    let http = Http::start().await;
    let mut seller = http.seller();
    let seller_id = seller.sign_up("seller", "ann").await;
    let pen_id = seller.post("/v1/items", pen(5)).await.expect(201)["id"].clone();
    let mut lamp = pen(2);
    lamp["name"] = json!("Desk lamp");
    lamp["keywords"] = json!(["lamp", "blue"]);
    lamp["condition"] = json!("used");
    let lamp_id = seller.post("/v1/items", lamp).await.expect(201)["id"].clone();

    let mut buyer = http.buyer();
    let name = json!({"username": "bea", "password": "password1", "name": "Bea B."});
    let buyer_id = buyer.post("/v1/buyers", name).await.expect(201)["id"].as_u64().unwrap();
    let login = json!({"username": "bea", "password": "password1"});
    let session = buyer.post("/v1/buyers/sessions", login.clone()).await.expect(201);
    assert_eq!(session["buyer_id"], buyer_id);
    buyer.session = Some(session["session"].as_str().unwrap().to_owned());

    // Search: repeated keywords; more matches rank first; pages.
    let found = buyer.get("/v1/items?category=3&keyword=pen&keyword=BLUE").await.expect(200);
    let ids: Vec<&Value> = found["items"].as_array().unwrap().iter().map(|i| &i["id"]).collect();
    assert_eq!(ids, vec![&pen_id, &lamp_id]);
    assert_eq!(found["next_offset"], Value::Null);
    let page = buyer.get("/v1/items?category=3&keyword=blue&limit=1").await.expect(200);
    assert_eq!(page["items"][0]["id"], lamp_id, "newer first among equals");
    assert_eq!(page["next_offset"], 1);
    let page = buyer.get("/v1/items?category=3&keyword=blue&limit=1&offset=1").await.expect(200);
    assert_eq!(page["items"][0]["id"], pen_id);
    let none = buyer.get("/v1/items?category=4").await.expect(200);
    assert_eq!(none, json!({"items": [], "next_offset": null}));

    let item = buyer.get(&format!("/v1/items/{}", lamp_id.as_str().unwrap())).await.expect(200);
    assert_eq!(item["name"], "Desk lamp");
    assert_eq!(item["condition"], "used");
    assert_eq!(item["category"], 3);
    assert_eq!(item["category_name"], "Office and stationery", "the number stays; a name too");
    assert_eq!(item["quantity"], 2);

    // The named categories, with their items for sale; the seller's API lists them too.
    let categories = buyer.get("/v1/categories").await.expect(200);
    let listed = categories["categories"].as_array().unwrap();
    assert_eq!(listed.len(), 10);
    assert!(listed.contains(&json!({"id": 3, "name": "Office and stationery", "items": 2})));
    assert!(listed.contains(&json!({"id": 7, "name": "Home and garden", "items": 0})));
    assert_eq!(seller.get("/v1/categories").await.expect(200), categories);

    // The cart: each line with its item's name and price now, and the total.
    let cart =
        buyer.post("/v1/cart/items", json!({"item": pen_id, "quantity": 3})).await.expect(200);
    let line = |id: &Value, name: &str, quantity: u32, unit: &str, total: &str| {
        json!({
            "item": id, "quantity": quantity, "name": name,
            "category_name": "Office and stationery", "unit_price": unit, "line_total": total,
        })
    };
    assert_eq!(
        cart,
        json!({"lines": [line(&pen_id, "Blue pen", 3, "1.50", "4.50")], "total": "4.50"})
    );
    buyer.post("/v1/cart/items", json!({"item": lamp_id, "quantity": 1})).await.expect(200);
    let path = format!("/v1/cart/items/{}?quantity=2", pen_id.as_str().unwrap());
    let cart = buyer.send(Method::DELETE, &path, None).await.expect(200);
    let lines = [
        line(&pen_id, "Blue pen", 1, "1.50", "1.50"),
        line(&lamp_id, "Desk lamp", 1, "1.50", "1.50"),
    ];
    assert_eq!(cart, json!({"lines": lines, "total": "3.00"}));
    assert_eq!(buyer.get("/v1/cart").await.expect(200), cart);
    buyer.send(Method::PUT, "/v1/cart/saved", None).await.expect(204);
    buyer.send(Method::DELETE, "/v1/cart", None).await.expect(204);
    assert_eq!(buyer.get("/v1/cart").await.expect(200), json!({"lines": [], "total": "0.00"}));

    // Feedback, and the seller's rating it feeds.
    let path = format!("/v1/items/{}/feedback", pen_id.as_str().unwrap());
    let votes = buyer.send(Method::PUT, &path, Some(json!({"vote": "up"}))).await.expect(200);
    assert_eq!(votes, json!({"up": 1, "down": 0}));
    let votes = buyer.send(Method::PUT, &path, Some(json!({"vote": "down"}))).await.expect(200);
    assert_eq!(votes, json!({"up": 0, "down": 1}), "a new vote replaces the old one");
    let rating = buyer.get(&format!("/v1/sellers/{seller_id}/rating")).await.expect(200);
    assert_eq!(rating["name"], "ann");
    assert_eq!(rating["feedback"], json!({"up": 0, "down": 1}));

    let purchases = buyer.get("/v1/purchases?limit=5").await.expect(200);
    assert_eq!(purchases, json!({"purchases": [], "next_offset": null}));

    // Logout discards the cart; the saved one comes back at the next login.
    buyer.send(Method::DELETE, "/v1/sessions/current", None).await.expect(204);
    buyer.get("/v1/cart").await.error(401, "not_logged_in");
    let session = buyer.post("/v1/buyers/sessions", login).await.expect(201);
    buyer.session = Some(session["session"].as_str().unwrap().to_owned());
    let saved = buyer.get("/v1/cart").await.expect(200);
    assert_eq!(saved["lines"].as_array().unwrap().len(), 2);
    http.stop().await;
}

#[tokio::test]
async fn purchases() {
    let http = Http::start().await;
    let mut seller = http.seller();
    let seller_id = seller.sign_up("seller", "ann").await;
    let id = seller.post("/v1/items", pen(5)).await.expect(201)["id"].as_str().unwrap().to_owned();
    let mut buyer = http.buyer();
    buyer.sign_up("buyer", "bea").await;
    let card =
        json!({"card": {"holder": "Bea", "number": "4111 1111 1111 1111", "expiry": "09/99"}});

    let message = buyer.post("/v1/purchases", card.clone()).await.error(400, "invalid_argument");
    assert!(message.contains("empty"), "{message}");
    buyer.post("/v1/cart/items", json!({"item": id, "quantity": 2})).await.expect(200);

    // Malformed card details and a declined card change nothing.
    let mut bad = card.clone();
    bad["card"]["number"] = json!("12");
    let message = buyer.post("/v1/purchases", bad).await.error(400, "invalid_argument");
    assert!(message.contains("card number"), "{message}");
    let mut declined = card.clone();
    declined["card"]["number"] = json!("4111 1111 1111 1112");
    buyer.post("/v1/purchases", declined).await.error(402, "payment_declined");

    // A purchase under a key, then the same key again: one purchase.
    let purchase = |key: &'static str| {
        let request = buyer
            .http
            .post(format!("{}/v1/purchases", buyer.base))
            .bearer_auth(buyer.session.as_deref().unwrap())
            .header("idempotency-key", key)
            .json(&card);
        async move { request.send().await.unwrap() }
    };
    let first = purchase("key-1").await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["total"], "3.00");
    assert_eq!(
        first["lines"],
        json!([{"item": id, "seller_id": seller_id, "name": "Blue pen", "quantity": 2, "unit_price": "1.50"}])
    );
    // The first attempt's outcome, status and all.
    let again = purchase("key-1").await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    assert_eq!(buyer.get("/v1/cart").await.expect(200), json!({"lines": [], "total": "0.00"}));
    let history = buyer.get("/v1/purchases").await.expect(200);
    assert_eq!(history["purchases"].as_array().unwrap().len(), 1);
    assert_eq!(history["purchases"][0]["id"], first["id"]);
    let item = buyer.get(&format!("/v1/items/{id}")).await.expect(200);
    assert_eq!(item["quantity"], 3);

    // Units sold in the meantime: 409, and nothing bought.
    buyer.post("/v1/cart/items", json!({"item": id, "quantity": 3})).await.expect(200);
    seller.post(&format!("/v1/items/{id}/removals"), json!({"quantity": 2})).await.expect(200);
    buyer.post("/v1/purchases", card).await.error(409, "not_enough_units");
    let cart = buyer.get("/v1/cart").await.expect(200);
    assert_eq!(cart["lines"][0]["item"], id, "the cart is kept");
    assert_eq!(cart["lines"][0]["quantity"], 3, "the cart is kept");
    let item = buyer.get(&format!("/v1/items/{id}")).await.expect(200);
    assert_eq!(item["quantity"], 1, "the units left are still for sale");
    let history = buyer.get("/v1/purchases").await.expect(200);
    assert_eq!(history["purchases"].as_array().unwrap().len(), 1, "{history}");
    assert_eq!(history["purchases"][0]["id"], first["id"]);
    http.stop().await;
}

#[tokio::test]
async fn health_docs_and_unknown_routes() {
    let http = Http::start().await;
    for api in [http.seller(), http.buyer()] {
        assert_eq!(api.get("/healthz").await.expect(200), json!({"status": "ok"}));
        assert_eq!(api.get("/readyz").await.expect(200), json!({"status": "ready"}));
        let docs = api.http.get(format!("{}/docs", api.base)).send().await.unwrap();
        assert_eq!(docs.status(), 200);
        assert!(docs.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
        // A page on the shop's own origin: its own script only, never framed or sniffed.
        let csp = docs.headers()["content-security-policy"].to_str().unwrap().to_owned();
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(docs.headers()["x-frame-options"], "DENY");
        assert_eq!(docs.headers()["x-content-type-options"], "nosniff");
        let page = docs.text().await.unwrap();
        assert!(page.contains("openapi.json"));
        assert!(!page.contains("<script>") && !page.contains("<style>"), "inline code: {page}");
        for (file, kind) in [("/docs.js", "text/javascript"), ("/docs.css", "text/css")] {
            let served = api.http.get(format!("{}{file}", api.base)).send().await.unwrap();
            assert_eq!(served.status(), 200, "{file}");
            assert_eq!(served.headers()["content-type"], kind, "{file}");
            assert_eq!(served.headers()["x-content-type-options"], "nosniff", "{file}");
        }

        // JSON answers, success or error: not sniffed, not cached, nothing runs in them.
        for path in ["/healthz", "/openapi.json", "/v1/nothing", "/v1/cart"] {
            let answer = api.http.get(format!("{}{path}", api.base)).send().await.unwrap();
            let headers = answer.headers();
            assert_eq!(headers["content-type"], "application/json", "{path}");
            assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
            assert_eq!(headers["cache-control"], "no-store", "{path}");
            assert!(headers.contains_key("content-security-policy"), "{path}");
        }

        let message = api.get("/v2/nothing").await.error(404, "bad_request");
        assert!(message.contains("/v2/nothing"), "{message}");
        let wrong = api.send(Method::PUT, "/healthz", None).await;
        assert_eq!(wrong.headers["allow"], "GET,HEAD");
        wrong.error(405, "bad_request");
    }
    http.stop().await;
}

#[tokio::test]
async fn bad_input_is_400_naming_the_field() {
    let http = Http::start().await;
    let mut seller = http.seller();
    seller.sign_up("seller", "ann").await;

    let mut long = pen(1);
    long["name"] = json!("x".repeat(33));
    let message = seller.post("/v1/items", long).await.error(400, "invalid_argument");
    assert!(message.contains("name") && message.contains("32"), "{message}");
    let mut price = pen(1);
    price["price"] = json!(1.5);
    let message = seller.post("/v1/items", price).await.error(400, "invalid_argument");
    assert!(message.starts_with("invalid price:"), "{message}");
    let mut price = pen(1);
    price["price"] = json!("1.505");
    let message = seller.post("/v1/items", price).await.error(400, "invalid_argument");
    assert!(message.contains("price"), "{message}");
    let mut keywords = pen(1);
    keywords["keywords"] = json!(["a", "b", "c", "d", "e", "f"]);
    let message = seller.post("/v1/items", keywords).await.error(400, "invalid_argument");
    assert!(message.contains("keywords"), "{message}");
    let mut condition = pen(1);
    condition["condition"] = json!("broken");
    let message = seller.post("/v1/items", condition).await.error(400, "invalid_argument");
    assert!(message.starts_with("invalid condition:"), "{message}");
    let mut missing = pen(1);
    missing.as_object_mut().unwrap().remove("quantity");
    let message = seller.post("/v1/items", missing).await.error(400, "invalid_argument");
    assert!(message.contains("missing field `quantity`"), "{message}");
    let mut extra = pen(1);
    extra["colour"] = json!("blue");
    let message = seller.post("/v1/items", extra).await.error(400, "invalid_argument");
    assert!(message.contains("colour"), "{message}");
    let message = seller.post("/v1/items", pen(0)).await.error(400, "invalid_argument");
    assert!(message.contains("quantity"), "{message}");

    // Not JSON at all, or not said to be JSON.
    let raw = |content_type: &str, body: &str| {
        seller
            .http
            .post(format!("{}/v1/items", seller.base))
            .bearer_auth(seller.session.as_deref().unwrap())
            .header("content-type", content_type)
            .body(body.to_owned())
            .send()
    };
    let answer = raw("application/json", "{\"name\": ").await.unwrap();
    assert_eq!(answer.status(), 400);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_request");
    let answer = raw("text/plain", &pen(1).to_string()).await.unwrap();
    assert_eq!(answer.status(), 415);
    let big = json!({"price": "x".repeat(70 * 1024)}).to_string();
    let answer = raw("application/json", &big).await.unwrap();
    assert_eq!(answer.status(), 413);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_request");

    // Paths and queries.
    let message = seller.post("/v1/items/pen/removals", json!({"quantity": 1})).await;
    assert!(message.error(400, "invalid_argument").contains("item"));
    let message = seller.get("/v1/sellers/me/items?limit=0").await.error(400, "invalid_argument");
    assert!(message.starts_with("invalid limit"), "{message}");
    let message = seller.get("/v1/sellers/me/items?limit=abc").await.error(400, "invalid_argument");
    assert!(message.starts_with("invalid limit"), "{message}");
    let mut buyer = http.buyer();
    buyer.sign_up("buyer", "bea").await;
    let message = buyer.get("/v1/items").await.error(400, "invalid_argument");
    assert!(message.contains("category"), "{message}");
    let message = buyer.get("/v1/items?category=-1").await.error(400, "invalid_argument");
    assert!(message.starts_with("invalid category"), "{message}");
    let message = buyer.get("/v1/items?category=1&keyword=toolongword").await;
    assert!(message.error(400, "invalid_argument").contains("keyword"));
    let message = buyer.get("/v1/sellers/me/rating").await.error(400, "invalid_argument");
    assert!(message.contains("seller id"), "{message}");
    let vote = Some(json!({"vote": "sideways"}));
    buyer.send(Method::PUT, "/v1/items/1:1/feedback", vote).await.error(400, "invalid_argument");
    http.stop().await;
}

#[tokio::test]
async fn sessions_are_bearer_tokens() {
    let clock = Clock::manual(1_700_000_000_000);
    let options = Options::manual_clock(&clock, Duration::from_secs(60));
    let http = Http::start_with(options).await;
    let mut seller = http.seller();
    seller.sign_up("seller", "ann").await;

    let anonymous = http.seller();
    anonymous.get("/v1/sellers/me/rating").await.error(401, "not_logged_in");
    let answer = anonymous.get("/v1/sellers/me/items").await;
    assert_eq!(answer.headers["www-authenticate"], "Bearer");
    answer.error(401, "not_logged_in");
    for header in ["Basic YW5uOnBhc3N3b3JkMQ==", "Bearer", "Bearer ", "ann"] {
        let answer = anonymous
            .http
            .get(format!("{}/v1/sellers/me/rating", anonymous.base))
            .header("authorization", header)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 401, "{header:?}");
    }
    let mut unknown = http.seller();
    unknown.session = Some("0".repeat(64));
    unknown.get("/v1/sellers/me/rating").await.error(401, "not_logged_in");

    // A seller session is not a buyer session.
    let mut buyer = http.buyer();
    buyer.session = seller.session.clone();
    buyer.get("/v1/cart").await.error(401, "not_logged_in");

    let wrong = json!({"username": "ann", "password": "password2"});
    seller.post("/v1/sellers/sessions", wrong).await.error(401, "wrong_credentials");

    clock.advance(Duration::from_secs(61));
    seller.get("/v1/sellers/me/rating").await.error(401, "session_expired");
    http.stop().await;
}

#[tokio::test]
async fn refusals_have_their_statuses() {
    let http = Http::start().await;
    let mut ann = http.seller();
    ann.sign_up("seller", "ann").await;
    let mut bob = http.seller();
    bob.sign_up("seller", "bob").await;
    let id = ann.post("/v1/items", pen(2)).await.expect(201)["id"].as_str().unwrap().to_owned();

    // 409: a taken username, not enough units.
    let taken = json!({"username": "ann", "password": "password1"});
    http.seller().post("/v1/sellers", taken).await.error(409, "username_taken");
    let message = ann
        .post(&format!("/v1/items/{id}/removals"), json!({"quantity": 3}))
        .await
        .error(409, "not_enough_units");
    assert!(message.contains('2'), "{message}");
    // 403: another seller's item.
    let path = format!("/v1/items/{id}");
    bob.send(Method::PATCH, &path, Some(json!({"price": "9.99"})))
        .await
        .error(403, "not_your_item");
    bob.post(&format!("{path}/removals"), json!({"quantity": 1})).await.error(403, "not_your_item");
    // 404: unknown items and sellers.
    ann.send(Method::PATCH, "/v1/items/3:999", Some(json!({"price": "1"})))
        .await
        .error(404, "unknown_item");

    let mut buyer = http.buyer();
    buyer.sign_up("buyer", "bea").await;
    buyer.get("/v1/items/3:999").await.error(404, "unknown_item");
    buyer.get(&format!("/v1/items/4:{}", &id[2..])).await.error(404, "unknown_item");
    buyer.get("/v1/sellers/999/rating").await.error(404, "unknown_user");
    buyer
        .post("/v1/cart/items", json!({"item": "3:999", "quantity": 1}))
        .await
        .error(404, "unknown_item");
    buyer
        .send(Method::DELETE, &format!("/v1/cart/items/{id}?quantity=1"), None)
        .await
        .error(404, "unknown_item");
    buyer
        .send(Method::PUT, "/v1/items/3:999/feedback", Some(json!({"vote": "up"})))
        .await
        .error(404, "unknown_item");
    // 409: more units than are available.
    buyer.post("/v1/cart/items", json!({"item": id, "quantity": 2})).await.expect(200);
    buyer
        .post("/v1/cart/items", json!({"item": id, "quantity": 1}))
        .await
        .error(409, "not_enough_units");
    http.stop().await;
}

#[tokio::test]
async fn a_database_down_is_503() {
    // Frontends whose databases are at addresses nothing listens on.
    let closed = |_| {
        let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        socket.local_addr().unwrap()
    };
    let data = tempfile::tempdir().unwrap();
    let upstream = |component| {
        let trust = agora_testkit::trust(data.path(), component);
        agora_testkit::frontend_config(closed(0), closed(1), trust)
    };
    let (seller, seller_http) = agora_testkit::start_seller_with_http(
        &upstream(agora_proto::Component::SellerServer),
        "127.0.0.1:0",
    )
    .await;
    let (buyer, buyer_http) = agora_testkit::start_buyer_with_http(
        &upstream(agora_proto::Component::BuyerServer),
        "127.0.0.1:0",
    )
    .await;
    for addr in [seller_http, buyer_http] {
        let api = Api::new(addr);
        assert_eq!(api.get("/healthz").await.expect(200), json!({"status": "ok"}));
        let answer = api.get("/readyz").await;
        assert_eq!(answer.headers["retry-after"], "1");
        answer.error(503, "unavailable");
    }
    let credentials = json!({"username": "ann", "password": "password1"});
    Api::new(seller_http).post("/v1/sellers/sessions", credentials).await.error(503, "unavailable");
    let mut buyer_api = Api::new(buyer_http);
    buyer_api.session = Some("0".repeat(64));
    buyer_api.get("/v1/items/1:1").await.error(503, "unavailable");
    seller.stop().await;
    buyer.stop().await;
}

/// A database that takes every request and never answers: the real server loop and
/// handshake, with a handler that waits for ever.
struct Silent;

impl agora_proto::Handler<agora_proto::CustomerDb> for Silent {
    async fn handle(
        &self,
        _: agora_proto::messages::customer::Request,
    ) -> Result<agora_proto::messages::customer::Response, agora_proto::ApiError> {
        std::future::pending().await
    }
}

#[tokio::test]
async fn a_database_that_never_answers_is_504() {
    let data = tempfile::tempdir().unwrap();
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let server = agora_proto::ServerConfig {
        acceptor: agora_testkit::trust(data.path(), agora_proto::Component::CustomerDb).acceptor(),
        ..Default::default()
    };
    // Never stopped: its one request never ends. The test's runtime drops it.
    tokio::spawn(agora_proto::serve(
        silent,
        std::sync::Arc::new(Silent),
        server,
        Default::default(),
    ));
    let trust = agora_testkit::trust(data.path(), agora_proto::Component::BuyerServer);
    let deadline = Duration::from_millis(300);
    let upstream = agora_frontend::Config {
        call_timeout: deadline,
        ..agora_testkit::frontend_config(silent_addr, silent_addr, trust)
    };
    let (buyer, http) = agora_testkit::start_buyer_with_http(&upstream, "127.0.0.1:0").await;

    // A login waits for the customer database, which takes the request and says nothing.
    let credentials = json!({"username": "bea", "password": "password1"});
    let asked = std::time::Instant::now();
    let message =
        Api::new(http).post("/v1/buyers/sessions", credentials).await.error(504, "timeout");
    assert!(asked.elapsed() >= deadline, "answered before the deadline: {message}");
    assert!(message.contains("customer-db"), "{message}");
    buyer.stop().await;
}

#[tokio::test]
async fn http_and_tcp_are_one_interface() {
    let http = Http::start().await;
    // A session from HTTP works over TCP, and an item listed over TCP shows over HTTP.
    let mut seller = http.seller();
    seller.sign_up("seller", "ann").await;
    let tcp = agora_client::SellerClient::new(vec![http.seller.addr.to_string()]);
    tcp.set_session(seller.session.clone());
    let item = agora_domain::NewItem {
        name: "Mug".into(),
        category: 7,
        keywords: vec!["mug".into()],
        condition: agora_domain::Condition::Used,
        price: agora_domain::Money::from_cents(1234),
        quantity: 3,
    };
    let id = tcp.register_item(item).await.unwrap();
    let items = seller.get("/v1/sellers/me/items").await.expect(200);
    assert_eq!(items["items"][0]["id"], id.to_string());
    assert_eq!(items["items"][0]["price"], "12.34");

    // The TCP frontend of the cluster and the HTTP one share the databases, too.
    let buyer_tcp = agora_client::BuyerClient::new(vec![http.cluster.buyer_addr()]);
    buyer_tcp.create_account("bea", "password1", "").await.unwrap();
    buyer_tcp.login("bea", "password1").await.unwrap();
    let mut buyer = http.buyer();
    buyer.session = buyer_tcp.session();
    let cart = buyer.post("/v1/cart/items", json!({"item": id.to_string(), "quantity": 2})).await;
    cart.expect(200);
    assert_eq!(buyer_tcp.display_cart().await.unwrap()[0].quantity, 2);
    http.stop().await;
}

#[tokio::test]
async fn a_stopped_frontend_closes_its_http_port() {
    let http = Http::start().await;
    let addr = http.buyer_http;
    assert_eq!(Api::new(addr).get("/healthz").await.status, 200);
    http.stop().await;
    let refused = reqwest::Client::new().get(format!("http://{addr}/healthz")).send().await;
    assert!(refused.is_err(), "still serving after shutdown");
}

/// Every route the API has, per frontend: the OpenAPI document must list exactly these.
const SELLER_ROUTES: &[(&str, &str)] = &[
    ("post", "/v1/sellers"),
    ("post", "/v1/sellers/sessions"),
    ("delete", "/v1/sessions/current"),
    ("get", "/v1/sellers/me/rating"),
    ("post", "/v1/items"),
    ("get", "/v1/sellers/me/items"),
    ("patch", "/v1/items/{id}"),
    ("post", "/v1/items/{id}/removals"),
    ("get", "/v1/categories"),
    ("get", "/healthz"),
    ("get", "/readyz"),
];

const BUYER_ROUTES: &[(&str, &str)] = &[
    ("post", "/v1/buyers"),
    ("post", "/v1/buyers/sessions"),
    ("delete", "/v1/sessions/current"),
    ("get", "/v1/items"),
    ("get", "/v1/items/{id}"),
    ("put", "/v1/items/{id}/feedback"),
    ("get", "/v1/cart"),
    ("delete", "/v1/cart"),
    ("post", "/v1/cart/items"),
    ("delete", "/v1/cart/items/{id}"),
    ("put", "/v1/cart/saved"),
    ("get", "/v1/sellers/{id}/rating"),
    ("get", "/v1/purchases"),
    ("post", "/v1/purchases"),
    ("get", "/v1/categories"),
    ("get", "/healthz"),
    ("get", "/readyz"),
];

#[tokio::test]
async fn the_openapi_documents_are_valid_and_complete() {
    let http = Http::start().await;
    for (api, routes) in [(http.seller(), SELLER_ROUTES), (http.buyer(), BUYER_ROUTES)] {
        let document = api.get("/openapi.json").await.expect(200);
        // It parses as OpenAPI 3.1 ...
        let parsed: utoipa::openapi::OpenApi = serde_json::from_value(document.clone()).unwrap();
        assert_eq!(document["openapi"], "3.1.0");
        assert!(!parsed.info.title.is_empty());

        // ... lists exactly the routes ...
        let mut listed = Vec::new();
        for (path, item) in document["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                listed.push((method.clone(), path.clone()));
            }
        }
        let mut expected: Vec<(String, String)> =
            routes.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
        listed.sort();
        expected.sort();
        assert_eq!(listed, expected);

        // ... each of which says what it answers, declares its path parameters and, when it
        // needs a session, the scheme that carries it ...
        for (path, item) in document["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let responses = operation["responses"].as_object().unwrap();
                assert!(responses.keys().any(|s| s.starts_with('2')), "{method} {path}");
                let declared: Vec<&str> = operation["parameters"]
                    .as_array()
                    .map(|ps| {
                        ps.iter()
                            .filter(|p| p["in"] == "path")
                            .map(|p| p["name"].as_str().unwrap())
                            .collect()
                    })
                    .unwrap_or_default();
                let in_path = path.matches('{').count();
                assert_eq!(declared.len(), in_path, "{method} {path}");
                let secured = operation.get("security").is_some();
                let public = ["/healthz", "/readyz"].contains(&path.as_str())
                    || ["/v1/sellers", "/v1/buyers"].iter().any(|p| path.starts_with(p))
                        && method == "post";
                assert_eq!(secured, !public, "{method} {path}");
                if secured {
                    assert_eq!(operation["security"], json!([{"session": []}]));
                    // Every secured route refuses without a session.
                    assert!(responses.contains_key("401"), "{method} {path}");
                }
            }
        }
        assert_eq!(document["components"]["securitySchemes"]["session"]["scheme"], "bearer");

        // ... and every reference resolves.
        let mut refs = Vec::new();
        collect_refs(&document, &mut refs);
        assert!(!refs.is_empty());
        for reference in refs {
            let pointer = reference.strip_prefix('#').unwrap();
            assert!(document.pointer(pointer).is_some(), "dangling {reference}");
        }
    }
    http.stop().await;
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => collect_refs(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// Reads from `socket` until the server closes it (EOF or reset), or `within` passes;
/// returns what it read, or `None` if the connection was still open at the deadline.
async fn read_until_closed(socket: &mut tokio::net::TcpStream, within: Duration) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut read = Vec::new();
    let closed = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => read.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    closed.ok().map(|()| String::from_utf8_lossy(&read).into_owned())
}

/// Sends `request` on a new connection and reads the answer until the server closes it.
async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    use tokio::io::AsyncWriteExt;
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket.write_all(request).await.unwrap();
    read_until_closed(&mut socket, Duration::from_secs(10)).await.expect("closed after answering")
}

/// The JSON body of a raw answer.
fn raw_body(answer: &str) -> Value {
    let (_, body) = answer.split_once("\r\n\r\n").unwrap_or_else(|| panic!("{answer:?}"));
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer:?}"))
}

#[tokio::test]
async fn connections_are_capped_and_closed_when_idle_or_slow() {
    use tokio::io::AsyncWriteExt;
    let cluster = Cluster::start().await;
    let limits = agora_frontend::http::Limits {
        max_connections: 3,
        header_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_secs(3),
        ..Default::default()
    };
    let (buyer, addr) = agora_testkit::start_buyer_with_http_limits(
        &cluster.upstream_for(agora_proto::Component::BuyerServer),
        "127.0.0.1:0",
        limits,
    )
    .await;

    // A connection that says nothing is closed at the header deadline of its opening,
    // long before the idle one.
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let answer = read_until_closed(&mut silent, Duration::from_secs(10)).await;
    assert_eq!(answer.as_deref(), Some(""), "a silent connection was not closed");

    // A request head trickled a byte at a time is cut off at the header deadline, long
    // before the idle one.
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    let started = tokio::time::Instant::now();
    slow.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    let (mut reader, mut writer) = slow.into_split();
    let trickle = tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_millis(20));
        for byte in b"X-Slow: a-very-long-header-value-sent-one-byte-at-a-time".iter().cycle() {
            interval.tick().await;
            if writer.write_all(&[*byte]).await.is_err() {
                return;
            }
        }
    });
    let closed = tokio::time::timeout(Duration::from_secs(2), async {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 256];
        while matches!(reader.read(&mut buf).await, Ok(n) if n > 0) {}
    })
    .await;
    assert!(closed.is_ok(), "a trickled header was not cut off");
    assert!(started.elapsed() >= Duration::from_millis(300));
    trickle.abort();

    // An answered connection outlives the header deadline, waiting for its next
    // request ...
    let mut waiting = tokio::net::TcpStream::connect(addr).await.unwrap();
    waiting.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let answer = read_until_closed(&mut waiting, Duration::from_millis(500)).await;
    assert!(answer.is_none(), "closed instead of kept alive: {answer:?}");
    // ... and is closed once idle for the idle deadline.
    let quiet = tokio::time::Instant::now();
    assert!(read_until_closed(&mut waiting, Duration::from_secs(10)).await.is_some());
    assert!(quiet.elapsed() < Duration::from_secs(10));
    buyer.stop().await;
    cluster.stop().await;
}

/// At the cap, a new connection takes the place of the one idle longest.
#[tokio::test]
async fn at_the_cap_a_new_connection_takes_the_place_of_the_idle_longest() {
    let cluster = Cluster::start().await;
    let limits = agora_frontend::http::Limits { max_connections: 3, ..Default::default() };
    let (buyer, addr) = agora_testkit::start_buyer_with_http_limits(
        &cluster.upstream_for(agora_proto::Component::BuyerServer),
        "127.0.0.1:0",
        limits,
    )
    .await;
    // Three that say nothing: a request on a fourth is served, the first of them shed.
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    Api::new(addr).get("/healthz").await.expect(200);
    let answer = read_until_closed(&mut idle[0], Duration::from_secs(10)).await;
    assert_eq!(answer.as_deref(), Some(""), "the idle longest was not shed");
    buyer.stop().await;
    cluster.stop().await;
}

/// A customer database that takes every request and answers none, and counts them.
#[derive(Default)]
struct Holding {
    taken: std::sync::atomic::AtomicUsize,
    changed: tokio::sync::Notify,
}

impl agora_proto::Handler<agora_proto::CustomerDb> for Holding {
    async fn handle(
        &self,
        _: agora_proto::messages::customer::Request,
    ) -> Result<agora_proto::messages::customer::Response, agora_proto::ApiError> {
        self.taken.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.changed.notify_waiters();
        std::future::pending().await
    }
}

/// With a request in hand on every connection, nobody is shed: a new connection is told
/// so, in the one shape.
#[tokio::test]
async fn at_the_cap_connections_with_a_request_in_hand_keep_their_places() {
    use tokio::io::AsyncWriteExt;
    let data = tempfile::tempdir().unwrap();
    let holding = std::sync::Arc::new(Holding::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let held_addr = listener.local_addr().unwrap();
    let server = agora_proto::ServerConfig {
        acceptor: agora_testkit::trust(data.path(), agora_proto::Component::CustomerDb).acceptor(),
        ..Default::default()
    };
    // Never stopped: its requests never end. The test's runtime drops it.
    tokio::spawn(agora_proto::serve(listener, holding.clone(), server, Default::default()));
    let trust = agora_testkit::trust(data.path(), agora_proto::Component::BuyerServer);
    let upstream = agora_frontend::Config {
        call_timeout: Duration::from_secs(30),
        ..agora_testkit::frontend_config(held_addr, held_addr, trust)
    };
    let limits = agora_frontend::http::Limits { max_connections: 3, ..Default::default() };
    let (buyer, addr) =
        agora_testkit::start_buyer_with_http_limits(&upstream, "127.0.0.1:0", limits).await;
    let body = r#"{"username":"bea","password":"password1"}"#;
    let login = format!(
        "POST /v1/buyers/sessions HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut busy = Vec::new();
    for _ in 0..3 {
        let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
        socket.write_all(login.as_bytes()).await.unwrap();
        busy.push(socket);
    }
    // Once the three logins are with the customer database, every place is busy.
    let all_in_hand = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let changed = holding.changed.notified();
            if holding.taken.load(std::sync::atomic::Ordering::SeqCst) >= 3 {
                break;
            }
            changed.await;
        }
    })
    .await;
    assert!(all_in_hand.is_ok(), "the logins never reached the customer database");
    let refused = Api::new(addr).get("/healthz").await;
    assert_eq!(refused.headers["retry-after"], "1");
    let message = refused.error(503, "overloaded");
    assert!(message.contains("connections"), "{message}");
    for socket in &mut busy {
        let open = read_until_closed(socket, Duration::from_millis(100)).await;
        assert!(open.is_none(), "a connection with a request in hand was closed: {open:?}");
    }
    buyer.stop().await;
}

#[tokio::test]
async fn oversized_and_malformed_heads_get_the_error_shape() {
    let http = Http::start().await;
    let addr = http.buyer_http;
    let long_uri = format!(
        "GET /v1/items?category=1&{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "a".repeat(9000)
    );
    let answer = raw(addr, long_uri.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 414 "), "{answer:?}");
    assert_eq!(raw_body(&answer)["error"]["code"], "bad_request");

    let big_headers =
        format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "b".repeat(70 * 1024));
    let answer = raw(addr, big_headers.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer:?}");
    assert!(answer.to_ascii_lowercase().contains("content-type: application/json"), "{answer:?}");
    let message = raw_body(&answer)["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("64 KiB"), "{message}");

    let answer = raw(addr, b"GET /healthz HTTP/1.1\r\nBad Header\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer:?}");
    assert_eq!(raw_body(&answer)["error"]["code"], "bad_request");
    http.stop().await;
}

#[tokio::test]
async fn bodies_and_queries_are_read_strictly() {
    let http = Http::start().await;
    let mut seller = http.seller();
    seller.sign_up("seller", "ann").await;
    seller.post("/v1/items", pen(5)).await.expect(201);

    // An array is not an object with its fields in order.
    let by_position = json!(["Blue pen", 3, ["pen"], "new", "1.50", 10]);
    let message = seller.post("/v1/items", by_position).await.error(400, "invalid_argument");
    assert!(message.contains("must be a JSON object"), "{message}");
    let mut buyer = http.buyer();
    buyer.sign_up("buyer", "bea").await;
    let card = json!({"card": ["Bea", "4111 1111 1111 1111", "09/99"]});
    let message = buyer.post("/v1/purchases", card).await.error(400, "invalid_argument");
    assert!(message.starts_with("invalid card:") && message.contains("object"), "{message}");
    let card = json!({"card": {"holder": 5, "number": "4111 1111 1111 1111", "expiry": "09/99"}});
    let message = buyer.post("/v1/purchases", card).await.error(400, "invalid_argument");
    assert!(message.contains("holder"), "{message}");
    assert_eq!(
        seller.get("/v1/sellers/me/items").await.expect(200)["items"].as_array().unwrap().len(),
        1
    );

    // A misspelt parameter is refused, not ignored.
    let message =
        buyer.get("/v1/items?category=3&keywords=pen").await.error(400, "invalid_argument");
    assert!(message.contains("unknown query parameter `keywords`"), "{message}");
    let message = seller.get("/v1/sellers/me/items?limt=2").await.error(400, "invalid_argument");
    assert!(message.contains("`limt`"), "{message}");
    let message = buyer.send(Method::DELETE, "/v1/cart/items/3:1?quantity=1&qty=2", None).await;
    assert!(message.error(400, "invalid_argument").contains("`qty`"));
    // Also on a route that takes none, and before anything changes.
    let message = buyer.get("/v1/cart?limit=5").await.error(400, "invalid_argument");
    assert_eq!(message, "unknown query parameter `limit`: GET /v1/cart takes none");
    let message = seller.post("/v1/items?dry_run=1", pen(1)).await.error(400, "invalid_argument");
    assert!(message.contains("`dry_run`"), "{message}");
    let path = "/v1/items/3:1?force";
    let message = seller.send(Method::PATCH, path, Some(json!({"price": "9.99"}))).await;
    assert!(message.error(400, "invalid_argument").contains("`force`"));
    let items = seller.get("/v1/sellers/me/items").await.expect(200);
    assert_eq!(items["items"].as_array().unwrap().len(), 1);
    assert_eq!(items["items"][0]["price"], "1.50");
    // Bytes that are not UTF-8 are refused, not replaced.
    let message =
        buyer.get("/v1/items?category=3&keyword=%FF").await.error(400, "invalid_argument");
    assert!(message.starts_with("invalid keyword:") && message.contains("UTF-8"), "{message}");
    // Only a list may be repeated.
    let message =
        buyer.get("/v1/items?category=3&limit=2&limit=3").await.error(400, "invalid_argument");
    assert_eq!(message, "invalid limit: may appear only once");
    let message = buyer.get("/v1/items?category=3&category=4").await.error(400, "invalid_argument");
    assert!(message.starts_with("invalid category"), "{message}");
    let found = buyer.get("/v1/items?category=3&keyword=pen&keyword=blue&limit=1").await;
    assert_eq!(found.expect(200)["items"].as_array().unwrap().len(), 1);
    http.stop().await;
}

#[tokio::test]
async fn numeric_refusals_state_our_rules() {
    let http = Http::start().await;
    let mut seller = http.seller();
    seller.sign_up("seller", "ann").await;
    let id = seller.post("/v1/items", pen(5)).await.expect(201)["id"].as_str().unwrap().to_owned();
    let mut buyer = http.buyer();
    buyer.sign_up("buyer", "bea").await;

    // Too large for the type that holds them, or merely for the rule: the same message.
    for quantity in [json!(99999999999u64), json!(1000001), json!(0), json!(-1), json!(2.5)] {
        let mut item = pen(1);
        item["quantity"] = quantity.clone();
        let message = seller.post("/v1/items", item).await.error(400, "invalid_argument");
        assert!(message.contains("quantity") && message.contains("1 to 1000000"), "{message}");
        let removal = json!({"quantity": quantity});
        let message = seller.post(&format!("/v1/items/{id}/removals"), removal).await;
        assert!(message.error(400, "invalid_argument").contains("1 to 1000000"));
        let addition = json!({"item": id, "quantity": quantity});
        let message = buyer.post("/v1/cart/items", addition).await.error(400, "invalid_argument");
        assert!(message.contains("1 to 1000000"), "{message}");
    }
    let mut item = pen(1);
    item["category"] = json!(99999999999u64);
    let message = seller.post("/v1/items", item).await.error(400, "invalid_argument");
    assert!(message.starts_with("invalid category") && message.contains("4294967295"), "{message}");

    // And in queries.
    for (path, rule) in [
        (
            "/v1/items?category=3&limit=99999999999",
            "invalid limit: must be a whole number from 1 to 100",
        ),
        ("/v1/items?category=3&limit=101", "from 1 to 100"),
        (
            "/v1/items?category=3&offset=99999999999",
            "invalid offset: must be a whole number from 0",
        ),
        ("/v1/items?category=99999999999", "invalid category: must be a whole number from 0"),
        ("/v1/purchases?limit=x", "invalid limit: must be a whole number from 1 to 100"),
        (
            &format!("/v1/cart/items/{id}?quantity=99999999999"),
            "invalid quantity: must be a whole number from 1 to 1000000",
        ),
    ] {
        let method = if path.starts_with("/v1/cart") { Method::DELETE } else { Method::GET };
        let message = buyer.send(method, path, None).await.error(400, "invalid_argument");
        assert!(message.contains(rule), "{path}: {message}");
    }
    let message = seller.get("/v1/sellers/me/items?limit=0").await.error(400, "invalid_argument");
    assert!(message.contains("from 1 to 100"), "{message}");
    http.stop().await;
}

impl Api {
    /// Sends a request with an `Idempotency-Key`.
    async fn keyed(&self, method: Method, path: &str, key: &str, body: Option<Value>) -> Answer {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        request = request.header("idempotency-key", key);
        if let Some(session) = &self.session {
            request = request.bearer_auth(session);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let (status, headers) = (response.status(), response.headers().clone());
        let bytes = response.bytes().await.unwrap();
        let body =
            if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
        Answer { status, headers, body }
    }
}

#[tokio::test]
async fn a_retried_mutation_with_its_key_happens_once() {
    let http = Http::start().await;
    // A new account: the retry answers the first id instead of `username_taken`.
    let anonymous = http.seller();
    let ann = json!({"username": "ann", "password": "password1"});
    let first = anonymous.keyed(Method::POST, "/v1/sellers", "acct-1", Some(ann.clone())).await;
    let id = first.expect(201)["id"].clone();
    let again = anonymous.keyed(Method::POST, "/v1/sellers", "acct-1", Some(ann.clone())).await;
    assert_eq!(again.expect(201)["id"], id);
    anonymous.post("/v1/sellers", ann.clone()).await.error(409, "username_taken");
    // Whoever guesses a sign-up's key and sends it first with the username takes the
    // username, as anyone signing up first would; the real sign-up is then told so, not
    // answered with the taker's account.
    let taker = json!({"username": "cat", "password": "the takers one"});
    let taken = anonymous.keyed(Method::POST, "/v1/sellers", "acct-2", Some(taker)).await;
    taken.expect(201);
    let cat = json!({"username": "cat", "password": "cats own password"});
    let told = anonymous.keyed(Method::POST, "/v1/sellers", "acct-2", Some(cat)).await;
    told.error(409, "username_taken");

    let mut seller = http.seller();
    let session = seller.post("/v1/sellers/sessions", ann).await.expect(201);
    seller.session = Some(session["session"].as_str().unwrap().to_owned());
    // Listing: once per key.
    let item = seller.keyed(Method::POST, "/v1/items", "list-1", Some(pen(10))).await.expect(201);
    let again = seller.keyed(Method::POST, "/v1/items", "list-1", Some(pen(10))).await.expect(201);
    assert_eq!(again, item);
    let other = seller.keyed(Method::POST, "/v1/items", "list-2", Some(pen(5))).await.expect(201);
    assert_ne!(other, item);
    let items = seller.get("/v1/sellers/me/items").await.expect(200);
    assert_eq!(items["items"].as_array().unwrap().len(), 2);
    // Removing units: once per key.
    let id = item["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/items/{id}/removals");
    let removal = Some(json!({"quantity": 2}));
    let left = seller.keyed(Method::POST, &path, "rm-1", removal.clone()).await.expect(200);
    assert_eq!(left["quantity"], 8);
    let left = seller.keyed(Method::POST, &path, "rm-1", removal.clone()).await.expect(200);
    assert_eq!(left["quantity"], 8);
    assert_eq!(seller.post(&path, json!({"quantity": 2})).await.expect(200)["quantity"], 6);

    // The cart: adding and removing, once per key.
    let mut buyer = http.buyer();
    buyer.sign_up("buyer", "bea").await;
    let addition = Some(json!({"item": id, "quantity": 1}));
    for _ in 0..2 {
        let cart = buyer.keyed(Method::POST, "/v1/cart/items", "add-1", addition.clone()).await;
        assert_eq!(cart.expect(200)["lines"][0]["quantity"], 1);
    }
    buyer.post("/v1/cart/items", json!({"item": id, "quantity": 1})).await.expect(200);
    let path = format!("/v1/cart/items/{id}?quantity=1");
    for _ in 0..2 {
        let cart = buyer.keyed(Method::DELETE, &path, "del-1", None).await.expect(200);
        assert_eq!(cart["lines"][0]["quantity"], 1);
    }
    // A key is the session's: another buyer's same key is another attempt.
    let mut other = http.buyer();
    other.sign_up("buyer", "bob").await;
    let cart = other.keyed(Method::POST, "/v1/cart/items", "add-1", addition.clone()).await;
    assert_eq!(cart.expect(200)["lines"][0]["quantity"], 1);

    // The same key with another request (another quantity) is refused, not taken for a
    // new attempt, nor answered with the first attempt's cart.
    let more = Some(json!({"item": id, "quantity": 3}));
    let reused = buyer.keyed(Method::POST, "/v1/cart/items", "add-1", more).await;
    assert!(reused.error(409, "op_reused").contains("Idempotency-Key"));
    assert_eq!(buyer.get("/v1/cart").await.expect(200)["lines"][0]["quantity"], 1);

    // A key that breaks the rule is refused, and changes nothing.
    for bad in ["", "   ", &"k".repeat(65)] {
        let answer = buyer.keyed(Method::POST, "/v1/cart/items", bad, addition.clone()).await;
        assert!(answer.error(400, "invalid_argument").contains("Idempotency-Key"), "{bad:?}");
    }
    assert_eq!(buyer.get("/v1/cart").await.expect(200)["lines"][0]["quantity"], 1);

    // Logout: the retry with its key answers 204 again; a new Logout of the ended session,
    // 401.
    for _ in 0..2 {
        buyer.keyed(Method::DELETE, "/v1/sessions/current", "out-1", None).await.expect(204);
    }
    let again = buyer.keyed(Method::DELETE, "/v1/sessions/current", "out-2", None).await;
    again.error(401, "not_logged_in");
    buyer.get("/v1/cart").await.error(401, "not_logged_in");
    http.stop().await;
}

#[tokio::test]
async fn the_docs_page_shows_defaults_and_renders_descriptions() {
    let http = Http::start().await;
    for (api, path) in [(http.seller(), "/v1/sellers/me/items"), (http.buyer(), "/v1/items")] {
        // The page fills a parameter in with its default, so the default must be declared.
        let document = api.get("/openapi.json").await.expect(200);
        let params = document["paths"][path]["get"]["parameters"].as_array().unwrap();
        let schema = |name: &str| {
            params.iter().find(|p| p["name"] == name).map(|p| p["schema"].clone()).unwrap()
        };
        assert_eq!(schema("limit")["default"], agora_domain::PAGE_DEFAULT, "{path}");
        assert_eq!(schema("offset")["default"], 0, "{path}");

        // Descriptions are Markdown: every one is shown through the renderer, none raw.
        let page = api.http.get(format!("{}/docs.js", api.base)).send().await.unwrap();
        let page = page.text().await.unwrap();
        assert!(page.contains("const markdown = "), "no Markdown renderer");
        for raw in ["description || \"\"", "textContent = s.info.description", "}, op.description)"]
        {
            assert!(!page.contains(raw), "a description is shown raw: {raw}");
        }
        assert!(page.contains("if (s.default !== undefined) return s.default;"));
    }
    http.stop().await;
}

/// A frontend run as `agora buyer-server` with at most `files` open files; killed on drop.
struct Limited {
    child: std::process::Child,
    tcp: String,
    http: SocketAddr,
}

impl Limited {
    fn spawn(cluster: &Cluster, files: u32, flags: &[&str]) -> Limited {
        use std::io::BufRead;
        let upstream = cluster.upstream_for(agora_proto::Component::BuyerServer);
        let credentials = agora_testkit::credentials(cluster.data.path());
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("ulimit -n {files} && exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_agora"))
            .args(["buyer-server", "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
            .args(["--customer-db", &upstream.customer_db.join(",")])
            .args(["--product-db", &upstream.product_db.join(",")])
            .arg("--credentials")
            .arg(&credentials)
            .args(flags)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut next = |prefix: &str| {
            let line = lines.next().unwrap().unwrap();
            line.strip_prefix(prefix).unwrap_or_else(|| panic!("{line:?}")).trim().to_owned()
        };
        let tcp = next("listening on ");
        let http = next("http listening on ").parse().unwrap();
        Limited { child, tcp, http }
    }
}

impl Drop for Limited {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn idle_http_sockets_cannot_use_up_a_frontends_open_files() {
    let cluster = Cluster::start().await;
    // Few open files, and the default HTTP limits: the cap must fit in them.
    let server = Limited::spawn(&cluster, 128, &[]);
    let api = Api::new(server.http);
    api.get("/healthz").await.expect(200);

    // More idle sockets than the process may open files.
    let mut idle = Vec::new();
    for _ in 0..300 {
        let connect = tokio::net::TcpStream::connect(server.http);
        match tokio::time::timeout(Duration::from_secs(1), connect).await {
            Ok(Ok(socket)) => idle.push(socket),
            // The listener's backlog is full: the server has stopped accepting.
            _ => break,
        }
    }
    // The connection already open is still served, and the databases still reached ...
    api.get("/readyz").await.expect(200);
    // ... and the TCP side still takes new clients.
    let tcp = agora_client::BuyerClient::new(vec![server.tcp.clone()]);
    let created =
        tokio::time::timeout(Duration::from_secs(5), tcp.create_account("bea", "password1", ""))
            .await;
    assert!(matches!(created, Ok(Ok(_))), "the TCP side stopped answering: {created:?}");

    // Once the idle sockets are gone, new HTTP clients are served again.
    drop(idle);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let fresh = reqwest::Client::new();
        let answer = fresh.get(format!("http://{}/healthz", server.http)).send().await;
        if answer.as_ref().is_ok_and(|a| a.status() == 200) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "not served again: {answer:?}");
        tokio::task::yield_now().await;
    }
    drop(server);
    cluster.stop().await;
}
