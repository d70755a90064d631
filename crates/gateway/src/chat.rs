//! The chat turn: `POST /v1/chat/completions` (OpenAI dialect) and `POST /v1/messages`
//! (Anthropic dialect), as the pipeline's stages (`crate::pipeline`):
//!
//! authenticate → decode → resolve → authorize → **guard** → admit → **cache** → dispatch →
//! **respond** → settle → record
//!
//! **guard** (`crate::guardrails`): the tool policies — the turn's trust from its messages, the
//! tools it may not be offered removed from the request, its audit record begun; the calls of
//! the answer (cached or not, streamed or not) are then judged by the deny-list and the
//! policies together; the results of `output: quarantine` tools are replaced by the quarantine
//! model's schema-checked answers (`crate::quarantine`) before the admit stage, so neither the
//! upstream nor a cache key ever sees their raw text. The two stages of its own: **cache** (exact, then semantic; a hit answers now, a miss makes
//! the request the leader its twins wait on) and **respond** (a complete response forwarded
//! byte-for-byte when the dialects match, re-encoded otherwise; a stream through the
//! [`SseRelay`]). Settle runs when the answer is complete — at the end of the stream for
//! streams — and record when the exchange ends.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, StatusCode};
use portcullis_audit::{AuditPath, AuditRecord};
use portcullis_cache::CachedResponse;
use portcullis_core::{ChatRequest, ChatResponse, GatewayError};
use portcullis_dialects::{
    StreamEncoder, decode_request, decode_response, encode_response, events_from_response,
};
use portcullis_providers::provider::ForwardedHeaders;
use tracing::Instrument;

use crate::approvals::Approved;
use crate::dispatch::Served;
use crate::guardrails::{self, Guard};
use crate::headers::SEMANTIC_SCORE;
use crate::limits::Demand;
use crate::pipeline::{
    self, Caller, Exchange, Operation, Resolved, ServedBy, Stage, authenticate, authorize,
};
use crate::relay::{RelaySettings, Source, SseRelay};
use crate::request_log::{AuditCalls, body_text};
use crate::respond;
use crate::response_cache::{CacheFill, CacheTarget, Lookup};
use crate::semantic::{SemanticFill, SemanticLookup};
use crate::settle::Settlement;
use crate::state::AppState;
use crate::tool_calls::{CallFilter, CallJudge, complete_body, denied_tools};
use crate::upstream::read_body;

/// `POST /v1/chat/completions`.
pub async fn chat_completions(State(state): State<Arc<AppState>>, req: Request) -> Response {
    serve(state, Operation::ChatCompletions, req).await
}

/// `POST /v1/messages`.
pub async fn messages(State(state): State<Arc<AppState>>, req: Request) -> Response {
    serve(state, Operation::Messages, req).await
}

async fn serve(state: Arc<AppState>, operation: Operation, req: Request) -> Response {
    let mut x = Exchange::begin(&state, operation, req.headers());
    let span = x.span.clone();
    let result = run(&state, &mut x, req).instrument(span).await;
    x.record(result)
}

/// The chat turn, stage by stage.
async fn run(state: &AppState, x: &mut Exchange, req: Request) -> Result<Response, GatewayError> {
    let (parts, body) = req.into_parts();
    let caller = authenticate(state, x, &parts.headers, body).await?;
    let dialect = x.dialect;
    let request = pipeline::decode(x, &caller, |body| decode_request(dialect, body))?;
    turn(state, x, &caller, &parts.headers, request, None).await
}

/// Writes a chat turn's answer for an endpoint whose answers are not in a dialect's own shape
/// (the Responses API, `crate::responses`): such an answer is never the upstream's bytes, it is
/// always written from the canonical answer (what the tool-call judges left of it), and a cache
/// entry stays in the caller's dialect for every endpoint to share.
pub trait Presenter: Send {
    /// The body of a complete answer.
    fn complete(self: Box<Self>, answer: &ChatResponse) -> Bytes;
    /// The encoder of a streamed answer.
    fn stream(self: Box<Self>) -> Box<dyn StreamEncoder>;
}

