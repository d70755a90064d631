//! OpenAI streaming: `chat.completion.chunk` frames decoded into canonical stream events, and
//! canonical events encoded as chunks for OpenAI clients (ending with `data: [DONE]`).

use bytes::BytesMut;
use portcullis_core::{Delta, GatewayError, StreamEvent, Usage};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::response::{UsageOut, WireUsage, stop_reason_from_openai, stop_reason_to_openai};
use crate::errors::{decode_error_object, openai_error_fields};
use crate::frame::Frame;
use crate::sse::{write_data, write_json_data};
use crate::stream::{FrameOutcome, StreamDecoder, StreamEncoder};

/// Decodes an OpenAI-dialect upstream stream.
#[derive(Debug, Default)]
pub struct OpenAiStreamDecoder {
    started: bool,
    /// (choice, tool-call index) pairs whose start has been emitted.
    tool_calls_started: Vec<(u32, u32)>,
    /// (choice, tool-call index) pairs started and not yet ended, in order of start.
    tool_calls_open: Vec<(u32, u32)>,
}

impl OpenAiStreamDecoder {
    /// A decoder at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ends the open tool calls of `choice` (of every choice when `None`): OpenAI marks no
    /// call's end, so a call is complete when the next one starts, when its choice finishes,
    /// or when the stream ends.
    fn end_tool_calls(&mut self, choice: Option<u32>, out: &mut Vec<StreamEvent>) {
        self.tool_calls_open.retain(|&(c, index)| {
            if choice.is_some_and(|only| only != c) {
                return true;
            }
            out.push(StreamEvent::Delta {
                choice: c,
                delta: Delta::ToolCallEnd { index },
            });
            false
        });
    }
}

#[derive(Deserialize)]
struct WireChunk {
    #[serde(default)]
    id: String,
    #[serde(default)]
    created: u64,
    #[serde(default)]
    model: String,
    #[serde(default)]
    choices: Vec<WireChunkChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct WireChunkChoice {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    delta: Option<WireDelta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireDelta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default, alias = "reasoning")]
    reasoning_content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<WireToolCallDelta>>,
}

#[derive(Deserialize)]
struct WireToolCallDelta {
    #[serde(default)]
    index: Option<u32>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<WireFunctionDelta>,
}

#[derive(Deserialize)]
struct WireFunctionDelta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

impl StreamDecoder for OpenAiStreamDecoder {
    fn decode(
        &mut self,
        frame: &Frame,
        out: &mut Vec<StreamEvent>,
    ) -> Result<FrameOutcome, GatewayError> {
        let data = frame.payload.trim_ascii();
        if data == b"[DONE]" {
            self.end_tool_calls(None, out);
            return Ok(FrameOutcome::Done);
        }
        let chunk: WireChunk = serde_json::from_slice(data).map_err(|e| {
            GatewayError::new(
                portcullis_core::ErrorKind::Upstream,
                format!("The upstream sent an invalid stream chunk: {e}"),
            )
        })?;
        if let Some(err) = chunk.error {
            out.push(StreamEvent::Error(decode_error_object(&err, 502)));
            return Ok(FrameOutcome::Done);
        }
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Start {
                id: chunk.id,
                model: chunk.model,
                created: chunk.created,
            });
        }
        for choice in chunk.choices {
            let c = choice.index;
            if let Some(delta) = choice.delta {
                if let Some(r) = delta.reasoning_content.filter(|s| !s.is_empty()) {
                    out.push(StreamEvent::Delta {
                        choice: c,
                        delta: Delta::Thinking(r),
                    });
                }
                if let Some(t) = delta.content.filter(|s| !s.is_empty()) {
                    out.push(StreamEvent::Delta {
                        choice: c,
                        delta: Delta::Text(t),
                    });
                }
                if let Some(r) = delta.refusal.filter(|s| !s.is_empty()) {
                    out.push(StreamEvent::Delta {
                        choice: c,
                        delta: Delta::Refusal(r),
                    });
                }
                for (pos, call) in delta.tool_calls.unwrap_or_default().into_iter().enumerate() {
                    let index = call.index.unwrap_or(pos as u32);
                    let (name, arguments) = match call.function {
                        Some(f) => (f.name, f.arguments),
                        None => (None, None),
                    };
                    if !self.tool_calls_started.contains(&(c, index)) {
                        self.end_tool_calls(Some(c), out);
                        self.tool_calls_started.push((c, index));
                        self.tool_calls_open.push((c, index));
                        out.push(StreamEvent::Delta {
                            choice: c,
                            delta: Delta::ToolCallStart {
                                index,
                                id: call.id.unwrap_or_else(|| format!("call_{c}_{index}")),
                                name: name.unwrap_or_default(),
                            },
                        });
                    }
                    if let Some(a) = arguments.filter(|a| !a.is_empty()) {
                        out.push(StreamEvent::Delta {
                            choice: c,
                            delta: Delta::ToolCallArguments { index, fragment: a },
                        });
                    }
                }
            }
            if let Some(reason) = choice.finish_reason {
                self.end_tool_calls(Some(c), out);
                out.push(StreamEvent::Finish {
                    choice: c,
                    reason: stop_reason_from_openai(&reason),
                    stop_sequence: None,
                });
            }
        }
        if let Some(u) = chunk.usage {
            out.push(StreamEvent::Usage(u.into_canonical()));
        }
        Ok(FrameOutcome::Continue)
    }

    fn end(&mut self, out: &mut Vec<StreamEvent>) {
        self.end_tool_calls(None, out);
    }
}

