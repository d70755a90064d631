//! [`SemanticCache`]: an embedder, the in-memory [`SemanticIndex`] and (optionally) a
//! [`SemanticStore`] working together.
//!
//! - [`SemanticCache::load`] fills the index from the store at startup (newest entries first,
//!   up to `max_entries`);
//! - [`SemanticCache::sync`] pulls entries other replicas wrote since the last sync (call it
//!   every few seconds);
//! - [`SemanticCache::lookup`] embeds the conversation text and finds the best entry of the
//!   scope at or above the threshold that does not say the opposite (the
//!   [near-opposite guard](crate::guard): the text's [`Signature`] must not conflict with the
//!   entry's); it hands back the embedding and the signature so that a miss can be stored
//!   without computing them twice;
//! - [`SemanticCache::store`] indexes an answer at once and writes it to the store in the
//!   background: a failed or refused write is counted and logged, never returned;
//! - [`SemanticCache::maintain`] deletes expired rows and trims the table (call it every
//!   minute or so).
//!
//! Each row's answer column holds the entry's signature in front of the answer
//! ([`guard::frame`]); rows without one, or with one computed by another revision of the
//! guard, are never loaded — an entry that cannot be checked for opposites is not served.
//! Rows written by another embedder (another [`Embedder::id`]) are never loaded. Rows are
//! stamped with their write time, and each sync re-reads `sync_overlap` before the previous
//! one, so a write still in flight at the previous sync, or a replica whose clock lags by
//! less than the overlap, is not missed; rows read twice are recognised by id.

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use portcullis_store::{SemanticEntry, SemanticStore, StoreError};
use tokio::sync::{Mutex, Semaphore};
use uuid::Uuid;

use crate::embedder::{EmbedError, Embedder};
use crate::guard::{self, Signature};
use crate::index::{EntryId, IndexEntry, SemanticIndex};
use crate::text::ScopeHash;
use crate::vector::Embedding;

/// The time, in Unix milliseconds. Injected so tests control expiry.
pub trait Clock: Send + Sync + Debug {
    /// Now, in Unix milliseconds.
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

/// Sizes and intervals of a [`SemanticCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheOptions {
    /// Entries kept in memory, and rows kept in the store per embedder.
    pub max_entries: usize,
    /// Store writes allowed in flight; a write beyond that is dropped and counted.
    pub max_pending_writes: usize,
    /// How far before the previous sync each sync starts reading.
    pub sync_overlap: Duration,
    /// Rows read per store query.
    pub page_size: u32,
}

impl Default for CacheOptions {
    fn default() -> Self {
        Self {
            max_entries: crate::config::DEFAULT_MAX_ENTRIES,
            max_pending_writes: 256,
            sync_overlap: Duration::from_secs(5),
            page_size: 1_000,
        }
    }
}

/// A cached answer that matched.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// The entry.
    pub id: EntryId,
    /// The cached answer, as stored.
    pub answer: Bytes,
    /// Cosine similarity between the request and the entry (report it to the client).
    pub score: f32,
}

/// The outcome of [`SemanticCache::lookup`].
#[derive(Debug, Clone)]
pub struct Lookup {
    /// The best entry at or above the threshold, if any.
    pub hit: Option<Hit>,
    /// The request's embedding: pass it to [`SemanticCache::store`] after a miss.
    pub embedding: Embedding,
    /// The request's signature: pass it to [`SemanticCache::store`] with the embedding.
    pub signature: Signature,
}

