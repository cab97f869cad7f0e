//! The command-line clients as a script would use them: one-shot `agora seller ...` and
//! `agora buyer ...` processes against real servers, the login remembered in between.
#![allow(clippy::unwrap_used)]

use agora_testkit::Cluster;
use serde_json::Value;

const AGORA: &str = env!("CARGO_BIN_EXE_agora");

struct Cli<'a> {
    role: &'static str,
    server: String,
    state: &'a std::path::Path,
}

impl Cli<'_> {
    /// Runs `agora <role> <line>` (split as a shell would); returns exit code, stdout, stderr.
    async fn run(&self, line: &str) -> (i32, String, String) {
        let args = shell_words::split(line).unwrap();
        let out = tokio::process::Command::new(AGORA)
            .arg(self.role)
            .args(["--server", &self.server])
            .args(args)
            .env("AGORA_STATE_DIR", self.state)
            .env_remove("AGORA_SESSION")
            .env_remove("AGORA_PASSWORD")
            .env_remove("AGORA_CARD_NUMBER")
            .output()
            .await
            .unwrap();
        let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
        (out.status.code().unwrap_or(-1), text(out.stdout), text(out.stderr))
    }

    async fn ok(&self, line: &str) -> String {
        let (code, out, err) = self.run(line).await;
        assert_eq!(code, 0, "agora {} {line} failed: {err}", self.role);
        out
    }

    async fn json(&self, line: &str) -> Value {
        serde_json::from_str(&self.ok(&format!("--json {line}")).await).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scripted_session_exercises_every_call() {
    let cluster = Cluster::start().await;
    let state = tempfile::tempdir().unwrap();
    let seller = Cli { role: "seller", server: cluster.seller_addr(), state: state.path() };
    let buyer = Cli { role: "buyer", server: cluster.buyer_addr(), state: state.path() };

    seller.ok("create-account --username ann --password 'long enough' --name Ann").await;
    seller.ok("login --username ann --password 'long enough'").await;
    let pen = seller
        .ok(concat!(
            "register --name 'Blue pen' --category 3 --keyword pen --keyword blue ",
            "--condition new --price 1.50 --quantity 10"
        ))
        .await;
    assert!(pen.contains("3:1"), "{pen}");
    seller
        .ok(concat!(
            "register --name 'Red pen' --category 3 --keyword pen ",
            "--condition used --price 0.99 --quantity 3"
        ))
        .await;
    assert!(seller.ok("change-price 3:1 1.75").await.contains("now sells at $1.75"));
    let left = seller.ok("remove-units 3:2 1").await;
    assert_eq!(left.trim(), "item 3:2: 2 units left for sale", "{left}");
    let items = seller.json("items").await;
    assert_eq!(items["items"].as_array().unwrap().len(), 2);
    assert_eq!(items["items"][0]["price"], "1.75");
    assert_eq!(items["items"][1]["quantity"], 2);
    assert_eq!(items["next_offset"], Value::Null);
    let table = seller.ok("items").await;
    assert!(table.contains("Blue pen") && table.contains("1.75"), "{table}");

    buyer.ok("create-account --username bea --password 'long enough'").await;
    buyer.ok("login --username bea --password 'long enough'").await;
    let found = buyer.json("search --category 3 --keyword pen --keyword blue").await;
    assert_eq!(found["items"][0]["name"], "Blue pen");
    assert_eq!(found["items"].as_array().unwrap().len(), 2);
    assert!(buyer.ok("item 3:2").await.contains("Red pen"));
    buyer.ok("add 3:1 2").await;
    buyer.ok("add 3:2 1").await;
    buyer.ok("remove 3:2 1").await;
    let cart = buyer.json("cart").await;
    assert_eq!(cart["lines"].as_array().unwrap().len(), 1);
    assert_eq!(cart["lines"][0]["quantity"], 2);
    assert_eq!(cart["total"], "3.50");
    // As the web cart shows it: name, category, unit price, line total, the cart's total.
    let table = buyer.ok("cart").await;
    for shown in ["Blue pen", "Office and stationery", "$1.75", "$3.50", "total"] {
        assert!(table.contains(shown), "{shown:?} not in\n{table}");
    }
    let categories = buyer.ok("categories").await;
    assert!(categories.contains("Office and stationery"), "{categories}");
    let categories = seller.json("categories").await;
    assert_eq!(
        categories["categories"][3],
        serde_json::json!({"id": 3, "name": "Office and stationery", "items": 2})
    );
    // A declined card says what may be done next, and buys nothing.
    let (code, _, err) =
        buyer.run("purchase --holder 'Bea B' --number 4111111111111112 --expiry 12/39").await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("payment declined"), "{err}");
    assert!(err.contains("the cart is kept: try again"), "{err}");
    assert!(err.contains("`agora up --approve-probability 1` approves every valid card"), "{err}");
    assert_eq!(buyer.json("cart").await["lines"][0]["quantity"], 2);
    buyer.ok("save-cart").await;
    buyer.ok("clear-cart").await;
    assert_eq!(buyer.json("cart").await["lines"].as_array().unwrap().len(), 0);
    buyer.ok("feedback 3:1 up").await;
    let rating = buyer.json("seller-rating 1").await;
    assert_eq!(rating["feedback"]["up"], 1);
    assert_eq!(seller.json("rating").await["feedback"]["up"], 1);
    assert_eq!(buyer.json("purchases").await["purchases"].as_array().unwrap().len(), 0);
    buyer.ok("ping --deep").await;
    seller.ok("logout").await;
    buyer.ok("logout").await;

    // After logout: a clear error, exit code 1, and a hint; the error is JSON when asked.
    let (code, _, err) = buyer.run("cart").await;
    assert_eq!(code, 1);
    assert!(err.contains("not logged in"), "{err}");
    let (code, _, err) = buyer.run("--json cart").await;
    assert_eq!(code, 1);
    let err: Value = serde_json::from_str(err.lines().next().unwrap()).unwrap();
    assert_eq!(err["error"]["code"], "not_logged_in");

    // Bad input is refused before anything is sent, naming the rule.
    let (code, _, err) = seller.run("change-price 3:1 1.234").await;
    assert_eq!(code, 2, "{err}");
    assert!(err.to_lowercase().contains("price") && err.contains("two decimals"), "{err}");
    cluster.stop().await;
}

