//! [`SemanticIndex`]: the in-memory vector index of the semantic cache.
//!
//! Entries are grouped by scope; within a scope, vectors are stored row after row in
//! contiguous arrays (exact `f32` values and their 8-bit quantized copies), so a lookup is a
//! straight brute-force scan: the quantized rows are scanned, and only rows whose upper
//! bound reaches the threshold (and the best score so far) are rescored exactly. The result
//! is the best exact cosine similarity at or above the threshold, as an exhaustive `f32`
//! scan would find it ([`SemanticIndex::lookup_exhaustive`] is that scan, kept as a
//! reference).
//!
//! Bounds: at most `max_entries` entries across all scopes (inserting into a full index
//! evicts the oldest insertion); each entry has an expiry time, after which it never matches
//! and is purged lazily (by inserts, at most once a second while something has expired, or
//! by [`SemanticIndex::purge_expired`]).
//!
//! [`SemanticIndex::lookup_compatible`] is the lookup the cache makes: the best entry at or
//! above the threshold whose [`Signature`] does not [conflict](crate::guard) with the
//! request's. An entry that scores higher but says the opposite is passed over (and reported),
//! so a compatible entry below it can still answer.
//!
//! The lock is a `parking_lot::RwLock` held only for the scan or the update, never across an
//! `.await`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::RwLock;
use uuid::Uuid;

use crate::guard::{Conflict, Signature};
use crate::text::ScopeHash;
use crate::vector::{Embedding, dot_f32, dot_i8, upper_bound};

/// Identifies a cache entry (a UUIDv7, so ids sort by creation time).
pub type EntryId = Uuid;

/// Least time between two purges triggered by inserts.
const PURGE_INTERVAL_MS: i64 = 1_000;

/// An entry to index.
#[derive(Debug, Clone)]
pub struct IndexEntry {
    /// Its id.
    pub id: EntryId,
    /// The embedding it is found by.
    pub embedding: Embedding,
    /// The cached answer, opaque.
    pub answer: Bytes,
    /// When it stops matching, Unix milliseconds.
    pub expires_ms: i64,
    /// What the entry's text asserts, for the near-opposite guard.
    pub signature: Signature,
}

/// The best match of a lookup.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexMatch {
    /// The matching entry.
    pub id: EntryId,
    /// Cosine similarity between the query and the entry, in `[-1, 1]`.
    pub score: f32,
    /// The cached answer.
    pub answer: Bytes,
}

/// The outcome of [`SemanticIndex::lookup_compatible`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GuardedMatch {
    /// The best compatible entry at or above the threshold.
    pub found: Option<IndexMatch>,
    /// The best-scoring entry at or above the threshold that was passed over because it
    /// conflicts with the request, and why — when it scored higher than `found`.
    pub refused: Option<(f32, Conflict)>,
}

/// Why an entry cannot be indexed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    /// The scope already holds vectors of other dimensions (the embedder changed).
    #[error("the scope holds {expected}-dimensional vectors, not {got}")]
    Dimensions {
        /// Dimensions of the scope's vectors.
        expected: usize,
        /// Dimensions of the rejected vector.
        got: usize,
    },
}

/// The vectors of one scope, row after row.
#[derive(Debug, Default)]
struct ScopeRows {
    dimensions: usize,
    values: Vec<f32>,
    quantized: Vec<i8>,
    scales: Vec<f32>,
    quantized_l1: Vec<f32>,
    ids: Vec<EntryId>,
    expires_ms: Vec<i64>,
    answers: Vec<Bytes>,
    signatures: Vec<Signature>,
    row_of: HashMap<EntryId, usize>,
}

impl ScopeRows {
    fn len(&self) -> usize {
        self.ids.len()
    }

    fn push(&mut self, entry: IndexEntry) {
        let IndexEntry {
            id,
            embedding,
            answer,
            expires_ms,
            signature,
        } = entry;
        self.row_of.insert(id, self.ids.len());
        self.quantized.extend_from_slice(embedding.quantized());
        self.scales.push(embedding.scale());
        self.quantized_l1.push(embedding.quantized_l1());
        self.values.extend_from_slice(embedding.values());
        self.ids.push(id);
        self.expires_ms.push(expires_ms);
        self.answers.push(answer);
        self.signatures.push(signature);
    }

