//! Anthropic's Messages API: `POST {base}/v1/messages` with `anthropic-version`, where the
//! base URL has no version (one given with `/v1` is accepted). Answers are already in the
//! Anthropic client dialect.

use http::Uri;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use portcullis_core::{ChatRequest, ChatResponse, GatewayError};
use portcullis_dialects::StreamDecoder;
use portcullis_dialects::anthropic;

use crate::api::{ProviderApi, Wire};
use crate::provider::{ForwardedHeaders, ProviderError};

/// The Messages API at one base URL.
#[derive(Debug)]
pub struct AnthropicApi {
    messages_uri: Uri,
    default_max_tokens: u32,
}

impl AnthropicApi {
    /// The API under `base` (trimmed); `default_max_tokens` is sent when the caller gave none
    /// (Anthropic requires one).
    pub fn new(base: &str, default_max_tokens: u32) -> Result<Self, ProviderError> {
        // Accept a base URL given with `/v1`, as some SDK docs show it.
        let base = base.strip_suffix("/v1").unwrap_or(base);
        Ok(Self {
            messages_uri: crate::provider::join(base, "/v1/messages")?,
            default_max_tokens,
        })
    }
}

impl ProviderApi for AnthropicApi {
    fn wire(&self) -> Wire {
        Wire::Anthropic
    }

    fn fixed_headers(&self) -> &'static [(&'static str, &'static str)] {
        &[("anthropic-version", anthropic::API_VERSION)]
    }

    fn chat(
        &self,
        req: &ChatRequest,
        model: &str,
        forwarded: ForwardedHeaders<'_>,
        headers: &mut HeaderMap,
    ) -> Result<(Uri, Vec<u8>), GatewayError> {
        let body = anthropic::encode_request(
            req,
            &anthropic::EncodeOptions {
                model,
                default_max_tokens: self.default_max_tokens,
            },
        )?;
        if let Some(beta) = forwarded.anthropic_beta {
            headers.insert(HeaderName::from_static("anthropic-beta"), beta.clone());
        }
        if req.stream {
            headers.insert(
                http::header::ACCEPT,
                HeaderValue::from_static("text/event-stream"),
            );
        }
        Ok((self.messages_uri.clone(), body))
    }

    fn decode_chat_response(&self, body: &[u8]) -> Result<ChatResponse, GatewayError> {
        anthropic::decode_response(body)
    }

    fn stream_decoder(&self) -> Box<dyn StreamDecoder> {
        Box::new(anthropic::AnthropicStreamDecoder::new())
    }
}
