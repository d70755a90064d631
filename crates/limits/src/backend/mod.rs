//! Where counters live: the [`LimitBackend`] contract and its two implementations,
//! [`memory::MemoryBackend`] (in process) and [`redis::RedisBackend`] (shared by replicas).
//!
//! A backend stores counters and applies operations atomically; it knows nothing of rules,
//! scopes or messages. The [`crate::Limiter`] turns rules into [`Charge`]s, hands a whole request
//! to [`LimitBackend::acquire`] at once, and later gives back or tops up what it took with
//! [`LimitBackend::settle`].

pub mod memory;
pub mod redis;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use smallvec::SmallVec;

use crate::clock::Clock;

/// Identifies one counter. Built by [`LimitBackend::counter_key`] from a rule id, an optional
/// window and a scope value, in the form the backend prefers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CounterKey {
    /// A 128-bit keyed hash (in-process backends: no allocation, no collisions in practice).
    Hashed(u128),
    /// A storage key (shared backends).
    Named(Box<str>),
}

impl CounterKey {
    /// A well-mixed 64-bit number derived from the key, for striping locks.
    pub fn stripe(&self) -> u64 {
        match self {
            CounterKey::Hashed(hash) => (*hash >> 64) as u64 ^ (*hash as u64),
            CounterKey::Named(name) => name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            }),
        }
    }
}

/// One check-and-take on one counter.
#[derive(Debug, Clone, PartialEq)]
pub struct Charge {
    /// The counter.
    pub key: CounterKey,
    /// What to check and take.
    pub op: ChargeOp,
}

/// The check-and-take operations.
#[derive(Debug, Clone, PartialEq)]
pub enum ChargeOp {
    /// GCRA: conforms when `max(tat, now) + increment_us - window_us <= now`; taking sets
    /// `tat = max(tat, now) + increment_us`.
    Gcra {
        /// Emission interval times the amount, in microseconds.
        increment_us: i64,
        /// The rule's window (the bucket's depth in time).
        window_us: i64,
    },
    /// Two-window counter: conforms when
    /// `previous * previous_weight + current + amount <= limit`.
    SlidingWindow {
        /// Units allowed per window.
        limit: u64,
        /// Units taken.
        amount: u64,
        /// `now / window`: the current fixed window.
        window_index: i64,
        /// Share of the previous fixed window still inside the sliding window, in `[0, 1]`.
        previous_weight: f64,
        /// The window length.
        window_us: i64,
    },
    /// A lease on one of `limit` slots, released by [`SettleOp::Release`].
    Concurrency {
        /// Most leases at once.
        limit: u32,
    },
    /// A reservation against a budget counter seeded by [`LimitBackend::seed_budget`];
    /// conforms when `spent + reserved < limit` and `spent + reserved + estimate <= limit`.
    Budget {
        /// The budget, in micro-dollars.
        limit_micros: i64,
        /// The amount reserved, in micro-dollars.
        estimate_micros: i64,
    },
}

/// One request's charges, checked and taken together.
#[derive(Debug, Clone, Copy)]
pub struct AcquireRequest<'a> {
    /// The time of the decision, from the backend's clock.
    pub now_us: i64,
    /// Identifies the request's leases and reservations (unique per limiter and process).
    pub lease: u64,
    /// The charges, in rule order.
    pub charges: &'a [Charge],
}

/// A counter's state as seen by [`LimitBackend::acquire`]: after taking when the request was
/// admitted, before it otherwise.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CounterState {
    /// GCRA theoretical arrival time (never earlier than `now`).
    Gcra {
        /// Microseconds since the epoch.
        tat_us: i64,
    },
    /// The two fixed windows' counts.
    SlidingWindow {
        /// Units in the previous window.
        previous: u64,
        /// Units in the current window.
        current: u64,
    },
    /// Leases held.
    Concurrency {
        /// In-flight requests.
        in_flight: u32,
    },
    /// Budget accounting.
    Budget {
        /// Settled spend, micro-dollars.
        spent_micros: i64,
        /// Reserved by requests in flight, micro-dollars.
        reserved_micros: i64,
    },
    /// A budget counter that does not exist yet: seed it, then retry.
    Unseeded,
}

