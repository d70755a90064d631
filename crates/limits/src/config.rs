//! The `limits:`, `budgets:` and `limits_redis:` configuration sections as written, and their
//! validation into [`LimitRules`] and [`RedisOptions`].
//!
//! ```yaml
//! limits:
//!   - id: per-user-rpm          # optional; default `limit-<position>`
//!     scope: user               # global|key|user|team|model|provider|route|tool|server
//!     match: alice              # optional: only this value (else one counter per value)
//!     requests: 60              # exactly one of requests | tokens | concurrent
//!     window: 1m                # requests/tokens only: 500ms, 30s, 1m, 1h, 1d
//!     algorithm: gcra           # gcra (default) | sliding_window
//!     fail_open: true           # optional; default true for rate and concurrency rules
//!   - scope: key
//!     concurrent: 10
//! budgets:
//!   - id: team-monthly          # optional; default `budget-<position>`
//!     scope: team
//!     usd: 50
//!     period: monthly           # daily | weekly | monthly (UTC; weeks start Monday)
//!     fail_open: false          # optional; default false
//! limits_redis:                 # optional: share counters between replicas
//!   url: redis://127.0.0.1:6379
//!   key_prefix: "portcullis:limits:"
//!   timeout: 500ms
//!   lease_ttl: 60s
//! ```
//!
//! Every struct denies unknown fields. Validation reports every problem at once, each with its
//! key path (`limits[2].window: expected a duration like 60s, 1m, 1h`).

#[cfg(feature = "runtime")]
use std::fmt;
use std::time::Duration;

use portcullis_core::config::{Block, Issue, Issues, index, key};
use serde::{Deserialize, Deserializer};

#[cfg(feature = "runtime")]
use crate::backend::redis::RedisOptions;
use crate::rules::{
    Algorithm, BudgetRule, LimitRules, MAX_WINDOW, Period, RateRule, RateUnit, Rule, RuleKind,
    check_id, usd_to_micros,
};
use crate::scope::ScopeKind;

/// An entry of `limits:`: a rate or concurrency rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimitRule {
    /// Unique id; default `limit-<position>`.
    #[serde(default, deserialize_with = "scalar_text")]
    pub id: Option<String>,
    /// The scope kind.
    pub scope: String,
    /// Only this scope value.
    #[serde(default, rename = "match", deserialize_with = "scalar_text")]
    pub matches: Option<String>,
    /// Requests per window.
    #[serde(default)]
    pub requests: Option<u64>,
    /// Tokens per window.
    #[serde(default)]
    pub tokens: Option<u64>,
    /// Requests in flight at once.
    #[serde(default)]
    pub concurrent: Option<u32>,
    /// The window of a requests or tokens rule.
    #[serde(default, deserialize_with = "scalar_text")]
    pub window: Option<String>,
    /// `gcra` or `sliding_window`.
    #[serde(default)]
    pub algorithm: Option<String>,
    /// Admit when the backend is unreachable.
    #[serde(default)]
    pub fail_open: Option<bool>,
}

/// An entry of `budgets:`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBudgetRule {
    /// Unique id; default `budget-<position>`.
    #[serde(default, deserialize_with = "scalar_text")]
    pub id: Option<String>,
    /// The scope kind.
    pub scope: String,
    /// Only this scope value.
    #[serde(default, rename = "match", deserialize_with = "scalar_text")]
    pub matches: Option<String>,
    /// The limit in US dollars.
    pub usd: f64,
    /// `daily`, `weekly` or `monthly`.
    pub period: String,
    /// Admit when the backend is unreachable.
    #[serde(default)]
    pub fail_open: Option<bool>,
}

/// `limits_redis:`: share counters through Redis.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimitsRedis {
    /// `redis://…` (may hold a password: never log it).
    pub url: String,
    /// Key prefix; default `portcullis:limits:`.
    #[serde(default)]
    pub key_prefix: Option<String>,
    /// Longest wait per Redis operation; default 500ms.
    #[serde(default, deserialize_with = "scalar_text")]
    pub timeout: Option<String>,
    /// Lifetime of concurrency leases and budget reservations unless renewed; default 60s.
    #[serde(default, deserialize_with = "scalar_text")]
    pub lease_ttl: Option<String>,
}

/// Accepts any YAML scalar (`match: 42`, `window: 60s`) as text.
fn scalar_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Text(String),
        Unsigned(u64),
        Signed(i64),
        Float(f64),
        Bool(bool),
    }
    Ok(
        Option::<Scalar>::deserialize(deserializer)?.map(|scalar| match scalar {
            Scalar::Text(text) => text,
            Scalar::Unsigned(n) => n.to_string(),
            Scalar::Signed(n) => n.to_string(),
            Scalar::Float(n) => n.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }),
    )
}

const DURATION_HINT: &str = "expected a duration like 60s, 1m, 1h";

