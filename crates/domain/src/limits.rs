//! The contract's limits, and the checks that enforce them. Every check names the field and
//! the rule in its error, so a refusal tells the user exactly what to change.

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

use crate::Invalid;

/// Whether `c` may not appear in a name or keyword: control characters, and format
/// characters that change how text looks without showing (zero-width spaces and joiners,
/// byte-order marks, bidirectional overrides such as U+202E), and line or paragraph
/// separators. With them, `a\u{200b}b` would look like `ab` and not be found as `ab`.
fn invisible(c: char) -> bool {
    matches!(
        c.general_category(),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
    )
}

/// Longest item, seller or buyer name, in characters.
pub const NAME_MAX_CHARS: usize = 32;
/// Most keywords an item (or a search) may have.
pub const KEYWORDS_MAX: usize = 5;
/// Longest keyword, in characters.
pub const KEYWORD_MAX_CHARS: usize = 8;
/// Longest username, in characters.
pub const USERNAME_MAX_CHARS: usize = 32;
/// Shortest password, in characters.
pub const PASSWORD_MIN_CHARS: usize = 8;
/// Longest password, in bytes (bounds the work of hashing it).
pub const PASSWORD_MAX_BYTES: usize = 128;
/// Most units of one item a seller may list, or a buyer put in a cart, at once.
pub const QUANTITY_MAX: u32 = 1_000_000;
/// Most distinct items in one cart.
pub const CART_LINES_MAX: usize = 100;
/// Largest page of a list (search results, a seller's items, purchases).
pub const PAGE_MAX: u32 = 100;
/// Page size when the caller does not say.
pub const PAGE_DEFAULT: u32 = 20;

/// Checks a display name (item, seller or buyer): 1 to 32 characters, no control
/// characters, not only spaces. Returns it trimmed.
/// Normalised to NFC (so that a name typed with a combining accent and one typed with a
/// precomposed letter are the same name).
pub fn check_name(field: &'static str, name: &str) -> Result<String, Invalid> {
    let name = name.trim();
    if name.is_empty() {
        return Err(Invalid::new(field, "must not be empty"));
    }
    // Counted as typed: normalising may lengthen a few characters, and the rule is the
    // user's to read.
    if name.chars().count() > NAME_MAX_CHARS {
        return Err(Invalid::new(field, format!("must be at most {NAME_MAX_CHARS} characters")));
    }
    if name.chars().any(invisible) {
        return Err(Invalid::new(
            field,
            "must not contain control or invisible formatting characters (such as zero-width \
             spaces or direction overrides)",
        ));
    }
    Ok(name.nfc().collect())
}

/// Checks a username: 1 to 32 characters from the ASCII letters, digits, `_`, `-` and `.`.
pub fn check_username(username: &str) -> Result<(), Invalid> {
    if username.is_empty() || username.chars().count() > USERNAME_MAX_CHARS {
        return Err(Invalid::new(
            "username",
            format!("must be 1 to {USERNAME_MAX_CHARS} characters"),
        ));
    }
    if !username.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')) {
        return Err(Invalid::new(
            "username",
            "may contain only ASCII letters (a-z, A-Z), digits, '_', '-' and '.'",
        ));
    }
    Ok(())
}

