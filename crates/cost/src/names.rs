//! Model-name matching: which price-table row a model name belongs to.
//!
//! A row's name matches a model when it is the model's name or a prefix of it ending at a
//! separator (`-`, `:` or `@`): `gpt-4o-mini-2024-07-18` belongs to `gpt-4o-mini` (and to
//! `gpt-4o`); `claude-sonnet-4-5@20250929` and `claude-3-7-sonnet:thinking` to their families.
//! Of all matching rows the longest wins, so specific variants beat their families. Names are
//! compared in lowercase.
//!
//! Aggregators name models `vendor/model` (`anthropic/claude-sonnet-4.5`): the vendor prefix
//! selects a vendor's list ([`crate::table::VENDOR_PREFIXES`]) and, for Anthropic, dotted
//! versions become dashed (`claude-sonnet-4.5` → `claude-sonnet-4-5`).

use portcullis_providers::ProviderKind;

use crate::price::Price;
use crate::table::{ModelPrice, VENDOR_PREFIXES, vendor_prices};

/// A row that matched: how long its name is (longer is more specific) and its price.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Match {
    /// Length of the matching row's name.
    pub specificity: usize,
    /// The row's price.
    pub price: Price,
}

/// Whether the row name `family` matches `model` (both lowercase).
pub fn is_family_of(family: &str, model: &str) -> bool {
    match model.strip_prefix(family) {
        Some("") => true,
        Some(rest) => matches!(rest.as_bytes().first(), Some(b'-' | b':' | b'@')),
        None => false,
    }
}

/// The most specific row of `rows` matching `model` (lowercase).
pub(crate) fn longest_match<'r>(
    rows: impl IntoIterator<Item = (&'r str, Price)>,
    model: &str,
) -> Option<Match> {
    let mut best: Option<Match> = None;
    for (family, price) in rows {
        if is_family_of(family, model) && best.is_none_or(|b| family.len() > b.specificity) {
            best = Some(Match {
                specificity: family.len(),
                price,
            });
        }
    }
    best
}

fn rows(list: &[ModelPrice]) -> impl Iterator<Item = (&str, Price)> {
    list.iter().map(|r| (r.model, r.price))
}

/// The built-in price of `model` (lowercase) in `vendor`'s list.
pub(crate) fn builtin_match(vendor: &str, model: &str) -> Option<Match> {
    let list = vendor_prices(vendor)?;
    if vendor == "anthropic" && model.contains('.') {
        // Aggregators write Anthropic versions with dots; Anthropic itself never does.
        let dashed = model.replace('.', "-");
        return longest_match(rows(list), &dashed);
    }
    longest_match(rows(list), model)
}

/// The built-in price of `model` (lowercase) named `vendor/model`, through its vendor prefix.
pub(crate) fn through_vendor_prefix(model: &str) -> Option<Price> {
    let (prefix, rest) = model.split_once('/')?;
    let vendor = VENDOR_PREFIXES
        .iter()
        .find(|(p, _)| *p == prefix)
        .map(|(_, v)| *v)?;
    builtin_match(vendor, rest).map(|m| m.price)
}

/// The built-in price of a bare well-known model name (`gpt-4o`, `claude-haiku-4-5`), found
/// through the model-name prefixes each provider kind advertises.
pub(crate) fn through_well_known_name(model: &str) -> Option<Price> {
    ProviderKind::ALL
        .into_iter()
        .filter(|k| {
            k.preset()
                .model_prefixes
                .iter()
                .any(|p| model.starts_with(p))
        })
        .find_map(|k| builtin_match(k.id(), model))
        .map(|m| m.price)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_matching_stops_at_separators() {
        assert!(is_family_of("gpt-4o", "gpt-4o"));
        assert!(is_family_of("gpt-4o", "gpt-4o-2024-08-06"));
        assert!(is_family_of(
            "claude-sonnet-4-5",
            "claude-sonnet-4-5@20250929"
        ));
        assert!(is_family_of(
            "claude-3-7-sonnet",
            "claude-3-7-sonnet:thinking"
        ));
        // `o1` is not the family of `o1x`, nor `gpt-4` of `gpt-4.1`, nor `gpt-5` of `gpt-5.1`.
        assert!(!is_family_of("o1", "o1x"));
        assert!(!is_family_of("gpt-4", "gpt-4.1"));
        assert!(!is_family_of("gpt-5", "gpt-5.1-codex"));
        assert!(!is_family_of("gpt-4o-mini", "gpt-4o"));
    }

    #[test]
    fn the_longest_match_wins_whatever_the_row_order() {
        let a = Price::new(1.0, 1.0);
        let b = Price::new(2.0, 2.0);
        let rows_ab = [("gpt-4o", a), ("gpt-4o-mini", b)];
        let rows_ba = [("gpt-4o-mini", b), ("gpt-4o", a)];
        for rows in [rows_ab, rows_ba] {
            let m = longest_match(rows, "gpt-4o-mini-2024-07-18");
            assert_eq!(
                m,
                Some(Match {
                    specificity: 11,
                    price: b
                })
            );
        }
        assert_eq!(longest_match(rows_ab, "gpt-4.1"), None);
    }

    #[test]
    fn vendor_prefixes_and_dotted_anthropic_versions() {
        let sonnet = builtin_match("anthropic", "claude-sonnet-4-5").map(|m| m.price);
        assert!(sonnet.is_some());
        assert_eq!(through_vendor_prefix("anthropic/claude-sonnet-4.5"), sonnet);
        assert_eq!(
            through_vendor_prefix("anthropic/claude-3.7-sonnet:thinking"),
            builtin_match("anthropic", "claude-3-7-sonnet").map(|m| m.price)
        );
        // Dots stay dots elsewhere: `gpt-4.1` must not turn into `gpt-4-1`.
        assert_eq!(
            through_vendor_prefix("openai/gpt-4.1"),
            builtin_match("openai", "gpt-4.1").map(|m| m.price)
        );
        assert_eq!(
            through_vendor_prefix("google/gemini-2.5-pro"),
            builtin_match("gemini", "gemini-2.5-pro").map(|m| m.price)
        );
        assert_eq!(
            through_vendor_prefix("x-ai/grok-4"),
            builtin_match("xai", "grok-4").map(|m| m.price)
        );
        assert_eq!(through_vendor_prefix("meta-llama/llama-3.1-8b"), None);
        assert_eq!(through_vendor_prefix("gpt-4o"), None);
    }

    #[test]
    fn well_known_bare_names_find_their_vendor() {
        assert_eq!(
            through_well_known_name("claude-haiku-4-5-20251001"),
            builtin_match("anthropic", "claude-haiku-4-5").map(|m| m.price)
        );
        assert_eq!(
            through_well_known_name("o4-mini"),
            builtin_match("openai", "o4-mini").map(|m| m.price)
        );
        assert_eq!(through_well_known_name("my-finetune"), None);
    }
}
