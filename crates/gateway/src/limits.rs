//! Rate limits, concurrency limits and spend budgets on the request path, over
//! `portcullis-limits`.
//!
//! Before the upstream call the request's subjects (key, user, team, model, provider, route)
//! and an estimate of its tokens and cost are admitted against every rule at once; a refusal
//! is a 429 (503 when the limits store is unreachable and the rule fails closed) in the
//! caller's dialect with `Retry-After` and `RateLimit-*` headers. The admission travels with
//! the answer and is settled with the real usage and cost; dropped unsettled (failure, cache
//! hit, client gone) it refunds its estimates. Budgets resume after a restart from the spend
//! recorded in the request log.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::{HeaderMap, HeaderName, HeaderValue};
use portcullis_core::{
    ChatRequest, EmbeddingInput, EmbeddingsRequest, ErrorKind, GatewayError, Part, Usage,
};
use portcullis_cost::Price;
use portcullis_limits::{
    Estimate, RateLimitStatus, Refusal, RefusalKind, ScopeKind, SeedError, SpendSeed,
};
use portcullis_store::{Dimension, SpendScope, UsageStore};

/// `RateLimit-Limit`.
pub const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
/// `RateLimit-Remaining`.
pub const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
/// `RateLimit-Reset` (seconds).
pub const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// Completion tokens assumed when a request sets no `max_tokens`.
const DEFAULT_COMPLETION_ESTIMATE: u64 = 1024;

/// The `RateLimit-*` values a response carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateHeaders {
    /// Units per window.
    pub limit: u64,
    /// Units left.
    pub remaining: u64,
    /// Seconds until the limit is fully available again.
    pub reset_secs: u64,
}

impl RateHeaders {
    /// The values of an admitted request's most restrictive rule.
    pub fn admitted(s: &RateLimitStatus) -> Self {
        Self {
            limit: s.limit,
            remaining: s.remaining,
            reset_secs: ceil_secs(s.reset),
        }
    }

    /// The values of a refusal by a rate or concurrency rule (budgets are in dollars, not
    /// requests, and carry only `Retry-After`).
    pub fn refused(r: &Refusal) -> Option<Self> {
        matches!(
            r.kind,
            RefusalKind::Requests | RefusalKind::Tokens | RefusalKind::Concurrency
        )
        .then(|| Self {
            limit: r.limit,
            remaining: r.remaining,
            reset_secs: ceil_secs(r.reset),
        })
    }

    /// Writes the three headers.
    pub fn write(&self, h: &mut HeaderMap) {
        h.insert(RATELIMIT_LIMIT, HeaderValue::from(self.limit));
        h.insert(RATELIMIT_REMAINING, HeaderValue::from(self.remaining));
        h.insert(RATELIMIT_RESET, HeaderValue::from(self.reset_secs));
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// A refusal as the caller sees it.
pub fn refusal_error(r: &Refusal) -> GatewayError {
    let (kind, code) = match r.kind {
        RefusalKind::Budget => (ErrorKind::RateLimited, "budget_exceeded"),
        RefusalKind::Unavailable => (ErrorKind::Unavailable, "limits_unavailable"),
        _ => (ErrorKind::RateLimited, "rate_limit_exceeded"),
    };
    // Whole seconds, rounded up: a client that waits exactly `Retry-After` must find the
    // limit open again (rounding down would have it refused once more).
    GatewayError::new(kind, r.message.clone())
        .with_code(code)
        .with_retryable(false)
        .with_retry_after(Duration::from_secs(ceil_secs(r.retry_after)))
}

/// What a request is expected to consume, before it is priced per target: its input (about
/// four bytes per token) and its completion budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Demand {
    /// Expected input tokens.
    pub input_tokens: u64,
    /// Expected (or maximum) output tokens.
    pub output_tokens: u64,
}

impl Demand {
    /// A chat request's demand: its messages' text, then `max_tokens` (or a default) per
    /// choice.
    pub fn of_chat(request: &ChatRequest) -> Self {
        let mut bytes = 0usize;
        for m in &request.messages {
            for p in &m.content {
                bytes += match p {
                    Part::Text { text, .. }
                    | Part::Refusal { text }
                    | Part::Thinking { text, .. } => text.len(),
                    Part::ToolCall { arguments, .. } => arguments.len(),
                    Part::ToolResult { content, .. } => content
                        .iter()
                        .map(|c| match c {
                            Part::Text { text, .. } => text.len(),
                            _ => 0,
                        })
                        .sum(),
                    _ => 0,
                };
            }
        }
        let output = request
            .max_tokens
            .map_or(DEFAULT_COMPLETION_ESTIMATE, u64::from)
            * u64::from(request.n.unwrap_or(1).max(1));
        Self {
            input_tokens: (bytes as u64).div_ceil(4).max(1),
            output_tokens: output,
        }
    }

