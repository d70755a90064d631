//! Wire dialects: the JSON shapes of the OpenAI and Anthropic APIs (spoken by clients and
//! upstreams) and of the Gemini API (spoken by upstreams), translated to and from the canonical
//! model of `portcullis-core`.
//!
//! Each dialect module decodes requests, responses, stream frames and error bodies into the
//! canonical model, and encodes the canonical model back out. The gateway uses a dialect in
//! two roles: as the *client* dialect (what the caller speaks) and as the *provider* dialect
//! (what an upstream speaks). Nothing here touches the network.
//!
//! - [`frame`]: the [`Framer`](frame::Framer) that cuts an upstream body into frames
//!   ([`SseFramer`](frame::SseFramer) for server-sent events), apart from decoding them.
//! - [`aws_eventstream`]: AWS's binary event stream (`application/vnd.amazon.eventstream`,
//!   Bedrock's streaming transport): an incremental decoder, an encoder, and its
//!   [`EventStreamFramer`](aws_eventstream::EventStreamFramer).
//! - [`sse`]: incremental server-sent-events parsing and writing.
//! - [`openai`]: OpenAI Chat Completions and Embeddings.
//! - [`anthropic`]: Anthropic Messages.
//! - [`gemini`]: Google's Gemini `generateContent` API, as an upstream format only.
//! - [`responses`]: OpenAI's Responses API, as a client format (`POST /v1/responses`) and as
//!   an upstream format (OpenAI models served only there).
//! - [`bedrock`]: Amazon Bedrock's Converse API (and InvokeModel's embedding bodies), as an
//!   upstream format only.
//! - [`stream`]: the decoder/encoder traits that turn frames into canonical stream events and
//!   events into the client's SSE frames.
//! - [`errors`]: error bodies in each dialect, and upstream error bodies turned into
//!   [`portcullis_core::GatewayError`]s.

pub mod anthropic;
pub mod aws_eventstream;
pub mod bedrock;
pub mod errors;
pub mod frame;
pub mod gemini;
pub mod openai;
pub mod responses;
pub mod sse;
pub mod stream;
pub mod strict;

mod json;

pub use stream::{FrameOutcome, StreamDecoder, StreamEncoder, events_from_response};

use portcullis_core::Dialect;

/// A stream encoder for a client speaking `dialect`; `now` (Unix seconds) stands in for a
/// creation time the upstream did not give.
pub fn stream_encoder(dialect: Dialect, include_usage: bool, now: u64) -> Box<dyn StreamEncoder> {
    match dialect {
        Dialect::OpenAi => Box::new(openai::OpenAiStreamEncoder::new(include_usage, now)),
        Dialect::Anthropic => Box::new(anthropic::AnthropicStreamEncoder::new()),
    }
}

/// Encodes a complete response for a client speaking `dialect`.
pub fn encode_response(dialect: Dialect, resp: &portcullis_core::ChatResponse) -> Vec<u8> {
    match dialect {
        Dialect::OpenAi => openai::encode_response(resp),
        Dialect::Anthropic => anthropic::encode_response(resp),
    }
}

/// Decodes a complete (non-streamed) chat response written in `dialect`.
pub fn decode_response(
    dialect: Dialect,
    body: &[u8],
) -> Result<portcullis_core::ChatResponse, portcullis_core::GatewayError> {
    match dialect {
        Dialect::OpenAi => openai::decode_response(body),
        Dialect::Anthropic => anthropic::decode_response(body),
    }
}

/// Decodes a client's chat request in `dialect`.
pub fn decode_request(
    dialect: Dialect,
    body: &[u8],
) -> Result<portcullis_core::ChatRequest, portcullis_core::GatewayError> {
    match dialect {
        Dialect::OpenAi => openai::decode_request(body),
        Dialect::Anthropic => anthropic::decode_request(body),
    }
}
