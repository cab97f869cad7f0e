//! Bulk-loading a synthetic catalogue straight into `product.db`, for benchmarks that need
//! far more items than are worth registering one call at a time. Run it while the product
//! database is stopped; the items are ordinary items in every respect.
//!
//! Items are spread evenly over categories `0..CATEGORIES`, each with one to three
//! keywords drawn from [`VOCABULARY`], a deterministic function of `seed`.

use std::path::Path;

use rusqlite::{Connection, params};

/// Categories the synthetic items are spread over.
pub const CATEGORIES: u32 = 100;

/// The keywords synthetic items are given.
pub const VOCABULARY: &[&str] = &[
    "pen", "pencil", "paper", "ink", "book", "lamp", "desk", "chair", "mug", "cup", "plate",
    "bowl", "fork", "knife", "spoon", "pan", "pot", "kettle", "shirt", "jacket", "coat", "hat",
    "scarf", "glove", "sock", "shoe", "boot", "bag", "wallet", "watch", "ring", "phone", "cable",
    "charger", "laptop", "mouse", "keyboard", "screen", "camera", "lens", "tripod", "guitar",
    "piano", "drum", "violin", "ball", "bike", "helmet", "tent", "rope", "map", "compass",
    "bottle", "jar", "box", "basket", "rug", "pillow", "blanket", "towel", "soap", "brush", "comb",
    "mirror", "clock", "radio", "speaker", "vinyl", "poster", "frame", "vase", "plant", "seed",
    "shovel", "rake", "hammer", "saw", "drill", "nail", "screw", "glue", "tape", "paint", "canvas",
    "easel", "clay", "yarn", "needle", "button", "zipper", "toy", "puzzle", "game", "card", "dice",
    "kite", "doll", "robot", "train", "boat",
];

/// Adds `items` synthetic items listed by `seller` to the product database in `data_dir`
/// (creating it if needed), in one transaction. Returns the numbers of the first and last
/// item added.
pub fn synthetic(
    data_dir: &Path,
    items: u64,
    seller: u64,
    seed: u64,
) -> Result<(u64, u64), crate::StartError> {
    std::fs::create_dir_all(data_dir)
        .map_err(|e| agora_replication::HostError::DataDir(data_dir.to_owned(), e))?;
    let path = data_dir.join("product.db");
    let fail = |e: rusqlite::Error| crate::StartError::Seed(path.clone(), e);
    let mut conn = Connection::open(&path).map_err(fail)?;
    conn.pragma_update(None, "journal_mode", "WAL").map_err(fail)?;
    conn.execute_batch(crate::SCHEMA).map_err(fail)?;
    let tx = conn.transaction().map_err(fail)?;
    let mut rng = SplitMix(seed);
    let mut range = (0, 0);
    // The search index, built in memory and written once at the end.
    let mut index: std::collections::HashMap<(&str, u32), Vec<i64>> =
        std::collections::HashMap::new();
    {
        let mut item = tx
            .prepare(
                "INSERT INTO items (category, seller, name, keywords, condition, price, quantity, listed_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0)",
            )
            .map_err(fail)?;
        for i in 0..items {
            let category = (i % u64::from(CATEGORIES)) as u32;
            let count = 1 + rng.next() % 3;
            let mut keywords: Vec<&str> = Vec::with_capacity(3);
            for _ in 0..count {
                let word = VOCABULARY[(rng.next() % VOCABULARY.len() as u64) as usize];
                if !keywords.contains(&word) {
                    keywords.push(word);
                }
            }
            let name = format!("{} {}", keywords[0], i);
            let price = 100 + (rng.next() % 100_000) as i64;
            let quantity = 1 + rng.next() % 1000;
            item.execute(params![
                category,
                seller as i64,
                name,
                keywords.join(" "),
                (rng.next() % 2) as i64,
                price,
                quantity as i64
            ])
            .map_err(fail)?;
            let number = tx.last_insert_rowid();
            for word in &keywords {
                index.entry((*word, category)).or_default().push(number);
            }
            if i == 0 {
                range.0 = number as u64;
            }
            range.1 = number as u64;
        }
    }
    // Numbers were given in ascending order, so each list is ready to be cut into blocks.
    for ((word, category), numbers) in &index {
        crate::postings::write_all(&tx, word, *category, numbers).map_err(fail)?;
    }
    tx.commit().map_err(fail)?;
    Ok(range)
}

/// A small, fast, deterministic generator: the synthetic catalogue must be the same for
/// the same seed on every machine.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_items_that_the_index_finds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (first, last) = synthetic(dir.path(), 500, 7, 1).expect("seed");
        assert_eq!(last - first + 1, 500);
        let conn = Connection::open(dir.path().join("product.db")).expect("open");
        let items: i64 =
            conn.query_row("SELECT count(*) FROM items", [], |r| r.get(0)).expect("count");
        assert_eq!(items, 500);
        // Every item is found under each of its keywords.
        let mut st = conn.prepare("SELECT number, category, keywords FROM items").expect("prepare");
        let rows = st
            .query_map([], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, u32>(1)?, r.get::<_, String>(2)?))
            })
            .expect("items");
        for row in rows {
            let (number, category, keywords) = row.expect("row");
            for word in keywords.split(' ') {
                let numbers =
                    crate::postings::newest(&conn, word, category, usize::MAX).expect("index");
                assert!(numbers.contains(&number), "{number} under {word:?} in {category}");
            }
        }
        assert!(VOCABULARY.iter().all(|w| w.chars().count() <= agora_domain::KEYWORD_MAX_CHARS));
    }
}
