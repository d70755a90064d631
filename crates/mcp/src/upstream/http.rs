//! A remote server over Streamable HTTP.
//!
//! Every message is a POST to the server's URL (`Content-Type: application/json`, `Accept:
//! application/json, text/event-stream`, the configured headers, `Mcp-Session-Id` once the
//! server gave one, `MCP-Protocol-Version` once agreed). A request's answer is one JSON
//! message or an SSE stream carrying messages tied to that request before the reply;
//! notifications and responses are accepted with `202`. A `404` for a session means it
//! expired (so does a `400` whose JSON-RPC error is about the session, as reference servers
//! answer): the connection initializes again, once, and retries. Server-initiated messages
//! arrive on a GET stream, opened when the server offers one (`405`: it does not) and reopened
//! with backoff. A request's event stream that ends before the reply is resumed with
//! `Last-Event-ID` when its events carried ids. Shutting down deletes the session.
//!
//! What a failure says names the HTTP status or the kind of connection failure, never a
//! header value.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock, RwLock, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use portcullis_dialects::frame::{Frame, Framer, SseFramer};
use serde_json::value::RawValue;
use tokio::sync::{broadcast, watch};

use super::shared::{
    BACKOFF_START, Call, Core, HEALTHY_AFTER, MAX_MESSAGE_BYTES, initialize_params, next_backoff,
    notification_bytes, reason_of, response_bytes,
};
use super::{Related, Reply, ServerInfo, Status, Upstream, UpstreamError};
use crate::config::HttpSpec;
use crate::jsonrpc::{Id, Message};

/// The session header.
const SESSION: HeaderName = HeaderName::from_static("mcp-session-id");
/// The protocol version header.
const PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");
/// The header resuming an event stream.
const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");
/// What a POST accepts.
const ACCEPT_ANSWERS: HeaderValue = HeaderValue::from_static("application/json, text/event-stream");
/// What a GET stream accepts.
const ACCEPT_EVENTS: HeaderValue = HeaderValue::from_static("text/event-stream");
const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// The HTTP client of remote MCP servers.
pub(crate) type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A pooled HTTP/1.1 and HTTP/2 client over TLS trusting the Mozilla roots and the system's.
pub(crate) fn http_client(connect_timeout: Duration) -> Result<HttpClient, rustls::Error> {
    // The system's roots are read once for every connection of the process.
    static TLS: OnceLock<Result<rustls::ClientConfig, rustls::Error>> = OnceLock::new();
    let tls = TLS
        .get_or_init(portcullis_core::tls::client_config)
        .clone()?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(https))
}

/// The configured URL and headers, checked.
pub(crate) fn endpoint(core: &Core, spec: &HttpSpec) -> Result<(Uri, HeaderMap), UpstreamError> {
    let url: Uri = spec
        .url
        .parse()
        .map_err(|_| core.unavailable("its URL is not valid"))?;
    let mut headers = HeaderMap::with_capacity(spec.headers.len());
    for (name, value) in &spec.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| core.unavailable(format!("`{name}` is not a header name")))?;
        let mut value = HeaderValue::from_str(value).map_err(|_| {
            core.unavailable(format!(
                "the value of header `{name}` is not a valid header value"
            ))
        })?;
        value.set_sensitive(true);
        headers.append(name, value);
    }
    Ok((url, headers))
}

/// Why a request could not be sent: for the caller, the kind of failure only.
pub(crate) fn transport_failure(
    core: &Core,
    e: &hyper_util::client::legacy::Error,
) -> UpstreamError {
    tracing::debug!(server = %core.server(), error = %e, "MCP server request failed");
    core.unavailable(if e.is_connect() {
        "it could not be reached"
    } else {
        "the connection to it failed"
    })
}

/// An HTTP status that is not an answer.
pub(crate) fn status_failure(core: &Core, status: StatusCode) -> UpstreamError {
    core.unavailable(format!("it answered HTTP {}", status.as_u16()))
}

