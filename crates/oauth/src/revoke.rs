//! Token revocation (RFC 7009): an access token's `jti` is listed as revoked until the token
//! expires (every replica stops accepting it within about a second); a refresh token revokes
//! its whole family. Unknown tokens, and tokens of other clients, are answered 200 all the
//! same, so the endpoint reveals nothing.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;

use crate::error::{ProtocolError, no_store};
use crate::secrets::sha256;
use crate::server::{Inner, now_ms};
use crate::token::{authenticate_client, read_form};

#[derive(Debug, Default, Deserialize)]
struct RevokeForm {
    token: Option<String>,
    /// `access_token` or `refresh_token`; tokens are told apart by their shape, so the hint
    /// is not needed.
    #[allow(dead_code)]
    token_type_hint: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// `POST /oauth/revoke`.
pub(crate) async fn revoke(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match revoke_token(&inner, &headers, &body).await {
        Ok(()) => {
            let mut response = StatusCode::OK.into_response();
            no_store(&mut response);
            response
        }
        Err(e) => e.into_response(),
    }
}

async fn revoke_token(
    inner: &Inner,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), ProtocolError> {
    let form: RevokeForm = read_form(headers, body)?;
    let client = authenticate_client(
        inner,
        headers,
        form.client_id.as_deref(),
        form.client_secret.as_deref(),
    )
    .await?;
    let token = form
        .token
        .as_deref()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ProtocolError::invalid_request("token is required"))?;
    if token.contains('.') {
        // An access token (a JWT). Expired or foreign ones need nothing.
        if let Ok(claims) = inner.signer.verify(token)
            && claims.client_id == client.client_id
        {
            let expires_ms = claims.exp.saturating_mul(1000);
            inner
                .store
                .revoke_access_token(&claims.jti, expires_ms, now_ms())
                .await?;
            inner.revocations.add_local(claims.jti.clone(), expires_ms);
            tracing::info!(
                client_id = %client.client_id,
                jti = %claims.jti,
                "revoked an OAuth access token"
            );
        }
        return Ok(());
    }
    if let Some(record) = inner.store.refresh_token(&sha256(token.as_bytes())).await?
        && record.client_id == client.client_id
    {
        inner.revoke_family(&record.family_id).await?;
    }
    Ok(())
}
