//! Anthropic's Messages API as the mock speaks it: `POST /v1/messages` (complete and streamed),
//! `POST /v1/messages/count_tokens`,
//! `GET /v1/models` (paginated with `limit`, `after_id`, `before_id`) and
//! `GET /v1/models/{model_id}`, with `x-api-key` (or Bearer) authentication, the required `anthropic-version` header, error
//! bodies (`{"type":"error","error":{"type","message"},"request_id"}`), the `request-id` header,
//! and the event sequence `message_start`, `content_block_start`, `ping`,
//! `content_block_delta`, `content_block_stop`, `message_delta`, `message_stop`.

use std::time::Duration;

use http::{HeaderMap, Response};
use serde_json::{Value, json};

use crate::reply::{MockBody, SseFrame, StreamEnd, json_response, sse_response};
use crate::scenario::{self, Api, Outcome, Responder, tokens};

fn headers(n: u64) -> Vec<(String, String)> {
    vec![
        ("request-id".into(), scenario::id("req_", n)),
        (
            "anthropic-organization-id".into(),
            "00000000-0000-0000-0000-000000000000".into(),
        ),
        ("anthropic-ratelimit-requests-limit".into(), "4000".into()),
        (
            "anthropic-ratelimit-requests-remaining".into(),
            "3999".into(),
        ),
    ]
}

/// An Anthropic error response.
pub fn error(status: u16, kind: &str, message: &str, n: u64) -> Response<MockBody> {
    let mut h = headers(n);
    if status == 429 || status == 529 {
        h.push(("retry-after".into(), "1".into()));
    }
    json_response(
        status,
        &json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": scenario::id("req_", n)}),
        &h,
    )
}

/// The error Anthropic answers with for a status.
pub fn status_error(status: u16, model: &str, n: u64) -> Response<MockBody> {
    match status {
        400 => error(
            400,
            "invalid_request_error",
            "messages: roles must alternate between \"user\" and \"assistant\"",
            n,
        ),
        401 => error(401, "authentication_error", "invalid x-api-key", n),
        403 => error(
            403,
            "permission_error",
            "Your API key does not have permission to use the specified resource.",
            n,
        ),
        404 => error(404, "not_found_error", &format!("model: {model}"), n),
        413 => error(
            413,
            "request_too_large",
            "Request exceeds the maximum allowed number of bytes.",
            n,
        ),
        429 => error(
            429,
            "rate_limit_error",
            "Number of request tokens has exceeded your per-minute rate limit",
            n,
        ),
        529 => error(529, "overloaded_error", "Overloaded", n),
        s => error(s, "api_error", "Internal server error", n),
    }
}

fn check_auth(h: &HeaderMap, key: &str, n: u64) -> Option<Response<MockBody>> {
    let x_api_key = h.get("x-api-key").and_then(|v| v.to_str().ok());
    let bearer = h
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if x_api_key.or(bearer) != Some(key) {
        return Some(status_error(401, "", n));
    }
    if h.get("anthropic-version").is_none() {
        return Some(error(
            400,
            "invalid_request_error",
            "anthropic-version: header is required",
            n,
        ));
    }
    None
}

/// The text blocks of a message's `content` (a string, or the text blocks of an array).
fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

/// `POST /v1/messages`.
pub async fn messages(
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
    answer(responder, frame_delay, body, n).await
}

