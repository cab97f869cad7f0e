//! The storefront's web pages over real HTTP against real servers: the whole shopping
//! path through forms, what a page holds, escaping of what users typed, the refusal of
//! forms without their CSRF token, the cookies' flags and the security headers, errors
//! beside their forms with the typed values kept, and a second frontend serving the same
//! logged-in user.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;

use agora_testkit::Cluster;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};

/// A browser without script: a cookie jar, forms sent as `application/x-www-form-urlencoded`,
/// and redirects seen rather than followed, so a test can check them.
struct Browser {
    base: String,
    http: reqwest::Client,
    cookies: BTreeMap<String, String>,
    /// Extra headers on every request (a proxy's `X-Forwarded-Proto`).
    proxy_https: bool,
}

/// A page or redirect: status, headers, body.
struct Page {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Page {
    #[track_caller]
    fn expect(&self, status: u16) -> &Page {
        assert_eq!(self.status.as_u16(), status, "page: {}", self.body);
        self
    }

    #[track_caller]
    fn redirects_to(&self, to: &str) {
        assert_eq!(self.status.as_u16(), 303, "page: {}", self.body);
        assert_eq!(self.headers[LOCATION].to_str().unwrap(), to);
    }

    #[track_caller]
    fn has(&self, text: &str) -> &Page {
        assert!(self.body.contains(text), "{text:?} not in page:\n{}", self.body);
        self
    }

    #[track_caller]
    fn lacks(&self, text: &str) -> &Page {
        assert!(!self.body.contains(text), "{text:?} in page:\n{}", self.body);
        self
    }

    /// The value of the first hidden `csrf` field.
    fn csrf(&self) -> String {
        hidden(&self.body, "csrf")
    }

