//! Connections: the accept loop and what bounds each client connection.
//!
//! - **A cap on connections.** Past `server.max_connections`, a new connection is answered
//!   `503` with `Retry-After` and `Connection: close` once its request head is read (a few
//!   such refusals at a time; beyond them, or when the head does not arrive within a second,
//!   the connection is simply closed). An HTTP/2 client gets `GOAWAY` instead.
//! - **Timeouts.** Request headers must arrive within `header_read_timeout` (hyper's HTTP/1
//!   timer); bodies at the pace of [`TimedBody`]; a connection with no request in progress is
//!   closed after `idle_timeout` (gracefully: HTTP/2 clients get `GOAWAY`).
//! - **HTTP/2 floods.** hyper/h2 bound concurrent streams, header lists, reset streams and
//!   empty DATA frames, but acknowledge every PING and SETTINGS frame; `FrameGuard` counts
//!   those per connection and answers a flood with `GOAWAY(ENHANCE_YOUR_CALM)` and a close.
//! - **Draining.** On shutdown, stop accepting, ask every connection to finish gracefully,
//!   and abort those still open after the grace period (their requests are logged as 499).
//! - **Reloads.** Each accepted connection gets the limits of the `server:` block in force
//!   (a reload changes them for connections accepted afterwards; open ones keep theirs). A
//!   lower cap takes effect as connections close.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use http::header::CONNECTION;
use http::{HeaderValue, StatusCode, Version};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use portcullis_config::ServerConfig;
use portcullis_core::{Dialect, ErrorKind, GatewayError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceExt;
use uuid::Uuid;

use crate::body::{BodyPace, TimedBody};
use crate::state::AppState;

/// Connections past the cap that may be answered 503 at the same time; more are closed.
const REFUSAL_SLOTS: usize = 64;
/// How long a refused connection may take to send its request head, and then to go away.
const REFUSAL_WAIT: Duration = Duration::from_secs(1);
/// Largest request head read from a refused connection.
const REFUSAL_HEAD_BYTES: usize = 16 * 1024;
/// How long an idle connection asked to close may take before it is dropped.
const IDLE_CLOSE_GRACE: Duration = Duration::from_secs(1);
/// The HTTP/2 client preface.
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What bounds client connections, from the `server:` block.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Time allowed to receive a request's headers.
    pub header_read_timeout: Duration,
    /// How fast request bodies must arrive.
    pub body: BodyPace,
    /// How long a connection with no request in progress stays open.
    pub idle_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
    /// Most concurrent HTTP/2 streams per connection.
    pub http2_max_concurrent_streams: u32,
    /// Largest HTTP/2 header list.
    pub http2_max_header_list_size: u32,
    /// HTTP/2 PING and SETTINGS frames allowed per second (bursts of ten seconds' worth).
    pub http2_max_control_frames_per_second: u32,
    /// How long draining waits for in-flight requests.
    pub shutdown_grace: Duration,
}

