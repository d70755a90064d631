//! Google service accounts: the JSON key file ([`ServiceAccount`], read and checked without
//! ever showing its private key) and the OAuth 2.0 JWT-bearer grant that trades it for an
//! access token ([`JwtBearerGrant`], a [`TokenSource`]): an assertion signed RS256 with the
//! file's `private_key` (header `kid` = `private_key_id`; claims `iss` = `client_email`,
//! `scope`, `aud` = `token_uri`, `iat`, `exp` one hour later), posted form-encoded to the
//! file's `token_uri` with `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`. The
//! answer's `access_token` lasts `expires_in` seconds. Nothing here touches the network: the
//! gateway sends the request and keeps the token.

use std::fmt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, Method, Uri};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey;
use serde::Serialize;
use serde_json::Value;

use crate::api::{AccessToken, TokenError, TokenSource};
use crate::provider::UpstreamRequest;
use crate::secret::Secret;

/// The scope of every Google Cloud API, Vertex AI's included.
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// The grant type of the JWT-bearer grant (RFC 7523).
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// How long an assertion is valid: Google accepts at most one hour.
const ASSERTION_LIFETIME: Duration = Duration::from_secs(3600);

/// Why a service-account file cannot be used. No message holds any part of the file's
/// content beyond the names of its fields.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceAccountError {
    /// The file cannot be read.
    #[error("the credentials file `{path}` cannot be read: {reason}")]
    Unreadable {
        /// The file.
        path: String,
        /// The operating system's reason.
        reason: String,
    },
    /// The file is not a service account's key file.
    #[error("{0}")]
    Invalid(String),
}

/// A Google service account's key file, as `gcloud iam service-accounts keys create` writes
/// it. Its private key is held only as a signing key and never printed.
#[derive(Clone)]
pub struct ServiceAccount {
    /// `client_email`: the account, and the assertion's issuer.
    pub client_email: String,
    /// `private_key_id`: the key's id, the assertion's `kid`.
    pub private_key_id: String,
    /// `project_id`, when the file names one.
    pub project_id: Option<String>,
    /// `token_uri`: where the grant is sent (`https://oauth2.googleapis.com/token`).
    pub token_uri: String,
    key: EncodingKey,
}

impl fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("client_email", &self.client_email)
            .field("private_key_id", &self.private_key_id)
            .field("project_id", &self.project_id)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

