//! `agora buyer`: the buyer's commands and how each one runs against a [`BuyerClient`].

use agora_client::{BuyerClient, ClientError};
use agora_domain::{ItemId, Money, UserId};
use clap::Subcommand;

use crate::account::{AccountCommand, execute_account};
use crate::args::{
    ITEM_HELP, PageArgs, Vote, parse_category, parse_keyword, parse_quantity, parse_total,
    parse_user_id,
};
use crate::output::Reply;
use crate::secret::CARD_NUMBER;

/// What to do after a declined card: the cart is as it was.
const DECLINED_NEXT: &str = "the cart is kept: try again with the card's details checked or \
     another card (payments also declines some valid cards at random, as a bank may; `agora \
     up --approve-probability 1` approves every valid card, for tests)";

/// The buyer's commands, one per call of the buyer's interface.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
// The help of the account commands that names the role.
#[command(
    mut_subcommand("create-account", |c| {
        c.about("Create a buyer account; prints the new buyer id")
    }),
    mut_subcommand("logout", |c| {
        c.about("Log out and forget the saved session; an unsaved cart is emptied")
    }),
)]
pub enum BuyerCommand {
    /// `create-account`, `login` and `logout`, as the seller has them.
    #[command(flatten)]
    Account(AccountCommand),
    /// Search the items for sale in a category, best match first, a page at a time (the
    /// output says how to get the next).
    #[command(allow_negative_numbers = true)]
    Search {
        /// The category to search: its number (`agora buyer categories` lists the named
        /// ones).
        #[arg(long, value_name = "N", value_parser = parse_category)]
        category: u32,
        /// A word to look for: up to 8 characters, no spaces. Repeat the option, or
        /// separate with commas, for up to 5 keywords; none lists the whole category.
        #[arg(long = "keyword", alias = "keywords", value_name = "WORD", value_delimiter = ',', value_parser = parse_keyword)]
        keywords: Vec<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show one item.
    Item {
        #[arg(help = ITEM_HELP)]
        item: ItemId,
    },
    /// Add units of an item to the cart, if that many are available; prints the cart.
    #[command(allow_negative_numbers = true)]
    Add {
        #[arg(help = ITEM_HELP)]
        item: ItemId,
        /// Units to add: 1 to 1000000.
        #[arg(value_parser = parse_quantity, default_value_t = 1)]
        quantity: u32,
    },
    /// Take units of an item out of the cart; prints the cart.
    #[command(allow_negative_numbers = true)]
    Remove {
        #[arg(help = ITEM_HELP)]
        item: ItemId,
        /// Units to take out: 1 to 1000000.
        #[arg(value_parser = parse_quantity)]
        quantity: u32,
    },
    /// Keep the cart across your sessions (otherwise it is emptied at logout).
    SaveCart,
    /// Empty the cart.
    ClearCart,
    /// Show the cart: each item's name, category and price now, the units and the line's
    /// total, and the cart's total.
    Cart,
    /// List the named categories, each with how many items it has for sale.
    Categories,
    /// Give an item (and so its seller) a thumbs up or down.
    Feedback {
        #[arg(help = ITEM_HELP)]
        item: ItemId,
        /// Thumbs up or thumbs down.
        #[arg(value_enum)]
        vote: Vote,
    },
    /// Show a seller's feedback and units sold.
    #[command(allow_negative_numbers = true)]
    SellerRating {
        /// The seller's id: a whole number, as item listings show it.
        #[arg(value_parser = parse_user_id)]
        seller_id: UserId,
    },
    /// Buy everything in the cart, paying by card: all or nothing.
    ///
    /// First prints the cart's total at today's prices (on stderr), before the card
    /// number is asked for, and buys only at that total: if a price changes meanwhile,
    /// nothing is bought or charged and the error says the new total. Each run is a new
    /// purchase under a fresh purchase key. If the answer is unclear (the server was
    /// unreachable mid-way, or says the purchase is pending), run it again with the
    /// `--key` it printed: the same key never buys or charges twice.
    Purchase {
        /// The cardholder's name.
        #[arg(long, env = "AGORA_CARD_HOLDER")]
        holder: String,
        /// Card number, 12 to 19 digits (spaces allowed). Without it, asked for at the
        /// terminal (not echoed); scripts set AGORA_CARD_NUMBER, so that the number does
        /// not show in the process list.
        #[arg(long, env = "AGORA_CARD_NUMBER", hide_env_values = true)]
        number: Option<String>,
        /// Expiry month, MM/YY.
        #[arg(long, env = "AGORA_CARD_EXPIRY")]
        expiry: String,
        /// Purchase key (1 to 64 characters): repeat a purchase's key to learn its outcome
        /// without buying again. Default: a new random key.
        #[arg(long)]
        key: Option<String>,
        /// The total you agree to pay, like 12.34 (say, what `cart` showed you). Default:
        /// the cart's total now, printed first.
        #[arg(long, value_parser = parse_total)]
        total: Option<Money>,
    },
    /// Show your purchase history, a page at a time.
    #[command(allow_negative_numbers = true)]
    Purchases(PageArgs),
    /// Check that the buyer server answers.
    Ping {
        /// Also check that the server reaches its databases.
        #[arg(long)]
        deep: bool,
    },
}

/// Runs `command` against `client` and returns its result, unprinted. A login leaves its
/// session in the client; saving it anywhere else is the caller's business.
pub async fn execute_buyer(
    client: &BuyerClient,
    command: BuyerCommand,
) -> Result<Reply, ClientError> {
    Ok(match command {
        BuyerCommand::Account(command) => return execute_account(client, command).await,
        BuyerCommand::Search { category, keywords, page } => {
            let items = client.search(category, keywords, page.page()).await?;
            Reply::Items { items, page: page.page(), names: names(client).await }
        }
        BuyerCommand::Item { item } => {
            Reply::Item { item: client.get_item(item).await?, names: names(client).await }
        }
        BuyerCommand::Add { item, quantity } => {
            cart(client, client.add_to_cart(item, quantity).await?).await
        }
        BuyerCommand::Remove { item, quantity } => {
            cart(client, client.remove_from_cart(item, quantity).await?).await
        }
        BuyerCommand::SaveCart => {
            client.save_cart().await?;
            Reply::Done("cart saved")
        }
        BuyerCommand::ClearCart => {
            client.clear_cart().await?;
            Reply::Done("cart cleared")
        }
        BuyerCommand::Cart => cart(client, client.display_cart().await?).await,
        BuyerCommand::Categories => Reply::Categories(client.categories(true).await?),
        BuyerCommand::Feedback { item, vote } => {
            let feedback = client.provide_feedback(item, vote == Vote::Up).await?;
            Reply::Feedback { item, feedback }
        }
        BuyerCommand::SellerRating { seller_id } => {
            Reply::Rating(client.get_seller_rating(seller_id).await?)
        }
        BuyerCommand::Purchase { holder, number, expiry, key, total } => {
            // The total the buyer pays is said before the card is asked for, and is the
            // only one this purchase may charge.
            let total = match total {
                Some(total) => total,
                None => client.cart_total().await?,
            };
            eprintln!("total to pay: {total}");
            let number = CARD_NUMBER.or_ask(number)?;
            let card = agora_domain::Card { holder, number, expiry };
            let key = key.unwrap_or_else(agora_client::new_purchase_key);
            match client.make_purchase_at(&key, card, total).await {
                Ok(purchase) => Reply::Purchased(purchase),
                // Say which key to repeat when the outcome is not yet known.
                Err(e)
                    if e.is_transport()
                        || e.code() == Some(agora_client::ErrorCode::PurchasePending) =>
                {
                    return Err(ClientError::Refused(agora_client::ApiError::new(
                        e.code().unwrap_or(agora_client::ErrorCode::Unavailable),
                        format!(
                            "{e}\nthe outcome is not known yet: run the purchase again with --key {key} to learn it (it will not buy twice)"
                        ),
                    )));
                }
                // Declined: nothing happened, so say what may be done next.
                Err(ClientError::Refused(e))
                    if e.code == agora_client::ErrorCode::PaymentDeclined =>
                {
                    return Err(ClientError::Refused(agora_client::ApiError::new(
                        e.code,
                        format!("{}\n{DECLINED_NEXT}", e.message),
                    )));
                }
                Err(e) => return Err(e),
            }
        }
        BuyerCommand::Purchases(page) => {
            let purchases = client.get_purchases(page.page()).await?;
            Reply::Purchases { purchases, page: page.page() }
        }
        BuyerCommand::Ping { deep } => {
            client.ping(deep).await?;
            Reply::Done(if deep {
                "the buyer server and its databases answer"
            } else {
                "the buyer server answers"
            })
        }
    })
}

/// The categories' names, for a reply that shows items; none if the server cannot say.
async fn names(client: &BuyerClient) -> agora_domain::Categories {
    crate::output::names_of(client.categories(false).await)
}

/// The cart of `lines`, each with its item as it is now, as the web cart shows it. An item
/// that cannot be had leaves its line without name and price rather than failing the
/// command, whose change has been made.
async fn cart(client: &BuyerClient, lines: Vec<agora_domain::CartLine>) -> Reply {
    let mut shown = Vec::with_capacity(lines.len());
    for line in lines {
        let item = client.get_item(line.item).await.ok();
        shown.push((line, item));
    }
    Reply::Cart { lines: shown, names: names(client).await }
}
