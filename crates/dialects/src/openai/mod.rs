//! The OpenAI dialect: Chat Completions and Embeddings, as spoken by OpenAI's SDKs and by every
//! OpenAI-compatible provider.

mod embeddings;
mod request;
mod response;
mod stream;

pub use embeddings::{
    EmbeddingsUsage, decode_embeddings_request, decode_embeddings_usage, encode_embeddings_request,
};
pub use request::{EncodeOptions, MaxTokensField, decode_request, encode_request};
pub use response::{decode_response, encode_response};
pub use stream::{OpenAiStreamDecoder, OpenAiStreamEncoder};

pub(crate) use request::empty_object_schema;
