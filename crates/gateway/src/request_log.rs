//! [`RequestLog`]: the log record of one request, filled in along the request path and
//! submitted exactly once — when the request finishes, or, if the client goes away first, when
//! the request is dropped (recorded as 499 with whatever usage was seen).

use std::sync::Arc;
use std::time::Instant;

use portcullis_core::{GatewayError, Identity, Usage};
use portcullis_store::{LogRecord, LogSink};

use crate::metrics::{Metrics, RequestSample};

/// Bodies kept in the log are cut at this size.
pub const MAX_LOGGED_BODY: usize = 1024 * 1024;

/// The record of one request in flight.
#[derive(Debug)]
pub struct RequestLog {
    record: Option<Box<LogRecord>>,
    started: Instant,
    sink: LogSink,
    metrics: Arc<Metrics>,
}

impl RequestLog {
    /// Starts the record of a request that arrived at `started`.
    pub fn new(record: LogRecord, started: Instant, sink: LogSink, metrics: Arc<Metrics>) -> Self {
        Self {
            record: Some(Box::new(record)),
            started,
            sink,
            metrics,
        }
    }

    /// The record, while the request is in flight.
    pub fn record(&mut self) -> Option<&mut LogRecord> {
        self.record.as_deref_mut()
    }

    /// Records who called.
    pub fn identity(&mut self, who: &Identity) {
        if let Some(r) = self.record() {
            r.subject = Some(who.subject.clone());
            r.auth_method = Some(who.method.as_str());
            r.user.clone_from(&who.user);
            r.team.clone_from(&who.team);
            r.key_id.clone_from(&who.key_id);
        }
    }

    /// Records token usage.
    pub fn usage(&mut self, u: &Usage) {
        if let Some(r) = self.record() {
            r.input_tokens = u.input_tokens;
            r.output_tokens = u.output_tokens;
            r.cached_tokens = u.cached_input_tokens;
            r.reasoning_tokens = u.reasoning_tokens;
        }
    }

    /// Records a failure.
    pub fn error(&mut self, e: &GatewayError) {
        if let Some(r) = self.record() {
            r.status = e.status().as_u16();
            r.error_type = Some(format!("{:?}", e.kind()));
            r.error_message = Some(e.message().to_owned());
        }
    }

    /// Moves the record into a new guard (e.g. the one a streaming body carries), leaving
    /// this one empty.
    pub fn take(&mut self) -> RequestLog {
        RequestLog {
            record: self.record.take(),
            started: self.started,
            sink: self.sink.clone(),
            metrics: self.metrics.clone(),
        }
    }

    /// Finishes the record with `status` (unless an error set one) and submits it.
    pub fn finish(&mut self, status: u16) {
        if let Some(mut r) = self.record.take() {
            if r.status == 0 {
                r.status = status;
            }
            self.submit(r);
        }
    }

    fn submit(&self, mut r: Box<LogRecord>) {
        let elapsed = self.started.elapsed();
        r.latency_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.metrics.observe(&RequestSample {
            endpoint: r.endpoint,
            provider: r.provider.as_ref(),
            status: r.status,
            seconds: elapsed.as_secs_f64(),
            input_tokens: r.input_tokens,
            output_tokens: r.output_tokens,
        });
        self.sink.submit(*r);
    }
}

impl Drop for RequestLog {
    fn drop(&mut self) {
        if let Some(mut r) = self.record.take() {
            // Dropped before finishing: the client went away and the request was cancelled.
            r.status = 499;
            if r.error_type.is_none() {
                r.error_type = Some("ClientClosed".to_owned());
                r.error_message = Some("client closed the connection".to_owned());
            }
            self.submit(r);
        }
    }
}

/// Text of a body for the log, cut at [`MAX_LOGGED_BODY`].
pub fn body_text(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(MAX_LOGGED_BODY)];
    String::from_utf8_lossy(cut).into_owned()
}
