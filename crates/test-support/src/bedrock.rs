//! Amazon Bedrock Runtime's Converse API as the mock speaks it, written from the Bedrock Runtime
//! API reference (and the service model the AWS SDKs are generated from):
//!
//! - `POST /model/{modelId}/converse` and `POST /model/{modelId}/converse-stream`, the model id
//!   percent-encoded in the path as the SDKs send it;
//! - every request signed with AWS Signature Version 4 for service `bedrock` in the mock's
//!   region, checked by [`SigV4Verifier`] before anything else (a bad one is a 403 with AWS's
//!   body and `x-amzn-ErrorType`);
//! - the request: `messages` (roles `user`/`assistant`, alternating, starting with `user`;
//!   content blocks `text`, `image`, `document`, `toolUse`, `toolResult`, …), `system`,
//!   `inferenceConfig`, `toolConfig` (`tools[].toolSpec` with `inputSchema.json`, `toolChoice`
//!   `auto`/`any`/`tool`), checked as Bedrock checks it (a `toolUse` or `toolResult` without
//!   `toolConfig`, tool results that do not answer the previous turn's calls…), refused with a
//!   `ValidationException`;
//! - the answer: `output.message` (text and `toolUse` blocks), `stopReason`, `usage`
//!   (`inputTokens`, `outputTokens`, `totalTokens`), `metrics.latencyMs`; streamed as an AWS event
//!   stream (`application/vnd.amazon.eventstream`, written with `portcullis-dialects`'s encoder):
//!   `messageStart`, then per block `contentBlockStart` (tool use only, as Bedrock does),
//!   `contentBlockDelta` (`text`, or `toolUse.input` fragments), `contentBlockStop`, then
//!   `messageStop` and `metadata` (usage, metrics). Like Bedrock, every event carries a `p`
//!   member of padding, which clients ignore;
//! - `POST /model/{modelId}/invoke` (InvokeModel) for the embedding models, with each family's
//!   own body: Amazon Titan Text Embeddings v1 and v2 and Titan Multimodal Embeddings
//!   (`inputText`; v2's `dimensions` 256, 512 or 1024, `normalize`, `embeddingTypes`; the
//!   multimodal model's `embeddingConfig.outputEmbeddingLength`), answered with `embedding`,
//!   `inputTextTokenCount` (and `embeddingsByType`); Cohere Embed v3 and v4 (`texts`, at most 96,
//!   `input_type` required, `truncate`, `embedding_types`, v4's `output_dimension`), answered with
//!   `embeddings` (a list, or by type), `id`, `response_type` and `texts`. Unknown members are
//!   refused as Bedrock refuses them (`Malformed input request: extraneous key [...] is not
//!   permitted`); every answer carries `X-Amzn-Bedrock-Input-Token-Count`;
//! - errors as rest-json carries them: the status, `x-amzn-ErrorType`, `x-amzn-RequestId` and
//!   `{"message": …}` (`mock-error-429` is a `ThrottlingException`, `mock-error-503` a
//!   `ServiceUnavailableException`…); `mock-error-midstream` sends a `modelStreamErrorException`
//!   message inside the stream, `mock-drop-midstream` cuts it.
//!
//! - the control plane's `GET /foundation-models` (ListFoundationModels, signed for the same
//!   service), served on the same server as a private endpoint would: `modelSummaries` of a
//!   fixed catalogue ([`FOUNDATION_MODELS`]) with their modalities, streaming support,
//!   inference types and lifecycle, narrowed by `byProvider`, `byOutputModality`,
//!   `byInferenceType` and `byCustomizationType` as Bedrock narrows them (an unknown value of
//!   the enumerations a `ValidationException`).
//!
//! What to answer is planned as for the other APIs ([`scenario::plan`], a `[call …]` directive
//! in the last message first).

use std::time::{Duration, Instant, SystemTime};

use http::Response;
use http::request::Parts;
use portcullis_dialects::aws_eventstream::{self, Message};
use serde_json::{Map, Value, json};

use crate::MockOptions;
use crate::reply::{MockBody, StreamEnd, chunked_response, hangup_response, json_response};
use crate::scenario::{self, Outcome, ToolCallPlan, tokens};
use crate::sigv4::{AwsKey, SigV4Verifier};

/// The service name Bedrock Runtime requests are signed for.
pub const SIGNING_NAME: &str = "bedrock";

/// The content block types of a message (the `ContentBlock` union).
const CONTENT_BLOCKS: &[&str] = &[
    "text",
    "image",
    "document",
    "video",
    "audio",
    "toolUse",
    "toolResult",
    "guardContent",
    "cachePoint",
    "reasoningContent",
    "citationsContent",
    "searchResult",
];

/// Whether the mock answers `path` as Bedrock (its runtime or its control plane's model list).
pub(crate) fn handles(path: &str) -> bool {
    path.starts_with("/model/") || path == "/foundation-models"
}

/// One foundation model of the mock's catalogue: id, name, provider, input and output
/// modalities, streaming, customizations, inference types, lifecycle status.
pub type FoundationModel = (
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
    bool,
    &'static [&'static str],
    &'static [&'static str],
    &'static str,
);

