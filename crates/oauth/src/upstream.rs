//! Sign-in delegated to an OpenID Connect provider: the gateway is then a relying party of
//! the provider (OpenID Connect Core 1.0, authorization code flow with PKCE S256), and the
//! user it vouches for goes on to the gateway's own consent page.
//!
//! `GET /oauth/authorize/upstream?request=…` takes the sealed sign-in request and redirects the
//! browser to the provider's authorization endpoint; the provider sends it back to `GET
//! /oauth/authorize/callback`, where the code is exchanged at the provider's token endpoint,
//! the ID token verified (signature against the provider's keys, `iss`, `aud` = the gateway's
//! client id, `azp`, `exp`, `nonce`), and the user resolved by the
//! [`Directory`](crate::Directory) (provisioned on first sight by the gateway's).
//!
//! Nothing is stored between the two steps, so any replica can finish what another started:
//! the `state` sent to the provider is the pending request sealed for this step with a random
//! id; the PKCE verifier and the nonce are derived from that id with a key only the gateway
//! holds, so the verifier never travels through the browser. The browser binding of the
//! pending request (its cookie digest) is checked again on return, and the provider's `iss`
//! response parameter (RFC 9207), when present, must name the configured issuer.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use portcullis_oidc::Verifier;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use url::Url;

use crate::authorize::{self, Pending};
use crate::config::OidcSignInConfig;
use crate::pages;
use crate::secrets::{random_token, s256};
use crate::server::{Inner, now_ms};

const SEAL_UPSTREAM: &str = "authorize/upstream";

/// How long the token request to the provider may take.
const TOKEN_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest token response read from the provider.
const MAX_TOKEN_RESPONSE: usize = 64 * 1024;

/// The relying-party side of delegated sign-in.
pub(crate) struct Upstream {
    pub(crate) config: OidcSignInConfig,
    verifier: Verifier,
    http: reqwest::Client,
    /// Keys the derivation of PKCE verifiers and nonces from a flow's random id.
    derivation_key: [u8; 32],
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Why delegated sign-in could not be set up.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    /// The verifier does not know the sign-in issuer.
    #[error(
        "sign_in.oidc.issuer `{0}` is not one of the configured identity issuers (identity.issuers)"
    )]
    UnknownIssuer(String),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client for the identity provider: {0}")]
    HttpClient(String),
}

