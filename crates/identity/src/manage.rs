//! Managing tenancy: the validated operations behind the admin API and the CLI — teams,
//! users, service accounts, virtual keys (create, rotate with a grace period, revoke) and
//! provider credentials (sealed in the vault). Every change drops this replica's cached views
//! at once; other replicas follow at their next version poll.

use portcullis_core::AccessRole;
use portcullis_limits::Period;
use portcullis_providers::Secret;
use portcullis_store::StoreError;
use portcullis_store::tenancy::{
    CredentialOwner, CredentialRecord, KeyRecord, LimitsOwner, ServiceAccountRecord, TeamRecord,
    UserRecord, UserUpdate,
};
use serde::{Deserialize, Serialize};

use crate::directory::Directory;
use crate::{keys, now_ms, passwords};

/// A key's own limits and budget (stored as JSON on the key).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyLimits {
    /// Requests per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u64>,
    /// Tokens per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<u64>,
    /// Requests in flight at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
    /// Spend limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<KeyBudget>,
}

/// A spend limit in US dollars per calendar window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyBudget {
    /// Dollars.
    pub usd: f64,
    /// `daily`, `weekly` or `monthly`.
    pub period: String,
}

/// A key to create.
#[derive(Debug, Clone, Default)]
pub struct NewKey {
    /// Display name.
    pub name: String,
    /// Bound user (id or email).
    pub user: Option<String>,
    /// Bound team.
    pub team: Option<String>,
    /// Bound service account.
    pub service_account: Option<String>,
    /// Allowed models and routes (`*` suffix for prefixes); `None` allows all.
    pub models: Option<Vec<String>>,
    /// Own limits.
    pub limits: Option<KeyLimits>,
    /// Own cache, retry and timeout settings.
    pub controls: Option<crate::KeyControls>,
    /// Free-form JSON object.
    pub metadata: Option<serde_json::Value>,
    /// Expiry, Unix ms.
    pub expires_ms: Option<i64>,
    /// Whether the key's own prices (`x-portcullis-custom-cost`) are what its budgets count.
    pub allow_custom_cost: bool,
    /// Tool-name globs whose calls are withheld from the key's answers (joined with the
    /// route's list); `None` or empty denies nothing of its own.
    pub tools_denied: Option<Vec<String>>,
    /// Globs over `<server>__<tool>` naming the MCP tools the key may see and call; `None`
    /// allows every tool, an empty list none.
    pub tools: Option<Vec<String>>,
}

/// A key just created or rotated: the only time its secret is available.
#[derive(Debug)]
pub struct IssuedKey {
    /// The key.
    pub record: KeyRecord,
    /// The full secret.
    pub secret: Secret,
}

/// Changes to a live key's settings: `None` leaves a field as it is, `Some(None)` clears it
/// (no model restriction, no limits, no budget, no expiry…). Who the key belongs to (user,
/// team, service account) does not change: a key for someone else is a new key.
#[derive(Debug, Clone, Default)]
pub struct KeyUpdate {
    /// New display name.
    pub name: Option<String>,
    /// Allowed models and routes; `Some(None)` allows all.
    pub models: Option<Option<Vec<String>>>,
    /// Rate limits (the budget stays as it is unless `budget` is given).
    pub rate_limits: Option<Option<KeyLimits>>,
    /// Spend limit.
    pub budget: Option<Option<KeyBudget>>,
    /// Own cache, retry and timeout settings.
    pub controls: Option<Option<crate::KeyControls>>,
    /// Free-form JSON object.
    pub metadata: Option<Option<serde_json::Value>>,
    /// Expiry, Unix ms.
    pub expires_ms: Option<Option<i64>>,
    /// Whether the key's own prices are what its budgets count.
    pub allow_custom_cost: Option<bool>,
    /// Tool-name globs whose calls are withheld from the key's answers.
    pub tools_denied: Option<Option<Vec<String>>>,
    /// Globs over `<server>__<tool>` naming the MCP tools the key may see and call.
    pub tools: Option<Option<Vec<String>>>,
}

/// A user to create.
#[derive(Debug, Clone, Default)]
pub struct NewUser {
    /// Id; defaults to the email, else a generated id.
    pub id: Option<String>,
    /// Email.
    pub email: Option<String>,
    /// Display name.
    pub name: Option<String>,
    /// AccessRole; default member.
    pub role: Option<AccessRole>,
    /// Teams (ids) the user belongs to.
    pub teams: Vec<String>,
    /// Password for the local login.
    pub password: Option<Secret>,
}

