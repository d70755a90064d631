//! Responses API streams: canonical events written as the Responses stream's events for a
//! client ([`ResponsesStreamEncoder`]), and a Responses upstream's events read back
//! ([`ResponsesStreamDecoder`]).
//!
//! A client's stream, every event numbered by `sequence_number` from 0:
//! `response.created`, `response.in_progress`; per output item `response.output_item.added`,
//! then for a message `response.content_part.added`, `response.output_text.delta`…,
//! `response.output_text.done`, `response.content_part.done` (a refusal the same with
//! `response.refusal.*`, reasoning with `response.reasoning_text.*`), for a function call
//! `response.function_call_arguments.delta`… and `.done`, then `response.output_item.done`;
//! last `response.completed` (or `response.incomplete` after a token limit or a content
//! filter) carrying the whole `response`. A failure ends it with `response.failed`, the
//! response's `error` saying what went wrong.

use bytes::BytesMut;
use portcullis_core::{Delta, ErrorKind, GatewayError, StopReason, StreamEvent, Usage};
use serde_json::{Map, Value, json};

use super::items::{function_call_item, message_item, output_text, reasoning_item, refusal};
use super::response::{ResponseContext, failure, status_of, usage_from};
use crate::errors::classify;
use crate::frame::Frame;
use crate::sse::write_json_event;
use crate::stream::{FrameOutcome, StreamDecoder, StreamEncoder};

/// The output item being streamed.
#[derive(Debug, Default)]
enum Open {
    #[default]
    None,
    Message {
        id: String,
        parts: Vec<Value>,
        part: Option<OpenPart>,
    },
    Reasoning {
        id: String,
        text: String,
        signature: Option<String>,
    },
    Call {
        id: String,
        index: u32,
        call_id: String,
        name: String,
        arguments: String,
    },
}

/// The content part of a message being streamed.
#[derive(Debug)]
enum OpenPart {
    Text(String),
    Refusal(String),
}

/// Writes canonical events as a client's Responses stream (choice 0: the Responses API has
/// one). The `response` it ends with is kept for whoever stores it
/// ([`ResponsesStreamEncoder::take_response`]).
#[derive(Debug)]
pub struct ResponsesStreamEncoder {
    ctx: ResponseContext,
    seq: u64,
    model: String,
    started: bool,
    done: bool,
    items: Vec<Value>,
    open: Open,
    usage: Usage,
    stop: Option<StopReason>,
    last: Option<Value>,
}

impl ResponsesStreamEncoder {
    /// An encoder for the response `ctx` names.
    pub fn new(ctx: ResponseContext) -> Self {
        Self {
            ctx,
            seq: 0,
            model: String::new(),
            started: false,
            done: false,
            items: Vec::new(),
            open: Open::None,
            usage: Usage::default(),
            stop: None,
            last: None,
        }
    }

    /// The `response` the stream ended with (`completed`, `incomplete` or `failed`), once it
    /// has ended.
    pub fn take_response(&mut self) -> Option<Value> {
        self.last.take()
    }

    fn emit(&mut self, out: &mut BytesMut, kind: &str, fields: Value) {
        let mut payload = Map::new();
        payload.insert("type".into(), json!(kind));
        if let Value::Object(f) = fields {
            payload.extend(f);
        }
        payload.insert("sequence_number".into(), json!(self.seq));
        self.seq += 1;
        write_json_event(out, kind, &payload);
    }

    fn object(
        &self,
        status: &str,
        usage: Option<&Usage>,
        incomplete: Option<&str>,
        error: Option<Value>,
    ) -> Value {
        self.ctx.object(
            &self.model,
            status,
            self.items.clone(),
            usage,
            incomplete,
            error,
        )
    }

    fn ensure_started(&mut self, out: &mut BytesMut) {
        if self.started {
            return;
        }
        self.started = true;
        let response = self.object("in_progress", None, None, None);
        self.emit(out, "response.created", json!({ "response": response }));
        self.emit(out, "response.in_progress", json!({ "response": response }));
    }

