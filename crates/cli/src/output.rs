//! What a command prints: tables and sentences for people, JSON for programs.
//!
//! The JSON is the HTTP API's vocabulary (docs/http.md, "Conventions"): item ids as
//! `"3:17"`, money as `"12.34"`, conditions as `"new"`, lists as pages `{items,
//! next_offset}`; each command prints what the HTTP route of the same operation answers,
//! so a script can move between the two without translating.

use agora_client::{CallError, ClientError};
use agora_domain::{
    CartLine, Categories, Category, CategoryCount, Feedback, Item, ItemId, Money, Page, Purchase,
    SellerRating, UserId,
};
use comfy_table::{ContentArrangement, Table, presets};
use serde_json::{Value, json};

/// How results and errors are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Tables and sentences.
    #[default]
    Human,
    /// One line of JSON: the result on stdout, `{"error":{...}}` on stderr.
    Json,
}

/// The result of one command, before it is printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A new account's id.
    AccountCreated(UserId),
    /// A new session.
    LoggedIn {
        /// Its id.
        session: String,
    },
    /// The session ended.
    LoggedOut {
        /// Whether the server had already ended it (expired or unknown).
        already_ended: bool,
    },
    /// An action without a result; the text says what happened.
    Done(&'static str),
    /// A seller's rating.
    Rating(SellerRating),
    /// A newly listed item's id.
    Registered(ItemId),
    /// An item's new price.
    PriceChanged {
        /// The item.
        item: ItemId,
        /// Its price now.
        price: Money,
    },
    /// Units left of an item.
    UnitsLeft {
        /// The item.
        item: ItemId,
        /// Units still for sale.
        left: u32,
    },
    /// A page of items.
    Items {
        /// The items on it.
        items: Vec<Item>,
        /// The page asked for, to tell whether there is another.
        page: Page,
        /// The categories' names.
        names: Categories,
    },
    /// One item.
    Item {
        /// The item.
        item: Item,
        /// The categories' names.
        names: Categories,
    },
    /// A cart, each line with its item as it is now (`None` if it could not be had).
    Cart {
        /// The lines, in the order the items were first added.
        lines: Vec<(CartLine, Option<Item>)>,
        /// The categories' names.
        names: Categories,
    },
    /// The named categories.
    Categories(Vec<CategoryCount>),
    /// An item's vote totals after a vote.
    Feedback {
        /// The item.
        item: ItemId,
        /// Its totals.
        feedback: Feedback,
    },
    /// A page of the purchase history.
    Purchases {
        /// The purchases on it.
        purchases: Vec<Purchase>,
        /// The page asked for, to tell whether there is another.
        page: Page,
    },
    /// A completed purchase.
    Purchased(Purchase),
}

