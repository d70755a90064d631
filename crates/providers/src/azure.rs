//! Azure OpenAI: OpenAI's Chat Completions and Embeddings served from a resource of one's own,
//! by deployment. The base URL is the resource endpoint without `/openai`
//! (`https://{resource}.openai.azure.com`); the key goes in `api-key`.
//!
//! - With an `api_version`, the deployments form:
//!   `POST {base}/openai/deployments/{deployment}/chat/completions?api-version={v}` (and
//!   `…/embeddings`), the deployment in the URL.
//! - Without one, the v1 form: `POST {base}/openai/v1/chat/completions` (and `…/embeddings`),
//!   the deployment as the body's `model`.
//!
//! The resource's model list is Azure's "Models - List" in the same form
//! (`GET {base}/openai/models?api-version={v}`, or `GET {base}/openai/v1/models`).
//!
//! The deployment is the caller's model name mapped through `deployments` (an unmapped name is
//! the deployment itself), chosen per request. Requests and answers are OpenAI's format, so
//! the OpenAI codec does the work and answers reach OpenAI-dialect callers as Azure sent them,
//! its `prompt_filter_results` and `content_filter_results` included. What Azure adds is read
//! here: a completion its content filter stopped (`finish_reason: "content_filter"`) gets a
//! refusal naming the categories, for callers of other dialects; a prompt it refused (400,
//! `code: "content_filter"`, the categories in `innererror.content_filter_result`) becomes an
//! error naming them; the stream's leading prompt-annotation chunk (no choices, no id) is not
//! taken for the start of the answer.

use std::collections::HashMap;
use std::time::Duration;

use http::Uri;
use http::header::{HeaderMap, HeaderValue};
use portcullis_core::{
    ChatRequest, ChatResponse, Delta, EmbeddingsRequest, GatewayError, Part, StopReason,
    StreamEvent,
};
use portcullis_dialects::errors::decode_upstream_error;
use portcullis_dialects::frame::Frame;
use portcullis_dialects::openai::{self, MaxTokensField};
use portcullis_dialects::{FrameOutcome, StreamDecoder};
use serde::Deserialize;
use serde_json::Value;

use crate::api::{ProviderApi, Wire};
use crate::openai::is_openai_reasoning_model;
use crate::provider::{ForwardedHeaders, ProviderError};

/// The first API version whose chat completions take `stream_options` (the GA version with
/// it is 2024-10-21); earlier ones refuse the field, and stream no usage.
const FIRST_VERSION_WITH_STREAM_OPTIONS: &str = "2024-09-01";

/// Azure OpenAI at one resource endpoint.
#[derive(Debug)]
pub struct AzureApi {
    /// `{base}/openai/`.
    root: String,
    /// The `api-version` query value (deployments form), `None` for the v1 form.
    api_version: Option<String>,
    /// Caller's model name → deployment name.
    deployments: HashMap<String, String>,
    /// The resource's model list (Azure's "Models - List"): `{base}/openai/models?api-version=`
    /// in the deployments form, `{base}/openai/v1/models` in the v1 form.
    models_uri: Uri,
}

impl AzureApi {
    /// The API at the resource endpoint `base` (trimmed; one given with `/openai` or
    /// `/openai/v1` is accepted), in the deployments form when `api_version` is given, else
    /// the v1 form; `deployments` maps model names to deployment names.
    pub fn new(
        base: &str,
        api_version: Option<&str>,
        deployments: &[(String, String)],
    ) -> Result<Self, ProviderError> {
        let base = base.strip_suffix("/openai/v1").unwrap_or(base);
        let base = base.strip_suffix("/openai").unwrap_or(base);
        let root = format!("{base}/openai/");
        let api_version = match api_version.map(str::trim).filter(|v| !v.is_empty()) {
            Some(v) if is_query_safe(v) => Some(v.to_owned()),
            Some(v) => return Err(ProviderError::InvalidApiVersion(v.to_owned())),
            None => None,
        };
        for (model, deployment) in deployments {
            if !is_deployment_name(deployment) {
                return Err(ProviderError::InvalidDeployment {
                    model: model.clone(),
                    deployment: deployment.clone(),
                });
            }
        }
        let models_uri = match &api_version {
            Some(v) => format!("{root}models?api-version={v}"),
            None => format!("{root}v1/models"),
        }
        .parse::<Uri>()
        .map_err(|_| ProviderError::InvalidBaseUrl(base.to_owned()))?;
        let api = Self {
            root,
            api_version,
            deployments: deployments.iter().cloned().collect(),
            models_uri,
        };
        // Checked once here, so a URL built per request can only fail on the deployment.
        api.uri("d", "chat/completions")
            .map_err(|_| ProviderError::InvalidBaseUrl(base.to_owned()))?;
        Ok(api)
    }

