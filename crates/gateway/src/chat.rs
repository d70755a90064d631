//! The chat turn: `POST /v1/chat/completions` (OpenAI dialect) and `POST /v1/messages`
//! (Anthropic dialect), through one pipeline:
//!
//! 1. authenticate the caller (identity first: everything after may depend on it);
//! 2. read per-request options and the body (size-limited) and decode it into the canonical
//!    request;
//! 3. resolve the model into targets and pick the provider credential;
//! 4. build the upstream request in the provider's dialect and send it;
//! 5. answer: a complete response (forwarded as is when the dialects match, translated
//!    otherwise) or a [`SseRelay`] stream;
//! 6. the request's log record is completed on the way out, whatever happened.
//!
//! The later stages of the gateway — caching, limits and budgets, failover, tool policies,
//! audit — slot in between these steps as functions over the canonical request and response.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use portcullis_cache::CachedResponse;
use portcullis_config::RoutePolicy;
use portcullis_core::{ChatRequest, Identity};
use portcullis_core::{Dialect, ErrorKind, GatewayError};
use portcullis_cost::{CustomCost, Price};
use portcullis_dialects::{decode_request, decode_response, encode_response, events_from_response};
use portcullis_identity::{ControlOverrides, Principal};
use portcullis_limits::{RateLimitStatus, Subjects};
use portcullis_providers::Target;
use portcullis_providers::provider::ForwardedHeaders;
use uuid::Uuid;

use crate::attempts::{self, AttemptLog, KeyChoice, TargetGate};
use crate::headers::{
    self, ATTEMPTS, CACHE, MODEL, PROVIDER, PROVIDER_KEY, REQUEST_ID, RequestOptions,
    SEMANTIC_SCORE,
};
use crate::limits::{self, RateHeaders};
use crate::relay::{RelaySettings, Source, SseRelay};
use crate::request_log::{RequestLog, body_text};
use crate::respond;
use crate::response_cache::{CacheTarget, Lookup};
use crate::semantic::SemanticLookup;
use crate::settle::{Pricing, Settlement};
use crate::state::AppState;

/// Largest upstream (non-streamed) response body accepted.
const MAX_UPSTREAM_BODY: usize = 64 * 1024 * 1024;

/// `POST /v1/chat/completions`.
pub async fn chat_completions(State(state): State<Arc<AppState>>, req: Request) -> Response {
    chat(state, Dialect::OpenAi, req).await
}

/// `POST /v1/messages`.
pub async fn messages(State(state): State<Arc<AppState>>, req: Request) -> Response {
    chat(state, Dialect::Anthropic, req).await
}

async fn chat(state: Arc<AppState>, dialect: Dialect, req: Request) -> Response {
    let started = Instant::now();
    let id = Uuid::now_v7();
    let endpoint = match dialect {
        Dialect::OpenAi => "chat_completions",
        Dialect::Anthropic => "messages",
    };
    let mut log = state.request_log(id, endpoint, dialect, started);
    let mut rate = None;
    let mut resp = match run(&state, dialect, id, started, req, &mut log, &mut rate).await {
        Ok(resp) => resp,
        Err(e) => {
            log.error(&e);
            let served_by = log.record().and_then(|r| {
                Some((
                    r.provider.clone()?,
                    r.model.clone()?,
                    r.attempts,
                    r.cache_status.unwrap_or("BYPASS"),
                    r.provider_key_id.clone(),
                ))
            });
            log.finish(e.status().as_u16());
            let mut resp = respond::error(dialect, &e, &id);
            match served_by {
                Some((provider, model, attempts, cache, provider_key)) => ServedBy {
                    provider: &provider,
                    model: &model,
                    attempts,
                    cache,
                    provider_key: provider_key.as_deref(),
                }
                .write(resp.headers_mut(), &id),
                None => {
                    resp.headers_mut()
                        .insert(CACHE, HeaderValue::from_static("BYPASS"));
                }
            }
            resp
        }
    };
    if let Some(rate) = rate {
        rate.write(resp.headers_mut());
    }
    resp
}

/// Reads a request body, refusing one over `limit` with 413 and one arriving too slowly with
/// 408 (`server.body_read_timeout`, `server.min_body_rate`).
pub async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
) -> Result<Bytes, GatewayError> {
    crate::body::read(None, body, headers, limit).await
}

/// [`read_body`], holding the body's bytes in the gateway's budget of request bodies in flight
/// until the returned bytes are dropped: over the budget, a fast 503 with `Retry-After`
/// (before reading anything when the length is declared).
pub async fn read_budgeted_body(
    state: &AppState,
    body: Body,
    headers: &HeaderMap,
    limit: usize,
) -> Result<Bytes, GatewayError> {
    crate::body::read(Some(&state.body_budget), body, headers, limit).await
}

