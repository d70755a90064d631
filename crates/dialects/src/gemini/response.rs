//! Gemini `GenerateContentResponse`s decoded into the canonical model: candidates and their
//! parts, finish reasons, prompt blocks, usage metadata. The stream decoder reads its chunks
//! with the same shapes.

use std::sync::atomic::{AtomicU64, Ordering};

use portcullis_core::{ChatResponse, Choice, ErrorKind, GatewayError, Part, StopReason, Usage};
use serde::Deserialize;
use serde_json::Value;

use super::call_id;

/// Decodes a complete `generateContent` answer.
pub fn decode_response(body: &[u8]) -> Result<ChatResponse, GatewayError> {
    let wire: WireResponse = serde_json::from_slice(body).map_err(|e| {
        GatewayError::new(
            ErrorKind::Upstream,
            format!("The upstream returned an invalid Gemini response: {e}"),
        )
    })?;
    let id = wire.response_id();
    let mut choices = Vec::with_capacity(wire.candidates.len().max(1));
    for (position, candidate) in wire.candidates.into_iter().enumerate() {
        let index = candidate
            .index
            .unwrap_or(u32::try_from(position).unwrap_or(u32::MAX));
        let mut content = Vec::new();
        let mut calls = 0;
        for part in candidate.content.map(|c| c.parts).unwrap_or_default() {
            match part.into_piece() {
                Piece::Text(text) => content.push(Part::text(text)),
                Piece::Thought(text) => content.push(Part::Thinking {
                    text,
                    signature: None,
                }),
                Piece::Call {
                    name,
                    arguments,
                    signature,
                } => {
                    content.push(Part::ToolCall {
                        id: call_id(&id, calls, signature.as_deref()),
                        name,
                        arguments,
                        cache_control: None,
                    });
                    calls += 1;
                }
                Piece::Nothing => {}
            }
        }
        let stop_reason = candidate
            .finish_reason
            .as_deref()
            .map(|r| stop_reason(r, calls > 0));
        choices.push(Choice {
            index,
            content,
            stop_reason,
            stop_sequence: None,
            logprobs: None,
        });
    }
    if choices.is_empty()
        && let Some(reason) = wire.prompt_feedback.and_then(|f| f.block_reason)
    {
        choices.push(Choice {
            index: 0,
            content: vec![Part::Refusal {
                text: blocked_prompt_text(&reason),
            }],
            stop_reason: Some(StopReason::ContentFilter),
            stop_sequence: None,
            logprobs: None,
        });
    }
    Ok(ChatResponse {
        id,
        model: wire.model_version.unwrap_or_default(),
        created: 0,
        choices,
        usage: wire
            .usage_metadata
            .as_ref()
            .map(WireUsage::to_canonical)
            .unwrap_or_default(),
        extras: Default::default(),
    })
}

/// What a client reads when Gemini refused the prompt itself.
pub(crate) fn blocked_prompt_text(reason: &str) -> String {
    format!("The provider blocked this request ({reason}).")
}

/// A stop reason for a Gemini `finishReason`; `called` says whether the candidate called
/// functions (Gemini finishes those with `STOP`).
pub(crate) fn stop_reason(reason: &str, called: bool) -> StopReason {
    match reason {
        "STOP" if called => StopReason::ToolUse,
        "STOP" => StopReason::EndTurn,
        "MAX_TOKENS" => StopReason::MaxTokens,
        "SAFETY"
        | "RECITATION"
        | "BLOCKLIST"
        | "PROHIBITED_CONTENT"
        | "SPII"
        | "IMAGE_SAFETY"
        | "IMAGE_PROHIBITED_CONTENT"
        | "IMAGE_RECITATION" => StopReason::ContentFilter,
        other => StopReason::Other(other.to_ascii_lowercase()),
    }
}

/// A response or stream chunk.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WireResponse {
    #[serde(default)]
    pub(crate) candidates: Vec<WireCandidate>,
    #[serde(default)]
    pub(crate) prompt_feedback: Option<WirePromptFeedback>,
    #[serde(default)]
    pub(crate) usage_metadata: Option<WireUsage>,
    #[serde(default)]
    pub(crate) model_version: Option<String>,
    #[serde(default)]
    response_id: Option<String>,
    /// An error reported inside a stream.
    #[serde(default)]
    pub(crate) error: Option<Value>,
}

/// Stands in for a missing `responseId` in the ids of calls.
static UNNAMED_RESPONSES: AtomicU64 = AtomicU64::new(0);