#[tokio::test]
async fn an_unreachable_server_is_named() {
    let dead =
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let state = tempfile::tempdir().unwrap();
    let buyer = Cli { role: "buyer", server: dead.clone(), state: state.path() };
    let (code, _, err) = buyer.run("ping").await;
    assert_eq!(code, 1);
    assert!(err.contains(&dead), "{err}");
}

/// GETs `path` from the HTTP API at `base` with `session`; the JSON answer.
async fn http_get(base: std::net::SocketAddr, session: &str, path: &str) -> Value {
    let response = reqwest::Client::new()
        .get(format!("http://{base}{path}"))
        .bearer_auth(session)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "GET {path}: {}", response.status());
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_output_is_the_http_vocabulary() {
    let cluster = Cluster::start().await;
    let (seller_server, seller_http) = cluster.start_seller_with_http().await;
    let (buyer_server, buyer_http) = cluster.start_buyer_with_http().await;
    let state = tempfile::tempdir().unwrap();
    let seller =
        Cli { role: "seller", server: seller_server.addr.to_string(), state: state.path() };
    let buyer = Cli { role: "buyer", server: buyer_server.addr.to_string(), state: state.path() };

    seller.ok("create-account --username ann --password 'long enough'").await;
    let ann = seller.json("login --username ann --password 'long enough'").await;
    let ann = ann["session"].as_str().unwrap().to_owned();
    let register = "register --name 'Blue pen' --category 3 --keyword pen --condition new \
                    --price 1.50 --quantity 10";
    let pen = seller.json(register).await;
    seller
        .json(
            "register --name 'Red pen' --category 3 --keyword pen --condition used \
                 --price 0.99 --quantity 3",
        )
        .await;
    let pen = pen["id"].as_str().unwrap().to_owned();
    assert_eq!(pen, "3:1");

    buyer.ok("create-account --username bea --password 'long enough'").await;
    let bea = buyer.json("login --username bea --password 'long enough'").await;
    let bea = bea["session"].as_str().unwrap().to_owned();
    // What `register --json` prints is what `add` takes.
    let cart = buyer.json(&format!("add {pen}")).await;
    assert_eq!(cart["lines"][0]["quantity"], 1, "no quantity means one");
    buyer.json("feedback 3:2 up").await;

    // The same call through the CLI and over HTTP gives the same JSON, page and all.
    for (cli, http) in [
        (seller.json("items").await, http_get(seller_http, &ann, "/v1/sellers/me/items").await),
        (seller.json("rating").await, http_get(seller_http, &ann, "/v1/sellers/me/rating").await),
        (
            buyer.json("search --category 3 --keyword pen --limit 1").await,
            http_get(buyer_http, &bea, "/v1/items?category=3&keyword=pen&limit=1").await,
        ),
        (buyer.json("item 3:1").await, http_get(buyer_http, &bea, "/v1/items/3:1").await),
        (buyer.json("cart").await, http_get(buyer_http, &bea, "/v1/cart").await),
        (seller.json("categories").await, http_get(seller_http, &ann, "/v1/categories").await),
        (buyer.json("categories").await, http_get(buyer_http, &bea, "/v1/categories").await),
        (
            buyer.json("seller-rating 1").await,
            http_get(buyer_http, &bea, "/v1/sellers/1/rating").await,
        ),
    ] {
        assert_eq!(cli, http);
    }
    let first = buyer.json("search --category 3 --keyword pen --limit 1").await;
    assert_eq!(first["next_offset"], 1, "a full page points to the next");
    let table = buyer.ok("search --category 3 --keyword pen --limit 1").await;
    assert!(table.contains("--offset 1"), "{table}");

    let bought =
        buyer.json("purchase --holder 'Bea B' --number '4111 1111 1111 1111' --expiry 12/99").await;
    let history = http_get(buyer_http, &bea, "/v1/purchases").await;
    assert_eq!(history["purchases"][0], bought);
    assert_eq!(buyer.json("purchases").await, history);
    // And the HTTP API's own types read what the CLI prints.
    let page: agora_frontend::http::model::ItemPage =
        serde_json::from_value(seller.json("items").await).unwrap();
    assert_eq!(page.items.len(), 2);
    seller_server.stop().await;
    buyer_server.stop().await;
    cluster.stop().await;
}

