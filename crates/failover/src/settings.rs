//! The failover blocks of the configuration file, as written and as validated.
//!
//! Each block may appear globally and on a route; a route's block overrides the global one
//! key by key, and per-request headers override both. Every field is optional so that blocks
//! layer; [`RawRetry::apply`] and friends fold one layer onto a base and report each problem
//! with its key path.
//!
//! ```yaml
//! retry: {max_attempts: 3, delay: 200ms, backoff: exponential, max_delay: 10s, jitter: true}
//! timeouts: {first_byte: 30s, total: 5m}
//! circuit_breaker: {failures: 5, open_for: 30s}
//! ```
//!
//! Durations are written `250ms`, `30s`, `5m`, `1h`, `1d`, or as a number of seconds.

use std::time::Duration;

use std::collections::HashMap;

use portcullis_core::config::{Block, Issues, key};
use serde::{Deserialize, Serialize};

use crate::balance::Strategy;
use crate::breaker::BreakerSettings;
use crate::retry::{Backoff, MAX_ATTEMPTS_CEILING, RetryPolicy};

/// A duration as written: `250ms`, `30s`, `5m`, `1h`, `1d`, or a number of seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RawDuration {
    /// With a unit.
    Text(String),
    /// Seconds.
    Seconds(f64),
}

impl RawDuration {
    /// The duration, or why it is not one.
    pub fn to_duration(&self) -> Result<Duration, String> {
        match self {
            RawDuration::Text(s) => parse_duration(s),
            RawDuration::Seconds(s) if s.is_finite() && *s >= 0.0 => {
                Duration::try_from_secs_f64(*s).map_err(|_| "duration out of range".to_owned())
            }
            RawDuration::Seconds(_) => Err("expected a non-negative duration".to_owned()),
        }
    }
}

/// Parses `250ms`, `30s`, `5m`, `1h`, `1d` or a bare number of seconds (fractions allowed).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    portcullis_core::parse_duration(s).map_err(|e| e.to_string())
}

fn duration(
    raw: &Option<RawDuration>,
    path: &str,
    key: &str,
    issues: &mut Issues,
) -> Option<Duration> {
    let raw = raw.as_ref()?;
    match raw.to_duration() {
        Ok(d) => Some(d),
        Err(e) => {
            issues.at(path, key, e);
            None
        }
    }
}

/// `retry:`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    /// Attempts per target, the first included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// Base delay between attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<RawDuration>,
    /// `constant`, `linear` or `exponential`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<String>,
    /// Longest wait; an upstream asking for longer is failed over instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_delay: Option<RawDuration>,
    /// Randomize waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<bool>,
}

impl RawRetry {
    /// `base` with this block's settings on top; problems are reported under `path`.
    pub fn apply(&self, base: RetryPolicy, path: &str, issues: &mut Issues) -> RetryPolicy {
        let mut p = base;
        if let Some(n) = self.max_attempts {
            if (1..=MAX_ATTEMPTS_CEILING).contains(&n) {
                p.max_attempts = n;
            } else {
                issues.at(
                    path,
                    "max_attempts",
                    format!("expected 1 to {MAX_ATTEMPTS_CEILING}, got {n}"),
                );
            }
        }
        if let Some(d) = duration(&self.delay, path, "delay", issues) {
            p.delay = d;
        }
        if let Some(b) = &self.backoff {
            match Backoff::parse(b) {
                Some(b) => p.backoff = b,
                None => issues.at(
                    path,
                    "backoff",
                    format!("expected constant, linear or exponential, got `{b}`"),
                ),
            }
        }
        if let Some(d) = duration(&self.max_delay, path, "max_delay", issues) {
            p.max_delay = d;
        }
        if let Some(j) = self.jitter {
            p.jitter = j;
        }
        p
    }
}

/// Time limits of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timeouts {
    /// From sending an attempt to its response headers.
    pub first_byte: Option<Duration>,
    /// From the request's arrival to the last byte of its answer, retries included.
    pub total: Option<Duration>,
}

