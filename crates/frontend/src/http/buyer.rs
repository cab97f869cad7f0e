//! The buyer's interface over HTTP. Each route reads its request into typed values and
//! calls the one method of the [`BuyerFrontend`] service the TCP handler and the web pages
//! call too, so all speak the same semantics and refuse with the same codes.

use std::sync::Arc;

use agora_domain::CartLine;
use axum::extract::State;
use axum::http::StatusCode;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ErrorBody;
use super::extract::{IdempotencyKey, ItemPath, Json, Query, SellerPath, Session};
use super::model::{
    BuyerSession, Cart, CartAddition, CategoryList, ItemIdParam, ItemPage, ItemView,
    MutationHeaders, PageQuery, PurchaseHeaders, PurchaseOrder, PurchasePage, PurchaseView,
    QuantityQuery, Rating, SearchQuery, SellerIdParam, Thumb, Vote, Votes,
};
use super::shared::shared_routes;
use super::{BodyFailures, Failures, Out, SessionScheme};
use crate::buyer::BuyerFrontend;

type Front = State<Arc<BuyerFrontend>>;

/// The buyer API's OpenAPI document: the header here, the paths from the routes.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Agora buyer API",
        description = "The buyer's interface of Agora over HTTP/JSON: the same operations, \
                       semantics and error codes as the TCP protocol. Log in with \
                       `POST /v1/buyers/sessions`, then send the session as \
                       `Authorization: Bearer <session>`. Errors are \
                       `{\"error\":{\"code\":…,\"message\":…}}`; docs/http.md has the details."
    ),
    modifiers(&SessionScheme),
    components(schemas(ErrorBody)),
    tags(
        (name = "accounts", description = "Buyer accounts and sessions"),
        (name = "items", description = "Searching and viewing items, voting on them"),
        (name = "cart", description = "The session's cart and the saved cart"),
        (name = "purchases", description = "Purchase history"),
        (name = "health", description = "Liveness and readiness")
    )
)]
struct BuyerApi;

/// The buyer routes and their OpenAPI document.
pub fn routes(front: Arc<BuyerFrontend>) -> (axum::Router, utoipa::openapi::OpenApi) {
    let (router, api) = OpenApiRouter::with_openapi(BuyerApi::openapi())
        .routes(routes!(shared::create_account))
        .routes(routes!(shared::login))
        .routes(routes!(shared::logout))
        .routes(routes!(search))
        .routes(routes!(get_item))
        .routes(routes!(categories))
        .routes(routes!(feedback))
        .routes(routes!(display_cart, clear_cart))
        .routes(routes!(add_to_cart))
        .routes(routes!(remove_from_cart))
        .routes(routes!(save_cart))
        .routes(routes!(seller_rating))
        .routes(routes!(purchases, make_purchase))
        .routes(routes!(shared::healthz))
        .routes(routes!(shared::readyz))
        .split_for_parts();
    (router.with_state(front), api)
}

// CreateAccount, Login, Logout, /healthz and /readyz, written once for both servers.
shared_routes! {
    front: BuyerFrontend,
    /// CreateAccount: a new buyer account.
    create_account: "/v1/buyers" => "Created; the buyer's id",
    /// Login: starts a buyer session, whose cart starts as a copy of the saved cart.
    login: "/v1/buyers/sessions" => BuyerSession { buyer_id },
    /// Logout: ends this session; its unsaved cart is gone.
    logout,
}

/// SearchItemsForSale: items of a category with units left, best match first.
///
/// Items matching more of the keywords come first, newer listings first among equals;
/// with no keyword, the category's newest items.
#[utoipa::path(
    get, path = "/v1/items", tag = "items",
    security(("session" = [])),
    params(SearchQuery),
    responses(
        (status = 200, description = "One page of matching items", body = ItemPage),
        (status = 400, description = "A bad parameter (`invalid_argument`)", body = ErrorBody),
        (status = 401, description = "Not logged in or session expired", body = ErrorBody),
        Failures
    )
)]
async fn search(
    State(front): Front,
    Session(session): Session,
    Query(query): Query<SearchQuery>,
) -> Out<axum::Json<ItemPage>> {
    let page = query.page();
    let items = front.search(&session, query.category, &query.keyword, page).await?;
    Ok(axum::Json(ItemPage::new(items, page, front.category_names())))
}

/// GetItem: one item, sold out or not.
#[utoipa::path(
    get, path = "/v1/items/{id}", tag = "items",
    security(("session" = [])),
    params(ItemIdParam),
    responses(
        (status = 200, description = "The item", body = ItemView),
        (status = 400, description = "A malformed id (`invalid_argument`)", body = ErrorBody),
        (status = 401, description = "Not logged in or session expired", body = ErrorBody),
        (status = 404, description = "No such item (`unknown_item`)", body = ErrorBody),
        Failures
    )
)]
async fn get_item(
    State(front): Front,
    Session(session): Session,
    ItemPath(item): ItemPath,
) -> Out<axum::Json<ItemView>> {
    let item = front.get_item(&session, item).await?;
    Ok(axum::Json(ItemView::new(item, front.category_names())))
}

