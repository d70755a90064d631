//! The built-in price table: list prices in US dollars per million tokens, by vendor and model
//! family, as the providers published them in late 2025; the Bedrock list and the Gemini rows
//! were read in December 2026 (each list names its vendor's pricing page).
//!
//! This is data, not logic: one row per model family, keyed by the lowercase model name
//! without a date suffix. Dated snapshots and `-latest` aliases find their family by the
//! longest-prefix rule in [`crate::names`], so a variant priced differently from its family
//! (`gpt-4o-mini` vs `gpt-4o`, `claude-opus-4-5` vs `claude-opus-4`) needs a row of its own.
//! Tiered prices (long-context surcharges such as Gemini's above 200k prompt tokens, batch
//! discounts, per-request search fees), per-modality rates (audio input) and regional
//! surcharges are not modelled: for recent models (Claude 4.5 and later, Nova 2), Bedrock's
//! geographic and in-Region endpoints and Vertex AI's regional endpoints cost about 10% more
//! than the global prices listed here, as do Azure's Data Zone and regional deployments.
//! Operators who need them configure `prices:` overrides, which may name a Bedrock geography
//! (`bedrock/us.anthropic.claude-sonnet-4-5`).
//!
//! Which lists a provider kind reads is [`KIND_PRICE_LISTS`]: Azure OpenAI serves OpenAI's
//! models at OpenAI's prices, Vertex AI serves Gemini and Claude at Google's and Anthropic's,
//! and Bedrock serves Claude at Anthropic's prices and everything else at its own (the
//! `bedrock` list).
//!
//! Anthropic's cache writes (5-minute TTL) cost 1.25× input and cache reads 0.1× input; a unit
//! test checks every Anthropic row against that rule.

use crate::price::Price;

/// One model family's price.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelPrice {
    /// The lowercase model name (family) the price applies to.
    pub model: &'static str,
    /// Its price.
    pub price: Price,
}

/// One vendor's price list.
#[derive(Debug, Clone, Copy)]
pub struct VendorPrices {
    /// The vendor's id: a provider kind id (`openai`, `anthropic`, …) or `gemini`.
    pub vendor: &'static str,
    /// Its models.
    pub models: &'static [ModelPrice],
}

const fn m(model: &'static str, price: Price) -> ModelPrice {
    ModelPrice { model, price }
}

const fn p(input: f64, output: f64) -> Price {
    Price::new(input, output)
}

const OPENAI: &[ModelPrice] = &[
    m("gpt-5", p(1.25, 10.0).with_cached_input(0.125)),
    m("gpt-5-mini", p(0.25, 2.0).with_cached_input(0.025)),
    m("gpt-5-nano", p(0.05, 0.40).with_cached_input(0.005)),
    m("gpt-5-pro", p(15.0, 120.0)),
    m("gpt-5-codex", p(1.25, 10.0).with_cached_input(0.125)),
    m("gpt-5.1", p(1.25, 10.0).with_cached_input(0.125)),
    m("gpt-5.1-codex", p(1.25, 10.0).with_cached_input(0.125)),
    m("gpt-5.1-codex-mini", p(0.25, 2.0).with_cached_input(0.025)),
    m("gpt-4.1", p(2.0, 8.0).with_cached_input(0.50)),
    m("gpt-4.1-mini", p(0.40, 1.60).with_cached_input(0.10)),
    m("gpt-4.1-nano", p(0.10, 0.40).with_cached_input(0.025)),
    m("gpt-4o", p(2.50, 10.0).with_cached_input(1.25)),
    // The first gpt-4o snapshot kept its launch price.
    m("gpt-4o-2024-05-13", p(5.0, 15.0)),
    m("gpt-4o-mini", p(0.15, 0.60).with_cached_input(0.075)),
    m("chatgpt-4o-latest", p(5.0, 15.0)),
    m("gpt-4-turbo", p(10.0, 30.0)),
    m("gpt-4", p(30.0, 60.0)),
    m("gpt-3.5-turbo", p(0.50, 1.50)),
    m("o1", p(15.0, 60.0).with_cached_input(7.50)),
    m("o1-mini", p(1.10, 4.40).with_cached_input(0.55)),
    m("o1-pro", p(150.0, 600.0)),
    m("o3", p(2.0, 8.0).with_cached_input(0.50)),
    m("o3-mini", p(1.10, 4.40).with_cached_input(0.55)),
    m("o3-pro", p(20.0, 80.0)),
    m("o3-deep-research", p(10.0, 40.0).with_cached_input(2.50)),
    m("o4-mini", p(1.10, 4.40).with_cached_input(0.275)),
    m("o4-mini-deep-research", p(2.0, 8.0).with_cached_input(0.50)),
    m("codex-mini-latest", p(1.50, 6.0).with_cached_input(0.375)),
    m("text-embedding-3-small", p(0.02, 0.0)),
    m("text-embedding-3-large", p(0.13, 0.0)),
    m("text-embedding-ada-002", p(0.10, 0.0)),
];

