//! Authentication: who is calling.
//!
//! Callers send `Authorization: Bearer <key>` or `x-api-key: <key>` (what the Anthropic SDK
//! sends). The master key is held only as a SHA-256 digest and compared in constant time.
//! When no master key is configured, one is generated on first start, its digest stored, and
//! the key printed once. The caller's credential is never forwarded upstream: providers build
//! upstream requests from their own credentials only.
//!
//! What a credential is checked against that a reload may change — the master key's digest and
//! the enterprise issuers — is one [`Trust`] value, replaced whole by
//! [`Authenticator::retrust`]: each request is checked against one of them, never half of each.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use base64::Engine;
use http::HeaderMap;
use portcullis_core::{AccessRole, AuthMethod, ErrorKind, GatewayError, Identity};
use portcullis_identity::{AuthError, Directory, ExternalClaims, Principal};
use portcullis_providers::Secret;
use portcullis_store::{SettingsStore, StoreError};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::request_log::RequestLog;

const MASTER_KEY_SETTING: &str = "master_key_sha256";

/// `x-portcullis-team`: which of the caller's teams a request is accounted to.
pub const TEAM_HEADER: &str = "x-portcullis-team";

/// Verifies callers' credentials and resolves them to principals.
#[derive(Debug, Clone)]
pub struct Authenticator {
    /// The master key and enterprise issuers in force; a reload replaces them together.
    trust: Arc<ArcSwap<Trust>>,
    master: Arc<Principal>,
    directory: Option<Directory>,
    oauth: Option<portcullis_oauth::OAuthServer>,
    /// Failed password sign-ins, per username and client address: the OAuth server's when it
    /// runs, so the console and its sign-in page count together.
    sign_ins: portcullis_oauth::SignInThrottle,
}

/// What credentials are checked against that a reload may change.
#[derive(Debug)]
struct Trust {
    master: MasterDigest,
    verifier: Option<portcullis_oidc::Verifier>,
    /// The role of users of each issuer whose token names none.
    default_roles: HashMap<String, AccessRole>,
}

/// The master key as it is checked: its SHA-256 digest (the key itself is never kept).
#[derive(Clone, Copy)]
pub struct MasterDigest([u8; 32]);

impl MasterDigest {
    /// The digest of `key`.
    pub fn of(key: &Secret) -> Self {
        Self(digest(key.expose()))
    }

    /// The digest a first start without a configured key generated and stored, if any.
    pub async fn stored(settings: &dyn SettingsStore) -> Result<Option<Self>, StoreError> {
        match settings.get(MASTER_KEY_SETTING).await? {
            Some(stored) => Ok(Some(Self::from_hex(&stored)?)),
            None => Ok(None),
        }
    }

    fn from_hex(stored: &str) -> Result<Self, StoreError> {
        hex::decode(stored.trim())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .map(Self)
            .ok_or_else(|| StoreError::Migration("the stored master key digest is corrupt".into()))
    }

    fn matches(&self, presented: &str) -> bool {
        bool::from(digest(presented).ct_eq(&self.0))
    }
}

impl std::fmt::Debug for MasterDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterDigest(..)")
    }
}

/// How the master key was obtained at startup.
#[derive(Debug)]
pub enum MasterKeyOrigin {
    /// From the configuration or `PORTCULLIS_MASTER_KEY`.
    Configured,
    /// A previously generated key, whose digest was found in the database.
    Stored,
    /// Generated now: the key, to be shown once.
    Generated(Secret),
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn master_principal() -> Arc<Principal> {
    Arc::new(Principal {
        identity: Arc::new(Identity::master()),
        expires_ms: None,
        rules: None,
        controls: None,
        // The operator's own key may price its requests as it likes.
        allow_custom_cost: true,
        tools_denied: None,
        tools: None,
    })
}

impl Authenticator {
    /// An authenticator for a known master key only.
    pub fn with_master_key(key: &Secret) -> Self {
        Self::with_master_digest(MasterDigest::of(key))
    }

