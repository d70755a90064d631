//! The web console's session as the rest of the gateway meets it: who a session is
//! ([`caller`], for the admin API), how a sign-in starts one ([`start_session`]), and the
//! anti-CSRF rule for state-changing calls that rely on it ([`csrf_guard`]).
//!
//! A session lasts [`SESSION_LIFETIME`] at most and ends after [`SESSION_IDLE`] unused; it is
//! stored as a digest (`console_sessions`), so every replica knows it and signing out ends it
//! everywhere at once. A user's session carries no role of its own: the user's role and teams
//! are read on every use, so a disabled user, a changed role or a left team applies at once. A
//! master-key session ends when the master key changes.
//!
//! The admin API accepts the session wherever it accepts an admin's or a viewer's credential,
//! or a member's own sign-in ([`caller`]), under the same rules
//! ([`admin_scope`](crate::admin_scope)). [`csrf_guard`] refuses, with 403, every state-changing
//! request to `/admin/` or `/ui/api/` that relies on the session cookie unless it carries the
//! session's anti-CSRF token in `x-portcullis-csrf` and comes from the console's own origin.
//! No other endpoint reads the cookie: the LLM and MCP APIs take only explicit credentials.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use portcullis_console::{assets, session};
use portcullis_core::{AccessRole, AuthMethod, Dialect, ErrorKind, GatewayError, Identity};
use portcullis_identity::Principal;
use portcullis_store::ConsoleSession;
use serde::Serialize;
use uuid::Uuid;

use crate::respond;
use crate::state::AppState;

/// The database failed: logged with what was being done, answered as 503.
fn store_failed(what: &'static str, e: &portcullis_store::StoreError) -> GatewayError {
    tracing::error!(error = %e, "{what} failed");
    GatewayError::new(
        ErrorKind::Unavailable,
        "The gateway's database is unavailable; try again later",
    )
}

/// The longest a console session lasts.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// A console session unused this long has ended.
pub const SESSION_IDLE: Duration = Duration::from_secs(2 * 3600);
/// How stale a session's last-use time may get before a use writes it.
const TOUCH_EVERY_MS: i64 = 60_000;