/// Encodes canonical events as an OpenAI `chat.completion.chunk` stream.
#[derive(Debug, Default)]
pub struct OpenAiStreamEncoder {
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
    usage: Usage,
    roles_sent: Vec<u32>,
    failed: bool,
}

impl OpenAiStreamEncoder {
    /// An encoder; `include_usage` says whether the client asked for the final usage chunk,
    /// `now` (Unix seconds) stands in for `created` when the upstream gives none (Anthropic).
    pub fn new(include_usage: bool, now: u64) -> Self {
        Self {
            include_usage,
            created: now,
            ..Self::default()
        }
    }

    fn chunk(
        &mut self,
        out: &mut BytesMut,
        choice: u32,
        mut delta: DeltaOut<'_>,
        finish: Option<&str>,
    ) {
        if !self.roles_sent.contains(&choice) {
            self.roles_sent.push(choice);
            delta.role = Some("assistant");
        }
        write_json_data(
            out,
            &ChunkOut {
                id: &self.id,
                object: "chat.completion.chunk",
                created: self.created,
                model: &self.model,
                choices: [ChoiceOut {
                    index: choice,
                    delta,
                    logprobs: None,
                    finish_reason: finish,
                }],
            },
        );
    }
}

#[derive(Serialize)]
struct ChunkOut<'a, C: Serialize> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: C,
}

#[derive(Serialize)]
struct ChoiceOut<'a> {
    index: u32,
    delta: DeltaOut<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'a str>,
}

#[derive(Serialize, Default)]
struct DeltaOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refusal: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolCallDeltaOut<'a>; 1]>,
}

#[derive(Serialize)]
struct ToolCallDeltaOut<'a> {
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: FunctionDeltaOut<'a>,
}

#[derive(Serialize)]
struct FunctionDeltaOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

