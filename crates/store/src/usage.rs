//! Usage analytics over the request log, answered in the database: requests, errors, tokens,
//! cost, cache hits and latency percentiles, optionally grouped by a [`Dimension`] and
//! bucketed by an [`Interval`] ([`UsageStore::usage`]); and the spend of one scope since a
//! time ([`UsageStore::spent_since`]), which budgets use to recover after a restart.
//!
//! SQLite and PostgreSQL run the same statements. Latency percentiles are nearest-rank: the
//! p-th percentile of n latencies is the ⌈p·n/100⌉-th smallest, found with `ROW_NUMBER()` over
//! each group ordered by latency and the group's `COUNT(*)` (SQLite has no percentile
//! functions). Time buckets are UTC, aligned to whole minutes, hours or days since the Unix
//! epoch. Time ranges are half-open: `since ≤ ts < until`.
//!
//! A query over at least a whole hour, grouped and filtered by at most one dimension, with an
//! interval of an hour or a day (or none), is answered from the hourly and daily rollups
//! (`rollup`) and the request log's records in the partial hours at its ends, unless its whole
//! hours hold at most `rollup::EXACT_UP_TO` (10,000) requests. Counts, tokens and
//! cost are the same either way; its latency percentiles are then read from a histogram,
//! within 12.5% of the exact values.

use async_trait::async_trait;
use sqlx::QueryBuilder;

use crate::StoreError;
use crate::rollup;
use crate::sql::{PostgresStore, SqliteStore};

/// A request-log column usage can be grouped, filtered or scoped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dimension {
    /// The provider that served.
    Provider,
    /// The model at that provider.
    Model,
    /// The route the caller named.
    Route,
    /// The virtual key used.
    Key,
    /// The user accounted.
    User,
    /// The team accounted.
    Team,
    /// The endpoint called (`chat_completions`, `messages`, `embeddings`, `mcp`).
    Endpoint,
    /// The MCP server a request went to (MCP requests only).
    Server,
    /// The MCP tool (or prompt) by its public name `<server>__<name>` (MCP requests only).
    Tool,
}

impl Dimension {
    /// Every dimension.
    pub const ALL: [Dimension; 9] = [
        Dimension::Provider,
        Dimension::Model,
        Dimension::Route,
        Dimension::Key,
        Dimension::User,
        Dimension::Team,
        Dimension::Endpoint,
        Dimension::Server,
        Dimension::Tool,
    ];

    /// The dimension's name in the admin API (`provider`, `model`, `route`, `key`, `user`,
    /// `team`, `endpoint`, `server`, `tool`).
    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Provider => "provider",
            Dimension::Model => "model",
            Dimension::Route => "route",
            Dimension::Key => "key",
            Dimension::User => "user",
            Dimension::Team => "team",
            Dimension::Endpoint => "endpoint",
            Dimension::Server => "server",
            Dimension::Tool => "tool",
        }
    }

    /// The dimension named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == name)
    }

    /// The `request_logs` column holding it.
    pub(crate) fn column(self) -> &'static str {
        match self {
            Dimension::Provider => "provider",
            Dimension::Model => "model",
            Dimension::Route => "route",
            Dimension::Key => "key_id",
            Dimension::User => "user_id",
            Dimension::Team => "team_id",
            Dimension::Endpoint => "endpoint",
            // An MCP request logs its server as the provider, its tool as the model.
            Dimension::Server => "provider",
            Dimension::Tool => "model",
        }
    }

    /// The endpoint a request must have been logged under for the dimension to apply: grouping
    /// or filtering by it counts only those requests.
    fn only_endpoint(self) -> Option<&'static str> {
        match self {
            Dimension::Server | Dimension::Tool => Some(MCP_ENDPOINT),
            _ => None,
        }
    }
}

/// The request log's `endpoint` of MCP requests.
const MCP_ENDPOINT: &str = "mcp";

/// The endpoints `dimensions` restrict requests to (at most one each, deduplicated).
fn endpoint_restrictions(dimensions: impl IntoIterator<Item = Dimension>) -> Vec<&'static str> {
    let mut only: Vec<&'static str> = Vec::new();
    for e in dimensions.into_iter().filter_map(Dimension::only_endpoint) {
        if !only.contains(&e) {
            only.push(e);
        }
    }
    only
}

/// The width of a time bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Interval {
    /// One minute.
    Minute,
    /// One hour.
    Hour,
    /// One day (UTC).
    Day,
}

impl Interval {
    /// The interval's name in the admin API (`minute`, `hour`, `day`).
    pub fn as_str(self) -> &'static str {
        match self {
            Interval::Minute => "minute",
            Interval::Hour => "hour",
            Interval::Day => "day",
        }
    }

    /// The interval named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        [Interval::Minute, Interval::Hour, Interval::Day]
            .into_iter()
            .find(|i| i.as_str() == name)
    }

    /// Its length in milliseconds.
    pub fn millis(self) -> i64 {
        match self {
            Interval::Minute => 60_000,
            Interval::Hour => 3_600_000,
            Interval::Day => 86_400_000,
        }
    }

    /// The start of the bucket holding `ts_ms`.
    pub fn bucket_start(self, ts_ms: i64) -> i64 {
        ts_ms.div_euclid(self.millis()) * self.millis()
    }
}

