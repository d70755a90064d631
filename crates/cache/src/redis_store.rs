//! The shared cache store: Redis, so every gateway replica answers from the same entries.
//!
//! Entries are plain strings under `<prefix><64 hex digits>` (by default
//! `portcullis:cache:…`), written with `SET … PX <ttl>` so Redis expires them itself.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use redis::aio::ConnectionManager;

use crate::key::CacheKey;
use crate::store::{CacheCounters, CacheError, CacheStore, LONGEST_TTL};

/// The key prefix entries are stored under unless another is chosen.
pub const DEFAULT_REDIS_PREFIX: &str = "portcullis:cache:";

/// A cache store on a Redis server.
pub struct RedisCache {
    connection: ConnectionManager,
    prefix: String,
    max_entry_bytes: usize,
    counters: CacheCounters,
}

impl RedisCache {
    /// Connects to the Redis server at `url` (`redis://…`, `rediss://…`), storing entries
    /// under `prefix` and refusing entries over `max_entry_bytes`.
    pub async fn connect(
        url: &str,
        prefix: &str,
        max_entry_bytes: usize,
    ) -> Result<Self, CacheError> {
        let client = redis::Client::open(url)?;
        let connection = ConnectionManager::new(client).await?;
        Ok(Self::new(connection, prefix, max_entry_bytes))
    }

    /// A store over an existing connection manager (shared with other Redis users).
    pub fn new(connection: ConnectionManager, prefix: &str, max_entry_bytes: usize) -> Self {
        Self {
            connection,
            prefix: prefix.to_owned(),
            max_entry_bytes,
            counters: CacheCounters::default(),
        }
    }

    /// The Redis key an entry is stored under.
    pub fn redis_key(&self, key: &CacheKey) -> Vec<u8> {
        let mut hex = [0u8; 64];
        key.write_hex(&mut hex);
        let mut out = Vec::with_capacity(self.prefix.len() + hex.len());
        out.extend_from_slice(self.prefix.as_bytes());
        out.extend_from_slice(&hex);
        out
    }

    /// Counts a failure before handing it back.
    fn failed(&self, error: redis::RedisError) -> CacheError {
        self.counters.record_error();
        CacheError::Redis(error)
    }
}

impl fmt::Debug for RedisCache {
    // The connection is left out: its address may carry a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCache")
            .field("prefix", &self.prefix)
            .field("max_entry_bytes", &self.max_entry_bytes)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl CacheStore for RedisCache {
    async fn get(&self, key: &CacheKey) -> Result<Option<Bytes>, CacheError> {
        let mut connection = self.connection.clone();
        let value: Option<Vec<u8>> = redis::cmd("GET")
            .arg(self.redis_key(key))
            .query_async(&mut connection)
            .await
            .map_err(|e| self.failed(e))?;
        match value {
            Some(value) => {
                self.counters.record_hit();
                Ok(Some(Bytes::from(value)))
            }
            None => {
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
        // Bounded so Redis never refuses the expiry, whatever the caller passes.
        let millis = u64::try_from(ttl.min(LONGEST_TTL).as_millis()).unwrap_or(u64::MAX);
        if millis == 0 {
            return Ok(());
        }
        let mut connection = self.connection.clone();
        redis::cmd("SET")
            .arg(self.redis_key(key))
            .arg(value.as_ref())
            .arg("PX")
            .arg(millis)
            .query_async::<()>(&mut connection)
            .await
            .map_err(|e| self.failed(e))?;
        self.counters.record_store();
        Ok(())
    }

    async fn delete(&self, key: &CacheKey) -> Result<(), CacheError> {
        let mut connection = self.connection.clone();
        redis::cmd("DEL")
            .arg(self.redis_key(key))
            .query_async::<()>(&mut connection)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(())
    }

    fn counters(&self) -> &CacheCounters {
        &self.counters
    }
}
