//! The storefront: server-rendered web pages for buyers (on the buyer server's HTTP port)
//! and sellers (on the seller server's), over the same service methods as the TCP and
//! JSON interfaces (docs/storefront.md).
//!
//! What the pages share lives here: the session cookie, the cross-site request forgery
//! (CSRF) tokens, reading forms, the security headers, and rendering errors as HTML.
//!
//! - [`buyer`], [`seller`]: each role's routes; their templates are in `templates/`.
//! - Sessions: the token from login, in an HttpOnly, SameSite=Lax cookie; over TLS it is
//!   also Secure and named with the `__Host-` prefix, which a browser keeps from being set
//!   by any other host or path. Nothing is kept on the server, so any frontend, fresh or
//!   restarted, serves the same user.
//! - CSRF: a form of a logged-in user carries SHA-256 of a fixed label and the session
//!   token, which any frontend can recompute and which another site cannot (it cannot
//!   read the cookie); the login and sign-up forms, with no session yet, carry a random
//!   value signed with a secret of the frontends' (HMAC-SHA256 under a key derived from
//!   their credentials), which must match a cookie of its own (signed double submit). And
//!   every form sent from a page of another origin is refused (`Origin`).

pub mod accounts;
pub mod buyer;
pub mod seller;

use std::fmt::Write as _;

use agora_proto::{ApiError, ErrorCode};
use askama::Template;
use axum::body::Bytes;
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{Request, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::http::error::status_of;

/// The storefront's stylesheet, served at [`STYLESHEET_PATH`].
const STYLESHEET: &str = include_str!("agora.css");
/// Where the stylesheet is served; its name changes with its content's version.
pub const STYLESHEET_PATH: &str = "/static/agora-2.css";

/// Scripts, styles, images and form targets from this server only, no inline script or
/// style, no framing: a string a seller typed can never run as code, even if it escaped
/// the templates.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; \
     base-uri 'none'; object-src 'none'";

/// The two roles' cookie names. Browsers share cookies between ports of one host, so
/// the seller's and the buyer's must differ for one person to use both servers.
///
/// Over TLS the names carry the `__Host-` prefix: a browser accepts such a cookie only
/// with `Secure`, `Path=/` and no `Domain`, from a secure origin, so no other host (a
/// sibling subdomain) and no page in the clear can plant one. Over plain HTTP the prefix
/// cannot be used: browsers refuse `Secure` cookies from an insecure origin (Chromium
/// exempts `localhost` but not `127.0.0.1`, where `agora up` serves), so the pages on
/// `http://127.0.0.1` use the plain names. Which is used follows how the page was asked
/// for ([`over_tls`]), and a request is read with the names of its own transport only.
#[derive(Debug, Clone, Copy)]
pub struct Cookies {
    /// The session token.
    pub session: &'static str,
    /// The double-submit CSRF value of the login and sign-up forms.
    pub csrf: &'static str,
    /// [`Cookies::session`] over TLS.
    pub secure_session: &'static str,
    /// [`Cookies::csrf`] over TLS.
    pub secure_csrf: &'static str,
}

impl Cookies {
    /// The session cookie's name for a page served over TLS (`secure`) or not.
    pub fn session_name(&self, secure: bool) -> &'static str {
        if secure { self.secure_session } else { self.session }
    }

    /// The login forms' cookie's name for a page served over TLS (`secure`) or not.
    pub fn csrf_name(&self, secure: bool) -> &'static str {
        if secure { self.secure_csrf } else { self.csrf }
    }
}

/// The buyer server's cookies.
pub const BUYER_COOKIES: Cookies = Cookies {
    session: "agora_buyer_session",
    csrf: "agora_buyer_csrf",
    secure_session: "__Host-agora_buyer_session",
    secure_csrf: "__Host-agora_buyer_csrf",
};
/// The seller server's cookies.
pub const SELLER_COOKIES: Cookies = Cookies {
    session: "agora_seller_session",
    csrf: "agora_seller_csrf",
    secure_session: "__Host-agora_seller_session",
    secure_csrf: "__Host-agora_seller_csrf",
};

/// The value of cookie `name` in the request's `Cookie` headers, if it is there and
/// printable ASCII of a sane length.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
}