/// Whether a response is an event stream.
pub(crate) fn is_event_stream(response: &Response<Incoming>) -> bool {
    response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("text/event-stream")
        })
}

/// Server-sent events read from a response body, one at a time.
pub(crate) struct EventReader {
    body: Incoming,
    framer: SseFramer,
    ready: VecDeque<Frame>,
    scratch: Vec<Frame>,
    ended: bool,
}

impl EventReader {
    pub(crate) fn new(body: Incoming) -> Self {
        Self {
            body,
            framer: SseFramer::with_max_frame_bytes(MAX_MESSAGE_BYTES),
            ready: VecDeque::new(),
            scratch: Vec::new(),
            ended: false,
        }
    }

    /// The next event; `None` at the end of the stream, `Some(Err)` when it broke or an
    /// event grew too large. Cancel-safe.
    pub(crate) async fn next(&mut self) -> Option<Result<Frame, ()>> {
        loop {
            if let Some(frame) = self.ready.pop_front() {
                return Some(Ok(frame));
            }
            if self.ended {
                return None;
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data()
                        && self.framer.feed(&data, &mut self.scratch).is_err()
                    {
                        return Some(Err(()));
                    }
                }
                Some(Err(_)) => return Some(Err(())),
                None => {
                    self.ended = true;
                    let _ = self.framer.finish(&mut self.scratch);
                }
            }
            self.ready.extend(self.scratch.drain(..));
        }
    }
}

/// The `id` and `retry` fields among an event's lines (the framer keeps them in the event's
/// raw bytes).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct EventFields {
    /// The event's id: where a resumed stream starts after.
    pub(crate) id: Option<String>,
    /// How long to wait before reconnecting.
    pub(crate) retry: Option<Duration>,
}

impl EventFields {
    pub(crate) fn of(raw: &[u8]) -> Self {
        let mut fields = Self::default();
        for line in raw.split(|b| *b == b'\n' || *b == b'\r') {
            let (name, value) = match line.iter().position(|b| *b == b':') {
                Some(colon) => (&line[..colon], &line[colon + 1..]),
                None => (line, &[][..]),
            };
            let value = value.strip_prefix(b" ").unwrap_or(value);
            match name {
                // An id with NUL is ignored, as the SSE rules say.
                b"id" if !value.contains(&0) => {
                    fields.id = Some(String::from_utf8_lossy(value).into_owned());
                }
                b"retry" => {
                    if let Some(ms) = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok()) {
                        fields.retry = Some(Duration::from_millis(ms));
                    }
                }
                _ => {}
            }
        }
        fields
    }
}

/// Reads the JSON-RPC message an event carries (an event without data carries none).
pub(crate) fn event_message(core: &Core, frame: &Frame) -> Option<Message> {
    if frame.payload.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    match Message::parse(&frame.payload) {
        Ok(message) => Some(message),
        Err(e) => {
            tracing::warn!(server = %core.server(), error = %e, "MCP server sent an event that is not JSON-RPC; skipped");
            None
        }
    }
}

/// A connection to a server over Streamable HTTP.
#[derive(Debug)]
pub struct HttpUpstream {
    inner: Arc<Inner>,
    task: tokio::task::AbortHandle,
}

