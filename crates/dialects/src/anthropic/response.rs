//! Anthropic Messages responses: decoding an upstream's `message` object and encoding a
//! canonical response for an Anthropic client.

use portcullis_core::{ChatResponse, Choice, ErrorKind, GatewayError, Part, StopReason, Usage};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::blocks::{BlockOut, decode_block};

/// Decodes an upstream `message` body.
pub fn decode_response(body: &[u8]) -> Result<ChatResponse, GatewayError> {
    let wire: WireResponse = serde_json::from_slice(body).map_err(|e| {
        GatewayError::new(
            ErrorKind::Upstream,
            format!("The upstream returned an invalid message: {e}"),
        )
    })?;
    let content = wire
        .content
        .into_iter()
        .filter_map(|b| decode_block(b).ok())
        .collect();
    Ok(ChatResponse {
        id: wire.id,
        model: wire.model,
        created: 0,
        choices: vec![Choice {
            index: 0,
            content,
            stop_reason: wire.stop_reason.as_deref().map(stop_reason_from_anthropic),
            stop_sequence: wire.stop_sequence,
            logprobs: None,
        }],
        usage: wire.usage.into_canonical(),
        extras: Default::default(),
    })
}

#[derive(Deserialize)]
struct WireResponse {
    #[serde(default)]
    id: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    content: Vec<Value>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    stop_sequence: Option<String>,
    #[serde(default)]
    usage: WireUsage,
}

/// Anthropic usage, as in responses, `message_start` and `message_delta`.
#[derive(Deserialize, Default)]
pub(crate) struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
}

impl WireUsage {
    /// Canonical usage: Anthropic's `input_tokens` excludes cache reads and writes, the
    /// canonical count includes them.
    pub(crate) fn into_canonical(self) -> Usage {
        let read = self.cache_read_input_tokens.unwrap_or(0);
        let write = self.cache_creation_input_tokens.unwrap_or(0);
        let input = self.input_tokens.unwrap_or(0);
        Usage {
            input_tokens: if self.input_tokens.is_some() || read + write > 0 {
                input + read + write
            } else {
                0
            },
            output_tokens: self.output_tokens.unwrap_or(0),
            cached_input_tokens: read,
            cache_write_input_tokens: write,
            reasoning_tokens: 0,
        }
    }
}

/// The Anthropic usage object for canonical usage.
#[derive(Serialize)]
pub(crate) struct UsageOut {
    input_tokens: u64,
    cache_creation_input_tokens: u64,
    cache_read_input_tokens: u64,
    output_tokens: u64,
}

impl From<&Usage> for UsageOut {
    fn from(u: &Usage) -> Self {
        UsageOut {
            input_tokens: u
                .input_tokens
                .saturating_sub(u.cached_input_tokens)
                .saturating_sub(u.cache_write_input_tokens),
            cache_creation_input_tokens: u.cache_write_input_tokens,
            cache_read_input_tokens: u.cached_input_tokens,
            output_tokens: u.output_tokens,
        }
    }
}

/// Canonical stop reason for an Anthropic `stop_reason`.
pub(crate) fn stop_reason_from_anthropic(r: &str) -> StopReason {
    match r {
        "end_turn" => StopReason::EndTurn,
        "max_tokens" | "model_context_window_exceeded" => StopReason::MaxTokens,
        "stop_sequence" => StopReason::StopSequence,
        "tool_use" => StopReason::ToolUse,
        "refusal" => StopReason::ContentFilter,
        "pause_turn" => StopReason::PauseTurn,
        other => StopReason::Other(other.to_owned()),
    }
}

/// Anthropic `stop_reason` for a canonical stop reason.
pub(crate) fn stop_reason_to_anthropic(r: &StopReason) -> &str {
    match r {
        StopReason::EndTurn => "end_turn",
        StopReason::MaxTokens => "max_tokens",
        StopReason::StopSequence => "stop_sequence",
        StopReason::ToolUse => "tool_use",
        StopReason::ContentFilter => "refusal",
        StopReason::PauseTurn => "pause_turn",
        StopReason::Other(_) => "end_turn",
    }
}

/// Encodes a canonical response as an Anthropic `message` body (first choice only).
pub fn encode_response(resp: &ChatResponse) -> Vec<u8> {
    serde_json::to_vec(&ResponseOut(resp)).unwrap_or_default()
}

struct ResponseOut<'a>(&'a ChatResponse);

impl Serialize for ResponseOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let choice = r.choices.first();
        let blocks: Vec<BlockOut<'_>> = choice
            .map(|c| {
                c.content
                    .iter()
                    .filter(|p| {
                        !matches!(p, Part::Opaque { dialect, .. } if *dialect != portcullis_core::Dialect::Anthropic)
                    })
                    .map(BlockOut)
                    .collect()
            })
            .unwrap_or_default();
        let mut m = s.serialize_map(Some(8))?;
        m.serialize_entry("id", &r.id)?;
        m.serialize_entry("type", "message")?;
        m.serialize_entry("role", "assistant")?;
        m.serialize_entry("model", &r.model)?;
        m.serialize_entry("content", &blocks)?;
        m.serialize_entry(
            "stop_reason",
            &choice
                .and_then(|c| c.stop_reason.as_ref())
                .map(stop_reason_to_anthropic),
        )?;
        m.serialize_entry(
            "stop_sequence",
            &choice.and_then(|c| c.stop_sequence.as_deref()),
        )?;
        m.serialize_entry("usage", &UsageOut::from(&r.usage))?;
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_counts_cache_reads_and_writes_as_input() {
        let r = decode_response(br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude","content":[{"type":"text","text":"hi"}],
            "stop_reason":"end_turn","stop_sequence":null,
            "usage":{"input_tokens":5,"output_tokens":2,"cache_creation_input_tokens":10,"cache_read_input_tokens":100}}"#).unwrap();
        assert_eq!(r.usage.input_tokens, 115);
        assert_eq!(r.usage.cached_input_tokens, 100);
        let back: Value = serde_json::from_slice(&encode_response(&r)).unwrap();
        assert_eq!(back["usage"]["input_tokens"], 5);
        assert_eq!(back["usage"]["cache_read_input_tokens"], 100);
        assert_eq!(back["content"][0]["text"], "hi");
    }
}
