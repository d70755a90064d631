//! OpenAI's API as the mock speaks it: `POST /v1/chat/completions` (complete and streamed),
//! `POST /v1/embeddings`, `POST /v1/images/generations`, `POST /v1/audio/speech`,
//! `GET /v1/models` and `GET /v1/models/{model}` (the Responses API in
//! [`crate::responses`]), with OpenAI's
//! authentication, error bodies (`{"error":{"message","type","param","code"}}`),
//! `x-request-id` and rate-limit headers.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use http::{HeaderMap, Response};
use serde_json::{Value, json};

use crate::reply::{MockBody, SseFrame, StreamEnd, json_response, sse_response};
use crate::scenario::{self, Api, Outcome, Responder, tokens};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn headers(n: u64) -> Vec<(String, String)> {
    vec![
        ("x-request-id".into(), scenario::id("req_", n)),
        ("openai-processing-ms".into(), "1".into()),
        ("openai-version".into(), "2020-10-01".into()),
        ("x-ratelimit-limit-requests".into(), "10000".into()),
        ("x-ratelimit-remaining-requests".into(), "9999".into()),
        ("x-ratelimit-limit-tokens".into(), "30000000".into()),
        ("x-ratelimit-remaining-tokens".into(), "29999000".into()),
        ("x-ratelimit-reset-requests".into(), "6ms".into()),
        ("x-ratelimit-reset-tokens".into(), "0s".into()),
    ]
}

/// An OpenAI error response.
pub fn error(
    status: u16,
    message: &str,
    kind: &str,
    code: Option<&str>,
    n: u64,
) -> Response<MockBody> {
    let mut h = headers(n);
    if status == 429 {
        h.push(("retry-after".into(), "1".into()));
    }
    json_response(
        status,
        &json!({"error": {"message": message, "type": kind, "param": null, "code": code}}),
        &h,
    )
}

/// The error OpenAI answers with for a status.
pub fn status_error(status: u16, model: &str, n: u64) -> Response<MockBody> {
    match status {
        400 => error(
            400,
            "Invalid 'messages': the request is malformed.",
            "invalid_request_error",
            None,
            n,
        ),
        401 => error(
            401,
            "Incorrect API key provided: sk-mo****enai. You can find your API key at https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            Some("invalid_api_key"),
            n,
        ),
        403 => error(
            403,
            "You are not allowed to sample from this model",
            "invalid_request_error",
            None,
            n,
        ),
        404 => error(
            404,
            &format!("The model `{model}` does not exist or you do not have access to it."),
            "invalid_request_error",
            Some("model_not_found"),
            n,
        ),
        429 => error(
            429,
            "Rate limit reached for requests. Please try again in 1s.",
            "requests",
            Some("rate_limit_exceeded"),
            n,
        ),
        500 => error(
            500,
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
            n,
        ),
        503 => error(
            503,
            "The engine is currently overloaded, please try again later.",
            "server_error",
            None,
            n,
        ),
        s => error(
            s,
            "The server had an error processing your request.",
            "server_error",
            None,
            n,
        ),
    }
}

pub(crate) fn check_auth(h: &HeaderMap, key: &str, n: u64) -> Option<Response<MockBody>> {
    let ok = h
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.strip_prefix("Bearer ") == Some(key));
    if ok {
        None
    } else if h.get("authorization").is_none() {
        Some(error(
            401,
            "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            "invalid_request_error",
            None,
            n,
        ))
    } else {
        Some(status_error(401, "", n))
    }
}

/// The text of a message's `content` (a string, or the text parts of an array).
pub fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

