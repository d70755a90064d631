//! The authorization endpoint and its browser steps: `GET /oauth/authorize` checks the
//! request and shows the sign-in form, `POST /oauth/authorize/login` checks the credentials
//! against the [`Directory`](crate::Directory) and shows the consent page (the gateway's own
//! console, [`first_party`](crate::first_party), gets its code without one), `POST
//! /oauth/authorize/consent` issues the code (or `access_denied`) by redirecting to the
//! client.
//!
//! The pending request travels in the forms, sealed (HMAC) with a key derived from the
//! gateway's secret, so any replica can continue it. It is bound to the browser: the first
//! step sets a random cookie and the sealed request carries its digest, so a form posted from
//! another browser (CSRF, or a leaked form) is refused; each seal expires after ten minutes
//! and names its step, so a sign-in form cannot be replayed as a consent.
//!
//! Problems with `client_id` or `redirect_uri` are shown as a page, never redirected
//! (RFC 6749 §4.1.2.1); every other problem goes back to the client as `error=…`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use portcullis_store::oauth::{ClientRecord, CodeRecord};
use serde::{Deserialize, Serialize};
use url::Url;
use uuid::Uuid;

use crate::directory::{Principal, StoredPrincipal};
use crate::register::match_redirect_uri;
use crate::secrets::{ct_eq, is_s256_challenge, random_token, sha256};
use crate::server::{ClientError, Inner, now_ms};
use crate::{first_party, pages, upstream};
use portcullis_core::AccessRole;

/// How long a sign-in or consent form stays valid.
const PENDING_TTL_MS: i64 = 10 * 60 * 1000;

/// The cookie binding the flow to one browser.
const BROWSER_COOKIE: &str = "portcullis_oauth_browser";

pub(crate) const SEAL_LOGIN: &str = "authorize/login";
const SEAL_CONSENT: &str = "authorize/consent";

const MAX_USERNAME: usize = 256;
const MAX_PASSWORD: usize = 1024;

/// The authorization request's parameters; others are ignored.
#[derive(Debug, Default, Deserialize)]
struct AuthorizeParams {
    client_id: Option<String>,
    redirect_uri: Option<String>,
    response_type: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    state: Option<String>,
    scope: Option<String>,
    prompt: Option<String>,
    /// RFC 8707: the protected resource the tokens are for.
    resource: Option<String>,
}

/// An authorization request between its steps.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Pending {
    pub(crate) client_id: String,
    /// The `redirect_uri` parameter, if given (the token request must repeat it).
    redirect_uri: Option<String>,
    /// Where the answer goes.
    target: String,
    state: Option<String>,
    scope: String,
    /// The resource the tokens will be for (RFC 8707), canonical; `None`: the default audience.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    resource: Option<String>,
    challenge: String,
    /// Unix milliseconds.
    pub(crate) exp: i64,
    /// Hex SHA-256 of the browser cookie.
    browser: String,
    /// Who signed in (consent step only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    principal: Option<StoredPrincipal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    username: Option<String>,
}

impl Pending {
    /// The same request with a fresh expiry.
    pub(crate) fn renewed(self) -> Self {
        Self {
            exp: now_ms() + PENDING_TTL_MS,
            ..self
        }
    }
}