/// A failure of [`SemanticCache::load`], [`SemanticCache::sync`] or
/// [`SemanticCache::maintain`].
#[derive(Debug, thiserror::Error)]
pub enum SemanticError {
    /// The embedder failed.
    #[error(transparent)]
    Embed(#[from] EmbedError),
    /// The store failed.
    #[error("semantic cache store: {0}")]
    Store(#[from] StoreError),
}

/// Counters of a [`SemanticCache`], for metrics.
#[derive(Debug, Default)]
pub struct SemanticStats {
    /// Lookups that found an answer.
    pub hits: AtomicU64,
    /// Lookups that found none.
    pub misses: AtomicU64,
    /// Lookups whose best match at or above the threshold was passed over by the
    /// near-opposite guard (it says the opposite of the request). Such a lookup may still
    /// hit a lower, compatible entry.
    pub refused: AtomicU64,
    /// Lookups or stores that could not embed their text.
    pub embed_failures: AtomicU64,
    /// Answers indexed by [`SemanticCache::store`].
    pub stored: AtomicU64,
    /// Store writes that succeeded.
    pub writes_succeeded: AtomicU64,
    /// Store writes that failed (logged).
    pub writes_failed: AtomicU64,
    /// Store writes not attempted because too many were in flight, or no runtime was there.
    pub writes_dropped: AtomicU64,
    /// Entries added to the index by [`SemanticCache::load`] and [`SemanticCache::sync`].
    pub loaded: AtomicU64,
}

/// The semantic response cache of one embedder.
///
/// The threshold and the time to live are arguments of [`SemanticCache::lookup`] and
/// [`SemanticCache::store`], so routes with different settings can share one cache (one per
/// embedder); the scope keeps their entries apart anyway.
#[derive(Debug)]
pub struct SemanticCache {
    embedder: Arc<dyn Embedder>,
    index: SemanticIndex,
    store: Option<Arc<dyn SemanticStore>>,
    options: CacheOptions,
    clock: Arc<dyn Clock>,
    write_slots: Arc<Semaphore>,
    stats: Arc<SemanticStats>,
    /// When the last sync started (own clock); held while syncing, so syncs never overlap.
    synced_until_ms: Mutex<Option<i64>>,
}

impl SemanticCache {
    /// A cache over `embedder`, persisted in `store` when there is one.
    pub fn new(
        embedder: Arc<dyn Embedder>,
        store: Option<Arc<dyn SemanticStore>>,
        options: CacheOptions,
    ) -> Self {
        Self {
            embedder,
            index: SemanticIndex::new(options.max_entries),
            store,
            write_slots: Arc::new(Semaphore::new(options.max_pending_writes)),
            options,
            clock: Arc::new(SystemClock),
            stats: Arc::new(SemanticStats::default()),
            synced_until_ms: Mutex::new(None),
        }
    }

    /// Uses `clock` instead of the system clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The embedder.
    pub fn embedder(&self) -> &Arc<dyn Embedder> {
        &self.embedder
    }

    /// The in-memory index.
    pub fn index(&self) -> &SemanticIndex {
        &self.index
    }

    /// The counters.
    pub fn stats(&self) -> &SemanticStats {
        &self.stats
    }

    /// Fills the index with the newest unexpired entries of this embedder from the store;
    /// returns how many were added. Call once at startup.
    pub async fn load(&self) -> Result<usize, SemanticError> {
        let Some(store) = &self.store else {
            return Ok(0);
        };
        let mut synced = self.synced_until_ms.lock().await;
        let now = self.clock.now_ms();
        let limit = u32::try_from(self.options.max_entries).unwrap_or(u32::MAX);
        let rows = store.load_recent(self.embedder.id(), now, limit).await?;
        // Oldest first, so eviction order follows age.
        let added = rows
            .into_iter()
            .rev()
            .map(|row| usize::from(self.index_row(row, now)))
            .sum();
        self.stats.loaded.fetch_add(added as u64, Ordering::Relaxed);
        *synced = Some(now);
        Ok(added)
    }

    /// Adds the entries written to the store since the previous sync (by any replica);
    /// returns how many were new. Call every few seconds.
    pub async fn sync(&self) -> Result<usize, SemanticError> {
        let Some(store) = &self.store else {
            return Ok(0);
        };
        let mut synced = self.synced_until_ms.lock().await;
        let now = self.clock.now_ms();
        let overlap = i64::try_from(self.options.sync_overlap.as_millis()).unwrap_or(i64::MAX);
        let mut after_ms = synced.map_or(i64::MIN, |t| t.saturating_sub(overlap));
        let mut after_id = None;
        let page = self.options.page_size.max(1);
        let mut added = 0;
        loop {
            let rows = store
                .load_since(self.embedder.id(), after_ms, after_id, now, page)
                .await?;
            let full = rows.len() >= page as usize;
            if let Some(last) = rows.last() {
                (after_ms, after_id) = (last.created_ms, Some(last.id));
            }
            added += rows
                .into_iter()
                .filter(|row| !self.index.contains(&row.id))
                .map(|row| usize::from(self.index_row(row, now)))
                .sum::<usize>();
            if !full {
                break;
            }
        }
        self.stats.loaded.fetch_add(added as u64, Ordering::Relaxed);
        *synced = Some(now);
        Ok(added)
    }

    /// Embeds `text` (see [`crate::semantic_text`]) and looks for the best entry of `scope`
    /// whose cosine similarity is at least `threshold`.
    pub async fn lookup(
        &self,
        scope: &ScopeHash,
        text: &str,
        threshold: f32,
    ) -> Result<Lookup, EmbedError> {
        let embedding = self.embed(text).await?;
        let signature = Signature::of(text);
        let hit = self.lookup_embedding(scope, &embedding, &signature, threshold);
        Ok(Lookup {
            hit,
            embedding,
            signature,
        })
    }

    /// [`SemanticCache::lookup`] with a vector computed elsewhere (by an embeddings model the
    /// caller's request pipeline called): checked, normalized and counted like the embedder's.
    pub fn lookup_vector(
        &self,
        scope: &ScopeHash,
        text: &str,
        vector: Vec<f32>,
        threshold: f32,
    ) -> Result<Lookup, EmbedError> {
        let embedding = match Embedding::new(vector) {
            Ok(e) => e,
            Err(e) => {
                self.stats.embed_failures.fetch_add(1, Ordering::Relaxed);
                return Err(EmbedError::InvalidVector(e.to_string()));
            }
        };
        let signature = Signature::of(text);
        let hit = self.lookup_embedding(scope, &embedding, &signature, threshold);
        Ok(Lookup {
            hit,
            embedding,
            signature,
        })
    }

    /// Looks for the best entry of `scope` for an embedding and a signature computed
    /// already.
    pub fn lookup_embedding(
        &self,
        scope: &ScopeHash,
        embedding: &Embedding,
        signature: &Signature,
        threshold: f32,
    ) -> Option<Hit> {
        let guarded = self.index.lookup_compatible(
            scope,
            embedding,
            signature,
            threshold,
            self.clock.now_ms(),
        );
        if let Some((score, conflict)) = guarded.refused {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                %scope,
                score,
                %conflict,
                "semantic cache match refused: the request says the opposite"
            );
        }
        let found = guarded.found.map(|m| Hit {
            id: m.id,
            answer: m.answer,
            score: m.score,
        });
        let counter = if found.is_some() {
            &self.stats.hits
        } else {
            &self.stats.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Indexes `answer` under `embedding` and `signature` (both from the request's
    /// [`Lookup`]) in `scope` for `ttl`, and writes it to the store in the background.
    /// Returns the new entry's id, or `None` when nothing was stored (a zero TTL, a cache of
    /// zero entries, or an embedding whose dimensions the scope does not hold).
    ///
    /// Never waits and never fails: a store write that fails, or that finds too many writes
    /// in flight already, is counted in [`SemanticStats`] and logged.
    pub fn store(
        &self,
        scope: ScopeHash,
        embedding: Embedding,
        signature: Signature,
        answer: Bytes,
        ttl: Duration,
    ) -> Option<EntryId> {
        let now = self.clock.now_ms();
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let expires_ms = now.saturating_add(ttl_ms);
        let id = Uuid::now_v7();
        let row = self.store.as_ref().map(|_| {
            (
                embedding.values().to_vec(),
                guard::frame(&signature, &answer),
            )
        });
        let entry = IndexEntry {
            id,
            embedding,
            answer,
            expires_ms,
            signature,
        };
        match self.index.insert(scope, entry, now) {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => {
                tracing::warn!(%scope, error = %e, "semantic cache entry not stored");
                return None;
            }
        }
        self.stats.stored.fetch_add(1, Ordering::Relaxed);
        if let (Some(store), Some((values, answer))) = (&self.store, row) {
            let row = SemanticEntry {
                id,
                scope: scope.0,
                embedder_id: self.embedder.id().to_owned(),
                embedding: values,
                answer,
                created_ms: now,
                expires_ms,
            };
            self.write_in_background(store.clone(), row);
        }
        Some(id)
    }

    /// Embeds `text` and [stores](SemanticCache::store) `answer` under it.
    pub async fn store_text(
        &self,
        scope: ScopeHash,
        text: &str,
        answer: Bytes,
        ttl: Duration,
    ) -> Result<Option<EntryId>, EmbedError> {
        let embedding = self.embed(text).await?;
        Ok(self.store(scope, embedding, Signature::of(text), answer, ttl))
    }

    /// Waits until every background store write started so far has finished.
    pub async fn flush(&self) {
        let all = u32::try_from(self.options.max_pending_writes).unwrap_or(u32::MAX);
        if all > 0 {
            // The semaphore is never closed, so this only waits.
            let _all = self.write_slots.acquire_many(all).await;
        }
    }

    /// Purges expired entries from the index, deletes expired rows and keeps the newest
    /// `max_entries` rows of this embedder in the store.
    pub async fn maintain(&self) -> Result<(), SemanticError> {
        let now = self.clock.now_ms();
        self.index.purge_expired(now);
        if let Some(store) = &self.store {
            store.delete_expired(now).await?;
            store
                .trim(self.embedder.id(), self.options.max_entries as u64)
                .await?;
        }
        Ok(())
    }

    async fn embed(&self, text: &str) -> Result<Embedding, EmbedError> {
        let result = match self.embedder.embed(text).await {
            Ok(vector) => {
                Embedding::new(vector).map_err(|e| EmbedError::InvalidVector(e.to_string()))
            }
            Err(e) => Err(e),
        };
        if result.is_err() {
            self.stats.embed_failures.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Indexes a stored row; `false` when it belongs to another embedder, is unusable (its
    /// vector, or its signature: missing or of another revision of the guard), is known
    /// already or expired.
    fn index_row(&self, row: SemanticEntry, now: i64) -> bool {
        if row.embedder_id != self.embedder.id() {
            return false;
        }
        let Ok(embedding) = Embedding::new(row.embedding) else {
            tracing::debug!(id = %row.id, "skipping a semantic cache row with an unusable vector");
            return false;
        };
        let Some((signature, start)) =
            guard::unframe(&row.answer).map(|(s, answer)| (s, row.answer.len() - answer.len()))
        else {
            tracing::debug!(id = %row.id, "skipping a semantic cache row without its signature");
            return false;
        };
        let entry = IndexEntry {
            id: row.id,
            embedding,
            answer: Bytes::from(row.answer).slice(start..),
            expires_ms: row.expires_ms,
            signature,
        };
        match self.index.insert(ScopeHash(row.scope), entry, now) {
            Ok(added) => added,
            Err(e) => {
                tracing::debug!(id = %row.id, error = %e, "skipping a semantic cache row");
                false
            }
        }
    }

    fn write_in_background(&self, store: Arc<dyn SemanticStore>, mut row: SemanticEntry) {
        let runtime = tokio::runtime::Handle::try_current();
        let slot = self.write_slots.clone().try_acquire_owned();
        let (Ok(runtime), Ok(slot)) = (runtime, slot) else {
            self.stats.writes_dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                id = %row.id,
                "semantic cache write dropped: too many writes in flight"
            );
            return;
        };
        let stats = self.stats.clone();
        let clock = self.clock.clone();
        runtime.spawn(async move {
            let _slot = slot;
            // Stamped with the write time, so a sync's overlap only has to cover the write
            // itself, not the time since the request.
            row.created_ms = clock.now_ms().max(row.created_ms);
            match store.insert(&row).await {
                Ok(()) => {
                    stats.writes_succeeded.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    stats.writes_failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(id = %row.id, error = %e, "semantic cache write failed");
                }
            }
        });
    }
}
