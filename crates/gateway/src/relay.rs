//! [`SseRelay`]: the response body of a streamed chat request.
//!
//! It pulls the upstream body chunk by chunk through a pipeline: a [`Framer`] cuts it into
//! frames, the provider's [`StreamDecoder`] turns each into canonical events (always: usage
//! and time-to-first-token are read from them), the [`StreamFilter`]s added with
//! [`SseRelay::with_filter`] see every event, and the client gets either the upstream frame
//! itself (same dialect and no filter changed anything: byte-for-byte, minus the usage chunk
//! the client did not ask for) or the events re-encoded in the client's dialect. Every chunk
//! is handed to hyper as soon as it is produced; nothing is buffered beyond the frame being
//! parsed and what a filter chose to hold.
//!
//! Pass-through survives filters: while every filter passes every event of a frame, the
//! upstream's bytes are forwarded and the encoder only takes note of the events
//! ([`StreamEncoder::skip`]). The first frame a filter changes switches the stream to
//! re-encoding for good, from that frame on, with an encoder that continues the stream the
//! client has already seen (its block and call numbering), so no byte of what the filter
//! withheld is ever written.
//!
//! If the upstream fails mid-stream, the client gets a well-formed error event in its dialect.
//! If the client goes away, the relay is dropped: the upstream connection is closed (the call is
//! cancelled) and the log records 499 with the usage seen so far.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use portcullis_core::{Dialect, ErrorKind, GatewayError, StopReason, StreamEvent, Usage};
use portcullis_dialects::frame::{Frame as UpstreamFrame, Framer, FramingError, SseFramer};
use portcullis_dialects::{FrameOutcome, StreamDecoder, StreamEncoder, stream_encoder};

use crate::request_log::{MAX_LOGGED_BODY, RequestLog};
use crate::settle::Settlement;
use crate::stream_filter::{FilterChain, StreamFilter};

/// The current Unix time in seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Largest SSE frame accepted from an upstream.
const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// How upstream frames reach the client.
enum Mode {
    /// Same dialect: forward the upstream's frames as they are.
    Passthrough {
        /// Drop frames that carry only usage (the client did not ask for it).
        strip_usage_frames: bool,
        /// With filters: the encoder that takes over if one of them changes the stream,
        /// kept abreast of every event forwarded.
        standby: Option<Box<dyn StreamEncoder>>,
    },
    /// Re-encode every event in the client's dialect.
    Translate(Box<dyn StreamEncoder>),
}

/// Where the events come from.
pub enum Source {
    /// A live upstream SSE body.
    Upstream {
        /// The body.
        body: Incoming,
        /// The provider's stream decoder.
        decoder: Box<dyn StreamDecoder>,
    },
    /// Events already known (an upstream that answered a stream request with a complete JSON
    /// response).
    Events(std::vec::IntoIter<StreamEvent>),
}

/// The streaming response body.
pub struct SseRelay {
    source: Source,
    client_dialect: Dialect,
    mode: Mode,
    client_wants_usage: bool,
    framer: Box<dyn Framer>,
    frames: Vec<UpstreamFrame>,
    events: Vec<StreamEvent>,
    filters: FilterChain,
    filtered: Vec<StreamEvent>,
    out: BytesMut,
    usage: Usage,
    saw_finish: bool,
    closed: bool,
    failure: Option<GatewayError>,
    started: Instant,
    first_token_us: Option<u64>,
    capture: Option<Vec<u8>>,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    settlement: Option<Settlement>,
    log: RequestLog,
    /// The request's span, open until the stream ends; it gets the response model, id,
    /// finish reasons and usage the stream reports.
    span: tracing::Span,
    finish_reasons: Vec<StopReason>,
}

/// What a relay needs to know about its request.
pub struct RelaySettings {
    /// The client's dialect.
    pub client_dialect: Dialect,
    /// The client dialect the upstream's frames are written in, if any (a Gemini stream is in
    /// none): only then can they be forwarded as they are.
    pub upstream_dialect: Option<Dialect>,
    /// Whether the client asked for usage in the stream (OpenAI `include_usage`).
    pub client_wants_usage: bool,
    /// Keep a copy of what the client received for the log.
    pub capture_body: bool,
    /// When the request arrived.
    pub started: Instant,
    /// The request's total time limit: the stream ends with a timeout error event at it.
    pub deadline: Option<tokio::time::Instant>,
}

