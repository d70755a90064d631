//! Sessions of the web console (`console_sessions`): who signed in, how, and until when. Only
//! the digest of a session's token is stored. Both SQL backends run the same statements,
//! implemented once by a macro.

use async_trait::async_trait;

use crate::{PostgresStore, SqliteStore, StoreError};

/// One console session.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ConsoleSession {
    /// SHA-256 (hex) of the session token.
    pub id_digest: String,
    /// `master` or `user`.
    pub kind: String,
    /// The user, for `user` sessions.
    pub user_id: Option<String>,
    /// The digest of the master key signed in with, for `master` sessions.
    pub master_digest: Option<String>,
    /// How the session began: `master_key`, `password` or `oauth`.
    pub method: String,
    /// Unix milliseconds.
    pub created_ms: i64,
    /// When the session ends whatever happens, Unix milliseconds.
    pub expires_ms: i64,
    /// When it was last used (kept to within a minute), Unix milliseconds.
    pub last_seen_ms: i64,
}

/// Console sessions.
#[async_trait]
pub trait ConsoleSessionStore: Send + Sync + std::fmt::Debug {
    /// Stores a new session.
    async fn put_console_session(&self, session: &ConsoleSession) -> Result<(), StoreError>;
    /// The session whose token has digest `id_digest`.
    async fn console_session(&self, id_digest: &str) -> Result<Option<ConsoleSession>, StoreError>;
    /// Records a use of the session at `now_ms`.
    async fn touch_console_session(&self, id_digest: &str, now_ms: i64) -> Result<(), StoreError>;
    /// Ends a session; `false` when there was none.
    async fn delete_console_session(&self, id_digest: &str) -> Result<bool, StoreError>;
    /// Ends every session of `user_id` (a disabled or deleted user). How many ended.
    async fn delete_user_console_sessions(&self, user_id: &str) -> Result<u64, StoreError>;
    /// Deletes at most `limit` sessions that ended before `now_ms` or were idle since before
    /// `idle_cutoff_ms`. How many went.
    async fn delete_ended_console_sessions(
        &self,
        now_ms: i64,
        idle_cutoff_ms: i64,
        limit: u32,
    ) -> Result<u64, StoreError>;
}

macro_rules! console_session_store {
    ($store:ident) => {
        #[async_trait]
        impl ConsoleSessionStore for $store {
            async fn put_console_session(&self, s: &ConsoleSession) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO console_sessions (id_digest, kind, user_id, master_digest, \
                     method, created_ms, expires_ms, last_seen_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&s.id_digest)
                .bind(&s.kind)
                .bind(s.user_id.as_deref().map(|u| $store::stored(u).into_owned()))
                .bind(&s.master_digest)
                .bind(&s.method)
                .bind(s.created_ms)
                .bind(s.expires_ms)
                .bind(s.last_seen_ms)
                .execute(self.pool())
                .await?;
                Ok(())
            }

            async fn console_session(
                &self,
                id_digest: &str,
            ) -> Result<Option<ConsoleSession>, StoreError> {
                let row: Option<ConsoleSession> = sqlx::query_as(
                    "SELECT id_digest, kind, user_id, master_digest, method, created_ms, \
                     expires_ms, last_seen_ms FROM console_sessions WHERE id_digest = $1",
                )
                .bind(id_digest)
                .fetch_optional(self.pool())
                .await?;
                Ok(row.map(|s| ConsoleSession {
                    user_id: s.user_id.map($store::loaded),
                    ..s
                }))
            }

            async fn touch_console_session(
                &self,
                id_digest: &str,
                now_ms: i64,
            ) -> Result<(), StoreError> {
                sqlx::query(
                    "UPDATE console_sessions SET last_seen_ms = $2 \
                     WHERE id_digest = $1 AND last_seen_ms < $2",
                )
                .bind(id_digest)
                .bind(now_ms)
                .execute(self.pool())
                .await?;
                Ok(())
            }

            async fn delete_console_session(&self, id_digest: &str) -> Result<bool, StoreError> {
                let gone = sqlx::query("DELETE FROM console_sessions WHERE id_digest = $1")
                    .bind(id_digest)
                    .execute(self.pool())
                    .await?
                    .rows_affected();
                Ok(gone > 0)
            }

            async fn delete_user_console_sessions(&self, user_id: &str) -> Result<u64, StoreError> {
                let gone = sqlx::query("DELETE FROM console_sessions WHERE user_id = $1")
                    .bind($store::stored(user_id).into_owned())
                    .execute(self.pool())
                    .await?
                    .rows_affected();
                Ok(gone)
            }

            async fn delete_ended_console_sessions(
                &self,
                now_ms: i64,
                idle_cutoff_ms: i64,
                limit: u32,
            ) -> Result<u64, StoreError> {
                let gone = sqlx::query(
                    "DELETE FROM console_sessions WHERE id_digest IN (SELECT id_digest FROM \
                     console_sessions WHERE expires_ms < $1 OR last_seen_ms < $2 LIMIT $3)",
                )
                .bind(now_ms)
                .bind(idle_cutoff_ms)
                .bind(i64::from(limit.max(1)))
                .execute(self.pool())
                .await?
                .rows_affected();
                Ok(gone)
            }
        }
    };
}

console_session_store!(SqliteStore);
console_session_store!(PostgresStore);
