//! Configuration of the gateway.
//!
//! Two sources, one result ([`Config`]):
//! - **a YAML file** (`portcullis serve --config FILE`, or `PORTCULLIS_CONFIG`), where
//!   `${VAR}`, `${VAR:-default}` and the other Compose forms are interpolated from the
//!   environment in any scalar; an unset `${VAR}` standing alone is null (the setting is
//!   absent). Unknown keys are errors.
//! - **the environment alone** when there is no file: `PORTCULLIS_LISTEN`,
//!   `PORTCULLIS_MASTER_KEY`, `PORTCULLIS_DATABASE_URL`, and every provider whose conventional
//!   variables are set (`OPENAI_API_KEY`, `ANTHROPIC_API_KEY`, `GROQ_API_KEY`, …).
//!
//! With a file, settings the file leaves out fall back to the same environment variables, and
//! the environment's providers are used only when the file has no `providers` section.
//!
//! The raw file ([`raw`]) is validated into [`Config`]; every problem found is reported with the
//! key it concerns (`providers.openai.api_key: …`), all at once.

pub mod raw;
mod tree;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use portcullis_cache::{CacheBackend, CacheSettings};
use portcullis_cost::PriceOverrides;
use portcullis_failover::{BreakerSettings, RetryPolicy, Strategy, Timeouts};
use portcullis_limits::LimitRules;
use portcullis_providers::{
    CloudflareSpec, Provider, ProviderKind, ProviderSpec, Registry, RouteSpec, Secret, TargetSpec,
};
use portcullis_semantic::SemanticCacheSettings;

use crate::raw::{RawConfig, RawProvider};

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8800";
/// Default database: a SQLite file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://portcullis.db";

/// Where environment variables come from (the process, or a map in tests).
pub trait Environment {
    /// The variable's value, if set and not empty.
    fn var(&self, key: &str) -> Option<String>;
    /// Every variable, for `${…}` interpolation.
    fn all(&self) -> HashMap<String, String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Environment for ProcessEnv {
    fn var(&self, key: &str) -> Option<String> {
        std::env::var(key).ok().filter(|v| !v.is_empty())
    }
    fn all(&self) -> HashMap<String, String> {
        std::env::vars().collect()
    }
}

impl Environment for HashMap<String, String> {
    fn var(&self, key: &str) -> Option<String> {
        self.get(key).filter(|v| !v.is_empty()).cloned()
    }
    fn all(&self) -> HashMap<String, String> {
        self.clone()
    }
}

/// The validated runtime configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the configuration came from.
    pub source: Source,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The master key, when configured (otherwise one is generated on first start).
    pub master_key: Option<Secret>,
    /// Database settings.
    pub database: DatabaseConfig,
    /// Server settings.
    pub server: ServerConfig,
    /// Request log settings.
    pub log: LogConfig,
    /// Upstream HTTP client settings.
    pub upstream: UpstreamConfig,
    /// Providers, in resolution order.
    pub providers: Vec<ProviderSpec>,
    /// Routes.
    pub routes: Vec<RouteSpec>,
    /// Aliases.
    pub aliases: Vec<(String, String)>,
    /// Retries, timeouts, balancing and circuit breakers.
    pub failover: FailoverConfig,
    /// The shared Redis (`redis.url` or `PORTCULLIS_REDIS_URL`), when configured.
    pub redis_url: Option<Secret>,
    /// The exact response cache.
    pub cache: CacheConfig,
    /// Prices that replace or extend the built-in price table.
    pub prices: PriceOverrides,
    /// Rate, concurrency and budget rules (shared through Redis when `redis_url` is set).
    pub limits: LimitRules,
    /// The semantic cache.
    pub semantic: SemanticConfig,
    /// The vault's key-encryption key (`secret_key` or `PORTCULLIS_SECRET_KEY`).
    pub secret_key: Option<Secret>,
    /// Identity settings.
    pub identity: IdentityConfig,
}

/// `identity:` and `oauth:` validated.
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    /// How often each replica polls for tenancy changes.
    pub poll_interval: std::time::Duration,
    /// Enterprise token issuers.
    pub issuers: Vec<portcullis_oidc::IssuerConfig>,
    /// The OAuth server, when configured (it needs the vault's secret key).
    pub oauth: Option<portcullis_oauth::OAuthConfig>,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            poll_interval: std::time::Duration::from_secs(1),
            issuers: Vec::new(),
            oauth: None,
        }
    }
}

/// The semantic cache: settings of requests on no route, and each route's (`None`: off).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SemanticConfig {
    /// Settings for requests that name no route.
    pub default: Option<SemanticCacheSettings>,
    /// Each route's settings, by route name.
    pub routes: HashMap<String, Option<SemanticCacheSettings>>,
}

impl SemanticConfig {
    /// The settings for a request on `route` (or on no route), when the cache is on there.
    pub fn settings(&self, route: Option<&str>) -> Option<&SemanticCacheSettings> {
        match route.and_then(|r| self.routes.get(r)) {
            Some(s) => s.as_ref(),
            None => self.default.as_ref(),
        }
    }

    /// Every enabled block.
    pub fn all(&self) -> impl Iterator<Item = &SemanticCacheSettings> {
        self.default
            .iter()
            .chain(self.routes.values().filter_map(Option::as_ref))
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

/// How requests are retried, timed and spread across targets.
#[derive(Debug, Clone, PartialEq)]
pub struct FailoverConfig {
    /// The policy of requests that name no route, and the base of every route's policy.
    pub default: RoutePolicy,
    /// Each route's policy, by route name.
    pub routes: HashMap<String, RoutePolicy>,
    /// Per-target circuit breakers.
    pub breaker: BreakerSettings,
}

impl FailoverConfig {
    /// The policy for a request on `route` (or on no route).
    pub fn policy(&self, route: Option<&str>) -> &RoutePolicy {
        route
            .and_then(|r| self.routes.get(r))
            .unwrap_or(&self.default)
    }
}

/// Retries, time limits and target order of one route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RoutePolicy {
    /// How targets are ordered.
    pub strategy: Strategy,
    /// Retries of one target.
    pub retry: RetryPolicy,
    /// Time limits.
    pub timeouts: Timeouts,
}

/// Where a configuration came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A YAML file.
    File(PathBuf),
    /// The environment alone.
    Environment,
}