/// Whether the page was asked for over TLS. The frontends serve HTTP in the clear
/// themselves, so only a proxy in front of them that terminates TLS can say so, with
/// `X-Forwarded-Proto: https`. Cookies are then Secure (a browser never sends them in
/// clear) and `__Host-` named ([`Cookies`]).
pub fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Lax and `Path=/` always, Secure over TLS;
/// `None` deletes the cookie. `name` is the one [`Cookies`] gives for the transport.
pub fn set_cookie(name: &str, value: Option<&str>, secure: bool) -> HeaderValue {
    let mut text = match value {
        Some(value) => format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax"),
        None => format!("{name}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"),
    };
    if secure {
        text.push_str("; Secure");
    }
    // Names are ours and values are hex: always a valid header value.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("x=; Max-Age=0"))
}

/// The CSRF token of the forms of a logged-in user: SHA-256 of a fixed label and the
/// session token in its canonical form, in hex. Any frontend computes the same one.
pub fn csrf_token(session: &str) -> String {
    let session = agora_domain::canonical_token(session).unwrap_or_else(|| session.to_owned());
    let mut hash = Sha256::new();
    hash.update(b"agora-storefront-csrf-v1\0");
    hash.update(session.as_bytes());
    hex(&hash.finalize())
}

/// The key the login and sign-up forms' values are signed with: derived from the
/// frontend's credentials, the same at every frontend of the role.
pub fn form_key(trust: &agora_proto::Trust) -> ring::hmac::Key {
    ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &trust.secret("storefront-login-forms-v1"))
}

/// A fresh value for the login and sign-up forms and their cookie: 128 random bits and
/// their HMAC under `key`, in hex, `nonce.mac`.
pub fn signed_form_value(key: &ring::hmac::Key) -> String {
    let nonce = random_hex();
    let tag = ring::hmac::sign(key, nonce.as_bytes());
    format!("{nonce}.{}", hex(tag.as_ref()))
}

/// Whether `value` is one [`signed_form_value`] made with `key`: checked in constant time,
/// so a cookie planted with a value of the planter's choosing (`abc`) is refused.
pub fn is_signed_form_value(key: &ring::hmac::Key, value: &str) -> bool {
    let Some((nonce, tag)) = value.split_once('.') else { return false };
    if nonce.len() != 32 || tag.len() != 64 {
        return false;
    }
    let Some(tag) = unhex(tag) else { return false };
    ring::hmac::verify(key, nonce.as_bytes(), &tag).is_ok()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    let digit = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    text.as_bytes()
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(*pair.get(1)?)?))
        .collect()
}

/// Compares two strings in time that depends on their lengths only, so that a forger
/// cannot learn a token a byte at a time from how long a refusal takes.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// A fresh random value in hex (128 bits): a double-submit CSRF value or a purchase key.
pub fn random_hex() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No OS randomness: the clock and the hash still give an unguessable-enough value
        // for a form token, and a unique one for a purchase key.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let digest = Sha256::digest(nanos.to_le_bytes());
        bytes.copy_from_slice(&digest[..16]);
    }
    hex(&bytes)
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Adds the headers every page and redirect carries ([`page_headers`]), and refuses a
/// form sent from another origin before any handler reads it ([`same_origin`]).
/// `seller` says whose pages these are.
pub async fn security_headers(
    axum::extract::State(seller): axum::extract::State<bool>,
    request: Request<axum::body::Body>,
    next: axum::middleware::Next,
) -> Response {
    let mut response = match same_origin(&request, seller) {
        Ok(()) => next.run(request).await,
        Err(refusal) => refusal.into_response(),
    };
    page_headers(response.headers_mut());
    response
}

