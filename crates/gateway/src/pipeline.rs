//! The request pipeline: one per-request context, [`Exchange`], travels through fixed, named
//! stages. Every model endpoint is a list of these stages, in this order:
//!
//! | stage | what it does | answers early with |
//! |---|---|---|
//! | [`authenticate`] | who is calling (master key, virtual key, JWT), the `models` scope, per-request option headers, the body (size, pace, in-flight budget, no repeated keys) | 401, 403, 400, 408, 413, 503 |
//! | [`decode`] | the caller's dialect → the canonical request; the model name checked | 400 |
//! | [`resolve`] | model → route → targets, and the route's policy amended by the key and the request | 404 |
//! | [`authorize`] | the key's allowed models (later: tools) | 403 |
//! | [`admit`] | rate, concurrency and budget rules of the request's subjects, taken at once | 429, 503 |
//! | cache (chat only: `chat::cache`) | exact, then semantic lookup | a cached answer |
//! | [`dispatch`] | targets in order, breakers, retries, failover, per-target limits, provider keys | 4xx/5xx from the last target |
//! | respond (per endpoint) | the answer in the caller's dialect; streams through the relay and its filters | — |
//! | settle ([`Settlement`](crate::settle::Settlement)) | cost, limits and budgets settled with real usage, cache filled — once, when the answer completes or is abandoned | — |
//! | [`record`](Exchange::record) | the request's one log record, the error in the caller's dialect, the served-by and rate-limit headers | — |
//!
//! A stage returns `Ok` to continue or `Err` to answer now with that error; the cache stage may
//! also answer now with a cached response. Stages that run after the answer started (settle,
//! the log record) run inside the answer: for a stream, when the relay ends or is dropped.
//!
//! Stages are plain functions over the [`Exchange`] and what earlier stages produced, so an
//! endpoint reads as the list of its stages (`chat::run`, `embeddings::run`), and every policy
//! decision they take is the same code for every endpoint.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use portcullis_config::RoutePolicy;
use portcullis_core::{Dialect, ErrorKind, GatewayError, Identity};
use portcullis_cost::CustomCost;
use portcullis_identity::{ControlOverrides, Principal};
use portcullis_limits::{Admission, RateLimitStatus, Subjects};
use portcullis_providers::{Resolution, Target};
use tracing::Instrument;
use uuid::Uuid;

use crate::dispatch::{
    AttemptLog, BuildUpstream, Dispatch, FollowAttempt, KeyChoice, Served, TargetGate,
};
use crate::headers::{
    self, ATTEMPTS, CACHE, MODEL, PROVIDER, PROVIDER_KEY, REQUEST_ID, RequestOptions,
};
use crate::limits::{self, Demand, RateHeaders};
use crate::reload::Runtime;
use crate::request_log::{RequestLog, body_text};
use crate::respond;
use crate::settle::Pricing;
use crate::state::AppState;

/// The named stages, as traces and logs call them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Who is calling; options; the body.
    Authenticate,
    /// The caller's dialect → the canonical request.
    Decode,
    /// Model → route → targets and policy.
    Resolve,
    /// What the caller may use.
    Authorize,
    /// Tool policies: the turn's trust, the tools it may be offered.
    Guard,
    /// Limits and budgets.
    Admit,
    /// Exact and semantic cache.
    Cache,
    /// Targets, breakers, retries, failover.
    Dispatch,
    /// The answer in the caller's dialect.
    Respond,
}

impl Stage {
    /// The stage's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Authenticate => "authenticate",
            Stage::Decode => "decode",
            Stage::Resolve => "resolve",
            Stage::Authorize => "authorize",
            Stage::Guard => "guard",
            Stage::Admit => "admit",
            Stage::Cache => "cache",
            Stage::Dispatch => "dispatch",
            Stage::Respond => "respond",
        }
    }

    /// The stage's span (disabled, at no cost, when traces are off).
    pub fn span(self) -> tracing::Span {
        crate::trace::stage(self.as_str())
    }

    /// Runs `work` inside the stage's span.
    pub fn run<T>(self, work: impl FnOnce() -> T) -> T {
        self.span().in_scope(work)
    }

    /// Runs the future `work` inside the stage's span.
    pub fn run_async<F: Future>(self, work: F) -> tracing::instrument::Instrumented<F> {
        work.instrument(self.span())
    }
}

