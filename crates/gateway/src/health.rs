//! `GET /healthz` (the process is alive), `GET /readyz` (it can serve: the database answers
//! and it is not shutting down) and `GET /metrics` (Prometheus text format).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, StatusCode};
use uuid::Uuid;

use crate::respond;
use crate::state::AppState;

/// `GET /healthz`.
pub async fn healthz() -> Response {
    respond::json(StatusCode::OK, r#"{"status":"ok"}"#, &Uuid::now_v7())
}

/// `GET /readyz`.
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let id = Uuid::now_v7();
    if state.is_draining() {
        return respond::json(
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"status":"draining"}"#,
            &id,
        );
    }
    match tokio::time::timeout(Duration::from_secs(2), state.stores.logs.ping()).await {
        Ok(Ok(())) => respond::json(StatusCode::OK, r#"{"status":"ready"}"#, &id),
        _ => respond::json(
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"status":"database unavailable"}"#,
            &id,
        ),
    }
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    if let Some(mcp) = state.mcp.load_full() {
        for server in mcp.hub.servers() {
            let up = server.status() == portcullis_mcp::upstream::Status::Ready;
            state.metrics.set_mcp_server_up(server.name(), up);
        }
    }
    let mut r = Response::new(Body::from(state.metrics.render()));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    r
}
