//! The buyer's pages, on the buyer server: search, an item, the cart and checkout, the
//! purchase history. Each handler reads the cookie and the form, calls the
//! [`BuyerFrontend`] method of the operation, and renders the answer, or the error beside
//! the form that caused it with what the user typed.

use std::sync::Arc;

use agora_domain::{Card, Categories, Item, ItemId, Money, PAGE_DEFAULT, Page};
use agora_proto::{ApiError, ErrorCode};
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
    BUYER_COOKIES, CategoryOption, Nav, Refusal, category_options, check_csrf, dom_id, keywords,
    notice, number, offset, page, plain, random_hex, read_form, refusal, session_of, utc,
};
use crate::buyer::BuyerFrontend;
use crate::http::error::status_of;

type Front = State<Arc<BuyerFrontend>>;
type Out = Result<Response, Refusal>;

const COOKIES: super::Cookies = BUYER_COOKIES;

/// The buyer's pages.
pub fn routes(front: Arc<BuyerFrontend>) -> Router {
    Router::new()
        .route("/", get(search))
        .route("/login", get(accounts::login_page::<BuyerFrontend>))
        .route("/login", post(accounts::login::<BuyerFrontend>))
        .route("/signup", post(accounts::signup::<BuyerFrontend>))
        .route("/logout", post(accounts::logout::<BuyerFrontend>))
        .route("/categories", get(categories))
        .route("/items/{id}", get(item))
        .route("/items/{id}/feedback", post(vote))
        .route("/cart", get(cart))
        .route("/cart/add", post(add))
        .route("/cart/remove", post(remove))
        .route("/cart/save", post(save))
        .route("/cart/clear", post(clear))
        .route("/cart/checkout", post(checkout))
        .route("/purchases", get(purchases))
        .with_state(front)
}

/// An item as the pages show it.
#[derive(Debug, Clone)]
pub struct ItemRow {
    /// `3:17`.
    pub id: String,
    /// `3-17`, for element ids and paths.
    pub dom: String,
    /// The item's name.
    pub name: String,
    /// Its category's number.
    pub category: u32,
    /// Its category's name ("Category 42" for one without).
    pub category_name: String,
    /// Its keywords, separated by spaces.
    pub keywords: String,
    /// `new` or `used`.
    pub condition: String,
    /// `$12.34`.
    pub price: String,
    /// Units left.
    pub quantity: u32,
    /// Thumbs up.
    pub up: u64,
    /// Thumbs down.
    pub down: u64,
    /// The seller's id.
    pub seller_id: u64,
}

impl ItemRow {
    /// `item` as the pages show it, its category named from `names`.
    pub fn new(item: &Item, names: &Categories) -> Self {
        ItemRow {
            id: item.id.to_string(),
            dom: dom_id(item.id),
            name: item.name.clone(),
            category: item.id.category,
            category_name: names.label(item.id.category),
            keywords: item.keywords.join(" "),
            condition: item.condition.to_string(),
            price: item.price.shown(),
            quantity: item.quantity,
            up: item.feedback.up,
            down: item.feedback.down,
            seller_id: item.seller_id,
        }
    }
}

/// The search page, which is also the buyer's start page.
#[derive(Template)]
#[template(path = "search.html")]
pub struct SearchPage {
    /// The header.
    pub nav: Nav,
    /// The category as typed.
    pub category: String,
    /// The named categories, the one searched selected.
    pub categories: Vec<CategoryOption>,
    /// The name of the category searched, for the results' heading.
    pub category_name: String,
    /// The keywords as typed.
    pub keywords: String,
    /// Why the search was refused.
    pub error: Option<String>,
    /// Whether a search was made (else only the form shows).
    pub searched: bool,
    /// The page of results.
    pub results: Vec<ItemRow>,
    /// The offset of the previous page, if any.
    pub prev: Option<u32>,
    /// The offset of the next page, if any.
    pub next: Option<u32>,
    /// The number of the first result shown.
    pub first: u32,
}

/// The search form's fields (in the query string).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SearchForm {
    category: Option<String>,
    keywords: String,
    offset: String,
}

