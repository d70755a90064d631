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
//!
//! Provider kinds that serve other vendors' models name them their own way. A kind's model name
//! is first brought to its canonical form ([`canonical_model`]), then looked up in the lists the
//! kind reads ([`crate::table::vendors_for_kind`]); [`builtin_price`] does both, by kind id:
//! - **Bedrock** (`bedrock`): an ARN keeps its last path segment
//!   (`arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-pro-v1:0`), and a cross-Region
//!   inference profile loses its geography ([`BEDROCK_GEOGRAPHIES`]: `us.`, `eu.`, `apac.`,
//!   `global.` …). Claude (`anthropic.claude-3-5-sonnet-20241022-v2:0`) is then priced as
//!   Anthropic's model of that name, without `anthropic.` and the `-vN:M` version; every other
//!   id (`amazon.nova-pro-v1:0`, `meta.llama3-1-70b-instruct-v1:0`, `cohere.embed-english-v3`)
//!   by its row in the Bedrock list. Application inference profiles and provisioned-throughput
//!   ARNs do not name their model and stay unpriced.
//! - **Vertex AI** (`vertex`): Gemini by its Gemini name, Claude by Anthropic's with Vertex's
//!   `@date` (`claude-sonnet-4-5@20250929`). A resource path or an OpenAI-compatible
//!   `publisher/model` name (`publishers/google/models/gemini-2.5-pro`,
//!   `google/gemini-2.5-flash`) keeps its last segment.
//! - **Gemini API** (`gemini`): the resource name `models/gemini-2.5-pro` is `gemini-2.5-pro`.
//! - **Azure OpenAI** (`azure`): OpenAI's model names, Azure's spelling `gpt-35-turbo` read as
//!   `gpt-3.5-turbo`. A deployment is priced as the model it serves, so the name looked up is
//!   the model's, not the deployment's.
//!
//! A Claude match on Bedrock counts the `anthropic.` it dropped in its length, so configured
//! prices written as Bedrock ids (`bedrock/anthropic.claude-sonnet-4`) and built-in rows compete
//! on the same footing.

use std::borrow::Cow;

use portcullis_providers::ProviderKind;

use crate::price::Price;
use crate::table::{ModelPrice, VENDOR_PREFIXES, vendor_prices, vendors_for_kind};

/// The kind id of Amazon Bedrock, whose model ids have rules of their own.
const BEDROCK: &str = "bedrock";
/// The kind id of Google Vertex AI.
const VERTEX: &str = "vertex";
/// The kind id of Google's Gemini API.
const GEMINI: &str = "gemini";
/// The kind id of Azure OpenAI.
const AZURE: &str = "azure";
/// How Bedrock's ids of Claude models begin.
const BEDROCK_ANTHROPIC: &str = "anthropic.";

/// The geography prefixes of Bedrock's cross-Region inference profiles
/// (`us.anthropic.claude-sonnet-4-5-20250929-v1:0`, `global.amazon.nova-2-lite-v1:0`).
pub const BEDROCK_GEOGRAPHIES: &[&str] = &["us", "us-gov", "eu", "apac", "jp", "au", "global"];

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

/// `model` (lowercase) as the kind whose id is `kind_id` names it, brought to the form its price
/// rows use (see the module documentation): a Bedrock id without ARN or geography, a Vertex AI
/// or Gemini API name without its resource path, Azure's `gpt-35` as `gpt-3.5`. Other kinds'
/// names are returned unchanged.
pub fn canonical_model<'m>(kind_id: &str, model: &'m str) -> Cow<'m, str> {
    match kind_id {
        BEDROCK => Cow::Borrowed(bedrock_model_id(model)),
        VERTEX | GEMINI => Cow::Borrowed(last_segment(model)),
        AZURE => match model.strip_prefix("gpt-35") {
            Some(rest) => Cow::Owned(format!("gpt-3.5{rest}")),
            None => Cow::Borrowed(model),
        },
        _ => Cow::Borrowed(model),
    }
}

/// What follows the last `/` of `model`, or all of it.
fn last_segment(model: &str) -> &str {
    model.rsplit('/').next().unwrap_or(model)
}

/// A Bedrock model id or ARN as its foundation model's id: the ARN's last path segment,
/// without a cross-Region inference profile's geography.
fn bedrock_model_id(model: &str) -> &str {
    let id = if model.starts_with("arn:") {
        last_segment(model)
    } else {
        model
    };
    match id.split_once('.') {
        Some((geography, rest)) if BEDROCK_GEOGRAPHIES.contains(&geography) => rest,
        _ => id,
    }
}