/// The headers of every page (the 404 page too): the CSP, no sniffing, no framing, no
/// referrer beyond this origin, and no caching of pages that show a user's data.
pub fn page_headers(headers: &mut HeaderMap) {
    headers
        .insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// Refuses a request that changes something (every method but GET and HEAD) when the
/// browser says it comes from a page of another origin: its `Origin` is not this host
/// (the `Host` the browser asked, or the `X-Forwarded-Host` of a proxy in front), or is
/// `null` (a sandboxed or privacy-sensitive context). Browsers send `Origin` with every
/// form they post; a request without one (an old browser, a script) is left to the
/// form's CSRF token, which every form is checked for anyway.
pub fn same_origin(request: &Request<axum::body::Body>, seller: bool) -> Result<(), Refusal> {
    let method = request.method();
    if method == axum::http::Method::GET || method == axum::http::Method::HEAD {
        return Ok(());
    }
    let headers = request.headers();
    let Some(origin) = headers.get(header::ORIGIN) else { return Ok(()) };
    let host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, host)| host.trim_end_matches('/'));
    let ours = |name: header::HeaderName| {
        headers.get(name).and_then(|v| v.to_str().ok()).map(|v| v.trim().to_ascii_lowercase())
    };
    let host = host.map(str::to_ascii_lowercase);
    match host {
        Some(host)
            if Some(&host) == ours(header::HOST).as_ref()
                || Some(&host)
                    == ours(header::HeaderName::from_static("x-forwarded-host")).as_ref() =>
        {
            Ok(())
        }
        _ => Err(Refusal::Forged { seller }),
    }
}

/// The stylesheet, cacheable: its path changes when it does.
pub async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        STYLESHEET,
    )
        .into_response()
}

/// A rendered page with `status`, or the error page if the template failed.
pub fn page(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot render a page");
            (StatusCode::INTERNAL_SERVER_ERROR, Html(FALLBACK_ERROR)).into_response()
        }
    }
}

const FALLBACK_ERROR: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
    <title>Error - Agora</title></head><body><main><h1>Something went wrong</h1><p>The page \
    could not be shown; the details are in the server's log.</p></main></body></html>";

/// The page for an error that has no form to stand beside.
#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    /// Whose pages these are, for the header.
    pub nav: Nav,
    /// The page's heading.
    pub heading: &'static str,
    /// What happened, for a person.
    pub message: String,
}

/// What every page's header needs: the role's name and whether someone is logged in.
#[derive(Debug, Clone)]
pub struct Nav {
    /// `true` on the seller server.
    pub seller: bool,
    /// The CSRF token of the logout form, if someone is logged in.
    pub csrf: Option<String>,
    /// The stylesheet's path.
    pub css: &'static str,
}

impl Nav {
    /// The header of a page of `seller` (or the buyer), for the user of `session`.
    pub fn new(seller: bool, session: Option<&str>) -> Nav {
        Nav { seller, csrf: session.map(csrf_token), css: STYLESHEET_PATH }
    }
}

/// Why a page could not be served as asked.
#[derive(Debug)]
pub enum Refusal {
    /// No session, or it has ended: off to the login page (which says why), with the
    /// session cookie cleared.
    Login { expired: bool, cookies: Cookies },
    /// A form without the right CSRF token.
    Forged { seller: bool },
    /// A body that is not a form, or fields that cannot be read.
    BadForm { seller: bool, message: String },
    /// The operation failed, with no form to show the error beside.
    Api { seller: bool, session: Option<String>, error: ApiError },
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Login { expired, cookies } => {
                let to = if expired { "/login?expired=1" } else { "/login" };
                let mut response = Redirect::to(to).into_response();
                // Under either name: a browser ignores the one of the other transport.
                for secure in [false, true] {
                    let gone = set_cookie(cookies.session_name(secure), None, secure);
                    response.headers_mut().append(header::SET_COOKIE, gone);
                }
                response
            }
            Refusal::Forged { seller } => page(
                StatusCode::FORBIDDEN,
                &ErrorPage {
                    nav: Nav::new(seller, None),
                    heading: "This form has expired",
                    message: "The form was sent without its security token, or from another \
                              site. Go back, reload the page and try again."
                        .into(),
                },
            ),
            Refusal::BadForm { seller, message } => page(
                StatusCode::BAD_REQUEST,
                &ErrorPage {
                    nav: Nav::new(seller, None),
                    heading: "That form could not be read",
                    message,
                },
            ),
            Refusal::Api { seller, session, error } => {
                let heading = match error.code {
                    ErrorCode::UnknownItem => "No such item",
                    ErrorCode::UnknownUser => "No such seller",
                    _ => "Something went wrong",
                };
                page(
                    status_of(error.code),
                    &ErrorPage {
                        nav: Nav::new(seller, session.as_deref()),
                        heading,
                        message: plain(&error),
                    },
                )
            }
        }
    }
}

