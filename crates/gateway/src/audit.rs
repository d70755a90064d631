//! The decision audit's admin API: `GET /admin/audit` (a page of records, newest first) and
//! `GET /admin/audit/export` (every matching record as JSON Lines, streamed a page at a time,
//! never held whole; `GET /admin/audit` with `Accept: application/x-ndjson` answers the same).
//! Admin identities only. Filters: `session`, `since` and `until` (RFC 3339; `until`
//! exclusive), `limit` (1 to 1000, default 100; not for the export) and `cursor` (the
//! `next_cursor` of the page before). Each record is shown as sealed — its chain, `seq`, `prev`
//! and `hash` included — with its `time` in RFC 3339, the lists it leaves out when empty
//! (`tools_offered`, `tools_hidden`, `calls`, `approvals`) as `[]`, and `tools_withheld`, the
//! tools whose calls were withheld or held.
//!
//! `POST /admin/audit/verify` checks every stored chain as `portcullis audit verify` does
//! (`portcullis_store::verify_audit`, reading each chain a page at a time): `{"intact",
//! "records" (verified in intact chains), "chains", "first_bad_record" (the id of the earliest
//! bad record, as `GET /admin/audit` shows it, or null), "bad" (each broken chain's first bad
//! record, with its fault and why)}`. One verification runs at a time on a gateway (another
//! asked meanwhile is a 409), and one that takes longer than [`VERIFY_TIMEOUT`] is stopped
//! (503: `portcullis audit verify` has no such limit).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::response::Response;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, StatusCode};
use portcullis_core::{Dialect, GatewayError};
use portcullis_store::{AuditQuery, AuditRow};
use serde_json::Value;
use uuid::Uuid;

use crate::admin::{check_text, require_admin, rfc3339, store_unavailable};
use crate::respond;
use crate::state::AppState;

/// Records in a page unless `limit` says otherwise.
const DEFAULT_LIMIT: u32 = 100;
/// Records read at a time by the export.
const EXPORT_PAGE: u32 = 500;
/// JSON Lines.
const NDJSON: &str = "application/x-ndjson";
/// How long `POST /admin/audit/verify` may read and check chains.
pub const VERIFY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);
/// One verification at a time on this gateway.
static VERIFYING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// `POST /admin/audit/verify`.
pub async fn verify(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    crate::admin::admin_json(&state, &headers, StatusCode::OK, || async {
        let _running = VERIFYING.try_acquire().map_err(|_| {
            GatewayError::invalid_request("An audit verification is already running")
                .with_status(StatusCode::CONFLICT)
                .with_code("verification_running")
        })?;
        let started = std::time::Instant::now();
        let report = tokio::time::timeout(
            VERIFY_TIMEOUT,
            portcullis_store::verify_audit(state.stores.audit.as_ref()),
        )
        .await
        .map_err(|_| {
            GatewayError::new(
                portcullis_core::ErrorKind::Unavailable,
                format!(
                    "The audit took longer than {} s to verify: run `portcullis audit verify`",
                    VERIFY_TIMEOUT.as_secs()
                ),
            )
            .with_code("verification_timeout")
        })?
        .map_err(|e| store_unavailable("verifying the audit", &e))?;
        let bad: Vec<Value> = report
            .bad
            .iter()
            .map(|b| {
                serde_json::json!({
                    "id": b.id,
                    "chain": b.chain,
                    "seq": b.seq,
                    "fault": b.fault.as_str(),
                    "reason": b.reason,
                })
            })
            .collect();
        Ok(serde_json::json!({
            "intact": report.bad.is_empty(),
            "records": report.intact.iter().map(|c| c.records).sum::<u64>(),
            "chains": report.intact.len() + report.bad.len(),
            "first_bad_record": report.first_bad().map(|b| b.id.clone()),
            "bad": bad,
            "elapsed_ms": u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        }))
    })
    .await
}

/// `GET /admin/audit`.
pub async fn list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let wants_lines = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(NDJSON));
    if wants_lines {
        return export(State(state), headers, Query(params)).await;
    }
    let id = Uuid::now_v7();
    let result = async {
        require_admin(&state, &headers).await?;
        let mut q = query(&params, true)?;
        let limit = q.limit;
        q.limit = limit + 1;
        let mut rows = state
            .stores
            .audit
            .audit_records(&q)
            .await
            .map_err(|e| store_unavailable("reading the audit", &e))?;
        let next = if rows.len() > limit as usize {
            rows.truncate(limit as usize);
            rows.last().map(|r| r.id.clone())
        } else {
            None
        };
        let data: Vec<Value> = rows.iter().map(view).collect();
        Ok::<_, GatewayError>(serde_json::json!({ "data": data, "next_cursor": next }))
    }
    .await;
    match result {
        Ok(v) => respond::json(StatusCode::OK, v.to_string(), &id),
        Err(e) => respond::error(Dialect::OpenAi, &e, &id),
    }
}

