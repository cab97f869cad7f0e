//! Agora's command-line clients, `agora seller` and `agora buyer`.
//!
//! Each has one-shot subcommands mirroring the client library's methods (`agora seller
//! register ...`, `agora buyer cart`) and, with no subcommand, an interactive shell that
//! parses its lines with the same commands. The binary crate embeds [`SellerArgs`] and
//! [`BuyerArgs`] as clap subcommands and calls [`run_seller`] or [`run_buyer`].
//!
//! - [`seller`], [`buyer`]: the commands and how each runs against the client.
//! - [`account`]: the account commands both roles have, defined and run once.
//! - [`args`]: shared arguments and global options, checked against the contract's limits
//!   as they are parsed.
//! - [`output`]: tables for people, JSON for programs, errors with their codes.
//! - [`session`]: the session file that carries a login from one command to the next.
//! - `secret`: passwords and card numbers asked for at the terminal, without echo.
//! - [`shell`]: the interactive shell.

pub mod account;
pub mod args;
pub mod buyer;
pub mod output;
mod run;
mod secret;
pub mod seller;
pub mod session;
pub mod shell;
mod start;

use std::process::ExitCode;

pub use account::AccountCommand;
pub use buyer::{BuyerCommand, execute_buyer};
pub use output::{Format, Reply, render_error};
pub use seller::{SellerCommand, execute_seller};
pub use session::SessionStore;

use args::GlobalArgs;
use run::{Buyer, Options, Seller};

/// Where `agora seller` looks for the seller server when not told.
pub const DEFAULT_SELLER_SERVER: &str = "127.0.0.1:7403";
/// Where `agora buyer` looks for the buyer server when not told.
pub const DEFAULT_BUYER_SERVER: &str = "127.0.0.1:7404";

/// `agora seller`: list items for sale, change their price and units, see your rating.
/// With no command, starts an interactive shell.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct SellerArgs {
    /// Seller server address HOST:PORT. Repeat the option or separate with commas to list
    /// several servers; they are tried in turn.
    #[arg(
        long = "server",
        value_name = "ADDR",
        env = "AGORA_SELLER_SERVER",
        default_value = DEFAULT_SELLER_SERVER,
        value_delimiter = ',',
        hide_env_values = true,
        global = true,
        help_heading = "Global options"
    )]
    pub servers: Vec<String>,
    /// `--json` and `--session`, as the buyer has them.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do; with none, an interactive shell starts.
    #[command(subcommand)]
    pub command: Option<SellerCommand>,
}

/// `agora buyer`: search items, fill a cart, give feedback, see purchases. With no
/// command, starts an interactive shell.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct BuyerArgs {
    /// Buyer server address HOST:PORT. Repeat the option or separate with commas to list
    /// several servers; they are tried in turn.
    #[arg(
        long = "server",
        value_name = "ADDR",
        env = "AGORA_BUYER_SERVER",
        default_value = DEFAULT_BUYER_SERVER,
        value_delimiter = ',',
        hide_env_values = true,
        global = true,
        help_heading = "Global options"
    )]
    pub servers: Vec<String>,
    /// `--json` and `--session`, as the seller has them.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do; with none, an interactive shell starts.
    #[command(subcommand)]
    pub command: Option<BuyerCommand>,
}

/// Runs `agora seller`: the command given, or the shell. Exit code 0 on success, 1 when
/// the command failed (usage errors, code 2, are clap's before this is called).
pub fn run_seller(args: SellerArgs) -> ExitCode {
    start::run::<Seller>(options(args.servers, args.global), args.command)
}

/// Runs `agora buyer`: the command given, or the shell. Exit code 0 on success, 1 when
/// the command failed (usage errors, code 2, are clap's before this is called).
pub fn run_buyer(args: BuyerArgs) -> ExitCode {
    start::run::<Buyer>(options(args.servers, args.global), args.command)
}

fn options(servers: Vec<String>, global: GlobalArgs) -> Options {
    let format = if global.json { Format::Json } else { Format::Human };
    Options { servers, format, session: global.session }
}