impl Reply {
    /// The reply as printed in `format`, without a trailing newline.
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Human => self.human(),
            Format::Json => json_line(&self.json()),
        }
    }

    /// The reply as a JSON value: what the HTTP route of the same operation answers, or
    /// `{"ok":true}` for an action whose route answers with no body.
    pub fn json(&self) -> Value {
        match self {
            Reply::AccountCreated(id) => json!({ "id": id }),
            Reply::LoggedIn { session } => json!({ "session": session }),
            Reply::LoggedOut { .. } | Reply::Done(_) => json!({ "ok": true }),
            Reply::Rating(rating) => rating_json(rating),
            Reply::Registered(id) => json!({ "id": id.to_string() }),
            Reply::PriceChanged { item, price } => {
                json!({ "id": item.to_string(), "price": price.to_string() })
            }
            Reply::UnitsLeft { item, left } => json!({ "id": item.to_string(), "quantity": left }),
            Reply::Items { items, page, names } => json!({
                "items": items.iter().map(|i| item_json(i, names)).collect::<Vec<_>>(),
                "next_offset": next_offset(items.len(), *page),
            }),
            Reply::Item { item, names } => item_json(item, names),
            Reply::Cart { lines, names } => cart_json(lines, names),
            Reply::Categories(list) => json!({
                "categories": list
                    .iter()
                    .map(|c| json!({ "id": c.id, "name": c.name, "items": c.items.unwrap_or(0) }))
                    .collect::<Vec<_>>(),
            }),
            Reply::Feedback { feedback, .. } => votes_json(feedback),
            Reply::Purchases { purchases, page } => json!({
                "purchases": purchases.iter().map(purchase_json).collect::<Vec<_>>(),
                "next_offset": next_offset(purchases.len(), *page),
            }),
            Reply::Purchased(purchase) => purchase_json(purchase),
        }
    }

    fn human(&self) -> String {
        match self {
            Reply::AccountCreated(id) => format!("account created with id {id}; now log in"),
            Reply::LoggedIn { .. } => "logged in".to_owned(),
            Reply::LoggedOut { already_ended: false } => "logged out".to_owned(),
            Reply::LoggedOut { already_ended: true } => {
                "logged out (the session had already ended)".to_owned()
            }
            Reply::Done(text) => (*text).to_owned(),
            Reply::Rating(rating) => rating_table(rating),
            Reply::Registered(id) => format!("registered item {id}"),
            Reply::PriceChanged { item, price } => {
                format!("item {item} now sells at {}", price.shown())
            }
            Reply::UnitsLeft { item, left } => format!("item {item}: {left} units left for sale"),
            Reply::Items { items, page, .. } if items.is_empty() => match page.offset {
                0 => "no items".to_owned(),
                _ => "no more items".to_owned(),
            },
            Reply::Items { items, page, names } => {
                with_next_page(items_table(items, names), next_offset(items.len(), *page))
            }
            Reply::Item { item, names } => item_table(item, names),
            Reply::Cart { lines, .. } if lines.is_empty() => "the cart is empty".to_owned(),
            Reply::Cart { lines, names } => cart_table(lines, names),
            Reply::Categories(list) if list.is_empty() => "no category has a name".to_owned(),
            Reply::Categories(list) => categories_table(list),
            Reply::Feedback { item, feedback } => {
                format!("item {item} feedback is now {}", votes(feedback))
            }
            Reply::Purchases { purchases, page } if purchases.is_empty() => match page.offset {
                0 => "no purchases yet".to_owned(),
                _ => "no more purchases".to_owned(),
            },
            Reply::Purchases { purchases, page } => {
                with_next_page(purchases_table(purchases), next_offset(purchases.len(), *page))
            }
            Reply::Purchased(purchase) => format!(
                "purchase {} complete: charged {}\n{}",
                purchase.id,
                purchase.total.shown(),
                purchases_table(std::slice::from_ref(purchase))
            ),
        }
    }
}

/// An error as printed in `format`, without a trailing newline. `addrs` are the servers
/// the client tried, named when the error is that none could be reached.
pub fn render_error(error: &ClientError, format: Format, addrs: &[String]) -> String {
    let message = error_message(error, addrs);
    match format {
        Format::Human => format!("error: {message}"),
        Format::Json => {
            let code = error.to_api().code;
            json_line(&json!({ "error": { "code": code.as_str(), "message": message } }))
        }
    }
}

/// The error's message; a transport failure also names every address tried.
pub fn error_message(error: &ClientError, addrs: &[String]) -> String {
    let refused = matches!(error, ClientError::Transport(CallError::Unreachable { reason, .. })
        if reason == agora_client::CONNECTION_REFUSED);
    if refused {
        let message = error_message_of(error, addrs);
        return format!(
            "{message}. Is the server running (`agora up` starts them all), and is --server \
             its address?"
        );
    }
    error_message_of(error, addrs)
}

fn error_message_of(error: &ClientError, addrs: &[String]) -> String {
    match error {
        ClientError::Transport(CallError::Unreachable { .. }) if addrs.len() <= 1 => {
            error.to_string()
        }
        // The pool reports only the last address it tried; name them all.
        ClientError::Transport(CallError::Unreachable { service, addr, reason }) => {
            format!("{service} is unreachable at {}: last, {addr}: {reason}", addrs.join(", "))
        }
        ClientError::Transport(_) => format!("{error} (server: {})", addrs.join(", ")),
        // Which marketplace said so: a session is one server's, not every server's.
        _ if error.needs_login() && !addrs.is_empty() => {
            format!("{error} (server: {})", addrs.join(", "))
        }
        _ => error.to_string(),
    }
}

