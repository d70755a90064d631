//! Persistence of the OAuth 2.1 authorization server: registered clients, authorization
//! codes, refresh tokens and revocations.
//!
//! Codes, refresh tokens and client secrets are stored only as SHA-256 digests, computed by
//! the caller; principals are opaque JSON. Every token issued from one authorization code
//! belongs to a *family* (a row of `oauth_grants`): revoking the family revokes its refresh
//! tokens and lists its access tokens' ids as revoked. Statements that must not race are
//! single conditional updates (`… WHERE used_ms IS NULL`), and every issuance locks its
//! family's row first, so a revocation racing an issuance either sees the new tokens or makes
//! the issuance fail. Both SQL backends run the same statements, implemented once by a macro.

use async_trait::async_trait;

use crate::{PostgresStore, SqliteStore, StoreError};

/// A registered client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRecord {
    /// Public identifier.
    pub client_id: String,
    /// SHA-256 of the client secret; `None` for a public client.
    pub secret_hash: Option<Vec<u8>>,
    /// Human-readable name shown on the consent page.
    pub name: Option<String>,
    /// Redirect URIs, compared exactly.
    pub redirect_uris: Vec<String>,
    /// Grant types the client may use (`authorization_code`, `refresh_token`,
    /// `client_credentials`).
    pub grant_types: Vec<String>,
    /// Scopes the client may request; `None` means any scope the server offers.
    pub scopes: Option<Vec<String>>,
    /// `client_secret_basic`, `client_secret_post` or `none`.
    pub auth_method: String,
    /// The service account `client_credentials` tokens act as.
    pub service_account: Option<String>,
    /// When the client was registered, Unix milliseconds.
    pub created_ms: i64,
}

/// An authorization code as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRecord {
    /// SHA-256 of the code.
    pub code_hash: Vec<u8>,
    /// The grant (token family) the code starts.
    pub family_id: String,
    /// The client the code was issued to.
    pub client_id: String,
    /// The redirect URI of the authorization request, if it named one.
    pub redirect_uri: Option<String>,
    /// The PKCE (S256) code challenge.
    pub code_challenge: String,
    /// Granted scopes, space-separated.
    pub scope: String,
    /// The resource (RFC 8707) the grant is bound to; `None`: the server's default audience.
    pub resource: Option<String>,
    /// Who approved the request, opaque JSON.
    pub principal: String,
    /// Unix milliseconds.
    pub created_ms: i64,
    /// Unix milliseconds.
    pub expires_ms: i64,
}

/// What consuming a code found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeRedemption {
    /// The code was unused and is now used: the caller may issue tokens (expiry is the
    /// caller's to check).
    Redeemed(CodeRecord),
    /// The code had been used before: a replay. Its family should be revoked.
    AlreadyUsed {
        /// The family the code started.
        family_id: String,
    },
    /// No such code.
    Unknown,
}

/// A refresh token as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshRecord {
    /// SHA-256 of the token.
    pub token_hash: Vec<u8>,
    /// The family (grant) the token belongs to.
    pub family_id: String,
    /// The client the token was issued to.
    pub client_id: String,
    /// Granted scopes, space-separated.
    pub scope: String,
    /// The resource (RFC 8707) the grant is bound to; `None`: the server's default audience.
    pub resource: Option<String>,
    /// Who the token acts for, opaque JSON.
    pub principal: String,
    /// Unix milliseconds.
    pub created_ms: i64,
    /// Unix milliseconds.
    pub expires_ms: i64,
    /// When the token was exchanged for its successor.
    pub rotated_ms: Option<i64>,
    /// When the token (its family) was revoked.
    pub revoked_ms: Option<i64>,
}

/// An access token issued, remembered so that revoking its family revokes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRecord {
    /// The token's `jti`.
    pub jti: String,
    /// The family it was issued in; `None` for `client_credentials` tokens.
    pub family_id: Option<String>,
    /// The client it was issued to.
    pub client_id: String,
    /// Unix milliseconds.
    pub created_ms: i64,
    /// Unix milliseconds.
    pub expires_ms: i64,
}