impl From<&ServerConfig> for ConnectionLimits {
    fn from(c: &ServerConfig) -> Self {
        Self {
            header_read_timeout: c.header_read_timeout,
            body: BodyPace {
                grace: c.body_read_timeout,
                min_rate: c.min_body_rate,
            },
            idle_timeout: c.idle_timeout,
            max_connections: c.max_connections,
            http2_max_concurrent_streams: c.http2_max_concurrent_streams,
            http2_max_header_list_size: c.http2_max_header_list_size,
            http2_max_control_frames_per_second: c.http2_max_control_frames_per_second,
            shutdown_grace: c.shutdown_grace,
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains.
pub(crate) async fn serve<F>(
    listener: TcpListener,
    app: Router,
    state: Arc<AppState>,
    limits: ConnectionLimits,
    shutdown: F,
) where
    F: Future<Output = ()> + Send + 'static,
{
    let mut limits = limits;
    let mut http = Arc::new(builder(&limits));
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut server = state.runtime().server.clone();
    let refusals = Arc::new(Semaphore::new(REFUSAL_SLOTS));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut last_refusal_warning: Option<Instant> = None;
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!("accepting a connection failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let runtime = state.runtime();
                if runtime.server != server {
                    let next = ConnectionLimits::from(&runtime.server);
                    resize(&permits, limits.max_connections, next.max_connections);
                    http = Arc::new(builder(&next));
                    limits = next;
                    server = runtime.server.clone();
                }
                match permits.clone().try_acquire_owned() {
                    Ok(permit) => {
                        connections.spawn(connection(
                            tcp,
                            peer,
                            http.clone(),
                            app.clone(),
                            limits,
                            stop_rx.clone(),
                            permit,
                        ));
                    }
                    Err(_) => {
                        let now = Instant::now();
                        if last_refusal_warning
                            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10))
                        {
                            last_refusal_warning = Some(now);
                            tracing::warn!(
                                max_connections = limits.max_connections,
                                "connection limit reached; refusing new connections"
                            );
                        }
                        if let Ok(slot) = refusals.clone().try_acquire_owned() {
                            tokio::spawn(refuse(tcp, state.clone(), slot));
                        }
                    }
                }
            }
            // Reap finished connections so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    state.start_draining();
    let _ = stop_tx.send(true);
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(limits.shutdown_grace, drained)
        .await
        .is_err()
    {
        tracing::warn!(
            open = connections.len(),
            "shutdown grace period elapsed; closing the remaining connections"
        );
    }
    // Aborting a connection drops its requests, which submit their records (499).
    connections.abort_all();
    while connections.join_next().await.is_some() {}
}

/// Changes the connection cap held by `permits` from `from` to `to`. A lower cap is taken as
/// open connections close: the permits they give back are withheld until the cap is met.
fn resize(permits: &Arc<Semaphore>, from: usize, to: usize) {
    let to = to.min(Semaphore::MAX_PERMITS);
    if to > from {
        permits.add_permits(to - from);
    } else if from > to {
        let surplus = from - to;
        let taken = permits.forget_permits(surplus);
        let owed = u32::try_from(surplus - taken).unwrap_or(u32::MAX);
        if owed > 0 {
            let permits = permits.clone();
            tokio::spawn(async move {
                if let Ok(held) = permits.acquire_many_owned(owed).await {
                    held.forget();
                }
            });
        }
    }
}

fn builder(limits: &ConnectionLimits) -> auto::Builder<TokioExecutor> {
    let mut http = auto::Builder::new(TokioExecutor::new());
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    http.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.http2_max_concurrent_streams)
        .max_header_list_size(limits.http2_max_header_list_size)
        .max_pending_accept_reset_streams(20)
        .max_local_error_reset_streams(1024);
    http
}

/// Serves one connection until it ends, closing it when idle or when the server drains.
async fn connection(
    tcp: TcpStream,
    peer: std::net::SocketAddr,
    http: Arc<auto::Builder<TokioExecutor>>,
    app: Router,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    let activity = Arc::new(Activity::new());
    let io = FrameGuard::new(
        tcp,
        activity.clone(),
        limits.http2_max_control_frames_per_second,
    );
    let service = ConnService {
        app,
        peer,
        activity: activity.clone(),
        pace: limits.body,
    };
    let conn = http.serve_connection_with_upgrades(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    let check = tokio::time::sleep(limits.idle_timeout);
    let mut check = std::pin::pin!(check);
    let mut draining = false;
    let mut closing_idle = false;
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = stop.changed(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            () = check.as_mut() => {
                let now = Instant::now();
                match activity.idle_deadline(limits.idle_timeout) {
                    Some(at) if at <= now => {
                        if closing_idle {
                            // Asked to close a while ago and still idle: drop it.
                            return;
                        }
                        closing_idle = true;
                        if !draining {
                            conn.as_mut().graceful_shutdown();
                        }
                        check.as_mut().reset(now + IDLE_CLOSE_GRACE);
                    }
                    Some(at) => check.as_mut().reset(at),
                    None => check.as_mut().reset(now + limits.idle_timeout),
                }
            }
        }
    }
}

/// What a connection is doing, for the idle timeout.
#[derive(Debug)]
struct Activity {
    opened: Instant,
    /// Requests in progress (until their response body is finished or dropped).
    in_flight: AtomicUsize,
    /// When the last request finished, in milliseconds since `opened`.
    idle_since_ms: AtomicU64,
    /// Bytes arrived since then (an HTTP/1 request head on its way).
    read_since_idle: AtomicBool,
    /// The connection speaks HTTP/2.
    http2: AtomicBool,
}