impl ServiceAccount {
    /// Reads and checks the key file at `path`.
    pub fn read(path: &Path) -> Result<Self, ServiceAccountError> {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| ServiceAccountError::Unreadable {
            path: shown.clone(),
            reason: e.kind().to_string(),
        })?;
        Self::from_json(&bytes).map_err(|e| match e {
            ServiceAccountError::Invalid(why) => {
                ServiceAccountError::Invalid(format!("the credentials file `{shown}` {why}"))
            }
            other => other,
        })
    }

    /// Checks a key file's content. Errors say what is wrong in the file's terms ("has no
    /// `client_email`"), never quoting it.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ServiceAccountError> {
        let invalid = |why: &str| ServiceAccountError::Invalid(why.to_owned());
        // Parse errors are reported by position only: serde's own messages may quote a value.
        let value: Value = serde_json::from_slice(bytes).map_err(|e| {
            ServiceAccountError::Invalid(format!(
                "is not JSON (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        let Some(file) = value.as_object() else {
            return Err(invalid("is not a JSON object"));
        };
        let text = |name: &str| {
            file.get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        match text("type").as_deref() {
            Some("service_account") => {}
            Some(other) if other.len() <= 40 && other.bytes().all(|b| b.is_ascii_graphic()) => {
                return Err(ServiceAccountError::Invalid(format!(
                    "is of type `{other}`, not a service account's key file (`\"type\": \"service_account\"`)"
                )));
            }
            _ => {
                return Err(invalid(
                    "is not a service account's key file (`\"type\": \"service_account\"`)",
                ));
            }
        }
        let required = |name: &str| {
            text(name).ok_or_else(|| ServiceAccountError::Invalid(format!("has no `{name}`")))
        };
        let client_email = required("client_email")?;
        let private_key_id = required("private_key_id")?;
        let pem = Secret::new(required("private_key")?);
        let token_uri = text("token_uri").unwrap_or_else(|| DEFAULT_TOKEN_URI.to_owned());
        if !(token_uri.starts_with("https://") || token_uri.starts_with("http://"))
            || token_uri.parse::<Uri>().is_err()
        {
            return Err(invalid("has a `token_uri` that is not an http(s) URL"));
        }
        let key = signing_key(pem.expose()).ok_or_else(|| {
            invalid(
                "has a `private_key` that is not an RSA private key in PEM (PKCS #8 or PKCS #1)",
            )
        })?;
        Ok(Self {
            client_email,
            private_key_id,
            project_id: text("project_id"),
            token_uri,
            key,
        })
    }
}

/// The RS256 signing key of a PEM private key: PKCS #8 (`BEGIN PRIVATE KEY`, as Google writes
/// it) or PKCS #1 (`BEGIN RSA PRIVATE KEY`).
fn signing_key(pem: &str) -> Option<EncodingKey> {
    use rsa::pkcs1::DecodeRsaPrivateKey;
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(pem)
        .or_else(|_| rsa::RsaPrivateKey::from_pkcs1_pem(pem))
        .ok()?;
    let der = key.to_pkcs1_der().ok()?;
    Some(EncodingKey::from_rsa_der(der.as_bytes()))
}

/// The JWT-bearer grant of a service account for a scope.
#[derive(Debug)]
pub struct JwtBearerGrant {
    account: ServiceAccount,
    scope: String,
    token_uri: Uri,
    cache_key: String,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

impl JwtBearerGrant {
    /// The grant of `account` for `scope`.
    pub fn new(account: ServiceAccount, scope: &str) -> Result<Self, ServiceAccountError> {
        let token_uri = account.token_uri.parse::<Uri>().map_err(|_| {
            ServiceAccountError::Invalid("has a `token_uri` that is not a URL".to_owned())
        })?;
        let cache_key = format!(
            "jwt-bearer {} {} {} {scope}",
            account.token_uri, account.client_email, account.private_key_id
        );
        Ok(Self {
            account,
            scope: scope.to_owned(),
            token_uri,
            cache_key,
        })
    }

    /// The account.
    pub fn account(&self) -> &ServiceAccount {
        &self.account
    }

    /// The signed assertion, issued at `now`.
    pub fn assertion(&self, now: SystemTime) -> Result<String, TokenError> {
        let iat = now
            .duration_since(UNIX_EPOCH)
            .map_err(|_| TokenError::Build("the clock is before 1970".to_owned()))?
            .as_secs();
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.account.private_key_id.clone());
        let claims = Claims {
            iss: &self.account.client_email,
            scope: &self.scope,
            aud: &self.account.token_uri,
            iat,
            exp: iat + ASSERTION_LIFETIME.as_secs(),
        };
        jsonwebtoken::encode(&header, &claims, &self.account.key)
            .map_err(|e| TokenError::Build(format!("signing the assertion: {e}")))
    }
}

impl TokenSource for JwtBearerGrant {
    fn cache_key(&self) -> &str {
        &self.cache_key
    }

    fn token_request(&self, now: SystemTime) -> Result<UpstreamRequest, TokenError> {
        let assertion = self.assertion(now)?;
        // The grant type's `:` are percent-encoded; an assertion (base64url and `.`) needs no
        // encoding.
        let body = format!(
            "grant_type={}&assertion={assertion}",
            JWT_BEARER_GRANT.replace(':', "%3A")
        );
        let mut headers = HeaderMap::with_capacity(2);
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        Ok(UpstreamRequest {
            method: Method::POST,
            uri: self.token_uri.clone(),
            headers,
            body: Bytes::from(body),
        })
    }

    fn read_token(&self, status: u16, body: &[u8]) -> Result<AccessToken, TokenError> {
        read_oauth_token(status, body)
    }
}

/// Reads an OAuth 2.0 token endpoint's answer (RFC 6749 §5): `access_token` and `expires_in`
/// on success, `error` and `error_description` otherwise.
pub fn read_oauth_token(status: u16, body: &[u8]) -> Result<AccessToken, TokenError> {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    if !(200..300).contains(&status) {
        let said = |name: &str| {
            parsed
                .as_ref()
                .and_then(|v| v.get(name))
                .and_then(Value::as_str)
                .map(|s| s.chars().take(200).collect::<String>())
        };
        let reason = match (said("error"), said("error_description")) {
            (Some(e), Some(d)) => format!("{e}: {d}"),
            (Some(e), None) => e,
            _ => "no error details".to_owned(),
        };
        return Err(TokenError::Refused { status, reason });
    }
    let Some(v) = parsed else {
        return Err(TokenError::Malformed("not JSON".to_owned()));
    };
    let token = v
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| TokenError::Malformed("no `access_token`".to_owned()))?;
    // Google sends a number; some servers a string of one.
    let expires_in = match v.get("expires_in") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| TokenError::Malformed("no `expires_in`".to_owned()))?;
    Ok(AccessToken {
        token: Secret::new(token),
        expires_in: Duration::from_secs(expires_in),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = include_str!("../../test-support/keys/vertex-test-service-account.pem");

    fn file(key: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "type": "service_account", "project_id": "test-project",
            "private_key_id": "kid-1", "private_key": key,
            "client_email": "sa@test-project.iam.gserviceaccount.com",
            "token_uri": "http://127.0.0.1:9/token",
        }))
        .unwrap()
    }

    #[test]
    fn the_grant_posts_a_signed_assertion_to_the_token_uri() {
        let account = ServiceAccount::from_json(&file(KEY)).unwrap();
        assert_eq!(account.project_id.as_deref(), Some("test-project"));
        assert!(!format!("{account:?}").contains("PRIVATE"));
        let grant = JwtBearerGrant::new(account, CLOUD_PLATFORM_SCOPE).unwrap();
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let req = grant.token_request(now).unwrap();
        assert_eq!(req.uri, "http://127.0.0.1:9/token");
        assert_eq!(
            req.headers[CONTENT_TYPE],
            "application/x-www-form-urlencoded"
        );
        let body = std::str::from_utf8(&req.body).unwrap();
        let assertion = body
            .strip_prefix(
                "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=",
            )
            .unwrap();
        let parts: Vec<&str> = assertion.split('.').collect();
        assert_eq!(parts.len(), 3);
        use base64::Engine;
        let decode = |p: &str| -> Value {
            serde_json::from_slice(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(p)
                    .unwrap(),
            )
            .unwrap()
        };
        let header = decode(parts[0]);
        assert_eq!(header["alg"], "RS256");
        assert_eq!(header["kid"], "kid-1");
        let claims = decode(parts[1]);
        assert_eq!(claims["iss"], "sa@test-project.iam.gserviceaccount.com");
        assert_eq!(claims["scope"], CLOUD_PLATFORM_SCOPE);
        assert_eq!(claims["aud"], "http://127.0.0.1:9/token");
        assert_eq!(claims["iat"], 1_700_000_000u64);
        assert_eq!(claims["exp"], 1_700_003_600u64);
    }

    #[test]
    fn bad_files_are_refused_without_quoting_the_key() {
        let secret_tail = &KEY[40..80];
        for bad in [
            b"not json".to_vec(),
            serde_json::to_vec(&serde_json::json!(KEY)).unwrap(),
            file("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
            serde_json::to_vec(&serde_json::json!({"type": "authorized_user", "private_key": KEY}))
                .unwrap(),
            serde_json::to_vec(&serde_json::json!({"type": "service_account", "private_key": KEY}))
                .unwrap(),
        ] {
            let e = ServiceAccount::from_json(&bad).unwrap_err().to_string();
            assert!(!e.contains(secret_tail) && !e.contains("BEGIN"), "{e}");
        }
        let e = ServiceAccount::from_json(&file("nope")).unwrap_err();
        assert!(e.to_string().contains("`private_key`"), "{e}");
    }

    #[test]
    fn token_answers_and_refusals() {
        let t = read_oauth_token(
            200,
            br#"{"access_token":"ya29.abc","expires_in":3599,"token_type":"Bearer"}"#,
        )
        .unwrap();
        assert_eq!(t.token.expose(), "ya29.abc");
        assert_eq!(t.expires_in, Duration::from_secs(3599));
        assert_eq!(
            read_oauth_token(
                400,
                br#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#
            )
            .unwrap_err(),
            TokenError::Refused {
                status: 400,
                reason: "invalid_grant: Invalid JWT Signature.".to_owned()
            }
        );
        assert!(matches!(
            read_oauth_token(200, br#"{"token_type":"Bearer"}"#),
            Err(TokenError::Malformed(_))
        ));
    }
}