    fn set_cookies(&self) -> Vec<String> {
        self.headers.get_all(SET_COOKIE).iter().map(|v| v.to_str().unwrap().to_owned()).collect()
    }
}

/// The value of the first hidden field `name` in `html`.
fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).unwrap_or_else(|| panic!("no {name} field in {html}"));
    let rest = &html[start + marker.len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

impl Browser {
    fn new(addr: SocketAddr) -> Browser {
        let http =
            reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Browser {
            base: format!("http://{addr}"),
            http,
            cookies: BTreeMap::new(),
            proxy_https: false,
        }
    }

    /// The same cookies, at another server.
    fn at(&self, addr: SocketAddr) -> Browser {
        Browser { cookies: self.cookies.clone(), ..Browser::new(addr) }
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Page {
        let mut request = request;
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
            request = request.header("cookie", jar.join("; "));
        }
        if self.proxy_https {
            request = request.header("x-forwarded-proto", "https");
        }
        let response = request.send().await.unwrap();
        let (status, headers) = (response.status(), response.headers().clone());
        for value in headers.get_all(SET_COOKIE) {
            let text = value.to_str().unwrap();
            let pair = text.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || text.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        Page { status, headers, body: response.text().await.unwrap() }
    }

    async fn get(&mut self, path: &str) -> Page {
        let request = self.http.get(format!("{}{path}", self.base));
        self.send(request).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let body = serde_html_form_encode(form);
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        self.send(request).await
    }

    /// Posts `form` as a browser on a page of `origin` would (its `Origin` header).
    async fn post_from(&mut self, origin: &str, path: &str, form: &[(&str, &str)]) -> Page {
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("origin", origin)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_html_form_encode(form));
        self.send(request).await
    }

    /// Signs up through the login page's form; asserts it lands on the start page.
    async fn sign_up(&mut self, username: &str, name: &str) {
        let login = self.get("/login").await;
        login.expect(200);
        let csrf = login.csrf();
        let done = self
            .post(
                "/signup",
                &[
                    ("csrf", &csrf),
                    ("username", username),
                    ("name", name),
                    ("password", "long enough"),
                ],
            )
            .await;
        done.redirects_to("/");
    }

    /// The CSRF token of the logged-in user's forms, from the start page.
    async fn token(&mut self) -> String {
        self.get("/").await.expect(200).csrf()
    }
}

/// Percent-encodes a form body.
fn serde_html_form_encode(form: &[(&str, &str)]) -> String {
    let encode = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                b' ' => "+".to_owned(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    form.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&")
}

/// A seller with one item listed through the dashboard's form; its id (`3:1`).
async fn seller_lists(seller: &mut Browser, name: &str, quantity: &str) -> String {
    let csrf = seller.token().await;
    let form = [
        ("csrf", csrf.as_str()),
        ("name", name),
        ("category", "3"),
        ("keywords", "pen blue"),
        ("condition", "new"),
        ("price", "1.50"),
        ("quantity", quantity),
    ];
    seller.post("/items", &form).await.redirects_to("/?done=listed");
    let page = seller.get("/").await;
    let body = &page.body;
    let at = body.rfind("<span class=\"hint\">item ").unwrap();
    let rest = &body[at + "<span class=\"hint\">item ".len()..];
    rest[..rest.find('<').unwrap()].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seller_and_a_buyer_shop_through_the_pages() {
    let cluster = Cluster::start().await;
    let (_s, seller_http) = cluster.start_seller_with_http().await;
    let (_b, buyer_http) = cluster.start_buyer_with_http().await;

    // The seller signs up and lists an item whose name is markup.
    let mut seller = Browser::new(seller_http);
    seller.sign_up("ann", "Ann's <b>Pens</b>").await;
    let evil = "<script>alert(1)</script>";
    let item = seller_lists(&mut seller, evil, "5").await;
    let dashboard = seller.get("/").await;
    dashboard
        .expect(200)
        .has("&#60;script&#62;alert(1)&#60;/script&#62;")
        .lacks(evil)
        .has("Ann&#39;s &#60;b&#62;Pens&#60;/b&#62;")
        .has("<strong>5</strong> units left")
        .has("<strong>0</strong> thumbs up");

    // A buyer signs up, searches, opens the item and adds two to the cart.
    let mut buyer = Browser::new(buyer_http);
    buyer.sign_up("bea", "").await;
    let results = buyer.get("/?category=3&keywords=PEN").await;
    let dom = item.replace(':', "-");
    results
        .expect(200)
        .has(&format!("href=\"/items/{dom}\""))
        .lacks(evil)
        .has("$1.50")
        .has("Office and stationery: items 1 to 1")
        .has("<option value=\"3\" selected>Office and stationery</option>");
    let page = buyer.get(&format!("/items/{dom}")).await;
    page.expect(200)
        .has("Units left</dt><dd>5")
        .has("<dd class=\"price\">$1.50</dd>")
        .has("<a href=\"/?category=3\">Office and stationery</a>")
        .has("Sold by <strong>Ann&#39;s &#60;b&#62;Pens&#60;/b&#62;</strong>")
        .has("Rating: 0 thumbs up, 0 thumbs down; 0 units sold")
        .has("<svg class=\"thumb\" aria-hidden=\"true\"")
        .lacks("👍")
        .lacks(evil);
    let csrf = page.csrf();
    buyer
        .post("/cart/add", &[("csrf", &csrf), ("item", &item), ("quantity", "2")])
        .await
        .redirects_to("/cart?done=added");
    let cart = buyer.get("/cart?done=added").await;
    cart.expect(200)
        .has("Added to your cart.")
        .has(&format!("<a href=\"/items/{dom}\">"))
        .has("<td data-label=\"Subtotal\">$3.00</td>")
        .has("<td id=\"total\" data-label=\"Total\">$3.00</td>");

    // A card that fails the Luhn check is declined, in words, with the typed details kept
    // but the number not echoed; nothing is bought.
    let key = hidden(&cart.body, "key");
    let total = hidden(&cart.body, "total");
    let declined = buyer
        .post(
            "/cart/checkout",
            &[
                ("csrf", &csrf),
                ("key", &key),
                ("total", &total),
                ("holder", "Bea <B>"),
                ("number", "4111111111111112"),
                ("expiry", "12/39"),
            ],
        )
        .await;
    declined
        .expect(402)
        .has("Your card was declined")
        .has("Nothing was charged")
        .has("value=\"Bea &#60;B&#62;\"")
        .has("value=\"12/39\"")
        .lacks("4111111111111112");
    assert_ne!(hidden(&declined.body, "key"), key, "a failed key is not offered again");

    // A good card buys; the purchase is in the history.
    let key = hidden(&declined.body, "key");
    assert_eq!(hidden(&declined.body, "total"), total, "the form again, at the same total");
    buyer
        .post(
            "/cart/checkout",
            &[
                ("csrf", &csrf),
                ("key", &key),
                ("total", &total),
                ("holder", "Bea B"),
                ("number", "4111 1111 1111 1111"),
                ("expiry", "12/39"),
            ],
        )
        .await
        .redirects_to("/purchases?done=bought");
    let history = buyer.get("/purchases?done=bought").await;
    history
        .expect(200)
        .has("Your purchase went through")
        .has("2 × $1.50")
        .has("<strong>$3.00</strong>")
        .lacks(evil);
    buyer.get("/cart").await.expect(200).has("Your cart is empty");

    // Feedback: the item's and the seller's counts rise.
    let voted =
        buyer.post(&format!("/items/{dom}/feedback"), &[("csrf", &csrf), ("vote", "up")]).await;
    voted.redirects_to(&format!("/items/{dom}?done=voted"));
    buyer
        .get(&format!("/items/{dom}?done=voted"))
        .await
        .expect(200)
        .has("Thank you for your feedback.")
        .has("1 thumbs up, 0 thumbs down")
        .has("Rating: 1 thumbs up, 0 thumbs down; 2 units sold");
    seller
        .get("/")
        .await
        .expect(200)
        .has("<strong>1</strong> thumbs up")
        .has("2 units sold")
        .has("<strong>3</strong> units left");

    // Cart buttons: save, clear, remove.
    buyer
        .post("/cart/add", &[("csrf", &csrf), ("item", &item), ("quantity", "1")])
        .await
        .redirects_to("/cart?done=added");
    buyer.post("/cart/save", &[("csrf", &csrf)]).await.redirects_to("/cart?done=saved");
    buyer
        .post("/cart/remove", &[("csrf", &csrf), ("item", &item), ("quantity", "1")])
        .await
        .redirects_to("/cart?done=removed");
    buyer.post("/cart/clear", &[("csrf", &csrf)]).await.redirects_to("/cart?done=cleared");

    // Logging out ends the session: the cookie goes and the pages send to login.
    let logout = buyer.post("/logout", &[("csrf", &csrf)]).await;
    logout.redirects_to("/login");
    assert!(!buyer.cookies.contains_key("agora_buyer_session"));
    buyer.get("/cart").await.redirects_to("/login");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_stand_beside_their_forms_and_keep_what_was_typed() {
    let cluster = Cluster::start().await;
    let (_s, seller_http) = cluster.start_seller_with_http().await;
    let (_b, buyer_http) = cluster.start_buyer_with_http().await;
    let mut seller = Browser::new(seller_http);
    seller.sign_up("cy", "").await;
    let csrf = seller.token().await;

    // Limits are the server's: a long name, six keywords, a bad price, each refused with
    // the rule, the typed values kept, and nothing listed.
    let long = "n".repeat(33);
    let mut form = vec![
        ("csrf", csrf.as_str()),
        ("name", long.as_str()),
        ("category", "4"),
        ("keywords", "a b"),
        ("condition", "used"),
        ("price", "2.00"),
        ("quantity", "3"),
    ];
    let refused = seller.post("/items", &form).await;
    refused
        .expect(400)
        .has("id=\"new-error\" role=\"alert\">Invalid name: must be at most 32 characters")
        .has(&format!("value=\"{long}\""))
        .has("<option value=\"used\" selected>")
        .has("You have no items for sale");
    form[1] = ("name", "Lamp");
    form[3] = ("keywords", "a b c d e f");
    seller.post("/items", &form).await.expect(400).has("keywords").has("value=\"a b c d e f\"");
    form[3] = ("keywords", "lamp");
    form[5] = ("price", "1.234");
    seller.post("/items", &form).await.expect(400).has("price").has("value=\"1.234\"");
    form[5] = ("price", "2.00");
    form[6] = ("quantity", "lots");
    seller.post("/items", &form).await.expect(400).has("Invalid quantity").has("value=\"lots\"");
    seller.get("/").await.has("You have no items for sale");

    // Per-item forms: the error stands beside that item's form.
    form[6] = ("quantity", "3");
    seller.post("/items", &form).await.redirects_to("/?done=listed");
    let page = seller.get("/").await;
    let at = page.body.find("id=\"price-").unwrap();
    let dom = page.body[at + 10..].split('"').next().unwrap().to_owned();
    let refused =
        seller.post(&format!("/items/{dom}/price"), &[("csrf", &csrf), ("price", "0")]).await;
    refused
        .expect(400)
        .has(&format!("id=\"price-error-{dom}\" role=\"alert\">"))
        .has("value=\"0\"");
    let refused =
        seller.post(&format!("/items/{dom}/remove"), &[("csrf", &csrf), ("quantity", "9")]).await;
    refused
        .expect(409)
        .has(&format!("id=\"units-error-{dom}\" role=\"alert\">"))
        .has("value=\"9\"");
    seller
        .post(&format!("/items/{dom}/price"), &[("csrf", &csrf), ("price", "2.50")])
        .await
        .redirects_to("/?done=priced");
    seller
        .post(&format!("/items/{dom}/remove"), &[("csrf", &csrf), ("quantity", "1")])
        .await
        .redirects_to("/?done=units");
    seller.get("/").await.has("price <strong>$2.50</strong>").has("<strong>2</strong> units left");

    // Buyer side: a bad search, more units than there are, a wrong login.
    let mut buyer = Browser::new(buyer_http);
    buyer.sign_up("dee", "").await;
    let bad = buyer.get("/?category=x&keywords=lamp").await;
    // The category is a list now; a number typed into the address is still checked.
    bad.expect(400).has("id=\"search-error\"").has("whole number").has("value=\"lamp\"");
    buyer.get("/?category=4&keywords=a+b+c+d+e+f").await.expect(400).has("keywords");
    let item = dom.replacen('-', ":", 1);
    let csrf = buyer.token().await;
    let refused =
        buyer.post("/cart/add", &[("csrf", &csrf), ("item", &item), ("quantity", "5")]).await;
    refused.expect(409).has("id=\"add-error\"").has("value=\"5\"");
    buyer.get(&format!("/items/{dom}")).await.expect(200);
    buyer.get("/items/4-999999").await.expect(404).has("No such item");
    buyer
        .post("/cart/remove", &[("csrf", &csrf), ("item", &item), ("quantity", "1")])
        .await
        .expect(404)
        .has("is not in your cart");
    buyer
        .post(
            "/cart/checkout",
            &[
                ("csrf", &csrf),
                ("total", "0.00"),
                ("holder", "D"),
                ("number", "4111111111111111"),
                ("expiry", "1/2"),
            ],
        )
        .await
        .expect(400)
        .has("id=\"checkout-error\"")
        .has("expiry");

    let mut stranger = Browser::new(buyer_http);
    let login = stranger.get("/login").await;
    let token = login.csrf();
    let wrong = stranger
        .post("/login", &[("csrf", &token), ("username", "dee"), ("password", "not it at all")])
        .await;
    wrong.expect(401).has("id=\"login-error\"").has("value=\"dee\"").lacks("not it at all");
    let taken = stranger
        .post(
            "/signup",
            &[("csrf", &token), ("username", "DEE"), ("name", "D"), ("password", "long enough")],
        )
        .await;
    taken.expect(409).has("id=\"signup-error\"").has("value=\"DEE\"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_without_their_token_are_refused_and_change_nothing() {
    let cluster = Cluster::start().await;
    let (_s, seller_http) = cluster.start_seller_with_http().await;
    let mut seller = Browser::new(seller_http);
    seller.sign_up("eve", "").await;
    let form = |csrf: &'static str| {
        [
            ("csrf", csrf),
            ("name", "Forged"),
            ("category", "3"),
            ("keywords", ""),
            ("condition", "new"),
            ("price", "1"),
            ("quantity", "1"),
        ]
    };
    seller.post("/items", &form("")).await.expect(403).has("This form has expired");
    seller
        .post("/items", &form("0000000000000000000000000000000000000000000000000000000000000000"))
        .await
        .expect(403);
    // Another user's token does not do either.
    let mut other = Browser::new(seller_http);
    other.sign_up("fay", "").await;
    let theirs = other.token().await;
    let forged = [
        ("csrf", theirs.as_str()),
        ("name", "Forged"),
        ("category", "3"),
        ("condition", "new"),
        ("price", "1"),
        ("quantity", "1"),
    ];
    seller.post("/items", &forged).await.expect(403);
    seller.get("/").await.lacks("Forged");
    // A logout from another site does not log out.
    seller.post("/logout", &[("csrf", "x")]).await.expect(403);
    seller.get("/").await.expect(200);

    // Login and sign-up: the form's value must match its cookie.
    let mut fresh = Browser::new(seller_http);
    let login = fresh.get("/login").await;
    let token = login.csrf();
    fresh.cookies.clear();
    fresh
        .post("/login", &[("csrf", &token), ("username", "eve"), ("password", "long enough")])
        .await
        .expect(403);
    let mut other = Browser::new(seller_http);
    other.get("/login").await;
    other
        .post("/signup", &[("csrf", &token), ("username", "gus"), ("password", "long enough")])
        .await
        .expect(403);

    // A double-submit cookie the frontends did not sign is refused, even when the form
    // carries the same value: a cookie planted by someone else proves nothing.
    for planted in ["abc", "0123456789abcdef0123456789abcdef"] {
        let mut planted_browser = Browser::new(seller_http);
        planted_browser.cookies.insert("agora_seller_csrf".into(), planted.into());
        let login = planted_browser.get("/login").await;
        assert_ne!(login.csrf(), planted, "the page hands out a signed value instead");
        let form = [("csrf", planted), ("username", "hank"), ("password", "long enough")];
        planted_browser.cookies.insert("agora_seller_csrf".into(), planted.into());
        planted_browser.post("/signup", &form).await.expect(403);
        planted_browser.post("/login", &form).await.expect(403);
    }

    // A form posted from a page of another origin is refused, token and all, and
    // changes nothing; one from this origin goes through.
    let token = seller.token().await;
    let listing = [
        ("csrf", token.as_str()),
        ("name", "Elsewhere"),
        ("category", "3"),
        ("keywords", ""),
        ("condition", "new"),
        ("price", "1"),
        ("quantity", "1"),
    ];
    for origin in ["http://evil.example", "null", "http://127.0.0.1:1"] {
        seller.post_from(origin, "/items", &listing).await.expect(403);
    }
    seller.get("/").await.lacks("Elsewhere");
    let here = format!("http://{seller_http}");
    seller.post_from(&here, "/items", &listing).await.redirects_to("/?done=listed");
    seller.get("/").await.has("Elsewhere");

    // A body that is not a form is refused.
    let response = reqwest::Client::new()
        .post(format!("http://{seller_http}/items"))
        .header(
            "cookie",
            format!("agora_seller_session={}", seller.cookies["agora_seller_session"]),
        )
        .json(&serde_json::json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookies_headers_and_sessions_across_frontends() {
    let cluster = Cluster::start().await;
    let (_a, buyer_a) = cluster.start_buyer_with_http().await;
    let (_b, buyer_b) = cluster.start_buyer_with_http().await;

    // Without a session (or with a made-up one) a page sends to login.
    let mut anonymous = Browser::new(buyer_a);
    anonymous.get("/").await.redirects_to("/login");
    anonymous.cookies.insert("agora_buyer_session".into(), "made-up".into());
    anonymous.get("/cart").await.redirects_to("/login");

    // The login page: its double-submit cookie, the security headers, the stylesheet.
    let mut buyer = Browser::new(buyer_a);
    let login = buyer.get("/login").await;
    login.expect(200).has("<html lang=\"en\">").has("<label for=\"login-username\">");
    let cookies = login.set_cookies();
    assert!(
        cookies.iter().any(|c| c.starts_with("agora_buyer_csrf=")
            && c.contains("HttpOnly")
            && c.contains("SameSite=Lax")
            && !c.contains("Secure")),
        "{cookies:?}"
    );
    let csp = login.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(login.headers["x-frame-options"], "DENY");
    assert_eq!(login.headers["content-type"], "text/html; charset=utf-8");
    let css = buyer.get(agora_frontend::web::STYLESHEET_PATH).await;
    css.expect(200);
    assert!(css.headers["content-type"].to_str().unwrap().starts_with("text/css"));

    // The session cookie: HttpOnly, SameSite; not Secure in the clear.
    let csrf = login.csrf();
    let done = buyer
        .post("/signup", &[("csrf", &csrf), ("username", "hal"), ("password", "long enough")])
        .await;
    done.redirects_to("/");
    let session =
        done.set_cookies().into_iter().find(|c| c.starts_with("agora_buyer_session=")).unwrap();
    assert!(
        session.contains("HttpOnly")
            && session.contains("SameSite=Lax")
            && session.contains("Path=/")
            && !session.contains("Secure"),
        "{session}"
    );

    // Over TLS (a proxy in front says so) both cookies are Secure and `__Host-` named,
    // so that no other host can plant them; the plain names are not read there.
    let mut secure = Browser::new(buyer_a);
    secure.proxy_https = true;
    let login = secure.get("/login").await;
    let cookies = login.set_cookies();
    assert!(
        cookies.iter().any(|c| c.starts_with("__Host-agora_buyer_csrf=")
            && c.contains("Secure")
            && c.contains("Path=/")
            && !c.contains("Domain")),
        "{cookies:?}"
    );
    let csrf = login.csrf();
    let done = secure
        .post("/signup", &[("csrf", &csrf), ("username", "ida"), ("password", "long enough")])
        .await;
    done.redirects_to("/");
    let session = done.set_cookies();
    assert!(
        session.iter().any(|c| c.starts_with("__Host-agora_buyer_session=")
            && c.contains("HttpOnly")
            && c.contains("Secure")
            && c.contains("Path=/")),
        "{session:?}"
    );
    secure.get("/").await.expect(200);
    let token = secure.cookies["__Host-agora_buyer_session"].clone();
    let mut downgraded = Browser::new(buyer_a);
    downgraded.proxy_https = true;
    downgraded.cookies.insert("agora_buyer_session".into(), token);
    downgraded.get("/").await.redirects_to("/login");

    // Another frontend (or this one restarted) serves the same user without a login,
    // and accepts the same CSRF token.
    let mut elsewhere = buyer.at(buyer_b);
    let page = elsewhere.get("/").await;
    page.expect(200).has("Find items").has("Log out");
    assert_eq!(page.csrf(), buyer.token().await);
    let csrf = page.csrf();
    elsewhere.post("/cart/save", &[("csrf", &csrf)]).await.redirects_to("/cart?done=saved");

    // A page that is not there is a page, for a browser; for the API, the JSON error.
    let missing = reqwest::Client::new()
        .get(format!("http://{buyer_a}/no-such-page"))
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert!(missing.headers().contains_key("content-security-policy"));
    assert_eq!(missing.headers()["x-frame-options"], "DENY");
    assert_eq!(missing.headers()["x-content-type-options"], "nosniff");
    assert!(missing.text().await.unwrap().contains("No such page"));

    // The JSON API on the same port is untouched by the pages.
    let api = reqwest::get(format!("http://{buyer_a}/v1/items?category=1")).await.unwrap();
    assert_eq!(api.status(), 401);
    assert_eq!(api.headers()["content-type"], "application/json");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_outcomes_are_told_in_words() {
    let cluster = Cluster::start().await;
    let (_s, seller_http) = cluster.start_seller_with_http().await;
    let (_b, buyer_http) = cluster.start_buyer_with_http().await;
    let mut seller = Browser::new(seller_http);
    seller.sign_up("ivy", "").await;
    let item = seller_lists(&mut seller, "Desk", "3").await;
    let mut buyer = Browser::new(buyer_http);
    buyer.sign_up("jon", "").await;
    let csrf = buyer.token().await;
    buyer
        .post("/cart/add", &[("csrf", &csrf), ("item", &item), ("quantity", "2")])
        .await
        .redirects_to("/cart?done=added");

    // The seller takes two units off sale: one is left for a cart of two.
    let token = seller.token().await;
    let dom = item.replace(':', "-");
    seller
        .post(&format!("/items/{dom}/remove"), &[("csrf", &token), ("quantity", "2")])
        .await
        .redirects_to("/?done=units");
    let card = |total| {
        [
            ("csrf", csrf.as_str()),
            ("total", total),
            ("holder", "Jon"),
            ("number", "4111111111111111"),
            ("expiry", "12/39"),
        ]
    };
    let short = buyer.post("/cart/checkout", &card("3.00")).await;
    short
        .expect(409)
        .has("Not enough units are left")
        .has("Nothing was bought or charged")
        .has("value=\"Jon\"");

    // Payments down: the shopper is told the charge is not settled yet, and how to
    // avoid paying twice.
    buyer
        .post("/cart/remove", &[("csrf", &csrf), ("item", &item), ("quantity", "1")])
        .await
        .redirects_to("/cart?done=removed");
    let payments = cluster.payments;
    payments.stop().await;
    let down = buyer.post("/cart/checkout", &card("1.50")).await;
    down.expect(503).has("Payments did not answer in time").has("not charged twice");
    buyer.get("/purchases").await.expect(200).has("No purchases yet");
}

/// The cart page says "Pay $3.00"; the seller then asks a million for the item. The
/// unchanged checkout form buys nothing and charges nothing, and the cart comes back with
/// the new total to pay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkout_after_a_price_rise_charges_nothing_and_shows_the_new_total() {
    let cluster = Cluster::start().await;
    let (_s, seller_http) = cluster.start_seller_with_http().await;
    let (_b, buyer_http) = cluster.start_buyer_with_http().await;
    let mut seller = Browser::new(seller_http);
    seller.sign_up("lou", "").await;
    let item = seller_lists(&mut seller, "Lamp", "5").await;
    let mut buyer = Browser::new(buyer_http);
    buyer.sign_up("max", "").await;
    let csrf = buyer.token().await;
    buyer
        .post("/cart/add", &[("csrf", &csrf), ("item", &item), ("quantity", "2")])
        .await
        .redirects_to("/cart?done=added");
    let cart = buyer.get("/cart").await;
    cart.expect(200).has("Pay $3.00");
    let (key, total) = (hidden(&cart.body, "key"), hidden(&cart.body, "total"));
    assert_eq!(total, "3.00");

    let token = seller.token().await;
    let dom = item.replace(':', "-");
    seller
        .post(&format!("/items/{dom}/price"), &[("csrf", &token), ("price", "1000000")])
        .await
        .redirects_to("/?done=priced");
    let form = [
        ("csrf", csrf.as_str()),
        ("key", key.as_str()),
        ("total", total.as_str()),
        ("holder", "Max"),
        ("number", "4111111111111111"),
        ("expiry", "12/39"),
    ];
    let refused = buyer.post("/cart/checkout", &form).await;
    refused
        .expect(409)
        .has("2000000.00")
        .has("nothing was bought or charged")
        .has("Pay $2000000.00");
    buyer.get("/purchases").await.expect(200).has("No purchases yet");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_session_sends_to_login_and_says_why() {
    let clock = agora_customer_db::Clock::manual(1_700_000_000_000);
    let options = agora_testkit::Options::manual_clock(&clock, std::time::Duration::from_secs(60));
    let cluster = Cluster::start_with(options).await;
    let (_b, buyer_http) = cluster.start_buyer_with_http().await;
    let mut buyer = Browser::new(buyer_http);
    buyer.sign_up("kim", "").await;
    buyer.get("/").await.expect(200);
    clock.advance(std::time::Duration::from_secs(61));
    let page = buyer.get("/cart").await;
    page.redirects_to("/login?expired=1");
    assert!(!buyer.cookies.contains_key("agora_buyer_session"));
    buyer.get("/login?expired=1").await.expect(200).has("Your session has ended");
}

/// 1,100 silent sockets once held every place of a storefront port, and `GET /login`
/// failed for everyone. Now one address (127.0.0.2: the loopback network is all of
/// 127/8) takes its share of the places and no more, its own silent connections making
/// room for each other, and a shopper from another address is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_silent_connections_from_one_address_does_not_shut_the_shop() {
    let cluster = Cluster::start().await;
    let limits = agora_frontend::http::Limits {
        max_connections: 8,
        max_connections_per_address: 4,
        ..Default::default()
    };
    let (buyer, buyer_http) = agora_testkit::start_buyer_with_http_limits(
        &cluster.upstream_for(agora_proto::Component::BuyerServer),
        "127.0.0.1:0",
        limits,
    )
    .await;
    let mut flood = Vec::new();
    for _ in 0..100 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(([127, 0, 0, 2], 0).into()).unwrap();
        flood.push(socket.connect(buyer_http).await.unwrap());
    }
    let mut shopper = Browser::new(buyer_http);
    shopper.get("/login").await.expect(200);
    shopper.sign_up("nia", "").await;
    shopper.get("/cart").await.expect(200);
    drop(flood);
    buyer.stop().await;
    cluster.stop().await;
}

/// Categories have names: the buyer picks one from a list (and a page lists them all
/// with their items), the seller too when listing; keywords without a category are
/// refused in words rather than dropped; the sign-in page says what the shop is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn categories_have_names_everywhere_a_shopper_meets_them() {
    let cluster = Cluster::start().await;
    let (_s, seller_http) = cluster.start_seller_with_http().await;
    let (_b, buyer_http) = cluster.start_buyer_with_http().await;

    let mut buyer = Browser::new(buyer_http);
    buyer
        .get("/login")
        .await
        .expect(200)
        .has("Agora is an online marketplace of new and used items")
        .has("browse the categories");
    let mut seller = Browser::new(seller_http);
    seller.get("/login").await.expect(200).has("anyone can sell new and used items");
    seller.sign_up("kim", "Kim").await;
    seller
        .get("/")
        .await
        .expect(200)
        .has("<select id=\"new-category\" name=\"category\" required")
        .has("<option value=\"7\">Home and garden</option>")
        .lacks("A number, like 3");
    let item = seller_lists(&mut seller, "Blue pen", "4").await;
    seller.get("/").await.has("Office and stationery · new · price <strong>$1.50</strong>");

    buyer.sign_up("lou", "").await;
    let start = buyer.get("/").await;
    start
        .expect(200)
        .has("<option value=\"\" selected>Choose a category</option>")
        .has("<option value=\"3\">Office and stationery</option>")
        .has("<a href=\"/categories\">");
    buyer
        .get("/?keywords=pen")
        .await
        .expect(400)
        .has("Choose a category: a search looks for the keywords in one category.")
        .has("value=\"pen\"");
    let list = buyer.get("/categories").await;
    list.expect(200)
        .has("<a href=\"/?category=3\">Office and stationery</a>")
        .has("<td data-label=\"Items for sale\">1</td>")
        .has("<a href=\"/?category=7\">Home and garden</a>");
    // Without keywords, a category's newest items.
    let dom = item.replace(':', "-");
    buyer.get("/?category=3").await.expect(200).has(&format!("href=\"/items/{dom}\""));
    let csrf = buyer.token().await;
    buyer
        .post("/cart/add", &[("csrf", &csrf), ("item", &item), ("quantity", "1")])
        .await
        .redirects_to("/cart?done=added");
    buyer.get("/cart").await.expect(200).has(&format!(
        "<a href=\"/items/{dom}\">Blue pen</a> <span class=\"hint\">Office and stationery</span>"
    ));
}
