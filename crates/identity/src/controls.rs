//! A virtual key's own edge controls: cache, retry and timeout settings that sit between the
//! route's and the request's headers (global → route → key → request). Written with the same
//! keys as the configuration file's `cache:`, `retry:` and `timeouts:` blocks, stored as JSON
//! on the key ([`KeyControls`]), and resolved once when the key is loaded into
//! [`ControlOverrides`], which the request path applies without parsing anything.

use std::time::Duration;

use portcullis_failover::{Backoff, RawDuration, RawRetry, RawTimeouts, RetryPolicy, Timeouts};
use serde::{Deserialize, Serialize};

/// The longest cache TTL a key may set.
pub const MAX_KEY_CACHE_TTL: Duration = Duration::from_secs(30 * 86_400);

/// A key's controls as written (`"controls": {...}` on `POST /admin/keys`). `retry` and
/// `timeouts` are the configuration file's own blocks, validated by the same code.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyControls {
    /// Exact-cache settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<KeyCache>,
    /// Retry settings, as the file's `retry:` block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RawRetry>,
    /// Timeouts, as the file's `timeouts:` block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<RawTimeouts>,
}

/// `controls.cache`: the per-request part of the file's `cache:` block.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyCache {
    /// Whether this key's requests use the exact cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// How long its answers are kept (`300`, `5m`, `1h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<RawDuration>,
    /// Whether its non-deterministic requests (temperature above 0) are cached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nondeterministic: Option<bool>,
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
        let mut issues = portcullis_core::config::Issues::new();
        let mut o = ControlOverrides::default();
        if let Some(cache) = &self.cache {
            o.cache_enabled = cache.enabled;
            o.cache_nondeterministic = cache.nondeterministic;
            match cache.ttl.as_ref().map(RawDuration::to_duration) {
                Some(Ok(d)) if d.is_zero() || d > MAX_KEY_CACHE_TTL => {
                    issues.push("controls.cache.ttl", "expected from 1 second to 30 days")
                }
                Some(Ok(d)) => o.cache_ttl = Some(d),
                Some(Err(e)) => issues.push("controls.cache.ttl", e),
                None => {}
            }
        }
        if let Some(raw) = &self.retry {
            // Applied to the defaults only to validate and parse; a key overrides just the
            // settings it names.
            let p = raw.apply(RetryPolicy::default(), "controls.retry", &mut issues);
            o.max_attempts = raw.max_attempts.map(|_| p.max_attempts);
            o.retry_delay = raw.delay.as_ref().map(|_| p.delay);
            o.backoff = raw.backoff.as_ref().map(|_| p.backoff);
            o.max_retry_delay = raw.max_delay.as_ref().map(|_| p.max_delay);
            o.jitter = raw.jitter;
        }
        if let Some(raw) = &self.timeouts {
            let t = raw.apply(Timeouts::default(), "controls.timeouts", &mut issues);
            o.first_byte_timeout = t.first_byte;
            o.total_timeout = t.total;
        }
        issues
            .finish(o)
            .map_err(|found| found.iter().map(ToString::to_string).collect())
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
