//! Bedrock error answers — the status, `x-amzn-ErrorType` and `{"message": …}` of AWS's
//! rest-json protocol — and the exceptions a ConverseStream sends inside the stream, decoded
//! into [`GatewayError`]s.
//!
//! The status says what went wrong: `ValidationException` 400, `AccessDeniedException` and
//! `UnrecognizedClientException` (or a bad signature) 403, which is the gateway's credentials
//! failing (502), `ResourceNotFoundException` 404, `ModelTimeoutException` 408,
//! `ModelErrorException` 424 (the model failed: an upstream failure), `ThrottlingException`
//! 429, `ServiceUnavailableException` and `ModelNotReadyException` 503 (AWS's own SDKs retry
//! both), `InternalServerException` 500. Bedrock names no wait before retrying a throttled
//! request, so a 429 without `Retry-After` is given [`THROTTLE_WAIT`], a back-off of the order
//! AWS's SDKs use.

use std::time::Duration;

use http::StatusCode;
use portcullis_core::{ErrorKind, GatewayError};
use serde_json::Value;

use crate::errors::{classify, decode_upstream_error};

/// The wait suggested for a throttled request when Bedrock names none.
pub const THROTTLE_WAIT: Duration = Duration::from_secs(1);

/// Turns a Bedrock error answer into a [`GatewayError`]; `retry_after` is the answer's
/// `Retry-After` header, if any.
pub fn decode_error(
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
    provider: &str,
) -> GatewayError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let message = parsed.as_ref().and_then(|v| {
        ["message", "Message"]
            .iter()
            .find_map(|k| v.get(*k).and_then(Value::as_str))
            .filter(|m| !m.is_empty())
            .map(str::to_owned)
    });
    let Some(message) = message else {
        return finish(
            decode_upstream_error(status, retry_after, body, provider),
            status,
            retry_after,
        );
    };
    // A body naming its exception (`__type`, as some AWS front ends add) is read as that.
    let named = parsed
        .as_ref()
        .and_then(|v| v.get("__type"))
        .and_then(Value::as_str)
        .map(|t| t.rsplit(['#', ':']).next().unwrap_or(t))
        .and_then(exception_status);
    let status = named.unwrap_or(status);
    finish(
        classify(status, message, None, provider, retry_after),
        status,
        retry_after,
    )
}

/// What Bedrock's statuses mean beyond the common mapping.
fn finish(err: GatewayError, status: u16, retry_after: Option<Duration>) -> GatewayError {
    match status {
        408 => err.with_status(StatusCode::REQUEST_TIMEOUT),
        424 => GatewayError::new(
            ErrorKind::Upstream,
            format!("The model failed to process the request: {}", err.message()),
        ),
        429 if retry_after.is_none() => err.with_retry_after(THROTTLE_WAIT),
        _ => err,
    }
}

/// The status of one of Bedrock Runtime's exceptions, by name (either case of its first
/// letter: the stream's union members are `throttlingException`, the errors
/// `ThrottlingException`).
fn exception_status(name: &str) -> Option<u16> {
    let mut chars = name.chars();
    let first = chars.next()?.to_ascii_uppercase();
    let name: String = std::iter::once(first).chain(chars).collect();
    Some(match name.as_str() {
        "ValidationException" | "SerializationException" => 400,
        "AccessDeniedException"
        | "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "ExpiredTokenException"
        | "IncompleteSignatureException"
        | "MissingAuthenticationTokenException" => 403,
        "ResourceNotFoundException" => 404,
        "ModelTimeoutException" => 408,
        "ModelErrorException" | "ModelStreamErrorException" => 424,
        "ThrottlingException" => 429,
        "InternalServerException" => 500,
        "ServiceUnavailableException" | "ModelNotReadyException" => 503,
        _ => return None,
    })
}

/// An exception sent inside a ConverseStream (`:exception-type` `throttlingException`,
/// `modelStreamErrorException`, …, or an `:error-code`), with its JSON payload.
pub fn decode_exception(exception_type: &str, payload: &[u8], provider: &str) -> GatewayError {
    let parsed: Option<Value> = serde_json::from_slice(payload).ok();
    let message = parsed
        .as_ref()
        .and_then(|v| v.get("message").and_then(Value::as_str))
        .filter(|m| !m.is_empty())
        .map_or_else(
            || format!("The upstream stream failed ({exception_type})"),
            str::to_owned,
        );
    let mut status = exception_status(exception_type).unwrap_or(500);
    if status == 424 {
        // A model's own failure reports the status it ended with (529: overloaded).
        let original = parsed
            .as_ref()
            .and_then(|v| v.get("originalStatusCode"))
            .and_then(Value::as_u64)
            .and_then(|s| u16::try_from(s).ok());
        status = match original {
            Some(429) => 429,
            Some(503 | 529) => 503,
            _ => 424,
        };
    }
    finish(
        classify(status, message, None, provider, None),
        status,
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(message: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({ "message": message })).unwrap()
    }

    #[test]
    fn statuses_map_to_the_callers_terms() {
        let e = decode_error(429, None, &body("Too many requests"), "bedrock");
        assert_eq!(e.status().as_u16(), 429);
        assert!(e.retryable());
        assert_eq!(e.retry_after(), Some(THROTTLE_WAIT));
        assert_eq!(e.message(), "Too many requests");
        let e = decode_error(429, Some(Duration::from_secs(4)), &body("x"), "bedrock");
        assert_eq!(e.retry_after(), Some(Duration::from_secs(4)));

        for (status, want) in [
            (400, 400),
            (404, 404),
            (408, 408),
            (403, 502),
            (424, 502),
            (500, 502),
            (503, 503),
        ] {
            let e = decode_error(status, None, &body("m"), "bedrock");
            assert_eq!(e.status().as_u16(), want, "{status}");
        }
        let e = decode_error(
            403,
            None,
            &body("The security token included in the request is invalid."),
            "bedrock",
        );
        assert!(!e.message().contains("security token"));
        assert!(decode_error(503, None, &body("m"), "bedrock").retryable());
        assert!(decode_error(408, None, &body("m"), "bedrock").retryable());
        assert!(!decode_error(400, None, &body("m"), "bedrock").retryable());

        let named = br#"{"__type": "com.amazon.coral.availability#ThrottlingException", "message": "Rate exceeded"}"#;
        assert_eq!(
            decode_error(400, None, named, "bedrock").status().as_u16(),
            429
        );
        assert_eq!(
            decode_error(502, None, b"<html>", "bedrock")
                .status()
                .as_u16(),
            502
        );
    }

    #[test]
    fn stream_exceptions() {
        let e = decode_exception("throttlingException", &body("slow down"), "bedrock");
        assert_eq!(e.status().as_u16(), 429);
        let e = decode_exception(
            "modelStreamErrorException",
            br#"{"message": "interrupted", "originalStatusCode": 529, "originalMessage": "Overloaded"}"#,
            "bedrock",
        );
        assert_eq!(e.status().as_u16(), 503);
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        let e = decode_exception("validationException", &body("bad"), "bedrock");
        assert_eq!(e.status().as_u16(), 400);
        let e = decode_exception("internalServerException", b"", "bedrock");
        assert_eq!(e.status().as_u16(), 502);
        assert_eq!(
            decode_exception("serviceUnavailableException", &body("x"), "b")
                .status()
                .as_u16(),
            503
        );
    }
}
