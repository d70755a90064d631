//! Google Cloud's Vertex AI: the models of a project in a location, at
//! `{base}/v1/projects/{project}/locations/{location}/publishers/{publisher}/models/{model}:{method}`,
//! authenticated with a service account's access tokens ([`crate::google_auth`], a token
//! source the gateway runs).
//!
//! One provider, two wire formats, chosen per model ([`ProviderApi::for_model`]):
//! - models named `claude-*` are Anthropic's (`publishers/anthropic`): `:rawPredict`, or
//!   `:streamRawPredict` for a stream, with Anthropic's Messages body minus `model` (it is in
//!   the URL) plus `anthropic_version: vertex-2023-10-16`; answers and streams are Anthropic's
//!   own, so they reach Anthropic-dialect callers as Vertex sent them;
//! - the others are Google's (`publishers/google`): `:generateContent`, or
//!   `:streamGenerateContent?alt=sse`, in Gemini's format, always translated.
//!
//! Input tokens are counted by Vertex AI too: Google's models at `:countTokens` (the
//! request's contents, system instruction and tools), Anthropic's at
//! `publishers/anthropic/models/count-tokens:rawPredict` (Anthropic's count body, its model
//! in it, with `anthropic_version`).
//!
//! Model names are kept verbatim in the path (`claude-sonnet-4-5@20250929`); anything outside
//! the unreserved characters and `@` is percent-encoded, so a name cannot reach another path.
//! Errors are Google's (`{"error":{"code","message","status","details"}}` with `RetryInfo`),
//! or Anthropic's passed through for Claude; both are read by the Gemini error decoder.
//!
//! The base URL is `https://{location}-aiplatform.googleapis.com`, or
//! `https://aiplatform.googleapis.com` for `global` (`https://aiplatform.{us|eu}.rep.googleapis.com`
//! for the multi-regions); one configured with `/v1` is accepted.
//!
//! Embeddings: Google's embedding models (`text-embedding-*`, `gemini-embedding-*`) at
//! `:predict`, one instance (`{"content": …}`) per text, `outputDimensionality` from the
//! request's `dimensions`; the answer's vectors and token counts are given back in OpenAI's
//! format.
//!
//! The model list is Google's publisher models, `GET {base}/v1beta1/publishers/google/models`
//! (paged by `pageToken`/`nextPageToken`, read by the gateway), with the same token.

use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use portcullis_core::{ChatRequest, ChatResponse, EmbeddingsRequest, GatewayError};
use portcullis_dialects::StreamDecoder;
use portcullis_dialects::{anthropic, gemini};
use serde_json::Value;

use crate::api::{ProviderApi, Wire};
use crate::provider::{ForwardedHeaders, ProviderError};

/// The `anthropic_version` Vertex AI's Claude models take, in the body.
pub const ANTHROPIC_VERSION: &str = "vertex-2023-10-16";

/// The default base URL of a location.
pub fn default_base_url(location: &str) -> String {
    match location {
        "global" => "https://aiplatform.googleapis.com".to_owned(),
        "us" | "eu" => format!("https://aiplatform.{location}.rep.googleapis.com"),
        region => format!("https://{region}-aiplatform.googleapis.com"),
    }
}

/// Whether `model` is one of Anthropic's on Vertex AI.
pub fn is_anthropic(model: &str) -> bool {
    model.starts_with("claude-")
}

/// A location or project id as Google writes them: lowercase letters, digits and `-` (and
/// `.`/`:` for domain-scoped projects).
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.' | b':')
        })
}

/// Vertex AI for one project and location: Google's models here, Anthropic's through
/// [`VertexAnthropic`].
#[derive(Debug)]
pub struct VertexApi {
    /// `{base}/v1/projects/{p}/locations/{l}/publishers/google/models/`.
    google: String,
    anthropic: VertexAnthropic,
    /// `{base}/v1beta1/publishers/google/models`.
    models_uri: Uri,
}

/// Anthropic's models on Vertex AI.
#[derive(Debug)]
pub struct VertexAnthropic {
    /// `{base}/v1/projects/{p}/locations/{l}/publishers/anthropic/models/`.
    root: String,
    default_max_tokens: u32,
}