/// `timeouts:`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    /// Time to response headers, per attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_byte: Option<RawDuration>,
    /// Time to the end of the answer, retries included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<RawDuration>,
}

impl RawTimeouts {
    /// `base` with this block's settings on top.
    pub fn apply(&self, base: Timeouts, path: &str, issues: &mut Issues) -> Timeouts {
        let mut t = base;
        for (raw, key, slot) in [
            (&self.first_byte, "first_byte", &mut t.first_byte),
            (&self.total, "total", &mut t.total),
        ] {
            match duration(raw, path, key, issues) {
                Some(d) if d.is_zero() => issues.at(path, key, "must be above 0"),
                Some(d) => *slot = Some(d),
                None => {}
            }
        }
        t
    }
}

/// `circuit_breaker:`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBreaker {
    /// Consecutive failures that open a target's breaker; 0 disables breakers.
    #[serde(default)]
    pub failures: Option<u32>,
    /// How long an open breaker sheds traffic before a probe.
    #[serde(default)]
    pub open_for: Option<RawDuration>,
}

impl RawBreaker {
    /// `base` with this block's settings on top.
    pub fn apply(&self, base: BreakerSettings, path: &str, issues: &mut Issues) -> BreakerSettings {
        let mut b = base;
        if let Some(n) = self.failures {
            b.failure_threshold = n;
        }
        if let Some(d) = duration(&self.open_for, path, "open_for", issues) {
            b.open_for = d;
        }
        b
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

/// The failover keys of one route as written: `strategy`, `retry`, `timeouts`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawRoutePolicy {
    /// `ordered`, `weighted` or `latency`.
    pub strategy: Option<String>,
    /// The route's retries, over the top-level block.
    pub retry: Option<RawRetry>,
    /// The route's time limits, over the top-level block.
    pub timeouts: Option<RawTimeouts>,
}

/// The failover blocks of a whole file: `retry`, `timeouts` and `circuit_breaker` at the top
/// level, and each route's keys (reported under `routes.<name>`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawFailover {
    /// `retry:`.
    pub retry: Option<RawRetry>,
    /// `timeouts:`.
    pub timeouts: Option<RawTimeouts>,
    /// `circuit_breaker:`.
    pub circuit_breaker: Option<RawBreaker>,
    /// The time to first byte when `timeouts.first_byte` is not set (the upstream client's).
    pub default_first_byte: Option<Duration>,
    /// Each route's keys, by route name.
    pub routes: Vec<(String, RawRoutePolicy)>,
}

impl Block for FailoverConfig {
    type Raw = RawFailover;
    type Valid = FailoverConfig;

