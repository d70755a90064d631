//! Prices from the configuration file (`prices:`), as written ([`RawPrice`]) and as validated
//! ([`PriceOverrides`]).
//!
//! ```yaml
//! prices:
//!   openai/gpt-4o: {input: 2.5, output: 10, cached_input: 1.25}
//!   corp/llama-3.1-70b: {input: 0.6, output: 0.6}
//!   anthropic/claude-sonnet-4-5: {input: 3, output: 15, cached_input: 0.3, cache_write: 3.75}
//!   together/meta-llama/Llama-3.3-70B-Instruct-Turbo: {input: 0.8, output: 0.8}
//! ```
//!
//! Keys are `provider/model`, split at the first `/` (so models may contain `/`). `provider`
//! is a configured provider's name — the price applies to that provider only — or a provider
//! kind id (`openai`, `vllm`, …) — the price applies to every provider of that kind. Models
//! match like the built-in table: case-insensitively, and a row covers its dated snapshots.
//! Rates are US dollars per million tokens; `cached_input` and `cache_write` default to
//! `input`, `reasoning` to `output`.

use indexmap::IndexMap;
use portcullis_core::config::{Block, Issues, key};
use portcullis_providers::ProviderKind;
use serde::Deserialize;
use std::collections::HashMap;

use crate::names::{Match, longest_match};
use crate::price::Price;

/// One `prices:` entry as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrice {
    /// Dollars per million prompt tokens.
    pub input: f64,
    /// Dollars per million generated tokens.
    pub output: f64,
    /// Dollars per million prompt tokens read from the provider's cache (default: `input`).
    #[serde(default)]
    pub cached_input: Option<f64>,
    /// Dollars per million prompt tokens written to the provider's cache (default: `input`).
    #[serde(default)]
    pub cache_write: Option<f64>,
    /// Dollars per million reasoning tokens (default: `output`).
    #[serde(default)]
    pub reasoning: Option<f64>,
}

/// The `prices:` section as written: `provider/model` → price.
pub type RawPrices = IndexMap<String, RawPrice>;

/// The `prices:` block as written, with the names of the configured providers its keys may
/// name (besides provider kinds).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawPriceBlock {
    /// The block.
    pub prices: RawPrices,
    /// The configured providers' names.
    pub providers: Vec<String>,
}

impl Block for PriceOverrides {
    type Raw = RawPriceBlock;
    type Valid = PriceOverrides;

    fn validate(raw: RawPriceBlock, at: &str) -> Result<PriceOverrides, Issues> {
        PriceOverrides::validate_at(
            &raw.prices,
            raw.providers.iter().map(String::as_str),
            &key(at, "prices"),
        )
    }
}

/// Validated price overrides, by provider name or kind id, then by lowercase model.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PriceOverrides {
    by_provider: HashMap<String, Vec<(String, Price)>>,
}

impl PriceOverrides {
    /// No overrides.
    pub fn none() -> Self {
        Self::default()
    }

