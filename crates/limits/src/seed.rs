//! The hook that seeds budget counters from durable history, so budgets survive restarts.

use async_trait::async_trait;

use crate::scope::ScopeKind;

/// Why spend history could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SeedError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

impl SeedError {
    /// Wraps any error.
    pub fn new(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> SeedError {
        SeedError(error.into())
    }
}

/// Spend already recorded, used to seed a budget counter the first time a backend sees it in a
/// window (after a restart, after Redis lost the key, or at the start of a window).
///
/// The gateway implements it by summing the cost column of its request log. It is called
/// rarely — once per budget counter per window per replica at most — and never while a lock is
/// held.
#[async_trait]
pub trait SpendSeed: Send + Sync {
    /// US dollars spent by requests whose `scope` value is `value` since `since_unix_ms`
    /// (the window start). For [`ScopeKind::Global`] `value` is empty: sum everything.
    async fn spent_since(
        &self,
        scope: ScopeKind,
        value: &str,
        since_unix_ms: i64,
    ) -> Result<f64, SeedError>;
}