const ANTHROPIC: &[ModelPrice] = &[
    m(
        "claude-opus-4-5",
        p(5.0, 25.0).with_cache_write(6.25).with_cached_input(0.50),
    ),
    m(
        "claude-opus-4-1",
        p(15.0, 75.0)
            .with_cache_write(18.75)
            .with_cached_input(1.50),
    ),
    m(
        "claude-opus-4",
        p(15.0, 75.0)
            .with_cache_write(18.75)
            .with_cached_input(1.50),
    ),
    m(
        "claude-sonnet-4-5",
        p(3.0, 15.0).with_cache_write(3.75).with_cached_input(0.30),
    ),
    m(
        "claude-sonnet-4",
        p(3.0, 15.0).with_cache_write(3.75).with_cached_input(0.30),
    ),
    m(
        "claude-haiku-4-5",
        p(1.0, 5.0).with_cache_write(1.25).with_cached_input(0.10),
    ),
    m(
        "claude-3-7-sonnet",
        p(3.0, 15.0).with_cache_write(3.75).with_cached_input(0.30),
    ),
    m(
        "claude-3-5-sonnet",
        p(3.0, 15.0).with_cache_write(3.75).with_cached_input(0.30),
    ),
    m(
        "claude-3-5-haiku",
        p(0.80, 4.0).with_cache_write(1.0).with_cached_input(0.08),
    ),
    m(
        "claude-3-opus",
        p(15.0, 75.0)
            .with_cache_write(18.75)
            .with_cached_input(1.50),
    ),
    m(
        "claude-3-haiku",
        p(0.25, 1.25)
            .with_cache_write(0.3125)
            .with_cached_input(0.025),
    ),
];

const GROQ: &[ModelPrice] = &[
    m("llama-3.1-8b-instant", p(0.05, 0.08)),
    m("llama-3.3-70b-versatile", p(0.59, 0.79)),
    m("meta-llama/llama-4-scout-17b-16e-instruct", p(0.11, 0.34)),
    m(
        "meta-llama/llama-4-maverick-17b-128e-instruct",
        p(0.20, 0.60),
    ),
    m("openai/gpt-oss-120b", p(0.15, 0.75)),
    m("openai/gpt-oss-20b", p(0.10, 0.50)),
    m("qwen/qwen3-32b", p(0.29, 0.59)),
    m("moonshotai/kimi-k2-instruct", p(1.0, 3.0)),
    m("deepseek-r1-distill-llama-70b", p(0.75, 0.99)),
    m("gemma2-9b-it", p(0.20, 0.20)),
];

const MISTRAL: &[ModelPrice] = &[
    m("mistral-large", p(2.0, 6.0)),
    m("mistral-medium", p(0.40, 2.0)),
    m("mistral-small", p(0.10, 0.30)),
    m("magistral-medium", p(2.0, 5.0)),
    m("magistral-small", p(0.50, 1.50)),
    m("codestral", p(0.30, 0.90)),
    m("devstral-medium", p(0.40, 2.0)),
    m("devstral-small", p(0.10, 0.30)),
    m("ministral-8b", p(0.10, 0.10)),
    m("ministral-3b", p(0.04, 0.04)),
    m("pixtral-large", p(2.0, 6.0)),
    m("pixtral-12b", p(0.15, 0.15)),
    m("open-mistral-nemo", p(0.15, 0.15)),
    m("mistral-embed", p(0.10, 0.0)),
];

