//! The OAuth server's view of the gateway's users and service accounts: local sign-in checks
//! the user's Argon2id password digest (off the async executor), users an identity provider
//! signed in are provisioned just in time exactly as for its bearer tokens (same claim
//! mapping, same teams and role), and every principal is read from the tenancy store, so
//! disabled users and service accounts cannot sign in or get tokens. [`McpResources`] tells
//! the OAuth server which MCP endpoints tokens may be bound to (RFC 8707).

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use portcullis_core::{AccessRole, AuthMethod};
use portcullis_identity::{AuthError, Directory, ExternalClaims};
use portcullis_oauth::{DirectoryError, Principal};

/// The tenancy directory as the OAuth server sees it.
#[derive(Debug, Clone)]
pub struct OAuthDirectory {
    directory: Directory,
    /// Each identity issuer's `default_role`.
    default_roles: Arc<HashMap<String, AccessRole>>,
}

impl OAuthDirectory {
    /// The OAuth view of `directory`; `issuers` give the default roles of provisioned users.
    pub fn new(directory: Directory, issuers: &[portcullis_oidc::IssuerConfig]) -> Self {
        Self {
            directory,
            default_roles: Arc::new(crate::auth::default_roles(issuers)),
        }
    }
}

fn store_error(e: impl std::fmt::Display) -> DirectoryError {
    DirectoryError(format!("identity store unavailable: {e}"))
}

impl OAuthDirectory {
    async fn user_principal(&self, id: &str) -> Result<Option<Principal>, DirectoryError> {
        let store = self.directory.store();
        let Some(user) = store.user(id).await.map_err(store_error)? else {
            return Ok(None);
        };
        if user.disabled_ms.is_some() {
            return Ok(None);
        }
        let teams = store.teams_of(&user.id).await.map_err(store_error)?;
        Ok(Some(Principal {
            subject: user.id.clone(),
            user: Some(user.id),
            team: teams.first().cloned(),
            teams,
            role: AccessRole::parse(&user.role).unwrap_or_default(),
            service_account: None,
        }))
    }
}

#[async_trait]
impl portcullis_oauth::Directory for OAuthDirectory {
    async fn authenticate_user(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Option<Principal>, DirectoryError> {
        let store = self.directory.store();
        let user = match store.user(username).await.map_err(store_error)? {
            Some(u) => Some(u),
            None => store.user_by_email(username).await.map_err(store_error)?,
        };
        // Unknown users and users without a password cost one Argon2 check too (against a
        // dummy digest), so the answer's timing does not tell which usernames exist.
        let digest = user.as_ref().and_then(|u| u.password_hash.clone());
        let password = password.to_owned();
        let matches = tokio::task::spawn_blocking(move || match digest {
            Some(digest) => portcullis_identity::passwords::verify(&password, &digest),
            None => portcullis_identity::passwords::verify_unknown(&password),
        })
        .await
        .unwrap_or(false);
        match user {
            Some(user) if matches => self.user_principal(&user.id).await,
            _ => Ok(None),
        }
    }

    async fn service_account(&self, id: &str) -> Result<Option<Principal>, DirectoryError> {
        let Some(sa) = self
            .directory
            .store()
            .service_account(id)
            .await
            .map_err(store_error)?
        else {
            return Ok(None);
        };
        if sa.disabled_ms.is_some() {
            return Ok(None);
        }
        Ok(Some(Principal {
            subject: sa.id.clone(),
            user: None,
            team: sa.team_id.clone(),
            teams: sa.team_id.into_iter().collect(),
            role: AccessRole::parse(&sa.role).unwrap_or_default(),
            service_account: Some(sa.id),
        }))
    }

    async fn external_user(
        &self,
        token: &portcullis_oidc::VerifiedToken,
    ) -> Result<Option<Principal>, DirectoryError> {
        let claims = ExternalClaims {
            issuer: token.issuer.clone(),
            subject: token.subject.clone(),
            user: token.user.clone(),
            email: token.email.clone(),
            teams: token.teams.clone(),
            roles: token.roles.clone(),
            default_role: self
                .default_roles
                .get(&token.issuer)
                .copied()
                .unwrap_or_default(),
            method: AuthMethod::OAuth,
        };
        match self.directory.resolve_external(&claims).await {
            Ok(principal) => {
                let who = &principal.identity;
                let Some(user) = who.user.clone() else {
                    return Ok(None);
                };
                Ok(Some(Principal {
                    subject: user.clone(),
                    user: Some(user),
                    team: who.team.clone(),
                    teams: who.teams.clone(),
                    role: who.role,
                    service_account: None,
                }))
            }
            Err(AuthError::Disabled) => Ok(None),
            Err(e) => Err(store_error(e)),
        }
    }

    async fn refresh_principal(&self, p: &Principal) -> Result<Option<Principal>, DirectoryError> {
        match (&p.service_account, &p.user) {
            (Some(sa), _) => self.service_account(sa).await,
            (None, Some(user)) => self.user_principal(user).await,
            (None, None) => Ok(None),
        }
    }
}

/// The MCP endpoints as protected resources: `<base>/mcp` and `<base>/mcp/<server>` for every
/// server in use, where `<base>` is what the endpoints themselves announce in their resource
/// metadata (`mcp.public_url`, else `http://` and a `Host` the endpoints accept).
#[derive(Debug)]
pub struct McpResources(Weak<crate::state::AppState>);

impl McpResources {
    /// The MCP endpoints of `state`, as they are when a request asks.
    pub fn new(state: Weak<crate::state::AppState>) -> Self {
        Self(state)
    }
}

impl portcullis_oauth::Resources for McpResources {
    fn recognizes(&self, resource: &portcullis_oauth::Url) -> bool {
        let Some(endpoint) = self.0.upgrade().and_then(|s| s.mcp.load_full()) else {
            return false;
        };
        let path = resource.path().trim_end_matches('/');
        let server = match path.strip_prefix("/mcp") {
            Some("") => None,
            Some(rest) => match rest.strip_prefix('/') {
                Some(name) if endpoint.hub.server(name).is_some() => Some(name),
                _ => return false,
            },
            None => return false,
        };
        let Some(host) = resource.host_str() else {
            return false;
        };
        let authority = match resource.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        let Ok(value) = http::HeaderValue::from_str(&authority) else {
            return false;
        };
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::HOST, value);
        if endpoint.guard(&headers).is_err() {
            return false;
        }
        let base = endpoint.base_url(&headers);
        let expected = match server {
            Some(s) => format!("{base}/mcp/{s}"),
            None => format!("{base}/mcp"),
        };
        portcullis_oauth::canonical_resource(&expected)
            == portcullis_oauth::canonical_resource(resource.as_str())
    }
}