/// Any other failure (the session file, the terminal) as printed in `format`.
pub fn render_failure(code: &str, message: &str, format: Format) -> String {
    match format {
        Format::Human => format!("error: {message}"),
        Format::Json => json_line(&json!({ "error": { "code": code, "message": message } })),
    }
}

/// The `offset` of the page after `page`, which held `len` entries; `None` after a short
/// page, the last. The HTTP API's `next_offset`, by the same rule.
pub fn next_offset(len: usize, page: Page) -> Option<u32> {
    if len < page.limit as usize {
        return None;
    }
    page.offset.checked_add(page.limit)
}

/// A table followed, when the page was full, by how to ask for the next one.
fn with_next_page(table: String, next: Option<u32>) -> String {
    match next {
        Some(offset) => {
            format!("{table}\nmore may follow: add --offset {offset} for the next page")
        }
        None => table,
    }
}

fn votes_json(feedback: &Feedback) -> Value {
    json!({ "up": feedback.up, "down": feedback.down })
}

fn item_json(item: &Item, names: &Categories) -> Value {
    json!({
        "id": item.id.to_string(),
        "name": item.name,
        "category": item.id.category,
        "category_name": names.name(item.id.category),
        "keywords": item.keywords,
        "condition": item.condition.to_string(),
        "price": item.price.to_string(),
        "quantity": item.quantity,
        "seller_id": item.seller_id,
        "feedback": votes_json(&item.feedback),
    })
}

/// A line's total in cents: its quantity at the item's price now.
fn line_cents(line: &CartLine, item: &Item) -> i64 {
    item.price.cents().saturating_mul(i64::from(line.quantity))
}

/// The cart as the HTTP API's `GET /v1/cart` answers it.
fn cart_json(lines: &[(CartLine, Option<Item>)], names: &Categories) -> Value {
    let total: i64 = lines.iter().filter_map(|(l, i)| i.as_ref().map(|i| line_cents(l, i))).sum();
    let lines: Vec<Value> = lines
        .iter()
        .map(|(line, item)| {
            json!({
                "item": line.item.to_string(),
                "quantity": line.quantity,
                "name": item.as_ref().map(|i| i.name.as_str()),
                "category_name": names.name(line.item.category),
                "unit_price": item.as_ref().map(|i| i.price.to_string()),
                "line_total": item.as_ref().map(|i| Money::from_cents(line_cents(line, i)).to_string()),
            })
        })
        .collect();
    json!({ "lines": lines, "total": Money::from_cents(total).to_string() })
}

/// The names in a `categories` answer; none if it failed (a server from before category
/// names, say), so that a command's own result still shows, with numbers alone.
pub fn names_of(answer: Result<Vec<CategoryCount>, ClientError>) -> Categories {
    let Ok(list) = answer else { return Categories::none() };
    Categories::new(list.into_iter().map(|c| Category { id: c.id, name: c.name }).collect())
        .unwrap_or_else(|_| Categories::none())
}

fn rating_json(rating: &SellerRating) -> Value {
    json!({
        "seller_id": rating.seller_id,
        "name": rating.name,
        "feedback": votes_json(&rating.feedback),
        "items_sold": rating.items_sold,
    })
}

fn purchase_json(purchase: &Purchase) -> Value {
    let lines: Vec<Value> = purchase
        .lines
        .iter()
        .map(|l| {
            json!({
                "item": l.item.to_string(),
                "seller_id": l.seller_id,
                "name": l.name,
                "quantity": l.quantity,
                "unit_price": l.unit_price.to_string(),
            })
        })
        .collect();
    json!({
        "id": purchase.id,
        "at_unix_ms": purchase.at_unix_ms,
        "lines": lines,
        "total": purchase.total.to_string(),
    })
}

fn json_line(value: &Value) -> String {
    value.to_string()
}

/// The width tables are fitted to when the terminal reports none worth using: a pseudo
/// terminal with no size (under `script`, in CI logs) says 0 columns, which would leave
/// one character per column.
pub const FALLBACK_WIDTH: u16 = 100;

/// Narrower than this, a terminal's reported width is taken for no width at all.
const NARROWEST: u16 = 20;

