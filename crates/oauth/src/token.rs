//! The token endpoint: client authentication (`client_secret_basic`, `client_secret_post`,
//! or `none` for public clients), and the `authorization_code` (PKCE S256, single-use code:
//! a replay revokes what the code issued), `refresh_token` (rotation: a reused token revokes
//! its family) and `client_credentials` grants. Every grant may name the resource (RFC 8707)
//! its access tokens are for; a code or refresh token stays bound to the resource of its
//! authorization. Errors follow RFC 6749 §5.2.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, header};
use percent_encoding::percent_decode_str;
use portcullis_store::oauth::{ClientRecord, CodeRedemption, Issue};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::directory::Principal;
use crate::error::{ProtocolError, no_store};
use crate::secrets::{ct_eq, pkce_matches, sha256};
use crate::server::{ClientError, Inner, now_ms};

#[derive(Debug, Default, Deserialize)]
struct TokenForm {
    grant_type: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    refresh_token: Option<String>,
    scope: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    /// RFC 8707.
    resource: Option<String>,
}

/// A successful token response (RFC 6749 §5.1).
#[derive(Debug, Serialize)]
struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    scope: String,
}

/// Reads an `application/x-www-form-urlencoded` body; a repeated parameter is an error.
pub(crate) fn read_form<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, ProtocolError> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !is_form {
        return Err(ProtocolError::invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    serde_urlencoded::from_bytes(body).map_err(|_| {
        ProtocolError::invalid_request("the parameters cannot be read (is one of them repeated?)")
    })
}

/// Decodes one `application/x-www-form-urlencoded` component (RFC 6749 §2.3.1).
fn form_decode(s: &str) -> Option<String> {
    let spaced = s.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// The client id and secret of an `Authorization: Basic` header, if there is one.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, ProtocolError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let bad = || ProtocolError::invalid_client("malformed Basic authorization");
    let value = value.to_str().map_err(|_| bad())?;
    let Some((scheme, encoded)) = value.trim().split_once(' ') else {
        return Err(bad());
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(ProtocolError::invalid_client(
            "unsupported authorization scheme; use Basic or client_secret_post",
        ));
    }
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
    Ok(Some((
        form_decode(id).ok_or_else(bad)?,
        form_decode(secret).ok_or_else(bad)?,
    )))
}

/// Authenticates the client of a token or revocation request. A confidential client must
/// present its secret (Basic or in the body, not both); a public client only its id.
pub(crate) async fn authenticate_client(
    inner: &Inner,
    headers: &HeaderMap,
    client_id: Option<&str>,
    client_secret: Option<&str>,
) -> Result<ClientRecord, ProtocolError> {
    let (id, secret) = match basic_credentials(headers)? {
        Some((id, secret)) => {
            if client_secret.is_some() {
                return Err(ProtocolError::invalid_request(
                    "use one client authentication method, not several",
                ));
            }
            if client_id.is_some_and(|c| c != id) {
                return Err(ProtocolError::invalid_request(
                    "client_id does not match the Basic credentials",
                ));
            }
            (id, Some(secret))
        }
        None => match client_id {
            Some(id) => (id.to_owned(), client_secret.map(str::to_owned)),
            None => {
                return Err(ProtocolError::invalid_client(
                    "client authentication is required",
                ));
            }
        },
    };
    let client = match inner.client(&id).await {
        Ok(c) => c,
        Err(ClientError::Document(why)) => {
            return Err(ProtocolError::invalid_client(why.to_string()));
        }
        Err(ClientError::Store(e)) => return Err(e.into()),
    };
    let Some(client) = client else {
        return Err(ProtocolError::invalid_client("unknown client"));
    };
    if crate::first_party::is_first_party(&client.client_id) {
        return Err(ProtocolError::invalid_client(
            "this client's codes are redeemed by the gateway itself",
        ));
    }
    // A public client sending an empty password in Basic credentials sends no secret.
    let secret = secret.filter(|s| !(client.secret_hash.is_none() && s.is_empty()));
    match (&client.secret_hash, secret) {
        (Some(expected), Some(secret)) => {
            if !ct_eq(&sha256(secret.as_bytes()), expected) {
                return Err(ProtocolError::invalid_client(
                    "client authentication failed",
                ));
            }
        }
        (Some(_), None) => {
            return Err(ProtocolError::invalid_client(
                "this client must authenticate with its secret",
            ));
        }
        (None, Some(_)) => {
            return Err(ProtocolError::invalid_client(
                "this is a public client; it has no secret",
            ));
        }
        (None, None) => {}
    }
    Ok(client)
}

/// `POST /oauth/token`.
pub(crate) async fn token(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match exchange(&inner, &headers, &body).await {
        Ok(tokens) => {
            let mut response = Json(tokens).into_response();
            no_store(&mut response);
            response
        }
        Err(e) => e.into_response(),
    }
}

async fn exchange(
    inner: &Inner,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<TokenResponse, ProtocolError> {
    let form: TokenForm = read_form(headers, body)?;
    let client = authenticate_client(
        inner,
        headers,
        form.client_id.as_deref(),
        form.client_secret.as_deref(),
    )
    .await?;
    let grant = form.grant_type.as_deref().unwrap_or_default();
    if matches!(
        grant,
        "authorization_code" | "refresh_token" | "client_credentials"
    ) && !client.grant_types.iter().any(|g| g == grant)
    {
        return Err(ProtocolError::unauthorized_client(format!(
            "this client may not use the {grant} grant"
        )));
    }
    match grant {
        "authorization_code" => authorization_code(inner, &client, &form).await,
        "refresh_token" => refresh_token(inner, &client, &form).await,
        "client_credentials" => client_credentials(inner, &client, &form).await,
        "" => Err(ProtocolError::invalid_request("grant_type is required")),
        _ => Err(ProtocolError::new(
            http::StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            format!("grant type `{grant}` is not supported"),
        )),
    }
}

/// Redeems a code issued to the gateway's own `client` in-process (the token endpoint refuses
/// that client), under the checks of the `authorization_code` grant; the access token.
pub(crate) async fn redeem_code(
    inner: &Inner,
    client: &ClientRecord,
    code: &str,
    verifier: &str,
    redirect_uri: &str,
) -> Result<String, ProtocolError> {
    let form = TokenForm {
        grant_type: Some("authorization_code".to_owned()),
        code: Some(code.to_owned()),
        redirect_uri: Some(redirect_uri.to_owned()),
        code_verifier: Some(verifier.to_owned()),
        client_id: Some(client.client_id.clone()),
        ..TokenForm::default()
    };
    authorization_code(inner, client, &form)
        .await
        .map(|tokens| tokens.access_token)
}

fn wants_refresh_tokens(client: &ClientRecord) -> bool {
    client.grant_types.iter().any(|g| g == "refresh_token")
}

async fn authorization_code(
    inner: &Inner,
    client: &ClientRecord,
    form: &TokenForm,
) -> Result<TokenResponse, ProtocolError> {
    let code = form
        .code
        .as_deref()
        .ok_or_else(|| ProtocolError::invalid_request("code is required"))?;
    let verifier = form
        .code_verifier
        .as_deref()
        .ok_or_else(|| ProtocolError::invalid_request("code_verifier is required (PKCE)"))?;
    let now = now_ms();
    let record = match inner
        .store
        .consume_code(&sha256(code.as_bytes()), now)
        .await?
    {
        CodeRedemption::Redeemed(record) => record,
        CodeRedemption::Unknown => {
            return Err(ProtocolError::invalid_grant("unknown authorization code"));
        }
        CodeRedemption::AlreadyUsed { family_id } => {
            tracing::warn!(
                client_id = %client.client_id,
                %family_id,
                "authorization code replayed; revoking its tokens"
            );
            inner.revoke_family(&family_id).await?;
            return Err(ProtocolError::invalid_grant(
                "the authorization code was already used; the tokens issued from it are revoked",
            ));
        }
    };
    if record.client_id != client.client_id {
        return Err(ProtocolError::invalid_grant(
            "the authorization code was issued to another client",
        ));
    }
    if record.expires_ms <= now {
        return Err(ProtocolError::invalid_grant(
            "the authorization code has expired",
        ));
    }
    let redirect_ok = match (&record.redirect_uri, &form.redirect_uri) {
        (Some(expected), Some(given)) => expected == given,
        (Some(_), None) => false,
        (None, None) => true,
        (None, Some(given)) => client.redirect_uris.len() == 1 && client.redirect_uris[0] == *given,
    };
    if !redirect_ok {
        return Err(ProtocolError::invalid_grant(
            "redirect_uri does not match the authorization request",
        ));
    }
    if !pkce_matches(verifier, &record.code_challenge) {
        return Err(ProtocolError::invalid_grant(
            "the code_verifier does not match the code_challenge",
        ));
    }
    let resource = crate::resource::within_grant(
        form.resource.as_deref(),
        record.resource.as_deref(),
        &inner.audience,
        inner.resources(),
    )?;
    let principal = Principal::from_json(&record.principal)
        .ok_or_else(|| ProtocolError::server(&"unreadable principal in a stored code"))?;
    let access = inner.mint_access(
        &principal,
        &client.client_id,
        &record.scope,
        resource.as_deref(),
        Some(&record.family_id),
    )?;
    let refresh = wants_refresh_tokens(client).then(|| {
        inner.new_refresh(
            &record.family_id,
            &client.client_id,
            &record.scope,
            resource.as_deref(),
            &principal,
        )
    });
    match inner
        .store
        .issue_tokens(
            Some(&record.family_id),
            refresh.as_ref().map(|(_, r)| r),
            &access.record,
            now_ms(),
        )
        .await?
    {
        Issue::Issued => Ok(TokenResponse {
            access_token: access.token,
            token_type: "Bearer",
            expires_in: inner.access_ttl_secs(),
            refresh_token: refresh.map(|(token, _)| token),
            scope: record.scope,
        }),
        Issue::FamilyRevoked | Issue::AlreadyRotated => Err(ProtocolError::invalid_grant(
            "the authorization grant was revoked",
        )),
    }
}

async fn refresh_token(
    inner: &Inner,
    client: &ClientRecord,
    form: &TokenForm,
) -> Result<TokenResponse, ProtocolError> {
    let token = form
        .refresh_token
        .as_deref()
        .ok_or_else(|| ProtocolError::invalid_request("refresh_token is required"))?;
    let hash = sha256(token.as_bytes());
    let Some(record) = inner.store.refresh_token(&hash).await? else {
        return Err(ProtocolError::invalid_grant("unknown refresh token"));
    };
    if record.client_id != client.client_id {
        return Err(ProtocolError::invalid_grant(
            "the refresh token was issued to another client",
        ));
    }
    if record.revoked_ms.is_some() {
        return Err(ProtocolError::invalid_grant(
            "the refresh token was revoked",
        ));
    }
    if record.rotated_ms.is_some() {
        return Err(reuse_detected(inner, client, &record.family_id).await);
    }
    let now = now_ms();
    if record.expires_ms <= now {
        return Err(ProtocolError::invalid_grant(
            "the refresh token has expired",
        ));
    }
    let resource = crate::resource::within_grant(
        form.resource.as_deref(),
        record.resource.as_deref(),
        &inner.audience,
        inner.resources(),
    )?;
    // A narrower scope may be asked for this access token; the refresh token keeps its own.
    let scope = match form
        .scope
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        None => record.scope.clone(),
        Some(asked) => {
            let mut granted: Vec<&str> = Vec::new();
            for s in asked.split(' ').filter(|s| !s.is_empty()) {
                if !record.scope.split(' ').any(|g| g == s) {
                    return Err(ProtocolError::invalid_scope(format!(
                        "scope `{s}` was not granted"
                    )));
                }
                if !granted.contains(&s) {
                    granted.push(s);
                }
            }
            granted.join(" ")
        }
    };
    let stored = Principal::from_json(&record.principal)
        .ok_or_else(|| ProtocolError::server(&"unreadable principal in a stored refresh token"))?;
    let Some(principal) = inner.directory.refresh_principal(&stored).await? else {
        inner.revoke_family(&record.family_id).await?;
        return Err(ProtocolError::invalid_grant(
            "the user of this grant no longer exists or is disabled",
        ));
    };
    let access = inner.mint_access(
        &principal,
        &client.client_id,
        &scope,
        resource.as_deref(),
        Some(&record.family_id),
    )?;
    let (new_token, new_record) = inner.new_refresh(
        &record.family_id,
        &client.client_id,
        &record.scope,
        resource.as_deref(),
        &principal,
    );
    match inner
        .store
        .rotate_refresh_token(&hash, &new_record, &access.record, now_ms())
        .await?
    {
        Issue::Issued => Ok(TokenResponse {
            access_token: access.token,
            token_type: "Bearer",
            expires_in: inner.access_ttl_secs(),
            refresh_token: Some(new_token),
            scope,
        }),
        // Another request exchanged the same token meanwhile: a reuse.
        Issue::AlreadyRotated => Err(reuse_detected(inner, client, &record.family_id).await),
        Issue::FamilyRevoked => Err(ProtocolError::invalid_grant(
            "the authorization grant was revoked",
        )),
    }
}

/// A refresh token was used twice: revokes its family; the error to answer.
async fn reuse_detected(inner: &Inner, client: &ClientRecord, family_id: &str) -> ProtocolError {
    tracing::warn!(
        client_id = %client.client_id,
        family_id,
        "refresh token reused; revoking its family"
    );
    match inner.revoke_family(family_id).await {
        Ok(()) => {
            ProtocolError::invalid_grant("the refresh token was already used; the grant is revoked")
        }
        Err(e) => e.into(),
    }
}

async fn client_credentials(
    inner: &Inner,
    client: &ClientRecord,
    form: &TokenForm,
) -> Result<TokenResponse, ProtocolError> {
    if client.secret_hash.is_none() {
        return Err(ProtocolError::unauthorized_client(
            "public clients may not use client_credentials",
        ));
    }
    let Some(account) = client.service_account.as_deref() else {
        return Err(ProtocolError::unauthorized_client(
            "this client is not bound to a service account",
        ));
    };
    let Some(principal) = inner.directory.service_account(account).await? else {
        return Err(ProtocolError::unauthorized_client(
            "the client's service account no longer exists",
        ));
    };
    let scope = inner.resolve_scope(form.scope.as_deref(), client)?;
    let resource = inner.resolve_resource(form.resource.as_deref())?;
    let access = inner.mint_access(
        &principal,
        &client.client_id,
        &scope,
        resource.as_deref(),
        None,
    )?;
    inner
        .store
        .issue_tokens(None, None, &access.record, now_ms())
        .await?;
    Ok(TokenResponse {
        access_token: access.token,
        token_type: "Bearer",
        expires_in: inner.access_ttl_secs(),
        refresh_token: None,
        scope,
    })
}
