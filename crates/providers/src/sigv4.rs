//! AWS Signature Version 4 for upstream requests (Bedrock): given credentials, a region, a
//! service, a time and the request exactly as it will be sent, the headers to add to it.
//!
//! The signature is computed by the maintained `aws-sigv4` crate over the method, the URL's path
//! and query as they go on the wire, the headers given, and the SHA-256 of the body's exact
//! bytes; the headers returned are `x-amz-date`, `x-amz-security-token` (with temporary
//! credentials) and `authorization`. The path is canonicalised as AWS does for every service but
//! S3: normalised, then percent-encoded once more, so a model id sent as
//! `/model/anthropic.claude-3-5-sonnet-20241022-v2%3A0/converse` (its `:` encoded by
//! [`encode_uri_label`], as the AWS SDKs send it) is signed as `…-v2%253A0/converse`, which is what
//! Bedrock checks. Nothing here touches the network or reads the clock: the time is an argument,
//! so signing is a pure function and the gateway decides when "now" is.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use http::{HeaderName, HeaderValue};

use crate::secret::Secret;

/// An AWS access key, with the session token of temporary credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsCredentials {
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key_id: String,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: Secret,
    /// `AWS_SESSION_TOKEN`, for temporary credentials; sent as `x-amz-security-token`.
    pub session_token: Option<Secret>,
}

impl AwsCredentials {
    /// Long-term credentials (no session token).
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            secret_access_key: Secret::new(secret_access_key),
            session_token: None,
        }
    }

    /// The credentials with a session token.
    pub fn with_session_token(mut self, token: impl Into<String>) -> Self {
        self.session_token = Some(Secret::new(token));
        self
    }
}

/// The request to sign, exactly as it will be sent.
#[derive(Debug, Clone, Copy)]
pub struct RequestToSign<'a> {
    /// The method (`POST`).
    pub method: &'a str,
    /// The absolute URL, its path already percent-encoded as sent (see [`encode_uri_label`]).
    pub url: &'a str,
    /// The headers sent that the signature covers (`content-type`, `accept`…). `host` is taken
    /// from the URL when not given; `user-agent`, `authorization`, `transfer-encoding` and
    /// `x-amzn-trace-id`, which proxies may change, are never signed. Leave out headers the HTTP
    /// client adds or rewrites on its own.
    pub headers: &'a [(&'a str, &'a str)],
    /// The body's exact bytes.
    pub body: &'a [u8],
}

/// Why a request could not be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigningError {
    /// The request itself is not signable (a relative URL, a header value that is not text).
    #[error("cannot sign the request: {0}")]
    Request(String),
    /// The signer refused the parameters.
    #[error("cannot sign the request: {0}")]
    Signer(String),
}

/// Signs `request` for `service` (`bedrock`) in `region` at `time`: the headers to add to it,
/// those carrying secrets marked sensitive.
pub fn sign_request(
    credentials: &AwsCredentials,
    region: &str,
    service: &str,
    time: SystemTime,
    request: &RequestToSign<'_>,
) -> Result<Vec<(HeaderName, HeaderValue)>, SigningError> {
    let uri: http::Uri = request
        .url
        .parse()
        .map_err(|e| SigningError::Request(format!("invalid URL: {e}")))?;
    // The signer takes the host from the URL when no `host` header is given, and needs one.
    let has_host = request
        .headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("host"));
    if uri.host().is_none() && !has_host {
        return Err(SigningError::Request(
            "the URL has no host and no host header is given".to_owned(),
        ));
    }
    for (name, value) in request.headers {
        if HeaderName::from_bytes(name.as_bytes()).is_err() || HeaderValue::from_str(value).is_err()
        {
            return Err(SigningError::Request(format!(
                "header {name:?} is not a valid HTTP header"
            )));
        }
    }
    let identity = Credentials::new(
        credentials.access_key_id.clone(),
        credentials.secret_access_key.expose().to_owned(),
        credentials
            .session_token
            .as_ref()
            .map(|t| t.expose().to_owned()),
        None,
        "portcullis",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| SigningError::Signer(e.to_string()))?
        .into();
    let signable = SignableRequest::new(
        request.method,
        request.url,
        request.headers.iter().copied(),
        SignableBody::Bytes(request.body),
    )
    .map_err(|e| SigningError::Request(e.to_string()))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| SigningError::Signer(e.to_string()))?
        .into_parts();
    let (headers, _params) = instructions.into_parts();
    headers
        .into_iter()
        .map(|h| {
            let mut value = HeaderValue::from_str(h.value())
                .map_err(|e| SigningError::Signer(e.to_string()))?;
            value.set_sensitive(h.sensitive() || h.name() == "authorization");
            Ok((HeaderName::from_static(h.name()), value))
        })
        .collect()
}

