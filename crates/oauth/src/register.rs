//! Dynamic client registration (RFC 7591): anyone may register a client for the
//! authorization-code flow — public (`token_endpoint_auth_method: none`, PKCE only) or
//! confidential (a secret shown once, stored as a SHA-256 digest). Clients for
//! `client_credentials` act as service accounts and are created by administrators only.
//! Also the redirect-URI rules shared with the authorization endpoint.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use portcullis_store::oauth::ClientRecord;
use serde::Deserialize;
use serde_json::json;
use url::{Host, Url};

use crate::config::is_scope_token;
use crate::error::{ProtocolError, no_store};
use crate::secrets::{random_token, sha256};
use crate::server::{Inner, new_client_id, now_ms};

const MAX_REDIRECT_URIS: usize = 10;
const MAX_URI_LEN: usize = 2000;
const MAX_NAME_LEN: usize = 200;

/// The client metadata we read; anything else is ignored (RFC 7591 §2).
#[derive(Debug, Deserialize)]
struct Metadata {
    #[serde(default)]
    redirect_uris: Vec<String>,
    token_endpoint_auth_method: Option<String>,
    grant_types: Option<Vec<String>>,
    response_types: Option<Vec<String>>,
    client_name: Option<String>,
    scope: Option<String>,
}

fn invalid_metadata(description: impl Into<String>) -> ProtocolError {
    ProtocolError::new(
        StatusCode::BAD_REQUEST,
        "invalid_client_metadata",
        description,
    )
}

fn invalid_redirect(description: impl Into<String>) -> ProtocolError {
    ProtocolError::new(StatusCode::BAD_REQUEST, "invalid_redirect_uri", description)
}

/// Whether `url` names this machine: `localhost`, `127.0.0.1` (any 127/8) or `[::1]`.
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Schemes that are never a native app's redirect: script and data carriers, local files and
/// other web protocols.
const REFUSED_SCHEMES: [&str; 12] = [
    "javascript",
    "data",
    "vbscript",
    "file",
    "about",
    "blob",
    "filesystem",
    "ftp",
    "ws",
    "wss",
    "mailto",
    "view-source",
];