impl SseRelay {
    /// A relay from `source` to a client, carrying the request's log record and the
    /// settlement to run when the stream ends.
    pub fn new(
        source: Source,
        settings: RelaySettings,
        log: RequestLog,
        settlement: Option<Settlement>,
    ) -> Self {
        let passthrough = matches!(source, Source::Upstream { .. })
            && settings.upstream_dialect == Some(settings.client_dialect);
        let mode = if passthrough {
            Mode::Passthrough {
                strip_usage_frames: settings.client_dialect == Dialect::OpenAi
                    && !settings.client_wants_usage,
                standby: None,
            }
        } else {
            Mode::Translate(stream_encoder(
                settings.client_dialect,
                settings.client_wants_usage,
                unix_now(),
            ))
        };
        Self {
            source,
            client_dialect: settings.client_dialect,
            mode,
            client_wants_usage: settings.client_wants_usage,
            framer: Box::new(SseFramer::with_max_frame_bytes(MAX_FRAME_BYTES)),
            frames: Vec::new(),
            events: Vec::new(),
            filters: FilterChain::new(),
            filtered: Vec::new(),
            out: BytesMut::new(),
            usage: Usage::default(),
            saw_finish: false,
            closed: false,
            failure: None,
            started: settings.started,
            first_token_us: None,
            capture: settings.capture_body.then(Vec::new),
            deadline: settings
                .deadline
                .map(|d| Box::pin(tokio::time::sleep_until(d))),
            settlement,
            log,
            span: tracing::Span::none(),
            finish_reasons: Vec::new(),
        }
    }

    /// Reports what the stream tells of the answer on `span` (the request's), which stays open
    /// until the stream ends.
    pub fn with_span(mut self, span: tracing::Span) -> Self {
        self.span = span;
        self
    }

    /// Adds a filter after those already added. Filters see every canonical event of the
    /// answer; while none changes anything a same-dialect stream is still forwarded as the
    /// upstream sent it.
    pub fn with_filter(mut self, filter: Box<dyn StreamFilter>) -> Self {
        if let Mode::Passthrough { standby, .. } = &mut self.mode
            && standby.is_none()
        {
            *standby = Some(stream_encoder(
                self.client_dialect,
                self.client_wants_usage,
                unix_now(),
            ));
        }
        self.filters.push(filter);
        self
    }

    /// Writes every event with `encoder` (an endpoint with a stream format of its own, such as
    /// the Responses API's), never the upstream's frames as they are. Call it before adding
    /// filters.
    pub fn with_encoder(mut self, encoder: Box<dyn StreamEncoder>) -> Self {
        self.mode = Mode::Translate(encoder);
        self
    }

    /// Reads the upstream body with `framer` instead of server-sent events (an upstream with a
    /// binary event stream).
    pub fn with_framer(mut self, framer: Box<dyn Framer>) -> Self {
        self.framer = framer;
        self
    }

