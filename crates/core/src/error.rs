//! [`GatewayError`]: what failed, the status the caller sees, who is to blame, and whether a
//! retry may help.
//!
//! Every failure on the request path becomes one of these. Dialect encoders turn it into the
//! caller's error body (OpenAI `{"error":{…}}` or Anthropic `{"type":"error",…}`); the
//! failover logic reads [`GatewayError::retryable`] and [`GatewayError::blame`] and nothing
//! else.
//!
//! An error has two audiences. The caller sees the message, status, code and parameter — never
//! anything about the gateway's insides. The operator additionally gets the private part: an
//! operator-only [`detail`](GatewayError::detail) (the transport error text, the unreadable
//! frame, …) and the underlying [`source`](std::error::Error::source), which the request log
//! and the gateway's own logs record and no response ever carries.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;

/// The class of a failure; decides the error `type` in each dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request is malformed or asks for something impossible.
    InvalidRequest,
    /// The caller's credential is missing or wrong.
    Authentication,
    /// The caller may not do this.
    PermissionDenied,
    /// The model, route or resource does not exist.
    NotFound,
    /// The request body is over the configured limit.
    PayloadTooLarge,
    /// A limit refused the request.
    RateLimited,
    /// The upstream failed or answered with something unusable.
    Upstream,
    /// The upstream is overloaded or no target can serve.
    Unavailable,
    /// The upstream did not answer in time.
    Timeout,
    /// The gateway itself failed.
    Internal,
    /// The client went away before the answer was complete (logged as 499).
    ClientClosed,
}

/// Who caused a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Blame {
    /// The caller sent something wrong.
    Client,
    /// The gateway or its configuration.
    Gateway,
    /// The upstream provider.
    Upstream,
}

/// A failure on the request path.
#[derive(Debug, Clone)]
pub struct GatewayError {
    kind: ErrorKind,
    status: StatusCode,
    message: Cow<'static, str>,
    code: Option<&'static str>,
    param: Option<String>,
    blame: Blame,
    retryable: bool,
    retry_after: Option<Duration>,
    /// What only the operator sees; boxed so the common error stays small.
    private: Option<Box<Private>>,
}

/// The operator-only part of an error.
#[derive(Debug, Clone, Default)]
struct Private {
    detail: Option<String>,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

/// Two errors are equal when the caller would see the same thing and the operator the same
/// detail; sources are compared by their text.
impl PartialEq for GatewayError {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
            && self.status == other.status
            && self.message == other.message
            && self.code == other.code
            && self.param == other.param
            && self.blame == other.blame
            && self.retryable == other.retryable
            && self.retry_after == other.retry_after
            && self.detail() == other.detail()
            && self.source_text() == other.source_text()
    }
}