    fn output_index(&self) -> usize {
        self.items.len()
    }

    /// Opens a message item (closing whatever else is open) and its part of `kind`.
    fn message_part(&mut self, out: &mut BytesMut, refusal_part: bool) {
        if !matches!(self.open, Open::Message { .. }) {
            self.close(out);
            let id = self.ctx.item_id("msg", self.output_index());
            let item = message_item(&id, Vec::new(), "in_progress");
            let index = self.output_index();
            self.emit(
                out,
                "response.output_item.added",
                json!({"output_index": index, "item": item}),
            );
            self.open = Open::Message {
                id,
                parts: Vec::new(),
                part: None,
            };
        }
        let same = matches!(
            &self.open,
            Open::Message { part: Some(OpenPart::Refusal(_)), .. } if refusal_part
        ) || matches!(
            &self.open,
            Open::Message { part: Some(OpenPart::Text(_)), .. } if !refusal_part
        );
        if same {
            return;
        }
        self.close_part(out);
        let index = self.output_index();
        let fields = match &mut self.open {
            Open::Message { id, parts, part } => {
                let empty = if refusal_part {
                    refusal("")
                } else {
                    output_text("")
                };
                *part = Some(if refusal_part {
                    OpenPart::Refusal(String::new())
                } else {
                    OpenPart::Text(String::new())
                });
                json!({"item_id": id, "output_index": index, "content_index": parts.len(), "part": empty})
            }
            _ => return,
        };
        self.emit(out, "response.content_part.added", fields);
    }

    fn close_part(&mut self, out: &mut BytesMut) {
        let index = self.output_index();
        let Open::Message { id, parts, part } = &mut self.open else {
            return;
        };
        let Some(open) = part.take() else {
            return;
        };
        let id = id.clone();
        let content_index = parts.len();
        let (done_kind, done_fields, finished) = match open {
            OpenPart::Text(text) => (
                "response.output_text.done",
                json!({"item_id": id, "output_index": index, "content_index": content_index, "text": text, "logprobs": []}),
                output_text(&text),
            ),
            OpenPart::Refusal(text) => (
                "response.refusal.done",
                json!({"item_id": id, "output_index": index, "content_index": content_index, "refusal": text}),
                refusal(&text),
            ),
        };
        parts.push(finished.clone());
        self.emit(out, done_kind, done_fields);
        self.emit(
            out,
            "response.content_part.done",
            json!({"item_id": id, "output_index": index, "content_index": content_index, "part": finished}),
        );
    }

    /// Closes the open output item, if any.
    fn close(&mut self, out: &mut BytesMut) {
        self.close_part(out);
        let index = self.output_index();
        let item = match std::mem::take(&mut self.open) {
            Open::None => return,
            Open::Message { id, parts, .. } => message_item(&id, parts, "completed"),
            Open::Reasoning {
                id,
                text,
                signature,
            } => {
                self.emit(
                    out,
                    "response.reasoning_text.done",
                    json!({"item_id": id, "output_index": index, "content_index": 0, "text": text}),
                );
                self.emit(
                    out,
                    "response.content_part.done",
                    json!({"item_id": id, "output_index": index, "content_index": 0, "part": {"type": "reasoning_text", "text": text}}),
                );
                reasoning_item(&id, &text, signature.as_deref())
            }
            Open::Call {
                id,
                call_id,
                name,
                arguments,
                ..
            } => {
                self.emit(
                    out,
                    "response.function_call_arguments.done",
                    json!({"item_id": id, "output_index": index, "name": name, "arguments": arguments}),
                );
                function_call_item(&id, &call_id, &name, &arguments, "completed")
            }
        };
        self.emit(
            out,
            "response.output_item.done",
            json!({"output_index": index, "item": item}),
        );
        self.items.push(item);
    }