    fn with_master_digest(master: MasterDigest) -> Self {
        Self {
            trust: Arc::new(ArcSwap::from_pointee(Trust {
                master,
                verifier: None,
                default_roles: HashMap::new(),
            })),
            master: master_principal(),
            directory: None,
            oauth: None,
            sign_ins: portcullis_oauth::SignInThrottle::new(
                portcullis_oauth::OAuthConfig::default().max_failed_sign_ins,
            ),
        }
    }

    /// Also accepts bearer JWTs from the configured enterprise issuers.
    pub fn with_issuers(
        mut self,
        verifier: portcullis_oidc::Verifier,
        issuers: &[portcullis_oidc::IssuerConfig],
    ) -> Self {
        let master = self.master_digest();
        self.trust = Arc::new(ArcSwap::from_pointee(Trust {
            master,
            verifier: Some(verifier),
            default_roles: default_roles(issuers),
        }));
        self
    }

    /// The master key in force.
    pub fn master_digest(&self) -> MasterDigest {
        self.trust.load().master
    }

    /// The enterprise issuers' verifier in force, when any issuer is configured.
    pub fn verifier(&self) -> Option<portcullis_oidc::Verifier> {
        self.trust.load().verifier.clone()
    }

    /// Puts a master key and enterprise issuers (their verifier and settings; `None`: none) in
    /// force at once. A request already past authentication keeps its principal; every later
    /// one is checked against these alone.
    pub fn retrust(
        &self,
        master: MasterDigest,
        issuers: Option<(portcullis_oidc::Verifier, &[portcullis_oidc::IssuerConfig])>,
    ) {
        let (verifier, default_roles) = match issuers {
            Some((verifier, issuers)) => (Some(verifier), default_roles(issuers)),
            None => (None, HashMap::new()),
        };
        self.trust.store(Arc::new(Trust {
            master,
            verifier,
            default_roles,
        }));
    }

    /// Also accepts access tokens issued by the gateway's own OAuth server.
    pub fn with_oauth(mut self, oauth: portcullis_oauth::OAuthServer) -> Self {
        self.sign_ins = oauth.sign_in_throttle();
        self.oauth = Some(oauth);
        self
    }

    /// Failed password sign-ins, per username and client address.
    pub fn sign_in_throttle(&self) -> &portcullis_oauth::SignInThrottle {
        &self.sign_ins
    }

    /// The address a sign-in comes from (`X-Forwarded-For` read only from the OAuth server's
    /// `trusted_proxies`).
    pub fn client_address(
        &self,
        extensions: &http::Extensions,
        headers: &HeaderMap,
    ) -> Option<std::net::IpAddr> {
        let trusted = self.oauth.as_ref().map_or(&[][..], |o| o.trusted_proxies());
        portcullis_oauth::client_address(extensions, headers, trusted)
    }

    /// The gateway's OAuth server, when configured.
    pub fn oauth(&self) -> Option<&portcullis_oauth::OAuthServer> {
        self.oauth.as_ref()
    }

    /// Also resolves virtual keys and enterprise identities through `directory`.
    pub fn with_directory(mut self, directory: Directory) -> Self {
        self.directory = Some(directory);
        self
    }

    /// The tenancy directory.
    pub fn directory(&self) -> Option<&Directory> {
        self.directory.as_ref()
    }

    /// Sets up the master key: the configured one, else the stored digest, else a new key
    /// (stored as a digest; replicas racing here agree on the first one stored).
    pub async fn bootstrap(
        configured: Option<&Secret>,
        settings: &dyn SettingsStore,
    ) -> Result<(Self, MasterKeyOrigin), StoreError> {
        if let Some(key) = configured {
            return Ok((Self::with_master_key(key), MasterKeyOrigin::Configured));
        }
        if let Some(stored) = MasterDigest::stored(settings).await? {
            return Ok((Self::with_master_digest(stored), MasterKeyOrigin::Stored));
        }
        let key = generate_key("pk-master-");
        let hex_digest = hex::encode(digest(key.expose()));
        let stored = settings
            .put_if_absent(MASTER_KEY_SETTING, &hex_digest)
            .await?;
        let auth = Self::with_master_digest(MasterDigest::from_hex(&stored)?);
        if stored == hex_digest {
            Ok((auth, MasterKeyOrigin::Generated(key)))
        } else {
            // Another replica generated one first; it printed it.
            Ok((auth, MasterKeyOrigin::Stored))
        }
    }