/// The mock's foundation models, as ListFoundationModels describes them: text models on
/// demand, a model reached only through inference profiles, embedding and image models.
pub const FOUNDATION_MODELS: &[FoundationModel] = &[
    (
        "amazon.nova-lite-v1:0",
        "Nova Lite",
        "Amazon",
        &["TEXT", "IMAGE", "VIDEO"],
        &["TEXT"],
        true,
        &["FINE_TUNING"],
        &["ON_DEMAND", "PROVISIONED"],
        "ACTIVE",
    ),
    (
        "amazon.nova-pro-v1:0",
        "Nova Pro",
        "Amazon",
        &["TEXT", "IMAGE", "VIDEO"],
        &["TEXT"],
        true,
        &[],
        &["ON_DEMAND"],
        "ACTIVE",
    ),
    (
        "anthropic.claude-3-haiku-20240307-v1:0",
        "Claude 3 Haiku",
        "Anthropic",
        &["TEXT", "IMAGE"],
        &["TEXT"],
        true,
        &[],
        &["ON_DEMAND"],
        "ACTIVE",
    ),
    (
        "anthropic.claude-sonnet-4-5-20250929-v1:0",
        "Claude Sonnet 4.5",
        "Anthropic",
        &["TEXT", "IMAGE"],
        &["TEXT"],
        true,
        &[],
        &["INFERENCE_PROFILE"],
        "ACTIVE",
    ),
    (
        "meta.llama3-8b-instruct-v1:0",
        "Llama 3 8B Instruct",
        "Meta",
        &["TEXT"],
        &["TEXT"],
        true,
        &[],
        &["ON_DEMAND"],
        "LEGACY",
    ),
    (
        "amazon.titan-embed-text-v2:0",
        "Titan Text Embeddings V2",
        "Amazon",
        &["TEXT"],
        &["EMBEDDING"],
        false,
        &[],
        &["ON_DEMAND"],
        "ACTIVE",
    ),
    (
        "cohere.embed-english-v3",
        "Embed English",
        "Cohere",
        &["TEXT"],
        &["EMBEDDING"],
        false,
        &[],
        &["ON_DEMAND"],
        "ACTIVE",
    ),
    (
        "stability.sd3-5-large-v1:0",
        "Stable Diffusion 3.5 Large",
        "Stability AI",
        &["TEXT", "IMAGE"],
        &["IMAGE"],
        false,
        &[],
        &["ON_DEMAND"],
        "ACTIVE",
    ),
];

/// `GET /foundation-models`: the catalogue, narrowed by the query's filters.
fn foundation_models(parts: &Parts, n: u64) -> Response<MockBody> {
    let mut filters: Vec<(String, String)> = Vec::new();
    for pair in parts.uri.query().unwrap_or_default().split('&') {
        if pair.is_empty() {
            continue;
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(&v.replace('+', " "));
        let allowed: &[&str] = match k {
            "byOutputModality" => &["TEXT", "IMAGE", "EMBEDDING"],
            "byInferenceType" => &["ON_DEMAND", "PROVISIONED"],
            "byCustomizationType" => &["FINE_TUNING", "CONTINUED_PRE_TRAINING", "DISTILLATION"],
            "byProvider" => &[],
            // Unknown query parameters are ignored, as rest-json services do.
            _ => continue,
        };
        if !allowed.is_empty() && !allowed.contains(&v.as_str()) {
            return validation(
                format!(
                    "1 validation error detected: Value '{v}' at '{k}' failed to satisfy                      constraint: Member must satisfy enum value set: [{}]",
                    allowed.join(", ")
                ),
                n,
            );
        }
        filters.push((k.to_owned(), v));
    }
    let summaries: Vec<Value> = FOUNDATION_MODELS
        .iter()
        .filter(|(_, _, provider, _, output, _, custom, inference, _)| {
            filters.iter().all(|(k, v)| match k.as_str() {
                "byOutputModality" => output.contains(&v.as_str()),
                "byInferenceType" => inference.contains(&v.as_str()),
                "byCustomizationType" => custom.contains(&v.as_str()),
                _ => provider.eq_ignore_ascii_case(v),
            })
        })
        .map(
            |(id, name, provider, input, output, streaming, custom, inference, status)| {
                json!({
                    "modelArn": format!("arn:aws:bedrock:{}::foundation-model/{id}", region_of(parts)),
                    "modelId": id,
                    "modelName": name,
                    "providerName": provider,
                    "inputModalities": input,
                    "outputModalities": output,
                    "responseStreamingSupported": streaming,
                    "customizationsSupported": custom,
                    "inferenceTypesSupported": inference,
                    "modelLifecycle": {"status": status},
                })
            },
        )
        .collect();
    json_response(200, &json!({ "modelSummaries": summaries }), &headers(n))
}

/// The region the request was signed for (its credential scope), for the models' ARNs.
fn region_of(parts: &Parts) -> String {
    parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split("Credential=").nth(1))
        .and_then(|c| c.split('/').nth(2))
        .unwrap_or("us-east-1")
        .to_owned()
}

/// `x-amzn-RequestId` for the `n`th request.
fn request_id(n: u64) -> String {
    let h = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        h >> 32,
        (h >> 16) & 0xffff,
        h & 0xfff,
        n & 0xfff,
        n
    )
}

fn headers(n: u64) -> Vec<(String, String)> {
    vec![("x-amzn-RequestId".into(), request_id(n))]
}

/// A Bedrock error: `status`, `x-amzn-ErrorType: <error_type>` and `{"message": …}`.
pub fn error(status: u16, error_type: &str, message: &str, n: u64) -> Response<MockBody> {
    let mut h = headers(n);
    h.push(("x-amzn-ErrorType".into(), error_type.to_owned()));
    json_response(status, &json!({ "message": message }), &h)
}

