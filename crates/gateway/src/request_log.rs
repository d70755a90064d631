//! [`RequestLog`]: the log record of one request, filled in along the request path and
//! submitted exactly once — when the request finishes, or, if the client goes away first, when
//! the request is dropped (recorded as 499 with whatever usage was seen). When `log.access`
//! samples the request, the same moment writes its access-log line to the process log.
//! A request that decides about a tool call also carries its decision-audit record, submitted
//! at that same moment to the audit writer — with the calls decided on the way
//! ([`AuditCalls`], filled by a stream's judge long after the handler returned) and the
//! provider, model, usage and cost the log record ends with.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use portcullis_audit::AuditRecord;
use portcullis_config::AccessLog;
use portcullis_core::{GatewayError, Identity, Usage};
use portcullis_store::{AuditSink, LogRecord, LogSink};

use crate::metrics::{Metrics, RequestSample};

/// Bodies kept in the log are cut at this size.
pub const MAX_LOGGED_BODY: usize = 1024 * 1024;

/// The record of one request in flight.
#[derive(Debug)]
pub struct RequestLog {
    record: Option<Box<LogRecord>>,
    started: Instant,
    sink: LogSink,
    metrics: Arc<Metrics>,
    access: AccessLog,
    /// The MCP method as a metric label, for an MCP request (its latency is observed by
    /// server and method).
    mcp_method: Option<&'static str>,
    /// Where the audit record goes (none when the audit is off).
    audit_sink: Option<AuditSink>,
    /// The request's audit record, once it decided about a tool call.
    audit: Option<Box<AuditRecord>>,
    /// Calls decided for the audit record by whoever judges the answer.
    audit_calls: Option<AuditCalls>,
}

/// The audit's decisions on one request's tool calls, shared by whoever makes them (the judge
/// of a streamed answer) and the request's log, which adds them to its audit record.
pub type AuditCalls = Arc<Mutex<Vec<portcullis_audit::ToolCall>>>;

impl RequestLog {
    /// Starts the record of a request that arrived at `started`.
    pub fn new(record: LogRecord, started: Instant, sink: LogSink, metrics: Arc<Metrics>) -> Self {
        Self {
            record: Some(Box::new(record)),
            started,
            sink,
            metrics,
            access: AccessLog::OFF,
            mcp_method: None,
            audit_sink: None,
            audit: None,
            audit_calls: None,
        }
    }

    /// Submits this request's audit record, if it gets one, to `sink`.
    pub fn with_audit(mut self, sink: Option<AuditSink>) -> Self {
        self.audit_sink = sink;
        self
    }

    /// Gives the request its audit record (replacing one given before), submitted with the
    /// log record; nothing when the audit is off.
    pub fn set_audit(&mut self, record: AuditRecord) {
        if self.audit_sink.is_some() {
            self.audit = Some(Box::new(record));
        }
    }

    /// The request's audit record, to complete.
    pub fn audit(&mut self) -> Option<&mut AuditRecord> {
        self.audit.as_deref_mut()
    }

    /// Where decisions on this request's calls go, added to its audit record when it is
    /// submitted; `None` when the request has no audit record.
    pub fn audit_calls(&mut self) -> Option<AuditCalls> {
        self.audit.as_ref()?;
        Some(
            self.audit_calls
                .get_or_insert_with(AuditCalls::default)
                .clone(),
        )
    }

    /// Writes an access-log line for this request when `access` samples it.
    pub fn with_access(mut self, access: AccessLog) -> Self {
        self.access = access;
        self
    }

    /// The metrics this request is counted in.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The record, while the request is in flight.
    pub fn record(&mut self) -> Option<&mut LogRecord> {
        self.record.as_deref_mut()
    }

    /// Records the method of an MCP request.
    pub fn mcp_method(&mut self, method: &str) {
        self.mcp_method = Some(crate::metrics::mcp_method_label(method));
    }

    /// Records who called.
    pub fn identity(&mut self, who: &Identity) {
        if let Some(r) = self.record() {
            r.subject = Some(who.subject.clone());
            r.auth_method = Some(who.method.as_str());
            r.user.clone_from(&who.user);
            r.team.clone_from(&who.team);
            r.key_id.clone_from(&who.key_id);
        }
    }

    /// Records token usage.
    pub fn usage(&mut self, u: &Usage) {
        if let Some(r) = self.record() {
            r.input_tokens = u.input_tokens;
            r.output_tokens = u.output_tokens;
            r.cached_tokens = u.cached_input_tokens;
            r.reasoning_tokens = u.reasoning_tokens;
        }
    }

    /// Records a failure.
    pub fn error(&mut self, e: &GatewayError) {
        if let Some(r) = self.record() {
            r.status = e.status().as_u16();
            r.error_type = Some(format!("{:?}", e.kind()));
            // The operator's view: the caller's message plus the private detail and source.
            r.error_message = Some(e.operator_text());
        }
    }

    /// Moves the record into a new guard (e.g. the one a streaming body carries), leaving
    /// this one empty.
    pub fn take(&mut self) -> RequestLog {
        RequestLog {
            record: self.record.take(),
            started: self.started,
            sink: self.sink.clone(),
            metrics: self.metrics.clone(),
            access: self.access,
            mcp_method: self.mcp_method.take(),
            audit_sink: self.audit_sink.clone(),
            audit: self.audit.take(),
            audit_calls: self.audit_calls.take(),
        }
    }

