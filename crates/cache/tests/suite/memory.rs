//! The in-memory store: TTLs, the byte bound, the entry size bound and the counters.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use bytes::Bytes;
use portcullis_cache::{CacheCountersSnapshot, CacheKey, CacheStore, MemoryCache};

fn key(n: u32) -> CacheKey {
    let mut bytes = [0u8; 32];
    bytes[..4].copy_from_slice(&n.to_le_bytes());
    CacheKey::from_bytes(bytes)
}

fn value(len: usize, fill: u8) -> Bytes {
    Bytes::from(vec![fill; len])
}

#[tokio::test(start_paused = true)]
async fn entries_expire_after_their_own_ttl() {
    let cache = MemoryCache::new(1 << 20, 1 << 16);
    cache
        .put(&key(1), value(10, 1), Duration::from_secs(60))
        .await
        .unwrap();
    cache
        .put(&key(2), value(10, 2), Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(cache.get(&key(1)).await.unwrap(), Some(value(10, 1)));

    tokio::time::advance(Duration::from_secs(59)).await;
    assert!(
        cache.get(&key(1)).await.unwrap().is_some(),
        "still fresh at 59s"
    );

    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(cache.get(&key(1)).await.unwrap(), None, "expired at 61s");
    assert!(
        cache.get(&key(2)).await.unwrap().is_some(),
        "a longer TTL outlives it"
    );

    // Rewriting an entry gives it a fresh TTL.
    cache
        .put(&key(1), value(10, 3), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(cache.get(&key(1)).await.unwrap(), Some(value(10, 3)));

    tokio::time::advance(Duration::from_secs(600)).await;
    assert_eq!(cache.get(&key(2)).await.unwrap(), None);
}

#[tokio::test]
async fn expired_entries_free_their_memory() {
    // moka keeps its own clock, so this one runs on real time: it waits for the eviction to
    // happen, however long the machine takes, and fails only if it never does.
    let cache = MemoryCache::new(1 << 20, 1 << 16);
    cache
        .put(&key(1), value(1000, 1), Duration::from_millis(20))
        .await
        .unwrap();
    cache
        .put(&key(2), value(1000, 2), Duration::from_secs(3600))
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        cache.run_pending_tasks().await;
        if cache.entry_count() == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "expired entry never evicted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(cache.get(&key(1)).await.unwrap(), None);
    assert!(cache.get(&key(2)).await.unwrap().is_some());
}

#[tokio::test]
async fn the_byte_bound_evicts() {
    const CAPACITY: u64 = 64 * 1024;
    let cache = MemoryCache::new(CAPACITY, 8 * 1024);
    for n in 0..100 {
        cache
            .put(&key(n), value(4096, n as u8), Duration::from_secs(60))
            .await
            .unwrap();
    }
    cache.run_pending_tasks().await;
    assert!(
        cache.weighted_size() <= CAPACITY,
        "{} bytes held over a {CAPACITY}-byte bound",
        cache.weighted_size()
    );
    assert!(cache.entry_count() > 0);
    assert!(cache.entry_count() <= CAPACITY / 4096);
    let mut present = 0;
    for n in 0..100 {
        if cache.get(&key(n)).await.unwrap().is_some() {
            present += 1;
        }
    }
    assert!(
        present <= CAPACITY / 4096,
        "{present} entries of 4 KiB held in 64 KiB"
    );
}

#[tokio::test]
async fn oversized_entries_are_refused_and_counted() {
    let cache = MemoryCache::new(1 << 20, 1024);
    cache
        .put(&key(1), value(1025, 1), Duration::from_secs(60))
        .await
        .unwrap();
    cache
        .put(&key(2), value(1024, 2), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(cache.get(&key(1)).await.unwrap(), None);
    assert_eq!(cache.get(&key(2)).await.unwrap(), Some(value(1024, 2)));
    assert_eq!(
        cache.counters().snapshot(),
        CacheCountersSnapshot {
            hits: 1,
            misses: 1,
            stores: 1,
            oversized: 1,
            errors: 0,
        }
    );
}

#[tokio::test]
async fn delete_and_zero_ttl() {
    let cache = MemoryCache::new(1 << 20, 1024);
    cache
        .put(&key(1), value(8, 1), Duration::from_secs(60))
        .await
        .unwrap();
    cache.delete(&key(1)).await.unwrap();
    assert_eq!(cache.get(&key(1)).await.unwrap(), None);
    cache
        .put(&key(2), value(8, 2), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        cache.get(&key(2)).await.unwrap(),
        None,
        "a zero TTL stores nothing"
    );
    assert_eq!(cache.counters().snapshot().stores, 1);
}
