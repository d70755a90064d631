//! Building responses: JSON bodies, errors in the caller's dialect, and the headers every
//! response carries.

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, StatusCode};
use portcullis_core::{Dialect, GatewayError};
use portcullis_dialects::errors::encode_error;
use uuid::Uuid;

use crate::headers::REQUEST_ID;

/// `application/json`.
pub const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// The request id as a header value.
pub fn request_id_value(id: &Uuid) -> HeaderValue {
    let mut buf = [0u8; 36];
    let s = id.hyphenated().encode_lower(&mut buf);
    HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static("unknown"))
}

/// A JSON response.
pub fn json(status: StatusCode, body: impl Into<Bytes>, id: &Uuid) -> Response {
    let mut r = Response::new(Body::from(body.into()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, JSON);
    h.insert(REQUEST_ID, request_id_value(id));
    r
}

/// An error in the caller's dialect.
pub fn error(dialect: Dialect, err: &GatewayError, id: &Uuid) -> Response {
    let mut buf = [0u8; 36];
    let id_str = id.hyphenated().encode_lower(&mut buf);
    let body = encode_error(dialect, err, Some(id_str));
    let mut r = json(err.status(), body, id);
    if let Some(after) = err.retry_after() {
        // Rounded up: a client that waits exactly this long must not be refused again.
        let secs = (after.as_secs() + u64::from(after.subsec_nanos() > 0)).max(1);
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            r.headers_mut().insert(RETRY_AFTER, v);
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use portcullis_core::{Dialect, ErrorKind, GatewayError};
    use uuid::Uuid;

    fn retry_after_header(after: Duration) -> String {
        let e = GatewayError::new(ErrorKind::RateLimited, "slow down").with_retry_after(after);
        let r = super::error(Dialect::OpenAi, &e, &Uuid::now_v7());
        r.headers()["retry-after"].to_str().unwrap().to_owned()
    }

    #[test]
    fn retry_after_is_rounded_up_to_whole_seconds() {
        assert_eq!(retry_after_header(Duration::from_millis(1500)), "2");
        assert_eq!(retry_after_header(Duration::from_secs(3)), "3");
        assert_eq!(retry_after_header(Duration::from_millis(1)), "1");
        assert_eq!(retry_after_header(Duration::ZERO), "1");
    }
}