struct Inner {
    core: Arc<Core>,
    client: HttpClient,
    url: Uri,
    headers: HeaderMap,
    timeout: Duration,
    session: RwLock<Option<HeaderValue>>,
    protocol: RwLock<Option<HeaderValue>>,
    /// Held while initializing, so that one expired session is renewed once.
    initializing: tokio::sync::Mutex<()>,
    stop: watch::Sender<bool>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("server", &self.core.server())
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// How a POST went.
enum Posted {
    /// The server answered.
    Answer(Response<Incoming>),
    /// The session the POST carried is gone.
    Expired(Option<HeaderValue>),
}

impl HttpUpstream {
    /// Connects to `spec` as the server `name`, calls bounded by `timeout` (the handshake
    /// too). The handshake happens in the background, retried with backoff until it succeeds.
    /// Must be called within a Tokio runtime.
    pub fn connect(
        name: String,
        spec: &HttpSpec,
        timeout: Duration,
    ) -> Result<Self, UpstreamError> {
        let core = Core::new(name);
        let (url, headers) = endpoint(&core, spec)?;
        let client = http_client(timeout)
            .map_err(|_| core.unavailable("its TLS configuration could not be built"))?;
        let inner = Arc::new(Inner {
            core: Arc::clone(&core),
            client,
            url,
            headers,
            timeout,
            session: RwLock::new(None),
            protocol: RwLock::new(None),
            initializing: tokio::sync::Mutex::new(()),
            stop: watch::channel(false).0,
        });
        let detached: Weak<Inner> = Arc::downgrade(&inner);
        core.set_detached(move |bytes| {
            if let Some(inner) = detached.upgrade()
                && let Ok(runtime) = tokio::runtime::Handle::try_current()
            {
                runtime.spawn(async move {
                    let _ = tokio::time::timeout(inner.timeout, inner.deliver(Bytes::from(bytes)))
                        .await;
                });
            }
        });
        let task = tokio::spawn(run(Arc::clone(&inner))).abort_handle();
        Ok(Self { inner, task })
    }

    /// Requests waiting for their reply.
    pub fn pending_requests(&self) -> usize {
        self.inner.core.pending_count()
    }

    /// Waits until the status is `status`, at most `within`; whether it came.
    pub async fn wait_for(&self, status: Status, within: Duration) -> bool {
        self.inner.core.wait_for(status, within).await
    }
}

impl Drop for HttpUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[async_trait]
impl Upstream for HttpUpstream {
    fn name(&self) -> &str {
        self.inner.core.server()
    }

    async fn request(
        &self,
        method: &str,
        params: Option<&RawValue>,
        related: Option<Related>,
        timeout: Duration,
    ) -> Result<Reply, UpstreamError> {
        let core = &self.inner.core;
        let mut call = core.begin(method, params, related)?;
        let exchange = async {
            self.inner.connected().await?;
            self.inner.exchange(&mut call).await
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(reply) => reply,
            Err(_) => {
                call.timed_out();
                Err(core.timeout(timeout))
            }
        }
    }

    async fn notify(&self, method: &str, params: Option<&RawValue>) -> Result<(), UpstreamError> {
        self.inner.connected().await?;
        let bytes = Bytes::from(notification_bytes(method, params));
        tokio::time::timeout(self.inner.timeout, self.inner.deliver(bytes))
            .await
            .map_err(|_| self.inner.core.timeout(self.inner.timeout))?
    }

    async fn respond(&self, id: Id, reply: Reply) -> Result<(), UpstreamError> {
        self.inner.connected().await?;
        let bytes = Bytes::from(response_bytes(&id, &reply));
        tokio::time::timeout(self.inner.timeout, self.inner.deliver(bytes))
            .await
            .map_err(|_| self.inner.core.timeout(self.inner.timeout))?
    }

    fn info(&self) -> Option<Arc<ServerInfo>> {
        self.inner.core.info()
    }

    fn notifications(&self) -> broadcast::Receiver<Message> {
        self.inner.core.subscribe()
    }

    fn status(&self) -> Status {
        self.inner.core.status()
    }

    async fn shutdown(&self) {
        let inner = &self.inner;
        inner.core.set_status(Status::Stopped);
        inner.stop.send_replace(true);
        self.task.abort();
        inner.core.fail_all("it was shut down");
        let session = inner.session.read().ok().and_then(|s| s.clone());
        if session.is_some() {
            let request = inner.request(Method::DELETE, Bytes::new(), ACCEPT_ANSWERS, session);
            let _ = tokio::time::timeout(inner.timeout, inner.client.request(request)).await;
        }
    }
}

impl Inner {
    fn session(&self) -> Option<HeaderValue> {
        self.session.read().ok().and_then(|s| s.clone())
    }

