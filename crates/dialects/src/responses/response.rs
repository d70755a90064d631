//! Responses API answers: a canonical answer as a `response` object for a client, and a
//! Responses upstream's `response` object decoded into the canonical answer.

use portcullis_core::{ChatResponse, Choice, ErrorKind, GatewayError, Part, StopReason, Usage};
use serde_json::{Map, Value, json};

use super::items::{decode_items, encode_output_items};

/// What names and frames a `response` object beside the answer itself: its id and creation
/// time (the gateway's own), the model asked for, and what it repeats of the request
/// ([`ResponsesRequest::echo`](super::ResponsesRequest::echo)).
#[derive(Debug, Clone, Default)]
pub struct ResponseContext {
    /// `resp_…`.
    pub id: String,
    /// Unix seconds.
    pub created_at: u64,
    /// The model the client asked for, shown when the upstream names none.
    pub model: String,
    /// The request's fields the object repeats.
    pub echo: Map<String, Value>,
}

impl ResponseContext {
    /// The id of the `n`th output item of kind `prefix` (`msg`, `fc`, `rs`), derived from the
    /// response's id so every item id is unique and stable.
    pub fn item_id(&self, prefix: &str, n: usize) -> String {
        let base = self.id.strip_prefix("resp_").unwrap_or(&self.id);
        format!("{prefix}_{base}{n:02x}")
    }

    /// The `response` object: `status` with `output` items so far, `usage` once known, why it
    /// is incomplete, or its error.
    pub fn object(
        &self,
        model: &str,
        status: &str,
        output: Vec<Value>,
        usage: Option<&Usage>,
        incomplete_reason: Option<&str>,
        error: Option<Value>,
    ) -> Value {
        let mut o = Map::new();
        o.insert("id".into(), json!(self.id));
        o.insert("object".into(), json!("response"));
        o.insert("created_at".into(), json!(self.created_at));
        o.insert("status".into(), json!(status));
        o.insert("background".into(), json!(false));
        o.insert("error".into(), error.unwrap_or(Value::Null));
        o.insert(
            "incomplete_details".into(),
            incomplete_reason.map_or(Value::Null, |r| json!({"reason": r})),
        );
        o.insert(
            "model".into(),
            json!(if model.is_empty() {
                self.model.as_str()
            } else {
                model
            }),
        );
        o.insert("output".into(), Value::Array(output));
        for (k, v) in &self.echo {
            o.insert(k.clone(), v.clone());
        }
        o.insert("usage".into(), usage.map_or(Value::Null, usage_object));
        Value::Object(o)
    }
}

/// A `usage` object: every prompt token in `input_tokens` (cached ones detailed), reasoning
/// detailed among the output tokens.
pub fn usage_object(u: &Usage) -> Value {
    json!({
        "input_tokens": u.input_tokens,
        "input_tokens_details": {"cached_tokens": u.cached_input_tokens},
        "output_tokens": u.output_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        "total_tokens": u.total_tokens(),
    })
}

/// The status a finished answer has, and why it is incomplete when it is.
pub(crate) fn status_of(reason: Option<&StopReason>) -> (&'static str, Option<&'static str>) {
    match reason {
        Some(StopReason::MaxTokens) => ("incomplete", Some("max_output_tokens")),
        Some(StopReason::ContentFilter) => ("incomplete", Some("content_filter")),
        _ => ("completed", None),
    }
}

/// A complete canonical answer as a `response` object (its first choice: the Responses API
/// has one).
pub fn encode_response(ctx: &ResponseContext, resp: &ChatResponse) -> Value {
    let choice = resp.choices.first();
    let output = choice.map_or_else(Vec::new, |c| encode_output_items(ctx, &c.content));
    let (status, incomplete) = status_of(choice.and_then(|c| c.stop_reason.as_ref()));
    ctx.object(
        &resp.model,
        status,
        output,
        Some(&resp.usage),
        incomplete,
        None,
    )
}

/// Output item types the canonical model holds; others (built-in tools' calls) are skipped.
const KNOWN_ITEMS: &[&str] = &["message", "function_call", "reasoning"];

/// Decodes a Responses upstream's `response` object.
pub fn decode_response(body: &[u8]) -> Result<ChatResponse, GatewayError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        GatewayError::new(
            ErrorKind::Upstream,
            format!("The upstream sent an invalid response: {e}"),
        )
    })?;
    response_from_value(&v)
}

/// The canonical answer of a `response` object (also the one `response.completed` carries).
pub(crate) fn response_from_value(v: &Value) -> Result<ChatResponse, GatewayError> {
    if v.get("status").and_then(Value::as_str) == Some("failed") {
        return Err(failure(v.get("error")));
    }
    let output: Vec<Value> = v
        .get("output")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter(|i| {
                    i.get("type")
                        .and_then(Value::as_str)
                        .is_some_and(|t| KNOWN_ITEMS.contains(&t))
                })
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let mut messages = Vec::new();
    decode_items(&output, "output", &mut messages).map_err(|e| {
        GatewayError::new(
            ErrorKind::Upstream,
            format!("The upstream sent an invalid response: {}", e.message()),
        )
    })?;
    let content: Vec<Part> = messages.into_iter().flat_map(|m| m.content).collect();
    let stop_reason = stop_reason(v, &content);
    Ok(ChatResponse {
        id: v
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        model: v
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        created: v.get("created_at").and_then(Value::as_u64).unwrap_or(0),
        choices: vec![Choice {
            index: 0,
            content,
            stop_reason: Some(stop_reason),
            stop_sequence: None,
            logprobs: None,
        }],
        usage: v.get("usage").map(usage_from).unwrap_or_default(),
        extras: Default::default(),
    })
}

