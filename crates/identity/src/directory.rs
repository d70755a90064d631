//! [`Directory`]: the hot-path view of tenancy — presented virtual keys and enterprise
//! claims resolved to [`Principal`]s, and provider credentials resolved per identity — cached
//! in memory and kept current across replicas.
//!
//! Lookups cost a SHA-256 of the key and a cache read. Every change to tenancy bumps a version
//! counter in the database; each replica polls it (every second by default) and drops its
//! cached views when it moves, so a revoked key or disabled user stops working everywhere
//! within one poll interval, and at once on the replica that made the change. A lookup that
//! raced with a change does not repopulate the cache with what it read.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use parking_lot::RwLock;
use portcullis_core::{AccessRole, AuthMethod, Identity};
use portcullis_limits::{Period, Rule, ScopeKind};
use portcullis_providers::Secret;
use portcullis_store::tenancy::{CredentialOwner, KeyRecord};
use portcullis_store::{StoreError, TenancyStore};
use sha2::{Digest, Sha256};

use crate::controls::{ControlOverrides, KeyControls};
use crate::manage::KeyLimits;
use crate::vault::Vault;
use crate::{keys, now_ms};

/// Tuning of the directory.
#[derive(Debug, Clone, Copy)]
pub struct DirectoryOptions {
    /// How often the tenancy version is polled.
    pub poll_interval: Duration,
    /// Cached keys and external identities, each.
    pub cache_capacity: u64,
    /// How long an unknown key is remembered as unknown (bounded by version changes too).
    pub negative_ttl: Duration,
}

impl Default for DirectoryOptions {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(1),
            cache_capacity: 100_000,
            negative_ttl: Duration::from_secs(30),
        }
    }
}

/// A resolved caller with what applies to it.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Who.
    pub identity: Arc<Identity>,
    /// When the credential stops working (the key's or the secret's expiry), Unix ms.
    pub expires_ms: Option<i64>,
    /// The key's own limits and budget, as limiter rules.
    pub rules: Option<Arc<[Rule]>>,
    /// The key's own cache, retry and timeout settings.
    pub controls: Option<ControlOverrides>,
    /// Whether the caller's own prices (`x-portcullis-custom-cost`) are what its budgets
    /// count: the operator allowed it for the key (or the caller holds the master key).
    /// Otherwise budgets count the list price and the custom price is only recorded.
    pub allow_custom_cost: bool,
}

/// Why a credential was refused. The message is safe to show to the caller.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No such key.
    #[error("Invalid API key")]
    UnknownKey,
    /// The key was revoked.
    #[error("This API key has been revoked")]
    Revoked {
        /// The key's id (for the log; never its secret).
        key_id: String,
    },
    /// The key or the secret expired.
    #[error("This API key has expired")]
    Expired {
        /// The key's id.
        key_id: String,
    },
    /// The user or service account is disabled.
    #[error("This identity is disabled")]
    Disabled,
    /// The key is bound to a team its user (or service account) no longer belongs to, or
    /// that was deleted.
    #[error("This API key is bound to team `{team}`, which it no longer belongs to")]
    TeamMembershipEnded {
        /// The key's id.
        key_id: String,
        /// The team the key is bound to.
        team: String,
    },
    /// The database failed.
    #[error("identity store unavailable: {0}")]
    Store(#[from] StoreError),
}

impl AuthError {
    /// The id of the virtual key refused, when the credential was one the gateway knows.
    pub fn key_id(&self) -> Option<&str> {
        match self {
            AuthError::Revoked { key_id }
            | AuthError::Expired { key_id }
            | AuthError::TeamMembershipEnded { key_id, .. } => {
                (!key_id.is_empty()).then_some(key_id.as_str())
            }
            _ => None,
        }
    }
}

/// Claims of a verified enterprise token, mapped to names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalClaims {
    /// The issuer.
    pub issuer: String,
    /// `sub` at the issuer.
    pub subject: String,
    /// The mapped user claim (e.g. email or preferred username).
    pub user: String,
    /// Email, if mapped.
    pub email: Option<String>,
    /// Team ids from the teams claim.
    pub teams: Vec<String>,
    /// AccessRole names from the roles claim.
    pub roles: Vec<String>,
    /// The role given when no role claim names one.
    pub default_role: AccessRole,
    /// How the caller authenticated (`Jwt`, or `OAuth` for the gateway's own tokens).
    pub method: AuthMethod,
}

