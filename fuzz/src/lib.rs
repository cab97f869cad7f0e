//! The properties Agora's fuzz targets check, one function per target kind, and the seed
//! inputs they start from. The targets in `fuzz_targets/` are one line each over these.

use std::fmt::Debug;

use agora_proto::{Frame, FrameError};
use bytes::BytesMut;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub mod seeds;

/// `Frame::parse` on arbitrary bytes with an arbitrary limit (the input's first four
/// bytes): it never panics; a frame it returns is exactly the prefix it consumed, within
/// the limit; "not enough bytes yet" consumes nothing; and the bytes fed one at a time,
/// as a slow socket delivers them, give the same frames and the same end.
pub fn frame(data: &[u8]) {
    let Some((limit, bytes)) = data.split_first_chunk::<4>() else { return };
    let max = u32::from_be_bytes(*limit);

    let mut buf = BytesMut::from(bytes);
    let mut whole = Vec::new();
    let end = loop {
        let before = buf.clone();
        match Frame::parse(&mut buf, max) {
            Ok(Some(frame)) => {
                let consumed = before.len() - buf.len();
                assert_eq!(&before[..consumed], &frame.to_bytes()[..], "frame is its prefix");
                assert_eq!(&before[consumed..], &buf[..], "the rest is left alone");
                assert!(frame.payload.len() as u64 <= u64::from(max), "within the limit");
                whole.push(frame);
            }
            Ok(None) => {
                assert_eq!(before, buf, "an incomplete frame consumes nothing");
                break None;
            }
            Err(e) => break Some(e),
        }
    };

    let mut buf = BytesMut::new();
    let mut trickled = Vec::new();
    let mut trickled_end: Option<FrameError> = None;
    'feed: for byte in bytes {
        buf.extend_from_slice(&[*byte]);
        loop {
            match Frame::parse(&mut buf, max) {
                Ok(Some(frame)) => trickled.push(frame),
                Ok(None) => break,
                Err(e) => {
                    trickled_end = Some(e);
                    break 'feed;
                }
            }
        }
    }
    assert_eq!(whole, trickled, "the same frames whole or byte by byte");
    assert_eq!(end, trickled_end, "the same end whole or byte by byte");
}

/// A payload decoded as `T` the way a server or client decodes it (postcard): it never
/// panics, and whatever decodes encodes again to bytes that decode to an equal value and
/// re-encode to the same bytes.
pub fn message<T>(data: &[u8])
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let Ok(value) = postcard::from_bytes::<T>(data) else { return };
    let encoded = postcard::to_allocvec(&value).expect("a decoded value encodes");
    let again: T = postcard::from_bytes(&encoded).expect("its encoding decodes");
    assert_eq!(again, value, "decode(encode(v)) == v");
    let reencoded = postcard::to_allocvec(&again).expect("encodes again");
    assert_eq!(reencoded, encoded, "one encoding per value");
}

/// The text a user types where an amount of money goes (`--price`, a form field): parsing
/// never panics, an amount it accepts is not negative, and it is shown as text that
/// parses back to the same amount.
pub fn money(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(money) = text.parse::<agora_domain::Money>() else { return };
    assert!(money.cents() >= 0, "{text:?} parsed to a negative amount");
    let shown = money.to_string();
    assert_eq!(shown.parse::<agora_domain::Money>().ok(), Some(money), "{shown:?} round trip");
}

/// The text of an item id (`3:17`): parsing never panics, and an id it accepts is shown
/// as text that parses back to the same id.
pub fn item_id(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(id) = text.parse::<agora_domain::ItemId>() else { return };
    let shown = id.to_string();
    assert_eq!(shown.parse::<agora_domain::ItemId>().ok(), Some(id), "{shown:?} round trip");
}

/// Card details as a buyer types them: holder, number and expiry, separated by newlines.
/// Checking them never panics; a card that passes is in its checked form (digits only,
/// 12 to 19 of them, a real month) and passes again unchanged; and its `Debug` text, which
/// logs may carry, never holds the whole number.
pub fn card(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut fields = text.splitn(3, '\n');
    let (Some(holder), Some(number), Some(expiry)) = (fields.next(), fields.next(), fields.next())
    else {
        return;
    };
    let card = agora_domain::Card {
        holder: holder.to_owned(),
        number: number.to_owned(),
        expiry: expiry.to_owned(),
    };
    let _ = agora_domain::Card::expiry_month(expiry);
    let Ok(checked) = card.validate() else { return };
    assert!((12..=19).contains(&checked.number.len()), "{} digits", checked.number.len());
    assert!(checked.number.bytes().all(|b| b.is_ascii_digit()), "digits only");
    let (_, month) = agora_domain::Card::expiry_month(&checked.expiry).expect("a checked expiry");
    assert!((1..=12).contains(&month), "month {month}");
    assert_eq!(checked.clone().validate().ok(), Some(checked.clone()), "checking is idempotent");
    // The holder is printed as typed, so leave it out: it may hold any digits at all.
    let anonymous = agora_domain::Card { holder: String::new(), ..checked.clone() };
    let debug = format!("{anonymous:?}");
    assert!(!debug.contains(&checked.number), "Debug shows the card number: {debug}");
}