/// The width to fit a table to, given what the terminal reports (`None` when stdout is no
/// terminal, and tables are as wide as their content).
pub fn table_width(reported: Option<u16>) -> Option<u16> {
    match reported {
        Some(width) if width < NARROWEST => Some(FALLBACK_WIDTH),
        other => other,
    }
}

fn table() -> Table {
    let mut table = Table::new();
    table
        .load_style(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic);
    if let Some(width) = table_width(table.width()) {
        table.set_width(width);
    }
    table
}

fn votes(feedback: &Feedback) -> String {
    format!("+{} / -{}", feedback.up, feedback.down)
}

/// Items as a table: id, name, category, condition, price, quantity, keywords, seller,
/// feedback.
pub fn items_table(items: &[Item], names: &Categories) -> String {
    let mut table = table();
    table.set_header([
        "id",
        "name",
        "category",
        "condition",
        "price",
        "quantity",
        "keywords",
        "seller",
        "feedback",
    ]);
    for item in items {
        table.add_row([
            item.id.to_string(),
            item.name.clone(),
            names.label(item.id.category),
            item.condition.to_string(),
            item.price.shown(),
            item.quantity.to_string(),
            item.keywords.join(", "),
            item.seller_id.to_string(),
            votes(&item.feedback),
        ]);
    }
    table.to_string()
}

fn item_table(item: &Item, names: &Categories) -> String {
    let mut table = table();
    for (key, value) in [
        ("id", item.id.to_string()),
        ("name", item.name.clone()),
        ("category", names.label(item.id.category)),
        ("condition", item.condition.to_string()),
        ("price", item.price.shown()),
        ("quantity", item.quantity.to_string()),
        ("keywords", item.keywords.join(", ")),
        ("seller", item.seller_id.to_string()),
        ("feedback", votes(&item.feedback)),
    ] {
        table.add_row([key.to_owned(), value]);
    }
    table.to_string()
}

fn rating_table(rating: &SellerRating) -> String {
    let mut table = table();
    for (key, value) in [
        ("seller", rating.seller_id.to_string()),
        ("name", rating.name.clone()),
        ("thumbs up", rating.feedback.up.to_string()),
        ("thumbs down", rating.feedback.down.to_string()),
        ("items sold", rating.items_sold.to_string()),
    ] {
        table.add_row([key.to_owned(), value]);
    }
    table.to_string()
}

/// The cart as the web cart shows it: each item's name and category, its price now, the
/// units and the line's total, then the cart's total.
fn cart_table(lines: &[(CartLine, Option<Item>)], names: &Categories) -> String {
    let mut table = table();
    table.set_header(["item", "name", "category", "unit price", "quantity", "line total"]);
    let mut total = 0i64;
    for (line, item) in lines {
        let (name, unit, line_total) = match item {
            Some(item) => {
                let cents = line_cents(line, item);
                total = total.saturating_add(cents);
                (item.name.clone(), item.price.shown(), Money::from_cents(cents).shown())
            }
            None => ("(cannot be shown now)".to_owned(), String::new(), String::new()),
        };
        table.add_row([
            line.item.to_string(),
            name,
            names.label(line.item.category),
            unit,
            line.quantity.to_string(),
            line_total,
        ]);
    }
    let total = Money::from_cents(total).shown();
    table.add_row(["total", "", "", "", "", total.as_str()]);
    table.to_string()
}

fn categories_table(list: &[CategoryCount]) -> String {
    let mut table = table();
    table.set_header(["category", "name", "items for sale"]);
    for c in list {
        let items = c.items.map_or_else(String::new, |n| n.to_string());
        table.add_row([c.id.to_string(), c.name.clone(), items]);
    }
    table.to_string()
}

fn purchases_table(purchases: &[Purchase]) -> String {
    let mut table = table();
    table.set_header(["purchase", "when", "items", "total"]);
    for purchase in purchases {
        let lines: Vec<String> = purchase
            .lines
            .iter()
            .map(|l| format!("{} × {} {} at {}", l.quantity, l.item, l.name, l.unit_price.shown()))
            .collect();
        table.add_row([
            purchase.id.to_string(),
            format_time(purchase.at_unix_ms),
            lines.join("\n"),
            purchase.total.shown(),
        ]);
    }
    table.to_string()
}

