//! The blocks of the process itself — `listen`, `master_key`, `database`, `server`, `log`,
//! `upstream`, `redis`, `approvals` — as written and validated, each with the environment variable it
//! falls back to resolved by the caller. The other blocks live with the crates that use them
//! (`providers`, `failover`, `cache`, `cost`, `limits`, `semantic`, `identity`, `oidc`,
//! `oauth`); [`crate`] composes them all.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use portcullis_core::config::{Block, Issues, key};
use portcullis_providers::Secret;
use serde::Deserialize;

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8800";
/// Default database: a SQLite file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://portcullis.db";

/// Validates `listen` (`host:port`).
pub fn listen(text: &str, at: &str) -> Result<SocketAddr, Issues> {
    text.parse::<SocketAddr>().map_err(|_| {
        let mut issues = Issues::new();
        issues.at(
            at,
            "listen",
            format!("`{text}` is not a host:port socket address (e.g. 127.0.0.1:8800)"),
        );
        issues
    })
}

/// Validates `master_key`: at least 16 characters.
pub fn master_key(key_text: Option<String>, at: &str) -> Result<Option<Secret>, Issues> {
    let mut issues = Issues::new();
    if key_text.as_ref().is_some_and(|k| k.len() < 16) {
        issues.at(at, "master_key", "must be at least 16 characters long");
    }
    issues.finish(key_text.map(Secret::new))
}

/// `redis:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedis {
    /// `redis://host:port/db` (else `PORTCULLIS_REDIS_URL`).
    #[serde(default)]
    pub url: Option<String>,
}

/// Validates `redis.url`.
pub fn redis_url(url: Option<String>, at: &str) -> Result<Option<Secret>, Issues> {
    let mut issues = Issues::new();
    if let Some(u) = &url
        && !(u.starts_with("redis://") || u.starts_with("rediss://"))
    {
        issues.at(
            &key(at, "redis"),
            "url",
            "must start with `redis://` or `rediss://`",
        );
    }
    issues.finish(url.map(Secret::new))
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

/// Database settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseConfig {
    /// `sqlite://…` or `postgres://…`. May hold a password: never log it.
    pub url: Secret,
    /// Maximum pooled connections.
    pub max_connections: u32,
}

impl Block for DatabaseConfig {
    /// The block with `url` already resolved (the file, `PORTCULLIS_DATABASE_URL` or the
    /// default).
    type Raw = RawDatabase;
    type Valid = DatabaseConfig;

    fn validate(raw: RawDatabase, at: &str) -> Result<DatabaseConfig, Issues> {
        let mut issues = Issues::new();
        let url = raw.url.unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            issues.at(
                &key(at, "database"),
                "url",
                "must start with `sqlite:` or `postgres://`",
            );
        }
        issues.finish(DatabaseConfig {
            url: Secret::new(url),
            max_connections: raw.max_connections.unwrap_or(8).max(1),
        })
    }
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

    /// What opening the database would trip over that the URL alone does not show: a SQLite
    /// file in a directory that does not exist.
    pub fn preflight(&self, at: &str) -> Issues {
        let mut issues = Issues::new();
        if let Some(file) = self.sqlite_file()
            && let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.is_dir()
        {
            issues.at(
                &key(at, "database"),
                "url",
                format!(
                    "the directory `{}` of the SQLite database does not exist",
                    dir.display()
                ),
            );
        }
        issues
    }
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

impl Block for ServerConfig {
    type Raw = RawServer;
    type Valid = ServerConfig;

