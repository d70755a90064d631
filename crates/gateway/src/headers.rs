//! Gateway-specific HTTP headers: per-request options the caller sends (`x-portcullis-*`,
//! with Cloudflare AI Gateway's `cf-aig-*` names accepted as aliases) and the response headers
//! that say what happened.

use std::time::Duration;

use http::{HeaderMap, HeaderName};
use portcullis_core::GatewayError;
use portcullis_cost::CustomCost;
use portcullis_failover::Backoff;
use serde_json::Value;

/// `x-portcullis-request-id`: the request's UUIDv7, also the log record's id.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-portcullis-request-id");
/// `x-portcullis-provider`: the provider that served.
pub const PROVIDER: HeaderName = HeaderName::from_static("x-portcullis-provider");
/// `x-portcullis-model`: the model that served, at that provider.
pub const MODEL: HeaderName = HeaderName::from_static("x-portcullis-model");
/// `x-portcullis-attempts`: upstream attempts made.
pub const ATTEMPTS: HeaderName = HeaderName::from_static("x-portcullis-attempts");
/// `x-portcullis-cache`: `HIT`, `MISS` or `BYPASS`.
pub const CACHE: HeaderName = HeaderName::from_static("x-portcullis-cache");
/// `x-portcullis-provider-key`: on a request, the alias of the provider key to use (one the
/// caller may use); on a response, the id of the provider key that was used.
pub const PROVIDER_KEY: HeaderName = HeaderName::from_static("x-portcullis-provider-key");
/// `x-portcullis-semantic-score`: the similarity of a semantic cache hit.
pub const SEMANTIC_SCORE: HeaderName = HeaderName::from_static("x-portcullis-semantic-score");

/// Options a caller sets per request.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RequestOptions {
    /// Flat JSON object stored with the log record.
    pub metadata: Option<String>,
    /// `false`: keep bodies and metadata out of the log; `true`: store bodies if the operator
    /// logs bodies (`log.bodies`, the ceiling).
    pub collect_log: Option<bool>,
    /// Conversation id.
    pub session_id: Option<String>,
    /// Agent name.
    pub agent: Option<String>,
    /// Cache entry lifetime for this request (`x-portcullis-cache-ttl`, seconds).
    pub cache_ttl: Option<Duration>,
    /// Neither read nor fill the cache (`x-portcullis-skip-cache`).
    pub skip_cache: bool,
    /// A caller-chosen cache key replacing the request's fingerprint (`x-portcullis-cache-key`).
    pub cache_key: Option<String>,
    /// Time allowed to the upstream's first byte (`x-portcullis-request-timeout`, ms).
    pub request_timeout: Option<Duration>,
    /// Attempts per target (`x-portcullis-max-attempts`).
    pub max_attempts: Option<u32>,
    /// Base delay between attempts (`x-portcullis-retry-delay`, ms).
    pub retry_delay: Option<Duration>,
    /// Delay growth (`x-portcullis-backoff`).
    pub backoff: Option<Backoff>,
    /// Per-request prices (`x-portcullis-custom-cost`).
    pub custom_cost: Option<CustomCost>,
    /// The alias of the provider key to use.
    pub provider_key: Option<String>,
}

/// Most attempts a request may ask for.
pub const MAX_REQUEST_ATTEMPTS: u32 = 5;
/// Longest retry delay a request may ask for.
pub const MAX_REQUEST_RETRY_DELAY: Duration = Duration::from_secs(5);

const MAX_METADATA_BYTES: usize = 4096;
const MAX_METADATA_KEYS: usize = 16;
const MAX_LABEL_BYTES: usize = 256;

/// Longest cache TTL a request may ask for: 30 days.
pub const MAX_REQUEST_CACHE_TTL: Duration = portcullis_cache::MAX_REQUEST_TTL;

/// The value of `name`, or of its Cloudflare alias, trimmed (`None` when absent or blank).
/// A value that is not printable ASCII is refused with a 400 naming the header as sent, never
/// silently ignored.
fn header<'a>(
    headers: &'a HeaderMap,
    name: &'static str,
    alias: Option<&'static str>,
) -> Result<Option<&'a str>, GatewayError> {
    let (sent, value) = match headers.get(name) {
        Some(v) => (name, v),
        None => match alias.and_then(|a| headers.get(a).map(|v| (a, v))) {
            Some(found) => found,
            None => return Ok(None),
        },
    };
    let value = value
        .to_str()
        .map_err(|_| bad_header(sent, "must be printable ASCII"))?
        .trim();
    Ok((!value.is_empty()).then_some(value))
}

fn bad_header(name: &str, why: &str) -> GatewayError {
    GatewayError::invalid_request(format!("Invalid `{name}` header: {why}"))
        .with_code("invalid_header")
}

