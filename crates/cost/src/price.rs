//! [`Price`]: what one model charges per million tokens, and [`cost`]: what a request's
//! [`Usage`] costs at that price.
//!
//! Token accounting follows [`Usage`]: `input_tokens` counts every prompt token, including
//! those read from and written to the provider's prompt cache, and `output_tokens` counts every
//! generated token, including reasoning. Each token is therefore charged exactly once, at the
//! most specific rate that applies to it.

use portcullis_core::Usage;
use serde::Serialize;

/// Tokens per price unit: prices are quoted in US dollars per million tokens.
pub const TOKENS_PER_PRICE_UNIT: f64 = 1_000_000.0;

/// A model's list price, in US dollars per million tokens.
///
/// Rates left unset fall back to the rate of the tokens they are a kind of: cached reads and
/// cache writes to `input`, reasoning to `output`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Price {
    /// Prompt tokens that were neither read from nor written to a prompt cache.
    pub input: f64,
    /// Generated tokens that are not reasoning tokens.
    pub output: f64,
    /// Prompt tokens read from the provider's prompt cache.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cached_input: Option<f64>,
    /// Prompt tokens written to the provider's prompt cache.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_write: Option<f64>,
    /// Reasoning tokens, when priced differently from other output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<f64>,
}

impl Price {
    /// The price of self-hosted models: nothing.
    pub const FREE: Price = Price::new(0.0, 0.0);

    /// A price with only input and output rates.
    pub const fn new(input: f64, output: f64) -> Self {
        Self {
            input,
            output,
            cached_input: None,
            cache_write: None,
            reasoning: None,
        }
    }

    /// This price with a rate for cached prompt tokens.
    pub const fn with_cached_input(mut self, rate: f64) -> Self {
        self.cached_input = Some(rate);
        self
    }

    /// This price with a rate for prompt tokens written to the cache.
    pub const fn with_cache_write(mut self, rate: f64) -> Self {
        self.cache_write = Some(rate);
        self
    }

    /// This price with a rate for reasoning tokens.
    pub const fn with_reasoning(mut self, rate: f64) -> Self {
        self.reasoning = Some(rate);
        self
    }

    /// The rate charged for cached prompt tokens.
    pub fn cached_input_rate(&self) -> f64 {
        self.cached_input.unwrap_or(self.input)
    }

    /// The rate charged for prompt tokens written to the cache.
    pub fn cache_write_rate(&self) -> f64 {
        self.cache_write.unwrap_or(self.input)
    }

    /// The rate charged for reasoning tokens.
    pub fn reasoning_rate(&self) -> f64 {
        self.reasoning.unwrap_or(self.output)
    }

    /// What `usage` costs at this price, in US dollars.
    pub fn cost(&self, usage: &Usage) -> f64 {
        cost(usage, self)
    }