/// The named categories, each with how many items it has for sale.
#[utoipa::path(
    get, path = "/v1/categories", tag = "items",
    security(("session" = [])),
    responses(
        (status = 200, description = "The named categories, by number", body = CategoryList),
        (status = 401, description = "Not logged in or session expired", body = ErrorBody),
        Failures
    )
)]
async fn categories(
    State(front): Front,
    Session(session): Session,
) -> Out<axum::Json<CategoryList>> {
    Ok(axum::Json(front.categories(&session, true).await?.into()))
}

/// ProvideFeedback: this buyer's thumbs up or down on an item; a new vote replaces the
/// earlier one.
#[utoipa::path(
    put, path = "/v1/items/{id}/feedback", tag = "items",
    security(("session" = [])),
    params(ItemIdParam),
    request_body = Vote,
    responses(
        (status = 200, description = "Voted; the item's new totals", body = Votes),
        (status = 400, description = "A bad id or vote (`invalid_argument`)", body = ErrorBody),
        (status = 401, description = "Not logged in or session expired", body = ErrorBody),
        (status = 404, description = "No such item (`unknown_item`)", body = ErrorBody),
        BodyFailures,
        Failures
    )
)]
async fn feedback(
    State(front): Front,
    Session(session): Session,
    ItemPath(item): ItemPath,
    Json(body): Json<Vote>,
) -> Out<axum::Json<Votes>> {
    let up = matches!(body.vote, Thumb::Up);
    Ok(axum::Json(front.feedback(&session, item, up).await?.into()))
}

/// DisplayCart: this session's cart.
#[utoipa::path(
    get, path = "/v1/cart", tag = "cart",
    security(("session" = [])),
    responses(
        (status = 200, description = "The cart", body = Cart),
        (status = 401, description = "Not logged in or session expired", body = ErrorBody),
        Failures
    )
)]
async fn display_cart(State(front): Front, Session(session): Session) -> Out<axum::Json<Cart>> {
    let lines = front.cart(&session).await?;
    cart_json(&front, lines).await
}

/// A cart's lines as the API shows them, each with its item now.
async fn cart_json(front: &BuyerFrontend, lines: Vec<CartLine>) -> Out<axum::Json<Cart>> {
    let lines = front.cart_items(lines).await?;
    Ok(axum::Json(Cart::new(lines, front.category_names())))
}

/// ClearCart: empties this session's cart (the saved cart is untouched).
#[utoipa::path(
    delete, path = "/v1/cart", tag = "cart",
    security(("session" = [])),
    responses(
        (status = 204, description = "The cart is empty"),
        (status = 401, description = "Not logged in or session expired", body = ErrorBody),
        Failures
    )
)]
async fn clear_cart(State(front): Front, Session(session): Session) -> Out<StatusCode> {
    front.clear_cart(&session).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// AddItemToCart: only if the cart's new total of the item is available now.
#[utoipa::path(
    post, path = "/v1/cart/items", tag = "cart",
    security(("session" = [])),
    params(MutationHeaders),
    request_body = CartAddition,
    responses(
        (status = 200, description = "Added; the whole cart", body = Cart),
        (
            status = 400,
            description = "A bad id or quantity, or a full cart (`invalid_argument`)",
            body = ErrorBody
        ),
        (status = 401, description = "Not logged in or session expired", body = ErrorBody),
        (status = 404, description = "No such item (`unknown_item`)", body = ErrorBody),
        (
            status = 409,
            description = "Not that many units available (`not_enough_units`), or the \
                           Idempotency-Key was already used for a different request \
                           (`op_reused`)",
            body = ErrorBody
        ),
        BodyFailures,
        Failures
    )
)]
async fn add_to_cart(
    State(front): Front,
    Session(session): Session,
    key: IdempotencyKey,
    Json(body): Json<CartAddition>,
) -> Out<axum::Json<Cart>> {
    let item = body.item.parse()?;
    let op = key.op("buyer", "add-to-cart", &session);
    let lines = front.add_to_cart(op, &session, item, body.quantity).await?;
    cart_json(&front, lines).await
}

