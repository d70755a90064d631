//! [`CircuitBreakers`]: one breaker per target (`provider/model`).
//!
//! A breaker is *closed* while its target works. After `failure_threshold` consecutive
//! failures it *opens*: the target is skipped, so traffic sheds to the next target of a route
//! at once instead of waiting on a failing upstream. After `open_for` it *half-opens*: one
//! request is let through as a probe; its success closes the breaker, its failure opens it
//! again. A probe that never reports (its request was dropped) is replaced after `open_for`.
//!
//! Time is `tokio::time::Instant`, so tests drive breakers with tokio's paused clock. Only
//! targets that failed are tracked; a success forgets the target again.
//!
//! [`CircuitBreakers::reconfigure`] changes the settings while the breakers keep their state:
//! an open breaker stays open until the end of the period it opened for, consecutive failures
//! already counted count against the new threshold, and the new `open_for` applies from the
//! next opening (and to a probe that has not reported yet).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// Breaker tuning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Consecutive failures that open the breaker; 0 disables breaking.
    pub failure_threshold: u32,
    /// How long an open breaker sheds traffic before letting a probe through.
    pub open_for: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_for: Duration::from_secs(30),
        }
    }
}

/// Whether a request may go to a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Passage {
    /// The breaker is closed: go ahead.
    Closed,
    /// The breaker is half-open and this request is its probe: report how it went.
    Probe,
    /// The breaker is open: skip the target; it may be tried again in `retry_in`.
    Open {
        /// Time until a probe will be let through.
        retry_in: Duration,
    },
}

impl Passage {
    /// Whether the request may be sent.
    pub fn allowed(self) -> bool {
        !matches!(self, Passage::Open { .. })
    }
}

/// The state of one breaker, as the admin API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Working, possibly with some recent failures.
    Closed,
    /// Shedding traffic.
    Open,
    /// Letting a probe through.
    HalfOpen,
}

impl BreakerState {
    /// `closed`, `open` or `half_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// A breaker as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerView {
    /// `provider/model`.
    pub target: Arc<str>,
    /// The state now.
    pub state: BreakerState,
    /// Consecutive failures counted.
    pub consecutive_failures: u32,
    /// How long until an open breaker lets a probe through.
    pub retry_in: Option<Duration>,
    /// How many times the breaker has opened since the gateway started.
    pub times_opened: u64,
}

#[derive(Debug, Clone, Copy)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probe_started: Instant },
}

#[derive(Debug, Clone, Copy)]
struct Breaker {
    state: State,
    times_opened: u64,
}

/// The settings and every tracked breaker, changed under one lock.
#[derive(Debug, Default)]
struct Board {
    settings: BreakerSettings,
    breakers: HashMap<Arc<str>, Breaker>,
}

/// Every target's breaker.
#[derive(Debug, Default)]
pub struct CircuitBreakers {
    board: Mutex<Board>,
}