fn validation(message: impl AsRef<str>, n: u64) -> Response<MockBody> {
    error(400, "ValidationException", message.as_ref(), n)
}

/// The error Bedrock answers with for a status.
pub fn status_error(status: u16, n: u64) -> Response<MockBody> {
    match status {
        400 => validation(
            "Malformed input request, please reformat your input and try again.",
            n,
        ),
        401 => error(
            403,
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
            n,
        ),
        403 => error(
            403,
            "AccessDeniedException",
            "You don't have access to the model with the specified model ID.",
            n,
        ),
        404 => error(
            404,
            "ResourceNotFoundException",
            "Could not resolve the foundation model from the provided model identifier.",
            n,
        ),
        408 => error(
            408,
            "ModelTimeoutException",
            "Model has timed out in processing the request. Try your request again.",
            n,
        ),
        424 => error(
            424,
            "ModelErrorException",
            "The model encountered an error processing the request.",
            n,
        ),
        429 => error(
            429,
            "ThrottlingException",
            "Too many requests, please wait before trying again.",
            n,
        ),
        503 => error(
            503,
            "ServiceUnavailableException",
            "Bedrock is unable to process your request.",
            n,
        ),
        s => error(
            s,
            "InternalServerException",
            "The server encountered an internal error while processing the request.",
            n,
        ),
    }
}

/// The mock's signature check, for every Bedrock request before anything else: the refusal,
/// if the signature does not hold.
pub(crate) fn authenticate(
    opts: &MockOptions,
    parts: &Parts,
    body: &[u8],
    n: u64,
) -> Option<Response<MockBody>> {
    let verifier = SigV4Verifier::new(
        vec![AwsKey {
            access_key_id: opts.aws_access_key_id.clone(),
            secret_access_key: opts.aws_secret_access_key.clone(),
            session_token: opts.aws_session_token.clone(),
        }],
        opts.aws_region.clone(),
        SIGNING_NAME,
    );
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    verifier
        .verify(
            parts.method.as_str(),
            path_and_query,
            &parts.headers,
            body,
            SystemTime::now(),
        )
        .err()
        .map(|r| {
            let mut h = headers(n);
            h.push(("x-amzn-ErrorType".into(), r.error_type_header()));
            json_response(r.status, &json!({ "message": r.message }), &h)
        })
}