/// `purchase` says the total first, before the card is asked for, and buys only at that
/// total (or the one given with `--total`): a price that changed buys nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purchase_says_its_total_first_and_buys_only_at_it() {
    let cluster = Cluster::start().await;
    let state = tempfile::tempdir().unwrap();
    let seller = Cli { role: "seller", server: cluster.seller_addr(), state: state.path() };
    let buyer = Cli { role: "buyer", server: cluster.buyer_addr(), state: state.path() };
    seller.ok("create-account --username ann --password 'long enough'").await;
    seller.ok("login --username ann --password 'long enough'").await;
    seller
        .ok("register --name Pen --category 3 --keyword pen --condition new --price 1.50 \
             --quantity 10")
        .await;
    buyer.ok("create-account --username bea --password 'long enough'").await;
    buyer.ok("login --username bea --password 'long enough'").await;
    buyer.ok("add 3:1 2").await;
    let card = "--holder 'Bea B' --number '4111 1111 1111 1111' --expiry 12/99";

    // The cart showed 3.00 to the buyer; the seller has raised the price since.
    seller.ok("change-price 3:1 2.00").await;
    let (code, _, err) = buyer.run(&format!("purchase {card} --total 3.00")).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("total to pay: 3.00"), "{err}");
    assert!(err.contains("4.00") && err.contains("nothing was bought or charged"), "{err}");
    assert_eq!(buyer.json("purchases").await["purchases"], serde_json::json!([]));
    assert_eq!(buyer.json("item 3:1").await["quantity"], 10);

    // Without --total: the cart's total now, said before anything is charged.
    let (code, out, err) = buyer.run(&format!("--json purchase {card}")).await;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("total to pay: 4.00"), "{err}");
    let bought: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(bought["total"], "4.00");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_port_is_recognised() {
    let cluster = Cluster::start().await;
    let (seller_server, seller_http) = cluster.start_seller_with_http().await;
    let (buyer_server, buyer_http) = cluster.start_buyer_with_http().await;
    let state = tempfile::tempdir().unwrap();
    for (role, http, port) in [("buyer", buyer_http, 7404), ("seller", seller_http, 7403)] {
        let cli = Cli { role, server: http.to_string(), state: state.path() };
        let (code, _, err) = cli.run("ping").await;
        assert_eq!(code, 1, "{err}");
        let said = format!("this is an HTTP port; the {role} TCP port is {port}");
        assert!(err.contains(&said), "{err}");
    }
    buyer_server.stop().await;
    seller_server.stop().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_asked_for_at_a_terminal_only() {
    let cluster = Cluster::start().await;
    let state = tempfile::tempdir().unwrap();
    let buyer = Cli { role: "buyer", server: cluster.buyer_addr(), state: state.path() };
    buyer.ok("create-account --username bea --password 'long enough'").await;

    // A script, whose standard input is no terminal, is told what to pass.
    let (code, _, err) = buyer.run("login --username bea").await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no password: pass --password or set AGORA_PASSWORD"), "{err}");
    buyer.ok("login --username bea --password 'long enough'").await;
    let (code, _, err) = buyer.run("purchase --holder 'Bea B' --expiry 12/99").await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("pass --number or set AGORA_CARD_NUMBER"), "{err}");
    buyer.ok("logout").await;

    // At a terminal (a pseudo-terminal that `script` provides) the password is asked for
    // and not echoed.
    if std::process::Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped the terminal half: no `script` (util-linux) here");
        return cluster.stop().await;
    }
    let line = format!("{AGORA} buyer --server {} login --username bea", cluster.buyer_addr());
    let mut script = tokio::process::Command::new("script")
        .args(["--quiet", "--return", "--command", &line, "/dev/null"])
        .env("AGORA_STATE_DIR", state.path())
        .env_remove("AGORA_PASSWORD")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = script.stdin.take().unwrap();
    let mut stdout = script.stdout.take().unwrap();
    let mut seen = Vec::new();
    // Type only once the prompt is up: echo is off from then on.
    let prompt = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        let mut buf = [0u8; 256];
        while !String::from_utf8_lossy(&seen).contains("Password: ") {
            let n = tokio::io::AsyncReadExt::read(&mut stdout, &mut buf).await.unwrap();
            assert!(n > 0, "no prompt: {}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert!(prompt.is_ok(), "no prompt within 60 s: {}", String::from_utf8_lossy(&seen));
    tokio::io::AsyncWriteExt::write_all(&mut stdin, b"long enough\n").await.unwrap();
    let mut rest = Vec::new();
    let end = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        tokio::io::AsyncReadExt::read_to_end(&mut stdout, &mut rest),
    )
    .await;
    assert!(end.is_ok(), "login did not finish: {}", String::from_utf8_lossy(&rest));
    seen.extend_from_slice(&rest);
    let shown = String::from_utf8_lossy(&seen);
    assert!(shown.contains("logged in"), "{shown}");
    assert!(!shown.contains("long enough"), "the password was echoed: {shown}");
    assert!(buyer.ok("cart").await.contains("empty"), "the session was saved");
    cluster.stop().await;
}

