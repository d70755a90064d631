//! The admin API (`/admin/…`): JSON, for the master key or an admin identity only.
//!
//! - `GET /admin/logs` — the request log, newest first, with filters `since`, `until` (RFC 3339
//!   or Unix milliseconds), `model`, `provider`, `route`, `status` (`429` or `5xx`), `subject`,
//!   `user`, `team`, `key`,
//!   `limit` (default 100, at most 1000) and `cursor` (the previous page's `next_cursor`).
//! - `GET /admin/usage` — usage analytics computed in the database: requests, errors, tokens,
//!   cost, cache hits and latency percentiles over `since`..`until` (default: the last 24
//!   hours), optionally per `group_by` (`provider`, `model`, `route`, `key`, `user`, `team`) and
//!   per `interval` (`minute`, `hour`, `day`), filtered by `provider`, `model`, `route`, `key`,
//!   `user` and `team`, with totals.
//!
//! Logs and usage are also open to `viewer` identities, limited to their own teams.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use portcullis_core::{AccessRole, Dialect, ErrorKind, GatewayError};
use portcullis_identity::Principal;
use portcullis_store::{
    Dimension, Interval, LogQuery, LogRecord, StatusFilter, UsageQuery, UsageRow, UsageStats,
};
use serde::Serialize;
use uuid::Uuid;

use crate::respond;
use crate::state::AppState;

pub(crate) async fn require_admin(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Arc<Principal>, GatewayError> {
    let who = state.auth.authenticate(headers).await?;
    if who.identity.is_admin() && who.identity.has_scope("admin") {
        Ok(who)
    } else {
        Err(forbidden_admin())
    }
}

fn forbidden_admin() -> GatewayError {
    GatewayError::new(
        ErrorKind::PermissionDenied,
        "The admin API requires the master key or an admin identity",
    )
    .with_code("admin_required")
}

/// Who may read logs and usage: admins read everything; a viewer reads only its own teams'
/// records — the `team` it names, or its only team — and anything else is refused.
async fn require_reader(
    state: &AppState,
    headers: &HeaderMap,
    requested_team: Option<&str>,
) -> Result<Option<String>, GatewayError> {
    let who = state.auth.authenticate(headers).await?;
    let identity = &who.identity;
    if identity.is_admin() && identity.has_scope("admin") {
        return Ok(None);
    }
    if identity.role != AccessRole::Viewer {
        return Err(forbidden_admin());
    }
    let team = match requested_team {
        Some(t) => t.to_owned(),
        None => match identity.teams.as_slice() {
            [only] => only.clone(),
            _ => {
                return Err(GatewayError::new(
                    ErrorKind::PermissionDenied,
                    "A viewer of several teams must name one with `team=`",
                )
                .with_code("team_required"));
            }
        },
    };
    if identity.teams.contains(&team) {
        Ok(Some(team))
    } else {
        Err(GatewayError::new(
            ErrorKind::PermissionDenied,
            format!("A viewer reads only its own teams' records; it is not in team `{team}`"),
        )
        .with_code("team_not_allowed"))
    }
}

fn bad(param: &str, why: &str) -> GatewayError {
    GatewayError::invalid_request(format!("Invalid `{param}`: {why}")).with_param(param)
}

/// Parses a time given as RFC 3339 or Unix milliseconds.
fn parse_time(param: &str, v: &str) -> Result<i64, GatewayError> {
    if let Ok(ms) = v.parse::<i64>() {
        return Ok(ms);
    }
    v.parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond())
        .map_err(|_| bad(param, "expected an RFC 3339 time or Unix milliseconds"))
}

fn log_query(params: &HashMap<String, String>) -> Result<LogQuery, GatewayError> {
    let mut q = LogQuery {
        limit: 100,
        ..LogQuery::default()
    };
    for (k, v) in params {
        match k.as_str() {
            "since" => q.since_ms = Some(parse_time(k, v)?),
            "until" => q.until_ms = Some(parse_time(k, v)?),
            "model" => q.model = Some(v.clone()),
            "provider" => q.provider = Some(v.clone()),
            "route" => q.route = Some(v.clone()),
            "subject" => q.subject = Some(v.clone()),
            "user" => q.user = Some(v.clone()),
            "team" => q.team = Some(v.clone()),
            "key" => q.key = Some(v.clone()),
            "status" => {
                q.status = Some(
                    StatusFilter::parse(v)
                        .ok_or_else(|| bad(k, "expected a code like 429 or a class like 5xx"))?,
                )
            }
            "limit" => {
                q.limit = v
                    .parse::<u32>()
                    .ok()
                    .filter(|l| (1..=1000).contains(l))
                    .ok_or_else(|| bad(k, "expected a number from 1 to 1000"))?
            }
            "cursor" => {
                q.before_id = Some(
                    Uuid::parse_str(v).map_err(|_| bad(k, "not a cursor from a previous page"))?,
                )
            }
            other => return Err(bad(other, "unknown parameter")),
        }
    }
    Ok(q)
}