    fn validate(raw: RawServer, at: &str) -> Result<ServerConfig, Issues> {
        let path = key(at, "server");
        let mut issues = Issues::new();
        let mut duration = |name: &str, value: &Option<String>, default: Duration| match value {
            None => default,
            Some(v) => match portcullis_core::parse_duration(v) {
                Ok(d) if !d.is_zero() => d,
                _ => {
                    issues.at(
                        &path,
                        name,
                        format!("`{v}` is not a positive duration such as 500ms or 15s"),
                    );
                    default
                }
            },
        };
        let header_read_timeout = duration(
            "header_read_timeout",
            &raw.header_read_timeout,
            Duration::from_secs(15),
        );
        let body_read_timeout = duration(
            "body_read_timeout",
            &raw.body_read_timeout,
            Duration::from_secs(15),
        );
        let idle_timeout = duration("idle_timeout", &raw.idle_timeout, Duration::from_secs(60));
        let server = ServerConfig {
            max_request_body_bytes: raw.max_request_body_bytes.unwrap_or(16 * 1024 * 1024),
            shutdown_grace: Duration::from_secs(raw.shutdown_grace_seconds.unwrap_or(30)),
            header_read_timeout,
            body_read_timeout,
            min_body_rate: raw.min_body_rate.unwrap_or(64 * 1024),
            idle_timeout,
            max_connections: raw.max_connections.unwrap_or(4096),
            max_body_bytes_in_flight: raw.max_body_bytes_in_flight.unwrap_or(256 * 1024 * 1024),
            http2_max_concurrent_streams: raw.http2_max_concurrent_streams.unwrap_or(128),
            http2_max_header_list_size: raw.http2_max_header_list_size.unwrap_or(64 * 1024),
            http2_max_control_frames_per_second: raw
                .http2_max_control_frames_per_second
                .unwrap_or(50),
        };
        if server.max_request_body_bytes < 1024 {
            issues.at(&path, "max_request_body_bytes", "must be at least 1024");
        }
        if server.max_body_bytes_in_flight < server.max_request_body_bytes {
            issues.at(
                &path,
                "max_body_bytes_in_flight",
                "must be at least server.max_request_body_bytes",
            );
        }
        for (name, value) in [
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
                issues.at(&path, name, "must be at least 1");
            }
        }
        if server.http2_max_header_list_size < 1024 {
            issues.at(&path, "http2_max_header_list_size", "must be at least 1024");
        }
        issues.finish(server)
    }
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

impl Block for LogConfig {
    type Raw = RawLog;
    type Valid = LogConfig;

    fn validate(raw: RawLog, at: &str) -> Result<LogConfig, Issues> {
        let path = key(at, "log");
        let mut issues = Issues::new();
        let access = match &raw.access {
            None | Some(RawAccessLog::Switch(false)) => AccessLog::OFF,
            Some(RawAccessLog::Switch(true)) => AccessLog::ON,
            Some(RawAccessLog::Word(w)) if w == "off" => AccessLog::OFF,
            Some(RawAccessLog::Word(w)) if w == "on" => AccessLog::ON,
            Some(RawAccessLog::Ratio(r)) if (0.0..=1.0).contains(r) => AccessLog::ratio(*r),
            Some(other) => {
                let shown = match other {
                    RawAccessLog::Word(w) => w.clone(),
                    RawAccessLog::Ratio(r) => r.to_string(),
                    RawAccessLog::Switch(b) => b.to_string(),
                };
                issues.at(
                    &path,
                    "access",
                    format!("expected off, on or a share of requests from 0 to 1, got `{shown}`"),
                );
                AccessLog::OFF
            }
        };
        let log = LogConfig {
            bodies: raw.bodies.unwrap_or(false),
            queue_capacity: raw.queue_capacity.unwrap_or(65_536),
            batch_size: raw.batch_size.unwrap_or(512),
            flush_interval: Duration::from_millis(raw.flush_interval_ms.unwrap_or(200)),
            access,
        };
        if log.queue_capacity == 0 || log.batch_size == 0 {
            issues.push(path, "`queue_capacity` and `batch_size` must be positive");
        }
        issues.finish(log)
    }
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

impl Block for UpstreamConfig {
    type Raw = RawUpstream;
    type Valid = UpstreamConfig;

    fn validate(raw: RawUpstream, _at: &str) -> Result<UpstreamConfig, Issues> {
        Ok(UpstreamConfig {
            connect_timeout: Duration::from_millis(raw.connect_timeout_ms.unwrap_or(10_000)),
            first_byte_timeout: Duration::from_millis(raw.first_byte_timeout_ms.unwrap_or(600_000)),
            max_idle_per_host: raw.max_idle_per_host.unwrap_or(256),
        })
    }
}

/// `approvals:`: how long a held tool call waits for a decision, and who hears of it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApprovals {
    /// How long a held call may be decided and, once approved, used (default `1h`).
    #[serde(default)]
    pub ttl: Option<String>,
    /// How long approvals are kept once used, denied or expired (default `7d`).
    #[serde(default)]
    pub retention: Option<String>,
    /// Told of every new held call.
    #[serde(default)]
    pub webhook: Option<RawWebhook>,
}

