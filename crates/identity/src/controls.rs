//! A virtual key's own edge controls: cache, retry and timeout settings that sit between the
//! route's and the request's headers (global → route → key → request). Written with the same
//! keys as the configuration file's `cache:`, `retry:` and `timeouts:` blocks, stored as JSON
//! on the key ([`KeyControls`]), and resolved once when the key is loaded into
//! [`ControlOverrides`], which the request path applies without parsing anything.

use std::time::Duration;

use portcullis_failover::{Backoff, RetryPolicy, Timeouts, parse_duration};
use serde::{Deserialize, Serialize};

/// The most attempts a key may ask for (the configuration file's ceiling).
pub const MAX_KEY_ATTEMPTS: u32 = 10;

/// The longest cache TTL a key may set.
pub const MAX_KEY_CACHE_TTL: Duration = Duration::from_secs(30 * 86_400);

/// A key's controls as written (`"controls": {...}` on `POST /admin/keys`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyControls {
    /// Exact-cache settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<KeyCache>,
    /// Retry settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<KeyRetry>,
    /// Timeouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<KeyTimeouts>,
}

/// `controls.cache`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyCache {
    /// Whether this key's requests use the exact cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// How long its answers are kept (`300`, `5m`, `1h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<DurationText>,
    /// Whether its non-deterministic requests (temperature above 0) are cached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nondeterministic: Option<bool>,
}

/// `controls.retry`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRetry {
    /// Attempts per target, the first included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// Base delay between attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<DurationText>,
    /// `constant`, `linear` or `exponential`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<String>,
    /// Longest wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_delay: Option<DurationText>,
    /// Randomize waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<bool>,
}

/// `controls.timeouts`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyTimeouts {
    /// Time to response headers, per attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_byte: Option<DurationText>,
    /// Time to the end of the answer, retries included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<DurationText>,
}

/// A duration as written: whole seconds, or text such as `250ms`, `30s`, `5m`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DurationText {
    /// Whole seconds.
    Seconds(u64),
    /// With a unit.
    Text(String),
}

impl DurationText {
    fn parse(&self, path: &str, issues: &mut Vec<String>) -> Option<Duration> {
        match self {
            DurationText::Seconds(s) => Some(Duration::from_secs(*s)),
            DurationText::Text(t) => match parse_duration(t) {
                Ok(d) => Some(d),
                Err(e) => {
                    issues.push(format!("{path}: {e}"));
                    None
                }
            },
        }
    }
}

/// A key's controls, resolved: each `Some` replaces the route's value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ControlOverrides {
    /// Exact cache on or off.
    pub cache_enabled: Option<bool>,
    /// Cache TTL.
    pub cache_ttl: Option<Duration>,
    /// Cache non-deterministic requests.
    pub cache_nondeterministic: Option<bool>,
    /// Attempts per target.
    pub max_attempts: Option<u32>,
    /// Base retry delay.
    pub retry_delay: Option<Duration>,
    /// Backoff.
    pub backoff: Option<Backoff>,
    /// Longest retry wait.
    pub max_retry_delay: Option<Duration>,
    /// Jitter.
    pub jitter: Option<bool>,
    /// Time to first byte, per attempt.
    pub first_byte_timeout: Option<Duration>,
    /// Total time.
    pub total_timeout: Option<Duration>,
}

