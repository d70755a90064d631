//! Request-path spans for OpenTelemetry traces (exported by `portcullis-telemetry` when
//! telemetry is configured).
//!
//! Each model request gets a server span ([`request_span`], a child of the caller's
//! `traceparent`), a child span per pipeline stage ([`stage`]) and a client span per upstream
//! attempt ([`attempt_span`]), whose trace context goes out with the upstream request
//! ([`inject`]). The `record_*` functions put the OpenTelemetry GenAI semantic-convention
//! attributes on these spans.
//!
//! With telemetry off every helper checks one atomic flag and returns a disabled span (no
//! allocation, no subscriber call); the `record_*` functions return at once for a disabled span.

use http::HeaderMap;
use portcullis_core::{ChatRequest, ChatResponse, ErrorKind, GatewayError, StopReason, Usage};
use portcullis_telemetry::semconv;
use portcullis_telemetry::{TARGET, enabled};
use tracing::Span;
use tracing::field::Empty;

/// The server span of one model request: `operation` is [`semconv::OPERATION_CHAT`] or
/// [`semconv::OPERATION_EMBEDDINGS`]; the span's parent is the trace context in the caller's
/// `traceparent` header, when there is a valid one. Enter it (or instrument the handler's
/// future with it) for the whole request.
pub fn request_span(operation: &'static str, headers: &HeaderMap) -> Span {
    if !enabled() {
        return Span::none();
    }
    let span = tracing::info_span!(
        target: TARGET,
        "request",
        otel.name = operation,
        otel.kind = "server",
        otel.status_code = Empty,
        gen_ai.operation.name = operation,
        gen_ai.provider.name = Empty,
        gen_ai.request.model = Empty,
        gen_ai.request.max_tokens = Empty,
        gen_ai.request.temperature = Empty,
        gen_ai.request.top_p = Empty,
        gen_ai.request.seed = Empty,
        gen_ai.request.choice.count = Empty,
        gen_ai.response.model = Empty,
        gen_ai.response.id = Empty,
        gen_ai.usage.input_tokens = Empty,
        gen_ai.usage.output_tokens = Empty,
        http.response.status_code = Empty,
        error.type = Empty,
        portcullis.target = Empty,
    );
    portcullis_telemetry::propagation::set_parent_from_headers(&span, headers);
    span
}

/// A span for one pipeline stage (`accept`, `resolve`, `limits`, `cache`, `dispatch`, …), a
/// child of the current span.
pub fn stage(name: &'static str) -> Span {
    if !enabled() {
        return Span::none();
    }
    tracing::info_span!(target: TARGET, "stage", otel.name = name)
}

/// The client span of one upstream attempt at `model` on `provider`, a child of the current
/// span. Enter it (or instrument the attempt with it) around sending, so that [`inject`] gives
/// the upstream request this span as its parent.
pub fn attempt_span(provider: &str, model: &str) -> Span {
    if !enabled() {
        return Span::none();
    }
    tracing::info_span!(
        target: TARGET,
        "attempt",
        otel.name = format_args!("{provider}/{model}"),
        otel.kind = "client",
        otel.status_code = Empty,
        gen_ai.provider.name = semconv::provider_name(provider),
        gen_ai.request.model = model,
        gen_ai.response.model = Empty,
        http.response.status_code = Empty,
        error.type = Empty,
    )
}

/// Adds the current span's trace context (`traceparent`, `tracestate`) to an upstream
/// request's headers; nothing when telemetry is off or no exported span is current.
pub fn inject(headers: &mut HeaderMap) {
    if !enabled() {
        return;
    }
    portcullis_telemetry::propagation::inject_span(&Span::current(), headers);
}

/// The model the caller asked for, as it asked (a route, an alias or `provider/model`).
///
/// The span is then named `{gen_ai.operation.name} {gen_ai.request.model}`, as the GenAI
/// conventions name client and server spans of model calls.
pub fn record_request_model(span: &Span, operation: &str, model: &str) {
    if span.is_disabled() {
        return;
    }
    span.record(semconv::REQUEST_MODEL, model);
    portcullis_telemetry::rename(span, format!("{operation} {model}"));
}

/// The chat request's model and sampling parameters.
pub fn record_chat_request(span: &Span, operation: &str, request: &ChatRequest) {
    if span.is_disabled() {
        return;
    }
    record_request_model(span, operation, &request.model);
    if let Some(v) = request.max_tokens {
        span.record(semconv::REQUEST_MAX_TOKENS, i64::from(v));
    }
    if let Some(v) = request.temperature {
        span.record(semconv::REQUEST_TEMPERATURE, v);
    }
    if let Some(v) = request.top_p {
        span.record(semconv::REQUEST_TOP_P, v);
    }
    if let Some(v) = request.n {
        span.record(semconv::REQUEST_CHOICE_COUNT, i64::from(v));
    }
    if !request.stop.is_empty() {
        portcullis_telemetry::set_string_list(
            span,
            semconv::REQUEST_STOP_SEQUENCES,
            request.stop.clone(),
        );
    }
}

/// The provider that served the request (or that an attempt went to).
pub fn record_provider(span: &Span, provider: &str) {
    if span.is_disabled() {
        return;
    }
    span.record(semconv::PROVIDER_NAME, semconv::provider_name(provider));
}