/// Answers a Messages request that passed its API's checks: Anthropic's own, or Vertex AI's
/// `rawPredict` (whose model, given in the URL, is put back in the body).
pub(crate) async fn answer(
    responder: Option<&dyn Responder>,
    frame_delay: Duration,
    body: &Value,
    n: u64,
) -> Response<MockBody> {
    let Some(model) = body.get("model").and_then(Value::as_str) else {
        return error(400, "invalid_request_error", "model: Field required", n);
    };
    if body.get("max_tokens").and_then(Value::as_u64).is_none() {
        return error(
            400,
            "invalid_request_error",
            "max_tokens: Field required",
            n,
        );
    }
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        return error(400, "invalid_request_error", "messages: Field required", n);
    };
    if messages.is_empty() {
        return error(
            400,
            "invalid_request_error",
            "messages: at least one message is required",
            n,
        );
    }
    if let Some(bad) = messages.iter().find(|m| {
        !matches!(
            m.get("role").and_then(Value::as_str),
            Some("user" | "assistant")
        )
    }) {
        return error(
            400,
            "invalid_request_error",
            &format!(
                "messages: unexpected role {}",
                bad.get("role").unwrap_or(&Value::Null)
            ),
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
                .filter_map(|t| t.get("name").and_then(Value::as_str))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let forced = match body.pointer("/tool_choice/type").and_then(Value::as_str) {
        Some("any") => Some(String::new()),
        Some("tool") => body
            .pointer("/tool_choice/name")
            .and_then(Value::as_str)
            .map(str::to_owned),
        _ => None,
    };
    let instructed = scenario::instructed_call(&scenario::last_message_text(messages))
        .map(|call| Outcome::ToolCalls(vec![call]));
    let plan = match responder
        .and_then(|r| r.respond(Api::Anthropic, body))
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
    let mut prompt_source = Value::Array(messages.clone()).to_string();
    if let Some(system) = body.get("system") {
        prompt_source.push_str(&system.to_string());
    }
    let input_tokens = tokens(&prompt_source);
    let id = scenario::id("msg_", n);

    let (blocks, stop_reason, output_tokens) = match plan.outcome {
        Outcome::Error(status) => return status_error(status, model, n),
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
                .map(|(i, c)| Block::ToolUse {
                    id: scenario::id("toolu_", n * 10 + i as u64),
                    name: c.name,
                    input: c.arguments,
                })
                .collect();
            (blocks, "tool_use", out)
        }
        Outcome::DropMidstream | Outcome::ErrorMidstream => {
            let mut frames = vec![
                message_start(&id, model, input_tokens),
                SseFrame::event("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}).to_string()),
                SseFrame::event("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Partial "}}).to_string()),
            ];
            let end = if plan.outcome == Outcome::DropMidstream {
                StreamEnd::Abort
            } else {
                frames.push(SseFrame::event(
                    "error",
                    json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}).to_string(),
                ));
                StreamEnd::Complete
            };
            return sse_response(frames, frame_delay, end, &headers(n));
        }
    };

    if !stream {
        let content: Vec<Value> = blocks.iter().map(Block::to_json).collect();
        return json_response(
            200,
            &json!({
                "id": id, "type": "message", "role": "assistant", "model": model,
                "content": content, "stop_reason": stop_reason, "stop_sequence": null,
                "usage": {"input_tokens": input_tokens, "cache_creation_input_tokens": 0,
                          "cache_read_input_tokens": 0, "output_tokens": output_tokens,
                          "service_tier": "standard"},
            }),
            &headers(n),
        );
    }

    let mut frames = vec![message_start(&id, model, input_tokens)];
    for (i, block) in blocks.iter().enumerate() {
        let start = match block {
            Block::Text(_) => json!({"type": "text", "text": ""}),
            Block::ToolUse { id, name, .. } => {
                json!({"type": "tool_use", "id": id, "name": name, "input": {}})
            }
        };
        frames.push(SseFrame::event(
            "content_block_start",
            json!({"type": "content_block_start", "index": i, "content_block": start}).to_string(),
        ));
        if i == 0 {
            frames.push(SseFrame::event("ping", json!({"type": "ping"}).to_string()));
        }
        let deltas: Vec<Value> = match block {
            Block::Text(t) => scenario::pieces(t)
                .into_iter()
                .map(|p| json!({"type": "text_delta", "text": p}))
                .collect(),
            Block::ToolUse { input, .. } => scenario::fragments(input)
                .into_iter()
                .map(|f| json!({"type": "input_json_delta", "partial_json": f}))
                .collect(),
        };
        for d in deltas {
            frames.push(SseFrame::event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": i, "delta": d}).to_string(),
            ));
        }
        frames.push(SseFrame::event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": i}).to_string(),
        ));
    }
    frames.push(SseFrame::event(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": null},
               "usage": {"output_tokens": output_tokens}})
        .to_string(),
    ));
    frames.push(SseFrame::event(
        "message_stop",
        json!({"type": "message_stop"}).to_string(),
    ));
    sse_response(frames, frame_delay, StreamEnd::Complete, &headers(n))
}