impl VertexApi {
    /// The API under `base` (trimmed) for `project` in `location`.
    pub fn new(
        base: &str,
        project: &str,
        location: &str,
        default_max_tokens: u32,
    ) -> Result<Self, ProviderError> {
        if !valid_id(project) {
            return Err(ProviderError::Vertex(format!(
                "`project` `{project}` is not a Google Cloud project id"
            )));
        }
        if !valid_id(location) {
            return Err(ProviderError::Vertex(format!(
                "`location` `{location}` is not a Google Cloud location (such as `us-east5` or `global`)"
            )));
        }
        let base = base.strip_suffix("/v1").unwrap_or(base);
        let under = format!("{base}/v1/projects/{project}/locations/{location}/publishers");
        let google = format!("{under}/google/models/");
        let root = format!("{under}/anthropic/models/");
        // Checked once here, so a URL built per request can only fail on the model's part.
        crate::provider::join(&google, "m:generateContent")?;
        let models_uri = crate::provider::join(base, "/v1beta1/publishers/google/models")?;
        Ok(Self {
            google,
            models_uri,
            anthropic: VertexAnthropic {
                root,
                default_max_tokens,
            },
        })
    }
}

/// `{root}{model}:{method}`, the model percent-encoded as one path segment.
fn model_uri(root: &str, model: &str, method: &str) -> Result<Uri, GatewayError> {
    let mut url = String::with_capacity(root.len() + model.len() + method.len() + 8);
    url.push_str(root);
    for b in model.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'@') {
            url.push(char::from(b));
        } else {
            url.push_str(&format!("%{b:02X}"));
        }
    }
    url.push(':');
    url.push_str(method);
    url.parse::<Uri>().map_err(|_| {
        GatewayError::invalid_request(format!("`{model}` is not a valid Vertex AI model name"))
            .with_param("model")
    })
}

fn accept_sse(headers: &mut HeaderMap) {
    headers.insert(
        http::header::ACCEPT,
        HeaderValue::from_static("text/event-stream"),
    );
}

impl ProviderApi for VertexApi {
    fn wire(&self) -> Wire {
        Wire::Gemini
    }

