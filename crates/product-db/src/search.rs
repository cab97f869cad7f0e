//! SearchItemsForSale: the ranking (docs/semantics.md states it for users).
//!
//! The index ([`postings`]) keeps, for each keyword in each category, the numbers of the
//! items for sale listed with it, and gives the newest first. A search reads, for each
//! query keyword, at most `cap` numbers from that newest end, counts how many query
//! keywords each item matched, and ranks by:
//!
//! 1. more query keywords matched first;
//! 2. newer listing (higher number) first.
//!
//! Reading a bounded window per keyword bounds the cost as the catalogue grows; the price
//! is that only the `cap` newest items per keyword compete. A one-keyword search reads
//! only the numbers of the page it returns (its ranking is newest first). With several
//! keywords, the windows (each newest first) are merged and counted here, and only the
//! page's items are read. Sold-out items leave the index, so every candidate is for sale.
//! With no keywords, the category's items for sale are listed newest first from a partial
//! index.

use std::fmt::Write as _;

use agora_domain::{Item, Page};
use agora_proto::ApiError;
use agora_replication::db_error;
use rusqlite::{Connection, params};

use crate::items::{ITEM_COLUMNS, item_from_row};
use crate::postings;

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
    // page is the keyword's newest `offset + limit` numbers.
    if let [keyword] = keywords {
        let want = (page.offset as usize).saturating_add(page.limit as usize);
        let numbers = postings::newest(c, keyword, category, want).map_err(db_error)?;
        return items(c, numbers.into_iter().skip(page.offset as usize));
    }

    // Several: each keyword's newest `cap` numbers, counted and ranked here, then only the
    // page's items read.
    let mut windows: Vec<Vec<i64>> = Vec::with_capacity(keywords.len());
    for keyword in keywords {
        windows.push(postings::newest(c, keyword, category, cap as usize).map_err(db_error)?);
    }
    let ranked = rank(&windows);
    let page_numbers =
        ranked.into_iter().skip(page.offset as usize).take(page.limit as usize).map(|(_, n)| n);
    items(c, page_numbers)
}

/// The items numbered `numbers`, in that order, read with one statement (the numbers go
/// in as a JSON array: one prepared statement serves every page length).
fn items(c: &Connection, numbers: impl Iterator<Item = i64>) -> Result<Vec<Item>, ApiError> {
    let order: Vec<i64> = numbers.collect();
    if order.is_empty() {
        return Ok(Vec::new());
    }
    let mut list = String::with_capacity(order.len() * 8 + 2);
    list.push('[');
    for (i, number) in order.iter().enumerate() {
        if i > 0 {
            list.push(',');
        }
        // Writing to a String cannot fail.
        let _ = write!(list, "{number}");
    }
    list.push(']');
    let mut st = c
        .prepare_cached(&format!(
            "SELECT {ITEM_COLUMNS} FROM items \
             WHERE number IN (SELECT value FROM json_each(?1)) AND quantity > 0"
        ))
        .map_err(db_error)?;
    // Where each number goes in the answer, looked up by number.
    let mut slot: Vec<(i64, usize)> = order.iter().copied().zip(0..).collect();
    slot.sort_unstable();
    let mut placed: Vec<Option<Item>> = vec![None; order.len()];
    for item in st.query_map([list], item_from_row).map_err(db_error)? {
        let item = item.map_err(db_error)?;
        let number = item.id.number as i64;
        if let Ok(i) = slot.binary_search_by_key(&number, |&(n, _)| n) {
            placed[slot[i].1] = Some(item);
        }
    }
    // Sold-out items are not in the index, so every number is found in the same snapshot.
    Ok(placed.into_iter().flatten().collect())
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