/// Whether `request` is a browser's GET of a page (not of the JSON API).
pub fn wants_html(request: &Request<axum::body::Body>) -> bool {
    request.method() == axum::http::Method::GET
        && !request.uri().path().starts_with("/v1/")
        && request
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/html"))
}

/// The page for a path that is not one.
pub fn not_found(seller: bool) -> Response {
    let mut response = page(
        StatusCode::NOT_FOUND,
        &ErrorPage {
            nav: Nav::new(seller, None),
            heading: "No such page",
            message: "There is nothing at this address.".into(),
        },
    );
    page_headers(response.headers_mut());
    response
}

/// The message of `error` for a person: internal details stay in the log.
pub fn plain(error: &ApiError) -> String {
    match error.code {
        ErrorCode::Internal | ErrorCode::Protocol | ErrorCode::Forbidden => {
            tracing::error!(code = %error.code, detail = %error.message, "internal error");
            "Something went wrong on our side; please try again in a moment.".into()
        }
        ErrorCode::Unavailable | ErrorCode::Timeout => format!(
            "The shop is busy or partly down right now ({}); please try again in a moment.",
            error.message
        ),
        // A limit (`overloaded`) says which one it is and what to do: too many logins from
        // the address, too many sessions of the account, too many connections.
        _ => capitalise(&error.message),
    }
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Whether `error` means the user must log in (again).
pub fn needs_login(error: &ApiError) -> bool {
    matches!(error.code, ErrorCode::NotLoggedIn | ErrorCode::SessionExpired)
}

/// The fields of a form body (`application/x-www-form-urlencoded`), as `T`, whose
/// fields should all be strings with defaults so that any form reads and each field is
/// checked, with its own message, by the code that uses it.
pub fn read_form<T: DeserializeOwned>(
    seller: bool,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<T, Refusal> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"));
    if !is_form {
        return Err(Refusal::BadForm {
            seller,
            message: "Forms are sent as application/x-www-form-urlencoded.".into(),
        });
    }
    serde_html_form::from_bytes(body)
        .map_err(|e| Refusal::BadForm { seller, message: format!("The form is malformed: {e}.") })
}

/// A whole number typed in a form field, or the field's rule.
pub fn number<T: std::str::FromStr>(field: &str, text: &str, rule: &str) -> Result<T, ApiError> {
    text.trim()
        .parse()
        .map_err(|_| ApiError::new(ErrorCode::InvalidArgument, format!("invalid {field}: {rule}")))
}

/// The keywords typed in one field, separated by spaces or commas.
pub fn keywords(text: &str) -> Vec<String> {
    text.split([' ', ',']).filter(|k| !k.is_empty()).map(str::to_owned).collect()
}

/// The session in the role's cookie (under the name of the request's transport); without
/// one, off to the login page.
pub fn session_of(headers: &HeaderMap, cookies: Cookies) -> Result<String, Refusal> {
    cookie(headers, cookies.session_name(over_tls(headers)))
        .map(str::to_owned)
        .ok_or(Refusal::Login { expired: false, cookies })
}

/// Checks the CSRF token `sent` with a form against the one of `session`.
pub fn check_csrf(session: &str, sent: &str, seller: bool) -> Result<(), Refusal> {
    if same_secret(&csrf_token(session), sent) { Ok(()) } else { Err(Refusal::Forged { seller }) }
}

/// The refusal for an error with no form to show it beside: a login for an ended
/// session, else the error page.
pub fn refusal(cookies: Cookies, seller: bool, session: &str, error: ApiError) -> Refusal {
    if needs_login(&error) {
        Refusal::Login { expired: error.code == ErrorCode::SessionExpired, cookies }
    } else {
        Refusal::Api { seller, session: Some(session.to_owned()), error }
    }
}

/// A fixed notice for a `?done=` value, so that no text of the URL reaches the page.
pub fn notice(query: Option<&str>) -> Option<&'static str> {
    let done = query?.split('&').find_map(|p| p.strip_prefix("done="))?;
    Some(match done {
        "added" => "Added to your cart.",
        "removed" => "Removed from your cart.",
        "saved" => "Your cart is saved: it will be there the next time you log in.",
        "cleared" => "Your cart is empty.",
        "voted" => "Thank you for your feedback.",
        "bought" => "Thank you! Your purchase went through; it is at the top of the list below.",
        "listed" => "Your item is listed.",
        "priced" => "The price is changed.",
        "units" => "The units are taken off sale.",
        _ => return None,
    })
}

