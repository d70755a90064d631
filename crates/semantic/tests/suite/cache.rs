//! The semantic cache end to end on the real model, with its entries in a real SQLite file
//! and a real PostgreSQL server: restarts, replicas, embedder changes, expiry, trimming and
//! write failures.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::common::{ManualClock, PgSchema, SqliteFile};
use async_trait::async_trait;
use bytes::Bytes;
use portcullis_core::{ChatRequest, Message, Role};
use portcullis_semantic::{
    CacheOptions, DEFAULT_THRESHOLD, EmbedError, Embedder, ScopeHash, SemanticCache, scope,
    semantic_text,
};
use portcullis_store::SemanticStore;

const DAY: Duration = Duration::from_secs(86_400);

/// The real model under another id, as after a model upgrade.
#[derive(Debug)]
struct Renamed(&'static str);

#[async_trait]
impl Embedder for Renamed {
    fn id(&self) -> &str {
        self.0
    }
    fn dimensions(&self) -> usize {
        crate::common::local_embedder().dimensions()
    }
    async fn embed(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        crate::common::local_embedder().embed(text).await
    }
}

fn chat(system: &str, question: &str) -> ChatRequest {
    ChatRequest {
        model: "support".into(),
        messages: vec![
            Message::text(Role::System, system),
            Message::text(Role::User, question),
        ],
        ..ChatRequest::default()
    }
}

fn cache(store: Arc<dyn SemanticStore>, options: CacheOptions) -> SemanticCache {
    SemanticCache::new(crate::common::local_embedder(), Some(store), options)
}

/// Answers a request from `cache` if it can, else stores `answer` for it.
async fn answer(
    cache: &SemanticCache,
    tenant: &str,
    request: &ChatRequest,
    answer: &str,
) -> Option<(Bytes, f32)> {
    let scope = scope(request, tenant, "openai/gpt-4o-mini");
    let lookup = cache
        .lookup(&scope, &semantic_text(request), DEFAULT_THRESHOLD)
        .await
        .unwrap();
    match lookup.hit {
        Some(hit) => Some((hit.answer, hit.score)),
        None => {
            cache
                .store(
                    scope,
                    lookup.embedding,
                    lookup.signature,
                    Bytes::from(answer.to_owned()),
                    DAY,
                )
                .unwrap();
            None
        }
    }
}

async fn survives_restart(first: Arc<dyn SemanticStore>, second: Arc<dyn SemanticStore>) {
    let a = cache(first, CacheOptions::default());
    assert_eq!(a.load().await.unwrap(), 0);
    assert!(
        answer(
            &a,
            "acme",
            &chat("Be brief.", "How do I reset my password?"),
            "Use the reset link."
        )
        .await
        .is_none()
    );
    assert!(
        answer(
            &a,
            "acme",
            &chat("Be brief.", "What is the capital of France?"),
            "Paris."
        )
        .await
        .is_none()
    );
    assert!(
        answer(
            &a,
            "globex",
            &chat("Be brief.", "How do I reset my password?"),
            "Call IT."
        )
        .await
        .is_none()
    );
    a.flush().await;
    assert_eq!(a.stats().writes_succeeded.load(Ordering::Relaxed), 3);

    // A new process: an empty index filled from the store.
    let b = cache(second, CacheOptions::default());
    assert_eq!(b.load().await.unwrap(), 3);
    let (hit, score) = answer(
        &b,
        "acme",
        &chat("Be brief.", "I forgot my password, how can I change it?"),
        "-",
    )
    .await
    .expect("a paraphrase hits after the restart");
    assert_eq!(hit, "Use the reset link.");
    assert!(score > DEFAULT_THRESHOLD, "{score}");
    let (hit, _) = answer(
        &b,
        "globex",
        &chat("Be brief.", "How can I reset my password?"),
        "-",
    )
    .await
    .unwrap();
    assert_eq!(hit, "Call IT.", "each tenant gets its own answer");
    assert_eq!(b.stats().hits.load(Ordering::Relaxed), 2);
}

#[tokio::test]
async fn sqlite_entries_survive_a_restart() {
    let file = SqliteFile::new();
    let first = file.connect().await;
    survives_restart(first.clone(), file.connect().await).await;
}

#[tokio::test]
async fn postgres_entries_survive_a_restart() {
    let schema = PgSchema::new().await;
    survives_restart(schema.connect().await, schema.connect().await).await;
}

async fn replicas_share_entries(one: Arc<dyn SemanticStore>, two: Arc<dyn SemanticStore>) {
    // Small pages, so a sync has to page through several.
    let options = CacheOptions {
        page_size: 2,
        ..CacheOptions::default()
    };
    let a = cache(one, options);
    let b = cache(two, options);
    a.load().await.unwrap();
    b.load().await.unwrap();
    let questions = [
        ("How tall is Mount Everest?", "8,849 m"),
        ("Who wrote Pride and Prejudice?", "Jane Austen"),
        ("What is the boiling point of water?", "100 °C at sea level"),
        ("Why is the sky blue?", "Rayleigh scattering"),
        ("How many days are in a leap year?", "366"),
    ];
    for (q, reply) in questions {
        assert!(answer(&a, "acme", &chat("sys", q), reply).await.is_none());
    }
    a.flush().await;
    assert_eq!(b.sync().await.unwrap(), 5, "written by the other replica");
    assert_eq!(b.sync().await.unwrap(), 0, "rows read again are recognised");
    let (hit, _) = answer(
        &b,
        "acme",
        &chat("sys", "What is the height of Mount Everest?"),
        "-",
    )
    .await
    .unwrap();
    assert_eq!(hit, "8,849 m");

    // And the other way round.
    assert!(
        answer(&b, "acme", &chat("sys", "Can dogs eat chocolate?"), "No.")
            .await
            .is_none()
    );
    b.flush().await;
    assert_eq!(a.sync().await.unwrap(), 1);
    let (hit, _) = answer(
        &a,
        "acme",
        &chat("sys", "Is chocolate safe for dogs to eat?"),
        "-",
    )
    .await
    .unwrap();
    assert_eq!(hit, "No.");
}

#[tokio::test]
async fn sqlite_replicas_pick_up_each_others_entries() {
    let file = SqliteFile::new();
    replicas_share_entries(file.connect().await, file.connect().await).await;
}

#[tokio::test]
async fn postgres_replicas_pick_up_each_others_entries() {
    let schema = PgSchema::new().await;
    replicas_share_entries(schema.connect().await, schema.connect().await).await;
}

#[tokio::test]
async fn rows_without_a_signature_are_never_loaded() {
    // A row as written before entries carried their signature, or by another revision of
    // the near-opposite guard: it cannot be checked for opposites, so it is not served.
    let file = SqliteFile::new();
    let store = file.connect().await;
    let request = chat("sys", "How do I enable two-factor authentication?");
    let writer = cache(store.clone(), CacheOptions::default());
    let lookup = writer
        .lookup(
            &scope(&request, "acme", "openai/gpt-4o-mini"),
            &semantic_text(&request),
            DEFAULT_THRESHOLD,
        )
        .await
        .unwrap();
    let row = portcullis_store::SemanticEntry {
        id: uuid::Uuid::now_v7(),
        scope: scope(&request, "acme", "openai/gpt-4o-mini").0,
        embedder_id: writer.embedder().id().to_owned(),
        embedding: lookup.embedding.values().to_vec(),
        answer: b"Open Settings, then Security.".to_vec(),
        created_ms: 1,
        expires_ms: i64::MAX,
    };
    store.insert(&row).await.unwrap();
    let mut framed = row.clone();
    framed.id = uuid::Uuid::now_v7();
    framed.answer = portcullis_semantic::guard::frame(&lookup.signature, b"framed");
    store.insert(&framed).await.unwrap();

    let reader = cache(store, CacheOptions::default());
    assert_eq!(reader.load().await.unwrap(), 1, "only the framed row");
    let (hit, _) = answer(&reader, "acme", &request, "fresh").await.unwrap();
    assert_eq!(hit, "framed");
}

#[tokio::test]
async fn entries_of_another_embedder_are_ignored() {
    let file = SqliteFile::new();
    let store = file.connect().await;
    let old = SemanticCache::new(
        Arc::new(Renamed("local:old-model")),
        Some(store.clone()),
        CacheOptions::default(),
    );
    let request = chat("sys", "What is the speed of light?");
    assert!(
        answer(&old, "acme", &request, "299,792 km/s")
            .await
            .is_none()
    );
    old.flush().await;

    let new = cache(store, CacheOptions::default());
    assert_eq!(new.load().await.unwrap(), 0);
    assert_eq!(new.sync().await.unwrap(), 0);
    assert!(
        answer(&new, "acme", &request, "fresh").await.is_none(),
        "the identical question misses"
    );
}

#[tokio::test]
async fn expired_entries_are_never_served_nor_loaded_and_maintenance_bounds_the_table() {
    let file = SqliteFile::new();
    let store = file.connect().await;
    let clock = ManualClock::at(1_700_000_000_000);
    let options = CacheOptions {
        max_entries: 2,
        ..CacheOptions::default()
    };
    let cache_at =
        |clock: &Arc<ManualClock>| cache(store.clone(), options).with_clock(clock.clone());
    let a = cache_at(&clock);
    let request = chat("sys", "What is compound interest?");
    let s = scope(&request, "acme", "m");
    a.store_text(
        s,
        &semantic_text(&request),
        Bytes::from_static(b"short-lived"),
        Duration::from_secs(60),
    )
    .await
    .unwrap()
    .unwrap();
    a.flush().await;
    let paraphrase = semantic_text(&chat("sys", "Can you explain how compound interest works?"));
    assert!(
        a.lookup(&s, &paraphrase, DEFAULT_THRESHOLD)
            .await
            .unwrap()
            .hit
            .is_some()
    );
    clock.advance(60_000);
    assert!(
        a.lookup(&s, &paraphrase, DEFAULT_THRESHOLD)
            .await
            .unwrap()
            .hit
            .is_none(),
        "expired entries never match"
    );
    assert!(
        cache_at(&clock).load().await.unwrap() == 0,
        "nor are they loaded"
    );

    // Four fresh entries for a cache bounded to two: the index keeps the newest two, and
    // maintenance deletes the expired row and trims the table to two.
    for (i, q) in [
        "Why do earthquakes happen?",
        "How do I boil an egg?",
        "What is photosynthesis?",
        "How do I track my package?",
    ]
    .iter()
    .enumerate()
    {
        clock.advance(10);
        a.store_text(
            s,
            &semantic_text(&chat("sys", q)),
            Bytes::from(i.to_string()),
            DAY,
        )
        .await
        .unwrap()
        .unwrap();
    }
    a.flush().await;
    assert_eq!(a.index().len(), 2);
    a.maintain().await.unwrap();
    let rows = store.load_recent(a.embedder().id(), 0, 100).await.unwrap();
    // Each row carries its signature in front of the answer.
    let answers: Vec<&[u8]> = rows
        .iter()
        .map(|r| portcullis_semantic::guard::unframe(&r.answer).unwrap().1)
        .collect();
    assert_eq!(answers, vec![b"3".as_slice(), b"2".as_slice()]);
    assert_eq!(
        store.delete_expired(i64::MAX - 1).await.unwrap(),
        2,
        "nothing else was left"
    );
}

#[tokio::test]
async fn failed_and_refused_writes_are_counted_and_never_fail_the_request() {
    let file = SqliteFile::new();
    let store = file.connect().await;
    sqlx::query("DROP TABLE semantic_cache")
        .execute(store.pool())
        .await
        .unwrap();
    let broken = cache(store.clone(), CacheOptions::default());
    let request = chat("sys", "How do I write a cover letter?");
    let s = scope(&request, "acme", "m");
    let id = broken
        .store_text(
            s,
            &semantic_text(&request),
            Bytes::from_static(b"kept"),
            DAY,
        )
        .await
        .unwrap();
    assert!(id.is_some(), "stored in memory regardless");
    broken.flush().await;
    assert_eq!(broken.stats().writes_failed.load(Ordering::Relaxed), 1);
    assert_eq!(broken.stats().writes_succeeded.load(Ordering::Relaxed), 0);
    let hit = broken
        .lookup(&s, &semantic_text(&request), DEFAULT_THRESHOLD)
        .await
        .unwrap()
        .hit
        .unwrap();
    assert_eq!(hit.answer, "kept");
    assert!(
        broken.load().await.is_err(),
        "store failures are reported where they are awaited"
    );

    let refused = cache(
        store,
        CacheOptions {
            max_pending_writes: 0,
            ..CacheOptions::default()
        },
    );
    refused
        .store_text(s, &semantic_text(&request), Bytes::from_static(b"x"), DAY)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(refused.stats().writes_dropped.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn a_cache_without_a_store_works_in_memory() {
    let cache = SemanticCache::new(
        crate::common::local_embedder(),
        None,
        CacheOptions::default(),
    );
    assert_eq!(cache.load().await.unwrap(), 0);
    let request = chat("sys", "What does HTTP 404 mean?");
    assert!(
        answer(&cache, "acme", &request, "Not found.")
            .await
            .is_none()
    );
    let (hit, _) = answer(
        &cache,
        "acme",
        &chat("sys", "What is a 404 error in HTTP?"),
        "-",
    )
    .await
    .unwrap();
    assert_eq!(hit, "Not found.");
    assert_eq!(cache.stats().writes_dropped.load(Ordering::Relaxed), 0);
    // Another scope, same question: a miss.
    assert!(
        cache
            .lookup(
                &ScopeHash([0; 32]),
                &semantic_text(&request),
                DEFAULT_THRESHOLD
            )
            .await
            .unwrap()
            .hit
            .is_none()
    );
}
