//! Error bodies: [`GatewayError`]s encoded in the caller's dialect, and upstream error
//! responses decoded into [`GatewayError`]s with the status, blame and retryability the
//! gateway acts on.
//!
//! Upstream 4xx answers are translated, never leaked raw in the wrong dialect; an upstream
//! refusing the gateway's own credentials is the gateway's problem (502), not the caller's
//! (401).

use std::time::Duration;

use http::StatusCode;
use portcullis_core::{Blame, Dialect, ErrorKind, GatewayError};
use serde_json::{Value, json};

/// The error body for `err` in `dialect`.
pub fn encode_error(dialect: Dialect, err: &GatewayError, request_id: Option<&str>) -> Vec<u8> {
    let body = match dialect {
        Dialect::OpenAi => json!({ "error": openai_error_fields(err) }),
        Dialect::Anthropic => {
            let mut v = json!({ "type": "error", "error": anthropic_error_fields(err) });
            if let Some(id) = request_id {
                v["request_id"] = Value::String(id.to_owned());
            }
            v
        }
    };
    serde_json::to_vec(&body).unwrap_or_default()
}

/// The fields of an OpenAI `error` object.
pub(crate) fn openai_error_fields(err: &GatewayError) -> Value {
    let kind = match err.kind() {
        ErrorKind::InvalidRequest | ErrorKind::NotFound | ErrorKind::PayloadTooLarge => {
            "invalid_request_error"
        }
        ErrorKind::Authentication => "authentication_error",
        ErrorKind::PermissionDenied => "permission_error",
        ErrorKind::RateLimited => "rate_limit_error",
        ErrorKind::Upstream
        | ErrorKind::Unavailable
        | ErrorKind::Timeout
        | ErrorKind::Internal
        | ErrorKind::ClientClosed => "server_error",
    };
    json!({
        "message": err.message(),
        "type": kind,
        "param": err.param(),
        "code": err.code().or(default_code(err.kind())),
    })
}

fn default_code(kind: ErrorKind) -> Option<&'static str> {
    match kind {
        ErrorKind::RateLimited => Some("rate_limit_exceeded"),
        ErrorKind::Upstream => Some("upstream_error"),
        ErrorKind::Unavailable => Some("upstream_unavailable"),
        ErrorKind::Timeout => Some("upstream_timeout"),
        _ => None,
    }
}

/// The fields of an Anthropic `error` object.
pub(crate) fn anthropic_error_fields(err: &GatewayError) -> Value {
    let kind = match err.kind() {
        ErrorKind::InvalidRequest => "invalid_request_error",
        ErrorKind::Authentication => "authentication_error",
        ErrorKind::PermissionDenied => "permission_error",
        ErrorKind::NotFound => "not_found_error",
        ErrorKind::PayloadTooLarge => "request_too_large",
        ErrorKind::RateLimited => "rate_limit_error",
        ErrorKind::Unavailable => "overloaded_error",
        ErrorKind::Timeout => "timeout_error",
        ErrorKind::Upstream | ErrorKind::Internal | ErrorKind::ClientClosed => "api_error",
    };
    json!({ "type": kind, "message": err.message() })
}

/// Turns an upstream's error answer into a [`GatewayError`].
///
/// Both OpenAI-style (`{"error":{…}}`, or `{"error":"…"}` as some compatible servers send)
/// and Anthropic-style (`{"type":"error","error":{…}}`) bodies are understood whatever the
/// provider's dialect, since compatible servers are not always consistent.
pub fn decode_upstream_error(
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
    provider: &str,
) -> GatewayError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let message = parsed
        .as_ref()
        .and_then(error_message)
        .unwrap_or_else(|| body_excerpt(body));
    let upstream_type = parsed
        .as_ref()
        .and_then(|v| v.get("error"))
        .and_then(|e| e.get("type"))
        .and_then(Value::as_str);
    classify(status, message, upstream_type, provider, retry_after)
}

/// Decodes an error object that arrived inside a stream (`{"type":"overloaded_error",…}` or
/// OpenAI's `{"message":…,"type":…}`), treating it as if it came with `status`.
pub(crate) fn decode_error_object(err: &Value, status: u16) -> GatewayError {
    let message = err
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| err.as_str().map(str::to_owned))
        .unwrap_or_else(|| "the upstream reported an error mid-stream".to_owned());
    let kind = err.get("type").and_then(Value::as_str);
    let status = match kind {
        Some("overloaded_error") => 529,
        Some("rate_limit_error") => 429,
        Some("invalid_request_error") => 400,
        _ => status,
    };
    classify(status, message, kind, "upstream", None)
}