/// A provider credential to store.
#[derive(Debug)]
pub struct NewCredential {
    /// Provider name as configured.
    pub provider: String,
    /// Alias, unique per provider.
    pub alias: String,
    /// Owner kind.
    pub owner: CredentialOwner,
    /// User or team id (empty for a default).
    pub owner_id: String,
    /// The secret.
    pub secret: Secret,
}

/// Why a management operation was refused. Messages never contain secrets.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    /// The input is invalid (400).
    #[error("{0}")]
    Invalid(String),
    /// Something named does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// The id or name is taken (409).
    #[error("{0}")]
    Conflict(String),
    /// Storing a secret was asked without a vault key.
    #[error(
        "PORTCULLIS_SECRET_KEY is not set: provider keys cannot be stored without a key-encryption key"
    )]
    NoVault,
    /// The database failed.
    #[error("identity store unavailable: {0}")]
    Store(#[from] StoreError),
}

pub(crate) fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// Ids are short, printable and safe in URLs and limiter keys.
pub(crate) fn check_id(what: &str, id: &str) -> Result<(), ManageError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@+:".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ManageError::Invalid(format!(
            "invalid {what} id `{}`: use 1 to 128 letters, digits or - _ . @ + :",
            id.chars().take(64).collect::<String>()
        )))
    }
}

impl KeyLimits {
    /// Limits as stored (JSON); none when absent or unreadable.
    fn stored(text: Option<&str>) -> KeyLimits {
        text.and_then(|l| serde_json::from_str(l).ok())
            .unwrap_or_default()
    }

    /// These limits with a `PATCH`'s changes applied: `rate_limits` replaces the rate limits
    /// as a whole (`Some(None)` clears them; its budget is ignored), `budget` the budget;
    /// `None` leaves either as it is.
    pub fn patched(
        self,
        rate_limits: Option<Option<KeyLimits>>,
        budget: Option<Option<KeyBudget>>,
    ) -> KeyLimits {
        let rate = match rate_limits {
            Some(new) => new.unwrap_or_default(),
            None => self.clone(),
        };
        KeyLimits {
            budget: budget.unwrap_or(self.budget),
            ..rate
        }
    }

    fn validate(&self) -> Result<(), ManageError> {
        if self.requests_per_minute == Some(0)
            || self.tokens_per_minute == Some(0)
            || self.max_in_flight == Some(0)
        {
            return Err(ManageError::Invalid(
                "key limits must be positive numbers".into(),
            ));
        }
        if let Some(b) = &self.budget {
            if !(b.usd.is_finite() && b.usd > 0.0) {
                return Err(ManageError::Invalid(
                    "`budget.usd` must be a positive number of dollars".into(),
                ));
            }
            if b.period.parse::<Period>().is_err() {
                return Err(ManageError::Invalid(
                    "`budget.period` must be daily, weekly or monthly".into(),
                ));
            }
        }
        Ok(())
    }
}

impl Directory {
    /// Creates a team.
    pub async fn create_team(
        &self,
        id: Option<&str>,
        name: &str,
        metadata: Option<&serde_json::Value>,
    ) -> Result<TeamRecord, ManageError> {
        let name = name.trim();
        if name.is_empty() {
            return Err(ManageError::Invalid("`name` must not be empty".into()));
        }
        let id = match id {
            Some(id) => id.to_owned(),
            None => slug(name),
        };
        check_id("team", &id)?;
        let record = TeamRecord {
            id,
            name: name.to_owned(),
            metadata: metadata.map(serde_json::Value::to_string),
            created_ms: now_ms(),
        };
        if !self.store().create_team(&record).await? {
            return Err(ManageError::Conflict(format!(
                "team `{}` already exists",
                record.id
            )));
        }
        self.invalidate().await?;
        Ok(record)
    }

    /// Deletes a team: its memberships and credentials go, and keys bound to it are revoked.
    pub async fn delete_team(&self, id: &str) -> Result<(), ManageError> {
        if !self.store().delete_team(id, now_ms()).await? {
            return Err(ManageError::NotFound(format!("no team `{id}`")));
        }
        self.invalidate().await?;
        Ok(())
    }

