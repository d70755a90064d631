//! Gemini streaming: each `streamGenerateContent?alt=sse` frame is a whole
//! `GenerateContentResponse` chunk, decoded into canonical stream events.
//!
//! A chunk's text and thought parts are deltas; a function call arrives whole, so it is a
//! call's start, its arguments and its end at once. `usageMetadata` is cumulative, so every
//! report simply replaces the last one. The stream has no terminal frame: it ends with the
//! body, after the chunk that carried the finish reason.

use portcullis_core::{Delta, ErrorKind, GatewayError, StreamEvent};

use super::call_id;
use super::response::{Piece, WireResponse, blocked_prompt_text, stop_reason};
use crate::errors::decode_error_object;
use crate::frame::Frame;
use crate::stream::{FrameOutcome, StreamDecoder};

/// Decodes a Gemini upstream stream.
#[derive(Debug, Default)]
pub struct GeminiStreamDecoder {
    /// The answer's id, from the first chunk.
    id: Option<String>,
    /// Per candidate: how many calls it made so far.
    calls: Vec<(u32, u32)>,
}

impl GeminiStreamDecoder {
    /// A decoder at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    fn calls_of(&mut self, choice: u32) -> &mut u32 {
        let position = match self.calls.iter().position(|(c, _)| *c == choice) {
            Some(p) => p,
            None => {
                self.calls.push((choice, 0));
                self.calls.len() - 1
            }
        };
        &mut self.calls[position].1
    }
}

impl StreamDecoder for GeminiStreamDecoder {
    fn decode(
        &mut self,
        frame: &Frame,
        out: &mut Vec<StreamEvent>,
    ) -> Result<FrameOutcome, GatewayError> {
        let chunk: WireResponse = serde_json::from_slice(&frame.payload).map_err(|e| {
            GatewayError::new(
                ErrorKind::Upstream,
                format!("The upstream sent an invalid stream chunk: {e}"),
            )
        })?;
        if let Some(err) = &chunk.error {
            let status = err
                .get("code")
                .and_then(serde_json::Value::as_u64)
                .and_then(|c| u16::try_from(c).ok())
                .unwrap_or(502);
            out.push(StreamEvent::Error(decode_error_object(err, status)));
            return Ok(FrameOutcome::Done);
        }
        let id = match &self.id {
            Some(id) => id.clone(),
            None => {
                let id = chunk.response_id();
                out.push(StreamEvent::Start {
                    id: id.clone(),
                    model: chunk.model_version.clone().unwrap_or_default(),
                    created: 0,
                });
                self.id = Some(id.clone());
                id
            }
        };
        if let Some(usage) = &chunk.usage_metadata {
            out.push(StreamEvent::Usage(usage.to_canonical()));
        }
        let blocked = chunk.candidates.is_empty();
        for (position, candidate) in chunk.candidates.into_iter().enumerate() {
            let choice = candidate
                .index
                .unwrap_or(u32::try_from(position).unwrap_or(u32::MAX));
            for part in candidate.content.map(|c| c.parts).unwrap_or_default() {
                let delta = match part.into_piece() {
                    Piece::Text(t) => Delta::Text(t),
                    Piece::Thought(t) => Delta::Thinking(t),
                    Piece::Call {
                        name,
                        arguments,
                        signature,
                    } => {
                        let calls = self.calls_of(choice);
                        let index = *calls;
                        *calls += 1;
                        out.push(StreamEvent::Delta {
                            choice,
                            delta: Delta::ToolCallStart {
                                index,
                                id: call_id(&id, index, signature.as_deref()),
                                name,
                            },
                        });
                        out.push(StreamEvent::Delta {
                            choice,
                            delta: Delta::ToolCallArguments {
                                index,
                                fragment: arguments,
                            },
                        });
                        Delta::ToolCallEnd { index }
                    }
                    Piece::Nothing => continue,
                };
                out.push(StreamEvent::Delta { choice, delta });
            }
            if let Some(reason) = candidate.finish_reason {
                let called = *self.calls_of(choice) > 0;
                out.push(StreamEvent::Finish {
                    choice,
                    reason: stop_reason(&reason, called),
                    stop_sequence: None,
                });
            }
        }
        if blocked && let Some(reason) = chunk.prompt_feedback.and_then(|f| f.block_reason) {
            out.push(StreamEvent::Delta {
                choice: 0,
                delta: Delta::Refusal(blocked_prompt_text(&reason)),
            });
            out.push(StreamEvent::Finish {
                choice: 0,
                reason: portcullis_core::StopReason::ContentFilter,
                stop_sequence: None,
            });
        }
        Ok(FrameOutcome::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use portcullis_core::{StopReason, Usage};

    fn frame(json: &str) -> Frame {
        Frame {
            event: None,
            payload: Bytes::from(json.to_owned()),
            raw: Bytes::new(),
        }
    }

    #[test]
    fn chunks_become_deltas_calls_and_cumulative_usage() {
        let mut d = GeminiStreamDecoder::new();
        let mut out = Vec::new();
        d.decode(
            &frame(
                r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"Hel"}]},"index":0}],
                "usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":1},"modelVersion":"gemini-2.5-flash","responseId":"abc"}"#,
            ),
            &mut out,
        )
        .unwrap();
        d.decode(
            &frame(
                r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"lo"},
                {"functionCall":{"name":"f","args":{"a":1}}},{"functionCall":{"name":"g","args":{}}}]},
                "finishReason":"STOP","index":0}],
                "usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":9,"thoughtsTokenCount":2},"responseId":"abc"}"#,
            ),
            &mut out,
        )
        .unwrap();
        assert_eq!(
            out[0],
            StreamEvent::Start {
                id: "abc".into(),
                model: "gemini-2.5-flash".into(),
                created: 0
            }
        );
        let starts: Vec<_> = out
            .iter()
            .filter_map(|e| match e {
                StreamEvent::Delta {
                    delta: Delta::ToolCallStart { index, id, name },
                    ..
                } => Some((*index, id.clone(), name.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(
            starts,
            vec![
                (0, "gcall-abc-0".to_owned(), "f".to_owned()),
                (1, "gcall-abc-1".to_owned(), "g".to_owned())
            ]
        );
        assert!(out.contains(&StreamEvent::Finish {
            choice: 0,
            reason: StopReason::ToolUse,
            stop_sequence: None
        }));
        let mut usage = Usage::default();
        for e in &out {
            if let StreamEvent::Usage(u) = e {
                usage.merge(u);
            }
        }
        assert_eq!(usage.input_tokens, 4);
        assert_eq!(usage.output_tokens, 11);
        assert_eq!(usage.reasoning_tokens, 2);
    }

    #[test]
    fn an_error_chunk_ends_the_stream() {
        let mut d = GeminiStreamDecoder::new();
        let mut out = Vec::new();
        let outcome = d
            .decode(
                &frame(r#"{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}"#),
                &mut out,
            )
            .unwrap();
        assert_eq!(outcome, FrameOutcome::Done);
        assert!(matches!(&out[0], StreamEvent::Error(e) if e.status().as_u16() == 503));
    }
}