/// Database settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseConfig {
    /// `sqlite://…` or `postgres://…`. May hold a password: never log it.
    pub url: Secret,
    /// Maximum pooled connections.
    pub max_connections: u32,
}

/// Server settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Largest accepted request body.
    pub max_request_body_bytes: usize,
    /// How long graceful shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
    /// Time allowed to receive a request's headers; on HTTP/1.1 it also bounds the wait for
    /// the next request on a kept-alive connection.
    pub header_read_timeout: Duration,
    /// Time any request body may take, extended by one second per `min_body_rate` bytes.
    pub body_read_timeout: Duration,
    /// Slowest accepted body arrival after `body_read_timeout`, in bytes per second.
    pub min_body_rate: u64,
    /// How long a connection with no request in progress stays open.
    pub idle_timeout: Duration,
    /// Most client connections open at once.
    pub max_connections: usize,
    /// Most request-body bytes held in memory across all requests at once.
    pub max_body_bytes_in_flight: usize,
    /// Most concurrent HTTP/2 streams per connection.
    pub http2_max_concurrent_streams: u32,
    /// Largest HTTP/2 header list, in bytes.
    pub http2_max_header_list_size: u32,
    /// HTTP/2 PING and SETTINGS frames a client may send per second.
    pub http2_max_control_frames_per_second: u32,
}

/// Request log settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Store request and response bodies.
    pub bodies: bool,
    /// Records buffered between the request path and the writer.
    pub queue_capacity: usize,
    /// Records per database batch.
    pub batch_size: usize,
    /// Longest a record waits before its batch is written.
    pub flush_interval: Duration,
    /// Which requests get an access-log line on the process log.
    pub access: AccessLog,
}

/// Which requests get a line on the process log (`log.access`), decided per request from
/// random bits of its id, so a sample needs no shared state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AccessLog {
    per_million: u32,
}

impl AccessLog {
    /// No access log.
    pub const OFF: Self = Self { per_million: 0 };
    /// A line for every request.
    pub const ON: Self = Self {
        per_million: 1_000_000,
    };

    /// A line for this share of requests (clamped to `0..=1`).
    pub fn ratio(share: f64) -> Self {
        let share = if share.is_finite() {
            share.clamp(0.0, 1.0)
        } else {
            0.0
        };
        Self {
            per_million: (share * 1_000_000.0).round() as u32,
        }
    }

    /// Whether no request is logged.
    pub fn is_off(self) -> bool {
        self.per_million == 0
    }

    /// Whether the request whose id carries the random bits `random` gets a line.
    pub fn samples(self, random: u64) -> bool {
        self.per_million >= 1_000_000 || random % 1_000_000 < u64::from(self.per_million)
    }
}

/// Upstream HTTP client settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Time allowed until the upstream's response headers.
    pub first_byte_timeout: Duration,
    /// Idle pooled connections per host.
    pub max_idle_per_host: usize,
}

/// One problem with a configuration, and the key it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// Dotted path of the offending key (`providers.openai.api_key`).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The YAML is malformed or does not fit the schema.
    #[error("{0}")]
    Parse(String),
    /// The values are invalid.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Issue>),
}

impl ConfigError {
    /// The problems found, one per line, each naming its key.
    pub fn issues(&self) -> Vec<String> {
        match self {
            ConfigError::Invalid(issues) => issues.iter().map(ToString::to_string).collect(),
            other => vec![other.to_string()],
        }
    }
}

/// Loads the configuration: from `path` when given, else from the environment alone.
pub fn load(path: Option<&Path>, env: &dyn Environment) -> Result<Config, ConfigError> {
    match path {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.to_owned(),
                source,
            })?;
            from_yaml(&text, Source::File(p.to_owned()), env)
        }
        None => from_raw(RawConfig::default(), Source::Environment, env, false),
    }
}

/// Parses and validates YAML text.
///
/// Every problem is reported, each with its key: a value of the wrong type is reported and left
/// out, and the rest of the file is still read and validated. No message shows a value taken
/// from the environment: it shows the `${VAR}` reference the file wrote instead.
pub fn from_yaml(text: &str, source: Source, env: &dyn Environment) -> Result<Config, ConfigError> {
    parse(text, source, env, false)
}

/// What `portcullis check` reports: the file as [`load`] reads it, and in the same run what
/// `serve` would trip over ([`Config::preflight`]) — every problem at once.
pub fn check(path: &Path, env: &dyn Environment) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, Source::File(path.to_owned()), env, true)
}

fn parse(
    text: &str,
    source: Source,
    env: &dyn Environment,
    preflight: bool,
) -> Result<Config, ConfigError> {
    let mut tree = tree::read(text, &env.all()).map_err(ConfigError::Parse)?;
    let mut issues: Vec<Issue> = std::mem::take(&mut tree.issues)
        .into_iter()
        .map(|(k, m)| issue(k, m))
        .collect();
    let (raw, found) = tree.deserialize_all::<RawConfig>();
    issues.extend(found.into_iter().map(|(k, m)| issue(k, m)));
    let unreadable = !issues.is_empty();
    let (config, mut more) = validate(raw.unwrap_or_default(), source, env, unreadable);
    if preflight {
        more.extend(config.preflight());
    }
    if issues.is_empty() && more.is_empty() {
        return Ok(config);
    }
    issues.extend(more.into_iter().map(|i| {
        let message = tree.redact(&i.key, &i.message);
        Issue {
            key: i.key,
            message,
        }
    }));
    Err(ConfigError::Invalid(issues))
}

fn issue(key: impl Into<String>, message: impl Into<String>) -> Issue {
    Issue {
        key: key.into(),
        message: message.into(),
    }
}

/// Validates a raw configuration. `incomplete` says that parts of the file could not be read
/// (and were reported), so checks across blocks, which would report their absence, are skipped.
fn from_raw(
    raw: RawConfig,
    source: Source,
    env: &dyn Environment,
    incomplete: bool,
) -> Result<Config, ConfigError> {
    let (config, issues) = validate(raw, source, env, incomplete);
    if issues.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid(issues))
    }
}