    pub(crate) async fn require_team(&self, id: &str) -> Result<(), ManageError> {
        match self.store().team(id).await? {
            Some(_) => Ok(()),
            None => Err(ManageError::NotFound(format!("no team `{id}`"))),
        }
    }

    /// Finds a user by id or email.
    pub async fn find_user(&self, id_or_email: &str) -> Result<UserRecord, ManageError> {
        if let Some(u) = self.store().user(id_or_email).await? {
            return Ok(u);
        }
        if let Some(u) = self.store().user_by_email(id_or_email).await? {
            return Ok(u);
        }
        Err(ManageError::NotFound(format!("no user `{id_or_email}`")))
    }

    /// Creates a user.
    pub async fn create_user(&self, new: NewUser) -> Result<UserRecord, ManageError> {
        let email = new
            .email
            .map(|e| e.trim().to_owned())
            .filter(|e| !e.is_empty());
        if let Some(e) = &email
            && !is_email(e)
        {
            return Err(ManageError::Invalid(format!(
                "`email` is not an email address: `{}`",
                e.chars().take(64).collect::<String>()
            )));
        }
        let id = new
            .id
            .or_else(|| email.clone())
            .unwrap_or_else(|| new_id("usr"));
        check_id("user", &id)?;
        for team in &new.teams {
            self.require_team(team).await?;
        }
        let password_hash = match &new.password {
            Some(p) => {
                Some(passwords::hash(p.expose()).map_err(|e| ManageError::Invalid(e.to_string()))?)
            }
            None => None,
        };
        let record = UserRecord {
            id,
            email,
            name: new.name,
            role: new.role.unwrap_or_default().as_str().to_owned(),
            password_hash,
            issuer: None,
            external_subject: None,
            disabled_ms: None,
            created_ms: now_ms(),
        };
        if !self.store().create_user(&record).await? {
            return Err(ManageError::Conflict(format!(
                "a user with id `{}` or that email already exists",
                record.id
            )));
        }
        if !new.teams.is_empty() {
            self.store().set_memberships(&record.id, &new.teams).await?;
        }
        self.invalidate().await?;
        Ok(record)
    }

    /// Changes a user's name, role, password, teams or disabled state.
    pub async fn update_user(
        &self,
        id: &str,
        update: UserUpdate,
        teams: Option<Vec<String>>,
    ) -> Result<UserRecord, ManageError> {
        let user = self.find_user(id).await?;
        if let Some(role) = &update.role
            && AccessRole::parse(role).is_none()
        {
            return Err(ManageError::Invalid(
                "`role` must be admin, member or viewer".into(),
            ));
        }
        if let Some(teams) = &teams {
            for team in teams {
                self.require_team(team).await?;
            }
        }
        self.store().update_user(&user.id, &update).await?;
        if let Some(teams) = teams {
            self.store().set_memberships(&user.id, &teams).await?;
        }
        self.invalidate().await?;
        self.find_user(&user.id).await
    }

    /// Changes the limits and budget stored for a whole team or user, as a key's `PATCH` does
    /// ([`KeyLimits::patched`]: `rate_limits` replaces the rate limits, `budget` the budget,
    /// `None` leaves either as it is), checked as a key's are; limits that set nothing are
    /// removed. They bind every request accounted to that team or user, whatever key or token
    /// it comes with. Answers what is now stored.
    pub async fn patch_owner_limits(
        &self,
        owner: LimitsOwner,
        id: &str,
        rate_limits: Option<Option<KeyLimits>>,
        budget: Option<Option<KeyBudget>>,
    ) -> Result<Option<KeyLimits>, ManageError> {
        let owner_id = match owner {
            LimitsOwner::Team => {
                self.require_team(id).await?;
                id.to_owned()
            }
            LimitsOwner::User => self.find_user(id).await?.id,
        };
        let stored = self.store().owner_limits_of(owner, &owner_id).await?;
        if rate_limits.is_none() && budget.is_none() {
            return Ok(stored.map(|t| KeyLimits::stored(Some(&t))));
        }
        let limits = KeyLimits::stored(stored.as_deref()).patched(rate_limits, budget);
        let limits = (limits != KeyLimits::default()).then_some(limits);
        if let Some(l) = &limits {
            l.validate()?;
        }
        let text = limits.as_ref().and_then(stored_limits);
        self.store()
            .set_owner_limits(owner, &owner_id, text.as_deref())
            .await?;
        self.invalidate().await?;
        Ok(limits)
    }