/// GET /?category=3&keywords=pen+blue&offset=20
async fn search(State(front): Front, headers: HeaderMap, uri: OriginalUri) -> Out {
    let session = session_of(&headers, COOKIES)?;
    let form: SearchForm = serde_html_form::from_str(uri.query().unwrap_or(""))
        .map_err(|e| Refusal::BadForm { seller: false, message: format!("Bad search: {e}.") })?;
    let names = front.category_names();
    let typed = form.category.clone().unwrap_or_default();
    let mut view = SearchPage {
        nav: Nav::new(false, Some(&session)),
        categories: category_options(names, &typed),
        category_name: typed.trim().parse().map(|id| names.label(id)).unwrap_or_default(),
        category: typed,
        keywords: form.keywords.clone(),
        error: None,
        searched: false,
        results: Vec::new(),
        prev: None,
        next: None,
        first: 1,
    };
    let category = match form.category {
        Some(category) if !category.trim().is_empty() => category,
        _ => {
            // No search yet: check the session all the same, so a stale cookie goes to login.
            front.whoami(&session).await.map_err(|e| refusal(COOKIES, false, &session, e))?;
            if form.keywords.trim().is_empty() {
                return Ok(page(StatusCode::OK, &view));
            }
            // Keywords alone: a search looks in one category, so say which is missing
            // rather than drop them.
            view.error = Some(
                "Choose a category: a search looks for the keywords in one category.".to_owned(),
            );
            return Ok(page(StatusCode::BAD_REQUEST, &view));
        }
    };
    let offset: u32 = form.offset.trim().parse().unwrap_or(0);
    let found = match number::<u32>("category", &category, "must be a whole number like 3") {
        Ok(category) => {
            let page = Page { offset, limit: PAGE_DEFAULT };
            front.search(&session, category, &keywords(&form.keywords), page).await
        }
        Err(e) => Err(e),
    };
    match found {
        Ok(items) => {
            view.searched = true;
            view.results = items.iter().map(|i| ItemRow::new(i, names)).collect();
            view.first = offset + 1;
            view.prev = (offset > 0).then(|| offset.saturating_sub(PAGE_DEFAULT));
            view.next = (items.len() as u32 == PAGE_DEFAULT).then_some(offset + PAGE_DEFAULT);
            Ok(page(StatusCode::OK, &view))
        }
        Err(error) if super::needs_login(&error) => Err(refusal(COOKIES, false, &session, error)),
        Err(error) => {
            view.error = Some(plain(&error));
            Ok(page(status_of(error.code), &view))
        }
    }
}

/// A seller's record as the item page shows it.
#[derive(Debug, Clone)]
pub struct SellerView {
    name: String,
    up: u64,
    down: u64,
    items_sold: u64,
}

/// One item, with its seller's rating, the add-to-cart form and the vote buttons.
#[derive(Template)]
#[template(path = "item.html")]
pub struct ItemPage {
    nav: Nav,
    item: ItemRow,
    seller: Option<SellerView>,
    notice: Option<&'static str>,
    quantity: String,
    add_error: Option<String>,
    vote_error: Option<String>,
}

/// The path's item id (`3:17` or `3-17`).
fn item_id(text: &str) -> Result<ItemId, ApiError> {
    Ok(text.replacen('-', ":", 1).parse()?)
}

/// The item page with `quantity` in the form and any errors beside their forms.
async fn item_page(
    front: &BuyerFrontend,
    session: &str,
    item: ItemId,
    status: StatusCode,
    fill: impl FnOnce(&mut ItemPage),
) -> Out {
    let found =
        front.get_item(session, item).await.map_err(|e| refusal(COOKIES, false, session, e))?;
    // The seller's rating is extra: the item shows without it if it cannot be had.
    let seller = front.seller_rating(session, found.seller_id).await.ok().map(|r| SellerView {
        name: r.name,
        up: r.feedback.up,
        down: r.feedback.down,
        items_sold: r.items_sold,
    });
    let mut view = ItemPage {
        nav: Nav::new(false, Some(session)),
        item: ItemRow::new(&found, front.category_names()),
        seller,
        notice: None,
        quantity: "1".into(),
        add_error: None,
        vote_error: None,
    };
    fill(&mut view);
    Ok(page(status, &view))
}

/// GET /items/3:17
async fn item(
    State(front): Front,
    headers: HeaderMap,
    uri: OriginalUri,
    Path(id): Path<String>,
) -> Out {
    let session = session_of(&headers, COOKIES)?;
    let item = item_id(&id).map_err(|e| refusal(COOKIES, false, &session, e))?;
    let notice = notice(uri.query());
    item_page(&front, &session, item, StatusCode::OK, |v| v.notice = notice).await
}

/// The vote form's fields.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct VoteForm {
    csrf: String,
    vote: String,
}

