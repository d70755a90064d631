//! OpenAI's API and every OpenAI-compatible server: `POST {base}/chat/completions` and
//! `POST {base}/embeddings`, where the base URL includes the version (`…/v1`). Answers are
//! already in the OpenAI client dialect.

use http::Uri;
use http::header::{HeaderMap, HeaderValue};
use portcullis_core::{ChatRequest, ChatResponse, EmbeddingsRequest, GatewayError};
use portcullis_dialects::StreamDecoder;
use portcullis_dialects::openai::{self, MaxTokensField};

use crate::api::{ProviderApi, Wire};
use crate::provider::{ForwardedHeaders, ProviderError};
use crate::responses::{ResponsesApi, is_responses_only};

/// An OpenAI-compatible API at one base URL.
#[derive(Debug)]
pub struct OpenAiApi {
    chat_uri: Uri,
    models_uri: Uri,
    embeddings_uri: Uri,
    max_tokens_field: MaxTokensField,
    /// OpenAI itself: reasoning models take a `reasoning_effort` derived from a budget.
    openai_itself: bool,
    /// The Responses API, for OpenAI's models served only there and for `responses_models`.
    responses: Option<ResponsesApi>,
    /// Models the configuration sends to the Responses API.
    responses_models: Vec<String>,
}

impl OpenAiApi {
    /// The API under `base` (trimmed, including `/v1`); `openai_itself` for OpenAI's own
    /// service, which wants `max_completion_tokens` and takes `reasoning_effort` (and serves
    /// some models only through the Responses API); `responses_models` go to the Responses API
    /// too.
    pub fn new(
        base: &str,
        openai_itself: bool,
        responses_models: Vec<String>,
    ) -> Result<Self, ProviderError> {
        Ok(Self {
            chat_uri: crate::provider::join(base, "/chat/completions")?,
            models_uri: crate::provider::join(base, "/models")?,
            embeddings_uri: crate::provider::join(base, "/embeddings")?,
            max_tokens_field: if openai_itself {
                MaxTokensField::MaxCompletionTokens
            } else {
                MaxTokensField::MaxTokens
            },
            openai_itself,
            responses: if openai_itself || !responses_models.is_empty() {
                Some(ResponsesApi::new(base)?)
            } else {
                None
            },
            responses_models,
        })
    }
}

/// OpenAI models that accept `reasoning_effort`.
pub(crate) fn is_openai_reasoning_model(model: &str) -> bool {
    ["o1", "o3", "o4", "gpt-5", "codex"]
        .iter()
        .any(|p| model.starts_with(p))
}

impl ProviderApi for OpenAiApi {
    fn wire(&self) -> Wire {
        Wire::OpenAi
    }

    fn for_model(&self, model: &str) -> Option<&dyn ProviderApi> {
        self.responses
            .as_ref()
            .filter(|_| {
                (self.openai_itself && is_responses_only(model))
                    || self.responses_models.iter().any(|m| m == model)
            })
            .map(|r| r as &dyn ProviderApi)
    }

    fn models_uri(&self) -> Option<&Uri> {
        Some(&self.models_uri)
    }

    fn chat(
        &self,
        req: &ChatRequest,
        model: &str,
        _forwarded: ForwardedHeaders<'_>,
        headers: &mut HeaderMap,
    ) -> Result<(Uri, Vec<u8>), GatewayError> {
        let body = openai::encode_request(
            req,
            &openai::EncodeOptions {
                model,
                max_tokens_field: self.max_tokens_field,
                derive_reasoning_effort: self.openai_itself && is_openai_reasoning_model(model),
            },
        )?;
        if req.stream {
            headers.insert(
                http::header::ACCEPT,
                HeaderValue::from_static("text/event-stream"),
            );
        }
        Ok((self.chat_uri.clone(), body))
    }

    fn embeddings(
        &self,
        req: &EmbeddingsRequest,
        model: &str,
    ) -> Option<Result<(Uri, Vec<u8>), GatewayError>> {
        Some(
            openai::encode_embeddings_request(req, model)
                .map(|body| (self.embeddings_uri.clone(), body)),
        )
    }

    fn decode_chat_response(&self, body: &[u8]) -> Result<ChatResponse, GatewayError> {
        openai::decode_response(body)
    }

    fn stream_decoder(&self) -> Box<dyn StreamDecoder> {
        Box::new(openai::OpenAiStreamDecoder::new())
    }
}