/// What a model request is: the operation traces name and the log's endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `POST /v1/chat/completions`.
    ChatCompletions,
    /// `POST /v1/messages`.
    Messages,
    /// `POST /v1/embeddings`.
    Embeddings,
    /// `POST /v1/responses`.
    Responses,
    /// `POST /mcp` and `POST /mcp/<server>`.
    Mcp,
    /// `POST /v1/messages/count_tokens`.
    CountTokens,
    /// `/{provider}/…`, the native pass-through.
    Passthrough,
}

impl Operation {
    /// The request log's `endpoint`.
    pub fn endpoint(self) -> &'static str {
        match self {
            Operation::ChatCompletions => "chat_completions",
            Operation::Messages => "messages",
            Operation::Embeddings => "embeddings",
            Operation::Responses => "responses",
            Operation::Mcp => "mcp",
            Operation::CountTokens => "count_tokens",
            Operation::Passthrough => "passthrough",
        }
    }

    /// `gen_ai.operation.name`.
    pub fn gen_ai_name(self) -> &'static str {
        match self {
            Operation::ChatCompletions | Operation::Messages | Operation::Responses => "chat",
            Operation::Embeddings => "embeddings",
            Operation::Mcp => "execute_tool",
            Operation::CountTokens => "count_tokens",
            Operation::Passthrough => "passthrough",
        }
    }

    /// The caller's dialect.
    pub fn dialect(self) -> Dialect {
        match self {
            Operation::Messages | Operation::CountTokens => Dialect::Anthropic,
            // MCP answers in JSON-RPC; its errors never take an LLM dialect's shape. The
            // Responses API's errors are OpenAI's; its answers have a shape of their own
            // (`chat::Presenter`).
            Operation::ChatCompletions
            | Operation::Embeddings
            | Operation::Responses
            | Operation::Mcp
            | Operation::Passthrough => Dialect::OpenAi,
        }
    }
}

/// The per-request context every stage receives.
pub struct Exchange {
    /// The request id (`x-portcullis-request-id`, the log record's id).
    pub id: Uuid,
    /// When the request arrived.
    pub started: Instant,
    /// What is being asked.
    pub operation: Operation,
    /// The caller's dialect: every answer and error is in it.
    pub dialect: Dialect,
    /// The request's log record, submitted exactly once.
    pub log: RequestLog,
    /// The `RateLimit-*` headers the answer carries.
    pub rate: Option<RateHeaders>,
    /// The most restrictive rate rule passed so far (the request's own, then the target's).
    pub rate_status: Option<RateLimitStatus>,
    /// The request's span.
    pub span: tracing::Span,
    /// The configuration's runtime the request began with; it keeps it to the end.
    pub runtime: Arc<Runtime>,
}

/// The request a nested one is made for: its id and configuration snapshot. Cheap to clone,
/// and kept by work that outlives the borrow of its [`Exchange`] (an MCP call's answer).
#[derive(Clone)]
pub struct Parent {
    id: Uuid,
    runtime: Arc<Runtime>,
}

