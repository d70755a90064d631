//! `POST /v1/messages/count_tokens`: Anthropic's token counting, in the Anthropic dialect, for
//! every provider, as the pipeline's stages (`crate::pipeline`):
//!
//! authenticate → decode → resolve → authorize → admit → dispatch or **estimate** → record
//!
//! The caller is authenticated, its model resolved and authorized, and the request counted
//! by the rate limits as a `/v1/messages` request is (a request, no tokens, no cost). Then the
//! count comes from the provider's own count endpoint when its API has one
//! ([`ProviderApi::count_tokens`](portcullis_providers::ProviderApi::count_tokens):
//! Anthropic's `count_tokens`, Gemini's `:countTokens`), through the dispatcher — breakers,
//! retries, failover over the route's targets that can count, the caller's provider keys,
//! the provider's authentication. When none of the route's targets can, the gateway
//! [`estimate`]s the count from the request itself. The answer is Anthropic's
//! `{"input_tokens": n}`; its `x-portcullis-token-count` header says `provider` or
//! `estimate`, and so does the log record's metadata (`count_tokens: provider|estimate`,
//! `input_tokens`), whose endpoint is `count_tokens` and which has no cost.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use portcullis_core::{ChatRequest, Dialect, GatewayError, Part};
use portcullis_dialects::decode_request;
use portcullis_providers::provider::ForwardedHeaders;
use portcullis_providers::{Provider, Resolution, Target};
use serde_json::Value;
use tracing::Instrument;

use crate::limits::Demand;
use crate::pipeline::{self, Exchange, Operation, Resolved, ServedBy, Stage, authenticate};
use crate::respond;
use crate::state::AppState;
use crate::upstream::read_body;

/// The answer header saying where the count came from: `provider` or `estimate`.
pub const TOKEN_COUNT: HeaderName = HeaderName::from_static("x-portcullis-token-count");

/// Characters per token of the [`estimate`].
pub const CHARS_PER_TOKEN: u64 = 4;
/// Tokens the [`estimate`] adds per message (its role and framing).
pub const TOKENS_PER_MESSAGE: u64 = 3;
/// Tokens the [`estimate`] counts per image or document: the most one image costs under
/// Anthropic's rule (about width × height / 750, images scaled to at most 1.15 megapixels).
pub const TOKENS_PER_IMAGE: u64 = 1600;

/// `POST /v1/messages/count_tokens`.
pub async fn count_tokens(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let mut x = Exchange::begin(&state, Operation::CountTokens, req.headers());
    let span = x.span.clone();
    let result = run(&state, &mut x, req).instrument(span).await;
    x.record(result)
}

async fn run(state: &AppState, x: &mut Exchange, req: Request) -> Result<Response, GatewayError> {
    let (parts, body) = req.into_parts();
    let caller = authenticate(state, x, &parts.headers, body).await?;
    let request = pipeline::decode(x, &caller, decode_count_request)?;
    let resolved = pipeline::resolve(x, &caller, &request.model)?;
    pipeline::authorize(&caller, &request.model, &resolved)?;
    // Counted as a request; it generates nothing and costs nothing.
    let demand = Demand {
        input_tokens: 0,
        output_tokens: 0,
    };
    let _admission = pipeline::admit(x, &caller, &resolved, demand).await?;
    let forwarded = ForwardedHeaders {
        anthropic_beta: parts.headers.get("anthropic-beta"),
    };
    let counting: Vec<Target> = resolved
        .resolution
        .targets
        .iter()
        .filter(|t| can_count(&t.provider, &t.model, &request))
        .cloned()
        .collect();
    if counting.is_empty() {
        let n = estimate(&request);
        if let Some(t) = resolved.primary()
            && let Some(r) = x.log.record()
        {
            r.provider = Some(Arc::from(t.provider.name()));
            r.model = Some(t.model.clone());
        }
        return Ok(answer(x, n, "estimate", None));
    }
    let build = |provider: &Provider,
                 model: &str,
                 credential: Option<&portcullis_providers::provider::Credential>| {
        provider
            .count_tokens_request(&request, model, credential, forwarded)
            .unwrap_or_else(|| {
                Err(GatewayError::internal(
                    "The provider has no token count endpoint",
                ))
            })
    };
    // The route's targets that count themselves, in the route's order.
    let resolved = Resolved {
        resolution: Resolution {
            targets: counting.into(),
            ..resolved.resolution
        },
        ..resolved
    };
    let served = pipeline::dispatch(state, x, &caller, &resolved, demand, &build).await?;
    let target = served.target;
    let provider = target.provider.name();
    let body = Stage::Respond
        .run_async(async {
            match resolved.deadline {
                Some(d) => {
                    tokio::time::timeout_at(d, read_body(served.response.into_body(), provider))
                        .await
                        .map_err(|_| GatewayError::total_timeout())?
                }
                None => read_body(served.response.into_body(), provider).await,
            }
        })
        .await?;
    let n = target
        .provider
        .count_tokens_response(&target.model, &body)?;
    let by = CountedBy {
        provider: provider.to_owned(),
        model: target.model.clone(),
        attempts: served.attempts,
        credential_id: served.credential_id,
    };
    Ok(answer(x, n, "provider", Some(by)))
}

/// Whether `provider`'s API counts tokens for `model` itself.
fn can_count(provider: &Provider, model: &str, request: &ChatRequest) -> bool {
    provider
        .count_tokens_request(request, model, None, ForwardedHeaders::default())
        .is_some()
}

/// What served a provider's count.
struct CountedBy {
    provider: String,
    model: Arc<str>,
    attempts: u32,
    credential_id: Option<String>,
}