/// `POST /v1/chat/completions`.
pub async fn chat(
    responder: Option<&dyn Responder>,
    key: &str,
    frame_delay: Duration,
    h: &HeaderMap,
    body: &Value,
    n: u64,
) -> Response<MockBody> {
    if let Some(r) = check_auth(h, key, n) {
        return r;
    }
    let Some(model) = body.get("model").and_then(Value::as_str) else {
        return error(
            400,
            "you must provide a model parameter",
            "invalid_request_error",
            None,
            n,
        );
    };
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        return error(
            400,
            "Missing required parameter: 'messages'.",
            "invalid_request_error",
            Some("missing_required_parameter"),
            n,
        );
    };
    if messages.is_empty() {
        return error(
            400,
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
            "invalid_request_error",
            Some("empty_array"),
            n,
        );
    }
    let text = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .map(|m| content_text(m.get("content").unwrap_or(&Value::Null)))
        .unwrap_or_default();
    let tools: Vec<String> = body
        .get("tools")
        .and_then(Value::as_array)
        .map(|t| {
            t.iter()
                .filter_map(|t| t.pointer("/function/name").and_then(Value::as_str))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let forced = match body.get("tool_choice") {
        Some(Value::String(s)) if s == "required" => Some(String::new()),
        Some(Value::Object(o)) => o
            .get("function")
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        _ => None,
    };
    let instructed = scenario::instructed_call(&scenario::last_message_text(messages))
        .map(|call| Outcome::ToolCalls(vec![call]));
    let plan = match responder
        .and_then(|r| r.respond(Api::OpenAi, body))
        .or(instructed)
    {
        Some(outcome) => scenario::Plan {
            outcome,
            delay: Duration::ZERO,
        },
        None => scenario::plan(model, &text, &tools, forced.as_deref()),
    };
    if !plan.delay.is_zero() {
        tokio::time::sleep(plan.delay).await;
    }
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let include_usage = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let prompt_tokens = tokens(&Value::Array(messages.clone()).to_string());
    let id = scenario::id("chatcmpl-", n);
    let created = now();

    match plan.outcome {
        Outcome::Error(status) => status_error(status, model, n),
        Outcome::Text(answer) => {
            let completion = tokens(&answer);
            let usage = usage(prompt_tokens, completion);
            if !stream {
                return json_response(
                    200,
                    &json!({
                        "id": id, "object": "chat.completion", "created": created, "model": model,
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer, "refusal": null, "annotations": []},
                                     "logprobs": null, "finish_reason": "stop"}],
                        "usage": usage, "service_tier": "default", "system_fingerprint": "fp_mock",
                    }),
                    &headers(n),
                );
            }
            let chunk = Chunker {
                id: &id,
                created,
                model,
                include_usage,
            };
            let mut frames = vec![chunk.frame(
                json!({"role": "assistant", "content": "", "refusal": null}),
                None,
            )];
            for p in scenario::pieces(&answer) {
                frames.push(chunk.frame(json!({"content": p}), None));
            }
            frames.push(chunk.frame(json!({}), Some("stop")));
            if include_usage {
                frames.push(chunk.usage(usage));
            }
            frames.push(SseFrame::data("[DONE]"));
            sse_response(frames, frame_delay, StreamEnd::Complete, &headers(n))
        }
        Outcome::ToolCalls(calls) => {
            let completion: u64 = calls
                .iter()
                .map(|c| tokens(&c.name) + tokens(&c.arguments))
                .sum();
            let usage = usage(prompt_tokens, completion);
            let call_ids: Vec<String> = (0..calls.len())
                .map(|i| scenario::id("call_", n * 10 + i as u64))
                .collect();
            if !stream {
                let tool_calls: Vec<Value> = calls.iter().zip(&call_ids).map(|(c, id)| json!({
                    "id": id, "type": "function", "function": {"name": c.name, "arguments": c.arguments},
                })).collect();
                return json_response(
                    200,
                    &json!({
                        "id": id, "object": "chat.completion", "created": created, "model": model,
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "refusal": null, "tool_calls": tool_calls, "annotations": []},
                                     "logprobs": null, "finish_reason": "tool_calls"}],
                        "usage": usage, "service_tier": "default", "system_fingerprint": "fp_mock",
                    }),
                    &headers(n),
                );
            }
            let chunk = Chunker {
                id: &id,
                created,
                model,
                include_usage,
            };
            let mut frames = vec![chunk.frame(
                json!({"role": "assistant", "content": null, "refusal": null}),
                None,
            )];
            for (i, (c, call_id)) in calls.iter().zip(&call_ids).enumerate() {
                frames.push(chunk.frame(json!({"tool_calls": [{"index": i, "id": call_id, "type": "function", "function": {"name": c.name, "arguments": ""}}]}), None));
                for f in scenario::fragments(&c.arguments) {
                    frames.push(chunk.frame(
                        json!({"tool_calls": [{"index": i, "function": {"arguments": f}}]}),
                        None,
                    ));
                }
            }
            frames.push(chunk.frame(json!({}), Some("tool_calls")));
            if include_usage {
                frames.push(chunk.usage(usage));
            }
            frames.push(SseFrame::data("[DONE]"));
            sse_response(frames, frame_delay, StreamEnd::Complete, &headers(n))
        }
        Outcome::DropMidstream | Outcome::ErrorMidstream => {
            let chunk = Chunker {
                id: &id,
                created,
                model,
                include_usage,
            };
            let mut frames = vec![
                chunk.frame(json!({"role": "assistant", "content": ""}), None),
                chunk.frame(json!({"content": "Partial "}), None),
            ];
            let end = if plan.outcome == Outcome::DropMidstream {
                StreamEnd::Abort
            } else {
                frames.push(SseFrame::data(
                    json!({"error": {"message": "The server had an error while processing your request.", "type": "server_error", "param": null, "code": null}}).to_string(),
                ));
                StreamEnd::Complete
            };
            sse_response(frames, frame_delay, end, &headers(n))
        }
    }
}

