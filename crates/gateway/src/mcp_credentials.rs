//! `POST/GET /admin/mcp-servers/{name}/credentials` and
//! `DELETE /admin/mcp-servers/{name}/credentials/{id}`: a user's or team's own credentials for
//! one MCP server (admin only) — headers for an HTTP server, environment variables for a
//! stdio server — stored sealed under `PORTCULLIS_SECRET_KEY` (409 `vault_not_configured`
//! without it), never shown again (only their names), and put in force on every replica as
//! the tenancy version moves. A caller's calls to the server then go through an instance of
//! its own carrying the credential (`portcullis_mcp::credentials`): the user's own credential
//! wins over their team's; without either, the server's configured headers or environment
//! serve them. Its instance's tools are pinned under what the credential is for — its owner,
//! `user:<id>` or `team:<id>` —, so replacing (rotating) an owner's credential keeps their
//! pins, and a definition changed across the rotation is still withheld; deleting it takes
//! the owner's pins with it.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use portcullis_core::{ErrorKind, GatewayError};
use portcullis_identity::mcp_credentials::{McpCredentialOwner, McpSecretKind, NewMcpCredential};
use portcullis_mcp::Transport;
use portcullis_store::mcp_access::McpCredentialRecord;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::admin::{AdminPath as Path, admin_json, directory, manage_error, parse_body};
use crate::state::AppState;

/// `owner` of a credential.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
enum OwnerBody {
    User(String),
    Team(String),
}

/// `POST /admin/mcp-servers/{name}/credentials` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PutCredential {
    owner: OwnerBody,
    #[serde(default)]
    headers: Option<BTreeMap<String, String>>,
    #[serde(default)]
    env: Option<BTreeMap<String, String>>,
}

fn no_server(name: &str) -> GatewayError {
    GatewayError::new(ErrorKind::NotFound, format!("no MCP server `{name}`")).with_code("not_found")
}

/// The server's transport wants headers (`true`) or environment (`false`).
fn wants_headers(state: &AppState, name: &str) -> Result<bool, GatewayError> {
    let endpoint = state.mcp.load_full().ok_or_else(|| no_server(name))?;
    let server = endpoint.hub.server(name).ok_or_else(|| no_server(name))?;
    Ok(!matches!(server.spec.transport, Transport::Stdio(_)))
}

fn check_values(
    kind: McpSecretKind,
    values: &BTreeMap<String, String>,
) -> Result<(), GatewayError> {
    let field = kind.as_str();
    if values.is_empty() {
        return Err(GatewayError::invalid_request(format!(
            "`{field}` must name at least one value"
        ))
        .with_param(field));
    }
    for (name, value) in values {
        let bad = |why: &str| {
            // The message names the key, never the value.
            Err(
                GatewayError::invalid_request(format!("Invalid `{field}.{name}`: {why}"))
                    .with_param(format!("{field}.{name}")),
            )
        };
        match kind {
            McpSecretKind::Headers => {
                if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    return bad("not a valid header name");
                }
                if http::HeaderValue::from_str(value).is_err() {
                    return bad("the value is not a valid header value");
                }
            }
            McpSecretKind::Env => {
                if name.is_empty() || name.contains(['=', '\0']) {
                    return bad("not a valid variable name");
                }
                if value.contains('\0') {
                    return bad("the value contains NUL");
                }
            }
        }
        if value.is_empty() {
            return bad("the value must not be empty");
        }
    }
    Ok(())
}

fn view(state: &AppState, c: &McpCredentialRecord) -> Value {
    let running = state
        .mcp
        .load_full()
        .is_some_and(|m| m.credentialed.is_running(&c.server, &c.id));
    json!({
        "id": c.id,
        "server": c.server,
        "owner": {c.owner_kind.clone(): c.owner_id},
        "kind": c.kind,
        "names": serde_json::from_str::<Value>(&c.names).unwrap_or_else(|_| json!([])),
        "created_at": jiff::Timestamp::from_millisecond(c.created_ms).ok().map(|t| t.to_string()),
        "running": running,
    })
}

/// `POST /admin/mcp-servers/{name}/credentials`: stores (or replaces) the owner's credential.
pub async fn put(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Body,
) -> Response {
    admin_json(&state, &headers, StatusCode::CREATED, || async {
        let req: PutCredential = parse_body(&headers, body, &[]).await?;
        let wants_headers = wants_headers(&state, &name)?;
        let (kind, values) = match (req.headers, req.env) {
            (Some(h), None) => (McpSecretKind::Headers, h),
            (None, Some(e)) => (McpSecretKind::Env, e),
            _ => {
                return Err(GatewayError::invalid_request(
                    "Give exactly one of `headers` (HTTP servers) or `env` (stdio servers)",
                ));
            }
        };
        if wants_headers != (kind == McpSecretKind::Headers) {
            let (want, field) = if wants_headers {
                ("an HTTP server: give `headers`", "env")
            } else {
                ("a stdio server: give `env`", "headers")
            };
            return Err(
                GatewayError::invalid_request(format!("MCP server `{name}` is {want}"))
                    .with_param(field),
            );
        }
        check_values(kind, &values)?;
        let owner = match req.owner {
            OwnerBody::User(u) => McpCredentialOwner::User(u),
            OwnerBody::Team(t) => McpCredentialOwner::Team(t),
        };
        // A credential replacing the owner's keeps their pins: its scope is the owner's.
        let record = directory(&state)?
            .put_mcp_credential(NewMcpCredential {
                server: name,
                owner,
                kind,
                values,
            })
            .await
            .map_err(manage_error)?;
        Ok(view(&state, &record))
    })
    .await
}

/// `GET /admin/mcp-servers/{name}/credentials`: names and owners, never values.
pub async fn list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    admin_json(&state, &headers, StatusCode::OK, || async {
        wants_headers(&state, &name)?;
        let list = directory(&state)?
            .list_mcp_credentials(&name)
            .await
            .map_err(manage_error)?;
        Ok(json!({"data": list.iter().map(|c| view(&state, c)).collect::<Vec<_>>()}))
    })
    .await
}

/// `DELETE /admin/mcp-servers/{name}/credentials/{id}`.
pub async fn delete(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((name, id)): Path<(String, String)>,
) -> Response {
    admin_json(&state, &headers, StatusCode::OK, || async {
        let dir = directory(&state)?;
        let owner = dir
            .list_mcp_credentials(&name)
            .await
            .map_err(manage_error)?
            .into_iter()
            .find(|c| c.id == id)
            .map(|c| format!("{}:{}", c.owner_kind, c.owner_id));
        dir.delete_mcp_credential(&name, &id)
            .await
            .map_err(manage_error)?;
        if let Some(scope) = owner {
            forget_pins(&state, &name, &scope).await;
        }
        Ok(json!({"id": id, "deleted": true}))
    })
    .await
}

/// Drops the tool pins of a deleted credential's owner `scope` for `server`
/// (`portcullis_mcp::pins`): no instance lists in that scope until the owner has a credential
/// again. A failure leaves them, shown without a credential id.
async fn forget_pins(state: &AppState, server: &str, scope: &str) {
    if let Err(e) = state.stores.mcp_pins.forget_tool_pins(server, scope).await {
        tracing::warn!(
            server,
            "MCP tool pins of a removed credential not dropped: {e}"
        );
    }
}
