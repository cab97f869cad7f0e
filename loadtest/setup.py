#!/usr/bin/env python3
"""Prepares a fresh Agora for a test run over HTTP: a seller with one item for sale and a
buyer with 1000 units of it in the cart, both logged in. Prints shell assignments (AGORA_SELLER_SESSION, AGORA_BUYER_SESSION,
AGORA_SELLER_ID, AGORA_ITEM) for `eval`. Standard library only."""

import argparse
import json
import sys
import urllib.error
import urllib.request


def call(method, url, body=None, session=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if session:
        request.add_header("Authorization", f"Bearer {session}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read()
            return json.loads(text) if text else None
    except urllib.error.HTTPError as e:
        sys.exit(f"setup: {method} {url} answered {e.code}: {e.read().decode(errors='replace')}")


def account(base, role, username, password):
    """Creates the account (or finds it taken) and logs in; returns (session, id)."""
    data = json.dumps({"username": username, "password": password}).encode()
    request = urllib.request.Request(
        f"{base}/v1/{role}s", data=data, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        urllib.request.urlopen(request, timeout=30).read()
    except urllib.error.HTTPError as e:
        if e.code != 409:  # taken: an earlier run made it
            sys.exit(f"setup: creating {role} {username} answered {e.code}: {e.read().decode()}")
    login = call("POST", f"{base}/v1/{role}s/sessions", {"username": username, "password": password})
    return login["session"], login[f"{role}_id"]


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seller", default="http://127.0.0.1:8403", help="seller HTTP API base URL")
    parser.add_argument("--buyer", default="http://127.0.0.1:8404", help="buyer HTTP API base URL")
    parser.add_argument(
        "--items", type=int, default=0, help="more items to list in category 1, keyword pen"
    )
    args = parser.parse_args()
    password = "setup password"
    seller_session, seller_id = account(args.seller, "seller", "setup-seller", password)
    item = {
        "name": "Setup pen",
        "category": 1,
        "keywords": ["pen", "setup"],
        "condition": "new",
        "price": "1.50",
        "quantity": 1000000,
    }
    item_id = call("POST", f"{args.seller}/v1/items", item, seller_session)["id"]
    words = ["blue", "red", "green", "black", "gel", "ink", "fine", "bold"]
    for n in range(args.items):
        more = dict(item, name=f"Pen {n}", keywords=["pen", words[n % len(words)]])
        call("POST", f"{args.seller}/v1/items", more, seller_session)
    buyer_session, _ = account(args.buyer, "buyer", "setup-buyer", password)
    call("POST", f"{args.buyer}/v1/cart/items", {"item": item_id, "quantity": 1000}, buyer_session)
    print(f"AGORA_SELLER_SESSION={seller_session}")
    print(f"AGORA_SELLER_ID={seller_id}")
    print(f"AGORA_ITEM={item_id}")
    print(f"AGORA_BUYER_SESSION={buyer_session}")


if __name__ == "__main__":
    main()