/// Reads an upstream body (size-limited).
pub async fn read_upstream(body: Incoming, provider: &str) -> Result<Bytes, GatewayError> {
    match Limited::new(body, MAX_UPSTREAM_BODY).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => Err(GatewayError::new(
            ErrorKind::Upstream,
            format!("Reading the answer of the upstream provider `{provider}` failed: {e}"),
        )),
    }
}

/// The upstream's `retry-after`, in seconds.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

/// A request that passed authentication and whose body was read.
pub struct Accepted {
    /// The request body.
    pub body: Bytes,
    /// Whether bodies are logged for this request.
    pub log_bodies: bool,
    /// The per-request options the caller sent.
    pub options: RequestOptions,
    /// Who is calling, with its own limits.
    pub principal: Arc<Principal>,
}

impl Accepted {
    /// Who is calling.
    pub fn identity(&self) -> &Identity {
        &self.principal.identity
    }
}

/// The steps every model endpoint starts with: authenticate, read per-request options, read
/// the body. Each is recorded in the log as it happens.
pub async fn accept(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    log: &mut RequestLog,
) -> Result<Accepted, GatewayError> {
    let principal = state.auth.authenticate_logged(headers, log).await?;
    log.identity(&principal.identity);
    if !principal.identity.has_scope("models") {
        return Err(GatewayError::new(
            portcullis_core::ErrorKind::PermissionDenied,
            "This access token lacks the `models` scope",
        )
        .with_code("insufficient_scope"));
    }

    let options = headers::request_options(headers)?;
    // The operator's `log.bodies` is the ceiling: a caller may only ask for less.
    let log_bodies = state.log_bodies && options.collect_log != Some(false);
    if let Some(r) = log.record() {
        if options.collect_log != Some(false) {
            r.metadata.clone_from(&options.metadata);
        }
        r.session_id.clone_from(&options.session_id);
        r.agent.clone_from(&options.agent);
    }

    let body = read_budgeted_body(state, body, headers, state.max_request_body_bytes).await?;
    if log_bodies && let Some(r) = log.record() {
        r.request_body = Some(body_text(&body));
    }
    check_unambiguous(&body)?;
    Ok(Accepted {
        body,
        log_bodies,
        options,
        principal,
    })
}

