//! OpenTelemetry traces for the gateway.
//!
//! This crate owns everything that knows about OpenTelemetry, so the rest of the workspace
//! deals only in `tracing` spans:
//! - [`config`]: the `telemetry:` block of the configuration file and the `OTEL_*`
//!   environment, resolved into [`TelemetrySettings`] (or nothing: telemetry off);
//! - [`export`]: the OTLP exporter (HTTP protobuf or gRPC) behind a `tracing_subscriber`
//!   layer, and the [`TelemetryGuard`] that flushes spans on shutdown;
//! - [`propagation`]: W3C trace context (`traceparent`, `tracestate`) read from a caller's
//!   headers and written into an upstream request's;
//! - [`semconv`]: the attribute names of the OpenTelemetry GenAI semantic conventions.
//!
//! Without the default `runtime` feature only [`config`] and [`semconv`] are built, for crates
//! that read the configuration file.
//!
//! Off by default at no cost: until [`export::install`] succeeds, [`enabled`] is one relaxed
//! atomic load returning `false`, and span helpers built on it create nothing.

pub mod config;
#[cfg(feature = "runtime")]
pub mod export;
#[cfg(feature = "runtime")]
pub mod propagation;
pub mod semconv;

use std::sync::atomic::{AtomicBool, Ordering};

pub use config::{Protocol, RawTelemetry, TelemetrySettings, resolve};
#[cfg(feature = "runtime")]
pub use export::{TelemetryError, TelemetryGuard, install};

/// The `tracing` target of every span meant for export; the exporting layer sees only these.
pub const TARGET: &str = "portcullis::trace";

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether spans are being exported (an exporter is installed and not yet shut down).
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

#[cfg(feature = "runtime")]
fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Renames `span` (as the GenAI conventions name spans once the model is known). A name
/// recorded as the `otel.name` field is lost once the span has started; this one is not.
/// Nothing happens for a span that is not exported.
#[cfg(feature = "runtime")]
pub fn rename(span: &tracing::Span, name: String) {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    if span.is_disabled() {
        return;
    }
    span.context().span().update_name(name);
}

/// Sets a string-list attribute (such as `gen_ai.response.finish_reasons`) on `span`, which
/// `tracing` fields cannot hold. Nothing happens for a span that is not exported.
#[cfg(feature = "runtime")]
pub fn set_string_list(span: &tracing::Span, key: &'static str, values: Vec<String>) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    if span.is_disabled() {
        return;
    }
    let values = values.into_iter().map(Into::into).collect();
    span.set_attribute(
        key,
        opentelemetry::Value::Array(opentelemetry::Array::String(values)),
    );
}
