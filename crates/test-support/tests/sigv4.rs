//! The gateway's SigV4 signer (`portcullis_providers::sigv4`, over the `aws-sigv4` crate) and
//! the mock's verifier (written from AWS's description) agree, and the verifier refuses whatever
//! was changed after signing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use portcullis_providers::sigv4::{AwsCredentials, RequestToSign, encode_uri_label, sign_request};
use portcullis_test_support::sigv4::{AwsKey, SigV4Verifier};

const HOST: &str = "bedrock-runtime.us-west-2.amazonaws.com";

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_767_225_600) // 2026-01-01T00:00:00Z
}

fn verifier(token: Option<&str>) -> SigV4Verifier {
    SigV4Verifier::new(
        vec![AwsKey {
            access_key_id: "AKIAMOCKBEDROCK".into(),
            secret_access_key: "mock/secret+key".into(),
            session_token: token.map(str::to_owned),
        }],
        "us-west-2",
        "bedrock",
    )
}

/// A Converse request signed by the gateway's signer: path, headers as sent, body.
fn signed(credentials: &AwsCredentials, body: &[u8], time: SystemTime) -> (String, HeaderMap) {
    let path = format!(
        "/model/{}/converse",
        encode_uri_label("anthropic.claude-3-5-sonnet-20241022-v2:0")
    );
    let url = format!("https://{HOST}{path}");
    let sent = [
        ("content-type", "application/json"),
        ("accept", "application/json"),
    ];
    let added = sign_request(
        credentials,
        "us-west-2",
        "bedrock",
        time,
        &RequestToSign {
            method: "POST",
            url: &url,
            headers: &sent,
            body,
        },
    )
    .unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("host", HOST.parse().unwrap());
    for (k, v) in sent {
        headers.insert(k, v.parse().unwrap());
    }
    // What an HTTP client adds on its own is not signed and does not matter.
    headers.insert("user-agent", "portcullis".parse().unwrap());
    headers.insert("content-length", body.len().to_string().parse().unwrap());
    for (k, v) in added {
        headers.insert(k, v);
    }
    (path, headers)
}

#[test]
fn what_the_signer_signs_the_verifier_accepts() {
    let body = br#"{"messages":[{"role":"user","content":[{"text":"hi"}]}]}"#;
    let creds = AwsCredentials::new("AKIAMOCKBEDROCK", "mock/secret+key");
    let (path, headers) = signed(&creds, body, now());
    assert!(path.contains("v2%3A0"));
    assert_eq!(
        verifier(None).verify("POST", &path, &headers, body, now()),
        Ok(())
    );
    // Within the allowed clock skew either way.
    let later = now() + Duration::from_secs(299);
    assert_eq!(
        verifier(None).verify("POST", &path, &headers, body, later),
        Ok(())
    );

    let with_token = creds
        .clone()
        .with_session_token("FwoGZXIvYXdzEMock//token==");
    let (path, headers) = signed(&with_token, body, now());
    assert_eq!(
        headers.get("x-amz-security-token").unwrap(),
        "FwoGZXIvYXdzEMock//token=="
    );
    assert_eq!(
        verifier(Some("FwoGZXIvYXdzEMock//token==")).verify("POST", &path, &headers, body, now()),
        Ok(())
    );
}

#[test]
fn a_tampered_body_header_path_time_or_key_fails_verification() {
    let body = br#"{"messages":[]}"#;
    let creds = AwsCredentials::new("AKIAMOCKBEDROCK", "mock/secret+key");
    let (path, headers) = signed(&creds, body, now());
    let v = verifier(None);
    let mismatch = |r: Result<(), portcullis_test_support::sigv4::Rejection>| {
        let r = r.unwrap_err();
        assert_eq!((r.status, r.error_type), (403, "InvalidSignatureException"));
        assert!(
            r.message
                .starts_with("The request signature we calculated does not match")
        );
    };
    mismatch(v.verify("POST", &path, &headers, br#"{"messages":[1]}"#, now()));
    let mut changed = headers.clone();
    changed.insert("content-type", "text/plain".parse().unwrap());
    mismatch(v.verify("POST", &path, &changed, body, now()));
    let mut changed = headers.clone();
    let date = changed
        .get("x-amz-date")
        .unwrap()
        .to_str()
        .unwrap()
        .replace("00Z", "01Z");
    changed.insert("x-amz-date", date.parse().unwrap());
    mismatch(v.verify("POST", &path, &changed, body, now()));
    mismatch(v.verify(
        "POST",
        &path.replace("v2%3A0", "v2%3A1"),
        &headers,
        body,
        now(),
    ));
    // The path as sent, not decoded: `:` unencoded on the wire is another canonical URI.
    mismatch(v.verify("POST", &path.replace("%3A", ":"), &headers, body, now()));

    let wrong = AwsCredentials::new("AKIAMOCKBEDROCK", "not-the-secret");
    let (path, headers) = signed(&wrong, body, now());
    mismatch(v.verify("POST", &path, &headers, body, now()));

    let (path, headers) = signed(&creds, body, now() - Duration::from_secs(301));
    let expired = v.verify("POST", &path, &headers, body, now()).unwrap_err();
    assert!(
        expired.message.starts_with("Signature expired: "),
        "{expired:?}"
    );
}