impl WireResponse {
    /// The answer's id: Gemini's `responseId`, or a process-unique one.
    pub(crate) fn response_id(&self) -> String {
        match &self.response_id {
            Some(id) if !id.is_empty() => id.clone(),
            _ => format!("x{}", UNNAMED_RESPONSES.fetch_add(1, Ordering::Relaxed)),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WireCandidate {
    #[serde(default)]
    pub(crate) content: Option<WireContent>,
    #[serde(default)]
    pub(crate) finish_reason: Option<String>,
    #[serde(default)]
    pub(crate) index: Option<u32>,
}

#[derive(Deserialize)]
pub(crate) struct WireContent {
    #[serde(default)]
    pub(crate) parts: Vec<WirePart>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WirePart {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    thought: bool,
    #[serde(default)]
    thought_signature: Option<String>,
    #[serde(default)]
    function_call: Option<WireFunctionCall>,
}

#[derive(Deserialize)]
struct WireFunctionCall {
    #[serde(default)]
    name: String,
    #[serde(default)]
    args: Option<Value>,
}

/// What a part means for the canonical model.
pub(crate) enum Piece {
    Text(String),
    Thought(String),
    Call {
        name: String,
        arguments: String,
        signature: Option<String>,
    },
    Nothing,
}

impl WirePart {
    pub(crate) fn into_piece(self) -> Piece {
        if let Some(call) = self.function_call {
            let arguments = match call.args {
                Some(v @ Value::Object(_)) => v.to_string(),
                _ => "{}".to_owned(),
            };
            return Piece::Call {
                name: call.name,
                arguments,
                signature: self.thought_signature,
            };
        }
        match self.text {
            Some(t) if t.is_empty() => Piece::Nothing,
            Some(t) if self.thought => Piece::Thought(t),
            Some(t) => Piece::Text(t),
            // Images, code execution and other parts have no canonical form.
            None => Piece::Nothing,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WirePromptFeedback {
    #[serde(default)]
    pub(crate) block_reason: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WireUsage {
    #[serde(default)]
    prompt_token_count: u64,
    #[serde(default)]
    candidates_token_count: u64,
    #[serde(default)]
    cached_content_token_count: u64,
    #[serde(default)]
    thoughts_token_count: u64,
    #[serde(default)]
    tool_use_prompt_token_count: u64,
}

impl WireUsage {
    pub(crate) fn to_canonical(&self) -> Usage {
        Usage {
            input_tokens: self.prompt_token_count + self.tool_use_prompt_token_count,
            output_tokens: self.candidates_token_count + self.thoughts_token_count,
            cached_input_tokens: self.cached_content_token_count,
            cache_write_input_tokens: 0,
            reasoning_tokens: self.thoughts_token_count,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_text_thoughts_parallel_calls_and_usage() {
        let body = br#"{
          "candidates": [{
            "content": {"role": "model", "parts": [
              {"text": "Let me think", "thought": true},
              {"text": "Checking both."},
              {"functionCall": {"name": "weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2ln"},
              {"functionCall": {"name": "time", "args": {}}}
            ]},
            "finishReason": "STOP", "index": 0
          }],
          "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5,
            "thoughtsTokenCount": 7, "cachedContentTokenCount": 4, "totalTokenCount": 22},
          "modelVersion": "gemini-2.5-flash", "responseId": "r-1"
        }"#;
        let r = decode_response(body).unwrap();
        assert_eq!(r.id, "r-1");
        assert_eq!(r.model, "gemini-2.5-flash");
        let c = &r.choices[0];
        assert_eq!(c.stop_reason, Some(StopReason::ToolUse));
        assert!(matches!(&c.content[0], Part::Thinking { text, .. } if text == "Let me think"));
        assert!(
            matches!(&c.content[2], Part::ToolCall { id, arguments, .. } if id == "gcall-r1-0_c2ln" && arguments == r#"{"city":"Paris"}"#)
        );
        assert!(matches!(&c.content[3], Part::ToolCall { id, .. } if id == "gcall-r1-1"));
        assert_eq!(
            r.usage,
            Usage {
                input_tokens: 10,
                output_tokens: 12,
                cached_input_tokens: 4,
                cache_write_input_tokens: 0,
                reasoning_tokens: 7,
            }
        );
    }

    #[test]
    fn blocked_prompts_and_safety_stops_are_content_filters() {
        let r = decode_response(
            br#"{"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 3}}"#,
        )
        .unwrap();
        assert_eq!(r.choices[0].stop_reason, Some(StopReason::ContentFilter));
        assert!(
            matches!(&r.choices[0].content[0], Part::Refusal { text } if text.contains("SAFETY"))
        );
        assert_eq!(stop_reason("RECITATION", false), StopReason::ContentFilter);
        assert_eq!(stop_reason("MAX_TOKENS", true), StopReason::MaxTokens);
        assert_eq!(
            stop_reason("MALFORMED_FUNCTION_CALL", false),
            StopReason::Other("malformed_function_call".into())
        );
    }
}