    /// Disables a user: their keys and tokens stop working.
    pub async fn disable_user(&self, id: &str) -> Result<UserRecord, ManageError> {
        self.update_user(
            id,
            UserUpdate {
                disabled_ms: Some(Some(now_ms())),
                ..Default::default()
            },
            None,
        )
        .await
    }

    /// Hashes a password for a local user.
    pub fn hash_password(password: &Secret) -> Result<String, ManageError> {
        passwords::hash(password.expose()).map_err(|e| ManageError::Invalid(e.to_string()))
    }

    /// Creates a service account.
    pub async fn create_service_account(
        &self,
        id: Option<&str>,
        name: &str,
        team: Option<&str>,
        role: Option<AccessRole>,
    ) -> Result<ServiceAccountRecord, ManageError> {
        let name = name.trim();
        if name.is_empty() {
            return Err(ManageError::Invalid("`name` must not be empty".into()));
        }
        let id = id.map_or_else(|| new_id("sa"), str::to_owned);
        check_id("service account", &id)?;
        if let Some(team) = team {
            self.require_team(team).await?;
        }
        let record = ServiceAccountRecord {
            id,
            name: name.to_owned(),
            team_id: team.map(str::to_owned),
            role: role.unwrap_or_default().as_str().to_owned(),
            disabled_ms: None,
            created_ms: now_ms(),
        };
        if !self.store().create_service_account(&record).await? {
            return Err(ManageError::Conflict(format!(
                "service account `{}` already exists",
                record.id
            )));
        }
        self.invalidate().await?;
        Ok(record)
    }

    /// Disables a service account: its keys and tokens stop working.
    pub async fn disable_service_account(&self, id: &str) -> Result<(), ManageError> {
        if !self
            .store()
            .set_service_account_disabled(id, Some(now_ms()))
            .await?
        {
            return Err(ManageError::NotFound(format!("no service account `{id}`")));
        }
        self.invalidate().await?;
        Ok(())
    }

    /// Creates a virtual key; the secret is returned once.
    pub async fn create_key(&self, new: NewKey) -> Result<IssuedKey, ManageError> {
        let name = check_key_name(&new.name)?;
        let user = match &new.user {
            Some(u) => Some(self.find_user(u).await?),
            None => None,
        };
        if let Some(team) = &new.team {
            self.require_team(team).await?;
            if let Some(user) = &user
                && !self.store().teams_of(&user.id).await?.contains(team)
            {
                return Err(ManageError::Invalid(format!(
                    "user `{}` is not a member of team `{team}`",
                    user.id
                )));
            }
        }
        if let Some(sa) = &new.service_account {
            if user.is_some() {
                return Err(ManageError::Invalid(
                    "a key is bound to a user or to a service account, not both".into(),
                ));
            }
            let Some(account) = self.store().service_account(sa).await? else {
                return Err(ManageError::NotFound(format!("no service account `{sa}`")));
            };
            if let Some(team) = &new.team
                && account.team_id.as_ref() != Some(team)
            {
                return Err(ManageError::Invalid(format!(
                    "service account `{sa}` does not belong to team `{team}`"
                )));
            }
        }
        let now = now_ms();
        check_key_settings(&KeySettings {
            models: new.models.as_deref(),
            tools_denied: new.tools_denied.as_deref(),
            tools: new.tools.as_deref(),
            limits: new.limits.as_ref(),
            controls: new.controls.as_ref(),
            metadata: new.metadata.as_ref(),
            expires_ms: new.expires_ms,
            now_ms: now,
        })?;
        let issued = keys::generate();
        let record = KeyRecord {
            id: new_id("key"),
            name: name.to_owned(),
            prefix: issued.prefix,
            user_id: user.map(|u| u.id),
            team_id: new.team,
            service_account_id: new.service_account,
            models: new.models.map(|m| serde_json::Value::from(m).to_string()),
            limits: new.limits.as_ref().and_then(stored_limits),
            metadata: new.metadata.map(|m| m.to_string()),
            expires_ms: new.expires_ms,
            revoked_ms: None,
            created_ms: now,
            controls: new.controls.as_ref().and_then(stored_controls),
            allow_custom_cost: new.allow_custom_cost,
            tools_denied: new.tools_denied.and_then(stored_tools_denied),
            // Unlike a deny-list, an empty allow-list means something: no tool at all.
            tools: new
                .tools
                .map(|globs| serde_json::Value::from(globs).to_string()),
        };
        self.store().create_key(&record, &issued.hash).await?;
        self.invalidate().await?;
        Ok(IssuedKey {
            record,
            secret: issued.secret,
        })
    }