/// The browser cookie of this request, if it has a well-formed one.
fn browser_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == BROWSER_COOKIE)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|v| {
            v.len() == 43
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

fn browser_digest(cookie: &str) -> String {
    hex::encode(sha256(cookie.as_bytes()))
}

/// Redirects to the client with `params` added to `target`'s query, and `iss` (RFC 9207).
fn redirect_to_client(
    inner: &Inner,
    status: StatusCode,
    target: &str,
    params: &[(&str, &str)],
    state: Option<&str>,
) -> Response {
    let Ok(mut url) = Url::parse(target) else {
        return pages::error(
            StatusCode::BAD_REQUEST,
            "Invalid redirect URI",
            "The application's redirect URI cannot be used.",
        );
    };
    {
        let mut query = url.query_pairs_mut();
        for (k, v) in params {
            query.append_pair(k, v);
        }
        if let Some(state) = state {
            query.append_pair("state", state);
        }
        query.append_pair("iss", &inner.issuer);
    }
    let Ok(location) = HeaderValue::from_str(url.as_str()) else {
        return pages::error(
            StatusCode::BAD_REQUEST,
            "Invalid redirect URI",
            "The application's redirect URI cannot be used.",
        );
    };
    let mut response = status.into_response();
    response.headers_mut().insert(header::LOCATION, location);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn client_name(client: &ClientRecord) -> &str {
    client.name.as_deref().unwrap_or(&client.client_id)
}

/// `GET /oauth/authorize`.
pub(crate) async fn start(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let params: AuthorizeParams = match serde_urlencoded::from_str(query.as_deref().unwrap_or("")) {
        Ok(p) => p,
        Err(_) => {
            return pages::error(
                StatusCode::BAD_REQUEST,
                "Invalid authorization request",
                "The request's parameters cannot be read (is one of them repeated?).",
            );
        }
    };
    let Some(client_id) = params.client_id.as_deref() else {
        return pages::error(
            StatusCode::BAD_REQUEST,
            "Invalid authorization request",
            "The request does not name an application (client_id is missing).",
        );
    };
    let client = match inner.client(client_id).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            return pages::error(
                StatusCode::BAD_REQUEST,
                "Unknown application",
                "No application is registered with this client_id.",
            );
        }
        Err(e) => return client_error_page(&e),
    };
    let Some(target) = match_redirect_uri(&client.redirect_uris, params.redirect_uri.as_deref())
    else {
        return pages::error(
            StatusCode::BAD_REQUEST,
            "Invalid redirect URI",
            "The redirect_uri does not match any redirect URI registered for this application.",
        );
    };

    // From here on, problems are reported to the client.
    let state = params.state.as_deref();
    let back = |code: &str, description: &str| {
        redirect_to_client(
            &inner,
            StatusCode::FOUND,
            &target,
            &[("error", code), ("error_description", description)],
            state,
        )
    };
    if !client.grant_types.iter().any(|g| g == "authorization_code") {
        return back(
            "unauthorized_client",
            "this client may not use the authorization code grant",
        );
    }
    match params.response_type.as_deref() {
        Some("code") => {}
        None => return back("invalid_request", "response_type is required"),
        Some(_) => {
            return back(
                "unsupported_response_type",
                "only response_type=code is supported",
            );
        }
    }
    let Some(challenge) = params.code_challenge.clone() else {
        return back(
            "invalid_request",
            "code_challenge is required (PKCE with S256)",
        );
    };
    if params.code_challenge_method.as_deref() != Some("S256") {
        return back("invalid_request", "code_challenge_method must be S256");
    }
    if !is_s256_challenge(&challenge) {
        return back(
            "invalid_request",
            "code_challenge must be the base64url SHA-256 of the verifier",
        );
    }
    if params.prompt.as_deref() == Some("none") {
        return back("login_required", "the user must sign in");
    }
    let scope = match inner.resolve_scope(params.scope.as_deref(), &client) {
        Ok(s) => s,
        Err(e) => return back(e.code, &e.description),
    };
    let resource = match inner.resolve_resource(params.resource.as_deref()) {
        Ok(r) => r,
        Err(e) => return back(e.code, &e.description),
    };

    let (cookie, new_cookie) = match browser_cookie(&headers) {
        Some(c) => (c, false),
        None => (random_token(), true),
    };
    let pending = Pending {
        client_id: client.client_id.clone(),
        redirect_uri: params.redirect_uri.clone(),
        target,
        state: params.state.clone(),
        scope,
        resource,
        challenge,
        exp: now_ms() + PENDING_TTL_MS,
        browser: browser_digest(&cookie),
        principal: None,
        username: None,
    };
    let mut response = if inner.upstream.is_some() && !inner.config.sign_in.local {
        upstream::redirect_to_provider(&inner, pending).await
    } else {
        let sealed = inner.sealer.seal(SEAL_LOGIN, &pending);
        login_page(&inner, client_name(&client), &sealed, None, "")
    };
    if new_cookie {
        let secure = if inner.secure_cookies { "; Secure" } else { "" };
        let value = format!(
            "{BROWSER_COOKIE}={cookie}; Path=/; Max-Age=86400; HttpOnly; SameSite=Lax{secure}"
        );
        if let Ok(v) = HeaderValue::from_str(&value) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    response
}

/// The sign-in page: the local form and/or the provider's button, as configured.
fn login_page(
    inner: &Inner,
    client_name: &str,
    sealed: &str,
    error: Option<&str>,
    username: &str,
) -> Response {
    let local = inner
        .config
        .sign_in
        .local
        .then(|| inner.endpoint("/oauth/authorize/login"));
    let provider = inner.upstream.as_ref().and_then(|u| {
        let mut url = Url::parse(&inner.endpoint("/oauth/authorize/upstream")).ok()?;
        url.query_pairs_mut().append_pair("request", sealed);
        Some((url.to_string(), u.display_name().to_owned()))
    });
    pages::login(
        local.as_deref(),
        provider.as_ref().map(|(u, n)| (u.as_str(), n.as_str())),
        client_name,
        sealed,
        error,
        username,
    )
}

/// The client of a pending request, or the page saying it was removed meanwhile.
async fn pending_client(inner: &Inner, pending: &Pending) -> Result<ClientRecord, Response> {
    match inner.client(&pending.client_id).await {
        Ok(Some(c)) => Ok(c),
        Ok(None) => Err(pages::error(
            StatusCode::BAD_REQUEST,
            "Unknown application",
            "The application was removed.",
        )),
        Err(e) => Err(client_error_page(&e)),
    }
}

/// The page for a client that cannot be looked up: its metadata document is unusable (said
/// why: it is the client's to fix), or the store failed.
fn client_error_page(e: &ClientError) -> Response {
    match e {
        ClientError::Document(why) => {
            tracing::info!(%why, "OAuth client metadata document refused");
            pages::error(
                StatusCode::BAD_REQUEST,
                "Unknown application",
                &format!("The application's description cannot be used: {why}."),
            )
        }
        ClientError::Store(e) => pages::server_error(e),
    }
}

/// Whether `pending` was started by the browser that sent `headers`.
pub(crate) fn bound_to_browser(pending: &Pending, headers: &HeaderMap) -> bool {
    browser_cookie(headers).is_some_and(|cookie| {
        ct_eq(
            browser_digest(&cookie).as_bytes(),
            pending.browser.as_bytes(),
        )
    })
}

/// The pending request a form carries, if it is intact, current, of step `purpose`, and
/// bound to this browser.
pub(crate) fn open_pending(
    inner: &Inner,
    purpose: &str,
    sealed: &str,
    headers: &HeaderMap,
) -> Option<Pending> {
    let pending: Pending = inner.sealer.open(purpose, sealed)?;
    if pending.exp <= now_ms() {
        return None;
    }
    bound_to_browser(&pending, headers).then_some(pending)
}

pub(crate) fn expired_form() -> Response {
    pages::error(
        StatusCode::BAD_REQUEST,
        "This page has expired",
        "The sign-in page has expired or was opened in another browser. \
         Start again from the application.",
    )
}

pub(crate) fn unreadable_form() -> Response {
    pages::error(
        StatusCode::BAD_REQUEST,
        "Invalid form",
        "The form could not be read.",
    )
}

#[derive(Deserialize)]
struct LoginForm {
    request: String,
    username: String,
    password: String,
}

/// `POST /oauth/authorize/login`.
pub(crate) async fn login(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    extensions: http::Extensions,
    body: Bytes,
) -> Response {
    let Ok(form) = serde_urlencoded::from_bytes::<LoginForm>(&body) else {
        return unreadable_form();
    };
    let Some(pending) = open_pending(&inner, SEAL_LOGIN, &form.request, &headers) else {
        return expired_form();
    };
    let client = match pending_client(&inner, &pending).await {
        Ok(c) => c,
        Err(page) => return page,
    };
    if !inner.config.sign_in.local {
        return pages::error(
            StatusCode::NOT_FOUND,
            "Password sign-in is disabled",
            "This gateway signs users in through their identity provider.",
        );
    }
    let username = form.username.trim();
    let retry = |message: &str| {
        login_page(
            &inner,
            client_name(&client),
            &form.request,
            Some(message),
            username,
        )
    };
    if username.is_empty()
        || username.len() > MAX_USERNAME
        || form.password.is_empty()
        || form.password.len() > MAX_PASSWORD
    {
        return retry("Enter your username and password.");
    }
    let throttle_key = username.to_lowercase();
    let address =
        crate::throttle::client_address(&extensions, &headers, &inner.config.trusted_proxies);
    if let Err(wait) = inner.sign_in_throttle.check(&throttle_key, address).await {
        tracing::warn!(client_id = %client.client_id, "OAuth sign-in refused: too many failures for this username from this address");
        let seconds = crate::throttle::retry_after_seconds(wait);
        let mut response = retry(&format!(
            "Too many failed sign-ins. Try again in {}.",
            crate::throttle::wait_in_words(wait)
        ));
        *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, http::HeaderValue::from(seconds));
        return response;
    }
    let principal = match inner
        .directory
        .authenticate_user(username, &form.password)
        .await
    {
        Ok(Some(p)) => p,
        Ok(None) => {
            inner
                .sign_in_throttle
                .record_failure(throttle_key, address)
                .await;
            tracing::info!(client_id = %client.client_id, "OAuth sign-in refused");
            return retry("Invalid username or password.");
        }
        Err(e) => return pages::server_error(&e),
    };
    inner.sign_in_throttle.clear(&throttle_key, address).await;
    consent_page(&inner, &client, pending, principal, username).await
}

