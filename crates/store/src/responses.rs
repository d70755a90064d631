//! The Responses API's stored answers (`stored_responses`): each response a caller asked to
//! keep, with its input and output items, so a later request continues the conversation
//! without resending it (`previous_response_id`). Every read and delete names the owner (the
//! caller's tenant): another tenant's response is as absent as one that never existed. Both
//! SQL backends run the same statements, implemented once by a macro.

use async_trait::async_trait;

use crate::{PostgresStore, SqliteStore, StoreError};

/// One stored response.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredResponse {
    /// `resp_…`.
    pub id: String,
    /// The tenant it belongs to.
    pub owner: String,
    /// The response it continues.
    pub previous_id: Option<String>,
    /// Unix milliseconds.
    pub created_ms: i64,
    /// This request's input, a JSON array of items.
    pub input_items: String,
    /// The answer's output, a JSON array of items.
    pub output_items: String,
    /// The `response` object as the client received it.
    pub response: String,
}

/// Stored Responses API answers.
#[async_trait]
pub trait ResponseStore: Send + Sync + std::fmt::Debug {
    /// Stores responses in one transaction. Idempotent: an id already stored is kept as it is.
    async fn put_responses(&self, batch: &[StoredResponse]) -> Result<(), StoreError>;
    /// `owner`'s response `id`.
    async fn response(&self, owner: &str, id: &str) -> Result<Option<StoredResponse>, StoreError>;
    /// The conversation `owner`'s response `id` ends: it and the responses it continues,
    /// oldest first, at most `limit` of them (the newest); empty when `id` is not `owner`'s.
    /// The chain stops at a response that is gone or not `owner`'s.
    async fn response_chain(
        &self,
        owner: &str,
        id: &str,
        limit: u32,
    ) -> Result<Vec<StoredResponse>, StoreError>;
    /// Deletes `owner`'s response `id`; `false` when there was none.
    async fn delete_response(&self, owner: &str, id: &str) -> Result<bool, StoreError>;
    /// Deletes at most `limit` responses, of any owner, created before `cutoff_ms` (Unix
    /// milliseconds): the retention's sweep. How many went.
    async fn delete_responses_before(&self, cutoff_ms: i64, limit: u32) -> Result<u64, StoreError>;
}

const COLUMNS: &str = "id, owner, previous_id, created_ms, input_items, output_items, response";

macro_rules! response_store {
    ($store:ident) => {
        #[async_trait]
        impl ResponseStore for $store {
            async fn put_responses(&self, batch: &[StoredResponse]) -> Result<(), StoreError> {
                let mut tx = self.pool().begin().await?;
                for r in batch {
                    sqlx::query(
                        "INSERT INTO stored_responses (id, owner, previous_id, created_ms, \
                         input_items, output_items, response) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                         ON CONFLICT (id) DO NOTHING",
                    )
                    .bind(&r.id)
                    .bind($store::stored(&r.owner).into_owned())
                    .bind(&r.previous_id)
                    .bind(r.created_ms)
                    .bind($store::stored(&r.input_items).into_owned())
                    .bind($store::stored(&r.output_items).into_owned())
                    .bind($store::stored(&r.response).into_owned())
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn response(
                &self,
                owner: &str,
                id: &str,
            ) -> Result<Option<StoredResponse>, StoreError> {
                let row: Option<StoredResponse> = sqlx::query_as(&format!(
                    "SELECT {COLUMNS} FROM stored_responses WHERE id = $1 AND owner = $2"
                ))
                .bind(id)
                .bind($store::stored(owner).into_owned())
                .fetch_optional(self.pool())
                .await?;
                Ok(row.map(|r| $store::loaded_response(r)))
            }

            async fn response_chain(
                &self,
                owner: &str,
                id: &str,
                limit: u32,
            ) -> Result<Vec<StoredResponse>, StoreError> {
                let limit = i32::try_from(limit.max(1)).unwrap_or(i32::MAX);
                let rows: Vec<StoredResponse> = sqlx::query_as(
                    "WITH RECURSIVE chain (id, previous_id, depth) AS ( \
                       SELECT id, previous_id, 1 FROM stored_responses \
                        WHERE id = $1 AND owner = $2 \
                       UNION ALL \
                       SELECT r.id, r.previous_id, c.depth + 1 FROM stored_responses r \
                         JOIN chain c ON r.id = c.previous_id \
                        WHERE r.owner = $2 AND c.depth < $3 \
                     ) \
                     SELECT r.id, r.owner, r.previous_id, r.created_ms, r.input_items, \
                            r.output_items, r.response \
                       FROM chain c JOIN stored_responses r ON r.id = c.id \
                      ORDER BY c.depth DESC",
                )
                .bind(id)
                .bind($store::stored(owner).into_owned())
                .bind(limit)
                .fetch_all(self.pool())
                .await?;
                Ok(rows.into_iter().map($store::loaded_response).collect())
            }

            async fn delete_response(&self, owner: &str, id: &str) -> Result<bool, StoreError> {
                let gone = sqlx::query("DELETE FROM stored_responses WHERE id = $1 AND owner = $2")
                    .bind(id)
                    .bind($store::stored(owner).into_owned())
                    .execute(self.pool())
                    .await?
                    .rows_affected();
                Ok(gone > 0)
            }

            async fn delete_responses_before(
                &self,
                cutoff_ms: i64,
                limit: u32,
            ) -> Result<u64, StoreError> {
                let limit = i64::from(limit.max(1));
                let gone = sqlx::query(
                    "DELETE FROM stored_responses WHERE id IN (SELECT id FROM stored_responses \
                     WHERE created_ms < $1 ORDER BY created_ms LIMIT $2)",
                )
                .bind(cutoff_ms)
                .bind(limit)
                .execute(self.pool())
                .await?
                .rows_affected();
                Ok(gone)
            }
        }

        impl $store {
            /// A stored response's text values as read back.
            fn loaded_response(r: StoredResponse) -> StoredResponse {
                StoredResponse {
                    owner: $store::loaded(r.owner),
                    input_items: $store::loaded(r.input_items),
                    output_items: $store::loaded(r.output_items),
                    response: $store::loaded(r.response),
                    ..r
                }
            }
        }
    };
}

response_store!(SqliteStore);
response_store!(PostgresStore);