/// POST /items/3:17/feedback
async fn vote(State(front): Front, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Out {
    let session = session_of(&headers, COOKIES)?;
    let form: VoteForm = read_form(false, &headers, &body)?;
    check_csrf(&session, &form.csrf, false)?;
    let item = item_id(&id).map_err(|e| refusal(COOKIES, false, &session, e))?;
    let up = match form.vote.as_str() {
        "up" => Ok(true),
        "down" => Ok(false),
        _ => Err(ApiError::new(ErrorCode::InvalidArgument, "invalid vote: must be up or down")),
    };
    match up {
        Ok(up) => match front.feedback(&session, item, up).await {
            Ok(_) => {
                Ok(Redirect::to(&format!("/items/{}?done=voted", dom_id(item))).into_response())
            }
            Err(e) => form_error(&front, &session, item, e, |v, m| v.vote_error = Some(m)).await,
        },
        Err(e) => form_error(&front, &session, item, e, |v, m| v.vote_error = Some(m)).await,
    }
}

/// The item page again, with `error` beside the form `put` puts it at.
async fn form_error(
    front: &BuyerFrontend,
    session: &str,
    item: ItemId,
    error: ApiError,
    put: impl FnOnce(&mut ItemPage, String),
) -> Out {
    if super::needs_login(&error) {
        return Err(refusal(COOKIES, false, session, error));
    }
    let status = status_of(error.code);
    item_page(front, session, item, status, |v| put(v, plain(&error))).await
}

/// The add-to-cart form's fields.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AddForm {
    csrf: String,
    item: String,
    quantity: String,
}

/// POST /cart/add: back to the item page with the error, or on to the cart.
async fn add(State(front): Front, headers: HeaderMap, body: Bytes) -> Out {
    let session = session_of(&headers, COOKIES)?;
    let form: AddForm = read_form(false, &headers, &body)?;
    check_csrf(&session, &form.csrf, false)?;
    let item = item_id(&form.item).map_err(|e| refusal(COOKIES, false, &session, e))?;
    let added =
        match number::<u32>("quantity", &form.quantity, "must be a whole number from 1 to 1000000")
        {
            Ok(quantity) => {
                front
                    .add_to_cart(agora_proto::messages::new_op_id(), &session, item, quantity)
                    .await
            }
            Err(e) => Err(e),
        };
    match added {
        Ok(_) => Ok(Redirect::to("/cart?done=added").into_response()),
        Err(e) => {
            let typed = form.quantity;
            form_error(&front, &session, item, e, |v, m| {
                v.add_error = Some(m);
                v.quantity = typed;
            })
            .await
        }
    }
}

/// A cart line as the cart page shows it.
#[derive(Debug, Clone)]
pub struct CartRow {
    item: ItemRow,
    quantity: u32,
    subtotal: String,
    /// The remove form's error and typed quantity, if it failed.
    remove_error: Option<String>,
    remove_quantity: String,
}

/// The cart and the checkout form.
#[derive(Template)]
#[template(path = "cart.html")]
pub struct CartPage {
    nav: Nav,
    notice: Option<&'static str>,
    lines: Vec<CartRow>,
    /// The total as people read it (`$3.00`), and as the checkout form sends it back
    /// (`3.00`: the total the buyer agrees to, parsed as the API parses one).
    total: String,
    agreed: String,
    cart_error: Option<String>,
    holder: String,
    expiry: String,
    /// The purchase key the checkout form carries, so a resent form buys once.
    key: String,
    checkout_error: Option<String>,
}

/// The cart page, filled by `fill` with errors and typed values.
async fn cart_page(
    front: &BuyerFrontend,
    session: &str,
    status: StatusCode,
    fill: impl FnOnce(&mut CartPage),
) -> Out {
    let lines = front.cart(session).await.map_err(|e| refusal(COOKIES, false, session, e))?;
    let rows = cart_rows(front, session, lines).await?;
    let total = rows.iter().map(|r| r.1).sum::<i64>();
    let mut view = CartPage {
        nav: Nav::new(false, Some(session)),
        notice: None,
        lines: rows.into_iter().map(|r| r.0).collect(),
        total: Money::from_cents(total).shown(),
        agreed: Money::from_cents(total).to_string(),
        cart_error: None,
        holder: String::new(),
        expiry: String::new(),
        key: random_hex(),
        checkout_error: None,
    };
    fill(&mut view);
    Ok(page(status, &view))
}