/// What usage to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageQuery {
    /// Only requests at or after this time (Unix ms).
    pub since_ms: i64,
    /// Only requests before this time (Unix ms).
    pub until_ms: i64,
    /// One row per value of this dimension (`None`: one row for everything).
    pub group_by: Option<Dimension>,
    /// One row per time bucket of this width (`None`: no buckets).
    pub interval: Option<Interval>,
    /// Only requests whose dimension has exactly this value (all filters apply).
    pub filters: Vec<(Dimension, String)>,
    /// With `group_by`: only the rows of the `limit` groups with the most requests over the
    /// range (ties: the groups first in the report's order); `None`: every group.
    pub limit: Option<u32>,
}

impl UsageQuery {
    /// Everything in `since_ms ≤ ts < until_ms`, ungrouped.
    pub fn new(since_ms: i64, until_ms: i64) -> Self {
        Self {
            since_ms,
            until_ms,
            group_by: None,
            interval: None,
            filters: Vec::new(),
            limit: None,
        }
    }

    /// How many buckets the range spans at the query's interval (`None` without one).
    pub fn bucket_count(&self) -> Option<i64> {
        let interval = self.interval?;
        if self.until_ms <= self.since_ms {
            return Some(0);
        }
        let first = interval.bucket_start(self.since_ms);
        let last = interval.bucket_start(self.until_ms.saturating_sub(1));
        Some((last - first) / interval.millis() + 1)
    }

    /// The same query without grouping or buckets: the totals over the range and filters —
    /// and over the requests the grouping counts (only MCP requests for `server` and `tool`).
    pub fn totals(&self) -> Self {
        let mut filters = self.filters.clone();
        if let Some(endpoint) = self.group_by.and_then(Dimension::only_endpoint) {
            filters.push((Dimension::Endpoint, endpoint.to_owned()));
        }
        Self {
            group_by: None,
            interval: None,
            filters,
            limit: None,
            ..self.clone()
        }
    }
}

/// Nearest-rank latency percentiles, in milliseconds (`None` when there were no requests).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LatencyPercentiles {
    /// Median.
    pub p50: Option<f64>,
    /// 95th percentile.
    pub p95: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
}

/// Aggregates over a set of requests.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UsageStats {
    /// Requests.
    pub requests: u64,
    /// Requests answered with a status of 400 or more (499: the caller went away).
    pub errors: u64,
    /// Prompt tokens (cached included).
    pub input_tokens: u64,
    /// Generated tokens (reasoning included).
    pub output_tokens: u64,
    /// Prompt tokens served from the provider's cache.
    pub cached_tokens: u64,
    /// Generated tokens spent reasoning.
    pub reasoning_tokens: u64,
    /// Sum of the known costs, US dollars.
    pub cost_usd: f64,
    /// Requests whose cost is unknown (not counted in `cost_usd`).
    pub unpriced_requests: u64,
    /// Requests answered from the gateway's cache.
    pub cache_hits: u64,
    /// Requests that consulted the gateway's cache (hits and misses).
    pub cache_lookups: u64,
    /// Latency percentiles.
    pub latency_ms: LatencyPercentiles,
}

impl UsageStats {
    /// Hits over lookups; `None` when the cache was never consulted.
    pub fn cache_hit_ratio(&self) -> Option<f64> {
        (self.cache_lookups > 0).then(|| self.cache_hits as f64 / self.cache_lookups as f64)
    }
}

/// One row of a usage report.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageRow {
    /// The group's value (`None`: ungrouped, or requests where the column is empty).
    pub group: Option<String>,
    /// The bucket's start, Unix ms (`None` without an interval).
    pub bucket_start_ms: Option<i64>,
    /// The aggregates.
    pub stats: UsageStats,
}

/// Whose spend to total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpendScope {
    /// Every request.
    Global,
    /// Requests whose dimension has this value.
    Only(Dimension, String),
}

/// Usage analytics over the request log.
#[async_trait]
pub trait UsageStore: Send + Sync + std::fmt::Debug {
    /// The usage `q` asks for, ordered by bucket, then group (empty groups last). An empty
    /// range yields no rows.
    async fn usage(&self, q: &UsageQuery) -> Result<Vec<UsageRow>, StoreError>;

    /// The sum of known costs (US dollars) of the requests in `scope` at or after `since_ms`.
    async fn spent_since(&self, scope: &SpendScope, since_ms: i64) -> Result<f64, StoreError>;

    /// The sum of known costs (US dollars) of every logged request of each of `key_ids`, all
    /// time; keys without priced requests are left out.
    async fn spend_by_key(&self, key_ids: &[String]) -> Result<Vec<(String, f64)>, StoreError>;
}

/// A usage row as the database returns it.
#[derive(sqlx::FromRow)]
struct UsageSqlRow {
    grp: Option<String>,
    bucket: Option<i64>,
    requests: i64,
    errors: i64,
    input_tokens: i64,
    output_tokens: i64,
    cached_tokens: i64,
    reasoning_tokens: i64,
    cost_usd: Option<f64>,
    unpriced: i64,
    cache_hits: i64,
    cache_lookups: i64,
    p50_us: Option<i64>,
    p95_us: Option<i64>,
    p99_us: Option<i64>,
}

