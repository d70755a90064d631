//! Who may sign in: the [`Directory`] the gateway implements over its users and service
//! accounts (the OAuth server owns no users), the [`Principal`] it resolves to, and
//! [`MemoryDirectory`], an in-memory directory for tests and demos.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::RwLock;
use portcullis_core::AccessRole;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Who a token acts for: a user who signed in, or a service account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Stable subject, the token's `sub`.
    pub subject: String,
    /// The user id, for a user.
    pub user: Option<String>,
    /// The team requests are accounted to, if any.
    pub team: Option<String>,
    /// Every team the principal belongs to.
    pub teams: Vec<String>,
    /// What the principal may do.
    pub role: AccessRole,
    /// The service account id, for a service account.
    pub service_account: Option<String>,
}

/// A directory lookup failed (not "no such user": that is `Ok(None)`).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct DirectoryError(pub String);

/// The gateway's users and service accounts, as the OAuth server sees them.
#[async_trait]
pub trait Directory: Send + Sync {
    /// The user with these credentials; `None` when the username is unknown or the password
    /// wrong (callers cannot tell which).
    async fn authenticate_user(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Option<Principal>, DirectoryError>;

    /// The service account `id`; `None` when there is none.
    async fn service_account(&self, id: &str) -> Result<Option<Principal>, DirectoryError>;

    /// The user an identity provider vouched for in a verified ID token (sign-in delegated to
    /// an OpenID Connect provider), provisioned on first sight if the directory does that;
    /// `None` refuses the sign-in (unknown or disabled user). The default refuses everyone.
    async fn external_user(
        &self,
        token: &portcullis_oidc::VerifiedToken,
    ) -> Result<Option<Principal>, DirectoryError> {
        let _ = token;
        Ok(None)
    }

    /// The principal as it is now, when a refresh token stored as `principal` is used;
    /// `None` ends the grant (the user was removed or disabled). The default keeps the
    /// stored principal.
    async fn refresh_principal(
        &self,
        principal: &Principal,
    ) -> Result<Option<Principal>, DirectoryError> {
        Ok(Some(principal.clone()))
    }
}

/// A principal as stored in codes and refresh tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredPrincipal {
    subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    team: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    teams: Vec<String>,
    role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    service_account: Option<String>,
}

impl From<&Principal> for StoredPrincipal {
    fn from(p: &Principal) -> Self {
        Self {
            subject: p.subject.clone(),
            user: p.user.clone(),
            team: p.team.clone(),
            teams: p.teams.clone(),
            role: p.role.as_str().to_owned(),
            service_account: p.service_account.clone(),
        }
    }
}

impl From<StoredPrincipal> for Principal {
    fn from(p: StoredPrincipal) -> Self {
        Self {
            subject: p.subject,
            user: p.user,
            team: p.team,
            teams: p.teams,
            // An unknown role grants the least.
            role: AccessRole::parse(&p.role).unwrap_or(AccessRole::Viewer),
            service_account: p.service_account,
        }
    }
}

impl Principal {
    /// The JSON the store keeps.
    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(&StoredPrincipal::from(self)).unwrap_or_default()
    }

    /// Parses what [`Principal::to_json`] wrote.
    pub(crate) fn from_json(s: &str) -> Option<Self> {
        serde_json::from_str::<StoredPrincipal>(s)
            .ok()
            .map(Into::into)
    }
}

struct MemoryUser {
    salt: [u8; 16],
    digest: [u8; 32],
    principal: Principal,
}

fn password_digest(salt: &[u8; 16], password: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(password.as_bytes());
    h.finalize().into()
}

/// An in-memory [`Directory`] for tests and demos: users with salted SHA-256 password
/// digests (not a password hash fit for production) and service accounts.
#[derive(Clone, Default)]
pub struct MemoryDirectory {
    users: Arc<RwLock<HashMap<String, MemoryUser>>>,
    service_accounts: Arc<RwLock<HashMap<String, Principal>>>,
    /// Users known to identity providers, by (issuer, subject).
    external: Arc<RwLock<HashMap<(String, String), Principal>>>,
}

