//! `GET /admin/mcp-servers`: every MCP server behind the gateway with its transport, its
//! state and how many tools it lists (admin only). A failing server is listed with its state;
//! it never hides the others.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use portcullis_core::{Dialect, GatewayError};
use portcullis_mcp::Transport;
use portcullis_mcp::hub::ListKind;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::admin::require_admin;
use crate::respond;
use crate::state::AppState;

/// `GET /admin/mcp-servers`.
pub async fn list(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let id = Uuid::now_v7();
    let result = match require_admin(&state, &headers).await {
        Ok(_) => Ok(servers(&state).await),
        Err(e) => Err(e),
    };
    match result.and_then(|body| {
        serde_json::to_vec(&body)
            .map_err(|e| GatewayError::internal(format!("encoding MCP servers failed: {e}")))
    }) {
        Ok(body) => respond::json(StatusCode::OK, body, &id),
        Err(e) => respond::error(Dialect::OpenAi, &e, &id),
    }
}

async fn servers(state: &AppState) -> Value {
    let Some(mcp) = state.mcp.load_full() else {
        return json!({"data": []});
    };
    let mut data = Vec::new();
    for server in mcp.hub.servers() {
        let (transport, target) = match &server.spec.transport {
            Transport::Stdio(s) => (
                "stdio",
                json!({"command": s.command, "args": s.args,
                "network": s.network, "sandbox": s.sandbox}),
            ),
            Transport::StreamableHttp(h) => ("streamable_http", json!({"url": h.url})),
            Transport::Sse(h) => ("sse", json!({"url": h.url})),
        };
        let status = server.status();
        // Counting tools asks a server that is up; one that is down is not waited on.
        let tools = if status == portcullis_mcp::upstream::Status::Ready {
            server
                .list(ListKind::Tools)
                .await
                .ok()
                .map(|l| l.entries.len())
        } else {
            None
        };
        let mut entry = json!({
            "name": server.name(),
            "transport": transport,
            "status": status.as_str(),
            "tools": tools,
            "timeout_ms": u64::try_from(server.spec.timeout.as_millis()).unwrap_or(u64::MAX),
            "source": "config",
        });
        if let (Some(map), Value::Object(extra)) = (entry.as_object_mut(), target) {
            map.extend(extra);
        }
        data.push(entry);
    }
    json!({"data": data})
}