/// Reads the per-request options, refusing malformed ones with a precise 400.
pub fn request_options(headers: &HeaderMap) -> Result<RequestOptions, GatewayError> {
    let mut opts = RequestOptions::default();
    if let Some(raw) = header(headers, "x-portcullis-metadata", Some("cf-aig-metadata"))? {
        opts.metadata = Some(validate_metadata(raw)?);
    }
    if let Some(v) = header(
        headers,
        "x-portcullis-collect-log",
        Some("cf-aig-collect-log"),
    )? {
        opts.collect_log = Some(flag("x-portcullis-collect-log", v)?);
    }
    if let Some(v) = header(headers, "x-portcullis-cache-ttl", Some("cf-aig-cache-ttl"))? {
        opts.cache_ttl = Some(
            portcullis_cache::parse_ttl_header(v)
                .map_err(|e| bad_header("x-portcullis-cache-ttl", e.reason))?,
        );
    }
    if let Some(v) = header(
        headers,
        "x-portcullis-skip-cache",
        Some("cf-aig-skip-cache"),
    )? {
        opts.skip_cache = flag("x-portcullis-skip-cache", v)?;
    }
    if let Some(v) = header(headers, "x-portcullis-cache-key", Some("cf-aig-cache-key"))? {
        let key = portcullis_cache::parse_key_header(v)
            .map_err(|e| bad_header("x-portcullis-cache-key", e.reason))?;
        opts.cache_key = Some(key.to_owned());
    }
    if let Some(v) = header(
        headers,
        "x-portcullis-request-timeout",
        Some("cf-aig-request-timeout"),
    )? {
        let ms: u64 = v.parse().ok().filter(|ms| *ms > 0).ok_or_else(|| {
            bad_header(
                "x-portcullis-request-timeout",
                "expected milliseconds above 0",
            )
        })?;
        opts.request_timeout = Some(Duration::from_millis(ms));
    }
    if let Some(v) = header(
        headers,
        "x-portcullis-max-attempts",
        Some("cf-aig-max-attempts"),
    )? {
        let n: u32 = v
            .parse()
            .ok()
            .filter(|n| (1..=MAX_REQUEST_ATTEMPTS).contains(n))
            .ok_or_else(|| bad_header("x-portcullis-max-attempts", "expected 1 to 5"))?;
        opts.max_attempts = Some(n);
    }
    if let Some(v) = header(
        headers,
        "x-portcullis-retry-delay",
        Some("cf-aig-retry-delay"),
    )? {
        let ms: u64 = v
            .parse()
            .ok()
            .filter(|ms| Duration::from_millis(*ms) <= MAX_REQUEST_RETRY_DELAY)
            .ok_or_else(|| {
                bad_header(
                    "x-portcullis-retry-delay",
                    "expected 0 to 5000 milliseconds",
                )
            })?;
        opts.retry_delay = Some(Duration::from_millis(ms));
    }
    if let Some(v) = header(headers, "x-portcullis-backoff", Some("cf-aig-backoff"))? {
        opts.backoff = Some(Backoff::parse(v).ok_or_else(|| {
            bad_header(
                "x-portcullis-backoff",
                "expected constant, linear or exponential",
            )
        })?);
    }
    if let Some(v) = header(
        headers,
        "x-portcullis-custom-cost",
        Some("cf-aig-custom-cost"),
    )? {
        opts.custom_cost = Some(
            CustomCost::parse(v)
                .map_err(|e| bad_header("x-portcullis-custom-cost", &e.to_string()))?,
        );
    }
    for (name, slot) in [
        ("x-portcullis-session-id", &mut opts.session_id),
        ("x-portcullis-agent", &mut opts.agent),
        ("x-portcullis-provider-key", &mut opts.provider_key),
    ] {
        if let Some(v) = header(headers, name, None)? {
            if v.len() > MAX_LABEL_BYTES {
                return Err(bad_header(name, "longer than 256 bytes"));
            }
            *slot = Some(v.to_owned());
        }
    }
    Ok(opts)
}

fn flag(name: &str, v: &str) -> Result<bool, GatewayError> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(bad_header(name, "expected true or false")),
    }
}

