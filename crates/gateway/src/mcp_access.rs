//! `GET/POST /admin/mcp-access` and `DELETE /admin/mcp-access/{id}`: MCP access rules by
//! user, team and role added at run time (admin only). They are stored, bump the tenancy
//! version and so reach every replica's directory within a poll interval (this one before
//! the answer); the MCP endpoints apply them together with the configuration's `mcp.access`
//! (how rules combine: `portcullis_policy::access_rules`).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use portcullis_identity::NewMcpAccess;
use portcullis_store::mcp_access::McpAccessRecord;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::admin::{AdminPath as Path, admin_json, directory, manage_error, parse_body, rfc3339};
use crate::state::AppState;

/// `POST /admin/mcp-access` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRule {
    tools: Vec<String>,
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    teams: Vec<String>,
    #[serde(default)]
    roles: Vec<String>,
    allow: bool,
}

fn list(text: &str) -> Value {
    serde_json::from_str::<Value>(text).unwrap_or_else(|_| json!([]))
}

fn view(r: &McpAccessRecord) -> Value {
    json!({
        "id": r.id,
        "tools": list(&r.tools),
        "users": list(&r.users),
        "teams": list(&r.teams),
        "roles": list(&r.roles),
        "allow": r.effect == "allow",
        "created_at": rfc3339(r.created_ms),
    })
}

/// `POST /admin/mcp-access`.
pub async fn create(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    admin_json(&state, &headers, StatusCode::CREATED, || async {
        let req: CreateRule = parse_body(&headers, body, &[]).await?;
        let record = directory(&state)?
            .create_mcp_access(NewMcpAccess {
                tools: req.tools,
                users: req.users,
                teams: req.teams,
                roles: req.roles,
                allow: req.allow,
            })
            .await
            .map_err(manage_error)?;
        Ok(view(&record))
    })
    .await
}

/// `GET /admin/mcp-access`: the stored rules, and the configuration's for reference.
pub async fn list_rules(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    admin_json(&state, &headers, StatusCode::OK, || async {
        let stored = directory(&state)?
            .list_mcp_access()
            .await
            .map_err(manage_error)?;
        let configured: Vec<Value> = state
            .mcp
            .load_full()
            .map(|m| {
                m.access()
                    .rules()
                    .iter()
                    .map(|r| {
                        let s = r.spec();
                        json!({
                            "tools": s.tools,
                            "users": s.users,
                            "teams": s.teams,
                            "roles": s.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
                            "allow": s.effect == portcullis_policy::Effect::Allow,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(json!({
            "data": stored.iter().map(view).collect::<Vec<_>>(),
            "configured": configured,
        }))
    })
    .await
}

/// `DELETE /admin/mcp-access/{id}`.
pub async fn delete(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    admin_json(&state, &headers, StatusCode::OK, || async {
        directory(&state)?
            .delete_mcp_access(&id)
            .await
            .map_err(manage_error)?;
        Ok(json!({"id": id, "deleted": true}))
    })
    .await
}