    /// Whether `presented` is the master key in force (constant-time).
    pub fn is_master_key(&self, presented: &str) -> bool {
        self.trust.load().master.matches(presented)
    }

    /// A fingerprint of the master key in force (hex of a digest of its digest), so that a
    /// console session can tell it was begun with another master key.
    pub fn master_fingerprint(&self) -> String {
        hex::encode(&Sha256::digest(self.trust.load().master.0)[..16])
    }

    /// The master key's principal.
    pub fn master_principal(&self) -> Arc<Principal> {
        self.master.clone()
    }

    /// Resolves the caller of a request, or refuses it: 401 for a missing, unknown, expired
    /// or revoked credential, 403 for a disabled identity or a team it does not belong to.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Arc<Principal>, GatewayError> {
        self.resolve(headers, None).await.map_err(|(e, _)| e)
    }

    /// [`Authenticator::authenticate`] for a request that is logged: a known key that is
    /// refused (revoked, expired, no longer in its team) is named in the record, by id.
    pub async fn authenticate_logged(
        &self,
        headers: &HeaderMap,
        log: &mut RequestLog,
    ) -> Result<Arc<Principal>, GatewayError> {
        self.authenticate_logged_for(headers, log, None).await
    }

    /// [`Authenticator::authenticate_logged`] for the protected resource `resource` (an MCP
    /// endpoint's URI; `None`: the LLM API): the gateway's own OAuth access tokens are accepted
    /// only when issued for it (RFC 8707 audience).
    pub async fn authenticate_logged_for(
        &self,
        headers: &HeaderMap,
        log: &mut RequestLog,
        resource: Option<&str>,
    ) -> Result<Arc<Principal>, GatewayError> {
        self.resolve(headers, resource)
            .await
            .map_err(|(e, key_id)| {
                if let (Some(key_id), Some(r)) = (key_id, log.record()) {
                    r.subject = Some(key_id.clone());
                    r.auth_method = Some(AuthMethod::VirtualKey.as_str());
                    r.key_id = Some(key_id);
                }
                e
            })
    }

    /// Resolves the caller; a refusal comes with the id of the key refused, when known.
    async fn resolve(
        &self,
        headers: &HeaderMap,
        resource: Option<&str>,
    ) -> Result<Arc<Principal>, (GatewayError, Option<String>)> {
        let presented = credential(headers).ok_or_else(|| {
            (
                GatewayError::unauthorized(
                    "Missing API key: send `Authorization: Bearer <key>` or `x-api-key: <key>`",
                ),
                None,
            )
        })?;
        // One trust for the whole check, whatever a reload does meanwhile.
        let trust = self.trust.load_full();
        if trust.master.matches(presented) {
            return Ok(self.master.clone());
        }
        let Some(directory) = &self.directory else {
            return Err((GatewayError::unauthorized("Invalid API key"), None));
        };
        let principal = if portcullis_identity::keys::looks_like_key(presented) {
            directory.authenticate_key(presented).await.map_err(|e| {
                let key_id = e.key_id().map(str::to_owned);
                (auth_error(e), key_id)
            })?
        } else if portcullis_oidc::looks_like_jwt(presented) {
            self.bearer_jwt(&trust, directory, presented, resource)
                .await
                .map_err(|e| (e, None))?
        } else {
            return Err((GatewayError::unauthorized("Invalid API key"), None));
        };
        if directory.is_disabled(&principal.identity) {
            return Err((
                auth_error(AuthError::Disabled),
                principal.identity.key_id.clone(),
            ));
        }
        let key_id = principal.identity.key_id.clone();
        select_team(principal, headers).map_err(|e| (e, key_id))
    }
}

