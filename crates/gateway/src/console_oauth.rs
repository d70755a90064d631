//! The console's single sign-on: the console is a first-party client of the gateway's own
//! OAuth 2.1 server ([`portcullis_oauth::first_party`]), so a user signs in on the server's
//! sign-in page — a local user's password, or the identity provider of `oauth.sign_in.oidc` —
//! and comes back to the console signed in.
//!
//! - `GET /ui/auth/oauth?next=/ui/…` starts the authorization-code flow (PKCE S256): it sets
//!   a short-lived `HttpOnly`, `SameSite=Lax` cookie holding the browser's secret (whose
//!   digest is sealed in the `state`) and redirects to `/oauth/authorize`. Without an `oauth:`
//!   block it answers 404.
//! - `GET /ui/auth/callback?code&state` checks the `state` against that cookie, redeems the
//!   code in-process, starts a console session for the user of the access token's claims (as
//!   password sign-in does, method `oauth`) and redirects to `next` — only ever a `/ui/` path.
//!   Every failure (a refused or cancelled sign-in, a forged, replayed or expired `state`, a
//!   missing cookie) redirects to `/ui/sign-in?error=…` with a message for the user.
//!
//! The console's client needs no registration and shows no consent page: it is the gateway
//! itself, and its codes are redeemed only here (the token endpoint refuses them). The
//! callback is `{issuer}/ui/auth/callback`, so the console must be opened at the OAuth
//! issuer's origin — where the server's own sign-in forms are posted too.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use portcullis_console::{assets, session};
use portcullis_core::{Dialect, ErrorKind, GatewayError};
use portcullis_oauth::FirstPartyError;
use portcullis_oauth::first_party::FIRST_PARTY_TTL_SECS;
use uuid::Uuid;

use crate::respond;
use crate::state::AppState;

/// The cookie holding the browser's secret between the start and the callback.
const COOKIE: &str = "portcullis_console_oauth";

/// The longest `next` accepted.
const MAX_NEXT: usize = 2048;

/// Where a console sign-in may lead: `next` when it is a path under `/ui/` (not the sign-in
/// page itself), else the console's home.
pub(crate) fn safe_next(next: Option<&str>) -> String {
    let home = || "/ui/".to_owned();
    let Some(next) = next else {
        return home();
    };
    let plain = next.len() <= MAX_NEXT
        && next.starts_with("/ui/")
        && !next.starts_with("/ui/sign-in")
        && !next.contains('\\')
        && !next.split(['/', '?', '#']).any(|segment| segment == "..")
        && next.bytes().all(|b| b.is_ascii_graphic());
    if plain { next.to_owned() } else { home() }
}

/// One query parameter; `None` when absent or repeated.
fn param(query: Option<&str>, name: &str) -> Option<String> {
    let mut found = url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned());
    let first = found.next()?;
    found.next().is_none().then_some(first)
}

fn no_store(r: &mut Response) {
    assets::secure_headers(r.headers_mut());
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

fn redirect(to: &str) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    no_store(&mut r);
    r
}

fn not_configured() -> Response {
    let e = GatewayError::new(
        ErrorKind::NotFound,
        "Single sign-on is not configured: the gateway has no `oauth:` block",
    )
    .with_code("not_found");
    let mut r = respond::error(Dialect::OpenAi, &e, &Uuid::now_v7());
    no_store(&mut r);
    r
}

/// Whether the browser reaches the console over HTTPS: the OAuth issuer (where the callback
/// is) is `https://`, or the request says so.
fn is_https(state: &AppState, headers: &HeaderMap) -> bool {
    session::is_https(headers)
        || state
            .auth
            .oauth()
            .is_some_and(|o| o.issuer().starts_with("https://"))
}

fn cookie(value: &str, max_age: u64, secure: bool) -> Option<HeaderValue> {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/ui/auth/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}"
    ))
    .ok()
}

/// The browser secret this request's cookie carries.
fn browser_secret(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

/// `GET /ui/auth/oauth?next=…`.
pub(crate) async fn begin(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(oauth) = state.auth.oauth() else {
        return not_configured();
    };
    let next = safe_next(param(query.as_deref(), "next").as_deref());
    let start = match oauth.begin_first_party(&next) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the console's single sign-on");
            return to_sign_in("Single sign-on is unavailable", Some(&next));
        }
    };
    let mut r = redirect(&start.authorize_url);
    if let Some(v) = cookie(
        &start.browser_secret,
        FIRST_PARTY_TTL_SECS,
        is_https(&state, &headers),
    ) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