    /// Validates the `prices:` section. `configured_providers` are the names of the
    /// configured providers; a key's provider part must be one of them or a provider kind id.
    /// Every problem is reported, each with its key path.
    pub fn from_raw<'p>(
        raw: &RawPrices,
        configured_providers: impl IntoIterator<Item = &'p str>,
    ) -> Result<Self, Issues> {
        Self::validate_at(raw, configured_providers, "prices")
    }

    /// [`PriceOverrides::from_raw`] for the block found at `at`.
    fn validate_at<'p>(
        raw: &RawPrices,
        configured_providers: impl IntoIterator<Item = &'p str>,
        at: &str,
    ) -> Result<Self, Issues> {
        let configured: Vec<&str> = configured_providers.into_iter().collect();
        let mut issues = Issues::new();
        let mut out = Self::default();
        let mut seen: HashMap<(String, String), &str> = HashMap::new();
        for (key, rate) in raw {
            let path = format!("{at}.{key}");
            let Some((provider, model)) = key.split_once('/') else {
                issues.push(&path, "expected `provider/model`, e.g. `openai/gpt-4o`");
                continue;
            };
            if provider.is_empty() || model.is_empty() || key.chars().any(char::is_whitespace) {
                issues.push(
                    &path,
                    "expected `provider/model` with a non-empty provider and model and no spaces",
                );
                continue;
            }
            if !configured.contains(&provider) && ProviderKind::from_id(provider).is_none() {
                let kinds: Vec<&str> = ProviderKind::ALL.iter().map(|k| k.id()).collect();
                issues.push(
                    &path,
                    format!(
                        "unknown provider `{provider}`: expected a configured provider ({}) or a provider kind ({})",
                        if configured.is_empty() {
                            "none configured".to_owned()
                        } else {
                            configured.join(", ")
                        },
                        kinds.join(", ")
                    ),
                );
                continue;
            }
            let model = model.to_ascii_lowercase();
            if let Some(first) = seen.insert((provider.to_owned(), model.clone()), key) {
                issues.push(
                    &path,
                    format!("duplicates `{first}` (model names are case-insensitive)"),
                );
                continue;
            }
            let price = Price {
                input: rate.input,
                output: rate.output,
                cached_input: rate.cached_input,
                cache_write: rate.cache_write,
                reasoning: rate.reasoning,
            };
            let mut valid = true;
            for (field, value) in price.rates() {
                if let Some(value) = value
                    && !(value.is_finite() && value >= 0.0)
                {
                    valid = false;
                    issues.push(
                        format!("{path}.{field}"),
                        format!(
                            "must be a finite, non-negative number of dollars per million tokens (got {value})"
                        ),
                    );
                }
            }
            if valid {
                out.by_provider
                    .entry(provider.to_owned())
                    .or_default()
                    .push((model, price));
            }
        }
        issues.finish(out)
    }

    /// Whether there are no overrides.
    pub fn is_empty(&self) -> bool {
        self.by_provider.is_empty()
    }

    /// The most specific override of `model` (lowercase) for `provider` (a name or kind id).
    pub(crate) fn find(&self, provider: &str, model: &str) -> Option<Match> {
        let rows = self.by_provider.get(provider)?;
        longest_match(rows.iter().map(|(m, p)| (m.as_str(), *p)), model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> RawPrices {
        serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn yaml_deserializes_and_validates() {
        let raw = parse(
            "openai/gpt-4o: {input: 2.5, output: 10, cached_input: 1.25}\n\
             corp/llama-3.1-70b: {input: 0.6, output: 0.6}\n\
             together/meta-llama/Llama-3.3-70B: {input: 0.8, output: 0.8, reasoning: 1}\n",
        );
        let o = PriceOverrides::from_raw(&raw, ["corp", "together"]).unwrap();
        assert_eq!(
            o.find("openai", "gpt-4o-2024-08-06").map(|m| m.price),
            Some(Price::new(2.5, 10.0).with_cached_input(1.25))
        );
        assert_eq!(
            o.find("corp", "llama-3.1-70b").map(|m| m.price),
            Some(Price::new(0.6, 0.6))
        );
        // Models are split at the first `/` and matched case-insensitively.
        assert_eq!(
            o.find("together", "meta-llama/llama-3.3-70b")
                .map(|m| m.price),
            Some(Price::new(0.8, 0.8).with_reasoning(1.0))
        );
        assert_eq!(o.find("corp", "gpt-4o"), None);
    }

    #[test]
    fn unknown_fields_are_rejected_by_serde() {
        let err =
            serde_saphyr::from_str::<RawPrices>("openai/gpt-4o: {input: 1, output: 2, cached: 1}")
                .unwrap_err()
                .to_string();
        assert!(err.contains("unknown field `cached`"), "{err}");
        let err = serde_saphyr::from_str::<RawPrices>("openai/gpt-4o: {input: 1}")
            .unwrap_err()
            .to_string();
        assert!(err.contains("output"), "{err}");
    }

    #[test]
    fn every_problem_is_reported_with_its_key_path() {
        let raw = parse(
            "gpt-4o: {input: 1, output: 1}\n\
             nobody/gpt-4o: {input: 1, output: 1}\n\
             openai/gpt-4o: {input: -1, output: .inf, cache_write: .nan}\n\
             openai/: {input: 1, output: 1}\n\
             corp/Llama: {input: 1, output: 1}\n\
             corp/llama: {input: 1, output: 1}\n",
        );
        let issues = PriceOverrides::from_raw(&raw, ["corp"]).unwrap_err();
        let text: Vec<String> = issues.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 7, "{text:#?}");
        assert!(text[0].starts_with("prices.gpt-4o: expected `provider/model`"));
        assert!(
            text[1].starts_with("prices.nobody/gpt-4o: unknown provider `nobody`"),
            "{}",
            text[1]
        );
        assert!(text[1].contains("(corp)") && text[1].contains("vllm"));
        assert!(text[2].starts_with("prices.openai/gpt-4o.input: must be a finite, non-negative"));
        assert!(text[2].contains("got -1"));
        assert!(text[3].starts_with("prices.openai/gpt-4o.output:"));
        assert!(text[4].starts_with("prices.openai/gpt-4o.cache_write:"));
        assert!(text[5].starts_with("prices.openai/: expected `provider/model` with a non-empty"));
        assert!(text[6].starts_with("prices.corp/llama: duplicates `corp/Llama`"));
    }

    #[test]
    fn an_empty_section_is_no_overrides() {
        let o = PriceOverrides::from_raw(&RawPrices::new(), []).unwrap();
        assert!(o.is_empty());
        assert_eq!(o, PriceOverrides::none());
    }

    #[test]
    fn the_prices_block_reports_a_bad_value_at_its_path() {
        let prices: RawPrices =
            serde_saphyr::from_str("corp/llama: {input: -1, output: 1}\n").unwrap();
        let block = RawPriceBlock {
            prices,
            providers: vec!["corp".to_owned()],
        };
        let issues = PriceOverrides::validate(block, "").unwrap_err();
        let shown: Vec<String> = issues.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 1, "{shown:?}");
        assert!(
            shown[0].starts_with("prices.corp/llama.input: must be a finite, non-negative"),
            "{shown:?}"
        );
    }
}