/// `approvals.webhook` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    /// `https://…` or `http://…`.
    #[serde(default)]
    pub url: Option<String>,
    /// The HMAC-SHA256 key the notifications are signed with.
    #[serde(default)]
    pub secret: Option<String>,
}

/// Approvals of held tool calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalsConfig {
    /// How long a held call may be decided and, once approved, used.
    pub ttl: Duration,
    /// How long an approval is kept once used, denied or expired (a denied one at least
    /// until its expiry); then every replica's sweep deletes it.
    pub retention: Duration,
    /// Where new held calls are announced, signed.
    pub webhook: Option<WebhookConfig>,
}

impl Default for ApprovalsConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(3600),
            retention: Duration::from_secs(7 * 24 * 3600),
            webhook: None,
        }
    }
}

/// `responses:` as written: how long the Responses API's stored answers are kept.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResponses {
    /// How long a stored response is kept after it was created (default `30d`).
    #[serde(default)]
    pub retention: Option<String>,
}

/// The Responses API's stored answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponsesConfig {
    /// How long a stored response (`store: true`) is kept after it was created; then every
    /// replica's sweep deletes it, and `previous_response_id` naming it is a 404.
    pub retention: Duration,
}

impl Default for ResponsesConfig {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

impl Block for ResponsesConfig {
    type Raw = RawResponses;
    type Valid = ResponsesConfig;

    fn validate(raw: RawResponses, at: &str) -> Result<ResponsesConfig, Issues> {
        let path = key(at, "responses");
        let mut issues = Issues::new();
        let mut out = ResponsesConfig::default();
        if let Some(text) = &raw.retention {
            match portcullis_core::parse_duration(text) {
                Ok(d) if d >= Duration::from_secs(1) && d <= MAX_APPROVAL_RETENTION => {
                    out.retention = d;
                }
                Ok(_) => issues.at(&path, "retention", "must be from 1s to 3650d"),
                Err(e) => issues.at(&path, "retention", e.to_string()),
            }
        }
        issues.finish(out)
    }
}

/// `approvals.webhook`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// The URL each notification is POSTed to.
    pub url: String,
    /// The signing key (never shown).
    pub secret: Secret,
}

/// Longest `approvals.ttl`.
const MAX_APPROVAL_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// Longest `approvals.retention`.
const MAX_APPROVAL_RETENTION: Duration = Duration::from_secs(3650 * 24 * 3600);

impl Block for ApprovalsConfig {
    type Raw = RawApprovals;
    type Valid = ApprovalsConfig;