    fn set_session(&self, session: Option<HeaderValue>) {
        if let Ok(mut slot) = self.session.write() {
            *slot = session;
        }
    }

    fn set_protocol(&self, version: Option<HeaderValue>) {
        if let Ok(mut slot) = self.protocol.write() {
            *slot = version;
        }
    }

    /// A request to the endpoint with the configured headers, `session` and the agreed
    /// version.
    fn request(
        &self,
        method: Method,
        body: Bytes,
        accept: HeaderValue,
        session: Option<HeaderValue>,
    ) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = method;
        *request.uri_mut() = self.url.clone();
        let headers = request.headers_mut();
        headers.reserve(self.headers.len() + 4);
        for (name, value) in &self.headers {
            headers.append(name, value.clone());
        }
        headers.insert(ACCEPT, accept);
        if let Some(session) = session {
            headers.insert(SESSION, session);
        }
        if let Some(version) = self.protocol.read().ok().and_then(|v| v.clone()) {
            headers.insert(PROTOCOL_VERSION, version);
        }
        request
    }

    /// POSTs one message.
    async fn post(&self, body: Bytes) -> Result<Posted, UpstreamError> {
        let session = self.session();
        let mut request = self.request(Method::POST, body, ACCEPT_ANSWERS, session.clone());
        request.headers_mut().insert(CONTENT_TYPE, JSON);
        let response = match self.client.request(request).await {
            Ok(response) => response,
            Err(e) => {
                let error = transport_failure(&self.core, &e);
                self.core.set_failing(reason_of(&error));
                return Err(error);
            }
        };
        let status = response.status();
        if status == StatusCode::NOT_FOUND && session.is_some() {
            return Ok(Posted::Expired(session));
        }
        if status == StatusCode::BAD_REQUEST && session.is_some() {
            return if names_session(response).await {
                Ok(Posted::Expired(session))
            } else {
                Err(status_failure(&self.core, status))
            };
        }
        if !status.is_success() {
            let error = status_failure(&self.core, status);
            if status.is_server_error() {
                self.core.set_failing(reason_of(&error));
            }
            return Err(error);
        }
        Ok(Posted::Answer(response))
    }

    /// Waits for the first handshake, when it has not happened yet.
    async fn connected(&self) -> Result<(), UpstreamError> {
        if self.core.info().is_some() {
            return match self.core.status() {
                Status::Stopped => Err(self.core.unavailable("it was shut down")),
                _ => Ok(()),
            };
        }
        self.core.ready().await
    }

    /// Sends a request and reads its reply; an expired session is renewed once.
    async fn exchange(&self, call: &mut Call) -> Result<Reply, UpstreamError> {
        let body = Bytes::from(call.take_bytes());
        let mut renewed = false;
        loop {
            match self.post(body.clone()).await? {
                Posted::Answer(response) => {
                    let reply = self.read_answer(response, call).await;
                    if reply.is_ok() {
                        self.core.set_status(Status::Ready);
                    }
                    return reply;
                }
                Posted::Expired(stale) if !renewed => {
                    renewed = true;
                    self.renew(stale).await?;
                }
                Posted::Expired(_) => return Err(self.core.unavailable("its session expired")),
            }
        }
    }

    /// Sends a notification or a response; an expired session is renewed once.
    async fn deliver(&self, body: Bytes) -> Result<(), UpstreamError> {
        let mut renewed = false;
        loop {
            match self.post(body.clone()).await? {
                Posted::Answer(_) => return Ok(()),
                Posted::Expired(stale) if !renewed => {
                    renewed = true;
                    self.renew(stale).await?;
                }
                Posted::Expired(_) => return Err(self.core.unavailable("its session expired")),
            }
        }
    }

