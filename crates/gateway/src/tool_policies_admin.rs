//! `GET/POST/PUT /admin/tool-policies` and `DELETE /admin/tool-policies/{id}`: tool policies
//! added at run time (admin only). They are stored as an ordered list, apply after the
//! configuration file's `tool_policies` (the file's rules come first, so a rule the operator
//! wrote wins over one added here), and bump the tenancy version, so every replica reads them
//! again within a poll interval (this one before the answer). What the request paths read is
//! [`crate::state::AppState::tool_policies`]: both lists compiled together by
//! [`crate::stored_tool_policies::effective`].

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use portcullis_core::{Dialect, ErrorKind, GatewayError};
use portcullis_policy::ToolPolicySpec;
use portcullis_store::ToolPolicyRecord;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::admin::{AdminPath as Path, parse_body, require_admin, rfc3339};
use crate::respond;
use crate::state::AppState;
use crate::stored_tool_policies::{check, usable};

/// `PUT /admin/tool-policies` body: the whole stored list, in the order it applies.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplaceRules {
    rules: Vec<ToolPolicySpec>,
}

/// Every rule in force, file first, each with the index decisions name it by
/// (`tool_policies[i]`); a stored rule not in force has no index and says why.
async fn rules(state: &AppState) -> Vec<Value> {
    let runtime = state.runtime();
    let quarantine = state.quarantine_configured().await;
    let mut data: Vec<Value> = runtime
        .tool_policies
        .specs()
        .iter()
        .enumerate()
        .map(|(i, spec)| json!({"index": i, "source": "file", "rule": spec}))
        .collect();
    let mut next = data.len();
    for record in state.stored_tool_policies().iter() {
        let mut entry = json!({
            "id": record.id,
            "source": "api",
            "created_at": rfc3339(record.created_ms),
            "created_by": record.created_by,
        });
        match usable(record, quarantine) {
            Ok(spec) => {
                entry["index"] = json!(next);
                entry["rule"] = json!(spec);
                next += 1;
            }
            Err(why) => {
                entry["index"] = Value::Null;
                entry["rule"] = serde_json::from_str(&record.spec).unwrap_or(Value::Null);
                entry["not_applied"] = json!(why);
            }
        }
        data.push(entry);
    }
    data
}

/// Answers as `admin_json` does, handing `f` the admin's subject.
async fn admin<F, Fut>(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    status: StatusCode,
    f: F,
) -> Response
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = Result<Value, GatewayError>>,
{
    let id = Uuid::now_v7();
    let result = match require_admin(state, headers).await {
        Ok(who) => f(who.identity.subject.clone()).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(v) => respond::json(status, v.to_string(), &id),
        Err(e) => respond::error(Dialect::OpenAi, &e, &id),
    }
}

fn invalid((path, message): (String, String), at: &str) -> GatewayError {
    let param = match (at.is_empty(), path.is_empty()) {
        (true, _) => path,
        (false, true) => at.to_owned(),
        (false, false) => format!("{at}.{path}"),
    };
    GatewayError::invalid_request(format!("Invalid tool policy: {message}")).with_param(param)
}

fn store_failed(e: portcullis_store::StoreError) -> GatewayError {
    tracing::error!(error = %e, "the tool policy store failed");
    GatewayError::new(
        ErrorKind::Unavailable,
        "The tool policy store is unavailable",
    )
}

/// Puts the stored rules in force on this replica before the change is answered. The change
/// is stored: a failure here is logged, and the next version change tries again.
async fn put_in_force(state: &AppState) {
    if let Err(e) = state.refresh_tool_policies().await {
        tracing::warn!(error = %e, "cannot put the stored tool policies in force");
    }
}

fn record(
    spec: &ToolPolicySpec,
    by: &str,
    position: i64,
) -> Result<ToolPolicyRecord, GatewayError> {
    let text = serde_json::to_string(spec)
        .map_err(|e| GatewayError::invalid_request(format!("Invalid tool policy: {e}")))?;
    Ok(ToolPolicyRecord {
        id: format!("tp_{}", Uuid::now_v7().simple()),
        position,
        spec: text,
        created_ms: jiff::Timestamp::now().as_millisecond(),
        created_by: by.to_owned(),
    })
}

/// `GET /admin/tool-policies`: the rules in force, in the order they apply.
pub async fn list(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    admin(&state, &headers, StatusCode::OK, |_| async {
        Ok(json!({"data": rules(&state).await}))
    })
    .await
}

/// `POST /admin/tool-policies`: appends one rule (the body, as the file would hold it).
pub async fn create(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (st, hd) = (state.clone(), headers.clone());
    admin(&state, &headers, StatusCode::CREATED, |by| async move {
        let (state, headers) = (st, hd);
        let spec: ToolPolicySpec = parse_body(&headers, body, &["args", "questions"]).await?;
        check(&spec, state.quarantine_configured().await).map_err(|e| invalid(e, ""))?;
        let stored = state
            .stores
            .tool_policies
            .append_tool_policy(&record(&spec, &by, 0)?)
            .await
            .map_err(store_failed)?
            .ok_or_else(|| {
                GatewayError::invalid_request("A tool policy with that id exists; try again")
                    .with_status(StatusCode::CONFLICT)
                    .with_code("conflict")
            })?;
        put_in_force(&state).await;
        let entry = rules(&state)
            .await
            .into_iter()
            .find(|r| r["id"] == json!(stored.id))
            .unwrap_or_else(|| json!({"id": stored.id, "source": "api", "rule": spec}));
        Ok(entry)
    })
    .await
}

/// `PUT /admin/tool-policies`: replaces the whole stored list (`{"rules": [...]}`), to reorder
/// or rewrite it at once; the file's rules are not touched.
pub async fn replace(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (st, hd) = (state.clone(), headers.clone());
    admin(&state, &headers, StatusCode::OK, |by| async move {
        let (state, headers) = (st, hd);
        let req: ReplaceRules = parse_body(&headers, body, &[]).await?;
        let quarantine = state.quarantine_configured().await;
        let mut records = Vec::with_capacity(req.rules.len());
        for (i, spec) in req.rules.iter().enumerate() {
            check(spec, quarantine).map_err(|e| invalid(e, &format!("rules[{i}]")))?;
            records.push(record(spec, &by, i as i64)?);
        }
        state
            .stores
            .tool_policies
            .replace_tool_policies(&records)
            .await
            .map_err(store_failed)?;
        put_in_force(&state).await;
        Ok(json!({"data": rules(&state).await}))
    })
    .await
}

/// `DELETE /admin/tool-policies/{id}`: removes a stored rule.
pub async fn delete(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let st = state.clone();
    admin(&state, &headers, StatusCode::OK, |_| async move {
        let state = st;
        let gone = state
            .stores
            .tool_policies
            .delete_tool_policy(&id)
            .await
            .map_err(store_failed)?;
        if !gone {
            return Err(GatewayError::new(
                ErrorKind::NotFound,
                format!("No tool policy `{id}` was added through the admin API"),
            )
            .with_code("not_found"));
        }
        put_in_force(&state).await;
        Ok(json!({"id": id, "deleted": true}))
    })
    .await
}

/// Follows the tenancy version the directory publishes: whenever it moves (a change made on
/// any replica), the stored rules are read again and put in force.
pub fn follow(state: &Arc<AppState>, mut versions: tokio::sync::watch::Receiver<i64>) {
    let state = Arc::downgrade(state);
    tokio::spawn(async move {
        while versions.changed().await.is_ok() {
            let Some(state) = state.upgrade() else {
                return; // The gateway is gone.
            };
            put_in_force(&state).await;
        }
    });
}