/// `POST /model/{modelId}/converse` and `/converse-stream` (anything else under `/model/` is
/// an unknown operation).
pub(crate) async fn handle(
    frame_delay: Duration,
    parts: &Parts,
    body: &Value,
    n: u64,
) -> Response<MockBody> {
    let started = Instant::now();
    let path = parts.uri.path();
    if path == "/foundation-models" {
        if parts.method != http::Method::GET {
            return error(
                404,
                "UnknownOperationException",
                "The requested operation is not recognized by the service.",
                n,
            );
        }
        return foundation_models(parts, n);
    }
    let rest = path.strip_prefix("/model/").unwrap_or_default();
    let (model, stream) = match rest.rsplit_once('/') {
        Some((model, "converse")) => (model, false),
        Some((model, "converse-stream")) => (model, true),
        Some((model, "invoke")) if parts.method == http::Method::POST => {
            return invoke(&percent_decode(model), body, n);
        }
        _ => {
            return error(
                404,
                "UnknownOperationException",
                "The requested operation is not recognized by the service.",
                n,
            );
        }
    };
    if parts.method != http::Method::POST {
        return error(
            404,
            "UnknownOperationException",
            "The requested operation is not recognized by the service.",
            n,
        );
    }
    let model = percent_decode(model);
    if model.is_empty() {
        return validation(
            "1 validation error detected: Value at 'modelId' failed to satisfy constraint: \
             Member must have length greater than or equal to 1",
            n,
        );
    }
    let Some(request) = body.as_object() else {
        return error(
            400,
            "SerializationException",
            "Unable to parse the request body as JSON.",
            n,
        );
    };
    let checked = match check(request) {
        Ok(c) => c,
        Err(message) => return validation(message, n),
    };

    let instructed = scenario::instructed_call(&checked.last_message_text)
        .map(|call| Outcome::ToolCalls(vec![call]));
    let plan = match instructed {
        Some(outcome) => scenario::Plan {
            outcome,
            delay: Duration::ZERO,
        },
        None => scenario::plan(
            &model,
            &checked.last_user_text,
            &checked.tools,
            checked.forced.as_deref(),
        ),
    };
    if !plan.delay.is_zero() {
        tokio::time::sleep(plan.delay).await;
    }
    let mut prompt = Value::Array(checked.messages.clone()).to_string();
    if let Some(system) = request.get("system") {
        prompt.push_str(&system.to_string());
    }
    let input_tokens = tokens(&prompt);

    let (blocks, stop_reason, output_tokens) = match plan.outcome {
        Outcome::Error(status) => return status_error(status, n),
        Outcome::Text(answer) => {
            let out = tokens(&answer);
            (vec![Block::Text(answer)], "end_turn", out)
        }
        Outcome::ToolCalls(calls) => {
            let out = calls
                .iter()
                .map(|c| tokens(&c.name) + tokens(&c.arguments))
                .sum();
            let blocks = calls
                .into_iter()
                .enumerate()
                .map(|(i, ToolCallPlan { name, arguments })| Block::ToolUse {
                    id: scenario::id("tooluse_", n * 10 + i as u64),
                    name,
                    input: arguments,
                })
                .collect();
            (blocks, "tool_use", out)
        }
        Outcome::DropMidstream | Outcome::ErrorMidstream if !stream => {
            return if plan.outcome == Outcome::DropMidstream {
                hangup_response()
            } else {
                status_error(500, n)
            };
        }
        Outcome::DropMidstream | Outcome::ErrorMidstream => {
            let mut messages = vec![
                event("messageStart", json!({"role": "assistant"})),
                event(
                    "contentBlockDelta",
                    json!({"contentBlockIndex": 0, "delta": {"text": "Partial "}}),
                ),
            ];
            let end = if plan.outcome == Outcome::DropMidstream {
                StreamEnd::Abort
            } else {
                messages.push(Message::exception(
                    "modelStreamErrorException",
                    json!({
                        "message": "The model's response stream was interrupted.",
                        "originalStatusCode": 529,
                        "originalMessage": "Overloaded",
                    })
                    .to_string(),
                ));
                StreamEnd::Complete
            };
            return event_stream_response(messages, frame_delay, end, n);
        }
    };
    let usage = json!({
        "inputTokens": input_tokens,
        "outputTokens": output_tokens,
        "totalTokens": input_tokens + output_tokens,
    });
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);

    if !stream {
        let content: Vec<Value> = blocks.iter().map(Block::to_json).collect();
        return json_response(
            200,
            &json!({
                "output": {"message": {"role": "assistant", "content": content}},
                "stopReason": stop_reason,
                "usage": usage,
                "metrics": {"latencyMs": latency_ms},
            }),
            &headers(n),
        );
    }

    let mut messages = vec![event("messageStart", json!({"role": "assistant"}))];
    for (i, block) in blocks.iter().enumerate() {
        match block {
            Block::Text(text) => {
                for piece in scenario::pieces(text) {
                    messages.push(event(
                        "contentBlockDelta",
                        json!({"contentBlockIndex": i, "delta": {"text": piece}}),
                    ));
                }
            }
            Block::ToolUse { id, name, input } => {
                messages.push(event(
                    "contentBlockStart",
                    json!({"contentBlockIndex": i,
                           "start": {"toolUse": {"toolUseId": id, "name": name}}}),
                ));
                for fragment in scenario::fragments(input) {
                    messages.push(event(
                        "contentBlockDelta",
                        json!({"contentBlockIndex": i,
                               "delta": {"toolUse": {"input": fragment}}}),
                    ));
                }
            }
        }
        messages.push(event("contentBlockStop", json!({"contentBlockIndex": i})));
    }
    messages.push(event("messageStop", json!({"stopReason": stop_reason})));
    messages.push(event(
        "metadata",
        json!({"usage": usage, "metrics": {"latencyMs": latency_ms}}),
    ));
    event_stream_response(messages, frame_delay, StreamEnd::Complete, n)
}

/// `POST /model/{modelId}/invoke`: the embedding models' native bodies.
fn invoke(model: &str, body: &Value, n: u64) -> Response<MockBody> {
    if let Some(status) = model
        .strip_prefix("mock-error-")
        .and_then(|s| s.parse::<u16>().ok())
    {
        return status_error(status, n);
    }
    let Some(request) = body.as_object() else {
        return validation(
            "Malformed input request, please reformat your input and try again.",
            n,
        );
    };
    let base = model
        .rsplit_once('/')
        .map_or(model, |(_, id)| id)
        .trim_start_matches("us.")
        .trim_start_matches("eu.")
        .trim_start_matches("apac.")
        .trim_start_matches("global.");
    let answer = if base.starts_with("amazon.titan-embed") {
        titan_embedding(base, request)
    } else if base.starts_with("cohere.embed") {
        cohere_embedding(base, request, n)
    } else {
        Err(format!(
            "The provided model identifier is invalid. ({model} does not support InvokeModel in \
             the mock; its embedding models are amazon.titan-embed-* and cohere.embed-*)"
        ))
    };
    match answer {
        Ok((answer, input_tokens)) => {
            let mut h = headers(n);
            h.push((
                "X-Amzn-Bedrock-Input-Token-Count".into(),
                input_tokens.to_string(),
            ));
            json_response(200, &answer, &h)
        }
        Err(message) => validation(message, n),
    }
}

/// A member of `request` outside `allowed`, as Bedrock names it.
fn extraneous(request: &Map<String, Value>, allowed: &[&str]) -> Result<(), String> {
    match request.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(key) => Err(format!(
            "Malformed input request: #: extraneous key [{key}] is not permitted, please \
             reformat your input and try again."
        )),
        None => Ok(()),
    }
}