impl StreamEncoder for OpenAiStreamEncoder {
    fn encode(&mut self, event: &StreamEvent, out: &mut BytesMut) {
        if self.failed {
            return;
        }
        match event {
            StreamEvent::Start { id, model, created } => {
                self.id.clone_from(id);
                self.model.clone_from(model);
                if *created != 0 {
                    self.created = *created;
                }
                self.chunk(
                    out,
                    0,
                    DeltaOut {
                        content: Some(""),
                        ..DeltaOut::default()
                    },
                    None,
                );
            }
            StreamEvent::Delta { choice, delta } => {
                let d = match delta {
                    Delta::Text(t) => DeltaOut {
                        content: Some(t),
                        ..DeltaOut::default()
                    },
                    Delta::Thinking(t) => DeltaOut {
                        reasoning_content: Some(t),
                        ..DeltaOut::default()
                    },
                    Delta::Refusal(t) => DeltaOut {
                        refusal: Some(t),
                        ..DeltaOut::default()
                    },
                    Delta::ToolCallStart { index, id, name } => DeltaOut {
                        tool_calls: Some([ToolCallDeltaOut {
                            index: *index,
                            id: Some(id),
                            kind: Some("function"),
                            function: FunctionDeltaOut {
                                name: Some(name),
                                arguments: "",
                            },
                        }]),
                        ..DeltaOut::default()
                    },
                    Delta::ToolCallArguments { index, fragment } => DeltaOut {
                        tool_calls: Some([ToolCallDeltaOut {
                            index: *index,
                            id: None,
                            kind: None,
                            function: FunctionDeltaOut {
                                name: None,
                                arguments: fragment,
                            },
                        }]),
                        ..DeltaOut::default()
                    },
                    // OpenAI has no place for signatures or redacted reasoning, and marks no
                    // tool call's end.
                    Delta::ThinkingSignature(_)
                    | Delta::RedactedThinking(_)
                    | Delta::ToolCallEnd { .. } => return,
                };
                self.chunk(out, *choice, d, None);
            }
            StreamEvent::Finish { choice, reason, .. } => {
                self.chunk(
                    out,
                    *choice,
                    DeltaOut::default(),
                    Some(stop_reason_to_openai(reason)),
                );
            }
            StreamEvent::Usage(u) => self.usage.merge(u),
            StreamEvent::Error(e) => {
                self.failed = true;
                write_json_data(out, &serde_json::json!({ "error": openai_error_fields(e) }));
            }
        }
    }

    fn finish(&mut self, out: &mut BytesMut) {
        if self.failed {
            return;
        }
        if self.include_usage {
            write_json_data(
                out,
                &ChunkOut {
                    id: &self.id,
                    object: "chat.completion.chunk",
                    created: self.created,
                    model: &self.model,
                    choices: [(); 0],
                }
                .with_usage(&self.usage),
            );
        }
        write_data(out, b"[DONE]");
    }
}

impl<'a> ChunkOut<'a, [(); 0]> {
    fn with_usage(self, usage: &Usage) -> UsageChunkOut<'a> {
        UsageChunkOut {
            id: self.id,
            object: self.object,
            created: self.created,
            model: self.model,
            choices: [],
            usage: UsageOut::from(usage),
        }
    }
}

