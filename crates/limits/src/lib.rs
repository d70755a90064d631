//! Rate limits, concurrency limits and spend budgets for LLM requests.
//!
//! The gateway builds one [`Limiter`] at startup from validated [`LimitRules`] (see [`config`]
//! for the YAML shape) and a [`LimitBackend`]: [`MemoryBackend`] for a single replica, or
//! [`RedisBackend`] when several replicas must share counters. On every request it calls
//! [`Limiter::admit`] with the request's [`Subjects`] (key, user, team, model, …) and an
//! [`Estimate`] of its tokens and cost, before calling the upstream. The answer is either an
//! [`Admission`] — settled with the real usage after the answer, or released when dropped — or a
//! [`Refusal`] naming the rule, its limit and when to retry.
//!
//! Guarantees:
//! - **All or nothing.** Every rule that applies to a request is checked and taken in one atomic
//!   step (one lock set in memory, one Lua script on Redis); a refused request consumes nothing.
//! - **No over-admission under races**, on either backend, across replicas sharing one Redis.
//! - **Budgets survive restarts**: the first time a budget counter is seen in a window it is
//!   seeded from the request log through [`SpendSeed`].
//! - **Money is integer micro-dollars** internally; configuration and messages use dollars.
//! - **Time is injectable** ([`Clock`]): every decision uses the backend's clock, passed into the
//!   Redis scripts as an argument (not Redis `TIME`), so budget windows, sliding-window indexes
//!   and counters share one time source, and tests control days and months without sleeping.
//!   Replicas sharing Redis need NTP-synchronised clocks.
//!
//! When the backend cannot be reached (or the spend seed fails), each rule's `fail_open`
//! decides: rate and concurrency rules default to **open** (admit, log a throttled warning,
//! count it in [`LimiterStats`]) because an outage of the limiter should not become an outage of
//! the gateway; budgets default to **closed** (a [`Refusal`] of kind
//! [`RefusalKind::Unavailable`], status 503) because unchecked spending cannot be taken back. If
//! any rule involved in a request fails closed, the request is refused.
//!
//! Cost: on the memory backend an admission with one rule takes a few hundred nanoseconds, each
//! further rule roughly a hundred more, with no heap allocation per rule.

#[cfg(feature = "runtime")]
mod algo;
#[cfg(feature = "runtime")]
pub mod backend;
#[cfg(feature = "runtime")]
mod calendar;
#[cfg(feature = "runtime")]
mod clock;
pub mod config;
#[cfg(feature = "runtime")]
mod limiter;
mod rules;
mod scope;
#[cfg(feature = "runtime")]
mod seed;

#[cfg(feature = "runtime")]
pub use backend::memory::MemoryBackend;
#[cfg(feature = "runtime")]
pub use backend::redis::{RedisBackend, RedisOptions};
#[cfg(feature = "runtime")]
pub use backend::{BackendError, LimitBackend};
#[cfg(feature = "runtime")]
pub use calendar::budget_window;
#[cfg(feature = "runtime")]
pub use clock::{Clock, ManualClock, SystemClock};
#[cfg(feature = "runtime")]
pub use limiter::{
    Admission, Estimate, Limiter, LimiterStats, RateLimitStatus, Refusal, RefusalKind,
};
pub use rules::{Algorithm, BudgetRule, LimitRules, Period, RateRule, RateUnit, Rule, RuleKind};
pub use scope::{ScopeKind, Subjects};
#[cfg(feature = "runtime")]
pub use seed::{SeedError, SpendSeed};
