//! The admin API (`/admin/…`): JSON, for the master key or an admin identity; what viewers and
//! members may reach of it is [`crate::admin_scope`]'s.
//!
//! - `GET /admin/logs` — the request log, newest first, with filters `since`, `until` (RFC 3339
//!   or Unix milliseconds), `model` (the served model), `requested_model` (the name the caller
//!   sent), `provider`, `route`, `status` (`429` or `5xx`), `cache` (`hit`, `miss`, `bypass`, or
//!   `none`: no cache consulted), `metadata.<key>` (records whose `x-portcullis-metadata` holds
//!   that key with that value — a number or boolean as its JSON text; one such filter at a
//!   time), `subject`, `user`, `team`, `key`, `endpoint` (`chat_completions`, `messages`,
//!   `embeddings`, `mcp`), `server` and `tool` (MCP requests only),
//!   `limit` (default 100, at most 1000) and `cursor` (the previous page's `next_cursor`);
//!   `sort=cost` lists the most expensive priced records of the filters first, as one page
//!   without a cursor (the overview's "most expensive requests").
//! - `GET /admin/logs/{id}` — one record by its request id (`x-portcullis-request-id`); 404 when
//!   there is none, or when a viewer asks for another team's.
//! - `GET /admin/usage` — usage analytics computed in the database: requests, errors, tokens,
//!   cost, cache hits and latency percentiles over `since`..`until` (default: the last 24
//!   hours), optionally per `group_by` (`provider`, `model`, `route`, `key`, `user`, `team`,
//!   `endpoint`, and for MCP requests only `server` and `tool`) and per `interval` (`minute`,
//!   `hour`, `day`), filtered by any of those dimensions, with totals; `limit=N` keeps the N
//!   groups with the most requests. Over days it reads hourly and daily rollups (latency
//!   percentiles then within 12.5%).
//!
//! Logs and usage are also open to `viewer` identities, limited to their own teams, and to
//! `member`s signed in as themselves, limited to their own requests ([`crate::admin_scope`]).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, Query, RawPathParams, State};
use axum::response::Response;
use http::request::Parts;
use http::{HeaderMap, StatusCode};
use portcullis_core::{Dialect, ErrorKind, GatewayError};
use portcullis_identity::Principal;
use portcullis_store::{
    CacheFilter, Dimension, Interval, LogQuery, LogRecord, StatusFilter, UsageQuery, UsageRow,
    UsageStats,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::admin_scope::{
    Reach, RecordScope, admin_required, may_read_record, reach, record_scope,
};
use crate::respond;
use crate::state::AppState;

/// A management failure as the admin API reports it.
pub(crate) fn manage_error(e: portcullis_identity::ManageError) -> GatewayError {
    use portcullis_identity::ManageError;
    match e {
        ManageError::Invalid(m) => GatewayError::invalid_request(m),
        ManageError::NotFound(m) => {
            GatewayError::new(ErrorKind::NotFound, m).with_code("not_found")
        }
        ManageError::Conflict(m) => GatewayError::invalid_request(m)
            .with_status(StatusCode::CONFLICT)
            .with_code("conflict"),
        ManageError::NoVault => GatewayError::invalid_request(e.to_string())
            .with_status(StatusCode::CONFLICT)
            .with_code("vault_not_configured"),
        ManageError::Store(e) => {
            tracing::error!(error = %e, "identity store failed");
            GatewayError::new(ErrorKind::Unavailable, "The identity store is unavailable")
        }
    }
}

/// The tenancy directory, or 503 when the gateway runs without tenancy.
pub(crate) fn directory(state: &AppState) -> Result<&portcullis_identity::Directory, GatewayError> {
    state.auth.directory().ok_or_else(|| {
        GatewayError::new(
            ErrorKind::Unavailable,
            "Tenancy is not available on this gateway",
        )
    })
}

/// Answers an admin request: authenticates the caller as an admin, then answers with `status`
/// and the JSON `f` makes, or with its error in the admin API's (OpenAI-style) format.
pub(crate) async fn admin_json<F, Fut>(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    status: StatusCode,
    f: F,
) -> Response
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<serde_json::Value, GatewayError>>,
{
    reach_json(state, headers, status, |reach| async move {
        match reach {
            Reach::Everything => f().await,
            _ => Err(admin_required()),
        }
    })
    .await
}

/// Answers an admin request open beyond admins: authenticates the caller, gives `f` its
/// [`Reach`] (which `f` must apply), and answers as [`admin_json`] does.
pub(crate) async fn reach_json<F, Fut>(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    status: StatusCode,
    f: F,
) -> Response
where
    F: FnOnce(Reach) -> Fut,
    Fut: std::future::Future<Output = Result<serde_json::Value, GatewayError>>,
{
    let id = Uuid::now_v7();
    let result = match require_reach(state, headers).await {
        Ok(reach) => f(reach).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(v) => respond::json(status, v.to_string(), &id),
        Err(e) => respond::error(Dialect::OpenAi, &e, &id),
    }
}

pub(crate) async fn require_admin(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Arc<Principal>, GatewayError> {
    let who = crate::console_session::caller(state, headers).await?;
    if crate::admin_scope::is_admin(&who.identity) {
        Ok(who)
    } else {
        Err(admin_required())
    }
}

/// The caller's reach into the admin API ([`admin_scope`](crate::admin_scope)), or 403.
pub(crate) async fn require_reach(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Reach, GatewayError> {
    let who = crate::console_session::caller(state, headers).await?;
    reach(&who.identity).ok_or_else(admin_required)
}

/// Who may read logs and usage, and which records a read then covers: see
/// [`record_scope`](crate::admin_scope::record_scope).
async fn require_reader(
    state: &AppState,
    headers: &HeaderMap,
    requested_team: Option<&str>,
    requested_user: Option<&str>,
) -> Result<RecordScope, GatewayError> {
    let reach = require_reach(state, headers).await?;
    record_scope(&reach, requested_team, requested_user)
}

fn bad(param: &str, why: &str) -> GatewayError {
    GatewayError::invalid_request(format!("Invalid `{param}`: {why}")).with_param(param)
}

/// Refuses a value no identifier, name or log field can hold: one with a NUL character, which
/// PostgreSQL cannot store (it is escaped in the request log, but a filter or an identifier
/// with it names nothing).
pub(crate) fn check_text(param: &str, v: &str) -> Result<(), GatewayError> {
    if v.as_bytes().contains(&0) {
        return Err(bad(param, "must not contain NUL characters"));
    }
    Ok(())
}

/// A text filter's value, checked by [`check_text`].
fn text(param: &str, v: &str) -> Result<String, GatewayError> {
    check_text(param, v)?;
    Ok(v.to_owned())
}

/// Largest admin request body.
pub(crate) const MAX_BODY: usize = 64 * 1024;

/// Reads an admin request's JSON body into `T`: see [`parse_body_bytes`].
pub(crate) async fn parse_body<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: axum::body::Body,
    object_fields: &[&str],
) -> Result<T, GatewayError> {
    let bytes = crate::body::read(None, body, headers, MAX_BODY).await?;
    parse_body_bytes(&bytes, object_fields)
}

/// The one reading of an admin JSON body into `T`, for every admin handler: no NUL in any
/// string, no repeated keys, a JSON object (serde reads a struct from an array too, so `[]`
/// would otherwise be a body with every field left out) whose `object_fields`, wherever they
/// appear, hold objects; then the typed parse, naming the offending field on error.
pub(crate) fn parse_body_bytes<T: DeserializeOwned>(
    bytes: &[u8],
    object_fields: &[&str],
) -> Result<T, GatewayError> {
    check_json_text(bytes)?;
    crate::body::check_unambiguous(bytes)?;
    check_objects(bytes, object_fields)?;
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path.is_empty() {
            GatewayError::invalid_request(format!("Invalid JSON body: {inner}"))
        } else {
            GatewayError::invalid_request(format!("Invalid `{path}`: {inner}")).with_param(path)
        }
    })
}