/// RemoveItemFromCart: takes units of an item out of this session's cart.
#[utoipa::path(
    delete, path = "/v1/cart/items/{id}", tag = "cart",
    security(("session" = [])),
    params(
        ItemIdParam,
        QuantityQuery,
        MutationHeaders
    ),
    responses(
        (status = 200, description = "Removed; the whole cart", body = Cart),
        (
            status = 400,
            description = "A bad id or quantity, or more than the cart holds (`invalid_argument`)",
            body = ErrorBody
        ),
        (status = 401, description = "Not logged in or session expired", body = ErrorBody),
        (status = 404, description = "The item is not in the cart", body = ErrorBody),
        (
            status = 409,
            description = "The Idempotency-Key was already used for a different request \
                           (`op_reused`)",
            body = ErrorBody
        ),
        Failures
    )
)]
async fn remove_from_cart(
    State(front): Front,
    Session(session): Session,
    ItemPath(item): ItemPath,
    key: IdempotencyKey,
    Query(query): Query<QuantityQuery>,
) -> Out<axum::Json<Cart>> {
    let op = key.op("buyer", "remove-from-cart", &session);
    let lines = front.remove_from_cart(op, &session, item, query.quantity).await?;
    cart_json(&front, lines).await
}

/// SaveCart: the saved cart becomes a copy of this session's cart.
#[utoipa::path(
    put, path = "/v1/cart/saved", tag = "cart",
    security(("session" = [])),
    responses(
        (status = 204, description = "Saved"),
        (status = 401, description = "Not logged in or session expired", body = ErrorBody),
        Failures
    )
)]
async fn save_cart(State(front): Front, Session(session): Session) -> Out<StatusCode> {
    front.save_cart(&session).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// GetSellerRating: any seller's feedback and units sold.
#[utoipa::path(
    get, path = "/v1/sellers/{id}/rating", tag = "items",
    security(("session" = [])),
    params(SellerIdParam),
    responses(
        (status = 200, description = "The seller's rating", body = Rating),
        (status = 400, description = "A malformed id (`invalid_argument`)", body = ErrorBody),
        (status = 401, description = "Not logged in or session expired", body = ErrorBody),
        (status = 404, description = "No such seller (`unknown_user`)", body = ErrorBody),
        Failures
    )
)]
async fn seller_rating(
    State(front): Front,
    Session(session): Session,
    SellerPath(seller_id): SellerPath,
) -> Out<axum::Json<Rating>> {
    Ok(axum::Json(front.seller_rating(&session, seller_id).await?.into()))
}

/// GetBuyerPurchases: this buyer's purchases, newest first.
#[utoipa::path(
    get, path = "/v1/purchases", tag = "purchases",
    security(("session" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "One page of purchases", body = PurchasePage),
        (status = 400, description = "A bad `limit` or `offset`", body = ErrorBody),
        (status = 401, description = "Not logged in or session expired", body = ErrorBody),
        Failures
    )
)]
async fn purchases(
    State(front): Front,
    Session(session): Session,
    Query(query): Query<PageQuery>,
) -> Out<axum::Json<PurchasePage>> {
    let page = query.page();
    Ok(axum::Json(PurchasePage::new(front.purchases(&session, page).await?, page)))
}

/// MakePurchase: buys everything in this session's cart, paying by card; all or nothing.
///
/// Send an `Idempotency-Key` to make a retry safe: a key this buyer already used answers
/// with that purchase's outcome (or `purchase_pending` while it is being resolved) instead
/// of buying again. Without one, the server picks a fresh key: each request is a new
/// purchase.
#[utoipa::path(
    post, path = "/v1/purchases", tag = "purchases",
    security(("session" = [])),
    params(PurchaseHeaders),
    request_body = PurchaseOrder,
    responses(
        (status = 201, description = "Bought; the purchase", body = PurchaseView),
        (
            status = 400,
            description = "Bad card details, a bad key or an empty cart (`invalid_argument`)",
            body = ErrorBody
        ),
        (status = 401, description = "Not logged in or session expired", body = ErrorBody),
        (
            status = 402,
            description = "The card was declined; nothing changed (`payment_declined`)",
            body = ErrorBody
        ),
        (
            status = 409,
            description = "Not enough units left of an item in the cart (`not_enough_units`), \
                           a price changed so that the cart's total is not the agreed `total` \
                           (`price_changed`; the message says the new total), or the purchase \
                           was cancelled (`aborted`)",
            body = ErrorBody
        ),
        BodyFailures,
        Failures
    )
)]
async fn make_purchase(
    State(front): Front,
    Session(session): Session,
    IdempotencyKey(key): IdempotencyKey,
    Json(body): Json<PurchaseOrder>,
) -> Out<(StatusCode, axum::Json<PurchaseView>)> {
    // The key goes to the customer database as it is: a purchase's key is the buyer's.
    let key = key.unwrap_or_else(fresh_key);
    let total = body.total()?;
    let purchase = front.purchase(&session, key, body.card(), total).await?;
    Ok((StatusCode::CREATED, axum::Json(purchase.into())))
}

/// A random purchase key, 128 bits as 32 hex digits.
fn fresh_key() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No OS randomness: the clock is unique enough for one buyer's purchases.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes = nanos.to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
