//! The seller's pages, on the seller server: a dashboard of the seller's items and
//! rating, with the forms to list an item, change a price and remove units. Each handler
//! reads the cookie and the form, calls the [`SellerFrontend`] method of the operation,
//! and shows the dashboard again with the error beside the form that caused it.

use std::sync::Arc;

use agora_domain::{Condition, ItemId, Money, NewItem, PAGE_DEFAULT, Page};
use agora_proto::ApiError;
use agora_proto::messages::new_op_id;
use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::accounts;
use super::{
    CategoryOption, Nav, Refusal, SELLER_COOKIES, category_options, check_csrf, dom_id, keywords,
    notice, number, offset, page, plain, read_form, refusal, session_of,
};
use crate::http::error::status_of;
use crate::seller::SellerFrontend;

type Front = State<Arc<SellerFrontend>>;
type Out = Result<Response, Refusal>;

const COOKIES: super::Cookies = SELLER_COOKIES;

/// The seller's pages.
pub fn routes(front: Arc<SellerFrontend>) -> Router {
    Router::new()
        .route("/", get(dashboard))
        .route("/login", get(accounts::login_page::<SellerFrontend>))
        .route("/login", post(accounts::login::<SellerFrontend>))
        .route("/signup", post(accounts::signup::<SellerFrontend>))
        .route("/logout", post(accounts::logout::<SellerFrontend>))
        .route("/items", post(list_item))
        .route("/items/{id}/price", post(change_price))
        .route("/items/{id}/remove", post(remove_units))
        .with_state(front)
}

/// One of the seller's items, with its two forms.
#[derive(Debug, Clone)]
pub struct Row {
    id: String,
    dom: String,
    name: String,
    category_name: String,
    keywords: String,
    condition: String,
    price: String,
    quantity: u32,
    up: u64,
    down: u64,
    price_value: String,
    price_error: Option<String>,
    remove_value: String,
    remove_error: Option<String>,
}

/// The new-item form, as typed.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct NewItemForm {
    csrf: String,
    name: String,
    category: String,
    keywords: String,
    condition: String,
    price: String,
    quantity: String,
}

/// The dashboard: the seller's rating, items and forms.
#[derive(Template)]
#[template(path = "dashboard.html")]
pub struct Dashboard {
    nav: Nav,
    notice: Option<&'static str>,
    seller_name: String,
    up: u64,
    down: u64,
    items_sold: u64,
    items: Vec<Row>,
    prev: Option<u32>,
    next: Option<u32>,
    new_item: NewItemForm,
    /// The named categories, the one typed selected.
    categories: Vec<CategoryOption>,
    used: bool,
    new_error: Option<String>,
}

/// The dashboard, filled by `fill` with errors and typed values.
async fn dashboard_page(
    front: &SellerFrontend,
    session: &str,
    offset: u32,
    status: StatusCode,
    fill: impl FnOnce(&mut Dashboard),
) -> Out {
    let (rating, items) = tokio::join!(
        front.rating(session),
        front.list_items(session, Page { offset, limit: PAGE_DEFAULT })
    );
    let rating = rating.map_err(|e| refusal(COOKIES, true, session, e))?;
    let items = items.map_err(|e| refusal(COOKIES, true, session, e))?;
    let mut view = Dashboard {
        nav: Nav::new(true, Some(session)),
        notice: None,
        seller_name: rating.name,
        up: rating.feedback.up,
        down: rating.feedback.down,
        items_sold: rating.items_sold,
        prev: (offset > 0).then(|| offset.saturating_sub(PAGE_DEFAULT)),
        next: (items.len() as u32 == PAGE_DEFAULT).then_some(offset + PAGE_DEFAULT),
        items: items
            .iter()
            .map(|i| Row {
                id: i.id.to_string(),
                dom: dom_id(i.id),
                name: i.name.clone(),
                category_name: front.category_names().label(i.id.category),
                keywords: i.keywords.join(" "),
                condition: i.condition.to_string(),
                price: i.price.shown(),
                quantity: i.quantity,
                up: i.feedback.up,
                down: i.feedback.down,
                price_value: i.price.to_string(),
                price_error: None,
                remove_value: "1".into(),
                remove_error: None,
            })
            .collect(),
        new_item: NewItemForm { quantity: "1".into(), ..NewItemForm::default() },
        categories: Vec::new(),
        used: false,
        new_error: None,
    };
    fill(&mut view);
    // After `fill`, which may have put back the category the seller chose.
    view.categories = category_options(front.category_names(), &view.new_item.category);
    Ok(page(status, &view))
}

