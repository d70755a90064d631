//! Persistence of tenancy: teams, users and memberships, service accounts, virtual keys and
//! their secrets, encrypted provider credentials, and the version counter replicas poll to
//! notice changes.
//!
//! The store holds only digests of key secrets and only sealed (encrypted) provider secrets;
//! hashing, sealing and every policy decision live in `portcullis-identity`. JSON-valued
//! columns (`models`, `limits`, `metadata`, `controls`, `tools_denied`, `tools`) are opaque text
//! here. Both SQL backends run the same statements, implemented once by a macro. Every mutation
//! bumps the tenancy version.

use async_trait::async_trait;

use crate::{PostgresStore, SqliteStore, StoreError};

/// A team.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TeamRecord {
    /// Team id (chosen by the admin, or taken from an issuer's group claim).
    pub id: String,
    /// Display name.
    pub name: String,
    /// JSON object.
    pub metadata: Option<String>,
    /// Unix milliseconds.
    pub created_ms: i64,
}

/// A user.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UserRecord {
    /// User id.
    pub id: String,
    /// Email, unique when set.
    pub email: Option<String>,
    /// Display name.
    pub name: Option<String>,
    /// `admin`, `member` or `viewer`.
    pub role: String,
    /// Password digest (PHC string) for the local login.
    pub password_hash: Option<String>,
    /// The issuer the user was provisioned from.
    pub issuer: Option<String>,
    /// The user's subject at that issuer.
    pub external_subject: Option<String>,
    /// When the user was disabled, Unix milliseconds.
    pub disabled_ms: Option<i64>,
    /// Unix milliseconds.
    pub created_ms: i64,
}

/// A service account: a machine identity.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ServiceAccountRecord {
    /// Id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// The team its requests are accounted to.
    pub team_id: Option<String>,
    /// `admin`, `member` or `viewer`.
    pub role: String,
    /// When it was disabled, Unix milliseconds.
    pub disabled_ms: Option<i64>,
    /// Unix milliseconds.
    pub created_ms: i64,
}

/// A virtual key, without its secrets.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct KeyRecord {
    /// Key id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// The visible start of the current secret.
    pub prefix: String,
    /// Bound user.
    pub user_id: Option<String>,
    /// Bound team.
    pub team_id: Option<String>,
    /// Bound service account.
    pub service_account_id: Option<String>,
    /// JSON array of allowed models and routes.
    pub models: Option<String>,
    /// JSON object of per-key limits and budget.
    pub limits: Option<String>,
    /// JSON object.
    pub metadata: Option<String>,
    /// Expiry, Unix milliseconds.
    pub expires_ms: Option<i64>,
    /// Revocation time, Unix milliseconds.
    pub revoked_ms: Option<i64>,
    /// Unix milliseconds.
    pub created_ms: i64,
    /// JSON object of the key's own cache, retry and timeout settings.
    pub controls: Option<String>,
    /// Whether the caller's own prices (`x-portcullis-custom-cost`) are what its budgets
    /// count; otherwise they are only recorded next to the list price.
    pub allow_custom_cost: bool,
    /// JSON array of tool-name globs whose calls are withheld from the key's answers.
    pub tools_denied: Option<String>,
    /// JSON array of globs over `<server>__<tool>` naming the MCP tools the key may see and
    /// call; `None` allows every tool.
    pub tools: Option<String>,
}

/// A key found by the digest of a presented secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMatch {
    /// The key.
    pub key: KeyRecord,
    /// When this particular secret stops working (set during a rotation's grace period).
    pub secret_expires_ms: Option<i64>,
}

/// One stored secret of a key, with the key: what a replica loads to resolve every presented
/// key from memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySecret {
    /// Hex SHA-256 of the secret.
    pub hash: String,
    /// The key and this secret's own expiry.
    pub found: KeyMatch,
}

/// Who a provider credential belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialOwner {
    /// The provider's default, for callers with no own credential.
    Default,
    /// A user.
    User,
    /// A team.
    Team,
}

impl CredentialOwner {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialOwner::Default => "default",
            CredentialOwner::User => "user",
            CredentialOwner::Team => "team",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "default" => Some(Self::Default),
            "user" => Some(Self::User),
            "team" => Some(Self::Team),
            _ => None,
        }
    }
}

/// A provider credential, sealed.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CredentialRecord {
    /// Credential id (what logs and headers show).
    pub id: String,
    /// Provider name, as configured.
    pub provider: String,
    /// Alias, unique per provider.
    pub alias: String,
    /// `default`, `user` or `team`.
    pub owner_kind: String,
    /// The user or team id; empty for a default.
    pub owner_id: String,
    /// `base64(nonce || ciphertext)`.
    pub sealed: String,
    /// The last characters of the secret, for recognising it.
    pub hint: String,
    /// Unix milliseconds.
    pub created_ms: i64,
}

