//! Extractors that turn the parts of an HTTP request into checked values, refusing bad
//! input in the API's one error shape and naming the field: a JSON body, a query string
//! (with repeated keys, `keyword=a&keyword=b`), an item id in the path, and the session in
//! `Authorization: Bearer`.

use agora_domain::ItemId;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use super::error::Error;
use agora_proto::ErrorCode;
use agora_proto::messages::{OpId, new_op_id};
use sha2::{Digest, Sha256};

/// A JSON request body. Unlike `axum::Json`, a refusal names the field in our error shape:
/// `invalid price: invalid type: integer, expected a string`.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = Error;

    async fn from_request(request: Request, state: &S) -> Result<Self, Error> {
        if !is_json(request.headers()) {
            return Err(Error::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::BadRequest,
                "the body must be JSON, sent with `Content-Type: application/json`",
            ));
        }
        // The body limit (DefaultBodyLimit) applies here: past it, 413.
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|e| Error::new(e.status(), ErrorCode::BadRequest, e.body_text()))?;
        decode(&bytes).map(Json)
    }
}

fn is_json(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Decodes a JSON body, naming the field that broke the schema. A body is an object:
/// an array is refused rather than read into the fields by position.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(Error::invalid("invalid body: must be a JSON object, not an array"));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data if path != "." => {
                Error::invalid(format!("invalid {path}: {inner}"))
            }
            serde_json::error::Category::Data => Error::invalid(format!("invalid body: {inner}")),
            _ => Error::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadRequest,
                format!("the body is not valid JSON: {inner}"),
            ),
        }
    })?;
    de.end().map_err(|e| {
        Error::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    Ok(value)
}

/// What a query string may hold, for [`Query`].
pub trait QueryParams {
    /// The parameters that may be repeated, to make a list; any other may appear once.
    const LISTS: &'static [&'static str] = &[];
}

/// A query string. Repeated keys fill a `Vec` (`keyword=pen&keyword=blue`); a bad value
/// is refused naming its parameter, and so are an unknown parameter (a typo would
/// otherwise be ignored), a parameter repeated that may appear once, and a parameter that
/// is not UTF-8 once percent-decoded.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + QueryParams> FromRequestParts<S> for Query<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        let query = parts.uri.query().unwrap_or("");
        check_query::<T>(query)?;
        let de = serde_html_form::Deserializer::from_bytes(query.as_bytes());
        serde_path_to_error::deserialize(de).map(Query).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            if let Some(rest) = inner.strip_prefix("unknown field ") {
                Error::invalid(format!("unknown query parameter {rest}"))
            } else if path == "." {
                Error::invalid(format!("invalid query: {inner}"))
            } else {
                Error::invalid(format!("invalid {path}: {inner}"))
            }
        })
    }
}

/// Refuses what the query deserializer would read silently: bytes that are not UTF-8
/// (it would put U+FFFD in their place) and a repeated parameter that is not a list.
fn check_query<T: QueryParams>(query: &str) -> Result<(), Error> {
    let mut seen: Vec<String> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(key).ok_or_else(|| {
            Error::invalid("invalid query: a parameter name is not UTF-8 once percent-decoded")
        })?;
        if percent_decode(value).is_none() {
            return Err(Error::invalid(format!("invalid {key}: not UTF-8 once percent-decoded")));
        }
        if seen.contains(&key) && !T::LISTS.contains(&key.as_str()) {
            return Err(Error::invalid(format!("invalid {key}: may appear only once")));
        }
        seen.push(key);
    }
    Ok(())
}

/// Decodes one `application/x-www-form-urlencoded` component (`+` is a space), or
/// `None` if the result is not UTF-8. A `%` not followed by two hex digits stays as it is.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        let hex = |at: usize| bytes.get(at).and_then(|b| (*b as char).to_digit(16));
        match (byte, hex(i + 1), hex(i + 2)) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The `{id}` of an item in the path, `3:17` (or `3%3A17`).
#[derive(Debug)]
pub struct ItemPath(pub ItemId);

impl<S: Send + Sync> FromRequestParts<S> for ItemPath {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| Error::invalid(format!("invalid item: {}", e.body_text())))?;
        Ok(ItemPath(id.parse()?))
    }
}

/// The `{id}` of a seller in the path.
#[derive(Debug)]
pub struct SellerPath(pub u64);

impl<S: Send + Sync> FromRequestParts<S> for SellerPath {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        let bad = || Error::invalid("invalid seller id: must be a whole number like 7");
        let Path(id) = Path::<String>::from_request_parts(parts, state).await.map_err(|_| bad())?;
        Ok(SellerPath(id.trim().parse().map_err(|_| bad())?))
    }
}

