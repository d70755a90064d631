//! The exact response cache of Portcullis: identical LLM requests answered from a stored
//! answer instead of the upstream.
//!
//! The crate owns:
//!
//! - [`key`]: [`fingerprint`] — the 256-bit [`CacheKey`] of a normalized request, scoped to a
//!   tenant and a resolved target — and [`is_deterministic`];
//! - [`entry`]: [`CachedResponse`], the stored form of an answer (a versioned binary header
//!   and the response JSON in the dialect it was produced in);
//! - [`store`]: the [`CacheStore`] trait, its [`CacheError`] and [`CacheCounters`];
//! - [`memory`]: [`MemoryCache`], bounded by bytes with per-entry TTLs and TinyLFU admission;
//! - [`redis_store`]: [`RedisCache`], shared by every replica;
//! - [`coalesce`]: [`Coalescer`], so identical concurrent requests share one upstream call;
//! - [`config`]: the `cache:` configuration section, its validation into [`CacheSettings`],
//!   and the per-request cache headers.
//!
//! Streamed answers are rebuilt for storage with
//! [`portcullis_core::ResponseAccumulator`].

pub mod coalesce;
pub mod config;
pub mod entry;
pub mod key;
pub mod memory;
pub mod redis_store;
pub mod store;

pub use coalesce::{Coalescer, Follower, Joined, LeaderGuard};
pub use config::{
    CacheBackend, CacheConfigIssue, CacheHeaderError, CacheRequestOptions, CacheSettings,
    MAX_REQUEST_TTL, RawCacheConfig, RawTtl, parse_key_header, parse_skip_header, parse_ttl_header,
};
pub use entry::{CachedResponse, EntryError};
pub use key::{CacheKey, fingerprint, fingerprint_custom, is_deterministic};
pub use memory::MemoryCache;
pub use redis_store::{DEFAULT_REDIS_PREFIX, RedisCache};
pub use store::{CacheCounters, CacheCountersSnapshot, CacheError, CacheStore};
