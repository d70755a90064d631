//! [`Directory`]: the hot-path view of tenancy — presented virtual keys and enterprise
//! claims resolved to [`Principal`]s, and provider credentials resolved per identity — held
//! whole in memory and kept current across replicas.
//!
//! Every stored key secret, user, service account, membership, team and provider credential
//! is loaded into a [`Snapshot`] before the gateway accepts a request, so resolving a key —
//! known, unknown, revoked or expired — costs a SHA-256 and a map read, never a query. Every
//! change to tenancy bumps a version counter in the database; each replica polls it (every
//! second by default) and, when it moved, loads a new snapshot in the background and swaps it
//! in at once: requests keep reading the previous one meanwhile, so a change (or a database
//! that is slow or unreachable) never makes them wait. A revoked key or disabled user stops
//! working everywhere within one poll interval (plus the reload), and at once on the replica
//! that made the change, which reloads before answering the change. The poll interval may
//! change while the directory runs ([`Directory::set_poll_interval`]).
//!
//! What does wait for the database is bounded: the first request of an enterprise user the
//! snapshot does not know yet (or whose role or teams in the token changed) provisions them,
//! under a timeout ([`DirectoryOptions::provision_timeout`]), and concurrent requests with the
//! same claims share one provisioning.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use portcullis_core::{AccessRole, AuthMethod, Identity};
use portcullis_limits::{Period, Rule, ScopeKind};
use portcullis_policy::ToolGlobs;
use portcullis_providers::Secret;
use portcullis_store::tenancy::{
    CredentialOwner, KeyRecord, LimitsOwner, ServiceAccountRecord, TeamRecord, UserRecord,
};
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
    /// Enterprise identities remembered between snapshots.
    pub cache_capacity: u64,
    /// How long a request may wait for the first-sight provisioning of an enterprise user
    /// (or for bringing their stored role and teams in line with their token) before it is
    /// refused with 503.
    pub provision_timeout: Duration,
}

impl Default for DirectoryOptions {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(1),
            cache_capacity: 100_000,
            provision_timeout: Duration::from_secs(3),
        }
    }
}

/// Counters of the directory's work with the database, for metrics and measurements.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirectoryStats {
    /// Snapshots loaded and swapped in (the first one included).
    pub reloads: u64,
    /// Reloads that failed (the previous snapshot stayed in use).
    pub reload_failures: u64,
    /// How long the last successful reload took, in microseconds.
    pub last_reload_us: u64,
    /// Key secrets in the current snapshot.
    pub key_secrets: u64,
    /// The tenancy version of the current snapshot.
    pub version: i64,
    /// Requests that waited for enterprise-user provisioning.
    pub provisions: u64,
    /// Provisionings that ran out of time.
    pub provision_timeouts: u64,
    /// Total time requests spent provisioning, in microseconds.
    pub provision_us: u64,
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
    /// The key's own tool-call deny-list, compiled: case-sensitive shell globs over the tool
    /// name (validated when the key was created). A call matching these or the route's list
    /// is withheld (`portcullis_policy::DeniedTools::union`). `None` when the key denies
    /// nothing of its own.
    pub tools_denied: Option<Arc<ToolGlobs>>,
    /// The key's MCP tool allow-list, compiled: case-sensitive shell globs over
    /// `<server>__<tool>` (validated when the key was created). On an MCP endpoint a tool is
    /// visible and callable only when one of them matches. `None` allows every tool (keys
    /// without a list, and callers that are not keys); an empty list allows none.
    pub tools: Option<Arc<ToolGlobs>>,
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
    /// The database did not answer in time for what had to wait for it (provisioning an
    /// enterprise user on first sight).
    #[error("identity store did not answer within {0:?}")]
    Timeout(Duration),
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
    /// Revoked, or bound to a disabled identity or to a team its owner left.
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

/// Disabled users and service accounts, by id.
#[derive(Debug, Default)]
struct DisabledSet {
    users: HashSet<String>,
    service_accounts: HashSet<String>,
}

/// Everything the hot path reads, loaded at one tenancy version and never changed after: a
/// change builds a new snapshot and swaps it in.
#[derive(Debug, Default)]
struct Snapshot {
    /// The tenancy version read before loading (later changes move it again).
    version: i64,
    /// Every stored secret's digest → what presenting it means.
    keys: HashMap<[u8; 32], KeyLookup>,
    /// Users by id.
    users: HashMap<String, UserRecord>,
    /// Users provisioned from an issuer: `(issuer, subject)` → user id.
    externals: HashMap<(String, String), String>,
    /// Disabled users and service accounts, checked on every request whatever the credential.
    disabled: DisabledSet,
    /// Each user's teams, sorted.
    memberships: HashMap<String, Vec<String>>,
    /// Stored provider credentials, opened.
    credentials: CredentialIndex,
    /// MCP access rules added at run time (`crate::mcp_access`).
    mcp_access: portcullis_policy::AccessRules,
    /// Users' and teams' MCP server credentials, opened (`crate::mcp_credentials`).
    mcp_credentials: crate::mcp_credentials::McpCredentialIndex,
    /// Teams' own limits and budgets (`owner_limits`), with their limiter rules, by team id.
    team_limits: HashMap<String, OwnerLimits>,
    /// Users' own limits and budgets, by user id.
    user_limits: HashMap<String, OwnerLimits>,
}

/// A team's or user's own limits, as stored and as limiter rules.
#[derive(Debug, Clone)]
struct OwnerLimits {
    limits: KeyLimits,
    rules: Vec<Rule>,
}