const DEEPSEEK: &[ModelPrice] = &[
    m("deepseek-chat", p(0.28, 0.42).with_cached_input(0.028)),
    m("deepseek-reasoner", p(0.28, 0.42).with_cached_input(0.028)),
];

const XAI: &[ModelPrice] = &[
    m("grok-4", p(3.0, 15.0).with_cached_input(0.75)),
    m("grok-4-fast", p(0.20, 0.50).with_cached_input(0.05)),
    m("grok-4-1-fast", p(0.20, 0.50).with_cached_input(0.05)),
    m("grok-code-fast-1", p(0.20, 1.50).with_cached_input(0.02)),
    m("grok-3", p(3.0, 15.0).with_cached_input(0.75)),
    m("grok-3-mini", p(0.30, 0.50).with_cached_input(0.075)),
];

const TOGETHER: &[ModelPrice] = &[
    m("meta-llama/llama-3.3-70b-instruct-turbo", p(0.88, 0.88)),
    m("meta-llama/meta-llama-3.1-8b-instruct-turbo", p(0.18, 0.18)),
    m(
        "meta-llama/meta-llama-3.1-70b-instruct-turbo",
        p(0.88, 0.88),
    ),
    m(
        "meta-llama/meta-llama-3.1-405b-instruct-turbo",
        p(3.50, 3.50),
    ),
    m(
        "meta-llama/llama-4-maverick-17b-128e-instruct-fp8",
        p(0.27, 0.85),
    ),
    m("meta-llama/llama-4-scout-17b-16e-instruct", p(0.18, 0.59)),
    m("deepseek-ai/deepseek-v3", p(1.25, 1.25)),
    m("deepseek-ai/deepseek-r1", p(3.0, 7.0)),
    m("qwen/qwen2.5-72b-instruct-turbo", p(1.20, 1.20)),
    m("qwen/qwen3-235b-a22b-instruct-2507-tput", p(0.20, 0.60)),
    m("moonshotai/kimi-k2-instruct", p(1.0, 3.0)),
    m("openai/gpt-oss-120b", p(0.15, 0.60)),
    m("openai/gpt-oss-20b", p(0.05, 0.20)),
];

const FIREWORKS: &[ModelPrice] = &[
    m(
        "accounts/fireworks/models/llama-v3p1-8b-instruct",
        p(0.20, 0.20),
    ),
    m(
        "accounts/fireworks/models/llama-v3p1-70b-instruct",
        p(0.90, 0.90),
    ),
    m(
        "accounts/fireworks/models/llama-v3p3-70b-instruct",
        p(0.90, 0.90),
    ),
    m(
        "accounts/fireworks/models/llama-v3p1-405b-instruct",
        p(3.0, 3.0),
    ),
    m("accounts/fireworks/models/deepseek-v3", p(0.90, 0.90)),
    m("accounts/fireworks/models/deepseek-r1", p(3.0, 8.0)),
    m("accounts/fireworks/models/qwen3-235b-a22b", p(0.22, 0.88)),
    m("accounts/fireworks/models/kimi-k2-instruct", p(0.60, 2.50)),
    m("accounts/fireworks/models/gpt-oss-120b", p(0.15, 0.60)),
    m("accounts/fireworks/models/gpt-oss-20b", p(0.07, 0.30)),
];

const CEREBRAS: &[ModelPrice] = &[
    m("llama3.1-8b", p(0.10, 0.10)),
    m("llama-3.3-70b", p(0.85, 1.20)),
    m("llama-4-scout-17b-16e-instruct", p(0.65, 0.85)),
    m("qwen-3-32b", p(0.40, 0.80)),
    m("qwen-3-235b-a22b-instruct-2507", p(0.60, 1.20)),
    m("gpt-oss-120b", p(0.25, 0.69)),
];

const PERPLEXITY: &[ModelPrice] = &[
    m("sonar", p(1.0, 1.0)),
    m("sonar-pro", p(3.0, 15.0)),
    m("sonar-reasoning", p(1.0, 5.0)),
    m("sonar-reasoning-pro", p(2.0, 8.0)),
    m("sonar-deep-research", p(2.0, 8.0).with_reasoning(3.0)),
];