/// Titan Text Embeddings (v1, v2) and Titan Multimodal Embeddings, text input.
fn titan_embedding(model: &str, request: &Map<String, Value>) -> Result<(Value, u64), String> {
    let v2 = model.starts_with("amazon.titan-embed-text-v2");
    let image = model.starts_with("amazon.titan-embed-image");
    let allowed: &[&str] = if v2 {
        &["inputText", "dimensions", "normalize", "embeddingTypes"]
    } else if image {
        &["inputText", "inputImage", "embeddingConfig"]
    } else {
        &["inputText"]
    };
    extraneous(request, allowed)?;
    let Some(text) = request.get("inputText").and_then(Value::as_str) else {
        return Err(
            "Malformed input request: #: required key [inputText] not found, please \
                    reformat your input and try again."
                .into(),
        );
    };
    if text.is_empty() {
        return Err(
            "Malformed input request: #/inputText: expected minLength: 1, actual: 0, \
                    please reformat your input and try again."
                .into(),
        );
    }
    let dimensions = if v2 {
        match request.get("dimensions") {
            None => 1024,
            Some(d) => match d.as_u64() {
                Some(d @ (256 | 512 | 1024)) => d as usize,
                _ => {
                    return Err(format!(
                        "Malformed input request: #/dimensions: {d} is not a valid enum value, \
                         please reformat your input and try again."
                    ));
                }
            },
        }
    } else if image {
        match request
            .get("embeddingConfig")
            .and_then(|c| c.get("outputEmbeddingLength"))
        {
            None => 1024,
            Some(d) => match d.as_u64() {
                Some(d @ (256 | 384 | 1024)) => d as usize,
                _ => {
                    return Err(format!(
                        "Malformed input request: #/embeddingConfig/outputEmbeddingLength: {d} \
                         is not a valid enum value, please reformat your input and try again."
                    ));
                }
            },
        }
    } else {
        1536
    };
    let vector = crate::openai::embedding(text, dimensions);
    let count = tokens(text);
    let mut answer = json!({ "embedding": vector, "inputTextTokenCount": count });
    if v2 && let Some(types) = request.get("embeddingTypes").and_then(Value::as_array) {
        let mut by_type = Map::new();
        for t in types {
            match t.as_str() {
                Some("float") => {
                    by_type.insert("float".into(), json!(vector));
                }
                Some("binary") => {
                    let bits: Vec<u8> = vector.iter().map(|x| u8::from(*x > 0.0)).collect();
                    by_type.insert("binary".into(), json!(bits));
                }
                _ => {
                    return Err(format!(
                        "Malformed input request: #/embeddingTypes: {t} is not a valid enum \
                         value, please reformat your input and try again."
                    ));
                }
            }
        }
        answer["embeddingsByType"] = Value::Object(by_type);
    }
    Ok((answer, count))
}

/// Cohere Embed v3 and v4 on Bedrock.
fn cohere_embedding(
    model: &str,
    request: &Map<String, Value>,
    n: u64,
) -> Result<(Value, u64), String> {
    let v4 = model.starts_with("cohere.embed-v4");
    let allowed: &[&str] = if v4 {
        &[
            "texts",
            "images",
            "inputs",
            "input_type",
            "truncate",
            "embedding_types",
            "output_dimension",
            "max_tokens",
        ]
    } else {
        &[
            "texts",
            "images",
            "input_type",
            "truncate",
            "embedding_types",
        ]
    };
    extraneous(request, allowed)?;
    let Some(texts) = request.get("texts").and_then(Value::as_array) else {
        return Err(
            "Malformed input request: #: required key [texts] not found, please \
                    reformat your input and try again."
                .into(),
        );
    };
    let texts: Vec<&str> = texts.iter().filter_map(Value::as_str).collect();
    if texts.is_empty() || texts.len() > 96 {
        return Err(format!(
            "Malformed input request: #/texts: expected between 1 and 96 texts, got {}, please \
             reformat your input and try again.",
            texts.len()
        ));
    }
    match request.get("input_type").and_then(Value::as_str) {
        Some("search_document" | "search_query" | "classification" | "clustering" | "image") => {}
        Some(other) => {
            return Err(format!(
                "Malformed input request: #/input_type: {other} is not a valid enum value, \
                 please reformat your input and try again."
            ));
        }
        None => {
            return Err(
                "Malformed input request: #: required key [input_type] not found, \
                        please reformat your input and try again."
                    .into(),
            );
        }
    }
    if let Some(t) = request.get("truncate")
        && !matches!(t.as_str(), Some("NONE" | "START" | "END"))
    {
        return Err(format!(
            "Malformed input request: #/truncate: {t} is not a valid enum value, please \
             reformat your input and try again."
        ));
    }
    let dimensions = match request.get("output_dimension") {
        None if v4 => 1536,
        None => 1024,
        Some(d) => match d.as_u64() {
            Some(d @ (256 | 512 | 1024 | 1536)) => d as usize,
            _ => {
                return Err(format!(
                    "Malformed input request: #/output_dimension: {d} is not a valid enum \
                     value, please reformat your input and try again."
                ));
            }
        },
    };
    let vectors: Vec<Vec<f32>> = texts
        .iter()
        .map(|t| crate::openai::embedding(t, dimensions))
        .collect();
    let count: u64 = texts.iter().map(|t| tokens(t)).sum();
    let id = request_id(n + 1_000_000);
    let answer = match request.get("embedding_types").and_then(Value::as_array) {
        Some(types) => {
            let mut by_type = Map::new();
            for t in types {
                match t.as_str() {
                    Some("float") => {
                        by_type.insert("float".into(), json!(vectors));
                    }
                    Some(other @ ("int8" | "uint8" | "binary" | "ubinary")) => {
                        let ints: Vec<Vec<i64>> = vectors
                            .iter()
                            .map(|v| v.iter().map(|x| (x * 127.0) as i64).collect())
                            .collect();
                        by_type.insert(other.into(), json!(ints));
                    }
                    _ => {
                        return Err(format!(
                            "Malformed input request: #/embedding_types: {t} is not a valid \
                             enum value, please reformat your input and try again."
                        ));
                    }
                }
            }
            json!({"embeddings": by_type, "id": id, "response_type": "embeddings_by_type", "texts": texts})
        }
        None => {
            json!({"embeddings": vectors, "id": id, "response_type": "embeddings_floats", "texts": texts})
        }
    };
    Ok((answer, count))
}