    fn validate(raw: RawApprovals, at: &str) -> Result<ApprovalsConfig, Issues> {
        let path = key(at, "approvals");
        let mut issues = Issues::new();
        let mut out = ApprovalsConfig::default();
        if let Some(text) = &raw.ttl {
            match portcullis_core::parse_duration(text) {
                Ok(d) if d >= Duration::from_secs(1) && d <= MAX_APPROVAL_TTL => out.ttl = d,
                Ok(_) => issues.at(&path, "ttl", "must be from 1s to 30d"),
                Err(e) => issues.at(&path, "ttl", e.to_string()),
            }
        }
        if let Some(text) = &raw.retention {
            match portcullis_core::parse_duration(text) {
                Ok(d) if d >= Duration::from_secs(1) && d <= MAX_APPROVAL_RETENTION => {
                    out.retention = d;
                }
                Ok(_) => issues.at(&path, "retention", "must be from 1s to 3650d"),
                Err(e) => issues.at(&path, "retention", e.to_string()),
            }
        }
        if let Some(hook) = raw.webhook {
            let at = key(&path, "webhook");
            let url = hook.url.unwrap_or_default();
            let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
            let host = url.split_once("://").map_or("", |(_, rest)| rest);
            if !scheme_ok || host.is_empty() || host.starts_with('/') {
                issues.at(&at, "url", "expected an http:// or https:// URL");
            }
            let secret = hook.secret.unwrap_or_default();
            if secret.len() < 16 {
                issues.at(&at, "secret", "must be at least 16 characters long");
            }
            out.webhook = Some(WebhookConfig {
                url,
                secret: Secret::new(secret),
            });
        }
        issues.finish(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(issues: Issues) -> Vec<String> {
        issues.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn stored_responses_are_kept_30_days_unless_told_otherwise() {
        let none = ResponsesConfig::validate(RawResponses::default(), "").unwrap();
        assert_eq!(none.retention, Duration::from_secs(30 * 24 * 3600));
        let week = ResponsesConfig::validate(
            RawResponses {
                retention: Some("7d".to_owned()),
            },
            "",
        )
        .unwrap();
        assert_eq!(week.retention, Duration::from_secs(7 * 24 * 3600));
        for (text, message) in [
            ("0s", "responses.retention: must be from 1s to 3650d"),
            (
                "a month",
                "responses.retention: `a month` is not a duration (e.g. 90, 250ms, 30s, 15m, 12h, 1d, 1h30m)",
            ),
        ] {
            let bad = ResponsesConfig::validate(
                RawResponses {
                    retention: Some(text.to_owned()),
                },
                "",
            )
            .unwrap_err();
            assert_eq!(shown(bad), [message]);
        }
    }

    #[test]
    fn approvals_default_to_an_hour_and_check_their_webhook_without_showing_its_secret() {
        let none = ApprovalsConfig::validate(RawApprovals::default(), "").unwrap();
        assert_eq!(none, ApprovalsConfig::default());
        assert_eq!(none.ttl, Duration::from_secs(3600));
        assert_eq!(none.retention, Duration::from_secs(7 * 24 * 3600));
        let set = ApprovalsConfig::validate(
            RawApprovals {
                ttl: Some("15m".to_owned()),
                retention: Some("30d".to_owned()),
                webhook: Some(RawWebhook {
                    url: Some("https://hooks.example.com/approvals".to_owned()),
                    secret: Some("0123456789abcdef-signing".to_owned()),
                }),
            },
            "",
        )
        .unwrap();
        assert_eq!(set.ttl, Duration::from_secs(900));
        assert_eq!(set.retention, Duration::from_secs(30 * 24 * 3600));
        let hook = set.webhook.unwrap();
        assert_eq!(hook.url, "https://hooks.example.com/approvals");
        assert_eq!(hook.secret.expose(), "0123456789abcdef-signing");
        let bad = ApprovalsConfig::validate(
            RawApprovals {
                ttl: Some("0s".to_owned()),
                retention: Some("500ms".to_owned()),
                webhook: Some(RawWebhook {
                    url: Some("ftp://x".to_owned()),
                    secret: Some("short-secret".to_owned()),
                }),
            },
            "",
        )
        .unwrap_err();
        let messages = shown(bad);
        assert_eq!(
            messages,
            [
                "approvals.ttl: must be from 1s to 30d",
                "approvals.retention: must be from 1s to 3650d",
                "approvals.webhook.url: expected an http:// or https:// URL",
                "approvals.webhook.secret: must be at least 16 characters long",
            ]
        );
        assert!(!messages.concat().contains("short-secret"));
        let unknown = ApprovalsConfig::validate(
            RawApprovals {
                ttl: Some("soon".to_owned()),
                retention: Some("a week".to_owned()),
                webhook: None,
            },
            "",
        )
        .unwrap_err();
        assert_eq!(
            shown(unknown),
            [
                "approvals.ttl: `soon` is not a duration (e.g. 90, 250ms, 30s, 15m, 12h, 1d, 1h30m)",
                "approvals.retention: `a week` is not a duration (e.g. 90, 250ms, 30s, 15m, 12h, 1d, 1h30m)",
            ]
        );
    }

    #[test]
    fn the_server_block_reports_a_bad_value_at_its_path() {
        let raw = RawServer {
            idle_timeout: Some("forever".to_owned()),
            ..RawServer::default()
        };
        assert_eq!(
            shown(ServerConfig::validate(raw, "").unwrap_err()),
            ["server.idle_timeout: `forever` is not a positive duration such as 500ms or 15s"]
        );
    }

    #[test]
    fn the_log_block_reports_a_bad_value_at_its_path() {
        let raw = RawLog {
            access: Some(RawAccessLog::Word("sometimes".to_owned())),
            ..RawLog::default()
        };
        assert_eq!(
            shown(LogConfig::validate(raw, "").unwrap_err()),
            ["log.access: expected off, on or a share of requests from 0 to 1, got `sometimes`"]
        );
    }

    #[test]
    fn the_database_block_reports_a_bad_value_at_its_path() {
        let raw = RawDatabase {
            url: Some("mysql://db/x".to_owned()),
            max_connections: None,
        };
        assert_eq!(
            shown(DatabaseConfig::validate(raw, "").unwrap_err()),
            ["database.url: must start with `sqlite:` or `postgres://`"]
        );
    }
}
