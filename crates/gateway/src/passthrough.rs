//! The native pass-through, `/{provider}/…`: a provider's own API, for what the gateway does
//! not translate (images, audio, batches, files…), forwarded as it is to the provider named by
//! the first path segment.
//!
//! **Which paths.** A path whose first segment names a configured provider and is none of
//! the gateway's own top-level segments ([`RESERVED`]: `v1`, `admin`, `mcp`, `oauth`,
//! `.well-known`, `healthz`, `readyz`, `metrics`). It is served by the router's
//! fallback, so a gateway route always wins, and a provider named like a gateway path is never
//! reached this way. Anything else is the gateway's 404.
//!
//! **Where to.** The rest of the path, then the query string, after the provider's base URL
//! without its version segment ([`Provider::native_root`]): `POST /openai/v1/images/generations`
//! → `https://api.openai.com/v1/images/generations`; a client SDK's base URL becomes
//! `<gateway>/<provider>/v1` (`/v1beta` for Gemini). `.` and `..` segments are refused.
//!
//! **Who.** The caller authenticates with its gateway credential, as for `/v1/…` (the
//! `models` scope; a key with a `models` list must admit all of the provider's models,
//! `<provider>/*` or `*`). That credential never goes upstream: the provider's key is the
//! caller's from the vault (as [`Dispatcher::credential_for`](crate::dispatch::Dispatcher::credential_for)
//! resolves it for chat, `x-portcullis-provider-key` included), else the configured one, put
//! in the provider's own way; token and SigV4 providers are authenticated by
//! [`UpstreamAuth`](crate::upstream_auth::UpstreamAuth) (a signed request's body is read
//! whole first, since the signature covers it).
//!
//! **What is forwarded.** The method, the caller's headers except hop-by-hop ones, `Host`,
//! credentials of any kind (`Authorization`, `x-api-key`, `api-key`, `x-goog-api-key`,
//! cookies) and the gateway's own `x-portcullis-*`, with the provider's configured headers on
//! top; the body as it arrives. The answer comes back with its status, headers (hop-by-hop
//! ones removed) and body as they arrive: multipart uploads, binary downloads and
//! server-sent events stream both ways, never buffered.
//!
//! **Limits, timeouts, log.** The request is admitted by the caller's rate rules (key, user,
//! team, and the provider's) as one request with no tokens; the answer's headers must arrive
//! within the upstream client's first-byte timeout and the answer then may not stall for
//! longer than [`IDLE_TIMEOUT`]. The log record (endpoint `passthrough`, the provider, the
//! status, the latency when the answer ends) carries the path, the method and the bytes each
//! way in its metadata; no usage, no cost.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use http::header::{
    AUTHORIZATION, CONNECTION, COOKIE, HOST, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRAILER,
    TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderMap, HeaderName, Uri};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use portcullis_core::{ErrorKind, GatewayError};
use portcullis_limits::Subjects;
use portcullis_providers::{Authentication, Provider, UpstreamRequest};
use serde_json::Value;
use tokio::time::Sleep;
use tracing::Instrument;

use crate::dispatch::KeyChoice;
use crate::limits::{self, Demand, RateHeaders};
use crate::pipeline::{Exchange, Operation, Stage};
use crate::request_log::RequestLog;
use crate::state::AppState;

/// First path segments that are the gateway's own: never a pass-through, whatever providers
/// are called.
pub const RESERVED: [&str; 8] = [
    "v1",
    "admin",
    "mcp",
    "oauth",
    ".well-known",
    "healthz",
    "readyz",
    "metrics",
];

/// How long a streamed answer may go without a byte before it is ended.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Headers that belong to one connection, never forwarded either way.
const HOP_BY_HOP: [HeaderName; 7] = [
    CONNECTION,
    TE,
    TRAILER,
    TRANSFER_ENCODING,
    UPGRADE,
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
];

/// The router's fallback: the pass-through when the path names a configured provider, else
/// the gateway's 404.
pub async fn fallback(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let provider = target_provider(&state, req.uri().path());
    match provider {
        Some(provider) => serve(state, provider, req).await,
        None => not_found(req.method(), req.uri(), req.headers()),
    }
}

/// The gateway's 404 for a path nothing serves, in the caller's dialect.
fn not_found(method: &http::Method, uri: &Uri, headers: &HeaderMap) -> Response {
    let e = GatewayError::new(
        ErrorKind::NotFound,
        format!("Unknown endpoint: {method} {}", uri.path()),
    )
    .with_code("unknown_endpoint");
    crate::respond::error(
        crate::models::dialect_of(headers),
        &e,
        &uuid::Uuid::now_v7(),
    )
}