fn message_start(id: &str, model: &str, input_tokens: u64) -> SseFrame {
    SseFrame::event(
        "message_start",
        json!({"type": "message_start", "message": {
            "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": input_tokens, "cache_creation_input_tokens": 0,
                      "cache_read_input_tokens": 0, "output_tokens": 1, "service_tier": "standard"}}})
        .to_string(),
    )
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
            Block::Text(t) => json!({"type": "text", "text": t}),
            Block::ToolUse { id, name, input } => json!({
                "type": "tool_use", "id": id, "name": name,
                "input": serde_json::from_str::<Value>(input).unwrap_or_else(|_| json!({})),
            }),
        }
    }
}

/// The models the mock's Anthropic API lists, most recent first (as Anthropic lists them):
/// id, display name, release date.
pub const MODELS: [(&str, &str, &str); 5] = [
    (
        "claude-haiku-4-5-20251001",
        "Claude Haiku 4.5",
        "2025-10-01T00:00:00Z",
    ),
    (
        "claude-sonnet-4-5-20250929",
        "Claude Sonnet 4.5",
        "2025-09-29T00:00:00Z",
    ),
    (
        "claude-opus-4-1-20250805",
        "Claude Opus 4.1",
        "2025-08-05T00:00:00Z",
    ),
    (
        "claude-sonnet-4-20250514",
        "Claude Sonnet 4",
        "2025-05-14T00:00:00Z",
    ),
    (
        "claude-3-5-haiku-20241022",
        "Claude Haiku 3.5",
        "2024-10-22T00:00:00Z",
    ),
];

fn model_object((id, name, created): (&str, &str, &str)) -> Value {
    json!({"type": "model", "id": id, "display_name": name, "created_at": created})
}

/// A query parameter's value (percent-decoded), when present.
fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode(v))
    })
}

/// `s` with its `%XX` escapes decoded.
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%' && i + 3 <= bytes.len())
            .then(|| hex(bytes[i + 1]).zip(hex(bytes[i + 2])))
            .flatten();
        if let Some((h, l)) = escaped {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `GET /v1/models`: a page of [`MODELS`] — `limit` (1 to 1000, default 20) models after
/// `after_id` or before `before_id`, with `first_id`, `last_id` and `has_more` (more in the
/// direction asked).
pub fn models(key: &str, h: &HeaderMap, query: &str, n: u64) -> Response<MockBody> {
    if let Some(r) = check_auth(h, key, n) {
        return r;
    }
    let limit = match query_param(query, "limit") {
        None => 20,
        Some(l) => match l.parse::<usize>() {
            Ok(l) if (1..=1000).contains(&l) => l,
            _ => {
                return error(
                    400,
                    "invalid_request_error",
                    "limit: Input should be greater than or equal to 1 and less than or equal to 1000",
                    n,
                );
            }
        },
    };
    let position = |id: &str| MODELS.iter().position(|m| m.0 == id);
    let (page, has_more): (&[(&str, &str, &str)], bool) = match (
        query_param(query, "after_id"),
        query_param(query, "before_id"),
    ) {
        (Some(_), Some(_)) => {
            return error(
                400,
                "invalid_request_error",
                "after_id and before_id cannot both be set",
                n,
            );
        }
        (Some(after), None) => match position(&after) {
            Some(i) => {
                let rest = &MODELS[i + 1..];
                let end = rest.len().min(limit);
                (&rest[..end], rest.len() > limit)
            }
            None => (&[], false),
        },
        (None, Some(before)) => match position(&before) {
            Some(i) => {
                let start = i.saturating_sub(limit);
                (&MODELS[start..i], start > 0)
            }
            None => (&[], false),
        },
        (None, None) => {
            let end = MODELS.len().min(limit);
            (&MODELS[..end], MODELS.len() > limit)
        }
    };
    let data: Vec<Value> = page.iter().map(|m| model_object(*m)).collect();
    json_response(
        200,
        &json!({
            "data": data,
            "has_more": has_more,
            "first_id": page.first().map(|m| m.0),
            "last_id": page.last().map(|m| m.0),
        }),
        &headers(n),
    )
}

/// `GET /v1/models/{model_id}`: one model, by id or by alias (the id without its date), or
/// Anthropic's 404.
pub fn model(key: &str, h: &HeaderMap, id: &str, n: u64) -> Response<MockBody> {
    if let Some(r) = check_auth(h, key, n) {
        return r;
    }
    let found = MODELS.iter().find(|m| {
        m.0 == id
            || m.0
                .strip_prefix(id)
                .and_then(|rest| rest.strip_prefix('-'))
                .is_some_and(|date| date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit()))
    });
    match found {
        Some(m) => json_response(200, &model_object(*m), &headers(n)),
        None => error(404, "not_found_error", &format!("model: {id}"), n),
    }
}