/// An event message whose JSON payload gets Bedrock's `p` padding member.
fn event(event_type: &str, mut payload: Value) -> Message {
    if let Some(map) = payload.as_object_mut() {
        let pad = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        let len = (event_type.len() * 2).min(pad.len());
        map.insert("p".into(), Value::String(pad[..len].into()));
    }
    Message::event(event_type, payload.to_string())
}

/// The messages as an event-stream body, one message per chunk.
fn event_stream_response(
    messages: Vec<Message>,
    frame_delay: Duration,
    then: StreamEnd,
    n: u64,
) -> Response<MockBody> {
    let mut chunks = Vec::with_capacity(messages.len());
    for m in &messages {
        match m.encode() {
            Ok(bytes) => chunks.push(bytes),
            Err(e) => return status_error_with(500, &e.to_string(), n),
        }
    }
    chunked_response(
        chunks,
        aws_eventstream::CONTENT_TYPE,
        frame_delay,
        then,
        &headers(n),
    )
}

fn status_error_with(status: u16, message: &str, n: u64) -> Response<MockBody> {
    error(status, "InternalServerException", message, n)
}

/// What a valid request holds that the answer depends on.
#[derive(Debug)]
struct Checked {
    messages: Vec<Value>,
    tools: Vec<String>,
    forced: Option<String>,
    last_user_text: String,
    last_message_text: String,
}