/// A log record as the admin API shows it.
#[derive(Serialize)]
struct LogView<'a> {
    time: String,
    #[serde(flatten)]
    record: &'a LogRecord,
    latency_ms: f64,
    ttft_ms: Option<f64>,
}

/// `GET /admin/logs`.
pub async fn logs(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let id = Uuid::now_v7();
    let result = async {
        let viewer_team =
            require_reader(&state, &headers, params.get("team").map(String::as_str)).await?;
        let mut q = log_query(&params)?;
        if viewer_team.is_some() {
            q.team = viewer_team;
        }
        let records =
            state.stores.logs.query(&q).await.map_err(|e| {
                GatewayError::internal(format!("reading the request log failed: {e}"))
            })?;
        let next_cursor = (records.len() == q.limit as usize)
            .then(|| records.last().map(|r| r.id.to_string()))
            .flatten();
        let data: Vec<LogView<'_>> = records
            .iter()
            .map(|r| LogView {
                time: jiff::Timestamp::from_millisecond(r.ts_ms)
                    .map(|t| t.to_string())
                    .unwrap_or_default(),
                record: r,
                latency_ms: r.latency_us as f64 / 1000.0,
                ttft_ms: r.ttft_us.map(|t| t as f64 / 1000.0),
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({ "data": data, "next_cursor": next_cursor }))
            .map_err(|e| GatewayError::internal(format!("encoding the log failed: {e}")))
    }
    .await;
    match result {
        Ok(body) => respond::json(StatusCode::OK, body, &id),
        Err(e) => respond::error(Dialect::OpenAi, &e, &id),
    }
}

/// The window `GET /admin/usage` covers when `since` is not given: 24 hours before `until`.
const DEFAULT_USAGE_WINDOW_MS: i64 = 24 * 3_600_000;

/// The most time buckets one `GET /admin/usage` may ask for.
pub const MAX_USAGE_BUCKETS: i64 = 10_000;

fn usage_query(params: &[(String, String)], now_ms: i64) -> Result<UsageQuery, GatewayError> {
    let mut seen: Vec<&str> = Vec::with_capacity(params.len());
    let (mut since, mut until, mut group_by, mut interval) = (None, None, None, None);
    let mut filters = Vec::new();
    for (k, v) in params {
        if seen.contains(&k.as_str()) {
            return Err(bad(k, "given more than once"));
        }
        seen.push(k);
        match k.as_str() {
            "since" => since = Some(parse_time(k, v)?),
            "until" => until = Some(parse_time(k, v)?),
            "group_by" => {
                group_by =
                    Some(Dimension::parse(v).ok_or_else(|| {
                        bad(k, "expected provider, model, route, key, user or team")
                    })?)
            }
            "interval" => {
                interval =
                    Some(Interval::parse(v).ok_or_else(|| bad(k, "expected minute, hour or day"))?)
            }
            other => match Dimension::parse(other) {
                Some(_) if v.is_empty() => return Err(bad(k, "must not be empty")),
                Some(dimension) => filters.push((dimension, v.clone())),
                None => return Err(bad(other, "unknown parameter")),
            },
        }
    }
    let until_ms = until.unwrap_or(now_ms);
    let since_ms = since.unwrap_or_else(|| until_ms.saturating_sub(DEFAULT_USAGE_WINDOW_MS));
    for (param, ms) in [("until", until_ms), ("since", since_ms)] {
        if jiff::Timestamp::from_millisecond(ms).is_err() {
            return Err(bad(param, "out of range"));
        }
    }
    if since_ms >= until_ms {
        return Err(bad("since", "must be before `until`"));
    }
    let q = UsageQuery {
        since_ms,
        until_ms,
        group_by,
        interval,
        filters,
    };
    if let Some(buckets) = q.bucket_count()
        && buckets > MAX_USAGE_BUCKETS
    {
        return Err(bad(
            "interval",
            &format!(
                "the range spans {buckets} buckets, more than {MAX_USAGE_BUCKETS}; narrow the range or use a coarser interval"
            ),
        ));
    }
    Ok(q)
}

fn rfc3339(ms: i64) -> Option<String> {
    jiff::Timestamp::from_millisecond(ms)
        .ok()
        .map(|t| t.to_string())
}

/// Latency percentiles as the admin API shows them.
#[derive(Serialize)]
struct LatencyView {
    p50: Option<f64>,
    p95: Option<f64>,
    p99: Option<f64>,
}

/// Usage aggregates as the admin API shows them.
#[derive(Serialize)]
struct UsageStatsView {
    requests: u64,
    errors: u64,
    input_tokens: u64,
    output_tokens: u64,
    cached_tokens: u64,
    reasoning_tokens: u64,
    cost_usd: f64,
    unpriced_requests: u64,
    cache_hits: u64,
    cache_lookups: u64,
    cache_hit_ratio: Option<f64>,
    latency_ms: LatencyView,
}

impl From<&UsageStats> for UsageStatsView {
    fn from(s: &UsageStats) -> Self {
        Self {
            requests: s.requests,
            errors: s.errors,
            input_tokens: s.input_tokens,
            output_tokens: s.output_tokens,
            cached_tokens: s.cached_tokens,
            reasoning_tokens: s.reasoning_tokens,
            cost_usd: s.cost_usd,
            unpriced_requests: s.unpriced_requests,
            cache_hits: s.cache_hits,
            cache_lookups: s.cache_lookups,
            cache_hit_ratio: s.cache_hit_ratio(),
            latency_ms: LatencyView {
                p50: s.latency_ms.p50,
                p95: s.latency_ms.p95,
                p99: s.latency_ms.p99,
            },
        }
    }
}

/// One usage row as the admin API shows it.
#[derive(Serialize)]
struct UsageRowView {
    group: Option<String>,
    bucket: Option<String>,
    #[serde(flatten)]
    stats: UsageStatsView,
}

impl From<&UsageRow> for UsageRowView {
    fn from(r: &UsageRow) -> Self {
        Self {
            group: r.group.clone(),
            bucket: r.bucket_start_ms.and_then(rfc3339),
            stats: UsageStatsView::from(&r.stats),
        }
    }
}

/// `GET /admin/usage`.
pub async fn usage(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let id = Uuid::now_v7();
    let result = async {
        let requested_team = params
            .iter()
            .find(|(k, _)| k == "team")
            .map(|(_, v)| v.as_str());
        let viewer_team = require_reader(&state, &headers, requested_team).await?;
        let mut q = usage_query(&params, jiff::Timestamp::now().as_millisecond())?;
        if let Some(team) = viewer_team {
            q.filters.retain(|(d, _)| *d != Dimension::Team);
            q.filters.push((Dimension::Team, team));
        }
        let failed = |e| GatewayError::internal(format!("reading usage failed: {e}"));
        let rows = state.stores.usage.usage(&q).await.map_err(failed)?;
        let totals = if q.group_by.is_none() && q.interval.is_none() {
            rows.first().map(|r| r.stats.clone())
        } else {
            let totals = state
                .stores
                .usage
                .usage(&q.totals())
                .await
                .map_err(failed)?;
            totals.into_iter().next().map(|r| r.stats)
        }
        .unwrap_or_default();
        let body = serde_json::json!({
            "since": rfc3339(q.since_ms),
            "until": rfc3339(q.until_ms),
            "group_by": q.group_by.map(Dimension::as_str),
            "interval": q.interval.map(Interval::as_str),
            "data": rows.iter().map(UsageRowView::from).collect::<Vec<_>>(),
            "totals": UsageStatsView::from(&totals),
        });
        serde_json::to_vec(&body)
            .map_err(|e| GatewayError::internal(format!("encoding usage failed: {e}")))
    }
    .await;
    match result {
        Ok(body) => respond::json(StatusCode::OK, body, &id),
        Err(e) => respond::error(Dialect::OpenAi, &e, &id),
    }
}
