//! SearchItemsForSale: the index and the ranking (docs/semantics.md states them for users).
//!
//! Every keyword of an item is a posting `(keyword, category, number)` in a table whose
//! primary key is that triple, so the postings of one keyword in one category are a range
//! of the B-tree, newest item last. A search reads, for each query keyword, at most
//! `cap` postings from the newest end of that range, counts how many query keywords each
//! item matched, and ranks by:
//!
//! 1. more query keywords matched first;
//! 2. newer listing (higher number) first.
//!
//! Reading a bounded range per keyword keeps the cost flat as the catalogue grows; the
//! price is that only the `cap` newest items per keyword compete. A one-keyword search
//! reads only the page it returns (its ranking is newest first). Counting and ranking
//! happen inside SQLite, in one statement that also fetches the items. Sold-out items leave
//! the index, so every candidate is for sale. With no keywords, the category's items for
//! sale are listed newest first from a partial index.

use agora_domain::{Item, Page};
use agora_proto::ApiError;
use agora_store::db_error;
use rusqlite::{Connection, params};

use crate::handler::{ITEM_COLUMNS, item_from_row};

/// One page of the category's items for sale matching `keywords`, best match first.
pub(crate) fn search(
    c: &Connection,
    category: u32,
    keywords: &[String],
    page: Page,
    cap: u32,
) -> Result<Vec<Item>, ApiError> {
    if keywords.is_empty() {
        let mut st = c
            .prepare_cached(&format!(
                "SELECT {ITEM_COLUMNS} FROM items WHERE category = ?1 AND quantity > 0 \
                 ORDER BY number DESC LIMIT ?2 OFFSET ?3"
            ))
            .map_err(db_error)?;
        let rows = st
            .query_map(params![category, page.limit, page.offset], item_from_row)
            .map_err(db_error)?;
        return rows.collect::<Result<_, _>>().map_err(db_error);
    }

    // One keyword: every candidate matches once, so the ranking is newest first and the
    // page is the first `offset + limit` postings of the range: nothing else is read.
    if let [keyword] = keywords {
        let mut st = c
            .prepare_cached(&format!(
                "SELECT {} FROM postings p JOIN items i ON i.number = p.number \
                 WHERE p.keyword = ?1 AND p.category = ?2 AND i.quantity > 0 \
                 ORDER BY p.number DESC LIMIT ?3 OFFSET ?4",
                qualified("i")
            ))
            .map_err(db_error)?;
        let rows = st
            .query_map(params![keyword, category, page.limit, page.offset], item_from_row)
            .map_err(db_error)?;
        return rows.collect::<Result<_, _>>().map_err(db_error);
    }

    // Several: each keyword's newest `cap` postings, counted per item and ranked, all
    // inside SQLite (one statement per number of keywords, prepared once).
    let windows: Vec<String> = (0..keywords.len())
        .map(|k| {
            format!(
                "SELECT number FROM (SELECT number FROM postings WHERE keyword = ?{} AND category = ?1 \
                 ORDER BY number DESC LIMIT ?2)",
                k + 5
            )
        })
        .collect();
    let sql = format!(
        // The page is cut before the join, so only its items are read. (Sold-out items
        // are not in the index, so the join's filter never shortens a page.)
        "SELECT {} FROM (SELECT number, count(*) AS hits FROM ({}) GROUP BY number \
         ORDER BY hits DESC, number DESC LIMIT ?3 OFFSET ?4) r \
         JOIN items i ON i.number = r.number WHERE i.quantity > 0 \
         ORDER BY r.hits DESC, r.number DESC",
        qualified("i"),
        windows.join(" UNION ALL ")
    );
    let mut st = c.prepare_cached(&sql).map_err(db_error)?;
    let mut bound: Vec<&dyn rusqlite::ToSql> = vec![&category, &cap, &page.limit, &page.offset];
    for keyword in keywords {
        bound.push(keyword);
    }
    let rows = st.query_map(bound.as_slice(), item_from_row).map_err(db_error)?;
    rows.collect::<Result<_, _>>().map_err(db_error)
}

/// [`ITEM_COLUMNS`] prefixed with a table alias.
fn qualified(alias: &str) -> String {
    ITEM_COLUMNS.split(", ").map(|col| format!("{alias}.{col}")).collect::<Vec<_>>().join(", ")
}
