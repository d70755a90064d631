//! The in-process cache store: a `moka` cache bounded by total bytes, with a TTL per entry and
//! TinyLFU admission, so one-off answers do not push out popular ones.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use moka::Expiry;
use moka::future::Cache;
use moka::policy::EvictionPolicy;
use tokio::time::Instant;

use crate::key::CacheKey;
use crate::store::{CacheCounters, CacheError, CacheStore, LONGEST_TTL};

/// What an entry costs beyond its bytes (key, timestamps, moka's bookkeeping), so that many
/// tiny entries still count against the capacity.
const ENTRY_OVERHEAD_BYTES: usize = 128;

/// A cache store in this process's memory.
pub struct MemoryCache {
    entries: Cache<CacheKey, MemoryEntry>,
    max_entry_bytes: usize,
    counters: CacheCounters,
}

#[derive(Clone)]
struct MemoryEntry {
    value: Bytes,
    ttl: Duration,
    /// Checked on every read against tokio's clock, so an entry is never served past its
    /// TTL even before moka gets round to evicting it (and so tests can pause time).
    expires_at: Instant,
}

/// Tells moka each entry's own TTL, so expired entries free their memory.
struct PerEntryTtl;

impl Expiry<CacheKey, MemoryEntry> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &CacheKey,
        entry: &MemoryEntry,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(entry.ttl)
    }

    fn expire_after_update(
        &self,
        _key: &CacheKey,
        entry: &MemoryEntry,
        _updated_at: std::time::Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.ttl)
    }
}

impl MemoryCache {
    /// A store holding at most `max_bytes` (entries plus a fixed per-entry overhead), refusing
    /// entries over `max_entry_bytes`.
    pub fn new(max_bytes: u64, max_entry_bytes: usize) -> Self {
        let entries = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_key: &CacheKey, entry: &MemoryEntry| {
                u32::try_from(entry.value.len().saturating_add(ENTRY_OVERHEAD_BYTES))
                    .unwrap_or(u32::MAX)
            })
            .expire_after(PerEntryTtl)
            .eviction_policy(EvictionPolicy::tiny_lfu())
            .build();
        Self {
            entries,
            max_entry_bytes,
            counters: CacheCounters::default(),
        }
    }

    /// The bytes currently accounted to entries (pending maintenance may lag behind).
    pub fn weighted_size(&self) -> u64 {
        self.entries.weighted_size()
    }

    /// The number of entries (pending maintenance may lag behind).
    pub fn entry_count(&self) -> u64 {
        self.entries.entry_count()
    }

    /// Runs moka's pending maintenance (admission, eviction, expiry) now rather than lazily.
    pub async fn run_pending_tasks(&self) {
        self.entries.run_pending_tasks().await;
    }
}

impl fmt::Debug for MemoryCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryCache")
            .field("entries", &self.entries.entry_count())
            .field("weighted_size", &self.entries.weighted_size())
            .field("max_entry_bytes", &self.max_entry_bytes)
            .finish()
    }
}

#[async_trait]
impl CacheStore for MemoryCache {
    async fn get(&self, key: &CacheKey) -> Result<Option<Bytes>, CacheError> {
        match self.entries.get(key).await {
            Some(entry) if entry.expires_at > Instant::now() => {
                self.counters.record_hit();
                Ok(Some(entry.value))
            }
            _ => {
                self.counters.record_miss();
                Ok(None)
            }
        }
    }

    async fn put(&self, key: &CacheKey, value: Bytes, ttl: Duration) -> Result<(), CacheError> {
        if value.len() > self.max_entry_bytes {
            self.counters.record_oversized();
            return Ok(());
        }
        if ttl.is_zero() {
            return Ok(());
        }
        // Bounded so the deadline arithmetic cannot overflow, whatever the caller passes.
        let ttl = ttl.min(LONGEST_TTL);
        let entry = MemoryEntry {
            value,
            ttl,
            expires_at: Instant::now() + ttl,
        };
        self.entries.insert(*key, entry).await;
        self.counters.record_store();
        Ok(())
    }

    async fn delete(&self, key: &CacheKey) -> Result<(), CacheError> {
        self.entries.invalidate(key).await;
        Ok(())
    }

    fn counters(&self) -> &CacheCounters {
        &self.counters
    }
}