/// The credential resolved for a request.
#[derive(Debug)]
pub struct ResolvedCredential {
    /// Credential id (logged and sent in `x-portcullis-provider-key`).
    pub id: Arc<str>,
    /// Alias.
    pub alias: String,
    /// The secret.
    pub secret: Secret,
    /// The credential as its provider sends it (header built once, on first use).
    pub prepared: std::sync::OnceLock<Arc<portcullis_providers::provider::Credential>>,
}

/// Why no credential could be picked for an explicitly requested alias.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AliasError {
    /// The provider has no credential with that alias.
    #[error("provider `{provider}` has no key with alias `{alias}`")]
    Unknown {
        /// Provider.
        provider: String,
        /// Alias.
        alias: String,
    },
    /// The alias exists but belongs to another user or team.
    #[error("the provider key `{alias}` is not available to this caller")]
    NotAllowed {
        /// Alias.
        alias: String,
    },
}

#[derive(Debug, Clone)]
enum KeyLookup {
    Found(Arc<Principal>, Option<i64>),
    Missing,
    /// Revoked, or bound to a disabled identity: remembered so that a client retrying a dead
    /// key does not reach the database on every request.
    Refused(RefusedKind),
}

#[derive(Debug, Clone)]
enum RefusedKind {
    /// Revoked: the key's id.
    Revoked(Arc<str>),
    Disabled,
    /// The key's team no longer counts its owner as a member: the key's id and the team.
    LeftTeam(Arc<str>, Arc<str>),
}

#[derive(Debug)]
enum Owner {
    Default,
    User(String),
    Team(String),
}

#[derive(Debug, Default)]
struct CredentialIndex {
    by_provider: HashMap<String, Vec<(Owner, Arc<ResolvedCredential>)>>,
}

/// The directory. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Directory {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn TenancyStore>,
    vault: Option<Vault>,
    keys: moka::sync::Cache<[u8; 32], KeyLookup>,
    externals: moka::sync::Cache<[u8; 32], Arc<Principal>>,
    credentials: RwLock<Arc<CredentialIndex>>,
    /// Disabled users and service accounts, checked on every request whatever the credential.
    disabled: RwLock<Arc<DisabledSet>>,
    /// Each user's teams now, for credentials that carry teams from when they were issued.
    memberships: RwLock<Arc<HashMap<String, Vec<String>>>>,
    /// Bumped locally on every invalidation; a lookup that started under another epoch does
    /// not fill the cache.
    epoch: AtomicI64,
    /// The last tenancy version seen in the database.
    version: AtomicI64,
    options: DirectoryOptions,
}

/// Disabled users and service accounts, by id.
#[derive(Debug, Default)]
struct DisabledSet {
    users: HashSet<String>,
    service_accounts: HashSet<String>,
}

impl Directory {
    /// A directory over `store`; `vault` opens stored provider credentials (none are used
    /// without it). Loads the credential index.
    pub async fn new(
        store: Arc<dyn TenancyStore>,
        vault: Option<Vault>,
        options: DirectoryOptions,
    ) -> Result<Directory, StoreError> {
        let version = store.version().await?;
        let directory = Directory {
            inner: Arc::new(Inner {
                store,
                vault,
                keys: moka::sync::Cache::builder()
                    .max_capacity(options.cache_capacity)
                    .expire_after(NegativeExpiry(options.negative_ttl))
                    .build(),
                externals: moka::sync::Cache::builder()
                    .max_capacity(options.cache_capacity)
                    .time_to_live(Duration::from_secs(300))
                    .build(),
                credentials: RwLock::new(Arc::new(CredentialIndex::default())),
                disabled: RwLock::new(Arc::new(DisabledSet::default())),
                memberships: RwLock::new(Arc::default()),
                epoch: AtomicI64::new(0),
                version: AtomicI64::new(version),
                options,
            }),
        };
        directory.reload_credentials().await?;
        Ok(directory)
    }