/// The configuration a raw one describes (defaults standing in for invalid values), and the
/// problems found.
fn validate(
    raw: RawConfig,
    source: Source,
    env: &dyn Environment,
    incomplete: bool,
) -> (Config, Vec<Issue>) {
    let mut issues = Vec::new();

    let listen_text = raw
        .listen
        .or_else(|| env.var("PORTCULLIS_LISTEN"))
        .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
    let listen = listen_text.parse::<SocketAddr>().unwrap_or_else(|_| {
        issues.push(issue(
            "listen",
            format!("`{listen_text}` is not a host:port socket address (e.g. 127.0.0.1:8800)"),
        ));
        SocketAddr::from(([127, 0, 0, 1], 8800))
    });

    let master_key = raw
        .master_key
        .filter(|k| !k.is_empty())
        .or_else(|| env.var("PORTCULLIS_MASTER_KEY"))
        .map(Secret::new);
    if let Some(k) = &master_key
        && k.expose().len() < 16
    {
        issues.push(issue("master_key", "must be at least 16 characters long"));
    }

    let secret_key = raw
        .secret_key
        .filter(|k| !k.is_empty())
        .or_else(|| env.var("PORTCULLIS_SECRET_KEY"))
        .map(Secret::new);
    if let Some(k) = &secret_key
        && let Err(e) = portcullis_identity::Vault::from_key_text(k.expose())
    {
        issues.push(issue("secret_key", e.to_string()));
    }
    let mut identity = IdentityConfig::default();
    if let Some(raw_identity) = &raw.identity {
        if let Err(e) = portcullis_oidc::validate_issuers(&raw_identity.issuers) {
            match e {
                portcullis_oidc::ConfigError::Invalid(found) => {
                    issues.extend(found.into_iter().map(|i| issue(i.path, i.message)));
                }
                other => issues.push(issue("identity.issuers", other.to_string())),
            }
        }
        identity.issuers.clone_from(&raw_identity.issuers);
    }
    if let Some(oauth) = &raw.oauth {
        issues.extend(oauth.validate().into_iter().map(|m| issue("oauth", m)));
        if secret_key.is_none() {
            issues.push(issue(
                "oauth",
                "the OAuth server signs tokens with a key derived from `secret_key` (PORTCULLIS_SECRET_KEY); set it",
            ));
        }
        if let Some(oidc) = &oauth.sign_in.oidc
            && !identity.issuers.iter().any(|i| i.issuer == oidc.issuer)
        {
            issues.push(issue(
                "oauth.sign_in.oidc.issuer",
                format!(
                    "`{}` must also be listed under identity.issuers (its keys and claim mapping are used for the ID tokens)",
                    oidc.issuer
                ),
            ));
        }
        identity.oauth = Some(oauth.clone());
    }
    if let Some(raw_identity) = &raw.identity
        && let Some(p) = &raw_identity.poll_interval
    {
        match portcullis_failover::parse_duration(p) {
            Ok(d) if !d.is_zero() => identity.poll_interval = d,
            _ => issues.push(issue(
                "identity.poll_interval",
                format!("`{p}` is not a positive duration such as 500ms or 2s"),
            )),
        }
    }

    let db = raw.database.unwrap_or_default();
    let db_url = db
        .url
        .or_else(|| env.var("PORTCULLIS_DATABASE_URL"))
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
    if !(db_url.starts_with("sqlite:")
        || db_url.starts_with("postgres://")
        || db_url.starts_with("postgresql://"))
    {
        issues.push(issue(
            "database.url",
            "must start with `sqlite:` or `postgres://`",
        ));
    }
    let database = DatabaseConfig {
        url: Secret::new(db_url),
        max_connections: db.max_connections.unwrap_or(8).max(1),
    };

    let raw_server = raw.server.unwrap_or_default();
    let mut server_duration = |key: &str, value: &Option<String>, default: Duration| match value {
        None => default,
        Some(v) => match portcullis_failover::parse_duration(v) {
            Ok(d) if !d.is_zero() => d,
            _ => {
                issues.push(issue(
                    format!("server.{key}"),
                    format!("`{v}` is not a positive duration such as 500ms or 15s"),
                ));
                default
            }
        },
    };
    let header_read_timeout = server_duration(
        "header_read_timeout",
        &raw_server.header_read_timeout,
        Duration::from_secs(15),
    );
    let body_read_timeout = server_duration(
        "body_read_timeout",
        &raw_server.body_read_timeout,
        Duration::from_secs(15),
    );
    let idle_timeout = server_duration(
        "idle_timeout",
        &raw_server.idle_timeout,
        Duration::from_secs(60),
    );
    let server = ServerConfig {
        max_request_body_bytes: raw_server
            .max_request_body_bytes
            .unwrap_or(16 * 1024 * 1024),
        shutdown_grace: Duration::from_secs(raw_server.shutdown_grace_seconds.unwrap_or(30)),
        header_read_timeout,
        body_read_timeout,
        min_body_rate: raw_server.min_body_rate.unwrap_or(64 * 1024),
        idle_timeout,
        max_connections: raw_server.max_connections.unwrap_or(4096),
        max_body_bytes_in_flight: raw_server
            .max_body_bytes_in_flight
            .unwrap_or(256 * 1024 * 1024),
        http2_max_concurrent_streams: raw_server.http2_max_concurrent_streams.unwrap_or(128),
        http2_max_header_list_size: raw_server.http2_max_header_list_size.unwrap_or(64 * 1024),
        http2_max_control_frames_per_second: raw_server
            .http2_max_control_frames_per_second
            .unwrap_or(50),
    };
    if server.max_request_body_bytes < 1024 {
        issues.push(issue(
            "server.max_request_body_bytes",
            "must be at least 1024",
        ));
    }
    if server.max_body_bytes_in_flight < server.max_request_body_bytes {
        issues.push(issue(
            "server.max_body_bytes_in_flight",
            "must be at least server.max_request_body_bytes",
        ));
    }
    for (key, value) in [
        ("min_body_rate", server.min_body_rate),
        ("max_connections", server.max_connections as u64),
        (
            "http2_max_concurrent_streams",
            u64::from(server.http2_max_concurrent_streams),
        ),
        (
            "http2_max_control_frames_per_second",
            u64::from(server.http2_max_control_frames_per_second),
        ),
    ] {
        if value == 0 {
            issues.push(issue(format!("server.{key}"), "must be at least 1"));
        }
    }
    if server.http2_max_header_list_size < 1024 {
        issues.push(issue(
            "server.http2_max_header_list_size",
            "must be at least 1024",
        ));
    }

    let log = raw.log.unwrap_or_default();
    let log = LogConfig {
        bodies: log.bodies.unwrap_or(false),
        queue_capacity: log.queue_capacity.unwrap_or(65_536),
        batch_size: log.batch_size.unwrap_or(512),
        flush_interval: Duration::from_millis(log.flush_interval_ms.unwrap_or(200)),
        access: match &log.access {
            None | Some(raw::RawAccessLog::Switch(false)) => AccessLog::OFF,
            Some(raw::RawAccessLog::Switch(true)) => AccessLog::ON,
            Some(raw::RawAccessLog::Word(w)) if w == "off" => AccessLog::OFF,
            Some(raw::RawAccessLog::Word(w)) if w == "on" => AccessLog::ON,
            Some(raw::RawAccessLog::Ratio(r)) if (0.0..=1.0).contains(r) => AccessLog::ratio(*r),
            Some(other) => {
                let shown = match other {
                    raw::RawAccessLog::Word(w) => w.clone(),
                    raw::RawAccessLog::Ratio(r) => r.to_string(),
                    raw::RawAccessLog::Switch(b) => b.to_string(),
                };
                issues.push(issue(
                    "log.access",
                    format!("expected off, on or a share of requests from 0 to 1, got `{shown}`"),
                ));
                AccessLog::OFF
            }
        },
    };
    if log.queue_capacity == 0 || log.batch_size == 0 {
        issues.push(issue(
            "log",
            "`queue_capacity` and `batch_size` must be positive",
        ));
    }

    let up = raw.upstream.unwrap_or_default();
    let upstream = UpstreamConfig {
        connect_timeout: Duration::from_millis(up.connect_timeout_ms.unwrap_or(10_000)),
        first_byte_timeout: Duration::from_millis(up.first_byte_timeout_ms.unwrap_or(600_000)),
        max_idle_per_host: up.max_idle_per_host.unwrap_or(256),
    };

    let providers = match raw.providers {
        Some(map) => map
            .into_iter()
            .filter_map(|(name, p)| match provider_spec(&name, p) {
                Ok(spec) => Some(spec),
                Err(i) => {
                    issues.push(i);
                    None
                }
            })
            .collect(),
        None => providers_from_env(env),
    };
    for spec in &providers {
        if let Err(e) = Provider::new(spec.clone()) {
            issues.push(issue(format!("providers.{}", spec.name), e.to_string()));
        }
    }

    let mut failure_notes = Vec::new();
    let default_policy = RoutePolicy {
        strategy: Strategy::Ordered,
        retry: raw.retry.as_ref().map_or(RetryPolicy::default(), |r| {
            r.apply(RetryPolicy::default(), "retry", &mut failure_notes)
        }),
        timeouts: raw.timeouts.as_ref().map_or(
            Timeouts {
                first_byte: Some(upstream.first_byte_timeout),
                total: None,
            },
            |t| {
                t.apply(
                    Timeouts {
                        first_byte: Some(upstream.first_byte_timeout),
                        total: None,
                    },
                    "timeouts",
                    &mut failure_notes,
                )
            },
        ),
    };
    let breaker = raw
        .circuit_breaker
        .as_ref()
        .map_or(BreakerSettings::default(), |b| {
            b.apply(
                BreakerSettings::default(),
                "circuit_breaker",
                &mut failure_notes,
            )
        });
    let redis_url = raw
        .redis
        .as_ref()
        .and_then(|r| r.url.clone())
        .filter(|u| !u.is_empty())
        .or_else(|| env.var("PORTCULLIS_REDIS_URL"))
        .map(Secret::new);
    if let Some(u) = &redis_url
        && !(u.expose().starts_with("redis://") || u.expose().starts_with("rediss://"))
    {
        issues.push(issue(
            "redis.url",
            "must start with `redis://` or `rediss://`",
        ));
    }
    let global_cache = raw.cache.clone().unwrap_or_default();
    let cache_default = match global_cache.validate("cache") {
        Ok(s) => s,
        Err(found) => {
            issues.extend(found.into_iter().map(|i| issue(i.key, i.message)));
            CacheSettings::default()
        }
    };
    if cache_default.backend == CacheBackend::Redis && redis_url.is_none() {
        issues.push(issue(
            "cache.backend",
            "`redis` needs `redis.url` or PORTCULLIS_REDIS_URL",
        ));
    }
    let global_semantic = raw.semantic_cache.clone().unwrap_or_default();
    let semantic_default = match raw
        .semantic_cache
        .as_ref()
        .map(|s| s.validate("semantic_cache"))
    {
        Some(Ok(s)) => s,
        Some(Err(found)) => {
            issues.extend(found.into_iter().map(|i| issue(i.key, i.message)));
            None
        }
        None => None,
    };
    let mut route_semantic = HashMap::new();
    let mut route_caches = HashMap::new();
    let mut route_policies = HashMap::new();
    let mut routes = Vec::new();
    for (name, route) in raw.routes.unwrap_or_default() {
        let path = format!("routes.{name}");
        let mut policy = default_policy;
        if let Some(s) = &route.strategy {
            match Strategy::parse(s) {
                Some(s) => policy.strategy = s,
                None => issues.push(issue(
                    format!("{path}.strategy"),
                    format!("expected ordered, weighted or latency, got `{s}`"),
                )),
            }
        }
        if let Some(r) = &route.retry {
            policy.retry = r.apply(policy.retry, &format!("{path}.retry"), &mut failure_notes);
        }
        if let Some(t) = &route.timeouts {
            policy.timeouts = t.apply(
                policy.timeouts,
                &format!("{path}.timeouts"),
                &mut failure_notes,
            );
        }
        route_policies.insert(name.clone(), policy);
        if let Some(sc) = &route.semantic_cache {
            let key = format!("{path}.semantic_cache");
            match sc.over(&global_semantic).validate(&key) {
                Ok(s) => {
                    route_semantic.insert(name.clone(), s);
                }
                Err(found) => issues.extend(found.into_iter().map(|i| issue(i.key, i.message))),
            }
        }
        if let Some(c) = &route.cache {
            let found = c.route_issues(&format!("{path}.cache"));
            issues.extend(found.into_iter().map(|i| issue(i.key, i.message)));
            match global_cache.overlay(c).validate(&format!("{path}.cache")) {
                Ok(s) => {
                    route_caches.insert(name.clone(), s);
                }
                Err(found) => issues.extend(found.into_iter().map(|i| issue(i.key, i.message))),
            }
        }
        let mut targets = Vec::new();
        for (i, t) in route.targets.into_iter().enumerate() {
            match t.model.split_once('/') {
                Some((provider, model)) if !provider.is_empty() && !model.is_empty() => {
                    targets.push(TargetSpec {
                        provider: provider.to_owned(),
                        model: model.to_owned(),
                        weight: t.weight.unwrap_or(1),
                    });
                }
                _ => issues.push(issue(
                    format!("routes.{name}.targets[{i}]"),
                    format!("`{}` is not of the form provider/model", t.model),
                )),
            }
            if t.weight == Some(0) {
                issues.push(issue(
                    format!("routes.{name}.targets[{i}].weight"),
                    "must be at least 1",
                ));
            }
        }
        routes.push(RouteSpec { name, targets });
    }
    let aliases: Vec<(String, String)> = raw.aliases.unwrap_or_default().into_iter().collect();
    let prices = match &raw.prices {
        Some(raw_prices) => {
            match PriceOverrides::from_raw(raw_prices, providers.iter().map(|p| p.name.as_str())) {
                Ok(p) => p,
                Err(found) => {
                    issues.extend(found.into_iter().map(|i| issue(i.key, i.message)));
                    PriceOverrides::none()
                }
            }
        }
        None => PriceOverrides::none(),
    };
    let limits = match portcullis_limits::config::validate(
        raw.limits.as_deref().unwrap_or_default(),
        raw.budgets.as_deref().unwrap_or_default(),
    ) {
        Ok(rules) => rules,
        Err(found) => {
            issues.extend(found.into_iter().map(|i| issue(i.key, i.message)));
            LimitRules::default()
        }
    };
    for note in failure_notes {
        // The failover crate reports `key: message`.
        match note.split_once(": ") {
            Some((key, message)) => issues.push(issue(key, message)),
            None => issues.push(issue("failover", note)),
        }
    }

    let config = Config {
        source,
        listen,
        master_key,
        database,
        server,
        log,
        upstream,
        providers,
        routes,
        aliases,
        failover: FailoverConfig {
            default: default_policy,
            routes: route_policies,
            breaker,
        },
        redis_url,
        cache: CacheConfig {
            default: cache_default,
            routes: route_caches,
        },
        prices,
        limits,
        semantic: SemanticConfig {
            default: semantic_default,
            routes: route_semantic,
        },
        secret_key,
        identity,
    };
    if issues.is_empty()
        && !incomplete
        && let Err(e) = config.registry()
    {
        let key = match &e {
            portcullis_providers::RegistryError::UnknownRouteProvider { route, .. }
            | portcullis_providers::RegistryError::EmptyRoute(route) => format!("routes.{route}"),
            portcullis_providers::RegistryError::UnresolvableAlias { alias, .. } => {
                format!("aliases.{alias}")
            }
            portcullis_providers::RegistryError::DuplicateProvider(p) => format!("providers.{p}"),
        };
        issues.push(issue(key, e.to_string()));
    }
    (config, issues)
}