/// Continues a request whose user has signed in (elsewhere than the local form) to the
/// consent page.
pub(crate) async fn consent_step(
    inner: &Inner,
    pending: Pending,
    principal: Principal,
    shown_name: &str,
) -> Response {
    let client = match pending_client(inner, &pending).await {
        Ok(c) => c,
        Err(page) => return page,
    };
    consent_page(inner, &client, pending, principal, shown_name).await
}

/// The consent page for `principal`. The scope is narrowed to what the principal's role
/// allows (`admin` only for administrators); when nothing is left the client gets
/// `invalid_scope`. The gateway's own console asks no consent: its code is issued at once.
async fn consent_page(
    inner: &Inner,
    client: &ClientRecord,
    pending: Pending,
    principal: Principal,
    shown_name: &str,
) -> Response {
    let scope = scope_for_role(&pending.scope, principal.role);
    if first_party::is_first_party(&client.client_id) {
        // The console reads the user's role on every request, not the token's scope.
        let pending = Pending { scope, ..pending };
        return issue_code(inner, &pending, &principal).await;
    }
    if scope.is_empty() {
        return redirect_to_client(
            inner,
            StatusCode::SEE_OTHER,
            &pending.target,
            &[
                ("error", "invalid_scope"),
                (
                    "error_description",
                    "the signed-in user may not be granted the requested scope",
                ),
            ],
            pending.state.as_deref(),
        );
    }
    let consent = Pending {
        exp: now_ms() + PENDING_TTL_MS,
        principal: Some(StoredPrincipal::from(&principal)),
        username: Some(shown_name.to_owned()),
        scope,
        ..pending
    };
    let sealed = inner.sealer.seal(SEAL_CONSENT, &consent);
    pages::consent(
        &inner.endpoint("/oauth/authorize/consent"),
        client_name(client),
        &consent.target,
        shown_name,
        &consent.scope,
        consent.resource.as_deref(),
        &sealed,
    )
}

