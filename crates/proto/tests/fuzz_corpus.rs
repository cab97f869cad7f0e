//! The fuzz targets' committed seeds (fuzz/corpus/, written by fuzz/src/seeds.rs) still
//! decode with today's message types, and between them hold every variant of every
//! message, so fuzzing starts from each shape real traffic has. A message type that
//! changes without its seeds being written again (fuzz/README.md says how) fails here.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;

use agora_proto::ApiError;
use agora_proto::messages::{customer, front, payments, product};
use serde::de::DeserializeOwned;

/// The `seed-*` inputs of one fuzz target, decoded as `T`, each with its file name.
fn seeds<T: DeserializeOwned>(target: &str) -> Vec<(String, T)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target);
    let mut seeds = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("seed-") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        match postcard::from_bytes::<T>(&bytes) {
            Ok(value) => seeds.push((name, value)),
            Err(e) => panic!("{target}/{name} no longer decodes ({e}): write the seeds again"),
        }
    }
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

/// Checks that `seen` names every variant in `all`.
fn covers(target: &str, seen: impl IntoIterator<Item = &'static str>, all: &[&'static str]) {
    let seen: BTreeSet<_> = seen.into_iter().collect();
    let missing: Vec<_> = all.iter().filter(|v| !seen.contains(*v)).collect();
    assert!(missing.is_empty(), "{target}: no seed for {missing:?}");
}

/// The Ok values of decoded responses; each target also seeds refusals.
fn answers<T>(seeds: Vec<(String, Result<T, ApiError>)>) -> Vec<T> {
    let (ok, refused): (Vec<_>, Vec<_>) = seeds.into_iter().partition(|(_, r)| r.is_ok());
    assert!(!refused.is_empty(), "no refusal among the seeds");
    ok.into_iter().filter_map(|(_, r)| r.ok()).collect()
}

// Each `*_variant` match has no wildcard: a new variant does not compile until it is named
// here, and then this test wants a seed for it.

fn customer_request(r: &customer::Request) -> &'static str {
    use customer::Request::*;
    match r {
        Ping => "Ping",
        CreateAccount { .. } => "CreateAccount",
        Login { .. } => "Login",
        Logout { .. } => "Logout",
        Authenticate { .. } => "Authenticate",
        GetSeller { .. } => "GetSeller",
        GetCart { .. } => "GetCart",
        AddToCart { .. } => "AddToCart",
        RemoveFromCart { .. } => "RemoveFromCart",
        SaveCart { .. } => "SaveCart",
        ClearCart { .. } => "ClearCart",
        Purchases { .. } => "Purchases",
        Purchase { .. } => "Purchase",
        PurchaseAt { .. } => "PurchaseAt",
    }
}
const CUSTOMER_REQUESTS: &[&str] = &[
    "Ping",
    "CreateAccount",
    "Login",
    "Logout",
    "Authenticate",
    "GetSeller",
    "GetCart",
    "AddToCart",
    "RemoveFromCart",
    "SaveCart",
    "ClearCart",
    "Purchases",
    "Purchase",
    "PurchaseAt",
];

fn customer_response(r: &customer::Response) -> &'static str {
    use customer::Response::*;
    match r {
        Pong => "Pong",
        Account { .. } => "Account",
        LoggedIn { .. } => "LoggedIn",
        Authenticated { .. } => "Authenticated",
        Seller { .. } => "Seller",
        Cart(_) => "Cart",
        Purchases(_) => "Purchases",
        Purchased(_) => "Purchased",
        Done => "Done",
    }
}
const CUSTOMER_RESPONSES: &[&str] = &[
    "Pong",
    "Account",
    "LoggedIn",
    "Authenticated",
    "Seller",
    "Cart",
    "Purchases",
    "Purchased",
    "Done",
];

fn product_request(r: &product::Request) -> &'static str {
    use product::Request::*;
    match r {
        Ping => "Ping",
        RegisterItem { .. } => "RegisterItem",
        ChangePrice { .. } => "ChangePrice",
        RemoveUnits { .. } => "RemoveUnits",
        SellerItems { .. } => "SellerItems",
        Search { .. } => "Search",
        GetItem { .. } => "GetItem",
        Vote { .. } => "Vote",
        SellerFeedback { .. } => "SellerFeedback",
        Reserve { .. } => "Reserve",
        Release { .. } => "Release",
        Confirm { .. } => "Confirm",
        Held { .. } => "Held",
        CountItems { .. } => "CountItems",
        GetItems { .. } => "GetItems",
    }
}
const PRODUCT_REQUESTS: &[&str] = &[
    "Ping",
    "RegisterItem",
    "ChangePrice",
    "RemoveUnits",
    "SellerItems",
    "Search",
    "GetItem",
    "Vote",
    "SellerFeedback",
    "Reserve",
    "Release",
    "Confirm",
    "Held",
    "CountItems",
    "GetItems",
];

fn product_response(r: &product::Response) -> &'static str {
    use product::Response::*;
    match r {
        Pong => "Pong",
        ItemId(_) => "ItemId",
        Quantity(_) => "Quantity",
        Items(_) => "Items",
        Item(_) => "Item",
        Feedback(_) => "Feedback",
        Reserved(_) => "Reserved",
        Released(_) => "Released",
        Done => "Done",
        Counts(_) => "Counts",
    }
}
const PRODUCT_RESPONSES: &[&str] = &[
    "Pong", "ItemId", "Quantity", "Items", "Item", "Feedback", "Reserved", "Released", "Done",
    "Counts",
];