#[cfg(test)]
mod tests {
    use agora_domain::{Condition, ItemId, Money, Page, Role};
    use clap::{CommandFactory, Parser};

    use super::*;
    use crate::args::{LoginArgs, PageArgs, Vote};
    use crate::shell::{ShellLine, parse_shell_line};

    /// The CLIs as the `agora` binary embeds them.
    #[derive(Debug, Parser)]
    #[command(name = "agora")]
    enum Cli {
        Seller(SellerArgs),
        Buyer(BuyerArgs),
    }

    fn parse(line: &str) -> Result<Cli, clap::Error> {
        let words = shell_words::split(line)
            .map_err(|e| clap::Error::raw(clap::error::ErrorKind::InvalidValue, e.to_string()))?;
        Cli::try_parse_from(std::iter::once("agora".to_owned()).chain(words))
    }

    fn seller(line: &str) -> SellerArgs {
        match parse(&format!("seller {line}")) {
            Ok(Cli::Seller(args)) => args,
            other => panic!("{line:?} parsed as {other:?}"),
        }
    }

    fn buyer(line: &str) -> BuyerArgs {
        match parse(&format!("buyer {line}")) {
            Ok(Cli::Buyer(args)) => args,
            other => panic!("{line:?} parsed as {other:?}"),
        }
    }

    const PEN: ItemId = ItemId { category: 3, number: 17 };

    #[test]
    fn the_command_definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn register_parses_every_attribute() {
        let args = seller(
            "register --name 'Blue pen' --category 3 --keyword pen --keyword Blue,ink \
             --condition used --price 1.50 --quantity 10",
        );
        let Some(SellerCommand::Register(register)) = args.command else {
            panic!("not register: {args:?}")
        };
        let item = register.new_item();
        assert_eq!(item.name, "Blue pen");
        assert_eq!(item.category, 3);
        assert_eq!(item.keywords, ["pen", "blue", "ink"]);
        assert_eq!(item.condition, Condition::Used);
        assert_eq!(item.price, Money::from_cents(150));
        assert_eq!(item.quantity, 10);
    }

    #[test]
    fn values_outside_the_limits_are_usage_errors() {
        let base = "seller register --name pen --category 3 --condition new";
        for bad in [
            format!("{base} --price 0 --quantity 1"),
            format!("{base} --price 1.234 --quantity 1"),
            format!("{base} --price 1 --quantity 0"),
            format!("{base} --price 1 --quantity 1 --keyword toolongword"),
            "seller register --name '' --category 3 --condition new --price 1 --quantity 1".into(),
            "seller change-price 3-17 1.00".into(),
            "seller items --limit 101".into(),
            "buyer add 3:17 0".into(),
            "buyer feedback 3:17 sideways".into(),
            "buyer search".into(),
        ] {
            let err = parse(&bad).expect_err(&bad);
            assert_eq!(err.exit_code(), 2, "{bad}");
        }
    }

    #[test]
    fn every_refusal_states_our_rule() {
        let register = "seller register --name pen --condition new";
        for (line, rule) in [
            (format!("{register} --category 3 --price -5 --quantity 1"), "amount like 12.34"),
            (format!("{register} --category -1 --price 1 --quantity 1"), "category is a whole"),
            (format!("{register} --category 3 --price 1 --quantity -2"), "from 1 to 1000000"),
            ("seller change-price 3:1 -5".into(), "amount like 12.34"),
            ("seller remove-units 3:1 -1".into(), "from 1 to 1000000"),
            ("seller items --offset -20".into(), "entries to skip"),
            ("buyer add 3:1 -1".into(), "from 1 to 1000000"),
            ("buyer search --category -1".into(), "category is a whole number"),
            ("buyer purchases --limit -1".into(), "from 1 to 100 entries"),
            ("buyer seller-rating abc".into(), "seller id is a whole number"),
            ("buyer seller-rating -1".into(), "seller id is a whole number"),
            ("buyer create-account --username zoë --password 'long enough'".into(), "ASCII"),
        ] {
            let err = parse(&line).expect_err(&line);
            assert_eq!(err.exit_code(), 2, "{line}");
            let text = err.to_string();
            assert!(text.contains(rule), "{line}: {text}");
            for theirs in ["unexpected argument", "invalid digit"] {
                assert!(!text.contains(theirs), "{line}: {text}");
            }
        }
    }

