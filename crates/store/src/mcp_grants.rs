//! Persistence of users' OAuth grants for upstream MCP servers (`mcp_grants`): one row per
//! user and server, whose tokens are sealed by the caller's vault (the store sees only opaque
//! text). Grants are read by the gateway as needed (and kept opened briefly in its memory)
//! rather than through the tenancy snapshot, so their changes do not bump the tenancy version.
//! A user's grants are deleted when the user is disabled (`crate::tenancy`), so a user enabled
//! again connects again. Also the pending sign-ins of the connect flow (`mcp_connect_flows`),
//! each taken once. Both SQL backends run the same statements, implemented once by a macro.

use async_trait::async_trait;

use crate::{PostgresStore, SqliteStore, StoreError};

/// A user's grant for one MCP server.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct McpGrantRecord {
    /// The user.
    pub user_id: String,
    /// The MCP server.
    pub server: String,
    /// The tokens, sealed (opaque here).
    pub sealed: String,
    /// Unix milliseconds when the access token expires, if the server said.
    pub expires_ms: Option<i64>,
    /// Unix milliseconds.
    pub created_ms: i64,
    /// Unix milliseconds of the last refresh.
    pub updated_ms: i64,
}

/// Users' grants for MCP servers.
#[async_trait]
pub trait McpGrantStore: Send + Sync + std::fmt::Debug {
    /// The grant of `user` for `server`.
    async fn mcp_grant(
        &self,
        user: &str,
        server: &str,
    ) -> Result<Option<McpGrantRecord>, StoreError>;
    /// The grants for `server`, by user.
    async fn mcp_grants(&self, server: &str) -> Result<Vec<McpGrantRecord>, StoreError>;
    /// Stores the grant, replacing the user's grant for the server (its creation time kept).
    async fn put_mcp_grant(&self, grant: &McpGrantRecord) -> Result<(), StoreError>;
    /// Deletes the grant of `user` for `server`; `false` when there is none.
    async fn delete_mcp_grant(&self, user: &str, server: &str) -> Result<bool, StoreError>;

    /// Records a pending connect flow `id` of `user` for `server`, good until `expires_ms`
    /// (flows expired at `now_ms` are purged on the way).
    async fn begin_mcp_connect(
        &self,
        id: &str,
        user: &str,
        server: &str,
        expires_ms: i64,
        now_ms: i64,
    ) -> Result<(), StoreError>;
    /// Takes the pending flow `id` of `user` for `server`, once: `true` only for the first
    /// caller, and only while it has not expired at `now_ms`.
    async fn finish_mcp_connect(
        &self,
        id: &str,
        user: &str,
        server: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError>;
}

const COLUMNS: &str = "user_id, server, sealed, expires_ms, created_ms, updated_ms";

macro_rules! grant_store {
    ($store:ident) => {
        #[async_trait]
        impl McpGrantStore for $store {
            async fn mcp_grant(
                &self,
                user: &str,
                server: &str,
            ) -> Result<Option<McpGrantRecord>, StoreError> {
                Ok(sqlx::query_as(&format!(
                    "SELECT {COLUMNS} FROM mcp_grants WHERE user_id = $1 AND server = $2"
                ))
                .bind(user)
                .bind(server)
                .fetch_optional(self.pool())
                .await?)
            }

            async fn mcp_grants(&self, server: &str) -> Result<Vec<McpGrantRecord>, StoreError> {
                Ok(sqlx::query_as(&format!(
                    "SELECT {COLUMNS} FROM mcp_grants WHERE server = $1 ORDER BY user_id"
                ))
                .bind(server)
                .fetch_all(self.pool())
                .await?)
            }

            async fn put_mcp_grant(&self, g: &McpGrantRecord) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO mcp_grants \
                     (user_id, server, sealed, expires_ms, created_ms, updated_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (user_id, server) DO UPDATE SET sealed = excluded.sealed, \
                     expires_ms = excluded.expires_ms, updated_ms = excluded.updated_ms",
                )
                .bind(&g.user_id)
                .bind(&g.server)
                .bind(&g.sealed)
                .bind(g.expires_ms)
                .bind(g.created_ms)
                .bind(g.updated_ms)
                .execute(self.pool())
                .await?;
                Ok(())
            }

            async fn delete_mcp_grant(&self, user: &str, server: &str) -> Result<bool, StoreError> {
                let done = sqlx::query("DELETE FROM mcp_grants WHERE user_id = $1 AND server = $2")
                    .bind(user)
                    .bind(server)
                    .execute(self.pool())
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn begin_mcp_connect(
                &self,
                id: &str,
                user: &str,
                server: &str,
                expires_ms: i64,
                now_ms: i64,
            ) -> Result<(), StoreError> {
                sqlx::query("DELETE FROM mcp_connect_flows WHERE expires_ms < $1")
                    .bind(now_ms)
                    .execute(self.pool())
                    .await?;
                sqlx::query(
                    "INSERT INTO mcp_connect_flows (id, user_id, server, expires_ms) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(id)
                .bind(user)
                .bind(server)
                .bind(expires_ms)
                .execute(self.pool())
                .await?;
                Ok(())
            }

            async fn finish_mcp_connect(
                &self,
                id: &str,
                user: &str,
                server: &str,
                now_ms: i64,
            ) -> Result<bool, StoreError> {
                let done = sqlx::query(
                    "DELETE FROM mcp_connect_flows WHERE id = $1 AND user_id = $2 \
                     AND server = $3 AND expires_ms >= $4",
                )
                .bind(id)
                .bind(user)
                .bind(server)
                .bind(now_ms)
                .execute(self.pool())
                .await?;
                Ok(done.rows_affected() > 0)
            }
        }
    };
}

grant_store!(SqliteStore);
grant_store!(PostgresStore);
