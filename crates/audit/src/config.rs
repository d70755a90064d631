//! The `audit:` block: how long records are kept, how often checkpoints are taken, and the
//! writer's queue.
//!
//! ```yaml
//! audit:
//!   enabled: true              # default
//!   retention: 90d             # default: kept for ever; records older are dropped, a
//!                              # checkpoint at a time, and the rest still verifies
//!   checkpoint_every: 1000     # records (default 1000)
//!   checkpoint_interval: 60s   # or this long after the last one (default 60s)
//!   queue_capacity: 65536      # records waiting to be written (default)
//!   batch_size: 256            # records per transaction (default)
//!   max_wait: 5s               # how long a record waits for room in a full queue (default)
//! ```

use std::time::Duration;

use portcullis_core::config::{Block, Issues, key};
use portcullis_core::parse_duration;
use serde::Deserialize;

/// A duration as written: a whole number of seconds or a duration such as `30s`, `5m`, `90d`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum RawDuration {
    /// Seconds.
    Seconds(u64),
    /// Text.
    Text(String),
}

impl RawDuration {
    fn parse(&self) -> Result<Duration, String> {
        match self {
            RawDuration::Seconds(s) => Ok(Duration::from_secs(*s)),
            RawDuration::Text(t) => parse_duration(t).map_err(|e| e.to_string()),
        }
    }
}

/// The `audit:` block as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    /// Whether decisions are audited (default true).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// How long records are kept (default: for ever).
    #[serde(default)]
    pub retention: Option<RawDuration>,
    /// Records between checkpoints.
    #[serde(default)]
    pub checkpoint_every: Option<u64>,
    /// Longest time between checkpoints while records are written.
    #[serde(default)]
    pub checkpoint_interval: Option<RawDuration>,
    /// Records the writer's queue holds.
    #[serde(default)]
    pub queue_capacity: Option<u64>,
    /// Records per transaction.
    #[serde(default)]
    pub batch_size: Option<u64>,
    /// How long a record waits for room in a full queue before it is reported lost.
    #[serde(default)]
    pub max_wait: Option<RawDuration>,
}

/// The validated `audit:` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSettings {
    /// Whether decisions are audited.
    pub enabled: bool,
    /// How long records are kept (`None`: for ever).
    pub retention: Option<Duration>,
    /// Records between checkpoints.
    pub checkpoint_every: u64,
    /// Longest time between checkpoints while records are written.
    pub checkpoint_interval: Duration,
    /// Records the writer's queue holds.
    pub queue_capacity: usize,
    /// Records per transaction.
    pub batch_size: usize,
    /// How long a record waits for room in a full queue.
    pub max_wait: Duration,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            retention: None,
            checkpoint_every: 1000,
            checkpoint_interval: Duration::from_secs(60),
            queue_capacity: 65_536,
            batch_size: 256,
            max_wait: Duration::from_secs(5),
        }
    }
}

impl Block for AuditSettings {
    type Raw = Option<RawAudit>;
    type Valid = AuditSettings;

    fn validate(raw: Option<RawAudit>, at: &str) -> Result<AuditSettings, Issues> {
        let mut issues = Issues::new();
        let mut out = AuditSettings::default();
        let Some(raw) = raw else {
            return Ok(out);
        };
        let at = key(at, "audit");
        let mut duration = |name: &str, v: &Option<RawDuration>, min: Duration| {
            let d = v.as_ref()?;
            match d.parse() {
                Ok(d) if d >= min => Some(d),
                Ok(_) => {
                    issues.at(&at, name, format!("must be at least {min:?}"));
                    None
                }
                Err(e) => {
                    issues.at(&at, name, e);
                    None
                }
            }
        };
        out.retention = duration("retention", &raw.retention, Duration::from_secs(1));
        if let Some(d) = duration(
            "checkpoint_interval",
            &raw.checkpoint_interval,
            Duration::from_millis(100),
        ) {
            out.checkpoint_interval = d;
        }
        if let Some(d) = duration("max_wait", &raw.max_wait, Duration::ZERO) {
            out.max_wait = d;
        }
        if let Some(e) = raw.enabled {
            out.enabled = e;
        }
        let mut count = |name: &str, v: Option<u64>, max: u64| -> Option<u64> {
            let n = v?;
            if n == 0 || n > max {
                issues.at(&at, name, format!("must be between 1 and {max}"));
                return None;
            }
            Some(n)
        };
        if let Some(n) = count("checkpoint_every", raw.checkpoint_every, 1_000_000) {
            out.checkpoint_every = n;
        }
        if let Some(n) = count("queue_capacity", raw.queue_capacity, 10_000_000) {
            out.queue_capacity = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(n) = count("batch_size", raw.batch_size, 10_000) {
            out.batch_size = usize::try_from(n).unwrap_or(usize::MAX);
        }
        issues.finish(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_problems() {
        assert_eq!(
            AuditSettings::validate(None, "").unwrap(),
            AuditSettings::default()
        );
        let raw = RawAudit {
            retention: Some(RawDuration::Text("30d".into())),
            checkpoint_every: Some(10),
            ..RawAudit::default()
        };
        let s = AuditSettings::validate(Some(raw), "").unwrap();
        assert_eq!(s.retention, Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(s.checkpoint_every, 10);
        let raw = RawAudit {
            retention: Some(RawDuration::Text("soon".into())),
            checkpoint_every: Some(0),
            ..RawAudit::default()
        };
        let issues = AuditSettings::validate(Some(raw), "").unwrap_err();
        assert!(issues.has("audit.retention"));
        assert!(issues.has("audit.checkpoint_every"));
    }
}