async fn run(
    state: &AppState,
    dialect: Dialect,
    id: Uuid,
    started: Instant,
    req: Request,
    log: &mut RequestLog,
    rate: &mut Option<RateHeaders>,
) -> Result<Response, GatewayError> {
    let (parts, body) = req.into_parts();
    let accepted = accept(state, &parts.headers, body, log).await?;
    let log_bodies = accepted.log_bodies;
    let bytes = accepted.body.clone();
    let request = decode_request(dialect, &bytes)?;
    check_model_name(&request.model)?;
    if let Some(r) = log.record() {
        r.requested_model = Some(request.model.clone());
        r.stream = request.stream;
    }

    let resolution = state.registry.resolve(&request.model)?;
    if let Some(r) = log.record() {
        r.route.clone_from(&resolution.route);
    }
    check_model_allowed(accepted.identity(), &request.model, &resolution)?;
    let key_controls = accepted.principal.controls.as_ref();
    let policy = request_policy(
        state.failover.policy(resolution.route.as_deref()),
        key_controls,
        &accepted.options,
    );
    let deadline = policy
        .timeouts
        .total
        .map(|t| tokio::time::Instant::from_std(started) + t);
    let key_rules = accepted.principal.rules.as_ref();
    // The most restrictive rate rule passed so far (the request's own, then the target's).
    let mut rate_status: Option<RateLimitStatus> = None;
    let admission = match &state.limiter {
        Some(limiter) if !limiter.is_empty() || key_rules.is_some() => {
            let price = resolution
                .primary()
                .and_then(|t| price_for(state, t, charged_custom_cost(&accepted)));
            let who = accepted.identity();
            let subjects = Subjects {
                key: who.key_id.as_deref(),
                user: who.user.as_deref(),
                team: who.team.as_deref(),
                // Model- and provider-scoped rules are checked per target, as it is tried.
                model: None,
                provider: None,
                route: resolution.route.as_deref(),
                tool: None,
            };
            match limiter
                .admit_with(
                    &subjects,
                    limits::estimate(&request, price.as_ref()),
                    key_rules,
                )
                .await
            {
                Ok(admission) => {
                    rate_status = admission.rate_limit();
                    *rate = rate_status.as_ref().map(RateHeaders::admitted);
                    Some(admission)
                }
                Err(refusal) => {
                    *rate = RateHeaders::refused(&refusal);
                    return Err(limits::refusal_error(&refusal));
                }
            }
        }
        _ => None,
    };

    let tenant = tenant_scope(accepted.identity());
    let cache_target = resolution
        .route
        .as_deref()
        .or_else(|| resolution.primary().map(|t| &*t.key))
        .unwrap_or(&request.model);
    let lookup = match &state.cache {
        Some(cache) => {
            let wait = policy
                .timeouts
                .total
                .or(policy.timeouts.first_byte)
                .unwrap_or(COALESCE_WAIT);
            cache
                .lookup(
                    CacheTarget {
                        route: resolution.route.as_deref(),
                        scope: &tenant,
                        target: cache_target,
                    },
                    &request,
                    &accepted.options,
                    key_controls,
                    wait,
                )
                .await
        }
        None => Lookup::Bypass,
    };
    let mut cache_status = match &lookup {
        Lookup::Hit(_) => "HIT",
        Lookup::Miss(_) => "MISS",
        Lookup::Bypass => "BYPASS",
    };
    let fill = match lookup {
        Lookup::Hit(entry) => {
            if let Some(r) = log.record() {
                r.cache_status = Some("HIT");
            }
            return answer_from_cache(
                entry, dialect, &request, started, log_bodies, log, &id, None,
            );
        }
        Lookup::Miss(fill) => Some(fill),
        Lookup::Bypass => None,
    };
    let semantic = match &state.semantic {
        Some(layer) if !accepted.options.skip_cache => {
            layer
                .lookup(resolution.route.as_deref(), &tenant, cache_target, &request)
                .await
        }
        _ => SemanticLookup::Bypass,
    };
    let semantic_fill = match semantic {
        SemanticLookup::Hit(hit) => {
            if let Ok(entry) = CachedResponse::decode_shared(&hit.answer) {
                if let Some(r) = log.record() {
                    r.cache_status = Some("HIT");
                }
                // Requests waiting on the exact key get this answer too.
                if let Some(fill) = fill {
                    fill.fill(hit.answer.clone());
                }
                return answer_from_cache(
                    entry,
                    dialect,
                    &request,
                    started,
                    log_bodies,
                    log,
                    &id,
                    Some(hit.score),
                );
            }
            None
        }
        SemanticLookup::Miss(f) => {
            cache_status = "MISS";
            Some(f)
        }
        SemanticLookup::Bypass => None,
    };
    if let Some(r) = log.record() {
        r.cache_status = Some(cache_status);
    }

    let forwarded = ForwardedHeaders {
        anthropic_beta: parts.headers.get("anthropic-beta"),
    };
    let mut tried = AttemptLog::default();
    let keys = KeyChoice {
        identity: accepted.identity(),
        alias: accepted.options.provider_key.as_deref(),
    };
    let gate = state
        .limiter
        .as_ref()
        .filter(|l| l.has_target_rules())
        .map(|limiter| TargetGate {
            limiter,
            custom_cost: charged_custom_cost(&accepted),
        });
    let outcome = attempts::send(
        state,
        &request,
        &resolution.targets,
        &policy,
        &forwarded,
        &keys,
        gate,
        deadline,
        &mut tried,
        log,
    )
    .await;
    if outcome.is_err()
        && let Some(refusal) = &tried.refusal
    {
        *rate = RateHeaders::refused(refusal);
    }
    let attempt_count = tried.sent();
    if let Some(r) = log.record() {
        r.attempt_log = tried.to_json();
    }
    let served = outcome?;
    if let Some(target_status) = served.admission.as_ref().and_then(|a| a.rate_limit()) {
        rate_status = RateLimitStatus::tighter(rate_status, Some(target_status));
        *rate = rate_status.as_ref().map(RateHeaders::admitted);
    }
    let resp = served.response;
    let target = served.target;
    let provider_key = served.credential_id;
    let provider = &target.provider;

    let is_sse = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let served_by = ServedBy {
        provider: provider.name(),
        model: &target.model,
        attempts: attempt_count,
        cache: cache_status,
        provider_key: provider_key.as_deref(),
    };
    let pricing = pricing_for(state, target, &accepted);
    let settlement = Settlement::new(
        fill,
        semantic_fill,
        request.stream,
        dialect,
        provider.name(),
        &target.model,
        pricing,
        [admission, served.admission],
    );

    if request.stream {
        let settings = RelaySettings {
            client_dialect: dialect,
            upstream_dialect: provider.dialect(),
            client_wants_usage: request.stream_include_usage,
            capture_body: log_bodies,
            started,
            deadline,
        };
        let source = if is_sse {
            Source::Upstream {
                body: resp.into_body(),
                decoder: provider.stream_decoder(),
            }
        } else {
            // The upstream ignored `stream` and answered in one piece: stream it anyway.
            let body = read_upstream(resp.into_body(), provider.name()).await?;
            let parsed = provider.decode_chat_response(&body)?;
            Source::Events(events_from_response(&parsed).into_iter())
        };
        let relay = SseRelay::new(source, settings, log.take(), Some(settlement));
        let mut r = Response::new(Body::new(relay));
        let h = r.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        served_by.write(h, &id);
        return Ok(r);
    }

    let body = match deadline {
        Some(d) => tokio::time::timeout_at(d, read_upstream(resp.into_body(), provider.name()))
            .await
            .map_err(|_| attempts::total_timeout())??,
        None => read_upstream(resp.into_body(), provider.name()).await?,
    };
    let mut parsed = provider.decode_chat_response(&body)?;
    log.usage(&parsed.usage);
    if parsed.created == 0 {
        parsed.created = crate::relay::unix_now();
    }
    settlement.finish_response(provider.dialect(), &body, &parsed, log);
    let out = if provider.dialect() == dialect {
        body
    } else {
        Bytes::from(encode_response(dialect, &parsed))
    };
    if log_bodies && let Some(r) = log.record() {
        r.response_body = Some(body_text(&out));
    }
    log.finish(200);
    let mut r = respond::json(StatusCode::OK, out, &id);
    served_by.write(r.headers_mut(), &id);
    Ok(r)
}