impl Upstream {
    pub(crate) fn new(
        config: OidcSignInConfig,
        verifier: Verifier,
        derivation_key: [u8; 32],
    ) -> Result<Self, UpstreamError> {
        if !verifier.issuers().any(|i| i == config.issuer) {
            return Err(UpstreamError::UnknownIssuer(config.issuer));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(TOKEN_REQUEST_TIMEOUT)
            .timeout(TOKEN_REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("portcullis-oauth/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| UpstreamError::HttpClient(e.to_string()))?;
        Ok(Self {
            config,
            verifier,
            http,
            derivation_key,
        })
    }

    /// The button label: "Sign in with {name}".
    pub(crate) fn display_name(&self) -> &str {
        self.config.name.as_deref().unwrap_or("single sign-on")
    }

    fn derive(&self, purpose: &str, id: &str) -> String {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.derivation_key) else {
            return String::new();
        };
        mac.update(purpose.as_bytes());
        mac.update(b"\0");
        mac.update(id.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// The PKCE verifier of flow `id` (43 base64url characters: a valid RFC 7636 verifier).
    fn code_verifier(&self, id: &str) -> String {
        self.derive("pkce-verifier", id)
    }

    /// The nonce of flow `id`.
    fn nonce(&self, id: &str) -> String {
        self.derive("nonce", id)
    }
}

/// What travels through the provider as `state`.
#[derive(Serialize, Deserialize)]
struct UpstreamState {
    pending: Pending,
    /// The flow's random id, from which the verifier and nonce are derived.
    id: String,
}

/// The URL the provider sends the browser back to (registered at the provider).
pub(crate) fn callback_url(inner: &Inner) -> String {
    inner.endpoint("/oauth/authorize/callback")
}

fn provider_unavailable(detail: &dyn std::fmt::Display) -> Response {
    tracing::warn!(error = %detail, "identity provider unavailable for sign-in");
    pages::error(
        StatusCode::BAD_GATEWAY,
        "Sign-in is unavailable",
        "The identity provider could not be reached. Try again in a moment.",
    )
}

/// The page for a sign-in step reached on a gateway without an identity provider.
fn not_configured() -> Response {
    pages::error(
        StatusCode::NOT_FOUND,
        "Single sign-on is not configured",
        "This gateway has no identity provider to sign in with.",
    )
}

/// Sends the browser to the provider for the sign-in request `pending`.
pub(crate) async fn redirect_to_provider(inner: &Inner, pending: Pending) -> Response {
    let Some(upstream) = inner.upstream.as_ref() else {
        return not_configured();
    };
    let metadata = match upstream
        .verifier
        .provider_metadata(&upstream.config.issuer)
        .await
    {
        Ok(m) => m,
        Err(e) => return provider_unavailable(&e),
    };
    let Some(endpoint) = metadata.authorization_endpoint.as_deref() else {
        return provider_unavailable(&"the discovery document names no authorization_endpoint");
    };
    let Ok(mut url) = Url::parse(endpoint) else {
        return provider_unavailable(&"the authorization_endpoint is not a URL");
    };
    let id = random_token();
    let state = inner.sealer.seal(
        SEAL_UPSTREAM,
        &UpstreamState {
            pending: pending.renewed(),
            id: id.clone(),
        },
    );
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &upstream.config.client_id)
        .append_pair("redirect_uri", &callback_url(inner))
        .append_pair("scope", &upstream.config.scopes.join(" "))
        .append_pair("state", &state)
        .append_pair("nonce", &upstream.nonce(&id))
        .append_pair("code_challenge", &s256(&upstream.code_verifier(&id)))
        .append_pair("code_challenge_method", "S256");
    let Ok(location) = HeaderValue::from_str(url.as_str()) else {
        return provider_unavailable(&"the authorization URL is not a valid header");
    };
    let mut response = StatusCode::FOUND.into_response();
    response.headers_mut().insert(header::LOCATION, location);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[derive(Deserialize)]
struct BeginParams {
    request: String,
}

/// `GET /oauth/authorize/upstream?request=…`: the "Sign in with …" button.
pub(crate) async fn begin(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let Ok(params) = serde_urlencoded::from_str::<BeginParams>(query.as_deref().unwrap_or(""))
    else {
        return authorize::unreadable_form();
    };
    let Some(pending) =
        authorize::open_pending(&inner, authorize::SEAL_LOGIN, &params.request, &headers)
    else {
        return authorize::expired_form();
    };
    redirect_to_provider(&inner, pending).await
}

/// The provider's answer (OpenID Connect Core §3.1.2.5 and §3.1.2.6, RFC 9207).
#[derive(Deserialize)]
struct CallbackParams {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    iss: Option<String>,
}

/// The members of the token response the gateway reads.
#[derive(Deserialize)]
struct TokenResponse {
    id_token: Option<String>,
}

#[derive(Deserialize)]
struct TokenErrorResponse {
    error: Option<String>,
}

/// `GET /oauth/authorize/callback`: where the provider sends the browser back.
pub(crate) async fn callback(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(upstream) = inner.upstream.as_ref() else {
        return not_configured();
    };
    let Ok(params) = serde_urlencoded::from_str::<CallbackParams>(query.as_deref().unwrap_or(""))
    else {
        return authorize::unreadable_form();
    };
    let Some(flow) = params
        .state
        .as_deref()
        .and_then(|s| inner.sealer.open::<UpstreamState>(SEAL_UPSTREAM, s))
        .filter(|f| f.pending.exp > now_ms())
        .filter(|f| authorize::bound_to_browser(&f.pending, &headers))
    else {
        return authorize::expired_form();
    };
    if let Some(iss) = params.iss.as_deref()
        && iss != upstream.config.issuer
    {
        tracing::warn!(iss, "sign-in answer names another issuer; refused");
        return pages::error(
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            "The answer came from an unexpected identity provider.",
        );
    }
    let pending = flow.pending;
    if let Some(error) = params.error.as_deref() {
        tracing::info!(
            client_id = %pending.client_id,
            error = %pages::sanitize(error),
            "the identity provider refused the sign-in"
        );
        return authorize::deny_to_client(
            &inner,
            &pending,
            "the identity provider did not sign the user in",
        );
    }
    let Some(code) = params.code.as_deref().filter(|c| !c.is_empty()) else {
        return authorize::unreadable_form();
    };
    let id_token = match exchange(&inner, upstream, code, &flow.id).await {
        Ok(t) => t,
        Err(response) => return response,
    };
    let verified = match upstream
        .verifier
        .verify_id_token(
            &id_token,
            &upstream.config.issuer,
            &upstream.config.client_id,
            &upstream.nonce(&flow.id),
        )
        .await
    {
        Ok(v) => v,
        Err(e) if e.is_temporary() => return provider_unavailable(&e),
        Err(e) => {
            tracing::warn!(reason = e.reason(), error = %e, "refused an ID token");
            return pages::error(
                StatusCode::UNAUTHORIZED,
                "Sign-in failed",
                "The identity provider's answer could not be verified.",
            );
        }
    };
    let principal = match inner.directory.external_user(&verified).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            tracing::info!(
                issuer = %verified.issuer,
                subject = %verified.subject,
                "an identity provider's user may not sign in"
            );
            return pages::error(
                StatusCode::FORBIDDEN,
                "Access denied",
                "Your account may not use this gateway. Ask an administrator.",
            );
        }
        Err(e) => return pages::server_error(&e),
    };
    let shown = verified
        .email
        .as_deref()
        .unwrap_or(&verified.user)
        .to_owned();
    authorize::consent_step(&inner, pending, principal, &shown).await
}

/// Exchanges `code` at the provider's token endpoint for its ID token.
async fn exchange(
    inner: &Inner,
    upstream: &Upstream,
    code: &str,
    id: &str,
) -> Result<String, Response> {
    let metadata = upstream
        .verifier
        .provider_metadata(&upstream.config.issuer)
        .await
        .map_err(|e| provider_unavailable(&e))?;
    let endpoint = metadata
        .token_endpoint
        .as_deref()
        .ok_or_else(|| provider_unavailable(&"the discovery document names no token_endpoint"))?;
    let config = &upstream.config;
    let redirect_uri = callback_url(inner);
    let verifier = upstream.code_verifier(id);
    let mut form: Vec<(&str, &str)> = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", &redirect_uri),
        ("code_verifier", &verifier),
    ];
    let mut request = upstream.http.post(endpoint);
    match (&config.client_secret, config.token_endpoint_auth.as_str()) {
        (Some(secret), "client_secret_basic") => {
            // RFC 6749 §2.3.1: each part form-urlencoded before the Basic encoding.
            let encode =
                |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let credentials = base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                encode(&config.client_id),
                encode(secret)
            ));
            request = request.header(header::AUTHORIZATION, format!("Basic {credentials}"));
        }
        (Some(secret), _) => {
            form.push(("client_id", &config.client_id));
            form.push(("client_secret", secret));
        }
        (None, _) => form.push(("client_id", &config.client_id)),
    }
    let body = serde_urlencoded::to_string(&form).unwrap_or_default();
    let response = request
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ACCEPT, "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| provider_unavailable(&e.without_url()))?;
    let status = response.status();
    let bytes = read_limited(response)
        .await
        .map_err(|e| provider_unavailable(&e))?;
    if !status.is_success() {
        let error = serde_json::from_slice::<TokenErrorResponse>(&bytes)
            .ok()
            .and_then(|e| e.error)
            .unwrap_or_default();
        tracing::warn!(
            status = status.as_u16(),
            error = %pages::sanitize(&error),
            "the identity provider refused the code exchange"
        );
        return Err(pages::error(
            StatusCode::BAD_GATEWAY,
            "Sign-in failed",
            "The identity provider did not complete the sign-in. Start again from the application.",
        ));
    }
    serde_json::from_slice::<TokenResponse>(&bytes)
        .ok()
        .and_then(|t| t.id_token)
        .ok_or_else(|| provider_unavailable(&"the token response carries no id_token"))
}

async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| e.without_url().to_string())?
    {
        if body.len() + chunk.len() > MAX_TOKEN_RESPONSE {
            return Err("the token response is too large".to_owned());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