    fn for_model(&self, model: &str) -> Option<&dyn ProviderApi> {
        is_anthropic(model).then_some(&self.anthropic as &dyn ProviderApi)
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
            accept_sse(headers);
            model_uri(&self.google, model, "streamGenerateContent?alt=sse")?
        } else {
            model_uri(&self.google, model, "generateContent")?
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
            let encoded = gemini::encode_request(
                req,
                &gemini::EncodeOptions {
                    include_thoughts: false,
                },
            )?;
            // Vertex's CountTokensRequest takes these members of a generate request, no others.
            let mut body: serde_json::Map<String, Value> = serde_json::from_slice(&encoded)
                .map_err(|e| GatewayError::internal(format!("re-reading the request: {e}")))?;
            body.retain(|k, _| matches!(k.as_str(), "contents" | "systemInstruction" | "tools"));
            let body = serde_json::to_vec(&body)
                .map_err(|e| GatewayError::internal(format!("encoding request: {e}")))?;
            Ok((model_uri(&self.google, model, "countTokens")?, body))
        })();
        Some(built)
    }

    fn count_tokens_response(&self, body: &[u8]) -> Result<u64, GatewayError> {
        crate::anthropic::input_tokens(body, "totalTokens")
    }

    fn models_uri(&self) -> Option<&Uri> {
        Some(&self.models_uri)
    }

    fn embeddings(
        &self,
        req: &EmbeddingsRequest,
        model: &str,
    ) -> Option<Result<(Uri, Vec<u8>), GatewayError>> {
        Some(
            gemini::encode_predict_request(req)
                .and_then(|body| Ok((model_uri(&self.google, model, "predict")?, body))),
        )
    }

    fn embeddings_response(
        &self,
        req: &EmbeddingsRequest,
        body: Bytes,
        model: &str,
    ) -> Result<Bytes, GatewayError> {
        gemini::decode_predict_response(&body, req, model).map(Bytes::from)
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

impl ProviderApi for VertexAnthropic {
    fn wire(&self) -> Wire {
        Wire::Anthropic
    }

    fn chat(
        &self,
        req: &ChatRequest,
        model: &str,
        forwarded: ForwardedHeaders<'_>,
        headers: &mut HeaderMap,
    ) -> Result<(Uri, Vec<u8>), GatewayError> {
        let encoded = anthropic::encode_request(
            req,
            &anthropic::EncodeOptions {
                model,
                default_max_tokens: self.default_max_tokens,
            },
        )?;
        // Anthropic's body, with the model in the URL instead and the version in the body.
        let mut body: serde_json::Map<String, Value> = serde_json::from_slice(&encoded)
            .map_err(|e| GatewayError::internal(format!("re-reading the request: {e}")))?;
        body.remove("model");
        body.insert(
            "anthropic_version".to_owned(),
            Value::String(ANTHROPIC_VERSION.to_owned()),
        );
        let body = serde_json::to_vec(&body)
            .map_err(|e| GatewayError::internal(format!("encoding request: {e}")))?;
        if let Some(beta) = forwarded.anthropic_beta {
            headers.insert(HeaderName::from_static("anthropic-beta"), beta.clone());
        }
        let uri = if req.stream {
            accept_sse(headers);
            model_uri(&self.root, model, "streamRawPredict")?
        } else {
            model_uri(&self.root, model, "rawPredict")?
        };
        Ok((uri, body))
    }

    fn count_tokens(
        &self,
        req: &ChatRequest,
        model: &str,
        forwarded: ForwardedHeaders<'_>,
        headers: &mut HeaderMap,
    ) -> Option<Result<(Uri, Vec<u8>), GatewayError>> {
        let built = (|| {
            let encoded = anthropic::encode_request(
                req,
                &anthropic::EncodeOptions {
                    model,
                    default_max_tokens: self.default_max_tokens,
                },
            )?;
            // Anthropic's count body, the model in it, with Vertex's version.
            let mut body: serde_json::Map<String, Value> = serde_json::from_slice(&encoded)
                .map_err(|e| GatewayError::internal(format!("re-reading the request: {e}")))?;
            body.retain(|k, _| crate::anthropic::COUNT_TOKENS_MEMBERS.contains(&k.as_str()));
            body.insert(
                "anthropic_version".to_owned(),
                Value::String(ANTHROPIC_VERSION.to_owned()),
            );
            let body = serde_json::to_vec(&body)
                .map_err(|e| GatewayError::internal(format!("encoding request: {e}")))?;
            if let Some(beta) = forwarded.anthropic_beta {
                headers.insert(HeaderName::from_static("anthropic-beta"), beta.clone());
            }
            Ok((model_uri(&self.root, "count-tokens", "rawPredict")?, body))
        })();
        Some(built)
    }

    fn count_tokens_response(&self, body: &[u8]) -> Result<u64, GatewayError> {
        crate::anthropic::input_tokens(body, "input_tokens")
    }

    fn decode_chat_response(&self, body: &[u8]) -> Result<ChatResponse, GatewayError> {
        anthropic::decode_response(body)
    }

    fn stream_decoder(&self) -> Box<dyn StreamDecoder> {
        Box::new(anthropic::AnthropicStreamDecoder::new())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Authentication;
    use crate::kind::ProviderKind;
    use crate::provider::{Provider, ProviderSpec, VertexSpec};
    use crate::secret::Secret;
    use portcullis_core::{Dialect, Message, Role};

    fn provider(location: &str, project: Option<&str>, base_url: Option<&str>) -> Provider {
        let path = std::env::temp_dir().join(format!(
            "portcullis-vertex-unit-{}-{location}.json",
            std::process::id()
        ));
        let file = serde_json::json!({"type": "service_account", "project_id": "file-project",
            "private_key_id": "kid", "client_email": "sa@file-project.iam.gserviceaccount.com",
            "private_key": include_str!("../../test-support/keys/vertex-test-service-account.pem"),
            "token_uri": "https://oauth2.googleapis.com/token"});
        std::fs::write(&path, file.to_string()).unwrap();
        let mut spec = ProviderSpec::new("vertex", ProviderKind::Vertex);
        spec.base_url = base_url.map(str::to_owned);
        spec.vertex = Some(VertexSpec {
            project: project.map(str::to_owned),
            location: Some(location.to_owned()),
            credentials: Some(path),
        });
        Provider::new(spec).unwrap()
    }

    fn chat(stream: bool) -> ChatRequest {
        ChatRequest {
            model: "x".into(),
            messages: vec![Message::text(Role::User, "hi")],
            stream,
            ..ChatRequest::default()
        }
    }

    #[test]
    fn regional_and_global_urls_per_publisher_with_a_token_source() {
        let p = provider("us-east5", None, None);
        assert!(matches!(p.authentication(), Authentication::Token(_)));
        assert!(p.default_credential().is_none());
        assert!(p.credential("k", &Secret::new("key")).is_err());
        let r = p
            .chat_request(
                &chat(false),
                "gemini-2.5-flash",
                None,
                ForwardedHeaders::default(),
            )
            .unwrap();
        assert_eq!(
            r.uri,
            "https://us-east5-aiplatform.googleapis.com/v1/projects/file-project/locations/us-east5/publishers/google/models/gemini-2.5-flash:generateContent"
        );
        assert!(
            r.headers.get("authorization").is_none(),
            "the gateway adds the token"
        );
        assert_eq!(p.passthrough_dialect("gemini-2.5-flash"), None);
        assert_eq!(p.wire("claude-opus-4-1@20250805"), Wire::Anthropic);
        assert_eq!(
            p.passthrough_dialect("claude-opus-4-1@20250805"),
            Some(Dialect::Anthropic)
        );

        let p = provider("global", Some("other-project"), None);
        let r = p
            .chat_request(
                &chat(true),
                "claude-opus-4-1@20250805",
                None,
                ForwardedHeaders::default(),
            )
            .unwrap();
        assert_eq!(
            r.uri,
            "https://aiplatform.googleapis.com/v1/projects/other-project/locations/global/publishers/anthropic/models/claude-opus-4-1@20250805:streamRawPredict"
        );
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        assert!(body.get("model").is_none());
        assert_eq!(body["anthropic_version"], ANTHROPIC_VERSION);
        assert_eq!(body["stream"], true);
        assert_eq!(r.headers["accept"], "text/event-stream");

        let p = provider("europe-west1", None, Some("http://127.0.0.1:9/v1/"));
        let r = p
            .chat_request(
                &chat(true),
                "gemini-2.5-pro",
                None,
                ForwardedHeaders::default(),
            )
            .unwrap();
        assert_eq!(
            r.uri,
            "http://127.0.0.1:9/v1/projects/file-project/locations/europe-west1/publishers/google/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
        );
    }

    #[test]
    fn base_urls_follow_the_location() {
        assert_eq!(
            default_base_url("us-east5"),
            "https://us-east5-aiplatform.googleapis.com"
        );
        assert_eq!(
            default_base_url("global"),
            "https://aiplatform.googleapis.com"
        );
        assert_eq!(
            default_base_url("eu"),
            "https://aiplatform.eu.rep.googleapis.com"
        );
    }

    #[test]
    fn model_names_stay_one_segment() {
        let u = model_uri("http://h/v1/m/", "claude-sonnet-4-5@20250929", "rawPredict").unwrap();
        assert_eq!(u, "http://h/v1/m/claude-sonnet-4-5@20250929:rawPredict");
        let u = model_uri("http://h/v1/m/", "../x:y?z", "generateContent").unwrap();
        assert_eq!(u, "http://h/v1/m/..%2Fx%3Ay%3Fz:generateContent");
        assert!(VertexApi::new("http://h", "p/q", "us", 1).is_err());
        assert!(VertexApi::new("http://h", "p", "us east", 1).is_err());
    }
}
