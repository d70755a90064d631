//! [`PriceBook`]: the price of a (provider, model) pair, resolved once and remembered.
//!
//! Resolution, in lowercase model names:
//! 1. the most specific matching row among the configured overrides for the provider's name,
//!    the overrides for its kind id and the built-in lists its kind reads (longest row name
//!    wins; on a tie an override beats the built-in list, and a provider-name override beats a
//!    kind override). Overrides match the model name as sent and, where the kind renames it,
//!    its canonical form ([`crate::names::canonical_model`]: `bedrock/amazon.nova-pro` prices
//!    `eu.amazon.nova-pro-v1:0`, while `bedrock/us.anthropic.claude-sonnet-4-5` prices only the
//!    US profile); built-in lists match by the kind's naming rules ([`crate::names`]);
//! 2. otherwise, self-hosted kinds (`vllm`, `ollama`) are free;
//! 3. otherwise, aggregators (`openrouter`, `cloudflare`) resolve `vendor/model` through the
//!    vendor prefix, `:free` OpenRouter variants are free, and Cloudflare's bare well-known
//!    names (`gpt-4o`) through the vendor whose names they are;
//! 4. otherwise the price is unknown (`None`), which is not the same as free.
//!
//! The hot path reads a memo under a read lock with two borrowed-string lookups: no parsing
//! and no allocation once a pair has been seen. The memo is bounded; past its capacity, new
//! pairs are resolved on every call rather than remembered (correct, only slower), so callers
//! naming endless distinct models cannot grow memory without bound.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{PoisonError, RwLock};

use portcullis_core::Usage;
use portcullis_providers::ProviderKind;

use crate::names::{
    Match, canonical_model, kind_match, through_vendor_prefix, through_well_known_name,
};
use crate::overrides::PriceOverrides;
use crate::price::Price;

/// How many (provider, model) pairs the memo holds at most.
pub const MEMO_CAPACITY: usize = 4096;

type Memo = HashMap<Box<str>, HashMap<Box<str>, Option<Price>>>;

/// Prices for every provider and model, with configured overrides.
///
/// A provider name must always be looked up with the same kind (as it is in one registry).
#[derive(Debug, Default)]
pub struct PriceBook {
    overrides: PriceOverrides,
    memo: RwLock<Memo>,
    memo_len: AtomicUsize,
}

impl PriceBook {
    /// The price of `target`'s model, or the caller's own prices (`custom`) applied to it.
    pub fn target_price(
        &self,
        target: &portcullis_providers::Target,
        custom: Option<&crate::custom::CustomCost>,
    ) -> Option<Price> {
        let model_price = self.price(
            target.provider.name(),
            target.provider.kind(),
            &target.model,
        );
        match custom {
            Some(custom) => Some(custom.apply_to(model_price)),
            None => model_price,
        }
    }

    /// The built-in prices with `overrides` applied.
    pub fn new(overrides: PriceOverrides) -> Self {
        Self {
            overrides,
            memo: RwLock::new(HashMap::new()),
            memo_len: AtomicUsize::new(0),
        }
    }

    /// The built-in prices alone.
    pub fn builtin() -> Self {
        Self::new(PriceOverrides::none())
    }