/// The `Idempotency-Key` of a mutation, if the client sent one: 1 to 64 visible ASCII
/// characters (spaces allowed inside), once.
#[derive(Debug)]
pub struct IdempotencyKey(pub Option<String>);

/// Longest idempotency key, in characters (the purchase key's limit).
const IDEMPOTENCY_KEY_MAX: usize = 64;

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        let mut values = parts.headers.get_all("idempotency-key").iter();
        let Some(value) = values.next() else { return Ok(IdempotencyKey(None)) };
        if values.next().is_some() {
            return Err(Error::invalid("invalid Idempotency-Key: may appear only once"));
        }
        let key = value.to_str().map(str::trim).unwrap_or("");
        if key.is_empty()
            || key.len() > IDEMPOTENCY_KEY_MAX
            || !key.bytes().all(|b| (0x20..=0x7e).contains(&b))
        {
            return Err(Error::invalid(format!(
                "invalid Idempotency-Key: must be 1 to {IDEMPOTENCY_KEY_MAX} visible ASCII characters"
            )));
        }
        Ok(IdempotencyKey(Some(key.to_owned())))
    }
}

impl IdempotencyKey {
    /// The op id of this attempt (docs/protocol.md): with a key, derived from it and the
    /// scope it belongs to (the role, the operation, and the session or, for a new
    /// account, the username), so a retry carries the same id and the database answers
    /// it with the first attempt's outcome; without one, a fresh id. The operation's
    /// arguments (its item, its quantity) are not in it: the database checks that a
    /// repeat asks what the first attempt asked, so a key sent again with another item is
    /// refused instead of being taken for a new attempt.
    pub fn op(&self, role: &str, operation: &str, scope: &str) -> OpId {
        let Some(key) = &self.0 else { return new_op_id() };
        // A session token is the same in any letter case.
        let scope = agora_domain::canonical_token(scope).unwrap_or_else(|| scope.to_owned());
        let scope = scope.as_str();
        let mut hash = Sha256::new();
        // Each part length-prefixed, so that no two different tuples hash the same bytes.
        for part in ["agora-http-op", role, operation, scope, key] {
            hash.update((part.len() as u64).to_le_bytes());
            hash.update(part.as_bytes());
        }
        let digest = hash.finalize();
        let mut op = [0u8; 16];
        op.copy_from_slice(&digest[..16]);
        if op == [0; 16] {
            // All zeros means "no id" to the databases.
            op[0] = 1;
        }
        op
    }
}

/// The session of the caller, from `Authorization: Bearer <session>`. Missing, of another
/// scheme or garbled: 401 `not_logged_in`, before any database is asked.
#[derive(Debug)]
pub struct Session(pub String);

/// Longest session token accepted; real ones are 64 hex digits.
const SESSION_MAX: usize = 128;

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        let value = parts.headers.get(header::AUTHORIZATION).ok_or_else(Error::no_session)?;
        let value = value.to_str().map_err(|_| Error::no_session())?;
        let (scheme, token) = value.trim().split_once(' ').ok_or_else(Error::no_session)?;
        let token = token.trim();
        let visible = |t: &str| t.bytes().all(|b| b.is_ascii_graphic());
        if !scheme.eq_ignore_ascii_case("bearer")
            || token.is_empty()
            || token.len() > SESSION_MAX
            || !visible(token)
        {
            return Err(Error::no_session());
        }
        Ok(Session(token.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Body {
        price: String,
        quantity: u32,
    }

    #[test]
    fn a_key_gives_one_op_id_per_scope() {
        let key = |k: &str| IdempotencyKey(Some(k.to_owned()));
        let op = key("k1").op("seller", "register-item", "session-a");
        assert_eq!(op, key("k1").op("seller", "register-item", "session-a"));
        assert_ne!(op, key("k2").op("seller", "register-item", "session-a"));
        assert_ne!(op, key("k1").op("seller", "register-item", "session-b"));
        assert_ne!(op, key("k1").op("seller", "remove-units", "session-a"));
        assert_ne!(op, key("k1").op("buyer", "register-item", "session-a"));
        assert_ne!(IdempotencyKey(None).op("a", "b", "c"), IdempotencyKey(None).op("a", "b", "c"));
    }

    #[test]
    fn query_components_are_percent_decoded_strictly() {
        assert_eq!(percent_decode("a+b%20c%3A").as_deref(), Some("a b c:"));
        assert_eq!(percent_decode("100%").as_deref(), Some("100%"));
        assert_eq!(percent_decode("%+f").as_deref(), Some("% f"), "a sign is not a hex digit");
        assert_eq!(percent_decode("%C3%A9").as_deref(), Some("\u{e9}"));
        assert_eq!(percent_decode("%FF"), None);
    }
}