/// Checks a Converse request as Bedrock does: the error message of the first problem.
fn check(request: &Map<String, Value>) -> Result<Checked, String> {
    let messages = match request.get("messages") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(m)) => m.clone(),
        Some(_) => return Err("messages must be a list of messages.".into()),
    };
    if messages.is_empty() {
        return Err(
            "A conversation must start with a user message. Try again with a \
                    conversation that starts with a user message."
                .into(),
        );
    }
    if let Some(system) = request.get("system") {
        let ok = system.as_array().is_some_and(|blocks| {
            blocks.iter().all(|b| {
                b.as_object().is_some_and(|b| {
                    b.len() == 1
                        && match b.get("text") {
                            Some(t) => t.as_str().is_some_and(|t| !t.is_empty()),
                            None => b.contains_key("guardContent") || b.contains_key("cachePoint"),
                        }
                })
            })
        });
        if !ok {
            return Err("system must be a list of system content blocks \
                        ({\"text\": …}, {\"guardContent\": …} or {\"cachePoint\": …})."
                .into());
        }
    }
    if let Some(config) = request.get("inferenceConfig") {
        if let Some(max) = config.get("maxTokens")
            && max.as_u64().is_none_or(|m| m < 1)
        {
            return Err(
                "1 validation error detected: Value at 'inferenceConfig.maxTokens' \
                        failed to satisfy constraint: Member must have value greater than or \
                        equal to 1"
                    .into(),
            );
        }
        for (field, max) in [("temperature", 1.0), ("topP", 1.0)] {
            if let Some(v) = config.get(field)
                && v.as_f64().is_none_or(|v| !(0.0..=max).contains(&v))
            {
                return Err(format!(
                    "1 validation error detected: Value at 'inferenceConfig.{field}' failed to \
                     satisfy constraint: Member must have value less than or equal to {max}"
                ));
            }
        }
    }
    let (tools, forced) = match request.get("toolConfig") {
        None | Some(Value::Null) => (Vec::new(), None),
        Some(config) => check_tool_config(config)?,
    };

    let mut previous_calls: Vec<String> = Vec::new();
    let mut uses_tools = false;
    for (i, message) in messages.iter().enumerate() {
        let role = message.get("role").and_then(Value::as_str);
        let expected = if i % 2 == 0 { "user" } else { "assistant" };
        match role {
            Some("user" | "assistant") => {}
            _ => {
                return Err(format!(
                    "1 validation error detected: Value at 'messages.{i}.member.role' failed to \
                     satisfy constraint: Member must satisfy enum value set: [user, assistant]"
                ));
            }
        }
        if i == 0 && role != Some("user") {
            return Err(
                "A conversation must start with a user message. Try again with a \
                        conversation that starts with a user message."
                    .into(),
            );
        }
        if role != Some(expected) {
            return Err(
                "A conversation must alternate between user and assistant roles. Make \
                        sure the conversation alternates between user and assistant roles and \
                        try again."
                    .into(),
            );
        }
        let Some(content) = message.get("content").and_then(Value::as_array) else {
            return Err(format!(
                "The content field in the Message object at messages.{i} is empty. Add a \
                 ContentBlock object to the content field and try again."
            ));
        };
        if content.is_empty() {
            return Err(format!(
                "The content field in the Message object at messages.{i} is empty. Add a \
                 ContentBlock object to the content field and try again."
            ));
        }
        let mut calls = Vec::new();
        let mut results = Vec::new();
        for (j, block) in content.iter().enumerate() {
            let kind = block
                .as_object()
                .filter(|b| b.len() == 1)
                .and_then(|b| b.keys().next())
                .map(String::as_str);
            let Some(kind) = kind.filter(|k| CONTENT_BLOCKS.contains(k)) else {
                return Err(format!(
                    "messages.{i}.content.{j} must hold exactly one of: {}.",
                    CONTENT_BLOCKS.join(", ")
                ));
            };
            match kind {
                "text" if block["text"].as_str().is_none_or(str::is_empty) => {
                    return Err(format!(
                        "The text field in the ContentBlock object at messages.{i}.content.{j} \
                         is blank. Add text to the text field, and try again."
                    ));
                }
                "toolUse" => {
                    uses_tools = true;
                    if role != Some("assistant") {
                        return Err(format!(
                            "messages.{i}.content.{j}: toolUse blocks are only allowed in \
                             assistant messages."
                        ));
                    }
                    let tool_use = &block["toolUse"];
                    let id = tool_use.get("toolUseId").and_then(Value::as_str);
                    let name = tool_use.get("name").and_then(Value::as_str);
                    let (Some(id), Some(_), true) = (id, name, tool_use.get("input").is_some())
                    else {
                        return Err(format!(
                            "messages.{i}.content.{j}.toolUse requires toolUseId, name and \
                             input."
                        ));
                    };
                    calls.push(id.to_owned());
                }
                "toolResult" => {
                    uses_tools = true;
                    let result = &block["toolResult"];
                    let id = result.get("toolUseId").and_then(Value::as_str);
                    let content_ok =
                        result
                            .get("content")
                            .and_then(Value::as_array)
                            .is_some_and(|c| {
                                c.iter().all(|b| {
                                    b.as_object().is_some_and(|b| {
                                        b.len() == 1
                                            && [
                                                "text",
                                                "json",
                                                "image",
                                                "document",
                                                "video",
                                                "searchResult",
                                            ]
                                            .iter()
                                            .any(|k| b.contains_key(*k))
                                    })
                                })
                            });
                    let status_ok = match result.get("status") {
                        None => true,
                        Some(s) => matches!(s.as_str(), Some("success" | "error")),
                    };
                    let (Some(id), true, true) = (id, content_ok, status_ok) else {
                        return Err(format!(
                            "messages.{i}.content.{j}.toolResult requires toolUseId and content \
                             (a list of text, json, image, document, video or searchResult \
                             blocks); status is success or error."
                        ));
                    };
                    results.push(id.to_owned());
                }
                _ => {}
            }
        }
        if role == Some("user") {
            if results.len() > previous_calls.len() {
                return Err(format!(
                    "The number of toolResult blocks at messages.{i}.content exceeds the number \
                     of toolUse blocks of previous turn."
                ));
            }
            let missing: Vec<&str> = previous_calls
                .iter()
                .filter(|c| !results.contains(c))
                .map(String::as_str)
                .collect();
            if !missing.is_empty() {
                return Err(format!(
                    "Expected toolResult blocks at messages.{i}.content for the following Ids: {}",
                    missing.join(", ")
                ));
            }
        }
        previous_calls = calls;
    }
    if uses_tools && tools.is_empty() {
        return Err(
            "The toolConfig field must be defined when using toolUse and toolResult content \
             blocks."
                .into(),
        );
    }

    // A turn's text, its tool results' included (what a model reads in it).
    let text_of = |content: &Value| -> String {
        let mut out = String::new();
        for block in content.as_array().into_iter().flatten() {
            if let Some(t) = block.get("text").and_then(Value::as_str) {
                out.push_str(t);
            } else if let Some(result) = block.get("toolResult") {
                for part in result
                    .get("content")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    match (part.get("text"), part.get("json")) {
                        (Some(Value::String(t)), _) => out.push_str(t),
                        (_, Some(j)) => out.push_str(&j.to_string()),
                        _ => {}
                    }
                }
            }
        }
        out
    };
    let last_user_text = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .map(|m| text_of(&m["content"]))
        .unwrap_or_default();
    let last_message_text = messages
        .last()
        .map(|m| text_of(&m["content"]))
        .unwrap_or_default();
    Ok(Checked {
        messages,
        tools,
        forced,
        last_user_text,
        last_message_text,
    })
}

