//! The web console at `/ui/`: its pages, its sign-in and its session, and how the admin API
//! accepts that session.
//!
//! - `GET /ui/…`: the page shell for every console URL (each page and each log record has its
//!   own address), and `GET /ui/static/<version>/…` its embedded files
//!   ([`portcullis_console::assets`]).
//! - `GET /ui/api/sign-in-methods`: which sign-ins this gateway offers (no credentials needed).
//! - `POST /ui/api/session`: signs in with `{"master_key"}` or `{"user", "password"}` (a local
//!   user's id or e-mail), from the console's own origin only; answers the session and sets
//!   its cookie. `GET` answers the current session (with its anti-CSRF token) or
//!   `{"signed_in": false}`, `DELETE` signs out.
//!
//! The session itself — how long it lasts, who it is, how the admin API accepts it and the
//! anti-CSRF rule — is [`console_session`](crate::console_session)'s.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use portcullis_console::{assets, session};
use portcullis_core::{ErrorKind, GatewayError};
use serde::{Deserialize, Serialize};

use crate::console_session::{csrf_refused, error, json, resolve_session, start_session, view};
use crate::state::AppState;

/// The console's routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/ui",
            get(|| async { redirect("/ui/", StatusCode::PERMANENT_REDIRECT) }),
        )
        .route("/ui/", get(shell))
        .route("/ui/static/{*path}", get(static_file))
        .route("/ui/api/sign-in-methods", get(sign_in_methods))
        .route("/ui/auth/oauth", get(crate::console_oauth::begin))
        .route("/ui/auth/callback", get(crate::console_oauth::callback))
        .route(
            "/ui/api/session",
            get(current_session).post(sign_in).delete(sign_out),
        )
        .route("/ui/api/{*rest}", get(unknown_api).post(unknown_api))
        .route("/ui/{*page}", get(shell))
}

fn redirect(to: &str, status: StatusCode) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    assets::secure_headers(r.headers_mut());
    r
}

async fn shell(headers: HeaderMap) -> Response {
    assets::respond(assets::index(), &headers, assets::Caching::Revalidate).map(Body::from)
}

async fn static_file(Path(path): Path<String>, headers: HeaderMap) -> Response {
    match assets::find(&path) {
        Some((file, current)) => {
            let caching = if current {
                assets::Caching::Immutable
            } else {
                assets::Caching::Revalidate
            };
            assets::respond(file, &headers, caching).map(Body::from)
        }
        None => error(&GatewayError::new(
            ErrorKind::NotFound,
            "No console file has this name",
        )),
    }
}

async fn unknown_api() -> Response {
    error(
        &GatewayError::new(ErrorKind::NotFound, "No console API has this path")
            .with_code("not_found"),
    )
}

#[derive(Serialize)]
struct SignInMethods {
    master_key: bool,
    password: bool,
    oauth: bool,
}

async fn sign_in_methods(State(state): State<Arc<AppState>>) -> Response {
    json(
        StatusCode::OK,
        &SignInMethods {
            master_key: true,
            password: state.auth.directory().is_some(),
            oauth: state.auth.oauth().is_some(),
        },
    )
}

