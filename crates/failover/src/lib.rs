//! The policy half of failover: what to try, in which order, how often and how long to wait.
//!
//! Nothing here touches the network. The gateway's attempt loop asks this crate for an order
//! of targets ([`balance`]), skips targets whose circuit is open ([`breaker`]), and between
//! attempts asks whether and when to try again ([`retry`]). Decisions read only what a
//! [`portcullis_core::GatewayError`] says — whether a retry may help and who is to blame —
//! never status codes or messages.
//!
//! - [`retry`]: [`RetryPolicy`] (attempts per target, constant/linear/exponential backoff with
//!   jitter, the upstream's `Retry-After` honoured) and the retry/failover predicates.
//! - [`breaker`]: [`CircuitBreakers`], one breaker per target: opens after consecutive
//!   failures, half-opens after a cool-down to let one probe through, closes on success.
//! - [`balance`]: [`Strategy`] (ordered, weighted, latency-aware) and [`LatencyTracker`].
//! - [`settings`]: the configuration blocks (`retry`, `timeouts`, `circuit_breaker`,
//!   `strategy`) as written in YAML, and their validation.

pub mod balance;
pub mod breaker;
pub mod retry;
pub mod settings;

pub use balance::{LatencyTracker, Strategy};
pub use breaker::{BreakerSettings, BreakerState, BreakerView, CircuitBreakers, Passage};
pub use retry::{Backoff, RetryPolicy, should_fail_over, should_retry};
pub use settings::{
    FailoverConfig, RawBreaker, RawDuration, RawFailover, RawRetry, RawRoutePolicy, RawTimeouts,
    RoutePolicy, Timeouts, parse_duration,
};
