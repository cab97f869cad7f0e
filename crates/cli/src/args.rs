//! Arguments both CLIs share, and the parsers that check values against the contract's
//! limits before anything is sent, so a typo is a usage error with the rule in it.

use agora_domain::{
    Condition, Money, PAGE_DEFAULT, PAGE_MAX, Page, QUANTITY_MAX, UserId, check_keywords,
    check_name, check_password, check_username,
};

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
    /// Login name: 1 to 32 ASCII letters (a-z, A-Z), digits, '_', '-' or '.'; unique among
    /// accounts of this kind.
    #[arg(long, short, value_name = "NAME", value_parser = parse_username)]
    pub username: String,
    /// At least 8 characters, at most 128 bytes. Without it, asked for at the terminal
    /// (not echoed); scripts set AGORA_PASSWORD, which stays out of the process list and
    /// the shell history.
    #[arg(long, short, env = "AGORA_PASSWORD", hide_env_values = true, value_parser = parse_new_password)]
    pub password: Option<String>,
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
    /// Your password. Without it, asked for at the terminal (not echoed); scripts set
    /// AGORA_PASSWORD, which stays out of the process list and the shell history.
    #[arg(long, short, env = "AGORA_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
}

/// Which page of a list to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args)]
pub struct PageArgs {
    /// Most entries to show: 1 to 100.
    #[arg(long, value_name = "N", default_value_t = PAGE_DEFAULT, value_parser = parse_limit)]
    pub limit: u32,
    /// Entries to skip: with --limit 20, --offset 20 shows the second page. A full page
    /// ends with the offset of the next.
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = parse_offset)]
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

/// An amount agreed to pay (`--total`): any amount with at most two decimals.
pub(crate) fn parse_total(s: &str) -> Result<Money, String> {
    s.parse().map_err(|_| "must be an amount like 12.34 (at most two decimals)".to_owned())
}

/// Reads a whole number of at most `max`, or says `rule`. Signs, blanks inside and
/// fractions are refused in the same words, never in the parser's.
fn whole_number(s: &str, max: u64, rule: impl FnOnce() -> String) -> Result<u64, String> {
    let s = s.trim();
    match s.parse::<u64>() {
        Ok(n) if n <= max => Ok(n),
        _ => Err(rule()),
    }
}

/// A number of units: 1 to 1,000,000.
pub(crate) fn parse_quantity(s: &str) -> Result<u32, String> {
    let rule = || format!("a number of units is a whole number from 1 to {QUANTITY_MAX}");
    match whole_number(s, u64::from(QUANTITY_MAX), rule)? {
        0 => Err(format!("a number of units is a whole number from 1 to {QUANTITY_MAX}")),
        n => Ok(n as u32),
    }
}

/// A page size: 1 to 100.
pub(crate) fn parse_limit(s: &str) -> Result<u32, String> {
    let rule = || format!("a page holds from 1 to {PAGE_MAX} entries");
    match whole_number(s, u64::from(PAGE_MAX), rule)? {
        0 => Err(format!("a page holds from 1 to {PAGE_MAX} entries")),
        n => Ok(n as u32),
    }
}

/// Entries to skip: 0 or more.
pub(crate) fn parse_offset(s: &str) -> Result<u32, String> {
    let rule = || format!("an offset is a whole number of entries to skip, 0 to {}", u32::MAX);
    Ok(whole_number(s, u64::from(u32::MAX), rule)? as u32)
}

/// A category: any whole number that fits in 32 bits.
pub(crate) fn parse_category(s: &str) -> Result<u32, String> {
    let rule = || format!("a category is a whole number from 0 to {}", u32::MAX);
    Ok(whole_number(s, u64::from(u32::MAX), rule)? as u32)
}

/// A seller's (or any account's) id: a whole number, as listings show it.
pub(crate) fn parse_user_id(s: &str) -> Result<UserId, String> {
    whole_number(s, u64::MAX, || {
        "a seller id is a whole number, as the seller column of item listings shows it".to_owned()
    })
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

    #[test]
    fn numbers_are_refused_in_our_words() {
        assert_eq!(parse_quantity("1000000"), Ok(1_000_000));
        assert_eq!(parse_category(" 7 "), Ok(7));
        assert_eq!(parse_user_id("12"), Ok(12));
        assert_eq!(parse_offset("0"), Ok(0));
        for (parsed, rule) in [
            (parse_quantity("-1"), "whole number from 1 to 1000000"),
            (parse_quantity("0"), "whole number from 1 to 1000000"),
            (parse_quantity("1.5"), "whole number from 1 to 1000000"),
            (parse_limit("101"), "from 1 to 100 entries"),
            (parse_offset("-20"), "entries to skip"),
            (parse_category("-1"), "category is a whole number"),
            (parse_category("4294967296"), "category is a whole number"),
        ] {
            assert!(parsed.as_ref().is_err_and(|e| e.contains(rule)), "{parsed:?}: {rule}");
        }
        let seller = parse_user_id("abc").expect_err("abc");
        assert!(seller.contains("seller id is a whole number"), "{seller}");
        let user = parse_username("zoë").expect_err("zoë");
        assert!(user.contains("ASCII letters"), "{user}");
    }
}
