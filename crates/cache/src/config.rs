//! Cache configuration: the `cache:` section as written, its validation into
//! [`CacheSettings`], and the per-request cache headers.
//!
//! Every key of [`RawCacheConfig`] is optional so the gateway can layer the top-level section,
//! a route's section and the request's headers ([`RawCacheConfig::overlay`], then
//! [`CacheSettings::with_request`]):
//!
//! ```yaml
//! cache:
//!   enabled: true            # exact cache on/off (default off)
//!   ttl: 5m                  # 30s, 5m, 1h, 1d, or a number of seconds (default 5m)
//!   backend: memory          # memory | redis (default memory)
//!   max_bytes: 268435456     # memory backend capacity (default 256 MiB)
//!   max_entry_bytes: 1048576 # larger answers are not cached (default 1 MiB)
//!   nondeterministic: false  # also cache requests whose temperature is not 0
//!   coalesce: true           # identical concurrent requests share one upstream call
//!   per_request: true        # a request's cache-ttl / cache-key header may turn it on
//! ```
//!
//! `backend` and `max_bytes` shape the one store the gateway builds, so they belong in the
//! top-level section only; [`RawCacheConfig::route_issues`] reports them in a route's.

use std::collections::HashMap;
use std::time::Duration;

use http::HeaderMap;
use portcullis_core::ChatRequest;
use portcullis_core::config::{Block, Issues, key};
use serde::Deserialize;

use crate::key::is_deterministic;
/// The longest TTL the configuration may set: one year (also the longest any entry is kept).
pub const MAX_TTL: Duration = Duration::from_secs(365 * 24 * 60 * 60);
/// The longest TTL a request header may ask for: 30 days.
pub const MAX_REQUEST_TTL: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// TTL when none is configured.
pub const DEFAULT_TTL: Duration = Duration::from_secs(5 * 60);
/// Memory backend capacity when none is configured: 256 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;
/// Entry size bound when none is configured: 1 MiB.
pub const DEFAULT_MAX_ENTRY_BYTES: usize = 1024 * 1024;
/// The largest entry size bound accepted: 512 MiB, Redis's limit for one value.
pub const MAX_ENTRY_BYTES_LIMIT: u64 = 512 * 1024 * 1024;
/// The longest caller-supplied cache key, in bytes.
pub const MAX_CUSTOM_KEY_BYTES: usize = 256;

/// `x-portcullis-cache-ttl`: seconds to keep this request's answer.
pub const CACHE_TTL_HEADER: &str = "x-portcullis-cache-ttl";
/// `x-portcullis-skip-cache`: `true` bypasses the cache for this request.
pub const SKIP_CACHE_HEADER: &str = "x-portcullis-skip-cache";
/// `x-portcullis-cache-key`: a caller-chosen key replacing the request fingerprint.
pub const CACHE_KEY_HEADER: &str = "x-portcullis-cache-key";

/// Cloudflare AI Gateway's names for the same headers, accepted as aliases.
const HEADER_ALIASES: [(&str, &str); 3] = [
    (CACHE_TTL_HEADER, "cf-aig-cache-ttl"),
    (SKIP_CACHE_HEADER, "cf-aig-skip-cache"),
    (CACHE_KEY_HEADER, "cf-aig-cache-key"),
];

/// The `cache:` section as written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCacheConfig {
    /// Whether the exact cache is on.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// How long answers are kept.
    #[serde(default)]
    pub ttl: Option<RawTtl>,
    /// `memory` or `redis`.
    #[serde(default)]
    pub backend: Option<String>,
    /// Memory backend capacity in bytes.
    #[serde(default)]
    pub max_bytes: Option<u64>,
    /// Largest answer cached, in bytes.
    #[serde(default)]
    pub max_entry_bytes: Option<u64>,
    /// Whether requests with a temperature other than 0 (or several choices) are cached.
    #[serde(default)]
    pub nondeterministic: Option<bool>,
    /// Whether identical concurrent requests share one upstream call.
    #[serde(default)]
    pub coalesce: Option<bool>,
    /// Whether a request's `cache-ttl` or `cache-key` header turns caching on for that
    /// request where this section leaves it off (as Cloudflare's gateway does).
    #[serde(default)]
    pub per_request: Option<bool>,
}