/// A saved login belongs to the server it was made at. A command sent to another
/// marketplace is told it is not logged in there, by name, and the login made at the
/// first is still there for the next command (before, that refusal deleted it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_session_is_one_servers_and_another_cannot_delete_it() {
    let ours = Cluster::start().await;
    let theirs = Cluster::start().await;
    let state = tempfile::tempdir().unwrap();
    let here = Cli { role: "buyer", server: ours.buyer_addr(), state: state.path() };
    let there = Cli { role: "buyer", server: theirs.buyer_addr(), state: state.path() };
    here.ok("create-account --username bea --password 'long enough'").await;
    here.ok("login --username bea --password 'long enough'").await;

    let (code, _, err) = there.run("cart").await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("not logged in: log in first (server: {})", there.server)),
        "{err}"
    );
    assert!(err.contains(&format!("agora buyer --server {} login", there.server)), "{err}");
    assert!(here.ok("cart").await.contains("empty"), "the session at ours is kept");

    // Logged in at both: their refusal (a logout there) ends theirs, not ours.
    there.ok("create-account --username bea --password 'long enough'").await;
    there.ok("login --username bea --password 'long enough'").await;
    there.ok("logout").await;
    let (code, _, _) = there.run("cart").await;
    assert_eq!(code, 1);
    assert!(here.ok("cart").await.contains("empty"), "ours still logged in");
    ours.stop().await;
    theirs.stop().await;
}

