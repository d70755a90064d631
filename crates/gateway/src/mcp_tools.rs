//! The pinned MCP tools in the admin API (admin only; see `portcullis_mcp::pins`).
//!
//! | route | does |
//! |---|---|
//! | `GET /admin/mcp-tools` | every tool ever listed, per scope, with `server`, `status` (`pinned`, `changed`) and `credential` (an id, or `shared`) filters |
//! | `POST /admin/mcp-tools/{server}/{tool}/approve` | pins the definition reviewed (`{"fingerprint": …, "credential": …}`) |
//!
//! Tools are pinned per scope (`portcullis_mcp::pins`): `shared` (the server's shared
//! connection) or a `credential`'s instance (a user's or team's own credential, shown by id and
//! owner, never its values). An approval names its scope: `credential` in the body (an id),
//! absent for the shared one; `instance` names any other instance's identity key as listed.
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
use portcullis_core::{ErrorKind, GatewayError};
use portcullis_store::mcp_pins::{Approval, ToolPin};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::admin::{AdminPath as Path, admin_json, rfc3339, store_unavailable};
use crate::clock::now_ms;
use crate::state::AppState;
use portcullis_store::mcp_pins::SHARED;
use std::collections::HashMap;

/// Largest request body.
const MAX_BODY: usize = 16 * 1024;

/// `GET /admin/mcp-tools`.
pub async fn list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    admin_json(&state, &headers, StatusCode::OK, || async {
        let mut server = None;
        let mut status = None;
        let mut scope = None;
        for (name, value) in &params {
            match name.as_str() {
                "server" => server = Some(value.as_str()),
                "credential" => {
                    scope = Some(match value.as_str() {
                        "shared" => SHARED,
                        id => id,
                    })
                }
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
            .tool_pins(server, scope)
            .await
            .map_err(|e| store_unavailable("reading MCP tool pins", &e))?;
        let pins: Vec<&ToolPin> = pins
            .iter()
            .filter(|p| status.is_none_or(|changed| p.changed() == changed))
            .collect();
        let owners = owners(&state, &pins).await;
        let data: Vec<Value> = pins.iter().map(|p| view(p, &owners)).collect();
        Ok(json!({ "data": data }))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApproveBody {
    fingerprint: String,
    /// The credential whose instance's definition is approved; the shared scope without it.
    #[serde(default)]
    credential: Option<String>,
    /// Another instance's identity key, as `GET /admin/mcp-tools` lists it.
    #[serde(default)]
    instance: Option<String>,
}

/// `POST /admin/mcp-tools/{server}/{tool}/approve`.
pub async fn approve(
    State(state): State<Arc<AppState>>,
    Path((server, tool)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    admin_json(&state, &headers, StatusCode::OK, || async {
        let bytes = crate::body::read(None, body, &headers, MAX_BODY).await?;
        crate::admin::check_json_text(&bytes)?;
        let body: ApproveBody = serde_json::from_slice(&bytes).map_err(|e| {
            GatewayError::invalid_request(format!(
                "The body must be {{\"fingerprint\": \"<the fingerprint reviewed>\", \
                 \"credential\": \"<a credential id, for its instance's definition>\"}}: {e}"
            ))
            .with_param("fingerprint")
        })?;
        let scope = match (body.credential.as_deref(), body.instance.as_deref()) {
            (None, None) => SHARED,
            (Some(id), None) if !id.is_empty() && !id.contains(':') => id,
            (None, Some(key)) if key.contains(':') => key,
            (Some(_), None) => {
                return Err(
                    GatewayError::invalid_request("`credential` must be a credential id")
                        .with_param("credential"),
                );
            }
            (None, Some(_)) => {
                return Err(GatewayError::invalid_request(
                    "`instance` must be an instance's key as listed (a credential is named \
                     with `credential`)",
                )
                .with_param("instance"));
            }
            (Some(_), Some(_)) => {
                return Err(GatewayError::invalid_request(
                    "Give at most one of `credential` and `instance`",
                )
                .with_param("instance"));
            }
        };
        let approval = state
            .stores
            .mcp_pins
            .approve_tool(&server, scope, &tool, &body.fingerprint, now_ms())
            .await
            .map_err(|e| store_unavailable("approving an MCP tool", &e))?;
        match approval {
            Approval::Approved(pin) => {
                state
                    .mcp_pins
                    .pin(&pin.server, &pin.scope, &pin.tool, &pin.pinned_fingerprint);
                tracing::info!(
                    server = %pin.server,
                    scope = %pin.scope,
                    tool = %pin.tool,
                    fingerprint = %pin.pinned_fingerprint,
                    "MCP tool definition approved"
                );
                let owners = owners(&state, &[&pin]).await;
                Ok(view(&pin, &owners))
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
                format!(
                    "No tool `{tool}` of MCP server `{server}` has been seen{}",
                    match scope {
                        SHARED => " on its shared connection".to_owned(),
                        scope => format!(" through the instance of `{scope}`"),
                    }
                ),
            )
            .with_code("not_found")),
        }
    })
    .await
}

/// The owners of the credentials whose scopes `pins` are in (`{"user": id}` or
/// `{"team": id}`), by credential id; a credential since deleted has none.
async fn owners(state: &AppState, pins: &[&ToolPin]) -> HashMap<String, Value> {
    let mut owners = HashMap::new();
    let Some(directory) = state.auth.directory() else {
        return owners;
    };
    let mut servers: Vec<&str> = pins
        .iter()
        .filter(|p| is_credential(&p.scope))
        .map(|p| p.server.as_str())
        .collect();
    servers.sort_unstable();
    servers.dedup();
    for server in servers {
        match directory.list_mcp_credentials(server).await {
            Ok(list) => owners.extend(
                list.into_iter()
                    .map(|c| (c.id, json!({ c.owner_kind: c.owner_id }))),
            ),
            Err(e) => tracing::warn!(server, "MCP credential owners not read: {e}"),
        }
    }
    owners
}

/// Whether `scope` is a per-user or per-team credential's (its id), rather than the shared
/// connection's or another instance's (`<kind>:<identity>`).
fn is_credential(scope: &str) -> bool {
    !scope.is_empty() && !scope.contains(':')
}

/// A pin as the admin API shows it.
fn view(p: &ToolPin, owners: &HashMap<String, Value>) -> Value {
    let definition = |text: &str| serde_json::from_str::<Value>(text).unwrap_or(Value::Null);
    let changed = p.changed();
    let (scope, credential, instance) = if p.scope.is_empty() {
        ("shared", Value::Null, Value::Null)
    } else if is_credential(&p.scope) {
        let owner = owners.get(&p.scope).cloned().unwrap_or(Value::Null);
        (
            "credential",
            json!({"id": p.scope, "owner": owner}),
            Value::Null,
        )
    } else {
        ("instance", Value::Null, json!(p.scope))
    };
    json!({
        "server": p.server,
        "scope": scope,
        "credential": credential,
        "instance": instance,
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