/// A charge's result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    /// The charge fits its limit.
    pub conforms: bool,
    /// The counter's state.
    pub state: CounterState,
}

/// The result of [`LimitBackend::acquire`].
#[derive(Debug, Clone, PartialEq)]
pub struct AcquireOutcome {
    /// Every charge conformed and all were taken; otherwise none was.
    pub admitted: bool,
    /// One verdict per charge, in order.
    pub verdicts: SmallVec<[Verdict; 8]>,
}

/// Gives back, tops up or releases what an admitted request took.
#[derive(Debug, Clone, PartialEq)]
pub struct Settlement {
    /// The counter.
    pub key: CounterKey,
    /// What to do.
    pub op: SettleOp,
}

/// The settlement operations. None of them refuses.
#[derive(Debug, Clone, PartialEq)]
pub enum SettleOp {
    /// Moves the GCRA arrival time: positive charges extra, negative refunds (never below now).
    Gcra {
        /// Microseconds to add to the theoretical arrival time.
        adjust_us: i64,
    },
    /// Adds `adjust` (which may be negative) to fixed window `window_index`, if it is still the
    /// current or previous window.
    SlidingWindow {
        /// The fixed window concerned.
        window_index: i64,
        /// Units to add (never below zero).
        adjust: i64,
        /// The window length.
        window_us: i64,
    },
    /// Releases the request's concurrency lease.
    Release,
    /// Turns the request's reservation into real spend.
    Budget {
        /// What was reserved, micro-dollars.
        reserved_micros: i64,
        /// What was really spent, micro-dollars.
        actual_micros: i64,
    },
}

/// A request's settlements.
#[derive(Debug, Clone, PartialEq)]
pub struct SettleRequest {
    /// The time of settlement, from the backend's clock.
    pub now_us: i64,
    /// The lease given to [`LimitBackend::acquire`].
    pub lease: u64,
    /// The settlements.
    pub settlements: SmallVec<[Settlement; 4]>,
}

/// A backend failure. The limiter turns it into an admission or a 503-style refusal according
/// to each rule's `fail_open`.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// Redis answered with an error or the connection failed.
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    /// No answer in time.
    #[error("the limits backend did not answer within {0:?}")]
    Timeout(Duration),
    /// The backend was created outside a Tokio runtime.
    #[error("the limits backend needs a Tokio runtime: {0}")]
    Runtime(String),
    /// The answer did not have the expected shape.
    #[error("unexpected answer from the limits backend: {0}")]
    Protocol(String),
}

/// Counter storage with atomic multi-counter check-and-take.
#[async_trait]
pub trait LimitBackend: Send + Sync + fmt::Debug {
    /// The clock every decision on this backend uses.
    fn clock(&self) -> &dyn Clock;

    /// The key of the counter for `rule_id`, budget window `window_start_us` (if any) and scope
    /// `value`.
    fn counter_key(&self, rule_id: &str, window_start_us: Option<i64>, value: &str) -> CounterKey;

    /// Checks every charge and, only if all conform, takes them all — atomically with respect to
    /// every other operation on the same counters, across all users of the backend.
    async fn acquire(&self, request: AcquireRequest<'_>) -> Result<AcquireOutcome, BackendError>;

    /// Whether a budget counter exists.
    async fn budget_exists(&self, key: &CounterKey) -> Result<bool, BackendError>;

    /// Creates a budget counter with `spent_micros` already spent, unless it exists (then the
    /// existing one wins, so concurrent seeders agree). It lives `ttl` from `now_us`.
    async fn seed_budget(
        &self,
        key: &CounterKey,
        spent_micros: i64,
        now_us: i64,
        ttl: Duration,
    ) -> Result<(), BackendError>;

    /// Applies settlements. Never blocks: a backend that needs I/O spawns it onto Tokio, so this
    /// can run from a `Drop`. Failures are logged and counted by the backend.
    fn settle(&self, request: SettleRequest);

    /// Waits until every settlement started so far has been applied.
    async fn drain(&self) {}
}