fn seller_request(r: &front::SellerRequest) -> &'static str {
    use front::SellerRequest::*;
    match r {
        Ping { .. } => "Ping",
        CreateAccount { .. } => "CreateAccount",
        Login { .. } => "Login",
        Logout { .. } => "Logout",
        GetRating { .. } => "GetRating",
        RegisterItem { .. } => "RegisterItem",
        ChangePrice { .. } => "ChangePrice",
        RemoveUnits { .. } => "RemoveUnits",
        ListItems { .. } => "ListItems",
        Categories { .. } => "Categories",
    }
}
const SELLER_REQUESTS: &[&str] = &[
    "Ping",
    "CreateAccount",
    "Login",
    "Logout",
    "GetRating",
    "RegisterItem",
    "ChangePrice",
    "RemoveUnits",
    "ListItems",
    "Categories",
];

fn buyer_request(r: &front::BuyerRequest) -> &'static str {
    use front::BuyerRequest::*;
    match r {
        Ping { .. } => "Ping",
        CreateAccount { .. } => "CreateAccount",
        Login { .. } => "Login",
        Logout { .. } => "Logout",
        Search { .. } => "Search",
        GetItem { .. } => "GetItem",
        AddToCart { .. } => "AddToCart",
        RemoveFromCart { .. } => "RemoveFromCart",
        SaveCart { .. } => "SaveCart",
        ClearCart { .. } => "ClearCart",
        DisplayCart { .. } => "DisplayCart",
        ProvideFeedback { .. } => "ProvideFeedback",
        GetSellerRating { .. } => "GetSellerRating",
        GetPurchases { .. } => "GetPurchases",
        MakePurchase { .. } => "MakePurchase",
        MakePurchaseAt { .. } => "MakePurchaseAt",
        Categories { .. } => "Categories",
    }
}
const BUYER_REQUESTS: &[&str] = &[
    "Ping",
    "CreateAccount",
    "Login",
    "Logout",
    "Search",
    "GetItem",
    "AddToCart",
    "RemoveFromCart",
    "SaveCart",
    "ClearCart",
    "DisplayCart",
    "ProvideFeedback",
    "GetSellerRating",
    "GetPurchases",
    "MakePurchase",
    "MakePurchaseAt",
    "Categories",
];

fn front_response(r: &front::Response) -> &'static str {
    use front::Response::*;
    match r {
        Pong => "Pong",
        Account { .. } => "Account",
        LoggedIn { .. } => "LoggedIn",
        Rating(_) => "Rating",
        ItemId(_) => "ItemId",
        Quantity(_) => "Quantity",
        Items(_) => "Items",
        Item(_) => "Item",
        Cart(_) => "Cart",
        Feedback(_) => "Feedback",
        Purchases(_) => "Purchases",
        Purchase(_) => "Purchase",
        Done => "Done",
        Categories(_) => "Categories",
    }
}
const FRONT_RESPONSES: &[&str] = &[
    "Pong",
    "Account",
    "LoggedIn",
    "Rating",
    "ItemId",
    "Quantity",
    "Items",
    "Item",
    "Cart",
    "Feedback",
    "Purchases",
    "Purchase",
    "Done",
    "Categories",
];

fn payments_request(r: &payments::Request) -> &'static str {
    use payments::Request::*;
    match r {
        Ping => "Ping",
        Charge { .. } => "Charge",
        Resolve { .. } => "Resolve",
        Lookup { .. } => "Lookup",
    }
}
const PAYMENTS_REQUESTS: &[&str] = &["Ping", "Charge", "Resolve", "Lookup"];

fn payments_response(r: &payments::Response) -> &'static str {
    use payments::{Outcome, Response};
    match r {
        Response::Pong => "Pong",
        Response::Charge(Outcome::Approved { .. }) => "Approved",
        Response::Charge(Outcome::Declined { .. }) => "Declined",
        Response::Charge(Outcome::Cancelled) => "Cancelled",
        Response::NoCharge => "NoCharge",
    }
}
const PAYMENTS_RESPONSES: &[&str] = &["Pong", "Approved", "Declined", "Cancelled", "NoCharge"];

#[test]
fn every_request_variant_has_a_seed_that_decodes() {
    let customer = seeds::<customer::Request>("customer_request");
    let names = customer.iter().map(|(_, r)| customer_request(r));
    covers("customer_request", names, CUSTOMER_REQUESTS);
    let product = seeds::<product::Request>("product_request");
    covers("product_request", product.iter().map(|(_, r)| product_request(r)), PRODUCT_REQUESTS);
    let seller = seeds::<front::SellerRequest>("seller_request");
    covers("seller_request", seller.iter().map(|(_, r)| seller_request(r)), SELLER_REQUESTS);
    let buyer = seeds::<front::BuyerRequest>("buyer_request");
    covers("buyer_request", buyer.iter().map(|(_, r)| buyer_request(r)), BUYER_REQUESTS);
    let pay = seeds::<payments::Request>("payments_request");
    covers("payments_request", pay.iter().map(|(_, r)| payments_request(r)), PAYMENTS_REQUESTS);
}

#[test]
fn every_response_variant_and_a_refusal_have_seeds_that_decode() {
    let customer = answers(seeds::<Result<customer::Response, ApiError>>("customer_response"));
    covers("customer_response", customer.iter().map(customer_response), CUSTOMER_RESPONSES);
    let product = answers(seeds::<Result<product::Response, ApiError>>("product_response"));
    covers("product_response", product.iter().map(product_response), PRODUCT_RESPONSES);
    let front = answers(seeds::<Result<front::Response, ApiError>>("front_response"));
    covers("front_response", front.iter().map(front_response), FRONT_RESPONSES);
    let pay = answers(seeds::<Result<payments::Response, ApiError>>("payments_response"));
    covers("payments_response", pay.iter().map(payments_response), PAYMENTS_RESPONSES);
    seeds::<ApiError>("goodbye");
}