    /// The deployment serving `model`: its mapping, else the name itself.
    pub fn deployment<'a>(&'a self, model: &'a str) -> &'a str {
        self.deployments.get(model).map_or(model, String::as_str)
    }

    /// The URL of `operation` (`chat/completions`, `embeddings`) of `deployment`.
    fn uri(&self, deployment: &str, operation: &str) -> Result<Uri, GatewayError> {
        if !is_deployment_name(deployment) {
            return Err(GatewayError::invalid_request(format!(
                "`{deployment}` is not a valid Azure OpenAI deployment name"
            ))
            .with_param("model"));
        }
        let url = match &self.api_version {
            Some(v) => format!(
                "{}deployments/{deployment}/{operation}?api-version={v}",
                self.root
            ),
            None => format!("{}v1/{operation}", self.root),
        };
        url.parse::<Uri>().map_err(|_| {
            GatewayError::invalid_request(format!(
                "`{deployment}` is not a valid Azure OpenAI deployment name"
            ))
            .with_param("model")
        })
    }

    /// Whether the configured API version refuses `stream_options`.
    fn refuses_stream_options(&self) -> bool {
        self.api_version
            .as_deref()
            .is_some_and(|v| v < FIRST_VERSION_WITH_STREAM_OPTIONS)
    }
}

/// Deployment names are letters, digits, `-`, `_` and `.` (Azure's own rule), which also keeps
/// a caller's model name from reaching any other path.
fn is_deployment_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s != "."
        && s != ".."
}

