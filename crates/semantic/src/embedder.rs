//! The [`Embedder`] trait: text in, vector out. The local model ([`crate::LocalEmbedder`])
//! implements it here; an embedder that calls an embeddings model through the gateway's
//! providers implements it in the gateway.

use std::fmt::Debug;
use std::path::PathBuf;

use async_trait::async_trait;

/// Turns text into an embedding vector.
///
/// Implementations must never block the async executor: CPU-bound work belongs on a
/// blocking thread, network calls are awaited.
#[async_trait]
pub trait Embedder: Send + Sync + Debug {
    /// A stable identifier of the model and its configuration (for example
    /// `local:all-MiniLM-L6-v2:1a2b3c4d` or `openai/text-embedding-3-small`). Stored with
    /// every cache entry: entries of another identifier are never compared, so it must
    /// change whenever the vectors would.
    fn id(&self) -> &str;

    /// Number of dimensions of the vectors, or `0` while unknown.
    ///
    /// A remote embedder may learn it only from its first answer: it returns `0` until then.
    /// Nothing in the cache depends on it being known in advance: the index fixes each
    /// scope's dimensions with its first vector and never compares vectors of other
    /// dimensions, and stored entries are filtered by [`Embedder::id`], not by dimensions.
    fn dimensions(&self) -> usize;

    /// The embedding of `text`. It need not be normalized; the cache normalizes it.
    async fn embed(&self, text: &str) -> Result<Vec<f32>, EmbedError>;
}

/// Why an embedding could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The model files could not be read or are not a usable model.
    #[error("cannot load the embedding model from {path}: {message}")]
    Load {
        /// The model directory or file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The text could not be tokenized.
    #[error("tokenization failed: {0}")]
    Tokenize(String),
    /// The model failed while computing the embedding.
    #[error("embedding inference failed: {0}")]
    Inference(String),
    /// Too many embeddings are already waiting; the caller should skip the cache.
    #[error("the embedder is busy: {waiting} requests are already waiting")]
    Busy {
        /// Requests waiting when this one was refused.
        waiting: usize,
    },
    /// A remote embeddings model failed or answered something unusable.
    #[error("the embeddings upstream failed: {0}")]
    Upstream(String),
    /// The vector cannot be used (empty, zero, non-finite, or of unexpected dimensions).
    #[error("unusable embedding: {0}")]
    InvalidVector(String),
}