/// The target that served the request: its provider (`gen_ai.provider.name`) and
/// `portcullis.target` (`provider/model`, the model as sent upstream).
pub fn record_target(span: &Span, provider: &str, model: &str) {
    if span.is_disabled() {
        return;
    }
    record_provider(span, provider);
    span.record("portcullis.target", format_args!("{provider}/{model}"));
}

/// The model that answered, as the provider named it.
pub fn record_response_model(span: &Span, model: &str) {
    if span.is_disabled() || model.is_empty() {
        return;
    }
    span.record(semconv::RESPONSE_MODEL, model);
}

/// The start of a streamed answer: the model that answers and the response id.
pub fn record_response_start(span: &Span, id: &str, model: &str) {
    if span.is_disabled() {
        return;
    }
    record_response_model(span, model);
    if !id.is_empty() {
        span.record(semconv::RESPONSE_ID, id);
    }
}

/// Token usage, exactly as returned to the client (integers).
pub fn record_usage(span: &Span, usage: &Usage) {
    if span.is_disabled() {
        return;
    }
    span.record(semconv::USAGE_INPUT_TOKENS, integer(usage.input_tokens));
    span.record(semconv::USAGE_OUTPUT_TOKENS, integer(usage.output_tokens));
}

/// Why each choice stopped, in the conventions' (OpenAI's) words.
pub fn record_finish_reasons<'a>(
    span: &Span,
    reasons: impl IntoIterator<Item = Option<&'a StopReason>>,
) {
    if span.is_disabled() {
        return;
    }
    let reasons: Vec<String> = reasons
        .into_iter()
        .flatten()
        .map(|r| finish_reason(r).to_owned())
        .collect();
    if !reasons.is_empty() {
        portcullis_telemetry::set_string_list(span, semconv::RESPONSE_FINISH_REASONS, reasons);
    }
}

/// A complete chat response: response model and id, finish reasons and usage.
pub fn record_chat_response(span: &Span, response: &ChatResponse) {
    if span.is_disabled() {
        return;
    }
    record_response_model(span, &response.model);
    if !response.id.is_empty() {
        span.record(semconv::RESPONSE_ID, response.id.as_str());
    }
    record_finish_reasons(
        span,
        response.choices.iter().map(|c| c.stop_reason.as_ref()),
    );
    record_usage(span, &response.usage);
}

/// The HTTP status answered to the caller; from 500 on the request span is an error, as the
/// HTTP conventions have it for servers.
pub fn record_status(span: &Span, status: u16) {
    if span.is_disabled() {
        return;
    }
    span.record(semconv::HTTP_RESPONSE_STATUS_CODE, i64::from(status));
    if status >= 500 {
        span.record("otel.status_code", "error");
    }
}

/// The HTTP status an upstream attempt received; from 400 on the attempt is an error (with
/// the status as `error.type`), as the HTTP conventions have it for clients.
pub fn record_attempt_status(span: &Span, status: u16) {
    if span.is_disabled() {
        return;
    }
    span.record(semconv::HTTP_RESPONSE_STATUS_CODE, i64::from(status));
    if status >= 400 {
        span.record(semconv::ERROR_TYPE, tracing::field::display(status));
        span.record("otel.status_code", "error");
    }
}

/// The request or attempt failed with `error`: `error.type` and an error status.
pub fn record_error(span: &Span, error: &GatewayError) {
    if span.is_disabled() {
        return;
    }
    span.record(
        semconv::HTTP_RESPONSE_STATUS_CODE,
        i64::from(error.status().as_u16()),
    );
    span.record(semconv::ERROR_TYPE, error_type(error));
    span.record("otel.status_code", "error");
}

/// `error.type` of a gateway error: its code when it has one, else its kind.
pub fn error_type(error: &GatewayError) -> &'static str {
    if let Some(code) = error.code() {
        return code;
    }
    match error.kind() {
        ErrorKind::InvalidRequest => "invalid_request",
        ErrorKind::Authentication => "authentication",
        ErrorKind::PermissionDenied => "permission_denied",
        ErrorKind::NotFound => "not_found",
        ErrorKind::PayloadTooLarge => "payload_too_large",
        ErrorKind::RateLimited => "rate_limited",
        ErrorKind::Upstream => "upstream",
        ErrorKind::Unavailable => "unavailable",
        ErrorKind::Timeout => "timeout",
        ErrorKind::Internal => "internal",
        ErrorKind::ClientClosed => "client_closed",
    }
}

/// A count as an integer attribute: exporters send `i64` as an integer, while a `u64` field
/// becomes a string.
fn integer(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

fn finish_reason(reason: &StopReason) -> &str {
    match reason {
        StopReason::EndTurn | StopReason::StopSequence => "stop",
        StopReason::MaxTokens => "length",
        StopReason::ToolUse => "tool_calls",
        StopReason::ContentFilter => "content_filter",
        StopReason::PauseTurn => "pause_turn",
        StopReason::Other(other) => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers_are_inert_when_telemetry_is_off() {
        assert!(!enabled());
        let mut headers = HeaderMap::new();
        headers.insert(
            "traceparent",
            http::HeaderValue::from_static(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        );
        let span = request_span(semconv::OPERATION_CHAT, &headers);
        assert!(span.is_disabled());
        assert!(stage("resolve").is_disabled());
        assert!(attempt_span("openai", "gpt-4o").is_disabled());
        record_usage(&span, &Usage::default());
        let mut upstream = HeaderMap::new();
        let _entered = span.enter();
        inject(&mut upstream);
        assert!(upstream.is_empty());
    }
}