    /// Changes a live key's settings, validated as [`Directory::create_key`] validates them;
    /// the key's id, secret and bindings stay. Takes effect on this replica at once, on others
    /// at their next version poll.
    pub async fn update_key(&self, id: &str, update: KeyUpdate) -> Result<KeyRecord, ManageError> {
        let Some(mut key) = self
            .store()
            .key(id)
            .await?
            .filter(|k| k.revoked_ms.is_none())
        else {
            return Err(ManageError::NotFound(format!("no live key `{id}`")));
        };
        let stored_json = |text: &Option<String>| {
            text.as_deref()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok())
        };
        let stored_list = |text: &Option<String>| {
            text.as_deref()
                .and_then(|t| serde_json::from_str::<Vec<String>>(t).ok())
        };
        let name = match &update.name {
            Some(n) => check_key_name(n)?.to_owned(),
            None => key.name.clone(),
        };
        let models = match update.models {
            Some(m) => m,
            None => stored_list(&key.models),
        };
        let limits =
            KeyLimits::stored(key.limits.as_deref()).patched(update.rate_limits, update.budget);
        let limits = (limits != KeyLimits::default()).then_some(limits);
        let controls = match update.controls {
            Some(c) => c,
            None => key
                .controls
                .as_deref()
                .and_then(|c| serde_json::from_str(c).ok()),
        };
        let metadata = match update.metadata {
            Some(m) => m,
            None => stored_json(&key.metadata),
        };
        let expires_ms = update.expires_ms.unwrap_or(key.expires_ms);
        let tools_denied = match update.tools_denied {
            Some(t) => t,
            None => stored_list(&key.tools_denied),
        };
        let tools = match update.tools {
            Some(t) => t,
            None => stored_list(&key.tools),
        };
        check_key_settings(&KeySettings {
            models: models.as_deref(),
            tools_denied: tools_denied.as_deref(),
            tools: tools.as_deref(),
            limits: limits.as_ref(),
            controls: controls.as_ref(),
            metadata: metadata.as_ref(),
            // An expiry left as it was may have passed; only a new one must lie ahead.
            expires_ms: update.expires_ms.flatten(),
            now_ms: now_ms(),
        })?;
        key.name = name;
        key.models = models.map(|m| serde_json::Value::from(m).to_string());
        key.limits = limits.as_ref().and_then(stored_limits);
        key.controls = controls.as_ref().and_then(stored_controls);
        key.metadata = metadata.map(|m| m.to_string());
        key.expires_ms = expires_ms;
        if let Some(allow) = update.allow_custom_cost {
            key.allow_custom_cost = allow;
        }
        key.tools_denied = tools_denied.and_then(stored_tools_denied);
        key.tools = tools.map(|globs| serde_json::Value::from(globs).to_string());
        if !self.store().update_key(&key).await? {
            return Err(ManageError::NotFound(format!("no live key `{id}`")));
        }
        self.invalidate().await?;
        self.store()
            .key(id)
            .await?
            .ok_or_else(|| ManageError::NotFound(format!("no key `{id}`")))
    }

    /// Issues a new secret for a key; the old secret keeps working for `grace_ms`.
    pub async fn rotate_key(&self, id: &str, grace_ms: i64) -> Result<IssuedKey, ManageError> {
        if !(0..=30 * 86_400_000).contains(&grace_ms) {
            return Err(ManageError::Invalid(
                "the grace period must be between 0 and 30 days".into(),
            ));
        }
        let issued = keys::generate();
        let now = now_ms();
        if !self
            .store()
            .rotate_key(id, &issued.hash, &issued.prefix, now, now + grace_ms)
            .await?
        {
            return Err(ManageError::NotFound(format!("no live key `{id}`")));
        }
        self.invalidate().await?;
        let record = self
            .store()
            .key(id)
            .await?
            .ok_or_else(|| ManageError::NotFound(format!("no key `{id}`")))?;
        Ok(IssuedKey {
            record,
            secret: issued.secret,
        })
    }

    /// Revokes a key at once.
    pub async fn revoke_key(&self, id: &str) -> Result<(), ManageError> {
        if !self.store().revoke_key(id, now_ms()).await? {
            return Err(ManageError::NotFound(format!("no live key `{id}`")));
        }
        self.invalidate().await?;
        Ok(())
    }

    /// Stores a provider credential, sealed.
    pub async fn create_credential(
        &self,
        new: NewCredential,
    ) -> Result<CredentialRecord, ManageError> {
        let vault = self.vault().ok_or(ManageError::NoVault)?;
        let alias = new.alias.trim();
        check_id("alias", alias)?;
        if new.provider.trim().is_empty() {
            return Err(ManageError::Invalid("`provider` must not be empty".into()));
        }
        if new.secret.expose().trim().is_empty() {
            return Err(ManageError::Invalid("`secret` must not be empty".into()));
        }
        match new.owner {
            CredentialOwner::Default if !new.owner_id.is_empty() => {
                return Err(ManageError::Invalid(
                    "a default credential has no owner".into(),
                ));
            }
            CredentialOwner::User => {
                let user = self.find_user(&new.owner_id).await?;
                if user.id != new.owner_id {
                    return Err(ManageError::Invalid(format!(
                        "name the user by id (`{}`)",
                        user.id
                    )));
                }
            }
            CredentialOwner::Team => self.require_team(&new.owner_id).await?,
            CredentialOwner::Default => {}
        }
        let id = new_id("cred");
        let hint = secret_hint(&new.secret);
        let record = CredentialRecord {
            sealed: vault
                .seal(&id, &new.secret)
                .map_err(|e| ManageError::Invalid(e.to_string()))?,
            id,
            provider: new.provider,
            alias: alias.to_owned(),
            owner_kind: new.owner.as_str().to_owned(),
            owner_id: new.owner_id,
            hint,
            created_ms: now_ms(),
        };
        if !self.store().create_credential(&record).await? {
            return Err(ManageError::Conflict(format!(
                "provider `{}` already has a key with alias `{}`",
                record.provider, record.alias
            )));
        }
        self.invalidate().await?;
        Ok(record)
    }

    /// Rotates a provider credential: seals `secret` in place of the stored one, so requests
    /// use the new secret on every replica within the poll interval (at once here) while the
    /// credential's id, alias and owner stay.
    pub async fn rotate_credential(
        &self,
        id: &str,
        secret: &Secret,
    ) -> Result<CredentialRecord, ManageError> {
        let vault = self.vault().ok_or(ManageError::NoVault)?;
        if secret.expose().trim().is_empty() {
            return Err(ManageError::Invalid("`secret` must not be empty".into()));
        }
        let sealed = vault
            .seal(id, secret)
            .map_err(|e| ManageError::Invalid(e.to_string()))?;
        let record = self
            .store()
            .replace_credential_secret(id, &sealed, &secret_hint(secret))
            .await?
            .ok_or_else(|| ManageError::NotFound(format!("no provider key `{id}`")))?;
        self.invalidate().await?;
        Ok(record)
    }

    /// Deletes a provider credential.
    pub async fn delete_credential(&self, id: &str) -> Result<(), ManageError> {
        if !self.store().delete_credential(id).await? {
            return Err(ManageError::NotFound(format!("no provider key `{id}`")));
        }
        self.invalidate().await?;
        Ok(())
    }
}