fn count(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn millis(us: Option<i64>) -> Option<f64> {
    us.map(|us| us as f64 / 1000.0)
}

impl UsageSqlRow {
    fn into_row(self, loaded: fn(String) -> String) -> UsageRow {
        UsageRow {
            group: self.grp.map(loaded),
            bucket_start_ms: self.bucket,
            stats: UsageStats {
                requests: count(self.requests),
                errors: count(self.errors),
                input_tokens: count(self.input_tokens),
                output_tokens: count(self.output_tokens),
                cached_tokens: count(self.cached_tokens),
                reasoning_tokens: count(self.reasoning_tokens),
                cost_usd: self.cost_usd.unwrap_or(0.0),
                unpriced_requests: count(self.unpriced),
                cache_hits: count(self.cache_hits),
                cache_lookups: count(self.cache_lookups),
                latency_ms: LatencyPercentiles {
                    p50: millis(self.p50_us),
                    p95: millis(self.p95_us),
                    p99: millis(self.p99_us),
                },
            },
        }
    }
}

/// The group order of [`sort_rows`]: by bytes, empty groups last.
fn group_order(a: &Option<String>, b: &Option<String>) -> std::cmp::Ordering {
    match (a, b) {
        (Some(x), Some(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    }
}

/// The `limit` groups with the most requests among `(group, requests)` (summed per group;
/// ties in [`group_order`]).
pub(crate) fn top_groups(
    counts: impl IntoIterator<Item = (Option<String>, u64)>,
    limit: u32,
) -> Vec<Option<String>> {
    let mut per: std::collections::HashMap<Option<String>, u64> = Default::default();
    for (g, n) in counts {
        *per.entry(g).or_default() += n;
    }
    let mut per: Vec<_> = per.into_iter().collect();
    per.sort_by(|(ga, na), (gb, nb)| nb.cmp(na).then_with(|| group_order(ga, gb)));
    per.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    per.into_iter().map(|(g, _)| g).collect()
}

/// Keeps the rows of `q`'s top groups when it has a limit.
pub(crate) fn apply_limit(q: &UsageQuery, rows: &mut Vec<UsageRow>) {
    let (Some(_), Some(limit)) = (q.group_by, q.limit) else {
        return;
    };
    let top = top_groups(
        rows.iter().map(|r| (r.group.clone(), r.stats.requests)),
        limit,
    );
    rows.retain(|r| top.contains(&r.group));
}

/// Orders rows by bucket, then group by bytes with empty groups last — the same on every
/// database, whatever its collation and NULL ordering.
pub(crate) fn sort_rows(rows: &mut [UsageRow]) {
    rows.sort_by(|a, b| {
        a.bucket_start_ms
            .cmp(&b.bucket_start_ms)
            .then_with(|| match (&a.group, &b.group) {
                (Some(x), Some(y)) => x.as_bytes().cmp(y.as_bytes()),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            })
    });
}

/// The aggregate columns over the `ranked` CTE. Integer sums are cast because PostgreSQL sums
/// BIGINTs into NUMERIC; the percentile rank ⌈p·n/100⌉ is `(p·n + 99) / 100` in integers.
const AGGREGATES: &str = "COUNT(*) AS requests, \
    CAST(SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END) AS BIGINT) AS errors, \
    CAST(SUM(input_tokens) AS BIGINT) AS input_tokens, \
    CAST(SUM(output_tokens) AS BIGINT) AS output_tokens, \
    CAST(SUM(cached_tokens) AS BIGINT) AS cached_tokens, \
    CAST(SUM(reasoning_tokens) AS BIGINT) AS reasoning_tokens, \
    CAST(SUM(cost_usd) AS DOUBLE PRECISION) AS cost_usd, \
    CAST(SUM(CASE WHEN cost_usd IS NULL THEN 1 ELSE 0 END) AS BIGINT) AS unpriced, \
    CAST(SUM(CASE WHEN cache_status = 'HIT' THEN 1 ELSE 0 END) AS BIGINT) AS cache_hits, \
    CAST(SUM(CASE WHEN cache_status IN ('HIT', 'MISS') THEN 1 ELSE 0 END) AS BIGINT) \
        AS cache_lookups, \
    MAX(CASE WHEN rn = (50 * n + 99) / 100 THEN latency_us END) AS p50_us, \
    MAX(CASE WHEN rn = (95 * n + 99) / 100 THEN latency_us END) AS p95_us, \
    MAX(CASE WHEN rn = (99 * n + 99) / 100 THEN latency_us END) AS p99_us";

const MEASURES: &str = "status, latency_us, input_tokens, output_tokens, cached_tokens, \
    reasoning_tokens, cost_usd, cache_status";

macro_rules! usage_store {
    ($store:ty, $db:ty) => {
        impl $store {
            pub(crate) fn push_filters<'q>(
                qb: &mut QueryBuilder<'q, $db>,
                group_by: Option<Dimension>,
                filters: &'q [(Dimension, String)],
            ) {
                for (dimension, value) in filters {
                    qb.push(" AND ")
                        .push(dimension.column())
                        .push(" = ")
                        .push_bind(<$store>::stored(value));
                }
                let dimensions = group_by.into_iter().chain(filters.iter().map(|(d, _)| *d));
                for endpoint in endpoint_restrictions(dimensions) {
                    qb.push(" AND endpoint = ").push_bind(endpoint);
                }
            }

            /// The usage `q` asks for, from the request log alone: percentiles exact.
            pub(crate) async fn usage_exact(
                &self,
                q: &UsageQuery,
            ) -> Result<Vec<UsageRow>, StoreError> {
                let group = q.group_by.map_or("CAST(NULL AS TEXT)", Dimension::column);
                let mut qb: QueryBuilder<'_, $db> = QueryBuilder::new("WITH base AS (SELECT ");
                qb.push(group).push(" AS grp, ");
                match q.interval {
                    Some(i) => {
                        let width = i.millis();
                        qb.push(format_args!("(ts_ms / {width}) * {width}"));
                    }
                    None => {
                        qb.push("CAST(NULL AS BIGINT)");
                    }
                }
                qb.push(" AS bucket, ")
                    .push(MEASURES)
                    .push(" FROM request_logs WHERE ts_ms >= ")
                    .push_bind(q.since_ms)
                    .push(" AND ts_ms < ")
                    .push_bind(q.until_ms);
                Self::push_filters(&mut qb, q.group_by, &q.filters);
                qb.push("), ranked AS (SELECT grp, bucket, ")
                    .push(MEASURES)
                    .push(
                        ", ROW_NUMBER() OVER (PARTITION BY grp, bucket ORDER BY latency_us) AS rn, \
                         COUNT(*) OVER (PARTITION BY grp, bucket) AS n FROM base) \
                         SELECT grp, bucket, ",
                    )
                    .push(AGGREGATES)
                    .push(" FROM ranked GROUP BY grp, bucket");
                let rows: Vec<UsageSqlRow> = qb.build_query_as().fetch_all(self.pool()).await?;
                let mut rows: Vec<UsageRow> = rows
                    .into_iter()
                    .map(|r| r.into_row(<$store>::loaded))
                    .collect();
                sort_rows(&mut rows);
                Ok(rows)
            }
        }

        #[async_trait]
        impl UsageStore for $store {
            async fn usage(&self, q: &UsageQuery) -> Result<Vec<UsageRow>, StoreError> {
                if let Some(plan) = rollup::plan(q)
                    && let Some(rows) = self
                        .usage_from_rollups(q, &plan, rollup::EXACT_UP_TO)
                        .await?
                {
                    return Ok(rows);
                }
                let mut rows = self.usage_exact(q).await?;
                apply_limit(q, &mut rows);
                Ok(rows)
            }

            async fn spent_since(
                &self,
                scope: &SpendScope,
                since_ms: i64,
            ) -> Result<f64, StoreError> {
                let mut qb: QueryBuilder<'_, $db> = QueryBuilder::new(
                    "SELECT CAST(SUM(cost_usd) AS DOUBLE PRECISION) FROM request_logs \
                     WHERE ts_ms >= ",
                );
                qb.push_bind(since_ms);
                if let SpendScope::Only(dimension, value) = scope {
                    qb.push(" AND ")
                        .push(dimension.column())
                        .push(" = ")
                        .push_bind(<$store>::stored(value));
                    if let Some(endpoint) = dimension.only_endpoint() {
                        qb.push(" AND endpoint = ").push_bind(endpoint);
                    }
                }
                let (spent,): (Option<f64>,) = qb.build_query_as().fetch_one(self.pool()).await?;
                Ok(spent.unwrap_or(0.0))
            }

            async fn spend_by_key(
                &self,
                key_ids: &[String],
            ) -> Result<Vec<(String, f64)>, StoreError> {
                if key_ids.is_empty() {
                    return Ok(Vec::new());
                }
                let mut qb: QueryBuilder<'_, $db> = QueryBuilder::new(
                    "SELECT key_id, CAST(SUM(cost_usd) AS DOUBLE PRECISION) FROM request_logs \
                     WHERE cost_usd IS NOT NULL AND key_id IN (",
                );
                let mut ids = qb.separated(", ");
                for id in key_ids {
                    ids.push_bind(<$store>::stored(id));
                }
                qb.push(") GROUP BY key_id");
                let rows: Vec<(String, Option<f64>)> =
                    qb.build_query_as().fetch_all(self.pool()).await?;
                Ok(rows
                    .into_iter()
                    .map(|(id, spent)| (<$store>::loaded(id), spent.unwrap_or(0.0)))
                    .collect())
            }
        }
    };
}