/// A TTL as written: a number of seconds or a duration such as `30s`, `5m`, `1h`, `1d`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum RawTtl {
    /// A whole number of seconds.
    Seconds(i64),
    /// A fractional number, which is refused (TTLs are whole seconds).
    Fraction(f64),
    /// A duration with a unit.
    Text(String),
}

/// Where cache entries live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheBackend {
    /// This process's memory ([`crate::MemoryCache`]).
    Memory,
    /// A Redis server shared by every replica ([`crate::RedisCache`]).
    Redis,
}

/// The validated cache settings in force for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSettings {
    /// Whether the exact cache is used.
    pub enabled: bool,
    /// How long answers are kept.
    pub ttl: Duration,
    /// Where entries live.
    pub backend: CacheBackend,
    /// Memory backend capacity in bytes.
    pub max_bytes: u64,
    /// Largest answer cached, in bytes.
    pub max_entry_bytes: usize,
    /// Whether non-deterministic requests are cached.
    pub nondeterministic: bool,
    /// Whether identical concurrent requests share one upstream call.
    pub coalesce: bool,
    /// Whether a request's `cache-ttl` or `cache-key` header turns caching on for that request
    /// when `enabled` is off (default on; `false` forbids per-request caching).
    pub per_request: bool,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            ttl: DEFAULT_TTL,
            backend: CacheBackend::Memory,
            max_bytes: DEFAULT_MAX_BYTES,
            max_entry_bytes: DEFAULT_MAX_ENTRY_BYTES,
            nondeterministic: false,
            coalesce: true,
            per_request: true,
        }
    }
}

impl CacheSettings {
    /// Whether an answer to `request` may be served from and stored in the cache.
    pub fn should_cache(&self, request: &ChatRequest) -> bool {
        self.enabled && (self.nondeterministic || is_deterministic(request))
    }

    /// Whether `request` uses the cache; `asked` is whether its caller sent a TTL or key
    /// header (and no skip header). The settings turn the cache on (for deterministic requests,
    /// or all with `nondeterministic`), or the caller asked — which also turns a disabled cache
    /// on for that request unless `per_request` forbids it.
    pub fn applies(&self, request: &ChatRequest, asked: bool) -> bool {
        if asked {
            self.enabled || self.per_request
        } else {
            self.should_cache(request)
        }
    }

    /// These settings as the request's headers amend them: a TTL header replaces the TTL,
    /// `skip` turns the cache off for the request.
    pub fn with_request(&self, options: &CacheRequestOptions) -> CacheSettings {
        let mut settings = self.clone();
        if let Some(ttl) = options.ttl {
            settings.ttl = ttl;
        }
        if options.skip {
            settings.enabled = false;
        }
        settings
    }
}

impl RawCacheConfig {
    /// `self` with every key `over` sets replaced by `over`'s value (a route over the
    /// top-level section).
    pub fn overlay(&self, over: &RawCacheConfig) -> RawCacheConfig {
        RawCacheConfig {
            enabled: over.enabled.or(self.enabled),
            ttl: over.ttl.clone().or_else(|| self.ttl.clone()),
            backend: over.backend.clone().or_else(|| self.backend.clone()),
            max_bytes: over.max_bytes.or(self.max_bytes),
            max_entry_bytes: over.max_entry_bytes.or(self.max_entry_bytes),
            nondeterministic: over.nondeterministic.or(self.nondeterministic),
            coalesce: over.coalesce.or(self.coalesce),
            per_request: over.per_request.or(self.per_request),
        }
    }