    /// The store behind the directory.
    pub fn store(&self) -> &Arc<dyn TenancyStore> {
        &self.inner.store
    }

    /// The vault, when `PORTCULLIS_SECRET_KEY` is set.
    pub fn vault(&self) -> Option<&Vault> {
        self.inner.vault.as_ref()
    }

    /// Polls the tenancy version until `shutdown` resolves, dropping cached views whenever it
    /// moves.
    pub fn spawn_watcher(&self) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(this.inner.options.poll_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if Arc::strong_count(&this.inner) == 1 {
                    return; // The gateway is gone.
                }
                if let Err(e) = this.refresh().await {
                    tracing::warn!(error = %e, "cannot poll the tenancy version");
                }
            }
        })
    }

    /// Checks the tenancy version once; drops cached views when it moved.
    pub async fn refresh(&self) -> Result<(), StoreError> {
        let v = self.inner.store.version().await?;
        if self.inner.version.swap(v, Ordering::AcqRel) != v {
            self.invalidate().await?;
        }
        Ok(())
    }

    /// Drops every cached view and reloads credentials (called after a local change).
    pub async fn invalidate(&self) -> Result<(), StoreError> {
        self.inner.epoch.fetch_add(1, Ordering::AcqRel);
        self.inner.keys.invalidate_all();
        self.inner.externals.invalidate_all();
        self.reload_credentials().await
    }

    async fn reload_credentials(&self) -> Result<(), StoreError> {
        let store = &self.inner.store;
        let mut disabled = DisabledSet::default();
        for u in store.users().await? {
            if u.disabled_ms.is_some() {
                disabled.users.insert(u.id);
            }
        }
        for a in store.service_accounts().await? {
            if a.disabled_ms.is_some() {
                disabled.service_accounts.insert(a.id);
            }
        }
        *self.inner.disabled.write() = Arc::new(disabled);
        let mut memberships: HashMap<String, Vec<String>> = HashMap::new();
        for (team, user) in store.memberships().await? {
            memberships.entry(user).or_default().push(team);
        }
        *self.inner.memberships.write() = Arc::new(memberships);
        let mut index = CredentialIndex::default();
        if let Some(vault) = &self.inner.vault {
            for c in self.inner.store.credentials().await? {
                let Ok(secret) = vault.open(&c.id, &c.sealed) else {
                    tracing::error!(credential = %c.id, "a stored provider key cannot be opened with PORTCULLIS_SECRET_KEY; skipping it");
                    continue;
                };
                let owner = match CredentialOwner::parse(&c.owner_kind) {
                    Some(CredentialOwner::User) => Owner::User(c.owner_id),
                    Some(CredentialOwner::Team) => Owner::Team(c.owner_id),
                    Some(CredentialOwner::Default) | None => Owner::Default,
                };
                index.by_provider.entry(c.provider).or_default().push((
                    owner,
                    Arc::new(ResolvedCredential {
                        id: Arc::from(c.id),
                        alias: c.alias,
                        secret,
                        prepared: std::sync::OnceLock::new(),
                    }),
                ));
            }
        }
        *self.inner.credentials.write() = Arc::new(index);
        Ok(())
    }

    /// Resolves a presented virtual key.
    pub async fn authenticate_key(&self, presented: &str) -> Result<Arc<Principal>, AuthError> {
        let digest = keys::digest(presented);
        let now = now_ms();
        let lookup = match self.inner.keys.get(&digest) {
            Some(hit) => hit,
            None => {
                let epoch = self.inner.epoch.load(Ordering::Acquire);
                let found = self.load_key(&hex::encode(digest), now).await?;
                if self.inner.epoch.load(Ordering::Acquire) == epoch {
                    self.inner.keys.insert(digest, found.clone());
                }
                found
            }
        };
        match lookup {
            KeyLookup::Found(principal, secret_expires) => {
                if principal.expires_ms.is_some_and(|t| t <= now)
                    || secret_expires.is_some_and(|t| t <= now)
                {
                    return Err(AuthError::Expired {
                        key_id: principal.identity.key_id.clone().unwrap_or_default(),
                    });
                }
                Ok(principal)
            }
            KeyLookup::Missing => Err(AuthError::UnknownKey),
            KeyLookup::Refused(RefusedKind::Revoked(key_id)) => Err(AuthError::Revoked {
                key_id: key_id.to_string(),
            }),
            KeyLookup::Refused(RefusedKind::Disabled) => Err(AuthError::Disabled),
            KeyLookup::Refused(RefusedKind::LeftTeam(key_id, team)) => {
                Err(AuthError::TeamMembershipEnded {
                    key_id: key_id.to_string(),
                    team: team.to_string(),
                })
            }
        }
    }

    async fn load_key(&self, hash: &str, now: i64) -> Result<KeyLookup, AuthError> {
        let store = &self.inner.store;
        let Some(found) = store.key_by_secret(hash).await? else {
            return Ok(KeyLookup::Missing);
        };
        let key = found.key;
        if key.revoked_ms.is_some_and(|t| t <= now) {
            // Deleting a team revokes the keys bound to it: say why.
            if let Some(team) = &key.team_id
                && store.team(team).await?.is_none()
            {
                return Ok(KeyLookup::Refused(RefusedKind::LeftTeam(
                    Arc::from(key.id.as_str()),
                    Arc::from(team.as_str()),
                )));
            }
            return Ok(KeyLookup::Refused(RefusedKind::Revoked(Arc::from(
                key.id.as_str(),
            ))));
        }
        let mut identity = Identity {
            subject: key.id.clone(),
            method: AuthMethod::VirtualKey,
            user: key.user_id.clone(),
            team: None,
            teams: Vec::new(),
            service_account: key.service_account_id.clone(),
            key_id: Some(key.id.clone()),
            role: AccessRole::Member,
            allowed_models: parse_models(&key),
            scopes: None,
        };
        if let Some(user_id) = &key.user_id {
            let Some(user) = store
                .user(user_id)
                .await?
                .filter(|u| u.disabled_ms.is_none())
            else {
                return Ok(KeyLookup::Refused(RefusedKind::Disabled));
            };
            identity.role = AccessRole::parse(&user.role).unwrap_or_default();
            identity.teams = store.teams_of(user_id).await?;
        }
        if let Some(sa_id) = &key.service_account_id {
            let Some(sa) = store
                .service_account(sa_id)
                .await?
                .filter(|a| a.disabled_ms.is_none())
            else {
                return Ok(KeyLookup::Refused(RefusedKind::Disabled));
            };
            identity.role = AccessRole::parse(&sa.role).unwrap_or_default();
            if let Some(team) = sa.team_id {
                identity.teams.push(team);
            }
        }
        if let Some(team) = &key.team_id {
            // A key bound to a team and to a user (or service account) speaks for that team
            // only while its owner belongs to it: leaving the team takes the key's access to
            // the team's logs, provider keys and budget away. A key bound to a team alone is
            // the team's own (deleting the team revokes it).
            let owned = key.user_id.is_some() || key.service_account_id.is_some();
            if owned && !identity.teams.contains(team) {
                return Ok(KeyLookup::Refused(RefusedKind::LeftTeam(
                    Arc::from(key.id.as_str()),
                    Arc::from(team.as_str()),
                )));
            }
            if !identity.teams.contains(team) {
                identity.teams.insert(0, team.clone());
            }
            identity.team = Some(team.clone());
        } else {
            identity.team = identity.teams.first().cloned();
        }
        let rules = key_rules(&key);
        let controls = key_controls(&key);
        Ok(KeyLookup::Found(
            Arc::new(Principal {
                identity: Arc::new(identity),
                expires_ms: key.expires_ms,
                rules,
                controls,
                allow_custom_cost: key.allow_custom_cost,
            }),
            found.secret_expires_ms,
        ))
    }

    /// Resolves the claims of a verified enterprise token, provisioning the user (and their
    /// teams) on first sight and keeping their memberships and role in step with the claims.
    pub async fn resolve_external(
        &self,
        claims: &ExternalClaims,
    ) -> Result<Arc<Principal>, AuthError> {
        let digest = claims_digest(claims);
        if let Some(hit) = self.inner.externals.get(&digest) {
            return Ok(hit);
        }
        let epoch = self.inner.epoch.load(Ordering::Acquire);
        let principal = Arc::new(self.provision(claims).await?);
        if self.inner.epoch.load(Ordering::Acquire) == epoch {
            self.inner.externals.insert(digest, principal.clone());
        }
        Ok(principal)
    }

    async fn provision(&self, claims: &ExternalClaims) -> Result<Principal, AuthError> {
        let store = &self.inner.store;
        let role = role_from_claims(&claims.roles, claims.default_role);
        let mut changed = false;
        let user = match store
            .user_by_external(&claims.issuer, &claims.subject)
            .await?
        {
            Some(user) => user,
            None => {
                let id = if store.user(&claims.user).await?.is_none() && !claims.user.is_empty() {
                    claims.user.clone()
                } else {
                    format!("usr_{}", uuid::Uuid::now_v7().simple())
                };
                let email = match &claims.email {
                    Some(e) if store.user_by_email(e).await?.is_none() => Some(e.clone()),
                    _ => None,
                };
                let record = portcullis_store::tenancy::UserRecord {
                    id,
                    email,
                    name: Some(claims.user.clone()),
                    role: role.as_str().to_owned(),
                    password_hash: None,
                    issuer: Some(claims.issuer.clone()),
                    external_subject: Some(claims.subject.clone()),
                    disabled_ms: None,
                    created_ms: now_ms(),
                };
                store.create_user(&record).await?;
                changed = true;
                // Whoever won a race to create the user, read back the stored row.
                store
                    .user_by_external(&claims.issuer, &claims.subject)
                    .await?
                    .ok_or(AuthError::Disabled)?
            }
        };
        if user.disabled_ms.is_some() {
            return Err(AuthError::Disabled);
        }
        if user.role != role.as_str() {
            store
                .update_user(
                    &user.id,
                    &portcullis_store::tenancy::UserUpdate {
                        role: Some(role.as_str().to_owned()),
                        ..Default::default()
                    },
                )
                .await?;
            changed = true;
        }
        let mut wanted: Vec<String> = claims.teams.clone();
        wanted.sort();
        wanted.dedup();
        let current = store.teams_of(&user.id).await?;
        if current != wanted {
            for team in &wanted {
                if store.team(team).await?.is_none() {
                    store
                        .create_team(&portcullis_store::tenancy::TeamRecord {
                            id: team.clone(),
                            name: team.clone(),
                            metadata: None,
                            created_ms: now_ms(),
                        })
                        .await?;
                }
            }
            store.set_memberships(&user.id, &wanted).await?;
            changed = true;
        }
        if changed {
            // Other cached views may depend on what just changed (a disabled user's keys,
            // memberships); this replica sees it at once, the others at their next poll.
            self.inner.epoch.fetch_add(1, Ordering::AcqRel);
            self.inner.keys.invalidate_all();
        }
        let team = claims
            .teams
            .first()
            .cloned()
            .or_else(|| wanted.first().cloned());
        Ok(Principal {
            identity: Arc::new(Identity {
                subject: claims.subject.clone(),
                method: claims.method,
                user: Some(user.id),
                team,
                teams: wanted,
                service_account: None,
                key_id: None,
                role,
                allowed_models: None,
                scopes: None,
            }),
            expires_ms: None,
            rules: None,
            controls: None,
            allow_custom_cost: false,
        })
    }

    /// Whether the identity's user or service account has been disabled (covers tokens issued
    /// before the change, whatever their issuer).
    pub fn is_disabled(&self, who: &Identity) -> bool {
        let disabled = self.inner.disabled.read();
        who.user
            .as_ref()
            .is_some_and(|u| disabled.users.contains(u))
            || who
                .service_account
                .as_ref()
                .is_some_and(|a| disabled.service_accounts.contains(a))
    }

    /// `who` with the teams its user has left since its credential was issued taken away (a
    /// gateway OAuth access token carries the teams of its sign-in): they no longer give it
    /// their provider keys, logs or budget. `None` when nothing changed.
    pub fn current_teams(&self, who: &Identity) -> Option<Identity> {
        let user = who.user.as_deref()?;
        if who.teams.is_empty() && who.team.is_none() {
            return None;
        }
        let memberships = self.inner.memberships.read().clone();
        let now: &[String] = memberships.get(user).map_or(&[], Vec::as_slice);
        let still = |t: &String| now.contains(t);
        if who.teams.iter().all(still) && who.team.as_ref().is_none_or(still) {
            return None;
        }
        let mut updated = who.clone();
        updated.teams.retain(still);
        if !updated.team.as_ref().is_none_or(still) {
            updated.team = updated.teams.first().cloned();
        }
        Some(updated)
    }

    /// Whether any stored credential exists for `provider` (when none, the provider's
    /// configured key is used without further lookups).
    pub fn has_credentials(&self, provider: &str) -> bool {
        self.inner
            .credentials
            .read()
            .by_provider
            .contains_key(provider)
    }

    /// The provider credential for a caller: `alias` when asked for (and allowed), else the
    /// one bound to the caller's user, else to their team, else the stored default; `None`
    /// means "use the provider's configured key".
    pub fn provider_credential(
        &self,
        who: &Identity,
        provider: &str,
        alias: Option<&str>,
    ) -> Result<Option<Arc<ResolvedCredential>>, AliasError> {
        let index = self.inner.credentials.read().clone();
        let Some(list) = index.by_provider.get(provider) else {
            return match alias {
                Some(alias) => Err(AliasError::Unknown {
                    provider: provider.to_owned(),
                    alias: alias.to_owned(),
                }),
                None => Ok(None),
            };
        };
        let allowed = |owner: &Owner| match owner {
            Owner::Default => true,
            Owner::User(u) => who.user.as_deref() == Some(u.as_str()),
            Owner::Team(t) => who.teams.iter().any(|x| x == t) || who.team.as_deref() == Some(t),
        };
        if let Some(alias) = alias {
            let Some((owner, cred)) = list.iter().find(|(_, c)| c.alias == alias) else {
                return Err(AliasError::Unknown {
                    provider: provider.to_owned(),
                    alias: alias.to_owned(),
                });
            };
            return if allowed(owner) {
                Ok(Some(cred.clone()))
            } else {
                Err(AliasError::NotAllowed {
                    alias: alias.to_owned(),
                })
            };
        }
        let by_user = who.user.as_deref().and_then(|u| {
            list.iter()
                .find(|(o, _)| matches!(o, Owner::User(x) if x == u))
        });
        let by_team = || {
            who.team.iter().chain(who.teams.iter()).find_map(|t| {
                list.iter()
                    .find(|(o, _)| matches!(o, Owner::Team(x) if x == t))
            })
        };
        let default = || list.iter().find(|(o, _)| matches!(o, Owner::Default));
        Ok(by_user
            .or_else(by_team)
            .or_else(default)
            .map(|(_, c)| c.clone()))
    }
}