fn validate_metadata(raw: &str) -> Result<String, GatewayError> {
    const NAME: &str = "x-portcullis-metadata";
    if raw.len() > MAX_METADATA_BYTES {
        return Err(bad_header(NAME, "larger than 4096 bytes"));
    }
    if portcullis_dialects::strict::duplicate_key(raw.as_bytes()).is_some() {
        return Err(bad_header(NAME, "a key may appear only once"));
    }
    let v: Value =
        serde_json::from_str(raw).map_err(|_| bad_header(NAME, "expected a flat JSON object"))?;
    let Value::Object(map) = &v else {
        return Err(bad_header(NAME, "expected a flat JSON object"));
    };
    if map.len() > MAX_METADATA_KEYS {
        return Err(bad_header(NAME, "more than 16 keys"));
    }
    if map
        .values()
        .any(|v| matches!(v, Value::Object(_) | Value::Array(_)))
    {
        return Err(bad_header(
            NAME,
            "values must be strings, numbers, booleans or null",
        ));
    }
    Ok(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        m
    }

    #[test]
    fn reads_options_and_cloudflare_aliases() {
        let o = request_options(&h(&[
            ("cf-aig-metadata", r#"{"team":"search","n":1}"#),
            ("cf-aig-collect-log", "false"),
            ("x-portcullis-session-id", "conv-1"),
            ("x-portcullis-agent", "triage"),
        ]))
        .unwrap();
        assert_eq!(o.metadata.as_deref(), Some(r#"{"n":1,"team":"search"}"#));
        assert_eq!(o.collect_log, Some(false));
        assert_eq!(o.session_id.as_deref(), Some("conv-1"));
        assert_eq!(o.agent.as_deref(), Some("triage"));
    }

    #[test]
    fn reads_cache_and_retry_options() {
        let o = request_options(&h(&[
            ("cf-aig-cache-ttl", "3600"),
            ("cf-aig-skip-cache", "true"),
            ("x-portcullis-cache-key", "faq-42"),
            ("cf-aig-request-timeout", "1500"),
            ("cf-aig-max-attempts", "3"),
            ("cf-aig-retry-delay", "250"),
            ("cf-aig-backoff", "linear"),
            ("cf-aig-custom-cost", r#"{"per_token_in":0.000001}"#),
        ]))
        .unwrap();
        assert_eq!(o.cache_ttl, Some(Duration::from_secs(3600)));
        assert!(o.skip_cache);
        assert_eq!(o.cache_key.as_deref(), Some("faq-42"));
        assert_eq!(o.request_timeout, Some(Duration::from_millis(1500)));
        assert_eq!(o.max_attempts, Some(3));
        assert_eq!(o.retry_delay, Some(Duration::from_millis(250)));
        assert_eq!(o.backoff, Some(Backoff::Linear));
        assert!(o.custom_cost.is_some());
    }

    #[test]
    fn refuses_malformed_options() {
        for bad in [
            ("x-portcullis-metadata", "not json"),
            ("x-portcullis-metadata", "[1]"),
            ("x-portcullis-metadata", r#"{"a":{"b":1}}"#),
            ("x-portcullis-metadata", r#"{"a":1,"a":2}"#),
            ("x-portcullis-collect-log", "maybe"),
            ("x-portcullis-cache-ttl", "-5"),
            ("x-portcullis-skip-cache", "perhaps"),
            ("x-portcullis-request-timeout", "0"),
            ("x-portcullis-max-attempts", "9"),
            ("x-portcullis-retry-delay", "60000"),
            ("x-portcullis-backoff", "fibonacci"),
            ("x-portcullis-custom-cost", r#"{"per_token_in": -1}"#),
            ("x-portcullis-cache-ttl", "0"),
            ("x-portcullis-cache-ttl", "2592001"),
            ("x-portcullis-cache-ttl", "99999999999999999999999"),
            ("x-portcullis-cache-ttl", "1h"),
            ("x-portcullis-cache-key", "tab\there"),
        ] {
            let e = request_options(&h(&[bad])).unwrap_err();
            assert_eq!(e.status().as_u16(), 400, "{bad:?}");
            assert!(e.message().contains(bad.0), "{bad:?}: {}", e.message());
        }
        let o = request_options(&h(&[("cf-aig-cache-ttl", "2592000")])).unwrap();
        assert_eq!(o.cache_ttl, Some(MAX_REQUEST_CACHE_TTL));
    }

    #[test]
    fn refuses_unreadable_values_naming_the_header_sent() {
        for name in [
            "x-portcullis-metadata",
            "cf-aig-collect-log",
            "cf-aig-cache-ttl",
            "x-portcullis-cache-key",
            "x-portcullis-session-id",
            "x-portcullis-provider-key",
            "cf-aig-custom-cost",
        ] {
            for value in [&b"caf\xc3\xa9"[..], b"\xff", b"a\x80b"] {
                let mut m = HeaderMap::new();
                m.insert(name, HeaderValue::from_bytes(value).unwrap());
                let e = request_options(&m).unwrap_err();
                assert_eq!(e.status().as_u16(), 400, "{name}");
                assert!(e.message().contains(name), "{name}: {}", e.message());
                assert!(e.message().contains("printable ASCII"), "{}", e.message());
            }
        }
    }
}
