-- The product database. `number` is the unique part of an item id; ids are never reused.
CREATE TABLE IF NOT EXISTS items (
    number    INTEGER PRIMARY KEY AUTOINCREMENT,
    category  INTEGER NOT NULL,
    seller    INTEGER NOT NULL,
    name      TEXT    NOT NULL,
    keywords  TEXT    NOT NULL,                  -- space-separated, lower-case
    condition INTEGER NOT NULL,                  -- 0 new, 1 used
    price     INTEGER NOT NULL,                  -- cents
    quantity  INTEGER NOT NULL CHECK (quantity >= 0),
    up        INTEGER NOT NULL DEFAULT 0,
    down      INTEGER NOT NULL DEFAULT 0,
    listed_ms INTEGER NOT NULL
);
-- A seller's items still for sale, and a category's, newest first.
CREATE INDEX IF NOT EXISTS items_for_sale_by_seller ON items (seller, number) WHERE quantity > 0;
CREATE INDEX IF NOT EXISTS items_for_sale_by_category ON items (category, number) WHERE quantity > 0;

-- The search index: for each keyword of each item for sale, its number, per
-- (keyword, category) in blocks of up to 128 ascending numbers packed as varint deltas,
-- keyed by their first number (src/postings.rs).
CREATE TABLE IF NOT EXISTS posting_blocks (
    keyword  TEXT    NOT NULL,
    category INTEGER NOT NULL,
    first    INTEGER NOT NULL,
    numbers  BLOB    NOT NULL,
    PRIMARY KEY (keyword, category, first)
) WITHOUT ROWID;

-- One vote per buyer per item; voting again replaces the vote.
CREATE TABLE IF NOT EXISTS votes (
    number INTEGER NOT NULL,
    buyer  INTEGER NOT NULL,
    up     INTEGER NOT NULL,                     -- 1 up, 0 down
    PRIMARY KEY (number, buyer)
) WITHOUT ROWID;

-- Votes summed over each seller's items, kept in step with `votes`.
CREATE TABLE IF NOT EXISTS seller_feedback (
    seller INTEGER PRIMARY KEY,
    up     INTEGER NOT NULL DEFAULT 0,
    down   INTEGER NOT NULL DEFAULT 0
);

-- Units taken off sale for a purchase, by the purchase's id (from the customer database,
-- which coordinates purchases). `lines` is the encoded list of what was reserved, with
-- each line's seller, name and unit price at that moment.
CREATE TABLE IF NOT EXISTS reservations (
    purchase    INTEGER PRIMARY KEY,
    state       INTEGER NOT NULL,                -- 1 reserved, 2 confirmed (sold), 3 released
    lines       BLOB    NOT NULL,
    reserved_ms INTEGER NOT NULL DEFAULT 0       -- when (0: before this was recorded)
);
-- The reservations still held, for the sweep of those no purchase claims (reserve.rs).
CREATE INDEX IF NOT EXISTS reservations_held ON reservations (purchase) WHERE state = 1;

-- Items their seller took down to 0 units: withdrawn for good. Units of a purchase that
-- is cancelled later do not come back on sale.
CREATE TABLE IF NOT EXISTS withdrawn (
    number INTEGER PRIMARY KEY
);
