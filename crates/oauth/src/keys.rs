//! Access tokens: the Ed25519 signing key derived from the gateway's secret (so every replica
//! signs and verifies alike), its `kid` (the RFC 7638 thumbprint of the public key) and the
//! published JWK set, and the claims of an access token, signed as an `at+jwt` (RFC 9068)
//! with EdDSA.

use std::collections::HashSet;
use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use portcullis_core::{AccessRole, AuthMethod, Identity};
use serde::{Deserialize, Serialize};

use crate::directory::Principal;
use crate::error::OAuthError;
use crate::secrets::derive_key;

/// The `typ` header of access tokens (RFC 9068).
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";

/// Seconds of clock skew tolerated on `exp` and `iat`.
const LEEWAY_SECS: u64 = 5;

/// The claims of an access token issued by the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The issuer: the gateway's public base URL.
    pub iss: String,
    /// The audience: the gateway resource.
    pub aud: String,
    /// The principal's subject.
    pub sub: String,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// Issue time, Unix seconds.
    pub iat: i64,
    /// Token id; revocation lists it.
    pub jti: String,
    /// Granted scopes, space-separated.
    pub scope: String,
    /// The client the token was issued to.
    pub client_id: String,
    /// The user id, for a user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The team requests are accounted to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_id: Option<String>,
    /// Every team of the principal.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub teams: Vec<String>,
    /// The principal's role (`admin`, `member`, `viewer`).
    pub role: String,
    /// The service account id, for a service account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
}

impl AccessClaims {
    /// The granted scopes.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope.split_ascii_whitespace()
    }

    /// Whether `scope` was granted.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes().any(|s| s == scope)
    }

    /// The principal's role; an unknown name grants the least.
    pub fn role(&self) -> AccessRole {
        AccessRole::parse(&self.role).unwrap_or(AccessRole::Viewer)
    }

    /// The caller the token identifies, as the gateway's request path sees it.
    pub fn identity(&self) -> Identity {
        Identity {
            subject: self.sub.clone(),
            method: AuthMethod::OAuth,
            user: self.user_id.clone(),
            team: self.team_id.clone(),
            teams: self.teams.clone(),
            service_account: self.service_account.clone(),
            key_id: None,
            role: self.role(),
            allowed_models: None,
            scopes: Some(self.scopes().map(str::to_owned).collect::<Vec<_>>().into()),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        issuer: &str,
        audience: &str,
        principal: &Principal,
        client_id: &str,
        scope: &str,
        iat: i64,
        exp: i64,
        jti: String,
    ) -> Self {
        Self {
            iss: issuer.to_owned(),
            aud: audience.to_owned(),
            sub: principal.subject.clone(),
            exp,
            iat,
            jti,
            scope: scope.to_owned(),
            client_id: client_id.to_owned(),
            user_id: principal.user.clone(),
            team_id: principal.team.clone(),
            teams: principal.teams.clone(),
            role: principal.role.as_str().to_owned(),
            service_account: principal.service_account.clone(),
        }
    }
}

/// Fixed PKCS#8 v1 prefix of an Ed25519 private key (RFC 8410): the 32-byte seed follows.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// The gateway's token signing key.
#[derive(Clone)]
pub(crate) struct Signer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    kid: String,
    jwks: Arc<JwkSet>,
    validation: Validation,
    /// The default audience.
    audience: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("kid", &self.kid).finish()
    }
}