/// The directory. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Directory {
    inner: Arc<Inner>,
}

/// Stripes of the single-flight lock of enterprise-user provisioning.
const PROVISION_STRIPES: usize = 64;

#[derive(Debug)]
struct Inner {
    store: Arc<dyn TenancyStore>,
    vault: Option<Vault>,
    snapshot: RwLock<Arc<Snapshot>>,
    /// Enterprise claims resolved since the current snapshot was swapped in (emptied on swap).
    externals: moka::sync::Cache<[u8; 32], Arc<Principal>>,
    /// One reload at a time, so a later reload never swaps in an older view.
    reloading: tokio::sync::Mutex<()>,
    /// Requests with the same claims provision one at a time; the later ones find the result.
    provisioning: Box<[tokio::sync::Mutex<()>]>,
    /// Bumped on every swap; a resolution that started under another epoch is not cached.
    epoch: AtomicI64,
    options: DirectoryOptions,
    /// The poll interval in force, in microseconds (it starts as the options').
    poll_interval_us: AtomicU64,
    /// Wakes the watcher when the poll interval changes.
    poll_changed: tokio::sync::Notify,
    /// The version of each snapshot swapped in, for those following tenancy changes.
    versions: tokio::sync::watch::Sender<i64>,
    reloads: AtomicU64,
    reload_failures: AtomicU64,
    last_reload_us: AtomicU64,
    provisions: AtomicU64,
    provision_timeouts: AtomicU64,
    provision_us: AtomicU64,
}

