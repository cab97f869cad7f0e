-- The customer database. Ids are never reused (AUTOINCREMENT).
CREATE TABLE IF NOT EXISTS accounts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    role          INTEGER NOT NULL,              -- 1 seller, 2 buyer
    username      TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,              -- argon2id PHC string
    items_count   INTEGER NOT NULL DEFAULT 0,    -- units sold (seller) or bought (buyer)
    created_ms    INTEGER NOT NULL,
    UNIQUE (role, username)
);
-- Usernames are unique whatever their letter case (`Ann` is `ann`): new accounts and
-- logins look them up through this index (accounts from before it may differ only in
-- case; login then prefers the exact spelling).
CREATE INDEX IF NOT EXISTS accounts_username_nocase ON accounts (role, username COLLATE NOCASE);

-- Keyed by the SHA-256 of the token; the token itself is never stored.
CREATE TABLE IF NOT EXISTS sessions (
    key          BLOB    PRIMARY KEY,
    account      INTEGER NOT NULL,
    role         INTEGER NOT NULL,
    created_ms   INTEGER NOT NULL,
    last_seen_ms INTEGER NOT NULL
) WITHOUT ROWID;

-- The active cart of each buyer session; `id` keeps the order lines were first added.
CREATE TABLE IF NOT EXISTS session_cart (
    id       INTEGER PRIMARY KEY,
    session  BLOB    NOT NULL,
    category INTEGER NOT NULL,
    number   INTEGER NOT NULL,
    quantity INTEGER NOT NULL CHECK (quantity > 0),
    UNIQUE (session, number)
);

-- The cart a buyer saved, copied into every new session of that buyer.
CREATE TABLE IF NOT EXISTS saved_cart (
    buyer    INTEGER NOT NULL,
    line     INTEGER NOT NULL,
    category INTEGER NOT NULL,
    number   INTEGER NOT NULL,
    quantity INTEGER NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (buyer, line)
) WITHOUT ROWID;

-- Purchase history (written by MakePurchase).
CREATE TABLE IF NOT EXISTS purchases (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    buyer    INTEGER NOT NULL,
    at_ms    INTEGER NOT NULL,
    total    INTEGER NOT NULL                    -- cents
);
CREATE INDEX IF NOT EXISTS purchases_by_buyer ON purchases (buyer, id);

CREATE TABLE IF NOT EXISTS purchase_lines (
    purchase   INTEGER NOT NULL,
    line       INTEGER NOT NULL,
    category   INTEGER NOT NULL,
    number     INTEGER NOT NULL,
    seller     INTEGER NOT NULL,
    name       TEXT    NOT NULL,
    quantity   INTEGER NOT NULL,
    unit_price INTEGER NOT NULL,                 -- cents
    PRIMARY KEY (purchase, line)
) WITHOUT ROWID;

-- The purchase coordinator's log (DESIGN.md): one row per MakePurchase, keyed for
-- retries by (buyer, key). Card details are never stored.
CREATE TABLE IF NOT EXISTS purchase_tx (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    buyer      INTEGER NOT NULL,
    key        TEXT    NOT NULL,
    session    BLOB    NOT NULL,
    state      INTEGER NOT NULL,       -- see storage/purchase_log.rs: State
    cart       BLOB    NOT NULL,       -- encoded cart lines asked for
    lines      BLOB,                   -- encoded lines reserved (with sellers and prices)
    total      INTEGER,                -- cents
    error_code TEXT,
    error      TEXT,
    created_ms INTEGER NOT NULL,
    UNIQUE (buyer, key)
);
-- The numbers below are State::FINISHED and State::HOLDING_CART (a test checks).
CREATE INDEX IF NOT EXISTS purchase_tx_open ON purchase_tx (state) WHERE state NOT IN (5, 7);
-- The purchase (at most one) that holds a session's cart: Started, Reserved or Resolving.
CREATE INDEX IF NOT EXISTS purchase_tx_holding ON purchase_tx (session) WHERE state IN (1, 2, 3);