fn usage(prompt: u64, completion: u64) -> Value {
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
    })
}

struct Chunker<'a> {
    id: &'a str,
    created: u64,
    model: &'a str,
    include_usage: bool,
}

impl Chunker<'_> {
    fn frame(&self, delta: Value, finish: Option<&str>) -> SseFrame {
        let mut v = json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model, "system_fingerprint": "fp_mock", "service_tier": "default",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        if self.include_usage {
            v["usage"] = Value::Null;
        }
        SseFrame::data(v.to_string())
    }

    fn usage(&self, usage: Value) -> SseFrame {
        SseFrame::data(
            json!({
                "id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model, "system_fingerprint": "fp_mock", "service_tier": "default",
                "choices": [], "usage": usage,
            })
            .to_string(),
        )
    }
}

/// A deterministic unit vector for `text`.
pub fn embedding(text: &str, dims: usize) -> Vec<f32> {
    let mut state: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        state ^= u64::from(b);
        state = state.wrapping_mul(0x0100_0000_01b3);
    }
    let mut v: Vec<f32> = (0..dims)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let x = (state.wrapping_add(i as u64) % 2000) as f32 / 1000.0 - 1.0;
            if x == 0.0 { 0.001 } else { x }
        })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    for x in &mut v {
        *x /= norm;
    }
    v
}

/// `POST /v1/embeddings`.
pub fn embeddings(key: &str, h: &HeaderMap, body: &Value, n: u64) -> Response<MockBody> {
    if let Some(r) = check_auth(h, key, n) {
        return r;
    }
    let Some(model) = body.get("model").and_then(Value::as_str) else {
        return error(
            400,
            "you must provide a model parameter",
            "invalid_request_error",
            None,
            n,
        );
    };
    if let Some(code) = model
        .strip_prefix("mock-error-")
        .and_then(|c| c.parse::<u16>().ok())
    {
        return status_error(code, model, n);
    }
    let inputs: Vec<String> = match body.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| i.to_string())
            })
            .collect(),
        _ => {
            return error(
                400,
                "'input' is a required property",
                "invalid_request_error",
                None,
                n,
            );
        }
    };
    let dims = body
        .get("dimensions")
        .and_then(Value::as_u64)
        .map(|d| d as usize)
        .unwrap_or(8)
        .clamp(1, 4096);
    let base64 = body.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let v = embedding(text, dims);
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let prompt: u64 = inputs.iter().map(|t| tokens(t)).sum();
    json_response(
        200,
        &json!({"object": "list", "data": data, "model": model,
                "usage": {"prompt_tokens": prompt, "total_tokens": prompt}}),
        &headers(n),
    )
}

/// The models the mock's OpenAI API lists.
pub const MODELS: [&str; 3] = ["gpt-4o", "gpt-4o-mini", "text-embedding-3-small"];

fn model_object(id: &str) -> Value {
    json!({"id": id, "object": "model", "created": 1_715_367_049, "owned_by": "system"})
}

/// `GET /v1/models`: every model, in one page (OpenAI's list is not paginated).
pub fn models(key: &str, h: &HeaderMap, n: u64) -> Response<MockBody> {
    if let Some(r) = check_auth(h, key, n) {
        return r;
    }
    let data: Vec<Value> = MODELS.iter().map(|id| model_object(id)).collect();
    json_response(200, &json!({"object": "list", "data": data}), &headers(n))
}

/// `GET /v1/models/{model}`: one model, or OpenAI's 404 for a model it does not have.
pub fn model(key: &str, h: &HeaderMap, id: &str, n: u64) -> Response<MockBody> {
    if let Some(r) = check_auth(h, key, n) {
        return r;
    }
    if MODELS.contains(&id) {
        json_response(200, &model_object(id), &headers(n))
    } else {
        error(
            404,
            &format!("The model '{id}' does not exist"),
            "invalid_request_error",
            Some("model_not_found"),
            n,
        )
    }
}

