//! OpenTelemetry traces seen from an OTLP collector: a gateway configured the way users
//! configure it (`telemetry.otlp_endpoint`, the `OTEL_*` environment) exports its spans to an
//! in-process receiver over HTTP (protobuf) and gRPC. The server span continues the caller's
//! `traceparent`, the upstream request carries the gateway's own span as parent, the spans carry
//! the GenAI attributes with the usage the client was given — and with nothing configured, no
//! connection is attempted.
//!
//! Each test installs the exporting layer as its thread's default subscriber and runs on a
//! current-thread runtime, so the gateway it starts (a task on that runtime) is the only one
//! whose spans it sees.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use portcullis_config::Source;
use portcullis_telemetry::TelemetrySettings;
use portcullis_test_support::{MockOptions, MockUpstream};
use prost::Message;
use serde_json::{Value, json};
use tracing_subscriber::layer::SubscriberExt;

use crate::common::*;

/// The caller's trace: `traceparent: 00-{CALLER_TRACE}-{CALLER_SPAN}-01`.
const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
/// The trace of the streamed request.
const STREAM_TRACE: &str = "5cf92f3577b34da6a3ce929d0e0e4737";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// `SPAN_KIND_SERVER` and `SPAN_KIND_CLIENT` of the OTLP protocol.
const KIND_SERVER: i32 = 2;
const KIND_CLIENT: i32 = 3;

/// One exported span, flattened.
#[derive(Debug, Clone)]
struct Exported {
    service_name: Option<String>,
    resource: HashMap<String, AnyValue>,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    name: String,
    kind: i32,
    attributes: HashMap<String, AnyValue>,
}

impl Exported {
    fn string(&self, key: &str) -> Option<&str> {
        match self.attributes.get(key) {
            Some(AnyValue::StringValue(s)) => Some(s),
            _ => None,
        }
    }
    fn int(&self, key: &str) -> Option<i64> {
        match self.attributes.get(key) {
            Some(AnyValue::IntValue(i)) => Some(*i),
            _ => None,
        }
    }
}

/// What the receiver was sent.
#[derive(Clone, Default)]
struct Received {
    spans: Arc<Mutex<Vec<Exported>>>,
}