    /// Validates the section found at `path` (e.g. `cache`), with defaults for unset keys.
    /// Every problem is reported, each with its key path.
    pub fn validate(&self, path: &str) -> Result<CacheSettings, Issues> {
        let mut issues = Issues::new();
        let mut issue = |name: &str, message: String| issues.at(path, name, message);
        let mut settings = CacheSettings {
            enabled: self.enabled.unwrap_or(false),
            nondeterministic: self.nondeterministic.unwrap_or(false),
            coalesce: self.coalesce.unwrap_or(true),
            per_request: self.per_request.unwrap_or(true),
            ..CacheSettings::default()
        };
        if let Some(ttl) = &self.ttl {
            match parse_ttl(ttl) {
                Ok(ttl) => settings.ttl = ttl,
                Err(message) => issue("ttl", message),
            }
        }
        match self.backend.as_deref() {
            None | Some("memory") => settings.backend = CacheBackend::Memory,
            Some("redis") => settings.backend = CacheBackend::Redis,
            Some(other) => issue(
                "backend",
                format!("unknown backend `{other}`; expected `memory` or `redis`"),
            ),
        }
        match self.max_bytes {
            None => {}
            Some(0) => issue("max_bytes", "must be greater than 0".to_owned()),
            Some(bytes) => settings.max_bytes = bytes,
        }
        match self.max_entry_bytes {
            None => {}
            Some(0) => issue("max_entry_bytes", "must be greater than 0".to_owned()),
            Some(bytes) if bytes > MAX_ENTRY_BYTES_LIMIT => issue(
                "max_entry_bytes",
                format!("must be at most {MAX_ENTRY_BYTES_LIMIT} (512 MiB)"),
            ),
            Some(bytes) => match usize::try_from(bytes) {
                Ok(bytes) => settings.max_entry_bytes = bytes,
                Err(_) => issue(
                    "max_entry_bytes",
                    "does not fit this platform's address space".to_owned(),
                ),
            },
        }
        if settings.backend == CacheBackend::Memory
            && settings.max_entry_bytes as u64 > settings.max_bytes
            && self.max_bytes != Some(0)
        {
            issue(
                "max_entry_bytes",
                format!(
                    "{} exceeds max_bytes ({}): no entry could be kept",
                    settings.max_entry_bytes, settings.max_bytes
                ),
            );
        }
        issues.finish(settings)
    }

    /// Problems with this section as a route's (at `path`): keys that shape the shared store
    /// may only be set in the top-level section.
    pub fn route_issues(&self, path: &str) -> Issues {
        let mut issues = Issues::new();
        if self.backend.is_some() {
            issues.at(
                path,
                "backend",
                "can only be set in the top-level cache section",
            );
        }
        if self.max_bytes.is_some() {
            issues.at(
                path,
                "max_bytes",
                "can only be set in the top-level cache section",
            );
        }
        issues
    }
}

/// The exact cache: the settings of requests on no route, and each route's.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CacheConfig {
    /// Settings for requests that name no route (and the store's shape: backend, capacity).
    pub default: CacheSettings,
    /// Each route's settings, by route name.
    pub routes: HashMap<String, CacheSettings>,
}

impl CacheConfig {
    /// The settings for a request on `route` (or on no route).
    pub fn settings(&self, route: Option<&str>) -> &CacheSettings {
        route
            .and_then(|r| self.routes.get(r))
            .unwrap_or(&self.default)
    }

    /// Whether any request can use the cache.
    pub fn any_enabled(&self) -> bool {
        self.default.enabled || self.routes.values().any(|s| s.enabled)
    }
}

/// Every cache section of a file: the top-level `cache:` and each route's (reported under
/// `routes.<name>.cache`), with whether a shared Redis is configured (`backend: redis` needs
/// one).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawCaches {
    /// The top-level `cache:` section.
    pub top: Option<RawCacheConfig>,
    /// Each route's `cache:` section, by route name.
    pub routes: Vec<(String, RawCacheConfig)>,
    /// Whether `redis.url` (or `PORTCULLIS_REDIS_URL`) is set.
    pub redis_configured: bool,
}

impl Block for CacheConfig {
    type Raw = RawCaches;
    type Valid = CacheConfig;

    fn validate(raw: RawCaches, at: &str) -> Result<CacheConfig, Issues> {
        let mut issues = Issues::new();
        let top = raw.top.unwrap_or_default();
        let default = issues
            .take(top.validate(&key(at, "cache")))
            .unwrap_or_default();
        if default.backend == CacheBackend::Redis && !raw.redis_configured {
            issues.at(
                &key(at, "cache"),
                "backend",
                "`redis` needs `redis.url` or PORTCULLIS_REDIS_URL",
            );
        }
        let mut routes = HashMap::new();
        for (name, route) in raw.routes {
            let path = key(&key(&key(at, "routes"), &name), "cache");
            issues.extend(route.route_issues(&path));
            if let Some(settings) = issues.take(top.overlay(&route).validate(&path)) {
                routes.insert(name, settings);
            }
        }
        issues.finish(CacheConfig { default, routes })
    }
}

