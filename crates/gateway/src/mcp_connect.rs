//! The pages where a user connects their account at an upstream MCP server that needs OAuth
//! (`<base>/mcp/connect/<server>` and its `/callback`), and the admin API on users' grants
//! (`GET /admin/mcp-servers/{name}/grants`, `DELETE …/grants/{user}`).
//!
//! The page signs the user in with the gateway's own credentials (the OAuth server's directory
//! check, `crate::oauth::OAuthDirectory`; the form must carry back the value of a `SameSite=Strict`
//! cookie set with the page, so a sign-in posted from another site — which would link a
//! victim's upstream account to an attacker's user — is refused) and sends the browser to the server's authorization
//! endpoint (authorization code with PKCE S256, `resource` = the server's URL per RFC 8707).
//! The `state` is sealed by the vault and carries a flow id, the user, the PKCE verifier, an
//! expiry and the digest of a cookie set on this browser, so the callback on any replica knows
//! whose grant it is and refuses one landing in another browser. The flow id is recorded as
//! pending in the database (`portcullis_store::McpGrantStore::begin_mcp_connect`) and the
//! callback takes it before anything else is done with the answer, so each sign-in completes
//! once, across replicas: a replayed callback is refused and never replaces the grant. The
//! grant itself is kept and used by `crate::mcp_upstream_oauth`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use portcullis_mcp::config::OAuthMode;
use portcullis_mcp::hub::Server;
use portcullis_providers::Secret;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::clock::now_ms;
use crate::mcp_endpoint::McpEndpoint;
use crate::mcp_upstream_oauth::{
    TokenError, connect_link, encode, endpoints, http_url, save, token_request,
};
use crate::state::AppState;

/// How long a sign-in may take between the connect page and the callback.
const FLOW_TTL_MS: i64 = 10 * 60 * 1000;
/// The cookie binding a connect flow to one browser.
const BROWSER_COOKIE: &str = "portcullis_mcp_connect";
/// The cookie whose value the sign-in form must carry back (no sign-in posted from elsewhere).
const FORM_COOKIE: &str = "portcullis_mcp_form";

/// What the `state` parameter carries, sealed.
#[derive(Serialize, Deserialize)]
struct Flow {
    /// The flow's id, pending in the database until its callback takes it (once).
    id: String,
    user: String,
    verifier: String,
    browser: String,
    expires_ms: i64,
}

fn flow_seal_id(server: &str) -> String {
    format!("mcp-connect:{server}")
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title></head>\
         <body><h1>{t}</h1>{body}</body></html>",
        t = escape_html(title)
    );
    let mut response = (status, html).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
        .headers_mut()
        .insert("x-frame-options", HeaderValue::from_static("DENY"));
    response
}

/// The endpoint and the server `name` if it needs OAuth grants; an error page otherwise.
#[allow(clippy::result_large_err)]
fn oauth_server(
    state: &AppState,
    headers: &HeaderMap,
    name: &str,
) -> Result<(Arc<McpEndpoint>, Arc<Server>), Response> {
    let not_found = || {
        page(
            StatusCode::NOT_FOUND,
            "Unknown server",
            "<p>No MCP server of that name asks for your consent.</p>",
        )
    };
    let endpoint = state.mcp.load_full().ok_or_else(not_found)?;
    if endpoint.guard(headers).is_err() {
        return Err(page(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "<p>This host or origin is not allowed.</p>",
        ));
    }
    let server = endpoint.hub.server(name).cloned().ok_or_else(not_found)?;
    match &server.spec.oauth {
        Some(o) if o.mode == OAuthMode::UserGrant => Ok((endpoint, server)),
        _ => Err(not_found()),
    }
}

fn sign_in_form(name: &str, csrf: &str, error: Option<&str>) -> String {
    let error = error
        .map(|e| format!("<p role=\"alert\">{}</p>", escape_html(e)))
        .unwrap_or_default();
    format!(
        "<p>Sign in to connect your account at MCP server <b>{n}</b>. You will then be sent to \
         it to approve access.</p>{error}\
         <form method=\"post\" action=\"/mcp/connect/{n}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{c}\">\
         <label>Username <input name=\"username\" autocomplete=\"username\"></label>\
         <label>Password <input name=\"password\" type=\"password\" \
         autocomplete=\"current-password\"></label>\
         <button type=\"submit\">Sign in and connect</button></form>",
        n = escape_html(name),
        c = escape_html(csrf)
    )
}

