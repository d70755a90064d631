//! ConverseStream decoded: each message of the AWS event stream (cut by
//! [`EventStreamFramer`](crate::aws_eventstream::EventStreamFramer), its stream member in the
//! frame's `event`) becomes canonical stream events.
//!
//! `messageStart` starts the answer; `contentBlockStart` starts a tool call (text blocks have
//! no start); `contentBlockDelta` carries text, reasoning (text, signature or redacted bytes)
//! or a fragment of a tool call's JSON input; `contentBlockStop` ends a block, and with it a
//! call; `messageStop` carries the stop reason and `metadata`, the last message, the usage. An
//! exception (`throttlingException`, `modelStreamErrorException`, `validationException`,
//! `internalServerException`, `serviceUnavailableException`) or an `error` message ends the
//! stream with an error. Every payload may carry members the decoder does not read (Bedrock
//! pads events with `p`).

use portcullis_core::{Delta, ErrorKind, GatewayError, StreamEvent};
use serde::Deserialize;

use super::response::{WireUsage, stop_reason};
use super::{answer_id, decode_exception};
use crate::aws_eventstream::{Message, MessageType};
use crate::frame::Frame;
use crate::stream::{FrameOutcome, StreamDecoder};

/// Decodes a ConverseStream.
#[derive(Debug)]
pub struct BedrockStreamDecoder {
    /// The model the request was sent to (the stream does not name it).
    model: String,
    started: bool,
    /// Open tool-call blocks: (content block index, call ordinal).
    open_calls: Vec<(u64, u32)>,
    calls: u32,
}

impl BedrockStreamDecoder {
    /// A decoder at the start of a stream from `model`.
    pub fn new(model: &str) -> Self {
        Self {
            model: model.to_owned(),
            started: false,
            open_calls: Vec::new(),
            calls: 0,
        }
    }