/// The provider a pass-through path names: its first segment, when that is a configured
/// provider and not one of the gateway's [`RESERVED`] segments.
fn target_provider(state: &AppState, path: &str) -> Option<String> {
    let first = path.strip_prefix('/')?.split('/').next()?;
    if first.is_empty() || RESERVED.contains(&first) {
        return None;
    }
    state
        .runtime()
        .registry
        .provider(first)
        .map(|p| p.name().to_owned())
}

async fn serve(state: Arc<AppState>, provider: String, req: Request) -> Response {
    let mut x = Exchange::begin(&state, Operation::Passthrough, req.headers());
    x.dialect = crate::models::dialect_of(req.headers());
    let span = x.span.clone();
    let result = run(&state, &mut x, &provider, req).instrument(span).await;
    x.record(result)
}

async fn run(
    state: &AppState,
    x: &mut Exchange,
    name: &str,
    req: Request,
) -> Result<Response, GatewayError> {
    let (parts, body) = req.into_parts();
    let runtime = x.runtime.clone();
    let provider = runtime
        .registry
        .provider(name)
        .ok_or_else(|| GatewayError::new(ErrorKind::NotFound, "Unknown provider"))?;
    let path = parts.uri.path();
    let rest = &path[1 + name.len()..];
    if let Some(r) = x.log.record() {
        r.provider = Some(Arc::from(name));
        r.metadata =
            Some(serde_json::json!({"method": parts.method.as_str(), "path": rest}).to_string());
    }

    // authenticate
    let principal = Stage::Authenticate
        .run_async(state.auth.authenticate_logged(&parts.headers, &mut x.log))
        .await?;
    x.log.identity(&principal.identity);
    let who = &principal.identity;
    if !who.has_scope("models") {
        return Err(GatewayError::new(
            ErrorKind::PermissionDenied,
            "This access token lacks the `models` scope",
        )
        .with_code("insufficient_scope"));
    }
    let options = crate::headers::request_options(&parts.headers)?;
    // authorize: the pass-through reaches every model of the provider.
    if !who.may_use_model(&format!("{name}/*")) {
        return Err(GatewayError::new(
            ErrorKind::PermissionDenied,
            format!("This API key is not allowed to use the provider `{name}` directly"),
        )
        .with_code("model_not_allowed"));
    }
    let uri = upstream_uri(provider, rest, parts.uri.query())?;

    // admit: one request, no tokens, no cost.
    let _admission = match runtime
        .limiter
        .as_ref()
        .filter(|l| !l.is_empty() || principal.rules.is_some())
    {
        None => None,
        Some(limiter) => {
            let subjects = Subjects {
                key: who.key_id.as_deref(),
                user: who.user.as_deref(),
                team: who.team.as_deref(),
                model: None,
                provider: Some(name),
                route: None,
                tool: None,
                server: None,
            };
            let demand = Demand {
                input_tokens: 0,
                output_tokens: 0,
            };
            match Stage::Admit
                .run_async(limiter.admit_with(
                    &subjects,
                    demand.estimate(None),
                    principal.rules.as_ref(),
                ))
                .await
            {
                Ok(admission) => {
                    x.rate = admission.rate_limit().as_ref().map(RateHeaders::admitted);
                    Some(admission)
                }
                Err(refusal) => {
                    x.rate = RateHeaders::refused(&refusal);
                    return Err(limits::refusal_error(&refusal));
                }
            }
        }
    };

    // The provider's key: the caller's from the vault, else the configured one.
    let keys = KeyChoice {
        identity: who,
        alias: options.provider_key.as_deref(),
    };
    let credential = state.dispatcher.credential_for(provider, &keys)?;
    if let Some(r) = x.log.record() {
        r.provider_key_id = credential.as_ref().map(|c| c.id.clone());
        r.attempts = 1;
    }
    let mut headers = forwarded_headers(&parts.headers);
    for (n, v) in &provider.native_headers(credential.as_deref()) {
        headers.insert(n.clone(), v.clone());
    }

    let sent = Arc::new(AtomicU64::new(0));
    let client = state.dispatcher.client.current();
    let signed = matches!(provider.authentication(), Authentication::SigV4(_));
    // A signature covers the body: read it whole (within the gateway's body limit) first.
    let (buffered, body) = if signed {
        let bytes = crate::body::read(
            Some(&state.body_budget),
            body,
            &parts.headers,
            runtime.max_request_body_bytes,
        )
        .await?;
        sent.store(bytes.len() as u64, Ordering::Relaxed);
        (Some(bytes), None)
    } else {
        (None, Some(body))
    };
    let mut upstream = UpstreamRequest {
        method: parts.method.clone(),
        uri,
        headers,
        body: buffered.clone().unwrap_or_default(),
    };
    state
        .dispatcher
        .upstream_auth
        .authenticate(provider, &mut upstream, &client)
        .await?;
    let body = match body {
        None => Body::from(upstream.body),
        Some(streamed) => Body::new(Counted::new(streamed, sent.clone(), None)),
    };
    let mut request = http::Request::builder()
        .method(upstream.method)
        .uri(upstream.uri)
        .body(body)
        .map_err(|e| {
            GatewayError::internal("The upstream request could not be built").with_source(e)
        })?;
    *request.headers_mut() = upstream.headers;
    crate::trace::inject(request.headers_mut());

    let response = Stage::Dispatch
        .run_async(client.send_streaming(request, name, None))
        .await?;
    let status = response.status();
    let (mut resp_parts, incoming) = response.into_parts();
    for h in &HOP_BY_HOP {
        resp_parts.headers.remove(h);
    }
    let finish = Finish {
        log: x.log.take(),
        status: status.as_u16(),
        sent,
    };
    let mut counted = Counted::new(
        incoming.map_err(axum::Error::new),
        Arc::new(AtomicU64::new(0)),
        Some(finish),
    );
    // An empty answer (204, `HEAD`) is never polled: it ends here.
    if counted.inner.is_end_stream() {
        counted.end(None);
    }
    let body = Body::new(counted);
    let mut resp = Response::from_parts(resp_parts, body);
    resp.headers_mut().insert(
        crate::headers::REQUEST_ID,
        http::HeaderValue::try_from(x.id.to_string()).unwrap_or(http::HeaderValue::from_static("")),
    );
    Ok(resp)
}