impl Activity {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
            read_since_idle: AtomicBool::new(false),
            http2: AtomicBool::new(false),
        }
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// When the connection counts as idle for too long, or `None` while it is busy.
    fn idle_deadline(&self, idle_timeout: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        // An HTTP/1 head that has started to arrive is bounded by the header timeout.
        if !self.http2.load(Ordering::Relaxed) && self.read_since_idle.load(Ordering::Relaxed) {
            return None;
        }
        let since = Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire));
        Some(self.opened + since + idle_timeout)
    }
}

/// A request in progress on a connection.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        let ms = u64::try_from(a.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        a.idle_since_ms.store(ms, Ordering::Release);
        a.read_since_idle.store(false, Ordering::Relaxed);
        a.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The router as one connection serves it: bodies paced, requests counted.
#[derive(Clone)]
struct ConnService {
    app: Router,
    /// The client's address, given to handlers as `ConnectInfo<SocketAddr>` (OAuth sign-in
    /// throttling counts failures per address).
    peer: std::net::SocketAddr,
    activity: Arc<Activity>,
    pace: BodyPace,
}

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let guard = self.activity.begin();
        let http1 = req.version() < Version::HTTP_2;
        let mut req = req.map(|b| Body::new(TimedBody::new(b, self.pace)));
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(self.peer));
        let fut = self.app.clone().oneshot(req);
        Box::pin(async move {
            let mut resp = match fut.await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            // A body cut for slowness leaves the connection mid-message: close it.
            if http1 && resp.status() == StatusCode::REQUEST_TIMEOUT {
                resp.headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
            Ok(resp.map(|b| {
                Body::new(Tracked {
                    inner: b,
                    _guard: guard,
                })
            }))
        })
    }
}

