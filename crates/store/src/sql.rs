//! The SQL backends: [`SqliteStore`] (embedded default) and [`PostgresStore`] (shared by
//! replicas). Both run the same statements; only the pool type, the migrations and how text
//! is stored differ (PostgreSQL's `text` cannot hold NUL, so its values go through
//! [`crate::escape`]), so one macro implements the traits for both.

use std::borrow::Cow;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, QueryBuilder, SqlitePool};
use uuid::Uuid;

use crate::escape;
use crate::record::{LogQuery, LogRecord, metadata_pairs};
use crate::{LogStore, SettingsStore, StoreError};

/// Rows per INSERT statement. Fixed so the statement text repeats and stays prepared.
const ROWS_PER_INSERT: usize = 64;

const COLUMNS: &str = "id, ts_ms, subject, auth_method, user_id, team_id, key_id, endpoint, \
    dialect, route, requested_model, provider, model, provider_key_id, attempts, status, \
    error_type, error_message, stream, latency_us, ttft_us, input_tokens, output_tokens, \
    cached_tokens, reasoning_tokens, cost_usd, cache_status, metadata, session_id, agent, \
    request_body, response_body, attempt_log, list_cost_usd, custom_cost_usd";

/// [`COLUMNS`] of the request log aliased `r`, for reads that join it.
const R_COLUMNS: &str = "r.id, r.ts_ms, r.subject, r.auth_method, r.user_id, r.team_id, \
    r.key_id, r.endpoint, r.dialect, r.route, r.requested_model, r.provider, r.model, \
    r.provider_key_id, r.attempts, r.status, r.error_type, r.error_message, r.stream, \
    r.latency_us, r.ttft_us, r.input_tokens, r.output_tokens, r.cached_tokens, \
    r.reasoning_tokens, r.cost_usd, r.cache_status, r.metadata, r.session_id, r.agent, \
    r.request_body, r.response_body, r.attempt_log, r.list_cost_usd, r.custom_cost_usd";

/// The Unix milliseconds a UUIDv7 was made at (`None` for other UUIDs).
fn uuid_ms(id: &Uuid) -> Option<i64> {
    let (secs, nanos) = id.get_timestamp()?.to_unix();
    i64::try_from(secs)
        .ok()?
        .checked_mul(1000)?
        .checked_add(i64::from(nanos / 1_000_000))
}

/// A row as read back; the owned mirror of [`LogRecord`].
#[derive(sqlx::FromRow)]
struct LogRow {
    id: String,
    ts_ms: i64,
    subject: Option<String>,
    auth_method: Option<String>,
    user_id: Option<String>,
    team_id: Option<String>,
    key_id: Option<String>,
    endpoint: String,
    dialect: String,
    route: Option<String>,
    requested_model: Option<String>,
    provider: Option<String>,
    model: Option<String>,
    provider_key_id: Option<String>,
    attempts: i64,
    status: i64,
    error_type: Option<String>,
    error_message: Option<String>,
    stream: bool,
    latency_us: i64,
    ttft_us: Option<i64>,
    input_tokens: i64,
    output_tokens: i64,
    cached_tokens: i64,
    reasoning_tokens: i64,
    cost_usd: Option<f64>,
    cache_status: Option<String>,
    metadata: Option<String>,
    session_id: Option<String>,
    agent: Option<String>,
    request_body: Option<String>,
    response_body: Option<String>,
    attempt_log: Option<String>,
    list_cost_usd: Option<f64>,
    custom_cost_usd: Option<f64>,
}

