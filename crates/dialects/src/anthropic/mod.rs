//! The Anthropic dialect: the Messages API, as spoken by Anthropic's SDKs and by Anthropic
//! upstreams.

mod blocks;
mod request;
mod response;
mod stream;

pub use request::{EncodeOptions, decode_request, encode_request};
pub use response::{decode_response, encode_response};
pub use stream::{AnthropicStreamDecoder, AnthropicStreamEncoder};

/// The API version sent to Anthropic upstreams.
pub const API_VERSION: &str = "2023-06-01";
