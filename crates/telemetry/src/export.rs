//! The OTLP exporter behind a `tracing_subscriber` layer.
//!
//! [`install`] builds a tracer provider whose batch processor sends spans every five seconds
//! (`OTEL_BSP_SCHEDULE_DELAY`) over OTLP/HTTP with protobuf bodies — through a hyper client on
//! the workspace's rustls — or over gRPC through tonic, and returns a layer that turns the
//! spans of [`crate::TARGET`] (and only those) into OpenTelemetry spans, plus the
//! [`TelemetryGuard`] that flushes what is left when the process stops.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::resource::TelemetryResourceDetector;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::registry::LookupSpan;

use crate::config::{Protocol, TelemetrySettings};

/// Longest an export may take before it is abandoned (the next batch is tried afresh).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest collector answer read (OTLP answers are a few bytes; partial-success messages more).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Why telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// Called outside a Tokio runtime (the exporter's connections live on it).
    #[error("telemetry must be installed from within the Tokio runtime")]
    NoRuntime,
    /// The exporter rejected its settings.
    #[error("OTLP exporter for {endpoint}: {source}")]
    Exporter {
        /// The endpoint.
        endpoint: String,
        /// Why.
        source: opentelemetry_otlp::ExporterBuildError,
    },
    /// The TLS client could not be set up.
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
}

/// Keeps the exporter running; dropping it (or [`TelemetryGuard::shutdown`]) exports the spans
/// still buffered and stops exporting.
///
/// Drop it outside asynchronous code (after the runtime's `block_on` returns, while the runtime
/// still exists) or on a multi-threaded runtime: flushing waits for the export, which runs on
/// the runtime.
#[derive(Debug)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Exports the spans buffered so far, waiting for the collector's answer.
    pub fn flush(&self) {
        if let Some(p) = &self.provider
            && let Err(e) = p.force_flush()
        {
            tracing::warn!("exporting spans failed: {e}");
        }
    }

    /// Exports what is buffered and stops exporting.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(p) = self.provider.take() {
            crate::set_enabled(false);
            if let Err(e) = p.shutdown() {
                tracing::warn!("exporting the last spans failed: {e}");
            }
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sets up the exporter described by `settings` and returns the layer to add to the
/// subscriber, and the guard to keep until shutdown. Must be called from within a Tokio
/// runtime. From then on [`crate::enabled`] is true.
pub fn install<S>(
    settings: &TelemetrySettings,
) -> Result<(impl Layer<S> + use<S>, TelemetryGuard), TelemetryError>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| TelemetryError::NoRuntime)?;
    let exporter_error = |source| TelemetryError::Exporter {
        endpoint: settings.endpoint.clone(),
        source,
    };
    let exporter = match settings.protocol {
        Protocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(settings.endpoint.clone())
            .with_timeout(EXPORT_TIMEOUT)
            .with_http_client(RuntimeHttpClient::new(runtime)?)
            .build()
            .map_err(exporter_error)?,
        Protocol::Grpc => {
            let mut builder = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(settings.endpoint.clone())
                .with_timeout(EXPORT_TIMEOUT);
            if settings.endpoint.starts_with("https://") {
                builder = builder.with_tls_config(
                    opentelemetry_otlp::tonic_types::transport::ClientTlsConfig::new()
                        .with_enabled_roots(),
                );
            }
            builder.build().map_err(exporter_error)?
        }
    };
    let resource = Resource::builder_empty()
        .with_detector(Box::new(TelemetryResourceDetector))
        .with_attributes(
            settings
                .resource_attributes
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
        )
        .with_service_name(settings.service_name.clone())
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("portcullis");
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_target(false)
        .with_filter(Targets::new().with_target(crate::TARGET, LevelFilter::TRACE));
    crate::set_enabled(true);
    Ok((
        layer,
        TelemetryGuard {
            provider: Some(provider),
        },
    ))
}

/// OTLP/HTTP through the workspace's hyper client and rustls (ring; WebPKI and system roots).
///
/// The batch processor exports from its own thread, so each request is spawned on the Tokio
/// runtime captured at install time and awaited from there.
#[derive(Debug)]
struct RuntimeHttpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    runtime: tokio::runtime::Handle,
}

impl RuntimeHttpClient {
    fn new(runtime: tokio::runtime::Handle) -> Result<Self, rustls::Error> {
        let tls = portcullis_core::tls::client_config()?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(EXPORT_TIMEOUT));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(2)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(https);
        Ok(Self { client, runtime })
    }
}

#[async_trait::async_trait]
impl HttpClient for RuntimeHttpClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let (parts, body) = request.into_parts();
        let request = Request::from_parts(parts, Full::new(body));
        let exchange = async move {
            let response = client.request(request).await?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_RESPONSE_BYTES)
                .collect()
                .await?
                .to_bytes();
            Ok::<_, HttpError>(Response::from_parts(parts, body))
        };
        self.runtime
            .spawn(async move {
                tokio::time::timeout(EXPORT_TIMEOUT, exchange)
                    .await
                    .map_err(|_| HttpError::from("the collector did not answer in time"))?
            })
            .await?
    }
}