/// The scopes of `scope` a principal with `role` may hold: `admin` is for administrators.
fn scope_for_role(scope: &str, role: AccessRole) -> String {
    scope
        .split_ascii_whitespace()
        .filter(|s| *s != "admin" || role == AccessRole::Admin)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Sends the browser back to the client with `access_denied`.
pub(crate) fn deny_to_client(inner: &Inner, pending: &Pending, description: &str) -> Response {
    redirect_to_client(
        inner,
        StatusCode::SEE_OTHER,
        &pending.target,
        &[
            ("error", "access_denied"),
            ("error_description", description),
        ],
        pending.state.as_deref(),
    )
}

#[derive(Deserialize)]
struct ConsentForm {
    request: String,
    decision: String,
}

/// `POST /oauth/authorize/consent`.
pub(crate) async fn consent(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(form) = serde_urlencoded::from_bytes::<ConsentForm>(&body) else {
        return unreadable_form();
    };
    let Some(pending) = open_pending(&inner, SEAL_CONSENT, &form.request, &headers) else {
        return expired_form();
    };
    let Some(principal) = pending.principal.clone().map(Principal::from) else {
        return expired_form();
    };
    if let Err(page) = pending_client(&inner, &pending).await {
        return page;
    }
    match form.decision.as_str() {
        "approve" => {}
        "deny" => return deny_to_client(&inner, &pending, "the user denied the request"),
        _ => return unreadable_form(),
    }
    issue_code(&inner, &pending, &principal).await
}

/// Issues the code of an approved request and sends it to the client.
async fn issue_code(inner: &Inner, pending: &Pending, principal: &Principal) -> Response {
    let code = random_token();
    let now = now_ms();
    let record = CodeRecord {
        code_hash: sha256(code.as_bytes()),
        family_id: Uuid::now_v7().to_string(),
        client_id: pending.client_id.clone(),
        redirect_uri: pending.redirect_uri.clone(),
        code_challenge: pending.challenge.clone(),
        scope: pending.scope.clone(),
        resource: pending.resource.clone(),
        principal: principal.to_json(),
        created_ms: now,
        expires_ms: now + inner.code_ttl_ms(),
    };
    if let Err(e) = inner.store.insert_code(&record).await {
        return pages::server_error(&e);
    }
    tracing::info!(
        client_id = %pending.client_id,
        subject = %principal.subject,
        "OAuth authorization approved"
    );
    redirect_to_client(
        inner,
        StatusCode::SEE_OTHER,
        &pending.target,
        &[("code", &code)],
        pending.state.as_deref(),
    )
}