impl Authenticator {
    /// A bearer JWT: an access token of the gateway's own OAuth server (by its `iss`) issued
    /// for `resource` (`None`: the LLM API), else a token of a configured enterprise issuer,
    /// mapped to a user provisioned on first sight.
    async fn bearer_jwt(
        &self,
        trust: &Trust,
        directory: &Directory,
        token: &str,
        resource: Option<&str>,
    ) -> Result<Arc<Principal>, GatewayError> {
        if let Some(oauth) = &self.oauth
            && unverified_issuer(token).as_deref() == Some(oauth.issuer())
        {
            let verified = match resource {
                Some(resource) => oauth.verify_access_token_for(token, resource),
                None => oauth.verify_access_token(token),
            };
            let claims = verified.map_err(|e| {
                tracing::info!(reason = %e, "refused a gateway access token");
                invalid_token(&e.to_string())
            })?;
            // The token carries the teams of its sign-in; teams left since then are dropped.
            let identity = claims.identity();
            let identity = directory.current_teams(&identity).unwrap_or(identity);
            let rules = directory.owner_rules_of(&identity);
            return Ok(Arc::new(Principal {
                identity: Arc::new(identity),
                expires_ms: Some(claims.exp.saturating_mul(1000)),
                rules,
                controls: None,
                allow_custom_cost: false,
                tools_denied: None,
                tools: None,
            }));
        }
        let Some(verifier) = &trust.verifier else {
            return Err(invalid_token("no enterprise issuer is configured"));
        };
        let verified = verifier.verify(token).await.map_err(|e| {
            tracing::info!(reason = e.reason(), error = %e, "refused a bearer token");
            if e.is_temporary() {
                GatewayError::new(
                    ErrorKind::Unavailable,
                    "The token issuer's keys are unavailable",
                )
                .with_code("issuer_unavailable")
                .with_detail(e.to_string())
            } else {
                invalid_token(&format!("{} ({e})", e.reason()))
            }
        })?;
        let default_role = trust
            .default_roles
            .get(&verified.issuer)
            .copied()
            .unwrap_or_default();
        let claims = ExternalClaims {
            issuer: verified.issuer,
            subject: verified.subject,
            user: verified.user,
            email: verified.email,
            teams: verified.teams,
            roles: verified.roles,
            default_role,
            method: AuthMethod::Jwt,
        };
        directory
            .resolve_external(&claims)
            .await
            .map_err(auth_error)
    }
}

/// Each issuer's `default_role`, for users whose tokens carry no role claim.
pub(crate) fn default_roles(
    issuers: &[portcullis_oidc::IssuerConfig],
) -> HashMap<String, AccessRole> {
    issuers
        .iter()
        .filter_map(|i| {
            let role = AccessRole::parse(i.default_role.as_deref()?)?;
            Some((i.issuer.clone(), role))
        })
        .collect()
}

/// A refused bearer token, with the reason (never the token).
fn invalid_token(reason: &str) -> GatewayError {
    GatewayError::unauthorized(format!("Invalid bearer token: {reason}")).with_code("invalid_token")
}

/// The `iss` claim of a JWT, read without verifying it (only to pick the verifier).
fn unverified_issuer(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    #[derive(serde::Deserialize)]
    struct Iss {
        iss: Option<String>,
    }
    serde_json::from_slice::<Iss>(&bytes).ok()?.iss
}

/// Applies `x-portcullis-team`: the caller picks which of its teams the request is accounted
/// to.
fn select_team(
    principal: Arc<Principal>,
    headers: &HeaderMap,
) -> Result<Arc<Principal>, GatewayError> {
    let Some(wanted) = headers.get(TEAM_HEADER) else {
        return Ok(principal);
    };
    let Ok(wanted) = wanted.to_str() else {
        return Err(GatewayError::invalid_request(format!(
            "The {TEAM_HEADER} header must be printable ASCII"
        ))
        .with_code("invalid_header"));
    };
    let wanted = wanted.trim();
    let who = &principal.identity;
    if who.team.as_deref() == Some(wanted) {
        return Ok(principal);
    }
    if !who.teams.iter().any(|t| t == wanted) {
        return Err(GatewayError::new(
            ErrorKind::PermissionDenied,
            format!("The caller is not a member of team `{wanted}` (x-portcullis-team)"),
        )
        .with_code("team_not_allowed"));
    }
    let mut identity = (**who).clone();
    identity.team = Some(wanted.to_owned());
    Ok(Arc::new(Principal {
        identity: Arc::new(identity),
        expires_ms: principal.expires_ms,
        rules: principal.rules.clone(),
        controls: principal.controls,
        allow_custom_cost: principal.allow_custom_cost,
        tools_denied: principal.tools_denied.clone(),
        tools: principal.tools.clone(),
    }))
}