/// Changes to a user; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserUpdate {
    /// New display name.
    pub name: Option<String>,
    /// New role.
    pub role: Option<String>,
    /// New password digest.
    pub password_hash: Option<String>,
    /// `Some(Some(t))` disables at `t`, `Some(None)` enables.
    pub disabled_ms: Option<Option<i64>>,
}

/// Whose stored limits: a whole team's or a whole user's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitsOwner {
    /// A team.
    Team,
    /// A user.
    User,
}

impl LimitsOwner {
    /// The `owner_kind` stored.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitsOwner::Team => "team",
            LimitsOwner::User => "user",
        }
    }
}

/// Limits and a budget stored for a team or user (`owner_limits`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerLimitsRecord {
    /// A team's or a user's.
    pub owner: LimitsOwner,
    /// The team's or user's id.
    pub owner_id: String,
    /// JSON: the identity crate's `KeyLimits`.
    pub limits: String,
}

/// The tenancy tables.
#[async_trait]
pub trait TenancyStore: crate::McpAccessStore + Send + Sync + std::fmt::Debug {
    /// The version counter: it changes whenever anything in tenancy changes.
    async fn version(&self) -> Result<i64, StoreError>;

    /// Creates a team; `false` when the id is taken.
    async fn create_team(&self, team: &TeamRecord) -> Result<bool, StoreError>;
    /// A team.
    async fn team(&self, id: &str) -> Result<Option<TeamRecord>, StoreError>;
    /// Every team, by id.
    async fn teams(&self) -> Result<Vec<TeamRecord>, StoreError>;
    /// Deletes a team, its memberships and its credentials, and revokes the keys bound to it
    /// at `now_ms`; `false` when there was no such team.
    async fn delete_team(&self, id: &str, now_ms: i64) -> Result<bool, StoreError>;