/// The `offset` of a page from its query string, 0 if absent or not a number.
pub fn offset(query: Option<&str>) -> u32 {
    query
        .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("offset=")))
        .and_then(|o| o.parse().ok())
        .unwrap_or(0)
}

/// A time as `YYYY-MM-DD HH:MM UTC`.
pub fn utc(unix_ms: i64) -> String {
    let secs = unix_ms.div_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days since 1970-01-01 to a civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02} UTC", rest / 3600, rest % 3600 / 60)
}

/// An item id as it can appear in an HTML id attribute and a URL path: `3-17`.
pub fn dom_id(item: agora_domain::ItemId) -> String {
    format!("{}-{}", item.category, item.number)
}

/// A category as a select offers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CategoryOption {
    /// Its number, the value sent.
    pub id: u32,
    /// Its name, or "Category 42" for a number without one.
    pub name: String,
    /// Whether it is the one chosen.
    pub selected: bool,
}

/// The named categories as a select's options, with `chosen` (as typed) selected. A
/// chosen number that has no name is offered too, so that a form comes back as it was
/// sent.
pub fn category_options(names: &agora_domain::Categories, chosen: &str) -> Vec<CategoryOption> {
    let chosen: Option<u32> = chosen.trim().parse().ok();
    let mut options: Vec<CategoryOption> = names
        .iter()
        .map(|c| CategoryOption { id: c.id, name: c.name.clone(), selected: chosen == Some(c.id) })
        .collect();
    if let Some(id) = chosen.filter(|id| names.name(*id).is_none()) {
        options.push(CategoryOption { id, name: names.label(id), selected: true });
    }
    options
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chosen_category_is_selected_even_without_a_name() {
        let names = agora_domain::Categories::default();
        let options = category_options(&names, "3");
        assert_eq!(options.len(), names.len());
        assert!(options.iter().all(|o| o.selected == (o.id == 3)));
        let options = category_options(&names, " 42 ");
        let last = options.last().expect("one more");
        assert_eq!((last.id, last.name.as_str(), last.selected), (42, "Category 42", true));
        assert!(category_options(&names, "").iter().all(|o| !o.selected));
    }

    #[test]
    fn csrf_tokens_are_per_session_and_case_blind() {
        let a = "a".repeat(64);
        let b = "b".repeat(64);
        assert_eq!(csrf_token(&a), csrf_token(&a.to_uppercase()));
        assert_ne!(csrf_token(&a), csrf_token(&b));
        assert_eq!(csrf_token(&a).len(), 64);
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("x_agora_buyer_session=1; agora_buyer_session=abc"),
        );
        assert_eq!(cookie(&headers, "agora_buyer_session"), Some("abc"));
        assert_eq!(cookie(&headers, "agora_seller_session"), None);
    }

    #[test]
    fn times_are_shown_in_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(1_796_041_560_000), "2026-11-30 12:26 UTC");
    }

    #[test]
    fn login_form_values_are_signed_by_the_key() {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &[7; 32]);
        let other = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &[8; 32]);
        let value = signed_form_value(&key);
        assert!(is_signed_form_value(&key, &value));
        assert_ne!(signed_form_value(&key), value, "fresh each time");
        assert!(!is_signed_form_value(&other, &value), "another key's");
        let (nonce, tag) = value.split_once('.').expect("two parts");
        let tampered = format!("{}0.{tag}", &nonce[..31]);
        for bad in ["abc", "", ".", &tampered, nonce, &format!("{nonce}.{}", &tag[..63])] {
            assert!(!is_signed_form_value(&key, bad), "{bad:?}");
        }
    }

    #[test]
    fn cookie_flags() {
        let plain = set_cookie("s", Some("v"), false);
        assert_eq!(plain, "s=v; Path=/; HttpOnly; SameSite=Lax");
        let secure = set_cookie("s", Some("v"), true);
        assert!(secure.to_str().unwrap_or("").ends_with("; Secure"));
    }
}