impl Signer {
    /// The key derived from the gateway's secret; tokens are accepted for `issuer` and
    /// `audience` only.
    pub(crate) fn new(secret: &[u8; 32], issuer: &str, audience: &str) -> Result<Self, OAuthError> {
        let seed = derive_key(secret, "access-token-signing-key/ed25519");
        let mut der = ED25519_PKCS8_PREFIX.to_vec();
        der.extend_from_slice(&seed);
        let encoding = EncodingKey::from_ed_der(&der);
        let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::EdDSA)
            .map_err(|e| OAuthError::Signing(e.to_string()))?;
        let kid = jwk
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|e| OAuthError::Signing(e.to_string()))?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        let decoding =
            DecodingKey::from_jwk(&jwk).map_err(|e| OAuthError::Signing(e.to_string()))?;

        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = LEEWAY_SECS;
        validation.set_issuer(&[issuer]);
        // The audience is compared by `verify_for`: tokens are bound to one resource each.
        validation.validate_aud = false;
        validation.required_spec_claims =
            HashSet::from(["exp", "iss", "aud", "sub"].map(str::to_owned));
        Ok(Self {
            encoding,
            decoding,
            kid,
            jwks: Arc::new(JwkSet { keys: vec![jwk] }),
            validation,
            audience: crate::resource::canonical_resource(audience)
                .unwrap_or_else(|| audience.to_owned()),
        })
    }

    /// The key id.
    pub(crate) fn kid(&self) -> &str {
        &self.kid
    }

    /// The public keys, as published.
    pub(crate) fn jwks(&self) -> &JwkSet {
        &self.jwks
    }

    /// Signs `claims`.
    pub(crate) fn sign(&self, claims: &AccessClaims) -> Result<String, OAuthError> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some(ACCESS_TOKEN_TYPE.to_owned());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|e| OAuthError::Signing(e.to_string()))
    }

    /// The claims of `token` if it is ours (signature, `typ`, `kid`, `iss`), for the default
    /// audience, and unexpired. Revocation is the caller's to check.
    pub(crate) fn verify(&self, token: &str) -> Result<AccessClaims, OAuthError> {
        self.verify_for(token, &self.audience)
    }

    /// [`Signer::verify`] for a token whose audience must be `audience` (canonical).
    pub(crate) fn verify_for(
        &self,
        token: &str,
        audience: &str,
    ) -> Result<AccessClaims, OAuthError> {
        let claims = self.decode(token)?;
        let aud = crate::resource::canonical_resource(&claims.aud);
        if aud.as_deref() != Some(audience) {
            return Err(OAuthError::InvalidToken("wrong audience".to_owned()));
        }
        Ok(claims)
    }

    fn decode(&self, token: &str) -> Result<AccessClaims, OAuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| OAuthError::InvalidToken("malformed token".to_owned()))?;
        if header.alg != Algorithm::EdDSA {
            return Err(OAuthError::InvalidToken("unexpected algorithm".to_owned()));
        }
        if header.typ.as_deref() != Some(ACCESS_TOKEN_TYPE) {
            return Err(OAuthError::InvalidToken("not an access token".to_owned()));
        }
        if header.kid.as_deref() != Some(self.kid.as_str()) {
            return Err(OAuthError::InvalidToken("unknown signing key".to_owned()));
        }
        jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => OAuthError::TokenExpired,
                ErrorKind::InvalidSignature => OAuthError::InvalidToken("bad signature".to_owned()),
                ErrorKind::InvalidIssuer => OAuthError::InvalidToken("wrong issuer".to_owned()),
                ErrorKind::InvalidAudience => OAuthError::InvalidToken("wrong audience".to_owned()),
                _ => OAuthError::InvalidToken("malformed token".to_owned()),
            })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn principal() -> Principal {
        Principal {
            subject: "user:alice".to_owned(),
            user: Some("alice".to_owned()),
            team: Some("t1".to_owned()),
            teams: vec!["t1".to_owned()],
            role: AccessRole::Member,
            service_account: None,
        }
    }

    fn now() -> i64 {
        jsonwebtoken::get_current_timestamp() as i64
    }

    #[test]
    fn signs_and_verifies_deterministically() {
        let a = Signer::new(&[1; 32], "https://gw", "https://gw").unwrap();
        let b = Signer::new(&[1; 32], "https://gw", "https://gw").unwrap();
        let c = Signer::new(&[2; 32], "https://gw", "https://gw").unwrap();
        assert_eq!(a.kid(), b.kid());
        assert_ne!(a.kid(), c.kid());
        let claims = AccessClaims::new(
            "https://gw",
            "https://gw",
            &principal(),
            "client",
            "models tools",
            now(),
            now() + 60,
            "jti-1".to_owned(),
        );
        let token = a.sign(&claims).unwrap();
        assert_eq!(b.verify(&token).unwrap(), claims);
        assert!(matches!(c.verify(&token), Err(OAuthError::InvalidToken(_))));
        let other_aud = Signer::new(&[1; 32], "https://gw", "https://elsewhere").unwrap();
        assert!(matches!(
            other_aud.verify(&token),
            Err(OAuthError::InvalidToken(_))
        ));
        let identity = claims.identity();
        assert_eq!(identity.method, AuthMethod::OAuth);
        assert_eq!(identity.role, AccessRole::Member);
        assert!(claims.has_scope("tools") && !claims.has_scope("admin"));
    }

    #[test]
    fn expired_tokens_are_refused() {
        let s = Signer::new(&[1; 32], "https://gw", "https://gw").unwrap();
        let claims = AccessClaims::new(
            "https://gw",
            "https://gw",
            &principal(),
            "client",
            "models",
            now() - 120,
            now() - 60,
            "jti-2".to_owned(),
        );
        let token = s.sign(&claims).unwrap();
        assert!(matches!(s.verify(&token), Err(OAuthError::TokenExpired)));
        assert!(matches!(
            s.verify("not.a.jwt"),
            Err(OAuthError::InvalidToken(_))
        ));
    }
}