impl DatabaseConfig {
    /// The file of a SQLite database (`sqlite://data/gw.db?mode=rwc` → `data/gw.db`); `None`
    /// for PostgreSQL and in-memory SQLite.
    pub fn sqlite_file(&self) -> Option<PathBuf> {
        let url = self.url.expose();
        let rest = url.strip_prefix("sqlite:")?;
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        let path = rest.split('?').next().unwrap_or_default();
        (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
    }
}

impl Config {
    /// What `serve` would trip over that the file's values alone do not show: a local
    /// embedding model directory that is missing or lacks its files, a SQLite database in a
    /// directory that does not exist. Checked by `portcullis check` and before serving.
    pub fn preflight(&self) -> Vec<Issue> {
        let mut issues = Vec::new();
        if let Some(file) = self.database.sqlite_file()
            && let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.is_dir()
        {
            issues.push(issue(
                "database.url",
                format!(
                    "the directory `{}` of the SQLite database does not exist",
                    dir.display()
                ),
            ));
        }
        let mut blocks: Vec<(String, &SemanticCacheSettings)> = Vec::new();
        if let Some(s) = &self.semantic.default {
            blocks.push(("semantic_cache".to_owned(), s));
        }
        let mut routes: Vec<_> = self.semantic.routes.iter().collect();
        routes.sort_by(|a, b| a.0.cmp(b.0));
        for (route, s) in routes {
            if let Some(s) = s {
                blocks.push((format!("routes.{route}.semantic_cache"), s));
            }
        }
        let mut seen = Vec::new();
        for (key, settings) in blocks {
            let portcullis_semantic::EmbedderSpec::Local(dir) = &settings.embedder else {
                continue;
            };
            if seen.contains(&dir) {
                continue;
            }
            seen.push(dir);
            let key = format!("{key}.embedder.local");
            if !dir.is_dir() {
                issues.push(issue(
                    key,
                    format!("the model directory `{}` does not exist", dir.display()),
                ));
                continue;
            }
            for file in ["config.json", "tokenizer.json", "model.safetensors"] {
                let path = dir.join(file);
                if let Err(e) = std::fs::File::open(&path) {
                    issues.push(issue(
                        key.clone(),
                        format!("cannot read `{}`: {e}", path.display()),
                    ));
                }
            }
        }
        issues
    }
}

impl Config {
    /// Builds the provider registry this configuration describes.
    pub fn registry(&self) -> Result<Registry, portcullis_providers::RegistryError> {
        let providers = self
            .providers
            .iter()
            .filter_map(|s| Provider::new(s.clone()).ok())
            .collect();
        Registry::new(providers, self.routes.clone(), self.aliases.clone())
    }
}

fn provider_spec(name: &str, p: RawProvider) -> Result<ProviderSpec, Issue> {
    let kind_id = p.kind.clone().unwrap_or_else(|| name.to_owned());
    let kind = ProviderKind::from_id(&kind_id).ok_or_else(|| {
        let known: Vec<&str> = ProviderKind::ALL.iter().map(|k| k.id()).collect();
        issue(
            format!("providers.{name}.kind"),
            format!(
                "unknown provider kind `{kind_id}`; known kinds: {}",
                known.join(", ")
            ),
        )
    })?;
    if name.is_empty() || name.contains('/') {
        return Err(issue(
            format!("providers.{name}"),
            "provider names must be non-empty and contain no `/`",
        ));
    }
    let cloudflare_keys = p.account_id.is_some()
        || p.gateway_id.is_some()
        || p.upstream.is_some()
        || p.gateway_token.is_some();
    if cloudflare_keys && kind != ProviderKind::Cloudflare {
        return Err(issue(
            format!("providers.{name}"),
            "`account_id`, `gateway_id`, `upstream` and `gateway_token` apply only to kind `cloudflare`",
        ));
    }
    let cloudflare = if kind == ProviderKind::Cloudflare {
        match (p.account_id, p.gateway_id) {
            (Some(account_id), Some(gateway_id)) => Some(CloudflareSpec {
                account_id,
                gateway_id,
                upstream: p.upstream.unwrap_or_else(|| "compat".to_owned()),
                token: p.gateway_token.map(Secret::new),
            }),
            _ if p.base_url.is_some() => None,
            _ => {
                return Err(issue(
                    format!("providers.{name}"),
                    "kind `cloudflare` needs `account_id` and `gateway_id`",
                ));
            }
        }
    } else {
        None
    };
    Ok(ProviderSpec {
        name: name.to_owned(),
        kind,
        base_url: p.base_url,
        api_key: p.api_key.filter(|k| !k.is_empty()).map(Secret::new),
        headers: p
            .headers
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, Secret::new(v)))
            .collect(),
        models: p.models.unwrap_or_default(),
        cloudflare,
        default_max_tokens: p.default_max_tokens,
    })
}