/// A valid one-pixel PNG, the image every generation answers with.
pub const PIXEL_PNG: [u8; 67] = [
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0a, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x00, 0x01, 0x00, 0x00,
    0x05, 0x00, 0x01, 0x0d, 0x0a, 0x2d, 0xb4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae,
    0x42, 0x60, 0x82,
];

/// `POST /v1/images/generations` (OpenAI's Images API): `prompt` required, `n` images (1 to
/// 10), each as `b64_json` (a one-pixel PNG) or, with `response_format: "url"` (DALL·E only), a
/// URL; `{"created","data":[…]}` with `usage` for GPT Image models.
pub fn images_generations(key: &str, h: &HeaderMap, body: &Value, n: u64) -> Response<MockBody> {
    if let Some(r) = check_auth(h, key, n) {
        return r;
    }
    let Some(prompt) = body.get("prompt").and_then(Value::as_str) else {
        return error(
            400,
            "Missing required parameter: 'prompt'.",
            "invalid_request_error",
            Some("missing_required_parameter"),
            n,
        );
    };
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("dall-e-2");
    let count = body.get("n").and_then(Value::as_u64).unwrap_or(1);
    if !(1..=10).contains(&count) {
        return error(
            400,
            &format!("{count} is not valid for 'n': it must be between 1 and 10."),
            "invalid_request_error",
            None,
            n,
        );
    }
    let gpt_image = model.starts_with("gpt-image");
    let url = body.get("response_format").and_then(Value::as_str) == Some("url");
    if url && gpt_image {
        return error(
            400,
            "Unknown parameter: 'response_format'.",
            "invalid_request_error",
            None,
            n,
        );
    }
    let b64 = base64::engine::general_purpose::STANDARD.encode(PIXEL_PNG);
    let data: Vec<Value> = (0..count)
        .map(|i| {
            if url {
                json!({"url": format!("https://images.example/{}-{i}.png", scenario::id("img_", n))})
            } else {
                json!({"b64_json": b64, "revised_prompt": prompt})
            }
        })
        .collect();
    let mut answer = json!({"created": now(), "data": data});
    if gpt_image {
        let input = tokens(prompt);
        answer["usage"] = json!({
            "input_tokens": input, "output_tokens": 272 * count, "total_tokens": input + 272 * count,
            "input_tokens_details": {"text_tokens": input, "image_tokens": 0}
        });
    }
    json_response(200, &answer, &headers(n))
}

/// `POST /v1/audio/speech` (OpenAI's text to speech): `model`, `input` and `voice` required;
/// the audio itself as the answer, in `response_format` (`mp3` by default), streamed in chunks
/// as OpenAI does. The bytes are a deterministic function of the input, not real audio, but
/// cover every byte value.
pub fn audio_speech(key: &str, h: &HeaderMap, body: &Value, n: u64) -> Response<MockBody> {
    if let Some(r) = check_auth(h, key, n) {
        return r;
    }
    for field in ["model", "input", "voice"] {
        if body.get(field).is_none() {
            return error(
                400,
                &format!("Missing required parameter: '{field}'."),
                "invalid_request_error",
                Some("missing_required_parameter"),
                n,
            );
        }
    }
    let input = body
        .get("input")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let (content_type, magic): (&'static str, &[u8]) = match body
        .get("response_format")
        .and_then(Value::as_str)
    {
        None | Some("mp3") => ("audio/mpeg", b"ID3"),
        Some("opus") => ("audio/opus", b"OggS"),
        Some("aac") => ("audio/aac", b"\xff\xf1"),
        Some("flac") => ("audio/flac", b"fLaC"),
        Some("wav") => ("audio/wav", b"RIFF"),
        Some("pcm") => ("audio/pcm", b""),
        Some(other) => {
            return error(
                400,
                &format!(
                    "Invalid value: '{other}'. Supported values are: 'mp3', 'opus', 'aac', 'flac', 'wav', and 'pcm'."
                ),
                "invalid_request_error",
                None,
                n,
            );
        }
    };
    let audio = speech_bytes(magic, input);
    let chunks = audio
        .chunks(4096)
        .map(bytes::Bytes::copy_from_slice)
        .collect();
    crate::reply::chunked_response(
        chunks,
        content_type,
        Duration::ZERO,
        StreamEnd::Complete,
        &headers(n),
    )
}

/// The mock's "audio" for `input`: the format's magic bytes, then 256 bytes (every value) per
/// input character.
pub fn speech_bytes(magic: &[u8], input: &str) -> Vec<u8> {
    let mut out = magic.to_vec();
    for (i, _) in input.chars().enumerate() {
        out.extend((0..=255u8).map(|b| b.wrapping_add(i as u8)));
    }
    out
}