/// Parses `500ms`, `30s`, `1m`, `1h`, `1d` (a whole number and a unit).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(format!("`{text}`: {DURATION_HINT} (a unit is required)"));
    }
    portcullis_core::parse_duration(text).map_err(|e| match e {
        portcullis_core::DurationError::Invalid(_) => format!("`{text}`: {DURATION_HINT}"),
        portcullis_core::DurationError::OutOfRange(_) => format!("`{text}` is too long"),
    })
}

/// Validates `limits:` and `budgets:` into rules, reporting every problem with its key path.
pub fn validate(
    limits: &[RawLimitRule],
    budgets: &[RawBudgetRule],
) -> Result<LimitRules, Vec<Issue>> {
    validate_at(limits, budgets, "")
}

/// The `limits:` and `budgets:` blocks as written.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawLimitsBlock {
    /// `limits:`.
    pub limits: Vec<RawLimitRule>,
    /// `budgets:`.
    pub budgets: Vec<RawBudgetRule>,
}

impl Block for LimitRules {
    type Raw = RawLimitsBlock;
    type Valid = LimitRules;

    fn validate(raw: RawLimitsBlock, at: &str) -> Result<LimitRules, Issues> {
        validate_at(&raw.limits, &raw.budgets, at).map_err(Issues::from)
    }
}

fn validate_at(
    limits: &[RawLimitRule],
    budgets: &[RawBudgetRule],
    at: &str,
) -> Result<LimitRules, Vec<Issue>> {
    let mut issues = Vec::new();
    let mut rules: Vec<(String, Rule)> = Vec::new();
    for (position, raw) in limits.iter().enumerate() {
        let path = index(&key(at, "limits"), position);
        if let Some(rule) = limit_rule(&path, position, raw, &mut issues) {
            rules.push((path, rule));
        }
    }
    for (position, raw) in budgets.iter().enumerate() {
        let path = index(&key(at, "budgets"), position);
        if let Some(rule) = budget_rule(&path, position, raw, &mut issues) {
            rules.push((path, rule));
        }
    }
    for (position, (path, rule)) in rules.iter().enumerate() {
        for (field, message) in rule.problems() {
            let key = format!("{path}.{field}");
            if !issues.iter().any(|issue: &Issue| issue.path == key) {
                issues.push(Issue::new(key, message));
            }
        }
        if let Some((first, _)) = rules[..position].iter().find(|(_, r)| r.id == rule.id) {
            issues.push(Issue::new(
                format!("{path}.id"),
                format!("duplicate rule id `{}` (also used by {first})", rule.id),
            ));
        }
    }
    if issues.is_empty() {
        Ok(LimitRules::from_validated(
            rules.into_iter().map(|(_, rule)| rule).collect(),
        ))
    } else {
        Err(issues)
    }
}

fn scope(path: &str, text: &str, issues: &mut Vec<Issue>) -> Option<ScopeKind> {
    match text.parse::<ScopeKind>() {
        Ok(scope) => Some(scope),
        Err(error) => {
            issues.push(Issue::new(format!("{path}.scope"), error.to_string()));
            None
        }
    }
}

fn id(path: &str, raw: Option<&str>, default: String, issues: &mut Vec<Issue>) -> String {
    match raw {
        Some(id) => {
            if let Err(message) = check_id(id) {
                issues.push(Issue::new(format!("{path}.id"), message));
            }
            id.to_owned()
        }
        None => default,
    }
}

fn limit_rule(
    path: &str,
    index: usize,
    raw: &RawLimitRule,
    issues: &mut Vec<Issue>,
) -> Option<Rule> {
    let before = issues.len();
    let id = id(path, raw.id.as_deref(), format!("limit-{index}"), issues);
    let scope = scope(path, &raw.scope, issues);
    let given: Vec<&str> = [
        ("requests", raw.requests.is_some()),
        ("tokens", raw.tokens.is_some()),
        ("concurrent", raw.concurrent.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, present)| present.then_some(name))
    .collect();
    if given.len() != 1 {
        let found = if given.is_empty() {
            "none".to_owned()
        } else {
            given.join(" and ")
        };
        issues.push(Issue::new(
            path.to_owned(),
            format!(
                "exactly one of `requests`, `tokens` or `concurrent` is required (found {found})"
            ),
        ));
    }
    let window = match (&raw.window, raw.concurrent.is_some()) {
        (Some(_), true) => {
            issues.push(Issue::new(
                format!("{path}.window"),
                "a concurrency rule has no window",
            ));
            None
        }
        (Some(text), false) => match parse_duration(text) {
            Ok(window) if window.is_zero() || window > MAX_WINDOW => {
                issues.push(Issue::new(
                    format!("{path}.window"),
                    "must be between 1ms and 31d",
                ));
                None
            }
            Ok(window) => Some(window),
            Err(message) => {
                issues.push(Issue::new(format!("{path}.window"), message));
                None
            }
        },
        (None, false) => {
            issues.push(Issue::new(
                format!("{path}.window"),
                format!("required for a requests or tokens rule: {DURATION_HINT}"),
            ));
            None
        }
        (None, true) => None,
    };
    let algorithm = match (&raw.algorithm, raw.concurrent.is_some()) {
        (Some(_), true) => {
            issues.push(Issue::new(
                format!("{path}.algorithm"),
                "a concurrency rule has no algorithm",
            ));
            Algorithm::Gcra
        }
        (Some(text), false) => text.parse().unwrap_or_else(|message: String| {
            issues.push(Issue::new(format!("{path}.algorithm"), message));
            Algorithm::Gcra
        }),
        (None, _) => Algorithm::Gcra,
    };
    if issues.len() > before {
        return None;
    }
    let (scope, window) = (scope?, window);
    let kind = match (raw.requests, raw.tokens, raw.concurrent, window) {
        (Some(limit), None, None, Some(window)) => RuleKind::Rate(RateRule {
            unit: RateUnit::Requests,
            limit,
            window,
            algorithm,
        }),
        (None, Some(limit), None, Some(window)) => RuleKind::Rate(RateRule {
            unit: RateUnit::Tokens,
            limit,
            window,
            algorithm,
        }),
        (None, None, Some(max_in_flight), None) => RuleKind::Concurrency { max_in_flight },
        _ => return None,
    };
    Some(Rule {
        id: id.as_str().into(),
        scope,
        matches: raw.matches.as_deref().map(Into::into),
        fail_open: raw.fail_open.unwrap_or(true),
        kind,
    })
}

