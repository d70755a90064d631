//! The pinned MCP tools in the admin API (admin only; see `portcullis_mcp::pins`).
//!
//! | route | does |
//! |---|---|
//! | `GET /admin/mcp-tools` | every tool ever listed, per scope, with `server`, `status` (`pinned`, `changed`) and `credential` (an id, or `shared`) filters |
//! | `POST /admin/mcp-tools/{server}/{tool}/approve` | pins the definition reviewed (`{"fingerprint": …, "credential": …}`) |
//!
//! Tools are pinned per scope (`portcullis_mcp::pins`): `shared` (the server's shared
//! connection) or a `credential`'s instance (a user's or team's own credential, shown by its
//! owner and current id, never its values). A credential's scope is what it is for — its owner,
//! `user:<id>` or `team:<id>` —, not its id, so replacing (rotating) a credential keeps the
//! owner's pins: a definition that changed across the rotation is still withheld. An approval
//! names its scope: `credential` in the body (the id of the owner's current credential),
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
                        "shared" => SHARED.to_owned(),
                        id => credential_scope(&state, id).await?,
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
            .tool_pins(server, scope.as_deref())
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
            (None, None) => SHARED.to_owned(),
            (Some(id), None) if !id.is_empty() && !id.contains(':') => {
                credential_scope(&state, id).await?
            }
            (None, Some(key)) if key.contains(':') => key.to_owned(),
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
            .approve_tool(&server, &scope, &tool, &body.fingerprint, now_ms())
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
                    match (scope.as_str(), body.credential.as_deref()) {
                        (SHARED, _) => " on its shared connection".to_owned(),
                        (_, Some(id)) => format!(" through the instance of credential `{id}`"),
                        (scope, None) => format!(" through the instance of `{scope}`"),
                    }
                ),
            )
            .with_code("not_found")),
        }
    })
    .await
}

/// The scope of credential `id`: its owner's (`user:<id>` or `team:<id>`). An id no credential
/// has is its own scope, which no pin is in.
async fn credential_scope(state: &AppState, id: &str) -> Result<String, GatewayError> {
    let Some(directory) = state.auth.directory() else {
        return Ok(id.to_owned());
    };
    let all = directory
        .store()
        .mcp_credentials()
        .await
        .map_err(|e| store_unavailable("reading MCP credentials", &e))?;
    Ok(all.into_iter().find(|c| c.id == id).map_or_else(
        || id.to_owned(),
        |c| format!("{}:{}", c.owner_kind, c.owner_id),
    ))
}

/// The current credential ids of the (server, owner scope) pairs `pins` are in; an owner
/// whose credential was since deleted has none.
async fn owners(state: &AppState, pins: &[&ToolPin]) -> HashMap<(String, String), String> {
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
                    .map(|c| ((c.server, format!("{}:{}", c.owner_kind, c.owner_id)), c.id)),
            ),
            Err(e) => tracing::warn!(server, "MCP credential owners not read: {e}"),
        }
    }
    owners
}

/// The owner of a per-user or per-team credential's scope (`user:<id>` or `team:<id>`), as
/// `{"user": id}` or `{"team": id}`; `None` for the shared connection's or another instance's.
fn credential_owner(scope: &str) -> Option<Value> {
    let (kind, id) = scope.split_once(':')?;
    matches!(kind, "user" | "team").then(|| json!({ kind: id }))
}

/// Whether `scope` is a per-user or per-team credential's.
fn is_credential(scope: &str) -> bool {
    credential_owner(scope).is_some()
}

/// A pin as the admin API shows it.
fn view(p: &ToolPin, owners: &HashMap<(String, String), String>) -> Value {
    let definition = |text: &str| serde_json::from_str::<Value>(text).unwrap_or(Value::Null);
    let changed = p.changed();
    let (scope, credential, instance) = if p.scope.is_empty() {
        ("shared", Value::Null, Value::Null)
    } else if let Some(owner) = credential_owner(&p.scope) {
        let id = owners.get(&(p.server.clone(), p.scope.clone()));
        ("credential", json!({"id": id, "owner": owner}), Value::Null)
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
