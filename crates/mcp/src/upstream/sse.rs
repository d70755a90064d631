//! A remote server over the older HTTP+SSE transport (protocol version 2024-11-05).
//!
//! The connection GETs the server's URL as an event stream. The stream's first `endpoint`
//! event names the URL to POST messages to (relative to the stream's URL, and of the same
//! origin); the server's messages, replies included, all arrive on the stream. When the stream
//! ends, waiting requests fail with [`UpstreamError::Unavailable`] and the connection opens a
//! new one with backoff (0.5 s doubling to 30 s), initializing again.

use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use serde_json::value::RawValue;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use super::http::{
    EventReader, HttpClient, endpoint, event_message, http_client, is_event_stream, status_failure,
    transport_failure,
};
use super::shared::{
    BACKOFF_START, Core, HEALTHY_AFTER, initialize_params, next_backoff, notification_bytes,
    reason_of, response_bytes,
};
use super::{Related, Reply, ServerInfo, Status, Upstream, UpstreamError};
use crate::config::HttpSpec;
use crate::jsonrpc::{Id, Message};

/// The largest body read (and dropped) from a POST's answer.
const MAX_POST_ANSWER: usize = 64 << 10;

/// A connection to a server over HTTP+SSE.
#[derive(Debug)]
pub struct SseUpstream {
    inner: Arc<Inner>,
    task: tokio::task::AbortHandle,
}

