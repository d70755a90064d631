//! What requests cost: model prices and the cost of a request's token usage.
//!
//! - [`price`]: [`Price`] (US dollars per million tokens, with cached-read, cache-write and
//!   reasoning rates) and [`cost`], which charges every token of a [`Usage`] exactly once;
//! - [`table`]: the built-in list prices of current models, by vendor, as data, and which
//!   lists each provider kind reads ([`table::vendors_for_kind`]: Azure OpenAI → OpenAI's,
//!   Vertex AI → Gemini's and Anthropic's, Bedrock → its own and Anthropic's);
//! - [`names`]: how a model name finds its row (dated snapshots → family, longest match wins,
//!   `vendor/model` aggregator names, each kind's own naming: Bedrock ids and inference
//!   profiles, Vertex AI's `claude-…@date` and resource paths, Gemini's `models/…`, Azure's
//!   `gpt-35-turbo`); [`names::builtin_price`] prices a model by kind id;
//! - [`overrides`]: the `prices:` section of the configuration file, validated with key paths;
//! - [`book`]: [`PriceBook`], which resolves a (provider, model) pair once and remembers it;
//! - [`custom`]: the per-request `x-portcullis-custom-cost` header.
//!
//! Unknown prices are `None`, never zero: an unpriced request is logged without a cost rather
//! than as free. Self-hosted kinds (`vllm`, `ollama`) cost nothing unless configured otherwise.
//!
//! [`Usage`]: portcullis_core::Usage

pub mod book;
pub mod custom;
pub mod names;
pub mod overrides;
pub mod price;
pub mod table;

pub use book::PriceBook;
pub use custom::{CUSTOM_COST_HEADER, CUSTOM_COST_HEADER_ALIAS, CustomCost, CustomCostError};
pub use overrides::{PriceOverrides, RawPrice, RawPriceBlock, RawPrices};
pub use price::{Price, cost};