/// The last four characters of a provider secret of at least twelve, for recognising it
/// (shorter secrets get no hint).
fn secret_hint(secret: &Secret) -> String {
    let chars: Vec<char> = secret.expose().chars().collect();
    if chars.len() >= 12 {
        chars[chars.len() - 4..].iter().collect()
    } else {
        String::new()
    }
}

/// A key's display name, trimmed: 1 to 200 characters.
fn check_key_name(name: &str) -> Result<&str, ManageError> {
    let name = name.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(ManageError::Invalid(
            "`name` must have 1 to 200 characters".into(),
        ));
    }
    Ok(name)
}

/// A key's settings as they will be stored, for [`check_key_settings`].
struct KeySettings<'a> {
    models: Option<&'a [String]>,
    tools_denied: Option<&'a [String]>,
    tools: Option<&'a [String]>,
    limits: Option<&'a KeyLimits>,
    controls: Option<&'a crate::KeyControls>,
    metadata: Option<&'a serde_json::Value>,
    /// A new expiry (it must lie after `now_ms`).
    expires_ms: Option<i64>,
    now_ms: i64,
}

/// The checks a key's settings pass, whether the key is created or changed.
fn check_key_settings(s: &KeySettings<'_>) -> Result<(), ManageError> {
    if let Some(models) = s.models
        && models.iter().any(|m| m.trim().is_empty())
    {
        return Err(ManageError::Invalid(
            "`models` entries must not be empty".into(),
        ));
    }
    if let Some(globs) = s.tools_denied {
        check_tool_globs("tools_denied", globs)?;
    }
    if let Some(globs) = s.tools {
        check_tool_globs("tools", globs)?;
    }
    if let Some(limits) = s.limits {
        limits.validate()?;
    }
    if let Some(controls) = s.controls {
        controls
            .resolve()
            .map_err(|issues| ManageError::Invalid(issues.join("; ")))?;
    }
    if let Some(meta) = s.metadata
        && !meta.is_object()
    {
        return Err(ManageError::Invalid(
            "`metadata` must be a JSON object".into(),
        ));
    }
    if s.expires_ms.is_some_and(|t| t <= s.now_ms) {
        return Err(ManageError::Invalid("`expires_at` is in the past".into()));
    }
    Ok(())
}

