//! The approvals of held tool calls in the admin API (admin identities only; the service and
//! how an approved call proceeds are `crate::approvals`'s).
//!
//! | route | does |
//! |---|---|
//! | `GET /admin/approvals` | held calls, newest first: `{"data": [...], "next_cursor"}`; filters `status` (`pending`, `approved`, `denied`, `expired`, `used`), `session`, `limit` (1 to 1000, default 100), `cursor` (the previous page's `next_cursor`) |
//! | `GET /admin/approvals/{id}` | one held call |
//! | `POST /admin/approvals/{id}` | decides it: `{"decision": "approve" \| "deny"}` → 200 with the approval; another decision 400; an unknown id 404; one already decided, used or expired 409 |
//!
//! A decision is a conditional update of a pending, unexpired row, so two admins deciding at
//! once — on one replica or several — get one 200 and one 409. Pending and approved calls past
//! their expiry are marked `expired` before each read.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use portcullis_core::{Dialect, ErrorKind, GatewayError};
use portcullis_store::{ApprovalQuery, ApprovalStatus};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::admin::{AdminPath as Path, admin_json, check_text, require_admin, store_unavailable};
use crate::approvals::view;
use crate::clock::now_ms;
use crate::respond;
use crate::state::AppState;

/// Approvals in a page unless `limit` says otherwise.
const DEFAULT_LIMIT: u32 = 100;
/// Largest decision body.
const MAX_BODY: usize = 4 * 1024;

fn bad(param: &str, why: &str) -> GatewayError {
    GatewayError::invalid_request(format!("Invalid `{param}`: {why}")).with_param(param)
}

fn not_found(id: &str) -> GatewayError {
    GatewayError::new(ErrorKind::NotFound, format!("No approval `{id}`")).with_code("not_found")
}

/// Marks what expired, before a read or a decision.
async fn sweep(state: &AppState, now: i64) -> Result<(), GatewayError> {
    state
        .approvals
        .store()
        .expire_approvals(now)
        .await
        .map(|_| ())
        .map_err(|e| store_unavailable("expiring approvals", &e))
}

/// `GET /admin/approvals`.
pub async fn list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    admin_json(&state, &headers, StatusCode::OK, || async {
        let mut q = ApprovalQuery {
            limit: DEFAULT_LIMIT,
            ..ApprovalQuery::default()
        };
        for (name, v) in &params {
            match name.as_str() {
                "status" => {
                    q.status = Some(ApprovalStatus::parse(v).ok_or_else(|| {
                        bad(
                            "status",
                            "expected pending, approved, denied, expired or used",
                        )
                    })?);
                }
                "session" => {
                    check_text("session", v)?;
                    q.session = Some(v.clone());
                }
                "limit" => {
                    q.limit = v
                        .parse::<u32>()
                        .ok()
                        .filter(|n| (1..=1000).contains(n))
                        .ok_or_else(|| bad("limit", "expected a whole number from 1 to 1000"))?;
                }
                "cursor" => {
                    if !is_id(v) {
                        return Err(bad("cursor", "expected the `next_cursor` of a page"));
                    }
                    q.before_id = Some(v.clone());
                }
                other => {
                    return Err(bad(
                        other,
                        "unknown parameter (expected status, session, limit or cursor)",
                    ));
                }
            }
        }
        let now = now_ms();
        sweep(&state, now).await?;
        let limit = q.limit as usize;
        q.limit += 1;
        let mut rows = state
            .approvals
            .store()
            .approvals(&q)
            .await
            .map_err(|e| store_unavailable("reading approvals", &e))?;
        let next = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|r| r.id.clone())
        } else {
            None
        };
        let data: Vec<Value> = rows.iter().map(|r| view(r, now)).collect();
        Ok(json!({ "data": data, "next_cursor": next }))
    })
    .await
}

/// Whether `v` can be an approval id (`apr_` and 32 hex digits).
fn is_id(v: &str) -> bool {
    v.strip_prefix("apr_")
        .is_some_and(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `GET /admin/approvals/{id}`.
pub async fn get(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    admin_json(&state, &headers, StatusCode::OK, || async {
        let now = now_ms();
        sweep(&state, now).await?;
        let record = state
            .approvals
            .store()
            .approval(&id)
            .await
            .map_err(|e| store_unavailable("reading an approval", &e))?
            .ok_or_else(|| not_found(&id))?;
        Ok(view(&record, now))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionBody {
    decision: String,
}

/// `POST /admin/approvals/{id}`.
pub async fn decide(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let request_id = Uuid::now_v7();
    let result = async {
        let admin = require_admin(&state, &headers).await?;
        let bytes = crate::body::read(None, body, &headers, MAX_BODY).await?;
        crate::admin::check_json_text(&bytes)?;
        let parsed: DecisionBody = serde_json::from_slice(&bytes).map_err(|e| {
            GatewayError::invalid_request(format!(
                "The body must be {{\"decision\": \"approve\" | \"deny\"}}: {e}"
            ))
            .with_param("decision")
        })?;
        let decision = match parsed.decision.as_str() {
            "approve" => ApprovalStatus::Approved,
            "deny" => ApprovalStatus::Denied,
            _ => return Err(bad("decision", "expected `approve` or `deny`")),
        };
        let now = now_ms();
        let store = state.approvals.store();
        let by = &admin.identity.subject;
        let decided = store
            .decide_approval(&id, decision, by, now)
            .await
            .map_err(|e| store_unavailable("deciding an approval", &e))?;
        if !decided {
            sweep(&state, now).await?;
        }
        let record = store
            .approval(&id)
            .await
            .map_err(|e| store_unavailable("reading an approval", &e))?
            .ok_or_else(|| not_found(&id))?;
        if !decided {
            let status = crate::approvals::status_at(&record, now);
            return Err(GatewayError::invalid_request(format!(
                "Approval `{id}` is {status}; it can no longer be decided"
            ))
            .with_status(StatusCode::CONFLICT)
            .with_code("conflict"));
        }
        state.approvals.forget(&record.session, &record.subject);
        tracing::info!(
            approval = %id,
            decision = decision.as_str(),
            by = %by,
            tool = %record.tool,
            "held tool call decided"
        );
        Ok(view(&record, now))
    }
    .await;
    match result {
        Ok(v) => respond::json(StatusCode::OK, v.to_string(), &request_id),
        Err(e) => respond::error(Dialect::OpenAi, &e, &request_id),
    }
}