/// The upstream URL: the provider's native root, the rest of the path, the query.
fn upstream_uri(provider: &Provider, rest: &str, query: Option<&str>) -> Result<Uri, GatewayError> {
    let dot = |s: &str| {
        let s = s.to_ascii_lowercase().replace("%2e", ".");
        s == "." || s == ".."
    };
    if rest.split('/').any(dot) {
        return Err(GatewayError::invalid_request(
            "A pass-through path may not hold `.` or `..` segments",
        ));
    }
    let rest = if rest.is_empty() { "/" } else { rest };
    let mut url = format!("{}{rest}", provider.native_root());
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    url.parse::<Uri>()
        .map_err(|_| GatewayError::invalid_request("The pass-through path is not a valid URL"))
}

/// The caller's headers that go upstream: all but hop-by-hop ones, `Host`, credentials and
/// the gateway's own.
fn forwarded_headers(caller: &HeaderMap) -> HeaderMap {
    // Named by `Connection`: hop-by-hop too.
    let listed: Vec<String> = caller
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .collect();
    let mut out = HeaderMap::with_capacity(caller.len());
    for (n, v) in caller {
        let s = n.as_str();
        let dropped = HOP_BY_HOP.contains(n)
            || [HOST, AUTHORIZATION, COOKIE].contains(n)
            || matches!(
                s,
                "keep-alive" | "x-api-key" | "api-key" | "x-goog-api-key" | "proxy-connection"
            )
            || s.starts_with("x-portcullis-")
            || listed.iter().any(|l| l == s);
        if !dropped {
            out.append(n.clone(), v.clone());
        }
    }
    out
}

/// What the answer's end completes: the log record, with the bytes each way.
struct Finish {
    log: RequestLog,
    status: u16,
    sent: Arc<AtomicU64>,
}

impl Finish {
    fn complete(mut self, received: u64, failed: Option<&str>) {
        let sent = self.sent.load(Ordering::Relaxed);
        if let Some(r) = self.log.record() {
            let mut meta = r
                .metadata
                .as_deref()
                .and_then(|m| serde_json::from_str::<serde_json::Map<String, Value>>(m).ok())
                .unwrap_or_default();
            meta.insert("request_bytes".into(), sent.into());
            meta.insert("response_bytes".into(), received.into());
            r.metadata = Some(Value::Object(meta).to_string());
            if let Some(why) = failed {
                r.error_type = Some("UpstreamError".to_owned());
                r.error_message = Some(why.to_owned());
            }
        }
        self.log.finish(self.status);
    }
}

