//! Load balancing: the order in which a route's targets are tried.
//!
//! - [`Strategy::Ordered`]: as configured; the first target is primary, the rest are
//!   fallbacks.
//! - [`Strategy::Weighted`]: the first target is drawn at random in proportion to the weights;
//!   the others follow in configured order as fallbacks.
//! - [`Strategy::Latency`]: fastest first, by an exponentially weighted moving average of each
//!   target's time to response headers ([`LatencyTracker`]). Targets never measured go first
//!   so that every target gets measured, and a small share of requests explores a random
//!   target so that a target that was slow once is not shunned forever.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rand::Rng;

/// How a route orders its targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Configured order.
    #[default]
    Ordered,
    /// Weighted random primary, configured order for the rest.
    Weighted,
    /// Fastest first.
    Latency,
}

impl Strategy {
    /// Parses `ordered` (alias `failover`), `weighted` or `latency`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ordered" | "failover" => Some(Strategy::Ordered),
            "weighted" => Some(Strategy::Weighted),
            "latency" => Some(Strategy::Latency),
            _ => None,
        }
    }

    /// The name as configured.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Ordered => "ordered",
            Strategy::Weighted => "weighted",
            Strategy::Latency => "latency",
        }
    }

    /// The order in which to try targets, as indices into `targets` (`(key, weight)` pairs in
    /// configured order).
    pub fn order(self, targets: &[(&str, u32)], latency: &LatencyTracker) -> Vec<usize> {
        let mut order: Vec<usize> = (0..targets.len()).collect();
        if targets.len() < 2 {
            return order;
        }
        match self {
            Strategy::Ordered => {}
            Strategy::Weighted => {
                let total: u64 = targets.iter().map(|(_, w)| u64::from(*w)).sum();
                if total > 0 {
                    let mut pick = rand::rng().random_range(0..total);
                    let first = targets
                        .iter()
                        .position(|(_, w)| {
                            let w = u64::from(*w);
                            if pick < w {
                                true
                            } else {
                                pick -= w;
                                false
                            }
                        })
                        .unwrap_or(0);
                    order.remove(first);
                    order.insert(0, first);
                }
            }
            Strategy::Latency => {
                let averages = latency.averages(targets.iter().map(|(k, _)| *k));
                // Unmeasured first (None sorts before Some), then fastest; stable, so ties
                // keep the configured order.
                order.sort_by(|a, b| {
                    averages[*a]
                        .partial_cmp(&averages[*b])
                        .unwrap_or(std::cmp::Ordering::Equal)
                });
                let mut rng = rand::rng();
                if rng.random_bool(EXPLORE_SHARE) {
                    let i = rng.random_range(1..order.len());
                    order.swap(0, i);
                }
            }
        }
        order
    }
}

/// Share of latency-balanced requests that try a random target first.
const EXPLORE_SHARE: f64 = 0.05;
/// Weight of the newest sample in the moving average.
const ALPHA: f64 = 0.3;

/// Moving averages of each target's time to response headers.
#[derive(Debug, Default)]
pub struct LatencyTracker {
    averages: Mutex<HashMap<Arc<str>, f64>>,
}

impl LatencyTracker {
    /// Folds one observation for `target` into its average.
    pub fn record(&self, target: &Arc<str>, latency: Duration) {
        let sample = latency.as_secs_f64() * 1e3;
        let mut map = self.averages.lock().unwrap_or_else(PoisonError::into_inner);
        match map.get_mut(target) {
            Some(avg) => *avg = ALPHA * sample + (1.0 - ALPHA) * *avg,
            None => {
                map.insert(target.clone(), sample);
            }
        }
    }

    /// The average for `target` in milliseconds, if it was ever measured.
    pub fn average_ms(&self, target: &str) -> Option<f64> {
        let map = self.averages.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(target).copied()
    }

    fn averages<'a>(&self, targets: impl Iterator<Item = &'a str>) -> Vec<Option<f64>> {
        let map = self.averages.lock().unwrap_or_else(PoisonError::into_inner);
        targets.map(|t| map.get(t).copied()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_keeps_the_configuration() {
        let t = [("a", 1), ("b", 5), ("c", 1)];
        assert_eq!(
            Strategy::Ordered.order(&t, &LatencyTracker::default()),
            vec![0, 1, 2]
        );
    }

    #[test]
    fn weighted_draws_the_primary_in_proportion_and_keeps_fallbacks() {
        let t = [("a", 1), ("b", 3), ("c", 0)];
        let lat = LatencyTracker::default();
        let mut firsts = [0u32; 3];
        for _ in 0..4000 {
            let o = Strategy::Weighted.order(&t, &lat);
            assert_eq!(o.len(), 3);
            let mut sorted = o.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, vec![0, 1, 2], "every target stays as a fallback");
            firsts[o[0]] += 1;
        }
        assert_eq!(firsts[2], 0, "weight 0 is never primary");
        let share_b = f64::from(firsts[1]) / 4000.0;
        assert!(
            (0.70..0.80).contains(&share_b),
            "b is primary ~75%: {share_b}"
        );
    }

    #[test]
    fn latency_puts_unmeasured_then_fastest_first() {
        let lat = LatencyTracker::default();
        let slow: Arc<str> = Arc::from("slow");
        let fast: Arc<str> = Arc::from("fast");
        lat.record(&slow, Duration::from_millis(300));
        lat.record(&fast, Duration::from_millis(20));
        let t = [("slow", 1), ("fast", 1), ("new", 1)];
        let mut counts = [0u32; 3];
        for _ in 0..1000 {
            counts[Strategy::Latency.order(&t, &lat)[0]] += 1;
        }
        assert!(counts[2] > 900, "unmeasured first: {counts:?}");
        let t = [("slow", 1), ("fast", 1)];
        let mut counts = [0u32; 2];
        for _ in 0..1000 {
            counts[Strategy::Latency.order(&t, &lat)[0]] += 1;
        }
        assert!(counts[1] > 900, "fastest first: {counts:?}");
        assert!(counts[0] > 0, "some exploration: {counts:?}");
    }

    #[test]
    fn moving_average_follows_new_samples() {
        let lat = LatencyTracker::default();
        let t: Arc<str> = Arc::from("t");
        lat.record(&t, Duration::from_millis(100));
        lat.record(&t, Duration::from_millis(200));
        let avg = lat.average_ms("t").unwrap();
        assert!((avg - 130.0).abs() < 1e-6, "{avg}");
        assert_eq!(lat.average_ms("u"), None);
    }

    #[test]
    fn strategy_names_parse() {
        for s in [Strategy::Ordered, Strategy::Weighted, Strategy::Latency] {
            assert_eq!(Strategy::parse(s.as_str()), Some(s));
        }
        assert_eq!(Strategy::parse("failover"), Some(Strategy::Ordered));
        assert_eq!(Strategy::parse("random"), None);
    }
}