/// The chat turn from its decoded `request` on: resolve → authorize → guard → admit → cache →
/// dispatch → respond. `headers` are the caller's; `presenter` writes the answer when the
/// endpoint has its own shape for it (`None`: the caller's dialect).
pub async fn turn(
    state: &AppState,
    x: &mut Exchange,
    caller: &Caller,
    headers: &HeaderMap,
    mut request: ChatRequest,
    mut presenter: Option<Box<dyn Presenter>>,
) -> Result<Response, GatewayError> {
    crate::trace::record_chat_request(&x.span, x.operation.gen_ai_name(), &request);
    let resolved = pipeline::resolve(x, caller, &request.model)?;
    authorize(caller, &request.model, &resolved)?;
    let mut judging = guard(state, x, caller, &mut request).await;
    let demand = Demand::of_chat(&request);
    let admission = pipeline::admit(x, caller, &resolved, demand).await?;
    let looked_up = cache(
        state,
        x,
        caller,
        &request,
        &resolved,
        &mut judging,
        &mut presenter,
    );
    let fills = match looked_up.await? {
        Cached::Answer(resp) => return Ok(resp),
        Cached::Miss(fills) => fills,
    };
    let forwarded = ForwardedHeaders {
        anthropic_beta: headers.get("anthropic-beta"),
    };
    let build = |provider: &portcullis_providers::Provider,
                 model: &str,
                 credential: Option<&portcullis_providers::provider::Credential>| {
        provider.chat_request(&request, model, credential, forwarded)
    };
    let mut served = pipeline::dispatch(state, x, caller, &resolved, demand, &build).await?;
    let settlement = Settlement::new(
        fills.exact,
        fills.semantic,
        request.stream,
        x.dialect,
        served.target.provider.name(),
        &served.target.model,
        caller.pricing(&x.runtime, served.target),
        [admission, served.admission.take()],
    );
    Stage::Respond
        .run_async(respond(
            state,
            x,
            caller,
            &request,
            &resolved,
            served,
            settlement,
            fills.status,
            judging,
            presenter,
        ))
        .await
}

/// How the answer's tool calls are to be judged, once the guard stage ran.
struct Judging {
    guard: Guard,
    calls: Option<AuditCalls>,
    approved: Vec<Approved>,
}

/// **guard**: the tool policies in force applied to `request` (see `crate::guardrails`); the
/// turn's audit record begun when the audit is on; the results of quarantined tools replaced
/// by the quarantine model's answers (`crate::quarantine`); approvals already given for this
/// session looked up when a call could be held. `None` when the request involves no tools.
async fn guard(
    state: &AppState,
    x: &mut Exchange,
    caller: &Caller,
    request: &mut ChatRequest,
) -> Option<Judging> {
    let policies = state.tool_policies();
    let mut record = state.audit.is_some().then(|| {
        AuditRecord::new(
            uuid::Uuid::now_v7().to_string(),
            crate::clock::now_ms(),
            AuditPath::Llm,
        )
    });
    let mut guard = Stage::Guard.run(|| {
        guardrails::guard(
            &policies,
            request,
            caller.identity(),
            caller.options.session_id.as_deref(),
            record.as_mut(),
        )
    })?;
    if let Some(record) = record {
        x.log.set_audit(record);
    }
    let quarantined = guard.take_quarantined();
    if !quarantined.is_empty() {
        let quarantiner = x.runtime.quarantine.clone();
        crate::quarantine::apply(
            state,
            x,
            caller,
            quarantiner.as_deref(),
            &policies,
            request,
            &quarantined,
        )
        .instrument(Stage::Guard.span())
        .await;
    }
    let approved = if guard.may_hold() {
        state
            .approvals
            .approved(guard.session(), &caller.identity().subject)
            .await
    } else {
        Vec::new()
    };
    Some(Judging {
        guard,
        calls: x.log.audit_calls(),
        approved,
    })
}

/// The caches a missed request fills when its answer is complete.
struct CacheFills {
    exact: Option<CacheFill>,
    semantic: Option<SemanticFill>,
    status: &'static str,
}

/// What the cache stage decided.
// Returned once per request and matched at once: boxing either side would cost an allocation
// on every request for nothing.
#[allow(clippy::large_enum_variant)]
enum Cached {
    /// A cached answer: respond with it now.
    Answer(Response),
    /// Go on; fill these with the answer.
    Miss(CacheFills),
}

