//! The provider layer's open end: [`ProviderApi`], what one kind of upstream API does for the
//! gateway, with one implementation per file ([`crate::openai`], [`crate::anthropic`],
//! [`crate::gemini`]).
//!
//! Two notions stay apart here. The **client dialect** ([`Dialect`]) is what a caller speaks to
//! the gateway: OpenAI's or Anthropic's API. The **wire format** ([`Wire`]) is what an upstream
//! speaks: those two, and formats no client speaks (Gemini). A wire format whose answers are
//! already in a client dialect ([`Wire::dialect`]) lets the gateway forward them as they are;
//! any other answer is decoded into the canonical model and re-encoded for the caller.
//!
//! An API builds requests and decodes answers; it never touches the network. How requests are
//! authenticated is declared as data ([`Authentication`]), for the gateway to carry out.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Uri};
use portcullis_core::{ChatRequest, ChatResponse, Dialect, EmbeddingsRequest, GatewayError};
use portcullis_dialects::StreamDecoder;
use portcullis_dialects::errors::decode_upstream_error;
use portcullis_dialects::frame::Framer;

use crate::kind::AuthScheme;
use crate::provider::ForwardedHeaders;

/// An upstream's wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Wire {
    /// OpenAI Chat Completions and Embeddings (OpenAI and every compatible server).
    OpenAi,
    /// Anthropic Messages.
    Anthropic,
    /// Google's Gemini `generateContent` API.
    Gemini,
}

impl Wire {
    /// The client dialect whose bytes this format's answers are, if any: such answers reach a
    /// caller of that dialect as the upstream sent them.
    pub fn dialect(self) -> Option<Dialect> {
        match self {
            Wire::OpenAi => Some(Dialect::OpenAi),
            Wire::Anthropic => Some(Dialect::Anthropic),
            Wire::Gemini => None,
        }
    }

    /// The format's name, as logs show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Wire::OpenAi => "openai",
            Wire::Anthropic => "anthropic",
            Wire::Gemini => "gemini",
        }
    }
}

/// How a provider's requests are authenticated. The provider declares it; the gateway carries
/// it out, so that signing or fetching a token (which may need the network) never happens in
/// a provider.
///
/// Today every kind sends a static key in a header; AWS SigV4 (the exact bytes sent, signed
/// after the request is built) and token sources (a token fetched, cached and refreshed by the
/// gateway, sent as a bearer) are the forms to come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Authentication {
    /// The key in a header, as the scheme says.
    Header(AuthScheme),
}

/// What one kind of upstream API does: builds the upstream request for a canonical request
/// (the URL chosen per request), and decodes its answers, errors and streams.
pub trait ProviderApi: Send + Sync + fmt::Debug {
    /// The wire format.
    fn wire(&self) -> Wire;

    /// Headers sent with every request, whatever it is (Anthropic's `anthropic-version`).
    fn fixed_headers(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }

    /// The URL and body of the chat request for `req` served by `model`. `headers` already
    /// hold the provider's headers and credential; an API adds what the request needs.
    fn chat(
        &self,
        req: &ChatRequest,
        model: &str,
        forwarded: ForwardedHeaders<'_>,
        headers: &mut HeaderMap,
    ) -> Result<(Uri, Vec<u8>), GatewayError>;

    /// The URL and body of the embeddings request for `req` served by `model`; `None` when the
    /// API has no embeddings.
    fn embeddings(
        &self,
        req: &EmbeddingsRequest,
        model: &str,
    ) -> Option<Result<(Uri, Vec<u8>), GatewayError>> {
        let _ = (req, model);
        None
    }

    /// A successful embeddings answer to `req` from `model` in OpenAI's format (the embeddings
    /// dialect): as it is for OpenAI-compatible upstreams, translated for the others.
    fn embeddings_response(
        &self,
        req: &EmbeddingsRequest,
        body: Bytes,
        model: &str,
    ) -> Result<Bytes, GatewayError> {
        let _ = (req, model);
        Ok(body)
    }

    /// Decodes a successful non-streamed chat answer.
    fn decode_chat_response(&self, body: &[u8]) -> Result<ChatResponse, GatewayError>;

    /// A decoder for this API's streams.
    fn stream_decoder(&self) -> Box<dyn StreamDecoder>;

    /// How this API's streams are framed: `None` for server-sent events.
    fn stream_framer(&self) -> Option<Box<dyn Framer>> {
        None
    }

    /// Turns an error answer (`status`, its `Retry-After`, its body) into a [`GatewayError`].
    fn decode_error(
        &self,
        status: u16,
        retry_after: Option<Duration>,
        body: &[u8],
        provider: &str,
    ) -> GatewayError {
        decode_upstream_error(status, retry_after, body, provider)
    }
}