/// Each line with its item's name and price now, and its subtotal in cents.
async fn cart_rows(
    front: &BuyerFrontend,
    session: &str,
    lines: Vec<agora_domain::CartLine>,
) -> Result<Vec<(CartRow, i64)>, Refusal> {
    let lines = front.cart_items(lines).await.map_err(|e| refusal(COOKIES, false, session, e))?;
    let names = front.category_names();
    Ok(lines
        .into_iter()
        .map(|(line, item)| {
            let cents = item.price.cents().saturating_mul(i64::from(line.quantity));
            let row = CartRow {
                item: ItemRow::new(&item, names),
                quantity: line.quantity,
                subtotal: Money::from_cents(cents).shown(),
                remove_error: None,
                remove_quantity: line.quantity.to_string(),
            };
            (row, cents)
        })
        .collect())
}

/// One named category on the categories page.
#[derive(Debug, Clone)]
pub struct CategoryRow {
    id: u32,
    name: String,
    items: u64,
}

/// The named categories, each with its items for sale.
#[derive(Template)]
#[template(path = "categories.html")]
pub struct CategoriesPage {
    nav: Nav,
    categories: Vec<CategoryRow>,
}

/// GET /categories
async fn categories(State(front): Front, headers: HeaderMap) -> Out {
    let session = session_of(&headers, COOKIES)?;
    let list =
        front.categories(&session, true).await.map_err(|e| refusal(COOKIES, false, &session, e))?;
    let view = CategoriesPage {
        nav: Nav::new(false, Some(&session)),
        categories: list
            .into_iter()
            .map(|c| CategoryRow { id: c.id, name: c.name, items: c.items.unwrap_or(0) })
            .collect(),
    };
    Ok(page(StatusCode::OK, &view))
}

/// GET /cart
async fn cart(State(front): Front, headers: HeaderMap, uri: OriginalUri) -> Out {
    let session = session_of(&headers, COOKIES)?;
    let notice = notice(uri.query());
    cart_page(&front, &session, StatusCode::OK, |v| v.notice = notice).await
}

/// The remove form's fields.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RemoveForm {
    csrf: String,
    item: String,
    quantity: String,
}

/// POST /cart/remove
async fn remove(State(front): Front, headers: HeaderMap, body: Bytes) -> Out {
    let session = session_of(&headers, COOKIES)?;
    let form: RemoveForm = read_form(false, &headers, &body)?;
    check_csrf(&session, &form.csrf, false)?;
    let removed = match (
        item_id(&form.item),
        number::<u32>("quantity", &form.quantity, "must be a whole number from 1 to 1000000"),
    ) {
        (Ok(item), Ok(quantity)) => {
            front
                .remove_from_cart(agora_proto::messages::new_op_id(), &session, item, quantity)
                .await
        }
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    match removed {
        Ok(_) => Ok(Redirect::to("/cart?done=removed").into_response()),
        Err(e) if super::needs_login(&e) => Err(refusal(COOKIES, false, &session, e)),
        Err(e) => {
            let message = plain(&e);
            cart_page(&front, &session, status_of(e.code), |v| {
                match v.lines.iter_mut().find(|l| l.item.id == form.item.trim()) {
                    Some(line) => {
                        line.remove_error = Some(message);
                        line.remove_quantity = form.quantity;
                    }
                    None => v.cart_error = Some(message),
                }
            })
            .await
        }
    }
}

/// A form with only its CSRF token.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Plain {
    csrf: String,
}

/// POST /cart/save
async fn save(State(front): Front, headers: HeaderMap, body: Bytes) -> Out {
    cart_action(&front, &headers, &body, "saved", |f, s| Box::pin(f.save_cart(s))).await
}

/// POST /cart/clear
async fn clear(State(front): Front, headers: HeaderMap, body: Bytes) -> Out {
    cart_action(&front, &headers, &body, "cleared", |f, s| Box::pin(f.clear_cart(s))).await
}

type Action<'a> = std::pin::Pin<Box<dyn Future<Output = Result<(), ApiError>> + Send + 'a>>;

