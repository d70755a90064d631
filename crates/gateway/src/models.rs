//! `GET /v1/models`, and the dialect of a request to a dialect-neutral endpoint.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use portcullis_core::Dialect;
use serde_json::json;
use uuid::Uuid;

use crate::respond;
use crate::state::AppState;

/// The dialect of a request to a dialect-neutral endpoint: Anthropic SDKs always send
/// `anthropic-version`.
pub fn dialect_of(headers: &HeaderMap) -> Dialect {
    if headers.contains_key("anthropic-version") {
        Dialect::Anthropic
    } else {
        Dialect::OpenAi
    }
}

/// `GET /v1/models`, in the caller's dialect.
pub async fn list_models(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let id = Uuid::now_v7();
    let dialect = dialect_of(&headers);
    if let Err(e) = state.auth.authenticate(&headers).await {
        return respond::error(dialect, &e, &id);
    }
    let runtime = state.runtime();
    let models = runtime.registry.models();
    let body = match dialect {
        Dialect::OpenAi => json!({
            "object": "list",
            "data": models.iter().map(|m| json!({
                "id": m.id, "object": "model", "created": 0, "owned_by": m.owned_by,
            })).collect::<Vec<_>>(),
        }),
        Dialect::Anthropic => json!({
            "data": models.iter().map(|m| json!({
                "type": "model", "id": m.id, "display_name": m.id,
                "created_at": "1970-01-01T00:00:00Z",
            })).collect::<Vec<_>>(),
            "has_more": false,
            "first_id": models.first().map(|m| m.id.as_str()),
            "last_id": models.last().map(|m| m.id.as_str()),
        }),
    };
    respond::json(StatusCode::OK, body.to_string(), &id)
}
