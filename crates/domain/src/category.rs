//! Category names. The contract makes an item's category an integer chosen by the seller;
//! the marketplace also gives some of those numbers names, so that a shopper can pick one
//! from a list rather than guess a number. The number stays the category's id everywhere
//! (item ids, searches, the wire); the name is shown beside it. A number without a name is
//! still a category, shown as "Category 42".
//!
//! The names are configuration of the frontends (`--categories FILE`), not data: every
//! frontend of a marketplace is given the same list. [`Categories::default`] is the list
//! `agora up` ships.

use serde::{Deserialize, Serialize};

use crate::{Invalid, check_name};

/// Most named categories: the list is shown whole, on one page and in one answer.
pub const CATEGORIES_MAX: usize = 100;

/// A category with a name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Category {
    /// The number items carry.
    pub id: u32,
    /// Its name, 1 to 32 characters.
    pub name: String,
}

/// A named category and how many items with units left it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CategoryCount {
    /// The number items carry.
    pub id: u32,
    /// Its name.
    pub name: String,
    /// Items of it with units for sale; `None` when not asked for.
    pub items: Option<u64>,
}

/// The named categories, by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Categories {
    list: Vec<Category>,
}

/// The list `agora up` ships: the contract's examples (pens in 3, a lamp in 7) fit it.
const DEFAULT: [(u32, &str); 10] = [
    (0, "Other"),
    (1, "Books"),
    (2, "Music and films"),
    (3, "Office and stationery"),
    (4, "Computers and phones"),
    (5, "Clothing and shoes"),
    (6, "Toys and games"),
    (7, "Home and garden"),
    (8, "Sports and outdoors"),
    (9, "Art and collectibles"),
];

impl Default for Categories {
    fn default() -> Self {
        Categories {
            list: DEFAULT
                .iter()
                .map(|(id, name)| Category { id: *id, name: (*name).to_owned() })
                .collect(),
        }
    }
}

impl Categories {
    /// No names at all: every category shows as its number.
    pub fn none() -> Self {
        Categories { list: Vec::new() }
    }

    /// The list from `categories`, checked: names as item names are (1 to 32 characters,
    /// nothing invisible), ids and names each used once, at most [`CATEGORIES_MAX`].
    pub fn new(categories: Vec<Category>) -> Result<Self, Invalid> {
        if categories.len() > CATEGORIES_MAX {
            return Err(Invalid::new(
                "categories",
                format!("at most {CATEGORIES_MAX} may be named"),
            ));
        }
        let mut list = Vec::with_capacity(categories.len());
        for category in categories {
            let name = check_name("category name", &category.name)?;
            if list.iter().any(|c: &Category| c.id == category.id) {
                return Err(Invalid::new(
                    "categories",
                    format!("category {} is named twice", category.id),
                ));
            }
            if list.iter().any(|c: &Category| c.name.to_lowercase() == name.to_lowercase()) {
                return Err(Invalid::new(
                    "categories",
                    format!("the name {name:?} is given to two categories"),
                ));
            }
            list.push(Category { id: category.id, name });
        }
        list.sort_by_key(|c| c.id);
        Ok(Categories { list })
    }

    /// Reads a list from text: one category a line, its number then its name
    /// (`3 Office and stationery`); blank lines and lines starting with `#` are skipped.
    /// A bad line is refused with its number and the rule it breaks.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut categories = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = |rule: &dyn std::fmt::Display| format!("line {}: {rule}", n + 1);
            let (id, name) = line
                .split_once(char::is_whitespace)
                .ok_or_else(|| at(&"a category is its number, a space, then its name"))?;
            let id: u32 = id.parse().map_err(|_| {
                at(&format!(
                    "{id:?} is not a category number (a whole number from 0 to {})",
                    u32::MAX
                ))
            })?;
            categories.push(Category { id, name: name.trim().to_owned() });
        }
        Categories::new(categories).map_err(|e| e.to_string())
    }

    /// The named categories, by id.
    pub fn iter(&self) -> impl Iterator<Item = &Category> {
        self.list.iter()
    }

    /// How many are named.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The name of category `id`, if it has one.
    pub fn name(&self, id: u32) -> Option<&str> {
        self.list.binary_search_by_key(&id, |c| c.id).ok().map(|at| self.list[at].name.as_str())
    }

    /// The name of category `id`, or "Category ID" for one without a name.
    pub fn label(&self, id: u32) -> String {
        self.name(id).map_or_else(|| format!("Category {id}"), str::to_owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_list_names_the_examples_categories() {
        let list = Categories::default();
        assert_eq!(list.name(3), Some("Office and stationery"));
        assert_eq!(list.name(7), Some("Home and garden"));
        assert_eq!(list.name(42), None);
        assert_eq!(list.label(42), "Category 42");
        assert_eq!(Categories::new(list.iter().cloned().collect()), Ok(list));
    }

    #[test]
    fn a_file_is_read_line_by_line_and_bad_lines_are_named() {
        let list = Categories::parse("# ours\n\n12 Bikes\n 3   Pens and ink \n").expect("parses");
        let named: Vec<(u32, &str)> = list.iter().map(|c| (c.id, c.name.as_str())).collect();
        assert_eq!(named, [(3, "Pens and ink"), (12, "Bikes")]);
        for (text, says) in [
            ("3", "line 1: a category is its number"),
            ("x Pens", "line 1: \"x\" is not a category number"),
            ("1 A\n-1 B", "line 2: \"-1\" is not a category number"),
            ("1 A\n1 B", "category 1 is named twice"),
            ("1 Pens\n2 pens", "given to two categories"),
            ("1 abcdefghijklmnopqrstuvwxyzabcdefg", "category name: must be at most 32"),
        ] {
            let err = Categories::parse(text).expect_err(text);
            assert!(err.contains(says), "{text:?}: {err}");
        }
        let many: String = (0..=CATEGORIES_MAX).map(|n| format!("{n} C{n}\n")).collect();
        assert!(Categories::parse(&many).expect_err("many").contains("at most 100"));
    }
}