/// Unknown keys are remembered for a short time only; known ones until invalidated.
struct NegativeExpiry(Duration);

impl moka::Expiry<[u8; 32], KeyLookup> for NegativeExpiry {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        value: &KeyLookup,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        match value {
            KeyLookup::Missing | KeyLookup::Refused(_) => Some(self.0),
            KeyLookup::Found(..) => Some(Duration::from_secs(600)),
        }
    }
}

impl std::fmt::Debug for NegativeExpiry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NegativeExpiry({:?})", self.0)
    }
}

fn parse_models(key: &KeyRecord) -> Option<Arc<[String]>> {
    let text = key.models.as_deref()?;
    match serde_json::from_str::<Vec<String>>(text) {
        Ok(list) => Some(Arc::from(list)),
        Err(_) => {
            tracing::error!(key = %key.id, "malformed allowed-models list; the key may use no model");
            Some(Arc::from(Vec::<String>::new()))
        }
    }
}

/// The limiter rules of a key's own limits and budget.
/// The key's own controls, resolved; `None` when it has none (or they no longer parse, which
/// is logged: they were validated when the key was created).
fn key_controls(key: &KeyRecord) -> Option<ControlOverrides> {
    let text = key.controls.as_deref()?;
    match serde_json::from_str::<KeyControls>(text).map(|c| c.resolve()) {
        Ok(Ok(o)) => (!o.is_empty()).then_some(o),
        _ => {
            tracing::error!(key = %key.id, "malformed key controls; ignoring them");
            None
        }
    }
}