/// A Bedrock model name without its version and context suffixes:
/// `claude-3-haiku-20240307-v1:0:200k` → `claude-3-haiku-20240307`.
fn without_bedrock_version(name: &str) -> &str {
    let name = name.split(':').next().unwrap_or(name);
    match name.rsplit_once("-v") {
        Some((base, version))
            if !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit()) =>
        {
            base
        }
        _ => name,
    }
}

/// The built-in price of `model` (lowercase) at a provider of the kind whose id is `kind_id`,
/// after the kind's naming rules.
pub(crate) fn kind_match(kind_id: &str, model: &str) -> Option<Match> {
    let model = canonical_model(kind_id, model);
    if kind_id == BEDROCK {
        return match model.strip_prefix(BEDROCK_ANTHROPIC) {
            Some(claude) => {
                builtin_match("anthropic", without_bedrock_version(claude)).map(|m| Match {
                    specificity: m.specificity + BEDROCK_ANTHROPIC.len(),
                    price: m.price,
                })
            }
            None => builtin_match(BEDROCK, &model),
        };
    }
    vendors_for_kind(kind_id)
        .iter()
        .filter_map(|vendor| builtin_match(vendor, &model))
        .reduce(|best, m| {
            if m.specificity > best.specificity {
                m
            } else {
                best
            }
        })
}