/// A response body that keeps its request counted as in progress until it ends.
struct Tracked {
    inner: Body,
    _guard: InFlight,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Answers a connection past the cap: reads its request head (briefly), answers 503 with
/// `Retry-After` and `Connection: close` (an HTTP/2 client gets `GOAWAY`), then lets the
/// client finish before closing so the answer is not lost to a reset.
async fn refuse(mut tcp: TcpStream, state: Arc<AppState>, _slot: OwnedSemaphorePermit) {
    let mut head = Vec::with_capacity(1024);
    let read_head = async {
        let mut buf = [0u8; 2048];
        loop {
            let n = tcp.read(&mut buf).await?;
            if n == 0 {
                return Ok::<bool, io::Error>(false);
            }
            head.extend_from_slice(&buf[..n]);
            if head.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(&head) {
                // Maybe HTTP/2: its preface holds a blank line too.
                continue;
            }
            if head.starts_with(H2_PREFACE) || head_ends(&head) {
                return Ok(true);
            }
            if head.len() >= REFUSAL_HEAD_BYTES {
                return Ok(true);
            }
        }
    };
    match tokio::time::timeout(REFUSAL_WAIT, read_head).await {
        Ok(Ok(true)) => {}
        _ => return,
    }
    let answer = if head.starts_with(H2_PREFACE) {
        h2_refusal()
    } else {
        http1_refusal(&head, &state)
    };
    if tcp.write_all(&answer).await.is_err() {
        return;
    }
    let _ = tcp.shutdown().await;
    // Lingering close: read what the client still sends until it closes, briefly.
    let drain = async {
        let mut buf = [0u8; 4096];
        let mut total = 0usize;
        while let Ok(n) = tcp.read(&mut buf).await {
            total += n;
            if n == 0 || total > 64 * 1024 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(REFUSAL_WAIT, drain).await;
}

/// Whether an HTTP/1 request head is complete.
fn head_ends(head: &[u8]) -> bool {
    head.windows(4).any(|w| w == b"\r\n\r\n")
}

/// The 503 for an HTTP/1 request refused at the connection cap, in the dialect its path
/// implies; a model request gets its log record.
fn http1_refusal(head: &[u8], state: &AppState) -> Vec<u8> {
    let path = head
        .split(|b| *b == b' ')
        .nth(1)
        .and_then(|p| std::str::from_utf8(p).ok())
        .unwrap_or("/");
    let path = path.split('?').next().unwrap_or(path);
    let endpoint = match path {
        "/v1/chat/completions" => Some(("chat_completions", Dialect::OpenAi)),
        "/v1/messages" => Some(("messages", Dialect::Anthropic)),
        "/v1/messages/count_tokens" => Some(("count_tokens", Dialect::Anthropic)),
        "/v1/embeddings" => Some(("embeddings", Dialect::OpenAi)),
        "/v1/responses" => Some(("responses", Dialect::OpenAi)),
        _ => None,
    };
    // Model endpoints have their dialect; elsewhere an `anthropic-version` header picks it.
    let dialect = match endpoint {
        Some((_, d)) => d,
        None if head
            .windows(b"anthropic-version:".len())
            .any(|w| w.eq_ignore_ascii_case(b"anthropic-version:")) =>
        {
            Dialect::Anthropic
        }
        None => Dialect::OpenAi,
    };
    let id = Uuid::now_v7();
    let err = GatewayError::new(
        ErrorKind::Unavailable,
        "The gateway has reached its connection limit; retry shortly",
    )
    .with_code("too_many_connections")
    .with_retry_after(Duration::from_secs(1));
    if let Some((endpoint, d)) = endpoint {
        let mut log = state.request_log(id, endpoint, d, std::time::Instant::now());
        log.error(&err);
        log.finish(err.status().as_u16());
    }
    let mut idbuf = [0u8; 36];
    let id = id.hyphenated().encode_lower(&mut idbuf);
    let body = portcullis_dialects::errors::encode_error(dialect, &err, Some(id));
    let mut out = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         retry-after: 1\r\nconnection: close\r\nx-portcullis-request-id: {id}\r\n\
         content-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

/// An empty SETTINGS frame and `GOAWAY(last stream 0, NO_ERROR, "connection limit")`.
fn h2_refusal() -> Vec<u8> {
    let mut out = vec![0, 0, 0, 4, 0, 0, 0, 0, 0];
    out.extend_from_slice(&goaway_frame(0, 0, b"connection limit"));
    out
}

/// A GOAWAY frame.
fn goaway_frame(last_stream: u32, code: u32, debug: &[u8]) -> Vec<u8> {
    let len = 8 + debug.len();
    let mut f = Vec::with_capacity(9 + len);
    f.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    f.push(7); // GOAWAY
    f.push(0);
    f.extend_from_slice(&0u32.to_be_bytes());
    f.extend_from_slice(&(last_stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(&code.to_be_bytes());
    f.extend_from_slice(debug);
    f
}

/// HTTP/2 error code ENHANCE_YOUR_CALM.
const ENHANCE_YOUR_CALM: u32 = 0xb;

/// The connection's byte stream, watched: marks reads for the idle timeout and, on HTTP/2,
/// counts the client's PING and SETTINGS frames (a token bucket per connection). A flood
/// gets `GOAWAY(ENHANCE_YOUR_CALM)` written between two of the server's frames, and the
/// connection fails.
pub(crate) struct FrameGuard<T> {
    io: T,
    activity: Arc<Activity>,
    read: ReadState,
    /// Frames the client may still send before the bucket is empty.
    tokens: f64,
    rate: f64,
    burst: f64,
    refilled: Instant,
    /// Highest client stream id seen, for GOAWAY.
    last_stream: u32,
    /// Bytes left in the server's current outgoing frame, and its header as it is written.
    out_left: usize,
    out_head: [u8; 9],
    out_have: usize,
    /// Tripped: the connection is being closed.
    tripped: bool,
}

enum ReadState {
    /// Comparing the first bytes with the HTTP/2 preface.
    Preface(usize),
    /// HTTP/1: nothing more to watch.
    Http1,
    /// HTTP/2 frames: the header being read, and payload bytes to skip.
    Frames {
        head: [u8; 9],
        have: usize,
        skip: usize,
    },
}

impl<T> FrameGuard<T> {
    fn new(io: T, activity: Arc<Activity>, per_second: u32) -> Self {
        let rate = f64::from(per_second.max(1));
        Self {
            io,
            activity,
            read: ReadState::Preface(0),
            tokens: rate * 10.0,
            rate,
            burst: rate * 10.0,
            refilled: Instant::now(),
            last_stream: 0,
            out_left: 0,
            out_head: [0; 9],
            out_have: 0,
            tripped: false,
        }
    }

    /// Watches bytes the client sent; returns `true` when the flood limit is crossed.
    fn inspect_read(&mut self, mut data: &[u8]) -> bool {
        while !data.is_empty() {
            match &mut self.read {
                ReadState::Http1 => return false,
                ReadState::Preface(matched) => {
                    let want = &H2_PREFACE[*matched..];
                    let n = want.len().min(data.len());
                    if data[..n] != want[..n] {
                        self.read = ReadState::Http1;
                        return false;
                    }
                    *matched += n;
                    data = &data[n..];
                    if *matched == H2_PREFACE.len() {
                        self.activity.http2.store(true, Ordering::Relaxed);
                        self.read = ReadState::Frames {
                            head: [0; 9],
                            have: 0,
                            skip: 0,
                        };
                    }
                }
                ReadState::Frames { head, have, skip } => {
                    if *skip > 0 {
                        let n = (*skip).min(data.len());
                        *skip -= n;
                        data = &data[n..];
                        continue;
                    }
                    let n = (9 - *have).min(data.len());
                    head[*have..*have + n].copy_from_slice(&data[..n]);
                    *have += n;
                    data = &data[n..];
                    if *have < 9 {
                        continue;
                    }
                    *have = 0;
                    let h = *head;
                    *skip =
                        (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
                    let (kind, flags) = (h[3], h[4]);
                    let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
                    const HEADERS: u8 = 1;
                    const SETTINGS: u8 = 4;
                    const PING: u8 = 6;
                    const ACK: u8 = 1;
                    if kind == HEADERS {
                        self.last_stream = self.last_stream.max(stream);
                    }
                    if (kind == PING || kind == SETTINGS) && flags & ACK == 0 && !self.take_token()
                    {
                        return true;
                    }
                }
            }
        }
        false
    }

    fn take_token(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Follows the frames the server writes, to know where one ends.
    fn track_written(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.out_left > 0 {
                let n = self.out_left.min(data.len());
                self.out_left -= n;
                data = &data[n..];
                continue;
            }
            let n = (9 - self.out_have).min(data.len());
            self.out_head[self.out_have..self.out_have + n].copy_from_slice(&data[..n]);
            self.out_have += n;
            data = &data[n..];
            if self.out_have == 9 {
                self.out_have = 0;
                let h = self.out_head;
                self.out_left =
                    (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
            }
        }
    }

    fn is_http2(&self) -> bool {
        matches!(self.read, ReadState::Frames { .. })
    }
}

fn flood_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "HTTP/2 control frame flood",
    )
}

impl<T: AsyncRead + AsyncWrite + Unpin> FrameGuard<T> {
    /// Writes GOAWAY(ENHANCE_YOUR_CALM) if the server is between two frames and the socket
    /// takes it at once; the connection is closed either way.
    fn try_goaway(&mut self, cx: &mut Context<'_>) {
        if self.out_left != 0 || self.out_have != 0 {
            return;
        }
        let frame = goaway_frame(self.last_stream, ENHANCE_YOUR_CALM, b"control frame flood");
        let _ = Pin::new(&mut self.io).poll_write(cx, &frame);
        let _ = Pin::new(&mut self.io).poll_flush(cx);
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for FrameGuard<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.tripped {
            return Poll::Ready(Err(flood_error()));
        }
        let before = buf.filled().len();
        let res = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = res {
            let fresh = &buf.filled()[before..];
            if !fresh.is_empty() {
                this.activity.read_since_idle.store(true, Ordering::Relaxed);
                if !matches!(this.read, ReadState::Http1) && this.inspect_read(fresh) {
                    tracing::warn!("HTTP/2 PING/SETTINGS flood; closing the connection");
                    this.tripped = true;
                    this.try_goaway(cx);
                    return Poll::Ready(Err(flood_error()));
                }
            }
        }
        res
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for FrameGuard<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.tripped {
            return Poll::Ready(Err(flood_error()));
        }
        let res = Pin::new(&mut this.io).poll_write(cx, buf);
        if this.is_http2()
            && let Poll::Ready(Ok(n)) = res
        {
            this.track_written(&buf[..n]);
        }
        res
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.tripped {
            return Poll::Ready(Err(flood_error()));
        }
        let res = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if this.is_http2()
            && let Poll::Ready(Ok(n)) = res
        {
            let mut left = n;
            for b in bufs {
                if left == 0 {
                    break;
                }
                let take = left.min(b.len());
                this.track_written(&b[..take]);
                left -= take;
            }
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