impl GatewayError {
    /// A new error with the kind's default status, blame and retryability.
    pub fn new(kind: ErrorKind, message: impl Into<Cow<'static, str>>) -> Self {
        let (status, blame, retryable) = match kind {
            ErrorKind::InvalidRequest => (StatusCode::BAD_REQUEST, Blame::Client, false),
            ErrorKind::Authentication => (StatusCode::UNAUTHORIZED, Blame::Client, false),
            ErrorKind::PermissionDenied => (StatusCode::FORBIDDEN, Blame::Client, false),
            ErrorKind::NotFound => (StatusCode::NOT_FOUND, Blame::Client, false),
            ErrorKind::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, Blame::Client, false),
            ErrorKind::RateLimited => (StatusCode::TOO_MANY_REQUESTS, Blame::Client, true),
            ErrorKind::Upstream => (StatusCode::BAD_GATEWAY, Blame::Upstream, true),
            ErrorKind::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, Blame::Upstream, true),
            ErrorKind::Timeout => (StatusCode::GATEWAY_TIMEOUT, Blame::Upstream, true),
            ErrorKind::Internal => (StatusCode::INTERNAL_SERVER_ERROR, Blame::Gateway, false),
            ErrorKind::ClientClosed => (client_closed_status(), Blame::Client, false),
        };
        Self {
            kind,
            status,
            message: message.into(),
            code: None,
            param: None,
            blame,
            retryable,
            retry_after: None,
            private: None,
        }
    }

    /// 400: the request is malformed or invalid.
    pub fn invalid_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::InvalidRequest, message)
    }

    /// 401: missing or wrong credential.
    pub fn unauthorized(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::Authentication, message).with_code("invalid_api_key")
    }

    /// 404: no configured provider or route serves `model`.
    pub fn model_not_found(model: &str) -> Self {
        Self::new(
            ErrorKind::NotFound,
            format!(
                "The model `{model}` does not exist or is not served by this gateway; \
                 address it as `provider/model`, a configured route, or an alias"
            ),
        )
        .with_code("model_not_found")
        .with_param("model")
    }

    /// 413: the body is over `limit` bytes.
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            ErrorKind::PayloadTooLarge,
            format!("Request body is larger than the limit of {limit} bytes"),
        )
        .with_code("request_too_large")
    }

    /// 504: the request's total time limit passed.
    pub fn total_timeout() -> Self {
        Self::new(
            ErrorKind::Timeout,
            "The request did not complete within its total time limit",
        )
        .with_code("request_timeout")
    }

    /// 500: an internal failure. The message is shown to the caller, so keep secrets out of it;
    /// put what the operator needs in [`with_detail`](Self::with_detail).
    pub fn internal(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// 499: the client went away.
    pub fn client_closed() -> Self {
        Self::new(ErrorKind::ClientClosed, "client closed the connection")
    }

    /// Sets the machine-readable code (OpenAI `error.code`).
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// Names the offending request parameter.
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// Overrides the HTTP status.
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// Overrides who is to blame.
    pub fn with_blame(mut self, blame: Blame) -> Self {
        self.blame = blame;
        self
    }

    /// Overrides whether a retry may help.
    pub fn with_retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    /// Says how long to wait before retrying.
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// Adds what only the operator sees (logged, never sent to the caller): the transport
    /// error's text, the upstream's unreadable bytes, the failing component.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.private.get_or_insert_default().detail = Some(detail.into());
        self
    }

    /// Keeps the underlying error, for the operator's logs ([`std::error::Error::source`]).
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.private.get_or_insert_default().source = Some(Arc::new(source));
        self
    }

    /// The operator-only detail, if any. Never part of a response.
    pub fn detail(&self) -> Option<&str> {
        self.private.as_ref()?.detail.as_deref()
    }

    /// The message with the operator-only detail and the source chain, for logs.
    pub fn operator_text(&self) -> String {
        let mut text = self.message.to_string();
        if let Some(detail) = self.detail() {
            text.push_str(" — ");
            text.push_str(detail);
        }
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        text
    }

    fn source_text(&self) -> Option<String> {
        std::error::Error::source(self).map(|s| s.to_string())
    }

    /// The class of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The HTTP status the caller sees.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The human-readable message the caller sees.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The machine-readable code, if any.
    pub fn code(&self) -> Option<&'static str> {
        self.code
    }

    /// The offending parameter, if any.
    pub fn param(&self) -> Option<&str> {
        self.param.as_deref()
    }

    /// Who caused the failure.
    pub fn blame(&self) -> Blame {
        self.blame
    }

    /// Whether the same request may succeed if tried again (here or on another target).
    pub fn retryable(&self) -> bool {
        self.retryable
    }

    /// How long the upstream asked callers to wait.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

/// The non-standard status nginx made conventional for "client closed request".
pub fn client_closed_status() -> StatusCode {
    StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST)
}

impl fmt::Display for GatewayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.status.as_u16())
    }
}

impl std::error::Error for GatewayError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        let source = self.private.as_ref()?.source.as_ref()?;
        Some(&**source as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_carry_status_blame_and_retryability() {
        let e = GatewayError::model_not_found("nope/model");
        assert_eq!(e.status(), StatusCode::NOT_FOUND);
        assert_eq!(e.blame(), Blame::Client);
        assert!(!e.retryable());
        assert!(e.message().contains("nope/model"));

        let e = GatewayError::new(ErrorKind::Timeout, "slow");
        assert_eq!(e.status(), StatusCode::GATEWAY_TIMEOUT);
        assert!(e.retryable());
        assert_eq!(e.blame(), Blame::Upstream);
        assert_eq!(GatewayError::client_closed().status().as_u16(), 499);
    }

    #[test]
    fn the_private_part_stays_out_of_what_callers_see() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused by 10.0.0.7");
        let e = GatewayError::new(
            ErrorKind::Upstream,
            "The upstream provider `x` could not be reached",
        )
        .with_detail("connect to 10.0.0.7:443")
        .with_source(io);
        assert_eq!(
            e.message(),
            "The upstream provider `x` could not be reached"
        );
        assert!(!e.to_string().contains("10.0.0.7"), "{e}");
        assert_eq!(e.detail(), Some("connect to 10.0.0.7:443"));
        let source = std::error::Error::source(&e).map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("refused by 10.0.0.7"));
        let text = e.operator_text();
        assert!(text.contains("connect to 10.0.0.7:443") && text.contains("refused by 10.0.0.7"));
        assert_eq!(e.clone(), e);
    }
}