    /// An embeddings request's demand: its input (texts at four bytes per token, token arrays
    /// as they are); nothing is generated.
    pub fn of_embeddings(request: &EmbeddingsRequest) -> Self {
        let tokens = match &request.input {
            EmbeddingInput::Text(t) => (t.len() as u64).div_ceil(4),
            EmbeddingInput::Texts(ts) => ts.iter().map(|t| (t.len() as u64).div_ceil(4)).sum(),
            EmbeddingInput::Tokens(t) => t.len() as u64,
            EmbeddingInput::TokenBatches(b) => b.iter().map(|t| t.len() as u64).sum(),
        };
        Self {
            input_tokens: tokens.max(1),
            output_tokens: 0,
        }
    }

    /// The demand priced at `price` (free when unknown), as the limiter counts it.
    pub fn estimate(&self, price: Option<&Price>) -> Estimate {
        let usage = Usage {
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            ..Usage::default()
        };
        Estimate {
            tokens: self.input_tokens + self.output_tokens,
            cost_usd: price.map_or(0.0, |p| p.cost(&usage)),
        }
    }
}

/// How long the first admission of a budget counter in its window may wait for the spend
/// recorded in the log.
pub const SEED_TIMEOUT: Duration = Duration::from_secs(2);

/// Budgets resume from the spend the request log recorded.
pub struct LogSpendSeed(pub Arc<dyn UsageStore>);

#[async_trait]
impl SpendSeed for LogSpendSeed {
    async fn spent_since(
        &self,
        scope: ScopeKind,
        value: &str,
        since_unix_ms: i64,
    ) -> Result<f64, SeedError> {
        let scope = match scope {
            ScopeKind::Global => SpendScope::Global,
            ScopeKind::Key => SpendScope::Only(Dimension::Key, value.to_owned()),
            ScopeKind::User => SpendScope::Only(Dimension::User, value.to_owned()),
            ScopeKind::Team => SpendScope::Only(Dimension::Team, value.to_owned()),
            ScopeKind::Model => SpendScope::Only(Dimension::Model, value.to_owned()),
            ScopeKind::Provider => SpendScope::Only(Dimension::Provider, value.to_owned()),
            ScopeKind::Route => SpendScope::Only(Dimension::Route, value.to_owned()),
            // Tool calls and MCP requests are not priced in the request log.
            ScopeKind::Tool | ScopeKind::Server => return Ok(0.0),
        };
        // A request waits for this (once per budget counter and window); a slow log is a
        // seed failure, which the budget's rule answers by failing open or closed.
        match tokio::time::timeout(SEED_TIMEOUT, self.0.spent_since(&scope, since_unix_ms)).await {
            Ok(spent) => spent.map_err(SeedError::new),
            Err(_) => Err(SeedError::new(format!(
                "the request log did not answer within {SEED_TIMEOUT:?}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use portcullis_core::{Message, Role};

    use super::*;

    #[test]
    fn estimates_count_prompt_bytes_and_the_completion_budget() {
        let req = ChatRequest {
            messages: vec![Message::text(Role::User, "x".repeat(400))],
            max_tokens: Some(50),
            ..ChatRequest::default()
        };
        let price = Price::new(1.0, 2.0);
        let e = Demand::of_chat(&req).estimate(Some(&price));
        assert_eq!(e.tokens, 150);
        assert!((e.cost_usd - (100.0 + 100.0) / 1e6).abs() < 1e-12);
        let e = Demand::of_chat(&ChatRequest::default()).estimate(None);
        assert_eq!(e.tokens, 1 + DEFAULT_COMPLETION_ESTIMATE);
        assert_eq!(e.cost_usd, 0.0);
    }

    #[test]
    fn embeddings_demand_counts_every_input_and_no_output() {
        let request = |input| EmbeddingsRequest {
            model: "m".into(),
            input,
            dimensions: None,
            encoding_format: None,
            user: None,
            extras: portcullis_core::Extras::default(),
        };
        let texts = request(EmbeddingInput::Texts(vec!["x".repeat(40), "y".repeat(41)]));
        assert_eq!(
            Demand::of_embeddings(&texts),
            Demand {
                input_tokens: 10 + 11,
                output_tokens: 0
            }
        );
        let tokens = request(EmbeddingInput::TokenBatches(vec![vec![1, 2, 3], vec![4]]));
        assert_eq!(Demand::of_embeddings(&tokens).input_tokens, 4);
        let price = Price::new(2.0, 0.0);
        let e = Demand::of_embeddings(&texts).estimate(Some(&price));
        assert_eq!(e.tokens, 21);
        assert!((e.cost_usd - 42.0 / 1e6).abs() < 1e-12);
    }
}
