//! The upstream HTTP client: a pooled hyper client (HTTP/1.1 and HTTP/2 over TLS, with the
//! Mozilla and system roots) that sends what providers build and maps transport failures to
//! [`GatewayError`]s carrying blame and retryability; and the helpers every path that reads an
//! upstream answer shares ([`read_body`], [`retry_after`]). A reload that changes the client's
//! settings builds a new client and puts it in the [`ClientSlot`].
//!
//! What a transport failure says to the caller is fixed text naming the provider; the
//! transport's own words (addresses, TLS or DNS details) are the error's operator-only detail.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::RETRY_AFTER;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use portcullis_core::{ErrorKind, GatewayError};
use portcullis_providers::UpstreamRequest;

/// Client settings.
#[derive(Debug, Clone, Copy)]
pub struct ClientConfig {
    /// TCP (and TLS) connect timeout.
    pub connect_timeout: Duration,
    /// Time allowed until the response headers arrive.
    pub first_byte_timeout: Duration,
    /// Idle connections kept per host.
    pub max_idle_per_host: usize,
}

/// The pooled upstream client.
#[derive(Clone, Debug)]
pub struct UpstreamClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// The same connector's client for bodies streamed as they arrive (the native
    /// pass-through's).
    streaming: Client<HttpsConnector<HttpConnector>, axum::body::Body>,
    first_byte_timeout: Duration,
}

impl UpstreamClient {
    /// Builds the client.
    pub fn new(config: ClientConfig) -> Result<Self, rustls::Error> {
        let tls = portcullis_core::tls::client_config()?;

        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(config.connect_timeout));
        http.set_keepalive(Some(Duration::from_secs(60)));

        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);

        let builder = {
            let mut b = Client::builder(TokioExecutor::new());
            b.pool_idle_timeout(Duration::from_secs(90))
                .pool_max_idle_per_host(config.max_idle_per_host)
                .pool_timer(TokioTimer::new())
                .timer(TokioTimer::new());
            b
        };
        Ok(Self {
            client: builder.build(https.clone()),
            streaming: builder.build(https),
            first_byte_timeout: config.first_byte_timeout,
        })
    }

    /// Sends `req` and waits for the response headers.
    ///
    /// Dropping the returned future cancels the upstream call.
    pub async fn send(
        &self,
        req: UpstreamRequest,
        provider: &str,
        first_byte_timeout: Option<Duration>,
    ) -> Result<http::Response<Incoming>, GatewayError> {
        let mut builder = Request::builder().method(req.method).uri(req.uri);
        if let Some(h) = builder.headers_mut() {
            *h = req.headers;
            // The current span (the attempt's) becomes the upstream's parent in the trace.
            crate::trace::inject(h);
        }
        let request = builder.body(Full::new(req.body)).map_err(|e| {
            GatewayError::internal("The upstream request could not be built")
                .with_detail(format!("provider `{provider}`"))
                .with_source(e)
        })?;
        let timeout = first_byte_timeout.unwrap_or(self.first_byte_timeout);
        match tokio::time::timeout(timeout, self.client.request(request)).await {
            Ok(Ok(resp)) => {
                warn_on_failure(provider, resp.status());
                Ok(resp)
            }
            Ok(Err(e)) => Err(transport_error(&e, provider)),
            Err(_) => Err(GatewayError::new(
                ErrorKind::Timeout,
                format!(
                    "The upstream provider `{provider}` did not answer within {} ms",
                    timeout.as_millis()
                ),
            )),
        }
    }
}

impl UpstreamClient {
    /// Sends `req`, whose body streams as it arrives, and waits for the response headers
    /// (within `first_byte_timeout`, else the client's). Nothing in the body is buffered.
    pub async fn send_streaming(
        &self,
        req: Request<axum::body::Body>,
        provider: &str,
        first_byte_timeout: Option<Duration>,
    ) -> Result<http::Response<Incoming>, GatewayError> {
        let timeout = first_byte_timeout.unwrap_or(self.first_byte_timeout);
        match tokio::time::timeout(timeout, self.streaming.request(req)).await {
            Ok(Ok(resp)) => {
                warn_on_failure(provider, resp.status());
                Ok(resp)
            }
            Ok(Err(e)) => Err(transport_error(&e, provider)),
            Err(_) => Err(GatewayError::new(
                ErrorKind::Timeout,
                format!(
                    "The upstream provider `{provider}` did not answer within {} ms",
                    timeout.as_millis()
                ),
            )),
        }
    }
}

/// The client in force. A dispatch takes the one in force when it starts and sends every
/// attempt through it; once a reload replaces it, the old client's connections that carry an
/// answer finish it, and its idle ones close with it.
#[derive(Debug)]
pub struct ClientSlot(ArcSwap<UpstreamClient>);

impl ClientSlot {
    /// The client in force now.
    pub fn current(&self) -> Arc<UpstreamClient> {
        self.0.load_full()
    }

    /// Puts `client` in force for every dispatch that starts from now on.
    pub fn replace(&self, client: UpstreamClient) {
        self.0.store(Arc::new(client));
    }
}

impl From<UpstreamClient> for ClientSlot {
    fn from(client: UpstreamClient) -> Self {
        Self(ArcSwap::from_pointee(client))
    }
}

/// Logs, as a warning an operator acts on, an upstream refusing the gateway's own credentials
/// (401/403: its configured or stored key is wrong or revoked) or failing (5xx). Only the
/// provider's name and the status are logged — never the URL, which may carry credentials.
fn warn_on_failure(provider: &str, status: http::StatusCode) {
    match status.as_u16() {
        401 | 403 => tracing::warn!(
            provider,
            status = status.as_u16(),
            "the upstream provider `{provider}` refused the gateway's credentials ({status}): \
             check its API key"
        ),
        s if s >= 500 => tracing::warn!(
            provider,
            status = s,
            "the upstream provider `{provider}` failed ({status})"
        ),
        _ => {}
    }
}

fn transport_error(e: &hyper_util::client::legacy::Error, provider: &str) -> GatewayError {
    let what = if e.is_connect() {
        "could not be reached"
    } else {
        "closed the connection unexpectedly"
    };
    // The source chain says why (refused, DNS, TLS): for the operator, not the caller.
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        source = s.source();
    }
    GatewayError::new(
        ErrorKind::Upstream,
        format!("The upstream provider `{provider}` {what}"),
    )
    .with_detail(detail)
}

/// Largest upstream (non-streamed) response body accepted.
pub const MAX_BODY: usize = 64 * 1024 * 1024;

/// Reads an upstream answer's body (at most [`MAX_BODY`]).
pub async fn read_body(body: Incoming, provider: &str) -> Result<Bytes, GatewayError> {
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => Err(GatewayError::new(
            ErrorKind::Upstream,
            format!("Reading the answer of the upstream provider `{provider}` failed"),
        )
        .with_detail(e.to_string())),
    }
}

/// The upstream's wait before a retry: `retry-after-ms` (milliseconds, as Azure OpenAI and
/// OpenAI send beside it) when present, else `retry-after`, in seconds.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let number = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|n| n.is_finite() && *n >= 0.0)
    };
    number(RETRY_AFTER_MS)
        .map(|ms| Duration::from_secs_f64(ms / 1000.0))
        .or_else(|| number(RETRY_AFTER.as_str()).map(Duration::from_secs_f64))
}

const RETRY_AFTER_MS: &str = "retry-after-ms";