/// Refuses a body that is not a JSON object, or whose `object_fields` are not objects.
/// Syntax errors are left to the typed parse, which names them.
fn check_objects(bytes: &[u8], object_fields: &[&str]) -> Result<(), GatewayError> {
    use serde_json::Value;
    fn kind(v: &Value) -> &'static str {
        match v {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "an array",
            Value::Object(_) => "an object",
        }
    }
    fn walk(v: &Value, path: &str, fields: &[&str]) -> Result<(), GatewayError> {
        let Value::Object(map) = v else {
            return Ok(());
        };
        for (k, child) in map {
            let here = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            if fields.contains(&k.as_str()) && !(child.is_object() || child.is_null()) {
                return Err(GatewayError::invalid_request(format!(
                    "Invalid `{here}`: expected a JSON object, got {}",
                    kind(child)
                ))
                .with_param(here));
            }
            walk(child, &here, fields)?;
        }
        Ok(())
    }
    let Ok(v) = serde_json::from_slice::<Value>(bytes) else {
        return Ok(());
    };
    if !v.is_object() {
        return Err(GatewayError::invalid_request(format!(
            "Invalid JSON body: expected a JSON object of fields, got {}",
            kind(&v)
        )));
    }
    if object_fields.is_empty() {
        return Ok(());
    }
    walk(&v, "", object_fields)
}