/// Why an upstream's response ended.
pub(crate) fn stop_reason(v: &Value, content: &[Part]) -> StopReason {
    let incomplete = v
        .get("incomplete_details")
        .and_then(|d| d.get("reason"))
        .and_then(Value::as_str);
    match incomplete {
        Some("max_output_tokens") => StopReason::MaxTokens,
        Some("content_filter") => StopReason::ContentFilter,
        Some(other) => StopReason::Other(other.to_owned()),
        None if content.iter().any(|p| matches!(p, Part::ToolCall { .. })) => StopReason::ToolUse,
        None => StopReason::EndTurn,
    }
}

/// A Responses `usage` object in canonical form.
pub(crate) fn usage_from(u: &Value) -> Usage {
    let n = |p: &str| u.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    Usage {
        input_tokens: n("/input_tokens"),
        output_tokens: n("/output_tokens"),
        cached_input_tokens: n("/input_tokens_details/cached_tokens"),
        cache_write_input_tokens: 0,
        reasoning_tokens: n("/output_tokens_details/reasoning_tokens"),
    }
}

/// The error of a failed response (`{"code","message"}`).
pub(crate) fn failure(error: Option<&Value>) -> GatewayError {
    let message = error
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .unwrap_or("The upstream failed to produce a response");
    let code = error.and_then(|e| e.get("code")).and_then(Value::as_str);
    let status = match code {
        Some("rate_limit_exceeded") => 429,
        Some("invalid_prompt") => 400,
        _ => 502,
    };
    crate::errors::classify(status, message.to_owned(), code, "upstream", None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> ResponseContext {
        ResponseContext {
            id: "resp_abc".into(),
            created_at: 7,
            model: "asked".into(),
            echo: Map::from_iter([("store".to_owned(), json!(true))]),
        }
    }

    #[test]
    fn encodes_text_calls_and_usage() {
        let resp = ChatResponse {
            id: "up".into(),
            model: "gpt-x".into(),
            created: 1,
            choices: vec![Choice {
                content: vec![
                    Part::text("Let me check."),
                    Part::ToolCall {
                        id: "call_1".into(),
                        name: "weather".into(),
                        arguments: "{\"city\":\"Paris\"}".into(),
                        cache_control: None,
                    },
                ],
                stop_reason: Some(StopReason::ToolUse),
                ..Choice::default()
            }],
            usage: Usage {
                input_tokens: 10,
                output_tokens: 5,
                cached_input_tokens: 4,
                reasoning_tokens: 2,
                ..Usage::default()
            },
            extras: Default::default(),
        };
        let v = encode_response(&ctx(), &resp);
        assert_eq!(v["id"], "resp_abc");
        assert_eq!(v["status"], "completed");
        assert_eq!(v["model"], "gpt-x");
        assert_eq!(v["output"][0]["type"], "message");
        assert_eq!(v["output"][0]["content"][0]["text"], "Let me check.");
        assert_eq!(v["output"][1]["type"], "function_call");
        assert_eq!(v["output"][1]["call_id"], "call_1");
        assert_eq!(v["output"][1]["id"], "fc_abc01");
        assert_eq!(v["usage"]["input_tokens_details"]["cached_tokens"], 4);
        assert_eq!(v["usage"]["total_tokens"], 15);
        assert_eq!(v["store"], true);

        // What a client gets back decodes to the same answer.
        let back = decode_response(&serde_json::to_vec(&v).unwrap()).unwrap();
        assert_eq!(back.choices[0].content, resp.choices[0].content);
        assert_eq!(back.choices[0].stop_reason, Some(StopReason::ToolUse));
        assert_eq!(back.usage, resp.usage);
    }

    #[test]
    fn a_token_limit_is_incomplete() {
        let resp = ChatResponse {
            choices: vec![Choice {
                content: vec![Part::text("cut")],
                stop_reason: Some(StopReason::MaxTokens),
                ..Choice::default()
            }],
            ..ChatResponse::default()
        };
        let v = encode_response(&ctx(), &resp);
        assert_eq!(v["status"], "incomplete");
        assert_eq!(v["incomplete_details"]["reason"], "max_output_tokens");
        assert_eq!(v["model"], "asked");
    }

    #[test]
    fn a_failed_upstream_response_is_an_error() {
        let e = decode_response(
            br#"{"id":"r","status":"failed","error":{"code":"server_error","message":"boom"},"output":[]}"#,
        )
        .unwrap_err();
        assert_eq!(e.status().as_u16(), 502);
    }
}
