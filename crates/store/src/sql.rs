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
use crate::record::{LogQuery, LogRecord};
use crate::{LogStore, SettingsStore, StoreError};

/// Rows per INSERT statement. Fixed so the statement text repeats and stays prepared.
const ROWS_PER_INSERT: usize = 64;

const COLUMNS: &str = "id, ts_ms, subject, auth_method, user_id, team_id, key_id, endpoint, \
    dialect, route, requested_model, provider, model, provider_key_id, attempts, status, \
    error_type, error_message, stream, latency_us, ttft_us, input_tokens, output_tokens, \
    cached_tokens, reasoning_tokens, cost_usd, cache_status, metadata, session_id, agent, \
    request_body, response_body, attempt_log, list_cost_usd, custom_cost_usd";

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
                &["master_key", "virtual_key", "jwt", "oauth"],
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
                    qb.push(" ON CONFLICT (id) DO NOTHING");
                    qb.build().persistent(true).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn query(&self, q: &LogQuery) -> Result<Vec<LogRecord>, StoreError> {
                let mut qb: QueryBuilder<'_, $db> = QueryBuilder::new("SELECT ");
                qb.push(COLUMNS);
                qb.push(" FROM request_logs WHERE 1=1");
                if let Some(t) = q.since_ms {
                    qb.push(" AND ts_ms >= ").push_bind(t);
                }
                if let Some(t) = q.until_ms {
                    qb.push(" AND ts_ms < ").push_bind(t);
                }
                if let Some(m) = &q.model {
                    qb.push(" AND (model = ")
                        .push_bind($store::stored(m).into_owned())
                        .push(" OR requested_model = ")
                        .push_bind($store::stored(m).into_owned())
                        .push(")");
                }
                if let Some(p) = &q.provider {
                    qb.push(" AND provider = ")
                        .push_bind($store::stored(p).into_owned());
                }
                if let Some(r) = &q.route {
                    qb.push(" AND route = ")
                        .push_bind($store::stored(r).into_owned());
                }
                if let Some(s) = &q.user {
                    qb.push(" AND user_id = ")
                        .push_bind($store::stored(s).into_owned());
                }
                if let Some(s) = &q.team {
                    qb.push(" AND team_id = ")
                        .push_bind($store::stored(s).into_owned());
                }
                if let Some(s) = &q.key {
                    qb.push(" AND key_id = ")
                        .push_bind($store::stored(s).into_owned());
                }
                if let Some(s) = &q.endpoint {
                    qb.push(" AND endpoint = ")
                        .push_bind($store::stored(s).into_owned());
                }
                if let Some(s) = &q.server {
                    qb.push(" AND endpoint = 'mcp' AND provider = ")
                        .push_bind($store::stored(s).into_owned());
                }
                if let Some(s) = &q.tool {
                    qb.push(" AND endpoint = 'mcp' AND model = ")
                        .push_bind($store::stored(s).into_owned());
                }
                if let Some(s) = &q.subject {
                    qb.push(" AND subject = ")
                        .push_bind($store::stored(s).into_owned());
                }
                if let Some(s) = q.status {
                    let (lo, hi) = s.range();
                    qb.push(" AND status BETWEEN ")
                        .push_bind(lo)
                        .push(" AND ")
                        .push_bind(hi);
                }
                if let Some(id) = q.before_id {
                    qb.push(" AND id < ").push_bind(id.to_string());
                }
                qb.push(" ORDER BY id DESC LIMIT ")
                    .push_bind(i64::from(q.limit.clamp(1, 1000)));
                let rows: Vec<LogRow> = qb.build_query_as().fetch_all(&self.pool).await?;
                Ok(rows
                    .into_iter()
                    .map(|r| r.into_record($store::loaded))
                    .collect())
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
