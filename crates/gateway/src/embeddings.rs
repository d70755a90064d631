//! `POST /v1/embeddings`, as the pipeline's stages (`crate::pipeline`):
//!
//! authenticate → decode → resolve → authorize → admit → dispatch → **respond** → settle →
//! record
//!
//! The same rules as a chat request: the key's allowed models, rate limits and budgets (the
//! input priced at the model's price), circuit breakers, retries and failover over the route's
//! targets, the caller's provider keys, and the cost in the log. Embeddings are not cached.
//!
//! [`embed_for_cache`] runs the same stages for the semantic cache of a chat request whose
//! route embeds with a model: on the caller's behalf, as a request of its own in the log.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use http::StatusCode;
use portcullis_core::{EmbeddingInput, EmbeddingsRequest, ErrorKind, Extras, GatewayError};
use portcullis_dialects::openai::{decode_embeddings_request, decode_embeddings_usage};
use tracing::Instrument;

use crate::dispatch::Served;
use crate::limits::Demand;
use crate::pipeline::{
    self, Caller, Exchange, Operation, Resolved, ServedBy, Stage, authenticate, authorize,
};
use crate::request_log::body_text;
use crate::respond;
use crate::semantic::first_embedding;
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
        .run_async(respond(x, &caller, &request, &resolved, served, settlement))
        .await
}

/// The embedding of `text` by `model` for the semantic cache of the chat request `parent`:
/// resolve → admit → dispatch → settle → record on the caller's behalf — its limits and
/// budgets, its provider keys, breakers, retries and failover — logged as an embeddings
/// request of its own (metadata `purpose: semantic_cache`) with its cost. The model is the
/// operator's choice for the route, so the caller's model allow-list does not apply to it.
pub async fn embed_for_cache(
    state: &AppState,
    parent: &Exchange,
    caller: &Caller,
    model: &str,
    text: &str,
) -> Result<Vec<f32>, GatewayError> {
    let mut x = parent.nested(state, Operation::Embeddings, caller, "semantic_cache");
    let span = x.span.clone();
    let result = embed(state, &mut x, caller, model, text)
        .instrument(span)
        .await;
    x.record_nested(result)
}

async fn embed(
    state: &AppState,
    x: &mut Exchange,
    caller: &Caller,
    model: &str,
    text: &str,
) -> Result<Vec<f32>, GatewayError> {
    let request = EmbeddingsRequest {
        model: model.to_owned(),
        input: EmbeddingInput::Text(text.to_owned()),
        dimensions: None,
        encoding_format: None,
        user: None,
        extras: Extras::default(),
    };
    if let Some(r) = x.log.record() {
        r.requested_model = Some(request.model.clone());
    }
    crate::trace::record_request_model(&x.span, x.operation.gen_ai_name(), model);
    let resolved = pipeline::resolve(x, caller, model)?;
    let demand = Demand::of_embeddings(&request);
    let admission = pipeline::admit(x, caller, &resolved, demand).await?;
    let build = |provider: &portcullis_providers::Provider,
                 model: &str,
                 credential: Option<&portcullis_providers::provider::Credential>| {
        provider.embeddings_request(&request, model, credential)
    };
    let mut served = pipeline::dispatch(state, x, caller, &resolved, demand, &build).await?;
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
    let (body, _) = Stage::Respond
        .run_async(read_and_settle(x, &request, &resolved, served, settlement))
        .await?;
    let vector = first_embedding(&body).map_err(|e| {
        GatewayError::new(
            ErrorKind::Upstream,
            "The embeddings model answered something unusable",
        )
        .with_detail(e.to_string())
    })?;
    x.log.finish(200);
    Ok(vector)
}

/// The upstream's embeddings body, read within the request's deadline, with its usage in the
/// log, the cost and the limits.
async fn read_and_settle<'t>(
    x: &mut Exchange,
    request: &EmbeddingsRequest,
    resolved: &Resolved,
    served: Served<'t>,
    settlement: Settlement,
) -> Result<(Bytes, ServedMeta<'t>), GatewayError> {
    let target = served.target;
    let provider = target.provider.name();
    let body = match resolved.deadline {
        Some(d) => tokio::time::timeout_at(d, read_body(served.response.into_body(), provider))
            .await
            .map_err(|_| GatewayError::total_timeout())??,
        None => read_body(served.response.into_body(), provider).await?,
    };
    // In OpenAI's format, the embeddings dialect, whatever the upstream speaks.
    let body = target
        .provider
        .embeddings_response(request, body, &target.model)?;
    let usage = decode_embeddings_usage(&body)?.usage;
    x.log.usage(&usage);
    crate::trace::record_usage(&x.span, &usage);
    settlement.finish_usage(&usage, &mut x.log);
    Ok((
        body,
        ServedMeta {
            target,
            attempts: served.attempts,
            credential_id: served.credential_id,
        },
    ))
}

/// What served a request, once its body is read.
struct ServedMeta<'t> {
    target: &'t portcullis_providers::Target,
    attempts: u32,
    credential_id: Option<String>,
}

/// **respond**: the upstream's embeddings in OpenAI's format (the embeddings dialect: as they
/// came from an OpenAI-compatible upstream, translated from any other); their usage read for
/// the log, the cost and the limits.
async fn respond(
    x: &mut Exchange,
    caller: &Caller,
    request: &EmbeddingsRequest,
    resolved: &Resolved,
    served: Served<'_>,
    settlement: Settlement,
) -> Result<Response, GatewayError> {
    let (body, served) = read_and_settle(x, request, resolved, served, settlement).await?;
    let target = served.target;
    let provider = target.provider.name();
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