fn is_query_safe(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl ProviderApi for AzureApi {
    fn wire(&self) -> Wire {
        Wire::OpenAi
    }

    fn chat(
        &self,
        req: &ChatRequest,
        model: &str,
        _forwarded: ForwardedHeaders<'_>,
        headers: &mut HeaderMap,
    ) -> Result<(Uri, Vec<u8>), GatewayError> {
        let deployment = self.deployment(model);
        // Reasoning models take `max_completion_tokens` (and an effort); every API version
        // takes `max_tokens` for the others.
        let reasoning = is_openai_reasoning_model(model) || is_openai_reasoning_model(deployment);
        let mut body = openai::encode_request(
            req,
            &openai::EncodeOptions {
                model: deployment,
                max_tokens_field: if reasoning {
                    MaxTokensField::MaxCompletionTokens
                } else {
                    MaxTokensField::MaxTokens
                },
                derive_reasoning_effort: reasoning,
            },
        )?;
        if req.stream {
            headers.insert(
                http::header::ACCEPT,
                HeaderValue::from_static("text/event-stream"),
            );
            if self.refuses_stream_options() {
                body = without_stream_options(&body)?;
            }
        }
        Ok((self.uri(deployment, "chat/completions")?, body))
    }

    fn embeddings(
        &self,
        req: &EmbeddingsRequest,
        model: &str,
    ) -> Option<Result<(Uri, Vec<u8>), GatewayError>> {
        let deployment = self.deployment(model);
        Some(
            openai::encode_embeddings_request(req, deployment)
                .and_then(|body| Ok((self.uri(deployment, "embeddings")?, body))),
        )
    }

    fn models_uri(&self) -> Option<&Uri> {
        Some(&self.models_uri)
    }

    fn decode_chat_response(&self, body: &[u8]) -> Result<ChatResponse, GatewayError> {
        let mut resp = openai::decode_response(body)?;
        let Ok(filters) = serde_json::from_slice::<FilteredAnswer>(body) else {
            return Ok(resp);
        };
        for choice in &mut resp.choices {
            if choice.stop_reason != Some(StopReason::ContentFilter) {
                continue;
            }
            let results = filters
                .choices
                .iter()
                .find(|c| c.index == choice.index)
                .and_then(|c| c.content_filter_results.as_ref());
            choice.content.push(Part::Refusal {
                text: answer_refusal(results),
            });
        }
        Ok(resp)
    }

    fn stream_decoder(&self) -> Box<dyn StreamDecoder> {
        Box::new(AzureStreamDecoder::default())
    }

    fn decode_error(
        &self,
        status: u16,
        retry_after: Option<Duration>,
        body: &[u8],
        provider: &str,
    ) -> GatewayError {
        let err = decode_upstream_error(status, retry_after, body, provider);
        let Ok(AzureErrorBody { error }) = serde_json::from_slice::<AzureErrorBody>(body) else {
            return err;
        };
        match error.code.as_deref() {
            Some("content_filter") if status == 400 => {
                let results = error
                    .innererror
                    .as_ref()
                    .and_then(|i| i.content_filter_result.as_ref());
                let named = filtered_categories(results);
                let message = if named.is_empty() {
                    "The prompt was refused by Azure OpenAI's content filter".to_owned()
                } else {
                    format!("The prompt was refused by Azure OpenAI's content filter ({named})")
                };
                let message = match error.message.as_deref() {
                    Some(m) if !m.is_empty() => format!("{message}: {m}"),
                    _ => message,
                };
                GatewayError::invalid_request(message)
                    .with_code("content_filter")
                    .with_param("messages")
            }
            Some("DeploymentNotFound") if status == 404 => err.with_code("model_not_found"),
            _ => err,
        }
    }
}

/// A body with `stream_options` removed, for API versions that refuse it.
fn without_stream_options(body: &[u8]) -> Result<Vec<u8>, GatewayError> {
    let mut v: serde_json::Map<String, Value> = serde_json::from_slice(body)
        .map_err(|e| GatewayError::internal(format!("re-reading an encoded request: {e}")))?;
    v.remove("stream_options");
    serde_json::to_vec(&v).map_err(|e| GatewayError::internal(format!("encoding request: {e}")))
}

/// What Azure's content filter says about an answer's choices.
#[derive(Deserialize)]
struct FilteredAnswer {
    #[serde(default)]
    choices: Vec<FilteredChoice>,
}

#[derive(Deserialize)]
struct FilteredChoice {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    content_filter_results: Option<Value>,
}

#[derive(Deserialize)]
struct AzureErrorBody {
    error: AzureError,
}

#[derive(Deserialize)]
struct AzureError {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    innererror: Option<InnerError>,
}

#[derive(Deserialize)]
struct InnerError {
    #[serde(default)]
    content_filter_result: Option<Value>,
}

/// The categories `results` (a `content_filter_results` object) marks as filtered, with their
/// severity where one is given: `hate: high, jailbreak`.
fn filtered_categories(results: Option<&Value>) -> String {
    let Some(Value::Object(results)) = results else {
        return String::new();
    };
    let mut named = Vec::new();
    for (category, result) in results {
        if result.get("filtered").and_then(Value::as_bool) != Some(true) {
            continue;
        }
        match result.get("severity").and_then(Value::as_str) {
            Some(severity) => named.push(format!("{category}: {severity}")),
            None => named.push(category.clone()),
        }
    }
    named.join(", ")
}

/// The refusal given in place of (or after) an answer the content filter stopped.
fn answer_refusal(results: Option<&Value>) -> String {
    let named = filtered_categories(results);
    if named.is_empty() {
        "Azure OpenAI's content filter withheld the rest of this answer.".to_owned()
    } else {
        format!("Azure OpenAI's content filter withheld the rest of this answer ({named}).")
    }
}

/// Azure's streams are OpenAI's, read by the OpenAI decoder, with two differences: the
/// leading chunk that carries only `prompt_filter_results` (no choices, an empty id and
/// model) is not the start of the answer, and a choice finished by the content filter gets a
/// refusal naming the categories before its finish.
#[derive(Debug, Default)]
pub struct AzureStreamDecoder {
    inner: openai::OpenAiStreamDecoder,
}

/// The parts of a chunk this decoder reads beyond OpenAI's.
#[derive(Deserialize)]
struct AzureChunk {
    #[serde(default)]
    id: String,
    #[serde(default)]
    choices: Vec<AzureChunkChoice>,
    #[serde(default)]
    usage: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    error: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct AzureChunkChoice {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(default)]
    content_filter_results: Option<Value>,
}

impl StreamDecoder for AzureStreamDecoder {
    fn decode(
        &mut self,
        frame: &Frame,
        out: &mut Vec<StreamEvent>,
    ) -> Result<FrameOutcome, GatewayError> {
        let data = frame.payload.trim_ascii();
        if data == b"[DONE]" {
            return self.inner.decode(frame, out);
        }
        // An unreadable chunk is the OpenAI decoder's to report.
        let Ok(chunk) = serde_json::from_slice::<AzureChunk>(data) else {
            return self.inner.decode(frame, out);
        };
        if chunk.choices.is_empty()
            && chunk.usage.is_none()
            && chunk.error.is_none()
            && chunk.id.is_empty()
        {
            // The prompt's annotations: nothing of the answer yet.
            return Ok(FrameOutcome::Continue);
        }
        let from = out.len();
        let outcome = self.inner.decode(frame, out)?;
        for choice in chunk.choices {
            if choice.finish_reason.as_deref() != Some("content_filter") {
                continue;
            }
            let refusal = StreamEvent::Delta {
                choice: choice.index,
                delta: Delta::Refusal(answer_refusal(choice.content_filter_results.as_ref())),
            };
            let at = out[from..]
                .iter()
                .position(
                    |e| matches!(e, StreamEvent::Finish { choice: c, .. } if *c == choice.index),
                )
                .map_or(out.len(), |p| from + p);
            out.insert(at, refusal);
        }
        Ok(outcome)
    }

    fn end(&mut self, out: &mut Vec<StreamEvent>) {
        self.inner.end(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::{ErrorKind, Message, Role};
    use serde_json::json;

    fn chat(stream: bool) -> ChatRequest {
        ChatRequest {
            model: "x".into(),
            messages: vec![Message::text(Role::User, "hi")],
            stream,
            ..ChatRequest::default()
        }
    }

    fn deployments() -> Vec<(String, String)> {
        vec![("gpt-4o".to_owned(), "prod-4o".to_owned())]
    }

    #[test]
    fn the_deployments_form_puts_the_mapped_deployment_and_version_in_the_url() {
        let api = AzureApi::new(
            "https://res.openai.azure.com/openai",
            Some("2024-10-21"),
            &deployments(),
        )
        .unwrap();
        let mut h = HeaderMap::new();
        let (uri, body) = api
            .chat(&chat(false), "gpt-4o", ForwardedHeaders::default(), &mut h)
            .unwrap();
        assert_eq!(
            uri,
            "https://res.openai.azure.com/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21"
        );
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["model"], "prod-4o");
        let (uri, _) = api
            .chat(&chat(false), "other", ForwardedHeaders::default(), &mut h)
            .unwrap();
        assert_eq!(
            uri.path(),
            "/openai/deployments/other/chat/completions",
            "an unmapped name is the deployment"
        );
    }

    #[test]
    fn the_v1_form_sends_the_deployment_as_the_model() {
        let api = AzureApi::new(
            "https://res.openai.azure.com/openai/v1",
            None,
            &deployments(),
        )
        .unwrap();
        let mut h = HeaderMap::new();
        let (uri, body) = api
            .chat(&chat(true), "gpt-4o", ForwardedHeaders::default(), &mut h)
            .unwrap();
        assert_eq!(
            uri,
            "https://res.openai.azure.com/openai/v1/chat/completions"
        );
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["model"], "prod-4o");
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(h["accept"], "text/event-stream");
    }

    #[test]
    fn older_api_versions_get_no_stream_options() {
        let api = AzureApi::new("https://r.openai.azure.com", Some("2024-02-01"), &[]).unwrap();
        let (_, body) = api
            .chat(
                &chat(true),
                "gpt-4o",
                ForwardedHeaders::default(),
                &mut HeaderMap::new(),
            )
            .unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert!(body.get("stream_options").is_none(), "{body}");
        assert_eq!(body["stream"], true);
    }

    #[test]
    fn a_model_name_never_leaves_the_deployment_segment() {
        let api = AzureApi::new("https://r.openai.azure.com", Some("2024-10-21"), &[]).unwrap();
        for bad in ["../../x", "a/b", "a?b", "", ".."] {
            let err = api
                .chat(
                    &chat(false),
                    bad,
                    ForwardedHeaders::default(),
                    &mut HeaderMap::new(),
                )
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{bad}");
        }
        assert!(matches!(
            AzureApi::new("https://r", Some("2024-10-21&x=1"), &[]),
            Err(ProviderError::InvalidApiVersion(_))
        ));
        assert!(matches!(
            AzureApi::new("https://r", None, &[("m".to_owned(), "a/b".to_owned())]),
            Err(ProviderError::InvalidDeployment { .. })
        ));
    }

    #[test]
    fn embeddings_go_to_the_deployments_embeddings() {
        let api = AzureApi::new("https://r.openai.azure.com", Some("2024-10-21"), &[]).unwrap();
        let req = EmbeddingsRequest {
            model: "m".into(),
            input: portcullis_core::EmbeddingInput::Text("x".into()),
            dimensions: None,
            encoding_format: None,
            user: None,
            extras: Default::default(),
        };
        let (uri, _) = api
            .embeddings(&req, "text-embedding-3-small")
            .unwrap()
            .unwrap();
        assert_eq!(
            uri.path_and_query().unwrap().as_str(),
            "/openai/deployments/text-embedding-3-small/embeddings?api-version=2024-10-21"
        );
    }

    #[test]
    fn a_filtered_answer_gets_a_refusal_naming_the_categories() {
        let api = AzureApi::new("https://r", None, &[]).unwrap();
        let body = json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
            "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}],
            "choices": [{"index": 0, "finish_reason": "content_filter",
                         "message": {"role": "assistant", "content": null},
                         "content_filter_results": {
                            "hate": {"filtered": false, "severity": "safe"},
                            "violence": {"filtered": true, "severity": "medium"}}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 0, "total_tokens": 3}
        });
        let resp = api
            .decode_chat_response(&serde_json::to_vec(&body).unwrap())
            .unwrap();
        assert_eq!(resp.choices[0].stop_reason, Some(StopReason::ContentFilter));
        assert!(matches!(
            &resp.choices[0].content[..],
            [Part::Refusal { text }] if text.contains("violence: medium") && !text.contains("hate")
        ));
    }

    #[test]
    fn a_filtered_prompt_is_an_invalid_request_naming_the_categories() {
        let api = AzureApi::new("https://r", None, &[]).unwrap();
        let body = json!({"error": {
            "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy.",
            "type": null, "param": "prompt", "code": "content_filter", "status": 400,
            "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": {
                "hate": {"filtered": true, "severity": "high"},
                "jailbreak": {"filtered": true, "detected": true},
                "sexual": {"filtered": false, "severity": "safe"}}}}});
        let err = api.decode_error(400, None, &serde_json::to_vec(&body).unwrap(), "azure");
        assert_eq!(err.status().as_u16(), 400);
        assert_eq!(err.code(), Some("content_filter"));
        assert!(
            err.message().contains("hate: high, jailbreak"),
            "{}",
            err.message()
        );
        assert!(!err.message().contains("sexual"));

        let missing = json!({"error": {"code": "DeploymentNotFound", "message": "The API deployment for this resource does not exist."}});
        let err = api.decode_error(404, None, &serde_json::to_vec(&missing).unwrap(), "azure");
        assert_eq!(err.status().as_u16(), 404);
        assert_eq!(err.code(), Some("model_not_found"));
    }

    #[test]
    fn a_stream_skips_the_prompt_annotations_and_names_a_filtered_finish() {
        let mut d = AzureStreamDecoder::default();
        let mut out = Vec::new();
        let frames = [
            json!({"choices": [], "created": 0, "id": "", "model": "", "object": "",
                   "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}]}),
            json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null, "content_filter_results": {}}],
                   "created": 1, "id": "chatcmpl-1", "model": "gpt-4o-2024-11-20", "object": "chat.completion.chunk"}),
            json!({"choices": [{"index": 0, "delta": {"content": "Part"}, "finish_reason": null}],
                   "created": 1, "id": "chatcmpl-1", "model": "gpt-4o-2024-11-20", "object": "chat.completion.chunk"}),
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "content_filter",
                                "content_filter_results": {"self_harm": {"filtered": true, "severity": "high"}}}],
                   "created": 1, "id": "chatcmpl-1", "model": "gpt-4o-2024-11-20", "object": "chat.completion.chunk"}),
        ];
        for f in frames {
            let payload = bytes::Bytes::from(serde_json::to_vec(&f).unwrap());
            let frame = Frame {
                event: None,
                raw: payload.clone(),
                payload,
            };
            assert_eq!(d.decode(&frame, &mut out).unwrap(), FrameOutcome::Continue);
        }
        assert!(
            matches!(&out[0], StreamEvent::Start { id, model, .. } if id == "chatcmpl-1" && model == "gpt-4o-2024-11-20"),
            "{out:?}"
        );
        let n = out.len();
        assert!(
            matches!(&out[n - 2], StreamEvent::Delta { delta: Delta::Refusal(t), .. } if t.contains("self_harm: high")),
            "{out:?}"
        );
        assert!(matches!(
            &out[n - 1],
            StreamEvent::Finish {
                reason: StopReason::ContentFilter,
                ..
            }
        ));
    }
}