/// **cache**: the exact cache, then the semantic cache. A hit answers now (in the caller's
/// dialect, streamed or not); a miss makes this request the leader for its key, and identical
/// requests arriving meanwhile wait for its answer.
async fn cache(
    state: &AppState,
    x: &mut Exchange,
    caller: &Caller,
    request: &ChatRequest,
    resolved: &Resolved,
    judging: &mut Option<Judging>,
    presenter: &mut Option<Box<dyn Presenter>>,
) -> Result<Cached, GatewayError> {
    let span = Stage::Cache.span();
    let tenant = caller.tenant_scope();
    let cache_target = resolved
        .route()
        .or_else(|| resolved.primary().map(|t| &*t.key))
        .unwrap_or(&request.model);
    let lookup = match &x.runtime.cache {
        Some(cache) => {
            let wait = resolved
                .policy
                .timeouts
                .total
                .or(resolved.policy.timeouts.first_byte)
                .unwrap_or(COALESCE_WAIT);
            cache
                .lookup(
                    CacheTarget {
                        route: resolved.route(),
                        scope: &tenant,
                        target: cache_target,
                    },
                    request,
                    &caller.options,
                    caller.principal.controls.as_ref(),
                    wait,
                )
                .instrument(span.clone())
                .await
        }
        None => Lookup::Bypass,
    };
    let mut status = match &lookup {
        Lookup::Hit(_) => "HIT",
        Lookup::Miss(_) => "MISS",
        Lookup::Bypass => "BYPASS",
    };
    let exact = match lookup {
        Lookup::Hit(entry) => {
            if let Some(r) = x.log.record() {
                r.cache_status = Some("HIT");
            }
            let judge = judge_for(state, caller, resolved, judging.take());
            let presenter = presenter.take();
            return answer_from_cache(entry, x, request, caller.log_bodies, None, judge, presenter)
                .map(Cached::Answer);
        }
        Lookup::Miss(fill) => Some(fill),
        Lookup::Bypass => None,
    };
    let query = match &x.runtime.semantic {
        Some(layer) if !caller.options.skip_cache => {
            layer.query(resolved.route(), &tenant, cache_target, request)
        }
        _ => None,
    };
    let semantic = match query {
        None => SemanticLookup::Bypass,
        Some(query) => match query.embeddings_model() {
            None => query.lookup().instrument(span).await,
            // An embeddings model is called on the caller's behalf, through its own pipeline.
            Some(model) => {
                let embedded =
                    crate::embeddings::embed_for_cache(state, x, caller, model, query.text())
                        .instrument(span)
                        .await;
                match embedded {
                    Ok(vector) => query.lookup_vector(vector),
                    Err(e) => {
                        // A failed or refused embedding costs a cache miss, not the request.
                        tracing::warn!("semantic cache lookup skipped: {}", e.operator_text());
                        SemanticLookup::Bypass
                    }
                }
            }
        },
    };
    let semantic = match semantic {
        SemanticLookup::Hit(hit) => {
            if let Ok(entry) = CachedResponse::decode_shared(&hit.answer) {
                if let Some(r) = x.log.record() {
                    r.cache_status = Some("HIT");
                }
                // Requests waiting on the exact key get this answer too.
                if let Some(fill) = exact {
                    fill.fill(hit.answer.clone());
                }
                let judge = judge_for(state, caller, resolved, judging.take());
                let score = Some(hit.score);
                let presenter = presenter.take();
                return answer_from_cache(
                    entry,
                    x,
                    request,
                    caller.log_bodies,
                    score,
                    judge,
                    presenter,
                )
                .map(Cached::Answer);
            }
            None
        }
        SemanticLookup::Miss(f) => {
            status = "MISS";
            Some(f)
        }
        SemanticLookup::Bypass => None,
    };
    if let Some(r) = x.log.record() {
        r.cache_status = Some(status);
    }
    Ok(Cached::Miss(CacheFills {
        exact,
        semantic,
        status,
    }))
}