impl Received {
    fn take(&self, request: ExportTraceServiceRequest) {
        let mut all = self.spans.lock().unwrap();
        for rs in request.resource_spans {
            let resource: HashMap<String, AnyValue> = rs
                .resource
                .map(|r| r.attributes)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|kv| Some((kv.key, kv.value?.value?)))
                .collect();
            let service_name = match resource.get("service.name") {
                Some(AnyValue::StringValue(s)) => Some(s.clone()),
                _ => None,
            };
            for ss in rs.scope_spans {
                for s in ss.spans {
                    all.push(Exported {
                        service_name: service_name.clone(),
                        resource: resource.clone(),
                        trace_id: hex(&s.trace_id),
                        span_id: hex(&s.span_id),
                        parent_span_id: hex(&s.parent_span_id),
                        name: s.name,
                        kind: s.kind,
                        attributes: s
                            .attributes
                            .into_iter()
                            .filter_map(|kv| Some((kv.key, kv.value?.value?)))
                            .collect(),
                    });
                }
            }
        }
    }

    fn spans(&self) -> Vec<Exported> {
        self.spans.lock().unwrap().clone()
    }

    /// The spans of `trace`, once its server span and an attempt span have arrived, waiting at
    /// most the 10 s the gateway promises.
    async fn trace(&self, trace: &str) -> Vec<Exported> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let spans: Vec<Exported> = self
                .spans()
                .into_iter()
                .filter(|s| s.trace_id == trace)
                .collect();
            if spans.iter().any(|s| s.kind == KIND_SERVER)
                && spans.iter().any(|s| s.kind == KIND_CLIENT)
            {
                return spans;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no server and attempt spans of trace {trace} within 10 s; received: {:#?}",
                self.spans()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An OTLP/HTTP receiver: `POST /v1/traces` with a protobuf `ExportTraceServiceRequest`.
async fn http_receiver() -> (SocketAddr, Received) {
    let received = Received::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |headers: http::HeaderMap, body: bytes::Bytes| {
            let sink = sink.clone();
            async move {
                assert_eq!(
                    headers
                        .get(http::header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok()),
                    Some("application/x-protobuf")
                );
                let request = ExportTraceServiceRequest::decode(body).unwrap();
                sink.take(request);
                (
                    [(http::header::CONTENT_TYPE, "application/x-protobuf")],
                    ExportTraceServiceResponse::default().encode_to_vec(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (addr, received)
}

/// An OTLP/gRPC receiver: the collector's `TraceService`.
struct GrpcReceiver(Received);

#[tonic::async_trait]
impl TraceService for GrpcReceiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.take(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

async fn grpc_receiver() -> (SocketAddr, Received) {
    let received = Received::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = TraceServiceServer::new(GrpcReceiver(received.clone()));
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
            .unwrap();
    });
    (addr, received)
}

/// A gateway in front of `mock`, configured from `telemetry_yaml` and `env` as `portcullis
/// serve` would be, with the resolved telemetry settings.
async fn gateway(
    mock: &MockUpstream,
    telemetry_yaml: &str,
    env: &[(&str, &str)],
) -> (TestGateway, Option<TelemetrySettings>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("gw.db").display());
    let yaml = format!(
        "master_key: {MASTER_KEY}\ndatabase:\n  url: \"{db}\"\nlog:\n  flush_interval_ms: 5\n{telemetry_yaml}{}",
        providers_yaml(mock)
    );
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let config = portcullis_config::from_yaml(&yaml, Source::Environment, &env)
        .unwrap_or_else(|e| panic!("test config is valid: {e}\n{yaml}"));
    let settings = config.telemetry.clone();
    (TestGateway::start_config(config).await, settings, dir)
}

/// A chat completion with the caller's `traceparent`: status, body.
async fn traced_chat(gw: &TestGateway) -> (u16, Value) {
    let r = client()
        .post(gw.at("/v1/chat/completions"))
        .bearer_auth(MASTER_KEY)
        .header("traceparent", format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"))
        .json(&json!({
            "model": "openai/gpt-4o",
            "max_tokens": 50,
            "messages": [{"role": "user", "content": "Say hello"}],
        }))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

/// Everything the contract says of one traced request, received over either protocol.
async fn exports_the_request_trace(telemetry_yaml: &str, env: &[(&str, &str)], received: Received) {
    let mock = MockUpstream::start_with(MockOptions {
        record_requests: true,
        ..MockOptions::default()
    })
    .await;
    let (gw, settings, _dir) = gateway(&mock, telemetry_yaml, env).await;
    let settings = settings.expect("telemetry is on");
    let (layer, guard) = portcullis_telemetry::install(&settings).unwrap();
    let _default = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
    // Other tests of this binary hit the gateway's span callsites on their own threads, with
    // no subscriber or with one of their own; tracing caches each callsite's interest
    // process-wide, and a cache computed while this subscriber was not yet registered can
    // leave the request's spans disabled here. Computed again, it includes this subscriber.
    tracing::callsite::rebuild_interest_cache();

    let (status, body) = traced_chat(&gw).await;
    assert_eq!(status, 200, "{body}");
    let spans = received.trace(CALLER_TRACE).await;

    // The server span continues the caller's trace, under the caller's span.
    let server: Vec<&Exported> = spans.iter().filter(|s| s.kind == KIND_SERVER).collect();
    assert_eq!(server.len(), 1, "{spans:#?}");
    let server = server[0];
    assert_eq!(server.parent_span_id, CALLER_SPAN);
    assert_eq!(server.service_name.as_deref(), Some("portcullis-test"));
    assert_eq!(
        server.resource.get("deployment.environment"),
        Some(&AnyValue::StringValue("ci".into()))
    );

    // GenAI attributes, usage as integers equal to what the client was told.
    assert_eq!(server.name, "chat openai/gpt-4o", "{server:#?}");
    assert_eq!(server.string("gen_ai.operation.name"), Some("chat"));
    assert_eq!(server.string("gen_ai.request.model"), Some("openai/gpt-4o"));
    assert_eq!(server.string("gen_ai.provider.name"), Some("openai"));
    let input = body["usage"]["prompt_tokens"].as_i64().unwrap();
    let output = body["usage"]["completion_tokens"].as_i64().unwrap();
    assert!(input > 0 && output > 0, "{body}");
    assert_eq!(
        server.int("gen_ai.usage.input_tokens"),
        Some(input),
        "{server:#?}"
    );
    assert_eq!(
        server.int("gen_ai.usage.output_tokens"),
        Some(output),
        "{server:#?}"
    );

    assert_eq!(server.int("http.response.status_code"), Some(200));
    assert_eq!(server.string("gen_ai.response.model"), Some("gpt-4o"));
    assert_eq!(server.int("gen_ai.request.max_tokens"), Some(50));
    assert!(
        matches!(
            server.attributes.get("gen_ai.response.finish_reasons"),
            Some(AnyValue::ArrayValue(a)) if a.values.len() == 1
        ),
        "{server:#?}"
    );

    // A span per pipeline stage, each inside the request's trace.
    let ids: Vec<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    let stages: Vec<&str> = spans
        .iter()
        .filter(|s| s.kind != KIND_SERVER && s.kind != KIND_CLIENT)
        .map(|s| s.name.as_str())
        .collect();
    for stage in ["authenticate", "decode", "resolve", "dispatch"] {
        assert!(stages.contains(&stage), "no `{stage}` stage in {stages:?}");
    }
    for s in &spans {
        if s.span_id != server.span_id {
            assert!(ids.contains(&s.parent_span_id.as_str()), "orphan {s:#?}");
        }
    }

    // A client span per upstream attempt, with the provider and the model sent upstream.
    let attempt = spans
        .iter()
        .find(|s| s.kind == KIND_CLIENT)
        .expect("an attempt span");
    assert_eq!(attempt.string("gen_ai.provider.name"), Some("openai"));
    assert_eq!(attempt.string("gen_ai.request.model"), Some("gpt-4o"));
    assert_eq!(attempt.int("http.response.status_code"), Some(200));

    // The upstream request carries the same trace, its parent one of the gateway's own spans.
    let upstream = mock
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/chat/completions"))
        .expect("the upstream was called");
    let traceparent = upstream
        .headers
        .get("traceparent")
        .expect("the upstream request carries a traceparent");
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!(parts[1], CALLER_TRACE, "{traceparent}");
    assert_ne!(parts[2], CALLER_SPAN, "{traceparent}");
    assert!(
        ids.contains(&parts[2]),
        "upstream parent {} is not a gateway span: {ids:?}",
        parts[2]
    );
    assert_eq!(
        parts[2], attempt.span_id,
        "the attempt span is the upstream's parent"
    );

    // A streamed answer: its request span stays open to the end of the stream and gets what
    // the stream reported — the answering model, finish reason and usage.
    let r = client()
        .post(gw.at("/v1/chat/completions"))
        .bearer_auth(MASTER_KEY)
        .header("traceparent", format!("00-{STREAM_TRACE}-{CALLER_SPAN}-01"))
        .json(&json!({
            "model": "openai/gpt-4o",
            "stream": true,
            "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "Say hello"}],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let streamed = parse_openai_stream(&r.text().await.unwrap());
    let usage = streamed.usage.expect("the stream reports usage");
    let spans = received.trace(STREAM_TRACE).await;
    let server = spans
        .iter()
        .find(|s| s.kind == KIND_SERVER)
        .expect("a server span");
    assert_eq!(server.name, "chat openai/gpt-4o");
    assert_eq!(server.string("gen_ai.response.model"), Some("gpt-4o"));
    assert_eq!(
        server.int("gen_ai.usage.input_tokens"),
        usage["prompt_tokens"].as_i64(),
        "{server:#?}"
    );
    assert_eq!(
        server.int("gen_ai.usage.output_tokens"),
        usage["completion_tokens"].as_i64(),
        "{server:#?}"
    );
    assert!(
        matches!(
            server.attributes.get("gen_ai.response.finish_reasons"),
            Some(AnyValue::ArrayValue(a)) if a.values.len() == 1
        ),
        "{server:#?}"
    );

    gw.stop().await;
    // Flushing waits for an export that runs on this runtime: off its thread.
    tokio::task::spawn_blocking(move || drop(guard))
        .await
        .unwrap();
}

#[tokio::test]
async fn spans_reach_an_otlp_http_collector_configured_in_the_file() {
    let (addr, received) = http_receiver().await;
    exports_the_request_trace(
        &format!("telemetry:\n  otlp_endpoint: http://{addr}\n  service_name: portcullis-test\n"),
        &[("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=ci")],
        received,
    )
    .await;
}

#[tokio::test]
async fn spans_reach_an_otlp_grpc_collector_configured_in_the_environment() {
    let (addr, received) = grpc_receiver().await;
    let endpoint = format!("http://{addr}");
    exports_the_request_trace(
        "",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_SERVICE_NAME", "portcullis-test"),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=ci"),
        ],
        received,
    )
    .await;
}

/// Counts the connections made to `addr`, when it can be bound.
async fn count_connections(addr: &str) -> Option<Arc<AtomicUsize>> {
    let listener = tokio::net::TcpListener::bind(addr).await.ok()?;
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while listener.accept().await.is_ok() {
            seen.fetch_add(1, Ordering::SeqCst);
        }
    });
    Some(count)
}

#[tokio::test]
async fn with_nothing_configured_no_connection_is_attempted() {
    // The OTLP default ports, where an exporter left to its defaults would go.
    let watched: Vec<Arc<AtomicUsize>> = [
        count_connections("127.0.0.1:4317").await,
        count_connections("127.0.0.1:4318").await,
    ]
    .into_iter()
    .flatten()
    .collect();
    let mock = MockUpstream::start_with(MockOptions {
        record_requests: true,
        ..MockOptions::default()
    })
    .await;
    let (gw, settings, _dir) = gateway(&mock, "", &[("OTEL_SERVICE_NAME", "unused")]).await;
    assert_eq!(settings, None, "telemetry stays off without an endpoint");

    let (status, body) = traced_chat(&gw).await;
    assert_eq!(status, 200, "{body}");
    let upstream = mock.requests();
    assert!(!upstream.is_empty());
    // The caller's trace context is not passed on by a gateway that takes no part in it.
    assert!(
        upstream
            .iter()
            .all(|r| !r.headers.contains_key("traceparent")),
        "{:?}",
        upstream[0].headers
    );
    // Longer than the export interval: anything that would be sent has been by now.
    tokio::time::sleep(Duration::from_secs(6)).await;
    for count in watched {
        assert_eq!(
            count.load(Ordering::SeqCst),
            0,
            "a connection was attempted"
        );
    }
    gw.stop().await;
}

#[test]
fn the_telemetry_block_is_checked_like_the_rest_of_the_file() {
    let problems = |yaml: &str, env: &[(&str, &str)]| -> Vec<String> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        match portcullis_config::from_yaml(yaml, Source::Environment, &env) {
            Ok(_) => Vec::new(),
            Err(e) => e.issues(),
        }
    };
    let unknown = problems("telemetry:\n  endpoint: http://c:4318\n", &[]);
    assert!(
        unknown
            .iter()
            .any(|p| p.starts_with("telemetry") && p.contains("endpoint")),
        "{unknown:?}"
    );
    let bad = problems(
        "telemetry:\n  otlp_endpoint: collector:4318\n  protocol: thrift\n",
        &[],
    );
    assert!(
        bad.iter()
            .any(|p| p.starts_with("telemetry.protocol: `thrift` is not supported")),
        "{bad:?}"
    );
    assert!(
        bad.iter()
            .any(|p| p.starts_with("telemetry.otlp_endpoint: ")),
        "{bad:?}"
    );
    // A problem in the environment names its variable.
    let env = problems(
        "listen: 127.0.0.1:8800\n",
        &[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")],
    );
    assert!(
        env.iter()
            .any(|p| p.starts_with("OTEL_EXPORTER_OTLP_PROTOCOL: `http/json`")),
        "{env:?}"
    );
    assert!(problems("telemetry:\n  otlp_endpoint: http://c:4318\n", &[]).is_empty());
}