/// The outcome of issuing tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Issue {
    /// The tokens are stored.
    Issued,
    /// The family was revoked (or never existed): nothing was stored.
    FamilyRevoked,
    /// The refresh token being exchanged was already rotated or revoked: nothing was stored.
    AlreadyRotated,
}

/// What revoking a family revoked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FamilyRevocation {
    /// Refresh tokens revoked by this call.
    pub refresh_tokens: u64,
    /// Every unexpired access token of the family, now listed as revoked: `(jti,
    /// expires_ms)`.
    pub access_tokens: Vec<(String, i64)>,
}

/// How long a used or expired code is kept so that a replay is still recognized (and its
/// family revoked): one day.
pub const CODE_RETENTION_MS: i64 = 86_400_000;

/// The OAuth server's tables.
#[async_trait]
pub trait OAuthStore: Send + Sync + std::fmt::Debug {
    /// Registers a client. Fails if the id is taken.
    async fn insert_client(&self, client: &ClientRecord) -> Result<(), StoreError>;

    /// The client `client_id`.
    async fn client(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError>;

    /// Deletes a client; whether it existed. Its tokens stop refreshing because every token
    /// request looks the client up.
    async fn delete_client(&self, client_id: &str) -> Result<bool, StoreError>;

    /// The clients whose tokens act as `service_account`, newest first.
    async fn service_account_clients(
        &self,
        service_account: &str,
    ) -> Result<Vec<ClientRecord>, StoreError>;

    /// Stores a new authorization code and creates the family it starts.
    async fn insert_code(&self, code: &CodeRecord) -> Result<(), StoreError>;

    /// Marks the code used, atomically: of several racing calls exactly one gets
    /// [`CodeRedemption::Redeemed`]. An expired code is consumed too (the caller refuses it).
    async fn consume_code(
        &self,
        code_hash: &[u8],
        now_ms: i64,
    ) -> Result<CodeRedemption, StoreError>;

    /// Stores an access token and optionally a refresh token, in `family_id` when given —
    /// unless that family is revoked ([`Issue::FamilyRevoked`]).
    async fn issue_tokens(
        &self,
        family_id: Option<&str>,
        refresh: Option<&RefreshRecord>,
        access: &AccessRecord,
        now_ms: i64,
    ) -> Result<Issue, StoreError>;

    /// The refresh token with digest `token_hash`, whatever its state.
    async fn refresh_token(&self, token_hash: &[u8]) -> Result<Option<RefreshRecord>, StoreError>;

    /// Exchanges the refresh token `old_hash` for `new` (same family) and stores `access`,
    /// atomically: of several racing calls for one token exactly one gets
    /// [`Issue::Issued`]; the others get [`Issue::AlreadyRotated`].
    async fn rotate_refresh_token(
        &self,
        old_hash: &[u8],
        new: &RefreshRecord,
        access: &AccessRecord,
        now_ms: i64,
    ) -> Result<Issue, StoreError>;

    /// Revokes a family: its refresh tokens, and its unexpired access tokens (listed as
    /// revoked). Idempotent.
    async fn revoke_family(
        &self,
        family_id: &str,
        now_ms: i64,
    ) -> Result<FamilyRevocation, StoreError>;

    /// Lists one access token as revoked until it expires.
    async fn revoke_access_token(
        &self,
        jti: &str,
        expires_ms: i64,
        now_ms: i64,
    ) -> Result<(), StoreError>;

    /// The ids of access tokens revoked and not yet expired at `now_ms`.
    async fn revoked_access_tokens(&self, now_ms: i64) -> Result<Vec<String>, StoreError>;

    /// Deletes what can no longer matter at `now_ms`: expired tokens and revocations, codes
    /// past [`CODE_RETENTION_MS`] after expiry, and families left empty. Returns how many
    /// rows were deleted.
    async fn prune(&self, now_ms: i64) -> Result<u64, StoreError>;
}

const CLIENT_COLUMNS: &str = "client_id, secret_hash, name, redirect_uris, grant_types, scopes, \
    auth_method, service_account, created_ms";
const CODE_COLUMNS: &str = "code_hash, family_id, client_id, redirect_uri, code_challenge, \
    scope, principal, created_ms, expires_ms, resource";
const REFRESH_COLUMNS: &str = "token_hash, family_id, client_id, scope, principal, created_ms, \
    expires_ms, rotated_ms, revoked_ms, resource";

#[derive(sqlx::FromRow)]
struct ClientRow {
    client_id: String,
    secret_hash: Option<Vec<u8>>,
    name: Option<String>,
    redirect_uris: String,
    grant_types: String,
    scopes: Option<String>,
    auth_method: String,
    service_account: Option<String>,
    created_ms: i64,
}

fn words(s: &str) -> Vec<String> {
    s.split_ascii_whitespace().map(str::to_owned).collect()
}

impl ClientRow {
    fn into_record(self) -> ClientRecord {
        let redirect_uris = serde_json::from_str(&self.redirect_uris).unwrap_or_else(|_| {
            tracing::warn!(client_id = %self.client_id, "malformed redirect URIs of an OAuth client");
            Vec::new()
        });
        ClientRecord {
            client_id: self.client_id,
            secret_hash: self.secret_hash,
            name: self.name,
            redirect_uris,
            grant_types: words(&self.grant_types),
            scopes: self.scopes.as_deref().map(words),
            auth_method: self.auth_method,
            service_account: self.service_account,
            created_ms: self.created_ms,
        }
    }
}

#[derive(sqlx::FromRow)]
struct CodeRow {
    code_hash: Vec<u8>,
    family_id: String,
    client_id: String,
    redirect_uri: Option<String>,
    code_challenge: String,
    scope: String,
    principal: String,
    created_ms: i64,
    expires_ms: i64,
    resource: Option<String>,
}

impl From<CodeRow> for CodeRecord {
    fn from(r: CodeRow) -> Self {
        CodeRecord {
            code_hash: r.code_hash,
            family_id: r.family_id,
            client_id: r.client_id,
            redirect_uri: r.redirect_uri,
            code_challenge: r.code_challenge,
            scope: r.scope,
            resource: r.resource,
            principal: r.principal,
            created_ms: r.created_ms,
            expires_ms: r.expires_ms,
        }
    }
}

#[derive(sqlx::FromRow)]
struct RefreshRow {
    token_hash: Vec<u8>,
    family_id: String,
    client_id: String,
    scope: String,
    principal: String,
    created_ms: i64,
    expires_ms: i64,
    rotated_ms: Option<i64>,
    revoked_ms: Option<i64>,
    resource: Option<String>,
}

impl From<RefreshRow> for RefreshRecord {
    fn from(r: RefreshRow) -> Self {
        RefreshRecord {
            token_hash: r.token_hash,
            family_id: r.family_id,
            client_id: r.client_id,
            scope: r.scope,
            resource: r.resource,
            principal: r.principal,
            created_ms: r.created_ms,
            expires_ms: r.expires_ms,
            rotated_ms: r.rotated_ms,
            revoked_ms: r.revoked_ms,
        }
    }
}

macro_rules! oauth_store {
    ($store:ident, $db:ty) => {
        impl $store {
            /// Inserts a refresh token and an access token inside `tx`.
            async fn oauth_insert_tokens(
                tx: &mut sqlx::Transaction<'_, $db>,
                refresh: Option<&RefreshRecord>,
                access: &AccessRecord,
            ) -> Result<(), StoreError> {
                if let Some(r) = refresh {
                    sqlx::query(&format!(
                        "INSERT INTO oauth_refresh_tokens ({REFRESH_COLUMNS}) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
                    ))
                    .bind(r.token_hash.as_slice())
                    .bind(r.family_id.as_str())
                    .bind(r.client_id.as_str())
                    .bind(r.scope.as_str())
                    .bind(r.principal.as_str())
                    .bind(r.created_ms)
                    .bind(r.expires_ms)
                    .bind(r.rotated_ms)
                    .bind(r.revoked_ms)
                    .bind(r.resource.as_deref())
                    .execute(&mut **tx)
                    .await?;
                }
                sqlx::query(
                    "INSERT INTO oauth_access_tokens (jti, family_id, client_id, created_ms, \
                     expires_ms) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(access.jti.as_str())
                .bind(access.family_id.as_deref())
                .bind(access.client_id.as_str())
                .bind(access.created_ms)
                .bind(access.expires_ms)
                .execute(&mut **tx)
                .await?;
                Ok(())
            }

            /// Locks the family's row for the rest of `tx`; false when it is revoked or
            /// missing.
            async fn oauth_lock_family(
                tx: &mut sqlx::Transaction<'_, $db>,
                family_id: &str,
                now_ms: i64,
            ) -> Result<bool, StoreError> {
                let done = sqlx::query(
                    "UPDATE oauth_grants SET used_ms = $2 \
                     WHERE family_id = $1 AND revoked_ms IS NULL",
                )
                .bind(family_id)
                .bind(now_ms)
                .execute(&mut **tx)
                .await?;
                Ok(done.rows_affected() == 1)
            }
        }

        #[async_trait]
        impl OAuthStore for $store {
            async fn insert_client(&self, c: &ClientRecord) -> Result<(), StoreError> {
                let redirect_uris =
                    serde_json::to_string(&c.redirect_uris).unwrap_or_else(|_| "[]".to_owned());
                sqlx::query(&format!(
                    "INSERT INTO oauth_clients ({CLIENT_COLUMNS}) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                ))
                .bind(c.client_id.as_str())
                .bind(c.secret_hash.as_deref())
                .bind(c.name.as_deref())
                .bind(redirect_uris)
                .bind(c.grant_types.join(" "))
                .bind(c.scopes.as_ref().map(|s| s.join(" ")))
                .bind(c.auth_method.as_str())
                .bind(c.service_account.as_deref())
                .bind(c.created_ms)
                .execute(self.pool())
                .await?;
                Ok(())
            }

            async fn client(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError> {
                let row: Option<ClientRow> = sqlx::query_as(&format!(
                    "SELECT {CLIENT_COLUMNS} FROM oauth_clients WHERE client_id = $1"
                ))
                .bind(client_id)
                .fetch_optional(self.pool())
                .await?;
                Ok(row.map(ClientRow::into_record))
            }

            async fn delete_client(&self, client_id: &str) -> Result<bool, StoreError> {
                let done = sqlx::query("DELETE FROM oauth_clients WHERE client_id = $1")
                    .bind(client_id)
                    .execute(self.pool())
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn service_account_clients(
                &self,
                service_account: &str,
            ) -> Result<Vec<ClientRecord>, StoreError> {
                let rows: Vec<ClientRow> = sqlx::query_as(&format!(
                    "SELECT {CLIENT_COLUMNS} FROM oauth_clients WHERE service_account = $1 \
                     ORDER BY created_ms DESC, client_id"
                ))
                .bind(service_account)
                .fetch_all(self.pool())
                .await?;
                Ok(rows.into_iter().map(ClientRow::into_record).collect())
            }

            async fn insert_code(&self, code: &CodeRecord) -> Result<(), StoreError> {
                let mut tx = self.pool().begin().await?;
                sqlx::query(
                    "INSERT INTO oauth_grants (family_id, client_id, created_ms) \
                     VALUES ($1, $2, $3)",
                )
                .bind(code.family_id.as_str())
                .bind(code.client_id.as_str())
                .bind(code.created_ms)
                .execute(&mut *tx)
                .await?;
                sqlx::query(&format!(
                    "INSERT INTO oauth_codes ({CODE_COLUMNS}) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
                ))
                .bind(code.code_hash.as_slice())
                .bind(code.family_id.as_str())
                .bind(code.client_id.as_str())
                .bind(code.redirect_uri.as_deref())
                .bind(code.code_challenge.as_str())
                .bind(code.scope.as_str())
                .bind(code.principal.as_str())
                .bind(code.created_ms)
                .bind(code.expires_ms)
                .bind(code.resource.as_deref())
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn consume_code(
                &self,
                code_hash: &[u8],
                now_ms: i64,
            ) -> Result<CodeRedemption, StoreError> {
                // One conditional update: of racing redemptions only one sees `used_ms` NULL.
                let row: Option<CodeRow> = sqlx::query_as(&format!(
                    "UPDATE oauth_codes SET used_ms = $2 \
                     WHERE code_hash = $1 AND used_ms IS NULL RETURNING {CODE_COLUMNS}"
                ))
                .bind(code_hash)
                .bind(now_ms)
                .fetch_optional(self.pool())
                .await?;
                if let Some(row) = row {
                    return Ok(CodeRedemption::Redeemed(row.into()));
                }
                let used: Option<(String,)> =
                    sqlx::query_as("SELECT family_id FROM oauth_codes WHERE code_hash = $1")
                        .bind(code_hash)
                        .fetch_optional(self.pool())
                        .await?;
                Ok(match used {
                    Some((family_id,)) => CodeRedemption::AlreadyUsed { family_id },
                    None => CodeRedemption::Unknown,
                })
            }

            async fn issue_tokens(
                &self,
                family_id: Option<&str>,
                refresh: Option<&RefreshRecord>,
                access: &AccessRecord,
                now_ms: i64,
            ) -> Result<Issue, StoreError> {
                let mut tx = self.pool().begin().await?;
                if let Some(family_id) = family_id
                    && !Self::oauth_lock_family(&mut tx, family_id, now_ms).await?
                {
                    tx.rollback().await?;
                    return Ok(Issue::FamilyRevoked);
                }
                Self::oauth_insert_tokens(&mut tx, refresh, access).await?;
                tx.commit().await?;
                Ok(Issue::Issued)
            }

            async fn refresh_token(
                &self,
                token_hash: &[u8],
            ) -> Result<Option<RefreshRecord>, StoreError> {
                let row: Option<RefreshRow> = sqlx::query_as(&format!(
                    "SELECT {REFRESH_COLUMNS} FROM oauth_refresh_tokens WHERE token_hash = $1"
                ))
                .bind(token_hash)
                .fetch_optional(self.pool())
                .await?;
                Ok(row.map(Into::into))
            }

            async fn rotate_refresh_token(
                &self,
                old_hash: &[u8],
                new: &RefreshRecord,
                access: &AccessRecord,
                now_ms: i64,
            ) -> Result<Issue, StoreError> {
                let mut tx = self.pool().begin().await?;
                if !Self::oauth_lock_family(&mut tx, &new.family_id, now_ms).await? {
                    tx.rollback().await?;
                    return Ok(Issue::FamilyRevoked);
                }
                let done = sqlx::query(
                    "UPDATE oauth_refresh_tokens SET rotated_ms = $2 WHERE token_hash = $1 \
                     AND family_id = $3 AND rotated_ms IS NULL AND revoked_ms IS NULL",
                )
                .bind(old_hash)
                .bind(now_ms)
                .bind(new.family_id.as_str())
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() != 1 {
                    tx.rollback().await?;
                    return Ok(Issue::AlreadyRotated);
                }
                Self::oauth_insert_tokens(&mut tx, Some(new), access).await?;
                tx.commit().await?;
                Ok(Issue::Issued)
            }

            async fn revoke_family(
                &self,
                family_id: &str,
                now_ms: i64,
            ) -> Result<FamilyRevocation, StoreError> {
                let mut tx = self.pool().begin().await?;
                // The family row first: an issuance holding it finishes before we go on (and
                // its tokens are then seen below); one starting later finds it revoked.
                sqlx::query(
                    "UPDATE oauth_grants SET revoked_ms = $2 \
                     WHERE family_id = $1 AND revoked_ms IS NULL",
                )
                .bind(family_id)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
                let refresh = sqlx::query(
                    "UPDATE oauth_refresh_tokens SET revoked_ms = $2 \
                     WHERE family_id = $1 AND revoked_ms IS NULL",
                )
                .bind(family_id)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO oauth_revoked_tokens (jti, expires_ms, revoked_ms) \
                     SELECT jti, expires_ms, $2 FROM oauth_access_tokens \
                     WHERE family_id = $1 AND expires_ms > $2 \
                     ON CONFLICT (jti) DO NOTHING",
                )
                .bind(family_id)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
                let access_tokens: Vec<(String, i64)> = sqlx::query_as(
                    "SELECT jti, expires_ms FROM oauth_access_tokens \
                     WHERE family_id = $1 AND expires_ms > $2",
                )
                .bind(family_id)
                .bind(now_ms)
                .fetch_all(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(FamilyRevocation {
                    refresh_tokens: refresh.rows_affected(),
                    access_tokens,
                })
            }

            async fn revoke_access_token(
                &self,
                jti: &str,
                expires_ms: i64,
                now_ms: i64,
            ) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO oauth_revoked_tokens (jti, expires_ms, revoked_ms) \
                     VALUES ($1, $2, $3) ON CONFLICT (jti) DO NOTHING",
                )
                .bind(jti)
                .bind(expires_ms)
                .bind(now_ms)
                .execute(self.pool())
                .await?;
                Ok(())
            }

            async fn revoked_access_tokens(&self, now_ms: i64) -> Result<Vec<String>, StoreError> {
                let rows: Vec<(String,)> =
                    sqlx::query_as("SELECT jti FROM oauth_revoked_tokens WHERE expires_ms > $1")
                        .bind(now_ms)
                        .fetch_all(self.pool())
                        .await?;
                Ok(rows.into_iter().map(|r| r.0).collect())
            }

            async fn prune(&self, now_ms: i64) -> Result<u64, StoreError> {
                let mut deleted = 0;
                let code_cutoff = now_ms.saturating_sub(CODE_RETENTION_MS);
                for (statement, cutoff) in [
                    ("DELETE FROM oauth_codes WHERE expires_ms < $1", code_cutoff),
                    (
                        "DELETE FROM oauth_refresh_tokens WHERE expires_ms < $1",
                        now_ms,
                    ),
                    (
                        "DELETE FROM oauth_access_tokens WHERE expires_ms < $1",
                        now_ms,
                    ),
                    (
                        "DELETE FROM oauth_revoked_tokens WHERE expires_ms < $1",
                        now_ms,
                    ),
                    (
                        "DELETE FROM oauth_grants WHERE created_ms < $1 \
                         AND NOT EXISTS (SELECT 1 FROM oauth_codes c \
                             WHERE c.family_id = oauth_grants.family_id) \
                         AND NOT EXISTS (SELECT 1 FROM oauth_refresh_tokens r \
                             WHERE r.family_id = oauth_grants.family_id) \
                         AND NOT EXISTS (SELECT 1 FROM oauth_access_tokens a \
                             WHERE a.family_id = oauth_grants.family_id)",
                        code_cutoff,
                    ),
                ] {
                    let done = sqlx::query(statement)
                        .bind(cutoff)
                        .execute(self.pool())
                        .await?;
                    deleted += done.rows_affected();
                }
                Ok(deleted)
            }
        }
    };
}

oauth_store!(SqliteStore, sqlx::Sqlite);
oauth_store!(PostgresStore, sqlx::Postgres);
