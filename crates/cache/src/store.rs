//! The storage seam of the cache: the [`CacheStore`] trait, its error, and the counters every
//! store keeps.

use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::key::CacheKey;

/// The longest an entry is kept, whatever TTL it is stored with: one year.
pub(crate) const LONGEST_TTL: Duration = crate::config::MAX_TTL;

/// Why a cache operation failed. The gateway treats a failing cache as a miss and logs it.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The Redis server could not be reached or refused the command.
    #[error("redis cache: {0}")]
    Redis(#[from] redis::RedisError),
}

/// Stores of encoded cache entries, keyed by [`CacheKey`].
#[async_trait]
pub trait CacheStore: Send + Sync + Debug {
    /// The entry under `key`, if present and not expired.
    async fn get(&self, key: &CacheKey) -> Result<Option<Bytes>, CacheError>;

    /// Stores `value` under `key` for `ttl`. Values larger than the store's entry bound, and
    /// zero TTLs, are skipped (and the former counted as oversized), not errors.
    async fn put(&self, key: &CacheKey, value: Bytes, ttl: Duration) -> Result<(), CacheError>;

    /// Removes the entry under `key`, if any.
    async fn delete(&self, key: &CacheKey) -> Result<(), CacheError>;

    /// The store's counters, for metrics.
    fn counters(&self) -> &CacheCounters;
}

/// Operation counts of one store: plain atomics the gateway exports as metrics.
#[derive(Debug, Default)]
pub struct CacheCounters {
    hits: AtomicU64,
    misses: AtomicU64,
    stores: AtomicU64,
    oversized: AtomicU64,
    errors: AtomicU64,
}

/// A point-in-time copy of [`CacheCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheCountersSnapshot {
    /// Lookups that found an entry.
    pub hits: u64,
    /// Lookups that found none.
    pub misses: u64,
    /// Entries written.
    pub stores: u64,
    /// Entries not written because they exceeded the entry size bound.
    pub oversized: u64,
    /// Operations that failed (backend unreachable, command refused).
    pub errors: u64,
}

impl CacheCounters {
    /// Counts a lookup that found an entry.
    pub fn record_hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a lookup that found none.
    pub fn record_miss(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an entry written.
    pub fn record_store(&self) {
        self.stores.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an entry refused for its size.
    pub fn record_oversized(&self) {
        self.oversized.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a failed operation.
    pub fn record_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// The current counts.
    pub fn snapshot(&self) -> CacheCountersSnapshot {
        CacheCountersSnapshot {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            stores: self.stores.load(Ordering::Relaxed),
            oversized: self.oversized.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}
