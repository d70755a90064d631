//! `GET /admin/circuit-breakers`: the state of every target's circuit breaker (admin only).
//!
//! Only targets that have failed since the gateway started are listed; a target not listed
//! is closed with no failures counted.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use portcullis_core::{Dialect, GatewayError};
use serde_json::json;
use uuid::Uuid;

use crate::admin::require_admin;
use crate::respond;
use crate::state::AppState;

/// `GET /admin/circuit-breakers`.
pub async fn list(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let id = Uuid::now_v7();
    let result = require_admin(&state, &headers).await.and_then(|_| {
        let settings = state.dispatcher.breakers.settings();
        let data: Vec<_> = state
            .dispatcher
            .breakers
            .snapshot()
            .into_iter()
            .map(|b| {
                json!({
                    "target": &*b.target,
                    "state": b.state.as_str(),
                    "consecutive_failures": b.consecutive_failures,
                    "retry_in_ms": b.retry_in.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                    "times_opened": b.times_opened,
                    "latency_ewma_ms": state.dispatcher.latency.average_ms(&b.target),
                })
            })
            .collect();
        serde_json::to_vec(&json!({
            "failure_threshold": settings.failure_threshold,
            "open_for_ms": u64::try_from(settings.open_for.as_millis()).unwrap_or(u64::MAX),
            "data": data,
        }))
        .map_err(|e| GatewayError::internal(format!("encoding breakers failed: {e}")))
    });
    match result {
        Ok(body) => respond::json(StatusCode::OK, body, &id),
        Err(e) => respond::error(Dialect::OpenAi, &e, &id),
    }
}