    /// The price of `model` at the provider named `provider` of kind `kind`; `None` when
    /// unknown. Resolved once per pair, then read from the memo.
    pub fn price(&self, provider: &str, kind: ProviderKind, model: &str) -> Option<Price> {
        {
            let memo = self.memo.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(found) = memo.get(provider).and_then(|models| models.get(model)) {
                return *found;
            }
        }
        let price = self.resolve(provider, kind, model);
        if self.memo_len.load(Ordering::Relaxed) < MEMO_CAPACITY {
            let mut memo = self.memo.write().unwrap_or_else(PoisonError::into_inner);
            // Re-checked under the lock: concurrent misses must not overshoot the capacity.
            if self.memo_len.load(Ordering::Relaxed) < MEMO_CAPACITY {
                let models = memo.entry(Box::from(provider)).or_default();
                if models.insert(Box::from(model), price).is_none() {
                    self.memo_len.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        price
    }

    /// What `usage` of `model` at `provider` costs, in US dollars; `None` when the price is
    /// unknown.
    pub fn cost(
        &self,
        provider: &str,
        kind: ProviderKind,
        model: &str,
        usage: &Usage,
    ) -> Option<f64> {
        self.price(provider, kind, model).map(|p| p.cost(usage))
    }

    /// Resolves a price without the memo (see the module documentation for the rules).
    pub fn resolve(&self, provider: &str, kind: ProviderKind, model: &str) -> Option<Price> {
        let model = model.trim().to_ascii_lowercase();
        if let Some(found) = self.listed(provider, kind.id(), &model) {
            return Some(found);
        }
        match kind {
            ProviderKind::Vllm | ProviderKind::Ollama => Some(Price::FREE),
            ProviderKind::OpenRouter if model.ends_with(":free") => Some(Price::FREE),
            ProviderKind::OpenRouter => through_vendor_prefix(&model),
            ProviderKind::Cloudflare => {
                through_vendor_prefix(&model).or_else(|| through_well_known_name(&model))
            }
            _ => None,
        }
    }

    /// Step 1 of the resolution: the most specific override or built-in row for `model`
    /// (lowercase) at `provider`, of the kind whose id is `kind_id`.
    fn listed(&self, provider: &str, kind_id: &str, model: &str) -> Option<Price> {
        let canonical = canonical_model(kind_id, model);
        let renamed = (canonical != model).then_some(canonical.as_ref());
        // In order of precedence on a tie.
        let candidates = [
            self.overrides.find(provider, model),
            renamed.and_then(|c| self.overrides.find(provider, c)),
            self.overrides.find(kind_id, model),
            renamed.and_then(|c| self.overrides.find(kind_id, c)),
            kind_match(kind_id, model),
        ];
        let mut best: Option<Match> = None;
        for candidate in candidates.into_iter().flatten() {
            if best.is_none_or(|b| candidate.specificity > b.specificity) {
                best = Some(candidate);
            }
        }
        best.map(|found| found.price)
    }

    /// How many pairs the memo holds.
    pub fn memoized(&self) -> usize {
        self.memo_len.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::overrides::RawPrices;

    fn builtin(kind: ProviderKind, model: &str) -> Option<Price> {
        PriceBook::builtin().price(kind.id(), kind, model)
    }

    #[test]
    fn current_models_of_every_vendor_are_priced() {
        use ProviderKind::*;
        let known = [
            (OpenAi, "gpt-4o"),
            (OpenAi, "gpt-4o-mini"),
            (OpenAi, "gpt-4.1"),
            (OpenAi, "gpt-4.1-mini"),
            (OpenAi, "gpt-4.1-nano"),
            (OpenAi, "gpt-5"),
            (OpenAi, "gpt-5-mini"),
            (OpenAi, "gpt-5-nano"),
            (OpenAi, "o1"),
            (OpenAi, "o3"),
            (OpenAi, "o3-mini"),
            (OpenAi, "o4-mini"),
            (OpenAi, "text-embedding-3-small"),
            (OpenAi, "text-embedding-3-large"),
            (Anthropic, "claude-opus-4-1"),
            (Anthropic, "claude-opus-4-5"),
            (Anthropic, "claude-sonnet-4-5"),
            (Anthropic, "claude-sonnet-4-0"),
            (Anthropic, "claude-3-7-sonnet-latest"),
            (Anthropic, "claude-3-5-haiku-20241022"),
            (Anthropic, "claude-haiku-4-5"),
            (Groq, "llama-3.1-8b-instant"),
            (Groq, "llama-3.3-70b-versatile"),
            (Mistral, "mistral-large-latest"),
            (Mistral, "mistral-small-2506"),
            (DeepSeek, "deepseek-chat"),
            (DeepSeek, "deepseek-reasoner"),
            (XAi, "grok-4"),
            (XAi, "grok-3-mini"),
            (Together, "meta-llama/Llama-3.3-70B-Instruct-Turbo"),
            (
                Fireworks,
                "accounts/fireworks/models/llama-v3p1-70b-instruct",
            ),
            (Cerebras, "llama3.1-8b"),
            (Perplexity, "sonar-pro"),
        ];
        for (kind, model) in known {
            assert!(builtin(kind, model).is_some(), "{}/{model}", kind.id());
        }
    }

    #[test]
    fn dated_snapshots_resolve_to_their_family() {
        // gpt-4o-mini-2024-07-18 matches both `gpt-4o` and `gpt-4o-mini`; the longer wins.
        assert_eq!(
            builtin(ProviderKind::OpenAi, "gpt-4o-mini-2024-07-18"),
            Some(Price::new(0.15, 0.60).with_cached_input(0.075))
        );
        assert_eq!(
            builtin(ProviderKind::Anthropic, "claude-sonnet-4-5-20250929"),
            Some(
                Price::new(3.0, 15.0)
                    .with_cache_write(3.75)
                    .with_cached_input(0.30)
            )
        );
        // claude-opus-4-5 is cheaper than its family `claude-opus-4`; its own row wins.
        assert_eq!(
            builtin(ProviderKind::Anthropic, "claude-opus-4-5-20251101").map(|p| p.input),
            Some(5.0)
        );
        assert_eq!(
            builtin(ProviderKind::Anthropic, "claude-opus-4-20250514").map(|p| p.input),
            Some(15.0)
        );
        // A snapshot with its own row beats the family: gpt-4o-2024-05-13 kept $5/$15.
        assert_eq!(
            builtin(ProviderKind::OpenAi, "gpt-4o-2024-05-13"),
            Some(Price::new(5.0, 15.0))
        );
        assert_eq!(
            builtin(ProviderKind::OpenAi, "gpt-4o-2024-08-06").map(|p| p.input),
            Some(2.5)
        );
        // Case does not matter.
        assert_eq!(
            builtin(ProviderKind::OpenAi, "GPT-4o"),
            builtin(ProviderKind::OpenAi, "gpt-4o")
        );
    }

    #[test]
    fn unknown_models_are_unknown_and_self_hosted_models_are_free() {
        assert_eq!(builtin(ProviderKind::OpenAi, "gpt-7-ultra"), None);
        assert_eq!(builtin(ProviderKind::Anthropic, "gpt-4o"), None);
        assert_eq!(builtin(ProviderKind::Custom, "gpt-4o"), None);
        assert_eq!(
            builtin(ProviderKind::Vllm, "meta-llama/Llama-3.1-8B"),
            Some(Price::FREE)
        );
        assert_eq!(
            builtin(ProviderKind::Ollama, "llama3.2:3b"),
            Some(Price::FREE)
        );
    }

    #[test]
    fn aggregators_resolve_through_the_vendor() {
        let sonnet = builtin(ProviderKind::Anthropic, "claude-sonnet-4-5");
        assert!(sonnet.is_some());
        assert_eq!(
            builtin(ProviderKind::OpenRouter, "anthropic/claude-sonnet-4.5"),
            sonnet
        );
        assert_eq!(
            builtin(ProviderKind::OpenRouter, "openai/gpt-4o-mini"),
            builtin(ProviderKind::OpenAi, "gpt-4o-mini")
        );
        assert_eq!(
            builtin(
                ProviderKind::OpenRouter,
                "meta-llama/llama-3.3-70b-instruct:free"
            ),
            Some(Price::FREE)
        );
        assert_eq!(
            builtin(
                ProviderKind::OpenRouter,
                "meta-llama/llama-3.3-70b-instruct"
            ),
            None
        );
        assert_eq!(
            builtin(ProviderKind::Cloudflare, "openai/gpt-4o"),
            builtin(ProviderKind::OpenAi, "gpt-4o")
        );
        assert_eq!(
            builtin(ProviderKind::Cloudflare, "claude-sonnet-4-5"),
            sonnet
        );
        // Hosting providers have their own lists; a vendor prefix does not leak into them.
        assert_eq!(
            builtin(ProviderKind::Together, "mistralai/mistral-small-24b"),
            None
        );
    }

    fn book(yaml: &str, providers: &[&str]) -> PriceBook {
        let raw: RawPrices = serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("{e}"));
        PriceBook::new(
            PriceOverrides::from_raw(&raw, providers.iter().copied())
                .unwrap_or_else(|e| panic!("{e:?}")),
        )
    }

    #[test]
    fn overrides_by_provider_name_and_by_kind() {
        let b = book(
            "openai/gpt-4o: {input: 2, output: 8}\n\
             azure-ish/gpt-4o: {input: 1, output: 4}\n\
             corp/llama-3.1-70b: {input: 0.6, output: 0.6}\n\
             vllm/big-model: {input: 0.1, output: 0.2}\n",
            &["corp", "azure-ish"],
        );
        // A kind override applies to every provider of the kind, snapshots included.
        assert_eq!(
            b.price("openai", ProviderKind::OpenAi, "gpt-4o-2024-11-20"),
            Some(Price::new(2.0, 8.0))
        );
        assert_eq!(
            b.price("openai-eu", ProviderKind::OpenAi, "gpt-4o"),
            Some(Price::new(2.0, 8.0))
        );
        // A provider-name override beats the kind override.
        assert_eq!(
            b.price("azure-ish", ProviderKind::OpenAi, "gpt-4o"),
            Some(Price::new(1.0, 4.0))
        );
        // An override of a family does not swallow a more specific built-in row.
        assert_eq!(
            b.price("openai", ProviderKind::OpenAi, "gpt-4o-mini"),
            builtin(ProviderKind::OpenAi, "gpt-4o-mini")
        );
        assert_eq!(
            b.price("corp", ProviderKind::Custom, "llama-3.1-70b"),
            Some(Price::new(0.6, 0.6))
        );
        assert_eq!(b.price("corp", ProviderKind::Custom, "llama-3.1-8b"), None);
        // Self-hosted models can be given a price (e.g. to account for GPUs).
        assert_eq!(
            b.price("gpu", ProviderKind::Vllm, "big-model"),
            Some(Price::new(0.1, 0.2))
        );
        assert_eq!(
            b.price("gpu", ProviderKind::Vllm, "small"),
            Some(Price::FREE)
        );
    }

    #[test]
    fn overrides_match_bedrock_ids_as_sent_and_without_their_geography() {
        // Kinds are named by id here, as the kinds that read these names will name them.
        let b = book(
            "bedrock/us.anthropic.claude-sonnet-4-5: {input: 3.3, output: 16.5}\n\
             bedrock/amazon.nova-pro: {input: 1, output: 4}\n\
             bedrock/anthropic.claude-sonnet-4: {input: 2, output: 10}\n\
             vertex/gemini-2.5-pro: {input: 1, output: 8}\n",
            &["bedrock", "vertex"],
        );
        let listed = |kind: &str, model: &str| b.listed("corp-llm", kind, model);
        // A geography-specific price applies to that geography only.
        assert_eq!(
            listed("bedrock", "us.anthropic.claude-sonnet-4-5-20250929-v1:0"),
            Some(Price::new(3.3, 16.5))
        );
        assert_eq!(
            listed(
                "bedrock",
                "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
            ),
            crate::names::builtin_price("anthropic", "claude-sonnet-4-5")
        );
        // A price for the model applies to every geography.
        assert_eq!(
            listed("bedrock", "eu.amazon.nova-pro-v1:0"),
            Some(Price::new(1.0, 4.0))
        );
        // An override of a family does not swallow a more specific built-in row.
        assert_eq!(
            listed("bedrock", "anthropic.claude-sonnet-4-20250514-v1:0"),
            Some(Price::new(2.0, 10.0))
        );
        assert_eq!(
            listed("bedrock", "eu.anthropic.claude-sonnet-4-5-20250929-v1:0"),
            crate::names::builtin_price("anthropic", "claude-sonnet-4-5")
        );
        // Without an override, the built-in lists by the kind's naming rules.
        assert_eq!(
            listed("bedrock", "meta.llama3-3-70b-instruct-v1:0"),
            Some(Price::new(0.72, 0.72))
        );
        // Vertex AI's resource paths find overrides written with the model's name.
        assert_eq!(
            listed("vertex", "publishers/google/models/gemini-2.5-pro"),
            Some(Price::new(1.0, 8.0))
        );
        assert_eq!(
            listed("vertex", "claude-sonnet-4-5@20250929"),
            crate::names::builtin_price("anthropic", "claude-sonnet-4-5")
        );
    }

    #[test]
    fn resolutions_are_memoized_and_the_memo_is_bounded() {
        let b = PriceBook::builtin();
        assert_eq!(b.memoized(), 0);
        let first = b.price("openai", ProviderKind::OpenAi, "gpt-4o");
        let again = b.price("openai", ProviderKind::OpenAi, "gpt-4o");
        assert_eq!(first, again);
        assert_eq!(b.price("openai", ProviderKind::OpenAi, "nope"), None);
        assert_eq!(b.price("openai", ProviderKind::OpenAi, "nope"), None);
        assert_eq!(b.memoized(), 2, "one entry per pair, unknown ones included");
        for i in 0..MEMO_CAPACITY + 10 {
            b.price("custom", ProviderKind::Custom, &format!("model-{i}"));
        }
        assert_eq!(b.memoized(), MEMO_CAPACITY);
        // Past capacity, answers stay correct.
        assert_eq!(
            b.price("openai", ProviderKind::OpenAi, "gpt-4.1-nano-2025-04-14"),
            builtin(ProviderKind::OpenAi, "gpt-4.1-nano")
        );
    }

    #[test]
    fn cost_through_the_book() {
        let b = PriceBook::builtin();
        let usage = Usage {
            input_tokens: 2_000,
            output_tokens: 1_000,
            cached_input_tokens: 1_000,
            cache_write_input_tokens: 0,
            reasoning_tokens: 0,
        };
        // gpt-4o-mini: 1,000 × 0.15 + 1,000 × 0.075 + 1,000 × 0.60 = 150 + 75 + 600 = 825 $/M.
        let c = b
            .cost("openai", ProviderKind::OpenAi, "gpt-4o-mini", &usage)
            .unwrap_or(f64::NAN);
        assert!((c - 0.000_825).abs() < 1e-15, "{c}");
        assert_eq!(
            b.cost("openai", ProviderKind::OpenAi, "unknown", &usage),
            None
        );
    }
}