/// The built-in price of `model` at a provider of the kind whose id is `kind_id` (`openai`,
/// `azure`, `bedrock`, `vertex`, `gemini`, …; `ProviderKind::id`), after the kind's naming
/// rules (see the module documentation); `None` when the table has no price for it. This is
/// how [`crate::PriceBook`] finds a kind's built-in prices, for callers that hold a kind id.
pub fn builtin_price(kind_id: &str, model: &str) -> Option<Price> {
    kind_match(kind_id, &model.trim().to_ascii_lowercase()).map(|m| m.price)
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

    fn listed(vendor: &str, model: &str) -> Option<Price> {
        builtin_match(vendor, model).map(|m| m.price)
    }

    #[test]
    fn bedrock_claude_ids_cost_what_anthropic_lists() {
        let sonnet_3_5 = listed("anthropic", "claude-3-5-sonnet");
        assert_eq!(
            sonnet_3_5,
            Some(
                Price::new(3.0, 15.0)
                    .with_cache_write(3.75)
                    .with_cached_input(0.30)
            )
        );
        assert_eq!(
            builtin_price("bedrock", "anthropic.claude-3-5-sonnet-20241022-v2:0"),
            sonnet_3_5
        );
        // Every cross-Region inference profile, and ARNs of models and profiles.
        let sonnet_4_5 = listed("anthropic", "claude-sonnet-4-5");
        assert!(sonnet_4_5.is_some());
        for id in [
            "anthropic.claude-sonnet-4-5-20250929-v1:0",
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "eu.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "apac.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "jp.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "us-gov.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-sonnet-4-5-20250929-v1:0",
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            " US.Anthropic.Claude-Sonnet-4-5-20250929-V1:0 ",
        ] {
            assert_eq!(builtin_price("bedrock", id), sonnet_4_5, "{id}");
        }
        // The family rule still picks the most specific Anthropic row.
        assert_eq!(
            builtin_price("bedrock", "us.anthropic.claude-opus-4-1-20250805-v1:0").map(|p| p.input),
            Some(15.0)
        );
        assert_eq!(
            builtin_price("bedrock", "global.anthropic.claude-opus-4-5-20251101-v1:0")
                .map(|p| p.input),
            Some(5.0)
        );
        assert_eq!(
            builtin_price("bedrock", "anthropic.claude-haiku-4-5-20251001-v1:0"),
            listed("anthropic", "claude-haiku-4-5")
        );
        assert_eq!(
            builtin_price("bedrock", "anthropic.claude-3-haiku-20240307-v1:0:200k"),
            listed("anthropic", "claude-3-haiku")
        );
        // Claude's specificity counts the `anthropic.` it dropped.
        let found = kind_match("bedrock", "us.anthropic.claude-sonnet-4-5-20250929-v1:0");
        assert_eq!(
            found.map(|m| m.specificity),
            Some("anthropic.claude-sonnet-4-5".len())
        );
        // Retired Claude ids with no row stay unpriced.
        assert_eq!(builtin_price("bedrock", "anthropic.claude-v2:1"), None);
        assert_eq!(
            builtin_price("bedrock", "anthropic.claude-instant-v1"),
            None
        );
    }

    #[test]
    fn bedrock_ids_of_other_vendors_have_rows_of_their_own() {
        let cases = [
            (
                "amazon.nova-pro-v1:0",
                Price::new(0.80, 3.20).with_cached_input(0.20),
            ),
            (
                "us.amazon.nova-pro-v1:0",
                Price::new(0.80, 3.20).with_cached_input(0.20),
            ),
            (
                "amazon.nova-lite-v1:0",
                Price::new(0.06, 0.24).with_cached_input(0.015),
            ),
            (
                "eu.amazon.nova-micro-v1:0",
                Price::new(0.035, 0.14).with_cached_input(0.00875),
            ),
            (
                "us.amazon.nova-premier-v1:0",
                Price::new(2.50, 12.50).with_cached_input(0.625),
            ),
            (
                "global.amazon.nova-2-lite-v1:0",
                Price::new(0.30, 2.50).with_cached_input(0.075),
            ),
            ("meta.llama3-1-70b-instruct-v1:0", Price::new(0.72, 0.72)),
            ("meta.llama3-1-8b-instruct-v1:0", Price::new(0.22, 0.22)),
            ("us.meta.llama3-2-11b-instruct-v1:0", Price::new(0.16, 0.16)),
            ("us.meta.llama3-3-70b-instruct-v1:0", Price::new(0.72, 0.72)),
            ("meta.llama3-70b-instruct-v1:0", Price::new(2.65, 3.50)),
            (
                "us.meta.llama4-scout-17b-instruct-v1:0",
                Price::new(0.17, 0.66),
            ),
            (
                "us.meta.llama4-maverick-17b-instruct-v1:0",
                Price::new(0.24, 0.97),
            ),
            ("mistral.mistral-large-2402-v1:0", Price::new(4.0, 12.0)),
            ("mistral.mistral-7b-instruct-v0:2", Price::new(0.15, 0.20)),
            ("mistral.mixtral-8x7b-instruct-v0:1", Price::new(0.45, 0.70)),
            ("us.mistral.pixtral-large-2502-v1:0", Price::new(2.0, 6.0)),
            (
                "mistral.mistral-large-3-675b-instruct",
                Price::new(0.50, 1.50),
            ),
            ("cohere.command-r-plus-v1:0", Price::new(3.0, 15.0)),
            ("cohere.command-r-v1:0", Price::new(0.50, 1.50)),
            ("us.deepseek.r1-v1:0", Price::new(1.35, 5.40)),
            // Embeddings.
            ("amazon.titan-embed-text-v2:0", Price::new(0.02, 0.0)),
            ("amazon.titan-embed-text-v1", Price::new(0.10, 0.0)),
            ("cohere.embed-english-v3", Price::new(0.10, 0.0)),
            ("cohere.embed-multilingual-v3", Price::new(0.10, 0.0)),
        ];
        for (id, price) in cases {
            assert_eq!(builtin_price("bedrock", id), Some(price), "{id}");
        }
        // A row covers its own ids only: Nova 2 Lite is not Nova Lite, Llama 3 is not 3.1, and
        // Mistral Large 2 (24.07), which has no row, does not borrow 24.02's price.
        assert_ne!(
            builtin_price("bedrock", "amazon.nova-2-lite-v1:0"),
            builtin_price("bedrock", "amazon.nova-lite-v1:0")
        );
        assert_eq!(
            builtin_price("bedrock", "mistral.mistral-large-2407-v1:0"),
            None
        );
        assert_eq!(builtin_price("bedrock", "us.amazon.nova-canvas-v1:0"), None);
        // An application inference profile does not name its model.
        assert_eq!(
            builtin_price(
                "bedrock",
                "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3d4e5f6"
            ),
            None
        );
        // Bedrock ids mean nothing to other kinds, and geographies nothing outside Bedrock.
        assert_eq!(builtin_price("openai", "amazon.nova-pro-v1:0"), None);
        assert_eq!(canonical_model("openai", "us.gpt-4o"), "us.gpt-4o");
    }

    #[test]
    fn vertex_names_gemini_and_claude_models_by_their_own_names() {
        let sonnet_4_5 = listed("anthropic", "claude-sonnet-4-5");
        assert!(sonnet_4_5.is_some());
        assert_eq!(
            builtin_price("vertex", "claude-sonnet-4-5@20250929"),
            sonnet_4_5
        );
        assert_eq!(
            builtin_price("vertex", "claude-3-5-sonnet-v2@20241022"),
            listed("anthropic", "claude-3-5-sonnet")
        );
        assert_eq!(
            builtin_price("vertex", "claude-haiku-4-5@20251001"),
            listed("anthropic", "claude-haiku-4-5")
        );
        assert_eq!(
            builtin_price("vertex", "claude-opus-4-1@20250805").map(|p| p.input),
            Some(15.0)
        );
        assert_eq!(
            builtin_price(
                "vertex",
                "projects/p/locations/global/publishers/anthropic/models/claude-opus-4-5@20251101"
            )
            .map(|p| p.input),
            Some(5.0)
        );
        let pro = Some(Price::new(1.25, 10.0).with_cached_input(0.125));
        assert_eq!(builtin_price("vertex", "gemini-2.5-pro"), pro);
        assert_eq!(
            builtin_price("vertex", "publishers/google/models/gemini-2.5-pro"),
            pro
        );
        assert_eq!(
            builtin_price("vertex", "google/gemini-2.5-flash"),
            Some(Price::new(0.30, 2.50).with_cached_input(0.03))
        );
        assert_eq!(
            builtin_price("vertex", "gemini-embedding-001"),
            Some(Price::new(0.15, 0.0))
        );
        // Vertex does not serve OpenAI's models.
        assert_eq!(builtin_price("vertex", "gpt-4o"), None);
    }

    #[test]
    fn gemini_api_names_and_current_rows() {
        let cases = [
            (
                "gemini-2.5-pro",
                Price::new(1.25, 10.0).with_cached_input(0.125),
            ),
            (
                "models/gemini-2.5-pro",
                Price::new(1.25, 10.0).with_cached_input(0.125),
            ),
            (
                "gemini-2.5-flash",
                Price::new(0.30, 2.50).with_cached_input(0.03),
            ),
            (
                "gemini-2.5-flash-lite",
                Price::new(0.10, 0.40).with_cached_input(0.01),
            ),
            (
                "gemini-2.5-flash-lite-preview-06-17",
                Price::new(0.10, 0.40).with_cached_input(0.01),
            ),
            (
                "gemini-3-pro-preview",
                Price::new(2.0, 12.0).with_cached_input(0.20),
            ),
            (
                "gemini-3.1-pro-preview",
                Price::new(2.0, 12.0).with_cached_input(0.20),
            ),
            (
                "gemini-3.1-pro-preview-customtools",
                Price::new(2.0, 12.0).with_cached_input(0.20),
            ),
            (
                "gemini-3-flash-preview",
                Price::new(0.50, 3.0).with_cached_input(0.05),
            ),
            ("models/gemini-embedding-001", Price::new(0.15, 0.0)),
        ];
        for (model, price) in cases {
            assert_eq!(builtin_price("gemini", model), Some(price), "{model}");
        }
        // Retired, and billed per character on Vertex AI: no per-token price.
        assert_eq!(builtin_price("gemini", "text-embedding-004"), None);
        assert_eq!(builtin_price("vertex", "text-embedding-004"), None);
    }

    #[test]
    fn azure_deployments_are_priced_as_openai_models() {
        for model in [
            "gpt-4o",
            "gpt-4o-2024-11-20",
            "gpt-4o-mini",
            "gpt-4.1",
            "o4-mini",
            "gpt-5-mini",
            "text-embedding-3-large",
        ] {
            let price = builtin_price("azure", model);
            assert!(price.is_some(), "{model}");
            assert_eq!(price, listed("openai", model), "{model}");
        }
        // Azure spells GPT-3.5 without the dot.
        assert_eq!(
            builtin_price("azure", "gpt-35-turbo"),
            listed("openai", "gpt-3.5-turbo")
        );
        assert_eq!(
            builtin_price("azure", "gpt-35-turbo-0125"),
            Some(Price::new(0.50, 1.50))
        );
        assert_eq!(builtin_price("azure", "claude-sonnet-4-5"), None);
    }

    #[test]
    fn kinds_without_naming_rules_read_their_own_list_unchanged() {
        assert_eq!(
            builtin_price("openai", "gpt-4o"),
            listed("openai", "gpt-4o")
        );
        assert_eq!(
            builtin_price("together", "meta-llama/Llama-3.3-70B-Instruct-Turbo"),
            listed("together", "meta-llama/llama-3.3-70b-instruct-turbo")
        );
        assert!(builtin_price("together", "meta-llama/Llama-3.3-70B-Instruct-Turbo").is_some());
        assert_eq!(builtin_price("vllm", "anything"), None);
        assert_eq!(builtin_price("no-such-kind", "gpt-4o"), None);
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