    fn validate(raw: RawFailover, at: &str) -> Result<FailoverConfig, Issues> {
        let mut issues = Issues::new();
        let base_timeouts = Timeouts {
            first_byte: raw.default_first_byte,
            total: None,
        };
        let default = RoutePolicy {
            strategy: Strategy::Ordered,
            retry: raw.retry.as_ref().map_or(RetryPolicy::default(), |r| {
                r.apply(RetryPolicy::default(), &key(at, "retry"), &mut issues)
            }),
            timeouts: raw.timeouts.as_ref().map_or(base_timeouts, |t| {
                t.apply(base_timeouts, &key(at, "timeouts"), &mut issues)
            }),
        };
        let breaker = raw
            .circuit_breaker
            .as_ref()
            .map_or(BreakerSettings::default(), |b| {
                b.apply(
                    BreakerSettings::default(),
                    &key(at, "circuit_breaker"),
                    &mut issues,
                )
            });
        let mut routes = HashMap::new();
        for (name, route) in raw.routes {
            let path = key(&key(at, "routes"), &name);
            let mut policy = default;
            if let Some(s) = &route.strategy {
                match Strategy::parse(s) {
                    Some(s) => policy.strategy = s,
                    None => issues.at(
                        &path,
                        "strategy",
                        format!("expected ordered, weighted or latency, got `{s}`"),
                    ),
                }
            }
            if let Some(r) = &route.retry {
                policy.retry = r.apply(policy.retry, &key(&path, "retry"), &mut issues);
            }
            if let Some(t) = &route.timeouts {
                policy.timeouts = t.apply(policy.timeouts, &key(&path, "timeouts"), &mut issues);
            }
            routes.insert(name, policy);
        }
        issues.finish(FailoverConfig {
            default,
            routes,
            breaker,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        let ms = |s| parse_duration(s).map(|d| d.as_millis());
        assert_eq!(ms("250ms"), Ok(250));
        assert_eq!(ms("30s"), Ok(30_000));
        assert_eq!(ms("1.5s"), Ok(1_500));
        assert_eq!(ms("5m"), Ok(300_000));
        assert_eq!(ms("1h"), Ok(3_600_000));
        assert_eq!(ms("1d"), Ok(86_400_000));
        assert_eq!(ms("12"), Ok(12_000));
        assert_eq!(ms("1m30s"), Ok(90_000));
        for bad in ["", "s", "5 minutes", "-1s", "1y", "1e999s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn blocks_layer_and_report_problems_by_key() {
        let yaml = "max_attempts: 4\ndelay: 50ms\nbackoff: linear\n";
        let raw: RawRetry = serde_saphyr::from_str(yaml).unwrap();
        let mut issues = Issues::new();
        let p = raw.apply(RetryPolicy::default(), "routes.smart.retry", &mut issues);
        assert!(issues.is_empty(), "{issues:?}");
        assert_eq!(p.max_attempts, 4);
        assert_eq!(p.delay, Duration::from_millis(50));
        assert_eq!(p.backoff, Backoff::Linear);
        assert_eq!(
            p.max_delay,
            RetryPolicy::default().max_delay,
            "kept from base"
        );

        let raw: RawRetry =
            serde_saphyr::from_str("max_attempts: 0\ndelay: soon\nbackoff: random\n").unwrap();
        let mut issues = Issues::new();
        raw.apply(RetryPolicy::default(), "retry", &mut issues);
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            ["retry.max_attempts", "retry.delay", "retry.backoff"],
            "{issues:?}"
        );

        assert!(serde_saphyr::from_str::<RawRetry>("attempts: 3\n").is_err());

        let raw: RawTimeouts = serde_saphyr::from_str("first_byte: 2s\ntotal: 0s\n").unwrap();
        let mut issues = Issues::new();
        let t = raw.apply(Timeouts::default(), "timeouts", &mut issues);
        assert_eq!(t.first_byte, Some(Duration::from_secs(2)));
        let shown: Vec<String> = issues.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["timeouts.total: must be above 0"]);

        let raw: RawBreaker = serde_saphyr::from_str("failures: 2\nopen_for: 5s\n").unwrap();
        let mut issues = Issues::new();
        let b = raw.apply(BreakerSettings::default(), "circuit_breaker", &mut issues);
        assert_eq!(b.failure_threshold, 2);
        assert_eq!(b.open_for, Duration::from_secs(5));
    }

    #[test]
    fn the_failover_block_reports_a_bad_route_value_at_its_path() {
        let raw = RawFailover {
            retry: Some(RawRetry {
                max_attempts: Some(3),
                ..RawRetry::default()
            }),
            routes: vec![(
                "smart".to_owned(),
                RawRoutePolicy {
                    strategy: Some("random".to_owned()),
                    ..RawRoutePolicy::default()
                },
            )],
            ..RawFailover::default()
        };
        let issues = FailoverConfig::validate(raw.clone(), "").unwrap_err();
        let shown: Vec<String> = issues.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            ["routes.smart.strategy: expected ordered, weighted or latency, got `random`"]
        );

        let mut good = raw;
        good.routes[0].1.strategy = Some("latency".to_owned());
        let config = FailoverConfig::validate(good, "").unwrap();
        let smart = config.policy(Some("smart"));
        assert_eq!(smart.strategy, Strategy::Latency);
        assert_eq!(smart.retry.max_attempts, 3, "inherited from the top level");
        assert_eq!(config.policy(Some("other")), &config.default);
    }
}
