//! [`LogRecord`]: one row of the request log, and [`LogQuery`]: the filters the admin API
//! accepts ([`StatusFilter`], [`CacheFilter`], [`metadata_pairs`]: the metadata a record can be
//! found by).

use std::sync::Arc;

use serde::Serialize;
use uuid::Uuid;

/// Everything recorded about one request. Built along the request path and written once.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogRecord {
    /// UUIDv7, time-ordered; also returned to the caller in `x-portcullis-request-id`.
    pub id: Uuid,
    /// When the request arrived, Unix milliseconds.
    pub ts_ms: i64,
    /// Who called (key id, JWT subject, `master`).
    pub subject: Option<String>,
    /// How they authenticated.
    pub auth_method: Option<&'static str>,
    /// The user the request is accounted to.
    pub user: Option<String>,
    /// The team the request is accounted to.
    pub team: Option<String>,
    /// The virtual key used.
    pub key_id: Option<String>,
    /// `chat_completions`, `messages` or `embeddings`.
    pub endpoint: &'static str,
    /// The caller's dialect.
    pub dialect: &'static str,
    /// The route, when the model named one.
    pub route: Option<Arc<str>>,
    /// The model as the caller named it.
    pub requested_model: Option<String>,
    /// The provider that served (or last failed).
    pub provider: Option<Arc<str>>,
    /// The model at that provider.
    pub model: Option<Arc<str>>,
    /// The id of the provider credential used (never the secret).
    pub provider_key_id: Option<String>,
    /// Upstream attempts made.
    pub attempts: u32,
    /// Every attempt, as a JSON array (`target`, `status`, `error`, `latency_ms`), when more
    /// than one was made.
    pub attempt_log: Option<String>,
    /// HTTP status returned to the caller (499: the caller went away).
    pub status: u16,
    /// Error class, when the request failed.
    pub error_type: Option<String>,
    /// Error message, when the request failed.
    pub error_message: Option<String>,
    /// Whether the response was streamed.
    pub stream: bool,
    /// Time from arrival to the last byte, microseconds.
    pub latency_us: u64,
    /// Time from arrival to the first byte of content, microseconds.
    pub ttft_us: Option<u64>,
    /// Prompt tokens (cached included).
    pub input_tokens: u64,
    /// Generated tokens (reasoning included).
    pub output_tokens: u64,
    /// Prompt tokens served from the provider's cache.
    pub cached_tokens: u64,
    /// Generated tokens spent reasoning.
    pub reasoning_tokens: u64,
    /// Cost in US dollars, when known: what the request's budgets counted.
    pub cost_usd: Option<f64>,
    /// When the caller sent its own prices (`x-portcullis-custom-cost`): the cost at the
    /// model's list (or configured) rates.
    pub list_cost_usd: Option<f64>,
    /// When the caller sent its own prices: the cost at those rates (what budgets counted only
    /// if the key may set its own prices).
    pub custom_cost_usd: Option<f64>,
    /// `HIT`, `MISS` or `BYPASS`, when a cache was consulted.
    pub cache_status: Option<&'static str>,
    /// Caller-supplied metadata (a flat JSON object).
    pub metadata: Option<String>,
    /// Conversation id (`x-portcullis-session-id`).
    pub session_id: Option<String>,
    /// Agent name (`x-portcullis-agent`).
    pub agent: Option<String>,
    /// Request body, when body logging is on.
    pub request_body: Option<String>,
    /// Response body, when body logging is on (streams: the translated SSE text).
    pub response_body: Option<String>,
}

impl LogRecord {
    /// A record for a request that arrived now at `endpoint` in `dialect`.
    pub fn new(id: Uuid, ts_ms: i64, endpoint: &'static str, dialect: &'static str) -> Self {
        Self {
            id,
            ts_ms,
            subject: None,
            auth_method: None,
            user: None,
            team: None,
            key_id: None,
            endpoint,
            dialect,
            route: None,
            requested_model: None,
            provider: None,
            model: None,
            provider_key_id: None,
            attempts: 0,
            attempt_log: None,
            status: 0,
            error_type: None,
            error_message: None,
            stream: false,
            latency_us: 0,
            ttft_us: None,
            input_tokens: 0,
            output_tokens: 0,
            cached_tokens: 0,
            reasoning_tokens: 0,
            cost_usd: None,
            list_cost_usd: None,
            custom_cost_usd: None,
            cache_status: None,
            metadata: None,
            session_id: None,
            agent: None,
            request_body: None,
            response_body: None,
        }
    }
}

/// A status filter: one code (`429`) or a class (`5xx`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    /// Exactly this status.
    Exact(u16),
    /// Any status in `class*100 ..= class*100+99`.
    Class(u16),
}