/// A refused credential as the caller sees it.
pub fn auth_error(e: AuthError) -> GatewayError {
    match e {
        AuthError::Store(e) => {
            tracing::error!(error = %e, "identity store unavailable");
            GatewayError::new(
                ErrorKind::Unavailable,
                "The identity store is unavailable; try again shortly",
            )
        }
        AuthError::Timeout(limit) => {
            tracing::warn!(?limit, "the identity store did not answer in time");
            GatewayError::new(
                ErrorKind::Unavailable,
                "The identity store did not answer in time; try again shortly",
            )
        }
        AuthError::Disabled => GatewayError::new(ErrorKind::PermissionDenied, e.to_string())
            .with_code("identity_disabled"),
        AuthError::TeamMembershipEnded { .. } => {
            GatewayError::new(ErrorKind::PermissionDenied, e.to_string())
                .with_code("team_membership_ended")
        }
        AuthError::Revoked { .. } => {
            GatewayError::unauthorized(e.to_string()).with_code("key_revoked")
        }
        AuthError::Expired { .. } => {
            GatewayError::unauthorized(e.to_string()).with_code("key_expired")
        }
        AuthError::UnknownKey => GatewayError::unauthorized(e.to_string()),
    }
}

/// The credential a request presents: a Bearer token, else `x-api-key`.
pub(crate) fn credential(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get(http::header::AUTHORIZATION)
        && let Ok(s) = v.to_str()
    {
        // The scheme is case-insensitive (RFC 9110 §11.1): `Bearer`, `bearer`, `BEARER`.
        let s = s.trim();
        if let Some((scheme, token)) = s.split_once([' ', '\t'])
            && scheme.eq_ignore_ascii_case("bearer")
        {
            let token = token.trim();
            if !token.is_empty() {
                return Some(token);
            }
        }
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// A new random key with 256 bits of entropy.
pub fn generate_key(prefix: &str) -> Secret {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    Secret::new(format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[tokio::test]
    async fn accepts_bearer_or_x_api_key_and_refuses_the_rest() {
        let auth = Authenticator::with_master_key(&Secret::new("sk-master-1234567890"));
        let master = auth
            .authenticate(&headers(&[(
                "authorization",
                "Bearer sk-master-1234567890",
            )]))
            .await
            .unwrap();
        // The master key is no virtual key: every MCP tool is open to it, none withheld.
        assert!(master.tools.is_none() && master.tools_denied.is_none());
        assert!(
            auth.authenticate(&headers(&[("x-api-key", "sk-master-1234567890")]))
                .await
                .is_ok()
        );
        for scheme in ["bearer", "BEARER", "BeArEr"] {
            let value = format!("{scheme}  sk-master-1234567890");
            assert!(
                auth.authenticate(&headers(&[("authorization", &value)]))
                    .await
                    .is_ok(),
                "{value}"
            );
        }
        for bad in [
            headers(&[("authorization", "Bearersk-master-1234567890")]),
            headers(&[]),
            headers(&[("authorization", "Bearer nope")]),
            headers(&[("authorization", "Basic sk-master-1234567890")]),
            headers(&[("x-api-key", "")]),
        ] {
            let e = auth.authenticate(&bad).await.unwrap_err();
            assert_eq!(e.status().as_u16(), 401);
        }
    }

    #[test]
    fn generated_keys_are_long_and_distinct() {
        let a = generate_key("pk-");
        let b = generate_key("pk-");
        assert_ne!(a, b);
        assert!(a.expose().len() >= 40);
    }
}
