//! The Redis store against a real Redis server (`PORTCULLIS_TEST_REDIS_URL`, default
//! `redis://127.0.0.1:6379`). Every test stores under a prefix of its own.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use bytes::Bytes;
use portcullis_cache::{CacheError, CacheKey, CacheStore, RedisCache, fingerprint_custom};

fn redis_url() -> String {
    std::env::var("PORTCULLIS_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

fn unique_prefix() -> String {
    format!("portcullis-test:{}:cache:", uuid::Uuid::now_v7().simple())
}

async fn store(max_entry_bytes: usize) -> RedisCache {
    RedisCache::connect(&redis_url(), &unique_prefix(), max_entry_bytes)
        .await
        .expect("Redis is running")
}

/// A plain connection for looking at what the store wrote.
async fn inspector() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

fn key(name: &str) -> CacheKey {
    fingerprint_custom("redis-tests", name)
}

#[tokio::test]
async fn put_get_delete() {
    let cache = store(1 << 20).await;
    let k = key("a");
    assert_eq!(cache.get(&k).await.unwrap(), None);
    let value = Bytes::from_static(b"\x00binary\xffentry");
    cache
        .put(&k, value.clone(), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(cache.get(&k).await.unwrap(), Some(value));
    cache.delete(&k).await.unwrap();
    assert_eq!(cache.get(&k).await.unwrap(), None);

    let counts = cache.counters().snapshot();
    assert_eq!((counts.hits, counts.misses, counts.stores), (1, 2, 1));
}

#[tokio::test]
async fn entries_are_written_under_the_prefix_with_their_ttl() {
    let cache = store(1 << 20).await;
    let k = key("ttl");
    cache
        .put(&k, Bytes::from_static(b"v"), Duration::from_secs(60))
        .await
        .unwrap();

    let redis_key = cache.redis_key(&k);
    assert!(redis_key.ends_with(k.to_hex().as_bytes()));
    assert!(redis_key.starts_with(b"portcullis-test:"));
    let mut conn = inspector().await;
    let pttl: i64 = redis::cmd("PTTL")
        .arg(&redis_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(pttl > 0 && pttl <= 60_000, "PTTL {pttl}");
    let stored: Vec<u8> = redis::cmd("GET")
        .arg(&redis_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(stored, b"v");
}

#[tokio::test]
async fn redis_expires_entries() {
    let cache = store(1 << 20).await;
    let k = key("short");
    cache
        .put(&k, Bytes::from_static(b"v"), Duration::from_millis(30))
        .await
        .unwrap();
    // Redis expires on its own clock: wait for it, failing only if it never happens.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while cache.get(&k).await.unwrap().is_some() {
        assert!(std::time::Instant::now() < deadline, "entry never expired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn oversized_entries_are_not_written() {
    let cache = store(16).await;
    let k = key("big");
    cache
        .put(&k, Bytes::from(vec![7u8; 17]), Duration::from_secs(60))
        .await
        .unwrap();
    let mut conn = inspector().await;
    let exists: bool = redis::cmd("EXISTS")
        .arg(cache.redis_key(&k))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!exists);
    assert_eq!(cache.counters().snapshot().oversized, 1);
    assert_eq!(cache.counters().snapshot().stores, 0);
}

#[tokio::test]
async fn two_stores_with_different_prefixes_do_not_share_entries() {
    let a = store(1 << 20).await;
    let b = store(1 << 20).await;
    let k = key("shared");
    a.put(&k, Bytes::from_static(b"a"), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(b.get(&k).await.unwrap(), None);
}

#[tokio::test]
async fn failures_are_returned_and_counted() {
    let cache = store(1 << 20).await;
    let k = key("wrongtype");
    // Put a value of another type where the entry should be: Redis refuses the GET.
    let mut conn = inspector().await;
    let _: () = redis::cmd("LPUSH")
        .arg(cache.redis_key(&k))
        .arg("x")
        .query_async(&mut conn)
        .await
        .unwrap();
    let error = cache.get(&k).await.unwrap_err();
    assert!(matches!(error, CacheError::Redis(_)));
    assert_eq!(cache.counters().snapshot().errors, 1);
    cache.delete(&k).await.unwrap();
}