/// Checks a redirect URI: absolute, no fragment, no credentials, and https, http to a
/// loopback address (any port: RFC 8252 §7.3), or a native app's private-use scheme such as
/// `cursor://callback` or `com.example.app:/cb` (RFC 8252 §7.1).
pub(crate) fn check_redirect_uri(uri: &str) -> Result<(), String> {
    if uri.len() > MAX_URI_LEN {
        return Err("redirect URI too long".to_owned());
    }
    let url = Url::parse(uri).map_err(|e| format!("`{uri}` is not an absolute URI: {e}"))?;
    if url.fragment().is_some() {
        return Err(format!("`{uri}` must not have a fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("`{uri}` must not carry credentials"));
    }
    match url.scheme() {
        "https" if url.host().is_some() => Ok(()),
        "http" if is_loopback(&url) => Ok(()),
        "https" | "http" => Err(format!(
            "`{uri}` must use https, http to localhost, 127.0.0.1 or [::1], or an app's own scheme"
        )),
        scheme if REFUSED_SCHEMES.contains(&scheme) => Err(format!(
            "`{uri}`: the `{scheme}` scheme cannot receive an authorization response"
        )),
        _ => Ok(()),
    }
}

/// The redirect URI an authorization request will answer to: the one it names, if it is
/// registered — exactly, or for a loopback URI with any port (RFC 8252 §7.3: native apps
/// listen on an ephemeral port) — or the client's only URI when it names none.
pub(crate) fn match_redirect_uri(registered: &[String], requested: Option<&str>) -> Option<String> {
    let Some(requested) = requested else {
        return match registered {
            [only] => Some(only.clone()),
            _ => None,
        };
    };
    if registered.iter().any(|r| r == requested) {
        return Some(requested.to_owned());
    }
    let asked = Url::parse(requested).ok()?;
    if asked.scheme() != "http" || !is_loopback(&asked) || asked.fragment().is_some() {
        return None;
    }
    registered
        .iter()
        .filter_map(|r| Url::parse(r).ok())
        .any(|r| {
            r.scheme() == "http"
                && is_loopback(&r)
                && r.host() == asked.host()
                && r.path() == asked.path()
                && r.query() == asked.query()
        })
        .then(|| requested.to_owned())
}

/// `POST /oauth/register`.
pub(crate) async fn register(State(inner): State<Arc<Inner>>, body: Bytes) -> Response {
    match register_client(&inner, &body).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn register_client(inner: &Inner, body: &[u8]) -> Result<Response, ProtocolError> {
    if !inner.config.dynamic_registration {
        return Err(ProtocolError::new(
            StatusCode::FORBIDDEN,
            "access_denied",
            "dynamic client registration is disabled; ask an administrator for a client",
        ));
    }
    if inner.registrations.check().is_err() {
        return Err(ProtocolError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "temporarily_unavailable",
            "too many client registrations; try again in a minute",
        ));
    }
    let meta: Metadata = serde_json::from_slice(body)
        .map_err(|e| invalid_metadata(format!("the body is not client metadata JSON: {e}")))?;

    let auth_method = meta
        .token_endpoint_auth_method
        .unwrap_or_else(|| "client_secret_basic".to_owned());
    if !matches!(
        auth_method.as_str(),
        "none" | "client_secret_basic" | "client_secret_post"
    ) {
        return Err(invalid_metadata(format!(
            "token_endpoint_auth_method `{auth_method}` is not supported"
        )));
    }

    let grant_types = meta
        .grant_types
        .unwrap_or_else(|| vec!["authorization_code".to_owned()]);
    for g in &grant_types {
        match g.as_str() {
            "authorization_code" | "refresh_token" => {}
            "client_credentials" => {
                return Err(invalid_metadata(
                    "client_credentials clients act as service accounts and are created by an administrator",
                ));
            }
            other => {
                return Err(invalid_metadata(format!(
                    "grant type `{other}` is not supported"
                )));
            }
        }
    }
    if !grant_types.iter().any(|g| g == "authorization_code") {
        return Err(invalid_metadata(
            "grant_types must include authorization_code",
        ));
    }
    let mut grant_types_unique: Vec<String> = Vec::new();
    for g in grant_types {
        if !grant_types_unique.contains(&g) {
            grant_types_unique.push(g);
        }
    }

    let response_types = meta
        .response_types
        .unwrap_or_else(|| vec!["code".to_owned()]);
    if response_types.iter().any(|r| r != "code") {
        return Err(invalid_metadata(
            "only the `code` response type is supported",
        ));
    }

    if meta.redirect_uris.is_empty() {
        return Err(invalid_redirect(
            "redirect_uris is required for the authorization_code grant",
        ));
    }
    if meta.redirect_uris.len() > MAX_REDIRECT_URIS {
        return Err(invalid_redirect(format!(
            "at most {MAX_REDIRECT_URIS} redirect URIs"
        )));
    }
    for uri in &meta.redirect_uris {
        check_redirect_uri(uri).map_err(invalid_redirect)?;
    }

    let scopes = match meta.scope.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(scope) => {
            let mut list: Vec<String> = Vec::new();
            for s in scope.split(' ').filter(|s| !s.is_empty()) {
                if !is_scope_token(s) || !inner.config.scopes.iter().any(|c| c == s) {
                    return Err(invalid_metadata(format!("unknown scope `{s}`")));
                }
                if !list.iter().any(|l| l == s) {
                    list.push(s.to_owned());
                }
            }
            Some(list)
        }
    };

    let name: Option<String> = meta
        .client_name
        .map(|n| {
            n.chars()
                .filter(|c| !c.is_control())
                .take(MAX_NAME_LEN)
                .collect::<String>()
                .trim()
                .to_owned()
        })
        .filter(|n| !n.is_empty());

    let secret = (auth_method != "none").then(random_token);
    let record = ClientRecord {
        client_id: new_client_id(),
        secret_hash: secret.as_ref().map(|s| sha256(s.as_bytes())),
        name,
        redirect_uris: meta.redirect_uris,
        grant_types: grant_types_unique,
        scopes,
        auth_method,
        service_account: None,
        created_ms: now_ms(),
    };
    inner.store.insert_client(&record).await?;
    tracing::info!(
        client_id = %record.client_id,
        method = %record.auth_method,
        "registered an OAuth client"
    );

    let mut body = json!({
        "client_id": record.client_id,
        "client_id_issued_at": record.created_ms / 1000,
        "redirect_uris": record.redirect_uris,
        "grant_types": record.grant_types,
        "response_types": ["code"],
        "token_endpoint_auth_method": record.auth_method,
    });
    if let Some(map) = body.as_object_mut() {
        if let Some(secret) = secret {
            map.insert("client_secret".to_owned(), json!(secret));
            map.insert("client_secret_expires_at".to_owned(), json!(0));
        }
        if let Some(name) = &record.name {
            map.insert("client_name".to_owned(), json!(name));
        }
        if let Some(scopes) = &record.scopes {
            map.insert("scope".to_owned(), json!(scopes.join(" ")));
        }
    }
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    no_store(&mut response);
    Ok(response)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn redirect_uris_must_be_https_or_loopback() {
        for ok in [
            "https://app.example/cb",
            "https://app.example/cb?x=1",
            "http://localhost:8080/cb",
            "http://127.0.0.1/cb",
            "http://[::1]:9000/cb",
            "http://[::1]/",
            "cursor://anysphere.cursor-retrieval/oauth/callback",
            "com.example.app:/oauth2redirect",
            "custom-scheme:/cb",
        ] {
            assert!(check_redirect_uri(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://app.example/cb",
            "https://app.example/cb#frag",
            "/relative",
            "javascript:alert(1)",
            "data:text/html,x",
            "file:///etc/passwd",
            "com.example.app:/cb#frag",
            "https://user:pw@app.example/cb",
            "http://localhost.evil.example/cb",
        ] {
            assert!(check_redirect_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn redirect_matching_is_exact_except_loopback_ports() {
        let reg = vec![
            "https://app.example/cb".to_owned(),
            "http://127.0.0.1:1234/cb".to_owned(),
        ];
        assert_eq!(
            match_redirect_uri(&reg, Some("https://app.example/cb")).as_deref(),
            Some("https://app.example/cb")
        );
        assert_eq!(
            match_redirect_uri(&reg, Some("https://app.example/cb/")),
            None
        );
        assert_eq!(
            match_redirect_uri(&reg, Some("https://app.example:444/cb")),
            None
        );
        assert_eq!(
            match_redirect_uri(&reg, Some("http://127.0.0.1:5555/cb")).as_deref(),
            Some("http://127.0.0.1:5555/cb")
        );
        assert_eq!(
            match_redirect_uri(&reg, Some("http://127.0.0.1:5555/other")),
            None
        );
        assert_eq!(
            match_redirect_uri(&reg, Some("http://localhost:1234/cb")),
            None
        );
        let native = vec![
            "cursor://anysphere/callback".to_owned(),
            "http://[::1]:7000/".to_owned(),
        ];
        assert_eq!(
            match_redirect_uri(&native, Some("cursor://anysphere/callback")).as_deref(),
            Some("cursor://anysphere/callback")
        );
        assert_eq!(
            match_redirect_uri(&native, Some("cursor://anysphere/other")),
            None
        );
        assert_eq!(
            match_redirect_uri(&native, Some("http://[::1]:55123/")).as_deref(),
            Some("http://[::1]:55123/")
        );
        assert_eq!(match_redirect_uri(&reg, None), None);
        assert_eq!(
            match_redirect_uri(&reg[..1], None).as_deref(),
            Some("https://app.example/cb")
        );
    }
}
