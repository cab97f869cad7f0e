//! The frontends' HTTP/JSON API, beside their TCP protocol (docs/http.md).
//!
//! Each route translates an HTTP request into the same request enum the TCP server
//! decodes, and hands it to the same handler instance, so the two cannot differ in
//! semantics or errors. The OpenAPI document is generated from the routes and their types.
//!
//! - [`seller`], [`buyer`]: the routes of each frontend and their OpenAPI headers.
//! - `shared`: the routes both have (accounts, sessions, health), written once.
//! - [`model`]: the JSON bodies, with their schemas.
//! - [`extract`]: JSON body, query, path and bearer-session extractors that refuse bad
//!   input in the one error shape.
//! - [`error`]: that shape and the status of each error code.
//! - `docs.html`: the self-contained API browser served at /docs.

pub mod buyer;
pub mod error;
pub mod extract;
pub mod model;
pub mod seller;
mod shared;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use agora_proto::ErrorCode;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use tracing::{error, info};
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
}

impl Default for Limits {
    fn default() -> Self {
        Limits { request_timeout: Duration::from_secs(10), body_limit: 64 * 1024 }
    }
}

/// What a route returns: a response, or an error in the one shape.
pub type Out<T> = Result<T, Error>;

/// The seller server's HTTP application, over the handler its TCP server uses.
pub fn seller_app(front: Arc<SellerFrontend>, limits: &Limits) -> Router {
    let (router, api) = seller::routes(front);
    finish(router, &api, limits)
}

/// The buyer server's HTTP application, over the handler its TCP server uses.
pub fn buyer_app(front: Arc<BuyerFrontend>, limits: &Limits) -> Router {
    let (router, api) = buyer::routes(front);
    finish(router, &api, limits)
}

/// Adds the OpenAPI document, the docs page, the fallback and the middleware.
fn finish(router: Router, api: &utoipa::openapi::OpenApi, limits: &Limits) -> Router {
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
        .route("/docs", get(|| async { Html(include_str!("docs.html")) }));
    layers(router, limits)
}

/// The fallback and the middleware of every API: body limit, request deadline, panics
/// caught, the one error shape, tracing.
fn layers(router: Router, limits: &Limits) -> Router {
    router
        .fallback(|request: Request| async move {
            Error::new(
                StatusCode::NOT_FOUND,
                ErrorCode::BadRequest,
                format!("no route {} {}: see /docs", request.method(), request.uri().path()),
            )
        })
        // Innermost first: each layer wraps those above it.
        .layer(DefaultBodyLimit::max(limits.body_limit))
        .layer(TimeoutLayer::with_status_code(StatusCode::GATEWAY_TIMEOUT, limits.request_timeout))
        .layer(CatchPanicLayer::custom(|_| {
            Error::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal, "a handler panicked")
                .into_response()
        }))
        .layer(axum::middleware::map_response(error_shape))
        .layer(TraceLayer::new_for_http())
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

/// Serves `app` on `listener` until `shutdown` is cancelled; then stops accepting, lets
/// the requests in hand finish, and returns.
pub async fn serve(listener: TcpListener, app: Router, shutdown: CancellationToken) {
    use axum::serve::ListenerExt;
    info!(addr = ?listener.local_addr().ok(), "http serving");
    let listener = listener.tap_io(|socket| {
        // Answers are written whole; don't let Nagle hold them back.
        let _ = socket.set_nodelay(true);
    });
    if let Err(e) =
        axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await
    {
        error!(error = %e, "http server failed");
    }
}

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
        let server = tokio::spawn(serve(listener, layers(router, &limits), shutdown.clone()));
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
