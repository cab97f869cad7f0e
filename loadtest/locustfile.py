"""Agora's classic read-heavy workload, over the HTTP APIs of both frontends.

Three reads (search, get item, list a seller's items) per write (register an item, add
to a cart). Half the users are sellers, half buyers; each creates its own account and logs
in once. Before the users start, one seller lists a catalogue of 100 items in 10
categories, so buyers have something to find.

    python3 -m venv target/venv-locust
    target/venv-locust/bin/pip install -r loadtest/requirements.txt
    target/venv-locust/bin/locust -f loadtest/locustfile.py --headless -u 50 -r 10 -t 60s

Sellers and buyers talk to different servers, so do not pass --host (it would send both
to one). The servers default to `agora up`'s; set AGORA_SELLER_HTTP and AGORA_BUYER_HTTP
to point elsewhere (e.g. http://127.0.0.1:8403). AGORA_THINK_TIME sets each user's mean
pause between requests in seconds (default 1; 0 for none).
"""

import os
import random
import uuid

import requests
from locust import HttpUser, between, constant, events, task

SELLER_HTTP = os.environ.get("AGORA_SELLER_HTTP", "http://127.0.0.1:8403")
BUYER_HTTP = os.environ.get("AGORA_BUYER_HTTP", "http://127.0.0.1:8404")
THINK = float(os.environ.get("AGORA_THINK_TIME", "1"))
PASSWORD = "locust password"
CATEGORIES = range(10)
WORDS = [
    "pen", "lamp", "mug", "book", "chair", "desk", "cable", "phone", "shirt", "shoe",
    "clock", "bag", "cup", "plate", "fork", "spoon", "radio", "bike", "kite", "ball",
]

# Items a buyer may put in a cart: the catalogue listed at start, at most 100, so a cart
# never passes its limit of 100 different items.
catalogue = []


def think_time():
    return constant(0) if THINK <= 0 else between(THINK / 2, THINK * 3 / 2)


def new_item(category):
    return {
        "name": f"{random.choice(WORDS)} no. {random.randrange(1000)}",
        "category": category,
        "keywords": random.sample(WORDS, random.randint(1, 3)),
        "condition": random.choice(["new", "used"]),
        "price": f"{random.randint(1, 500)}.{random.randrange(100):02d}",
        "quantity": 1_000_000,
    }


def sign_up(post, role, base=""):
    """Creates an account of `role` with a fresh username and returns its session."""
    credentials = {"username": f"{role}-{uuid.uuid4().hex[:12]}", "password": PASSWORD}
    post(f"{base}/v1/{role}s", json=credentials).raise_for_status()
    login = post(f"{base}/v1/{role}s/sessions", json=credentials)
    login.raise_for_status()
    return login.json()["session"]


@events.test_start.add_listener
def list_catalogue(environment, **_):
    """One seller lists the catalogue buyers search and fill their carts from."""
    http = requests.Session()
    session = sign_up(http.post, "seller", SELLER_HTTP)
    http.headers["Authorization"] = f"Bearer {session}"
    catalogue.clear()
    for n in range(100):
        listed = http.post(f"{SELLER_HTTP}/v1/items", json=new_item(CATEGORIES[n % 10]))
        listed.raise_for_status()
        catalogue.append(listed.json()["id"])


class Seller(HttpUser):
    """Lists items and looks at its own listing: three reads per write."""

    host = SELLER_HTTP
    wait_time = think_time()

    def on_start(self):
        session = sign_up(self.client.post, "seller")
        self.client.headers["Authorization"] = f"Bearer {session}"

    @task(1)
    def register_item(self):
        self.client.post("/v1/items", json=new_item(random.choice(CATEGORIES)))

    @task(3)
    def list_items(self):
        self.client.get("/v1/sellers/me/items?limit=20", name="/v1/sellers/me/items")


class Buyer(HttpUser):
    """Searches and looks at items, and fills a cart: three reads per write."""

    host = BUYER_HTTP
    wait_time = think_time()

    def on_start(self):
        session = sign_up(self.client.post, "buyer")
        self.client.headers["Authorization"] = f"Bearer {session}"
        self.seen = list(catalogue)

    @task(3)
    def search(self):
        keywords = "&".join(f"keyword={w}" for w in random.sample(WORDS, random.randint(1, 2)))
        category = random.choice(CATEGORIES)
        found = self.client.get(f"/v1/items?category={category}&{keywords}", name="/v1/items?category&keyword")
        if found.ok:
            ids = [item["id"] for item in found.json()["items"]]
            self.seen = (ids + self.seen)[:200]

    @task(3)
    def get_item(self):
        if self.seen:
            self.client.get(f"/v1/items/{random.choice(self.seen)}", name="/v1/items/{id}")

    @task(2)
    def add_to_cart(self):
        if catalogue:
            item = {"item": random.choice(catalogue), "quantity": 1}
            self.client.post("/v1/cart/items", json=item)
