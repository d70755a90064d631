//! Errors: [`OAuthError`], what the server's Rust API returns, and `ProtocolError`, an
//! RFC 6749 §5.2 / RFC 7591 §3.2.2 error as answered over HTTP (JSON, `no-store`).

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use portcullis_store::StoreError;

use crate::directory::DirectoryError;

/// A failure of the OAuth server's API.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// The settings are invalid.
    #[error("invalid OAuth configuration: {0}")]
    Config(String),
    /// The database failed.
    #[error("OAuth storage failed: {0}")]
    Store(#[from] StoreError),
    /// The user directory failed.
    #[error("user directory failed: {0}")]
    Directory(#[from] DirectoryError),
    /// The signing key could not be built or used.
    #[error("token signing failed: {0}")]
    Signing(String),
    /// The access token is not one of ours (bad signature, issuer, audience, type or shape).
    #[error("invalid access token: {0}")]
    InvalidToken(String),
    /// The access token has expired.
    #[error("access token expired")]
    TokenExpired,
    /// The access token was revoked.
    #[error("access token revoked")]
    TokenRevoked,
    /// No such service account.
    #[error("unknown service account `{0}`")]
    UnknownServiceAccount(String),
    /// Client settings are invalid.
    #[error("invalid client: {0}")]
    InvalidClient(String),
}

impl OAuthError {
    /// Whether the error is about the presented access token (a 401 for the caller) rather
    /// than a failure of the server.
    pub fn is_token_error(&self) -> bool {
        matches!(
            self,
            OAuthError::InvalidToken(_) | OAuthError::TokenExpired | OAuthError::TokenRevoked
        )
    }
}

/// An OAuth error response: `{"error": code, "error_description": …}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProtocolError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) description: String,
}

impl ProtocolError {
    pub(crate) fn new(
        status: StatusCode,
        code: &'static str,
        description: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code,
            description: description.into(),
        }
    }

    /// 400 `invalid_request`.
    pub(crate) fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    /// 400 `invalid_grant`.
    pub(crate) fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", description)
    }

    /// 401 `invalid_client`.
    pub(crate) fn invalid_client(description: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_client", description)
    }

    /// 400 `invalid_scope`.
    pub(crate) fn invalid_scope(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_scope", description)
    }

    /// 400 `invalid_target` (RFC 8707).
    pub(crate) fn invalid_target(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_target", description)
    }

    /// 400 `unauthorized_client`.
    pub(crate) fn unauthorized_client(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "unauthorized_client", description)
    }

    /// 500 `server_error`, logged; the details stay in the log.
    pub(crate) fn server(error: &dyn std::fmt::Display) -> Self {
        tracing::error!(%error, "OAuth server error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "the authorization server failed; try again later",
        )
    }
}

impl From<OAuthError> for ProtocolError {
    fn from(e: OAuthError) -> Self {
        ProtocolError::server(&e)
    }
}

impl From<StoreError> for ProtocolError {
    fn from(e: StoreError) -> Self {
        ProtocolError::server(&e)
    }
}

impl From<DirectoryError> for ProtocolError {
    fn from(e: DirectoryError) -> Self {
        ProtocolError::server(&e)
    }
}

/// Headers every token-endpoint answer carries (RFC 6749 §5.1).
pub(crate) fn no_store(response: &mut Response) {
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

impl IntoResponse for ProtocolError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": self.code,
            "error_description": self.description,
        });
        let mut response = (self.status, Json(body)).into_response();
        no_store(&mut response);
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"portcullis\""),
            );
        }
        response
    }
}
