//! Persistence of the semantic response cache: one row per cached answer with the embedding
//! it was found by, so the in-memory index survives restarts and replicas can pick up each
//! other's entries.
//!
//! Embeddings are stored as little-endian `f32` bytes; the cached answer is opaque bytes.
//! Both SQL backends run the same statements, implemented once by a macro.

use async_trait::async_trait;
use uuid::Uuid;

use crate::{PostgresStore, SqliteStore, StoreError};

/// Length of a scope hash (SHA-256).
pub const SCOPE_HASH_LEN: usize = 32;

/// One cached answer as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SemanticEntry {
    /// Entry id (UUIDv7).
    pub id: Uuid,
    /// Hash of everything that must match exactly for the answer to be reused.
    pub scope: [u8; SCOPE_HASH_LEN],
    /// Which embedder produced `embedding`; rows of other embedders are never compared.
    pub embedder_id: String,
    /// The embedding, normalized to unit length.
    pub embedding: Vec<f32>,
    /// The cached answer, opaque to the store.
    pub answer: Vec<u8>,
    /// When the row was written, Unix milliseconds.
    pub created_ms: i64,
    /// When the entry stops being valid, Unix milliseconds.
    pub expires_ms: i64,
}

/// The semantic cache table.
#[async_trait]
pub trait SemanticStore: Send + Sync + std::fmt::Debug {
    /// Stores an entry. Idempotent: an entry already stored (same id) is left unchanged.
    async fn insert(&self, entry: &SemanticEntry) -> Result<(), StoreError>;

