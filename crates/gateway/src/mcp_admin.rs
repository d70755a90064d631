//! The MCP servers of the admin API (admin only): every server behind the gateway with its
//! transport, its state, how many tools it lists and where it comes from (`source`: `config`
//! for the file, `admin` for this API), and the servers managed at runtime.
//!
//! | route | does |
//! |---|---|
//! | `GET /admin/mcp-servers`, `GET /admin/mcp-servers/{name}` | list, show one |
//! | `POST /admin/mcp-servers` | add a server: the file's `mcp.servers.<name>` entry plus `name` |
//! | `PUT /admin/mcp-servers/{name}` | replace a server added here |
//! | `DELETE /admin/mcp-servers/{name}` | remove a server added here |
//!
//! Entries are validated by the configuration file's own rules (with its paths as `param`),
//! stored with their `env` and `header` values sealed (`mcp_servers`), put in force on this
//! replica before the answer and on the others when they next see the tenancy version move
//! ([`follow`]). Values of `env` and `headers` are never shown: only their names. A failing
//! server is listed with its state; it never hides the others.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use portcullis_core::{ErrorKind, GatewayError};
use portcullis_mcp::config::RawServer;
use portcullis_mcp::hub::{ListKind, Server};
use portcullis_mcp::{ServerSpec, Transport};
use serde_json::{Map, Value, json};

use crate::admin::{AdminPath as Path, admin_json};
use crate::mcp_servers::EncodeError;
use crate::state::AppState;

/// Largest request body.
const MAX_BODY: usize = 64 * 1024;

/// `GET /admin/mcp-servers`.
pub async fn list(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    admin_json(&state, &headers, StatusCode::OK, || async {
        let Some(mcp) = state.mcp.load_full() else {
            return Ok(json!({"data": []}));
        };
        let file = state.mcp_file().await;
        let mut data = Vec::new();
        for server in mcp.hub.servers() {
            data.push(view(server, source(&file, server.name())).await);
        }
        Ok(json!({"data": data}))
    })
    .await
}

/// `GET /admin/mcp-servers/{name}`.
pub async fn get(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    admin_json(&state, &headers, StatusCode::OK, || async {
        shown(&state, &name).await
    })
    .await
}

/// `POST /admin/mcp-servers`: adds a server.
pub async fn create(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    admin_json(&state, &headers, StatusCode::CREATED, || async {
        let bytes = crate::body::read(None, body, &headers, MAX_BODY).await?;
        let (name, entry, raw) = parse_entry(&bytes, None)?;
        let file = state.mcp_file().await;
        check_entry(&name, &raw, &file)?;
        if file.server(&name).is_some() {
            return Err(in_file(&name));
        }
        let record = encode(&state, &name, entry, &raw)?;
        let created = state
            .stores
            .mcp_servers
            .create_mcp_server(&record)
            .await
            .map_err(store_failed)?;
        if !created {
            return Err(conflict(format!(
                "An MCP server named `{name}` exists already"
            )));
        }
        put_in_force(&state).await;
        shown(&state, &name).await
    })
    .await
}

/// `PUT /admin/mcp-servers/{name}`: replaces a server added through this API.
pub async fn replace(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Body,
) -> Response {
    admin_json(&state, &headers, StatusCode::OK, || async {
        let bytes = crate::body::read(None, body, &headers, MAX_BODY).await?;
        let (name, entry, raw) = parse_entry(&bytes, Some(&name))?;
        let file = state.mcp_file().await;
        check_entry(&name, &raw, &file)?;
        if file.server(&name).is_some() {
            return Err(in_file(&name));
        }
        let record = encode(&state, &name, entry, &raw)?;
        let replaced = state
            .stores
            .mcp_servers
            .replace_mcp_server(&record)
            .await
            .map_err(store_failed)?;
        if !replaced {
            return Err(not_found(&name));
        }
        put_in_force(&state).await;
        shown(&state, &name).await
    })
    .await
}