    /// Every rate, for validation.
    pub(crate) fn rates(&self) -> [(&'static str, Option<f64>); 5] {
        [
            ("input", Some(self.input)),
            ("output", Some(self.output)),
            ("cached_input", self.cached_input),
            ("cache_write", self.cache_write),
            ("reasoning", self.reasoning),
        ]
    }
}

/// What `usage` costs at `price`, in US dollars.
///
/// Prompt tokens split into cached reads, cache writes and the rest; generated tokens into
/// reasoning and the rest. Counts a provider reports inconsistently (more cached tokens than
/// prompt tokens, more reasoning than output) are capped at their total, so no token is ever
/// charged twice.
pub fn cost(usage: &Usage, price: &Price) -> f64 {
    let cached = usage.cached_input_tokens.min(usage.input_tokens);
    let cache_written = usage
        .cache_write_input_tokens
        .min(usage.input_tokens - cached);
    let plain_input = usage.input_tokens - cached - cache_written;
    let reasoning = usage.reasoning_tokens.min(usage.output_tokens);
    let plain_output = usage.output_tokens - reasoning;

    let dollars_per_million = plain_input as f64 * price.input
        + cached as f64 * price.cached_input_rate()
        + cache_written as f64 * price.cache_write_rate()
        + plain_output as f64 * price.output
        + reasoning as f64 * price.reasoning_rate();
    dollars_per_million / TOKENS_PER_PRICE_UNIT
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(input: u64, cached: u64, written: u64, output: u64, reasoning: u64) -> Usage {
        Usage {
            input_tokens: input,
            output_tokens: output,
            cached_input_tokens: cached,
            cache_write_input_tokens: written,
            reasoning_tokens: reasoning,
        }
    }

    fn assert_close(got: f64, want: f64) {
        assert!(
            (got - want).abs() <= want.abs() * 1e-12 + 1e-15,
            "got {got}, want {want}"
        );
    }

    #[test]
    fn plain_input_and_output() {
        // gpt-4o: $2.50 in, $10 out per million.
        // 1,000 in × 2.5 + 500 out × 10 = 2,500 + 5,000 = 7,500 $/M → $0.0075.
        let p = Price::new(2.5, 10.0);
        assert_close(cost(&usage(1_000, 0, 0, 500, 0), &p), 0.0075);
    }

    #[test]
    fn cached_tokens_are_part_of_input_and_charged_once() {
        // gpt-4o with cached reads at $1.25: 1,000 prompt tokens of which 800 cached.
        // 200 × 2.5 + 800 × 1.25 = 500 + 1,000 = 1,500 $/M; 0 output → $0.0015.
        let p = Price::new(2.5, 10.0).with_cached_input(1.25);
        assert_close(cost(&usage(1_000, 800, 0, 0, 0), &p), 0.0015);
    }

    #[test]
    fn cached_tokens_without_a_cached_rate_cost_the_input_rate() {
        // 1,000 prompt tokens (800 cached) at $2 flat = 2,000 $/M → $0.002.
        let p = Price::new(2.0, 8.0);
        assert_close(cost(&usage(1_000, 800, 0, 0, 0), &p), 0.002);
    }

    #[test]
    fn anthropic_cache_reads_and_writes() {
        // claude-sonnet-4-5: $3 in, $15 out, $3.75 cache write, $0.30 cache read.
        // 10,000 prompt tokens = 6,000 read + 3,000 written + 1,000 plain; 2,000 out.
        // 1,000 × 3 = 3,000; 6,000 × 0.3 = 1,800; 3,000 × 3.75 = 11,250; 2,000 × 15 = 30,000.
        // Sum 46,050 $/M → $0.04605.
        let p = Price::new(3.0, 15.0)
            .with_cached_input(0.3)
            .with_cache_write(3.75);
        assert_close(cost(&usage(10_000, 6_000, 3_000, 2_000, 0), &p), 0.04605);
    }

    #[test]
    fn reasoning_tokens_are_part_of_output_and_charged_once() {
        // Output $0.60, reasoning $3.50: 1,000 output tokens of which 700 reasoning.
        // 300 × 0.6 + 700 × 3.5 = 180 + 2,450 = 2,630 $/M; 100 in × 0.15 = 15 $/M.
        // Total 2,645 $/M → $0.002645.
        let p = Price::new(0.15, 0.6).with_reasoning(3.5);
        assert_close(cost(&usage(100, 0, 0, 1_000, 700), &p), 0.002645);
        // Without a reasoning rate, reasoning costs the output rate: 1,000 × 0.6 + 15 = 615.
        assert_close(
            cost(&usage(100, 0, 0, 1_000, 700), &Price::new(0.15, 0.6)),
            0.000615,
        );
    }

    #[test]
    fn inconsistent_counts_are_capped_never_double_charged() {
        // 100 prompt tokens but 150 "cached" and 50 "written": all 100 are cached reads.
        // 100 × 1 = 100 $/M. 10 output but 20 "reasoning": 10 × 5 = 50 $/M. → $0.00015.
        let p = Price::new(10.0, 20.0)
            .with_cached_input(1.0)
            .with_cache_write(12.5)
            .with_reasoning(5.0);
        assert_close(cost(&usage(100, 150, 50, 10, 20), &p), 0.000_15);
        // 100 prompt tokens, 70 cached, 50 written: 70 read + 30 written + 0 plain.
        // 70 × 1 + 30 × 12.5 = 70 + 375 = 445 $/M → $0.000445.
        assert_close(cost(&usage(100, 70, 50, 0, 0), &p), 0.000_445);
    }

    #[test]
    fn free_and_empty_cost_nothing() {
        assert_eq!(cost(&usage(1_000, 10, 10, 1_000, 10), &Price::FREE), 0.0);
        assert_eq!(cost(&Usage::default(), &Price::new(3.0, 15.0)), 0.0);
    }

    #[test]
    fn large_counts_stay_exact_enough() {
        // 1e9 prompt tokens at $2.5/M = $2,500 exactly.
        assert_close(
            cost(&usage(1_000_000_000, 0, 0, 0, 0), &Price::new(2.5, 10.0)),
            2_500.0,
        );
    }
}