impl Parent {
    /// The configuration snapshot the request began with.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// A request the gateway makes on the caller's behalf while serving this one (the
    /// semantic cache's embedding, a quarantine question): the same configuration snapshot,
    /// its own id, log record and span (a child of the current stage's), the caller's
    /// identity, and `purpose` with this request's id in its log's metadata.
    pub fn nested(
        &self,
        state: &AppState,
        operation: Operation,
        caller: &Caller,
        purpose: &str,
    ) -> Exchange {
        let started = Instant::now();
        let id = Uuid::now_v7();
        let dialect = operation.dialect();
        let mut log = state.open_log(&self.runtime, id, operation.endpoint(), dialect, started);
        log.identity(caller.identity());
        if let Some(r) = log.record() {
            r.metadata = Some(
                serde_json::json!({"purpose": purpose, "parent_request_id": self.id.to_string()})
                    .to_string(),
            );
            r.session_id.clone_from(&caller.options.session_id);
            r.agent.clone_from(&caller.options.agent);
        }
        Exchange {
            id,
            started,
            operation,
            dialect,
            log,
            rate: None,
            rate_status: None,
            span: crate::trace::request_span(operation.gen_ai_name(), &HeaderMap::new()),
            runtime: self.runtime.clone(),
        }
    }
}

impl Exchange {
    /// Starts the exchange of one model request: its id, its log record, its span (a child of
    /// the caller's `traceparent`).
    pub fn begin(state: &AppState, operation: Operation, headers: &HeaderMap) -> Self {
        let started = Instant::now();
        let id = Uuid::now_v7();
        let dialect = operation.dialect();
        let runtime = state.runtime();
        Self {
            id,
            started,
            operation,
            dialect,
            log: state.open_log(&runtime, id, operation.endpoint(), dialect, started),
            rate: None,
            rate_status: None,
            span: crate::trace::request_span(operation.gen_ai_name(), headers),
            runtime,
        }
    }

    /// What a request made on the caller's behalf while serving this one needs of it
    /// ([`Parent::nested`]).
    pub fn parent(&self) -> Parent {
        Parent {
            id: self.id,
            runtime: self.runtime.clone(),
        }
    }

    /// [`Parent::nested`] of this exchange.
    pub fn nested(
        &self,
        state: &AppState,
        operation: Operation,
        caller: &Caller,
        purpose: &str,
    ) -> Self {
        self.parent().nested(state, operation, caller, purpose)
    }

    /// The last stage of a [`Exchange::nested`] request: its log record completed, its error
    /// kept for the request that made it.
    pub fn record_nested<T>(mut self, result: Result<T, GatewayError>) -> Result<T, GatewayError> {
        match &result {
            Ok(_) => crate::trace::record_status(&self.span, 200),
            Err(e) => {
                crate::trace::record_error(&self.span, e);
                self.log.error(e);
                self.log.finish(e.status().as_u16());
            }
        }
        result
    }

    /// The last stage: completes the log record (a stream's is completed by its relay) and
    /// turns an error into a response in the caller's dialect, with the served-by and
    /// rate-limit headers.
    pub fn record(mut self, result: Result<Response, GatewayError>) -> Response {
        let mut resp = match result {
            Ok(resp) => {
                crate::trace::record_status(&self.span, resp.status().as_u16());
                resp
            }
            Err(e) => {
                crate::trace::record_error(&self.span, &e);
                self.log.error(&e);
                let served_by = self.log.record().and_then(|r| {
                    Some((
                        r.provider.clone()?,
                        r.model.clone()?,
                        r.attempts,
                        r.cache_status.unwrap_or("BYPASS"),
                        r.provider_key_id.clone(),
                    ))
                });
                self.log.finish(e.status().as_u16());
                let mut resp = respond::error(self.dialect, &e, &self.id);
                match served_by {
                    Some((provider, model, attempts, cache, provider_key)) => ServedBy {
                        provider: &provider,
                        model: &model,
                        attempts,
                        cache,
                        provider_key: provider_key.as_deref(),
                    }
                    .write(resp.headers_mut(), &self.id),
                    None => {
                        resp.headers_mut()
                            .insert(CACHE, HeaderValue::from_static("BYPASS"));
                    }
                }
                resp
            }
        };
        if let Some(rate) = self.rate {
            rate.write(resp.headers_mut());
        }
        resp
    }

    /// Notes a rate status passed (the tighter of the request's and the target's counts).
    fn pass_rate(&mut self, status: Option<RateLimitStatus>) {
        self.rate_status = RateLimitStatus::tighter(self.rate_status.take(), status);
        self.rate = self.rate_status.as_ref().map(RateHeaders::admitted);
    }
}