/// Anthropic's answer, `{"input_tokens": n}`, with where the count came from in its header
/// and in the log.
fn answer(x: &mut Exchange, n: u64, source: &'static str, by: Option<CountedBy>) -> Response {
    if let Some(r) = x.log.record() {
        let mut meta = r
            .metadata
            .as_deref()
            .and_then(|m| serde_json::from_str::<serde_json::Map<String, Value>>(m).ok())
            .unwrap_or_default();
        meta.insert("count_tokens".into(), source.into());
        meta.insert("input_tokens".into(), n.into());
        r.metadata = Some(Value::Object(meta).to_string());
    }
    x.log.finish(200);
    let body = Bytes::from(serde_json::json!({ "input_tokens": n }).to_string());
    let mut resp = respond::json(StatusCode::OK, body, &x.id);
    resp.headers_mut()
        .insert(TOKEN_COUNT, HeaderValue::from_static(source));
    if let Some(by) = by {
        ServedBy {
            provider: &by.provider,
            model: &by.model,
            attempts: by.attempts,
            cache: "BYPASS",
            provider_key: by.credential_id.as_deref(),
        }
        .write(resp.headers_mut(), &x.id);
    }
    resp
}

/// A `count_tokens` body — a Messages body without `max_tokens` (and without what only
/// generation takes) — as a canonical request.
fn decode_count_request(body: &[u8]) -> Result<ChatRequest, GatewayError> {
    let mut value: serde_json::Map<String, Value> = serde_json::from_slice(body).map_err(|e| {
        GatewayError::invalid_request("There was an issue with the JSON body of your request.")
            .with_detail(e.to_string())
    })?;
    for refused in ["max_tokens", "stream"] {
        if value.contains_key(refused) {
            return Err(GatewayError::invalid_request(format!(
                "{refused}: Extra inputs are not permitted"
            ))
            .with_param(refused));
        }
    }
    // The Messages decoder wants a completion budget; counting has none.
    value.insert("max_tokens".into(), 1.into());
    let body = serde_json::to_vec(&value)
        .map_err(|e| GatewayError::internal("The request could not be read").with_source(e))?;
    decode_request(Dialect::Anthropic, &body)
}

/// The gateway's own estimate of a request's input tokens, for providers with no count
/// endpoint (OpenAI and compatible servers, Bedrock, Azure OpenAI): one token per
/// [`CHARS_PER_TOKEN`] characters (rounded up) of the request's text — the system prompt and
/// messages, reasoning, tool calls' names and arguments, tool results, and each tool's name,
/// description and JSON Schema — plus [`TOKENS_PER_MESSAGE`] per message and
/// [`TOKENS_PER_IMAGE`] per image. Deterministic: the same request always counts the same.
pub fn estimate(request: &ChatRequest) -> u64 {
    let mut chars = 0u64;
    let mut images = 0u64;
    let mut count = |text: &str| chars += text.chars().count() as u64;
    fn walk(parts: &[Part], count: &mut dyn FnMut(&str), images: &mut u64) {
        for part in parts {
            match part {
                Part::Text { text, .. } | Part::Refusal { text } | Part::Thinking { text, .. } => {
                    count(text)
                }
                Part::Image { .. } => *images += 1,
                Part::ToolCall {
                    name, arguments, ..
                } => {
                    count(name);
                    count(arguments);
                }
                Part::ToolResult { content, .. } => walk(content, count, images),
                Part::RedactedThinking { .. } => {}
                Part::Opaque { value, .. } => count(&value.to_string()),
            }
        }
    }
    for m in &request.messages {
        walk(&m.content, &mut count, &mut images);
    }
    for t in &request.tools {
        count(&t.name);
        if let Some(d) = &t.description {
            count(d);
        }
        count(t.parameters.get());
    }
    for t in &request.native_tools {
        count(&t.definition.to_string());
    }
    chars.div_ceil(CHARS_PER_TOKEN)
        + TOKENS_PER_MESSAGE * request.messages.len() as u64
        + TOKENS_PER_IMAGE * images
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(body: &str) -> ChatRequest {
        decode_count_request(body.as_bytes()).unwrap()
    }

    #[test]
    fn the_estimate_counts_text_tools_and_images_at_four_characters_a_token() {
        let r = decode(
            r#"{"model":"m","system":"abcd","messages":[{"role":"user","content":"12345678"}]}"#,
        );
        // 12 characters → 3 tokens, and two messages (system, user) at 3 each.
        assert_eq!(estimate(&r), 3 + 2 * TOKENS_PER_MESSAGE);
        let with_tool = decode(
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"abcd"},
                {"type":"image","source":{"type":"base64","media_type":"image/png","data":"AAAA"}}]}],
                "tools":[{"name":"ab","description":"cd","input_schema":{"type":"object"}}]}"#,
        );
        let schema = r#"{"type":"object"}"#.len() as u64;
        assert_eq!(
            estimate(&with_tool),
            (4 + 2 + 2 + schema).div_ceil(4) + TOKENS_PER_MESSAGE + TOKENS_PER_IMAGE
        );
        assert_eq!(estimate(&with_tool), estimate(&with_tool));
    }

    #[test]
    fn count_requests_refuse_generation_settings_and_bad_json() {
        for body in [
            r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}]}"#,
            r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}"#,
            r#"{"model":"m"}"#,
            "[1]",
            "{",
        ] {
            let e = decode_count_request(body.as_bytes()).unwrap_err();
            assert_eq!(e.status(), StatusCode::BAD_REQUEST, "{body}");
        }
    }
}
