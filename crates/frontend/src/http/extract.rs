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

/// Decodes a JSON body, naming the field that broke the schema.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
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

/// A query string. Repeated keys fill a `Vec` (`keyword=pen&keyword=blue`); a bad value
/// is refused naming its parameter.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        let query = parts.uri.query().unwrap_or("");
        let de = serde_html_form::Deserializer::from_bytes(query.as_bytes());
        serde_path_to_error::deserialize(de).map(Query).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "." {
                Error::invalid(format!("invalid query: {inner}"))
            } else {
                Error::invalid(format!("invalid {path}: {inner}"))
            }
        })
    }
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
    fn a_bad_body_names_the_field() {
        let e = decode::<Body>(br#"{"price": 12, "quantity": 1}"#).expect_err("refused");
        assert!(e.status() == StatusCode::BAD_REQUEST);
        let response = format!("{e:?}");
        assert!(response.contains("invalid price"), "{response}");
        let e = decode::<Body>(br#"{"price": "12"}"#).expect_err("refused");
        assert!(format!("{e:?}").contains("missing field `quantity`"));
        let e = decode::<Body>(br#"{"price": "12", "quantity": 1} x"#).expect_err("refused");
        assert!(format!("{e:?}").contains("BadRequest"));
    }
}
