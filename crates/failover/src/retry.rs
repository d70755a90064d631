//! [`RetryPolicy`]: how many times one target is tried and how long to wait in between.
//!
//! Retries go to the same target; failover moves on to the next one. Both are decided from
//! the error alone: a retry when the failure may pass ([`GatewayError::retryable`]) and the
//! upstream is to blame; a failover when the failure is not the caller's fault (a target
//! rejecting the gateway's credentials is worth failing over, not retrying).

use std::time::Duration;

use portcullis_core::{Blame, GatewayError};
use rand::Rng;

/// How the delay grows between retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backoff {
    /// The same delay every time.
    Constant,
    /// `delay × n` before the n-th retry.
    Linear,
    /// `delay × 2^(n-1)` before the n-th retry.
    #[default]
    Exponential,
}

impl Backoff {
    /// Parses `constant`, `linear` or `exponential`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "constant" => Some(Backoff::Constant),
            "linear" => Some(Backoff::Linear),
            "exponential" => Some(Backoff::Exponential),
            _ => None,
        }
    }

    /// The name as configured.
    pub fn as_str(self) -> &'static str {
        match self {
            Backoff::Constant => "constant",
            Backoff::Linear => "linear",
            Backoff::Exponential => "exponential",
        }
    }
}

/// Retries of one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per target, the first included (1: no retries).
    pub max_attempts: u32,
    /// The base delay.
    pub delay: Duration,
    /// How the delay grows.
    pub backoff: Backoff,
    /// No wait is longer than this; an upstream asking for longer is failed over instead.
    pub max_delay: Duration,
    /// Spread waits over `[delay/2, delay]` so that callers retrying together do not stampede.
    pub jitter: bool,
}

/// No retries unless configured: clients' SDKs retry too, and retries multiply.
impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 1,
            delay: Duration::from_millis(200),
            backoff: Backoff::Exponential,
            max_delay: Duration::from_secs(10),
            jitter: true,
        }
    }
}

/// Most attempts a caller may ask for per target (Cloudflare AI Gateway allows up to 5).
pub const MAX_ATTEMPTS_CEILING: u32 = 10;

impl RetryPolicy {
    /// The wait before retry number `retry` (1 for the first retry), or `None` when the target
    /// should not be retried: attempts are used up, or the upstream asked to wait longer than
    /// `max_delay`.
    pub fn delay_before(&self, retry: u32, retry_after: Option<Duration>) -> Option<Duration> {
        if retry == 0 || retry >= self.max_attempts {
            return None;
        }
        if let Some(after) = retry_after {
            // The upstream said when to come back: that is the wait, jitter-free.
            return (after <= self.max_delay).then_some(after);
        }
        let base = match self.backoff {
            Backoff::Constant => self.delay,
            Backoff::Linear => self.delay.saturating_mul(retry),
            Backoff::Exponential => self
                .delay
                .saturating_mul(1u32.checked_shl(retry - 1).unwrap_or(u32::MAX)),
        };
        let capped = base.min(self.max_delay);
        if !self.jitter || capped.is_zero() {
            return Some(capped);
        }
        let half = capped / 2;
        let spread = u64::try_from((capped - half).as_micros()).unwrap_or(u64::MAX);
        let extra = rand::rng().random_range(0..=spread);
        Some(half + Duration::from_micros(extra))
    }
}

/// Whether the same target may be tried again after `e`.
pub fn should_retry(e: &GatewayError) -> bool {
    e.retryable() && e.blame() == Blame::Upstream
}

/// Whether the next target may be tried after `e`: anything that is not the caller's fault.
pub fn should_fail_over(e: &GatewayError) -> bool {
    e.blame() != Blame::Client || (e.retryable() && e.blame() == Blame::Upstream)
}

#[cfg(test)]
mod tests {
    use portcullis_core::ErrorKind;

    use super::*;

    fn policy(backoff: Backoff) -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            delay: Duration::from_millis(100),
            backoff,
            max_delay: Duration::from_millis(500),
            jitter: false,
        }
    }

    #[test]
    fn backoff_shapes_and_cap() {
        let ms = |p: &RetryPolicy, n| p.delay_before(n, None).map(|d| d.as_millis());
        let c = policy(Backoff::Constant);
        assert_eq!(
            (1..5).map(|n| ms(&c, n)).collect::<Vec<_>>(),
            vec![Some(100); 4]
        );
        let l = policy(Backoff::Linear);
        assert_eq!(
            (1..5).map(|n| ms(&l, n)).collect::<Vec<_>>(),
            vec![Some(100), Some(200), Some(300), Some(400)]
        );
        let e = policy(Backoff::Exponential);
        assert_eq!(
            (1..5).map(|n| ms(&e, n)).collect::<Vec<_>>(),
            vec![Some(100), Some(200), Some(400), Some(500)],
            "capped at max_delay"
        );
        assert_eq!(ms(&e, 5), None, "five attempts means four retries");
        assert_eq!(ms(&e, 0), None);
        let huge = RetryPolicy {
            max_attempts: 10,
            ..policy(Backoff::Exponential)
        };
        assert_eq!(ms(&huge, 9), Some(500), "no overflow on large shifts");
    }

    #[test]
    fn retry_after_is_honoured_or_makes_the_target_give_up() {
        let p = policy(Backoff::Exponential);
        assert_eq!(
            p.delay_before(1, Some(Duration::from_millis(300))),
            Some(Duration::from_millis(300))
        );
        assert_eq!(p.delay_before(1, Some(Duration::from_secs(30))), None);
    }

    #[test]
    fn jitter_stays_within_half_to_full_delay() {
        let p = RetryPolicy {
            jitter: true,
            ..policy(Backoff::Constant)
        };
        for _ in 0..200 {
            let d = p.delay_before(1, None).unwrap();
            assert!(d >= Duration::from_millis(50) && d <= Duration::from_millis(100));
        }
    }

    #[test]
    fn predicates_read_blame_and_retryability() {
        let timeout = GatewayError::new(ErrorKind::Timeout, "slow");
        assert!(should_retry(&timeout) && should_fail_over(&timeout));
        let bad = GatewayError::invalid_request("no");
        assert!(!should_retry(&bad) && !should_fail_over(&bad));
        let creds = GatewayError::new(ErrorKind::Upstream, "rejected credentials")
            .with_blame(Blame::Gateway);
        assert!(!should_retry(&creds) && should_fail_over(&creds));
        let limited =
            GatewayError::new(ErrorKind::RateLimited, "slow down").with_blame(Blame::Upstream);
        assert!(should_retry(&limited) && should_fail_over(&limited));
    }

    #[test]
    fn backoff_names_parse() {
        for b in [Backoff::Constant, Backoff::Linear, Backoff::Exponential] {
            assert_eq!(Backoff::parse(b.as_str()), Some(b));
        }
        assert_eq!(Backoff::parse("Exponential "), Some(Backoff::Exponential));
        assert_eq!(Backoff::parse("fibonacci"), None);
    }
}
