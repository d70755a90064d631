//! Request bodies: reading one into memory under the size limit, the minimum arrival rate
//! ([`TimedBody`], applied to every request by [`crate::server`]) and the gateway-wide budget
//! of body bytes held in memory at once ([`BodyBudget`]).
//!
//! A body held by the gateway carries its share of the budget: the bytes returned by
//! [`read`] release it when the last reference to them is dropped.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http::header::CONTENT_LENGTH;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use portcullis_core::{ErrorKind, GatewayError};
use tokio::time::{Instant, Sleep};

/// How long a client refused for lack of body budget is asked to wait.
const BUSY_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The body-bytes budget shared by every request.
#[derive(Debug)]
pub struct BodyBudget {
    limit: AtomicUsize,
    in_flight: AtomicUsize,
}

impl BodyBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit: AtomicUsize::new(limit),
            in_flight: AtomicUsize::new(0),
        })
    }

    /// Bytes of request bodies held right now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Changes the budget to `limit` bytes. Bodies already held keep their bytes; a smaller
    /// budget refuses new bodies until enough of them are released.
    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    fn try_add(&self, n: usize) -> bool {
        if n == 0 {
            return true;
        }
        let limit = self.limit.load(Ordering::Relaxed);
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                cur.checked_add(n).filter(|next| *next <= limit)
            })
            .is_ok()
    }
}

/// Reads `body` into memory: 413 over `limit`, 408 when it arrives too slowly
/// ([`TimedBody`]) and, with a `budget`, 503 (with `Retry-After`) when the bodies in flight
/// would exceed it. A declared `Content-Length` is checked and reserved before anything is
/// read; a body of unknown length reserves its bytes as they arrive.
pub async fn read(
    budget: Option<&Arc<BodyBudget>>,
    body: Body,
    headers: &HeaderMap,
    limit: usize,
) -> Result<Bytes, GatewayError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared
        && len > limit as u64
    {
        return Err(GatewayError::payload_too_large(limit));
    }
    // `declared <= limit`, so it fits in usize.
    let declared = declared.map(|n| n as usize);
    let mut permit = BytePermit {
        budget: budget.cloned(),
        bytes: 0,
    };
    if let Some(n) = declared {
        permit.grow(n)?;
    }
    let mut body = body;
    let mut first: Option<Bytes> = None;
    let mut buf = BytesMut::new();
    let mut len = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(read_error)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        len = len.saturating_add(data.len());
        if len > limit {
            return Err(GatewayError::payload_too_large(limit));
        }
        if len > permit.bytes {
            permit.grow(len - permit.bytes)?;
        }
        // One chunk is kept as it is; more are gathered into one buffer.
        match first.take() {
            None if buf.is_empty() => first = Some(data),
            None => buf.extend_from_slice(&data),
            Some(f) => {
                buf.reserve(declared.unwrap_or(0).max(len));
                buf.extend_from_slice(&f);
                buf.extend_from_slice(&data);
            }
        }
    }
    let bytes = first.unwrap_or_else(|| buf.freeze());
    if bytes.is_empty() || permit.budget.is_none() {
        return Ok(bytes);
    }
    // Give back what was reserved for a declared length that never arrived.
    permit.shrink_to(bytes.len());
    Ok(Bytes::from_owner(Held {
        bytes,
        _permit: permit,
    }))
}

/// Bytes reserved in a [`BodyBudget`], given back on drop.
#[derive(Debug)]
struct BytePermit {
    budget: Option<Arc<BodyBudget>>,
    bytes: usize,
}

impl BytePermit {
    fn grow(&mut self, n: usize) -> Result<(), GatewayError> {
        if self.budget.as_ref().is_none_or(|b| b.try_add(n)) {
            self.bytes += n;
            Ok(())
        } else {
            Err(GatewayError::new(
                ErrorKind::Unavailable,
                "The gateway is holding too many request bodies at once; retry shortly",
            )
            .with_code("server_busy")
            .with_retry_after(BUSY_RETRY_AFTER))
        }
    }

    fn shrink_to(&mut self, n: usize) {
        if n < self.bytes {
            if let Some(b) = &self.budget {
                b.in_flight.fetch_sub(self.bytes - n, Ordering::AcqRel);
            }
            self.bytes = n;
        }
    }
}

impl Drop for BytePermit {
    fn drop(&mut self) {
        if self.bytes > 0
            && let Some(b) = &self.budget
        {
            b.in_flight.fetch_sub(self.bytes, Ordering::AcqRel);
        }
    }
}

/// A body buffer and the budget it holds.
struct Held {
    bytes: Bytes,
    _permit: BytePermit,
}

impl AsRef<[u8]> for Held {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

/// Maps a failure to read the body to the caller's error.
fn read_error(e: axum::Error) -> GatewayError {
    let mut source: Option<&(dyn StdError + 'static)> = Some(&e);
    while let Some(err) = source {
        if err.is::<BodyTooSlow>() {
            return GatewayError::invalid_request(
                "The request body arrived too slowly; the connection is closed",
            )
            .with_status(http::StatusCode::REQUEST_TIMEOUT)
            .with_code("request_timeout");
        }
        source = err.source();
    }
    GatewayError::invalid_request(format!("Could not read the request body: {e}"))
}

/// The error a [`TimedBody`] ends with when its client is too slow.
#[derive(Debug, Clone, Copy)]
pub struct BodyTooSlow;

impl fmt::Display for BodyTooSlow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the request body arrived too slowly")
    }
}

impl StdError for BodyTooSlow {}

/// How fast a body must arrive.
#[derive(Debug, Clone, Copy)]
pub struct BodyPace {
    /// Time any body may take.
    pub grace: Duration,
    /// Bytes per second that extend the allowance by one second each.
    pub min_rate: u64,
}

/// A request body that fails with [`BodyTooSlow`] when it has not arrived by
/// `grace + received / min_rate` after the request's headers.
pub struct TimedBody<B> {
    inner: B,
    pace: BodyPace,
    started: Instant,
    received: u64,
    sleep: Option<Pin<Box<Sleep>>>,
    expired: bool,
}

impl<B> TimedBody<B> {
    /// Wraps `inner`, starting the clock now.
    pub fn new(inner: B, pace: BodyPace) -> Self {
        Self {
            inner,
            pace,
            started: Instant::now(),
            received: 0,
            sleep: None,
            expired: false,
        }
    }

    fn deadline(&self) -> Instant {
        let extra =
            Duration::from_secs_f64(self.received as f64 / self.pace.min_rate.max(1) as f64);
        self.started + self.pace.grace + extra
    }
}

impl<B> HttpBody for TimedBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn StdError + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.expired {
            return Poll::Ready(Some(Err(Box::new(BodyTooSlow))));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let deadline = this.deadline();
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if sleep.deadline() != deadline {
                    sleep.as_mut().reset(deadline);
                }
                if sleep.as_mut().poll(cx).is_ready() {
                    this.expired = true;
                    return Poll::Ready(Some(Err(Box::new(BodyTooSlow))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        !self.expired && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Refuses a body whose JSON objects repeat a key (`{"model":"a","model":"b"}`): parsers
/// disagree on which value counts, so the gateway, the upstream and the log could each see a
/// different request. One streaming pass over the bytes, before decoding.
pub fn check_unambiguous(body: &[u8]) -> Result<(), GatewayError> {
    match portcullis_dialects::strict::duplicate_key(body) {
        None => Ok(()),
        Some(dup) => Err(GatewayError::invalid_request(format!(
            "Invalid request body: {dup}; a key may appear only once in an object"
        ))
        .with_code("duplicate_key")),
    }
}