/// Refuses a body whose JSON objects repeat a key (`{"model":"a","model":"b"}`): parsers
/// disagree on which value counts, so the gateway, the upstream and the log could each see a
/// different request. One streaming pass over the bytes, before decoding.
pub(crate) fn check_unambiguous(body: &[u8]) -> Result<(), GatewayError> {
    match portcullis_dialects::strict::duplicate_key(body) {
        None => Ok(()),
        Some(dup) => Err(GatewayError::invalid_request(format!(
            "Invalid request body: {dup}; a key may appear only once in an object"
        ))
        .with_code("duplicate_key")),
    }
}

/// Longest model name accepted, in bytes.
const MAX_MODEL_NAME_BYTES: usize = 256;

/// Refuses, before routing, a model name no route, alias or provider could carry: empty,
/// longer than 256 bytes, or holding control characters (NUL, newlines, …) or line
/// separators. The name is not echoed back: it is exactly what cannot be shown or stored.
pub(crate) fn check_model_name(model: &str) -> Result<(), GatewayError> {
    let why = if model.is_empty() {
        "must not be empty"
    } else if model.len() > MAX_MODEL_NAME_BYTES {
        "must be at most 256 bytes"
    } else if model
        .chars()
        .any(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}'))
    {
        "must not contain control characters"
    } else {
        return Ok(());
    };
    Err(
        GatewayError::invalid_request(format!("Invalid `model`: {why}"))
            .with_param("model")
            .with_code("invalid_model"),
    )
}

/// Refuses a model the caller's key does not allow: checked against the name asked for, the
/// route and every `provider/model` target, so `openai/*` admits a route served by OpenAI.
fn check_model_allowed(
    who: &Identity,
    requested: &str,
    resolution: &portcullis_providers::Resolution,
) -> Result<(), GatewayError> {
    if who.allowed_models.is_none()
        || who.may_use_model(requested)
        || resolution
            .route
            .as_deref()
            .is_some_and(|r| who.may_use_model(r))
        || (!resolution.targets.is_empty()
            && resolution.targets.iter().all(|t| who.may_use_model(&t.key)))
    {
        return Ok(());
    }
    Err(GatewayError::new(
        portcullis_core::ErrorKind::PermissionDenied,
        format!("This API key is not allowed to use model `{requested}`"),
    )
    .with_code("model_not_allowed"))
}

/// Longest a request waits for an identical one in flight when no timeout bounds it.
const COALESCE_WAIT: Duration = Duration::from_secs(120);

/// The tenant a request's cache entries belong to: its team, else its user, else its key,
/// else its subject. Two tenants never share an entry.
fn tenant_scope(who: &Identity) -> String {
    match (&who.team, &who.user, &who.key_id) {
        (Some(team), _, _) => format!("team:{team}"),
        (None, Some(user), _) => format!("user:{user}"),
        (None, None, Some(key)) => format!("key:{key}"),
        (None, None, None) => format!("subject:{}", who.subject),
    }
}

