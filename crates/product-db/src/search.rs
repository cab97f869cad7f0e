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
//! reads only the page it returns (its ranking is newest first). With several keywords,
//! each keyword's window of item numbers is read from the index alone, the numbers are
//! counted and ranked here (cheaper than SQLite's GROUP BY in a temporary B-tree), and only
//! the page's items are read. Sold-out items leave the index, so every candidate is for
//! sale. With no keywords, the category's items for
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

    // Several: each keyword's newest `cap` postings (numbers only, straight from the index),
    // counted and ranked here, then only the page's items read.
    let mut window = c
        .prepare_cached(
            "SELECT number FROM postings WHERE keyword = ?1 AND category = ?2 \
             ORDER BY number DESC LIMIT ?3",
        )
        .map_err(db_error)?;
    let mut windows: Vec<Vec<i64>> = Vec::with_capacity(keywords.len());
    for keyword in keywords {
        let rows = window
            .query_map(params![keyword, category, cap], |r| r.get::<_, i64>(0))
            .map_err(db_error)?;
        windows.push(rows.collect::<Result<_, _>>().map_err(db_error)?);
    }
    let ranked = rank(&windows);
    let mut item = c
        .prepare_cached(&format!(
            "SELECT {ITEM_COLUMNS} FROM items WHERE number = ?1 AND quantity > 0"
        ))
        .map_err(db_error)?;
    let mut items = Vec::with_capacity(page.limit as usize);
    for (_, number) in ranked.into_iter().skip(page.offset as usize).take(page.limit as usize) {
        // Sold-out items are not in the index, so this finds every item in the same
        // snapshot; `optional` only guards the impossible.
        use rusqlite::OptionalExtension;
        if let Some(found) = item.query_row([number], item_from_row).optional().map_err(db_error)? {
            items.push(found);
        }
    }
    Ok(items)
}

/// `(hits, number)` for each distinct number in `windows` (each newest first, no number
/// twice), where `hits` is how many windows hold it: most hits first, then newest first.
/// A merge of the windows, then one pass per hit count: no sorting.
fn rank(windows: &[Vec<i64>]) -> Vec<(usize, i64)> {
    let mut next = vec![0usize; windows.len()];
    let mut merged: Vec<(usize, i64)> = Vec::with_capacity(windows.iter().map(Vec::len).sum());
    loop {
        let newest = windows.iter().zip(&next).filter_map(|(w, &i)| w.get(i)).max();
        let Some(&number) = newest else { break };
        let mut hits = 0;
        for (w, i) in windows.iter().zip(next.iter_mut()) {
            if w.get(*i) == Some(&number) {
                *i += 1;
                hits += 1;
            }
        }
        merged.push((hits, number));
    }
    let mut ranked = Vec::with_capacity(merged.len());
    for hits in (1..=windows.len()).rev() {
        ranked.extend(merged.iter().filter(|&&(h, _)| h == hits));
    }
    ranked
}

/// [`ITEM_COLUMNS`] prefixed with a table alias.
fn qualified(alias: &str) -> String {
    ITEM_COLUMNS.split(", ").map(|col| format!("{alias}.{col}")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::rank;

    #[test]
    fn more_keywords_matched_first_then_newest() {
        assert_eq!(
            rank(&[vec![9, 7, 5, 3, 1], vec![9, 3], vec![3]]),
            vec![(3, 3), (2, 9), (1, 7), (1, 5), (1, 1)]
        );
        // The same keyword twice counts twice, as two keywords would.
        assert_eq!(rank(&[vec![8, 2], vec![8, 2], vec![4]]), vec![(2, 8), (2, 2), (1, 4)]);
        assert_eq!(rank(&[vec![], vec![]]), Vec::<(usize, i64)>::new());
        assert_eq!(rank(&[]), Vec::<(usize, i64)>::new());
    }
}