#[derive(Serialize)]
struct UsageChunkOut<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [(); 0],
    usage: UsageOut,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::SseParser;
    use portcullis_core::StopReason;

    fn decode_all(raw: &str) -> Vec<StreamEvent> {
        let mut p = SseParser::new();
        let mut frames = Vec::new();
        p.feed(raw.as_bytes(), &mut frames).unwrap();
        let mut d = OpenAiStreamDecoder::new();
        let mut out = Vec::new();
        for f in &frames {
            d.decode(f, &mut out).unwrap();
        }
        out
    }

    #[test]
    fn tool_calls_split_across_deltas_decode_in_order() {
        let events = decode_all(concat!(
            "data: {\"id\":\"c1\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"index\":0,\"id\":\"call_a\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"\"}}]}}]}\n\n",
            "data: {\"id\":\"c1\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"q\\\"\"}}]}}]}\n\n",
            "data: {\"id\":\"c1\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\":1}\"}}]}}]}\n\n",
            "data: {\"id\":\"c1\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
            "data: {\"id\":\"c1\",\"created\":1,\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4,\"total_tokens\":7}}\n\n",
            "data: [DONE]\n\n",
        ));
        assert_eq!(
            events,
            vec![
                StreamEvent::Start {
                    id: "c1".into(),
                    model: "m".into(),
                    created: 1
                },
                StreamEvent::Delta {
                    choice: 0,
                    delta: Delta::ToolCallStart {
                        index: 0,
                        id: "call_a".into(),
                        name: "f".into()
                    }
                },
                StreamEvent::Delta {
                    choice: 0,
                    delta: Delta::ToolCallArguments {
                        index: 0,
                        fragment: "{\"q\"".into()
                    }
                },
                StreamEvent::Delta {
                    choice: 0,
                    delta: Delta::ToolCallArguments {
                        index: 0,
                        fragment: ":1}".into()
                    }
                },
                StreamEvent::Delta {
                    choice: 0,
                    delta: Delta::ToolCallEnd { index: 0 }
                },
                StreamEvent::Finish {
                    choice: 0,
                    reason: StopReason::ToolUse,
                    stop_sequence: None
                },
                StreamEvent::Usage(Usage {
                    input_tokens: 3,
                    output_tokens: 4,
                    ..Usage::default()
                }),
            ]
        );
    }

    fn ends(events: &[StreamEvent]) -> Vec<(usize, u32)> {
        events
            .iter()
            .enumerate()
            .filter_map(|(at, e)| match e {
                StreamEvent::Delta {
                    delta: Delta::ToolCallEnd { index },
                    ..
                } => Some((at, *index)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_tool_call_ends_when_the_next_starts_or_at_the_stream_end() {
        let chunk = |delta: &str, finish: &str| {
            format!(
                "data: {{\"id\":\"c\",\"created\":1,\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{delta}{finish}}}]}}\n\n"
            )
        };
        let calls = [
            chunk(
                r#"{"tool_calls":[{"index":0,"id":"a","function":{"name":"f","arguments":"{}"}}]}"#,
                "",
            ),
            chunk(
                r#"{"tool_calls":[{"index":1,"id":"b","function":{"name":"g","arguments":"{"}}]}"#,
                "",
            ),
            chunk(
                r#"{"tool_calls":[{"index":1,"function":{"arguments":"}"}}]}"#,
                "",
            ),
        ]
        .concat();
        // The second call starts after the first's last fragment: the first ends there.
        let events = decode_all(&calls);
        assert_eq!(ends(&events), vec![(3, 0)]);
        assert!(matches!(
            &events[4],
            StreamEvent::Delta {
                delta: Delta::ToolCallStart { index: 1, .. },
                ..
            }
        ));
        // No finish_reason and no [DONE]: the end of the body ends the open call.
        let mut p = SseParser::new();
        let mut frames = Vec::new();
        p.feed(calls.as_bytes(), &mut frames).unwrap();
        let mut d = OpenAiStreamDecoder::new();
        let mut out = Vec::new();
        for f in &frames {
            d.decode(f, &mut out).unwrap();
        }
        d.end(&mut out);
        assert_eq!(ends(&out), vec![(3, 0), (7, 1)]);
        d.end(&mut out);
        assert_eq!(ends(&out).len(), 2, "an end is reported once");
        // [DONE] ends it too.
        let events = decode_all(&format!("{calls}data: [DONE]\n\n"));
        assert_eq!(ends(&events), vec![(3, 0), (7, 1)]);
    }

    #[test]
    fn encoder_withholds_usage_unless_asked_and_always_ends_with_done() {
        for include in [false, true] {
            let mut e = OpenAiStreamEncoder::new(include, 1);
            let mut out = BytesMut::new();
            e.encode(
                &StreamEvent::Start {
                    id: "x".into(),
                    model: "m".into(),
                    created: 2,
                },
                &mut out,
            );
            e.encode(
                &StreamEvent::Delta {
                    choice: 0,
                    delta: Delta::Text("hi".into()),
                },
                &mut out,
            );
            e.encode(
                &StreamEvent::Usage(Usage {
                    input_tokens: 1,
                    output_tokens: 1,
                    ..Usage::default()
                }),
                &mut out,
            );
            e.finish(&mut out);
            let s = String::from_utf8(out.to_vec()).unwrap();
            assert!(s.ends_with("data: [DONE]\n\n"));
            assert_eq!(s.contains("\"usage\""), include, "{s}");
        }
    }
}