    /// Accounts for the events of one frame (or of the known-events source).
    fn observe(&mut self) {
        for ev in &self.events {
            if let Some(s) = &mut self.settlement {
                s.observe(ev);
            }
            match ev {
                StreamEvent::Delta { .. } if self.first_token_us.is_none() => {
                    self.first_token_us =
                        Some(u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX));
                }
                StreamEvent::Usage(u) => self.usage.merge(u),
                StreamEvent::Finish { reason, .. } => {
                    self.saw_finish = true;
                    if !self.span.is_disabled() {
                        self.finish_reasons.push(reason.clone());
                    }
                }
                StreamEvent::Start { id, model, .. } => {
                    crate::trace::record_response_start(&self.span, id, model);
                }
                StreamEvent::Error(e) => self.failure = Some(e.clone()),
                _ => {}
            }
        }
    }

    fn on_bytes(&mut self, data: &[u8]) {
        if let Err(e) = self.framer.feed(data, &mut self.frames) {
            self.fail(framing_failure(&e));
            return;
        }
        self.process_frames();
    }

    fn process_frames(&mut self) {
        let frames = std::mem::take(&mut self.frames);
        for frame in &frames {
            if self.closed {
                break;
            }
            self.events.clear();
            let outcome = match &mut self.source {
                Source::Upstream { decoder, .. } => decoder.decode(frame, &mut self.events),
                Source::Events(_) => Ok(FrameOutcome::Continue),
            };
            let outcome = match outcome {
                Ok(o) => o,
                Err(e) => match &self.mode {
                    // With filters, a frame nobody can read could carry what they would
                    // withhold: it is left out.
                    Mode::Passthrough {
                        standby: Some(_), ..
                    } => {
                        tracing::warn!("unreadable upstream stream frame left out: {e}");
                        continue;
                    }
                    // A frame we cannot read is still forwarded to a same-dialect client;
                    // only accounting misses it.
                    Mode::Passthrough { .. } => {
                        tracing::warn!("unreadable upstream stream frame forwarded as is: {e}");
                        self.out.extend_from_slice(&frame.raw);
                        continue;
                    }
                    Mode::Translate(_) => {
                        self.fail(e);
                        break;
                    }
                },
            };
            let terminal = outcome == FrameOutcome::Done || self.failure.is_some();
            if terminal && let Source::Upstream { decoder, .. } = &mut self.source {
                decoder.end(&mut self.events);
            }
            self.deliver(Some(frame), terminal);
            if terminal || self.failure.is_some() {
                self.finish_stream();
            }
        }
        let mut frames = frames;
        frames.clear();
        self.frames = frames;
    }

    /// Accounts for `self.events` (one frame's, or the known-events source's), runs them
    /// through the filters (and ends the filters when `terminal`), and writes the result: the
    /// upstream's `frame` as received while passing through untouched, the events re-encoded
    /// otherwise.
    fn deliver(&mut self, frame: Option<&UpstreamFrame>, terminal: bool) {
        self.observe();
        let changed = if self.filters.is_empty() {
            false
        } else {
            self.filtered.clear();
            let mut changed = self.filters.run(&self.events, &mut self.filtered);
            if terminal {
                changed |= self.filters.end(&mut self.filtered);
            }
            changed
        };
        if changed
            && let Mode::Passthrough { standby, .. } = &mut self.mode
            && let Some(encoder) = standby.take()
        {
            // The first byte a filter affects: re-encode from here on.
            self.mode = Mode::Translate(encoder);
        }
        let events = if self.filters.is_empty() {
            &self.events
        } else {
            &self.filtered
        };
        match &mut self.mode {
            Mode::Passthrough {
                strip_usage_frames,
                standby,
            } => {
                if let Some(encoder) = standby {
                    for ev in events {
                        encoder.skip(ev);
                    }
                    if let Some(frame) = frame {
                        encoder.passed_through(frame);
                    }
                }
                let usage_only =
                    !events.is_empty() && events.iter().all(|e| matches!(e, StreamEvent::Usage(_)));
                if let Some(frame) = frame
                    && !(*strip_usage_frames && usage_only)
                {
                    self.out.extend_from_slice(&frame.raw);
                }
            }
            Mode::Translate(enc) => {
                for ev in events {
                    enc.encode(ev, &mut self.out);
                }
            }
        }
    }

    fn on_upstream_end(&mut self) {
        let mut tail = Vec::new();
        if let Err(e) = self.framer.finish(&mut tail) {
            self.fail(framing_failure(&e));
            return;
        }
        if !tail.is_empty() {
            self.frames = tail;
            self.process_frames();
        }
        if self.closed {
            return;
        }
        // What the end of the body implies (calls no frame ended), and the filters' last word.
        self.events.clear();
        if let Source::Upstream { decoder, .. } = &mut self.source {
            decoder.end(&mut self.events);
        }
        self.deliver(None, true);
        if self.saw_finish {
            // Some servers end without their terminal frame; the answer is complete anyway.
            self.finish_stream();
        } else {
            self.fail(GatewayError::new(
                ErrorKind::Upstream,
                "The upstream closed the stream before the response was complete",
            ));
        }
    }

    /// Emits the closing frames (translated streams) and marks the stream done.
    fn finish_stream(&mut self) {
        if let Mode::Translate(enc) = &mut self.mode {
            enc.finish(&mut self.out);
        }
        self.closed = true;
    }

    /// Ends the stream with an error event in the client's dialect.
    fn fail(&mut self, err: GatewayError) {
        tracing::warn!("stream failed: {}", err.message());
        let ev = StreamEvent::Error(err.clone());
        match &mut self.mode {
            Mode::Translate(enc) => enc.encode(&ev, &mut self.out),
            Mode::Passthrough { .. } => {
                stream_encoder(self.client_dialect, false, unix_now()).encode(&ev, &mut self.out)
            }
        }
        self.failure = Some(err);
        self.closed = true;
    }

    /// Writes what was seen into the log record. Called on completion and on drop.
    fn settle_log(&mut self) {
        self.log.usage(&self.usage);
        let failure = self.failure.take();
        let capture = self.capture.take();
        let first_token_us = self.first_token_us;
        if !self.span.is_disabled() {
            crate::trace::record_usage(&self.span, &self.usage);
            crate::trace::record_finish_reasons(&self.span, self.finish_reasons.iter().map(Some));
        }
        if let Some(e) = &failure {
            crate::trace::record_error(&self.span, e);
            self.log.error(e);
        }
        if let Some(r) = self.log.record() {
            r.ttft_us = first_token_us;
            if let Some(c) = capture {
                r.response_body = Some(String::from_utf8_lossy(&c).into_owned());
            }
        }
    }

    fn complete(&mut self) {
        let completed = self.failure.is_none() && self.saw_finish;
        self.settle_log();
        if let Some(s) = self.settlement.take() {
            s.finish_stream(completed, &self.usage, &mut self.log);
        }
        self.log.finish(200);
    }

    fn emit(&mut self) -> Bytes {
        let chunk = self.out.split().freeze();
        if let Some(c) = &mut self.capture {
            let room = MAX_LOGGED_BODY.saturating_sub(c.len());
            c.extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
        chunk
    }
}