/// What signs a provider's requests (Bedrock's [`Authentication::SigV4`]): the credentials, the
/// region and the service they are signed for. Declared by the provider, carried out by the
/// gateway on each attempt, just before sending, over the exact bytes sent.
///
/// [`Authentication::SigV4`]: crate::api::Authentication::SigV4
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigV4Signing {
    /// The credentials.
    pub credentials: AwsCredentials,
    /// The region requests are signed for (`us-east-1`), whatever the URL's host.
    pub region: String,
    /// The service requests are signed for (`bedrock`).
    pub service: &'static str,
}

/// Headers that are never signed: the ones the signature itself adds, and those the HTTP client
/// or a proxy may add or rewrite on the way.
const UNSIGNED: &[&str] = &[
    "authorization",
    "x-amz-date",
    "x-amz-security-token",
    "x-amz-content-sha256",
    "content-length",
    "user-agent",
    "connection",
    "transfer-encoding",
    "expect",
    "traceparent",
    "tracestate",
];

impl SigV4Signing {
    /// Signs `request` at `time`: every header it carries is covered (but those in
    /// [`UNSIGNED`]), with the host from its URL and the SHA-256 of its body's exact bytes, and
    /// `x-amz-date`, `x-amz-security-token` (temporary credentials) and `authorization` are set
    /// on it, replacing any a previous signing left.
    pub fn sign(
        &self,
        request: &mut crate::provider::UpstreamRequest,
        time: SystemTime,
    ) -> Result<(), SigningError> {
        for name in UNSIGNED.iter().take(4) {
            request.headers.remove(*name);
        }
        let url = request.uri.to_string();
        let mut covered: Vec<(&str, &str)> = Vec::with_capacity(request.headers.len());
        for (name, value) in &request.headers {
            if UNSIGNED.contains(&name.as_str()) {
                continue;
            }
            let value = value.to_str().map_err(|_| {
                SigningError::Request(format!("header {name:?} is not text and cannot be signed"))
            })?;
            covered.push((name.as_str(), value));
        }
        let added = sign_request(
            &self.credentials,
            &self.region,
            self.service,
            time,
            &RequestToSign {
                method: request.method.as_str(),
                url: &url,
                headers: &covered,
                body: &request.body,
            },
        )?;
        for (name, value) in added {
            request.headers.insert(name, value);
        }
        Ok(())
    }
}

