//! `POST /v1/embeddings` and `GET /v1/models`.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use portcullis_core::{Dialect, GatewayError};
use portcullis_dialects::errors::decode_upstream_error;
use portcullis_dialects::openai::{decode_embeddings_request, decode_embeddings_usage};
use serde_json::json;
use uuid::Uuid;

use crate::attempts::{KeyChoice, credential_for};
use crate::chat::{ServedBy, accept, check_model_name, read_upstream, retry_after};
use crate::request_log::{RequestLog, body_text};
use crate::respond;
use crate::state::AppState;

/// `POST /v1/embeddings`.
pub async fn embeddings(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let started = Instant::now();
    let id = Uuid::now_v7();
    let mut log = state.request_log(id, "embeddings", Dialect::OpenAi, started);
    match run_embeddings(&state, id, req, &mut log).await {
        Ok(r) => r,
        Err(e) => {
            log.error(&e);
            log.finish(e.status().as_u16());
            respond::error(Dialect::OpenAi, &e, &id)
        }
    }
}

async fn run_embeddings(
    state: &AppState,
    id: Uuid,
    req: Request,
    log: &mut RequestLog,
) -> Result<Response, GatewayError> {
    let (parts, body) = req.into_parts();
    let accepted = accept(state, &parts.headers, body, log).await?;
    let request = decode_embeddings_request(&accepted.body)?;
    check_model_name(&request.model)?;
    if let Some(r) = log.record() {
        r.requested_model = Some(request.model.clone());
    }
    let resolution = state.registry.resolve(&request.model)?;
    let target = resolution
        .primary()
        .ok_or_else(|| GatewayError::model_not_found(&request.model))?;
    let provider = &target.provider;
    let keys = KeyChoice {
        identity: accepted.identity(),
        alias: accepted.options.provider_key.as_deref(),
    };
    let credential = credential_for(state, provider, &keys)?;
    let credential = credential.as_deref();
    if let Some(r) = log.record() {
        r.route.clone_from(&resolution.route);
        r.provider = Some(Arc::from(provider.name()));
        r.model = Some(target.model.clone());
        r.provider_key_id = credential.map(|c| c.id.clone());
        r.attempts = 1;
    }
    let upstream_req = provider.embeddings_request(&request, &target.model, credential)?;
    let resp = state
        .client
        .send(upstream_req, provider.name(), None)
        .await?;
    let status = resp.status();
    if !status.is_success() {
        let after = retry_after(resp.headers());
        let body = read_upstream(resp.into_body(), provider.name()).await?;
        return Err(decode_upstream_error(
            status.as_u16(),
            after,
            &body,
            provider.name(),
        ));
    }
    let body = read_upstream(resp.into_body(), provider.name()).await?;
    let usage = decode_embeddings_usage(&body)?;
    log.usage(&usage.usage);
    if accepted.log_bodies
        && let Some(r) = log.record()
    {
        r.response_body = Some(body_text(&body));
    }
    log.finish(200);
    let mut r = respond::json(StatusCode::OK, body, &id);
    ServedBy {
        provider: provider.name(),
        model: &target.model,
        attempts: 1,
        cache: "BYPASS",
        provider_key: credential.map(|c| c.id.as_str()),
    }
    .write(r.headers_mut(), &id);
    Ok(r)
}

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
    let models = state.registry.models();
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
