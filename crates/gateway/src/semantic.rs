//! The semantic cache on the request path, over `portcullis-semantic`.
//!
//! For a route with `semantic_cache` on, the conversation text of a request is embedded and
//! compared with the answers stored for the same scope (tenant, target, instructions, tools
//! and settings must match exactly); the nearest at or above the threshold answers, with its
//! similarity in `x-portcullis-semantic-score`. On a miss the embedding travels with the
//! request and the complete answer is stored under it. One [`SemanticCache`] serves every
//! route that uses the same embedder; entries persist in the database and replicas pick up
//! each other's entries every few seconds.
//!
//! Embedders: a local sentence-embedding model ([`LocalEmbedder`], run off the executor), or
//! an embeddings model reachable through the gateway's own providers. The second is never
//! called from here: a [`SemanticQuery`] names the model, and the chat pipeline embeds the
//! text through the embeddings pipeline on the caller's behalf (its limits, budgets, provider
//! keys, breakers and failover, with its own log record and cost), then hands the vector
//! back. [`PipelineEmbedder`] only carries that model's identity for the stored entries.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use portcullis_config::SemanticConfig;
use portcullis_core::ChatRequest;
use portcullis_semantic::{
    CacheOptions, EmbedError, Embedder, EmbedderSpec, Embedding, LocalEmbedder, ScopeHash,
    SemanticCache, Signature, scope, semantic_text,
};
use portcullis_store::SemanticStore;

/// How often a replica reads the entries other replicas stored.
const SYNC_EVERY: Duration = Duration::from_secs(5);
/// How often expired entries are purged and the table trimmed.
const MAINTAIN_EVERY: Duration = Duration::from_secs(60);

/// Every semantic cache of the gateway, one per embedder.
#[derive(Debug)]
pub struct SemanticLayer {
    config: SemanticConfig,
    caches: Vec<(EmbedderSpec, Arc<SemanticCache>)>,
}

/// A semantic hit.
#[derive(Debug)]
pub struct SemanticHit {
    /// The stored answer (an encoded cache entry).
    pub answer: Bytes,
    /// Cosine similarity with the request.
    pub score: f32,
}

/// The right to store the answer of a request that missed.
#[derive(Debug)]
pub struct SemanticFill {
    cache: Arc<SemanticCache>,
    scope: ScopeHash,
    embedding: Embedding,
    signature: Signature,
    ttl: Duration,
}

impl SemanticFill {
    /// Stores `answer` (an encoded cache entry) under the request's embedding.
    pub fn fill(self, answer: Bytes) {
        self.cache
            .store(self.scope, self.embedding, self.signature, answer, self.ttl);
    }
}

/// What a semantic lookup found.
#[derive(Debug)]
pub enum SemanticLookup {
    /// A stored answer close enough.
    Hit(SemanticHit),
    /// None: store the answer afterwards.
    Miss(SemanticFill),
    /// The semantic cache does not apply.
    Bypass,
}

/// Why the semantic cache could not start.
#[derive(Debug, thiserror::Error)]
#[error("semantic cache: {0}")]
pub struct SemanticSetupError(String);

impl SemanticLayer {
    /// The caches `config` asks for, loaded from the store, with their sync and maintenance
    /// tasks running; `None` when no route uses the semantic cache.
    pub async fn build(
        config: &SemanticConfig,
        store: Arc<dyn SemanticStore>,
    ) -> Result<Option<Self>, SemanticSetupError> {
        // One cache per embedder, sized for the largest bound any route sets.
        let mut wanted: Vec<(EmbedderSpec, usize)> = Vec::new();
        for settings in config.all() {
            match wanted
                .iter_mut()
                .find(|(spec, _)| *spec == settings.embedder)
            {
                Some((_, max)) => *max = (*max).max(settings.max_entries),
                None => wanted.push((settings.embedder.clone(), settings.max_entries)),
            }
        }
        let mut caches = Vec::with_capacity(wanted.len());
        for (spec, max_entries) in wanted {
            let embedder: Arc<dyn Embedder> = match &spec {
                EmbedderSpec::Local(dir) => {
                    let dir = dir.clone();
                    let loaded = tokio::task::spawn_blocking(move || LocalEmbedder::load(dir))
                        .await
                        .map_err(|e| SemanticSetupError(e.to_string()))?
                        .map_err(|e| SemanticSetupError(e.to_string()))?;
                    Arc::new(loaded)
                }
                EmbedderSpec::Model(model) => Arc::new(PipelineEmbedder::new(model)),
            };
            let cache = Arc::new(SemanticCache::new(
                embedder,
                Some(store.clone()),
                CacheOptions {
                    max_entries,
                    ..CacheOptions::default()
                },
            ));
            match cache.load().await {
                Ok(n) => tracing::info!(entries = n, "semantic cache loaded"),
                Err(e) => tracing::warn!("loading the semantic cache failed: {e}"),
            }
            spawn_upkeep(&cache);
            caches.push((spec, cache));
        }
        if caches.is_empty() {
            return Ok(None);
        }
        Ok(Some(Self {
            config: config.clone(),
            caches,
        }))
    }