    /// Reads a request's answer: one JSON message, or an event stream whose messages belong to
    /// the request until its reply; `202`: the reply comes on the GET stream.
    async fn read_answer(
        &self,
        response: Response<Incoming>,
        call: &mut Call,
    ) -> Result<Reply, UpstreamError> {
        if response.status() == StatusCode::ACCEPTED {
            return call.reply().await;
        }
        if is_event_stream(&response) {
            return self.follow_stream(response.into_body(), call).await;
        }
        let body = Limited::new(response.into_body(), MAX_MESSAGE_BYTES)
            .collect()
            .await
            .map_err(|_| self.core.unavailable("its answer could not be read"))?
            .to_bytes();
        let message = Message::parse(&body)
            .map_err(|_| self.core.protocol("its answer is not a JSON-RPC message"))?;
        self.core.dispatch(message, Some(call.id));
        call.try_reply()
            .unwrap_or_else(|| Err(self.core.protocol("its answer is not the request's reply")))
    }

    /// Reads a request's event stream until its reply. A stream that ends first, after events
    /// with ids, is resumed with a GET carrying `Last-Event-ID` after the wait the server asked
    /// for (`retry`, 1 s when it named none), until the reply comes or the call times out.
    async fn follow_stream(&self, body: Incoming, call: &mut Call) -> Result<Reply, UpstreamError> {
        let mut events = EventReader::new(body);
        let mut last_id: Option<String> = None;
        let mut retry = Duration::from_secs(1);
        loop {
            let event = tokio::select! {
                biased;
                reply = call.reply() => return reply,
                event = events.next() => event,
            };
            match event {
                Some(Ok(frame)) => {
                    let fields = EventFields::of(&frame.raw);
                    if let Some(id) = fields.id {
                        // An empty id forgets the last one.
                        last_id = Some(id).filter(|id| !id.is_empty());
                    }
                    if let Some(wait) = fields.retry {
                        retry = wait;
                    }
                    if let Some(message) = event_message(&self.core, &frame) {
                        self.core.dispatch(message, Some(call.id));
                    }
                    continue;
                }
                Some(Err(())) | None => {
                    if let Some(reply) = call.try_reply() {
                        return reply;
                    }
                }
            }
            let Some(resume_from) = last_id.as_deref() else {
                return Err(self
                    .core
                    .unavailable("its event stream ended before the reply"));
            };
            let cursor = HeaderValue::from_str(resume_from).map_err(|_| {
                self.core
                    .protocol("its event id is not a valid header value")
            })?;
            tokio::time::sleep(retry).await;
            let mut request =
                self.request(Method::GET, Bytes::new(), ACCEPT_EVENTS, self.session());
            request.headers_mut().insert(LAST_EVENT_ID, cursor);
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| transport_failure(&self.core, &e))?;
            if !response.status().is_success() || !is_event_stream(&response) {
                return Err(status_failure(&self.core, response.status()));
            }
            events = EventReader::new(response.into_body());
        }
    }

    /// The `initialize` handshake, in a new session.
    async fn handshake(&self) -> Result<(), UpstreamError> {
        self.set_session(None);
        self.set_protocol(None);
        let params = initialize_params();
        let mut call = self.core.begin("initialize", Some(&params), None)?;
        let body = Bytes::from(call.take_bytes());
        call.never_cancel();
        let response = match self.post(body).await? {
            Posted::Answer(response) => response,
            Posted::Expired(_) => return Err(self.core.unavailable("it answered HTTP 404")),
        };
        let session = response.headers().get(SESSION).cloned().map(|mut s| {
            s.set_sensitive(true);
            s
        });
        self.set_session(session);
        let reply = self.read_answer(response, &mut call).await?;
        let info = self.core.accept_initialize(reply)?;
        self.set_protocol(HeaderValue::from_str(&info.protocol_version).ok());
        let initialized = Bytes::from(notification_bytes("notifications/initialized", None));
        match self.post(initialized).await? {
            Posted::Answer(_) => Ok(()),
            Posted::Expired(_) => Err(self.core.unavailable("its session expired")),
        }
    }

    /// Initializes again unless another caller already renewed `stale`.
    async fn renew(&self, stale: Option<HeaderValue>) -> Result<(), UpstreamError> {
        let _one_at_a_time = self.initializing.lock().await;
        if self.session() != stale {
            return Ok(());
        }
        tracing::info!(server = %self.core.server(), "MCP session expired; initializing again");
        tokio::time::timeout(self.timeout, self.handshake())
            .await
            .map_err(|_| self.core.timeout(self.timeout))?
    }

    /// Reads the GET stream until it ends; whether the server offers one.
    async fn listen_once(&self) -> bool {
        let session = self.session();
        let request = self.request(Method::GET, Bytes::new(), ACCEPT_EVENTS, session.clone());
        let response = match self.client.request(request).await {
            Ok(response) => response,
            Err(e) => {
                tracing::debug!(server = %self.core.server(), error = %e, "MCP GET stream failed");
                return true;
            }
        };
        let status = response.status();
        if status == StatusCode::METHOD_NOT_ALLOWED {
            tracing::debug!(server = %self.core.server(), "MCP server offers no GET stream");
            return false;
        }
        if status == StatusCode::NOT_FOUND && session.is_some() {
            let _ = self.renew(session).await;
            return true;
        }
        if !status.is_success() || !is_event_stream(&response) {
            tracing::debug!(server = %self.core.server(), status = status.as_u16(), "MCP GET stream refused");
            return true;
        }
        let mut events = EventReader::new(response.into_body());
        while let Some(Ok(frame)) = events.next().await {
            if let Some(message) = event_message(&self.core, &frame) {
                self.core.dispatch(message, None);
            }
        }
        true
    }
}

