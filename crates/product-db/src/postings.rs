//! The search index: for each keyword of each item for sale, the item's number, kept per
//! (keyword, category) as sorted lists cut into blocks.
//!
//! A block is one row of `posting_blocks`: up to [`BLOCK`] item numbers in ascending order,
//! packed as varints (the first number, then each one's distance from the one before),
//! keyed by `(keyword, category, first number)`. A keyword's newest postings in a category
//! are then its last blocks, so a search reads a window of several hundred numbers as a
//! few rows and decodes them here, rather than stepping through one row per posting.
//!
//! Items are numbered in the order they are listed, so a new item's number goes at the
//! end of its keywords' newest blocks; a full newest block is left as it is and a new one
//! started. An item coming back on sale (units returned) goes into the middle, and a block
//! that grows past [`BLOCK`] is split in two. Every change reads and rewrites one block
//! (two when it splits), inside the caller's write transaction.

use rusqlite::{Connection, OptionalExtension, params};

/// Most numbers in one block: a packed block stays well under what SQLite keeps inside a
/// 4 KiB page (a few bytes per number).
pub(crate) const BLOCK: usize = 128;

/// The block of `(keyword, category)` that holds `number` or would: the one with the
/// greatest first number at most `number`, else the lowest block.
fn block_for(
    c: &Connection,
    keyword: &str,
    category: u32,
    number: i64,
) -> rusqlite::Result<Option<(i64, Vec<i64>)>> {
    let block =
        |r: &rusqlite::Row<'_>| Ok((r.get::<_, i64>(0)?, decode(r.get_ref(1)?.as_blob()?)?));
    let below = c
        .prepare_cached(
            "SELECT first, numbers FROM posting_blocks WHERE keyword = ?1 AND category = ?2 \
             AND first <= ?3 ORDER BY first DESC LIMIT 1",
        )?
        .query_row(params![keyword, category, number], block)
        .optional()?;
    if below.is_some() {
        return Ok(below);
    }
    c.prepare_cached(
        "SELECT first, numbers FROM posting_blocks WHERE keyword = ?1 AND category = ?2 \
         ORDER BY first LIMIT 1",
    )?
    .query_row(params![keyword, category], block)
    .optional()
}