usage_store!(SqliteStore, sqlx::Sqlite);
usage_store!(PostgresStore, sqlx::Postgres);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::sync::Arc;

    use uuid::Uuid;

    use super::*;
    use crate::{LogRecord, LogStore};

    /// 2023-11-15T00:00:00Z: aligned to days, hours and minutes.
    const T: i64 = 1_700_006_400_000;
    const MINUTE: i64 = 60_000;
    const HOUR: i64 = 3_600_000;
    const DAY: i64 = 86_400_000;

    /// A PostgreSQL store in a fresh schema of its own.
    async fn postgres() -> Arc<PostgresStore> {
        let url = portcullis_test_support::postgres::fresh_schema_url().await;
        PostgresStore::connect(&url, 2).await.unwrap()
    }

    async fn sqlite() -> (Arc<SqliteStore>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("usage.db").display());
        (SqliteStore::connect(&url, 2).await.unwrap(), dir)
    }

    struct Rec {
        ts_ms: i64,
        provider: &'static str,
        model: &'static str,
        status: u16,
        latency_ms: u64,
        cost_usd: Option<f64>,
    }

    fn rec(
        ts_ms: i64,
        provider: &'static str,
        model: &'static str,
        status: u16,
        latency_ms: u64,
        cost_usd: Option<f64>,
    ) -> Rec {
        Rec {
            ts_ms,
            provider,
            model,
            status,
            latency_ms,
            cost_usd,
        }
    }

    impl Rec {
        fn record(&self) -> LogRecord {
            let mut r = LogRecord::new(Uuid::now_v7(), self.ts_ms, "chat_completions", "openai");
            r.provider = Some(Arc::from(self.provider));
            r.model = Some(Arc::from(self.model));
            r.status = self.status;
            r.attempts = 1;
            r.latency_us = self.latency_ms * 1000;
            r.cost_usd = self.cost_usd;
            r
        }
    }

    /// The fixture, with every expectation below computed by hand from it:
    ///
    /// - `gpt-4o` (openai), i = 0..9 at T + i minutes: latency (i+1) ms, status 500 for i = 9,
    ///   100 input / 10 output / 20 cached tokens, cost $0.01 except i = 0 (unknown), key `k1`
    ///   for even i and `k2` for odd, user `alice`, team `search`, cache HIT for i < 4, MISS for
    ///   i = 4, 5, BYPASS for 6..8, none for 9.
    /// - `claude-haiku-4-5` (anthropic), j = 0..2 at T + 1 h + j s: latencies 30, 10, 20 ms,
    ///   statuses 200, 429, 200, 1,000 input / 100 output / 5 reasoning tokens, costs $0.5,
    ///   $0.25, $0.25, key `k1`, route `smart`, no user or team.
    /// - `mystery` (custom), 2 requests at T + 2 h + 5 ms: 7 ms, 1 input / 1 output token,
    ///   unknown cost.
    /// - outside the range [T, T + 1 day): one at T − 1 ms ($100) and one at T + 1 day
    ///   ($1,000, key `k9`).
    async fn fixture(store: &dyn LogStore) {
        let mut records = Vec::new();
        for i in 0..10u64 {
            let ts = T + i as i64 * MINUTE;
            let cost = (i != 0).then_some(0.01);
            let mut r = rec(
                ts,
                "openai",
                "gpt-4o",
                if i == 9 { 500 } else { 200 },
                i + 1,
                cost,
            )
            .record();
            r.input_tokens = 100;
            r.output_tokens = 10;
            r.cached_tokens = 20;
            r.key_id = Some(if i % 2 == 0 { "k1" } else { "k2" }.to_owned());
            r.user = Some("alice".to_owned());
            r.team = Some("search".to_owned());
            r.cache_status = match i {
                0..=3 => Some("HIT"),
                4 | 5 => Some("MISS"),
                6..=8 => Some("BYPASS"),
                _ => None,
            };
            records.push(r);
        }
        for (j, (latency, status, cost)) in [(30, 200, 0.5), (10, 429, 0.25), (20, 200, 0.25)]
            .into_iter()
            .enumerate()
        {
            let ts = T + HOUR + j as i64 * 1000;
            let mut r = rec(
                ts,
                "anthropic",
                "claude-haiku-4-5",
                status,
                latency,
                Some(cost),
            )
            .record();
            r.input_tokens = 1000;
            r.output_tokens = 100;
            r.reasoning_tokens = 5;
            r.key_id = Some("k1".to_owned());
            r.route = Some(Arc::from("smart"));
            records.push(r);
        }
        for _ in 0..2 {
            let mut r = rec(T + 2 * HOUR + 5, "custom", "mystery", 200, 7, None).record();
            r.input_tokens = 1;
            r.output_tokens = 1;
            records.push(r);
        }
        records.push(rec(T - 1, "openai", "gpt-4o", 200, 999, Some(100.0)).record());
        let mut late = rec(T + DAY, "openai", "gpt-4o", 200, 999, Some(1000.0)).record();
        late.key_id = Some("k9".to_owned());
        records.push(late);
        store.append(&records).await.unwrap();
    }

    fn day() -> UsageQuery {
        UsageQuery::new(T, T + DAY)
    }

    fn assert_close(got: f64, want: f64) {
        assert!((got - want).abs() < 1e-9, "got {got}, want {want}");
    }

    fn latency(p50: f64, p95: f64, p99: f64) -> LatencyPercentiles {
        LatencyPercentiles {
            p50: Some(p50),
            p95: Some(p95),
            p99: Some(p99),
        }
    }

    async fn exercise_usage(store: &dyn UsageStore) {
        // Totals. 15 requests: 10 + 3 + 2. Errors: gpt-4o's 500 and claude's 429.
        let rows = store.usage(&day()).await.unwrap();
        assert_eq!(rows.len(), 1);
        let all = &rows[0];
        assert_eq!((all.group.as_deref(), all.bucket_start_ms), (None, None));
        let s = &all.stats;
        assert_eq!(s.requests, 15);
        assert_eq!(s.errors, 2);
        assert_eq!(s.input_tokens, 10 * 100 + 3 * 1000 + 2);
        assert_eq!(s.output_tokens, 10 * 10 + 3 * 100 + 2);
        assert_eq!(s.cached_tokens, 10 * 20);
        assert_eq!(s.reasoning_tokens, 3 * 5);
        // 9 × 0.01 + 0.5 + 0.25 + 0.25 = 1.09; three unknown costs are ignored, and counted.
        assert_close(s.cost_usd, 1.09);
        assert_eq!(s.unpriced_requests, 3);
        // 4 hits of 6 lookups; BYPASS and no cache are not lookups.
        assert_eq!((s.cache_hits, s.cache_lookups), (4, 6));
        assert_close(s.cache_hit_ratio().unwrap(), 4.0 / 6.0);
        // Sorted latencies: 1 2 3 4 5 6 7 7 7 8 9 10 10 20 30 (n = 15).
        // p50: rank ⌈7.5⌉ = 8 → 7; p95: ⌈14.25⌉ = 15 → 30; p99: ⌈14.85⌉ = 15 → 30.
        assert_eq!(s.latency_ms, latency(7.0, 30.0, 30.0));

        // Grouped by model, ordered by name.
        let q = UsageQuery {
            group_by: Some(Dimension::Model),
            ..day()
        };
        let rows = store.usage(&q).await.unwrap();
        let groups: Vec<_> = rows.iter().map(|r| r.group.as_deref()).collect();
        assert_eq!(
            groups,
            [Some("claude-haiku-4-5"), Some("gpt-4o"), Some("mystery")]
        );
        let claude = &rows[0].stats;
        assert_eq!((claude.requests, claude.errors), (3, 1));
        assert_close(claude.cost_usd, 1.0);
        assert_eq!(claude.cache_hit_ratio(), None);
        // 10 20 30: p50 rank ⌈1.5⌉ = 2 → 20; p95 ⌈2.85⌉ = 3 → 30; p99 → 30.
        assert_eq!(claude.latency_ms, latency(20.0, 30.0, 30.0));
        let gpt = &rows[1].stats;
        assert_eq!(
            (gpt.requests, gpt.errors, gpt.unpriced_requests),
            (10, 1, 1)
        );
        assert_close(gpt.cost_usd, 0.09);
        // 1..10: p50 rank 5 → 5; p95 rank ⌈9.5⌉ = 10 → 10; p99 ⌈9.9⌉ = 10 → 10.
        assert_eq!(gpt.latency_ms, latency(5.0, 10.0, 10.0));
        let mystery = &rows[2].stats;
        assert_eq!(
            mystery.cost_usd, 0.0,
            "only unknown costs: nothing known spent"
        );
        assert_eq!(mystery.unpriced_requests, 2);
        assert_eq!(mystery.latency_ms, latency(7.0, 7.0, 7.0));

        // Grouped by team: requests without a team form the last group.
        let q = UsageQuery {
            group_by: Some(Dimension::Team),
            ..day()
        };
        let rows = store.usage(&q).await.unwrap();
        let groups: Vec<_> = rows
            .iter()
            .map(|r| (r.group.as_deref(), r.stats.requests))
            .collect();
        assert_eq!(groups, [(Some("search"), 10), (None, 5)]);

        // Hourly buckets, grouped by provider.
        let q = UsageQuery {
            group_by: Some(Dimension::Provider),
            interval: Some(Interval::Hour),
            ..day()
        };
        let rows = store.usage(&q).await.unwrap();
        let got: Vec<_> = rows
            .iter()
            .map(|r| (r.bucket_start_ms, r.group.as_deref(), r.stats.requests))
            .collect();
        assert_eq!(
            got,
            [
                (Some(T), Some("openai"), 10),
                (Some(T + HOUR), Some("anthropic"), 3),
                (Some(T + 2 * HOUR), Some("custom"), 2),
            ]
        );

        // Minute buckets: gpt-4o's ten minutes, then claude's minute, then mystery's.
        let q = UsageQuery {
            interval: Some(Interval::Minute),
            ..day()
        };
        let rows = store.usage(&q).await.unwrap();
        assert_eq!(rows.len(), 12);
        for (i, row) in rows.iter().take(10).enumerate() {
            assert_eq!(row.bucket_start_ms, Some(T + i as i64 * MINUTE));
            assert_eq!(row.stats.requests, 1);
            let ms = (i + 1) as f64;
            assert_eq!(row.stats.latency_ms, latency(ms, ms, ms), "minute {i}");
        }
        assert_eq!(rows[10].bucket_start_ms, Some(T + HOUR));
        assert_eq!(rows[10].stats.requests, 3);
        assert_eq!(rows[11].bucket_start_ms, Some(T + 2 * HOUR));

        // Daily: one bucket, the same as the totals.
        let q = UsageQuery {
            interval: Some(Interval::Day),
            ..day()
        };
        let rows = store.usage(&q).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].bucket_start_ms, Some(T));
        assert_eq!(rows[0].stats, s.clone());

        // Filters, alone and combined.
        let requests = |filters: Vec<(Dimension, &str)>| {
            let q = UsageQuery {
                filters: filters
                    .into_iter()
                    .map(|(d, v)| (d, v.to_owned()))
                    .collect(),
                ..day()
            };
            async move {
                store
                    .usage(&q)
                    .await
                    .unwrap()
                    .first()
                    .map_or(0, |r| r.stats.requests)
            }
        };
        assert_eq!(requests(vec![(Dimension::Provider, "anthropic")]).await, 3);
        assert_eq!(requests(vec![(Dimension::Key, "k1")]).await, 5 + 3);
        assert_eq!(requests(vec![(Dimension::User, "alice")]).await, 10);
        assert_eq!(requests(vec![(Dimension::Team, "search")]).await, 10);
        assert_eq!(requests(vec![(Dimension::Route, "smart")]).await, 3);
        assert_eq!(requests(vec![(Dimension::Provider, "nobody")]).await, 0);
        let q = UsageQuery {
            filters: vec![
                (Dimension::Model, "gpt-4o".to_owned()),
                (Dimension::Key, "k2".to_owned()),
            ],
            ..day()
        };
        let rows = store.usage(&q).await.unwrap();
        // Odd i: latencies 2 4 6 8 10; p50 rank ⌈2.5⌉ = 3 → 6; p95, p99 rank 5 → 10.
        assert_eq!(rows[0].stats.requests, 5);
        assert_eq!(rows[0].stats.errors, 1);
        assert_eq!(rows[0].stats.latency_ms, latency(6.0, 10.0, 10.0));
        assert_close(rows[0].stats.cost_usd, 0.05);

        // Half-open ranges: [T, T + 1 min) holds only gpt-4o's first request.
        let rows = store.usage(&UsageQuery::new(T, T + MINUTE)).await.unwrap();
        assert_eq!(rows[0].stats.requests, 1);
        assert_eq!(rows[0].stats.unpriced_requests, 1);

        // Empty ranges yield no rows, grouped or not.
        assert!(
            store
                .usage(&UsageQuery::new(T + 3 * HOUR, T + 4 * HOUR))
                .await
                .unwrap()
                .is_empty()
        );
        let q = UsageQuery {
            group_by: Some(Dimension::Model),
            interval: Some(Interval::Hour),
            ..UsageQuery::new(T + 3 * HOUR, T + 4 * HOUR)
        };
        assert!(store.usage(&q).await.unwrap().is_empty());
        assert!(
            store
                .usage(&UsageQuery::new(T, T))
                .await
                .unwrap()
                .is_empty()
        );
    }

    async fn exercise_spend(store: &dyn UsageStore) {
        let only = |d, v: &str| SpendScope::Only(d, v.to_owned());
        // Since T, every cost counts, including the one at T + 1 day: 1.09 + 1000.
        assert_close(
            store.spent_since(&SpendScope::Global, T).await.unwrap(),
            1001.09,
        );
        // Since before T, the $100 one as well.
        assert_close(
            store.spent_since(&SpendScope::Global, T - 1).await.unwrap(),
            1101.09,
        );
        // k1: even i of gpt-4o (i = 0 unknown; 2, 4, 6, 8 → 0.04) + claude's 1.0.
        assert_close(
            store
                .spent_since(&only(Dimension::Key, "k1"), T)
                .await
                .unwrap(),
            1.04,
        );
        assert_close(
            store
                .spent_since(&only(Dimension::Key, "k9"), T)
                .await
                .unwrap(),
            1000.0,
        );
        // Team search since T + 5 min: i = 5..9 → 5 × 0.01.
        assert_close(
            store
                .spent_since(&only(Dimension::Team, "search"), T + 5 * MINUTE)
                .await
                .unwrap(),
            0.05,
        );
        assert_close(
            store
                .spent_since(&only(Dimension::Route, "smart"), T)
                .await
                .unwrap(),
            1.0,
        );
        assert_close(
            store
                .spent_since(&only(Dimension::Provider, "anthropic"), T + HOUR + 1)
                .await
                .unwrap(),
            0.5,
        );
        assert_eq!(
            store
                .spent_since(&only(Dimension::Model, "mystery"), T)
                .await
                .unwrap(),
            0.0
        );
        assert_eq!(
            store
                .spent_since(&only(Dimension::User, "nobody"), 0)
                .await
                .unwrap(),
            0.0
        );
        assert_eq!(
            store
                .spent_since(&SpendScope::Global, T + 2 * DAY)
                .await
                .unwrap(),
            0.0
        );
        // All time, per key: k1 1.04, k2 the odd i of gpt-4o (5 × 0.01), k9 1000; a key
        // without requests is left out.
        let ids = ["k1", "k2", "k9", "nobody"].map(str::to_owned);
        let mut by_key = store.spend_by_key(&ids).await.unwrap();
        by_key.sort_by(|a, b| a.0.cmp(&b.0));
        let names: Vec<&str> = by_key.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["k1", "k2", "k9"]);
        for ((_, got), want) in by_key.iter().zip([1.04, 0.05, 1000.0]) {
            assert_close(*got, want);
        }
        assert!(store.spend_by_key(&[]).await.unwrap().is_empty());
    }

    /// 100 requests of 1..=100 ms (stored in a scrambled order) and 20 of 1..=20 ms.
    async fn exercise_percentiles(store: &(impl LogStore + UsageStore)) {
        let mut records = Vec::new();
        for k in 0..100u64 {
            // 37 is coprime with 100: k ↦ (37k mod 100) + 1 visits 1..=100 once each.
            let ms = (k * 37) % 100 + 1;
            records.push(rec(T + k as i64, "p", "hundred", 200, ms, None).record());
        }
        for ms in (1..=20u64).rev() {
            records.push(rec(T, "p", "twenty", 200, ms, None).record());
        }
        records.push(rec(T, "p", "one", 200, 42, None).record());
        store.append(&records).await.unwrap();
        let q = UsageQuery {
            group_by: Some(Dimension::Model),
            ..UsageQuery::new(T, T + HOUR)
        };
        let rows = store.usage(&q).await.unwrap();
        let got: Vec<_> = rows
            .iter()
            .map(|r| (r.group.as_deref().unwrap(), r.stats.latency_ms))
            .collect();
        assert_eq!(
            got,
            [
                // n = 100: ranks 50, 95, 99.
                ("hundred", latency(50.0, 95.0, 99.0)),
                // n = 1: every percentile is the one value.
                ("one", latency(42.0, 42.0, 42.0)),
                // n = 20: ranks ⌈10⌉ = 10, ⌈19⌉ = 19, ⌈19.8⌉ = 20.
                ("twenty", latency(10.0, 19.0, 20.0)),
            ]
        );
    }

    /// MCP requests on two servers beside chat and embeddings requests that name a provider
    /// and a model of the same spelling.
    async fn exercise_mcp(store: &(impl LogStore + UsageStore)) {
        let mut records = Vec::new();
        let mut push = |endpoint: &'static str, provider: &'static str, model: &'static str| {
            let mut r = LogRecord::new(Uuid::now_v7(), T, endpoint, "openai");
            r.provider = Some(Arc::from(provider));
            r.model = Some(Arc::from(model));
            r.status = 200;
            records.push(r);
        };
        for _ in 0..3 {
            push("mcp", "files", "files__read");
        }
        push("mcp", "files", "files__write");
        push("mcp", "search", "search__query");
        push("chat_completions", "files", "files__read");
        push("embeddings", "search", "e5");
        store.append(&records).await.unwrap();
        let range = UsageQuery::new(T, T + MINUTE);
        let grouped = |group_by, filters: Vec<(Dimension, &str)>| {
            let q = UsageQuery {
                group_by: Some(group_by),
                filters: filters
                    .into_iter()
                    .map(|(d, v)| (d, v.to_owned()))
                    .collect(),
                ..range.clone()
            };
            async move {
                store
                    .usage(&q)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|r| (r.group.unwrap_or_default(), r.stats.requests))
                    .collect::<Vec<_>>()
            }
        };
        let pairs = |v: &[(&str, u64)]| -> Vec<(String, u64)> {
            v.iter().map(|(g, n)| ((*g).to_owned(), *n)).collect()
        };
        // The chat request naming `files` is no MCP server's.
        assert_eq!(
            grouped(Dimension::Server, vec![]).await,
            pairs(&[("files", 4), ("search", 1)])
        );
        assert_eq!(
            grouped(Dimension::Tool, vec![]).await,
            pairs(&[
                ("files__read", 3),
                ("files__write", 1),
                ("search__query", 1)
            ])
        );
        assert_eq!(
            grouped(Dimension::Tool, vec![(Dimension::Server, "files")]).await,
            pairs(&[("files__read", 3), ("files__write", 1)])
        );
        assert_eq!(
            grouped(Dimension::Endpoint, vec![]).await,
            pairs(&[("chat_completions", 1), ("embeddings", 1), ("mcp", 5)])
        );
        assert_eq!(
            grouped(Dimension::Provider, vec![(Dimension::Tool, "files__read")]).await,
            pairs(&[("files", 3)])
        );
        assert_eq!(
            grouped(
                Dimension::Server,
                vec![(Dimension::Endpoint, "chat_completions")]
            )
            .await,
            pairs(&[])
        );
        // The totals of a report by server count what its rows count.
        let by_server = UsageQuery {
            group_by: Some(Dimension::Server),
            ..range.clone()
        };
        let totals = store.usage(&by_server.totals()).await.unwrap();
        assert_eq!(totals[0].stats.requests, 5);
    }

    #[tokio::test]
    async fn sqlite_mcp_dimensions() {
        let (store, _dir) = sqlite().await;
        exercise_mcp(store.as_ref()).await;
    }

    #[tokio::test]
    async fn postgres_mcp_dimensions() {
        let store = postgres().await;
        exercise_mcp(store.as_ref()).await;
    }

    #[test]
    fn bucket_counts_and_bounds() {
        let mut q = UsageQuery::new(T, T + DAY);
        assert_eq!(q.bucket_count(), None);
        q.interval = Some(Interval::Hour);
        assert_eq!(q.bucket_count(), Some(24));
        q.interval = Some(Interval::Minute);
        assert_eq!(q.bucket_count(), Some(1440));
        // An unaligned range touches one more bucket: [T + 30 s, T + 1 h + 30 s) → 2 hours.
        let q = UsageQuery {
            interval: Some(Interval::Hour),
            ..UsageQuery::new(T + 30_000, T + HOUR + 30_000)
        };
        assert_eq!(q.bucket_count(), Some(2));
        assert_eq!(Interval::Day.bucket_start(T + DAY - 1), T);
        assert_eq!(Interval::parse("hour"), Some(Interval::Hour));
        assert_eq!(Interval::parse("week"), None);
        for d in Dimension::ALL {
            assert_eq!(Dimension::parse(d.as_str()), Some(d));
        }
        assert_eq!(Dimension::parse("key_id"), None);
    }

    #[tokio::test]
    async fn sqlite_usage() {
        let (store, _dir) = sqlite().await;
        fixture(store.as_ref()).await;
        exercise_usage(store.as_ref()).await;
        exercise_spend(store.as_ref()).await;
    }

    #[tokio::test]
    async fn postgres_usage() {
        let store = postgres().await;
        fixture(store.as_ref()).await;
        exercise_usage(store.as_ref()).await;
        exercise_spend(store.as_ref()).await;
    }

    #[tokio::test]
    async fn sqlite_percentiles() {
        let (store, _dir) = sqlite().await;
        exercise_percentiles(store.as_ref()).await;
    }

    #[tokio::test]
    async fn postgres_percentiles() {
        let store = postgres().await;
        exercise_percentiles(store.as_ref()).await;
    }
}