    fn delta(&mut self, delta: &Delta, out: &mut BytesMut) {
        match delta {
            Delta::Text(t) | Delta::Refusal(t) => {
                let is_refusal = matches!(delta, Delta::Refusal(_));
                self.message_part(out, is_refusal);
                let index = self.output_index();
                let Open::Message { id, parts, part } = &mut self.open else {
                    return;
                };
                let (id, content_index) = (id.clone(), parts.len());
                match part {
                    Some(OpenPart::Text(s) | OpenPart::Refusal(s)) => s.push_str(t),
                    None => {}
                }
                let kind = if is_refusal {
                    "response.refusal.delta"
                } else {
                    "response.output_text.delta"
                };
                let mut fields = json!({"item_id": id, "output_index": index, "content_index": content_index, "delta": t});
                if !is_refusal {
                    fields["logprobs"] = json!([]);
                }
                self.emit(out, kind, fields);
            }
            Delta::Thinking(t) => {
                if !matches!(self.open, Open::Reasoning { .. }) {
                    self.close(out);
                    let index = self.output_index();
                    let id = self.ctx.item_id("rs", index);
                    self.emit(
                        out,
                        "response.output_item.added",
                        json!({"output_index": index, "item": {"id": id, "type": "reasoning", "summary": []}}),
                    );
                    self.emit(
                        out,
                        "response.content_part.added",
                        json!({"item_id": id, "output_index": index, "content_index": 0, "part": {"type": "reasoning_text", "text": ""}}),
                    );
                    self.open = Open::Reasoning {
                        id,
                        text: String::new(),
                        signature: None,
                    };
                }
                let index = self.output_index();
                if let Open::Reasoning { id, text, .. } = &mut self.open {
                    text.push_str(t);
                    let id = id.clone();
                    self.emit(
                        out,
                        "response.reasoning_text.delta",
                        json!({"item_id": id, "output_index": index, "content_index": 0, "delta": t}),
                    );
                }
            }
            Delta::ThinkingSignature(s) => {
                if let Open::Reasoning { signature, .. } = &mut self.open {
                    *signature = Some(s.clone());
                }
            }
            Delta::RedactedThinking(data) => {
                self.close(out);
                let index = self.output_index();
                let id = self.ctx.item_id("rs", index);
                let item = reasoning_item(&id, "", Some(data));
                self.emit(
                    out,
                    "response.output_item.added",
                    json!({"output_index": index, "item": item}),
                );
                self.emit(
                    out,
                    "response.output_item.done",
                    json!({"output_index": index, "item": item}),
                );
                self.items.push(item);
            }
            Delta::ToolCallStart {
                index: call,
                id,
                name,
            } => {
                self.close(out);
                let index = self.output_index();
                let item_id = self.ctx.item_id("fc", index);
                let item = function_call_item(&item_id, id, name, "", "in_progress");
                self.emit(
                    out,
                    "response.output_item.added",
                    json!({"output_index": index, "item": item}),
                );
                self.open = Open::Call {
                    id: item_id,
                    index: *call,
                    call_id: id.clone(),
                    name: name.clone(),
                    arguments: String::new(),
                };
            }
            Delta::ToolCallArguments {
                index: call,
                fragment,
            } => {
                let index = self.output_index();
                if let Open::Call {
                    id,
                    index: open,
                    arguments,
                    ..
                } = &mut self.open
                    && *open == *call
                {
                    arguments.push_str(fragment);
                    let id = id.clone();
                    self.emit(
                        out,
                        "response.function_call_arguments.delta",
                        json!({"item_id": id, "output_index": index, "delta": fragment}),
                    );
                }
            }
            Delta::ToolCallEnd { index: call } => {
                if matches!(&self.open, Open::Call { index, .. } if index == call) {
                    self.close(out);
                }
            }
        }
    }
}

