//! W3C trace context (`traceparent`, `tracestate`) between HTTP headers and `tracing` spans:
//! a caller's context becomes the parent of the gateway's server span, and the current span's
//! context goes out with each upstream request.

use http::HeaderMap;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Makes the trace context in `headers` (if any) the parent of `span`, which must not have
/// been entered yet. Without a valid `traceparent` the span starts a new trace.
pub fn set_parent_from_headers(span: &tracing::Span, headers: &HeaderMap) {
    if span.is_disabled() || !headers.contains_key("traceparent") {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    if parent.span().span_context().is_valid() {
        // Fails only for a span the exporting layer does not see, which has no parent to take.
        let _ = span.set_parent(parent);
    }
}

/// Writes `span`'s trace context into `headers` (`traceparent`, and `tracestate` when the
/// trace carries one), replacing any already there. Nothing is written for a span that is not
/// exported.
pub fn inject_span(span: &tracing::Span, headers: &mut HeaderMap) {
    if span.is_disabled() {
        return;
    }
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return;
    }
    TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
}

/// The trace id and span id of `span` as lowercase hex, when it is exported.
pub fn ids(span: &tracing::Span) -> Option<(String, String)> {
    if span.is_disabled() {
        return None;
    }
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid()
        .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
}
