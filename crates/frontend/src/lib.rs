//! The seller server and the buyer server: stateless frontends that check each request,
//! authenticate its session with the customer database, and do the work against the two
//! databases. They keep nothing between requests but their connection pools and, for a
//! second, the sessions they have checked, so either can be killed and restarted (or run
//! as several copies) without users noticing.
//!
//! - [`upstream`]: the pools to the databases and the calls the frontends make on them.
//! - [`sessions`]: the sessions checked lately, trusted for a moment without asking.
//! - [`throttle`]: logins and sign-ups per client address.
//! - [`seller`]: the seller's interface: its service, one typed method per operation,
//!   and the TCP handler over it.
//! - [`buyer`]: the buyer's interface, the same way.
//! - [`http`]: both interfaces over HTTP/JSON, with an OpenAPI document.
//! - [`web`]: both interfaces as web pages, the storefront (docs/storefront.md).

pub mod buyer;
pub mod http;
pub mod seller;
pub mod sessions;
pub mod throttle;
pub mod upstream;
pub mod web;

use std::sync::Arc;

use agora_proto::ServerConfig;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

pub use upstream::{Config, DEFAULT_SESSION_RECHECK, Upstream};

/// Serves the seller interface on `listener` until `shutdown` is cancelled.
pub async fn run_seller(
    listener: TcpListener,
    config: Config,
    server: ServerConfig,
    shutdown: CancellationToken,
) {
    let handler = Arc::new(seller::SellerFrontend::new(Upstream::new(&config)));
    info!(addr = ?listener.local_addr().ok(), "seller-server serving");
    agora_proto::serve(listener, handler, server, shutdown).await;
}

/// Serves the buyer interface on `listener` until `shutdown` is cancelled.
pub async fn run_buyer(
    listener: TcpListener,
    config: Config,
    server: ServerConfig,
    shutdown: CancellationToken,
) {
    let handler = Arc::new(buyer::BuyerFrontend::new(Upstream::new(&config)));
    info!(addr = ?listener.local_addr().ok(), "buyer-server serving");
    agora_proto::serve(listener, handler, server, shutdown).await;
}

/// Serves the seller interface over TCP on `listener` and, if given, over HTTP on `http`
/// (docs/http.md) with `limits`, both with one handler and its database connections, until
/// `shutdown` is cancelled; returns when both have finished the requests in hand.
pub async fn run_seller_with_http(
    listener: TcpListener,
    http: Option<(TcpListener, http::Limits)>,
    config: Config,
    server: ServerConfig,
    shutdown: CancellationToken,
) {
    let handler = Arc::new(seller::SellerFrontend::new(Upstream::new(&config)));
    info!(addr = ?listener.local_addr().ok(), "seller-server serving");
    let tcp = agora_proto::serve(listener, handler.clone(), server, shutdown.clone());
    match http {
        Some((http, limits)) => {
            let app = http::seller_app(handler, &limits);
            tokio::join!(tcp, http::serve(http, app, limits, shutdown));
        }
        None => tcp.await,
    }
}

/// Serves the buyer interface over TCP on `listener` and, if given, over HTTP on `http`
/// (docs/http.md) with `limits`, both with one handler and its database connections, until
/// `shutdown` is cancelled; returns when both have finished the requests in hand.
pub async fn run_buyer_with_http(
    listener: TcpListener,
    http: Option<(TcpListener, http::Limits)>,
    config: Config,
    server: ServerConfig,
    shutdown: CancellationToken,
) {
    let handler = Arc::new(buyer::BuyerFrontend::new(Upstream::new(&config)));
    info!(addr = ?listener.local_addr().ok(), "buyer-server serving");
    let tcp = agora_proto::serve(listener, handler.clone(), server, shutdown.clone());
    match http {
        Some((http, limits)) => {
            let app = http::buyer_app(handler, &limits);
            tokio::join!(tcp, http::serve(http, app, limits, shutdown));
        }
        None => tcp.await,
    }
}