/// The sign-in page, with a fresh form cookie unless the browser's own is kept (`csrf`).
fn sign_in_page(
    status: StatusCode,
    name: &str,
    csrf: Option<&str>,
    error: Option<&str>,
    secure: bool,
) -> Response {
    let fresh;
    let csrf = match csrf {
        Some(c) => c,
        None => {
            fresh = random_text(24);
            &fresh
        }
    };
    let mut response = page(status, "Connect", &sign_in_form(name, csrf, error));
    let secure = if secure { "; Secure" } else { "" };
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{FORM_COOKIE}={csrf}; Path=/mcp/connect/; Max-Age=600; HttpOnly; SameSite=Strict{secure}"
    )) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

fn random_text(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `GET /mcp/connect/{server}`: the sign-in page.
pub async fn connect_page(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    match oauth_server(&state, &headers, &name) {
        Ok((endpoint, _)) => {
            let secure = connect_link(&endpoint, &headers, &name).starts_with("https://");
            sign_in_page(StatusCode::OK, &name, None, None, secure)
        }
        Err(r) => r,
    }
}

/// The value of `field` in an `application/x-www-form-urlencoded` body (empty if absent).
fn form_field(body: &[u8], field: &str) -> String {
    let decode = |text: &str| -> String {
        let bytes = text.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() && text.is_char_boundary(i + 3) => {
                    match u8::from_str_radix(&text[i + 1..i + 3], 16) {
                        Ok(b) => {
                            out.push(b);
                            i += 2;
                        }
                        Err(_) => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| decode(k) == field)
        .map(|(_, v)| decode(v))
        .unwrap_or_default()
}

/// `POST /mcp/connect/{server}`: signs the user in and sends them to the server's
/// authorization endpoint.
pub async fn connect(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (username, password) = (form_field(&body, "username"), form_field(&body, "password"));
    let (endpoint, server) = match oauth_server(&state, &headers, &name) {
        Ok(found) => found,
        Err(r) => return r,
    };
    let secure = connect_link(&endpoint, &headers, &name).starts_with("https://");
    // The form must come from the page this browser was given (double-submit cookie).
    let csrf = form_field(&body, "csrf");
    let same_form = cookie(&headers, FORM_COOKIE).is_some_and(|c| {
        !csrf.is_empty() && bool::from(subtle::ConstantTimeEq::ct_eq(c.as_bytes(), csrf.as_bytes()))
    });
    if !same_form {
        return page(
            StatusCode::FORBIDDEN,
            "Connect",
            &format!(
                "<p>This sign-in did not come from the gateway's page. \
                 <a href=\"/mcp/connect/{}\">Start again</a></p>",
                escape_html(&name)
            ),
        );
    }
    let unavailable = |why: &str| {
        page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Unavailable",
            &format!("<p>{}</p>", escape_html(why)),
        )
    };
    let Some(directory) = state.auth.directory() else {
        return unavailable("Sign-in needs the identity store.");
    };
    let Some(vault) = directory.vault() else {
        return unavailable("Connecting accounts needs PORTCULLIS_SECRET_KEY.");
    };
    let check = crate::oauth::OAuthDirectory::new(directory.clone(), &[]);
    let principal =
        portcullis_oauth::Directory::authenticate_user(&check, &username, &password).await;
    let user = match principal {
        Ok(Some(p)) => match p.user {
            Some(user) => user,
            None => return unavailable("Only users can connect accounts."),
        },
        Ok(None) => {
            return sign_in_page(
                StatusCode::UNAUTHORIZED,
                &name,
                Some(&csrf),
                Some("Unknown username or wrong password."),
                secure,
            );
        }
        Err(_) => return unavailable("The identity store is unavailable."),
    };
    let Some(oauth) = server.spec.oauth.as_ref() else {
        return unavailable("This server does not use OAuth.");
    };
    let endpoints = match endpoints(&state.mcp_oauth, &server.spec, oauth).await {
        Ok(e) => e,
        Err(why) => {
            return unavailable(&format!(
                "The server's authorization endpoints could not be found: {why}."
            ));
        }
    };
    let browser = random_text(32);
    let verifier = random_text(32);
    let now = now_ms();
    let flow = Flow {
        id: random_text(24),
        user,
        verifier: verifier.clone(),
        browser: hex::encode(Sha256::digest(browser.as_bytes())),
        expires_ms: now + FLOW_TTL_MS,
    };
    // Pending until its callback takes it, on whichever replica that lands.
    if state
        .stores
        .mcp_grants
        .begin_mcp_connect(&flow.id, &flow.user, &name, flow.expires_ms, now)
        .await
        .is_err()
    {
        return unavailable("The sign-in could not be recorded.");
    }
    let Ok(text) = serde_json::to_string(&flow) else {
        return unavailable("The sign-in could not be recorded.");
    };
    let Ok(sealed) = vault.seal(&flow_seal_id(&name), &Secret::new(text)) else {
        return unavailable("The sign-in could not be sealed.");
    };
    let Ok(sealed) = STANDARD.decode(sealed) else {
        return unavailable("The sign-in could not be sealed.");
    };
    let state_param = URL_SAFE_NO_PAD.encode(sealed);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let redirect_uri = format!("{}/callback", connect_link(&endpoint, &headers, &name));
    let mut params = vec![
        ("response_type", "code".to_owned()),
        ("client_id", oauth.client_id.clone()),
        ("redirect_uri", redirect_uri),
        ("state", state_param),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256".to_owned()),
        (
            "resource",
            http_url(&server.spec).unwrap_or_default().to_owned(),
        ),
    ];
    if !oauth.scopes.is_empty() {
        params.push(("scope", oauth.scopes.join(" ")));
    }
    let query = params
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let separator = if endpoints.authorize.contains('?') {
        '&'
    } else {
        '?'
    };
    let location = format!("{}{separator}{query}", endpoints.authorize);
    let secure = if secure { "; Secure" } else { "" };
    let set_cookie = format!(
        "{BROWSER_COOKIE}={browser}; Path=/mcp/connect/; Max-Age=600; HttpOnly; SameSite=Lax{secure}"
    );
    let (Ok(location), Ok(set_cookie)) = (
        HeaderValue::from_str(&location),
        HeaderValue::from_str(&set_cookie),
    ) else {
        return unavailable("The server's authorization endpoint is not usable.");
    };
    let mut response = StatusCode::SEE_OTHER.into_response();
    response.headers_mut().insert(header::LOCATION, location);
    response
        .headers_mut()
        .insert(header::SET_COOKIE, set_cookie);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// `GET /mcp/connect/{server}/callback`: the authorization server's answer; stores the grant.
pub async fn callback(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (endpoint, server) = match oauth_server(&state, &headers, &name) {
        Ok(found) => found,
        Err(r) => return r,
    };
    let refused = |why: &str| {
        page(
            StatusCode::BAD_REQUEST,
            "Not connected",
            &format!(
                "<p>{}</p><p><a href=\"/mcp/connect/{}\">Try again</a></p>",
                escape_html(why),
                escape_html(&name)
            ),
        )
    };
    if let Some(error) = query.get("error") {
        return refused(&format!("The server did not grant access ({error})."));
    }
    let (Some(code), Some(state_param)) = (query.get("code"), query.get("state")) else {
        return refused("The answer has no code or state.");
    };
    let Some(directory) = state.auth.directory() else {
        return refused("Connecting accounts needs the identity store.");
    };
    let Some(vault) = directory.vault() else {
        return refused("Connecting accounts needs PORTCULLIS_SECRET_KEY.");
    };
    let flow = URL_SAFE_NO_PAD
        .decode(state_param)
        .ok()
        .and_then(|raw| vault.open(&flow_seal_id(&name), &STANDARD.encode(raw)).ok())
        .and_then(|text| serde_json::from_str::<Flow>(text.expose()).ok());
    let Some(flow) = flow else {
        return refused("The state is not one this gateway issued for this server.");
    };
    if flow.expires_ms < now_ms() {
        return refused("The sign-in took too long.");
    }
    let browser_matches = cookie(&headers, BROWSER_COOKIE).is_some_and(|c| {
        let digest = hex::encode(Sha256::digest(c.as_bytes()));
        bool::from(subtle::ConstantTimeEq::ct_eq(
            digest.as_bytes(),
            flow.browser.as_bytes(),
        ))
    });
    if !browser_matches {
        return refused("This answer belongs to a sign-in started in another browser.");
    }
    // Each sign-in completes once: a replayed answer (the same `state`) finds it taken and
    // never reaches the token endpoint, nor replaces the grant stored.
    match state
        .stores
        .mcp_grants
        .finish_mcp_connect(&flow.id, &flow.user, &name, now_ms())
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            return refused(
                "This sign-in was already completed (or has expired); each answer is \
                 taken once. Start again to connect anew.",
            );
        }
        Err(_) => return refused("The sign-in could not be checked; try again."),
    }
    let Some(oauth) = server.spec.oauth.as_ref() else {
        return refused("This server does not use OAuth.");
    };
    let endpoints = match endpoints(&state.mcp_oauth, &server.spec, oauth).await {
        Ok(e) => e,
        Err(why) => return refused(&format!("The server's endpoints are unknown: {why}.")),
    };
    let redirect_uri = format!("{}/callback", connect_link(&endpoint, &headers, &name));
    let form = vec![
        ("grant_type", "authorization_code".to_owned()),
        ("code", code.clone()),
        ("redirect_uri", redirect_uri),
        ("code_verifier", flow.verifier.clone()),
        (
            "resource",
            http_url(&server.spec).unwrap_or_default().to_owned(),
        ),
    ];
    let tokens = match token_request(&state.mcp_oauth, &endpoints, oauth, form).await {
        Ok(t) => t,
        Err(TokenError::Refused(code)) => {
            return refused(&format!("The server refused the code ({code})."));
        }
        Err(TokenError::Failed(why)) => return refused(&format!("The server failed: {why}.")),
    };
    if save(&state, vault, &flow.user, &name, &tokens)
        .await
        .is_err()
    {
        return refused("The grant could not be stored.");
    }
    tracing::info!(server = %name, user = %flow.user, "MCP server connected for a user");
    page(
        StatusCode::OK,
        "Connected",
        &format!(
            "<p>Your account at MCP server <b>{}</b> is connected. You can close this window \
             and call its tools.</p>",
            escape_html(&name)
        ),
    )
}

/// Answers an admin API request on grants: `who` may act when they are an admin, or (for
/// `user`'s own grant) that user.
async fn grants_api<F, Fut>(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    user: Option<&str>,
    f: F,
) -> Response
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<serde_json::Value, portcullis_core::GatewayError>>,
{
    use portcullis_core::{Dialect, ErrorKind, GatewayError};
    let id = uuid::Uuid::now_v7();
    let allowed = match state.auth.authenticate(headers).await {
        Ok(who) => {
            let identity = &who.identity;
            if crate::admin_scope::is_admin(identity)
                || user.is_some_and(|u| identity.user.as_deref() == Some(u))
            {
                Ok(())
            } else {
                Err(GatewayError::new(
                    ErrorKind::PermissionDenied,
                    "Grants are managed by an admin or by the user they belong to",
                )
                .with_code("admin_required"))
            }
        }
        Err(e) => Err(e),
    };
    let result = match allowed {
        Ok(()) => f().await,
        Err(e) => Err(e),
    };
    match result {
        Ok(v) => crate::respond::json(StatusCode::OK, v.to_string(), &id),
        Err(e) => crate::respond::error(Dialect::OpenAi, &e, &id),
    }
}

fn no_oauth_server(state: &AppState, name: &str) -> Result<(), portcullis_core::GatewayError> {
    let known = state
        .mcp
        .load_full()
        .and_then(|e| e.hub.server(name).map(|s| s.spec.oauth.is_some()))
        .unwrap_or(false);
    if known {
        Ok(())
    } else {
        Err(portcullis_core::GatewayError::new(
            portcullis_core::ErrorKind::NotFound,
            format!("no MCP server `{name}` with `oauth`"),
        )
        .with_code("not_found"))
    }
}

fn store_failed(_: portcullis_store::StoreError) -> portcullis_core::GatewayError {
    portcullis_core::GatewayError::new(
        portcullis_core::ErrorKind::Unavailable,
        "The grant store is unavailable",
    )
}

/// `GET /admin/mcp-servers/{name}/grants` (admin): which users have a grant, and until when
/// its access token runs — never a token.
pub async fn list_grants(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    crate::admin::AdminPath(name): crate::admin::AdminPath<String>,
) -> Response {
    grants_api(&state, &headers, None, || async {
        no_oauth_server(&state, &name)?;
        let grants = state
            .stores
            .mcp_grants
            .mcp_grants(&name)
            .await
            .map_err(store_failed)?;
        let data: Vec<_> = grants
            .iter()
            .map(|g| {
                serde_json::json!({"user": g.user_id, "server": g.server,
                    "expires_ms": g.expires_ms, "created_ms": g.created_ms,
                    "updated_ms": g.updated_ms})
            })
            .collect();
        Ok(serde_json::json!({ "data": data }))
    })
    .await
}

/// `DELETE /admin/mcp-servers/{name}/grants/{user}` (an admin, or the user themself): the
/// user's next call asks for consent again.
pub async fn delete_grant(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    crate::admin::AdminPath((name, user)): crate::admin::AdminPath<(String, String)>,
) -> Response {
    grants_api(&state, &headers, Some(&user), || async {
        no_oauth_server(&state, &name)?;
        let deleted = state
            .stores
            .mcp_grants
            .delete_mcp_grant(&user, &name)
            .await
            .map_err(store_failed)?;
        // Not used again from this replica's memory (other replicas within its bound).
        state.mcp_grants.forget(&user, &name).await;
        if !deleted {
            return Err(portcullis_core::GatewayError::new(
                portcullis_core::ErrorKind::NotFound,
                format!("user `{user}` has no grant for MCP server `{name}`"),
            )
            .with_code("not_found"));
        }
        Ok(serde_json::json!({"user": user, "server": name, "deleted": true}))
    })
    .await
}