/// `DELETE /admin/mcp-servers/{name}`: removes a server added through this API; its tools
/// vanish and its connection is closed.
pub async fn delete(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    admin_json(&state, &headers, StatusCode::OK, || async {
        let deleted = state
            .stores
            .mcp_servers
            .delete_mcp_server(&name)
            .await
            .map_err(store_failed)?;
        if !deleted {
            return Err(if state.mcp_file().await.server(&name).is_some() {
                in_file(&name)
            } else {
                not_found(&name)
            });
        }
        put_in_force(&state).await;
        Ok(json!({"name": name, "deleted": true}))
    })
    .await
}

/// Follows the tenancy version the directory publishes: whenever it moves (a change made on
/// any replica), the servers added through the admin API are read again and put in force, and
/// users' grants kept in memory are dropped (a disabled user's were deleted with it).
pub fn follow(state: &Arc<AppState>, mut versions: tokio::sync::watch::Receiver<i64>) {
    let state = Arc::downgrade(state);
    tokio::spawn(async move {
        while versions.changed().await.is_ok() {
            let Some(state) = state.upgrade() else {
                return; // The gateway is gone.
            };
            // A user disabled anywhere has no grants left: none is used from memory here.
            state.mcp_grants.clear();
            if let Err(e) = state.refresh_mcp_servers().await {
                tracing::warn!(error = %e, "cannot put the MCP servers added through the admin API in force");
            }
        }
    });
}

/// Puts the stored servers in force on this replica before the change is answered. The change
/// is stored: a failure here is logged, and the next version change tries again.
async fn put_in_force(state: &AppState) {
    if let Err(e) = state.refresh_mcp_servers().await {
        tracing::warn!(error = %e, "cannot put the MCP servers added through the admin API in force");
    }
}

/// Reads a request body: a JSON object with `name` (or the path's name, which a `name` in the
/// body must repeat) and the fields of a file entry. Returns the name, the entry's fields and
/// the entry as written.
fn parse_entry(
    bytes: &[u8],
    path_name: Option<&str>,
) -> Result<(String, Map<String, Value>, RawServer), GatewayError> {
    crate::admin::check_json_text(bytes)?;
    crate::body::check_unambiguous(bytes)?;
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| GatewayError::invalid_request(format!("Invalid JSON body: {e}")))?;
    let Value::Object(mut entry) = value else {
        return Err(GatewayError::invalid_request(
            "Invalid JSON body: expected a JSON object of fields",
        ));
    };
    let name = match (entry.remove("name"), path_name) {
        (Some(Value::String(n)), None) => n,
        (Some(Value::String(n)), Some(p)) if n == p => n,
        (Some(Value::String(_)), Some(p)) => {
            return Err(GatewayError::invalid_request(format!(
                "Invalid `name`: the server in the path is `{p}`; a server cannot be renamed"
            ))
            .with_param("name"));
        }
        (None, Some(p)) => p.to_owned(),
        (None, None) => {
            return Err(
                GatewayError::invalid_request("Missing `name`: the server's name")
                    .with_param("name"),
            );
        }
        (Some(_), _) => {
            return Err(
                GatewayError::invalid_request("Invalid `name`: expected a string")
                    .with_param("name"),
            );
        }
    };
    let raw: RawServer =
        serde_path_to_error::deserialize(Value::Object(entry.clone())).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "." || path.is_empty() {
                GatewayError::invalid_request(format!("Invalid MCP server: {inner}"))
            } else {
                GatewayError::invalid_request(format!("Invalid `{path}`: {inner}")).with_param(path)
            }
        })?;
    Ok((name, entry, raw))
}

/// Validates an entry with the configuration file's rules and its defaults: every problem in
/// the message, the first one's path as `param`. No message quotes an `env` or header value.
fn check_entry(
    name: &str,
    raw: &RawServer,
    file: &portcullis_mcp::McpConfig,
) -> Result<ServerSpec, GatewayError> {
    let spec =
        portcullis_mcp::config::validate_entry(name, raw.clone(), "", file).map_err(|issues| {
            let param = issues
                .iter()
                .map(|i| i.path.clone())
                .find(|p| !p.is_empty());
            let text = issues
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            let e = GatewayError::invalid_request(format!("Invalid MCP server: {text}"));
            match param {
                Some(p) => e.with_param(p),
                None => e,
            }
        })?;
    // A program the gateway starts runs on its host: what an admin credential may start is
    // the file's decision (`mcp.runtime_stdio`).
    if let Some(why) = file.runtime_stdio.refuses(&spec) {
        let param = if raw.sandbox == Some(false) {
            "sandbox"
        } else {
            "command"
        };
        return Err(GatewayError::invalid_request(why)
            .with_status(StatusCode::FORBIDDEN)
            .with_code("stdio_not_allowed")
            .with_param(param));
    }
    Ok(spec)
}