/// A cart button with no fields: the action, then the cart with `done`'s notice.
async fn cart_action(
    front: &BuyerFrontend,
    headers: &HeaderMap,
    body: &Bytes,
    done: &str,
    action: for<'a> fn(&'a BuyerFrontend, &'a str) -> Action<'a>,
) -> Out {
    let session = session_of(headers, COOKIES)?;
    let form: Plain = read_form(false, headers, body)?;
    check_csrf(&session, &form.csrf, false)?;
    match action(front, &session).await {
        Ok(()) => Ok(Redirect::to(&format!("/cart?done={done}")).into_response()),
        Err(e) if super::needs_login(&e) => Err(refusal(COOKIES, false, &session, e)),
        Err(e) => {
            let message = plain(&e);
            cart_page(front, &session, status_of(e.code), |v| v.cart_error = Some(message)).await
        }
    }
}

/// The checkout form's fields.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CheckoutForm {
    csrf: String,
    key: String,
    /// The total the cart page showed, which the buyer agrees to by paying.
    total: String,
    holder: String,
    number: String,
    expiry: String,
}

/// POST /cart/checkout: on to the history, or the cart again with the outcome in words.
async fn checkout(State(front): Front, headers: HeaderMap, body: Bytes) -> Out {
    let session = session_of(&headers, COOKIES)?;
    let form: CheckoutForm = read_form(false, &headers, &body)?;
    check_csrf(&session, &form.csrf, false)?;
    let key = if form.key.len() == 32 && form.key.bytes().all(|b| b.is_ascii_hexdigit()) {
        form.key
    } else {
        random_hex()
    };
    let card =
        Card { holder: form.holder.clone(), number: form.number, expiry: form.expiry.clone() };
    // The page always sends the total it showed; a form without one (a page of an earlier
    // release) is asked to be sent again from a fresh page rather than bought blind.
    let bought = match crate::http::model::parse_total(&form.total) {
        Ok(total) => front.purchase(&session, key, card, Some(total)).await,
        Err(_) => Err(ApiError::new(
            ErrorCode::InvalidArgument,
            "the checkout form did not say which total you agreed to: check the total below \
             and pay again",
        )),
    };
    match bought {
        Ok(_) => Ok(Redirect::to("/purchases?done=bought").into_response()),
        Err(e) if super::needs_login(&e) => Err(refusal(COOKIES, false, &session, e)),
        Err(e) => {
            let message = checkout_words(&e);
            // A fresh key: the failed one would answer this failure again.
            cart_page(&front, &session, status_of(e.code), |v| {
                v.checkout_error = Some(message);
                v.holder = form.holder;
                v.expiry = form.expiry;
            })
            .await
        }
    }
}

/// A failed purchase in a shopper's words.
pub fn checkout_words(error: &ApiError) -> String {
    match error.code {
        ErrorCode::PaymentDeclined => format!(
            "Your card was declined ({}). Nothing was charged: check the card's details or use \
             another card.",
            error.message
        ),
        ErrorCode::NotEnoughUnits => format!(
            "Not enough units are left ({}). Nothing was bought or charged: change the \
             quantity in your cart and try again.",
            error.message
        ),
        ErrorCode::Unavailable | ErrorCode::Timeout | ErrorCode::Overloaded => {
            "Payments are unavailable right now, so nothing was bought or charged. Please try \
             again in a moment."
                .into()
        }
        ErrorCode::PurchasePending => "Payments did not answer in time, so we cannot tell yet \
             whether your card was charged; the purchase is settled by itself once payments \
             is back. Look at your purchase history in a moment before trying again, so you \
             are not charged twice."
            .into(),
        ErrorCode::Aborted => "The purchase was cancelled and nothing was charged. Please try \
             again."
            .into(),
        // Says the new total, which the cart below now shows, and that nothing happened.
        ErrorCode::PriceChanged => plain(error),
        _ => plain(error),
    }
}

/// A purchase as the history shows it.
#[derive(Debug, Clone)]
pub struct PurchaseRow {
    id: u64,
    when: String,
    total: String,
    lines: Vec<PurchaseLineRow>,
}

/// One line of a purchase.
#[derive(Debug, Clone)]
pub struct PurchaseLineRow {
    id: String,
    dom: String,
    name: String,
    quantity: u32,
    unit_price: String,
}

/// The purchase history.
#[derive(Template)]
#[template(path = "purchases.html")]
pub struct PurchasesPage {
    nav: Nav,
    notice: Option<&'static str>,
    purchases: Vec<PurchaseRow>,
    prev: Option<u32>,
    next: Option<u32>,
}