/// **respond**: the upstream's answer in the caller's dialect. A stream goes through the
/// relay, which settles and records when it ends; a complete answer is settled and recorded
/// here.
#[allow(clippy::too_many_arguments)]
async fn respond(
    state: &AppState,
    x: &mut Exchange,
    caller: &Caller,
    request: &ChatRequest,
    resolved: &Resolved,
    served: Served<'_>,
    settlement: Settlement,
    cache_status: &'static str,
    judging: Option<Judging>,
    presenter: Option<Box<dyn Presenter>>,
) -> Result<Response, GatewayError> {
    let target = served.target;
    let provider = &target.provider;
    let served_by = ServedBy {
        provider: provider.name(),
        model: &target.model,
        attempts: served.attempts,
        cache: cache_status,
        provider_key: served.credential_id.as_deref(),
    };
    let resp = served.response;
    let mut judge = judge_for(state, caller, resolved, judging);
    // A stream: server-sent events, or AWS's binary event stream (Bedrock).
    let is_sse = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.starts_with("text/event-stream")
                || v.starts_with(portcullis_dialects::aws_eventstream::CONTENT_TYPE)
        });

    if request.stream {
        let settings = RelaySettings {
            client_dialect: x.dialect,
            upstream_dialect: provider.passthrough_dialect(&target.model),
            client_wants_usage: request.stream_include_usage,
            capture_body: caller.log_bodies,
            started: x.started,
            deadline: resolved.deadline,
        };
        let source = if is_sse {
            Source::Upstream {
                body: resp.into_body(),
                decoder: provider.stream_decoder(&target.model),
            }
        } else {
            // The upstream ignored `stream` and answered in one piece: stream it anyway.
            let body = read_body(resp.into_body(), provider.name()).await?;
            let parsed = provider.decode_chat_response(&target.model, &body)?;
            Source::Events(events_from_response(&parsed).into_iter())
        };
        let mut relay = SseRelay::new(source, settings, x.log.take(), Some(settlement))
            .with_span(x.span.clone());
        if let Some(presenter) = presenter {
            relay = relay.with_encoder(presenter.stream());
        }
        if let Some(framer) = provider.stream_framer() {
            relay = relay.with_framer(framer);
        }
        if let Some(judge) = judge {
            relay = relay.with_filter(Box::new(CallFilter::new(judge)));
        }
        let mut r = Response::new(Body::new(relay));
        let h = r.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        served_by.write(h, &x.id);
        return Ok(r);
    }

    let body = match resolved.deadline {
        Some(d) => tokio::time::timeout_at(d, read_body(resp.into_body(), provider.name()))
            .await
            .map_err(|_| GatewayError::total_timeout())??,
        None => read_body(resp.into_body(), provider.name()).await?,
    };
    let mut parsed = provider.decode_chat_response(&target.model, &body)?;
    x.log.usage(&parsed.usage);
    crate::trace::record_chat_response(&x.span, &parsed);
    if parsed.created == 0 {
        parsed.created = crate::relay::unix_now();
    }
    settlement.finish_response(
        provider.passthrough_dialect(&target.model),
        &body,
        &parsed,
        &mut x.log,
    );
    let (out, _) = complete_body(
        x.dialect,
        provider.passthrough_dialect(&target.model),
        body,
        &mut parsed,
        judge.as_mut().map(|j| &mut **j as &mut dyn CallJudge),
    );
    let out = match presenter {
        Some(presenter) => presenter.complete(&parsed),
        None => out,
    };
    if caller.log_bodies
        && let Some(r) = x.log.record()
    {
        r.response_body = Some(body_text(&out));
    }
    x.log.finish(200);
    let mut r = respond::json(StatusCode::OK, out, &x.id);
    served_by.write(r.headers_mut(), &x.id);
    Ok(r)
}