fn key_rules(key: &KeyRecord) -> Option<Arc<[Rule]>> {
    let text = key.limits.as_deref()?;
    let limits: KeyLimits = match serde_json::from_str(text) {
        Ok(l) => l,
        Err(_) => {
            tracing::error!(key = %key.id, "malformed key limits; ignoring them");
            return None;
        }
    };
    let id = &key.id;
    let mut rules = Vec::new();
    let minute = Duration::from_secs(60);
    if let Some(n) = limits.requests_per_minute {
        rules
            .push(Rule::requests(&format!("key.{id}.rpm"), ScopeKind::Key, n, minute).matching(id));
    }
    if let Some(n) = limits.tokens_per_minute {
        rules.push(Rule::tokens(&format!("key.{id}.tpm"), ScopeKind::Key, n, minute).matching(id));
    }
    if let Some(n) = limits.max_in_flight {
        rules
            .push(Rule::concurrency(&format!("key.{id}.inflight"), ScopeKind::Key, n).matching(id));
    }
    if let Some(budget) = &limits.budget {
        let period = budget.period.parse::<Period>().unwrap_or(Period::Monthly);
        rules.push(
            Rule::budget(
                &format!("key.{id}.budget.{}", period.as_str()),
                ScopeKind::Key,
                budget.usd,
                period,
            )
            .matching(id),
        );
    }
    (!rules.is_empty()).then(|| Arc::from(rules))
}