impl std::fmt::Debug for MemoryDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryDirectory")
            .field("users", &self.users.read().len())
            .field("service_accounts", &self.service_accounts.read().len())
            .finish()
    }
}

impl MemoryDirectory {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the user `username`.
    pub fn add_user(&self, username: &str, password: &str, principal: Principal) {
        let salt: [u8; 16] = rand::random();
        let digest = password_digest(&salt, password);
        self.users.write().insert(
            username.to_owned(),
            MemoryUser {
                salt,
                digest,
                principal,
            },
        );
    }

    /// Removes the user `username`; their refresh tokens stop working.
    pub fn remove_user(&self, username: &str) {
        self.users.write().remove(username);
    }

    /// Lets the user `subject` of the identity provider `issuer` sign in as `principal`.
    pub fn add_external_user(&self, issuer: &str, subject: &str, principal: Principal) {
        self.external
            .write()
            .insert((issuer.to_owned(), subject.to_owned()), principal);
    }

    /// Adds (or replaces) a service account, keyed by `principal.service_account` (or its
    /// subject when that is `None`).
    pub fn add_service_account(&self, principal: Principal) {
        let id = principal
            .service_account
            .clone()
            .unwrap_or_else(|| principal.subject.clone());
        self.service_accounts.write().insert(id, principal);
    }
}

#[async_trait]
impl Directory for MemoryDirectory {
    async fn authenticate_user(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Option<Principal>, DirectoryError> {
        let users = self.users.read();
        let Some(user) = users.get(username) else {
            return Ok(None);
        };
        let digest = password_digest(&user.salt, password);
        Ok(bool::from(digest.ct_eq(&user.digest)).then(|| user.principal.clone()))
    }

    async fn service_account(&self, id: &str) -> Result<Option<Principal>, DirectoryError> {
        Ok(self.service_accounts.read().get(id).cloned())
    }

    async fn external_user(
        &self,
        token: &portcullis_oidc::VerifiedToken,
    ) -> Result<Option<Principal>, DirectoryError> {
        Ok(self
            .external
            .read()
            .get(&(token.issuer.clone(), token.subject.clone()))
            .cloned())
    }

    async fn refresh_principal(
        &self,
        principal: &Principal,
    ) -> Result<Option<Principal>, DirectoryError> {
        if let Some(sa) = &principal.service_account {
            return self.service_account(sa).await;
        }
        if let Some(user) = self
            .users
            .read()
            .values()
            .find(|u| u.principal.subject == principal.subject)
        {
            return Ok(Some(user.principal.clone()));
        }
        Ok(self
            .external
            .read()
            .values()
            .find(|p| p.subject == principal.subject)
            .cloned())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn alice() -> Principal {
        Principal {
            subject: "user:alice".to_owned(),
            user: Some("alice".to_owned()),
            team: Some("t1".to_owned()),
            teams: vec!["t1".to_owned(), "t2".to_owned()],
            role: AccessRole::Admin,
            service_account: None,
        }
    }

    #[tokio::test]
    async fn memory_directory_checks_passwords() {
        let d = MemoryDirectory::new();
        d.add_user("alice", "s3cret", alice());
        assert_eq!(
            d.authenticate_user("alice", "s3cret").await.unwrap(),
            Some(alice())
        );
        assert_eq!(d.authenticate_user("alice", "wrong").await.unwrap(), None);
        assert_eq!(d.authenticate_user("bob", "s3cret").await.unwrap(), None);
        assert_eq!(d.refresh_principal(&alice()).await.unwrap(), Some(alice()));
        d.remove_user("alice");
        assert_eq!(d.refresh_principal(&alice()).await.unwrap(), None);
    }

    #[test]
    fn principals_round_trip_through_json() {
        let p = alice();
        assert_eq!(Principal::from_json(&p.to_json()), Some(p));
        let odd = Principal::from_json(r#"{"subject":"x","role":"root"}"#).unwrap();
        assert_eq!(odd.role, AccessRole::Viewer);
        assert_eq!(Principal::from_json("nope"), None);
    }
}