/// `GET /ui/api/session`: the session, or `{"signed_in": false}` (a browser without a session
/// is not an error; the console shows its sign-in page).
async fn current_session(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let signed_out = || json(StatusCode::OK, &serde_json::json!({"signed_in": false}));
    let Some(token) = session::session_token(&headers) else {
        return signed_out();
    };
    match resolve_session(&state, token).await {
        Ok(c) => json(StatusCode::OK, &view(token, &c.principal, &c.session)),
        Err(e) if e.status() == StatusCode::UNAUTHORIZED => {
            let secure = session::is_https(&headers);
            let mut r = signed_out();
            if let Ok(v) = HeaderValue::from_str(&session::clear_cookie(secure)) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        Err(e) => error(&e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    master_key: Option<String>,
    user: Option<String>,
    password: Option<String>,
}

fn wrong(message: &str) -> GatewayError {
    GatewayError::unauthorized(message.to_owned()).with_code("sign_in_failed")
}

/// The name a master-key sign-in's failures are counted under (no user has it: user ids and
/// e-mails have no spaces).
const MASTER_KEY_SIGN_IN: &str = "master key";

/// Refuses a sign-in made too soon after failed ones: 429 with `Retry-After`.
fn throttled(wait: std::time::Duration) -> Response {
    let mut r = error(
        &GatewayError::new(
            ErrorKind::RateLimited,
            format!(
                "Too many failed sign-ins from this address: try again in {}",
                portcullis_oauth::wait_in_words(wait)
            ),
        )
        .with_code("sign_in_throttled"),
    );
    r.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(portcullis_oauth::retry_after_seconds(wait)),
    );
    r
}

/// `POST /ui/api/session`. Failed attempts are counted per user (or the master key) and client
/// address with the OAuth sign-in page's counts: after a few, each attempt waits longer, and
/// after `oauth.max_failed_sign_ins` (10 by default) the pair is locked for 15 minutes.
async fn sign_in(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    if !session::same_origin(headers, None) {
        return error(&csrf_refused(
            "Sign-in must come from the console's own origin",
        ));
    }
    let bytes = match axum::body::to_bytes(body, 16 * 1024).await {
        Ok(b) => b,
        Err(_) => {
            return error(&GatewayError::invalid_request(
                "The sign-in body is too large",
            ));
        }
    };
    let form: SignIn = match crate::admin::parse_body_bytes(&bytes, &[]) {
        Ok(f) => f,
        Err(e) => return error(&e),
    };
    let throttle = state.auth.sign_in_throttle();
    let address = state.auth.client_address(&parts.extensions, headers);
    let counted_as = match &form {
        SignIn {
            master_key: Some(_),
            ..
        } => MASTER_KEY_SIGN_IN.to_owned(),
        SignIn { user: Some(u), .. } => u.trim().to_lowercase(),
        _ => String::new(),
    };
    if !counted_as.is_empty()
        && let Err(wait) = throttle.check(&counted_as, address).await
    {
        tracing::warn!("console sign-in refused: too many failures from this address");
        return throttled(wait);
    }
    let failed = |message: &'static str| {
        let counted_as = counted_as.clone();
        async move {
            throttle.record_failure(counted_as, address).await;
            error(&wrong(message))
        }
    };
    let (kind, user_id, master_digest, method) = match form {
        SignIn {
            master_key: Some(key),
            user: None,
            password: None,
        } => {
            if !state.auth.is_master_key(key.trim()) {
                return failed("That is not the master key").await;
            }
            (
                "master",
                None,
                Some(state.auth.master_fingerprint()),
                "master_key",
            )
        }
        SignIn {
            master_key: None,
            user: Some(user),
            password: Some(password),
        } => {
            let Some(directory) = state.auth.directory() else {
                return error(&GatewayError::invalid_request(
                    "This gateway has no local users: sign in with the master key",
                ));
            };
            let lookup = crate::oauth::OAuthDirectory::new(directory.clone(), &[]);
            match portcullis_oauth::Directory::authenticate_user(&lookup, user.trim(), &password)
                .await
            {
                Ok(Some(p)) => match p.user {
                    Some(u) => ("user", Some(u), None, "password"),
                    None => return failed("Wrong user or password").await,
                },
                Ok(None) => return failed("Wrong user or password").await,
                Err(e) => {
                    tracing::error!(error = %e.0, "console sign-in could not read the directory");
                    return error(&GatewayError::new(
                        ErrorKind::Unavailable,
                        "The identity store is unavailable",
                    ));
                }
            }
        }
        _ => {
            return error(&GatewayError::invalid_request(
                "Send either `master_key`, or `user` and `password`",
            ));
        }
    };
    throttle.clear(&counted_as, address).await;
    start_session(&state, headers, kind, user_id, master_digest, method).await
}

async fn sign_out(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let secure = session::is_https(&headers);
    if let Some(token) = session::session_token(&headers)
        && let Err(e) = state
            .stores
            .console_sessions
            .delete_console_session(&session::token_digest(token))
            .await
    {
        return error(&crate::admin::store_unavailable(
            "ending the console session",
            &e,
        ));
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    assets::secure_headers(r.headers_mut());
    if let Ok(v) = HeaderValue::from_str(&session::clear_cookie(secure)) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}