/// The role claims name: the highest of `admin`, `member`, `viewer` found, in any case, alone
/// or as the last part of a namespaced name (`portcullis-admin`, `Gateway.Admin`,
/// `portcullis:viewer`, `/gateway/admin`), else `default`.
pub fn role_from_claims(roles: &[String], default: AccessRole) -> AccessRole {
    roles
        .iter()
        .filter_map(|r| {
            let r = r.to_ascii_lowercase();
            let last = r.rsplit(['.', ':', '/', '-']).next().unwrap_or(&r);
            AccessRole::parse(last)
        })
        .max()
        .unwrap_or(default)
}

fn claims_digest(c: &ExternalClaims) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [&c.issuer, &c.subject, &c.user] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    h.update(c.email.as_deref().unwrap_or("").as_bytes());
    h.update([0]);
    for t in &c.teams {
        h.update(t.as_bytes());
        h.update([1]);
    }
    h.update([0]);
    for r in &c.roles {
        h.update(r.as_bytes());
        h.update([1]);
    }
    h.update([c.default_role as u8, c.method as u8]);
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_from_claims() {
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            role_from_claims(&s(&[]), AccessRole::Member),
            AccessRole::Member
        );
        assert_eq!(
            role_from_claims(&s(&["Admin"]), AccessRole::Viewer),
            AccessRole::Admin
        );
        assert_eq!(
            role_from_claims(
                &s(&["portcullis-viewer", "offline_access"]),
                AccessRole::Member
            ),
            AccessRole::Viewer
        );
        assert_eq!(
            role_from_claims(&s(&["viewer", "portcullis:admin"]), AccessRole::Member),
            AccessRole::Admin
        );
        assert_eq!(
            role_from_claims(&s(&["Gateway.User", "Gateway.Admin"]), AccessRole::Member),
            AccessRole::Admin
        );
        assert_eq!(
            role_from_claims(
                &s(&["gateway-user", "uma_authorization"]),
                AccessRole::Viewer
            ),
            AccessRole::Viewer
        );
    }
}