/// A key's limits as stored.
fn stored_limits(limits: &KeyLimits) -> Option<String> {
    serde_json::to_string(limits).ok()
}

/// A key's controls as stored: none when they change nothing.
fn stored_controls(controls: &crate::KeyControls) -> Option<String> {
    (*controls != crate::KeyControls::default())
        .then(|| serde_json::to_string(controls).ok())
        .flatten()
}

/// A key's deny-list as stored: none when it denies nothing.
fn stored_tools_denied(globs: Vec<String>) -> Option<String> {
    (!globs.is_empty()).then(|| serde_json::Value::from(globs).to_string())
}

/// Each entry of a key's tool-glob list (`field`: `tools_denied` or `tools`) must be a
/// non-empty glob that compiles as the request path compiles it
/// (`portcullis_policy::ToolGlobs`); every bad entry is named (`tools[1]`).
fn check_tool_globs(field: &str, globs: &[String]) -> Result<(), ManageError> {
    let Err(issues) = portcullis_policy::ToolGlobs::new(globs) else {
        return Ok(());
    };
    let described: Vec<String> = issues
        .iter()
        .map(|issue| {
            if issue.pattern.is_empty() {
                format!("`{field}[{}]` must not be empty", issue.index)
            } else {
                format!(
                    "`{field}[{}]` is not a valid glob (`{}`): {}",
                    issue.index,
                    issue.pattern.chars().take(64).collect::<String>(),
                    issue.message
                )
            }
        })
        .collect();
    Err(ManageError::Invalid(described.join("; ")))
}

/// Whether `e` is an e-mail address as HTML's `<input type=email>` defines one (WHATWG):
/// `local@domain`, the local part of letters, digits and ``.!#$%&'*+/=?^_`{|}~-``, the domain
/// dot-separated labels of letters, digits and inner hyphens (at most 63 each); at most 254
/// characters in all.
pub fn is_email(e: &str) -> bool {
    let Some((local, domain)) = e.split_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".!#$%&'*+/=?^_`{|}~-".contains(c));
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    e.len() <= 254 && local_ok && domain.split('.').all(label_ok)
}

/// A team id from a name: lowercase letters and digits, other runs become `-`.
pub fn slug(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    if out.is_empty() { new_id("team") } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_addresses() {
        for ok in [
            "a@b",
            "alice@corp.test",
            "a.b+tag@x-y.example.com",
            "o'neil@corp.io",
        ] {
            assert!(is_email(ok), "{ok}");
        }
        for bad in [
            "",
            "alice",
            "@corp.test",
            "alice@",
            "a@b@c",
            "alice smith@corp.test",
            "alice@corp..test",
            "alice@-corp.test",
            "alice@corp.test.",
            "<alice@corp.test>",
            "alice@corp_test",
            "al\u{0}ice@corp.test",
        ] {
            assert!(!is_email(bad), "{bad}");
        }
        assert!(!is_email(&format!("{}@corp.test", "a".repeat(65))));
    }

    #[test]
    fn slugs() {
        assert_eq!(slug("ML Platform!"), "ml-platform");
        assert_eq!(slug("  a  b "), "a-b");
        assert!(slug("!!!").starts_with("team_"));
    }
}