    /// Removes a row by moving the last row into its place.
    fn swap_remove(&mut self, row: usize) {
        let d = self.dimensions;
        let last = self.len() - 1;
        if row != last {
            self.values.copy_within(last * d..(last + 1) * d, row * d);
            self.quantized
                .copy_within(last * d..(last + 1) * d, row * d);
        }
        self.values.truncate(last * d);
        self.quantized.truncate(last * d);
        self.scales.swap_remove(row);
        self.quantized_l1.swap_remove(row);
        self.expires_ms.swap_remove(row);
        self.answers.swap_remove(row);
        self.signatures.swap_remove(row);
        let removed = self.ids.swap_remove(row);
        self.row_of.remove(&removed);
        if row != last {
            self.row_of.insert(self.ids[row], row);
        }
    }

    /// Removes every row expired at `now_ms`, keeping the others in order; returns their ids.
    fn remove_expired(&mut self, now_ms: i64, removed: &mut Vec<EntryId>) {
        let d = self.dimensions;
        let mut kept = 0;
        for row in 0..self.len() {
            if self.expires_ms[row] <= now_ms {
                removed.push(self.ids[row]);
                continue;
            }
            if kept != row {
                self.values.copy_within(row * d..(row + 1) * d, kept * d);
                self.quantized.copy_within(row * d..(row + 1) * d, kept * d);
                self.scales[kept] = self.scales[row];
                self.quantized_l1[kept] = self.quantized_l1[row];
                self.expires_ms[kept] = self.expires_ms[row];
                self.ids[kept] = self.ids[row];
                self.answers.swap(kept, row);
                self.signatures.swap(kept, row);
            }
            kept += 1;
        }
        if kept == self.len() {
            return;
        }
        self.values.truncate(kept * d);
        self.quantized.truncate(kept * d);
        self.scales.truncate(kept);
        self.quantized_l1.truncate(kept);
        self.expires_ms.truncate(kept);
        self.ids.truncate(kept);
        self.answers.truncate(kept);
        self.signatures.truncate(kept);
        self.row_of.clear();
        for (row, id) in self.ids.iter().enumerate() {
            self.row_of.insert(*id, row);
        }
    }

    /// The best row at or above `threshold` that is unexpired at `now_ms`.
    fn best(&self, query: &Embedding, threshold: f32, now_ms: i64) -> Option<(usize, f32)> {
        self.best_where(query, threshold, now_ms, |_, _| true)
    }

    /// The best row at or above `threshold`, unexpired at `now_ms`, that `accept`s; `accept`
    /// is asked only about rows that would be the best so far.
    fn best_where(
        &self,
        query: &Embedding,
        threshold: f32,
        now_ms: i64,
        mut accept: impl FnMut(usize, f32) -> bool,
    ) -> Option<(usize, f32)> {
        let d = self.dimensions;
        let mut best: Option<(usize, f32)> = None;
        let rows = self
            .quantized
            .chunks_exact(d)
            .zip(self.scales.iter().zip(&self.quantized_l1));
        for (row, (quantized, (&scale, &quantized_l1))) in rows.enumerate() {
            let bound = upper_bound(
                dot_i8(quantized, query.quantized()),
                scale,
                quantized_l1,
                query,
            );
            let floor = best.map_or(threshold, |(_, score)| score);
            if bound < floor || self.expires_ms[row] <= now_ms {
                continue;
            }
            let exact = dot_f32(&self.values[row * d..(row + 1) * d], query.values());
            if exact >= floor && best.is_none_or(|(_, score)| exact > score) && accept(row, exact) {
                best = Some((row, exact));
            }
        }
        best
    }