    #[test]
    fn positional_item_ids_and_prices() {
        let args = seller("change-price 3:17 12.34");
        assert_eq!(
            args.command,
            Some(SellerCommand::ChangePrice { item: PEN, price: Money::from_cents(1234) })
        );
        assert_eq!(
            seller("remove-units 3:17 4").command,
            Some(SellerCommand::RemoveUnits { item: PEN, units: 4 })
        );
        assert_eq!(
            buyer("feedback 3:17 down").command,
            Some(BuyerCommand::Feedback { item: PEN, vote: Vote::Down })
        );
        assert_eq!(
            buyer("seller-rating 7").command,
            Some(BuyerCommand::SellerRating { seller_id: 7 })
        );
    }

    #[test]
    fn add_without_a_quantity_adds_one() {
        assert_eq!(buyer("add 3:17").command, Some(BuyerCommand::Add { item: PEN, quantity: 1 }));
    }

    #[test]
    fn pages_default_and_parse() {
        let Some(SellerCommand::Items(page)) = seller("items").command else { panic!("items") };
        assert_eq!(page.page(), Page::default());
        let args = buyer("search --category 3 --keyword pen --limit 5 --offset 10");
        assert_eq!(
            args.command,
            Some(BuyerCommand::Search {
                category: 3,
                keywords: vec!["pen".into()],
                page: PageArgs { limit: 5, offset: 10 },
            })
        );
    }

    #[test]
    fn global_options_go_before_or_after_the_command() {
        let args = seller("--json --server a:1,b:2 --server c:3 items --session s9");
        assert!(args.global.json);
        assert_eq!(args.servers, ["a:1", "b:2", "c:3"]);
        assert_eq!(args.global.session.as_deref(), Some("s9"));
        let args = buyer("cart --json");
        assert!(args.global.json);
        assert_eq!(args.command, Some(BuyerCommand::Cart));
    }

    #[test]
    fn no_command_means_the_shell() {
        assert_eq!(seller("").command, None);
        assert_eq!(buyer("--json").command, None);
    }

    #[test]
    fn login_takes_username_and_password() {
        assert_eq!(
            buyer("login -u alice -p 'secret words'").command,
            Some(BuyerCommand::Account(AccountCommand::Login(LoginArgs {
                username: "alice".into(),
                password: Some("secret words".into())
            })))
        );
    }

    #[test]
    fn shell_lines_use_the_same_commands() {
        let line = parse_shell_line::<SellerCommand>(Role::Seller, "change-price 3:17 '2.00'");
        assert_eq!(
            line.expect("parses"),
            ShellLine::Command {
                command: SellerCommand::ChangePrice { item: PEN, price: Money::from_cents(200) },
                json: false,
            }
        );
        assert_eq!(
            parse_shell_line::<BuyerCommand>(Role::Buyer, "cart --json").expect("--json"),
            ShellLine::Command { command: BuyerCommand::Cart, json: true },
            "the shell takes --json as the one-shot CLI does"
        );
        for exit in ["exit", "quit"] {
            assert_eq!(
                parse_shell_line::<BuyerCommand>(Role::Buyer, exit).expect(exit),
                ShellLine::Exit
            );
        }
        let help = parse_shell_line::<BuyerCommand>(Role::Buyer, "help").expect_err("help");
        assert!(!help.use_stderr(), "help is not an error");
        let text = help.to_string();
        for command in ["search", "save-cart", "seller-rating", "exit"] {
            assert!(text.contains(command), "{command} missing from\n{text}");
        }
        let err =
            parse_shell_line::<BuyerCommand>(Role::Buyer, "remove 3:17").expect_err("no units");
        assert!(err.use_stderr());
        assert!(
            parse_shell_line::<BuyerCommand>(Role::Buyer, "item '3:17").is_err(),
            "bad quoting"
        );
        assert!(parse_shell_line::<BuyerCommand>(Role::Buyer, "register").is_err(), "seller only");
    }
}
