//! The semantic response cache: answers a chat request from a stored answer to an earlier
//! request that *means* the same thing, within a scope where everything else matches exactly.
//!
//! - [`text`]: what is compared ([`semantic_text`]: the role-labelled conversation) and what
//!   must match exactly ([`scope`]: tenant, target, instructions, tools, settings);
//! - [`embedder`]: the [`Embedder`] trait every embedder implements, and its errors;
//! - [`guard`]: the near-opposite guard — a [`Signature`] of each text (negation, antonyms,
//!   numbers, classes, entities) that a match must not [conflict](Conflict) with, over the
//!   word lists of [`lexicon`];
//! - [`local`]: [`LocalEmbedder`], a BERT-family sentence-embedding model run on the CPU from
//!   a directory of files, off the async executor;
//! - [`vector`]: [`Embedding`] (a unit-length vector with its quantized copy) and the dot
//!   product kernels;
//! - [`index`]: [`SemanticIndex`], the bounded in-memory brute-force index, per scope;
//! - [`cache`]: [`SemanticCache`], which ties an embedder, the index and a
//!   [`portcullis_store::SemanticStore`] together (load at startup, sync from other replicas,
//!   lookup, store);
//! - [`config`]: the `semantic_cache:` configuration block and its validation.
//!
//! Everything but [`config`] is the default `runtime` feature; without it (as the
//! configuration crate uses it) the crate links neither candle nor the tokenizers nor the store.

#[cfg(feature = "runtime")]
pub mod cache;
pub mod config;
#[cfg(feature = "runtime")]
pub mod embedder;
#[cfg(feature = "runtime")]
pub mod guard;
#[cfg(feature = "runtime")]
pub mod index;
#[cfg(feature = "runtime")]
pub mod lexicon;
#[cfg(feature = "runtime")]
pub mod local;
#[cfg(feature = "runtime")]
pub mod text;
#[cfg(feature = "runtime")]
pub mod vector;

#[cfg(feature = "runtime")]
pub use cache::{
    CacheOptions, Clock, Hit, Lookup, SemanticCache, SemanticError, SemanticStats, SystemClock,
};
pub use config::{
    DEFAULT_MAX_ENTRIES, DEFAULT_THRESHOLD, DEFAULT_TTL, EmbedderSpec, RawDuration, RawEmbedder,
    RawSemanticCache, RawSemanticCaches, SemanticCacheSettings, SemanticConfig, parse_duration,
};
#[cfg(feature = "runtime")]
pub use embedder::{EmbedError, Embedder};
#[cfg(feature = "runtime")]
pub use guard::{Conflict, Signature};
#[cfg(feature = "runtime")]
pub use index::{EntryId, GuardedMatch, IndexEntry, IndexError, IndexMatch, SemanticIndex};
#[cfg(feature = "runtime")]
pub use local::LocalEmbedder;
#[cfg(feature = "runtime")]
pub use text::{ScopeHash, scope, semantic_text};
#[cfg(feature = "runtime")]
pub use vector::{Embedding, EmbeddingError};