/// A buyer command sent to another server's port (an internal one, or the seller's) says
/// which port the buyer server listens on, as an HTTP port does; a port nothing listens
/// on is said at once, with what to check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_at_the_wrong_port_says_which_is_right() {
    let cluster = Cluster::start().await;
    let state = tempfile::tempdir().unwrap();
    for (server, what) in [
        (cluster.payments.addr.to_string(), "is payments, one of Agora's internal services"),
        (cluster.customer_db.addr.to_string(), "is customer-db, one of Agora's internal services"),
        (cluster.seller_addr(), "is seller-server"),
    ] {
        let buyer = Cli { role: "buyer", server: server.clone(), state: state.path() };
        let (code, _, err) = buyer.run("ping").await;
        assert_eq!(code, 1, "{err}");
        assert!(err.contains(&format!("{server} {what}, not the buyer server")), "{err}");
        assert!(err.contains("the buyer server's TCP port is 7404"), "{err}");
    }
    let dead =
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let buyer = Cli { role: "buyer", server: dead, state: state.path() };
    let (_, _, err) = buyer.run("ping").await;
    assert!(
        err.contains("connection refused (nothing listens there). Is the server running"),
        "{err}"
    );
    cluster.stop().await;
}

/// Under a pseudo-terminal that reports no size (`script` where there is no terminal, as
/// in CI logs) tables keep a readable width instead of one character per column.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_are_readable_on_a_terminal_of_no_size() {
    if std::process::Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: no `script` (util-linux) here");
        return;
    }
    let cluster = Cluster::start().await;
    let state = tempfile::tempdir().unwrap();
    let buyer = Cli { role: "buyer", server: cluster.buyer_addr(), state: state.path() };
    buyer.ok("create-account --username bea --password 'long enough'").await;
    buyer.ok("login --username bea --password 'long enough'").await;
    let line = format!("stty cols 0 rows 0; {AGORA} buyer --server {} categories", buyer.server);
    let out = tokio::process::Command::new("script")
        .args(["--quiet", "--return", "--command", &line, "/dev/null"])
        .env("AGORA_STATE_DIR", state.path())
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("Office and stationery"), "a name split over lines:\n{shown}");
    cluster.stop().await;
}