    /// Finishes the record with `status` (unless an error set one) and submits it.
    pub fn finish(&mut self, status: u16) {
        if let Some(mut r) = self.record.take() {
            if r.status == 0 {
                r.status = status;
            }
            self.submit(r);
        }
    }

    fn submit(&mut self, mut r: Box<LogRecord>) {
        let elapsed = self.started.elapsed();
        r.latency_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.metrics.observe(&RequestSample {
            endpoint: r.endpoint,
            provider: r.provider.as_ref(),
            status: r.status,
            seconds: elapsed.as_secs_f64(),
            input_tokens: r.input_tokens,
            output_tokens: r.output_tokens,
        });
        if let (Some(method), Some(server)) = (self.mcp_method, &r.provider) {
            self.metrics
                .observe_mcp_request(server, method, elapsed.as_secs_f64());
        }
        // The id's low bits are random (UUID v7): a sample without shared state.
        if !self.access.is_off() && self.access.samples(r.id.as_u128() as u64) {
            access_line(&r);
        }
        if let (Some(sink), Some(mut audit)) = (&self.audit_sink, self.audit.take()) {
            complete_audit(&mut audit, &r, self.audit_calls.take());
            sink.submit(*audit);
        }
        self.sink.submit(*r);
    }
}

/// Completes a request's audit record from its finished log record: the decisions made on
/// the way, and what was served, at what usage and cost.
fn complete_audit(audit: &mut AuditRecord, r: &LogRecord, calls: Option<AuditCalls>) {
    if let Some(calls) = calls
        && let Ok(mut calls) = calls.lock()
    {
        audit.calls.append(&mut calls);
    }
    for call in &audit.calls {
        if let Some(id) = &call.approval_id
            && !audit.approvals.contains(id)
        {
            audit.approvals.push(id.clone());
        }
    }
    audit.request_id.get_or_insert_with(|| r.id.to_string());
    if audit.provider.is_none() {
        audit.provider = r.provider.as_deref().map(str::to_owned);
    }
    // The model that served an LLM turn (an MCP record's "model" is its tool).
    if audit.path == portcullis_audit::AuditPath::Llm
        && let Some(model) = &r.model
    {
        audit.model = Some(model.to_string());
    }
    if audit.provider_key_id.is_none() {
        audit.provider_key_id = r.provider_key_id.clone();
    }
    if audit.tokens.is_none() && (r.input_tokens > 0 || r.output_tokens > 0) {
        audit.tokens = Some(portcullis_audit::Tokens {
            input: r.input_tokens,
            output: r.output_tokens,
        });
    }
    if audit.cost_usd.is_none() {
        audit.cost_usd = r.cost_usd.filter(|c| c.is_finite());
    }
}

impl Drop for RequestLog {
    fn drop(&mut self) {
        if let Some(mut r) = self.record.take() {
            // Dropped before finishing: the client went away and the request was cancelled.
            r.status = 499;
            if r.error_type.is_none() {
                r.error_type = Some("ClientClosed".to_owned());
                r.error_message = Some("client closed the connection".to_owned());
            }
            self.submit(r);
        }
    }
}

/// The access-log line of a finished request: one `INFO` event on the `portcullis::access`
/// target, with structured fields (a JSON object per line when the log format is JSON). It
/// names who called and what was served, never a credential or a body.
fn access_line(r: &LogRecord) {
    let path = match r.endpoint {
        "chat_completions" => "/v1/chat/completions",
        "messages" => "/v1/messages",
        "embeddings" => "/v1/embeddings",
        "responses" => "/v1/responses",
        "count_tokens" => "/v1/messages/count_tokens",
        other => other,
    };
    let model = r.model.as_deref().or(r.requested_model.as_deref());
    tracing::info!(
        target: "portcullis::access",
        request_id = %r.id,
        method = "POST",
        path,
        status = r.status,
        latency_ms = r.latency_us as f64 / 1000.0,
        model,
        provider = r.provider.as_deref(),
        subject = r.subject.as_deref(),
        key_id = r.key_id.as_deref(),
        stream = r.stream,
        input_tokens = r.input_tokens,
        output_tokens = r.output_tokens,
        "{} {path} {}",
        "POST",
        r.status
    );
}

/// Paths whose requests carry a [`RequestLog`], which writes their (richer) access-log line.
const MODEL_ENDPOINTS: [&str; 3] = ["/v1/chat/completions", "/v1/messages", "/v1/embeddings"];

/// Middleware: the access-log line of every other request (admin API, health, metrics, OAuth,
/// model listing, unknown paths) — method, path (never the query, which may carry filter
/// values), status, latency and the request id when the answer has one. Installed only when
/// `log.access` is not `off`.
pub async fn access_line_for_other_routes(
    axum::extract::State(access): axum::extract::State<AccessLog>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let path = req.uri().path();
    if MODEL_ENDPOINTS.contains(&path) || !access.samples(rand::random::<u64>()) {
        return next.run(req).await;
    }
    let method = req.method().clone();
    let path = path.to_owned();
    let started = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16();
    let request_id = response
        .headers()
        .get(crate::headers::REQUEST_ID)
        .and_then(|v| v.to_str().ok());
    tracing::info!(
        target: "portcullis::access",
        request_id,
        method = %method,
        path = %path,
        status,
        latency_ms = started.elapsed().as_secs_f64() * 1e3,
        "{method} {path} {status}"
    );
    response
}

/// Text of a body for the log, cut at [`MAX_LOGGED_BODY`].
pub fn body_text(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(MAX_LOGGED_BODY)];
    String::from_utf8_lossy(cut).into_owned()
}