    /// Up to `limit` entries of `embedder_id` that are unexpired at `now_ms`, newest first.
    async fn load_recent(
        &self,
        embedder_id: &str,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<SemanticEntry>, StoreError>;

    /// Up to `limit` entries of `embedder_id` unexpired at `now_ms` that come after the
    /// position (`created_after_ms`, `after_id`) in (`created_ms`, `id`) order — created
    /// later, or in the same millisecond with a greater id; with no `after_id`, created
    /// strictly later. Oldest first, so a caller pages forward by passing the last entry's
    /// `created_ms` and `id`, and never misses entries sharing a millisecond.
    async fn load_since(
        &self,
        embedder_id: &str,
        created_after_ms: i64,
        after_id: Option<Uuid>,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<SemanticEntry>, StoreError>;

    /// Deletes every entry expired at `now_ms`; returns how many were deleted.
    async fn delete_expired(&self, now_ms: i64) -> Result<u64, StoreError>;

    /// Keeps the newest `max_entries` entries of `embedder_id` (entries created in the same
    /// millisecond as the oldest kept one are kept too) and deletes the rest; returns how
    /// many were deleted.
    async fn trim(&self, embedder_id: &str, max_entries: u64) -> Result<u64, StoreError>;
}

/// Encodes an embedding as little-endian `f32` bytes.
pub fn encode_embedding(embedding: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(embedding.len() * 4);
    for value in embedding {
        out.extend_from_slice(&value.to_le_bytes());
    }
    out
}

/// Decodes little-endian `f32` bytes; `None` when the length is not a multiple of four.
pub fn decode_embedding(bytes: &[u8]) -> Option<Vec<f32>> {
    let (chunks, rest) = bytes.as_chunks::<4>();
    if !rest.is_empty() {
        return None;
    }
    Some(chunks.iter().map(|c| f32::from_le_bytes(*c)).collect())
}

const COLUMNS: &str =
    "id, scope, embedder_id, dimensions, embedding, answer, created_ms, expires_ms";

/// A row as read back.
#[derive(sqlx::FromRow)]
struct SemanticRow {
    id: String,
    scope: Vec<u8>,
    embedder_id: String,
    dimensions: i64,
    embedding: Vec<u8>,
    answer: Vec<u8>,
    created_ms: i64,
    expires_ms: i64,
}

impl SemanticRow {
    /// The entry, or `None` (logged) when the row is malformed: a damaged row is skipped
    /// rather than failing a whole load.
    fn into_entry(self) -> Option<SemanticEntry> {
        let id = Uuid::parse_str(&self.id).ok();
        let scope = <[u8; SCOPE_HASH_LEN]>::try_from(self.scope.as_slice()).ok();
        let embedding = decode_embedding(&self.embedding)
            .filter(|e| i64::try_from(e.len()).is_ok_and(|n| n == self.dimensions));
        match (id, scope, embedding) {
            (Some(id), Some(scope), Some(embedding)) => Some(SemanticEntry {
                id,
                scope,
                embedder_id: self.embedder_id,
                embedding,
                answer: self.answer,
                created_ms: self.created_ms,
                expires_ms: self.expires_ms,
            }),
            _ => {
                tracing::warn!(id = %self.id, "skipping a malformed semantic cache row");
                None
            }
        }
    }
}

fn limit_param(limit: u32) -> i64 {
    i64::from(limit.max(1))
}

macro_rules! semantic_store {
    ($store:ident) => {
        #[async_trait]
        impl SemanticStore for $store {
            async fn insert(&self, entry: &SemanticEntry) -> Result<(), StoreError> {
                let dimensions = i64::try_from(entry.embedding.len()).unwrap_or(i64::MAX);
                sqlx::query(
                    "INSERT INTO semantic_cache (id, scope, embedder_id, dimensions, embedding, \
                     answer, created_ms, expires_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(entry.id.to_string())
                .bind(entry.scope.as_slice())
                .bind(entry.embedder_id.as_str())
                .bind(dimensions)
                .bind(encode_embedding(&entry.embedding))
                .bind(entry.answer.as_slice())
                .bind(entry.created_ms)
                .bind(entry.expires_ms)
                .execute(self.pool())
                .await?;
                Ok(())
            }

            async fn load_recent(
                &self,
                embedder_id: &str,
                now_ms: i64,
                limit: u32,
            ) -> Result<Vec<SemanticEntry>, StoreError> {
                let rows: Vec<SemanticRow> = sqlx::query_as(&format!(
                    "SELECT {COLUMNS} FROM semantic_cache \
                     WHERE embedder_id = $1 AND expires_ms > $2 \
                     ORDER BY created_ms DESC, id DESC LIMIT $3"
                ))
                .bind(embedder_id)
                .bind(now_ms)
                .bind(limit_param(limit))
                .fetch_all(self.pool())
                .await?;
                Ok(rows.into_iter().filter_map(SemanticRow::into_entry).collect())
            }

            async fn load_since(
                &self,
                embedder_id: &str,
                created_after_ms: i64,
                after_id: Option<Uuid>,
                now_ms: i64,
                limit: u32,
            ) -> Result<Vec<SemanticEntry>, StoreError> {
                // Without an id, `$3` is NULL and only later milliseconds qualify.
                let rows: Vec<SemanticRow> = sqlx::query_as(&format!(
                    "SELECT {COLUMNS} FROM semantic_cache \
                     WHERE embedder_id = $1 AND expires_ms > $4 \
                     AND (created_ms > $2 OR (created_ms = $2 AND $3 IS NOT NULL AND id > $3)) \
                     ORDER BY created_ms ASC, id ASC LIMIT $5"
                ))
                .bind(embedder_id)
                .bind(created_after_ms)
                .bind(after_id.map(|id| id.to_string()))
                .bind(now_ms)
                .bind(limit_param(limit))
                .fetch_all(self.pool())
                .await?;
                Ok(rows.into_iter().filter_map(SemanticRow::into_entry).collect())
            }

            async fn delete_expired(&self, now_ms: i64) -> Result<u64, StoreError> {
                let done = sqlx::query("DELETE FROM semantic_cache WHERE expires_ms <= $1")
                    .bind(now_ms)
                    .execute(self.pool())
                    .await?;
                Ok(done.rows_affected())
            }

            async fn trim(&self, embedder_id: &str, max_entries: u64) -> Result<u64, StoreError> {
                if max_entries == 0 {
                    let done = sqlx::query("DELETE FROM semantic_cache WHERE embedder_id = $1")
                        .bind(embedder_id)
                        .execute(self.pool())
                        .await?;
                    return Ok(done.rows_affected());
                }
                // The created_ms of the oldest entry kept; everything older goes. When there
                // are fewer rows than `max_entries` the subquery is NULL and nothing matches.
                let done = sqlx::query(
                    "DELETE FROM semantic_cache WHERE embedder_id = $1 AND created_ms < (\
                     SELECT created_ms FROM semantic_cache WHERE embedder_id = $1 \
                     ORDER BY created_ms DESC LIMIT 1 OFFSET $2)",
                )
                .bind(embedder_id)
                .bind(i64::try_from(max_entries - 1).unwrap_or(i64::MAX))
                .execute(self.pool())
                .await?;
                Ok(done.rows_affected())
            }
        }
    };
}

semantic_store!(SqliteStore);
semantic_store!(PostgresStore);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeddings_round_trip_as_little_endian_bytes() {
        let v = vec![1.0f32, -0.5, 0.25, f32::MIN_POSITIVE];
        let bytes = encode_embedding(&v);
        assert_eq!(bytes.len(), 16);
        assert_eq!(&bytes[..4], &1.0f32.to_le_bytes());
        assert_eq!(decode_embedding(&bytes), Some(v));
        assert_eq!(decode_embedding(&bytes[..5]), None);
    }
}
