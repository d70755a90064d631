//! Microsoft Entra ID's OAuth 2.0 client-credentials grant, the token source an Azure OpenAI
//! provider may use instead of its key: a form-encoded `POST
//! {authority}/{tenant_id}/oauth2/v2.0/token` with `client_id`, `client_secret` and the scope
//! `https://cognitiveservices.azure.com/.default`, answered with an `access_token` and its
//! `expires_in`. The gateway sends it, keeps the token until shortly before it expires and
//! sends it as `Authorization: Bearer …`; the grant never touches the network.

use std::time::SystemTime;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue};
use http::{Method, Uri};

use crate::api::{AccessToken, TokenError, TokenSource};
use crate::google_auth::read_oauth_token;
use crate::provider::{ProviderError, UpstreamRequest};
use crate::secret::Secret;

/// Entra ID's public authority.
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";
/// The scope of Azure OpenAI's (Cognitive Services') tokens.
pub const COGNITIVE_SERVICES_SCOPE: &str = "https://cognitiveservices.azure.com/.default";

/// An application's client-credentials grant at one tenant.
pub struct ClientCredentialsGrant {
    token_uri: Uri,
    /// The form body, the secret in it: never shown.
    body: Secret,
    cache_key: String,
}

impl std::fmt::Debug for ClientCredentialsGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentialsGrant")
            .field("token_uri", &self.token_uri)
            .field("cache_key", &self.cache_key)
            .finish_non_exhaustive()
    }
}

impl ClientCredentialsGrant {
    /// The grant of `client_id` (with `client_secret`) in `tenant_id` at `authority` (Entra
    /// ID's public one when `None`), for `scope`.
    pub fn new(
        authority: Option<&str>,
        tenant_id: &str,
        client_id: &str,
        client_secret: &Secret,
        scope: &str,
    ) -> Result<Self, ProviderError> {
        let authority = authority.unwrap_or(DEFAULT_AUTHORITY).trim_end_matches('/');
        if !(authority.starts_with("https://") || authority.starts_with("http://")) {
            return Err(ProviderError::Entra(format!(
                "`authority` `{authority}` is not an absolute http:// or https:// URL"
            )));
        }
        let segment_ok = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        };
        if !segment_ok(tenant_id) {
            return Err(ProviderError::Entra(format!(
                "`tenant_id` `{tenant_id}` is not a tenant id or domain"
            )));
        }
        if client_id.is_empty() || client_secret.is_empty() {
            return Err(ProviderError::Entra(
                "Entra ID needs `tenant_id`, `client_id` and `client_secret`".to_owned(),
            ));
        }
        let token_uri = format!("{authority}/{tenant_id}/oauth2/v2.0/token")
            .parse::<Uri>()
            .map_err(|_| ProviderError::Entra(format!("`authority` `{authority}` is not a URL")))?;
        let body = format!(
            "grant_type=client_credentials&client_id={}&client_secret={}&scope={}",
            form_encode(client_id),
            form_encode(client_secret.expose()),
            form_encode(scope),
        );
        Ok(Self {
            cache_key: format!("entra {token_uri} {client_id} {scope}"),
            token_uri,
            body: Secret::new(body),
        })
    }
}

/// `s` encoded for an `application/x-www-form-urlencoded` value.
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl TokenSource for ClientCredentialsGrant {
    fn cache_key(&self) -> &str {
        &self.cache_key
    }

    fn token_request(&self, _now: SystemTime) -> Result<UpstreamRequest, TokenError> {
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
            body: Bytes::from(self.body.expose().to_owned()),
        })
    }

    fn read_token(&self, status: u16, body: &[u8]) -> Result<AccessToken, TokenError> {
        read_oauth_token(status, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> ClientCredentialsGrant {
        ClientCredentialsGrant::new(
            Some("http://127.0.0.1:9/"),
            "tenant-1",
            "client-1",
            &Secret::new("s3cr&t=+"),
            COGNITIVE_SERVICES_SCOPE,
        )
        .unwrap()
    }

    #[test]
    fn the_token_request_is_a_form_encoded_client_credentials_grant() {
        let r = grant().token_request(SystemTime::now()).unwrap();
        assert_eq!(r.method, Method::POST);
        assert_eq!(r.uri, "http://127.0.0.1:9/tenant-1/oauth2/v2.0/token");
        assert_eq!(r.headers[CONTENT_TYPE], "application/x-www-form-urlencoded");
        assert_eq!(
            std::str::from_utf8(&r.body).unwrap(),
            "grant_type=client_credentials&client_id=client-1&client_secret=s3cr%26t%3D%2B\
             &scope=https%3A%2F%2Fcognitiveservices.azure.com%2F.default"
        );
        let default = ClientCredentialsGrant::new(
            None,
            "contoso.onmicrosoft.com",
            "c",
            &Secret::new("s"),
            COGNITIVE_SERVICES_SCOPE,
        )
        .unwrap();
        assert_eq!(
            default.token_request(SystemTime::now()).unwrap().uri,
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
    }

    #[test]
    fn the_secret_never_shows() {
        let g = grant();
        assert!(!format!("{g:?}").contains("s3cr"));
        assert!(!g.cache_key().contains("s3cr"));
        assert!(g.cache_key().contains("client-1"));
    }

    #[test]
    fn answers_and_refusals_are_read() {
        let g = grant();
        let t = g
            .read_token(
                200,
                br#"{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"eyJ.x"}"#,
            )
            .unwrap();
        assert_eq!(t.token.expose(), "eyJ.x");
        assert_eq!(t.expires_in.as_secs(), 3599);
        let refused = g
            .read_token(
                401,
                br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided."}"#,
            )
            .unwrap_err();
        assert!(
            matches!(&refused, TokenError::Refused { status: 401, reason } if reason.starts_with("invalid_client: AADSTS7000215")),
            "{refused:?}"
        );
    }

    #[test]
    fn bad_settings_are_configuration_errors() {
        let s = Secret::new("s");
        let scope = COGNITIVE_SERVICES_SCOPE;
        assert!(ClientCredentialsGrant::new(Some("ftp://x"), "t", "c", &s, scope).is_err());
        assert!(ClientCredentialsGrant::new(None, "a/b", "c", &s, scope).is_err());
        assert!(ClientCredentialsGrant::new(None, "t", "", &s, scope).is_err());
        assert!(ClientCredentialsGrant::new(None, "t", "c", &Secret::new(""), scope).is_err());
    }
}