pub(crate) fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// An error as the console's API answers it: the admin API's JSON error body, with the
/// console's security headers.
pub(crate) fn error(e: &GatewayError) -> Response {
    let mut r = respond::error(Dialect::OpenAi, e, &Uuid::now_v7());
    assets::secure_headers(r.headers_mut());
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub(crate) fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    let mut r = match serde_json::to_vec(body) {
        Ok(bytes) => respond::json(status, bytes, &Uuid::now_v7()),
        Err(e) => return error(&GatewayError::internal(format!("encoding failed: {e}"))),
    };
    assets::secure_headers(r.headers_mut());
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A signed-in session as the console sees it.
#[derive(Serialize)]
pub(crate) struct SessionView {
    signed_in: bool,
    subject: String,
    user: Option<String>,
    role: &'static str,
    teams: Vec<String>,
    method: String,
    /// Whether the admin API's changes are open to this session.
    admin: bool,
    csrf_token: String,
    expires_at: Option<String>,
}

pub(crate) fn view(token: &str, principal: &Principal, session: &ConsoleSession) -> SessionView {
    let who = &principal.identity;
    SessionView {
        signed_in: true,
        subject: who.subject.clone(),
        user: who.user.clone(),
        role: who.role.as_str(),
        teams: who.teams.clone(),
        method: session.method.clone(),
        admin: crate::admin_scope::is_admin(who),
        csrf_token: session::csrf_token(token),
        expires_at: jiff::Timestamp::from_millisecond(session.expires_ms)
            .ok()
            .map(|t| t.to_string()),
    }
}

pub(crate) fn session_ended() -> GatewayError {
    GatewayError::unauthorized("Your console session has ended: sign in again")
        .with_code("session_ended")
}

/// The caller of a console session, or why it has none.
pub(crate) struct SessionCaller {
    pub(crate) principal: Arc<Principal>,
    pub(crate) session: ConsoleSession,
}

pub(crate) async fn resolve_session(
    state: &AppState,
    token: &str,
) -> Result<SessionCaller, GatewayError> {
    let digest = session::token_digest(token);
    let store = &state.stores.console_sessions;
    let found = store
        .console_session(&digest)
        .await
        .map_err(|e| store_failed("reading the console session", &e))?;
    let Some(session) = found else {
        return Err(session_ended());
    };
    let now = now_ms();
    let idle_ms = i64::try_from(SESSION_IDLE.as_millis()).unwrap_or(i64::MAX);
    if session.expires_ms <= now || session.last_seen_ms.saturating_add(idle_ms) <= now {
        let _ = store.delete_console_session(&digest).await;
        return Err(session_ended());
    }
    let principal = match (session.kind.as_str(), &session.user_id) {
        ("master", _) => {
            if session.master_digest.as_deref() != Some(&state.auth.master_fingerprint()) {
                let _ = store.delete_console_session(&digest).await;
                return Err(session_ended());
            }
            state.auth.master_principal()
        }
        ("user", Some(user_id)) => {
            match user_principal(state, user_id, session.expires_ms).await? {
                Some(p) => p,
                None => {
                    let _ = store.delete_console_session(&digest).await;
                    return Err(session_ended());
                }
            }
        }
        _ => return Err(session_ended()),
    };
    if now - session.last_seen_ms >= TOUCH_EVERY_MS
        && let Err(e) = store.touch_console_session(&digest, now).await
    {
        tracing::warn!(error = %e, "could not record a console session's use");
    }
    Ok(SessionCaller { principal, session })
}

/// The principal of local user `user_id` as it is now (role and teams read afresh); `None`
/// for a user who is gone or disabled.
async fn user_principal(
    state: &AppState,
    user_id: &str,
    expires_ms: i64,
) -> Result<Option<Arc<Principal>>, GatewayError> {
    let Some(directory) = state.auth.directory() else {
        return Ok(None);
    };
    let store = directory.store();
    let user = store
        .user(user_id)
        .await
        .map_err(|e| store_failed("reading the user", &e))?;
    let Some(user) = user.filter(|u| u.disabled_ms.is_none()) else {
        return Ok(None);
    };
    let teams = store
        .teams_of(&user.id)
        .await
        .map_err(|e| store_failed("reading the user's teams", &e))?;
    Ok(Some(Arc::new(Principal {
        identity: Arc::new(Identity {
            subject: user.id.clone(),
            method: AuthMethod::Console,
            user: Some(user.id),
            team: teams.first().cloned(),
            teams,
            service_account: None,
            key_id: None,
            role: AccessRole::parse(&user.role).unwrap_or_default(),
            allowed_models: None,
            scopes: None,
        }),
        expires_ms: Some(expires_ms),
        rules: None,
        controls: None,
        allow_custom_cost: false,
        tools_denied: None,
        tools: None,
    })))
}

/// The caller of an admin API request: its key or token when it presents one, else its
/// console session (whose state-changing requests [`csrf_guard`] has already checked).
pub(crate) async fn caller(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Arc<Principal>, GatewayError> {
    if crate::auth::credential(headers).is_none()
        && let Some(token) = session::session_token(headers)
    {
        return resolve_session(state, token).await.map(|c| c.principal);
    }
    state.auth.authenticate(headers).await
}

pub(crate) fn csrf_refused(why: &str) -> GatewayError {
    GatewayError::new(ErrorKind::PermissionDenied, why.to_owned()).with_code("csrf_failed")
}

/// Refuses a state-changing request to `/admin/` or `/ui/api/` that relies on the console
/// session unless it carries the session's anti-CSRF token and comes from the console's own
/// origin.
pub async fn csrf_guard(req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let guarded = path.starts_with("/admin/") || path.starts_with("/ui/api/");
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !guarded || safe {
        return next.run(req).await;
    }
    let headers = req.headers();
    if crate::auth::credential(headers).is_some() {
        return next.run(req).await;
    }
    let Some(token) = session::session_token(headers) else {
        return next.run(req).await;
    };
    if !session::same_origin(headers, None) {
        return error(&csrf_refused(
            "A console request must come from the console's own origin",
        ));
    }
    let presented = headers
        .get(session::CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !session::csrf_matches(token, presented) {
        return error(&csrf_refused(
            "A console request that changes something must carry the session's anti-CSRF token in `x-portcullis-csrf`",
        ));
    }
    next.run(req).await
}

/// Starts a console session of `kind` (`master` or `user`) signed in by `method`: stores it,
/// answers its view and sets its cookie, as every sign-in does.
pub(crate) async fn start_session(
    state: &AppState,
    headers: &HeaderMap,
    kind: &str,
    user_id: Option<String>,
    master_digest: Option<String>,
    method: &str,
) -> Response {
    let now = now_ms();
    let lifetime_ms = i64::try_from(SESSION_LIFETIME.as_millis()).unwrap_or(i64::MAX);
    let token = session::new_token();
    let record = ConsoleSession {
        id_digest: session::token_digest(&token),
        kind: kind.to_owned(),
        user_id,
        master_digest,
        method: method.to_owned(),
        created_ms: now,
        expires_ms: now.saturating_add(lifetime_ms),
        last_seen_ms: now,
    };
    if let Err(e) = state
        .stores
        .console_sessions
        .put_console_session(&record)
        .await
    {
        return error(&store_failed("starting the console session", &e));
    }
    let principal = match resolve_session(state, &token).await {
        Ok(c) => c.principal,
        Err(e) => return error(&e),
    };
    tracing::info!(subject = %principal.identity.subject, method, "console sign-in");
    let secure = session::is_https(headers);
    let mut r = json(StatusCode::OK, &view(&token, &principal, &record));
    if let Ok(v) = HeaderValue::from_str(&session::set_cookie(
        &token,
        secure,
        SESSION_LIFETIME.as_secs(),
    )) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}