/// Percent-encodes `value` for one segment of a URL path, as the AWS SDKs encode a path label
/// such as Bedrock's `{modelId}`: every byte but the unreserved `A–Z a–z 0–9 - . _ ~` becomes
/// `%XX`, so `:` in `anthropic.claude-3-5-sonnet-20241022-v2:0` and `/` in an ARN are encoded.
pub fn encode_uri_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3 / 2);
    for &b in value.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 0x0f)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    /// The credentials and time of the AWS SigV4 test suite (the vectors `aws-sigv4` publishes in
    /// its `aws-signing-test-suite/v4`).
    fn suite_credentials() -> AwsCredentials {
        AwsCredentials::new("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    }

    /// 2015-08-30T12:36:00Z.
    fn suite_time() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_440_938_160)
    }

    fn header<'a>(headers: &'a [(HeaderName, HeaderValue)], name: &str) -> Option<&'a str> {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.to_str().ok())
    }

    #[test]
    fn get_vanilla_from_the_aws_test_suite() {
        let headers = sign_request(
            &suite_credentials(),
            "us-east-1",
            "service",
            suite_time(),
            &RequestToSign {
                method: "GET",
                url: "https://example.amazonaws.com/",
                headers: &[],
                body: b"",
            },
        )
        .unwrap();
        assert_eq!(header(&headers, "x-amz-date"), Some("20150830T123600Z"));
        assert_eq!(
            header(&headers, "authorization"),
            Some(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
                 SignedHeaders=host;x-amz-date, \
                 Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
            )
        );
        assert_eq!(header(&headers, "x-amz-security-token"), None);
        let authorization = headers.iter().find(|(n, _)| n == "authorization");
        assert!(authorization.is_some_and(|(_, v)| v.is_sensitive()));
    }

    #[test]
    fn get_vanilla_with_session_token_from_the_aws_test_suite() {
        let token = "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267";
        let headers = sign_request(
            &suite_credentials().with_session_token(token),
            "us-east-1",
            "service",
            suite_time(),
            &RequestToSign {
                method: "GET",
                url: "https://example.amazonaws.com/",
                headers: &[("host", "example.amazonaws.com")],
                body: b"",
            },
        )
        .unwrap();
        assert_eq!(header(&headers, "x-amz-security-token"), Some(token));
        assert_eq!(
            header(&headers, "authorization"),
            Some(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
                 SignedHeaders=host;x-amz-date;x-amz-security-token, \
                 Signature=07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8"
            )
        );
    }

    #[test]
    fn post_header_key_sort_from_the_aws_test_suite() {
        let headers = sign_request(
            &suite_credentials(),
            "us-east-1",
            "service",
            suite_time(),
            &RequestToSign {
                method: "POST",
                url: "https://example.amazonaws.com/",
                headers: &[("My-Header1", "value1")],
                body: b"",
            },
        )
        .unwrap();
        assert_eq!(
            header(&headers, "authorization"),
            Some(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
                 SignedHeaders=host;my-header1;x-amz-date, \
                 Signature=c5410059b04c1ee005303aed430f6e6645f61f4dc9e1461ec8f8916fdf18852c"
            )
        );
    }

    #[test]
    fn the_signature_covers_the_body_headers_path_and_time() {
        let path = format!(
            "/model/{}/converse",
            encode_uri_label("anthropic.claude-3-5-sonnet-20241022-v2:0")
        );
        assert_eq!(
            path,
            "/model/anthropic.claude-3-5-sonnet-20241022-v2%3A0/converse"
        );
        let url = format!("https://bedrock-runtime.us-east-1.amazonaws.com{path}");
        let signature = |url: &str, body: &[u8], content_type: &str, time: SystemTime| {
            let headers = sign_request(
                &suite_credentials(),
                "us-east-1",
                "bedrock",
                time,
                &RequestToSign {
                    method: "POST",
                    url,
                    headers: &[("content-type", content_type)],
                    body,
                },
            )
            .unwrap();
            header(&headers, "authorization").map(str::to_owned)
        };
        let base = signature(&url, b"{}", "application/json", suite_time());
        assert!(base.as_deref().is_some_and(|a| a.contains(
            "/20150830/us-east-1/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date,"
        )));
        assert_ne!(
            base,
            signature(&url, b"{ }", "application/json", suite_time())
        );
        assert_ne!(base, signature(&url, b"{}", "text/plain", suite_time()));
        assert_ne!(
            base,
            signature(
                &url,
                b"{}",
                "application/json",
                suite_time() + Duration::from_secs(1)
            )
        );
        assert_ne!(
            base,
            signature(
                &url.replace("v2%3A0", "v2%3A1"),
                b"{}",
                "application/json",
                suite_time()
            )
        );
    }

    #[test]
    fn unsignable_requests_are_errors_not_panics() {
        let sign = |url: &str, headers: &[(&str, &str)]| {
            sign_request(
                &suite_credentials(),
                "us-east-1",
                "bedrock",
                suite_time(),
                &RequestToSign {
                    method: "POST",
                    url,
                    headers,
                    body: b"",
                },
            )
        };
        assert!(matches!(
            sign("/model/x/converse", &[]),
            Err(SigningError::Request(_))
        ));
        assert!(matches!(
            sign("https://h/", &[("bad header", "v")]),
            Err(SigningError::Request(_))
        ));
        assert!(matches!(
            sign("https://h/", &[("x-a", "line\nbreak")]),
            Err(SigningError::Request(_))
        ));
        assert!(sign("/model/x/converse", &[("host", "h")]).is_ok());
    }

    #[test]
    fn a_provider_request_is_signed_as_sent_and_signed_again_on_a_retry() {
        let signing = SigV4Signing {
            credentials: suite_credentials().with_session_token("token"),
            region: "us-east-1".to_owned(),
            service: "bedrock",
        };
        let mut headers = http::HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.insert(
            "user-agent",
            HeaderValue::from_static("rewritten-by-proxies"),
        );
        let mut request = crate::provider::UpstreamRequest {
            method: http::Method::POST,
            uri: "https://bedrock-runtime.us-east-1.amazonaws.com/model/a.b-v1%3A0/converse"
                .parse()
                .unwrap(),
            headers,
            body: bytes::Bytes::from_static(b"{}"),
        };
        signing.sign(&mut request, suite_time()).unwrap();
        let first = request.headers["authorization"].clone();
        assert!(first.is_sensitive());
        assert!(first.to_str().unwrap().contains(
            "/20150830/us-east-1/bedrock/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date;x-amz-security-token,"
        ));
        assert_eq!(request.headers["x-amz-date"], "20150830T123600Z");
        assert_eq!(request.headers["x-amz-security-token"], "token");
        assert!(request.headers["x-amz-security-token"].is_sensitive());

        // Signing again (a retry) replaces the previous signature rather than adding one.
        signing
            .sign(&mut request, suite_time() + Duration::from_secs(60))
            .unwrap();
        assert_eq!(request.headers.get_all("authorization").iter().count(), 1);
        assert_ne!(request.headers["authorization"], first);
        assert_eq!(request.headers["x-amz-date"], "20150830T123700Z");

        // The signature covers the body's exact bytes.
        let mut changed = request.clone();
        changed.body = bytes::Bytes::from_static(b"{ }");
        signing
            .sign(&mut changed, suite_time() + Duration::from_secs(60))
            .unwrap();
        assert_ne!(
            changed.headers["authorization"],
            request.headers["authorization"]
        );
    }

    #[test]
    fn uri_labels_keep_only_unreserved_characters() {
        assert_eq!(
            encode_uri_label("arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.a~b_c"),
            "arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.a~b_c"
        );
        assert_eq!(encode_uri_label("a b+é"), "a%20b%2B%C3%A9");
    }
}