/// The members `POST /v1/messages/count_tokens` takes; Anthropic refuses any other.
const COUNT_TOKENS_MEMBERS: [&str; 8] = [
    "model",
    "messages",
    "system",
    "tools",
    "tool_choice",
    "thinking",
    "mcp_servers",
    "context_management",
];

/// `POST /v1/messages/count_tokens`: `{"input_tokens": n}`, the messages, system prompt and
/// tools counted as the mock counts a Messages request's input (four characters a token, over
/// their JSON). Anthropic's checks: the key and `anthropic-version`, `model` and `messages`
/// required, user and assistant roles only, and nothing a count does not take (`max_tokens`,
/// `stream`, sampling settings: "Extra inputs are not permitted").
pub fn count_tokens(key: &str, h: &HeaderMap, body: &Value, n: u64) -> Response<MockBody> {
    if let Some(r) = check_auth(h, key, n) {
        return r;
    }
    count(body, n)
}

/// Counts a `count_tokens` body that passed its API's checks: Anthropic's own, or Vertex AI's
/// `count-tokens:rawPredict` (whose `anthropic_version` is taken off first).
pub(crate) fn count(body: &Value, n: u64) -> Response<MockBody> {
    let Some(obj) = body.as_object() else {
        return error(
            400,
            "invalid_request_error",
            "There was an issue with the JSON body of your request.",
            n,
        );
    };
    if let Some(extra) = obj
        .keys()
        .find(|k| !COUNT_TOKENS_MEMBERS.contains(&k.as_str()))
    {
        return error(
            400,
            "invalid_request_error",
            &format!("{extra}: Extra inputs are not permitted"),
            n,
        );
    }
    if obj.get("model").and_then(Value::as_str).is_none() {
        return error(400, "invalid_request_error", "model: Field required", n);
    }
    let Some(messages) = obj.get("messages").and_then(Value::as_array) else {
        return error(400, "invalid_request_error", "messages: Field required", n);
    };
    if let Some(bad) = messages.iter().find(|m| {
        !matches!(
            m.get("role").and_then(Value::as_str),
            Some("user" | "assistant")
        )
    }) {
        return error(
            400,
            "invalid_request_error",
            &format!(
                "messages: unexpected role {}",
                bad.get("role").unwrap_or(&Value::Null)
            ),
            n,
        );
    }
    let mut source = Value::Array(messages.clone()).to_string();
    for member in ["system", "tools"] {
        if let Some(v) = obj.get(member) {
            source.push_str(&v.to_string());
        }
    }
    json_response(
        200,
        &json!({ "input_tokens": tokens(&source) }),
        &headers(n),
    )
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn escapes_decode_anywhere_including_at_the_end() {
        assert_eq!(percent_decode("a%20b"), "a b");
        assert_eq!(percent_decode("after%3A"), "after:");
        assert_eq!(percent_decode("%41"), "A");
        // Too short or not hex: kept as written.
        assert_eq!(percent_decode("x%4"), "x%4");
        assert_eq!(percent_decode("x%zz"), "x%zz");
    }
}