/// `GET /admin/audit/export`: JSON Lines, newest first, read and sent a page at a time.
pub async fn export(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let id = Uuid::now_v7();
    let q = match require_admin(&state, &headers).await {
        Ok(_) => query(&params, false),
        Err(e) => Err(e),
    };
    let mut q = match q {
        Ok(q) => q,
        Err(e) => return respond::error(Dialect::OpenAi, &e, &id),
    };
    q.limit = EXPORT_PAGE;
    let store = state.stores.audit.clone();
    // Each step reads one page and yields its lines; a failure mid-way ends the body with an
    // error, so the client sees a broken transfer rather than a short, complete-looking file.
    let pages = futures_util::stream::unfold(Some(q), move |q| {
        let store = store.clone();
        async move {
            let mut q = q?;
            match store.audit_records(&q).await {
                Ok(rows) => {
                    let more = rows.len() == q.limit as usize;
                    let mut out = Vec::with_capacity(rows.len() * 512);
                    for r in &rows {
                        out.extend_from_slice(view(r).to_string().as_bytes());
                        out.push(b'\n');
                    }
                    let next = match rows.last() {
                        Some(last) if more => {
                            q.before_id = Some(last.id.clone());
                            Some(q)
                        }
                        _ => None,
                    };
                    Some((Ok::<_, std::io::Error>(Bytes::from(out)), next))
                }
                Err(e) => {
                    tracing::error!(error = %e, "audit export failed");
                    Some((Err(std::io::Error::other("the audit store failed")), None))
                }
            }
        }
    });
    let mut r = Response::new(Body::from_stream(pages));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(NDJSON));
    if let Ok(v) = HeaderValue::from_str(&id.to_string()) {
        r.headers_mut().insert(crate::headers::REQUEST_ID, v);
    }
    r
}

fn bad(param: &str, why: &str) -> GatewayError {
    GatewayError::invalid_request(format!("Invalid `{param}`: {why}")).with_param(param)
}

/// The filters of a request; `paged` takes `limit` and `cursor` too.
fn query(params: &HashMap<String, String>, paged: bool) -> Result<AuditQuery, GatewayError> {
    let mut q = AuditQuery {
        limit: DEFAULT_LIMIT,
        ..AuditQuery::default()
    };
    for (name, v) in params {
        match name.as_str() {
            "session" => {
                check_text("session", v)?;
                q.session = Some(v.clone());
            }
            "since" => q.since_ms = Some(time("since", v)?),
            "until" => q.until_ms = Some(time("until", v)?),
            "limit" if paged => {
                q.limit = v
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| bad("limit", "expected a whole number from 1 to 1000"))?;
            }
            "cursor" if paged => {
                let id = Uuid::parse_str(v)
                    .map_err(|_| bad("cursor", "expected the `next_cursor` of a page"))?;
                q.before_id = Some(id.hyphenated().to_string());
            }
            other => {
                return Err(bad(
                    other,
                    "unknown parameter (expected session, since, until, limit or cursor)",
                ));
            }
        }
    }
    if let (Some(a), Some(b)) = (q.since_ms, q.until_ms)
        && a >= b
    {
        return Err(bad("until", "must be after `since`"));
    }
    Ok(q)
}

fn time(param: &str, v: &str) -> Result<i64, GatewayError> {
    v.parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond())
        .map_err(|_| {
            bad(
                param,
                "expected an RFC 3339 time such as 2026-01-31T12:00:00Z",
            )
        })
}

/// A stored record as the API shows it.
fn view(r: &AuditRow) -> Value {
    let mut v: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
    let Value::Object(map) = &mut v else {
        // A body that is not a record (the verifier names it): shown by id and hash only.
        return serde_json::json!({ "id": r.id, "hash": r.hash, "body": r.body });
    };
    for list in ["tools_offered", "tools_hidden", "calls", "approvals"] {
        map.entry(list).or_insert_with(|| Value::Array(Vec::new()));
    }
    map.entry("session").or_insert(Value::Null);
    let withheld: Vec<Value> = map
        .get("calls")
        .and_then(Value::as_array)
        .map(|calls| {
            calls
                .iter()
                .filter(|c| {
                    matches!(
                        c.get("decision").and_then(Value::as_str),
                        Some("withheld" | "held")
                    )
                })
                .filter_map(|c| c.get("tool").cloned())
                .collect()
        })
        .unwrap_or_default();
    map.insert("tools_withheld".into(), Value::Array(withheld));
    if let Some(ms) = map.get("ts_ms").and_then(Value::as_i64) {
        map.insert(
            "time".into(),
            rfc3339(ms).map_or(Value::Null, Value::String),
        );
    }
    map.insert("hash".into(), Value::String(r.hash.clone()));
    v
}