fn error_message(v: &Value) -> Option<String> {
    let e = v.get("error")?;
    if let Some(s) = e.as_str() {
        return Some(s.to_owned());
    }
    e.get("message")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| v.get("message").and_then(Value::as_str).map(str::to_owned))
}

fn body_excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "no error details".to_owned();
    }
    let mut end = text.len().min(200);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

pub(crate) fn classify(
    status: u16,
    message: String,
    upstream_type: Option<&str>,
    provider: &str,
    retry_after: Option<Duration>,
) -> GatewayError {
    let err = match status {
        400 | 422 => GatewayError::invalid_request(message),
        401 | 403 => GatewayError::new(
            ErrorKind::Upstream,
            format!("The upstream provider `{provider}` rejected the gateway's credentials"),
        )
        .with_blame(Blame::Gateway)
        .with_code("upstream_auth_failed"),
        404 => GatewayError::new(ErrorKind::NotFound, message).with_code("model_not_found"),
        408 => GatewayError::new(
            ErrorKind::Timeout,
            format!("The upstream provider `{provider}` timed out: {message}"),
        ),
        409 => GatewayError::new(
            ErrorKind::Upstream,
            format!("The upstream provider `{provider}` reported a conflict: {message}"),
        )
        .with_status(StatusCode::CONFLICT),
        413 => GatewayError::new(ErrorKind::PayloadTooLarge, message),
        429 => {
            let e = GatewayError::new(ErrorKind::RateLimited, message).with_blame(Blame::Upstream);
            match upstream_type {
                Some("insufficient_quota") => e.with_code("insufficient_quota"),
                _ => e,
            }
        }
        503 | 529 => GatewayError::new(
            ErrorKind::Unavailable,
            format!("The upstream provider `{provider}` is overloaded or unavailable: {message}"),
        ),
        504 => GatewayError::new(
            ErrorKind::Timeout,
            format!("The upstream provider `{provider}` timed out: {message}"),
        ),
        s if (400..500).contains(&s) => GatewayError::invalid_request(message)
            .with_status(StatusCode::from_u16(s).unwrap_or(StatusCode::BAD_REQUEST)),
        _ => GatewayError::new(
            ErrorKind::Upstream,
            format!("The upstream provider `{provider}` failed ({status}): {message}"),
        ),
    };
    match retry_after {
        Some(d) => err.with_retry_after(d),
        None => err,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_errors_map_to_the_right_status_and_blame() {
        let cases: &[(u16, &[u8], u16, bool)] = &[
            (
                400,
                br#"{"error":{"message":"bad temp","type":"invalid_request_error"}}"#,
                400,
                false,
            ),
            (
                401,
                br#"{"error":{"message":"Incorrect API key provided: sk-ab***cd"}}"#,
                502,
                true,
            ),
            (
                404,
                br#"{"type":"error","error":{"type":"not_found_error","message":"model: nope"}}"#,
                404,
                false,
            ),
            (429, br#"{"error":{"message":"slow down"}}"#, 429, true),
            (500, b"<html>boom</html>", 502, true),
            (503, b"", 503, true),
            (
                529,
                br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
                503,
                true,
            ),
            (504, b"", 504, true),
        ];
        for (status, body, want, retryable) in cases {
            let e = decode_upstream_error(*status, None, body, "p");
            assert_eq!(e.status().as_u16(), *want, "{status}");
            assert_eq!(e.retryable(), *retryable, "{status}");
        }
        let e = decode_upstream_error(
            401,
            None,
            br#"{"error":{"message":"Incorrect API key provided: sk-ab***cd"}}"#,
            "openai",
        );
        assert!(
            !e.message().contains("sk-"),
            "credentials hints never reach the caller"
        );
        assert_eq!(e.blame(), Blame::Gateway);
        let e = decode_upstream_error(400, None, br#"{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: required"}}"#, "anthropic");
        assert_eq!(e.message(), "max_tokens: required");
    }

    #[test]
    fn encodes_each_dialect() {
        let e = GatewayError::model_not_found("x/y");
        let o: Value = serde_json::from_slice(&encode_error(Dialect::OpenAi, &e, None)).unwrap();
        assert_eq!(o["error"]["type"], "invalid_request_error");
        assert_eq!(o["error"]["code"], "model_not_found");
        assert_eq!(o["error"]["param"], "model");
        let a: Value =
            serde_json::from_slice(&encode_error(Dialect::Anthropic, &e, Some("req_1"))).unwrap();
        assert_eq!(a["type"], "error");
        assert_eq!(a["error"]["type"], "not_found_error");
        assert_eq!(a["request_id"], "req_1");
    }
}
