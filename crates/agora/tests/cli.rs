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
    seller.ok("change-price 3:1 1.75").await;
    assert!(seller.ok("remove-units 3:2 1").await.contains('2'));
    let items = seller.json("items").await;
    assert_eq!(items.as_array().unwrap().len(), 2);
    assert_eq!(items[0]["price"], 175);
    assert_eq!(items[1]["quantity"], 2);
    let table = seller.ok("items").await;
    assert!(table.contains("Blue pen") && table.contains("1.75"), "{table}");

    buyer.ok("create-account --username bea --password 'long enough'").await;
    buyer.ok("login --username bea --password 'long enough'").await;
    let found = buyer.json("search --category 3 --keyword pen --keyword blue").await;
    assert_eq!(found[0]["name"], "Blue pen");
    assert_eq!(found.as_array().unwrap().len(), 2);
    assert!(buyer.ok("item 3:2").await.contains("Red pen"));
    buyer.ok("add 3:1 2").await;
    buyer.ok("add 3:2 1").await;
    buyer.ok("remove 3:2 1").await;
    let cart = buyer.json("cart").await;
    assert_eq!(cart.as_array().unwrap().len(), 1);
    assert_eq!(cart[0]["quantity"], 2);
    buyer.ok("save-cart").await;
    buyer.ok("clear-cart").await;
    assert_eq!(buyer.json("cart").await.as_array().unwrap().len(), 0);
    buyer.ok("feedback 3:1 up").await;
    let rating = buyer.json("seller-rating 1").await;
    assert_eq!(rating["feedback"]["up"], 1);
    assert_eq!(seller.json("rating").await["feedback"]["up"], 1);
    assert_eq!(buyer.json("purchases").await.as_array().unwrap().len(), 0);
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
