//! The semantic cache table on a real SQLite file and a real PostgreSQL server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use portcullis_store::{PostgresStore, SemanticEntry, SemanticStore, SqliteStore};
use portcullis_test_support::postgres::fresh_schema_url;
use uuid::Uuid;

/// A PostgreSQL store in a fresh schema of its own, so tests never see each other's rows.
async fn postgres() -> Arc<PostgresStore> {
    PostgresStore::connect(&fresh_schema_url().await, 4)
        .await
        .unwrap()
}

async fn sqlite() -> (Arc<SqliteStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("semantic.db").display());
    (SqliteStore::connect(&url, 4).await.unwrap(), dir)
}

fn entry(embedder: &str, created_ms: i64, expires_ms: i64, seed: u8) -> SemanticEntry {
    SemanticEntry {
        id: Uuid::now_v7(),
        scope: [seed; 32],
        embedder_id: embedder.to_owned(),
        embedding: vec![0.6, -0.8, f32::from(seed) / 1000.0, 1e-7],
        answer: format!("answer {seed}").into_bytes(),
        created_ms,
        expires_ms,
    }
}

async fn exercise(store: Arc<dyn SemanticStore>) {
    let now = 1_700_000_000_000;
    let a = entry("local:one", now - 300, now + 1_000, 1);
    let b = entry("local:one", now - 200, now + 1_000, 2);
    let expired = entry("local:one", now - 250, now, 3);
    let other = entry("local:two", now - 100, now + 1_000, 4);
    let c = entry("local:one", now - 100, now + 1_000, 5);
    for e in [&a, &b, &expired, &other, &c] {
        store.insert(e).await.unwrap();
    }
    // Inserting again (a retried write) is harmless and changes nothing.
    let mut changed = b.clone();
    changed.answer = b"something else".to_vec();
    store.insert(&changed).await.unwrap();

    // Newest first, unexpired, this embedder only, every field round-trips.
    let recent = store.load_recent("local:one", now, 10).await.unwrap();
    assert_eq!(recent, vec![c.clone(), b.clone(), a.clone()]);
    assert_eq!(
        store.load_recent("local:one", now, 2).await.unwrap(),
        vec![c.clone(), b.clone()]
    );
    assert_eq!(
        store.load_recent("local:two", now, 10).await.unwrap(),
        vec![other.clone()]
    );

    // Oldest first, strictly after the cursor: a caller pages forward by created_ms.
    assert_eq!(
        store
            .load_since("local:one", now - 300, None, now, 10)
            .await
            .unwrap(),
        vec![b.clone(), c.clone()]
    );
    assert_eq!(
        store
            .load_since("local:one", i64::MIN, None, now, 1)
            .await
            .unwrap(),
        vec![a.clone()]
    );
    assert_eq!(
        store
            .load_since("local:one", now - 300, None, now - 1, 10)
            .await
            .unwrap(),
        vec![expired.clone(), b.clone(), c.clone()],
        "unexpired at the time given"
    );

    // Paging by (created_ms, id) visits entries sharing a millisecond exactly once.
    let same_ms: Vec<SemanticEntry> = (0..5)
        .map(|i| entry("local:page", now, now + 1_000, 10 + i))
        .collect();
    for e in &same_ms {
        store.insert(e).await.unwrap();
    }
    let mut seen = Vec::new();
    let (mut after_ms, mut after_id) = (i64::MIN, None);
    loop {
        let page = store
            .load_since("local:page", after_ms, after_id, now, 2)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        (after_ms, after_id) = (last.created_ms, Some(last.id));
        seen.extend(page);
    }
    assert_eq!(seen, same_ms, "UUIDv7 ids made in order sort in order");
    assert_eq!(store.trim("local:page", 0).await.unwrap(), 5);

    assert_eq!(store.delete_expired(now).await.unwrap(), 1);
    assert_eq!(store.delete_expired(now).await.unwrap(), 0);

    // Trimming keeps the newest entries of one embedder and leaves the others alone.
    assert_eq!(store.trim("local:one", 5).await.unwrap(), 0);
    assert_eq!(store.trim("local:one", 2).await.unwrap(), 1);
    assert_eq!(
        store.load_recent("local:one", now, 10).await.unwrap(),
        vec![c.clone(), b]
    );
    assert_eq!(store.trim("local:one", 0).await.unwrap(), 2);
    assert!(
        store
            .load_recent("local:one", now, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.load_recent("local:two", now, 10).await.unwrap(),
        vec![other]
    );
}

#[tokio::test]
async fn sqlite_semantic_entries_round_trip() {
    let (store, _dir) = sqlite().await;
    exercise(store).await;
}

#[tokio::test]
async fn postgres_semantic_entries_round_trip() {
    exercise(postgres().await).await;
}

#[tokio::test]
async fn sqlite_semantic_entries_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("s.db").display());
    let e = entry("local:one", 10, i64::MAX, 9);
    {
        let store = SqliteStore::connect(&url, 1).await.unwrap();
        store.insert(&e).await.unwrap();
        store.pool().close().await;
    }
    let store = SqliteStore::connect(&url, 1).await.unwrap();
    assert_eq!(
        store.load_recent("local:one", 0, 10).await.unwrap(),
        vec![e]
    );
}

#[tokio::test]
async fn malformed_rows_are_skipped_not_fatal() {
    let (store, _dir) = sqlite().await;
    let good = entry("local:one", 10, i64::MAX, 1);
    store.insert(&good).await.unwrap();
    // A row whose embedding length disagrees with its dimensions.
    sqlx::query(
        "INSERT INTO semantic_cache (id, scope, embedder_id, dimensions, embedding, answer, \
         created_ms, expires_ms) VALUES ($1, $2, 'local:one', 3, $3, $4, 20, $5)",
    )
    .bind(Uuid::now_v7().to_string())
    .bind(vec![0u8; 32])
    .bind(vec![0u8; 5])
    .bind(b"x".to_vec())
    .bind(i64::MAX)
    .execute(store.pool())
    .await
    .unwrap();
    assert_eq!(
        store.load_recent("local:one", 0, 10).await.unwrap(),
        vec![good]
    );
}