/// GET /?offset=20
async fn dashboard(State(front): Front, headers: HeaderMap, uri: OriginalUri) -> Out {
    let session = session_of(&headers, COOKIES)?;
    let notice = notice(uri.query());
    dashboard_page(&front, &session, offset(uri.query()), StatusCode::OK, |v| v.notice = notice)
        .await
}

/// The item typed in the new-item form, or the first field that broke its rule.
fn new_item(form: &NewItemForm) -> Result<NewItem, ApiError> {
    Ok(NewItem {
        name: form.name.clone(),
        category: number("category", &form.category, "choose one from the list")?,
        keywords: keywords(&form.keywords),
        condition: form.condition.parse::<Condition>()?,
        price: form.price.trim().parse::<Money>()?,
        quantity: number("quantity", &form.quantity, "must be a whole number from 1 to 1000000")?,
    })
}

/// POST /items
async fn list_item(State(front): Front, headers: HeaderMap, body: Bytes) -> Out {
    let session = session_of(&headers, COOKIES)?;
    let form: NewItemForm = read_form(true, &headers, &body)?;
    check_csrf(&session, &form.csrf, true)?;
    let listed = match new_item(&form) {
        Ok(item) => front.register_item(new_op_id(), &session, item).await,
        Err(e) => Err(e),
    };
    match listed {
        Ok(_) => Ok(Redirect::to("/?done=listed").into_response()),
        Err(e) if super::needs_login(&e) => Err(refusal(COOKIES, true, &session, e)),
        Err(e) => {
            let message = plain(&e);
            dashboard_page(&front, &session, 0, status_of(e.code), |v| {
                v.used = form.condition.trim().eq_ignore_ascii_case("used");
                v.new_item = form;
                v.new_error = Some(message);
            })
            .await
        }
    }
}

/// The change-price form's fields.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PriceForm {
    csrf: String,
    price: String,
}

/// The path's item id (`3-17` or `3:17`).
fn item_id(text: &str) -> Result<ItemId, ApiError> {
    Ok(text.replacen('-', ":", 1).parse()?)
}

/// The dashboard again with `error` beside the item's form that `put` puts it at; if the
/// item is not on the first page, beside the new-item form.
async fn row_error(
    front: &SellerFrontend,
    session: &str,
    item: &str,
    error: ApiError,
    put: impl FnOnce(&mut Row, String),
) -> Out {
    if super::needs_login(&error) {
        return Err(refusal(COOKIES, true, session, error));
    }
    let message = plain(&error);
    dashboard_page(front, session, 0, status_of(error.code), |v| {
        match v.items.iter_mut().find(|r| r.dom == item || r.id == item) {
            Some(row) => put(row, message),
            None => v.new_error = Some(message),
        }
    })
    .await
}

/// POST /items/3-17/price
async fn change_price(
    State(front): Front,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Out {
    let session = session_of(&headers, COOKIES)?;
    let form: PriceForm = read_form(true, &headers, &body)?;
    check_csrf(&session, &form.csrf, true)?;
    let changed = match (item_id(&id), form.price.trim().parse::<Money>()) {
        (Ok(item), Ok(price)) => front.change_price(&session, item, price).await,
        (Err(e), _) => Err(e),
        (_, Err(e)) => Err(e.into()),
    };
    match changed {
        Ok(()) => Ok(Redirect::to("/?done=priced").into_response()),
        Err(e) => {
            row_error(&front, &session, &id, e, |row, m| {
                row.price_error = Some(m);
                row.price_value = form.price;
            })
            .await
        }
    }
}

/// The remove-units form's fields.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RemoveForm {
    csrf: String,
    quantity: String,
}

/// POST /items/3-17/remove
async fn remove_units(
    State(front): Front,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Out {
    let session = session_of(&headers, COOKIES)?;
    let form: RemoveForm = read_form(true, &headers, &body)?;
    check_csrf(&session, &form.csrf, true)?;
    let quantity =
        number::<u32>("quantity", &form.quantity, "must be a whole number from 1 to 1000000");
    let removed = match (item_id(&id), quantity) {
        (Ok(item), Ok(quantity)) => front.remove_units(new_op_id(), &session, item, quantity).await,
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    match removed {
        Ok(_) => Ok(Redirect::to("/?done=units").into_response()),
        Err(e) => {
            row_error(&front, &session, &id, e, |row, m| {
                row.remove_error = Some(m);
                row.remove_value = form.quantity;
            })
            .await
        }
    }
}
