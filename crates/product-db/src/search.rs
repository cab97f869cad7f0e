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
//! price is that only the `cap` newest items per keyword compete. Sold-out items leave
//! the index, so every candidate is for sale. With no keywords, the category's items for
//! sale are listed newest first from a partial index.

use std::collections::HashMap;

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

    let mut hits: HashMap<i64, u32> = HashMap::new();
    let mut postings = c
        .prepare_cached(
            "SELECT number FROM postings WHERE keyword = ?1 AND category = ?2 \
             ORDER BY number DESC LIMIT ?3",
        )
        .map_err(db_error)?;
    for keyword in keywords {
        let numbers = postings
            .query_map(params![keyword, category, cap], |r| r.get::<_, i64>(0))
            .map_err(db_error)?;
        for number in numbers {
            *hits.entry(number.map_err(db_error)?).or_default() += 1;
        }
    }
    let mut ranked: Vec<(i64, u32)> = hits.into_iter().collect();
    ranked.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));

    let mut fetch = c
        .prepare_cached(&format!(
            "SELECT {ITEM_COLUMNS} FROM items WHERE number = ?1 AND quantity > 0"
        ))
        .map_err(db_error)?;
    let mut out = Vec::with_capacity(page.limit as usize);
    for (number, _) in ranked.into_iter().skip(page.offset as usize).take(page.limit as usize) {
        // Within one read snapshot a posting always has its item; the filter is a guard.
        let mut rows = fetch.query_map([number], item_from_row).map_err(db_error)?;
        if let Some(item) = rows.next() {
            out.push(item.map_err(db_error)?);
        }
    }
    Ok(out)
}
