//! The frontends' HTTP/JSON API, beside their TCP protocol (docs/http.md).
//!
//! Each route reads an HTTP request into typed values and calls the method of the
//! frontend's service (`SellerFrontend`, `BuyerFrontend`) that the TCP handler calls for
//! the same operation, on the same instance, so the two cannot differ in semantics or
//! errors. The OpenAPI document is generated from the routes and their types.
//!
//! - [`seller`], [`buyer`]: the routes of each frontend and their OpenAPI headers.
//! - `shared`: the routes both have (accounts, sessions, health), written once.
//! - [`model`]: the JSON bodies, with their schemas.
//! - [`extract`]: JSON body, query, path and bearer-session extractors that refuse bad
//!   input in the one error shape.
//! - [`error`]: that shape and the status of each error code.
//! - [`serve`]: the connections, with their cap and deadlines.
//! - `docs.html`, `docs.js`, `docs.css`: the self-contained API browser served at /docs.
//!
//! Every answer carries `X-Content-Type-Options: nosniff`, `X-Frame-Options: DENY`, and,
//! unless the route says otherwise, `Cache-Control: no-store` and a Content-Security-Policy
//! that allows nothing (`baseline_headers`): a JSON answer holds a user's data and is never
//! a page; the pages and the docs set policies of their own.

pub mod buyer;
pub mod error;
pub mod extract;
pub mod model;
pub mod seller;
pub mod serve;
mod shared;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use agora_proto::ErrorCode;
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use tracing::error;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr};

use crate::buyer::BuyerFrontend;
use crate::seller::SellerFrontend;
use error::Error;

/// The HTTP server's limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// A request not answered within this is answered `504 timeout`. Longer than the
    /// frontends' database deadline, so a slow database shows as its own error first.
    pub request_timeout: Duration,
    /// Largest request body, in bytes; past it, `413`.
    pub body_limit: usize,
    /// Most connections open at once; one more takes the place of the connection idle
    /// longest, or, with none idle, is answered `503 overloaded` and closed.
    pub max_connections: usize,
    /// Most connections from one client address at once (its share of
    /// `max_connections`); past it, the same, among that address's connections.
    pub max_connections_per_address: usize,
    /// Once the first byte of a request has arrived, its head (request line and headers)
    /// must arrive within this, or the connection is closed; a connection's first request
    /// has this long from the connection's opening.
    pub header_timeout: Duration,
    /// A connection with no request in hand for this long is closed.
    pub idle_timeout: Duration,
}

