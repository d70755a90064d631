//! The configuration file as written: every section and key the YAML may contain.
//!
//! Every struct denies unknown fields, so a typo is an error that names the key rather than a
//! setting silently ignored. Values are validated into [`crate::Config`] separately.

use std::fmt;

use indexmap::IndexMap;
use portcullis_cache::RawCacheConfig;
use portcullis_cost::RawPrices;
use portcullis_failover::{RawBreaker, RawRetry, RawTimeouts};
use portcullis_limits::config::{RawBudgetRule, RawLimitRule};
use portcullis_semantic::RawSemanticCache;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

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
}

/// `identity:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentity {
    /// How often each replica checks for changed keys, users and teams (default `1s`).
    #[serde(default)]
    pub poll_interval: Option<String>,
    /// Enterprise token issuers whose bearer JWTs the gateway accepts.
    #[serde(default)]
    pub issuers: Vec<portcullis_oidc::IssuerConfig>,
}

/// `redis:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedis {
    /// `redis://host:port/db` (else `PORTCULLIS_REDIS_URL`).
    #[serde(default)]
    pub url: Option<String>,
}

/// `database:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDatabase {
    /// `sqlite://…` or `postgres://…`.
    pub url: Option<String>,
    /// Maximum pooled connections.
    #[serde(default)]
    pub max_connections: Option<u32>,
}

/// `server:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Largest accepted request body, in bytes.
    #[serde(default)]
    pub max_request_body_bytes: Option<usize>,
    /// How long graceful shutdown waits for in-flight requests, in seconds.
    #[serde(default)]
    pub shutdown_grace_seconds: Option<u64>,
    /// Time allowed to receive a request's headers (a duration such as `15s`).
    #[serde(default)]
    pub header_read_timeout: Option<String>,
    /// Time any request body may take (a duration), extended by one second per
    /// `min_body_rate` bytes received.
    #[serde(default)]
    pub body_read_timeout: Option<String>,
    /// The slowest accepted body arrival, in bytes per second, once `body_read_timeout` is spent.
    #[serde(default)]
    pub min_body_rate: Option<u64>,
    /// How long a connection with no request in progress stays open (a duration).
    #[serde(default)]
    pub idle_timeout: Option<String>,
    /// Most client connections open at once; more are refused with 503.
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// Most request-body bytes held in memory across all requests at once.
    #[serde(default)]
    pub max_body_bytes_in_flight: Option<usize>,
    /// Most concurrent HTTP/2 streams per connection.
    #[serde(default)]
    pub http2_max_concurrent_streams: Option<u32>,
    /// Largest HTTP/2 header list, in bytes.
    #[serde(default)]
    pub http2_max_header_list_size: Option<u32>,
    /// HTTP/2 PING and SETTINGS frames a client may send per second (bursts of ten seconds' worth).
    #[serde(default)]
    pub http2_max_control_frames_per_second: Option<u32>,
}

/// `log:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// Store request and response bodies.
    #[serde(default)]
    pub bodies: Option<bool>,
    /// Records buffered between the request path and the database writer.
    #[serde(default)]
    pub queue_capacity: Option<usize>,
    /// Records written per database batch.
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// Longest a record waits before its batch is written, in milliseconds.
    #[serde(default)]
    pub flush_interval_ms: Option<u64>,
    /// A line per request on the process log: `off` (default), `on`, or the share of
    /// requests to log (`0.1`).
    #[serde(default)]
    pub access: Option<RawAccessLog>,
}

/// `log.access` as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum RawAccessLog {
    /// `true` / `false`.
    Switch(bool),
    /// A share of requests, from 0 to 1.
    Ratio(f64),
    /// `on` / `off`.
    Word(String),
}

/// `upstream:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    /// TCP+TLS connect timeout, in milliseconds.
    #[serde(default)]
    pub connect_timeout_ms: Option<u64>,
    /// Time to the response headers, in milliseconds.
    #[serde(default)]
    pub first_byte_timeout_ms: Option<u64>,
    /// Idle pooled connections kept per upstream host.
    #[serde(default)]
    pub max_idle_per_host: Option<usize>,
}

/// One provider.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    /// Provider kind; defaults to the provider's name when that names a kind.
    #[serde(default)]
    pub kind: Option<String>,
    /// Base URL (OpenAI dialect: including `/v1`; Anthropic: without).
    #[serde(default)]
    pub base_url: Option<String>,
    /// API key.
    #[serde(default)]
    pub api_key: Option<String>,
    /// Extra headers for every upstream request.
    #[serde(default)]
    pub headers: Option<IndexMap<String, String>>,
    /// Advertised models.
    #[serde(default)]
    pub models: Option<Vec<String>>,
    /// Default `max_tokens` for Anthropic-dialect upstreams.
    #[serde(default)]
    pub default_max_tokens: Option<u32>,
    /// Cloudflare account id (kind `cloudflare`).
    #[serde(default)]
    pub account_id: Option<String>,
    /// Cloudflare AI Gateway id (kind `cloudflare`).
    #[serde(default)]
    pub gateway_id: Option<String>,
    /// Provider behind the Cloudflare gateway (kind `cloudflare`): `compat`, `openai`,
    /// `anthropic`, `workers-ai`, `groq`, ….
    #[serde(default)]
    pub upstream: Option<String>,
    /// Cloudflare gateway token, sent as `cf-aig-authorization` (kind `cloudflare`).
    #[serde(default)]
    pub gateway_token: Option<String>,
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
}

/// A route target: `openai/gpt-4o` or `{model: openai/gpt-4o, weight: 2}`.
#[derive(Debug, Default)]
pub struct RawTarget {
    /// `provider/model`.
    pub model: String,
    /// Relative weight.
    pub weight: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTargetMap {
    model: String,
    #[serde(default)]
    weight: Option<u32>,
}

impl<'de> Deserialize<'de> for RawTarget {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawTarget;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`provider/model` or a map with `model` and `weight`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawTarget, E> {
                Ok(RawTarget {
                    model: v.to_owned(),
                    weight: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawTarget, A::Error> {
                let m = RawTargetMap::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawTarget {
                    model: m.model,
                    weight: m.weight,
                })
            }
        }
        d.deserialize_any(V)
    }
}
