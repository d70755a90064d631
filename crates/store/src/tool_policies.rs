//! Persistence of the tool policies added through the admin API (`tool_policies`): an ordered
//! list of rules, each the JSON of one rule as the configuration file's `tool_policies` would
//! hold it. The store neither parses nor validates them (that is `portcullis-policy`'s). Every
//! change bumps the tenancy version in the same transaction, so every replica polling it reads
//! the rules again. Both SQL backends run the same statements, implemented once by a macro.

use async_trait::async_trait;

use crate::{PostgresStore, SqliteStore, StoreError};

/// One stored rule.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ToolPolicyRecord {
    /// Rule id.
    pub id: String,
    /// Its place in the stored list (rules apply in ascending order).
    pub position: i64,
    /// The rule as JSON.
    pub spec: String,
    /// Unix milliseconds.
    pub created_ms: i64,
    /// The subject of the admin that added it.
    pub created_by: String,
}

/// The tool policies added at runtime.
#[async_trait]
pub trait ToolPolicyStore: Send + Sync + std::fmt::Debug {
    /// Every stored rule, in the order they apply.
    async fn tool_policies(&self) -> Result<Vec<ToolPolicyRecord>, StoreError>;
    /// Appends a rule after the stored ones (its `position` is chosen here); returns it as
    /// stored, `None` when its id is taken.
    async fn append_tool_policy(
        &self,
        rule: &ToolPolicyRecord,
    ) -> Result<Option<ToolPolicyRecord>, StoreError>;
    /// Replaces the whole stored list with `rules`, in that order, at once.
    async fn replace_tool_policies(&self, rules: &[ToolPolicyRecord]) -> Result<(), StoreError>;
    /// Deletes a rule; `false` when there was none.
    async fn delete_tool_policy(&self, id: &str) -> Result<bool, StoreError>;
}

const COLUMNS: &str = "id, position, spec, created_ms, created_by";
const BUMP: &str = "UPDATE tenancy_version SET version = version + 1 WHERE id = 1";

macro_rules! tool_policy_store {
    ($store:ident) => {
        #[async_trait]
        impl ToolPolicyStore for $store {
            async fn tool_policies(&self) -> Result<Vec<ToolPolicyRecord>, StoreError> {
                Ok(sqlx::query_as(&format!(
                    "SELECT {COLUMNS} FROM tool_policies ORDER BY position, id"
                ))
                .fetch_all(self.pool())
                .await?)
            }

            async fn append_tool_policy(
                &self,
                r: &ToolPolicyRecord,
            ) -> Result<Option<ToolPolicyRecord>, StoreError> {
                // The insert is the transaction's first statement: on SQLite it takes the write
                // lock at once (waiting its turn), where a read first could not upgrade while
                // another connection writes.
                let mut tx = self.pool().begin().await?;
                let done: Result<(i64,), sqlx::Error> = sqlx::query_as(
                    "INSERT INTO tool_policies (id, position, spec, created_ms, created_by) \
                     VALUES ($1, (SELECT COALESCE(MAX(position), -1) + 1 FROM tool_policies), \
                     $2, $3, $4) RETURNING position",
                )
                .bind(&r.id)
                .bind(&r.spec)
                .bind(r.created_ms)
                .bind(&r.created_by)
                .fetch_one(&mut *tx)
                .await;
                let stored = match done {
                    Ok((position,)) => ToolPolicyRecord {
                        position,
                        ..r.clone()
                    },
                    Err(sqlx::Error::Database(d)) if d.is_unique_violation() => return Ok(None),
                    Err(e) => return Err(e.into()),
                };
                sqlx::query(BUMP).execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(Some(stored))
            }

            async fn replace_tool_policies(
                &self,
                rules: &[ToolPolicyRecord],
            ) -> Result<(), StoreError> {
                let mut tx = self.pool().begin().await?;
                sqlx::query("DELETE FROM tool_policies")
                    .execute(&mut *tx)
                    .await?;
                for r in rules {
                    sqlx::query(
                        "INSERT INTO tool_policies (id, position, spec, created_ms, created_by) \
                         VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(&r.id)
                    .bind(r.position)
                    .bind(&r.spec)
                    .bind(r.created_ms)
                    .bind(&r.created_by)
                    .execute(&mut *tx)
                    .await?;
                }
                sqlx::query(BUMP).execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn delete_tool_policy(&self, id: &str) -> Result<bool, StoreError> {
                let mut tx = self.pool().begin().await?;
                let gone = sqlx::query("DELETE FROM tool_policies WHERE id = $1")
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

tool_policy_store!(SqliteStore);
tool_policy_store!(PostgresStore);
