//! Embedding requests and responses in canonical form.

use serde_json::Value;

use crate::chat::Usage;
use crate::dialect::Extras;

/// An embeddings request.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingsRequest {
    /// The model exactly as the client named it.
    pub model: String,
    /// What to embed.
    pub input: EmbeddingInput,
    /// Requested output dimensions.
    pub dimensions: Option<u32>,
    /// `float` or `base64`.
    pub encoding_format: Option<String>,
    /// End-user identifier.
    pub user: Option<String>,
    /// Dialect-specific fields forwarded to upstreams of the same dialect.
    pub extras: Extras,
}

/// The input of an embeddings request.
#[derive(Debug, Clone, PartialEq)]
pub enum EmbeddingInput {
    /// One text.
    Text(String),
    /// Several texts.
    Texts(Vec<String>),
    /// One pre-tokenized input.
    Tokens(Vec<u32>),
    /// Several pre-tokenized inputs.
    TokenBatches(Vec<Vec<u32>>),
}

impl EmbeddingInput {
    /// Whether there is nothing to embed.
    pub fn is_empty(&self) -> bool {
        match self {
            EmbeddingInput::Text(_) => false,
            EmbeddingInput::Texts(v) => v.is_empty(),
            EmbeddingInput::Tokens(v) => v.is_empty(),
            EmbeddingInput::TokenBatches(v) => v.is_empty() || v.iter().any(Vec::is_empty),
        }
    }
}

/// An embeddings response.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EmbeddingsResponse {
    /// The model that answered.
    pub model: String,
    /// One embedding per input, by index. Each is a JSON array of floats or a base64 string,
    /// as the client asked.
    pub data: Vec<(u32, Value)>,
    /// Token usage.
    pub usage: Usage,
}
