//! OpenAI Chat Completions responses: decoding an upstream's `chat.completion` object and
//! encoding a canonical response for an OpenAI client.

use portcullis_core::{ChatResponse, Choice, GatewayError, Part, StopReason, Usage};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::request::{ToolCallsOut, WireToolCall};
use crate::json::StringOrParts;

/// Decodes an upstream `chat.completion` body.
pub fn decode_response(body: &[u8]) -> Result<ChatResponse, GatewayError> {
    let wire: WireResponse = serde_json::from_slice(body).map_err(|e| {
        GatewayError::new(
            portcullis_core::ErrorKind::Upstream,
            format!("The upstream returned an invalid chat completion: {e}"),
        )
    })?;
    Ok(ChatResponse {
        id: wire.id,
        model: wire.model,
        created: wire.created,
        choices: wire
            .choices
            .into_iter()
            .map(WireChoice::into_canonical)
            .collect(),
        usage: wire
            .usage
            .map(WireUsage::into_canonical)
            .unwrap_or_default(),
        extras: Default::default(),
    })
}

#[derive(Deserialize)]
struct WireResponse {
    #[serde(default)]
    id: String,
    #[serde(default)]
    created: u64,
    #[serde(default)]
    model: String,
    #[serde(default)]
    choices: Vec<WireChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireChoice {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    message: Option<WireResponseMessage>,
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(default)]
    logprobs: Option<Value>,
}

#[derive(Deserialize)]
struct WireResponseMessage {
    #[serde(default)]
    content: Option<StringOrParts>,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<WireToolCall>>,
    /// DeepSeek, vLLM and others return reasoning here; OpenRouter and Groq use `reasoning`.
    #[serde(default, alias = "reasoning")]
    reasoning_content: Option<String>,
}

impl WireChoice {
    fn into_canonical(self) -> Choice {
        let mut content = Vec::new();
        if let Some(m) = self.message {
            if let Some(r) = m.reasoning_content.filter(|r| !r.is_empty()) {
                content.push(Part::Thinking {
                    text: r,
                    signature: None,
                });
            }
            match m.content {
                Some(StringOrParts::String(s)) => content.push(Part::text(s)),
                Some(StringOrParts::Parts(parts)) => {
                    for p in parts {
                        if let Some(t) = p.get("text").and_then(Value::as_str) {
                            content.push(Part::text(t));
                        }
                    }
                }
                None => {}
            }
            if let Some(r) = m.refusal {
                content.push(Part::Refusal { text: r });
            }
            for call in m.tool_calls.unwrap_or_default() {
                content.push(call.into_part());
            }
        }
        Choice {
            index: self.index,
            content,
            stop_reason: self.finish_reason.as_deref().map(stop_reason_from_openai),
            stop_sequence: None,
            logprobs: self.logprobs.filter(|l| !l.is_null()),
        }
    }
}

/// OpenAI usage object, as in responses and in the last stream chunk.
#[derive(Deserialize, Default)]
pub(crate) struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<WirePromptDetails>,
    #[serde(default)]
    completion_tokens_details: Option<WireCompletionDetails>,
}

#[derive(Deserialize, Default)]
struct WirePromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

#[derive(Deserialize, Default)]
struct WireCompletionDetails {
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

impl WireUsage {
    pub(crate) fn into_canonical(self) -> Usage {
        Usage {
            input_tokens: self.prompt_tokens,
            output_tokens: self.completion_tokens,
            cached_input_tokens: self
                .prompt_tokens_details
                .and_then(|d| d.cached_tokens)
                .unwrap_or(0),
            cache_write_input_tokens: 0,
            reasoning_tokens: self
                .completion_tokens_details
                .and_then(|d| d.reasoning_tokens)
                .unwrap_or(0),
        }
    }
}

/// Canonical stop reason for an OpenAI `finish_reason`.
pub(crate) fn stop_reason_from_openai(r: &str) -> StopReason {
    match r {
        "stop" => StopReason::EndTurn,
        "length" => StopReason::MaxTokens,
        "tool_calls" | "function_call" => StopReason::ToolUse,
        "content_filter" => StopReason::ContentFilter,
        other => StopReason::Other(other.to_owned()),
    }
}

/// OpenAI `finish_reason` for a canonical stop reason.
pub(crate) fn stop_reason_to_openai(r: &StopReason) -> &str {
    match r {
        StopReason::EndTurn | StopReason::StopSequence | StopReason::PauseTurn => "stop",
        StopReason::MaxTokens => "length",
        StopReason::ToolUse => "tool_calls",
        StopReason::ContentFilter => "content_filter",
        StopReason::Other(s) => s,
    }
}

/// The OpenAI usage object for canonical usage.
#[derive(Serialize)]
pub(crate) struct UsageOut {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    prompt_tokens_details: PromptDetailsOut,
    completion_tokens_details: CompletionDetailsOut,
}

#[derive(Serialize)]
struct PromptDetailsOut {
    cached_tokens: u64,
}

#[derive(Serialize)]
struct CompletionDetailsOut {
    reasoning_tokens: u64,
}

impl From<&Usage> for UsageOut {
    fn from(u: &Usage) -> Self {
        UsageOut {
            prompt_tokens: u.input_tokens,
            completion_tokens: u.output_tokens,
            total_tokens: u.total_tokens(),
            prompt_tokens_details: PromptDetailsOut {
                cached_tokens: u.cached_input_tokens,
            },
            completion_tokens_details: CompletionDetailsOut {
                reasoning_tokens: u.reasoning_tokens,
            },
        }
    }
}

/// Encodes a canonical response as an OpenAI `chat.completion` body.
pub fn encode_response(resp: &ChatResponse) -> Vec<u8> {
    serde_json::to_vec(&ResponseOut(resp)).unwrap_or_default()
}

struct ResponseOut<'a>(&'a ChatResponse);