impl StreamEncoder for ResponsesStreamEncoder {
    fn encode(&mut self, event: &StreamEvent, out: &mut BytesMut) {
        if self.done {
            return;
        }
        match event {
            StreamEvent::Start { model, .. } => {
                if self.model.is_empty() {
                    self.model.clone_from(model);
                }
                self.ensure_started(out);
            }
            StreamEvent::Delta { choice: 0, delta } => {
                self.ensure_started(out);
                self.delta(delta, out);
            }
            StreamEvent::Delta { .. } => {}
            StreamEvent::Finish {
                choice: 0, reason, ..
            } => self.stop = Some(reason.clone()),
            StreamEvent::Finish { .. } => {}
            StreamEvent::Usage(u) => self.usage.merge(u),
            StreamEvent::Error(e) => {
                self.ensure_started(out);
                self.close(out);
                let error = json!({"code": error_code(e), "message": e.message()});
                let response = self.object("failed", Some(&self.usage), None, Some(error));
                self.emit(out, "response.failed", json!({ "response": response }));
                self.last = Some(response);
                self.done = true;
            }
        }
    }

    fn finish(&mut self, out: &mut BytesMut) {
        if self.done {
            return;
        }
        self.ensure_started(out);
        self.close(out);
        let (status, incomplete) = status_of(self.stop.as_ref());
        let response = self.object(status, Some(&self.usage), incomplete, None);
        let kind = if status == "completed" {
            "response.completed"
        } else {
            "response.incomplete"
        };
        self.emit(out, kind, json!({ "response": response }));
        self.last = Some(response);
        self.done = true;
    }
}

/// The `code` of a failed response's error.
fn error_code(e: &GatewayError) -> &'static str {
    match e.kind() {
        ErrorKind::RateLimited => "rate_limit_exceeded",
        ErrorKind::InvalidRequest | ErrorKind::NotFound | ErrorKind::PayloadTooLarge => {
            "invalid_prompt"
        }
        _ => e.code().unwrap_or("server_error"),
    }
}

/// Reads a Responses upstream's stream.
#[derive(Debug, Default)]
pub struct ResponsesStreamDecoder {
    /// Function-call items by item id, with their call ordinal.
    calls: Vec<(String, u32)>,
    /// Reasoning items whose text was seen.
    thinking: Vec<String>,
}

impl ResponsesStreamDecoder {
    /// A decoder at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    fn call_index(&self, item_id: &str) -> Option<u32> {
        self.calls
            .iter()
            .find(|(id, _)| id == item_id)
            .map(|(_, i)| *i)
    }
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