    fn start(&mut self, out: &mut Vec<StreamEvent>) {
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Start {
                id: answer_id(),
                model: self.model.clone(),
                created: 0,
            });
        }
    }

    fn call_of(&self, block: u64) -> Option<u32> {
        self.open_calls
            .iter()
            .find(|(b, _)| *b == block)
            .map(|(_, c)| *c)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockStart {
    #[serde(default)]
    content_block_index: u64,
    #[serde(default)]
    start: Option<StartBody>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartBody {
    #[serde(default)]
    tool_use: Option<ToolUseStart>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolUseStart {
    #[serde(default)]
    tool_use_id: String,
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockDelta {
    #[serde(default)]
    content_block_index: u64,
    #[serde(default)]
    delta: Option<DeltaBody>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeltaBody {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    tool_use: Option<ToolUseDelta>,
    #[serde(default)]
    reasoning_content: Option<ReasoningDelta>,
}

#[derive(Deserialize)]
struct ToolUseDelta {
    #[serde(default)]
    input: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReasoningDelta {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    signature: Option<String>,
    #[serde(default)]
    redacted_content: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockStop {
    #[serde(default)]
    content_block_index: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageStop {
    #[serde(default)]
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
struct Metadata {
    #[serde(default)]
    usage: Option<WireUsage>,
}

fn parse<'a, T: Deserialize<'a>>(frame: &'a Frame, event: &str) -> Result<T, GatewayError> {
    serde_json::from_slice(&frame.payload).map_err(|e| {
        GatewayError::new(
            ErrorKind::Upstream,
            format!("The upstream sent an invalid `{event}` stream event: {e}"),
        )
    })
}

impl StreamDecoder for BedrockStreamDecoder {
    fn decode(
        &mut self,
        frame: &Frame,
        out: &mut Vec<StreamEvent>,
    ) -> Result<FrameOutcome, GatewayError> {
        let Some(event) = frame.event.as_deref() else {
            return Ok(FrameOutcome::Continue);
        };
        match event {
            "messageStart" => self.start(out),
            "contentBlockStart" => {
                let start: BlockStart = parse(frame, event)?;
                self.start(out);
                if let Some(tool) = start.start.and_then(|s| s.tool_use) {
                    let index = self.calls;
                    self.calls += 1;
                    self.open_calls.push((start.content_block_index, index));
                    out.push(StreamEvent::Delta {
                        choice: 0,
                        delta: Delta::ToolCallStart {
                            index,
                            id: tool.tool_use_id,
                            name: tool.name,
                        },
                    });
                }
            }
            "contentBlockDelta" => {
                let d: BlockDelta = parse(frame, event)?;
                self.start(out);
                let Some(body) = d.delta else {
                    return Ok(FrameOutcome::Continue);
                };
                let delta = if let Some(text) = body.text {
                    Delta::Text(text)
                } else if let Some(tool) = body.tool_use {
                    let Some(index) = self.call_of(d.content_block_index) else {
                        return Err(GatewayError::new(
                            ErrorKind::Upstream,
                            "The upstream streamed tool input for a block it did not start",
                        ));
                    };
                    Delta::ToolCallArguments {
                        index,
                        fragment: tool.input,
                    }
                } else if let Some(r) = body.reasoning_content {
                    match (r.text, r.signature, r.redacted_content) {
                        (Some(t), _, _) => Delta::Thinking(t),
                        (None, Some(s), _) => Delta::ThinkingSignature(s),
                        (None, None, Some(data)) => Delta::RedactedThinking(data),
                        (None, None, None) => return Ok(FrameOutcome::Continue),
                    }
                } else {
                    return Ok(FrameOutcome::Continue);
                };
                out.push(StreamEvent::Delta { choice: 0, delta });
            }
            "contentBlockStop" => {
                let stop: BlockStop = parse(frame, event)?;
                if let Some(position) = self
                    .open_calls
                    .iter()
                    .position(|(b, _)| *b == stop.content_block_index)
                {
                    let (_, index) = self.open_calls.remove(position);
                    out.push(StreamEvent::Delta {
                        choice: 0,
                        delta: Delta::ToolCallEnd { index },
                    });
                }
            }
            "messageStop" => {
                let stop: MessageStop = parse(frame, event)?;
                self.start(out);
                self.end(out);
                out.push(StreamEvent::Finish {
                    choice: 0,
                    reason: stop_reason(stop.stop_reason.as_deref().unwrap_or("end_turn")),
                    stop_sequence: None,
                });
            }
            "metadata" => {
                let meta: Metadata = parse(frame, event)?;
                if let Some(usage) = meta.usage {
                    out.push(StreamEvent::Usage(usage.to_canonical()));
                }
                return Ok(FrameOutcome::Done);
            }
            other if other.ends_with("Exception") => {
                out.push(StreamEvent::Error(decode_exception(
                    other,
                    &frame.payload,
                    "upstream",
                )));
                return Ok(FrameOutcome::Done);
            }
            other => {
                // An `error` message (code and message in headers), or a member added later.
                let message = Message::from_frame(frame).ok();
                if let Some(m) = message.filter(|m| m.message_type() == Some(MessageType::Error)) {
                    let text = m.error_message().unwrap_or("no details");
                    out.push(StreamEvent::Error(GatewayError::new(
                        ErrorKind::Upstream,
                        format!("The upstream stream failed ({other}): {text}"),
                    )));
                    return Ok(FrameOutcome::Done);
                }
            }
        }
        Ok(FrameOutcome::Continue)
    }

    fn end(&mut self, out: &mut Vec<StreamEvent>) {
        for (_, index) in self.open_calls.drain(..) {
            out.push(StreamEvent::Delta {
                choice: 0,
                delta: Delta::ToolCallEnd { index },
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws_eventstream::EventStreamFramer;
    use crate::frame::Framer;
    use portcullis_core::{StopReason, Usage};
    use serde_json::{Value, json};

    fn frames(messages: &[Message]) -> Vec<Frame> {
        let mut framer = EventStreamFramer::new();
        let mut out = Vec::new();
        for m in messages {
            let bytes = m.encode().unwrap();
            // Fed in two pieces, as a network would cut them.
            let (a, b) = bytes.split_at(bytes.len() / 2);
            framer.feed(a, &mut out).unwrap();
            framer.feed(b, &mut out).unwrap();
        }
        out
    }

    fn event(kind: &str, payload: Value) -> Message {
        Message::event(kind, payload.to_string())
    }

    fn decode_all(messages: &[Message]) -> (Vec<StreamEvent>, FrameOutcome) {
        let mut d = BedrockStreamDecoder::new("amazon.nova-pro-v1:0");
        let mut out = Vec::new();
        let mut outcome = FrameOutcome::Continue;
        for f in frames(messages) {
            outcome = d.decode(&f, &mut out).unwrap();
        }
        d.end(&mut out);
        (out, outcome)
    }

    #[test]
    fn text_reasoning_parallel_calls_stop_and_usage() {
        let (out, outcome) = decode_all(&[
            event("messageStart", json!({"role": "assistant", "p": "abc"})),
            event(
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "hmm"}}}),
            ),
            event(
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "sig"}}}),
            ),
            event("contentBlockStop", json!({"contentBlockIndex": 0})),
            event(
                "contentBlockDelta",
                json!({"contentBlockIndex": 1, "delta": {"text": "Hel"}}),
            ),
            event(
                "contentBlockDelta",
                json!({"contentBlockIndex": 1, "delta": {"text": "lo"}}),
            ),
            event("contentBlockStop", json!({"contentBlockIndex": 1})),
            event(
                "contentBlockStart",
                json!({"contentBlockIndex": 2, "start": {"toolUse": {"toolUseId": "tu_a", "name": "f"}}}),
            ),
            event(
                "contentBlockDelta",
                json!({"contentBlockIndex": 2, "delta": {"toolUse": {"input": "{\"a\":"}}}),
            ),
            event(
                "contentBlockDelta",
                json!({"contentBlockIndex": 2, "delta": {"toolUse": {"input": "1}"}}}),
            ),
            event("contentBlockStop", json!({"contentBlockIndex": 2})),
            event(
                "contentBlockStart",
                json!({"contentBlockIndex": 3, "start": {"toolUse": {"toolUseId": "tu_b", "name": "g"}}}),
            ),
            event("contentBlockStop", json!({"contentBlockIndex": 3})),
            event("messageStop", json!({"stopReason": "tool_use"})),
            event(
                "metadata",
                json!({"usage": {"inputTokens": 3, "outputTokens": 7, "totalTokens": 10, "cacheReadInputTokens": 2}, "metrics": {"latencyMs": 5}}),
            ),
        ]);
        assert_eq!(outcome, FrameOutcome::Done);
        assert!(
            matches!(&out[0], StreamEvent::Start { model, .. } if model == "amazon.nova-pro-v1:0")
        );
        let d = |delta| StreamEvent::Delta { choice: 0, delta };
        assert_eq!(
            out[1..].to_vec(),
            vec![
                d(Delta::Thinking("hmm".into())),
                d(Delta::ThinkingSignature("sig".into())),
                d(Delta::Text("Hel".into())),
                d(Delta::Text("lo".into())),
                d(Delta::ToolCallStart {
                    index: 0,
                    id: "tu_a".into(),
                    name: "f".into()
                }),
                d(Delta::ToolCallArguments {
                    index: 0,
                    fragment: "{\"a\":".into()
                }),
                d(Delta::ToolCallArguments {
                    index: 0,
                    fragment: "1}".into()
                }),
                d(Delta::ToolCallEnd { index: 0 }),
                d(Delta::ToolCallStart {
                    index: 1,
                    id: "tu_b".into(),
                    name: "g".into()
                }),
                d(Delta::ToolCallEnd { index: 1 }),
                StreamEvent::Finish {
                    choice: 0,
                    reason: StopReason::ToolUse,
                    stop_sequence: None
                },
                StreamEvent::Usage(Usage {
                    input_tokens: 5,
                    output_tokens: 7,
                    cached_input_tokens: 2,
                    cache_write_input_tokens: 0,
                    reasoning_tokens: 0,
                }),
            ]
        );
    }

    #[test]
    fn exceptions_and_errors_end_the_stream() {
        let (out, outcome) = decode_all(&[
            event("messageStart", json!({"role": "assistant"})),
            event(
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"text": "Partial "}}),
            ),
            Message::exception(
                "throttlingException",
                json!({"message": "Too many tokens"}).to_string(),
            ),
        ]);
        assert_eq!(outcome, FrameOutcome::Done);
        assert!(
            matches!(out.last(), Some(StreamEvent::Error(e)) if e.status().as_u16() == 429 && e.message() == "Too many tokens")
        );

        let (out, outcome) = decode_all(&[Message::error("InternalFailure", "it broke")]);
        assert_eq!(outcome, FrameOutcome::Done);
        assert!(matches!(out.last(), Some(StreamEvent::Error(e)) if e.status().as_u16() == 502));

        // A call whose block never stopped ends with the stream.
        let (out, _) = decode_all(&[event(
            "contentBlockStart",
            json!({"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "t", "name": "f"}}}),
        )]);
        assert_eq!(
            out.last(),
            Some(&StreamEvent::Delta {
                choice: 0,
                delta: Delta::ToolCallEnd { index: 0 }
            })
        );
        let mut d = BedrockStreamDecoder::new("m");
        let bad = frames(&[event(
            "contentBlockDelta",
            json!({"contentBlockIndex": 9, "delta": {"toolUse": {"input": "{"}}}),
        )]);
        assert!(d.decode(&bad[0], &mut Vec::new()).is_err());
    }
}
