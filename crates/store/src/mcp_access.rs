//! Per-identity MCP routing, stored: access rules added at run time and users' or teams' own
//! credentials for MCP servers (sealed by the caller; this crate stores opaque text). Every
//! change bumps the tenancy version, so every replica's directory reloads them
//! ([`McpAccessStore`], a supertrait of [`crate::TenancyStore`]).

use async_trait::async_trait;

use crate::StoreError;
use crate::sql::{PostgresStore, SqliteStore};

/// One stored access rule. The lists are JSON arrays of strings.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct McpAccessRecord {
    /// Rule id.
    pub id: String,
    /// Globs over `<server>__<tool>`.
    pub tools: String,
    /// User ids.
    pub users: String,
    /// Team ids.
    pub teams: String,
    /// Roles.
    pub roles: String,
    /// `allow` or `deny`.
    pub effect: String,
    /// Unix milliseconds.
    pub created_ms: i64,
}

/// One stored MCP server credential of a user or a team.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct McpCredentialRecord {
    /// Credential id.
    pub id: String,
    /// The MCP server's name.
    pub server: String,
    /// `user` or `team`.
    pub owner_kind: String,
    /// The user or team id.
    pub owner_id: String,
    /// `headers` or `env`.
    pub kind: String,
    /// The sealed JSON object of names to values.
    pub sealed: String,
    /// JSON array of the names (not secret).
    pub names: String,
    /// Unix milliseconds.
    pub created_ms: i64,
}

/// The stored access rules and MCP credentials.
#[async_trait]
pub trait McpAccessStore: Send + Sync {
    /// Stores a rule; `false` when the id is taken.
    async fn create_mcp_access(&self, rule: &McpAccessRecord) -> Result<bool, StoreError>;
    /// Every stored rule, oldest first.
    async fn mcp_access(&self) -> Result<Vec<McpAccessRecord>, StoreError>;
    /// Deletes a rule; `false` when there was none.
    async fn delete_mcp_access(&self, id: &str) -> Result<bool, StoreError>;
    /// Stores a credential, replacing the owner's previous one for the same server.
    async fn put_mcp_credential(&self, credential: &McpCredentialRecord) -> Result<(), StoreError>;
    /// Every stored credential, by server then owner.
    async fn mcp_credentials(&self) -> Result<Vec<McpCredentialRecord>, StoreError>;
    /// Deletes a credential; `false` when there was none.
    async fn delete_mcp_credential(&self, server: &str, id: &str) -> Result<bool, StoreError>;
}

const BUMP: &str = "UPDATE tenancy_version SET version = version + 1 WHERE id = 1";
const CREDENTIAL_COLUMNS: &str =
    "id, server, owner_kind, owner_id, kind, sealed, names, created_ms";

macro_rules! mcp_access_store {
    ($store:ident) => {
        #[async_trait]
        impl McpAccessStore for $store {
            async fn create_mcp_access(&self, r: &McpAccessRecord) -> Result<bool, StoreError> {
                let mut tx = self.pool().begin().await?;
                let done = sqlx::query(
                    "INSERT INTO mcp_access_rules (id, tools, users, teams, roles, effect, \
                     created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&r.id)
                .bind(&r.tools)
                .bind(&r.users)
                .bind(&r.teams)
                .bind(&r.roles)
                .bind(&r.effect)
                .bind(r.created_ms)
                .execute(&mut *tx)
                .await;
                match done {
                    Ok(_) => {}
                    Err(sqlx::Error::Database(d)) if d.is_unique_violation() => return Ok(false),
                    Err(e) => return Err(e.into()),
                }
                sqlx::query(BUMP).execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn mcp_access(&self) -> Result<Vec<McpAccessRecord>, StoreError> {
                Ok(sqlx::query_as(
                    "SELECT id, tools, users, teams, roles, effect, created_ms \
                     FROM mcp_access_rules ORDER BY created_ms, id",
                )
                .fetch_all(self.pool())
                .await?)
            }

            async fn delete_mcp_access(&self, id: &str) -> Result<bool, StoreError> {
                let mut tx = self.pool().begin().await?;
                let gone = sqlx::query("DELETE FROM mcp_access_rules WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if gone == 0 {
                    return Ok(false);
                }
                sqlx::query(BUMP).execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn put_mcp_credential(&self, c: &McpCredentialRecord) -> Result<(), StoreError> {
                let mut tx = self.pool().begin().await?;
                sqlx::query(
                    "DELETE FROM mcp_credentials WHERE server = $1 AND owner_kind = $2 \
                     AND owner_id = $3",
                )
                .bind(&c.server)
                .bind(&c.owner_kind)
                .bind(&c.owner_id)
                .execute(&mut *tx)
                .await?;
                sqlx::query(&format!(
                    "INSERT INTO mcp_credentials ({CREDENTIAL_COLUMNS}) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                ))
                .bind(&c.id)
                .bind(&c.server)
                .bind(&c.owner_kind)
                .bind(&c.owner_id)
                .bind(&c.kind)
                .bind(&c.sealed)
                .bind(&c.names)
                .bind(c.created_ms)
                .execute(&mut *tx)
                .await?;
                sqlx::query(BUMP).execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn mcp_credentials(&self) -> Result<Vec<McpCredentialRecord>, StoreError> {
                Ok(sqlx::query_as(&format!(
                    "SELECT {CREDENTIAL_COLUMNS} FROM mcp_credentials \
                     ORDER BY server, owner_kind, owner_id"
                ))
                .fetch_all(self.pool())
                .await?)
            }

            async fn delete_mcp_credential(
                &self,
                server: &str,
                id: &str,
            ) -> Result<bool, StoreError> {
                let mut tx = self.pool().begin().await?;
                let gone = sqlx::query("DELETE FROM mcp_credentials WHERE server = $1 AND id = $2")
                    .bind(server)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if gone == 0 {
                    return Ok(false);
                }
                sqlx::query(BUMP).execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(true)
            }
        }
    };
}

mcp_access_store!(SqliteStore);
mcp_access_store!(PostgresStore);