    /// Creates a user; `false` when the id, email or external subject is taken.
    async fn create_user(&self, user: &UserRecord) -> Result<bool, StoreError>;
    /// A user by id.
    async fn user(&self, id: &str) -> Result<Option<UserRecord>, StoreError>;
    /// A user by email.
    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError>;
    /// A user by their subject at an issuer.
    async fn user_by_external(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<UserRecord>, StoreError>;
    /// Every user, by id.
    async fn users(&self) -> Result<Vec<UserRecord>, StoreError>;
    /// Applies `update`; `false` when there is no such user. Disabling a user also deletes
    /// their grants for upstream MCP servers (`mcp_grants`), in the same transaction.
    async fn update_user(&self, id: &str, update: &UserUpdate) -> Result<bool, StoreError>;

    /// Stores (`Some`) or removes (`None`) the limits of a team or user; replicas see the
    /// change through the version.
    async fn set_owner_limits(
        &self,
        owner: LimitsOwner,
        owner_id: &str,
        limits: Option<&str>,
    ) -> Result<(), StoreError>;
    /// Every team's and user's stored limits.
    async fn owner_limits(&self) -> Result<Vec<OwnerLimitsRecord>, StoreError>;
    /// The limits stored for one team or user (JSON), if any.
    async fn owner_limits_of(
        &self,
        owner: LimitsOwner,
        owner_id: &str,
    ) -> Result<Option<String>, StoreError>;

    /// Adds a user to a team (idempotent).
    async fn add_member(&self, team_id: &str, user_id: &str) -> Result<(), StoreError>;
    /// Removes a user from a team; `false` when they were not a member.
    async fn remove_member(&self, team_id: &str, user_id: &str) -> Result<bool, StoreError>;
    /// Replaces a user's teams.
    async fn set_memberships(&self, user_id: &str, team_ids: &[String]) -> Result<(), StoreError>;
    /// The teams of a user, by id.
    async fn teams_of(&self, user_id: &str) -> Result<Vec<String>, StoreError>;
    /// The members of a team, by id.
    async fn members_of(&self, team_id: &str) -> Result<Vec<String>, StoreError>;
    /// Every membership, as `(team id, user id)` pairs.
    async fn memberships(&self) -> Result<Vec<(String, String)>, StoreError>;
    /// One page of users by id: at most `limit`, those after `after`.
    async fn users_page(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<UserRecord>, StoreError>;
    /// One page of teams by id: at most `limit`, those after `after`, each with its number
    /// of members.
    async fn teams_page(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<(TeamRecord, i64)>, StoreError>;
    /// The memberships of the given users (one query), as `(team id, user id)` pairs.
    async fn memberships_of(&self, users: &[String]) -> Result<Vec<(String, String)>, StoreError>;

    /// Creates a service account; `false` when the id is taken.
    async fn create_service_account(
        &self,
        account: &ServiceAccountRecord,
    ) -> Result<bool, StoreError>;
    /// A service account.
    async fn service_account(&self, id: &str) -> Result<Option<ServiceAccountRecord>, StoreError>;
    /// Every service account, by id.
    async fn service_accounts(&self) -> Result<Vec<ServiceAccountRecord>, StoreError>;
    /// Disables (`Some(t)`) or enables (`None`) a service account; `false` when unknown.
    async fn set_service_account_disabled(
        &self,
        id: &str,
        disabled_ms: Option<i64>,
    ) -> Result<bool, StoreError>;

    /// Creates a key with its first secret (`secret_hash`, hex SHA-256).
    async fn create_key(&self, key: &KeyRecord, secret_hash: &str) -> Result<(), StoreError>;
    /// A key by id.
    async fn key(&self, id: &str) -> Result<Option<KeyRecord>, StoreError>;
    /// Keys, newest first, optionally only those bound to a user, team or service account.
    async fn keys(&self, filter: &KeyFilter) -> Result<Vec<KeyRecord>, StoreError>;
    /// One page of the keys `filter` selects, in the order of [`TenancyStore::keys`]: at most
    /// `limit`, starting after the key `after` (the last key of the previous page).
    async fn keys_page(
        &self,
        filter: &KeyFilter,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<KeyRecord>, StoreError>;
    /// The key a secret digest belongs to, with that secret's own expiry.
    async fn key_by_secret(&self, secret_hash: &str) -> Result<Option<KeyMatch>, StoreError>;
    /// Every stored secret with its key (revoked keys included, so that they are refused with
    /// their reason), for loading the whole directory into memory.
    async fn key_secrets(&self) -> Result<Vec<KeySecret>, StoreError>;
    /// Revokes a key at `now_ms`; `false` when unknown or already revoked.
    async fn revoke_key(&self, id: &str, now_ms: i64) -> Result<bool, StoreError>;
    /// Writes a live key's settings — name, models, limits, metadata, expiry, controls,
    /// custom-cost flag and tool lists — from `key` (its id, bindings, prefix and times stay
    /// as stored); `false` when the key is unknown or revoked.
    async fn update_key(&self, key: &KeyRecord) -> Result<bool, StoreError>;
    /// Adds a new secret to a key and retires its other live secrets at `old_expires_ms`;
    /// `false` when the key is unknown or revoked.
    async fn rotate_key(
        &self,
        id: &str,
        new_hash: &str,
        new_prefix: &str,
        now_ms: i64,
        old_expires_ms: i64,
    ) -> Result<bool, StoreError>;

    /// Stores a credential; `false` when the provider already has that alias.
    async fn create_credential(&self, credential: &CredentialRecord) -> Result<bool, StoreError>;
    /// Every credential (sealed), by provider and alias.
    async fn credentials(&self) -> Result<Vec<CredentialRecord>, StoreError>;
    /// Deletes a credential; `false` when unknown.
    async fn delete_credential(&self, id: &str) -> Result<bool, StoreError>;
    /// Replaces a credential's sealed secret and hint (a rotation: id, provider, alias and
    /// owner stay); the credential after the change, or `None` when there is no such one.
    async fn replace_credential_secret(
        &self,
        id: &str,
        sealed: &str,
        hint: &str,
    ) -> Result<Option<CredentialRecord>, StoreError>;
}

/// Which keys to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyFilter {
    /// Only keys bound to this user.
    pub user_id: Option<String>,
    /// Only keys bound to this team.
    pub team_id: Option<String>,
    /// Only keys bound to this service account.
    pub service_account_id: Option<String>,
    /// Include revoked keys.
    pub include_revoked: bool,
}

const USER_COLUMNS: &str =
    "id, email, name, role, password_hash, issuer, external_subject, disabled_ms, created_ms";
const KEY_COLUMNS: &str = "id, name, prefix, user_id, team_id, service_account_id, models, \
     limits, metadata, expires_ms, revoked_ms, created_ms, controls, allow_custom_cost, \
     tools_denied, tools";
const KEY_COLUMNS_K: &str = "k.id, k.name, k.prefix, k.user_id, k.team_id, \
     k.service_account_id, k.models, k.limits, k.metadata, k.expires_ms, k.revoked_ms, \
     k.created_ms, k.controls, k.allow_custom_cost, k.tools_denied, \
     k.tools";

/// Whether a database error is a unique-constraint violation.
fn is_conflict(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

#[derive(sqlx::FromRow)]
struct KeyMatchRow {
    #[sqlx(flatten)]
    key: KeyRecord,
    secret_expires_ms: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct KeySecretRow {
    #[sqlx(flatten)]
    key: KeyRecord,
    secret_hash: String,
    secret_expires_ms: Option<i64>,
}

macro_rules! tenancy_store {
    ($store:ident, $db:ty) => {
        impl $store {
            async fn bump<'c>(
                tx: &mut sqlx::Transaction<'c, $db>,
            ) -> Result<(), StoreError> {
                sqlx::query("UPDATE tenancy_version SET version = version + 1 WHERE id = 1")
                    .execute(&mut **tx)
                    .await?;
                Ok(())
            }

            /// Runs one statement and bumps the version in the same transaction; returns the
            /// rows affected, or `None` on a unique-constraint violation.
            async fn exec_bumped<'q>(
                &self,
                query: sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>>,
            ) -> Result<Option<u64>, StoreError> {
                let mut tx = self.pool().begin().await?;
                let done = match query.execute(&mut *tx).await {
                    Ok(done) => done.rows_affected(),
                    Err(e) if is_conflict(&e) => return Ok(None),
                    Err(e) => return Err(e.into()),
                };
                if done > 0 {
                    Self::bump(&mut tx).await?;
                }
                tx.commit().await?;
                Ok(Some(done))
            }
        }

        #[async_trait]
        impl TenancyStore for $store {
            async fn version(&self) -> Result<i64, StoreError> {
                let v: i64 = sqlx::query_scalar("SELECT version FROM tenancy_version WHERE id = 1")
                    .fetch_one(self.pool())
                    .await?;
                Ok(v)
            }

            async fn create_team(&self, team: &TeamRecord) -> Result<bool, StoreError> {
                let q = sqlx::query(
                    "INSERT INTO teams (id, name, metadata, created_ms) VALUES ($1, $2, $3, $4)",
                )
                .bind(&team.id)
                .bind(&team.name)
                .bind(&team.metadata)
                .bind(team.created_ms);
                Ok(self.exec_bumped(q).await?.is_some())
            }

            async fn team(&self, id: &str) -> Result<Option<TeamRecord>, StoreError> {
                Ok(sqlx::query_as(
                    "SELECT id, name, metadata, created_ms FROM teams WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(self.pool())
                .await?)
            }

            async fn teams(&self) -> Result<Vec<TeamRecord>, StoreError> {
                Ok(
                    sqlx::query_as("SELECT id, name, metadata, created_ms FROM teams ORDER BY id")
                        .fetch_all(self.pool())
                        .await?,
                )
            }

            async fn delete_team(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
                let mut tx = self.pool().begin().await?;
                let gone = sqlx::query("DELETE FROM teams WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if gone == 0 {
                    return Ok(false);
                }
                sqlx::query("DELETE FROM team_members WHERE team_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM owner_limits WHERE owner_kind = 'team' AND owner_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "DELETE FROM provider_credentials WHERE owner_kind = 'team' AND owner_id = $1",
                )
                .bind(id)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE virtual_keys SET revoked_ms = $2 WHERE team_id = $1 AND revoked_ms IS NULL",
                )
                .bind(id)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
                Self::bump(&mut tx).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn create_user(&self, user: &UserRecord) -> Result<bool, StoreError> {
                let q = sqlx::query(
                    "INSERT INTO users (id, email, name, role, password_hash, issuer, \
                     external_subject, disabled_ms, created_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(&user.id)
                .bind(&user.email)
                .bind(&user.name)
                .bind(&user.role)
                .bind(&user.password_hash)
                .bind(&user.issuer)
                .bind(&user.external_subject)
                .bind(user.disabled_ms)
                .bind(user.created_ms);
                Ok(self.exec_bumped(q).await?.is_some())
            }

            async fn user(&self, id: &str) -> Result<Option<UserRecord>, StoreError> {
                Ok(sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(self.pool())
                    .await?)
            }

            async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError> {
                Ok(
                    sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1"))
                        .bind(email)
                        .fetch_optional(self.pool())
                        .await?,
                )
            }

            async fn user_by_external(
                &self,
                issuer: &str,
                subject: &str,
            ) -> Result<Option<UserRecord>, StoreError> {
                Ok(sqlx::query_as(&format!(
                    "SELECT {USER_COLUMNS} FROM users WHERE issuer = $1 AND external_subject = $2"
                ))
                .bind(issuer)
                .bind(subject)
                .fetch_optional(self.pool())
                .await?)
            }

            async fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
                Ok(sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY id"))
                    .fetch_all(self.pool())
                    .await?)
            }

            async fn update_user(&self, id: &str, u: &UserUpdate) -> Result<bool, StoreError> {
                let (set_disabled, disabled) = match u.disabled_ms {
                    Some(d) => (true, d),
                    None => (false, None),
                };
                let q = sqlx::query(
                    "UPDATE users SET name = COALESCE($2, name), role = COALESCE($3, role), \
                     password_hash = COALESCE($4, password_hash), \
                     disabled_ms = CASE WHEN $5 THEN $6 ELSE disabled_ms END WHERE id = $1",
                )
                .bind(id)
                .bind(&u.name)
                .bind(&u.role)
                .bind(&u.password_hash)
                .bind(set_disabled)
                .bind(disabled);
                let mut tx = self.pool().begin().await?;
                let found = q.execute(&mut *tx).await?.rows_affected() > 0;
                if found {
                    // A disabled user's upstream MCP grants go with it: enabled again, they
                    // connect again rather than inherit tokens granted before.
                    if disabled.is_some() {
                        sqlx::query("DELETE FROM mcp_grants WHERE user_id = $1")
                            .bind(id)
                            .execute(&mut *tx)
                            .await?;
                    }
                    Self::bump(&mut tx).await?;
                }
                tx.commit().await?;
                Ok(found)
            }

            async fn add_member(&self, team_id: &str, user_id: &str) -> Result<(), StoreError> {
                let q = sqlx::query(
                    "INSERT INTO team_members (team_id, user_id) VALUES ($1, $2) \
                     ON CONFLICT (team_id, user_id) DO NOTHING",
                )
                .bind(team_id)
                .bind(user_id);
                self.exec_bumped(q).await?;
                Ok(())
            }

            async fn remove_member(&self, team_id: &str, user_id: &str) -> Result<bool, StoreError> {
                let q = sqlx::query("DELETE FROM team_members WHERE team_id = $1 AND user_id = $2")
                    .bind(team_id)
                    .bind(user_id);
                Ok(self.exec_bumped(q).await?.unwrap_or(0) > 0)
            }

            async fn set_memberships(
                &self,
                user_id: &str,
                team_ids: &[String],
            ) -> Result<(), StoreError> {
                let mut tx = self.pool().begin().await?;
                sqlx::query("DELETE FROM team_members WHERE user_id = $1")
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
                for team in team_ids {
                    sqlx::query(
                        "INSERT INTO team_members (team_id, user_id) VALUES ($1, $2) \
                         ON CONFLICT (team_id, user_id) DO NOTHING",
                    )
                    .bind(team)
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
                }
                Self::bump(&mut tx).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn set_owner_limits(
                &self,
                owner: LimitsOwner,
                owner_id: &str,
                limits: Option<&str>,
            ) -> Result<(), StoreError> {
                let q = match limits {
                    Some(text) => sqlx::query(
                        "INSERT INTO owner_limits (owner_kind, owner_id, limits) VALUES ($1, $2, $3) \
                         ON CONFLICT (owner_kind, owner_id) DO UPDATE SET limits = excluded.limits",
                    )
                    .bind(owner.as_str())
                    .bind(owner_id)
                    .bind(text),
                    None => sqlx::query(
                        "DELETE FROM owner_limits WHERE owner_kind = $1 AND owner_id = $2",
                    )
                    .bind(owner.as_str())
                    .bind(owner_id),
                };
                self.exec_bumped(q).await?;
                Ok(())
            }

            async fn owner_limits_of(
                &self,
                owner: LimitsOwner,
                owner_id: &str,
            ) -> Result<Option<String>, StoreError> {
                Ok(sqlx::query_scalar(
                    "SELECT limits FROM owner_limits WHERE owner_kind = $1 AND owner_id = $2",
                )
                .bind(owner.as_str())
                .bind(owner_id)
                .fetch_optional(self.pool())
                .await?)
            }

            async fn owner_limits(&self) -> Result<Vec<OwnerLimitsRecord>, StoreError> {
                let rows: Vec<(String, String, String)> = sqlx::query_as(
                    "SELECT owner_kind, owner_id, limits FROM owner_limits \
                     ORDER BY owner_kind, owner_id",
                )
                .fetch_all(self.pool())
                .await?;
                Ok(rows
                    .into_iter()
                    .filter_map(|(kind, owner_id, limits)| {
                        let owner = match kind.as_str() {
                            "team" => LimitsOwner::Team,
                            "user" => LimitsOwner::User,
                            _ => return None,
                        };
                        Some(OwnerLimitsRecord {
                            owner,
                            owner_id,
                            limits,
                        })
                    })
                    .collect())
            }

            async fn teams_of(&self, user_id: &str) -> Result<Vec<String>, StoreError> {
                Ok(sqlx::query_scalar(
                    "SELECT team_id FROM team_members WHERE user_id = $1 ORDER BY team_id",
                )
                .bind(user_id)
                .fetch_all(self.pool())
                .await?)
            }

            async fn users_page(
                &self,
                after: Option<&str>,
                limit: u32,
            ) -> Result<Vec<UserRecord>, StoreError> {
                Ok(sqlx::query_as(&format!(
                    "SELECT {USER_COLUMNS} FROM users WHERE $1 IS NULL OR id > $1 \
                     ORDER BY id LIMIT $2"
                ))
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(self.pool())
                .await?)
            }

            async fn teams_page(
                &self,
                after: Option<&str>,
                limit: u32,
            ) -> Result<Vec<(TeamRecord, i64)>, StoreError> {
                let teams: Vec<TeamRecord> = sqlx::query_as(
                    "SELECT id, name, metadata, created_ms FROM teams \
                     WHERE $1 IS NULL OR id > $1 ORDER BY id LIMIT $2",
                )
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(self.pool())
                .await?;
                if teams.is_empty() {
                    return Ok(Vec::new());
                }
                let mut qb: sqlx::QueryBuilder<'_, $db> = sqlx::QueryBuilder::new(
                    "SELECT team_id, COUNT(*) FROM team_members WHERE team_id IN (",
                );
                let mut ids = qb.separated(", ");
                for t in &teams {
                    ids.push_bind(t.id.as_str());
                }
                qb.push(") GROUP BY team_id");
                let counts: std::collections::HashMap<String, i64> = qb
                    .build_query_as::<(String, i64)>()
                    .fetch_all(self.pool())
                    .await?
                    .into_iter()
                    .collect();
                Ok(teams
                    .into_iter()
                    .map(|t| {
                        let n = counts.get(&t.id).copied().unwrap_or(0);
                        (t, n)
                    })
                    .collect())
            }

            async fn memberships_of(
                &self,
                users: &[String],
            ) -> Result<Vec<(String, String)>, StoreError> {
                if users.is_empty() {
                    return Ok(Vec::new());
                }
                let mut qb: sqlx::QueryBuilder<'_, $db> = sqlx::QueryBuilder::new(
                    "SELECT team_id, user_id FROM team_members WHERE user_id IN (",
                );
                let mut ids = qb.separated(", ");
                for u in users {
                    ids.push_bind(u.as_str());
                }
                qb.push(") ORDER BY user_id, team_id");
                Ok(qb
                    .build_query_as::<(String, String)>()
                    .fetch_all(self.pool())
                    .await?)
            }

            async fn members_of(&self, team_id: &str) -> Result<Vec<String>, StoreError> {
                Ok(sqlx::query_scalar(
                    "SELECT user_id FROM team_members WHERE team_id = $1 ORDER BY user_id",
                )
                .bind(team_id)
                .fetch_all(self.pool())
                .await?)
            }

            async fn memberships(&self) -> Result<Vec<(String, String)>, StoreError> {
                Ok(sqlx::query_as(
                    "SELECT team_id, user_id FROM team_members ORDER BY user_id, team_id",
                )
                .fetch_all(self.pool())
                .await?)
            }

            async fn create_service_account(
                &self,
                a: &ServiceAccountRecord,
            ) -> Result<bool, StoreError> {
                let q = sqlx::query(
                    "INSERT INTO service_accounts (id, name, team_id, role, disabled_ms, created_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&a.id)
                .bind(&a.name)
                .bind(&a.team_id)
                .bind(&a.role)
                .bind(a.disabled_ms)
                .bind(a.created_ms);
                Ok(self.exec_bumped(q).await?.is_some())
            }

            async fn service_account(
                &self,
                id: &str,
            ) -> Result<Option<ServiceAccountRecord>, StoreError> {
                Ok(sqlx::query_as(
                    "SELECT id, name, team_id, role, disabled_ms, created_ms \
                     FROM service_accounts WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(self.pool())
                .await?)
            }

            async fn service_accounts(&self) -> Result<Vec<ServiceAccountRecord>, StoreError> {
                Ok(sqlx::query_as(
                    "SELECT id, name, team_id, role, disabled_ms, created_ms \
                     FROM service_accounts ORDER BY id",
                )
                .fetch_all(self.pool())
                .await?)
            }

            async fn set_service_account_disabled(
                &self,
                id: &str,
                disabled_ms: Option<i64>,
            ) -> Result<bool, StoreError> {
                let q = sqlx::query("UPDATE service_accounts SET disabled_ms = $2 WHERE id = $1")
                    .bind(id)
                    .bind(disabled_ms);
                Ok(self.exec_bumped(q).await?.unwrap_or(0) > 0)
            }

            async fn create_key(&self, key: &KeyRecord, secret_hash: &str) -> Result<(), StoreError> {
                let mut tx = self.pool().begin().await?;
                sqlx::query(&format!(
                    "INSERT INTO virtual_keys ({KEY_COLUMNS}) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
                ))
                .bind(&key.id)
                .bind(&key.name)
                .bind(&key.prefix)
                .bind(&key.user_id)
                .bind(&key.team_id)
                .bind(&key.service_account_id)
                .bind(&key.models)
                .bind(&key.limits)
                .bind(&key.metadata)
                .bind(key.expires_ms)
                .bind(key.revoked_ms)
                .bind(key.created_ms)
                .bind(&key.controls)
                .bind(key.allow_custom_cost)
                .bind(&key.tools_denied)
                .bind(&key.tools)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO key_secrets (hash, key_id, prefix, created_ms, expires_ms) \
                     VALUES ($1, $2, $3, $4, NULL)",
                )
                .bind(secret_hash)
                .bind(&key.id)
                .bind(&key.prefix)
                .bind(key.created_ms)
                .execute(&mut *tx)
                .await?;
                Self::bump(&mut tx).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn key(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
                Ok(
                    sqlx::query_as(&format!("SELECT {KEY_COLUMNS} FROM virtual_keys WHERE id = $1"))
                        .bind(id)
                        .fetch_optional(self.pool())
                        .await?,
                )
            }

            async fn keys(&self, f: &KeyFilter) -> Result<Vec<KeyRecord>, StoreError> {
                Ok(sqlx::query_as(&format!(
                    "SELECT {KEY_COLUMNS} FROM virtual_keys \
                     WHERE ($1 IS NULL OR user_id = $1) AND ($2 IS NULL OR team_id = $2) \
                     AND ($3 IS NULL OR service_account_id = $3) \
                     AND ($4 OR revoked_ms IS NULL) \
                     ORDER BY created_ms DESC, id DESC"
                ))
                .bind(&f.user_id)
                .bind(&f.team_id)
                .bind(&f.service_account_id)
                .bind(f.include_revoked)
                .fetch_all(self.pool())
                .await?)
            }

            async fn keys_page(
                &self,
                f: &KeyFilter,
                after: Option<&str>,
                limit: u32,
            ) -> Result<Vec<KeyRecord>, StoreError> {
                Ok(sqlx::query_as(&format!(
                    "SELECT {KEY_COLUMNS} FROM virtual_keys k \
                     WHERE ($1 IS NULL OR user_id = $1) AND ($2 IS NULL OR team_id = $2) \
                     AND ($3 IS NULL OR service_account_id = $3) \
                     AND ($4 OR revoked_ms IS NULL) \
                     AND ($5 IS NULL OR EXISTS (SELECT 1 FROM virtual_keys c WHERE c.id = $5 \
                         AND (k.created_ms < c.created_ms \
                              OR (k.created_ms = c.created_ms AND k.id < c.id)))) \
                     ORDER BY created_ms DESC, id DESC LIMIT $6"
                ))
                .bind(&f.user_id)
                .bind(&f.team_id)
                .bind(&f.service_account_id)
                .bind(f.include_revoked)
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(self.pool())
                .await?)
            }

            async fn key_by_secret(&self, secret_hash: &str) -> Result<Option<KeyMatch>, StoreError> {
                let row: Option<KeyMatchRow> = sqlx::query_as(&format!(
                    "SELECT {KEY_COLUMNS_K}, s.expires_ms AS secret_expires_ms \
                     FROM key_secrets s JOIN virtual_keys k ON k.id = s.key_id WHERE s.hash = $1"
                ))
                .bind(secret_hash)
                .fetch_optional(self.pool())
                .await?;
                Ok(row.map(|r| KeyMatch {
                    key: r.key,
                    secret_expires_ms: r.secret_expires_ms,
                }))
            }

            async fn key_secrets(&self) -> Result<Vec<KeySecret>, StoreError> {
                let rows: Vec<KeySecretRow> = sqlx::query_as(&format!(
                    "SELECT {KEY_COLUMNS_K}, s.hash AS secret_hash, \
                     s.expires_ms AS secret_expires_ms \
                     FROM key_secrets s JOIN virtual_keys k ON k.id = s.key_id"
                ))
                .fetch_all(self.pool())
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|r| KeySecret {
                        hash: r.secret_hash,
                        found: KeyMatch {
                            key: r.key,
                            secret_expires_ms: r.secret_expires_ms,
                        },
                    })
                    .collect())
            }

            async fn revoke_key(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
                let q = sqlx::query(
                    "UPDATE virtual_keys SET revoked_ms = $2 WHERE id = $1 AND revoked_ms IS NULL",
                )
                .bind(id)
                .bind(now_ms);
                Ok(self.exec_bumped(q).await?.unwrap_or(0) > 0)
            }

            async fn update_key(&self, key: &KeyRecord) -> Result<bool, StoreError> {
                let q = sqlx::query(
                    "UPDATE virtual_keys SET name = $2, models = $3, limits = $4, metadata = $5, \
                     expires_ms = $6, controls = $7, allow_custom_cost = $8, tools_denied = $9, \
                     tools = $10 WHERE id = $1 AND revoked_ms IS NULL",
                )
                .bind(&key.id)
                .bind(&key.name)
                .bind(&key.models)
                .bind(&key.limits)
                .bind(&key.metadata)
                .bind(key.expires_ms)
                .bind(&key.controls)
                .bind(key.allow_custom_cost)
                .bind(&key.tools_denied)
                .bind(&key.tools);
                Ok(self.exec_bumped(q).await?.unwrap_or(0) > 0)
            }

            async fn rotate_key(
                &self,
                id: &str,
                new_hash: &str,
                new_prefix: &str,
                now_ms: i64,
                old_expires_ms: i64,
            ) -> Result<bool, StoreError> {
                let mut tx = self.pool().begin().await?;
                let live = sqlx::query(
                    "UPDATE virtual_keys SET prefix = $2 WHERE id = $1 AND revoked_ms IS NULL",
                )
                .bind(id)
                .bind(new_prefix)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if live == 0 {
                    return Ok(false);
                }
                sqlx::query(
                    "UPDATE key_secrets SET expires_ms = $2 WHERE key_id = $1 \
                     AND (expires_ms IS NULL OR expires_ms > $2)",
                )
                .bind(id)
                .bind(old_expires_ms)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO key_secrets (hash, key_id, prefix, created_ms, expires_ms) \
                     VALUES ($1, $2, $3, $4, NULL)",
                )
                .bind(new_hash)
                .bind(id)
                .bind(new_prefix)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
                Self::bump(&mut tx).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn create_credential(&self, c: &CredentialRecord) -> Result<bool, StoreError> {
                let q = sqlx::query(
                    "INSERT INTO provider_credentials (id, provider, alias, owner_kind, owner_id, \
                     sealed, hint, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&c.id)
                .bind(&c.provider)
                .bind(&c.alias)
                .bind(&c.owner_kind)
                .bind(&c.owner_id)
                .bind(&c.sealed)
                .bind(&c.hint)
                .bind(c.created_ms);
                Ok(self.exec_bumped(q).await?.is_some())
            }

            async fn credentials(&self) -> Result<Vec<CredentialRecord>, StoreError> {
                Ok(sqlx::query_as(
                    "SELECT id, provider, alias, owner_kind, owner_id, sealed, hint, created_ms \
                     FROM provider_credentials ORDER BY provider, alias",
                )
                .fetch_all(self.pool())
                .await?)
            }

            async fn delete_credential(&self, id: &str) -> Result<bool, StoreError> {
                let q = sqlx::query("DELETE FROM provider_credentials WHERE id = $1").bind(id);
                Ok(self.exec_bumped(q).await?.unwrap_or(0) > 0)
            }

            async fn replace_credential_secret(
                &self,
                id: &str,
                sealed: &str,
                hint: &str,
            ) -> Result<Option<CredentialRecord>, StoreError> {
                let q = sqlx::query(
                    "UPDATE provider_credentials SET sealed = $2, hint = $3 WHERE id = $1",
                )
                .bind(id)
                .bind(sealed)
                .bind(hint);
                if self.exec_bumped(q).await?.unwrap_or(0) == 0 {
                    return Ok(None);
                }
                Ok(sqlx::query_as(
                    "SELECT id, provider, alias, owner_kind, owner_id, sealed, hint, created_ms \
                     FROM provider_credentials WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(self.pool())
                .await?)
            }
        }
    };
}

tenancy_store!(SqliteStore, sqlx::Sqlite);
tenancy_store!(PostgresStore, sqlx::Postgres);