struct Inner {
    core: Arc<Core>,
    client: HttpClient,
    url: Uri,
    headers: HeaderMap,
    timeout: Duration,
    /// Where to POST, once the open stream named it.
    endpoint: RwLock<Option<Uri>>,
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

impl SseUpstream {
    /// Connects to `spec` as the server `name`, calls bounded by `timeout` (the handshake
    /// too). The stream opens in the background. Must be called within a Tokio runtime.
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
            endpoint: RwLock::new(None),
            stop: watch::channel(false).0,
        });
        let detached: Weak<Inner> = Arc::downgrade(&inner);
        core.set_detached(move |bytes| {
            if let Some(inner) = detached.upgrade()
                && let Ok(runtime) = tokio::runtime::Handle::try_current()
            {
                runtime.spawn(async move {
                    let _ =
                        tokio::time::timeout(inner.timeout, inner.post(Bytes::from(bytes))).await;
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

impl Drop for SseUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[async_trait]
impl Upstream for SseUpstream {
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
            core.ready().await?;
            self.inner.post(Bytes::from(call.take_bytes())).await?;
            call.reply().await
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
        self.inner.core.ready().await?;
        let bytes = Bytes::from(notification_bytes(method, params));
        self.inner.post_within(bytes).await
    }

    async fn respond(&self, id: Id, reply: Reply) -> Result<(), UpstreamError> {
        self.inner.core.ready().await?;
        let bytes = Bytes::from(response_bytes(&id, &reply));
        self.inner.post_within(bytes).await
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
        self.inner.core.set_status(Status::Stopped);
        self.inner.stop.send_replace(true);
        self.task.abort();
        self.inner.set_endpoint(None);
        self.inner.core.fail_all("it was shut down");
    }
}

impl Inner {
    fn set_endpoint(&self, endpoint: Option<Uri>) {
        if let Ok(mut slot) = self.endpoint.write() {
            *slot = endpoint;
        }
    }

    /// POSTs one message to the endpoint the stream named.
    async fn post(&self, body: Bytes) -> Result<(), UpstreamError> {
        let endpoint = self
            .endpoint
            .read()
            .ok()
            .and_then(|e| e.clone())
            .ok_or_else(|| self.core.unavailable("its event stream is not open"))?;
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = endpoint;
        let headers = request.headers_mut();
        for (name, value) in &self.headers {
            headers.append(name, value.clone());
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| transport_failure(&self.core, &e))?;
        let status = response.status();
        // Read the (short) answer so that the connection can serve the next POST.
        let _ = Limited::new(response.into_body(), MAX_POST_ANSWER)
            .collect()
            .await;
        if status.is_success() {
            Ok(())
        } else {
            Err(status_failure(&self.core, status))
        }
    }

    async fn post_within(&self, body: Bytes) -> Result<(), UpstreamError> {
        tokio::time::timeout(self.timeout, self.post(body))
            .await
            .map_err(|_| self.core.timeout(self.timeout))?
    }

    /// The `initialize` handshake over the open stream.
    async fn handshake(self: Arc<Self>) -> Result<(), UpstreamError> {
        let params = initialize_params();
        let mut call = self.core.begin("initialize", Some(&params), None)?;
        let exchange = async {
            let body = Bytes::from(call.take_bytes());
            call.never_cancel();
            self.post(body).await?;
            let reply = call.reply().await?;
            let info = self.core.accept_initialize(reply)?;
            tracing::debug!(server = %self.core.server(), version = %info.protocol_version, "MCP server initialized");
            self.post(Bytes::from(notification_bytes(
                "notifications/initialized",
                None,
            )))
            .await
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| self.core.timeout(self.timeout))?
    }

    /// Opens the stream and serves it until it ends; why it ended.
    async fn stream_once(self: &Arc<Self>) -> String {
        let mut request = Request::new(Full::new(Bytes::new()));
        *request.uri_mut() = self.url.clone();
        let headers = request.headers_mut();
        for (name, value) in &self.headers {
            headers.append(name, value.clone());
        }
        headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
        let response = match tokio::time::timeout(self.timeout, self.client.request(request)).await
        {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => {
                let e = transport_failure(&self.core, &e);
                tracing::warn!(server = %self.core.server(), error = %e, "MCP event stream failed");
                return reason_of(&e);
            }
            Err(_) => {
                tracing::warn!(server = %self.core.server(), "MCP event stream did not open in time");
                return reason_of(&self.core.timeout(self.timeout));
            }
        };
        if response.status() != StatusCode::OK || !is_event_stream(&response) {
            let e = status_failure(&self.core, response.status());
            tracing::warn!(server = %self.core.server(), error = %e, "MCP event stream refused");
            return reason_of(&e);
        }
        let mut events = EventReader::new(response.into_body());
        let mut handshake: Option<JoinHandle<Result<(), UpstreamError>>> = None;
        let mut initialized = false;
        let mut ended = "its event stream closed".to_owned();
        loop {
            let handshake_done = async {
                match handshake.as_mut() {
                    Some(task) => task.await,
                    None => std::future::pending().await,
                }
            };
            let event = tokio::select! {
                event = events.next() => event,
                done = handshake_done => {
                    handshake = None;
                    match done {
                        Ok(Ok(())) => {
                            initialized = true;
                            self.core.set_status(Status::Ready);
                            tracing::info!(server = %self.core.server(), "MCP server ready");
                            continue;
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(server = %self.core.server(), error = %e, "MCP server failed to initialize");
                            ended = reason_of(&e);
                        }
                        Err(_) => {}
                    }
                    break;
                }
            };
            let Some(Ok(frame)) = event else {
                break;
            };
            match frame.event.as_deref() {
                Some("endpoint") => {
                    let named = frame.payload_text();
                    match resolve(&self.url, named.trim()) {
                        Some(endpoint) => {
                            self.set_endpoint(Some(endpoint));
                            if handshake.is_none() && !initialized {
                                handshake = Some(tokio::spawn(Arc::clone(self).handshake()));
                            }
                        }
                        None => {
                            tracing::warn!(server = %self.core.server(), "MCP server named an endpoint of another origin; refused");
                            ended = "it named an endpoint of another origin".to_owned();
                            break;
                        }
                    }
                }
                None | Some("message") => {
                    if let Some(message) = event_message(&self.core, &frame) {
                        self.core.dispatch(message, None);
                    }
                }
                Some(_) => {}
            }
        }
        if let Some(task) = handshake {
            task.abort();
        }
        ended
    }
}

/// The URL `reference` names relative to `base`, when it is of the same origin.
fn resolve(base: &Uri, reference: &str) -> Option<Uri> {
    let scheme = base.scheme()?;
    let authority = base.authority()?;
    if reference.starts_with("//") {
        return None;
    }
    if let Ok(absolute) = reference.parse::<Uri>()
        && absolute.scheme().is_some()
    {
        let same_origin =
            absolute.scheme() == Some(scheme) && absolute.authority() == Some(authority);
        return same_origin.then_some(absolute);
    }
    let path_and_query = if reference.starts_with('/') {
        reference.to_owned()
    } else {
        let path = base.path();
        let directory = &path[..path.rfind('/').map_or(0, |at| at + 1)];
        let directory = if directory.is_empty() { "/" } else { directory };
        format!("{directory}{reference}")
    };
    Uri::builder()
        .scheme(scheme.clone())
        .authority(authority.clone())
        .path_and_query(path_and_query)
        .build()
        .ok()
}

/// Keeps the stream open while the connection lives, reopening it with backoff.
async fn run(inner: Arc<Inner>) {
    let mut backoff = BACKOFF_START;
    loop {
        let opened = Instant::now();
        let ended = inner.stream_once().await;
        inner.set_endpoint(None);
        inner.core.fail_all("its event stream closed");
        if *inner.stop.borrow() {
            return;
        }
        inner.core.set_failing(ended);
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
    fn endpoints_resolve_against_the_stream_url_and_stay_on_its_origin() {
        let base: Uri = "http://127.0.0.1:3001/mcp/sse?x=1".parse().unwrap();
        let at = |r: &str| resolve(&base, r).map(|u| u.to_string());
        assert_eq!(
            at("/message?sessionId=a").as_deref(),
            Some("http://127.0.0.1:3001/message?sessionId=a")
        );
        assert_eq!(
            at("messages?s=1").as_deref(),
            Some("http://127.0.0.1:3001/mcp/messages?s=1")
        );
        assert_eq!(
            at("http://127.0.0.1:3001/m").as_deref(),
            Some("http://127.0.0.1:3001/m")
        );
        assert_eq!(at("http://evil.example/m"), None);
        assert_eq!(at("//evil.example/m"), None);
    }
}