impl StreamDecoder for ResponsesStreamDecoder {
    fn decode(
        &mut self,
        frame: &Frame,
        out: &mut Vec<StreamEvent>,
    ) -> Result<FrameOutcome, GatewayError> {
        if frame.payload.is_empty() || &frame.payload[..] == b"[DONE]" {
            return Ok(FrameOutcome::Continue);
        }
        let v: Value = serde_json::from_slice(&frame.payload).map_err(|e| {
            GatewayError::new(
                ErrorKind::Upstream,
                format!("The upstream sent an invalid stream event: {e}"),
            )
        })?;
        let kind = v
            .get("type")
            .and_then(Value::as_str)
            .or(frame.event.as_deref())
            .unwrap_or_default();
        match kind {
            "response.created" => {
                let r = v.get("response").unwrap_or(&Value::Null);
                out.push(StreamEvent::Start {
                    id: text(r, "id").to_owned(),
                    model: text(r, "model").to_owned(),
                    created: r.get("created_at").and_then(Value::as_u64).unwrap_or(0),
                });
            }
            "response.output_item.added" => {
                let item = v.get("item").unwrap_or(&Value::Null);
                if text(item, "type") == "function_call" {
                    let index = u32::try_from(self.calls.len()).unwrap_or(u32::MAX);
                    self.calls.push((text(item, "id").to_owned(), index));
                    out.push(delta(Delta::ToolCallStart {
                        index,
                        id: text(item, "call_id").to_owned(),
                        name: text(item, "name").to_owned(),
                    }));
                    let arguments = text(item, "arguments");
                    if !arguments.is_empty() {
                        out.push(delta(Delta::ToolCallArguments {
                            index,
                            fragment: arguments.to_owned(),
                        }));
                    }
                }
            }
            "response.output_text.delta" | "response.refusal.delta" => {
                let t = text(&v, "delta");
                if !t.is_empty() {
                    out.push(delta(if kind == "response.refusal.delta" {
                        Delta::Refusal(t.to_owned())
                    } else {
                        Delta::Text(t.to_owned())
                    }));
                }
            }
            "response.reasoning_text.delta" | "response.reasoning_summary_text.delta" => {
                let t = text(&v, "delta");
                if !t.is_empty() {
                    let item = text(&v, "item_id");
                    if !self.thinking.iter().any(|i| i == item) {
                        self.thinking.push(item.to_owned());
                    }
                    out.push(delta(Delta::Thinking(t.to_owned())));
                }
            }
            "response.function_call_arguments.delta" => {
                if let Some(index) = self.call_index(text(&v, "item_id")) {
                    out.push(delta(Delta::ToolCallArguments {
                        index,
                        fragment: text(&v, "delta").to_owned(),
                    }));
                }
            }
            "response.output_item.done" => {
                let item = v.get("item").unwrap_or(&Value::Null);
                match text(item, "type") {
                    "function_call" => {
                        if let Some(index) = self.call_index(text(item, "id")) {
                            out.push(delta(Delta::ToolCallEnd { index }));
                        }
                    }
                    "reasoning" => {
                        let id = text(item, "id");
                        if let Some(sig) = item.get("encrypted_content").and_then(Value::as_str)
                            && self.thinking.iter().any(|i| i == id)
                        {
                            out.push(delta(Delta::ThinkingSignature(sig.to_owned())));
                        }
                    }
                    _ => {}
                }
            }
            "response.completed" | "response.incomplete" => {
                let r = v.get("response").unwrap_or(&Value::Null);
                if let Some(u) = r.get("usage").filter(|u| !u.is_null()) {
                    out.push(StreamEvent::Usage(usage_from(u)));
                }
                let reason = match r
                    .get("incomplete_details")
                    .and_then(|d| d.get("reason"))
                    .and_then(Value::as_str)
                {
                    Some("max_output_tokens") => StopReason::MaxTokens,
                    Some("content_filter") => StopReason::ContentFilter,
                    Some(other) => StopReason::Other(other.to_owned()),
                    None if !self.calls.is_empty() => StopReason::ToolUse,
                    None => StopReason::EndTurn,
                };
                out.push(StreamEvent::Finish {
                    choice: 0,
                    reason,
                    stop_sequence: None,
                });
                return Ok(FrameOutcome::Done);
            }
            "response.failed" => {
                let error = v.get("response").and_then(|r| r.get("error"));
                out.push(StreamEvent::Error(failure(error)));
                return Ok(FrameOutcome::Done);
            }
            "error" => {
                let code = v.get("code").and_then(Value::as_str);
                let status = match code {
                    Some("rate_limit_exceeded") => 429,
                    _ => 502,
                };
                let message = text(&v, "message");
                let message = if message.is_empty() {
                    "the upstream reported an error mid-stream"
                } else {
                    message
                };
                out.push(StreamEvent::Error(classify(
                    status,
                    message.to_owned(),
                    code,
                    "upstream",
                    None,
                )));
                return Ok(FrameOutcome::Done);
            }
            _ => {}
        }
        Ok(FrameOutcome::Continue)
    }
}