/// Maps a stored label back to the static strings records use.
fn intern(s: Option<String>, known: &[&'static str]) -> Option<&'static str> {
    let s = s?;
    known.iter().copied().find(|k| *k == s)
}

fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl LogRow {
    /// The record, with each text value passed through `loaded` (the backend's reading of
    /// what it stored).
    fn into_record(self, loaded: fn(String) -> String) -> LogRecord {
        let text = |v: Option<String>| v.map(loaded);
        LogRecord {
            id: Uuid::parse_str(&self.id).unwrap_or_default(),
            ts_ms: self.ts_ms,
            subject: text(self.subject),
            auth_method: intern(
                self.auth_method,
                &["master_key", "virtual_key", "jwt", "oauth", "console"],
            ),
            user: text(self.user_id),
            team: text(self.team_id),
            key_id: text(self.key_id),
            endpoint: intern(
                Some(self.endpoint),
                &[
                    "chat_completions",
                    "messages",
                    "embeddings",
                    "responses",
                    "mcp",
                    "count_tokens",
                    "passthrough",
                ],
            )
            .unwrap_or("unknown"),
            dialect: intern(Some(self.dialect), &["openai", "anthropic", "mcp"])
                .unwrap_or("unknown"),
            route: text(self.route).map(Arc::from),
            requested_model: text(self.requested_model),
            provider: text(self.provider).map(Arc::from),
            model: text(self.model).map(Arc::from),
            provider_key_id: text(self.provider_key_id),
            attempts: u32::try_from(self.attempts).unwrap_or(0),
            status: u16::try_from(self.status).unwrap_or(0),
            error_type: text(self.error_type),
            error_message: text(self.error_message),
            stream: self.stream,
            latency_us: u(self.latency_us),
            ttft_us: self.ttft_us.map(u),
            input_tokens: u(self.input_tokens),
            output_tokens: u(self.output_tokens),
            cached_tokens: u(self.cached_tokens),
            reasoning_tokens: u(self.reasoning_tokens),
            cost_usd: self.cost_usd,
            cache_status: intern(self.cache_status, &["HIT", "MISS", "BYPASS"]),
            metadata: text(self.metadata),
            session_id: text(self.session_id),
            agent: text(self.agent),
            request_body: text(self.request_body),
            response_body: text(self.response_body),
            attempt_log: text(self.attempt_log),
            list_cost_usd: self.list_cost_usd,
            custom_cost_usd: self.custom_cost_usd,
        }
    }
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

macro_rules! sql_store {
    ($store:ident, $pool:ty, $db:ty, $migrations:literal) => {
        /// Request log and settings in one SQL database.
        #[derive(Debug, Clone)]
        pub struct $store {
            pool: $pool,
        }

        impl $store {
            /// Runs the embedded migrations.
            pub async fn migrate(&self) -> Result<(), StoreError> {
                sqlx::migrate!($migrations)
                    .run(&self.pool)
                    .await
                    .map_err(|e| StoreError::Migration(e.to_string()))
            }

            /// The connection pool.
            pub fn pool(&self) -> &$pool {
                &self.pool
            }
        }

        #[async_trait]
        impl LogStore for $store {
            async fn append(&self, batch: &[LogRecord]) -> Result<(), StoreError> {
                let mut tx = self.pool.begin().await?;
                let mut fresh: Vec<&LogRecord> = Vec::with_capacity(batch.len());
                for chunk in batch.chunks(ROWS_PER_INSERT) {
                    let mut qb: QueryBuilder<'_, $db> =
                        QueryBuilder::new("INSERT INTO request_logs (");
                    qb.push(COLUMNS);
                    qb.push(") ");
                    qb.push_values(chunk, |mut b, r| {
                        b.push_bind(r.id.to_string())
                            .push_bind(r.ts_ms)
                            .push_bind(r.subject.as_deref().map($store::stored))
                            .push_bind(r.auth_method)
                            .push_bind(r.user.as_deref().map($store::stored))
                            .push_bind(r.team.as_deref().map($store::stored))
                            .push_bind(r.key_id.as_deref().map($store::stored))
                            .push_bind(r.endpoint)
                            .push_bind(r.dialect)
                            .push_bind(r.route.as_deref().map($store::stored))
                            .push_bind(r.requested_model.as_deref().map($store::stored))
                            .push_bind(r.provider.as_deref().map($store::stored))
                            .push_bind(r.model.as_deref().map($store::stored))
                            .push_bind(r.provider_key_id.as_deref().map($store::stored))
                            .push_bind(i64::from(r.attempts))
                            .push_bind(i64::from(r.status))
                            .push_bind(r.error_type.as_deref().map($store::stored))
                            .push_bind(r.error_message.as_deref().map($store::stored))
                            .push_bind(r.stream)
                            .push_bind(i(r.latency_us))
                            .push_bind(r.ttft_us.map(i))
                            .push_bind(i(r.input_tokens))
                            .push_bind(i(r.output_tokens))
                            .push_bind(i(r.cached_tokens))
                            .push_bind(i(r.reasoning_tokens))
                            .push_bind(r.cost_usd)
                            .push_bind(r.cache_status)
                            .push_bind(r.metadata.as_deref().map($store::stored))
                            .push_bind(r.session_id.as_deref().map($store::stored))
                            .push_bind(r.agent.as_deref().map($store::stored))
                            .push_bind(r.request_body.as_deref().map($store::stored))
                            .push_bind(r.response_body.as_deref().map($store::stored))
                            .push_bind(r.attempt_log.as_deref().map($store::stored))
                            .push_bind(r.list_cost_usd)
                            .push_bind(r.custom_cost_usd);
                    });
                    // Re-delivered batches (a retry after a commit whose answer was lost)
                    // must not fail on the primary key.
                    qb.push(" ON CONFLICT (id) DO NOTHING RETURNING id");
                    let stored: Vec<(String,)> =
                        qb.build_query_as().persistent(true).fetch_all(&mut *tx).await?;
                    // Only records stored now are added to the usage rollups.
                    if stored.len() == chunk.len() {
                        fresh.extend(chunk);
                    } else {
                        let stored: std::collections::HashSet<String> =
                            stored.into_iter().map(|(id,)| id).collect();
                        fresh.extend(chunk.iter().filter(|r| stored.contains(&r.id.to_string())));
                    }
                }
                $store::add_to_rollups(&mut tx, &fresh).await?;
                // The metadata a record can be found by (`GET /admin/logs?metadata.k=v`), in
                // the same transaction as the record.
                let mut pairs = Vec::new();
                for r in batch {
                    if let Some(m) = r.metadata.as_deref() {
                        for (k, v) in metadata_pairs(m) {
                            pairs.push((k, v, r.ts_ms, r.id));
                        }
                    }
                }
                for chunk in pairs.chunks(ROWS_PER_INSERT) {
                    let mut qb: QueryBuilder<'_, $db> = QueryBuilder::new(
                        "INSERT INTO request_log_metadata (key, value, ts_ms, id) ",
                    );
                    qb.push_values(chunk, |mut b, (k, v, ts_ms, id)| {
                        b.push_bind($store::stored(k).into_owned())
                            .push_bind($store::stored(v).into_owned())
                            .push_bind(*ts_ms)
                            .push_bind(id.to_string());
                    });
                    qb.push(" ON CONFLICT DO NOTHING");
                    qb.build().persistent(true).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn query(&self, q: &LogQuery) -> Result<Vec<LogRecord>, StoreError> {
                // Newest first by (ts_ms, id): every filter has a (column, ts_ms) index, so a
                // page is read in order from its index — a rare value without scanning the
                // log, a common one without sorting all it matches. A metadata filter reads
                // the metadata table's (key, value, ts_ms, id) key in the same order and
                // joins each record by id.
                let mut qb: QueryBuilder<'_, $db> = QueryBuilder::new("SELECT ");
                qb.push(R_COLUMNS);
                let t = if let Some((k, v)) = &q.metadata {
                    // CROSS JOIN: SQLite keeps the metadata table as the outer loop.
                    qb.push(
                        " FROM request_log_metadata m CROSS JOIN request_logs r \
                         WHERE r.id = m.id AND m.key = ",
                    )
                    .push_bind($store::stored(k).into_owned())
                    .push(" AND m.value = ")
                    .push_bind($store::stored(v).into_owned());
                    "m"
                } else {
                    qb.push(" FROM request_logs r WHERE 1=1");
                    "r"
                };
                if let Some(ms) = q.since_ms {
                    qb.push(format_args!(" AND {t}.ts_ms >= ")).push_bind(ms);
                }
                if let Some(ms) = q.until_ms {
                    qb.push(format_args!(" AND {t}.ts_ms < ")).push_bind(ms);
                }
                let text = [
                    ("r.model", &q.model),
                    ("r.requested_model", &q.requested_model),
                    ("r.provider", &q.provider),
                    ("r.route", &q.route),
                    ("r.user_id", &q.user),
                    ("r.team_id", &q.team),
                    ("r.key_id", &q.key),
                    ("r.endpoint", &q.endpoint),
                    ("r.subject", &q.subject),
                ];
                for (column, value) in text {
                    if let Some(v) = value {
                        qb.push(format_args!(" AND {column} = "))
                            .push_bind($store::stored(v).into_owned());
                    }
                }
                if let Some(s) = &q.server {
                    qb.push(" AND r.endpoint = 'mcp' AND r.provider = ")
                        .push_bind($store::stored(s).into_owned());
                }
                if let Some(s) = &q.tool {
                    qb.push(" AND r.endpoint = 'mcp' AND r.model = ")
                        .push_bind($store::stored(s).into_owned());
                }
                match q.status {
                    Some(crate::StatusFilter::Exact(code)) => {
                        qb.push(" AND r.status = ").push_bind(i64::from(code));
                    }
                    // The expression of the request_logs_status_class_ts index.
                    Some(crate::StatusFilter::Class(class)) => {
                        qb.push(" AND (r.status / 100) = ").push_bind(i64::from(class));
                    }
                    None => {}
                }
                match q.cache.map(crate::CacheFilter::stored) {
                    Some(Some(status)) => {
                        qb.push(" AND r.cache_status = ").push_bind(status);
                    }
                    Some(None) => {
                        qb.push(" AND r.cache_status IS NULL");
                    }
                    None => {}
                }
                if let Some(cursor) = q.before_id {
                    // After the cursor's record in (ts_ms, id) order; a cursor whose record is
                    // gone continues from the time its UUIDv7 holds.
                    let id = cursor.to_string();
                    let fallback = uuid_ms(&cursor).unwrap_or(i64::MAX);
                    let cursor_ts = |qb: &mut QueryBuilder<'_, $db>| {
                        qb.push("COALESCE((SELECT c.ts_ms FROM request_logs c WHERE c.id = ")
                            .push_bind(id.clone())
                            .push("), ")
                            .push_bind(fallback)
                            .push(")");
                    };
                    qb.push(format_args!(" AND {t}.ts_ms <= "));
                    cursor_ts(&mut qb);
                    qb.push(format_args!(" AND ({t}.ts_ms < "));
                    cursor_ts(&mut qb);
                    qb.push(format_args!(" OR {t}.id < "))
                        .push_bind(id.clone())
                        .push(")");
                }
                if q.costliest_first {
                    // The (cost_usd, ts_ms) index is read from the top, time-filtered.
                    qb.push(format_args!(
                        " AND r.cost_usd IS NOT NULL ORDER BY r.cost_usd DESC, {t}.ts_ms DESC, \
                         {t}.id DESC LIMIT "
                    ));
                } else {
                    qb.push(format_args!(" ORDER BY {t}.ts_ms DESC, {t}.id DESC LIMIT "));
                }
                qb.push_bind(i64::from(q.limit.clamp(1, 1000)));
                // Not kept prepared: PostgreSQL then plans each read for its own values (a
                // generic plan would treat a rare value like a common one, or the reverse).
                let rows: Vec<LogRow> = qb
                    .build_query_as()
                    .persistent(false)
                    .fetch_all(&self.pool)
                    .await?;
                Ok(rows
                    .into_iter()
                    .map(|r| r.into_record($store::loaded))
                    .collect())
            }

            async fn record(&self, id: Uuid) -> Result<Option<LogRecord>, StoreError> {
                let mut qb: QueryBuilder<'_, $db> = QueryBuilder::new("SELECT ");
                qb.push(COLUMNS)
                    .push(" FROM request_logs WHERE id = ")
                    .push_bind(id.to_string());
                let row: Option<LogRow> = qb.build_query_as().fetch_optional(&self.pool).await?;
                Ok(row.map(|r| r.into_record($store::loaded)))
            }

            async fn ping(&self) -> Result<(), StoreError> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }
        }

        #[async_trait]
        impl SettingsStore for $store {
            async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
                let row: Option<(String,)> =
                    sqlx::query_as("SELECT value FROM settings WHERE key = $1")
                        .bind(key)
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(row.map(|r| r.0))
            }

            async fn put_if_absent(&self, key: &str, value: &str) -> Result<String, StoreError> {
                sqlx::query(
                    "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                )
                .bind(key)
                .bind(value)
                .execute(&self.pool)
                .await?;
                self.get(key)
                    .await?
                    .ok_or_else(|| StoreError::Migration("settings row vanished".into()))
            }
        }
    };
}

sql_store!(SqliteStore, SqlitePool, sqlx::Sqlite, "migrations/sqlite");
sql_store!(PostgresStore, PgPool, sqlx::Postgres, "migrations/postgres");

impl SqliteStore {
    /// A text value as stored: SQLite holds any string as it is.
    pub(crate) fn stored(s: &str) -> Cow<'_, str> {
        Cow::Borrowed(s)
    }

    /// A stored text value as read back.
    pub(crate) fn loaded(s: String) -> String {
        s
    }
}

impl PostgresStore {
    /// A text value as stored: NUL, which PostgreSQL's `text` refuses, escaped reversibly.
    pub(crate) fn stored(s: &str) -> Cow<'_, str> {
        escape::escape(s)
    }

    /// A stored text value as read back: exactly what [`Self::stored`] was given.
    pub(crate) fn loaded(s: String) -> String {
        escape::unescape(s)
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the SQLite database at `url` and migrates it.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Arc<Self>, StoreError> {
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::InvalidUrl(e.to_string()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections)
            .connect_with(opts)
            .await?;
        let store = Arc::new(Self { pool });
        store.migrate().await?;
        Ok(store)
    }
}

impl PostgresStore {
    /// Connects to PostgreSQL at `url` and migrates it.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Arc<Self>, StoreError> {
        let opts =
            PgConnectOptions::from_str(url).map_err(|e| StoreError::InvalidUrl(e.to_string()))?;
        Self::connect_with(opts, max_connections).await
    }

    /// Connects with explicit options (tests use them to pick a schema) and migrates.
    pub async fn connect_with(
        opts: PgConnectOptions,
        max_connections: u32,
    ) -> Result<Arc<Self>, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts)
            .await?;
        let store = Arc::new(Self { pool });
        store.migrate().await?;
        Ok(store)
    }
}
