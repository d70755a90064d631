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
        let secs = after.as_secs().max(1);
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            r.headers_mut().insert(RETRY_AFTER, v);
        }
    }
    r
}
