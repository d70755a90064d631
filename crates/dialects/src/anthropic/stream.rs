//! Anthropic streaming: Messages stream events (`message_start`, `content_block_*`,
//! `message_delta`, `message_stop`, `ping`, `error`) decoded into canonical stream events, and
//! canonical events encoded as such a stream for Anthropic clients.

use bytes::BytesMut;
use portcullis_core::{Delta, GatewayError, StopReason, StreamEvent, Usage};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::response::{UsageOut, WireUsage, stop_reason_from_anthropic, stop_reason_to_anthropic};
use crate::errors::{anthropic_error_fields, decode_error_object};
use crate::frame::Frame;
use crate::sse::write_json_event;
use crate::stream::{FrameOutcome, StreamDecoder, StreamEncoder};

/// Decodes an Anthropic upstream stream.
#[derive(Debug, Default)]
pub struct AnthropicStreamDecoder {
    /// (content block index, tool-call ordinal) for each `tool_use` block still open.
    tool_blocks: Vec<(u32, u32)>,
    /// The ordinal the next tool call gets.
    next_tool_ordinal: u32,
}

impl AnthropicStreamDecoder {
    /// A decoder at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum EventType {
    MessageStart,
    ContentBlockStart,
    ContentBlockDelta,
    ContentBlockStop,
    MessageDelta,
    MessageStop,
    Ping,
    Error,
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct WireEvent {
    #[serde(rename = "type")]
    kind: EventType,
    #[serde(default)]
    message: Option<WireMessageStart>,
    #[serde(default)]
    index: Option<u32>,
    #[serde(default)]
    content_block: Option<Value>,
    #[serde(default)]
    delta: Option<WireDelta>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct WireMessageStart {
    #[serde(default)]
    id: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireDelta {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    partial_json: Option<String>,
    #[serde(default)]
    thinking: Option<String>,
    #[serde(default)]
    signature: Option<String>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    stop_sequence: Option<String>,
}

impl StreamDecoder for AnthropicStreamDecoder {
    fn decode(
        &mut self,
        frame: &Frame,
        out: &mut Vec<StreamEvent>,
    ) -> Result<FrameOutcome, GatewayError> {
        let ev: WireEvent = serde_json::from_slice(&frame.payload).map_err(|e| {
            GatewayError::new(
                portcullis_core::ErrorKind::Upstream,
                format!("The upstream sent an invalid stream event: {e}"),
            )
        })?;
        match ev.kind {
            EventType::MessageStart => {
                if let Some(m) = ev.message {
                    out.push(StreamEvent::Start {
                        id: m.id,
                        model: m.model,
                        created: 0,
                    });
                    if let Some(u) = m.usage {
                        out.push(StreamEvent::Usage(u.into_canonical()));
                    }
                }
            }
            EventType::ContentBlockStart => {
                let index = ev.index.unwrap_or(0);
                let Some(block) = ev.content_block else {
                    return Ok(FrameOutcome::Continue);
                };
                let text = |k: &str| block.get(k).and_then(Value::as_str).unwrap_or_default();
                match block.get("type").and_then(Value::as_str) {
                    Some("text") if !text("text").is_empty() => {
                        out.push(delta(Delta::Text(text("text").to_owned())))
                    }
                    Some("thinking") if !text("thinking").is_empty() => {
                        out.push(delta(Delta::Thinking(text("thinking").to_owned())))
                    }
                    Some("redacted_thinking") => {
                        out.push(delta(Delta::RedactedThinking(text("data").to_owned())))
                    }
                    Some("tool_use") => {
                        let ordinal = self.next_tool_ordinal;
                        self.next_tool_ordinal += 1;
                        self.tool_blocks.push((index, ordinal));
                        out.push(delta(Delta::ToolCallStart {
                            index: ordinal,
                            id: text("id").to_owned(),
                            name: text("name").to_owned(),
                        }));
                    }
                    _ => {}
                }
            }
            EventType::ContentBlockDelta => {
                let index = ev.index.unwrap_or(0);
                let Some(d) = ev.delta else {
                    return Ok(FrameOutcome::Continue);
                };
                match d.kind.as_deref() {
                    Some("text_delta") => {
                        if let Some(t) = d.text.filter(|t| !t.is_empty()) {
                            out.push(delta(Delta::Text(t)));
                        }
                    }
                    Some("input_json_delta") => {
                        let ordinal = self
                            .tool_blocks
                            .iter()
                            .find(|(b, _)| *b == index)
                            .map(|(_, o)| *o);
                        if let (Some(ordinal), Some(j)) =
                            (ordinal, d.partial_json.filter(|j| !j.is_empty()))
                        {
                            out.push(delta(Delta::ToolCallArguments {
                                index: ordinal,
                                fragment: j,
                            }));
                        }
                    }
                    Some("thinking_delta") => {
                        if let Some(t) = d.thinking.filter(|t| !t.is_empty()) {
                            out.push(delta(Delta::Thinking(t)));
                        }
                    }
                    Some("signature_delta") => {
                        if let Some(s) = d.signature {
                            out.push(delta(Delta::ThinkingSignature(s)));
                        }
                    }
                    _ => {}
                }
            }
            EventType::MessageDelta => {
                if let Some(d) = ev.delta
                    && let Some(reason) = d.stop_reason
                {
                    out.push(StreamEvent::Finish {
                        choice: 0,
                        reason: stop_reason_from_anthropic(&reason),
                        stop_sequence: d.stop_sequence,
                    });
                }
                if let Some(u) = ev.usage {
                    out.push(StreamEvent::Usage(u.into_canonical()));
                }
            }
            EventType::MessageStop => return Ok(FrameOutcome::Done),
            EventType::Error => {
                let err = ev.error.unwrap_or(Value::Null);
                out.push(StreamEvent::Error(decode_error_object(&err, 502)));
                return Ok(FrameOutcome::Done);
            }
            EventType::ContentBlockStop => {
                // Only a tool call's end matters: the other blocks close implicitly.
                let index = ev.index.unwrap_or(0);
                if let Some(position) = self.tool_blocks.iter().position(|(b, _)| *b == index) {
                    let (_, ordinal) = self.tool_blocks.swap_remove(position);
                    out.push(delta(Delta::ToolCallEnd { index: ordinal }));
                }
            }
            EventType::Ping | EventType::Other => {}
        }
        Ok(FrameOutcome::Continue)
    }
}

fn delta(d: Delta) -> StreamEvent {
    StreamEvent::Delta {
        choice: 0,
        delta: d,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpenBlock {
    Text,
    Thinking,
    Tool,
}

/// Encodes canonical events as an Anthropic Messages stream.
#[derive(Debug, Default)]
pub struct AnthropicStreamEncoder {
    id: String,
    model: String,
    started: bool,
    next_block: u32,
    open: Option<(u32, OpenBlock)>,
    /// (tool-call ordinal, content block index).
    tool_blocks: Vec<(u32, u32)>,
    stop_reason: Option<StopReason>,
    stop_sequence: Option<String>,
    usage: Usage,
    failed: bool,
}

impl AnthropicStreamEncoder {
    /// An encoder at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    fn ensure_started(&mut self, out: &mut BytesMut) {
        if self.started {
            return;
        }
        self.started = true;
        let usage = UsageOut::from(&self.usage);
        write_json_event(
            out,
            "message_start",
            &json!({
                "type": "message_start",
                "message": {
                    "id": self.id,
                    "type": "message",
                    "role": "assistant",
                    "model": self.model,
                    "content": [],
                    "stop_reason": null,
                    "stop_sequence": null,
                    "usage": usage,
                }
            }),
        );
    }

    fn close_open(&mut self, out: &mut BytesMut) {
        if let Some((index, _)) = self.open.take() {
            write_json_event(
                out,
                "content_block_stop",
                &BlockStop {
                    kind: "content_block_stop",
                    index,
                },
            );
        }
    }

    fn open_block(&mut self, out: &mut BytesMut, kind: OpenBlock, block: Value) -> u32 {
        self.close_open(out);
        let index = self.next_block;
        self.next_block += 1;
        write_json_event(
            out,
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": block}),
        );
        self.open = Some((index, kind));
        index
    }

    fn ensure_open(&mut self, out: &mut BytesMut, kind: OpenBlock) -> u32 {
        match self.open {
            Some((index, k)) if k == kind => index,
            _ => {
                let block = match kind {
                    OpenBlock::Thinking => {
                        json!({"type": "thinking", "thinking": "", "signature": ""})
                    }
                    _ => json!({"type": "text", "text": ""}),
                };
                self.open_block(out, kind, block)
            }
        }
    }

    fn block_delta(out: &mut BytesMut, index: u32, delta: BlockDeltaOut<'_>) {
        write_json_event(
            out,
            "content_block_delta",
            &BlockDeltaEvent {
                kind: "content_block_delta",
                index,
                delta,
            },
        );
    }

    fn start_tool(&mut self, out: &mut BytesMut, ordinal: u32, id: &str, name: &str) -> u32 {
        let index = self.open_block(
            out,
            OpenBlock::Tool,
            json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
        );
        self.tool_blocks.push((ordinal, index));
        index
    }
}

#[derive(Serialize)]
struct BlockStop {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u32,
}

#[derive(Serialize)]
struct BlockDeltaEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u32,
    delta: BlockDeltaOut<'a>,
}

#[derive(Serialize)]
#[serde(tag = "type")]
enum BlockDeltaOut<'a> {
    #[serde(rename = "text_delta")]
    Text { text: &'a str },
    #[serde(rename = "thinking_delta")]
    Thinking { thinking: &'a str },
    #[serde(rename = "signature_delta")]
    Signature { signature: &'a str },
    #[serde(rename = "input_json_delta")]
    InputJson { partial_json: &'a str },
}

impl StreamEncoder for AnthropicStreamEncoder {
    fn encode(&mut self, event: &StreamEvent, out: &mut BytesMut) {
        if self.failed {
            return;
        }
        match event {
            StreamEvent::Start { id, model, .. } => {
                self.id.clone_from(id);
                self.model.clone_from(model);
            }
            StreamEvent::Usage(u) => self.usage.merge(u),
            StreamEvent::Delta { choice, delta } => {
                if *choice != 0 {
                    return;
                }
                self.ensure_started(out);
                match delta {
                    Delta::Text(t) | Delta::Refusal(t) => {
                        let i = self.ensure_open(out, OpenBlock::Text);
                        Self::block_delta(out, i, BlockDeltaOut::Text { text: t });
                    }
                    Delta::Thinking(t) => {
                        let i = self.ensure_open(out, OpenBlock::Thinking);
                        Self::block_delta(out, i, BlockDeltaOut::Thinking { thinking: t });
                    }
                    Delta::ThinkingSignature(s) => {
                        if let Some((i, OpenBlock::Thinking)) = self.open {
                            Self::block_delta(out, i, BlockDeltaOut::Signature { signature: s });
                        }
                    }
                    Delta::RedactedThinking(data) => {
                        self.open_block(
                            out,
                            OpenBlock::Text,
                            json!({"type": "redacted_thinking", "data": data}),
                        );
                        self.close_open(out);
                    }
                    Delta::ToolCallStart { index, id, name } => {
                        self.start_tool(out, *index, id, name);
                    }
                    Delta::ToolCallArguments { index, fragment } => {
                        let block = match self.tool_blocks.iter().find(|(o, _)| o == index) {
                            Some((_, b)) => *b,
                            None => self.start_tool(out, *index, &format!("toolu_{index}"), ""),
                        };
                        Self::block_delta(
                            out,
                            block,
                            BlockDeltaOut::InputJson {
                                partial_json: fragment,
                            },
                        );
                    }
                    Delta::ToolCallEnd { index } => {
                        let block = self.tool_blocks.iter().find(|(o, _)| o == index);
                        if let (Some((_, b)), Some((open, OpenBlock::Tool))) = (block, self.open)
                            && *b == open
                        {
                            self.close_open(out);
                        }
                    }
                }
            }
            StreamEvent::Finish {
                choice,
                reason,
                stop_sequence,
            } => {
                if *choice == 0 {
                    self.stop_reason = Some(reason.clone());
                    self.stop_sequence.clone_from(stop_sequence);
                }
            }
            StreamEvent::Error(e) => {
                self.failed = true;
                write_json_event(
                    out,
                    "error",
                    &json!({"type": "error", "error": anthropic_error_fields(e)}),
                );
            }
        }
    }

    fn passed_through(&mut self, frame: &Frame) {
        #[derive(Deserialize)]
        struct BlockFrame {
            #[serde(default)]
            index: Option<u32>,
            #[serde(default)]
            content_block: Option<BlockKind>,
        }
        #[derive(Deserialize)]
        struct BlockKind {
            #[serde(rename = "type")]
            kind: String,
        }
        let start = match frame.event.as_deref() {
            // The client has its message_start: the encoder must not write another.
            Some("message_start") => {
                self.started = true;
                return;
            }
            Some("content_block_start") => true,
            Some("content_block_stop") => false,
            _ => return,
        };
        let Ok(BlockFrame {
            index: Some(index),
            content_block,
        }) = serde_json::from_slice::<BlockFrame>(&frame.payload)
        else {
            return;
        };
        if start {
            // The upstream's numbering is the one the client has seen.
            let kind = match content_block.as_ref().map(|b| b.kind.as_str()) {
                Some("thinking") => OpenBlock::Thinking,
                Some("tool_use") => OpenBlock::Tool,
                _ => OpenBlock::Text,
            };
            if kind == OpenBlock::Tool
                && let Some((_, block)) = self.tool_blocks.last_mut()
            {
                *block = index;
            }
            self.open = Some((index, kind));
            self.next_block = self.next_block.max(index + 1);
        } else if self.open.is_some_and(|(open, _)| open == index) {
            self.open = None;
        }
    }

    fn finish(&mut self, out: &mut BytesMut) {
        if self.failed {
            return;
        }
        self.ensure_started(out);
        self.close_open(out);
        let reason = self
            .stop_reason
            .as_ref()
            .map(stop_reason_to_anthropic)
            .unwrap_or("end_turn");
        write_json_event(
            out,
            "message_delta",
            &json!({
                "type": "message_delta",
                "delta": {"stop_reason": reason, "stop_sequence": self.stop_sequence},
                "usage": UsageOut::from(&self.usage),
            }),
        );
        write_json_event(out, "message_stop", &json!({"type": "message_stop"}));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::SseParser;

    #[test]
    fn decodes_a_tool_use_stream_with_usage_in_two_pieces() {
        let raw = concat!(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
            "event: ping\ndata: {\"type\":\"ping\"}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Let me\"}}\n\n",
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"w\",\"input\":{}}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"a\\\":\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"1}\"}}\n\n",
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":30}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        );
        let mut p = SseParser::new();
        let mut frames = Vec::new();
        p.feed(raw.as_bytes(), &mut frames).unwrap();
        let mut d = AnthropicStreamDecoder::new();
        let mut events = Vec::new();
        let mut outcome = FrameOutcome::Continue;
        for f in &frames {
            outcome = d.decode(f, &mut events).unwrap();
        }
        assert_eq!(outcome, FrameOutcome::Done);
        let mut usage = Usage::default();
        for e in &events {
            if let StreamEvent::Usage(u) = e {
                usage.merge(u);
            }
        }
        assert_eq!((usage.input_tokens, usage.output_tokens), (12, 30));
        assert!(events.contains(&delta(Delta::ToolCallStart {
            index: 0,
            id: "toolu_1".into(),
            name: "w".into()
        })));
        assert!(events.contains(&StreamEvent::Finish {
            choice: 0,
            reason: StopReason::ToolUse,
            stop_sequence: None
        }));
        // The tool block's content_block_stop ends the call (ordinal 0) right after its last
        // fragment; the text block's stop marks nothing.
        let end = events
            .iter()
            .position(|e| *e == delta(Delta::ToolCallEnd { index: 0 }))
            .unwrap();
        assert_eq!(
            events[end - 1],
            delta(Delta::ToolCallArguments {
                index: 0,
                fragment: "1}".into()
            })
        );
        let all_ends = events
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    StreamEvent::Delta {
                        delta: Delta::ToolCallEnd { .. },
                        ..
                    }
                )
            })
            .count();
        assert_eq!(all_ends, 1);
    }

    #[test]
    fn an_encoder_taking_over_midstream_continues_the_upstreams_blocks() {
        // Frames 0..5 were forwarded as received (an empty text block the decoder has no
        // event for, then a text block closed by its own stop); the encoder then takes over.
        let raw = concat!(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"c\",\"usage\":{\"input_tokens\":1}}}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"hi\"}}\n\n",
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"f\",\"input\":{}}}\n\n",
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":2}\n\n",
        );
        let mut p = SseParser::new();
        let mut frames = Vec::new();
        p.feed(raw.as_bytes(), &mut frames).unwrap();
        let mut d = AnthropicStreamDecoder::new();
        let mut e = AnthropicStreamEncoder::new();
        let mut out = BytesMut::new();
        for (at, f) in frames.iter().enumerate() {
            let mut events = Vec::new();
            d.decode(f, &mut events).unwrap();
            for ev in &events {
                if at < 6 {
                    e.skip(ev);
                } else {
                    e.encode(ev, &mut out);
                }
            }
            if at < 6 {
                e.passed_through(f);
            }
        }
        let s = String::from_utf8(out.to_vec()).unwrap();
        assert!(
            s.starts_with("event: content_block_start\ndata: {\"content_block\":{\"id\":\"t\""),
            "no second stop of the text block, no second message_start: {s}"
        );
        assert!(
            s.contains("\"index\":2") && !s.contains("\"index\":1"),
            "the tool block keeps the upstream's number 2, not the 1 counted from events: {s}"
        );
        assert_eq!(s.matches("content_block_stop").count(), 2, "{s}");

        // Taking over right after message_start (before any content): no second one.
        let mut e = AnthropicStreamEncoder::new();
        let mut d = AnthropicStreamDecoder::new();
        let mut events = Vec::new();
        d.decode(&frames[0], &mut events).unwrap();
        for ev in &events {
            e.skip(ev);
        }
        e.passed_through(&frames[0]);
        let mut out = BytesMut::new();
        e.encode(&delta(Delta::Text("x".into())), &mut out);
        let s = String::from_utf8(out.to_vec()).unwrap();
        assert!(!s.contains("message_start"), "{s}");
    }

    #[test]
    fn encoder_closes_a_tool_block_at_its_end() {
        let mut e = AnthropicStreamEncoder::new();
        let mut out = BytesMut::new();
        for ev in [
            delta(Delta::ToolCallStart {
                index: 0,
                id: "t".into(),
                name: "f".into(),
            }),
            delta(Delta::ToolCallArguments {
                index: 0,
                fragment: "{}".into(),
            }),
            delta(Delta::ToolCallEnd { index: 0 }),
        ] {
            e.encode(&ev, &mut out);
        }
        let s = String::from_utf8(out.to_vec()).unwrap();
        assert!(
            s.ends_with(
                "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
            ),
            "{s}"
        );
        out.clear();
        e.finish(&mut out);
        let s = String::from_utf8(out.to_vec()).unwrap();
        assert!(!s.contains("content_block_stop"), "closed once: {s}");
    }

    #[test]
    fn encoder_opens_and_closes_blocks_around_tool_calls() {
        let mut e = AnthropicStreamEncoder::new();
        let mut out = BytesMut::new();
        for ev in [
            StreamEvent::Start {
                id: "c".into(),
                model: "gpt".into(),
                created: 0,
            },
            delta(Delta::Text("hi".into())),
            delta(Delta::ToolCallStart {
                index: 0,
                id: "call_1".into(),
                name: "f".into(),
            }),
            delta(Delta::ToolCallArguments {
                index: 0,
                fragment: "{}".into(),
            }),
            StreamEvent::Finish {
                choice: 0,
                reason: StopReason::ToolUse,
                stop_sequence: None,
            },
            StreamEvent::Usage(Usage {
                input_tokens: 4,
                output_tokens: 2,
                ..Usage::default()
            }),
        ] {
            e.encode(&ev, &mut out);
        }
        e.finish(&mut out);
        let s = String::from_utf8(out.to_vec()).unwrap();
        let order: Vec<&str> = s
            .lines()
            .filter_map(|l| l.strip_prefix("event: "))
            .collect();
        assert_eq!(
            order,
            vec![
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert!(s.contains("\"stop_reason\":\"tool_use\""));
        assert!(s.contains("\"output_tokens\":2"));
    }
}
