//! `agora seller`: the seller's commands and how each one runs against a [`SellerClient`].

use agora_client::{ClientError, SellerClient};
use agora_domain::{ItemId, Money, NewItem};
use clap::Subcommand;

use crate::account::{AccountCommand, execute_account};
use crate::args::{
    ITEM_HELP, PageArgs, parse_category, parse_display_name, parse_keyword, parse_price,
    parse_quantity,
};
use crate::output::Reply;

/// The seller's commands, one per call of the seller's interface.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
// The help of the account commands that names the role.
#[command(mut_subcommand("create-account", |c| {
    c.about("Create a seller account; prints the new seller id")
}))]
pub enum SellerCommand {
    /// `create-account`, `login` and `logout`, as the buyer has them.
    #[command(flatten)]
    Account(AccountCommand),
    /// Show your feedback (thumbs up and down over all your items) and units sold.
    Rating,
    /// Put an item up for sale; prints its item id (like 3:17).
    #[command(allow_negative_numbers = true)]
    Register(RegisterArgs),
    /// Set a new sale price for one of your items; prints the new price.
    #[command(allow_negative_numbers = true)]
    ChangePrice {
        #[arg(help = ITEM_HELP)]
        item: ItemId,
        /// New price like 12.34: from 0.01 to 1000000.00, at most two decimals.
        #[arg(value_parser = parse_price)]
        price: Money,
    },
    /// Take units of one of your items off sale; prints the units left.
    #[command(allow_negative_numbers = true)]
    RemoveUnits {
        #[arg(help = ITEM_HELP)]
        item: ItemId,
        /// Units to remove: 1 to 1000000, at most the units for sale.
        #[arg(value_parser = parse_quantity)]
        units: u32,
    },
    /// List your items for sale, a page at a time (the output says how to get the next).
    #[command(allow_negative_numbers = true)]
    Items(PageArgs),
    /// List the named categories, each with how many items it has for sale; `register
    /// --category` takes the number.
    Categories,
    /// Check that the seller server answers.
    Ping {
        /// Also check that the server reaches its databases.
        #[arg(long)]
        deep: bool,
    },
}

/// What a seller fills in to list an item.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct RegisterArgs {
    /// Item name: 1 to 32 characters, need not be unique.
    #[arg(long, value_parser = parse_display_name)]
    pub name: String,
    /// Category: its number, which starts the item id (`agora seller categories` lists
    /// the named ones; any other number from 0 to 4294967295 is a category without a
    /// name).
    #[arg(long, value_name = "N", value_parser = parse_category)]
    pub category: u32,
    /// A word buyers can search for: up to 8 characters, no spaces. Repeat the option, or
    /// separate with commas, for up to 5 keywords.
    #[arg(long = "keyword", alias = "keywords", value_name = "WORD", value_delimiter = ',', value_parser = parse_keyword)]
    pub keywords: Vec<String>,
    /// The item's condition.
    #[arg(long, value_enum)]
    pub condition: crate::args::ConditionArg,
    /// Sale price like 12.34: from 0.01 to 1000000.00, at most two decimals.
    #[arg(long, value_parser = parse_price)]
    pub price: Money,
    /// Units for sale: 1 to 1000000.
    #[arg(long, value_name = "N", value_parser = parse_quantity)]
    pub quantity: u32,
}

impl RegisterArgs {
    /// As the domain's [`NewItem`].
    pub fn new_item(&self) -> NewItem {
        NewItem {
            name: self.name.clone(),
            category: self.category,
            keywords: self.keywords.clone(),
            condition: self.condition.into(),
            price: self.price,
            quantity: self.quantity,
        }
    }
}

/// Runs `command` against `client` and returns its result, unprinted. A login leaves its
/// session in the client; saving it anywhere else is the caller's business.
pub async fn execute_seller(
    client: &SellerClient,
    command: SellerCommand,
) -> Result<Reply, ClientError> {
    Ok(match command {
        SellerCommand::Account(command) => return execute_account(client, command).await,
        SellerCommand::Rating => Reply::Rating(client.get_rating().await?),
        SellerCommand::Register(args) => {
            Reply::Registered(client.register_item(args.new_item()).await?)
        }
        SellerCommand::ChangePrice { item, price } => {
            client.change_price(item, price).await?;
            Reply::PriceChanged { item, price }
        }
        SellerCommand::RemoveUnits { item, units } => {
            Reply::UnitsLeft { item, left: client.remove_units(item, units).await? }
        }
        SellerCommand::Items(page) => {
            let items = client.list_items(page.page()).await?;
            let names = crate::output::names_of(client.categories(false).await);
            Reply::Items { items, page: page.page(), names }
        }
        SellerCommand::Categories => Reply::Categories(client.categories(true).await?),
        SellerCommand::Ping { deep } => {
            client.ping(deep).await?;
            Reply::Done(if deep {
                "the seller server and its databases answer"
            } else {
                "the seller server answers"
            })
        }
    })
}