/// Longest a request waits for an identical one in flight when no timeout bounds it.
const COALESCE_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// Answers from a cached entry, in the caller's dialect, streamed when asked; `score` is the
/// similarity of a semantic hit.
fn answer_from_cache(
    entry: CachedResponse,
    x: &mut Exchange,
    request: &ChatRequest,
    log_bodies: bool,
    score: Option<f32>,
    judge: Option<Box<dyn CallJudge>>,
    presenter: Option<Box<dyn Presenter>>,
) -> Result<Response, GatewayError> {
    let (dialect, started, id) = (x.dialect, x.started, &x.id);
    let log = &mut x.log;
    if let Some(r) = log.record() {
        r.provider = Some(Arc::from(entry.provider.as_str()));
        r.model = Some(Arc::from(entry.model.as_str()));
        r.attempts = 0;
        r.cost_usd = Some(0.0);
    }
    let served_by = ServedBy {
        provider: &entry.provider,
        model: &entry.model,
        attempts: 0,
        cache: "HIT",
        provider_key: None,
    };
    if request.stream {
        let parsed = decode_response(entry.dialect, &entry.body)?;
        let settings = RelaySettings {
            client_dialect: dialect,
            upstream_dialect: Some(entry.dialect),
            client_wants_usage: request.stream_include_usage,
            capture_body: log_bodies,
            started,
            deadline: None,
        };
        let source = Source::Events(events_from_response(&parsed).into_iter());
        let mut relay = SseRelay::new(source, settings, log.take(), None);
        if let Some(presenter) = presenter {
            relay = relay.with_encoder(presenter.stream());
        }
        if let Some(judge) = judge {
            relay = relay.with_filter(Box::new(CallFilter::new(judge)));
        }
        let mut r = Response::new(Body::new(relay));
        let h = r.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        served_by.write(h, id);
        write_score(h, score);
        return Ok(r);
    }
    log.usage(&entry.usage);
    let out = match (presenter, judge) {
        // An answer in the endpoint's own shape is written from what the judges leave of it.
        (Some(presenter), judge) => {
            let mut parsed = decode_response(entry.dialect, &entry.body)?;
            if let Some(mut judge) = judge {
                complete_body(
                    dialect,
                    Some(entry.dialect),
                    entry.body,
                    &mut parsed,
                    Some(&mut *judge),
                );
            }
            presenter.complete(&parsed)
        }
        (None, judge) => cached_body(dialect, entry.dialect, entry.body, judge)?,
    };
    if log_bodies && let Some(r) = log.record() {
        r.response_body = Some(body_text(&out));
    }
    log.finish(200);
    let mut r = respond::json(StatusCode::OK, out, id);
    served_by.write(r.headers_mut(), id);
    write_score(r.headers_mut(), score);
    Ok(r)
}

/// A cached answer's `body`, in `stored` dialect, in the caller's `dialect`, the verdicts of
/// `judge` applied.
fn cached_body(
    dialect: portcullis_core::Dialect,
    stored: portcullis_core::Dialect,
    body: Bytes,
    judge: Option<Box<dyn CallJudge>>,
) -> Result<Bytes, GatewayError> {
    Ok(match judge {
        // A cached answer keeps what the upstream said: the verdicts apply on every replay.
        Some(mut judge) => {
            let mut parsed = decode_response(stored, &body)?;
            complete_body(dialect, Some(stored), body, &mut parsed, Some(&mut *judge)).0
        }
        None if stored == dialect => body,
        None => Bytes::from(encode_response(dialect, &decode_response(stored, &body)?)),
    })
}

/// Who judges the tool calls of this caller's answer: the route's deny-list and the caller's
/// key's, then the tool policies of a guarded turn; `None` when nothing could be withheld.
fn judge_for(
    state: &AppState,
    caller: &Caller,
    resolved: &Resolved,
    judging: Option<Judging>,
) -> Option<Box<dyn CallJudge>> {
    let denied = denied_tools(
        resolved.resolution.tools_denied.as_ref(),
        caller.principal.tools_denied.as_ref(),
    );
    match judging {
        Some(Judging {
            guard,
            calls,
            approved,
        }) => Some(Box::new(guard.judge(
            denied,
            calls.unwrap_or_default(),
            approved,
            state.approvals.clone(),
        ))),
        None => denied.map(|d| Box::new(d) as Box<dyn CallJudge>),
    }
}

/// `x-portcullis-semantic-score` on a semantic hit.
fn write_score(h: &mut HeaderMap, score: Option<f32>) {
    if let Some(score) = score
        && let Ok(v) = HeaderValue::from_str(&format!("{score:.4}"))
    {
        h.insert(SEMANTIC_SCORE, v);
    }
}