/// Providers enabled by their conventional environment variables.
pub fn providers_from_env(env: &dyn Environment) -> Vec<ProviderSpec> {
    let mut out = Vec::new();
    for kind in ProviderKind::ALL {
        let preset = kind.preset();
        let key = preset.key_env.iter().find_map(|k| env.var(k));
        let base_url = preset.base_url_env.and_then(|k| env.var(k));
        let mut spec = ProviderSpec::new(preset.id, kind);
        spec.api_key = key.clone().map(Secret::new);
        spec.base_url = base_url.clone();
        let enabled = match kind {
            ProviderKind::Custom => false,
            ProviderKind::Cloudflare => {
                match (
                    env.var("CLOUDFLARE_ACCOUNT_ID"),
                    env.var("CLOUDFLARE_GATEWAY_ID"),
                ) {
                    (Some(account_id), Some(gateway_id)) => {
                        spec.cloudflare = Some(CloudflareSpec {
                            account_id,
                            gateway_id,
                            upstream: env
                                .var("CLOUDFLARE_AIG_UPSTREAM")
                                .unwrap_or_else(|| "compat".to_owned()),
                            token: env.var("CLOUDFLARE_AIG_TOKEN").map(Secret::new),
                        });
                        true
                    }
                    _ => false,
                }
            }
            _ if preset.key_optional => base_url.is_some(),
            _ => key.is_some(),
        };
        if enabled {
            out.push(spec);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn zero_config_enables_providers_from_the_environment() {
        let e = env(&[
            ("OPENAI_API_KEY", "sk-1"),
            ("OPENAI_BASE_URL", "http://127.0.0.1:9/v1"),
            ("ANTHROPIC_API_KEY", "sk-ant"),
            ("GROQ_API_KEY", "gsk"),
            ("OLLAMA_BASE_URL", "http://127.0.0.1:11434/v1"),
            ("PORTCULLIS_LISTEN", "127.0.0.1:9999"),
        ]);
        let c = load(None, &e).unwrap();
        let names: Vec<&str> = c.providers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, vec!["openai", "anthropic", "groq", "ollama"]);
        assert_eq!(c.listen.port(), 9999);
        assert_eq!(
            c.providers[0].base_url.as_deref(),
            Some("http://127.0.0.1:9/v1")
        );
        assert_eq!(c.database.url.expose(), DEFAULT_DATABASE_URL);
        assert!(c.master_key.is_none());
    }

    #[test]
    fn yaml_with_interpolation_routes_and_aliases() {
        let yaml = r#"
listen: 127.0.0.1:8811
master_key: ${MASTER}
database:
  url: ${DB:-sqlite://x.db}
providers:
  openai:
    api_key: ${OPENAI_API_KEY}
    base_url: "http://127.0.0.1:${PORT}/v1"
  claude:
    kind: anthropic
    api_key: ${ANTHROPIC_API_KEY}
  edge:
    kind: cloudflare
    account_id: acct
    gateway_id: gw
    upstream: openai
    gateway_token: ${CF_TOKEN}
    api_key: ${OPENAI_API_KEY}
routes:
  smart:
    targets:
      - claude/claude-sonnet-4-5
      - model: openai/gpt-4o
        weight: 3
aliases:
  fast: openai/gpt-4o-mini
"#;
        let e = env(&[
            ("MASTER", "a-very-long-master-key"),
            ("OPENAI_API_KEY", "sk-1"),
            ("ANTHROPIC_API_KEY", "sk-2"),
            ("PORT", "4000"),
            ("CF_TOKEN", "cft"),
        ]);
        let c = from_yaml(yaml, Source::Environment, &e).unwrap();
        assert_eq!(
            c.master_key.as_ref().unwrap().expose(),
            "a-very-long-master-key"
        );
        assert_eq!(c.database.url.expose(), "sqlite://x.db");
        assert_eq!(
            c.providers[0].base_url.as_deref(),
            Some("http://127.0.0.1:4000/v1")
        );
        assert_eq!(c.providers[1].kind, ProviderKind::Anthropic);
        assert_eq!(c.routes[0].targets[1].weight, 3);
        let reg = c.registry().unwrap();
        assert_eq!(
            reg.resolve("fast")
                .unwrap()
                .primary()
                .unwrap()
                .model
                .as_ref(),
            "gpt-4o-mini"
        );
    }

    #[test]
    fn delegated_sign_in_needs_a_configured_issuer_and_a_secret_key() {
        let e = env(&[("OIDC_SECRET", "from-the-environment")]);
        let yaml = |issuers: &str| {
            format!(
                concat!(
                    "secret_key: MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n{}",
                    "oauth:\n  sign_in:\n    local: false\n    oidc:\n",
                    "      issuer: https://idp.example\n      client_id: gw\n",
                    "      client_secret: ${{OIDC_SECRET}}\n",
                    "providers:\n  openai:\n    api_key: k\n"
                ),
                issuers
            )
        };
        let config = from_yaml(
            &yaml("identity:\n  issuers:\n    - issuer: https://idp.example\n      audience: gw\n"),
            Source::Environment,
            &e,
        )
        .unwrap();
        let oidc = config.identity.oauth.unwrap().sign_in.oidc.unwrap();
        assert_eq!(oidc.client_secret.as_deref(), Some("from-the-environment"));
        assert!(!format!("{oidc:?}").contains("from-the-environment"));

        let err = from_yaml(&yaml(""), Source::Environment, &e).unwrap_err();
        assert!(
            err.issues()
                .iter()
                .any(|i| i.starts_with("oauth.sign_in.oidc.issuer:")),
            "{err}"
        );
        let err = from_yaml(
            "oauth:\n  sign_in:\n    local: false\nproviders:\n  openai:\n    api_key: k\n",
            Source::Environment,
            &e,
        )
        .unwrap_err();
        assert!(err.to_string().contains("`oidc` must be set"), "{err}");
    }

    #[test]
    fn errors_name_the_offending_key() {
        let e = env(&[]);
        let err = from_yaml(
            "providers:\n  openai:\n    kindd: openai\n",
            Source::Environment,
            &e,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("providers.openai"), "{err}");
        assert!(err.contains("kindd"), "{err}");

        let err = from_yaml("listen: nowhere\nproviders:\n  openai: {}\n  x:\n    kind: martian\nroutes:\n  r:\n    targets: [gpt-4o]\n", Source::Environment, &e).unwrap_err();
        let issues = err.issues();
        assert!(
            issues.iter().any(|i| i.starts_with("listen:")),
            "{issues:?}"
        );
        assert!(
            issues
                .iter()
                .any(|i| i.starts_with("providers.openai: an API key is required")),
            "{issues:?}"
        );
        assert!(
            issues
                .iter()
                .any(|i| i.starts_with("providers.x.kind: unknown provider kind `martian`")),
            "{issues:?}"
        );
        assert!(
            issues.iter().any(|i| i.starts_with("routes.r.targets[0]")),
            "{issues:?}"
        );

        let err = from_yaml(
            "providers:\n  openai:\n    api_key: k\nroutes:\n  r:\n    targets: [nope/m]\n",
            Source::Environment,
            &e,
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("routes.r:"), "{err}");

        let err = from_yaml("listen: [1, 2\n", Source::Environment, &e).unwrap_err();
        assert!(matches!(err, ConfigError::Parse(_)));
    }

    #[test]
    fn failover_blocks_layer_global_then_route() {
        let yaml = r#"
providers:
  openai: {api_key: k}
  anthropic: {api_key: k}
retry: {max_attempts: 3, delay: 100ms}
timeouts: {first_byte: 20s}
circuit_breaker: {failures: 2, open_for: 1m}
routes:
  smart:
    strategy: latency
    targets: [anthropic/claude-sonnet-4-5, openai/gpt-4o]
    retry: {backoff: constant}
    timeouts: {total: 2m}
"#;
        let c = from_yaml(yaml, Source::Environment, &env(&[])).unwrap();
        let d = c.failover.policy(None);
        assert_eq!(d.retry.max_attempts, 3);
        assert_eq!(d.timeouts.first_byte, Some(Duration::from_secs(20)));
        let r = c.failover.policy(Some("smart"));
        assert_eq!(r.strategy, Strategy::Latency);
        assert_eq!(r.retry.max_attempts, 3, "inherited from the global block");
        assert_eq!(r.retry.backoff, portcullis_failover::Backoff::Constant);
        assert_eq!(r.timeouts.first_byte, Some(Duration::from_secs(20)));
        assert_eq!(r.timeouts.total, Some(Duration::from_secs(120)));
        assert_eq!(c.failover.breaker.failure_threshold, 2);
        assert_eq!(c.failover.policy(Some("other")), d);

        let err = from_yaml(
            "providers:\n  openai: {api_key: k}\nretry: {max_attempts: 99}\nroutes:\n  r:\n    strategy: random\n    targets: [openai/gpt-4o]\n    timeouts: {first_byte: soon}\n",
            Source::Environment,
            &env(&[]),
        )
        .unwrap_err();
        let issues = err.issues();
        for key in [
            "retry.max_attempts:",
            "routes.r.strategy:",
            "routes.r.timeouts.first_byte:",
        ] {
            assert!(
                issues.iter().any(|i| i.starts_with(key)),
                "{key} in {issues:?}"
            );
        }
    }

    #[test]
    fn interpolated_values_never_appear_in_any_message() {
        let secret = "corp-s3cr3t-9f8e7d";
        let e = env(&[
            ("CORP_KEY", secret),
            ("SHORT", "x1"),
            ("PORTCULLIS_MASTER_KEY_IN_FILE", "abc"),
        ]);
        // A URL the provider refuses, a type error, an unknown key and a short master key,
        // all in a file that interpolates.
        let yaml = concat!(
            "master_key: ${PORTCULLIS_MASTER_KEY_IN_FILE}\n",
            "providers:\n",
            "  corp:\n",
            "    kind: openai\n",
            "    api_key: ${CORP_KEY}\n",
            "    base_url: svc:${CORP_KEY}@corp.example/v1\n",
            "  other:\n",
            "    kind: openai\n",
            "    api_key: ${CORP_KEY}\n",
            "    default_max_tokens: ${CORP_KEY}\n",
            "    modles: [a]\n",
            "log:\n",
            "  bodies: ${SHORT}\n",
            "database:\n",
            "  url: mysql://u:${CORP_KEY}@db/x\n",
        );
        let err = from_yaml(yaml, Source::Environment, &e).unwrap_err();
        let issues = err.issues();
        let all = issues.join("\n");
        assert!(!all.contains(secret), "{all}");
        assert!(!all.contains("x1"), "{all}");
        assert!(!all.contains("abc"), "{all}");
        assert!(!all.contains("invalid interpolated"), "{all}");
        for key in [
            "master_key:",
            "providers.corp:",
            "providers.other.default_max_tokens:",
            "providers.other:",
            "log.bodies:",
            "database.url:",
        ] {
            assert!(
                issues.iter().any(|i| i.starts_with(key)),
                "{key} in {issues:#?}"
            );
        }
        assert!(all.contains("${CORP_KEY}"), "{all}");
        assert!(all.contains("modles"), "{all}");
    }

    #[test]
    fn every_problem_is_reported_in_one_run() {
        let yaml = concat!(
            "listen: nowhere\n",
            "server:\n  max_request_body_bytes: lots\n",
            "log:\n  batch_size: -1\n  bodies: maybe\n",
            "providers:\n  openai:\n    api_key: k\n    kindd: x\n",
            "routes:\n  r:\n    targets: [gpt-4o]\n  s:\n    strategy: 5\n",
            "retry: {max_attempts: 99}\n",
            "typo_block: {}\n",
        );
        let err = from_yaml(yaml, Source::Environment, &env(&[])).unwrap_err();
        let issues = err.issues();
        for key in [
            "listen:",
            "server.max_request_body_bytes:",
            "log.batch_size:",
            "log.bodies:",
            "providers.openai: unknown field `kindd`",
            "routes.r.targets[0]:",
            "routes.s: missing field `targets`",
            "retry.max_attempts:",
            "(top level): unknown field `typo_block`",
        ] {
            assert!(
                issues.iter().any(|i| i.starts_with(key)),
                "{key} in {issues:#?}"
            );
        }
    }

    #[test]
    fn unset_variables_are_named() {
        let yaml = concat!(
            "providers:\n",
            "  openai:\n",
            "    api_key: ${OPENAI_API_KEY}\n",
            "  corp:\n",
            "    kind: openai\n",
            "    api_key: k\n",
            "    base_url: https://svc:${CORP_KEY}@corp.example/v1\n",
            "  required:\n",
            "    kind: openai\n",
            "    api_key: ${REQUIRED_KEY:?set it to the vendor key}\n",
        );
        let err = from_yaml(yaml, Source::Environment, &env(&[])).unwrap_err();
        let issues = err.issues();
        let all = issues.join("\n");
        assert!(
            issues
                .iter()
                .any(|i| i.starts_with("providers.corp.base_url: `${CORP_KEY}` is not set")),
            "{all}"
        );
        assert!(
            issues
                .iter()
                .any(|i| i.starts_with("providers.openai: an API key")
                    && i.contains("`${OPENAI_API_KEY}` is not set")),
            "{all}"
        );
        assert!(
            all.contains("`${REQUIRED_KEY}` is not set: set it to the vendor key"),
            "{all}"
        );

        // Where the setting is required, the issue names the variable.
        let err = from_yaml(
            "providers:\n  openai:\n    api_key: k\nroutes:\n  r:\n    targets: ${TARGETS}\n",
            Source::Environment,
            &env(&[]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("routes.r.targets: ") && err.contains("(`${TARGETS}` is not set)"),
            "{err}"
        );

        // A sole unset reference leaves the setting out, which is fine where it is optional.
        let c = from_yaml(
            "master_key: ${PORTCULLIS_MASTER_KEY}\nproviders:\n  openai:\n    api_key: k\n",
            Source::Environment,
            &env(&[]),
        )
        .unwrap();
        assert!(c.master_key.is_none());
    }

    #[test]
    fn yaml_typing_follows_the_target() {
        let yaml = concat!(
            "master_key: ${NUMERIC_KEY}\n",
            "database:\n  max_connections: ${CONNS}\n",
            "providers:\n  openai:\n    api_key: 12345\n    models: [\"1.0\", 2]\n",
            "base: &base {max_attempts: 2}\n",
        );
        let e = env(&[("NUMERIC_KEY", "12345678901234567890"), ("CONNS", "3")]);
        let err = from_yaml(yaml, Source::Environment, &e).unwrap_err();
        assert!(err.to_string().contains("unknown field `base`"), "{err}");
        let c = from_yaml(
            &yaml.replace(
                "base: &base {max_attempts: 2}\n",
                "retry: {max_attempts: 0x2}\n",
            ),
            Source::Environment,
            &e,
        )
        .unwrap();
        assert_eq!(c.master_key.unwrap().expose(), "12345678901234567890");
        assert_eq!(c.database.max_connections, 3);
        assert_eq!(c.providers[0].models, vec!["1.0", "2"]);
        assert_eq!(c.failover.default.retry.max_attempts, 2);
    }

    #[test]
    fn access_log_is_off_on_or_a_share() {
        let access = |v: &str| {
            from_yaml(
                &format!("log:\n  access: {v}\nproviders:\n  openai:\n    api_key: k\n"),
                Source::Environment,
                &env(&[]),
            )
            .map(|c| c.log.access)
        };
        assert_eq!(access("off").unwrap(), AccessLog::OFF);
        assert_eq!(access("false").unwrap(), AccessLog::OFF);
        assert_eq!(access("on").unwrap(), AccessLog::ON);
        assert_eq!(access("true").unwrap(), AccessLog::ON);
        assert_eq!(access("1").unwrap(), AccessLog::ON);
        let tenth = access("0.1").unwrap();
        let sampled = (0..100_000u64)
            .filter(|i| tenth.samples(i.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
            .count();
        assert!((9_000..11_000).contains(&sampled), "{sampled}");
        for bad in ["sometimes", "1.5", "-0.1"] {
            let err = access(bad).unwrap_err().to_string();
            assert!(err.starts_with("log.access:"), "{bad}: {err}");
        }
        let c = from_yaml(
            "providers:\n  openai:\n    api_key: k\n",
            Source::Environment,
            &env(&[]),
        )
        .unwrap();
        assert!(c.log.access.is_off(), "off by default");
    }

    #[test]
    fn secrets_never_appear_in_errors() {
        let e = env(&[("OPENAI_API_KEY", "sk-super-secret")]);
        let err = from_yaml(
            "providers:\n  openai:\n    api_key: ${OPENAI_API_KEY}\n    base_url: 5\n",
            Source::Environment,
            &e,
        )
        .map(|_| ())
        .unwrap_err()
        .to_string();
        assert!(!err.contains("sk-super-secret"), "{err}");
        let c = from_yaml(
            "providers:\n  openai:\n    api_key: ${OPENAI_API_KEY}\n",
            Source::Environment,
            &e,
        )
        .unwrap();
        assert!(!format!("{c:?}").contains("sk-super-secret"));
    }
}
