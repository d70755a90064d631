//! The exact response cache on the request path: lookup before the upstream call, coalescing
//! of identical requests in flight, and filling after a complete answer.
//!
//! A request is looked up when the caller did not send `x-portcullis-skip-cache` and either the
//! cache is on for its route and the request is deterministic (temperature 0, or any request
//! with `nondeterministic: true`), or the caller asked for caching with a TTL or key header —
//! which, as in Cloudflare's gateway, turns the cache on for that request even where the file
//! leaves it off, unless the operator set `per_request: false`. The key mixes the
//! caller's tenant scope, so tenants never share entries. On a miss the first request becomes
//! the *leader* for its key: identical requests arriving meanwhile wait for its answer instead
//! of calling the upstream. A store that fails is treated as a miss and counted, never as an
//! error for the caller.

use portcullis_identity::ControlOverrides;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use portcullis_cache::{
    CacheBackend, CacheKey, CacheStore, CachedResponse, Coalescer, Joined, LeaderGuard,
    MemoryCache, RedisCache, fingerprint, fingerprint_custom,
};
use portcullis_config::CacheConfig;
use portcullis_core::ChatRequest;

use crate::headers::RequestOptions;

/// Redis key prefix of cache entries.
const REDIS_PREFIX: &str = "portcullis:cache:";

/// The cache as the gateway uses it.
#[derive(Debug)]
pub struct ResponseCache {
    store: Arc<dyn CacheStore>,
    coalescer: Coalescer,
    config: CacheConfig,
}

/// Whose entry a lookup is for.
#[derive(Debug, Clone, Copy)]
pub struct CacheTarget<'a> {
    /// The route the request named, if any (its cache settings apply).
    pub route: Option<&'a str>,
    /// The caller's tenant: two tenants never share an entry.
    pub scope: &'a str,
    /// The route or `provider/model` the request resolved to.
    pub target: &'a str,
}

/// What a lookup found.
pub enum Lookup {
    /// A stored answer.
    Hit(CachedResponse),
    /// Nothing stored: call the upstream, then fill.
    Miss(CacheFill),
    /// The cache does not apply to this request.
    Bypass,
}

/// The right to fill one cache entry after the upstream answered.
///
/// Dropping it unfilled releases any requests waiting on the same key; they call the upstream
/// themselves.
#[derive(Debug)]
pub struct CacheFill {
    key: CacheKey,
    ttl: Duration,
    store: Arc<dyn CacheStore>,
    leader: Option<LeaderGuard>,
}

impl std::fmt::Debug for Lookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lookup::Hit(_) => f.write_str("Hit"),
            Lookup::Miss(_) => f.write_str("Miss"),
            Lookup::Bypass => f.write_str("Bypass"),
        }
    }
}

impl CacheFill {
    /// Stores `entry` (an encoded [`CachedResponse`], in the background) and hands it to the
    /// requests waiting on its key.
    pub fn fill(self, entry: Bytes) {
        if let Some(leader) = self.leader {
            leader.complete(entry.clone());
        }
        let store = self.store;
        let (key, ttl) = (self.key, self.ttl);
        tokio::spawn(async move {
            if let Err(e) = store.put(&key, entry, ttl).await {
                tracing::warn!("storing a cache entry failed: {e}");
            }
        });
    }
}

/// Why the cache could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("response cache: {0}")]
pub struct CacheSetupError(String);

impl ResponseCache {
    /// The cache `config` describes, or `None` when no route uses it.
    pub async fn build(
        config: &CacheConfig,
        redis: Option<&redis::aio::ConnectionManager>,
    ) -> Result<Option<Self>, CacheSetupError> {
        // Built even when the file turns caching off everywhere: a virtual key, or a request's
        // TTL or key header, may turn it on for its own requests. An unused store holds nothing.
        let shape = &config.default;
        let store: Arc<dyn CacheStore> = match shape.backend {
            CacheBackend::Memory => {
                Arc::new(MemoryCache::new(shape.max_bytes, shape.max_entry_bytes))
            }
            CacheBackend::Redis => {
                let conn = redis.ok_or_else(|| {
                    CacheSetupError("the redis backend needs PORTCULLIS_REDIS_URL".into())
                })?;
                Arc::new(RedisCache::new(
                    conn.clone(),
                    REDIS_PREFIX,
                    shape.max_entry_bytes,
                ))
            }
        };
        Ok(Some(Self {
            store,
            coalescer: Coalescer::new(),
            config: config.clone(),
        }))
    }

    /// The same store and waiting requests under `config`'s settings (a reload keeps what is
    /// cached).
    pub fn reconfigured(&self, config: &CacheConfig) -> Self {
        Self {
            store: self.store.clone(),
            coalescer: self.coalescer.clone(),
            config: config.clone(),
        }
    }

    /// The store's counters.
    pub fn store(&self) -> &Arc<dyn CacheStore> {
        &self.store
    }

    /// Looks `request` up for `to`; `key` is the calling key's own cache settings (between
    /// the route's and the request's headers); `wait` bounds how long a coalesced request waits for
    /// its leader.
    pub async fn lookup(
        &self,
        to: CacheTarget<'_>,
        request: &ChatRequest,
        options: &RequestOptions,
        key: Option<&ControlOverrides>,
        wait: Duration,
    ) -> Lookup {
        let CacheTarget {
            route,
            scope,
            target,
        } = to;
        let settings = self.config.settings(route);
        let keyed;
        let settings = match key {
            Some(k)
                if k.cache_enabled.is_some()
                    || k.cache_ttl.is_some()
                    || k.cache_nondeterministic.is_some() =>
            {
                let mut s = settings.clone();
                s.enabled = k.cache_enabled.unwrap_or(s.enabled);
                s.ttl = k.cache_ttl.unwrap_or(s.ttl);
                s.nondeterministic = k.cache_nondeterministic.unwrap_or(s.nondeterministic);
                keyed = s;
                &keyed
            }
            _ => settings,
        };
        let asked = options.cache_ttl.is_some() || options.cache_key.is_some();
        if options.skip_cache || !settings.applies(request, asked) {
            return Lookup::Bypass;
        }
        let key = match &options.cache_key {
            Some(custom) => fingerprint_custom(scope, custom),
            None => fingerprint(scope, target, request),
        };
        match self.store.get(&key).await {
            // The store counts its own hits, misses and errors.
            Ok(Some(bytes)) => {
                if let Some(hit) = decode(&bytes) {
                    return Lookup::Hit(hit);
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!("cache lookup failed, treating as a miss: {e}"),
        }
        let ttl = options.cache_ttl.unwrap_or(settings.ttl);
        let leader = if settings.coalesce {
            match self.coalescer.join(key) {
                Joined::Leader(guard) => Some(guard),
                Joined::Follower(follower) => {
                    if let Some(hit) = follower.wait(wait).await.as_ref().and_then(decode) {
                        return Lookup::Hit(hit);
                    }
                    None
                }
            }
        } else {
            None
        };
        Lookup::Miss(CacheFill {
            key,
            ttl,
            store: self.store.clone(),
            leader,
        })
    }
}

fn decode(bytes: &Bytes) -> Option<CachedResponse> {
    match CachedResponse::decode_shared(bytes) {
        Ok(e) => Some(e),
        Err(e) => {
            tracing::warn!("ignoring an unreadable cache entry: {e}");
            None
        }
    }
}
