//! The configuration file as written: every section and key the YAML may contain.
//!
//! Every struct denies unknown fields, so a typo is an error that names the key rather than a
//! setting silently ignored. Each block's raw form lives with the crate that validates it (and
//! is re-exported here); [`crate::Config`] is validated from them block by block.

use indexmap::IndexMap;
use portcullis_cache::RawCacheConfig;
use portcullis_cost::RawPrices;
use portcullis_failover::{RawBreaker, RawRetry, RawTimeouts};
use portcullis_limits::config::{RawBudgetRule, RawLimitRule};
use portcullis_semantic::RawSemanticCache;
use serde::Deserialize;

pub use crate::blocks::{RawAccessLog, RawDatabase, RawLog, RawRedis, RawServer, RawUpstream};
pub use portcullis_identity::config::RawIdentity;
pub use portcullis_providers::config::{RawProvider, RawTarget};

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `host:port` to listen on.
    #[serde(default)]
    pub listen: Option<String>,
    /// The master key (use `${PORTCULLIS_MASTER_KEY}`).
    #[serde(default)]
    pub master_key: Option<String>,
    /// The key-encryption key of the provider-key vault (use `${PORTCULLIS_SECRET_KEY}`).
    #[serde(default)]
    pub secret_key: Option<String>,
    /// Who may call: enterprise token issuers and how identity changes propagate.
    #[serde(default)]
    pub identity: Option<RawIdentity>,
    /// The OAuth 2.1 authorization server (needs `secret_key`).
    #[serde(default)]
    pub oauth: Option<portcullis_oauth::OAuthConfig>,
    /// Where state and logs live.
    #[serde(default)]
    pub database: Option<RawDatabase>,
    /// Request limits.
    #[serde(default)]
    pub server: Option<RawServer>,
    /// Request log settings.
    #[serde(default)]
    pub log: Option<RawLog>,
    /// Upstream HTTP client settings.
    #[serde(default)]
    pub upstream: Option<RawUpstream>,
    /// Providers by name, in resolution order.
    #[serde(default)]
    pub providers: Option<IndexMap<String, RawProvider>>,
    /// Routes by client-facing model name.
    #[serde(default)]
    pub routes: Option<IndexMap<String, RawRoute>>,
    /// Aliases: client-facing name → route or `provider/model`.
    #[serde(default)]
    pub aliases: Option<IndexMap<String, String>>,
    /// Retries of one target, for every route (a route's own block overrides it key by key).
    #[serde(default)]
    pub retry: Option<RawRetry>,
    /// Time limits, for every route.
    #[serde(default)]
    pub timeouts: Option<RawTimeouts>,
    /// Per-target circuit breakers.
    #[serde(default)]
    pub circuit_breaker: Option<RawBreaker>,
    /// The shared Redis used by distributed limits and caches.
    #[serde(default)]
    pub redis: Option<RawRedis>,
    /// The exact response cache, for every route (a route's block overrides it key by key).
    #[serde(default)]
    pub cache: Option<RawCacheConfig>,
    /// The decision audit: retention, checkpoints, the writer's queue.
    #[serde(default)]
    pub audit: Option<portcullis_audit::RawAudit>,
    /// Price overrides, by `provider/model`, in US dollars per million tokens.
    #[serde(default)]
    pub prices: Option<RawPrices>,
    /// Rate and concurrency limits.
    #[serde(default)]
    pub limits: Option<Vec<RawLimitRule>>,
    /// Spend budgets.
    #[serde(default)]
    pub budgets: Option<Vec<RawBudgetRule>>,
    /// The semantic cache, for every route (a route's block overrides it key by key).
    #[serde(default)]
    pub semantic_cache: Option<RawSemanticCache>,
    /// OpenTelemetry traces (the `OTEL_*` environment overrides it).
    #[serde(default)]
    pub telemetry: Option<portcullis_telemetry::RawTelemetry>,
    /// The MCP gateway: its servers and endpoint settings.
    #[serde(default)]
    pub mcp: Option<portcullis_mcp::RawMcp>,
    /// Agent guardrails: per tool, what its output does to the context and when it may be
    /// called, checked in order.
    #[serde(default)]
    pub tool_policies: Option<Vec<portcullis_policy::ToolPolicySpec>>,
    /// The model that reads quarantined tool output.
    #[serde(default)]
    pub quarantine: Option<portcullis_policy::RawQuarantine>,
    /// Held tool calls: how long they wait for a decision, the webhook told of them.
    #[serde(default)]
    pub approvals: Option<crate::blocks::RawApprovals>,
    /// The Responses API's stored answers: how long they are kept.
    #[serde(default)]
    pub responses: Option<crate::blocks::RawResponses>,
}

/// One route.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Ordered targets: `provider/model` strings or `{model, weight}` maps.
    pub targets: Vec<RawTarget>,
    /// How targets are ordered: `ordered` (default), `weighted` or `latency`.
    #[serde(default)]
    pub strategy: Option<String>,
    /// Retries of one target on this route.
    #[serde(default)]
    pub retry: Option<RawRetry>,
    /// Time limits on this route.
    #[serde(default)]
    pub timeouts: Option<RawTimeouts>,
    /// The exact cache on this route.
    #[serde(default)]
    pub cache: Option<RawCacheConfig>,
    /// The semantic cache on this route.
    #[serde(default)]
    pub semantic_cache: Option<RawSemanticCache>,
    /// Tool-call deny-list: case-sensitive shell globs over tool names; a matching call is
    /// withheld from the answer.
    #[serde(default)]
    pub tools_denied: Option<Vec<String>>,
}