/// Gemini models, at the Gemini Developer API's paid-tier Standard prices for text, image and
/// video input (ai.google.dev/gemini-api/docs/pricing, read in December 2026 through
/// independent transcriptions that agree); Vertex AI lists the same global prices. Rates are
/// those for prompts up to 200k tokens: 2.5 Pro and 3.x Pro cost more above that (input 2×,
/// output 1.5×), which is not modelled. `text-embedding-004` has no row: the Gemini API retired
/// it in January 2026 and Vertex AI bills it per character.
const GEMINI: &[ModelPrice] = &[
    m(
        "gemini-3.1-pro-preview",
        p(2.0, 12.0).with_cached_input(0.20),
    ),
    // Shut down in March 2026; the name now serves 3.1 Pro, at the same price.
    m("gemini-3-pro-preview", p(2.0, 12.0).with_cached_input(0.20)),
    m(
        "gemini-3-flash-preview",
        p(0.50, 3.0).with_cached_input(0.05),
    ),
    m("gemini-2.5-pro", p(1.25, 10.0).with_cached_input(0.125)),
    m("gemini-2.5-flash", p(0.30, 2.50).with_cached_input(0.03)),
    // The first 2.5 Flash preview billed thinking separately from plain output.
    m(
        "gemini-2.5-flash-preview-04-17",
        p(0.15, 0.60).with_reasoning(3.50),
    ),
    m(
        "gemini-2.5-flash-lite",
        p(0.10, 0.40).with_cached_input(0.01),
    ),
    // Image output is billed as output tokens, at $30 per million.
    m("gemini-2.5-flash-image", p(0.30, 30.0)),
    m("gemini-2.0-flash", p(0.10, 0.40).with_cached_input(0.025)),
    m("gemini-2.0-flash-lite", p(0.075, 0.30)),
    m("gemini-embedding-001", p(0.15, 0.0)),
];

/// Models Amazon Bedrock serves under its own ids (`amazon.`, `meta.`, `mistral.`, `cohere.`,
/// `deepseek.` …), keyed by the id without its version suffix (`amazon.nova-pro-v1:0` →
/// `amazon.nova-pro`) unless the version is part of the model (`amazon.titan-embed-text-v2`).
/// On-demand Standard-tier prices in US East (aws.amazon.com/bedrock/pricing, read in December
/// 2026 through independent transcriptions that agree). Claude on Bedrock is priced from
/// Anthropic's list (see [`crate::names`]). Models whose published figures disagree between
/// sources (Mistral Large 2 (24.07), Llama 3.1 405B) are left unpriced rather than guessed.
const BEDROCK: &[ModelPrice] = &[
    // Nova cache reads cost a quarter of input.
    m(
        "amazon.nova-micro",
        p(0.035, 0.14).with_cached_input(0.00875),
    ),
    m("amazon.nova-lite", p(0.06, 0.24).with_cached_input(0.015)),
    m("amazon.nova-pro", p(0.80, 3.20).with_cached_input(0.20)),
    m(
        "amazon.nova-premier",
        p(2.50, 12.50).with_cached_input(0.625),
    ),
    m("amazon.nova-2-lite", p(0.30, 2.50).with_cached_input(0.075)),
    m("amazon.titan-text-express", p(0.20, 0.60)),
    m("amazon.titan-text-lite", p(0.15, 0.20)),
    m("amazon.titan-embed-text-v1", p(0.10, 0.0)),
    m("amazon.titan-embed-text-v2", p(0.02, 0.0)),
    m("meta.llama3-8b-instruct", p(0.30, 0.60)),
    m("meta.llama3-70b-instruct", p(2.65, 3.50)),
    m("meta.llama3-1-8b-instruct", p(0.22, 0.22)),
    m("meta.llama3-1-70b-instruct", p(0.72, 0.72)),
    m("meta.llama3-2-1b-instruct", p(0.10, 0.10)),
    m("meta.llama3-2-3b-instruct", p(0.15, 0.15)),
    m("meta.llama3-2-11b-instruct", p(0.16, 0.16)),
    m("meta.llama3-2-90b-instruct", p(0.72, 0.72)),
    m("meta.llama3-3-70b-instruct", p(0.72, 0.72)),
    m("meta.llama4-scout-17b-instruct", p(0.17, 0.66)),
    m("meta.llama4-maverick-17b-instruct", p(0.24, 0.97)),
    m("mistral.mistral-7b-instruct", p(0.15, 0.20)),
    m("mistral.mixtral-8x7b-instruct", p(0.45, 0.70)),
    m("mistral.mistral-small-2402", p(1.0, 3.0)),
    m("mistral.mistral-large-2402", p(4.0, 12.0)),
    m("mistral.pixtral-large-2502", p(2.0, 6.0)),
    m("mistral.mistral-large-3-675b-instruct", p(0.50, 1.50)),
    m("mistral.magistral-small-2509", p(0.50, 1.50)),
    m("mistral.ministral-3-3b-instruct", p(0.10, 0.10)),
    m("mistral.ministral-3-8b-instruct", p(0.15, 0.15)),
    m("mistral.ministral-3-14b-instruct", p(0.20, 0.20)),
    m("mistral.devstral-2-123b", p(0.40, 2.0)),
    m("cohere.command-r", p(0.50, 1.50)),
    m("cohere.command-r-plus", p(3.0, 15.0)),
    m("cohere.embed-english-v3", p(0.10, 0.0)),
    m("cohere.embed-multilingual-v3", p(0.10, 0.0)),
    m("deepseek.r1", p(1.35, 5.40)),
];