/// Whether a `400` answer is a JSON-RPC error about the session: the TypeScript SDK's
/// reference servers answer an unknown session so ("Bad Request: No valid session ID
/// provided") instead of with `404`.
async fn names_session(response: Response<Incoming>) -> bool {
    const MAX_ERROR_BODY: usize = 64 << 10;
    let Ok(body) = Limited::new(response.into_body(), MAX_ERROR_BODY)
        .collect()
        .await
    else {
        return false;
    };
    match Message::parse(&body.to_bytes()) {
        Ok(Message::Response(crate::jsonrpc::Response {
            outcome: crate::jsonrpc::Outcome::Error(error),
            ..
        })) => error.message.to_ascii_lowercase().contains("session"),
        _ => false,
    }
}

/// Initializes (retrying with backoff), then keeps the GET stream open while the server
/// offers it.
async fn run(inner: Arc<Inner>) {
    let mut backoff = BACKOFF_START;
    loop {
        let attempt = {
            let _one_at_a_time = inner.initializing.lock().await;
            tokio::time::timeout(inner.timeout, inner.handshake()).await
        };
        let error = match attempt {
            Ok(Ok(())) => break,
            Ok(Err(e)) => e,
            Err(_) => inner.core.timeout(inner.timeout),
        };
        tracing::warn!(server = %inner.core.server(), error = %error, "MCP server failed to initialize");
        inner.core.set_failing(reason_of(&error));
        tokio::time::sleep(backoff).await;
        backoff = next_backoff(backoff);
    }
    inner.core.set_status(Status::Ready);
    tracing::info!(server = %inner.core.server(), "MCP server ready");
    let mut backoff = BACKOFF_START;
    loop {
        let opened = Instant::now();
        if !inner.listen_once().await || *inner.stop.borrow() {
            return;
        }
        if opened.elapsed() >= HEALTHY_AFTER {
            backoff = BACKOFF_START;
        }
        tokio::time::sleep(backoff).await;
        backoff = next_backoff(backoff);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_and_retry_are_read_from_the_raw_event() {
        let fields = EventFields::of(b": comment\nretry: 250\nid: stream-1/7\ndata:\n\n");
        assert_eq!(fields.id.as_deref(), Some("stream-1/7"));
        assert_eq!(fields.retry, Some(Duration::from_millis(250)));
        assert_eq!(EventFields::of(b"data: {}\r\n\r\n"), EventFields::default());
        assert_eq!(EventFields::of(b"id\ndata: x\n\n").id.as_deref(), Some(""));
    }
}