/// Checks a new password: at least 8 characters, at most 128 bytes.
pub fn check_password(password: &str) -> Result<(), Invalid> {
    if password.chars().count() < PASSWORD_MIN_CHARS {
        return Err(Invalid::new(
            "password",
            format!("must be at least {PASSWORD_MIN_CHARS} characters"),
        ));
    }
    if password.len() > PASSWORD_MAX_BYTES {
        return Err(Invalid::new(
            "password",
            format!("must be at most {PASSWORD_MAX_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// Checks and normalises keywords: at most five, each 1 to 8 characters without spaces,
/// control or invisible formatting characters. Returns them in NFC, lower-cased, without
/// duplicates, in their order.
pub fn check_keywords(keywords: &[String]) -> Result<Vec<String>, Invalid> {
    if keywords.len() > KEYWORDS_MAX {
        return Err(Invalid::new("keywords", format!("at most {KEYWORDS_MAX} keywords")));
    }
    let mut out: Vec<String> = Vec::with_capacity(keywords.len());
    for keyword in keywords {
        let keyword = keyword.trim().to_lowercase();
        if keyword.is_empty() {
            return Err(Invalid::new("keywords", "a keyword must not be empty"));
        }
        if keyword.chars().count() > KEYWORD_MAX_CHARS {
            return Err(Invalid::new(
                "keywords",
                format!(
                    "each keyword must be at most {KEYWORD_MAX_CHARS} characters ({keyword:?} is longer)"
                ),
            ));
        }
        if keyword.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Invalid::new("keywords", "a keyword must not contain spaces"));
        }
        if keyword.chars().any(invisible) {
            return Err(Invalid::new(
                "keywords",
                "a keyword must not contain invisible formatting characters",
            ));
        }
        let keyword: String = keyword.nfc().collect();
        if !out.contains(&keyword) {
            out.push(keyword);
        }
    }
    Ok(out)
}

/// Checks a quantity: from 1 to [`QUANTITY_MAX`].
pub fn check_quantity(quantity: u32) -> Result<u32, Invalid> {
    if quantity == 0 || quantity > QUANTITY_MAX {
        return Err(Invalid::new("quantity", format!("must be from 1 to {QUANTITY_MAX}")));
    }
    Ok(quantity)
}

/// Characters in a session token: 256 bits as hex digits.
pub const SESSION_TOKEN_LEN: usize = 64;

/// A session token in its one canonical form (lower-case hex), or `None` if `token`
/// cannot be one: not exactly 64 hex digits. Everything that keys a table by a token
/// (the customer database's sessions, the frontends' session cache) goes through this
/// first, so a malformed token touches no table and an upper-case copy of a token is the
/// same session, not another.
pub fn canonical_token(token: &str) -> Option<String> {
    (token.len() == SESSION_TOKEN_LEN && token.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| token.to_ascii_lowercase())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod unicode_tests {
    use super::*;

    #[test]
    fn invisible_characters_are_refused_and_text_is_nfc() {
        for sneaky in ["\u{200b}", "a\u{200b}b", "\u{feff}pen", "evil\u{202e}gnp", "a\u{2028}b"] {
            assert!(check_name("name", sneaky).is_err(), "{sneaky:?}");
            assert!(check_keywords(&[sneaky.to_owned()]).is_err(), "{sneaky:?}");
        }
        // e + combining acute, and the precomposed letter: one name, one keyword.
        let combining = "Caf\u{65}\u{301}";
        assert_eq!(check_name("name", combining).unwrap(), "Caf\u{e9}");
        assert_eq!(check_keywords(&[combining.to_owned()]).unwrap(), vec!["caf\u{e9}".to_owned()]);
        assert_eq!(check_name("name", "Zoë's pens").unwrap(), "Zoë's pens");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(check_name("name", "  pen  ").as_deref(), Ok("pen"));
        assert!(check_name("name", "").is_err());
        assert!(check_name("name", &"x".repeat(33)).is_err());
        assert!(check_name("name", &"é".repeat(32)).is_ok(), "limits count characters, not bytes");
        assert!(check_name("name", "a\u{7}b").is_err());
    }

    #[test]
    fn keywords_are_normalised_and_bounded() {
        let kw = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(check_keywords(&kw(&["Pen", "pen", "BLUE"])), Ok(kw(&["pen", "blue"])));
        assert!(check_keywords(&kw(&["a", "b", "c", "d", "e", "f"])).is_err());
        assert!(check_keywords(&kw(&["ninechars"])).is_err());
        assert!(check_keywords(&kw(&["a b"])).is_err());
        assert!(check_keywords(&kw(&[""])).is_err());
    }

    #[test]
    fn usernames_and_passwords() {
        assert!(check_username("alice_01").is_ok());
        assert!(check_username("").is_err());
        assert!(check_username("al ice").is_err());
        assert!(check_password("short").is_err());
        assert!(check_password("long enough").is_ok());
        assert!(check_password(&"x".repeat(129)).is_err());
    }
}