/// A caller that passed [`authenticate`], with its options and the body it sent.
pub struct Caller {
    /// The request body.
    pub body: Bytes,
    /// Whether bodies are logged for this request.
    pub log_bodies: bool,
    /// The per-request options the caller sent.
    pub options: RequestOptions,
    /// Who is calling, with its own limits and controls.
    pub principal: Arc<Principal>,
}

impl Caller {
    /// Who is calling.
    pub fn identity(&self) -> &Identity {
        &self.principal.identity
    }

    /// The caller's own prices, when they are what its budgets count (the key may set them).
    pub fn charged_custom_cost(&self) -> Option<&CustomCost> {
        self.options
            .custom_cost
            .as_ref()
            .filter(|_| self.principal.allow_custom_cost)
    }

    /// The list price of `target`'s model and, when the caller sent its own, the custom price.
    pub fn pricing(&self, runtime: &Runtime, target: &Target) -> Pricing {
        let list = runtime.prices.target_price(target, None);
        Pricing {
            list,
            custom: self.options.custom_cost.as_ref().map(|c| c.apply_to(list)),
            custom_charged: self.principal.allow_custom_cost,
        }
    }

    /// Whose provider keys the request uses.
    pub fn keys(&self) -> KeyChoice<'_> {
        KeyChoice {
            identity: self.identity(),
            alias: self.options.provider_key.as_deref(),
        }
    }

    /// The tenant the request's cache entries belong to: its team, else its user, else its
    /// key, else its subject. Two tenants never share an entry.
    pub fn tenant_scope(&self) -> String {
        tenant_scope(self.identity())
    }
}

/// The tenant `who` belongs to: its team, else its user, else its key, else its subject. What
/// one tenant keeps (cache entries, stored responses) is never another's.
pub fn tenant_scope(who: &Identity) -> String {
    match (&who.team, &who.user, &who.key_id) {
        (Some(team), _, _) => format!("team:{team}"),
        (None, Some(user), _) => format!("user:{user}"),
        (None, None, Some(key)) => format!("key:{key}"),
        (None, None, None) => format!("subject:{}", who.subject),
    }
}

/// **authenticate**: the caller first (everything after may depend on who it is), then its
/// per-request options, then the body. Each is recorded in the log as it happens.
pub async fn authenticate(
    state: &AppState,
    x: &mut Exchange,
    headers: &HeaderMap,
    body: Body,
) -> Result<Caller, GatewayError> {
    Stage::Authenticate
        .run_async(accept(state, &x.runtime, headers, body, &mut x.log))
        .await
}

/// [`authenticate`] without an [`Exchange`], for endpoints outside the pipeline.
pub async fn accept(
    state: &AppState,
    runtime: &Runtime,
    headers: &HeaderMap,
    body: Body,
    log: &mut RequestLog,
) -> Result<Caller, GatewayError> {
    let principal = state.auth.authenticate_logged(headers, log).await?;
    log.identity(&principal.identity);
    if !principal.identity.has_scope("models") {
        return Err(GatewayError::new(
            ErrorKind::PermissionDenied,
            "This access token lacks the `models` scope",
        )
        .with_code("insufficient_scope"));
    }

    let options = headers::request_options(headers)?;
    // The operator's `log.bodies` is the ceiling: a caller may only ask for less.
    let log_bodies = runtime.log_bodies && options.collect_log != Some(false);
    if let Some(r) = log.record() {
        if options.collect_log != Some(false) {
            r.metadata.clone_from(&options.metadata);
        }
        r.session_id.clone_from(&options.session_id);
        r.agent.clone_from(&options.agent);
    }

    let body = crate::body::read(
        Some(&state.body_budget),
        body,
        headers,
        runtime.max_request_body_bytes,
    )
    .await?;
    if log_bodies && let Some(r) = log.record() {
        r.request_body = Some(body_text(&body));
    }
    crate::body::check_unambiguous(&body)?;
    Ok(Caller {
        body,
        log_bodies,
        options,
        principal,
    })
}