fn budget_rule(
    path: &str,
    index: usize,
    raw: &RawBudgetRule,
    issues: &mut Vec<Issue>,
) -> Option<Rule> {
    let before = issues.len();
    let id = id(path, raw.id.as_deref(), format!("budget-{index}"), issues);
    let scope = scope(path, &raw.scope, issues);
    let period = raw.period.parse::<Period>().map_err(|message| {
        issues.push(Issue::new(format!("{path}.period"), message));
    });
    if !raw.usd.is_finite() || raw.usd <= 0.0 {
        issues.push(Issue::new(
            format!("{path}.usd"),
            "must be a positive amount of US dollars",
        ));
    }
    if issues.len() > before {
        return None;
    }
    Some(Rule {
        id: id.as_str().into(),
        scope: scope?,
        matches: raw.matches.as_deref().map(Into::into),
        fail_open: raw.fail_open.unwrap_or(false),
        kind: RuleKind::Budget(BudgetRule {
            limit_micros: usd_to_micros(raw.usd),
            period: period.ok()?,
        }),
    })
}

/// A validated `limits_redis:` section.
#[cfg(feature = "runtime")]
#[derive(Clone)]
pub struct RedisSettings {
    /// The server URL (may hold a password: never log it).
    pub url: String,
    /// Backend options (system clock).
    pub options: RedisOptions,
}

#[cfg(feature = "runtime")]
impl fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &redacted_url(&self.url))
            .field("options", &self.options)
            .finish()
    }
}

/// The URL with any credentials replaced by `***`.
pub fn redacted_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end + 3 => {
            format!("{}***{}", &url[..scheme_end + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// Validates `limits_redis:`; keys are reported under `path` (e.g. `limits_redis`).
#[cfg(feature = "runtime")]
pub fn validate_redis(path: &str, raw: &RawLimitsRedis) -> Result<RedisSettings, Vec<Issue>> {
    let mut issues = Vec::new();
    let mut options = RedisOptions::default();
    if !(raw.url.starts_with("redis://")
        || raw.url.starts_with("rediss://")
        || raw.url.starts_with("redis+unix://")
        || raw.url.starts_with("unix://"))
    {
        issues.push(Issue::new(
            format!("{path}.url"),
            "must start with `redis://`, `rediss://` or `unix://`",
        ));
    }
    if let Some(prefix) = &raw.key_prefix {
        options.key_prefix.clone_from(prefix);
    }
    let mut duration = |field: &str, text: &Option<String>, target: &mut Duration| {
        if let Some(text) = text {
            match parse_duration(text) {
                Ok(value) if !value.is_zero() => *target = value,
                Ok(_) => issues.push(Issue::new(
                    format!("{path}.{field}"),
                    "must be longer than zero",
                )),
                Err(message) => issues.push(Issue::new(format!("{path}.{field}"), message)),
            }
        }
    };
    duration("timeout", &raw.timeout, &mut options.operation_timeout);
    duration("lease_ttl", &raw.lease_ttl, &mut options.lease_ttl);
    if options.lease_ttl < Duration::from_secs(1) {
        issues.push(Issue::new(
            format!("{path}.lease_ttl"),
            "must be at least 1s",
        ));
    }
    if issues.is_empty() {
        Ok(RedisSettings {
            url: raw.url.clone(),
            options,
        })
    } else {
        Err(issues)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3_600)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert!(parse_duration("60").is_err());
        assert_eq!(parse_duration("1.5m"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1w"), Ok(Duration::from_secs(604_800)));
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("1y").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
    }
}
