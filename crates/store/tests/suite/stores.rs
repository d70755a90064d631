//! The request log and settings on a real SQLite file and a real PostgreSQL server, and the
//! batching writer over them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use portcullis_store::{
    CacheFilter, LogQuery, LogRecord, LogStore, LogWriter, PostgresStore, SettingsStore,
    SqliteStore, StatusFilter, StoreError, WriterConfig,
};
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
    let url = format!("sqlite://{}", dir.path().join("logs.db").display());
    (SqliteStore::connect(&url, 4).await.unwrap(), dir)
}

fn record(ts_ms: i64, model: &str, provider: &str, status: u16) -> LogRecord {
    let mut r = LogRecord::new(Uuid::now_v7(), ts_ms, "chat_completions", "openai");
    r.model = Some(Arc::from(model));
    r.requested_model = Some(format!("{provider}/{model}"));
    r.provider = Some(Arc::from(provider));
    r.status = status;
    r.attempts = 1;
    r.input_tokens = 12;
    r.output_tokens = 34;
    r.cached_tokens = 5;
    r.reasoning_tokens = 2;
    r.latency_us = 1234;
    r.ttft_us = Some(456);
    r.metadata = Some(r#"{"team":"search"}"#.to_owned());
    r.subject = Some("master".to_owned());
    r.auth_method = Some("master_key");
    r
}

async fn exercise_log_store(store: Arc<dyn LogStore>) {
    let mut records = Vec::new();
    for i in 0..150 {
        let (model, provider, status) = match i % 3 {
            0 => ("gpt-4o-mini", "openai", 200),
            1 => ("claude-haiku-4-5", "anthropic", 200),
            _ => ("gpt-4o-mini", "openai", 502),
        };
        records.push(record(1_700_000_000_000 + i, model, provider, status));
    }
    store.append(&records).await.unwrap();
    // Appending the same batch again (a retried write) is harmless.
    store.append(&records[..10]).await.unwrap();

    let all = store
        .query(&LogQuery {
            limit: 1000,
            ..LogQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 150);
    assert_eq!(
        all[0], records[149],
        "newest first, every field round-trips"
    );

    let errors = store
        .query(&LogQuery {
            status: StatusFilter::parse("5xx"),
            limit: 1000,
            ..LogQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(errors.len(), 50);
    assert!(errors.iter().all(|r| r.status == 502));

    let anthropic = store
        .query(&LogQuery {
            provider: Some("anthropic".into()),
            since_ms: Some(1_700_000_000_100),
            limit: 1000,
            ..LogQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(anthropic.len(), 17);
    assert!(anthropic.iter().all(|r| r.ts_ms >= 1_700_000_000_100));

    let by_requested = store
        .query(&LogQuery {
            requested_model: Some("openai/gpt-4o-mini".into()),
            limit: 1000,
            ..LogQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(by_requested.len(), 100);
    let served_only = store
        .query(&LogQuery {
            model: Some("openai/gpt-4o-mini".into()),
            limit: 1000,
            ..LogQuery::default()
        })
        .await
        .unwrap();
    assert!(served_only.is_empty(), "`model` is the served model only");

    // Keyset pagination visits every record exactly once.
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .query(&LogQuery {
                before_id: cursor,
                limit: 40,
                ..LogQuery::default()
            })
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        cursor = page.last().map(|r| r.id);
        seen.extend(page.into_iter().map(|r| r.id));
    }
    seen.sort();
    let mut want: Vec<Uuid> = records.iter().map(|r| r.id).collect();
    want.sort();
    assert_eq!(seen, want);
}

/// 60 records a millisecond apart, each filter matching a known subset; ids made at the
/// records' times, as the gateway's are.
fn filter_records() -> Vec<LogRecord> {
    const T: i64 = 1_700_000_000_000;
    (0..60i64)
        .map(|i| {
            let id = uuid::Builder::from_unix_timestamp_millis(
                u64::try_from(T + i).unwrap(),
                &[u8::try_from(i).unwrap(); 10],
            )
            .into_uuid();
            let mut r = LogRecord::new(id, T + i, "chat_completions", "openai");
            r.model = Some(Arc::from(if i % 2 == 0 { "gpt-4o" } else { "gpt-4o-mini" }));
            r.requested_model = Some(if i % 3 == 0 { "fast" } else { "gpt-4o" }.to_owned());
            r.status = match i % 10 {
                0 => 429,
                1 => 502,
                2 => 503,
                _ => 200,
            };
            r.cache_status = match i % 4 {
                0 => None,
                1 => Some("HIT"),
                2 => Some("MISS"),
                _ => Some("BYPASS"),
            };
            r.metadata = match i % 5 {
                0 => Some(format!(
                    r#"{{"env":"prod","ticket":{i},"ok":true,"gone":null}}"#
                )),
                1 => Some(r#"{"env":"dev","nested":{"env":"prod"}}"#.to_owned()),
                2 => Some(format!(r#"{{"long":"{}"}}"#, "x".repeat(300))),
                3 => Some("not json".to_owned()),
                _ => None,
            };
            r
        })
        .collect()
}

async fn ids(store: &dyn LogStore, q: LogQuery) -> Vec<Uuid> {
    store
        .query(&LogQuery { limit: 1000, ..q })
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect()
}

/// The ids of `records` matching `keep`, newest first.
fn expected(records: &[LogRecord], keep: impl Fn(&LogRecord) -> bool) -> Vec<Uuid> {
    records
        .iter()
        .rev()
        .filter(|r| keep(r))
        .map(|r| r.id)
        .collect()
}

async fn exercise_filters(store: Arc<dyn LogStore>) {
    let records = filter_records();
    // Written in two batches, the second one twice (a retried write adds nothing).
    store.append(&records[..25]).await.unwrap();
    store.append(&records[25..]).await.unwrap();
    store.append(&records[25..]).await.unwrap();
    let s = store.as_ref();
    let q = LogQuery::default;

    assert_eq!(
        ids(
            s,
            LogQuery {
                model: Some("gpt-4o".into()),
                ..q()
            }
        )
        .await,
        expected(&records, |r| r.model.as_deref() == Some("gpt-4o"))
    );
    let fast = ids(
        s,
        LogQuery {
            requested_model: Some("fast".into()),
            ..q()
        },
    )
    .await;
    assert_eq!(fast.len(), 20);
    assert_eq!(
        fast,
        expected(&records, |r| r.requested_model.as_deref() == Some("fast"))
    );

    for (filter, want) in [
        (CacheFilter::Hit, Some("HIT")),
        (CacheFilter::Miss, Some("MISS")),
        (CacheFilter::Bypass, Some("BYPASS")),
        (CacheFilter::None, None),
    ] {
        let got = ids(
            s,
            LogQuery {
                cache: Some(filter),
                ..q()
            },
        )
        .await;
        assert_eq!(got.len(), 15, "{filter:?}");
        assert_eq!(got, expected(&records, |r| r.cache_status == want));
    }

    assert_eq!(
        ids(
            s,
            LogQuery {
                status: StatusFilter::parse("5xx"),
                ..q()
            }
        )
        .await,
        expected(&records, |r| r.status >= 500)
    );
    assert_eq!(
        ids(
            s,
            LogQuery {
                status: StatusFilter::parse("429"),
                ..q()
            }
        )
        .await,
        expected(&records, |r| r.status == 429)
    );
    assert!(
        ids(
            s,
            LogQuery {
                status: StatusFilter::parse("201"),
                ..q()
            }
        )
        .await
        .is_empty()
    );

    let meta = |k: &str, v: &str| LogQuery {
        metadata: Some((k.to_owned(), v.to_owned())),
        ..q()
    };
    let prod = ids(s, meta("env", "prod")).await;
    assert_eq!(
        prod.len(),
        12,
        "only top-level keys: the nested env is not one"
    );
    assert_eq!(prod, expected(&records, |r| r.ts_ms % 5 == 0));
    assert_eq!(ids(s, meta("env", "dev")).await.len(), 12);
    // Numbers and booleans as their JSON text; null, long values and non-JSON are not found.
    assert_eq!(
        ids(s, meta("ticket", "35")).await,
        vec![records[35].id],
        "a number is found by its JSON text"
    );
    assert_eq!(ids(s, meta("ok", "true")).await.len(), 12);
    assert!(ids(s, meta("gone", "null")).await.is_empty());
    assert!(ids(s, meta("long", &"x".repeat(300))).await.is_empty());
    assert!(ids(s, meta("env", "staging")).await.is_empty());
    // Combined with other filters and a time range.
    assert_eq!(
        ids(
            s,
            LogQuery {
                model: Some("gpt-4o".into()),
                since_ms: Some(records[20].ts_ms),
                until_ms: Some(records[50].ts_ms),
                ..meta("env", "prod")
            }
        )
        .await,
        expected(&records, |r| r.ts_ms % 10 == 0
            && r.ts_ms >= records[20].ts_ms
            && r.ts_ms < records[50].ts_ms)
    );

    // Keyset pages, filtered and not, visit every match once, newest first.
    for filter in [
        q(),
        meta("env", "prod"),
        LogQuery {
            cache: Some(CacheFilter::Hit),
            ..q()
        },
    ] {
        let want = ids(s, filter.clone()).await;
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = s
                .query(&LogQuery {
                    before_id: cursor,
                    limit: 7,
                    ..filter.clone()
                })
                .await
                .unwrap();
            let Some(last) = page.last() else { break };
            cursor = Some(last.id);
            seen.extend(page.iter().map(|r| r.id));
        }
        assert_eq!(seen, want);
    }
    // A cursor whose record is not stored continues from the time its id holds.
    let ghost = uuid::Builder::from_unix_timestamp_millis(
        u64::try_from(records[30].ts_ms).unwrap(),
        &[0xff; 10],
    )
    .into_uuid();
    assert_eq!(
        ids(
            s,
            LogQuery {
                before_id: Some(ghost),
                ..q()
            }
        )
        .await,
        expected(&records, |r| r.ts_ms <= records[30].ts_ms)
    );

    // One record by id.
    assert_eq!(
        s.record(records[7].id).await.unwrap().as_ref(),
        Some(&records[7])
    );
    assert_eq!(s.record(Uuid::now_v7()).await.unwrap(), None);
}

#[tokio::test]
async fn sqlite_log_filters() {
    let (s, _dir) = sqlite().await;
    exercise_filters(s).await;
}

#[tokio::test]
async fn postgres_log_filters() {
    exercise_filters(postgres().await).await;
}

async fn exercise_settings(store: Arc<dyn SettingsStore>) {
    assert_eq!(store.get("master_key_hash").await.unwrap(), None);
    assert_eq!(
        store.put_if_absent("master_key_hash", "a").await.unwrap(),
        "a"
    );
    assert_eq!(
        store.put_if_absent("master_key_hash", "b").await.unwrap(),
        "a",
        "the first value wins"
    );
}

#[tokio::test]
async fn sqlite_log_and_settings() {
    let (s, _dir) = sqlite().await;
    exercise_log_store(s.clone()).await;
    exercise_settings(s).await;
}

#[tokio::test]
async fn postgres_log_and_settings() {
    let s = postgres().await;
    exercise_log_store(s.clone()).await;
    exercise_settings(s).await;
}

#[tokio::test]
async fn sqlite_data_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("p.db").display());
    let r = record(1, "m", "p", 200);
    {
        let s = SqliteStore::connect(&url, 1).await.unwrap();
        s.append(std::slice::from_ref(&r)).await.unwrap();
        s.pool().close().await;
    }
    let s = SqliteStore::connect(&url, 1).await.unwrap();
    let got = s
        .query(&LogQuery {
            limit: 10,
            ..LogQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(got, vec![r]);
}

#[tokio::test]
async fn writer_flushes_everything_on_shutdown() {
    for store in [sqlite().await.0 as Arc<dyn LogStore>, postgres().await] {
        let (sink, writer) = LogWriter::spawn(
            store.clone(),
            WriterConfig {
                queue_capacity: 10_000,
                batch_size: 100,
                flush_interval: Duration::from_secs(60),
                ..WriterConfig::default()
            },
        );
        for i in 0..1234 {
            sink.submit(record(i, "m", "p", 200));
        }
        writer.shutdown().await;
        let stats = sink.stats();
        assert_eq!(stats.written.load(Ordering::Relaxed), 1234);
        assert_eq!(stats.lost(), 0);
        let stored = store
            .query(&LogQuery {
                limit: 1000,
                ..LogQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(stored.len(), 1000);
        // Records submitted after shutdown are counted, never silently lost.
        sink.submit(record(0, "m", "p", 200));
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 1);
    }
}

#[tokio::test]
async fn a_retuned_writer_batches_at_the_new_interval() {
    let (store, _dir) = sqlite().await;
    let (sink, writer) = LogWriter::spawn(
        store,
        WriterConfig {
            batch_size: 100,
            flush_interval: Duration::from_secs(600),
            ..WriterConfig::default()
        },
    );
    sink.retune(100, Duration::from_millis(5));
    sink.submit(record(1, "m", "p", 200));
    let started = std::time::Instant::now();
    while sink.stats().written.load(Ordering::Relaxed) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the record waits the new interval, not the old one"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    writer.shutdown().await;
}

#[tokio::test]
async fn a_full_queue_counts_what_it_refuses() {
    let (store, _dir) = sqlite().await;
    let (sink, writer) = LogWriter::spawn(
        store,
        WriterConfig {
            queue_capacity: 8,
            batch_size: 8,
            flush_interval: Duration::from_millis(1),
            ..WriterConfig::default()
        },
    );
    // Submitting synchronously, without yielding, outruns the writer task.
    for i in 0..100 {
        sink.submit(record(i, "m", "p", 200));
    }
    writer.shutdown().await;
    let stats = sink.stats();
    assert_eq!(
        stats.written.load(Ordering::Relaxed) + stats.dropped.load(Ordering::Relaxed),
        100
    );
    assert!(stats.dropped.load(Ordering::Relaxed) > 0);
}

/// A real SQLite store whose first writes fail, as a database restarting would.
#[derive(Debug)]
struct Flaky {
    inner: Arc<SqliteStore>,
    failures_left: AtomicU32,
}

#[async_trait]
impl LogStore for Flaky {
    async fn append(&self, batch: &[LogRecord]) -> Result<(), StoreError> {
        if self
            .failures_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(StoreError::Migration("database restarting".into()));
        }
        self.inner.append(batch).await
    }
    async fn query(&self, q: &LogQuery) -> Result<Vec<LogRecord>, StoreError> {
        self.inner.query(q).await
    }
    async fn record(&self, id: Uuid) -> Result<Option<LogRecord>, StoreError> {
        self.inner.record(id).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}

#[tokio::test]
async fn failed_writes_are_retried_then_counted() {
    let (inner, _dir) = sqlite().await;
    let flaky = Arc::new(Flaky {
        inner: inner.clone(),
        failures_left: AtomicU32::new(2),
    });
    let config = WriterConfig {
        retry_base_delay: Duration::from_millis(1),
        ..WriterConfig::default()
    };
    let (sink, writer) = LogWriter::spawn(flaky.clone(), config);
    sink.submit(record(1, "m", "p", 200));
    writer.shutdown().await;
    assert_eq!(
        sink.stats().written.load(Ordering::Relaxed),
        1,
        "two failures, then success"
    );

    flaky.failures_left.store(100, Ordering::SeqCst);
    let (sink, writer) = LogWriter::spawn(flaky, config);
    sink.submit(record(2, "m", "p", 200));
    writer.shutdown().await;
    assert_eq!(
        sink.stats().failed.load(Ordering::Relaxed),
        1,
        "lost records are counted"
    );
}

/// A record with NUL (which PostgreSQL's `text` refuses), `%` and the escape mark in every
/// text field a caller can reach.
fn record_with_nul(ts_ms: i64) -> LogRecord {
    let mut r = record(ts_ms, "gpt\0-4o", "open\0ai", 200);
    r.requested_model = Some("a\0b%00\u{FDD0}c".to_owned());
    // A JSON escape of NUL: the metadata filter decodes it.
    r.metadata = Some(r#"{"k":"v\u0000"}"#.to_owned());
    r.request_body = Some("{\"messages\":[\"\0\"]}".to_owned());
    r.response_body = Some("\u{FDD0}starts with the mark".to_owned());
    r.error_message = Some("model `a\0b` not found".to_owned());
    r.session_id = Some("\0".to_owned());
    r.agent = Some("100%\0".to_owned());
    r.user = Some("u\0".to_owned());
    r.team = Some("t\0".to_owned());
    r.key_id = Some("k\0".to_owned());
    r.subject = Some("s\0".to_owned());
    r.route = Some(Arc::from("r\0"));
    r
}

async fn exercise_nul_round_trip(store: Arc<dyn LogStore>) {
    let plain = record(1, "gpt-4o", "openai", 200);
    let nul = record_with_nul(2);
    store.append(&[plain.clone(), nul.clone()]).await.unwrap();
    let all = store
        .query(&LogQuery {
            limit: 10,
            ..LogQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        all,
        vec![nul.clone(), plain],
        "every value reads back unchanged"
    );
    // Filters match the values as the caller wrote them.
    let by_model = store
        .query(&LogQuery {
            requested_model: Some("a\0b%00\u{FDD0}c".to_owned()),
            model: Some("gpt\0-4o".to_owned()),
            team: Some("t\0".to_owned()),
            metadata: Some(("k".to_owned(), "v\0".to_owned())),
            limit: 10,
            ..LogQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(by_model, vec![nul]);
}

#[tokio::test]
async fn nul_in_text_round_trips_on_sqlite() {
    let (s, _dir) = sqlite().await;
    exercise_nul_round_trip(s).await;
}

#[tokio::test]
async fn nul_in_text_round_trips_on_postgres() {
    exercise_nul_round_trip(postgres().await).await;
}

#[tokio::test]
async fn postgres_refusing_a_value_is_a_refusal_and_a_lost_connection_is_not() {
    let pool = sqlx::PgPool::connect(&fresh_schema_url().await)
        .await
        .unwrap();
    let e: StoreError = sqlx::query("SELECT CAST($1 AS TEXT)")
        .bind("a\0b")
        .execute(&pool)
        .await
        .unwrap_err()
        .into();
    assert!(e.is_refusal(), "{e}");
    pool.close().await;
    let e: StoreError = sqlx::query("SELECT 1")
        .execute(&pool)
        .await
        .unwrap_err()
        .into();
    assert!(!e.is_refusal(), "{e}");
    assert!(!StoreError::Migration("x".into()).is_refusal());
}

/// A real SQLite store that refuses, with PostgreSQL's own error, every batch holding a
/// record whose agent is `poison` — as PostgreSQL refused NUL before it was escaped.
#[derive(Debug)]
struct Picky {
    inner: Arc<SqliteStore>,
    postgres: sqlx::PgPool,
    appends: AtomicU32,
}

#[async_trait]
impl LogStore for Picky {
    async fn append(&self, batch: &[LogRecord]) -> Result<(), StoreError> {
        self.appends.fetch_add(1, Ordering::SeqCst);
        if batch.iter().any(|r| r.agent.as_deref() == Some("poison")) {
            let e = sqlx::query("SELECT CAST($1 AS TEXT)")
                .bind("\0")
                .execute(&self.postgres)
                .await
                .unwrap_err();
            return Err(e.into());
        }
        self.inner.append(batch).await
    }
    async fn query(&self, q: &LogQuery) -> Result<Vec<LogRecord>, StoreError> {
        self.inner.query(q).await
    }
    async fn record(&self, id: Uuid) -> Result<Option<LogRecord>, StoreError> {
        self.inner.record(id).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}

#[tokio::test]
async fn a_refused_record_does_not_take_its_batch_with_it() {
    let (inner, _dir) = sqlite().await;
    let picky = Arc::new(Picky {
        inner: inner.clone(),
        postgres: sqlx::PgPool::connect(&fresh_schema_url().await)
            .await
            .unwrap(),
        appends: AtomicU32::new(0),
    });
    let (sink, writer) = LogWriter::spawn(
        picky.clone(),
        WriterConfig {
            queue_capacity: 1000,
            batch_size: 100,
            flush_interval: Duration::from_secs(60),
            // Long enough that a refused record retried with backoff would time the test out.
            retry_base_delay: Duration::from_secs(600),
        },
    );
    let mut ids = Vec::new();
    for i in 0..100 {
        let mut r = record(i, "m", "p", 200);
        if i % 25 == 7 {
            r.agent = Some("poison".into());
        } else {
            ids.push(r.id);
        }
        sink.submit(r);
    }
    tokio::time::timeout(Duration::from_secs(30), writer.shutdown())
        .await
        .expect("refused records are not retried");
    let stats = sink.stats();
    assert_eq!(stats.written.load(Ordering::Relaxed), 96);
    assert_eq!(
        stats.failed.load(Ordering::Relaxed),
        4,
        "refused records are counted"
    );
    assert_eq!(
        picky.appends.load(Ordering::SeqCst),
        101,
        "the batch, then each record once"
    );
    let mut stored: Vec<Uuid> = inner
        .query(&LogQuery {
            limit: 1000,
            ..LogQuery::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    stored.sort();
    ids.sort();
    assert_eq!(stored, ids, "every other record is stored");
}

#[tokio::test]
async fn an_unreachable_database_fails_a_split_batch_without_retrying_each_record() {
    let (inner, _dir) = sqlite().await;
    let flaky = Arc::new(Flaky {
        inner,
        failures_left: AtomicU32::new(1000),
    });
    let (sink, writer) = LogWriter::spawn(
        flaky.clone(),
        WriterConfig {
            queue_capacity: 1000,
            batch_size: 50,
            flush_interval: Duration::from_secs(60),
            retry_base_delay: Duration::from_millis(1),
        },
    );
    for i in 0..50 {
        sink.submit(record(i, "m", "p", 200));
    }
    writer.shutdown().await;
    assert_eq!(sink.stats().failed.load(Ordering::Relaxed), 50);
    assert_eq!(
        1000 - flaky.failures_left.load(Ordering::SeqCst),
        5,
        "the batch, the first record and its three retries"
    );
}