fn delta(delta: Delta) -> StreamEvent {
    StreamEvent::Delta { choice: 0, delta }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{Framer, SseFramer};

    fn ctx() -> ResponseContext {
        ResponseContext {
            id: "resp_1".into(),
            created_at: 1,
            model: "m".into(),
            echo: Map::new(),
        }
    }

    fn d(delta: Delta) -> StreamEvent {
        StreamEvent::Delta { choice: 0, delta }
    }

    fn encode(events: &[StreamEvent]) -> (BytesMut, Option<Value>) {
        let mut enc = ResponsesStreamEncoder::new(ctx());
        let mut out = BytesMut::new();
        for e in events {
            enc.encode(e, &mut out);
        }
        enc.finish(&mut out);
        let last = enc.take_response();
        (out, last)
    }

    fn frames(bytes: &[u8]) -> Vec<Frame> {
        let mut framer = SseFramer::new();
        let mut frames = Vec::new();
        framer.feed(bytes, &mut frames).unwrap();
        framer.finish(&mut frames).unwrap();
        frames
    }

    fn answer() -> Vec<StreamEvent> {
        vec![
            StreamEvent::Start {
                id: "up".into(),
                model: "gpt".into(),
                created: 0,
            },
            d(Delta::Text("Hel".into())),
            d(Delta::Text("lo".into())),
            d(Delta::ToolCallStart {
                index: 0,
                id: "call_1".into(),
                name: "f".into(),
            }),
            d(Delta::ToolCallArguments {
                index: 0,
                fragment: "{\"a\":".into(),
            }),
            d(Delta::ToolCallArguments {
                index: 0,
                fragment: "1}".into(),
            }),
            d(Delta::ToolCallEnd { index: 0 }),
            StreamEvent::Finish {
                choice: 0,
                reason: StopReason::ToolUse,
                stop_sequence: None,
            },
            StreamEvent::Usage(Usage {
                input_tokens: 3,
                output_tokens: 4,
                ..Usage::default()
            }),
        ]
    }

    #[test]
    fn events_come_in_order_and_numbered() {
        let (out, last) = encode(&answer());
        let frames = frames(&out);
        let kinds: Vec<String> = frames.iter().map(|f| f.event.clone().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        for (n, f) in frames.iter().enumerate() {
            let v: Value = serde_json::from_slice(&f.payload).unwrap();
            assert_eq!(v["sequence_number"], n as u64);
            assert_eq!(v["type"], f.event.clone().unwrap());
        }
        let last = last.unwrap();
        assert_eq!(last["status"], "completed");
        assert_eq!(last["output"][0]["content"][0]["text"], "Hello");
        assert_eq!(last["output"][1]["arguments"], "{\"a\":1}");
        assert_eq!(last["usage"]["total_tokens"], 7);
    }

    #[test]
    fn decoding_what_was_encoded_gives_the_events_back() {
        let (out, _) = encode(&answer());
        let mut dec = ResponsesStreamDecoder::new();
        let mut events = Vec::new();
        let mut done = false;
        for f in frames(&out) {
            done = dec.decode(&f, &mut events).unwrap() == FrameOutcome::Done;
        }
        assert!(done);
        let mut acc = portcullis_core::ResponseAccumulator::new();
        for e in &events {
            acc.push(e);
        }
        let resp = acc.finish().unwrap();
        assert_eq!(resp.id, "resp_1");
        assert_eq!(resp.choices[0].content.len(), 2);
        assert_eq!(resp.choices[0].stop_reason, Some(StopReason::ToolUse));
        assert_eq!(resp.usage.output_tokens, 4);
    }

    #[test]
    fn a_failure_ends_with_response_failed() {
        let mut enc = ResponsesStreamEncoder::new(ctx());
        let mut out = BytesMut::new();
        enc.encode(&d(Delta::Text("par".into())), &mut out);
        enc.encode(
            &StreamEvent::Error(GatewayError::new(ErrorKind::Upstream, "boom")),
            &mut out,
        );
        enc.finish(&mut out);
        let frames = frames(&out);
        let last = frames.last().unwrap();
        assert_eq!(last.event.as_deref(), Some("response.failed"));
        let v: Value = serde_json::from_slice(&last.payload).unwrap();
        assert_eq!(v["response"]["status"], "failed");
        assert_eq!(v["response"]["error"]["message"], "boom");
    }
}