impl KeyControls {
    /// Validates and resolves the controls; every problem is reported with its key path
    /// (`controls.retry.backoff: …`).
    pub fn resolve(&self) -> Result<ControlOverrides, Vec<String>> {
        let mut issues = Vec::new();
        let mut o = ControlOverrides::default();
        if let Some(cache) = &self.cache {
            o.cache_enabled = cache.enabled;
            o.cache_nondeterministic = cache.nondeterministic;
            if let Some(ttl) = &cache.ttl {
                match ttl.parse("controls.cache.ttl", &mut issues) {
                    Some(d) if d.is_zero() || d > MAX_KEY_CACHE_TTL => issues
                        .push("controls.cache.ttl: expected from 1 second to 30 days".to_owned()),
                    Some(d) => o.cache_ttl = Some(d),
                    None => {}
                }
            }
        }
        if let Some(retry) = &self.retry {
            if let Some(n) = retry.max_attempts {
                if (1..=MAX_KEY_ATTEMPTS).contains(&n) {
                    o.max_attempts = Some(n);
                } else {
                    issues.push(format!(
                        "controls.retry.max_attempts: expected 1 to {MAX_KEY_ATTEMPTS}, got {n}"
                    ));
                }
            }
            if let Some(d) = &retry.delay {
                o.retry_delay = d.parse("controls.retry.delay", &mut issues);
            }
            if let Some(d) = &retry.max_delay {
                o.max_retry_delay = d.parse("controls.retry.max_delay", &mut issues);
            }
            if let Some(b) = &retry.backoff {
                match Backoff::parse(b) {
                    Some(b) => o.backoff = Some(b),
                    None => issues.push(format!(
                        "controls.retry.backoff: expected constant, linear or exponential, got `{b}`"
                    )),
                }
            }
            o.jitter = retry.jitter;
        }
        if let Some(t) = &self.timeouts {
            for (raw, path, slot) in [
                (
                    &t.first_byte,
                    "controls.timeouts.first_byte",
                    &mut o.first_byte_timeout,
                ),
                (&t.total, "controls.timeouts.total", &mut o.total_timeout),
            ] {
                match raw.as_ref().and_then(|d| d.parse(path, &mut issues)) {
                    Some(d) if d.is_zero() => issues.push(format!("{path}: must be above 0")),
                    Some(d) => *slot = Some(d),
                    None => {}
                }
            }
        }
        if issues.is_empty() {
            Ok(o)
        } else {
            Err(issues)
        }
    }
}

impl ControlOverrides {
    /// Whether nothing is overridden.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// `retry` with the key's retry settings on top.
    pub fn apply_retry(&self, retry: &mut RetryPolicy) {
        if let Some(n) = self.max_attempts {
            retry.max_attempts = n;
        }
        if let Some(d) = self.retry_delay {
            retry.delay = d;
        }
        if let Some(b) = self.backoff {
            retry.backoff = b;
        }
        if let Some(d) = self.max_retry_delay {
            retry.max_delay = d;
        }
        if let Some(j) = self.jitter {
            retry.jitter = j;
        }
    }

    /// `timeouts` with the key's timeouts on top.
    pub fn apply_timeouts(&self, timeouts: &mut Timeouts) {
        if let Some(d) = self.first_byte_timeout {
            timeouts.first_byte = Some(d);
        }
        if let Some(d) = self.total_timeout {
            timeouts.total = Some(d);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn controls_resolve_and_layer_over_a_route() {
        let c: KeyControls = serde_json::from_str(
            r#"{"cache": {"enabled": true, "ttl": "10m"},
                "retry": {"max_attempts": 3, "delay": "50ms", "backoff": "linear"},
                "timeouts": {"first_byte": 2, "total": "30s"}}"#,
        )
        .unwrap();
        let o = c.resolve().unwrap();
        assert_eq!(o.cache_ttl, Some(Duration::from_secs(600)));
        let mut retry = RetryPolicy::default();
        o.apply_retry(&mut retry);
        assert_eq!(retry.max_attempts, 3);
        assert_eq!(retry.delay, Duration::from_millis(50));
        assert_eq!(retry.backoff, Backoff::Linear);
        let mut t = Timeouts::default();
        o.apply_timeouts(&mut t);
        assert_eq!(t.first_byte, Some(Duration::from_secs(2)));
        assert_eq!(t.total, Some(Duration::from_secs(30)));
        assert!(KeyControls::default().resolve().unwrap().is_empty());
    }

    #[test]
    fn every_problem_is_named() {
        let c: KeyControls = serde_json::from_str(
            r#"{"cache": {"ttl": "forever"}, "retry": {"max_attempts": 99, "backoff": "fibonacci"},
                "timeouts": {"total": 0}}"#,
        )
        .unwrap();
        let issues = c.resolve().unwrap_err();
        assert_eq!(issues.len(), 4, "{issues:?}");
        assert!(issues[0].starts_with("controls.cache.ttl"));
        assert!(serde_json::from_str::<KeyControls>(r#"{"cache": {"backend": "redis"}}"#).is_err());
    }
}
