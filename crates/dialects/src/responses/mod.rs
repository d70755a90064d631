//! OpenAI's Responses API (`POST /v1/responses`), in both roles.
//!
//! As a **client** format: a request's `input` items, `instructions`, function tools and
//! settings decoded into the canonical [`ChatRequest`](portcullis_core::ChatRequest)
//! ([`decode_request`]), with what the `response` object repeats back kept aside
//! ([`ResponsesRequest::echo`]); a canonical answer encoded as a `response` object
//! ([`encode_response`]) or as the Responses stream's events, numbered by `sequence_number`
//! ([`ResponsesStreamEncoder`]). A stored conversation is items too: the input items and the
//! output items of each earlier turn, decoded by the same [`decode_items`].
//!
//! As an **upstream** format (OpenAI models served only by the Responses API): a canonical
//! request encoded as a Responses request ([`encode_request`]), and its answers and streams
//! decoded back ([`decode_response`], [`ResponsesStreamDecoder`]).
//!
//! Errors are OpenAI's error bodies in both roles ([`crate::errors`]). The ids of a
//! `response` object and of its items are the caller's to choose ([`ResponseContext`]): the
//! gateway names its answers itself, since it keeps them.

mod items;
mod request;
mod response;
mod stream;

pub use items::{decode_items, encode_output_items};
pub use request::{ResponsesRequest, decode_request, encode_request};
pub use response::{ResponseContext, decode_response, encode_response, usage_object};
pub use stream::{ResponsesStreamDecoder, ResponsesStreamEncoder};
