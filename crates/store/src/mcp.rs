//! Persistence of the MCP servers added through the admin API (`mcp_servers`): each row is a
//! server entry as the configuration file would hold it under `mcp.servers.<name>`, without its
//! environment and header values, which are kept apart, sealed by the caller's vault.
//!
//! The store neither validates entries nor seals anything: validation is the `mcp` crate's,
//! sealing `portcullis-identity`'s. Every mutation bumps the tenancy version in the same
//! transaction, so every replica polling it notices the change. Both SQL backends run the same
//! statements, implemented once by a macro.

use async_trait::async_trait;

use crate::{PostgresStore, SqliteStore, StoreError};

/// An MCP server added at runtime.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct McpServerRecord {
    /// Its name: the prefix of its tools and its path under `/mcp/`.
    pub name: String,
    /// JSON object: the entry as written, with `env` and `headers` values left out.
    pub config: String,
    /// The `env` and `headers` values, sealed (opaque here); `None` when it has none.
    pub sealed: Option<String>,
    /// Unix milliseconds.
    pub created_ms: i64,
    /// Unix milliseconds of the last replacement.
    pub updated_ms: i64,
}

/// The MCP servers added at runtime.
#[async_trait]
pub trait McpServerStore: Send + Sync + std::fmt::Debug {
    /// Every stored server, in name order.
    async fn mcp_servers(&self) -> Result<Vec<McpServerRecord>, StoreError>;
    /// The server called `name`.
    async fn mcp_server(&self, name: &str) -> Result<Option<McpServerRecord>, StoreError>;
    /// Stores a new server; `false` when one of that name is stored already.
    async fn create_mcp_server(&self, server: &McpServerRecord) -> Result<bool, StoreError>;
    /// Replaces the stored server of that name (its creation time kept); `false` when there is
    /// none.
    async fn replace_mcp_server(&self, server: &McpServerRecord) -> Result<bool, StoreError>;
    /// Deletes the server called `name`; `false` when there is none.
    async fn delete_mcp_server(&self, name: &str) -> Result<bool, StoreError>;
}

const COLUMNS: &str = "name, config, sealed, created_ms, updated_ms";

macro_rules! mcp_store {
    ($store:ident, $db:ty) => {
        impl $store {
            /// Runs one statement and, when it changed a row, bumps the tenancy version in the
            /// same transaction; `None` on a unique-constraint violation.
            async fn exec_mcp<'q>(
                &self,
                query: sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>>,
            ) -> Result<Option<u64>, StoreError> {
                let mut tx = self.pool().begin().await?;
                let done = match query.execute(&mut *tx).await {
                    Ok(done) => done.rows_affected(),
                    Err(sqlx::Error::Database(d)) if d.is_unique_violation() => return Ok(None),
                    Err(e) => return Err(e.into()),
                };
                if done > 0 {
                    sqlx::query("UPDATE tenancy_version SET version = version + 1 WHERE id = 1")
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(Some(done))
            }
        }

        #[async_trait]
        impl McpServerStore for $store {
            async fn mcp_servers(&self) -> Result<Vec<McpServerRecord>, StoreError> {
                Ok(
                    sqlx::query_as(&format!("SELECT {COLUMNS} FROM mcp_servers ORDER BY name"))
                        .fetch_all(self.pool())
                        .await?,
                )
            }

            async fn mcp_server(&self, name: &str) -> Result<Option<McpServerRecord>, StoreError> {
                Ok(sqlx::query_as(&format!(
                    "SELECT {COLUMNS} FROM mcp_servers WHERE name = $1"
                ))
                .bind(name)
                .fetch_optional(self.pool())
                .await?)
            }

            async fn create_mcp_server(&self, s: &McpServerRecord) -> Result<bool, StoreError> {
                let q = sqlx::query(
                    "INSERT INTO mcp_servers (name, config, sealed, created_ms, updated_ms) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&s.name)
                .bind(&s.config)
                .bind(&s.sealed)
                .bind(s.created_ms)
                .bind(s.updated_ms);
                Ok(self.exec_mcp(q).await?.is_some())
            }

            async fn replace_mcp_server(&self, s: &McpServerRecord) -> Result<bool, StoreError> {
                let q = sqlx::query(
                    "UPDATE mcp_servers SET config = $2, sealed = $3, updated_ms = $4 \
                     WHERE name = $1",
                )
                .bind(&s.name)
                .bind(&s.config)
                .bind(&s.sealed)
                .bind(s.updated_ms);
                Ok(self.exec_mcp(q).await?.unwrap_or(0) > 0)
            }

            async fn delete_mcp_server(&self, name: &str) -> Result<bool, StoreError> {
                let q = sqlx::query("DELETE FROM mcp_servers WHERE name = $1").bind(name);
                Ok(self.exec_mcp(q).await?.unwrap_or(0) > 0)
            }
        }
    };
}

mcp_store!(SqliteStore, sqlx::Sqlite);
mcp_store!(PostgresStore, sqlx::Postgres);