/// What [`decode`] needs to know about a request type.
pub trait ModelRequest {
    /// The model asked for.
    fn model(&self) -> &str;
    /// Whether the answer is streamed.
    fn stream(&self) -> bool {
        false
    }
}

impl ModelRequest for portcullis_core::ChatRequest {
    fn model(&self) -> &str {
        &self.model
    }
    fn stream(&self) -> bool {
        self.stream
    }
}

impl ModelRequest for portcullis_core::EmbeddingsRequest {
    fn model(&self) -> &str {
        &self.model
    }
}

/// **decode**: the body in the caller's dialect → the canonical request (`decoder`), whose
/// model name must be one a route could carry.
pub fn decode<R: ModelRequest>(
    x: &mut Exchange,
    caller: &Caller,
    decoder: impl FnOnce(&[u8]) -> Result<R, GatewayError>,
) -> Result<R, GatewayError> {
    Stage::Decode.run(|| {
        let request = decoder(&caller.body)?;
        check_model_name(request.model())?;
        if let Some(r) = x.log.record() {
            r.requested_model = Some(request.model().to_owned());
            r.stream = request.stream();
        }
        crate::trace::record_request_model(&x.span, x.operation.gen_ai_name(), request.model());
        Ok(request)
    })
}

/// What [`resolve`] found: the targets and the policy the request runs under.
pub struct Resolved {
    /// The route (when the model named one) and its targets, primary first.
    pub resolution: Resolution,
    /// The route's retry/timeout/balancing policy, with the key's settings and the request's
    /// headers on top.
    pub policy: RoutePolicy,
    /// The request's total time limit.
    pub deadline: Option<tokio::time::Instant>,
}

impl Resolved {
    /// The target the request is expected to go to.
    pub fn primary(&self) -> Option<&Target> {
        self.resolution.primary()
    }

    /// The route's name, when the model named one.
    pub fn route(&self) -> Option<&str> {
        self.resolution.route.as_deref()
    }
}

/// **resolve**: the model → route → alias → `provider/model` → targets (404 naming the model
/// when nothing serves it), and the policy the request runs under.
pub fn resolve(x: &mut Exchange, caller: &Caller, model: &str) -> Result<Resolved, GatewayError> {
    Stage::Resolve.run(|| {
        let resolution = x.runtime.registry.resolve(model)?;
        if let Some(r) = x.log.record() {
            r.route.clone_from(&resolution.route);
        }
        let policy = request_policy(
            x.runtime.failover.policy(resolution.route.as_deref()),
            caller.principal.controls.as_ref(),
            &caller.options,
        );
        let deadline = policy
            .timeouts
            .total
            .map(|t| tokio::time::Instant::from_std(x.started) + t);
        Ok(Resolved {
            resolution,
            policy,
            deadline,
        })
    })
}

/// **authorize**: what the caller may use — the key's allowed models, checked against the
/// name asked for, the route and every `provider/model` target (so `openai/*` admits a route
/// served by OpenAI).
pub fn authorize(caller: &Caller, model: &str, resolved: &Resolved) -> Result<(), GatewayError> {
    Stage::Authorize.run(|| check_model_allowed(caller.identity(), model, &resolved.resolution))
}

