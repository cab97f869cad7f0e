//! The seller's interface over HTTP. Each route reads its request into typed values and
//! calls the one method of the [`SellerFrontend`] service the TCP handler and the web
//! pages call too, so all speak the same semantics and refuse with the same codes.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ErrorBody;
use super::extract::{IdempotencyKey, ItemPath, Json, Query, Session};
use super::model::{
    CategoryList, ItemCreated, ItemIdParam, ItemPage, MutationHeaders, NewItemBody, PageQuery,
    PriceChange, Rating, SellerSession, UnitsLeft, UnitsRemoval,
};
use super::shared::shared_routes;
use super::{BodyFailures, Failures, Out, SessionScheme};
use crate::seller::SellerFrontend;

type Front = State<Arc<SellerFrontend>>;

/// The seller API's OpenAPI document: the header here, the paths from the routes.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Agora seller API",
        description = "The seller's interface of Agora over HTTP/JSON: the same operations, \
                       semantics and error codes as the TCP protocol. Log in with \
                       `POST /v1/sellers/sessions`, then send the session as \
                       `Authorization: Bearer <session>`. Errors are \
                       `{\"error\":{\"code\":…,\"message\":…}}`; docs/http.md has the details."
    ),
    modifiers(&SessionScheme),
    components(schemas(ErrorBody)),
    tags(
        (name = "accounts", description = "Seller accounts and sessions"),
        (name = "items", description = "The seller's items for sale"),
        (name = "health", description = "Liveness and readiness")
    )
)]
struct SellerApi;

/// The seller routes and their OpenAPI document.
pub fn routes(front: Arc<SellerFrontend>) -> (axum::Router, utoipa::openapi::OpenApi) {
    let (router, api) = OpenApiRouter::with_openapi(SellerApi::openapi())
        .routes(routes!(shared::create_account))
        .routes(routes!(shared::login))
        .routes(routes!(shared::logout))
        .routes(routes!(rating))
        .routes(routes!(register_item))
        .routes(routes!(list_items))
        .routes(routes!(categories))
        .routes(routes!(change_price))
        .routes(routes!(remove_units))
        .routes(routes!(shared::healthz))
        .routes(routes!(shared::readyz))
        .split_for_parts();
    (router.with_state(front), api)
}

// CreateAccount, Login, Logout, /healthz and /readyz, written once for both servers.
shared_routes! {
    front: SellerFrontend,
    /// CreateAccount: a new seller account.
    create_account: "/v1/sellers" => "Created; the seller's id",
    /// Login: starts a seller session.
    login: "/v1/sellers/sessions" => SellerSession { seller_id },
    /// Logout: ends this session.
    logout,
}

/// GetSellerRating: this seller's feedback and units sold.
#[utoipa::path(
    get, path = "/v1/sellers/me/rating", tag = "accounts",
    security(("session" = [])),
    responses(
        (status = 200, description = "The seller's rating", body = Rating),
        (status = 401, description = "Not logged in or session expired", body = ErrorBody),
        Failures
    )
)]
async fn rating(State(front): Front, Session(session): Session) -> Out<axum::Json<Rating>> {
    Ok(axum::Json(front.rating(&session).await?.into()))
}

/// RegisterItemForSale: lists a new item.
#[utoipa::path(
    post, path = "/v1/items", tag = "items",
    security(("session" = [])),
    params(MutationHeaders),
    request_body = NewItemBody,
    responses(
        (status = 201, description = "Listed; the new item's id", body = ItemCreated),
        (status = 400, description = "A field broke a rule (`invalid_argument`)", body = ErrorBody),
        (status = 401, description = "Not logged in or session expired", body = ErrorBody),
        (
            status = 409,
            description = "The Idempotency-Key was already used for a different request \
                           (`op_reused`)",
            body = ErrorBody
        ),
        BodyFailures,
        Failures
    )
)]
async fn register_item(
    State(front): Front,
    Session(session): Session,
    key: IdempotencyKey,
    Json(body): Json<NewItemBody>,
) -> Out<(StatusCode, axum::Json<ItemCreated>)> {
    let op = key.op("seller", "register-item", &session);
    let id = front.register_item(op, &session, body.into_domain()?).await?;
    Ok((StatusCode::CREATED, axum::Json(id.into())))
}

/// The named categories, each with how many items it has for sale: what a new listing's
/// `category` may be named as (any other number is a category too, without a name).
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

/// DisplayItemsForSale: this seller's items with units left, oldest first.
#[utoipa::path(
    get, path = "/v1/sellers/me/items", tag = "items",
    security(("session" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "One page of the seller's items", body = ItemPage),
        (status = 400, description = "A bad `limit` or `offset`", body = ErrorBody),
        (status = 401, description = "Not logged in or session expired", body = ErrorBody),
        Failures
    )
)]
async fn list_items(
    State(front): Front,
    Session(session): Session,
    Query(query): Query<PageQuery>,
) -> Out<axum::Json<ItemPage>> {
    let page = query.page();
    let items = front.list_items(&session, page).await?;
    Ok(axum::Json(ItemPage::new(items, page, front.category_names())))
}

/// ChangeItemPrice: a new sale price for one of this seller's items.
#[utoipa::path(
    patch, path = "/v1/items/{id}", tag = "items",
    security(("session" = [])),
    params(ItemIdParam),
    request_body = PriceChange,
    responses(
        (status = 204, description = "The price is changed"),
        (status = 400, description = "A bad id or price (`invalid_argument`)", body = ErrorBody),
        (status = 401, description = "Not logged in or session expired", body = ErrorBody),
        (status = 403, description = "Another seller's item (`not_your_item`)", body = ErrorBody),
        (status = 404, description = "No such item (`unknown_item`)", body = ErrorBody),
        BodyFailures,
        Failures
    )
)]
async fn change_price(
    State(front): Front,
    Session(session): Session,
    ItemPath(item): ItemPath,
    Json(body): Json<PriceChange>,
) -> Out<StatusCode> {
    front.change_price(&session, item, body.money()?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// UpdateUnitsForSale: takes units of one of this seller's items off sale.
#[utoipa::path(
    post, path = "/v1/items/{id}/removals", tag = "items",
    security(("session" = [])),
    params(ItemIdParam, MutationHeaders),
    request_body = UnitsRemoval,
    responses(
        (status = 200, description = "Units removed; the units left", body = UnitsLeft),
        (status = 400, description = "A bad id or quantity (`invalid_argument`)", body = ErrorBody),
        (status = 401, description = "Not logged in or session expired", body = ErrorBody),
        (status = 403, description = "Another seller's item (`not_your_item`)", body = ErrorBody),
        (status = 404, description = "No such item (`unknown_item`)", body = ErrorBody),
        (
            status = 409,
            description = "Fewer units left (`not_enough_units`), or the Idempotency-Key was \
                           already used for a different request (`op_reused`)",
            body = ErrorBody
        ),
        BodyFailures,
        Failures
    )
)]
async fn remove_units(
    State(front): Front,
    Session(session): Session,
    ItemPath(item): ItemPath,
    key: IdempotencyKey,
    Json(body): Json<UnitsRemoval>,
) -> Out<axum::Json<UnitsLeft>> {
    let op = key.op("seller", "remove-units", &session);
    let quantity = front.remove_units(op, &session, item, body.quantity).await?;
    Ok(axum::Json(UnitsLeft { id: item.to_string(), quantity }))
}