impl StatusFilter {
    /// Parses `429` or `4xx`.
    pub fn parse(s: &str) -> Option<Self> {
        if let Some(c) = s.strip_suffix("xx").or_else(|| s.strip_suffix("XX")) {
            let c: u16 = c.parse().ok()?;
            return (1..=5).contains(&c).then_some(StatusFilter::Class(c));
        }
        let code: u16 = s.parse().ok()?;
        (100..=599)
            .contains(&code)
            .then_some(StatusFilter::Exact(code))
    }

    /// The inclusive status range matched.
    pub fn range(self) -> (i64, i64) {
        match self {
            StatusFilter::Exact(c) => (i64::from(c), i64::from(c)),
            StatusFilter::Class(c) => (i64::from(c) * 100, i64::from(c) * 100 + 99),
        }
    }
}

/// A cache status filter: what the response cache made of the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheFilter {
    /// Answered from the cache (`HIT`).
    Hit,
    /// Looked up, not found (`MISS`).
    Miss,
    /// The cache was skipped for this request (`BYPASS`).
    Bypass,
    /// No cache was consulted (no cache status recorded).
    None,
}

impl CacheFilter {
    /// Parses `hit`, `miss`, `bypass` or `none` (any case).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "hit" => Some(CacheFilter::Hit),
            "miss" => Some(CacheFilter::Miss),
            "bypass" => Some(CacheFilter::Bypass),
            "none" => Some(CacheFilter::None),
            _ => None,
        }
    }

    /// The `cache_status` matched (`None`: no status recorded).
    pub fn stored(self) -> Option<&'static str> {
        match self {
            CacheFilter::Hit => Some("HIT"),
            CacheFilter::Miss => Some("MISS"),
            CacheFilter::Bypass => Some("BYPASS"),
            CacheFilter::None => None,
        }
    }
}

/// Longest metadata key or value (bytes) a record can be found by; longer ones are kept in the
/// record but not indexed.
pub const MAX_METADATA_FILTER_BYTES: usize = 256;

/// The `(key, value)` pairs of a record's metadata (a flat JSON object) it can be found by: a
/// string value as it is, a number or boolean as its JSON text (`42`, `true`); null, nested
/// values, and keys or values longer than [`MAX_METADATA_FILTER_BYTES`] are left out, as is
/// metadata that is not a JSON object.
pub fn metadata_pairs(metadata: &str) -> Vec<(String, String)> {
    use serde_json::Value;
    let Ok(map) = serde_json::from_str::<serde_json::Map<String, Value>>(metadata) else {
        return Vec::new();
    };
    let mut pairs = Vec::with_capacity(map.len());
    for (k, v) in map {
        let v = match v {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null | Value::Array(_) | Value::Object(_) => continue,
        };
        if k.len() <= MAX_METADATA_FILTER_BYTES && v.len() <= MAX_METADATA_FILTER_BYTES {
            pairs.push((k, v));
        }
    }
    pairs
}

/// Filters for reading the request log, newest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogQuery {
    /// Only records at or after this time (Unix ms).
    pub since_ms: Option<i64>,
    /// Only records before this time (Unix ms).
    pub until_ms: Option<i64>,
    /// Only this served model (the model at the provider).
    pub model: Option<String>,
    /// Only requests that named this model (or route), as the caller sent it.
    pub requested_model: Option<String>,
    /// Only this provider.
    pub provider: Option<String>,
    /// Only this route.
    pub route: Option<String>,
    /// Only this status or class.
    pub status: Option<StatusFilter>,
    /// Only this cache outcome.
    pub cache: Option<CacheFilter>,
    /// Only records whose metadata holds this key with this value (as [`metadata_pairs`]
    /// gives it: a string as it is, a number or boolean as its JSON text).
    pub metadata: Option<(String, String)>,
    /// Only this subject.
    pub subject: Option<String>,
    /// Only this user.
    pub user: Option<String>,
    /// Only this team.
    pub team: Option<String>,
    /// Only this virtual key.
    pub key: Option<String>,
    /// Only this endpoint (`chat_completions`, `messages`, `embeddings`, `mcp`).
    pub endpoint: Option<String>,
    /// Only MCP requests to this server.
    pub server: Option<String>,
    /// Only MCP requests of this tool (or prompt), by its public name `<server>__<name>`.
    pub tool: Option<String>,
    /// Only records older than this id (the previous page's `next_cursor`).
    pub before_id: Option<Uuid>,
    /// At most this many records.
    pub limit: u32,
    /// The most expensive priced records first (by `cost_usd`, then newest), one page with
    /// no cursor; unpriced records are left out. Otherwise newest first.
    pub costliest_first: bool,
}
