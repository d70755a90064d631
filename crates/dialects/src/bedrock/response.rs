//! Converse answers (`ConverseResponse`) decoded into the canonical model: the output message's
//! text, `toolUse` and `reasoningContent` blocks, the stop reason and the usage. The stream
//! decoder reads usage and stop reasons with the same shapes.

use portcullis_core::{ChatResponse, Choice, ErrorKind, GatewayError, Part, StopReason, Usage};
use serde::Deserialize;
use serde_json::Value;

use super::answer_id;

/// Decodes a complete Converse answer from `model`.
pub fn decode_response(body: &[u8], model: &str) -> Result<ChatResponse, GatewayError> {
    let wire: WireResponse = serde_json::from_slice(body).map_err(|e| {
        GatewayError::new(
            ErrorKind::Upstream,
            format!("The upstream returned an invalid Bedrock Converse response: {e}"),
        )
    })?;
    let mut content = Vec::new();
    for block in wire
        .output
        .and_then(|o| o.message)
        .map(|m| m.content)
        .unwrap_or_default()
    {
        if let Some(text) = block.text {
            if !text.is_empty() {
                content.push(Part::text(text));
            }
        } else if let Some(call) = block.tool_use {
            let arguments = match call.input {
                Some(v @ Value::Object(_)) => v.to_string(),
                _ => "{}".to_owned(),
            };
            content.push(Part::ToolCall {
                id: call.tool_use_id,
                name: call.name,
                arguments,
                cache_control: None,
            });
        } else if let Some(reasoning) = block.reasoning_content {
            if let Some(r) = reasoning.reasoning_text {
                content.push(Part::Thinking {
                    text: r.text,
                    signature: r.signature,
                });
            } else if let Some(data) = reasoning.redacted_content {
                content.push(Part::RedactedThinking { data });
            }
        }
        // Images, documents, citations and other blocks have no canonical form.
    }
    Ok(ChatResponse {
        id: answer_id(),
        model: model.to_owned(),
        created: 0,
        choices: vec![Choice {
            index: 0,
            content,
            stop_reason: wire.stop_reason.as_deref().map(stop_reason),
            stop_sequence: None,
            logprobs: None,
        }],
        usage: wire
            .usage
            .as_ref()
            .map(WireUsage::to_canonical)
            .unwrap_or_default(),
        extras: Default::default(),
    })
}

/// A stop reason for a Converse `stopReason`.
pub(crate) fn stop_reason(reason: &str) -> StopReason {
    match reason {
        "end_turn" => StopReason::EndTurn,
        "tool_use" => StopReason::ToolUse,
        "max_tokens" => StopReason::MaxTokens,
        "stop_sequence" => StopReason::StopSequence,
        "guardrail_intervened" | "content_filtered" => StopReason::ContentFilter,
        other => StopReason::Other(other.to_owned()),
    }
}

#[derive(Deserialize)]
struct WireResponse {
    #[serde(default)]
    output: Option<WireOutput>,
    #[serde(default, rename = "stopReason")]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireOutput {
    #[serde(default)]
    message: Option<WireMessage>,
}

#[derive(Deserialize)]
struct WireMessage {
    #[serde(default)]
    content: Vec<WireBlock>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireBlock {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    tool_use: Option<WireToolUse>,
    #[serde(default)]
    reasoning_content: Option<WireReasoning>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireToolUse {
    #[serde(default)]
    tool_use_id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    input: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireReasoning {
    #[serde(default)]
    reasoning_text: Option<WireReasoningText>,
    #[serde(default)]
    redacted_content: Option<String>,
}

#[derive(Deserialize)]
struct WireReasoningText {
    #[serde(default)]
    text: String,
    #[serde(default)]
    signature: Option<String>,
}

/// Converse's `TokenUsage`.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WireUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    cache_read_input_tokens: u64,
    #[serde(default)]
    cache_write_input_tokens: u64,
}

impl WireUsage {
    pub(crate) fn to_canonical(&self) -> Usage {
        Usage {
            input_tokens: self.input_tokens
                + self.cache_read_input_tokens
                + self.cache_write_input_tokens,
            output_tokens: self.output_tokens,
            cached_input_tokens: self.cache_read_input_tokens,
            cache_write_input_tokens: self.cache_write_input_tokens,
            reasoning_tokens: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_text_reasoning_parallel_calls_and_cached_usage() {
        let body = br#"{
          "output": {"message": {"role": "assistant", "content": [
            {"reasoningContent": {"reasoningText": {"text": "Two lookups.", "signature": "c2ln"}}},
            {"text": "Checking both."},
            {"toolUse": {"toolUseId": "tooluse_1", "name": "weather", "input": {"city": "Paris"}}},
            {"toolUse": {"toolUseId": "tooluse_2", "name": "time", "input": {}}}
          ]}},
          "stopReason": "tool_use",
          "usage": {"inputTokens": 10, "outputTokens": 5, "totalTokens": 45,
                    "cacheReadInputTokens": 20, "cacheWriteInputTokens": 10},
          "metrics": {"latencyMs": 120}
        }"#;
        let r = decode_response(body, "anthropic.claude-3-7-sonnet-20250219-v1:0").unwrap();
        assert_eq!(r.model, "anthropic.claude-3-7-sonnet-20250219-v1:0");
        assert!(r.id.starts_with("bedrock-"));
        let c = &r.choices[0];
        assert_eq!(c.stop_reason, Some(StopReason::ToolUse));
        assert!(
            matches!(&c.content[0], Part::Thinking { text, signature: Some(s) } if text == "Two lookups." && s == "c2ln")
        );
        assert!(
            matches!(&c.content[2], Part::ToolCall { id, arguments, .. } if id == "tooluse_1" && arguments == r#"{"city":"Paris"}"#)
        );
        assert!(matches!(&c.content[3], Part::ToolCall { name, .. } if name == "time"));
        assert_eq!(
            r.usage,
            Usage {
                input_tokens: 40,
                output_tokens: 5,
                cached_input_tokens: 20,
                cache_write_input_tokens: 10,
                reasoning_tokens: 0,
            }
        );
    }

    #[test]
    fn stop_reasons() {
        assert_eq!(stop_reason("end_turn"), StopReason::EndTurn);
        assert_eq!(stop_reason("max_tokens"), StopReason::MaxTokens);
        assert_eq!(stop_reason("stop_sequence"), StopReason::StopSequence);
        assert_eq!(
            stop_reason("guardrail_intervened"),
            StopReason::ContentFilter
        );
        assert_eq!(stop_reason("content_filtered"), StopReason::ContentFilter);
        assert_eq!(
            stop_reason("model_context_window_exceeded"),
            StopReason::Other("model_context_window_exceeded".into())
        );
        assert!(decode_response(b"nope", "m").is_err());
        assert!(decode_response(br#"{"output": 5}"#, "m").is_err());
    }
}
