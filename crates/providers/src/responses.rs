//! OpenAI's Responses API as an upstream: `POST {base}/responses`, for the OpenAI models served
//! only there (`o1-pro`, `o3-pro`, the deep-research models, `codex-*`, `computer-use-*`,
//! `gpt-5-pro`, `gpt-5-codex`). The OpenAI provider hands those models to this API
//! ([`ProviderApi::for_model`]), so chat-completions and messages callers reach them too: the
//! canonical request is encoded as a Responses request (asking OpenAI to keep nothing: the
//! gateway keeps conversations itself), and the `response` object and its stream are decoded
//! back. Its answers are in no client dialect, so they are always re-encoded for the caller.

use http::Uri;
use http::header::{HeaderMap, HeaderValue};
use portcullis_core::{ChatRequest, ChatResponse, GatewayError};
use portcullis_dialects::StreamDecoder;
use portcullis_dialects::responses;

use crate::api::{ProviderApi, Wire};
use crate::provider::{ForwardedHeaders, ProviderError};

/// Prefixes of the OpenAI models served only by the Responses API.
const RESPONSES_ONLY: &[&str] = &[
    "o1-pro",
    "o3-pro",
    "o3-deep-research",
    "o4-mini-deep-research",
    "codex-",
    "computer-use-",
    "gpt-5-pro",
    "gpt-5-codex",
    "gpt-5.1-codex",
];

/// Whether OpenAI serves `model` only through the Responses API.
pub fn is_responses_only(model: &str) -> bool {
    RESPONSES_ONLY.iter().any(|p| model.starts_with(p))
}

/// The Responses API at one base URL (including `/v1`).
#[derive(Debug)]
pub struct ResponsesApi {
    uri: Uri,
}

impl ResponsesApi {
    /// The API under `base` (trimmed, including `/v1`).
    pub fn new(base: &str) -> Result<Self, ProviderError> {
        Ok(Self {
            uri: crate::provider::join(base, "/responses")?,
        })
    }
}

impl ProviderApi for ResponsesApi {
    fn wire(&self) -> Wire {
        Wire::OpenAiResponses
    }

    fn chat(
        &self,
        req: &ChatRequest,
        model: &str,
        _forwarded: ForwardedHeaders<'_>,
        headers: &mut HeaderMap,
    ) -> Result<(Uri, Vec<u8>), GatewayError> {
        let body = responses::encode_request(req, model)?;
        if req.stream {
            headers.insert(
                http::header::ACCEPT,
                HeaderValue::from_static("text/event-stream"),
            );
        }
        Ok((self.uri.clone(), body))
    }

    fn decode_chat_response(&self, body: &[u8]) -> Result<ChatResponse, GatewayError> {
        responses::decode_response(body)
    }

    fn stream_decoder(&self) -> Box<dyn StreamDecoder> {
        Box::new(responses::ResponsesStreamDecoder::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_responses_models_are_sent_there() {
        for m in [
            "o3-pro",
            "o1-pro-2025-03-19",
            "codex-mini-latest",
            "computer-use-preview",
            "gpt-5-codex",
        ] {
            assert!(is_responses_only(m), "{m}");
        }
        for m in ["o3", "gpt-4o", "gpt-5", "o4-mini"] {
            assert!(!is_responses_only(m), "{m}");
        }
    }
}