/// `toolConfig`: the tools' names and the forced choice (`Some("")` for `any`).
fn check_tool_config(config: &Value) -> Result<(Vec<String>, Option<String>), String> {
    let Some(list) = config.get("tools").and_then(Value::as_array) else {
        return Err(
            "1 validation error detected: Value null at 'toolConfig.tools' failed to \
                    satisfy constraint: Member must not be null"
                .into(),
        );
    };
    let mut names = Vec::new();
    for (k, tool) in list.iter().enumerate() {
        if tool.get("cachePoint").is_some() || tool.get("systemTool").is_some() {
            continue;
        }
        let spec = tool.get("toolSpec");
        let name = spec.and_then(|s| s.get("name")).and_then(Value::as_str);
        let valid_name = name.is_some_and(|n| {
            (1..=64).contains(&n.len())
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        });
        let schema = spec
            .and_then(|s| s.get("inputSchema"))
            .and_then(|s| s.get("json"));
        match (name, valid_name, schema) {
            (Some(name), true, Some(Value::Object(_))) => {
                if names.iter().any(|n| n == name) {
                    return Err(format!(
                        "The toolConfig field contains duplicate tool names: {name}."
                    ));
                }
                names.push(name.to_owned());
            }
            (Some(name), false, _) => {
                return Err(format!(
                    "1 validation error detected: Value '{name}' at \
                     'toolConfig.tools.{k}.member.toolSpec.name' failed to satisfy constraint: \
                     Member must satisfy regular expression pattern: [a-zA-Z0-9_-]+"
                ));
            }
            _ => {
                return Err(format!(
                    "toolConfig.tools.{k} must be {{\"toolSpec\": {{\"name\", \"inputSchema\": \
                     {{\"json\": {{…}}}}}}}}."
                ));
            }
        }
    }
    if names.is_empty() {
        return Err(
            "1 validation error detected: Value at 'toolConfig.tools' failed to \
                    satisfy constraint: Member must have length greater than or equal to 1"
                .into(),
        );
    }
    let forced = match config.get("toolChoice") {
        None | Some(Value::Null) => None,
        Some(choice) if choice.get("auto").is_some() => None,
        Some(choice) if choice.get("any").is_some() => Some(String::new()),
        Some(choice) => match choice.pointer("/tool/name").and_then(Value::as_str) {
            Some(name) if names.iter().any(|n| n == name) => Some(name.to_owned()),
            Some(name) => {
                return Err(format!(
                    "The tool {name} in toolChoice is not defined in toolConfig.tools."
                ));
            }
            None => {
                return Err(
                    "toolChoice must be one of {\"auto\": {}}, {\"any\": {}} or {\"tool\": \
                     {\"name\": …}}."
                        .into(),
                );
            }
        },
    };
    Ok((names, forced))
}

enum Block {
    Text(String),
    ToolUse {
        id: String,
        name: String,
        input: String,
    },
}

impl Block {
    fn to_json(&self) -> Value {
        match self {
            Block::Text(t) => json!({ "text": t }),
            Block::ToolUse { id, name, input } => json!({"toolUse": {
                "toolUseId": id, "name": name,
                "input": serde_json::from_str::<Value>(input).unwrap_or_else(|_| json!({})),
            }}),
        }
    }
}

/// `%XX` escapes decoded (a path segment; invalid UTF-8 replaced).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |j: usize| bytes.get(j).and_then(|c| char::from(*c).to_digit(16));
        match (bytes[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(body: Value) -> Result<Checked, String> {
        check(body.as_object().unwrap())
    }

    fn tool_config() -> Value {
        json!({"tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": {"type": "object"}}}}]})
    }

    #[test]
    fn requests_are_checked_as_bedrock_checks_them() {
        let user = |t: &str| json!({"role": "user", "content": [{"text": t}]});
        assert!(checked(json!({"messages": [user("hi")]})).is_ok());
        assert!(
            checked(json!({"messages": []}))
                .unwrap_err()
                .starts_with("A conversation must start with a user message")
        );
        assert!(
            checked(json!({"messages": [user("a"), user("b")]}))
                .unwrap_err()
                .starts_with("A conversation must alternate")
        );
        assert!(
            checked(json!({"messages": [{"role": "user", "content": []}]}))
                .unwrap_err()
                .contains("is empty")
        );
        assert!(
            checked(json!({"messages": [user("hi")], "inferenceConfig": {"maxTokens": 0}}))
                .unwrap_err()
                .contains("maxTokens")
        );
        let call = json!({"role": "assistant", "content": [{"toolUse": {"toolUseId": "t1", "name": "get_weather", "input": {}}}]});
        let result = |id: &str| json!({"role": "user", "content": [{"toolResult": {"toolUseId": id, "content": [{"text": "sunny"}]}}]});
        assert_eq!(
            checked(json!({"messages": [user("hi"), call, result("t1")]})).err(),
            Some(
                "The toolConfig field must be defined when using toolUse and toolResult \
                 content blocks."
                    .into()
            )
        );
        let ok = checked(
            json!({"messages": [user("hi"), call, result("t1")], "toolConfig": tool_config()}),
        )
        .unwrap();
        assert_eq!(ok.last_message_text, "sunny");
        assert_eq!(
            ok.last_user_text, "sunny",
            "a tool result is what the turn says"
        );
        assert_eq!(ok.tools, vec!["get_weather".to_owned()]);
        assert_eq!(
            checked(
                json!({"messages": [user("hi"), call, user("no result")], "toolConfig": tool_config()})
            )
            .err(),
            Some("Expected toolResult blocks at messages.2.content for the following Ids: t1".into())
        );
        assert!(
            checked(json!({"messages": [user("hi")], "toolConfig": {"tools": [{"toolSpec": {"name": "bad name", "inputSchema": {"json": {}}}}]}}))
                .unwrap_err()
                .contains("regular expression")
        );
        let forced = checked(json!({"messages": [user("hi")], "toolConfig": {
            "tools": tool_config()["tools"], "toolChoice": {"tool": {"name": "get_weather"}}}}))
        .unwrap();
        assert_eq!(forced.forced.as_deref(), Some("get_weather"));
        assert!(
            checked(json!({"messages": [user("hi")], "toolConfig": {
                "tools": tool_config()["tools"], "toolChoice": {"tool": {"name": "nope"}}}}))
            .is_err()
        );
    }

    #[test]
    fn request_ids_look_like_uuids() {
        let id = request_id(7);
        assert_eq!(id.len(), 36);
        assert_eq!(id.matches('-').count(), 4);
        assert_ne!(id, request_id(8));
    }
}
