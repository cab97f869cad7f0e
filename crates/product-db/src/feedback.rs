//! Buyers' votes on items, and the totals kept from them: per item (`items.up`/`down`)
//! and per seller (`seller_feedback`), both in step with `votes`.

use agora_domain::{Feedback, ItemId, UserId};
use agora_proto::ApiError;
use agora_replication::db_error;
use rusqlite::{Connection, OptionalExtension, params};

use crate::items::item;

/// Records `buyer`'s vote on item `id` (`thumbs_up`, or down), replacing the buyer's
/// earlier vote, and keeps the item's and its seller's totals in step; returns the item's
/// totals. One vote per buyer per item: the same vote again counts once and changes
/// nothing, so a repeated command needs no op id.
pub(crate) fn vote(
    c: &Connection,
    buyer: UserId,
    id: ItemId,
    thumbs_up: bool,
) -> Result<Feedback, ApiError> {
    let item = item(c, id)?;
    let previous: Option<bool> = c
        .prepare_cached("SELECT up FROM votes WHERE number = ?1 AND buyer = ?2")
        .and_then(|mut st| {
            st.query_row(params![id.number as i64, buyer as i64], |r| r.get(0)).optional()
        })
        .map_err(db_error)?;
    // How the totals move: the earlier vote (if any) is taken back, the new one counted.
    let (mut ups_change, mut downs_change) = (0i64, 0i64);
    match previous {
        Some(earlier) if earlier == thumbs_up => return Ok(item.feedback),
        Some(true) => ups_change -= 1,
        Some(false) => downs_change -= 1,
        None => {}
    }
    if thumbs_up {
        ups_change += 1
    } else {
        downs_change += 1
    }
    c.prepare_cached("INSERT OR REPLACE INTO votes (number, buyer, up) VALUES (?1, ?2, ?3)")
        .and_then(|mut st| st.execute(params![id.number as i64, buyer as i64, thumbs_up]))
        .map_err(db_error)?;
    c.prepare_cached("UPDATE items SET up = up + ?2, down = down + ?3 WHERE number = ?1")
        .and_then(|mut st| st.execute(params![id.number as i64, ups_change, downs_change]))
        .map_err(db_error)?;
    c.prepare_cached(
        "INSERT INTO seller_feedback (seller, up, down) VALUES (?1, ?2, ?3) \
         ON CONFLICT (seller) DO UPDATE SET up = up + excluded.up, down = down + excluded.down",
    )
    .and_then(|mut st| st.execute(params![item.seller_id as i64, ups_change, downs_change]))
    .map_err(db_error)?;
    Ok(Feedback {
        up: (item.feedback.up as i64 + ups_change) as u64,
        down: (item.feedback.down as i64 + downs_change) as u64,
    })
}

/// The votes summed over all of `seller`'s items, sold out or not; none yet is `<0, 0>`.
pub(crate) fn seller_feedback(c: &Connection, seller: UserId) -> Result<Feedback, ApiError> {
    let found = c
        .prepare_cached("SELECT up, down FROM seller_feedback WHERE seller = ?1")
        .and_then(|mut st| {
            st.query_row([seller as i64], |r| {
                Ok(Feedback { up: r.get::<_, i64>(0)? as u64, down: r.get::<_, i64>(1)? as u64 })
            })
            .optional()
        })
        .map_err(db_error)?;
    Ok(found.unwrap_or_default())
}
