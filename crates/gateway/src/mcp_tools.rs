//! The pinned MCP tools in the admin API (admin only; see `portcullis_mcp::pins`).
//!
//! | route | does |
//! |---|---|
//! | `GET /admin/mcp-tools` | every tool ever listed, with `server` and `status` (`pinned`, `changed`) filters |
//! | `POST /admin/mcp-tools/{server}/{tool}/approve` | pins the definition reviewed (`{"fingerprint": …}`) |
//!
//! A tool is `changed` when the definition its server lists now differs from the pinned one:
//! clients do not see it, and its calls are refused, until an admin approves the new
//! definition by its fingerprint. Approving a fingerprint the server no longer lists is a 409
//! (the definition changed again meanwhile: review it again). An approval takes effect on
//! this replica before the answer, on the others within the identity poll interval.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use portcullis_core::{Dialect, ErrorKind, GatewayError};
use portcullis_store::mcp_pins::{Approval, ToolPin};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::admin::{AdminPath as Path, require_admin, store_unavailable};
use crate::respond;
use crate::state::AppState;

/// Largest request body.
const MAX_BODY: usize = 16 * 1024;

/// Answers an admin request with the JSON `f` makes, or its error in the admin API's format.
async fn admin<F, Fut>(state: &Arc<AppState>, headers: &HeaderMap, f: F) -> Response
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Value, GatewayError>>,
{
    let id = Uuid::now_v7();
    let result = match require_admin(state, headers).await {
        Ok(_) => f().await,
        Err(e) => Err(e),
    };
    match result {
        Ok(v) => respond::json(StatusCode::OK, v.to_string(), &id),
        Err(e) => respond::error(Dialect::OpenAi, &e, &id),
    }
}

/// `GET /admin/mcp-tools`.
pub async fn list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    admin(&state, &headers, || async {
        let mut server = None;
        let mut status = None;
        for (name, value) in &params {
            match name.as_str() {
                "server" => server = Some(value.as_str()),
                "status" => match value.as_str() {
                    "pinned" => status = Some(false),
                    "changed" => status = Some(true),
                    _ => {
                        return Err(GatewayError::invalid_request(
                            "`status` must be `pinned` or `changed`",
                        )
                        .with_param("status"));
                    }
                },
                other => {
                    return Err(GatewayError::invalid_request(format!(
                        "Unknown query parameter `{other}`"
                    ))
                    .with_param(other.to_owned()));
                }
            }
        }
        let pins = state
            .stores
            .mcp_pins
            .tool_pins(server)
            .await
            .map_err(|e| store_unavailable("reading MCP tool pins", &e))?;
        let data: Vec<Value> = pins
            .iter()
            .filter(|p| status.is_none_or(|changed| p.changed() == changed))
            .map(view)
            .collect();
        Ok(json!({ "data": data }))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApproveBody {
    fingerprint: String,
}

/// `POST /admin/mcp-tools/{server}/{tool}/approve`.
pub async fn approve(
    State(state): State<Arc<AppState>>,
    Path((server, tool)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    admin(&state, &headers, || async {
        let bytes = crate::body::read(None, body, &headers, MAX_BODY).await?;
        crate::admin::check_json_text(&bytes)?;
        let body: ApproveBody = serde_json::from_slice(&bytes).map_err(|e| {
            GatewayError::invalid_request(format!(
                "The body must be {{\"fingerprint\": \"<the fingerprint reviewed>\"}}: {e}"
            ))
            .with_param("fingerprint")
        })?;
        let approval = state
            .stores
            .mcp_pins
            .approve_tool(&server, &tool, &body.fingerprint, now_ms())
            .await
            .map_err(|e| store_unavailable("approving an MCP tool", &e))?;
        match approval {
            Approval::Approved(pin) => {
                state
                    .mcp_pins
                    .pin(&pin.server, &pin.tool, &pin.pinned_fingerprint);
                tracing::info!(
                    server = %pin.server,
                    tool = %pin.tool,
                    fingerprint = %pin.pinned_fingerprint,
                    "MCP tool definition approved"
                );
                Ok(view(&pin))
            }
            Approval::Stale {
                current_fingerprint,
            } => Err(GatewayError::invalid_request(format!(
                "The definition of `{tool}` changed again: its fingerprint is now \
                 `{current_fingerprint}`; review it and approve that one"
            ))
            .with_status(StatusCode::CONFLICT)
            .with_code("conflict")
            .with_param("fingerprint")),
            Approval::Unknown => Err(GatewayError::new(
                ErrorKind::NotFound,
                format!("No tool `{tool}` of MCP server `{server}` has been seen"),
            )
            .with_code("not_found")),
        }
    })
    .await
}

/// A pin as the admin API shows it.
fn view(p: &ToolPin) -> Value {
    let definition = |text: &str| serde_json::from_str::<Value>(text).unwrap_or(Value::Null);
    let changed = p.changed();
    json!({
        "server": p.server,
        "tool": p.tool,
        "status": if changed { "changed" } else { "pinned" },
        "pinned_fingerprint": p.pinned_fingerprint,
        "current_fingerprint": p.current_fingerprint,
        "first_seen": rfc3339(p.first_seen_ms),
        "last_seen": rfc3339(p.seen_ms),
        "changed_at": p.changed_ms.and_then(rfc3339),
        "approved_at": p.approved_ms.and_then(rfc3339),
        "pinned_definition": definition(&p.pinned_definition),
        "pending_definition": changed.then(|| definition(&p.current_definition)),
    })
}

fn rfc3339(ms: i64) -> Option<String> {
    jiff::Timestamp::from_millisecond(ms)
        .ok()
        .map(|t| t.to_string())
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}