impl Directory {
    /// A directory over `store`; `vault` opens stored provider credentials (none are used
    /// without it). Loads the whole snapshot: every key resolves from memory from then on.
    pub async fn new(
        store: Arc<dyn TenancyStore>,
        vault: Option<Vault>,
        options: DirectoryOptions,
    ) -> Result<Directory, StoreError> {
        let directory = Directory {
            inner: Arc::new(Inner {
                store,
                vault,
                snapshot: RwLock::new(Arc::new(Snapshot::default())),
                externals: moka::sync::Cache::builder()
                    .max_capacity(options.cache_capacity)
                    .time_to_live(Duration::from_secs(300))
                    .build(),
                reloading: tokio::sync::Mutex::new(()),
                provisioning: (0..PROVISION_STRIPES)
                    .map(|_| tokio::sync::Mutex::new(()))
                    .collect(),
                epoch: AtomicI64::new(0),
                options,
                poll_interval_us: AtomicU64::new(micros(options.poll_interval)),
                poll_changed: tokio::sync::Notify::new(),
                versions: tokio::sync::watch::Sender::new(0),
                reloads: AtomicU64::new(0),
                reload_failures: AtomicU64::new(0),
                last_reload_us: AtomicU64::new(0),
                provisions: AtomicU64::new(0),
                provision_timeouts: AtomicU64::new(0),
                provision_us: AtomicU64::new(0),
            }),
        };
        directory.reload().await?;
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

    /// What the directory has done with the database so far.
    pub fn stats(&self) -> DirectoryStats {
        let inner = &self.inner;
        let snapshot = self.snapshot();
        DirectoryStats {
            reloads: inner.reloads.load(Ordering::Relaxed),
            reload_failures: inner.reload_failures.load(Ordering::Relaxed),
            last_reload_us: inner.last_reload_us.load(Ordering::Relaxed),
            key_secrets: snapshot.keys.len() as u64,
            version: snapshot.version,
            provisions: inner.provisions.load(Ordering::Relaxed),
            provision_timeouts: inner.provision_timeouts.load(Ordering::Relaxed),
            provision_us: inner.provision_us.load(Ordering::Relaxed),
        }
    }

    /// The tenancy version of each snapshot the directory swaps in, on this replica: what
    /// else follows tenancy (the MCP servers added through the admin API) reloads when it
    /// changes, after the directory's own poll noticed.
    pub fn versions(&self) -> tokio::sync::watch::Receiver<i64> {
        self.inner.versions.subscribe()
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.inner.snapshot.read().clone()
    }

    /// Polls the tenancy version until the gateway is gone, loading a new snapshot whenever
    /// it moves. A poll or a reload that fails (or hangs) leaves the current snapshot in use
    /// and is tried again at the next tick.
    pub fn spawn_watcher(&self) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(this.poll_interval());
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = this.inner.poll_changed.notified() => {
                        // A new interval counts from now.
                        let period = this.poll_interval();
                        tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
                        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                        continue;
                    }
                }
                if Arc::strong_count(&this.inner) == 1 {
                    return; // The gateway is gone.
                }
                if let Err(e) = this.refresh().await {
                    tracing::warn!(error = %e, "cannot refresh the tenancy directory");
                }
            }
        })
    }

    /// How often the tenancy version is polled now.
    pub fn poll_interval(&self) -> Duration {
        Duration::from_micros(self.inner.poll_interval_us.load(Ordering::Relaxed))
    }

    /// Polls every `interval`, counted from now.
    pub fn set_poll_interval(&self, interval: Duration) {
        self.inner
            .poll_interval_us
            .store(micros(interval), Ordering::Relaxed);
        self.inner.poll_changed.notify_one();
    }

    /// Checks the tenancy version once; loads and swaps in a new snapshot when it moved.
    pub async fn refresh(&self) -> Result<(), StoreError> {
        let version = self.inner.store.version().await?;
        if version != self.snapshot().version {
            self.reload().await?;
        }
        Ok(())
    }

    /// Loads a new snapshot and swaps it in (called after a local change, so that this
    /// replica sees it before the change is answered).
    pub async fn invalidate(&self) -> Result<(), StoreError> {
        self.reload().await
    }

    async fn reload(&self) -> Result<(), StoreError> {
        let inner = &self.inner;
        let _one_at_a_time = inner.reloading.lock().await;
        let started = Instant::now();
        let snapshot = match Snapshot::load(inner.store.as_ref(), inner.vault.as_ref()).await {
            Ok(s) => s,
            Err(e) => {
                inner.reload_failures.fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
        };
        let version = snapshot.version;
        *inner.snapshot.write() = Arc::new(snapshot);
        inner.epoch.fetch_add(1, Ordering::AcqRel);
        inner.versions.send_replace(version);
        inner.externals.invalidate_all();
        inner.reloads.fetch_add(1, Ordering::Relaxed);
        inner.last_reload_us.store(
            u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        Ok(())
    }

    /// Starts a reload in the background (after provisioning changed tenancy on the request
    /// path, which must not wait for it).
    fn reload_soon(&self) {
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(e) = this.reload().await {
                tracing::warn!(error = %e, "cannot refresh the tenancy directory");
            }
        });
    }

    /// Resolves a presented virtual key, from memory.
    pub async fn authenticate_key(&self, presented: &str) -> Result<Arc<Principal>, AuthError> {
        self.resolve_key(presented)
    }

    fn resolve_key(&self, presented: &str) -> Result<Arc<Principal>, AuthError> {
        let digest = keys::digest(presented);
        let now = now_ms();
        let snapshot = self.snapshot();
        match snapshot.keys.get(&digest) {
            Some(KeyLookup::Found(principal, secret_expires)) => {
                if principal.expires_ms.is_some_and(|t| t <= now)
                    || secret_expires.is_some_and(|t| t <= now)
                {
                    return Err(AuthError::Expired {
                        key_id: principal.identity.key_id.clone().unwrap_or_default(),
                    });
                }
                Ok(principal.clone())
            }
            None => Err(AuthError::UnknownKey),
            Some(KeyLookup::Refused(RefusedKind::Revoked(key_id))) => Err(AuthError::Revoked {
                key_id: key_id.to_string(),
            }),
            Some(KeyLookup::Refused(RefusedKind::Disabled)) => Err(AuthError::Disabled),
            Some(KeyLookup::Refused(RefusedKind::LeftTeam(key_id, team))) => {
                Err(AuthError::TeamMembershipEnded {
                    key_id: key_id.to_string(),
                    team: team.to_string(),
                })
            }
        }
    }

    /// Resolves the claims of a verified enterprise token. A user the snapshot knows, whose
    /// stored role and teams match the claims, resolves from memory; otherwise the user (and
    /// their teams) is provisioned, or brought in line with the claims, in the database —
    /// within [`DirectoryOptions::provision_timeout`], one request per claims at a time.
    pub async fn resolve_external(
        &self,
        claims: &ExternalClaims,
    ) -> Result<Arc<Principal>, AuthError> {
        let digest = claims_digest(claims);
        if let Some(hit) = self.inner.externals.get(&digest) {
            return Ok(hit);
        }
        let epoch = self.inner.epoch.load(Ordering::Acquire);
        if let Some(principal) = self.known_external(claims)? {
            let principal = Arc::new(principal);
            if self.inner.epoch.load(Ordering::Acquire) == epoch {
                self.inner.externals.insert(digest, principal.clone());
            }
            return Ok(principal);
        }
        let inner = &self.inner;
        let limit = inner.options.provision_timeout;
        let started = Instant::now();
        inner.provisions.fetch_add(1, Ordering::Relaxed);
        let stripe = usize::from(digest[0]) % PROVISION_STRIPES;
        let outcome = tokio::time::timeout(limit, async {
            let _single_flight = inner.provisioning[stripe].lock().await;
            if let Some(hit) = inner.externals.get(&digest) {
                return Ok(hit);
            }
            let epoch = inner.epoch.load(Ordering::Acquire);
            let (principal, changed) = self.provision(claims).await?;
            let principal = Arc::new(principal);
            if inner.epoch.load(Ordering::Acquire) == epoch {
                inner.externals.insert(digest, principal.clone());
            }
            if changed {
                // Other views may depend on what just changed (memberships of the user's
                // keys): this replica loads them at once, without making the request wait;
                // the others at their next poll.
                self.reload_soon();
            }
            Ok(principal)
        })
        .await;
        inner.provision_us.fetch_add(
            u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        match outcome {
            Ok(result) => result,
            Err(_) => {
                inner.provision_timeouts.fetch_add(1, Ordering::Relaxed);
                Err(AuthError::Timeout(limit))
            }
        }
    }

    /// The principal of claims whose user the snapshot holds with the same role and teams;
    /// `None` when the database must be asked (or changed).
    fn known_external(&self, claims: &ExternalClaims) -> Result<Option<Principal>, AuthError> {
        let snapshot = self.snapshot();
        let Some(user) = snapshot
            .externals
            .get(&(claims.issuer.clone(), claims.subject.clone()))
            .and_then(|id| snapshot.users.get(id))
        else {
            return Ok(None);
        };
        if user.disabled_ms.is_some() {
            return Err(AuthError::Disabled);
        }
        let role = role_from_claims(&claims.roles, claims.default_role);
        if user.role != role.as_str() {
            return Ok(None);
        }
        let wanted = wanted_teams(claims);
        let current = snapshot
            .memberships
            .get(&user.id)
            .map_or(&[][..], Vec::as_slice);
        if current != wanted.as_slice() {
            return Ok(None);
        }
        let rules = snapshot.owner_rules(Some(&user.id), &wanted, None);
        Ok(Some(external_principal(
            claims,
            user.id.clone(),
            role,
            wanted,
            rules,
        )))
    }

    /// Provisions the user of `claims` and brings their role and teams in line with the
    /// claims; says whether anything was changed.
    async fn provision(&self, claims: &ExternalClaims) -> Result<(Principal, bool), AuthError> {
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
                let record = UserRecord {
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
        let wanted = wanted_teams(claims);
        let current = store.teams_of(&user.id).await?;
        if current != wanted {
            for team in &wanted {
                if store.team(team).await?.is_none() {
                    store
                        .create_team(&TeamRecord {
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
        let rules = self.snapshot().owner_rules(Some(&user.id), &wanted, None);
        Ok((
            external_principal(claims, user.id, role, wanted, rules),
            changed,
        ))
    }

    /// Whether the identity's user or service account has been disabled (covers tokens issued
    /// before the change, whatever their issuer).
    pub fn is_disabled(&self, who: &Identity) -> bool {
        let snapshot = self.snapshot();
        let disabled = &snapshot.disabled;
        who.user
            .as_ref()
            .is_some_and(|u| disabled.users.contains(u))
            || who
                .service_account
                .as_ref()
                .is_some_and(|a| disabled.service_accounts.contains(a))
    }

    /// The limiter rules stored for `who`'s user and teams (`None` when there are none), for a
    /// caller whose principal is not built from this directory's snapshot (the gateway's own
    /// OAuth access tokens).
    pub fn owner_rules_of(&self, who: &Identity) -> Option<Arc<[Rule]>> {
        self.snapshot()
            .owner_rules(who.user.as_deref(), &who.teams, None)
    }

    /// The limits and budget stored for a whole team or user, if any.
    pub fn owner_limits(&self, owner: LimitsOwner, id: &str) -> Option<KeyLimits> {
        let snapshot = self.snapshot();
        let map = match owner {
            LimitsOwner::Team => &snapshot.team_limits,
            LimitsOwner::User => &snapshot.user_limits,
        };
        map.get(id).map(|o| o.limits.clone())
    }

    /// `who` with the teams its user has left since its credential was issued taken away (a
    /// gateway OAuth access token carries the teams of its sign-in): they no longer give it
    /// their provider keys, logs or budget. `None` when nothing changed.
    pub fn current_teams(&self, who: &Identity) -> Option<Identity> {
        let user = who.user.as_deref()?;
        if who.teams.is_empty() && who.team.is_none() {
            return None;
        }
        let snapshot = self.snapshot();
        let now: &[String] = snapshot.memberships.get(user).map_or(&[], Vec::as_slice);
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

    /// The credential `who` uses for the MCP server `server`: their own, else their team's;
    /// `None`: the server's configured headers or environment alone.
    pub fn mcp_credential(
        &self,
        who: &Identity,
        server: &str,
    ) -> Option<Arc<crate::mcp_credentials::McpCredentialSet>> {
        self.inner
            .snapshot
            .read()
            .mcp_credentials
            .resolve(who, server)
    }

    /// The MCP access rules added at run time, as of the current snapshot.
    pub fn mcp_access(&self) -> portcullis_policy::AccessRules {
        self.inner.snapshot.read().mcp_access.clone()
    }

    /// Whether any stored credential exists for `provider` (when none, the provider's
    /// configured key is used without further lookups).
    pub fn has_credentials(&self, provider: &str) -> bool {
        self.inner
            .snapshot
            .read()
            .credentials
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
        let snapshot = self.snapshot();
        let Some(list) = snapshot.credentials.by_provider.get(provider) else {
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

/// The teams claims name, sorted and without repeats (what memberships are kept equal to).
fn wanted_teams(claims: &ExternalClaims) -> Vec<String> {
    let mut wanted = claims.teams.clone();
    wanted.sort();
    wanted.dedup();
    wanted
}

/// The principal of an enterprise user whose stored role and teams match `claims`.
fn external_principal(
    claims: &ExternalClaims,
    user: String,
    role: AccessRole,
    teams: Vec<String>,
    rules: Option<Arc<[Rule]>>,
) -> Principal {
    let team = claims
        .teams
        .first()
        .cloned()
        .or_else(|| teams.first().cloned());
    Principal {
        identity: Arc::new(Identity {
            subject: claims.subject.clone(),
            method: claims.method,
            user: Some(user),
            team,
            teams,
            service_account: None,
            key_id: None,
            role,
            allowed_models: None,
            scopes: None,
        }),
        expires_ms: None,
        rules,
        controls: None,
        allow_custom_cost: false,
        tools_denied: None,
        tools: None,
    }
}

impl Snapshot {
    /// The limiter rules a caller carries: `own` (a key's) and those stored for its user and
    /// for each of its teams — each matches only its own user or team, so whichever team a
    /// request is accounted to, that team's rules are the ones that bind it. `None` when there
    /// are none.
    fn owner_rules(
        &self,
        user: Option<&str>,
        teams: &[String],
        own: Option<Vec<Rule>>,
    ) -> Option<Arc<[Rule]>> {
        if self.team_limits.is_empty() && self.user_limits.is_empty() {
            return own.map(Arc::from);
        }
        let mut rules = own.unwrap_or_default();
        let stored = user
            .and_then(|u| self.user_limits.get(u))
            .into_iter()
            .chain(teams.iter().filter_map(|t| self.team_limits.get(t)));
        for o in stored {
            rules.extend(o.rules.iter().cloned());
        }
        (!rules.is_empty()).then(|| Arc::from(rules))
    }

    /// Reads every table the hot path needs. The version is read first: a change made while
    /// the tables are read moves it again, so the next poll loads once more.
    async fn load(store: &dyn TenancyStore, vault: Option<&Vault>) -> Result<Snapshot, StoreError> {
        let version = store.version().await?;
        let users = store.users().await?;
        let accounts = store.service_accounts().await?;
        let pairs = store.memberships().await?;
        let teams = store.teams().await?;
        let secrets = store.key_secrets().await?;
        let owner_limits = store.owner_limits().await?;
        let mcp_access = store.mcp_access().await?;
        let mcp_credentials =
            crate::mcp_credentials::McpCredentialIndex::load(store, vault).await?;
        let credentials = match vault {
            Some(_) => store.credentials().await?,
            None => Vec::new(),
        };
        let mut snapshot = Snapshot {
            version,
            mcp_access: portcullis_policy::AccessRules::new(
                mcp_access
                    .iter()
                    .filter_map(crate::mcp_access::compile)
                    .collect(),
            ),
            mcp_credentials,
            ..Snapshot::default()
        };
        for (team, user) in pairs {
            snapshot.memberships.entry(user).or_default().push(team);
        }
        for teams in snapshot.memberships.values_mut() {
            teams.sort();
        }
        let accounts: HashMap<String, ServiceAccountRecord> = accounts
            .into_iter()
            .map(|a| {
                if a.disabled_ms.is_some() {
                    snapshot.disabled.service_accounts.insert(a.id.clone());
                }
                (a.id.clone(), a)
            })
            .collect();
        for u in users {
            if u.disabled_ms.is_some() {
                snapshot.disabled.users.insert(u.id.clone());
            }
            if let (Some(issuer), Some(subject)) = (&u.issuer, &u.external_subject) {
                snapshot
                    .externals
                    .insert((issuer.clone(), subject.clone()), u.id.clone());
            }
            snapshot.users.insert(u.id.clone(), u);
        }
        for record in owner_limits {
            let Ok(limits) = serde_json::from_str::<KeyLimits>(&record.limits) else {
                tracing::error!(owner = %record.owner_id, "malformed stored limits; ignoring them");
                continue;
            };
            let (scope, prefix, map) = match record.owner {
                LimitsOwner::Team => (ScopeKind::Team, "team", &mut snapshot.team_limits),
                LimitsOwner::User => (ScopeKind::User, "user", &mut snapshot.user_limits),
            };
            let rules = limit_rules(prefix, scope, &record.owner_id, &limits);
            map.insert(record.owner_id, OwnerLimits { limits, rules });
        }
        let teams: HashSet<String> = teams.into_iter().map(|t: TeamRecord| t.id).collect();
        let now = now_ms();
        // A key's view is shared by its secrets (several during a rotation's grace period).
        let mut views: HashMap<String, KeyLookup> = HashMap::new();
        for secret in secrets {
            let Some(digest) = hex::decode(&secret.hash)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
            else {
                tracing::error!(key = %secret.found.key.id, "a stored key digest is malformed; skipping it");
                continue;
            };
            let key = &secret.found.key;
            let lookup = match views.get(&key.id) {
                Some(view) => view.clone(),
                None => {
                    let view = snapshot.key_view(key, &accounts, &teams, now);
                    views.insert(key.id.clone(), view.clone());
                    view
                }
            };
            let lookup = match lookup {
                KeyLookup::Found(principal, _) => {
                    KeyLookup::Found(principal, secret.found.secret_expires_ms)
                }
                refused => refused,
            };
            snapshot.keys.insert(digest, lookup);
        }
        if let Some(vault) = vault {
            for c in credentials {
                let Ok(secret) = vault.open(&c.id, &c.sealed) else {
                    tracing::error!(credential = %c.id, "a stored provider key cannot be opened with PORTCULLIS_SECRET_KEY; skipping it");
                    continue;
                };
                let owner = match CredentialOwner::parse(&c.owner_kind) {
                    Some(CredentialOwner::User) => Owner::User(c.owner_id),
                    Some(CredentialOwner::Team) => Owner::Team(c.owner_id),
                    Some(CredentialOwner::Default) | None => Owner::Default,
                };
                snapshot
                    .credentials
                    .by_provider
                    .entry(c.provider)
                    .or_default()
                    .push((
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
        Ok(snapshot)
    }

    /// What presenting one of `key`'s secrets means, given the users, memberships, service
    /// accounts and teams of this snapshot.
    fn key_view(
        &self,
        key: &KeyRecord,
        accounts: &HashMap<String, ServiceAccountRecord>,
        teams: &HashSet<String>,
        now: i64,
    ) -> KeyLookup {
        let key_id = || Arc::<str>::from(key.id.as_str());
        if key.revoked_ms.is_some_and(|t| t <= now) {
            // Deleting a team revokes the keys bound to it: say why.
            if let Some(team) = &key.team_id
                && !teams.contains(team)
            {
                return KeyLookup::Refused(RefusedKind::LeftTeam(
                    key_id(),
                    Arc::from(team.as_str()),
                ));
            }
            return KeyLookup::Refused(RefusedKind::Revoked(key_id()));
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
            allowed_models: parse_models(key),
            scopes: None,
        };
        if let Some(user_id) = &key.user_id {
            let Some(user) = self.users.get(user_id).filter(|u| u.disabled_ms.is_none()) else {
                return KeyLookup::Refused(RefusedKind::Disabled);
            };
            identity.role = AccessRole::parse(&user.role).unwrap_or_default();
            identity.teams = self.memberships.get(user_id).cloned().unwrap_or_default();
        }
        if let Some(sa_id) = &key.service_account_id {
            let Some(sa) = accounts.get(sa_id).filter(|a| a.disabled_ms.is_none()) else {
                return KeyLookup::Refused(RefusedKind::Disabled);
            };
            identity.role = AccessRole::parse(&sa.role).unwrap_or_default();
            if let Some(team) = &sa.team_id {
                identity.teams.push(team.clone());
            }
        }
        if let Some(team) = &key.team_id {
            // A key bound to a team and to a user (or service account) speaks for that team
            // only while its owner belongs to it: leaving the team takes the key's access to
            // the team's logs, provider keys and budget away. A key bound to a team alone is
            // the team's own (deleting the team revokes it).
            let owned = key.user_id.is_some() || key.service_account_id.is_some();
            if owned && !identity.teams.contains(team) {
                return KeyLookup::Refused(RefusedKind::LeftTeam(
                    key_id(),
                    Arc::from(team.as_str()),
                ));
            }
            if !identity.teams.contains(team) {
                identity.teams.insert(0, team.clone());
            }
            identity.team = Some(team.clone());
        } else {
            identity.team = identity.teams.first().cloned();
        }
        let rules = self.owner_rules(identity.user.as_deref(), &identity.teams, key_rules(key));
        KeyLookup::Found(
            Arc::new(Principal {
                identity: Arc::new(identity),
                expires_ms: key.expires_ms,
                rules,
                controls: key_controls(key),
                allow_custom_cost: key.allow_custom_cost,
                tools_denied: parse_tools_denied(key),
                tools: parse_tools(key),
            }),
            None,
        )
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

/// The key's own tool-call deny-list, compiled; `None` when it has none (or it no longer
/// compiles, which is logged: it was validated when the key was created).
fn parse_tools_denied(key: &KeyRecord) -> Option<Arc<ToolGlobs>> {
    let text = key.tools_denied.as_deref()?;
    let compiled = serde_json::from_str::<Vec<String>>(text)
        .ok()
        .and_then(|list| ToolGlobs::new(&list).ok());
    match compiled {
        Some(globs) => (!globs.is_empty()).then(|| Arc::new(globs)),
        None => {
            tracing::error!(key = %key.id, "malformed tool deny-list; ignoring it");
            None
        }
    }
}

/// The key's MCP tool allow-list, compiled; `None` when it has none. A list that no longer
/// compiles (it was validated when the key was created) is logged and allows no tool: an
/// allow-list fails closed, as the allowed-models list does.
fn parse_tools(key: &KeyRecord) -> Option<Arc<ToolGlobs>> {
    let text = key.tools.as_deref()?;
    let compiled = serde_json::from_str::<Vec<String>>(text)
        .ok()
        .and_then(|list| ToolGlobs::new(&list).ok());
    Some(Arc::new(compiled.unwrap_or_else(|| {
        tracing::error!(key = %key.id, "malformed tool allow-list; the key may use no tool");
        ToolGlobs::empty()
    })))
}

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

/// The limiter rules of a key's own limits and budget.
fn key_rules(key: &KeyRecord) -> Option<Vec<Rule>> {
    let text = key.limits.as_deref()?;
    let limits: KeyLimits = match serde_json::from_str(text) {
        Ok(l) => l,
        Err(_) => {
            tracing::error!(key = %key.id, "malformed key limits; ignoring them");
            return None;
        }
    };
    let rules = limit_rules("key", ScopeKind::Key, &key.id, &limits);
    (!rules.is_empty()).then_some(rules)
}

/// The limiter rules of the limits and budget of one key, team or user (`scope` and `id`),
/// named `<prefix>.<id>.rpm` and so on: each matches that one value of its scope.
fn limit_rules(prefix: &str, scope: ScopeKind, id: &str, limits: &KeyLimits) -> Vec<Rule> {
    let mut rules = Vec::new();
    let minute = Duration::from_secs(60);
    if let Some(n) = limits.requests_per_minute {
        rules.push(Rule::requests(&format!("{prefix}.{id}.rpm"), scope, n, minute).matching(id));
    }
    if let Some(n) = limits.tokens_per_minute {
        rules.push(Rule::tokens(&format!("{prefix}.{id}.tpm"), scope, n, minute).matching(id));
    }
    if let Some(n) = limits.max_in_flight {
        rules.push(Rule::concurrency(&format!("{prefix}.{id}.inflight"), scope, n).matching(id));
    }
    if let Some(budget) = &limits.budget {
        let period = budget.period.parse::<Period>().unwrap_or(Period::Monthly);
        rules.push(
            Rule::budget(
                &format!("{prefix}.{id}.budget.{}", period.as_str()),
                scope,
                budget.usd,
                period,
            )
            .matching(id),
        );
    }
    rules
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

/// A poll interval in whole microseconds: at least one (a zero period would spin) and at most
/// a year (so that a deadline computed from it stays representable).
fn micros(d: Duration) -> u64 {
    const YEAR_US: u64 = 365 * 24 * 3600 * 1_000_000;
    u64::try_from(d.as_micros())
        .unwrap_or(u64::MAX)
        .clamp(1, YEAR_US)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manage::{ManageError, NewKey};

    /// A directory over a fresh SQLite database, and the store (to close it).
    async fn sqlite_directory(
        dir: &tempfile::TempDir,
    ) -> (Directory, Arc<portcullis_store::SqliteStore>) {
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = portcullis_store::SqliteStore::connect(&url, 4)
            .await
            .unwrap();
        let tenancy: Arc<dyn TenancyStore> = store.clone();
        let directory = Directory::new(tenancy, None, DirectoryOptions::default())
            .await
            .unwrap();
        (directory, store)
    }

    #[tokio::test]
    async fn a_shorter_poll_interval_applies_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, _store) = sqlite_directory(&dir).await;
        // Another replica over the same database, polling hourly.
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = portcullis_store::SqliteStore::connect(&url, 4)
            .await
            .unwrap();
        let replica = Directory::new(
            store.clone(),
            None,
            DirectoryOptions {
                poll_interval: Duration::from_secs(3600),
                ..DirectoryOptions::default()
            },
        )
        .await
        .unwrap();
        let watcher = replica.spawn_watcher();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let issued = writer.create_key(key("late", None)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            replica
                .authenticate_key(issued.secret.expose())
                .await
                .is_err(),
            "not seen before the next hourly poll"
        );
        replica.set_poll_interval(Duration::from_millis(20));
        assert_eq!(replica.poll_interval(), Duration::from_millis(20));
        let started = Instant::now();
        while replica
            .authenticate_key(issued.secret.expose())
            .await
            .is_err()
        {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "seen at the new interval"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        watcher.abort();
    }

    fn key(name: &str, tools_denied: Option<&[&str]>) -> NewKey {
        NewKey {
            name: name.to_owned(),
            tools_denied: tools_denied.map(|t| t.iter().map(|s| (*s).to_owned()).collect()),
            ..NewKey::default()
        }
    }

    #[tokio::test]
    async fn a_keys_tools_denied_travels_with_its_principal() {
        let dir = tempfile::tempdir().unwrap();
        let (directory, _store) = sqlite_directory(&dir).await;
        let denying = directory
            .create_key(key("agent", Some(&["delete_*", "send_{mail,money}"])))
            .await
            .unwrap();
        let plain = directory.create_key(key("plain", None)).await.unwrap();
        let empty = directory.create_key(key("empty", Some(&[]))).await.unwrap();
        let principal = directory
            .authenticate_key(denying.secret.expose())
            .await
            .unwrap();
        let globs = principal.tools_denied.as_deref().unwrap();
        assert_eq!(globs.patterns(), ["delete_*", "send_{mail,money}"]);
        assert!(globs.matches("delete_file") && globs.matches("send_money"));
        assert!(!globs.matches("read_file") && !globs.matches("Delete_file"));
        for issued in [plain, empty] {
            let principal = directory
                .authenticate_key(issued.secret.expose())
                .await
                .unwrap();
            assert_eq!(principal.tools_denied, None, "{}", issued.record.name);
        }
        for (globs, wanted) in [
            (&["ok", ""][..], "`tools_denied[1]` must not be empty"),
            (
                &["", "x{"][..],
                "`tools_denied[0]` must not be empty; `tools_denied[1]` is not a valid glob (`x{`): unclosed alternate group; missing '}' (maybe escape '{' with '[{]'?)",
            ),
            (
                &["a[b"][..],
                "`tools_denied[0]` is not a valid glob (`a[b`): unclosed character class; missing ']'",
            ),
        ] {
            match directory.create_key(key("bad", Some(globs))).await {
                Err(ManageError::Invalid(message)) => assert_eq!(message, wanted),
                other => panic!("{globs:?}: {other:?}"),
            }
        }
    }

    fn allowing(name: &str, tools: Option<&[&str]>) -> NewKey {
        NewKey {
            name: name.to_owned(),
            tools: tools.map(|t| t.iter().map(|s| (*s).to_owned()).collect()),
            ..NewKey::default()
        }
    }

    #[tokio::test]
    async fn a_keys_tool_allow_list_travels_with_its_principal() {
        let dir = tempfile::tempdir().unwrap();
        let (directory, store) = sqlite_directory(&dir).await;
        let allowing_some = directory
            .create_key(allowing(
                "agent",
                Some(&["github__*", "fs__read_{file,dir}"]),
            ))
            .await
            .unwrap();
        assert_eq!(
            allowing_some.record.tools.as_deref(),
            Some(r#"["github__*","fs__read_{file,dir}"]"#)
        );
        let principal = directory
            .authenticate_key(allowing_some.secret.expose())
            .await
            .unwrap();
        let globs = principal.tools.as_deref().unwrap();
        assert_eq!(globs.patterns(), ["github__*", "fs__read_{file,dir}"]);
        assert!(globs.matches("github__create_issue") && globs.matches("fs__read_dir"));
        assert!(!globs.matches("fs__write_file") && !globs.matches("GitHub__create_issue"));
        assert!(!globs.matches("slack__post"));
        assert_eq!(principal.tools_denied, None, "the lists are independent");

        // No list allows every tool; an empty list allows none.
        let plain = directory.create_key(allowing("plain", None)).await.unwrap();
        let principal = directory
            .authenticate_key(plain.secret.expose())
            .await
            .unwrap();
        assert_eq!(plain.record.tools, None);
        assert_eq!(principal.tools, None);
        let none = directory
            .create_key(allowing("none", Some(&[])))
            .await
            .unwrap();
        let principal = directory
            .authenticate_key(none.secret.expose())
            .await
            .unwrap();
        let globs = principal.tools.as_deref().unwrap();
        assert!(globs.is_empty() && !globs.matches("github__create_issue"));

        // Both lists on one key are kept apart.
        let both = directory
            .create_key(NewKey {
                tools: Some(vec!["fs__*".into()]),
                ..key("both", Some(&["fs__delete"]))
            })
            .await
            .unwrap();
        let principal = directory
            .authenticate_key(both.secret.expose())
            .await
            .unwrap();
        assert_eq!(principal.tools.as_deref().unwrap().patterns(), ["fs__*"]);
        assert_eq!(
            principal.tools_denied.as_deref().unwrap().patterns(),
            ["fs__delete"]
        );

        for (globs, wanted) in [
            (&["ok__*", ""][..], "`tools[1]` must not be empty"),
            (
                &["", "x__{"][..],
                "`tools[0]` must not be empty; `tools[1]` is not a valid glob (`x__{`): unclosed alternate group; missing '}' (maybe escape '{' with '[{]'?)",
            ),
            (
                &["a__[b"][..],
                "`tools[0]` is not a valid glob (`a__[b`): unclosed character class; missing ']'",
            ),
        ] {
            match directory.create_key(allowing("bad", Some(globs))).await {
                Err(ManageError::Invalid(message)) => assert_eq!(message, wanted),
                other => panic!("{globs:?}: {other:?}"),
            }
        }

        // A stored list that no longer reads allows no tool rather than every tool.
        store
            .create_key(
                &KeyRecord {
                    id: "key_garbled".into(),
                    name: "garbled".into(),
                    prefix: String::new(),
                    user_id: None,
                    team_id: None,
                    service_account_id: None,
                    models: None,
                    limits: None,
                    metadata: None,
                    expires_ms: None,
                    revoked_ms: None,
                    created_ms: 0,
                    controls: None,
                    allow_custom_cost: false,
                    tools_denied: None,
                    tools: Some(r#"["a__[b"]"#.to_owned()),
                },
                &hex::encode(keys::digest("garbled-secret")),
            )
            .await
            .unwrap();
        directory.invalidate().await.unwrap();
        let principal = directory.authenticate_key("garbled-secret").await.unwrap();
        assert!(principal.tools.as_deref().unwrap().is_empty());
    }

    /// Measures what may wait: a full reload of a few thousand keys, and the first-sight
    /// provisioning of an enterprise user (printed with `--nocapture`).
    #[tokio::test]
    async fn reloads_and_first_sight_provisioning_are_measured() {
        let dir = tempfile::tempdir().unwrap();
        let (directory, _store) = sqlite_directory(&dir).await;
        let mut secrets = Vec::new();
        for i in 0..2_000 {
            let issued = directory
                .inner
                .store
                .create_key(
                    &KeyRecord {
                        id: format!("key_{i}"),
                        name: format!("k{i}"),
                        prefix: String::new(),
                        user_id: None,
                        team_id: None,
                        service_account_id: None,
                        models: None,
                        limits: None,
                        metadata: None,
                        expires_ms: None,
                        revoked_ms: None,
                        created_ms: i,
                        controls: None,
                        allow_custom_cost: false,
                        tools_denied: Some(r#"["rm_*"]"#.to_owned()),
                        tools: Some(r#"["fs__*"]"#.to_owned()),
                    },
                    &hex::encode(keys::digest(&format!("secret-{i}"))),
                )
                .await;
            issued.unwrap();
            secrets.push(format!("secret-{i}"));
        }
        directory.invalidate().await.unwrap();
        let stats = directory.stats();
        assert_eq!(stats.key_secrets, 2_000);
        for s in &secrets {
            assert!(directory.resolve_key(s).is_ok());
        }
        let claims = ExternalClaims {
            issuer: "https://idp.test".into(),
            subject: "s-1".into(),
            user: "ann".into(),
            email: Some("ann@corp.test".into()),
            teams: vec!["red".into()],
            roles: vec![],
            default_role: AccessRole::Member,
            method: AuthMethod::Jwt,
        };
        let enterprise = directory.resolve_external(&claims).await.unwrap();
        // An enterprise user is no key: no tool list of its own applies.
        assert!(enterprise.tools.is_none() && enterprise.tools_denied.is_none());
        let first = directory.stats();
        assert_eq!(first.provisions, 1);
        eprintln!(
            "reload of 2000 keys: {} us; first-sight provisioning: {} us",
            stats.last_reload_us, first.provision_us
        );
    }

    #[tokio::test]
    async fn keys_resolve_from_memory_when_the_database_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let (directory, store) = sqlite_directory(&dir).await;
        let live = directory.create_key(key("live", None)).await.unwrap();
        let revoked = directory.create_key(key("revoked", None)).await.unwrap();
        directory.revoke_key(&revoked.record.id).await.unwrap();
        let reloads = directory.stats().reloads;
        store.pool().close().await;
        // Nothing below can reach the database: every answer comes from the snapshot.
        for _ in 0..2 {
            let principal = directory
                .authenticate_key(live.secret.expose())
                .await
                .unwrap();
            assert_eq!(principal.identity.key_id.as_deref(), Some(&*live.record.id));
            assert!(matches!(
                directory.authenticate_key(revoked.secret.expose()).await,
                Err(AuthError::Revoked { key_id }) if key_id == revoked.record.id
            ));
            let unknown = crate::keys::generate();
            assert!(matches!(
                directory.authenticate_key(unknown.secret.expose()).await,
                Err(AuthError::UnknownKey)
            ));
            // A refresh fails, and leaves the snapshot in use.
            assert!(directory.refresh().await.is_err());
        }
        let stats = directory.stats();
        assert_eq!(stats.reloads, reloads);
        assert_eq!(stats.key_secrets, 2);
    }

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