/// Refuses a JSON body with a NUL character in any string (a value or a key), naming where
/// (`metadata.note`, `teams[1]`). Bodies without the escape `\u0000` — the only way JSON
/// spells NUL — are passed at the cost of one scan; a body that is not JSON is left for the
/// parser to report.
pub(crate) fn check_json_text(body: &[u8]) -> Result<(), GatewayError> {
    const NUL: &[u8] = b"\\u0000";
    if !body.windows(NUL.len()).any(|w| w == NUL) {
        return Ok(());
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Ok(());
    };
    fn walk(v: &serde_json::Value, path: &mut String) -> Result<(), GatewayError> {
        let at = |path: &str| {
            if path.is_empty() {
                "body".to_owned()
            } else {
                path.to_owned()
            }
        };
        match v {
            serde_json::Value::String(s) => check_text(&at(path), s),
            serde_json::Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    walk(item, path)?;
                    path.truncate(len);
                }
                Ok(())
            }
            serde_json::Value::Object(map) => {
                for (k, item) in map {
                    let len = path.len();
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(&k.replace('\0', "\\u0000"));
                    if k.contains('\0') {
                        return check_text(&at(path), k);
                    }
                    walk(item, path)?;
                    path.truncate(len);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
    walk(&v, &mut String::new())
}

/// The admin API's path extractor: axum's `Path`, except that a segment with a NUL character
/// or one that is not UTF-8 is a 400 in the API's own words, naming the segment — and only
/// for an admin: anyone else gets the 401 or 403 the handler would have given.
pub struct AdminPath<T>(pub T);

impl<T> FromRequestParts<Arc<AppState>> for AdminPath<T>
where
    T: DeserializeOwned + Send,
{
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let problem = match RawPathParams::from_request_parts(parts, state).await {
            Ok(raw) => raw.iter().find_map(|(name, v)| check_text(name, v).err()),
            Err(_) => Some(GatewayError::invalid_request(
                "Invalid path: a segment is not UTF-8 once percent-decoded",
            )),
        };
        let problem = match problem {
            Some(p) => p,
            None => match Path::<T>::from_request_parts(parts, state).await {
                Ok(Path(t)) => return Ok(AdminPath(t)),
                Err(e) => GatewayError::invalid_request(format!("Invalid path: {}", e.body_text())),
            },
        };
        let err = match require_admin(state, &parts.headers).await {
            Ok(_) => problem,
            Err(e) => e,
        };
        Err(respond::error(Dialect::OpenAi, &err, &Uuid::now_v7()))
    }
}

/// A failed store call as the admin API answers it: the database's own message goes to the
/// operator's log, never to the caller.
pub(crate) fn store_unavailable(
    what: &'static str,
    e: &portcullis_store::StoreError,
) -> GatewayError {
    tracing::error!(error = %e, "{what} failed");
    GatewayError::new(
        ErrorKind::Unavailable,
        "The gateway's database is unavailable; try again later",
    )
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
            "model" => q.model = Some(text(k, v)?),
            "requested_model" => q.requested_model = Some(text(k, v)?),
            "cache" => {
                q.cache = Some(
                    CacheFilter::parse(v)
                        .ok_or_else(|| bad(k, "expected hit, miss, bypass or none"))?,
                )
            }
            "provider" => q.provider = Some(text(k, v)?),
            "route" => q.route = Some(text(k, v)?),
            "subject" => q.subject = Some(text(k, v)?),
            "user" => q.user = Some(text(k, v)?),
            "team" => q.team = Some(text(k, v)?),
            "key" => q.key = Some(text(k, v)?),
            "endpoint" => q.endpoint = Some(text(k, v)?),
            "server" => q.server = Some(text(k, v)?),
            "tool" => q.tool = Some(text(k, v)?),
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
            "sort" => {
                q.costliest_first = match v.as_str() {
                    "newest" => false,
                    "cost" => true,
                    _ => return Err(bad(k, "expected newest or cost")),
                }
            }
            "cursor" => {
                q.before_id = Some(
                    Uuid::parse_str(v).map_err(|_| bad(k, "not a cursor from a previous page"))?,
                )
            }
            other => match other.strip_prefix("metadata.") {
                Some("") => return Err(bad(other, "name a metadata key: `metadata.<key>`")),
                Some(key) => {
                    if q.metadata.is_some() {
                        return Err(bad(other, "only one metadata filter at a time"));
                    }
                    check_text(other, key)?;
                    q.metadata = Some((key.to_owned(), text(other, v)?));
                }
                None => return Err(bad(other, "unknown parameter")),
            },
        }
    }
    if q.costliest_first && q.before_id.is_some() {
        return Err(bad(
            "cursor",
            "a list by cost is one page: it takes no cursor",
        ));
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

impl<'a> LogView<'a> {
    fn of(r: &'a LogRecord) -> Self {
        LogView {
            time: jiff::Timestamp::from_millisecond(r.ts_ms)
                .map(|t| t.to_string())
                .unwrap_or_default(),
            record: r,
            latency_ms: r.latency_us as f64 / 1000.0,
            ttft_ms: r.ttft_us.map(|t| t as f64 / 1000.0),
        }
    }
}

/// A page of `GET /admin/logs` ends early once its records pass this many bytes of JSON (logged
/// bodies make records large); its `next_cursor` continues after the last record it holds.
pub const MAX_LOG_PAGE_BYTES: usize = 8 * 1024 * 1024;

/// Rows read from the database at a time while filling a page: the first read is small, later
/// ones are sized from the bytes per record seen so far, so a page of large records never holds
/// many more rows in memory than it returns.
const FIRST_LOG_READ: u32 = 8;
const MAX_LOG_READ: u32 = 250;

/// Fills one page of the log: `{"data": [...], "next_cursor": ...}`, at most `q.limit` records
/// and, past [`MAX_LOG_PAGE_BYTES`], no more records.
async fn log_page(state: &AppState, mut q: LogQuery) -> Result<Vec<u8>, GatewayError> {
    let limit = q.limit.clamp(1, 1000);
    let mut out = Vec::with_capacity(4096);
    out.extend_from_slice(b"{\"data\":[");
    let (mut count, mut data_bytes) = (0u32, 0usize);
    let mut last: Option<Uuid> = None;
    let mut more = false;
    let mut read = FIRST_LOG_READ.min(limit);
    if q.costliest_first {
        // A top list: one read of the page, no cursor.
        read = limit;
    }
    loop {
        q.limit = read;
        q.before_id = last.or(q.before_id);
        let records = state
            .stores
            .logs
            .query(&q)
            .await
            .map_err(|e| store_unavailable("reading the request log", &e))?;
        let exhausted = records.len() < read as usize;
        for r in &records {
            if count > 0 {
                out.push(b',');
            }
            let before = out.len();
            serde_json::to_writer(&mut out, &LogView::of(r))
                .map_err(|e| GatewayError::internal(format!("encoding the log failed: {e}")))?;
            data_bytes += out.len() - before;
            count += 1;
            last = Some(r.id);
            if count == limit || data_bytes >= MAX_LOG_PAGE_BYTES {
                break;
            }
        }
        if q.costliest_first {
            break;
        }
        if count == limit {
            // A full page always points on, as it always has (the next may be empty).
            more = true;
            break;
        }
        if data_bytes >= MAX_LOG_PAGE_BYTES {
            // Cut by size: more follow unless this was the very last record.
            more = !exhausted || last != records.last().map(|r| r.id);
            break;
        }
        if exhausted {
            break;
        }
        let per_record = data_bytes / count.max(1) as usize + 1;
        let fits = (MAX_LOG_PAGE_BYTES - data_bytes) / per_record + 1;
        read = u32::try_from(fits)
            .unwrap_or(MAX_LOG_READ)
            .clamp(1, MAX_LOG_READ)
            .min(limit - count);
    }
    out.extend_from_slice(b"],\"next_cursor\":");
    match last.filter(|_| more) {
        Some(id) => {
            out.push(b'"');
            out.extend_from_slice(id.hyphenated().to_string().as_bytes());
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.push(b'}');
    Ok(out)
}

/// `GET /admin/logs`.
pub async fn logs(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let id = Uuid::now_v7();
    let result = async {
        let scope = require_reader(
            &state,
            &headers,
            params.get("team").map(String::as_str),
            params.get("user").map(String::as_str),
        )
        .await?;
        let mut q = log_query(&params)?;
        match scope {
            RecordScope::Any => {}
            RecordScope::Team(team) => q.team = Some(team),
            RecordScope::User(user) => q.user = Some(user),
        }
        log_page(&state, q).await
    }
    .await;
    match result {
        Ok(body) => respond::json(StatusCode::OK, body, &id),
        Err(e) => respond::error(Dialect::OpenAi, &e, &id),
    }
}

/// `GET /admin/logs/{id}`: one record. A viewer sees only its own teams' records; another's is
/// a 404, as an unknown id is.
pub async fn log(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    AdminPath(raw): AdminPath<String>,
) -> Response {
    let id = Uuid::now_v7();
    let result = async {
        let reach = require_reach(&state, &headers).await?;
        let wanted = Uuid::parse_str(&raw).map_err(|_| bad("id", "not a request id"))?;
        let not_found = || {
            GatewayError::new(
                ErrorKind::NotFound,
                format!("No request log record with id `{wanted}`"),
            )
            .with_code("not_found")
        };
        let record = state
            .stores
            .logs
            .record(wanted)
            .await
            .map_err(|e| store_unavailable("reading the request log", &e))?
            .ok_or_else(not_found)?;
        if !may_read_record(&reach, record.team.as_deref(), record.user.as_deref()) {
            return Err(not_found());
        }
        serde_json::to_vec(&LogView::of(&record))
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

/// The largest `limit` of `GET /admin/usage`: the top groups by requests.
const MAX_USAGE_GROUPS: u32 = 10_000;

fn usage_query(params: &[(String, String)], now_ms: i64) -> Result<UsageQuery, GatewayError> {
    let mut seen: Vec<&str> = Vec::with_capacity(params.len());
    let (mut since, mut until, mut group_by, mut interval) = (None, None, None, None);
    let mut limit = None;
    let mut filters = Vec::new();
    for (k, v) in params {
        if seen.contains(&k.as_str()) {
            return Err(bad(k, "given more than once"));
        }
        seen.push(k);
        match k.as_str() {
            "since" => since = Some(parse_time(k, v)?),
            "until" => until = Some(parse_time(k, v)?),
            "group_by" => group_by = Some(Dimension::parse(v).ok_or_else(|| {
                bad(
                    k,
                    "expected provider, model, route, key, user, team, endpoint, server or tool",
                )
            })?),
            "interval" => {
                interval =
                    Some(Interval::parse(v).ok_or_else(|| bad(k, "expected minute, hour or day"))?)
            }
            "limit" => {
                limit = Some(
                    v.parse::<u32>()
                        .ok()
                        .filter(|n| (1..=MAX_USAGE_GROUPS).contains(n))
                        .ok_or_else(|| {
                            bad(
                                k,
                                &format!("expected a number from 1 to {MAX_USAGE_GROUPS}"),
                            )
                        })?,
                )
            }
            other => match Dimension::parse(other) {
                Some(_) if v.is_empty() => return Err(bad(k, "must not be empty")),
                Some(dimension) => filters.push((dimension, text(k, v)?)),
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
    if limit.is_some() && group_by.is_none() {
        return Err(bad(
            "limit",
            "applies to the groups of `group_by`, which is missing",
        ));
    }
    let q = UsageQuery {
        since_ms,
        until_ms,
        group_by,
        interval,
        filters,
        limit,
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

/// A Unix-millisecond time as RFC 3339 text (`None` when out of range).
pub(crate) fn rfc3339(ms: i64) -> Option<String> {
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
        let param = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let scope = require_reader(&state, &headers, param("team"), param("user")).await?;
        let mut q = usage_query(&params, jiff::Timestamp::now().as_millisecond())?;
        let forced = match scope {
            RecordScope::Any => None,
            RecordScope::Team(team) => Some((Dimension::Team, team)),
            RecordScope::User(user) => Some((Dimension::User, user)),
        };
        if let Some((dimension, value)) = forced {
            q.filters.retain(|(d, _)| *d != dimension);
            q.filters.push((dimension, value));
        }
        let failed = |e| store_unavailable("reading usage", &e);
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
            "limit": q.limit,
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