    fn matched(&self, (row, score): (usize, f32)) -> IndexMatch {
        IndexMatch {
            id: self.ids[row],
            score,
            answer: self.answers[row].clone(),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    scopes: HashMap<ScopeHash, ScopeRows>,
    /// Scope of every entry.
    scope_of: HashMap<EntryId, ScopeHash>,
    /// Entry ids in insertion order; may still hold ids removed since (skipped on eviction).
    order: VecDeque<EntryId>,
    /// The earliest expiry among the entries (`i64::MAX` when there are none).
    earliest_expiry_ms: i64,
    last_purge_ms: i64,
}

impl State {
    fn remove(&mut self, id: &EntryId) -> bool {
        let Some(scope) = self.scope_of.remove(id) else {
            return false;
        };
        if let Some(rows) = self.scopes.get_mut(&scope) {
            if let Some(row) = rows.row_of.get(id).copied() {
                rows.swap_remove(row);
            }
            if rows.len() == 0 {
                self.scopes.remove(&scope);
            }
        }
        true
    }

    fn purge_expired(&mut self, now_ms: i64) -> usize {
        self.last_purge_ms = now_ms;
        if now_ms < self.earliest_expiry_ms {
            return 0;
        }
        let mut removed = Vec::new();
        let mut earliest = i64::MAX;
        self.scopes.retain(|_, rows| {
            rows.remove_expired(now_ms, &mut removed);
            if let Some(min) = rows.expires_ms.iter().min() {
                earliest = earliest.min(*min);
            }
            rows.len() > 0
        });
        for id in &removed {
            self.scope_of.remove(id);
        }
        self.earliest_expiry_ms = earliest;
        self.compact_order();
        removed.len()
    }

    /// Drops removed ids from the insertion order once they outnumber the live ones.
    fn compact_order(&mut self) {
        if self.order.len() > 2 * self.scope_of.len() + 1024 {
            let live = &self.scope_of;
            self.order.retain(|id| live.contains_key(id));
        }
    }
}

/// A bounded, thread-safe vector index of cache entries, per scope.
#[derive(Debug)]
pub struct SemanticIndex {
    state: RwLock<State>,
    max_entries: usize,
    evicted: AtomicU64,
}

impl SemanticIndex {
    /// An empty index holding at most `max_entries` entries.
    pub fn new(max_entries: usize) -> Self {
        Self {
            state: RwLock::new(State {
                earliest_expiry_ms: i64::MAX,
                last_purge_ms: i64::MIN,
                ..State::default()
            }),
            max_entries,
            evicted: AtomicU64::new(0),
        }
    }

    /// The most entries the index holds.
    pub fn max_entries(&self) -> usize {
        self.max_entries
    }

    /// Adds an entry to `scope`, evicting the oldest entries if the index is full.
    ///
    /// Returns `Ok(false)` without changing anything when the id is already indexed, the entry
    /// is already expired at `now_ms`, or the index holds no entries at all (`max_entries`
    /// is 0). Fails when the scope holds vectors of other dimensions.
    pub fn insert(
        &self,
        scope: ScopeHash,
        entry: IndexEntry,
        now_ms: i64,
    ) -> Result<bool, IndexError> {
        if self.max_entries == 0 || entry.expires_ms <= now_ms {
            return Ok(false);
        }
        let mut state = self.state.write();
        if now_ms >= state.earliest_expiry_ms
            && now_ms.saturating_sub(state.last_purge_ms) >= PURGE_INTERVAL_MS
        {
            state.purge_expired(now_ms);
        }
        if state.scope_of.contains_key(&entry.id) {
            return Ok(false);
        }
        if let Some(rows) = state.scopes.get(&scope)
            && rows.dimensions != entry.embedding.dimensions()
        {
            return Err(IndexError::Dimensions {
                expected: rows.dimensions,
                got: entry.embedding.dimensions(),
            });
        }
        while state.scope_of.len() >= self.max_entries {
            let Some(oldest) = state.order.pop_front() else {
                break;
            };
            if state.remove(&oldest) {
                self.evicted.fetch_add(1, Ordering::Relaxed);
            }
        }
        state.earliest_expiry_ms = state.earliest_expiry_ms.min(entry.expires_ms);
        state.scope_of.insert(entry.id, scope);
        state.order.push_back(entry.id);
        let dimensions = entry.embedding.dimensions();
        state
            .scopes
            .entry(scope)
            .or_insert_with(|| ScopeRows {
                dimensions,
                ..ScopeRows::default()
            })
            .push(entry);
        Ok(true)
    }

    /// The best entry of `scope` whose cosine similarity with `query` is at least
    /// `threshold` and that is unexpired at `now_ms`, whatever its signature says (see
    /// [`SemanticIndex::lookup_compatible`]).
    pub fn lookup(
        &self,
        scope: &ScopeHash,
        query: &Embedding,
        threshold: f32,
        now_ms: i64,
    ) -> Option<IndexMatch> {
        let state = self.state.read();
        let rows = state.scopes.get(scope)?;
        if rows.dimensions != query.dimensions() {
            return None;
        }
        rows.best(query, threshold, now_ms)
            .map(|best| rows.matched(best))
    }

    /// The best entry of `scope` at or above `threshold`, unexpired at `now_ms`, whose
    /// signature does not conflict with `signature`; reports the best entry passed over for
    /// conflicting, when it scored higher.
    pub fn lookup_compatible(
        &self,
        scope: &ScopeHash,
        query: &Embedding,
        signature: &Signature,
        threshold: f32,
        now_ms: i64,
    ) -> GuardedMatch {
        let state = self.state.read();
        let Some(rows) = state.scopes.get(scope) else {
            return GuardedMatch::default();
        };
        if rows.dimensions != query.dimensions() {
            return GuardedMatch::default();
        }
        let mut refused: Option<(f32, Conflict)> = None;
        let found = rows
            .best_where(query, threshold, now_ms, |row, score| {
                match signature.conflict(&rows.signatures[row]) {
                    None => true,
                    Some(conflict) => {
                        if refused.is_none_or(|(best, _)| score > best) {
                            refused = Some((score, conflict));
                        }
                        false
                    }
                }
            })
            .map(|best| rows.matched(best));
        let refused = refused.filter(|(score, _)| found.as_ref().is_none_or(|f| *score > f.score));
        GuardedMatch { found, refused }
    }

    /// The same answer as [`SemanticIndex::lookup`] by an exhaustive exact `f32` scan: the
    /// reference the quantized scan is tested and benchmarked against.
    pub fn lookup_exhaustive(
        &self,
        scope: &ScopeHash,
        query: &Embedding,
        threshold: f32,
        now_ms: i64,
    ) -> Option<IndexMatch> {
        let state = self.state.read();
        let rows = state.scopes.get(scope)?;
        if rows.dimensions != query.dimensions() {
            return None;
        }
        let mut best: Option<(usize, f32)> = None;
        for (row, values) in rows.values.chunks_exact(rows.dimensions).enumerate() {
            let score = dot_f32(values, query.values());
            if score >= threshold
                && rows.expires_ms[row] > now_ms
                && best.is_none_or(|(_, b)| score > b)
            {
                best = Some((row, score));
            }
        }
        best.map(|best| rows.matched(best))
    }

    /// Whether the entry is indexed (expired or not).
    pub fn contains(&self, id: &EntryId) -> bool {
        self.state.read().scope_of.contains_key(id)
    }

    /// Removes an entry; returns whether it was there.
    pub fn remove(&self, id: &EntryId) -> bool {
        self.state.write().remove(id)
    }

    /// Removes every entry expired at `now_ms`; returns how many.
    pub fn purge_expired(&self, now_ms: i64) -> usize {
        self.state.write().purge_expired(now_ms)
    }

    /// Entries indexed (expired ones not yet purged included).
    pub fn len(&self) -> usize {
        self.state.read().scope_of.len()
    }

    /// Whether no entry is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Scopes with at least one entry.
    pub fn scopes(&self) -> usize {
        self.state.read().scopes.len()
    }

    /// Entries evicted to respect `max_entries` since the index was created.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }
}
