//! The two halves of stream translation: decoders turn upstream frames (cut by a
//! [`Framer`](crate::frame::Framer)) into canonical [`StreamEvent`]s, encoders turn canonical
//! events into the client's SSE frames.
//!
//! Both are small state machines fed one frame or event at a time, so a stream is translated
//! as it flows and never buffered.

use bytes::BytesMut;
use portcullis_core::{GatewayError, StreamEvent};

use crate::frame::Frame;

/// What a decoded frame meant for the stream as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameOutcome {
    /// More frames follow.
    Continue,
    /// The upstream marked the end of the stream (`[DONE]`, `message_stop`).
    Done,
}

/// Turns one provider's stream frames into canonical events.
pub trait StreamDecoder: Send {
    /// Decodes `frame`'s payload, appending the events it carries to `out`.
    ///
    /// An error means the frame could not be understood; the stream cannot continue.
    fn decode(
        &mut self,
        frame: &Frame,
        out: &mut Vec<StreamEvent>,
    ) -> Result<FrameOutcome, GatewayError>;

    /// The upstream body ended (after its terminal frame or without one): appends what the
    /// end implies, such as the [`Delta::ToolCallEnd`](portcullis_core::Delta::ToolCallEnd) of
    /// calls whose end no frame marked.
    fn end(&mut self, out: &mut Vec<StreamEvent>) {
        let _ = out;
    }
}

/// Turns canonical events into one client dialect's SSE frames.
pub trait StreamEncoder: Send {
    /// Appends the frames for `event` to `out` (possibly none).
    fn encode(&mut self, event: &StreamEvent, out: &mut BytesMut);

    /// Appends whatever closes the stream (`[DONE]`, `message_stop`).
    fn finish(&mut self, out: &mut BytesMut);

    /// Takes in `event` without writing it: the client already received the upstream's own
    /// frames for it. A relay that forwards upstream bytes calls this for every event, so that
    /// if it later has to re-encode, the encoder continues the stream the client has seen
    /// (block and tool-call numbering, roles already sent, usage so far).
    fn skip(&mut self, event: &StreamEvent) {
        let mut discarded = BytesMut::new();
        self.encode(event, &mut discarded);
    }

    /// The client received `frame`, an upstream frame in this encoder's own dialect, as it
    /// was (after [`skip`](Self::skip) for its events): the encoder aligns what it tracks
    /// that no canonical event carries (Anthropic content-block numbering and closing).
    fn passed_through(&mut self, frame: &Frame) {
        let _ = frame;
    }
}

/// The events a complete response would have streamed, in order: used to answer a streaming
/// client from a non-streamed upstream answer (or a cached one) with a well-formed stream.
pub fn events_from_response(resp: &portcullis_core::ChatResponse) -> Vec<StreamEvent> {
    use portcullis_core::{Delta, Part};
    let mut out = vec![StreamEvent::Start {
        id: resp.id.clone(),
        model: resp.model.clone(),
        created: resp.created,
    }];
    if resp.usage.input_tokens > 0 {
        out.push(StreamEvent::Usage(portcullis_core::Usage {
            input_tokens: resp.usage.input_tokens,
            cached_input_tokens: resp.usage.cached_input_tokens,
            cache_write_input_tokens: resp.usage.cache_write_input_tokens,
            ..Default::default()
        }));
    }
    for choice in &resp.choices {
        let c = choice.index;
        let mut tool_index = 0;
        for part in &choice.content {
            let delta = match part {
                Part::Text { text, .. } => Delta::Text(text.clone()),
                Part::Refusal { text } => Delta::Refusal(text.clone()),
                Part::Thinking { text, signature } => {
                    out.push(StreamEvent::Delta {
                        choice: c,
                        delta: Delta::Thinking(text.clone()),
                    });
                    match signature {
                        Some(s) => Delta::ThinkingSignature(s.clone()),
                        None => continue,
                    }
                }
                Part::RedactedThinking { data } => Delta::RedactedThinking(data.clone()),
                Part::ToolCall {
                    id,
                    name,
                    arguments,
                    ..
                } => {
                    out.push(StreamEvent::Delta {
                        choice: c,
                        delta: Delta::ToolCallStart {
                            index: tool_index,
                            id: id.clone(),
                            name: name.clone(),
                        },
                    });
                    if !arguments.is_empty() {
                        out.push(StreamEvent::Delta {
                            choice: c,
                            delta: Delta::ToolCallArguments {
                                index: tool_index,
                                fragment: arguments.clone(),
                            },
                        });
                    }
                    let end = Delta::ToolCallEnd { index: tool_index };
                    tool_index += 1;
                    end
                }
                Part::Image { .. } | Part::ToolResult { .. } | Part::Opaque { .. } => continue,
            };
            out.push(StreamEvent::Delta { choice: c, delta });
        }
        if let Some(reason) = &choice.stop_reason {
            out.push(StreamEvent::Finish {
                choice: c,
                reason: reason.clone(),
                stop_sequence: choice.stop_sequence.clone(),
            });
        }
    }
    out.push(StreamEvent::Usage(resp.usage));
    out
}
