//! The arithmetic of each limit kind: conformance decisions (used by the memory backend; the
//! Redis scripts repeat them operation for operation) and what to report (remaining, reset,
//! retry-after), computed by the limiter from counter states.
//!
//! All times are microseconds since the epoch; all money is micro-dollars.

/// GCRA increment for `amount` units of a `limit`-per-`window_us` rule: `amount * window /
/// limit`, rounded up so rounding never admits more than the limit.
pub(crate) fn gcra_increment(amount: u64, window_us: i64, limit: u64) -> i64 {
    let limit = u128::from(limit.max(1));
    let numerator = u128::from(amount) * u128::from(window_us.unsigned_abs());
    let increment = numerator.div_ceil(limit);
    i64::try_from(increment).unwrap_or(i64::MAX)
}

/// GCRA decision: `(conforms, tat)` where `tat` is the new arrival time when it conforms and
/// the current one (never before `now`) otherwise.
pub(crate) fn gcra_take(
    stored_tat: Option<i64>,
    now: i64,
    increment: i64,
    window: i64,
) -> (bool, i64) {
    let tat = stored_tat.map_or(now, |t| t.max(now));
    let new_tat = tat.saturating_add(increment);
    if new_tat.saturating_sub(window) > now {
        (false, tat)
    } else {
        (true, new_tat)
    }
}

/// Units still available after an admission that left the arrival time at `tat`.
pub(crate) fn gcra_remaining(tat: i64, now: i64, window: i64, limit: u64) -> u64 {
    let headroom = i128::from(now) + i128::from(window) - i128::from(tat);
    if headroom <= 0 || window <= 0 {
        return 0;
    }
    let remaining = headroom * i128::from(limit) / i128::from(window);
    u64::try_from(remaining).unwrap_or(0).min(limit)
}

/// How long until a refused GCRA charge of `increment` would conform, given the current
/// arrival time `tat` (already at least `now`).
pub(crate) fn gcra_retry_after(tat: i64, now: i64, increment: i64, window: i64) -> i64 {
    (tat.saturating_add(increment) - window - now).max(0)
}

/// The sliding-window counts `(previous, current)` seen from fixed window `index`, given what
/// is stored. A stored window newer than `index` (a replica whose clock is behind) is used
/// as it is.
pub(crate) fn sliding_roll(stored: Option<(i64, u64, u64)>, index: i64) -> (i64, u64, u64) {
    match stored {
        None => (index, 0, 0),
        Some((stored_index, previous, current)) if stored_index >= index => {
            (stored_index, previous, current)
        }
        Some((stored_index, _, current)) if stored_index == index - 1 => (index, current, 0),
        Some(_) => (index, 0, 0),
    }
}

/// Sliding-window decision. The arithmetic is done in `f64` in exactly this order, as the Lua
/// script does, so both backends decide identically.
pub(crate) fn sliding_conforms(
    previous: u64,
    current: u64,
    weight: f64,
    amount: u64,
    limit: u64,
) -> bool {
    let weighted = previous as f64 * weight + current as f64;
    weighted + amount as f64 <= limit as f64
}

/// The share of the previous fixed window still inside a sliding window ending at `now`.
pub(crate) fn sliding_weight(now: i64, window: i64) -> (i64, f64) {
    let index = now.div_euclid(window);
    let elapsed = now - index * window;
    (index, (window - elapsed) as f64 / window as f64)
}

/// Units still available in a sliding window.
pub(crate) fn sliding_remaining(previous: u64, current: u64, weight: f64, limit: u64) -> u64 {
    let weighted = previous as f64 * weight + current as f64;
    let remaining = (limit as f64 - weighted).floor();
    if remaining <= 0.0 {
        0
    } else {
        (remaining as u64).min(limit)
    }
}

/// How long until `amount` more units fit in a sliding window, assuming no other traffic.
pub(crate) fn sliding_retry_after(
    previous: u64,
    current: u64,
    amount: u64,
    limit: u64,
    now: i64,
    window: i64,
) -> i64 {
    let index = now.div_euclid(window);
    let elapsed = now - index * window;
    let to_next_window = window - elapsed;
    let w = window as f64;
    if current + amount <= limit {
        // The previous window's share must shrink to `limit - current - amount`.
        if previous == 0 {
            return 0;
        }
        let room = (limit - current - amount) as f64;
        let wait = (w - elapsed as f64) - room * w / previous as f64;
        (wait.ceil() as i64).clamp(0, to_next_window)
    } else {
        // Only the next window can fit it, once `current` (then previous) has decayed enough.
        let room = limit.saturating_sub(amount) as f64;
        let into_next = if current == 0 {
            0.0
        } else {
            w - room * w / current as f64
        };
        to_next_window + (into_next.ceil() as i64).clamp(0, window)
    }
}

/// Budget decision: refuses once the budget is used up, and when the estimate does not fit.
pub(crate) fn budget_conforms(spent: i64, reserved: i64, estimate: i64, limit: i64) -> bool {
    let committed = spent.saturating_add(reserved);
    committed < limit && committed.saturating_add(estimate) <= limit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcra_admits_a_full_burst_then_one_per_interval() {
        let window = 60_000_000;
        let increment = gcra_increment(1, window, 10);
        assert_eq!(increment, 6_000_000);
        let mut tat = None;
        for _ in 0..10 {
            let (ok, t) = gcra_take(tat, 0, increment, window);
            assert!(ok);
            tat = Some(t);
        }
        let (ok, current) = gcra_take(tat, 0, increment, window);
        assert!(!ok);
        assert_eq!(gcra_retry_after(current, 0, increment, window), 6_000_000);
        assert!(gcra_take(tat, 6_000_000, increment, window).0);
        assert!(!gcra_take(tat, 5_999_999, increment, window).0);
    }

    #[test]
    fn sliding_window_rolls_and_weights() {
        assert_eq!(sliding_roll(Some((4, 9, 7)), 5), (5, 7, 0));
        assert_eq!(sliding_roll(Some((3, 9, 7)), 5), (5, 0, 0));
        assert_eq!(sliding_roll(Some((5, 9, 7)), 5), (5, 9, 7));
        let (index, weight) = sliding_weight(150, 100);
        assert_eq!(index, 1);
        assert!((weight - 0.5).abs() < 1e-12);
        assert!(sliding_conforms(10, 4, 0.5, 1, 10));
        assert!(!sliding_conforms(10, 5, 0.5, 1, 10));
    }

    #[test]
    fn budget_refuses_when_used_up_even_for_free_requests() {
        assert!(budget_conforms(0, 0, 5, 5));
        assert!(!budget_conforms(0, 1, 5, 5));
        assert!(!budget_conforms(5, 0, 0, 5));
    }
}