impl Serialize for ResponseOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut m = s.serialize_map(Some(6))?;
        m.serialize_entry("id", &r.id)?;
        m.serialize_entry("object", "chat.completion")?;
        m.serialize_entry("created", &r.created)?;
        m.serialize_entry("model", &r.model)?;
        let choices: Vec<ChoiceOut<'_>> = r.choices.iter().map(ChoiceOut).collect();
        m.serialize_entry("choices", &choices)?;
        m.serialize_entry("usage", &UsageOut::from(&r.usage))?;
        m.end()
    }
}

struct ChoiceOut<'a>(&'a Choice);

impl Serialize for ChoiceOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let c = self.0;
        let mut m = s.serialize_map(Some(4))?;
        m.serialize_entry("index", &c.index)?;
        m.serialize_entry("message", &AssistantMessageOut(&c.content))?;
        m.serialize_entry("logprobs", &c.logprobs)?;
        m.serialize_entry(
            "finish_reason",
            &c.stop_reason.as_ref().map(stop_reason_to_openai),
        )?;
        m.end()
    }
}

struct AssistantMessageOut<'a>(&'a [Part]);

impl Serialize for AssistantMessageOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let parts = self.0;
        let mut text: Option<String> = None;
        let mut reasoning: Option<String> = None;
        let mut refusal: Option<&str> = None;
        let mut has_calls = false;
        for p in parts {
            match p {
                Part::Text { text: t, .. } => text.get_or_insert_with(String::new).push_str(t),
                Part::Thinking { text: t, .. } => {
                    reasoning.get_or_insert_with(String::new).push_str(t)
                }
                Part::Refusal { text: t } => refusal = Some(t),
                Part::ToolCall { .. } => has_calls = true,
                _ => {}
            }
        }
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("role", "assistant")?;
        m.serialize_entry("content", &text)?;
        m.serialize_entry("refusal", &refusal)?;
        if has_calls {
            m.serialize_entry("tool_calls", &ToolCallsOut(parts))?;
        }
        if let Some(r) = reasoning {
            m.serialize_entry("reasoning_content", &r)?;
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_tool_calls_reasoning_and_usage_details() {
        let resp = decode_response(br#"{"id":"chatcmpl-1","object":"chat.completion","created":5,"model":"gpt-4o",
            "choices":[{"index":0,"message":{"role":"assistant","content":null,"reasoning_content":"hmm",
              "tool_calls":[{"id":"call_9","type":"function","function":{"name":"f","arguments":"{}"}}]},
              "finish_reason":"tool_calls","logprobs":null}],
            "usage":{"prompt_tokens":20,"completion_tokens":7,"total_tokens":27,
              "prompt_tokens_details":{"cached_tokens":16},"completion_tokens_details":{"reasoning_tokens":3}}}"#).unwrap();
        assert_eq!(resp.choices[0].stop_reason, Some(StopReason::ToolUse));
        assert!(
            matches!(&resp.choices[0].content[0], Part::Thinking { text, .. } if text == "hmm")
        );
        assert!(matches!(&resp.choices[0].content[1], Part::ToolCall { id, .. } if id == "call_9"));
        assert_eq!(
            resp.usage,
            Usage {
                input_tokens: 20,
                output_tokens: 7,
                cached_input_tokens: 16,
                cache_write_input_tokens: 0,
                reasoning_tokens: 3
            }
        );
    }

    #[test]
    fn garbage_from_upstream_is_a_502() {
        let e = decode_response(b"<html>oops</html>").unwrap_err();
        assert_eq!(e.status().as_u16(), 502);
    }
}