    /// Every cache, for metrics.
    pub fn caches(&self) -> impl Iterator<Item = &Arc<SemanticCache>> {
        self.caches.iter().map(|(_, c)| c)
    }

    /// What a semantic lookup of `request` for `tenant` on `target` (route or
    /// `provider/model`) needs, or `None` when the semantic cache does not apply.
    pub fn query(
        &self,
        route: Option<&str>,
        tenant: &str,
        target: &str,
        request: &ChatRequest,
    ) -> Option<SemanticQuery> {
        let settings = self.config.settings(route)?;
        let (spec, cache) = self
            .caches
            .iter()
            .find(|(spec, _)| *spec == settings.embedder)?;
        let text = semantic_text(request);
        if text.is_empty() {
            return None;
        }
        Some(SemanticQuery {
            cache: cache.clone(),
            scope: scope(request, tenant, target),
            text,
            threshold: settings.threshold,
            ttl: settings.ttl,
            model: match spec {
                EmbedderSpec::Model(model) => Some(model.clone()),
                EmbedderSpec::Local(_) => None,
            },
        })
    }
}

/// One request's semantic lookup, before its text is embedded.
#[derive(Debug)]
pub struct SemanticQuery {
    cache: Arc<SemanticCache>,
    scope: ScopeHash,
    text: String,
    threshold: f32,
    ttl: Duration,
    model: Option<String>,
}

impl SemanticQuery {
    /// The embeddings model the caller's pipeline must call for the vector, when the cache
    /// does not embed locally.
    pub fn embeddings_model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    /// The text to embed.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Embeds the text with the local model and looks it up.
    pub async fn lookup(self) -> SemanticLookup {
        let found = self
            .cache
            .lookup(&self.scope, &self.text, self.threshold)
            .await;
        self.finish(found)
    }

    /// Looks up a vector the embeddings pipeline computed.
    pub fn lookup_vector(self, vector: Vec<f32>) -> SemanticLookup {
        let found = self
            .cache
            .lookup_vector(&self.scope, &self.text, vector, self.threshold);
        self.finish(found)
    }

    fn finish(self, found: Result<portcullis_semantic::Lookup, EmbedError>) -> SemanticLookup {
        match found {
            Ok(found) => match found.hit {
                Some(hit) => SemanticLookup::Hit(SemanticHit {
                    answer: hit.answer,
                    score: hit.score,
                }),
                None => SemanticLookup::Miss(SemanticFill {
                    cache: self.cache,
                    scope: self.scope,
                    embedding: found.embedding,
                    signature: found.signature,
                    ttl: self.ttl,
                }),
            },
            Err(e) => {
                // An embedder that fails or is saturated costs a cache miss, not the request.
                tracing::warn!("semantic cache lookup skipped: {e}");
                SemanticLookup::Bypass
            }
        }
    }
}

fn spawn_upkeep(cache: &Arc<SemanticCache>) {
    let weak = Arc::downgrade(cache);
    tokio::spawn(async move {
        let mut sync = tokio::time::interval(SYNC_EVERY);
        let mut maintain = tokio::time::interval(MAINTAIN_EVERY);
        sync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        maintain.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = sync.tick() => {
                    let Some(cache) = weak.upgrade() else { return };
                    if let Err(e) = cache.sync().await {
                        tracing::warn!("semantic cache sync failed: {e}");
                    }
                }
                _ = maintain.tick() => {
                    let Some(cache) = weak.upgrade() else { return };
                    if let Err(e) = cache.maintain().await {
                        tracing::warn!("semantic cache maintenance failed: {e}");
                    }
                }
            }
        }
    });
}

/// The identity of an embeddings model reached through the gateway's own providers. Its
/// vectors come from the embeddings pipeline, called on each caller's behalf (see the module
/// documentation); embedding without a caller is refused, so no text is ever embedded outside
/// a caller's limits, budgets and provider keys.
#[derive(Debug)]
pub struct PipelineEmbedder {
    id: String,
}

impl PipelineEmbedder {
    /// The embedder of `model` (`provider/model`, a route or an alias).
    pub fn new(model: &str) -> Self {
        Self {
            id: format!("remote:{model}"),
        }
    }
}

#[async_trait]
impl Embedder for PipelineEmbedder {
    fn id(&self) -> &str {
        &self.id
    }

    fn dimensions(&self) -> usize {
        0
    }

    async fn embed(&self, _text: &str) -> Result<Vec<f32>, EmbedError> {
        Err(EmbedError::Upstream(
            "this embeddings model is called by the request pipeline, on a caller's behalf".into(),
        ))
    }
}

/// The first vector of an OpenAI-style embeddings answer.
pub fn first_embedding(body: &[u8]) -> Result<Vec<f32>, EmbedError> {
    #[derive(serde::Deserialize)]
    struct Answer {
        data: Vec<Item>,
    }
    #[derive(serde::Deserialize)]
    struct Item {
        embedding: Vec<f32>,
    }
    let answer: Answer = serde_json::from_slice(body)
        .map_err(|e| EmbedError::InvalidVector(format!("unreadable embeddings answer: {e}")))?;
    answer
        .data
        .into_iter()
        .next()
        .map(|i| i.embedding)
        .ok_or_else(|| EmbedError::InvalidVector("the embeddings answer had no vector".into()))
}
