//! Discovery: the authorization server metadata (RFC 8414), the protected resource metadata
//! (RFC 9728) that tells clients of the gateway where to get tokens, and the JWK set.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, header};
use serde_json::json;

use crate::server::Inner;

fn cacheable(body: serde_json::Value) -> Response {
    let mut response = Json(body).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

/// `GET /.well-known/oauth-authorization-server`.
pub(crate) async fn authorization_server(State(inner): State<Arc<Inner>>) -> Response {
    let mut body = json!({
        "issuer": inner.issuer,
        "authorization_endpoint": inner.endpoint("/oauth/authorize"),
        "token_endpoint": inner.endpoint("/oauth/token"),
        "revocation_endpoint": inner.endpoint("/oauth/revoke"),
        "jwks_uri": inner.endpoint("/oauth/jwks"),
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported":
            ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported":
            ["client_secret_basic", "client_secret_post", "none"],
        "scopes_supported": inner.config.scopes,
        "authorization_response_iss_parameter_supported": true,
        "client_id_metadata_document_supported": inner.config.client_metadata_documents.enabled,
    });
    if inner.config.dynamic_registration
        && let Some(map) = body.as_object_mut()
    {
        map.insert(
            "registration_endpoint".to_owned(),
            json!(inner.endpoint("/oauth/register")),
        );
    }
    cacheable(body)
}

/// `GET /.well-known/oauth-protected-resource`.
pub(crate) async fn protected_resource(State(inner): State<Arc<Inner>>) -> Response {
    cacheable(json!({
        "resource": inner.audience,
        "authorization_servers": [inner.issuer],
        "scopes_supported": inner.config.scopes,
        "bearer_methods_supported": ["header"],
    }))
}

/// `GET /oauth/jwks`.
pub(crate) async fn jwks(State(inner): State<Arc<Inner>>) -> Response {
    cacheable(serde_json::to_value(inner.signer.jwks()).unwrap_or_default())
}