/// Every vendor's built-in price list.
pub const BUILTIN: &[VendorPrices] = &[
    VendorPrices {
        vendor: "openai",
        models: OPENAI,
    },
    VendorPrices {
        vendor: "anthropic",
        models: ANTHROPIC,
    },
    VendorPrices {
        vendor: "groq",
        models: GROQ,
    },
    VendorPrices {
        vendor: "mistral",
        models: MISTRAL,
    },
    VendorPrices {
        vendor: "deepseek",
        models: DEEPSEEK,
    },
    VendorPrices {
        vendor: "xai",
        models: XAI,
    },
    VendorPrices {
        vendor: "together",
        models: TOGETHER,
    },
    VendorPrices {
        vendor: "fireworks",
        models: FIREWORKS,
    },
    VendorPrices {
        vendor: "cerebras",
        models: CEREBRAS,
    },
    VendorPrices {
        vendor: "perplexity",
        models: PERPLEXITY,
    },
    VendorPrices {
        vendor: "gemini",
        models: GEMINI,
    },
    VendorPrices {
        vendor: "bedrock",
        models: BEDROCK,
    },
];

/// The price lists of provider kinds that serve other vendors' models, by kind id: Azure
/// OpenAI serves OpenAI's models, Vertex AI Gemini and Claude, Bedrock Claude (named
/// `anthropic.…`) and the models of its own list. Every other kind reads the list named by its
/// kind id, if there is one (see [`vendors_for_kind`]).
pub const KIND_PRICE_LISTS: &[(&str, &[&str])] = &[
    ("azure", &["openai"]),
    ("vertex", &["gemini", "anthropic"]),
    ("bedrock", &["bedrock", "anthropic"]),
];

/// The built-in price lists a provider kind reads, by the kind's id (`ProviderKind::id`): its
/// entry in [`KIND_PRICE_LISTS`], otherwise the list named by the id (`openai`, `gemini`, …),
/// otherwise none (`vllm`, `custom`). New kinds need no code here to be priced: a kind whose id
/// names a list, or that has an entry in [`KIND_PRICE_LISTS`], is.
pub fn vendors_for_kind(kind_id: &str) -> &'static [&'static str] {
    if let Some((_, lists)) = KIND_PRICE_LISTS.iter().find(|(k, _)| *k == kind_id) {
        return lists;
    }
    BUILTIN
        .iter()
        .find(|v| v.vendor == kind_id)
        .map_or(&[], |v| std::slice::from_ref(&v.vendor))
}

/// The built-in price list of `vendor`, if there is one.
pub fn vendor_prices(vendor: &str) -> Option<&'static [ModelPrice]> {
    BUILTIN
        .iter()
        .find(|v| v.vendor == vendor)
        .map(|v| v.models)
}