/// Default [`Limits::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: u32 = 1024;
/// Default [`Limits::max_connections_per_address`].
pub const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: u32 = 256;
/// Default [`Limits::header_timeout`].
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`Limits::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest request URI (path and query), in bytes; past it, `414`.
pub const URI_MAX: usize = 8 * 1024;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            request_timeout: Duration::from_secs(10),
            body_limit: 64 * 1024,
            max_connections: DEFAULT_MAX_CONNECTIONS as usize,
            max_connections_per_address: DEFAULT_MAX_CONNECTIONS_PER_ADDRESS as usize,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// What a route returns: a response, or an error in the one shape.
pub type Out<T> = Result<T, Error>;

/// The seller server's HTTP application, JSON API and web pages, over the service its TCP
/// server uses.
pub fn seller_app(front: Arc<SellerFrontend>, limits: &Limits) -> Router {
    let pages = crate::web::seller::routes(front.clone());
    let (router, api) = seller::routes(front);
    finish(router.merge(storefront(pages, true)), &api, limits, true)
}

/// The buyer server's HTTP application, JSON API and web pages, over the service its TCP
/// server uses.
pub fn buyer_app(front: Arc<BuyerFrontend>, limits: &Limits) -> Router {
    let pages = crate::web::buyer::routes(front.clone());
    let (router, api) = buyer::routes(front);
    finish(router.merge(storefront(pages, false)), &api, limits, false)
}

/// A role's web pages (docs/storefront.md) with the stylesheet, the headers every page
/// carries and the refusal of forms from other origins; `seller` says whose they are.
fn storefront(pages: Router, seller: bool) -> Router {
    pages
        .route(crate::web::STYLESHEET_PATH, get(crate::web::stylesheet))
        .layer(axum::middleware::from_fn_with_state(seller, crate::web::security_headers))
}

/// Adds the OpenAPI document, the docs page, the fallback and the middleware.
/// `seller` says whose pages a browser asking for an unknown page is sent back to.
fn finish(router: Router, api: &utoipa::openapi::OpenApi, limits: &Limits, seller: bool) -> Router {
    // Serialised once: the document is a constant of the build.
    let json = match api.to_pretty_json() {
        Ok(json) => json,
        Err(e) => {
            error!(error = %e, "cannot serialise the OpenAPI document");
            String::from("{}")
        }
    };
    let router = router
        .route(
            "/openapi.json",
            get(move || async move { ([(header::CONTENT_TYPE, "application/json")], json) }),
        )
        .route("/docs", get(docs_page))
        .route("/docs.js", get(|| async { static_file("text/javascript", DOCS_SCRIPT) }))
        .route("/docs.css", get(|| async { static_file("text/css", DOCS_STYLE) }));
    layers(router, without_query(api), limits, seller)
}

/// The docs page's script and stylesheet, served beside it so that its policy can forbid
/// inline code.
const DOCS_SCRIPT: &str = include_str!("docs.js");
const DOCS_STYLE: &str = include_str!("docs.css");

/// The docs page's policy: its own script and stylesheet, requests to this server (it
/// sends the operations it shows), nothing inline, no framing, no forms.
pub const DOCS_CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self' data:; form-action 'none'; \
     frame-ancestors 'none'; base-uri 'none'";

/// The policy of every answer that is not a page: nothing may load or run from it.
pub const API_CONTENT_SECURITY_POLICY: &str = "default-src 'none'; frame-ancestors 'none'";

/// GET /docs.
async fn docs_page() -> Response {
    let policy = HeaderValue::from_static(DOCS_CONTENT_SECURITY_POLICY);
    ([(header::CONTENT_SECURITY_POLICY, policy)], Html(include_str!("docs.html"))).into_response()
}

/// One of the docs page's files, with its type.
fn static_file(kind: &'static str, body: &'static str) -> Response {
    let kind = HeaderValue::from_static(kind);
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

/// The headers every answer carries, the route's own winning where it set one: never
/// sniffed as another type, never framed, never cached (answers show a user's data), and
/// no content allowed to load or run unless the route's policy says what may.
async fn baseline_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    let defaults = [
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CACHE_CONTROL, "no-store"),
        (header::CONTENT_SECURITY_POLICY, API_CONTENT_SECURITY_POLICY),
    ];
    for (name, value) in defaults {
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
    response
}

/// The fallback and the middleware of every API: body limit, request deadline, panics
/// caught, query strings refused where the operation (`no_query`) takes none, the one
/// error shape, tracing. `seller` says whose pages a browser asking for an unknown page
/// is sent back to.
fn layers(
    router: Router,
    no_query: HashSet<(Method, String)>,
    limits: &Limits,
    seller: bool,
) -> Router {
    router
        .fallback(move |request: Request| async move {
            // A browser asking for a page that is not there gets a page that says so.
            if crate::web::wants_html(&request) {
                return crate::web::not_found(seller);
            }
            Error::new(
                StatusCode::NOT_FOUND,
                ErrorCode::BadRequest,
                format!("no route {} {}: see /docs", request.method(), request.uri().path()),
            )
            .into_response()
        })
        // Innermost first: each layer wraps those above it.
        .layer(DefaultBodyLimit::max(limits.body_limit))
        .layer(TimeoutLayer::with_status_code(StatusCode::GATEWAY_TIMEOUT, limits.request_timeout))
        .layer(CatchPanicLayer::custom(|_| {
            Error::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal, "a handler panicked")
                .into_response()
        }))
        .layer(axum::middleware::from_fn_with_state(Arc::new(no_query), refuse_queries))
        .layer(axum::middleware::map_response(error_shape))
        .layer(axum::middleware::from_fn(refuse_long_uris))
        .layer(axum::middleware::map_response(baseline_headers))
        .layer(TraceLayer::new_for_http())
}

/// The operations that take no query parameters, as method and path template: read from
/// the OpenAPI document, so that they cannot drift from what it declares.
fn without_query(api: &utoipa::openapi::OpenApi) -> HashSet<(Method, String)> {
    use utoipa::openapi::path::{Operation, ParameterIn};
    let mut none = HashSet::new();
    for (path, item) in &api.paths.paths {
        let operations: [(Method, &Option<Operation>); 5] = [
            (Method::GET, &item.get),
            (Method::POST, &item.post),
            (Method::PUT, &item.put),
            (Method::PATCH, &item.patch),
            (Method::DELETE, &item.delete),
        ];
        for (method, operation) in operations {
            let Some(operation) = operation else { continue };
            let takes_query = operation
                .parameters
                .iter()
                .flatten()
                .any(|p| matches!(p.parameter_in, ParameterIn::Query));
            if !takes_query {
                none.insert((method, path.clone()));
            }
        }
    }
    none
}

/// Refuses a query on a route that takes none, naming the first parameter, as the
/// routes that take some refuse one they do not know: a stray parameter is a mistake
/// the caller should hear about.
async fn refuse_queries(
    State(none): State<Arc<HashSet<(Method, String)>>>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let query = request.uri().query().unwrap_or("");
    let first = query.split('&').find(|p| !p.is_empty());
    let matched = request.extensions().get::<MatchedPath>().map(MatchedPath::as_str);
    if let (Some(first), Some(path)) = (first, matched)
        && none.contains(&(request.method().clone(), path.to_owned()))
    {
        let name = first.split_once('=').map_or(first, |(name, _)| name);
        // Only a short, printable name goes back into the message.
        let name: String = name.chars().take(40).filter(|c| c.is_ascii_graphic()).collect();
        return Error::invalid(format!(
            "unknown query parameter `{name}`: {} {path} takes none",
            request.method()
        ))
        .into_response();
    }
    next.run(request).await
}

/// Refuses a URI over [`URI_MAX`] bytes with 414, before any route reads it.
async fn refuse_long_uris(request: Request, next: axum::middleware::Next) -> Response {
    let length = request.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if length > URI_MAX {
        return Error::new(
            StatusCode::URI_TOO_LONG,
            ErrorCode::BadRequest,
            format!("the URI is {length} bytes long, over the limit of {URI_MAX}"),
        )
        .into_response();
    }
    next.run(request).await
}

/// Gives the one error shape to error responses that axum or a layer made without a
/// body: 405 (its `Allow` header kept), the timeout's 504.
async fn error_shape(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || response.headers().contains_key(header::CONTENT_TYPE)
    {
        return response;
    }
    let message = match status {
        StatusCode::METHOD_NOT_ALLOWED => "this method is not allowed here: see /docs".to_owned(),
        StatusCode::GATEWAY_TIMEOUT => "the request took too long and was abandoned".to_owned(),
        other => other.canonical_reason().unwrap_or("error").to_lowercase(),
    };
    let (mut parts, _) = response.into_parts();
    // The new body has a length of its own.
    parts.headers.remove(header::CONTENT_LENGTH);
    let error = Error::new(status, error::code_of(status), message).into_response();
    let (fresh, body) = error.into_parts();
    for (name, value) in fresh.headers {
        if let Some(name) = name {
            parts.headers.insert(name, value);
        }
    }
    Response::from_parts(parts, body)
}

pub use serve::serve;

/// An error response with `description` and the one error shape.
fn error_response(description: &str) -> RefOr<utoipa::openapi::response::Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            Content::new(Some(RefOr::Ref(Ref::from_schema_name("ErrorBody")))),
        )
        .build()
        .into()
}

/// The errors a route with a JSON body may answer before looking at it.
pub struct BodyFailures;

impl utoipa::IntoResponses for BodyFailures {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::response::Response>> {
        BTreeMap::from([
            ("413".to_owned(), error_response("The body is over 64 KiB (`bad_request`)")),
            (
                "415".to_owned(),
                error_response("The body is not `application/json` (`bad_request`)"),
            ),
        ])
    }
}

/// The errors any route may answer, whatever it does: a database down or slow, a fault.
pub struct Failures;

impl utoipa::IntoResponses for Failures {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::response::Response>> {
        let error = error_response;
        BTreeMap::from([
            ("500".to_owned(), error("A fault inside the server (`internal`); details in its log")),
            (
                "503".to_owned(),
                error(
                    "A database is down or the server is overloaded (`unavailable`, `overloaded`)",
                ),
            ),
            ("504".to_owned(), error("A call did not finish in time (`timeout`)")),
        ])
    }
}

/// Declares the `session` bearer scheme the routes' `security` refers to.
pub struct SessionScheme;

impl utoipa::Modify for SessionScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "session",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The `session` from login: `Authorization: Bearer <session>`.",
                    ))
                    .build(),
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio_util::sync::CancellationToken;

    /// How long a test waits for an answer: far past any answer here.
    const BOUND: Duration = Duration::from_secs(10);

    /// Serves `router` behind [`layers`] on a free port, asks `GET path` over a real
    /// socket, and returns the status, the content type and the JSON body.
    async fn get_through_layers(
        router: Router,
        limits: Limits,
        path: &str,
    ) -> (u16, String, serde_json::Value) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        let app = layers(router, HashSet::new(), &limits, false);
        let server = tokio::spawn(serve(listener, app, limits.clone(), shutdown.clone()));
        let mut socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        socket.write_all(request.as_bytes()).await.expect("write");
        let mut answer = Vec::new();
        tokio::time::timeout(BOUND, socket.read_to_end(&mut answer))
            .await
            .expect("answered in time")
            .expect("read");
        shutdown.cancel();
        server.await.expect("server");

        let answer = String::from_utf8(answer).expect("utf-8");
        let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status");
        let content_type = head
            .lines()
            .find_map(|l| l.strip_prefix("content-type: "))
            .unwrap_or_default()
            .to_owned();
        (status, content_type, serde_json::from_str(body).expect("a JSON body"))
    }

    fn error(code: &str, message: &str) -> serde_json::Value {
        serde_json::json!({"error": {"code": code, "message": message}})
    }

    #[tokio::test]
    async fn a_panicking_handler_is_a_500_in_the_one_error_shape() {
        async fn boom() -> &'static str {
            panic!("secret detail")
        }
        let router = Router::new().route("/boom", get(boom));
        let (status, content_type, body) =
            get_through_layers(router, Limits::default(), "/boom").await;
        assert_eq!((status, content_type.as_str()), (500, "application/json"));
        // The panic's message stays in the log.
        assert_eq!(body, error("internal", "internal error; the details are in the server's log"));
    }

    #[tokio::test]
    async fn a_request_past_its_deadline_is_a_504_in_the_one_error_shape() {
        let router = Router::new().route("/slow", get(std::future::pending::<()>));
        let limits = Limits { request_timeout: Duration::from_millis(50), ..Limits::default() };
        let (status, content_type, body) = get_through_layers(router, limits, "/slow").await;
        assert_eq!((status, content_type.as_str()), (504, "application/json"));
        assert_eq!(body, error("timeout", "the request took too long and was abandoned"));
    }
}