/// Unix milliseconds as `YYYY-MM-DD HH:MM UTC`.
pub fn format_time(unix_ms: i64) -> String {
    let secs = unix_ms.div_euclid(1000);
    let (days, second_of_day) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    let (hour, minute) = (second_of_day / 3600, second_of_day % 3600 / 60);
    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02} UTC")
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use agora_client::{ApiError, ErrorCode};
    use agora_domain::{Condition, Money, PurchaseLine};

    use super::*;

    fn names() -> Categories {
        Categories::default()
    }

    fn pen() -> Item {
        Item {
            id: ItemId { category: 3, number: 17 },
            name: "Blue pen".into(),
            keywords: vec!["pen".into(), "blue".into()],
            condition: Condition::New,
            price: Money::from_cents(150),
            quantity: 10,
            seller_id: 7,
            feedback: Feedback { up: 2, down: 1 },
        }
    }

    #[test]
    fn items_table_shows_every_column() {
        let page = Page::default();
        let text = Reply::Items { items: vec![pen()], page, names: names() }.render(Format::Human);
        for expected in [
            "id",
            "seller",
            "feedback",
            "3:17",
            "Blue pen",
            "new",
            "$1.50",
            "Office and stationery",
            "10",
            "pen, blue",
            "+2 / -1",
        ] {
            assert!(text.contains(expected), "{expected:?} missing from\n{text}");
        }
        assert!(!text.contains("--offset"), "one short page is the last:\n{text}");
        assert_eq!(
            Reply::Items { items: vec![], page, names: names() }.render(Format::Human),
            "no items"
        );
    }

    #[test]
    fn a_full_page_says_how_to_get_the_next() {
        let page = Page { offset: 20, limit: 2 };
        let items = Reply::Items { items: vec![pen(), pen()], page, names: names() };
        assert!(items.render(Format::Human).ends_with("add --offset 22 for the next page"));
        assert_eq!(items.json()["next_offset"], 22);
        let short = Reply::Items { items: vec![pen()], page, names: names() };
        assert_eq!(short.json()["next_offset"], Value::Null);
        let purchases = Reply::Purchases { purchases: vec![], page };
        assert_eq!(purchases.render(Format::Human), "no more purchases");
        assert_eq!(purchases.json(), json!({ "purchases": [], "next_offset": null }));
    }

    #[test]
    fn json_speaks_the_http_vocabulary() {
        let items = Reply::Items { items: vec![pen()], page: Page::default(), names: names() };
        let parsed: Value = serde_json::from_str(&items.render(Format::Json)).expect("json");
        assert_eq!(
            parsed,
            json!({
                "items": [{
                    "id": "3:17", "name": "Blue pen", "category": 3,
                    "category_name": "Office and stationery", "keywords": ["pen", "blue"],
                    "condition": "new", "price": "1.50", "quantity": 10, "seller_id": 7,
                    "feedback": { "up": 2, "down": 1 },
                }],
                "next_offset": null,
            })
        );
        assert_eq!(Reply::Done("cart saved").render(Format::Json), r#"{"ok":true}"#);
        assert_eq!(Reply::LoggedOut { already_ended: true }.render(Format::Json), r#"{"ok":true}"#);
        assert_eq!(Reply::AccountCreated(5).render(Format::Json), r#"{"id":5}"#);
        let left = Reply::UnitsLeft { item: pen().id, left: 4 }.render(Format::Json);
        assert_eq!(left, r#"{"id":"3:17","quantity":4}"#);
        assert_eq!(Reply::Registered(pen().id).render(Format::Json), r#"{"id":"3:17"}"#);
    }

    #[test]
    fn errors_carry_their_code() {
        let refused =
            ClientError::Refused(ApiError::new(ErrorCode::UnknownItem, "unknown item 3:17"));
        assert_eq!(render_error(&refused, Format::Human, &[]), "error: unknown item 3:17");
        assert_eq!(
            render_error(&ClientError::NotLoggedIn, Format::Json, &[]),
            r#"{"error":{"code":"not_logged_in","message":"not logged in: log in first"}}"#
        );
    }

    #[test]
    fn transport_errors_name_the_servers() {
        let down = ClientError::Transport(CallError::Unreachable {
            service: "seller-server",
            addr: "b:2".into(),
            reason: "connection refused".into(),
        });
        let one = render_error(&down, Format::Human, &["b:2".into()]);
        assert_eq!(one, "error: seller-server at b:2 is unreachable: connection refused");
        let two = render_error(&down, Format::Json, &["a:1".into(), "b:2".into()]);
        let parsed: Value = serde_json::from_str(&two).expect("json");
        assert_eq!(parsed["error"]["code"], "unavailable");
        let message = parsed["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("a:1, b:2"), "{message}");
    }

    #[test]
    fn purchases_show_lines_and_dates() {
        let purchase = Purchase {
            id: 1,
            at_unix_ms: 1_700_000_000_000,
            lines: vec![PurchaseLine {
                seller_id: 1,
                item: pen().id,
                name: "Blue pen".into(),
                quantity: 2,
                unit_price: Money::from_cents(150),
            }],
            total: Money::from_cents(300),
        };
        let page = Page::default();
        let text = Reply::Purchases { purchases: vec![purchase], page }.render(Format::Human);
        assert!(text.contains("2023-11-14 22:13 UTC"), "{text}");
        assert!(text.contains("2 × 3:17 Blue pen at $1.50"), "{text}");
        assert!(text.contains("$3.00"), "{text}");
    }

    #[test]
    fn the_cart_shows_names_prices_and_totals_as_the_http_api_does() {
        let line = CartLine { item: pen().id, quantity: 3 };
        let lamp = Item { id: ItemId { category: 42, number: 2 }, ..pen() };
        let lines = vec![
            (line, Some(pen())),
            (CartLine { item: lamp.id, quantity: 1 }, Some(lamp)),
            (CartLine { item: ItemId { category: 3, number: 9 }, quantity: 1 }, None),
        ];
        let cart = Reply::Cart { lines, names: names() };
        let text = cart.render(Format::Human);
        for expected in [
            "unit price",
            "line total",
            "Blue pen",
            "Office and stationery",
            "Category 42",
            "$4.50",
            "$6.00",
            "(cannot be shown now)",
        ] {
            assert!(text.contains(expected), "{expected:?} missing from\n{text}");
        }
        let json = cart.json();
        assert_eq!(json["total"], "6.00");
        assert_eq!(
            json["lines"][0],
            json!({
                "item": "3:17", "quantity": 3, "name": "Blue pen",
                "category_name": "Office and stationery", "unit_price": "1.50", "line_total": "4.50",
            })
        );
        assert_eq!(json["lines"][1]["category_name"], Value::Null, "42 has no name");
        let empty = Reply::Cart { lines: vec![], names: names() };
        assert_eq!(empty.render(Format::Human), "the cart is empty");
        assert_eq!(empty.json(), json!({ "lines": [], "total": "0.00" }));
    }

    #[test]
    fn categories_list_their_items() {
        let list = vec![CategoryCount { id: 3, name: "Pens".into(), items: Some(2) }];
        let reply = Reply::Categories(list);
        assert!(reply.render(Format::Human).contains("Pens"));
        assert_eq!(
            reply.json(),
            json!({ "categories": [{ "id": 3, "name": "Pens", "items": 2 }] })
        );
        let failed: Result<Vec<CategoryCount>, ClientError> = Err(ClientError::NotLoggedIn);
        assert!(names_of(failed).is_empty(), "numbers alone when the names cannot be had");
    }

    #[test]
    fn a_terminal_without_a_size_gets_a_sensible_width() {
        assert_eq!(table_width(Some(0)), Some(FALLBACK_WIDTH));
        assert_eq!(table_width(Some(7)), Some(FALLBACK_WIDTH));
        assert_eq!(table_width(Some(132)), Some(132));
        assert_eq!(table_width(None), None, "a pipe: as wide as the content");
    }

    #[test]
    fn dates_are_gregorian() {
        assert_eq!(format_time(0), "1970-01-01 00:00 UTC");
        assert_eq!(format_time(951_782_400_000), "2000-02-29 00:00 UTC");
        assert_eq!(format_time(-1), "1969-12-31 23:59 UTC");
    }
}