/// GET /purchases?offset=20
async fn purchases(State(front): Front, headers: HeaderMap, uri: OriginalUri) -> Out {
    let session = session_of(&headers, COOKIES)?;
    let offset = offset(uri.query());
    let page_of = Page { offset, limit: PAGE_DEFAULT };
    let found = front
        .purchases(&session, page_of)
        .await
        .map_err(|e| refusal(COOKIES, false, &session, e))?;
    let view = PurchasesPage {
        nav: Nav::new(false, Some(&session)),
        notice: notice(uri.query()),
        prev: (offset > 0).then(|| offset.saturating_sub(PAGE_DEFAULT)),
        next: (found.len() as u32 == PAGE_DEFAULT).then_some(offset + PAGE_DEFAULT),
        purchases: found
            .iter()
            .map(|p| PurchaseRow {
                id: p.id,
                when: utc(p.at_unix_ms),
                total: p.total.shown(),
                lines: p
                    .lines
                    .iter()
                    .map(|l| PurchaseLineRow {
                        id: l.item.to_string(),
                        dom: dom_id(l.item),
                        name: l.name.clone(),
                        quantity: l.quantity,
                        unit_price: l.unit_price.shown(),
                    })
                    .collect(),
            })
            .collect(),
    };
    Ok(page(StatusCode::OK, &view))
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_domain::{Condition, Feedback, Money};

    fn twenty_items() -> Vec<Item> {
        (1..=20)
            .map(|n| Item {
                id: ItemId { category: 3, number: n },
                name: format!("Blue <pen> & co #{n}"),
                keywords: vec!["pen".into(), "blue".into(), "ink".into()],
                condition: Condition::New,
                price: Money::from_cents(150 + n as i64),
                quantity: 10,
                seller_id: 1,
                feedback: Feedback { up: 3, down: 1 },
            })
            .collect()
    }

    /// docs/performance.md, "Storefront": the server CPU a search page of 20 items costs
    /// beyond the API call (building the rows and rendering the template), which must stay
    /// under 2 ms. Run with `--nocapture` to see the figure.
    #[test]
    /// A measurement, not a check of speed (that would fail on a busy machine, not on a
    /// slow page): the time per render is printed for docs/performance.md.
    fn a_search_page_of_twenty_items_renders_and_says_how_long() {
        let items = twenty_items();
        let names = Categories::default();
        let render = || {
            let view = SearchPage {
                nav: Nav::new(false, Some(&"a".repeat(64))),
                category: "3".into(),
                categories: category_options(&names, "3"),
                category_name: names.label(3),
                keywords: "pen blue".into(),
                error: None,
                searched: true,
                results: items.iter().map(|i| ItemRow::new(i, &names)).collect(),
                prev: None,
                next: Some(20),
                first: 1,
            };
            view.render().map(|html| html.len()).unwrap_or(0)
        };
        let size = render();
        assert!(size > 5_000 && size < 64_000, "{size} bytes");
        let rounds = 500;
        let began = std::time::Instant::now();
        let mut total = 0;
        for _ in 0..rounds {
            total += render();
        }
        let each = began.elapsed() / rounds;
        assert_eq!(total, size * rounds as usize);
        println!("search page, 20 items: {size} bytes, {each:?} per render");
    }

    #[test]
    fn escaping_is_the_templates() {
        let items = twenty_items();
        let names = Categories::default();
        let view = SearchPage {
            nav: Nav::new(false, None),
            category: "\"><script>".into(),
            categories: category_options(&names, "3"),
            category_name: String::new(),
            keywords: String::new(),
            error: Some("<b>".into()),
            searched: true,
            results: items.iter().map(|i| ItemRow::new(i, &names)).collect(),
            prev: Some(0),
            next: None,
            first: 1,
        };
        let html = view.render().unwrap_or_default();
        assert!(html.contains("Blue &#60;pen&#62; &#38; co #1"), "{html}");
        assert!(!html.contains("<pen>") && !html.contains("\"><script>") && !html.contains("<b>"));
    }

    #[test]
    fn checkout_failures_are_told_in_a_shoppers_words() {
        let words = |code, message: &str| checkout_words(&ApiError::new(code, message));
        assert!(words(ErrorCode::PaymentDeclined, "luhn").starts_with("Your card was declined"));
        assert!(words(ErrorCode::NotEnoughUnits, "2 left").starts_with("Not enough units"));
        assert!(
            words(ErrorCode::Unavailable, "payments down").starts_with("Payments are unavailable")
        );
        assert!(words(ErrorCode::PurchasePending, "").contains("not charged twice"));
        assert!(!words(ErrorCode::Internal, "stack trace").contains("stack trace"));
    }
}