/// Answers from a cached entry, in the caller's dialect, streamed when asked; `score` is the
/// similarity of a semantic hit.
#[allow(clippy::too_many_arguments)]
fn answer_from_cache(
    entry: CachedResponse,
    dialect: Dialect,
    request: &ChatRequest,
    started: Instant,
    log_bodies: bool,
    log: &mut RequestLog,
    id: &Uuid,
    score: Option<f32>,
) -> Result<Response, GatewayError> {
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
            upstream_dialect: entry.dialect,
            client_wants_usage: request.stream_include_usage,
            capture_body: log_bodies,
            started,
            deadline: None,
        };
        let source = Source::Events(events_from_response(&parsed).into_iter());
        let relay = SseRelay::new(source, settings, log.take(), None);
        let mut r = Response::new(Body::new(relay));
        let h = r.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        served_by.write(h, id);
        write_score(h, score);
        return Ok(r);
    }
    log.usage(&entry.usage);
    let out = if entry.dialect == dialect {
        entry.body
    } else {
        Bytes::from(encode_response(
            dialect,
            &decode_response(entry.dialect, &entry.body)?,
        ))
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

/// `x-portcullis-semantic-score` on a semantic hit.
fn write_score(h: &mut HeaderMap, score: Option<f32>) {
    if let Some(score) = score
        && let Ok(v) = HeaderValue::from_str(&format!("{score:.4}"))
    {
        h.insert(SEMANTIC_SCORE, v);
    }
}

/// The price of `target`'s model, or the caller's own prices applied to it.
pub(crate) fn price_for(
    state: &AppState,
    target: &Target,
    custom: Option<&CustomCost>,
) -> Option<Price> {
    let model_price = state.prices.price(
        target.provider.name(),
        target.provider.kind(),
        &target.model,
    );
    match custom {
        Some(custom) => Some(custom.apply_to(model_price)),
        None => model_price,
    }
}

/// The caller's own prices when they are what its budgets count (the key may set them).
fn charged_custom_cost(accepted: &Accepted) -> Option<&CustomCost> {
    accepted
        .options
        .custom_cost
        .as_ref()
        .filter(|_| accepted.principal.allow_custom_cost)
}

/// The list price of `target`'s model and, when the caller sent its own, the custom price.
fn pricing_for(state: &AppState, target: &Target, accepted: &Accepted) -> Pricing {
    let list = price_for(state, target, None);
    Pricing {
        list,
        custom: accepted
            .options
            .custom_cost
            .as_ref()
            .map(|c| c.apply_to(list)),
        custom_charged: accepted.principal.allow_custom_cost,
    }
}

/// The route's policy with the calling key's settings, then the request's headers, on top.
fn request_policy(
    route: &RoutePolicy,
    key: Option<&ControlOverrides>,
    options: &RequestOptions,
) -> RoutePolicy {
    let mut p = *route;
    if let Some(key) = key {
        key.apply_retry(&mut p.retry);
        key.apply_timeouts(&mut p.timeouts);
    }
    if let Some(n) = options.max_attempts {
        p.retry.max_attempts = n;
    }
    if let Some(d) = options.retry_delay {
        p.retry.delay = d;
    }
    if let Some(b) = options.backoff {
        p.retry.backoff = b;
    }
    if let Some(t) = options.request_timeout {
        p.timeouts.first_byte = Some(t);
    }
    p
}

/// What served a request, for the response headers.
pub struct ServedBy<'a> {
    /// Provider name.
    pub provider: &'a str,
    /// Model at the provider.
    pub model: &'a str,
    /// Upstream attempts.
    pub attempts: u32,
    /// `HIT`, `MISS` or `BYPASS`.
    pub cache: &'static str,
    /// The id of the provider key used (never the secret).
    pub provider_key: Option<&'a str>,
}

impl ServedBy<'_> {
    /// Writes `x-portcullis-request-id`, `-provider`, `-model` and `-attempts`.
    pub fn write(&self, h: &mut HeaderMap, id: &Uuid) {
        h.insert(REQUEST_ID, respond::request_id_value(id));
        if let Ok(v) = HeaderValue::from_str(self.provider) {
            h.insert(PROVIDER, v);
        }
        if let Ok(v) = HeaderValue::from_str(self.model) {
            h.insert(MODEL, v);
        }
        h.insert(ATTEMPTS, HeaderValue::from(self.attempts));
        h.insert(CACHE, HeaderValue::from_static(self.cache));
        if let Some(key) = self.provider_key
            && let Ok(v) = HeaderValue::from_str(key)
        {
            h.insert(PROVIDER_KEY, v);
        }
    }
}