/// **admit**: every rate, concurrency and budget rule of the request's subjects (the file's
/// and the key's own) checked and taken at once, the cost estimated at the primary target's
/// price. Model- and provider-scoped rules are checked per target, in [`dispatch`].
pub async fn admit(
    x: &mut Exchange,
    caller: &Caller,
    resolved: &Resolved,
    demand: Demand,
) -> Result<Option<Admission>, GatewayError> {
    let key_rules = caller.principal.rules.as_ref();
    let runtime = &x.runtime;
    let Some(limiter) = runtime
        .limiter
        .as_ref()
        .filter(|l| !l.is_empty() || key_rules.is_some())
    else {
        return Ok(None);
    };
    let price = resolved
        .primary()
        .and_then(|t| runtime.prices.target_price(t, caller.charged_custom_cost()));
    let who = caller.identity();
    let subjects = Subjects {
        key: who.key_id.as_deref(),
        user: who.user.as_deref(),
        team: who.team.as_deref(),
        model: None,
        provider: None,
        route: resolved.route(),
        tool: None,
        server: None,
    };
    let admitted = Stage::Admit
        .run_async(limiter.admit_with(&subjects, demand.estimate(price.as_ref()), key_rules))
        .await;
    match admitted {
        Ok(admission) => {
            x.pass_rate(admission.rate_limit());
            Ok(Some(admission))
        }
        Err(refusal) => {
            x.rate = RateHeaders::refused(&refusal);
            Err(limits::refusal_error(&refusal))
        }
    }
}

/// **dispatch**: the request to the route's targets through the [`Dispatcher`]
/// (`crate::dispatch`): strategy order, open breakers skipped, retries with backoff, failover,
/// per-target limits, the caller's provider keys. Ends when response headers arrive.
pub async fn dispatch<'t>(
    state: &AppState,
    x: &mut Exchange,
    caller: &Caller,
    resolved: &'t Resolved,
    demand: Demand,
    build: &BuildUpstream<'_>,
) -> Result<Served<'t>, GatewayError> {
    let gate = x
        .runtime
        .limiter
        .as_ref()
        .filter(|l| l.has_target_rules())
        .map(|limiter| TargetGate {
            limiter,
            prices: &x.runtime.prices,
            custom_cost: caller.charged_custom_cost(),
            demand,
        });
    let plan = Dispatch {
        targets: &resolved.resolution.targets,
        policy: &resolved.policy,
        keys: caller.keys(),
        gate,
        deadline: resolved.deadline,
        build,
    };
    let mut tried = AttemptLog::default();
    let outcome = Stage::Dispatch
        .run_async(state.dispatcher.send(&plan, &mut tried, &mut x.log))
        .await;
    if outcome.is_err()
        && let Some(refusal) = &tried.refusal
    {
        x.rate = RateHeaders::refused(refusal);
    }
    if let Some(r) = x.log.record() {
        r.attempt_log = tried.to_json();
    }
    let served = outcome?;
    if let Some(status) = served.admission.as_ref().and_then(|a| a.rate_limit()) {
        x.pass_rate(Some(status));
    }
    crate::trace::record_target(&x.span, served.target.provider.name(), &served.target.model);
    Ok(served)
}

/// The request's log record follows each attempt: the target and provider key it waits on,
/// and how many requests were sent.
impl FollowAttempt for RequestLog {
    fn attempt(&mut self, provider: &str, model: &Arc<str>, credential_id: Option<&str>) {
        if let Some(r) = self.record() {
            r.provider = Some(Arc::from(provider));
            r.model = Some(model.clone());
            r.provider_key_id = credential_id.map(str::to_owned);
            r.attempts += 1;
        }
    }
}

/// Longest model name accepted, in bytes.
const MAX_MODEL_NAME_BYTES: usize = 256;

/// Refuses, before routing, a model name no route, alias or provider could carry: empty,
/// longer than 256 bytes, or holding control characters (NUL, newlines, …) or line
/// separators. The name is not echoed back: it is exactly what cannot be shown or stored.
fn check_model_name(model: &str) -> Result<(), GatewayError> {
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

/// Refuses a model the caller's key does not allow: allowed when the key names the model asked
/// for, the route it resolved to, or (with a pattern such as `openai/*`) every target.
pub fn check_model_allowed(
    who: &Identity,
    requested: &str,
    resolution: &Resolution,
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
        ErrorKind::PermissionDenied,
        format!("This API key is not allowed to use model `{requested}`"),
    )
    .with_code("model_not_allowed"))
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
    /// Writes `x-portcullis-request-id`, `-provider`, `-model`, `-attempts`, `-cache` and
    /// `-provider-key`.
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