/// A body passed through as it arrives, its bytes counted; the answer's also completes the
/// log record when it ends (or is abandoned: the record's drop logs a 499), and ends when no
/// byte arrives for [`IDLE_TIMEOUT`].
struct Counted<B> {
    inner: B,
    bytes: Arc<AtomicU64>,
    finish: Option<Finish>,
    idle: Option<Pin<Box<Sleep>>>,
}

impl<B> Counted<B> {
    fn new(inner: B, bytes: Arc<AtomicU64>, finish: Option<Finish>) -> Self {
        let idle = finish
            .is_some()
            .then(|| Box::pin(tokio::time::sleep(IDLE_TIMEOUT)));
        Self {
            inner,
            bytes,
            finish,
            idle,
        }
    }

    fn end(&mut self, failed: Option<&str>) {
        if let Some(f) = self.finish.take() {
            f.complete(self.bytes.load(Ordering::Relaxed), failed);
        }
    }
}

impl<B> HttpBody for Counted<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                if let Some(idle) = &mut this.idle {
                    idle.as_mut()
                        .reset(tokio::time::Instant::now() + IDLE_TIMEOUT);
                }
                // A body of known length may never be polled past its last frame.
                if this.inner.is_end_stream() {
                    this.end(None);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                let e: axum::BoxError = e.into();
                this.end(Some(&format!("the answer broke off: {e}")));
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.end(None);
                Poll::Ready(None)
            }
            Poll::Pending => {
                if let Some(idle) = &mut this.idle
                    && idle.as_mut().poll(cx).is_ready()
                {
                    this.end(Some("the answer stalled"));
                    return Poll::Ready(Some(Err("the upstream answer stalled".into())));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_providers::{ProviderKind, ProviderSpec, Secret};

    fn provider(kind: ProviderKind, base: &str) -> Provider {
        let mut spec = ProviderSpec::new(kind.id(), kind);
        spec.api_key = Some(Secret::new("k"));
        spec.base_url = Some(base.into());
        Provider::new(spec).unwrap()
    }

    #[test]
    fn the_rest_of_the_path_follows_the_base_url_without_its_version() {
        let p = provider(ProviderKind::OpenAi, "https://api.openai.com/v1");
        assert_eq!(
            upstream_uri(&p, "/v1/images/generations", Some("a=1")).unwrap(),
            "https://api.openai.com/v1/images/generations?a=1"
        );
        let p = provider(ProviderKind::Groq, "https://api.groq.com/openai/v1/");
        assert_eq!(
            upstream_uri(&p, "/v1/audio/speech", None).unwrap(),
            "https://api.groq.com/openai/v1/audio/speech"
        );
        let p = provider(ProviderKind::Gemini, "https://g.example/v1beta");
        assert_eq!(
            upstream_uri(&p, "/v1beta/files", None).unwrap(),
            "https://g.example/v1beta/files"
        );
        for bad in ["/v1/../admin", "/v1/%2E%2e/x", "/./v1"] {
            assert!(upstream_uri(&p, bad, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn credentials_hop_by_hop_and_gateway_headers_stay_behind() {
        let mut h = HeaderMap::new();
        for (n, v) in [
            ("authorization", "Bearer gw"),
            ("x-api-key", "gw"),
            ("api-key", "gw"),
            ("x-goog-api-key", "gw"),
            ("cookie", "c"),
            ("host", "gw.example"),
            ("connection", "close, x-drop"),
            ("x-drop", "1"),
            ("keep-alive", "5"),
            ("transfer-encoding", "chunked"),
            ("x-portcullis-provider-key", "a"),
            ("content-type", "audio/wav"),
            ("accept", "text/event-stream"),
            ("openai-beta", "x"),
        ] {
            h.insert(
                HeaderName::from_static(n),
                http::HeaderValue::from_static(v),
            );
        }
        let out = forwarded_headers(&h);
        let names: Vec<&str> = out.keys().map(HeaderName::as_str).collect();
        assert_eq!(names.len(), 3, "{names:?}");
        for kept in ["content-type", "accept", "openai-beta"] {
            assert!(out.contains_key(kept), "{kept}");
        }
    }
}
