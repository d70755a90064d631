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
//! The stores, entries and coalescing are the default `runtime` feature; without it the crate
//! is the `cache:` block and request keys, for the configuration crate.
//!
//! Streamed answers are rebuilt for storage with
//! [`portcullis_core::ResponseAccumulator`].

#[cfg(feature = "runtime")]
pub mod coalesce;
pub mod config;
#[cfg(feature = "runtime")]
pub mod entry;
pub mod key;
#[cfg(feature = "runtime")]
pub mod memory;
#[cfg(feature = "runtime")]
pub mod redis_store;
#[cfg(feature = "runtime")]
pub mod store;

#[cfg(feature = "runtime")]
pub use coalesce::{Coalescer, Follower, Joined, LeaderGuard};
pub use config::{
    CacheBackend, CacheConfig, CacheHeaderError, CacheRequestOptions, CacheSettings,
    MAX_REQUEST_TTL, RawCacheConfig, RawCaches, RawTtl, parse_key_header, parse_skip_header,
    parse_ttl_header,
};
#[cfg(feature = "runtime")]
pub use entry::{CachedResponse, EntryError};
pub use key::{CacheKey, fingerprint, fingerprint_custom, is_deterministic};
#[cfg(feature = "runtime")]
pub use memory::MemoryCache;
#[cfg(feature = "runtime")]
pub use redis_store::{DEFAULT_REDIS_PREFIX, RedisCache};
#[cfg(feature = "runtime")]
pub use store::{CacheCounters, CacheCountersSnapshot, CacheError, CacheStore};