/// The error a stream ends with when its body cannot be cut into frames.
fn framing_failure(e: &FramingError) -> GatewayError {
    let message = match e {
        FramingError::TooLarge { .. } => {
            "The upstream sent a stream frame larger than 16 MiB".to_owned()
        }
        FramingError::Malformed(_) => e.to_string(),
    };
    GatewayError::new(ErrorKind::Upstream, message)
}

impl Body for SseRelay {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        loop {
            if !this.out.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(this.emit()))));
            }
            if this.closed {
                this.complete();
                return Poll::Ready(None);
            }
            match &mut this.source {
                Source::Events(events) => {
                    this.events.clear();
                    this.events.extend(events.by_ref());
                    this.deliver(None, true);
                    this.finish_stream();
                }
                Source::Upstream { body, .. } => match Pin::new(body).poll_frame(cx) {
                    Poll::Pending => {
                        if let Some(d) = &mut this.deadline
                            && d.as_mut().poll(cx).is_ready()
                        {
                            this.deadline = None;
                            this.fail(GatewayError::total_timeout());
                            continue;
                        }
                        return Poll::Pending;
                    }
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Ok(data) = frame.into_data() {
                            this.on_bytes(&data);
                        }
                    }
                    Poll::Ready(Some(Err(e))) => this.fail(
                        GatewayError::new(
                            ErrorKind::Upstream,
                            "The upstream stream was interrupted",
                        )
                        .with_detail(e.to_string()),
                    ),
                    Poll::Ready(None) => this.on_upstream_end(),
                },
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

impl Drop for SseRelay {
    fn drop(&mut self) {
        if self.closed && self.out.is_empty() {
            // Everything, closing frames included, was handed to the client.
            self.complete();
        } else {
            // The client left before the end: the guard logs 499 with what was seen.
            self.settle_log();
            if let Some(s) = self.settlement.take() {
                s.finish_stream(false, &self.usage, &mut self.log);
            }
        }
    }
}