/// Vendor prefixes in aggregator model names (`anthropic/claude-sonnet-4.5` at OpenRouter,
/// `google-ai-studio/gemini-2.5-pro` at Cloudflare's unified endpoint) and the vendor whose
/// price list they refer to.
pub const VENDOR_PREFIXES: &[(&str, &str)] = &[
    ("openai", "openai"),
    ("anthropic", "anthropic"),
    ("google", "gemini"),
    ("google-ai-studio", "gemini"),
    ("gemini", "gemini"),
    ("deepseek", "deepseek"),
    ("x-ai", "xai"),
    ("xai", "xai"),
    ("grok", "xai"),
    ("mistralai", "mistral"),
    ("mistral", "mistral"),
    ("perplexity", "perplexity"),
    ("perplexity-ai", "perplexity"),
    ("groq", "groq"),
    ("cerebras", "cerebras"),
];

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn rows_are_lowercase_unique_finite_and_non_negative() {
        for vendor in BUILTIN {
            let mut seen = HashSet::new();
            for row in vendor.models {
                assert_eq!(row.model, row.model.to_ascii_lowercase(), "{}", row.model);
                assert!(seen.insert(row.model), "{} listed twice", row.model);
                for (field, rate) in row.price.rates() {
                    if let Some(rate) = rate {
                        assert!(
                            rate.is_finite() && rate >= 0.0,
                            "{}/{} {field}",
                            vendor.vendor,
                            row.model
                        );
                    }
                }
            }
        }
        let vendors: HashSet<_> = BUILTIN.iter().map(|v| v.vendor).collect();
        assert_eq!(vendors.len(), BUILTIN.len());
    }

    #[test]
    fn anthropic_cache_rates_follow_the_published_multipliers() {
        for row in ANTHROPIC {
            let p = row.price;
            let write = p.cache_write.unwrap_or(f64::NAN);
            let read = p.cached_input.unwrap_or(f64::NAN);
            assert!((write - 1.25 * p.input).abs() < 1e-9, "{}", row.model);
            assert!((read - 0.1 * p.input).abs() < 1e-9, "{}", row.model);
        }
    }

    #[test]
    fn kinds_map_to_existing_price_lists() {
        for (kind, lists) in KIND_PRICE_LISTS {
            for list in *lists {
                assert!(vendor_prices(list).is_some(), "{kind} → {list}");
            }
        }
        assert_eq!(vendors_for_kind("azure"), ["openai"]);
        assert_eq!(vendors_for_kind("vertex"), ["gemini", "anthropic"]);
        assert_eq!(vendors_for_kind("bedrock"), ["bedrock", "anthropic"]);
        assert_eq!(vendors_for_kind("gemini"), ["gemini"]);
        assert_eq!(vendors_for_kind("openai"), ["openai"]);
        assert!(vendors_for_kind("vllm").is_empty());
        assert!(vendors_for_kind("no-such-kind").is_empty());
    }

    #[test]
    fn bedrock_rows_are_bedrock_ids_without_a_version_or_geography() {
        for row in BEDROCK {
            let (provider, model) = row.model.split_once('.').unwrap_or(("", ""));
            assert!(
                ["amazon", "meta", "mistral", "cohere", "deepseek"].contains(&provider),
                "{}",
                row.model
            );
            assert!(
                !model.is_empty() && !row.model.contains(':'),
                "{}",
                row.model
            );
        }
        // Nova cache reads cost a quarter of input.
        for row in BEDROCK
            .iter()
            .filter(|r| r.model.starts_with("amazon.nova"))
        {
            let read = row.price.cached_input.unwrap_or(f64::NAN);
            assert!(
                (read - 0.25 * row.price.input).abs() < 1e-9,
                "{}",
                row.model
            );
        }
    }

    #[test]
    fn vendor_prefixes_name_existing_price_lists() {
        for (prefix, vendor) in VENDOR_PREFIXES {
            assert!(vendor_prices(vendor).is_some(), "{prefix} → {vendor}");
        }
        assert!(vendor_prices("vllm").is_none());
    }
}
