//! Gemini error answers — Google's `{"error":{"code","message","status","details"}}` (or a
//! one-element array of it) — decoded into [`GatewayError`]s.
//!
//! Two things differ from the other providers: the wait before retrying a 429 is in the
//! details (`google.rpc.RetryInfo`'s `retryDelay`, such as `"37s"`) when no `Retry-After`
//! header says it, and an invalid API key is a 400 (`ErrorInfo` reason `API_KEY_INVALID`),
//! which is the gateway's credential failing, not the caller's request: a 502 like a 401.

use std::time::Duration;

use portcullis_core::GatewayError;
use serde_json::Value;

use crate::errors::{classify, decode_upstream_error};

/// Turns a Gemini error answer into a [`GatewayError`]; `retry_after` is the answer's
/// `Retry-After` header, if any.
pub fn decode_error(
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
    provider: &str,
) -> GatewayError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let error = parsed.as_ref().and_then(|v| match v {
        Value::Array(items) => items.first().and_then(|i| i.get("error")),
        v => v.get("error"),
    });
    let Some(error) = error.filter(|e| e.is_object()) else {
        return decode_upstream_error(status, retry_after, body, provider);
    };
    let details = error
        .get("details")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let key_refused = details.iter().any(|d| {
        d.get("reason").and_then(Value::as_str) == Some("API_KEY_INVALID")
            || d.get("reason").and_then(Value::as_str) == Some("API_KEY_EXPIRED")
    });
    let status = if key_refused { 401 } else { status };
    let retry_after = retry_after.or_else(|| {
        details
            .iter()
            .find(|d| {
                d.get("@type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.ends_with("google.rpc.RetryInfo"))
            })
            .and_then(|d| d.get("retryDelay"))
            .and_then(Value::as_str)
            .and_then(parse_duration)
    });
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .map_or_else(|| "no error details".to_owned(), str::to_owned);
    let upstream_type = error.get("status").and_then(Value::as_str);
    classify(status, message, upstream_type, provider, retry_after)
}

/// A protobuf JSON duration: seconds with up to nine decimals and an `s` (`"37s"`, `"1.5s"`).
fn parse_duration(text: &str) -> Option<Duration> {
    let secs: f64 = text.trim().strip_suffix('s')?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_info_gives_the_wait_and_bad_keys_are_the_gateways() {
        let body = br#"{"error":{"code":429,"message":"You exceeded your current quota.","status":"RESOURCE_EXHAUSTED",
          "details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[]},
                     {"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"37s"}]}}"#;
        let e = decode_error(429, None, body, "gemini");
        assert_eq!(e.status().as_u16(), 429);
        assert_eq!(e.retry_after(), Some(Duration::from_secs(37)));
        assert_eq!(e.message(), "You exceeded your current quota.");
        let e = decode_error(429, Some(Duration::from_secs(2)), body, "gemini");
        assert_eq!(
            e.retry_after(),
            Some(Duration::from_secs(2)),
            "the header wins"
        );

        let bad_key = br#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT",
          "details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","domain":"googleapis.com"}]}}"#;
        let e = decode_error(400, None, bad_key, "gemini");
        assert_eq!(e.status().as_u16(), 502);
        assert!(!e.message().contains("API key not valid"));

        let not_found = br#"[{"error":{"code":404,"message":"models/nope is not found for API version v1beta","status":"NOT_FOUND"}}]"#;
        let e = decode_error(404, None, not_found, "gemini");
        assert_eq!(e.status().as_u16(), 404);
        assert!(e.message().contains("models/nope"));
        assert_eq!(
            decode_error(413, None, b"", "gemini").status().as_u16(),
            413
        );
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
    }
}