/// Back to the sign-in page with `message` (and where the user was going).
fn to_sign_in(message: &str, next: Option<&str>) -> Response {
    let mut to = String::from("/ui/sign-in?error=");
    to.extend(url::form_urlencoded::byte_serialize(message.as_bytes()));
    if let Some(next) = next.filter(|n| *n != "/ui/") {
        to.push_str("&next=");
        to.extend(url::form_urlencoded::byte_serialize(next.as_bytes()));
    }
    redirect(&to)
}

/// What the user reads for an OAuth error response; the server's description is not shown
/// (anyone can send a browser here with any text).
fn error_message(code: &str) -> &'static str {
    match code {
        "access_denied" => "Sign-in was cancelled or refused",
        "invalid_scope" | "unauthorized_client" => "This account may not sign in to the console",
        "login_required" | "interaction_required" => "Sign in to continue",
        "temporarily_unavailable" | "server_error" => {
            "Single sign-on is unavailable: try again in a moment"
        }
        _ => "Single sign-on failed: start again",
    }
}

/// The error message of a console API answer, if it has one.
async fn message_of(r: Response) -> Option<String> {
    let bytes = axum::body::to_bytes(r.into_body(), 64 * 1024).await.ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v["error"]["message"].as_str().map(str::to_owned)
}

/// `GET /ui/auth/callback?code&state` (or `?error&state`).
pub(crate) async fn callback(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(oauth) = state.auth.oauth() else {
        return not_configured();
    };
    let secure = is_https(&state, &headers);
    let query = query.as_deref();
    let flow = param(query, "state");
    let next = flow.as_deref().and_then(|s| oauth.first_party_next(s));
    let fail = |message: &str| {
        let mut r = to_sign_in(message, next.as_deref());
        if let Some(v) = cookie("", 0, secure) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
        r
    };
    if param(query, "iss").is_some_and(|iss| iss != oauth.issuer()) {
        return fail("The sign-in answer came from another server: start again");
    }
    if let Some(code) = param(query, "error") {
        tracing::info!(error = %code, "console single sign-on refused");
        return fail(error_message(&code));
    }
    let (Some(code), Some(flow)) = (param(query, "code"), flow.as_deref()) else {
        return fail("The sign-in answer is incomplete: start again");
    };
    let signed_in = match oauth
        .finish_first_party(flow, &code, browser_secret(&headers))
        .await
    {
        Ok(s) => s,
        Err(FirstPartyError::State) => {
            tracing::info!(
                "console single sign-on refused: state expired, forged or from another browser"
            );
            return fail(
                "The sign-in expired or was started in another browser or tab: start again",
            );
        }
        Err(FirstPartyError::Code(why)) => {
            tracing::info!(%why, "console single sign-on refused: code");
            return fail("The sign-in could not be completed: start again");
        }
        Err(FirstPartyError::Server(e)) => {
            tracing::error!(error = %e, "console single sign-on failed");
            return fail("Single sign-on is unavailable: try again in a moment");
        }
    };
    let Some(user) = signed_in.claims.user_id else {
        return fail("Only users can sign in to the console");
    };
    // The callback is the issuer's: when that is https, so is the session cookie.
    let mut as_seen = headers.clone();
    if secure {
        as_seen.insert("x-forwarded-proto", HeaderValue::from_static("https"));
    }
    let started =
        crate::console_session::start_session(&state, &as_seen, "user", Some(user), None, "oauth")
            .await;
    if started.status() != StatusCode::OK {
        let message = message_of(started)
            .await
            .unwrap_or_else(|| "The console session could not be started".to_owned());
        return fail(&message);
    }
    let mut r = redirect(&safe_next(Some(&signed_in.next)));
    for v in started.headers().get_all(header::SET_COOKIE) {
        r.headers_mut().append(header::SET_COOKIE, v.clone());
    }
    if let Some(v) = cookie("", 0, secure) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_console_paths_are_followed() {
        for (given, followed) in [
            (None, "/ui/"),
            (Some("/ui/logs?model=gpt-4o"), "/ui/logs?model=gpt-4o"),
            (Some("https://evil.example"), "/ui/"),
            (Some("//evil.example/ui/"), "/ui/"),
            (Some("/ui"), "/ui/"),
            (Some("/admin/logs"), "/ui/"),
            (Some("/ui/../admin/keys"), "/ui/"),
            (Some("/ui/\\evil.example"), "/ui/"),
            (Some("/ui/x\r\nSet-Cookie: a=b"), "/ui/"),
            (Some("/ui/sign-in?next=/ui/"), "/ui/"),
        ] {
            assert_eq!(safe_next(given), followed, "{given:?}");
        }
    }

    #[test]
    fn repeated_parameters_are_refused() {
        assert_eq!(param(Some("a=1&b=2"), "a").as_deref(), Some("1"));
        assert_eq!(param(Some("a=1&a=2"), "a"), None);
        assert_eq!(param(None, "a"), None);
    }
}
