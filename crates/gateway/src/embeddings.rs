//! `POST /v1/embeddings`, as the pipeline's stages (`crate::pipeline`):
//!
//! authenticate → decode → resolve → authorize → admit → dispatch → **respond** → settle →
//! record
//!
//! The same rules as a chat request: the key's allowed models, rate limits and budgets (the
//! input priced at the model's price), circuit breakers, retries and failover over the route's
//! targets, the caller's provider keys, and the cost in the log. Embeddings are not cached.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::Response;
use http::StatusCode;
use portcullis_core::GatewayError;
use portcullis_dialects::openai::{decode_embeddings_request, decode_embeddings_usage};
use tracing::Instrument;

use crate::dispatch::Served;
use crate::limits::Demand;
use crate::pipeline::{
    self, Caller, Exchange, Operation, Resolved, ServedBy, Stage, authenticate, authorize,
};
use crate::request_log::body_text;
use crate::respond;
use crate::settle::Settlement;
use crate::state::AppState;
use crate::upstream::read_body;

/// `POST /v1/embeddings`.
pub async fn embeddings(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let mut x = Exchange::begin(&state, Operation::Embeddings, req.headers());
    let span = x.span.clone();
    let result = run(&state, &mut x, req).instrument(span).await;
    x.record(result)
}

/// The embeddings request, stage by stage.
async fn run(state: &AppState, x: &mut Exchange, req: Request) -> Result<Response, GatewayError> {
    let (parts, body) = req.into_parts();
    let caller = authenticate(state, x, &parts.headers, body).await?;
    let request = pipeline::decode(x, &caller, decode_embeddings_request)?;
    let resolved = pipeline::resolve(x, &caller, &request.model)?;
    authorize(&caller, &request.model, &resolved)?;
    let demand = Demand::of_embeddings(&request);
    let admission = pipeline::admit(x, &caller, &resolved, demand).await?;
    let build = |provider: &portcullis_providers::Provider,
                 model: &str,
                 credential: Option<&portcullis_providers::provider::Credential>| {
        provider.embeddings_request(&request, model, credential)
    };
    let mut served = pipeline::dispatch(state, x, &caller, &resolved, demand, &build).await?;
    let settlement = Settlement::new(
        None,
        None,
        false,
        x.dialect,
        served.target.provider.name(),
        &served.target.model,
        caller.pricing(&x.runtime, served.target),
        [admission, served.admission.take()],
    );
    Stage::Respond
        .run_async(respond(x, &caller, &resolved, served, settlement))
        .await
}

/// **respond**: the upstream's embeddings forwarded as they are (OpenAI's format is the
/// embeddings dialect); their usage read for the log, the cost and the limits.
async fn respond(
    x: &mut Exchange,
    caller: &Caller,
    resolved: &Resolved,
    served: Served<'_>,
    settlement: Settlement,
) -> Result<Response, GatewayError> {
    let target = served.target;
    let provider = target.provider.name();
    let body = match resolved.deadline {
        Some(d) => tokio::time::timeout_at(d, read_body(served.response.into_body(), provider))
            .await
            .map_err(|_| GatewayError::total_timeout())??,
        None => read_body(served.response.into_body(), provider).await?,
    };
    let usage = decode_embeddings_usage(&body)?.usage;
    x.log.usage(&usage);
    crate::trace::record_usage(&x.span, &usage);
    settlement.finish_usage(&usage, &mut x.log);
    if caller.log_bodies
        && let Some(r) = x.log.record()
    {
        r.response_body = Some(body_text(&body));
    }
    x.log.finish(200);
    let mut r = respond::json(StatusCode::OK, body, &x.id);
    ServedBy {
        provider,
        model: &target.model,
        attempts: served.attempts,
        cache: "BYPASS",
        provider_key: served.credential_id.as_deref(),
    }
    .write(r.headers_mut(), &x.id);
    Ok(r)
}
