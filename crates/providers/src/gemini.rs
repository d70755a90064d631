//! Google's Gemini API (AI Studio): `POST {base}/v1beta/models/{model}:generateContent`, or
//! `:streamGenerateContent?alt=sse` for a stream, the key in `x-goog-api-key`. The base URL has
//! no version (one given with `/v1beta` is accepted). Answers are in Gemini's own format, so
//! they are always translated for the caller; errors carry Google's `RetryInfo`. Embeddings go
//! to `:embedContent` (one text) or `:batchEmbedContents` (several) and come back in OpenAI's
//! format. Input tokens are counted by `:countTokens`, given the whole `generateContentRequest`
//! (system instruction and tools included).

use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http::header::{HeaderMap, HeaderValue};
use portcullis_core::{ChatRequest, ChatResponse, EmbeddingsRequest, GatewayError};
use portcullis_dialects::StreamDecoder;
use portcullis_dialects::gemini;

use crate::api::{ProviderApi, Wire};
use crate::provider::{ForwardedHeaders, ProviderError};

/// The Gemini API at one base URL.
#[derive(Debug)]
pub struct GeminiApi {
    /// `{base}/v1beta/`.
    root: String,
    /// `{base}/v1beta/models`.
    models_uri: Uri,
}

impl GeminiApi {
    /// The API under `base` (trimmed).
    pub fn new(base: &str) -> Result<Self, ProviderError> {
        let base = base.strip_suffix("/v1beta").unwrap_or(base);
        let root = format!("{base}/v1beta/");
        // Checked once here, so a URL built per request can only fail on the model's part.
        crate::provider::join(&root, "models/m:generateContent")?;
        Ok(Self {
            models_uri: crate::provider::join(&root, "models")?,
            root,
        })
    }

    /// The URL of `method` (`generateContent`, `streamGenerateContent?alt=sse`, …) of `model`.
    fn uri(&self, model: &str, method: &str) -> Result<Uri, GatewayError> {
        let path = gemini::model_path(model);
        let mut url = String::with_capacity(self.root.len() + path.len() + method.len() + 1);
        url.push_str(&self.root);
        url.push_str(&path);
        url.push(':');
        url.push_str(method);
        url.parse::<Uri>().map_err(|_| {
            GatewayError::invalid_request(format!("`{model}` is not a valid Gemini model name"))
                .with_param("model")
        })
    }
}

impl ProviderApi for GeminiApi {
    fn wire(&self) -> Wire {
        Wire::Gemini
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
        let body = gemini::encode_request(
            req,
            &gemini::EncodeOptions {
                include_thoughts: true,
            },
        )?;
        let uri = if req.stream {
            headers.insert(
                http::header::ACCEPT,
                HeaderValue::from_static("text/event-stream"),
            );
            self.uri(model, "streamGenerateContent?alt=sse")?
        } else {
            self.uri(model, "generateContent")?
        };
        Ok((uri, body))
    }

    fn count_tokens(
        &self,
        req: &ChatRequest,
        model: &str,
        _forwarded: ForwardedHeaders<'_>,
        _headers: &mut HeaderMap,
    ) -> Option<Result<(Uri, Vec<u8>), GatewayError>> {
        let built = (|| {
            let body = gemini::encode_request(
                req,
                &gemini::EncodeOptions {
                    include_thoughts: false,
                },
            )?;
            let mut inner: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
                GatewayError::internal("The token count request could not be built").with_source(e)
            })?;
            if let Some(o) = inner.as_object_mut() {
                o.insert("model".to_owned(), gemini::model_path(model).into());
            }
            let body = serde_json::to_vec(&serde_json::json!({ "generateContentRequest": inner }))
                .map_err(|e| {
                    GatewayError::internal("The token count request could not be built")
                        .with_source(e)
                })?;
            Ok((self.uri(model, "countTokens")?, body))
        })();
        Some(built)
    }

    fn count_tokens_response(&self, body: &[u8]) -> Result<u64, GatewayError> {
        crate::anthropic::input_tokens(body, "totalTokens")
    }

    fn embeddings(
        &self,
        req: &EmbeddingsRequest,
        model: &str,
    ) -> Option<Result<(Uri, Vec<u8>), GatewayError>> {
        Some(
            gemini::encode_embeddings_request(req, model)
                .and_then(|(method, body)| Ok((self.uri(model, method)?, body))),
        )
    }

    fn embeddings_response(
        &self,
        req: &EmbeddingsRequest,
        body: Bytes,
        model: &str,
    ) -> Result<Bytes, GatewayError> {
        gemini::decode_embeddings_response(&body, req, model).map(Bytes::from)
    }

    fn decode_chat_response(&self, body: &[u8]) -> Result<ChatResponse, GatewayError> {
        gemini::decode_response(body)
    }

    fn stream_decoder(&self) -> Box<dyn StreamDecoder> {
        Box::new(gemini::GeminiStreamDecoder::new())
    }

    fn decode_error(
        &self,
        status: u16,
        retry_after: Option<Duration>,
        body: &[u8],
        provider: &str,
    ) -> GatewayError {
        gemini::decode_error(status, retry_after, body, provider)
    }
}