fn parse_ttl(ttl: &RawTtl) -> Result<Duration, String> {
    const EXPECTED: &str =
        "expected a whole number of seconds or a duration such as 30s, 5m, 1h, 1d";
    let ttl = match ttl {
        RawTtl::Seconds(seconds) => u64::try_from(*seconds)
            .map(Duration::from_secs)
            .map_err(|_| format!("`{seconds}` is negative; {EXPECTED}"))?,
        RawTtl::Fraction(seconds) => return Err(format!("`{seconds}` is not whole; {EXPECTED}")),
        RawTtl::Text(text) => {
            parse_duration(text).ok_or_else(|| format!("`{text}` is not a duration; {EXPECTED}"))?
        }
    };
    if ttl.is_zero() {
        return Err("must be at least 1s".to_owned());
    }
    if ttl > MAX_TTL {
        return Err("must be at most 365d".to_owned());
    }
    Ok(ttl)
}

/// Parses `30s`, `5m`, `1h`, `1d` or a bare number of seconds.
fn parse_duration(text: &str) -> Option<Duration> {
    portcullis_core::parse_duration(text).ok()
}

/// The cache options a caller set with request headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheRequestOptions {
    /// `x-portcullis-cache-ttl`: how long to keep this request's answer.
    pub ttl: Option<Duration>,
    /// `x-portcullis-skip-cache: true`: neither read nor write the cache.
    pub skip: bool,
    /// `x-portcullis-cache-key`: the key to use instead of the request fingerprint
    /// (hash it with [`crate::fingerprint_custom`]).
    pub key: Option<String>,
}

/// A malformed cache header; the gateway answers it with a 400 naming the header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid `{header}` header: {reason}")]
pub struct CacheHeaderError {
    /// The header, by its canonical name.
    pub header: &'static str,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl CacheRequestOptions {
    /// Reads the cache headers (or their `cf-aig-*` aliases) from a request.
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, CacheHeaderError> {
        let mut options = CacheRequestOptions::default();
        for (name, alias) in HEADER_ALIASES {
            let Some(value) = headers.get(name).or_else(|| headers.get(alias)) else {
                continue;
            };
            let value = value.to_str().map_err(|_| CacheHeaderError {
                header: name,
                reason: "must be printable ASCII",
            })?;
            match name {
                CACHE_TTL_HEADER => options.ttl = Some(parse_ttl_header(value)?),
                SKIP_CACHE_HEADER => options.skip = parse_skip_header(value)?,
                _ => options.key = Some(parse_key_header(value)?.to_owned()),
            }
        }
        Ok(options)
    }
}

/// Parses `x-portcullis-cache-ttl`: a whole number of seconds, 1 to 30 days.
pub fn parse_ttl_header(value: &str) -> Result<Duration, CacheHeaderError> {
    let error = |reason| CacheHeaderError {
        header: CACHE_TTL_HEADER,
        reason,
    };
    let value = value.trim();
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(error("expected a whole number of seconds"));
    }
    // Too many digits for a u64 is far over the maximum, not a malformed number.
    let seconds: u64 = value.parse().unwrap_or(u64::MAX);
    let ttl = Duration::from_secs(seconds);
    if ttl.is_zero() {
        return Err(error("must be at least 1 second"));
    }
    if ttl > MAX_REQUEST_TTL {
        return Err(error("must be at most 30 days (2592000 seconds)"));
    }
    Ok(ttl)
}

/// Parses `x-portcullis-skip-cache`: `true` or `false` (also `1`/`0`, `yes`/`no`).
pub fn parse_skip_header(value: &str) -> Result<bool, CacheHeaderError> {
    let value = value.trim();
    for yes in ["true", "1", "yes"] {
        if value.eq_ignore_ascii_case(yes) {
            return Ok(true);
        }
    }
    for no in ["false", "0", "no"] {
        if value.eq_ignore_ascii_case(no) {
            return Ok(false);
        }
    }
    Err(CacheHeaderError {
        header: SKIP_CACHE_HEADER,
        reason: "expected true or false",
    })
}

/// Parses `x-portcullis-cache-key`: 1 to 256 bytes of printable ASCII (spaces allowed inside).
pub fn parse_key_header(value: &str) -> Result<&str, CacheHeaderError> {
    let error = |reason| CacheHeaderError {
        header: CACHE_KEY_HEADER,
        reason,
    };
    let value = value.trim();
    if value.is_empty() {
        return Err(error("must not be empty"));
    }
    if value.len() > MAX_CUSTOM_KEY_BYTES {
        return Err(error("longer than 256 bytes"));
    }
    if !value.bytes().all(|b| (b' '..=b'~').contains(&b)) {
        return Err(error("must be printable ASCII"));
    }
    Ok(value)
}
