//! Arguments both CLIs share, and the parsers that check values against the contract's
//! limits before anything is sent, so a typo is a usage error with the rule in it.

use agora_domain::{
    Condition, Money, PAGE_DEFAULT, PAGE_MAX, Page, QUANTITY_MAX, check_keywords, check_name,
    check_password, check_username,
};
use clap::builder::RangedU64ValueParser;

/// The global options both roles take besides `--server`, whose default and environment
/// variable name the role.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct GlobalArgs {
    /// Print results as JSON on stdout, in the HTTP API's shapes (ids "3:17", prices
    /// "1.50", lists {items, next_offset}; docs/http.md), and errors as
    /// {"error":{"code":..,"message":..}} on stderr.
    #[arg(long, global = true, help_heading = "Global options")]
    pub json: bool,
    /// Use this session id instead of the one a `login` saved.
    #[arg(
        long,
        value_name = "ID",
        env = "AGORA_SESSION",
        hide_env_values = true,
        global = true,
        help_heading = "Global options"
    )]
    pub session: Option<String>,
}

/// Username and password of a new account, and its display name.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct CreateAccountArgs {
    /// Login name: 1 to 32 letters, digits, '_', '-' or '.'; unique among accounts of this
    /// kind.
    #[arg(long, short, value_name = "NAME", value_parser = parse_username)]
    pub username: String,
    /// At least 8 characters, at most 128 bytes. Or set AGORA_PASSWORD, so that it stays
    /// out of the command line and the shell history.
    #[arg(long, short, env = "AGORA_PASSWORD", hide_env_values = true, value_parser = parse_new_password)]
    pub password: String,
    /// Display name: 1 to 32 characters, need not be unique. Defaults to the username.
    #[arg(long, short, value_parser = parse_display_name)]
    pub name: Option<String>,
}

/// Username and password of an existing account.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct LoginArgs {
    /// Your login name.
    #[arg(long, short, value_name = "NAME")]
    pub username: String,
    /// Your password. Or set AGORA_PASSWORD, so that it stays out of the command line and
    /// the shell history.
    #[arg(long, short, env = "AGORA_PASSWORD", hide_env_values = true)]
    pub password: String,
}

/// Which page of a list to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args)]
pub struct PageArgs {
    /// Most entries to show: 1 to 100.
    #[arg(long, value_name = "N", default_value_t = PAGE_DEFAULT, value_parser = parse_limit())]
    pub limit: u32,
    /// Entries to skip: with --limit 20, --offset 20 shows the second page.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub offset: u32,
}

impl PageArgs {
    /// As the domain's [`Page`].
    pub fn page(self) -> Page {
        Page { offset: self.offset, limit: self.limit }
    }
}

/// An item's condition, as typed on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ConditionArg {
    /// Never used.
    New,
    /// Second hand.
    Used,
}

impl From<ConditionArg> for Condition {
    fn from(arg: ConditionArg) -> Self {
        match arg {
            ConditionArg::New => Condition::New,
            ConditionArg::Used => Condition::Used,
        }
    }
}

/// A vote on an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Vote {
    /// Thumbs up.
    Up,
    /// Thumbs down.
    Down,
}

/// Help shown for every item id argument.
pub(crate) const ITEM_HELP: &str =
    "Item id written CATEGORY:NUMBER, like 3:17, as listings show it";

pub(crate) fn parse_username(s: &str) -> Result<String, String> {
    check_username(s).map_err(|e| e.rule)?;
    Ok(s.to_owned())
}

pub(crate) fn parse_new_password(s: &str) -> Result<String, String> {
    check_password(s).map_err(|e| e.rule)?;
    Ok(s.to_owned())
}

pub(crate) fn parse_display_name(s: &str) -> Result<String, String> {
    check_name("name", s).map_err(|e| e.rule)
}

/// One keyword: up to 8 characters without spaces; lower-cased.
pub(crate) fn parse_keyword(s: &str) -> Result<String, String> {
    let mut keywords = check_keywords(&[s.to_owned()]).map_err(|e| e.rule)?;
    keywords.pop().ok_or_else(|| "a keyword must not be empty".to_owned())
}

/// A sale price like 12.34, from 0.01 to 1000000.00.
pub(crate) fn parse_price(s: &str) -> Result<Money, String> {
    let money: Money = s.parse().map_err(|e: agora_domain::Invalid| e.rule)?;
    money.check_price().map_err(|e| e.rule)
}

/// A number of units: 1 to 1,000,000.
pub(crate) fn parse_quantity() -> RangedU64ValueParser<u32> {
    RangedU64ValueParser::new().range(1..=u64::from(QUANTITY_MAX))
}

/// A page size: 1 to 100.
pub(crate) fn parse_limit() -> RangedU64ValueParser<u32> {
    RangedU64ValueParser::new().range(1..=u64::from(PAGE_MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked_against_the_contract() {
        assert_eq!(parse_keyword("Pen").as_deref(), Ok("pen"));
        assert!(parse_keyword("toolongword").is_err());
        assert!(parse_keyword("a b").is_err());
        assert_eq!(parse_price("1.5").map(Money::cents), Ok(150));
        assert!(parse_price("0").is_err());
        assert!(parse_price("1.234").is_err());
        assert!(parse_username("no spaces").is_err());
        assert!(parse_new_password("short").is_err());
        assert_eq!(parse_display_name("  Alice ").as_deref(), Ok("Alice"));
    }
}