fn encode(
    state: &AppState,
    name: &str,
    entry: Map<String, Value>,
    raw: &RawServer,
) -> Result<portcullis_store::McpServerRecord, GatewayError> {
    let vault = state.auth.directory().and_then(|d| d.vault());
    let now = jiff::Timestamp::now().as_millisecond();
    crate::mcp_servers::encode(name, entry, raw, vault, now).map_err(|e| match e {
        EncodeError::NoVault => GatewayError::invalid_request(e.to_string())
            .with_status(StatusCode::CONFLICT)
            .with_code("vault_not_configured"),
        other => GatewayError::internal(format!("storing an MCP server failed: {other}")),
    })
}

/// The server called `name` as the API shows it, once in force.
async fn shown(state: &AppState, name: &str) -> Result<Value, GatewayError> {
    let server = state
        .mcp
        .load_full()
        .and_then(|mcp| mcp.hub.server(name).cloned())
        .ok_or_else(|| not_found(name))?;
    Ok(view(&server, source(&state.mcp_file().await, name)).await)
}

/// Where the server in force called `name` comes from: the file wins a name both use.
fn source(file: &portcullis_mcp::McpConfig, name: &str) -> &'static str {
    if file.server(name).is_some() {
        "config"
    } else {
        "admin"
    }
}

/// A server as the API shows it: `env` and `headers` by name only.
async fn view(server: &Arc<Server>, source: &str) -> Value {
    let (transport, target) = match &server.spec.transport {
        Transport::Stdio(s) => (
            "stdio",
            json!({"command": s.command, "args": s.args,
            "network": s.network, "sandbox": s.sandbox,
            "env": s.env.keys().collect::<Vec<_>>()}),
        ),
        Transport::StreamableHttp(h) => (
            "streamable_http",
            json!({"url": h.url, "headers": h.headers.keys().collect::<Vec<_>>()}),
        ),
        Transport::Sse(h) => (
            "sse",
            json!({"url": h.url, "headers": h.headers.keys().collect::<Vec<_>>()}),
        ),
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
        "source": source,
    });
    if let (Some(map), Value::Object(extra)) = (entry.as_object_mut(), target) {
        map.extend(extra);
    }
    // An OAuth block without its client secret (only whether one is set).
    if let (Some(map), Some(o)) = (entry.as_object_mut(), &server.spec.oauth) {
        let mode = match o.mode {
            portcullis_mcp::config::OAuthMode::UserGrant => "user_grant",
            portcullis_mcp::config::OAuthMode::TokenExchange => "token_exchange",
        };
        map.insert(
            "oauth".to_owned(),
            json!({"client_id": o.client_id, "client_secret_set": o.client_secret.is_some(),
                "authorization_endpoint": o.authorization_endpoint,
                "token_endpoint": o.token_endpoint, "scopes": o.scopes, "mode": mode,
                "token_endpoint_auth_method": o.token_endpoint_auth.map(|m| m.as_str())}),
        );
    }
    entry
}

fn not_found(name: &str) -> GatewayError {
    GatewayError::new(ErrorKind::NotFound, format!("No MCP server `{name}`")).with_code("not_found")
}

fn conflict(message: String) -> GatewayError {
    GatewayError::invalid_request(message)
        .with_status(StatusCode::CONFLICT)
        .with_code("conflict")
}

fn in_file(name: &str) -> GatewayError {
    conflict(format!(
        "The MCP server `{name}` is configured in the configuration file; change it there"
    ))
}

fn store_failed(e: portcullis_store::StoreError) -> GatewayError {
    tracing::error!(error = %e, "the MCP server store failed");
    GatewayError::new(
        ErrorKind::Unavailable,
        "The MCP server store is unavailable",
    )
}