impl CircuitBreakers {
    /// Breakers with `settings`.
    pub fn new(settings: BreakerSettings) -> Self {
        Self {
            board: Mutex::new(Board {
                settings,
                breakers: HashMap::new(),
            }),
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> BreakerSettings {
        self.with(|settings, _| settings)
    }

    /// Puts `settings` in force; every breaker keeps its state (see the module doc).
    pub fn reconfigure(&self, settings: BreakerSettings) {
        let mut board = self.board.lock().unwrap_or_else(PoisonError::into_inner);
        board.settings = settings;
    }

    fn with<R>(&self, f: impl FnOnce(BreakerSettings, &mut HashMap<Arc<str>, Breaker>) -> R) -> R {
        let mut board = self.board.lock().unwrap_or_else(PoisonError::into_inner);
        let settings = board.settings;
        f(settings, &mut board.breakers)
    }

    /// Whether a request may go to `target` now.
    pub fn pass(&self, target: &str) -> Passage {
        self.with(|settings, map| {
            if settings.failure_threshold == 0 {
                return Passage::Closed;
            }
            let open_for = settings.open_for;
            let Some(b) = map.get_mut(target) else {
                return Passage::Closed;
            };
            let now = Instant::now();
            match b.state {
                State::Closed { .. } => Passage::Closed,
                State::Open { until } if now < until => Passage::Open {
                    retry_in: until - now,
                },
                State::Open { .. } => {
                    b.state = State::HalfOpen { probe_started: now };
                    Passage::Probe
                }
                State::HalfOpen { probe_started } => {
                    let stale = probe_started + open_for;
                    if now >= stale {
                        // The last probe never reported: let another one through.
                        b.state = State::HalfOpen { probe_started: now };
                        Passage::Probe
                    } else {
                        Passage::Open {
                            retry_in: stale - now,
                        }
                    }
                }
            }
        })
    }

    /// Records that a request to `target` succeeded: the breaker closes and forgets it.
    pub fn record_success(&self, target: &str) {
        self.with(|settings, map| {
            if settings.failure_threshold == 0 {
                return;
            }
            if let Some(b) = map.get_mut(target) {
                if b.times_opened == 0 {
                    map.remove(target);
                } else {
                    b.state = State::Closed { failures: 0 };
                }
            }
        });
    }

    /// Records that a request to `target` failed in a way that counts against it (the upstream
    /// was to blame). Returns whether this failure opened the breaker.
    pub fn record_failure(&self, target: &Arc<str>) -> bool {
        self.with(|settings, map| {
            let threshold = settings.failure_threshold;
            if threshold == 0 {
                return false;
            }
            let open_for = settings.open_for;
            let b = map.entry(target.clone()).or_insert(Breaker {
                state: State::Closed { failures: 0 },
                times_opened: 0,
            });
            let now = Instant::now();
            let open = match b.state {
                State::Closed { failures } => {
                    let failures = failures.saturating_add(1);
                    b.state = State::Closed { failures };
                    failures >= threshold
                }
                // A failed probe opens the breaker again; failures reported by requests that
                // started before it opened change nothing.
                State::HalfOpen { .. } => true,
                State::Open { .. } => false,
            };
            if open {
                b.state = State::Open {
                    until: now + open_for,
                };
                b.times_opened += 1;
            }
            open
        })
    }

    /// Opens `target`'s breaker because another replica opened its own, for the `remaining`
    /// part of that replica's open period. A breaker already open for at least as long is
    /// left alone. Returns whether this breaker changed.
    pub fn open_elsewhere(&self, target: &str, remaining: Duration) -> bool {
        self.with(|settings, map| {
            if settings.failure_threshold == 0 || remaining.is_zero() {
                return false;
            }
            let now = Instant::now();
            let until = now + remaining;
            let b = match map.get_mut(target) {
                Some(b) => b,
                None => map.entry(Arc::from(target)).or_insert(Breaker {
                    state: State::Closed { failures: 0 },
                    times_opened: 0,
                }),
            };
            match b.state {
                State::Open { until: current } if current >= until => false,
                State::Open { .. } => {
                    b.state = State::Open { until };
                    true
                }
                State::Closed { .. } | State::HalfOpen { .. } => {
                    b.state = State::Open { until };
                    b.times_opened += 1;
                    true
                }
            }
        })
    }

    /// Every tracked breaker, sorted by target.
    pub fn snapshot(&self) -> Vec<BreakerView> {
        let now = Instant::now();
        let mut out: Vec<BreakerView> = self.with(|settings, map| {
            map.iter()
                .map(|(target, b)| {
                    let (state, failures, retry_in) = match b.state {
                        State::Closed { failures } => (BreakerState::Closed, failures, None),
                        State::Open { until } if now < until => (
                            BreakerState::Open,
                            settings.failure_threshold,
                            Some(until - now),
                        ),
                        State::Open { .. } => (
                            BreakerState::HalfOpen,
                            settings.failure_threshold,
                            Some(Duration::ZERO),
                        ),
                        State::HalfOpen { .. } => {
                            (BreakerState::HalfOpen, settings.failure_threshold, None)
                        }
                    };
                    BreakerView {
                        target: target.clone(),
                        state,
                        consecutive_failures: failures,
                        retry_in,
                        times_opened: b.times_opened,
                    }
                })
                .collect()
        });
        out.sort_by(|a, b| a.target.cmp(&b.target));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breakers() -> CircuitBreakers {
        CircuitBreakers::new(BreakerSettings {
            failure_threshold: 3,
            open_for: Duration::from_secs(10),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_breaker_opened_elsewhere_sheds_here_for_the_rest_of_its_period() {
        let b = breakers();
        assert!(b.open_elsewhere("anthropic/claude", Duration::from_secs(4)));
        assert!(
            matches!(b.pass("anthropic/claude"), Passage::Open { retry_in } if retry_in == Duration::from_secs(4))
        );
        assert!(
            !b.open_elsewhere("anthropic/claude", Duration::from_secs(2)),
            "already open longer"
        );
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(b.pass("anthropic/claude"), Passage::Probe);
        b.record_success("anthropic/claude");
        assert_eq!(b.pass("anthropic/claude"), Passage::Closed);
        assert_eq!(b.snapshot()[0].times_opened, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_and_half_opens_after_the_cool_down() {
        let b = breakers();
        let t: Arc<str> = Arc::from("openai/gpt-4o");
        assert_eq!(b.pass(&t), Passage::Closed);
        assert!(!b.record_failure(&t));
        assert!(!b.record_failure(&t));
        assert!(b.record_failure(&t), "the third failure opens it");
        assert_eq!(
            b.pass(&t),
            Passage::Open {
                retry_in: Duration::from_secs(10)
            }
        );
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(
            b.pass(&t),
            Passage::Open {
                retry_in: Duration::from_secs(6)
            }
        );
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(b.pass(&t), Passage::Probe, "one probe after the cool-down");
        assert!(!b.pass(&t).allowed(), "only one probe at a time");
        b.record_success(&t);
        assert_eq!(b.pass(&t), Passage::Closed);
        let view = b.snapshot();
        assert_eq!(view[0].state, BreakerState::Closed);
        assert_eq!(view[0].times_opened, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_reopens_and_a_lost_probe_is_replaced() {
        let b = breakers();
        let t: Arc<str> = Arc::from("anthropic/claude");
        for _ in 0..3 {
            b.record_failure(&t);
        }
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(b.pass(&t), Passage::Probe);
        assert!(
            b.record_failure(&t),
            "a failed probe opens the breaker again"
        );
        assert_eq!(b.snapshot()[0].state, BreakerState::Open);
        assert_eq!(b.snapshot()[0].times_opened, 2);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(b.pass(&t), Passage::Probe);
        // The probe's request vanished without reporting; after another cool-down a new
        // probe is let through rather than the target staying out forever.
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(b.pass(&t), Passage::Probe);
    }

    #[tokio::test(start_paused = true)]
    async fn successes_reset_the_count_and_other_targets_are_independent() {
        let b = breakers();
        let t: Arc<str> = Arc::from("a/m");
        let u: Arc<str> = Arc::from("b/m");
        b.record_failure(&t);
        b.record_failure(&t);
        b.record_success(&t);
        b.record_failure(&t);
        b.record_failure(&t);
        assert_eq!(b.pass(&t), Passage::Closed, "not consecutive");
        for _ in 0..3 {
            b.record_failure(&u);
        }
        assert!(!b.pass(&u).allowed());
        assert!(b.pass(&t).allowed());
        assert!(b.snapshot().iter().all(|v| v.target != Arc::from("c/m")));
    }

    #[tokio::test(start_paused = true)]
    async fn new_settings_apply_while_an_open_breaker_stays_open_for_its_period() {
        let b = breakers();
        let open: Arc<str> = Arc::from("a/m");
        let counting: Arc<str> = Arc::from("b/m");
        for _ in 0..3 {
            b.record_failure(&open);
        }
        b.record_failure(&counting);
        b.reconfigure(BreakerSettings {
            failure_threshold: 2,
            open_for: Duration::from_secs(60),
        });
        assert_eq!(b.settings().failure_threshold, 2);
        assert_eq!(
            b.pass(&open),
            Passage::Open {
                retry_in: Duration::from_secs(10)
            },
            "still open, for the period it opened for"
        );
        assert!(
            b.record_failure(&counting),
            "the failure already counted counts against the new threshold"
        );
        assert_eq!(
            b.pass(&counting),
            Passage::Open {
                retry_in: Duration::from_secs(60)
            },
            "opened for the new period"
        );
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(b.pass(&open), Passage::Probe);
        b.record_success(&open);
        assert_eq!(b.pass(&open), Passage::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_threshold_disables_breaking() {
        let b = CircuitBreakers::new(BreakerSettings {
            failure_threshold: 0,
            open_for: Duration::from_secs(1),
        });
        let t: Arc<str> = Arc::from("a/m");
        for _ in 0..100 {
            assert!(!b.record_failure(&t));
        }
        assert_eq!(b.pass(&t), Passage::Closed);
        assert!(b.snapshot().is_empty());
    }
}