fn insert_block(
    c: &Connection,
    keyword: &str,
    category: u32,
    numbers: &[i64],
) -> rusqlite::Result<()> {
    let Some(&first) = numbers.first() else { return Ok(()) };
    c.prepare_cached(
        "INSERT INTO posting_blocks (keyword, category, first, numbers) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![keyword, category, first, encode(numbers)?])?;
    Ok(())
}

fn delete_block(c: &Connection, keyword: &str, category: u32, first: i64) -> rusqlite::Result<()> {
    c.prepare_cached(
        "DELETE FROM posting_blocks WHERE keyword = ?1 AND category = ?2 AND first = ?3",
    )?
    .execute(params![keyword, category, first])?;
    Ok(())
}

/// Writes `numbers` back as the block that was keyed by `first`.
fn rewrite_block(
    c: &Connection,
    keyword: &str,
    category: u32,
    first: i64,
    numbers: &[i64],
) -> rusqlite::Result<()> {
    if numbers.first() == Some(&first) {
        c.prepare_cached(
            "UPDATE posting_blocks SET numbers = ?4 \
             WHERE keyword = ?1 AND category = ?2 AND first = ?3",
        )?
        .execute(params![keyword, category, first, encode(numbers)?])?;
        return Ok(());
    }
    delete_block(c, keyword, category, first)?;
    insert_block(c, keyword, category, numbers)
}

/// Puts `number` into the index of `keyword` in `category` (nothing if it is there).
pub(crate) fn add(
    c: &Connection,
    keyword: &str,
    category: u32,
    number: i64,
) -> rusqlite::Result<()> {
    let Some((first, mut numbers)) = block_for(c, keyword, category, number)? else {
        return insert_block(c, keyword, category, &[number]);
    };
    let Err(at) = numbers.binary_search(&number) else { return Ok(()) };
    if at == numbers.len() && numbers.len() >= BLOCK {
        // The usual case, a new listing past a full block: start the next block.
        return insert_block(c, keyword, category, &[number]);
    }
    numbers.insert(at, number);
    if numbers.len() <= BLOCK {
        return rewrite_block(c, keyword, category, first, &numbers);
    }
    let upper = numbers.split_off(numbers.len() / 2);
    rewrite_block(c, keyword, category, first, &numbers)?;
    insert_block(c, keyword, category, &upper)
}

/// Takes `number` out of the index of `keyword` in `category` (nothing if it is not there).
pub(crate) fn remove(
    c: &Connection,
    keyword: &str,
    category: u32,
    number: i64,
) -> rusqlite::Result<()> {
    let Some((first, mut numbers)) = block_for(c, keyword, category, number)? else {
        return Ok(());
    };
    let Ok(at) = numbers.binary_search(&number) else { return Ok(()) };
    numbers.remove(at);
    if numbers.is_empty() {
        return delete_block(c, keyword, category, first);
    }
    rewrite_block(c, keyword, category, first, &numbers)
}

/// Up to `want` numbers of `keyword` in `category`, newest (highest) first.
pub(crate) fn newest(
    c: &Connection,
    keyword: &str,
    category: u32,
    want: usize,
) -> rusqlite::Result<Vec<i64>> {
    let mut st = c.prepare_cached(
        "SELECT numbers FROM posting_blocks WHERE keyword = ?1 AND category = ?2 \
         ORDER BY first DESC",
    )?;
    let mut rows = st.query(params![keyword, category])?;
    let mut out = Vec::new();
    while out.len() < want {
        let Some(row) = rows.next()? else { break };
        let blob = row.get_ref(0)?.as_blob()?;
        out.extend(decode(blob)?.into_iter().rev());
    }
    out.truncate(want);
    Ok(out)
}

/// Adds `numbers` (ascending, no repeats) to the index of `keyword` in `category` as whole
/// blocks, for bulk loads: none of them may be indexed yet, and none may fall inside the
/// range of an existing block (new listings, numbered above everything indexed, or an
/// empty index).
pub(crate) fn write_all(
    c: &Connection,
    keyword: &str,
    category: u32,
    numbers: &[i64],
) -> rusqlite::Result<()> {
    numbers.chunks(BLOCK).try_for_each(|block| insert_block(c, keyword, category, block))
}

/// Moves a database written by an earlier version, with one row per posting in `postings`,
/// to blocks, in the caller's transaction. Returns how many postings moved.
pub(crate) fn upgrade(c: &Connection) -> rusqlite::Result<u64> {
    let old: Option<String> = c
        .query_row(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'postings'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if old.is_none() {
        return Ok(0);
    }
    let mut moved = 0;
    {
        let mut st = c.prepare(
            "SELECT keyword, category, number FROM postings ORDER BY keyword, category, number",
        )?;
        let mut rows = st.query([])?;
        let mut run: Option<(String, u32)> = None;
        let mut numbers = Vec::new();
        while let Some(row) = rows.next()? {
            let key = (row.get::<_, String>(0)?, row.get::<_, u32>(1)?);
            if run.as_ref() != Some(&key) {
                if let Some((keyword, category)) = run.take() {
                    write_all(c, &keyword, category, &numbers)?;
                }
                numbers.clear();
                run = Some(key);
            }
            numbers.push(row.get::<_, i64>(2)?);
            moved += 1;
        }
        if let Some((keyword, category)) = run {
            write_all(c, &keyword, category, &numbers)?;
        }
    }
    c.execute_batch("DROP TABLE postings")?;
    Ok(moved)
}

/// Packs ascending `numbers` as the first, then each one's distance from the one before,
/// each a varint (postcard's encoding of a `u64`).
fn encode(numbers: &[i64]) -> rusqlite::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(numbers.len() * 3);
    let mut previous = 0i64;
    for &n in numbers {
        let delta = n.wrapping_sub(previous) as u64;
        previous = n;
        out = postcard::to_extend(&delta, out)
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    }
    Ok(out)
}

/// The numbers [`encode`] packed; an error if the bytes are not such a packing.
fn decode(blob: &[u8]) -> rusqlite::Result<Vec<i64>> {
    let mut out = Vec::with_capacity(blob.len() / 2);
    let mut previous = 0i64;
    let mut rest = blob;
    while !rest.is_empty() {
        let (delta, after) = postcard::take_from_bytes::<u64>(rest).map_err(|_| {
            rusqlite::Error::FromSqlConversionFailure(
                0,
                rusqlite::types::Type::Blob,
                "a search index block is damaged".into(),
            )
        })?;
        previous = previous.wrapping_add(delta as i64);
        out.push(previous);
        rest = after;
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn db() -> Connection {
        let c = Connection::open_in_memory().expect("open");
        c.execute_batch(crate::SCHEMA).expect("schema");
        c
    }

    fn blocks(c: &Connection) -> Vec<(i64, usize)> {
        let mut st = c.prepare("SELECT first, numbers FROM posting_blocks ORDER BY first").unwrap();
        st.query_map([], |r| Ok((r.get(0)?, decode(&r.get::<_, Vec<u8>>(1)?)?.len())))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn packing_round_trips() {
        for numbers in [vec![], vec![1], vec![1, 2, 3], vec![5, 300, 70_000, 1 << 40, i64::MAX]] {
            assert_eq!(decode(&encode(&numbers).unwrap()).unwrap(), numbers);
        }
        // 1, then 299 (LEB128: 0xab 0x02): the layout blocks have on disk.
        assert_eq!(encode(&[1, 300]).unwrap(), vec![0x01, 0xab, 0x02]);
        assert!(decode(&[0x80]).is_err(), "a varint cut short");
        assert!(decode(&[0xff; 11]).is_err(), "a varint longer than 64 bits");
    }

    #[test]
    fn new_listings_fill_blocks_in_order() {
        let c = db();
        for n in 1..=(BLOCK as i64 * 2 + 5) {
            add(&c, "pen", 3, n).unwrap();
        }
        assert_eq!(
            blocks(&c),
            vec![(1, BLOCK), (BLOCK as i64 + 1, BLOCK), (BLOCK as i64 * 2 + 1, 5)]
        );
        assert_eq!(newest(&c, "pen", 3, 3).unwrap(), vec![261, 260, 259]);
        assert!(newest(&c, "pen", 4, 3).unwrap().is_empty(), "another category");
        assert!(newest(&c, "ink", 3, 3).unwrap().is_empty(), "another keyword");
    }

    /// Random adds and removes against a plain set: the index holds the same numbers, in
    /// blocks that are never empty, never over [`BLOCK`], and keyed by their first number.
    #[test]
    fn matches_a_sorted_set_under_random_changes() {
        let c = db();
        let mut model = BTreeSet::new();
        let mut x: u64 = 7;
        for step in 0..5000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Mostly new listings at the top; otherwise changes anywhere below.
            let top = model.last().copied().unwrap_or(0);
            let n = if x.is_multiple_of(3) {
                top + 1 + (x >> 8) as i64 % 3
            } else {
                1 + (x >> 8) as i64 % (top + 1)
            };
            if x % 5 < 3 {
                add(&c, "pen", 1, n).unwrap();
                model.insert(n);
            } else {
                remove(&c, "pen", 1, n).unwrap();
                model.remove(&n);
            }
            if step % 250 == 0 || step == 4999 {
                let all = newest(&c, "pen", 1, usize::MAX).unwrap();
                let want: Vec<i64> = model.iter().rev().copied().collect();
                assert_eq!(all, want, "after step {step}");
                let mut st = c.prepare("SELECT first, numbers FROM posting_blocks").unwrap();
                let rows = st
                    .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))
                    .unwrap();
                for row in rows {
                    let (first, blob) = row.unwrap();
                    let numbers = decode(&blob).unwrap();
                    assert!(!numbers.is_empty() && numbers.len() <= BLOCK);
                    assert_eq!(numbers[0], first);
                    assert!(numbers.windows(2).all(|w| w[0] < w[1]));
                }
            }
        }
        assert!(model.len() > BLOCK * 2, "the test reached several blocks ({})", model.len());
    }

    #[test]
    fn upgrades_one_row_per_posting_to_blocks() {
        let c = db();
        c.execute_batch(
            "CREATE TABLE postings (keyword TEXT NOT NULL, category INTEGER NOT NULL, \
             number INTEGER NOT NULL, PRIMARY KEY (keyword, category, number)) WITHOUT ROWID;",
        )
        .unwrap();
        for n in 1..=300 {
            c.execute("INSERT INTO postings VALUES ('pen', 2, ?1)", [n * 2]).unwrap();
        }
        c.execute("INSERT INTO postings VALUES ('ink', 2, 9)", []).unwrap();
        assert_eq!(upgrade(&c).unwrap(), 301);
        assert_eq!(newest(&c, "pen", 2, 2).unwrap(), vec![600, 598]);
        assert_eq!(newest(&c, "pen", 2, 1000).unwrap().len(), 300);
        assert_eq!(newest(&c, "ink", 2, 5).unwrap(), vec![9]);
        assert_eq!(upgrade(&c).unwrap(), 0, "the old table is gone");
    }
}
