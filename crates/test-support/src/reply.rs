//! Replies: scripted answers a test queues, and the response bodies the mock sends — a whole
//! JSON body, or SSE frames (or any other stream's chunks) written one chunk at a time
//! (optionally ending with an abrupt connection drop).

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;

/// The body type every mock response uses.
pub type MockBody = BoxBody<Bytes, std::io::Error>;

/// How a scripted stream ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// The body ends normally after the last frame.
    Complete,
    /// The connection is cut after the last frame, without ending the body.
    Abort,
}

/// One SSE frame: an optional `event:` name and the `data:` payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseFrame {
    /// `event:` field.
    pub event: Option<String>,
    /// `data:` payload (written on one line).
    pub data: String,
}

impl SseFrame {
    /// A `data:`-only frame (OpenAI style).
    pub fn data(data: impl Into<String>) -> Self {
        Self {
            event: None,
            data: data.into(),
        }
    }

    /// An `event:` + `data:` frame (Anthropic style).
    pub fn event(event: impl Into<String>, data: impl Into<String>) -> Self {
        Self {
            event: Some(event.into()),
            data: data.into(),
        }
    }

    /// The frame on the wire.
    pub fn to_bytes(&self) -> Bytes {
        let mut s = String::with_capacity(self.data.len() + 32);
        if let Some(e) = &self.event {
            s.push_str("event: ");
            s.push_str(e);
            s.push('\n');
        }
        s.push_str("data: ");
        s.push_str(&self.data);
        s.push_str("\n\n");
        Bytes::from(s)
    }
}

/// A scripted answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A JSON answer.
    Json {
        /// Status code.
        status: u16,
        /// Extra headers.
        headers: Vec<(String, String)>,
        /// Body.
        body: serde_json::Value,
    },
    /// A server-sent-events answer.
    Sse {
        /// Extra headers.
        headers: Vec<(String, String)>,
        /// Frames, in order.
        frames: Vec<SseFrame>,
        /// Pause between frames.
        frame_delay: Duration,
        /// How the stream ends.
        then: StreamEnd,
    },
    /// Another reply after a pause.
    Delay(Duration, Box<Reply>),
    /// The connection is closed without any answer.
    Hangup,
}

impl Reply {
    /// A JSON answer with no extra headers.
    pub fn json(status: u16, body: serde_json::Value) -> Self {
        Reply::Json {
            status,
            headers: Vec::new(),
            body,
        }
    }

    /// A complete SSE answer with no extra headers and no delay.
    pub fn sse(frames: Vec<SseFrame>) -> Self {
        Reply::Sse {
            headers: Vec::new(),
            frames,
            frame_delay: Duration::ZERO,
            then: StreamEnd::Complete,
        }
    }
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn with_headers(mut r: Response<MockBody>, headers: &[(String, String)]) -> Response<MockBody> {
    for (k, v) in headers {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::try_from(k.as_str()),
            HeaderValue::try_from(v.as_str()),
        ) {
            r.headers_mut().insert(name, value);
        }
    }
    r
}

/// A JSON response.
pub fn json_response(
    code: u16,
    body: &serde_json::Value,
    headers: &[(String, String)],
) -> Response<MockBody> {
    let bytes = Bytes::from(serde_json::to_vec(body).unwrap_or_default());
    let mut r = Response::new(
        Full::new(bytes)
            .map_err(|never: Infallible| match never {})
            .boxed(),
    );
    *r.status_mut() = status(code);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    with_headers(r, headers)
}

/// An SSE response whose frames are written one chunk each, `delay` apart.
pub fn sse_response(
    frames: Vec<SseFrame>,
    delay: Duration,
    then: StreamEnd,
    headers: &[(String, String)],
) -> Response<MockBody> {
    let chunks = frames.iter().map(SseFrame::to_bytes).collect();
    let mut r = chunked_response(
        chunks,
        "text/event-stream; charset=utf-8",
        delay,
        then,
        headers,
    );
    r.headers_mut()
        .entry(http::header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-cache"));
    r
}

/// A streamed response of `content_type` whose chunks are written one at a time, `delay`
/// apart, ending as `then` says.
pub fn chunked_response(
    chunks: Vec<Bytes>,
    content_type: &'static str,
    delay: Duration,
    then: StreamEnd,
    headers: &[(String, String)],
) -> Response<MockBody> {
    let chunks = futures_util::stream::iter(chunks.into_iter().enumerate()).then(
        move |(i, chunk)| async move {
            if i > 0 && !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Ok::<_, std::io::Error>(Frame::data(chunk))
        },
    );
    // The abort waits a moment so the frames before it are flushed to the client first:
    // the connection drops mid-stream, not before the response head.
    let tail = futures_util::stream::iter(match then {
        StreamEnd::Complete => None,
        StreamEnd::Abort => Some(()),
    })
    .then(|()| async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "scripted connection drop",
        ))
    });
    let body = BodyExt::boxed(StreamBody::new(chunks.chain(tail)));
    let mut r = Response::new(body);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    with_headers(r, headers)
}

/// A response that fails immediately, so the server drops the connection.
pub fn hangup_response() -> Response<MockBody> {
    let body = BodyExt::boxed(StreamBody::new(futures_util::stream::iter(vec![Err::<
        Frame<Bytes>,
        _,
    >(
        std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "scripted hangup"),
    )])));
    Response::new(body)
}

/// Renders a scripted reply.
pub async fn render(reply: Reply) -> Response<MockBody> {
    let mut reply = reply;
    loop {
        match reply {
            Reply::Delay(d, next) => {
                tokio::time::sleep(d).await;
                reply = *next;
            }
            Reply::Json {
                status,
                headers,
                body,
            } => return json_response(status, &body, &headers),
            Reply::Sse {
                headers,
                frames,
                frame_delay,
                then,
            } => return sse_response(frames, frame_delay, then, &headers),
            Reply::Hangup => return hangup_response(),
        }
    }
}
