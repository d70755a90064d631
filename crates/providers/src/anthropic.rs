//! Anthropic's Messages API: `POST {base}/v1/messages` with `anthropic-version`, where the
//! base URL has no version (one given with `/v1` is accepted). Answers are already in the
//! Anthropic client dialect. Input tokens are counted by `POST {base}/v1/messages/count_tokens`.

use http::Uri;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use portcullis_core::{ChatRequest, ChatResponse, GatewayError};
use portcullis_dialects::StreamDecoder;
use portcullis_dialects::anthropic;

use serde_json::Value;

use crate::api::{ProviderApi, Wire};
use crate::provider::{ForwardedHeaders, ProviderError};

/// The Messages API at one base URL.
#[derive(Debug)]
pub struct AnthropicApi {
    messages_uri: Uri,
    count_tokens_uri: Uri,
    models_uri: Uri,
    default_max_tokens: u32,
}

/// The members of a Messages body that `count_tokens` takes; it refuses the others
/// (`max_tokens`, `stream`, sampling settings, `metadata`).
pub(crate) const COUNT_TOKENS_MEMBERS: [&str; 6] = [
    "model",
    "messages",
    "system",
    "tools",
    "tool_choice",
    "thinking",
];

impl AnthropicApi {
    /// The API under `base` (trimmed); `default_max_tokens` is sent when the caller gave none
    /// (Anthropic requires one).
    pub fn new(base: &str, default_max_tokens: u32) -> Result<Self, ProviderError> {
        // Accept a base URL given with `/v1`, as some SDK docs show it.
        let base = base.strip_suffix("/v1").unwrap_or(base);
        Ok(Self {
            messages_uri: crate::provider::join(base, "/v1/messages")?,
            count_tokens_uri: crate::provider::join(base, "/v1/messages/count_tokens")?,
            models_uri: crate::provider::join(base, "/v1/models")?,
            default_max_tokens,
        })
    }
}

impl ProviderApi for AnthropicApi {
    fn wire(&self) -> Wire {
        Wire::Anthropic
    }

    fn models_uri(&self) -> Option<&Uri> {
        Some(&self.models_uri)
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

    fn count_tokens(
        &self,
        req: &ChatRequest,
        model: &str,
        forwarded: ForwardedHeaders<'_>,
        headers: &mut HeaderMap,
    ) -> Option<Result<(Uri, Vec<u8>), GatewayError>> {
        let built = self
            .chat(req, model, forwarded, headers)
            .and_then(|(_, body)| {
                headers.remove(http::header::ACCEPT);
                let mut body: serde_json::Map<String, Value> = serde_json::from_slice(&body)
                    .map_err(|e| {
                        GatewayError::internal("The token count request could not be built")
                            .with_source(e)
                    })?;
                body.retain(|k, _| COUNT_TOKENS_MEMBERS.contains(&k.as_str()));
                let body = serde_json::to_vec(&body).map_err(|e| {
                    GatewayError::internal("The token count request could not be built")
                        .with_source(e)
                })?;
                Ok((self.count_tokens_uri.clone(), body))
            });
        Some(built)
    }

    fn count_tokens_response(&self, body: &[u8]) -> Result<u64, GatewayError> {
        input_tokens(body, "input_tokens")
    }

    fn decode_chat_response(&self, body: &[u8]) -> Result<ChatResponse, GatewayError> {
        anthropic::decode_response(body)
    }

    fn stream_decoder(&self) -> Box<dyn StreamDecoder> {
        Box::new(anthropic::AnthropicStreamDecoder::new())
    }
}

/// The count in a token count answer: the number member `field` of its JSON object.
pub(crate) fn input_tokens(body: &[u8], field: &str) -> Result<u64, GatewayError> {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get(field).and_then(Value::as_u64))
        .ok_or_else(|| {
            GatewayError::new(
                portcullis_core::ErrorKind::Upstream,
                "The provider's token count could not be read",
            )
            .with_detail(String::from_utf8_lossy(&body[..body.len().min(256)]).into_owned())
        })
}
