//! Folding a streamed chat response back into a complete [`ChatResponse`].
//!
//! A streamed answer is relayed event by event and never buffered for the client; the
//! [`ResponseAccumulator`] runs beside the relay and rebuilds the whole answer so it can be
//! cached and later replayed, as a stream or as a complete response, in any dialect. It is the
//! inverse of turning a complete response into events (`portcullis_dialects::events_from_response`).
//!
//! What a stream cannot carry, and so what an accumulated response never has: part-level
//! `cache_control` markers, image / tool-result / opaque parts, `logprobs`, response extras,
//! and boundaries between adjacent parts of the same kind (two text parts in a row arrive as
//! one run of text deltas and become one text part). Empty text and refusal deltas are ignored,
//! as the stream decoders never produce them.

use crate::chat::{ChatResponse, Choice, Part, Usage};
use crate::stream::{Delta, StreamEvent};

/// Rebuilds a complete [`ChatResponse`] from the [`StreamEvent`]s of a stream.
///
/// Feed every event with [`push`](Self::push), then call [`finish`](Self::finish). Only a
/// stream that started, had no error, and finished every choice it produced yields a
/// response; anything else is not a complete answer and must not be cached.
#[derive(Debug, Default)]
pub struct ResponseAccumulator {
    response: ChatResponse,
    started: bool,
    failed: bool,
    choices: Vec<ChoiceState>,
}

/// Per-choice bookkeeping beside the content being built.
#[derive(Debug, Default)]
struct ChoiceState {
    choice: Choice,
    /// `(tool-call ordinal, position of its part in choice.content)`.
    tool_calls: Vec<(u32, usize)>,
}

impl ResponseAccumulator {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Folds one event into the response.
    pub fn push(&mut self, event: &StreamEvent) {
        if self.failed {
            return;
        }
        match event {
            StreamEvent::Start { id, model, created } => {
                if !self.started {
                    self.started = true;
                    self.response.id.clone_from(id);
                    self.response.model.clone_from(model);
                    self.response.created = *created;
                }
            }
            StreamEvent::Delta { choice, delta } => {
                let state = self.choice_mut(*choice);
                if !state.apply(delta) {
                    self.failed = true;
                }
            }
            StreamEvent::Finish {
                choice,
                reason,
                stop_sequence,
            } => {
                let state = self.choice_mut(*choice);
                state.choice.stop_reason = Some(reason.clone());
                state.choice.stop_sequence.clone_from(stop_sequence);
            }
            StreamEvent::Usage(usage) => self.response.usage.merge(usage),
            StreamEvent::Error(_) => self.failed = true,
        }
    }

    /// Whether an event so far made the answer unusable (an error, or a malformed stream).
    pub fn has_failed(&self) -> bool {
        self.failed
    }

    /// The usage reported so far.
    pub fn usage(&self) -> &Usage {
        &self.response.usage
    }

    /// The complete response, or `None` if the stream never started, failed, produced no
    /// choice, or left a choice without a stop reason.
    pub fn finish(self) -> Option<ChatResponse> {
        if !self.started
            || self.failed
            || self.choices.is_empty()
            || self
                .choices
                .iter()
                .any(|state| state.choice.stop_reason.is_none())
        {
            return None;
        }
        let mut response = self.response;
        response.choices = self.choices.into_iter().map(|s| s.choice).collect();
        Some(response)
    }

    /// The state of choice `index`, created on first use; choices stay sorted by index.
    fn choice_mut(&mut self, index: u32) -> &mut ChoiceState {
        let position = match self
            .choices
            .binary_search_by_key(&index, |s| s.choice.index)
        {
            Ok(position) => position,
            Err(position) => {
                self.choices.insert(
                    position,
                    ChoiceState {
                        choice: Choice {
                            index,
                            ..Choice::default()
                        },
                        tool_calls: Vec::new(),
                    },
                );
                position
            }
        };
        &mut self.choices[position]
    }
}

impl ChoiceState {
    /// Applies one delta; `false` if it cannot belong to a well-formed stream.
    fn apply(&mut self, delta: &Delta) -> bool {
        let content = &mut self.choice.content;
        match delta {
            Delta::Text(more) => {
                if more.is_empty() {
                    return true;
                }
                match content.last_mut() {
                    Some(Part::Text { text, .. }) => text.push_str(more),
                    _ => content.push(Part::text(more.as_str())),
                }
            }
            Delta::Refusal(more) => {
                if more.is_empty() {
                    return true;
                }
                match content.last_mut() {
                    Some(Part::Refusal { text }) => text.push_str(more),
                    _ => content.push(Part::Refusal { text: more.clone() }),
                }
            }
            Delta::Thinking(more) => match content.last_mut() {
                Some(Part::Thinking {
                    text,
                    signature: None,
                }) => text.push_str(more),
                _ => {
                    if !more.is_empty() {
                        content.push(Part::Thinking {
                            text: more.clone(),
                            signature: None,
                        });
                    }
                }
            },
            Delta::ThinkingSignature(sig) => match content.last_mut() {
                Some(Part::Thinking {
                    signature: signature @ None,
                    ..
                }) => *signature = Some(sig.clone()),
                _ => content.push(Part::Thinking {
                    text: String::new(),
                    signature: Some(sig.clone()),
                }),
            },
            Delta::RedactedThinking(data) => {
                content.push(Part::RedactedThinking { data: data.clone() });
            }
            Delta::ToolCallStart { index, id, name } => {
                if self.tool_calls.iter().any(|(ordinal, _)| ordinal == index) {
                    return false;
                }
                self.tool_calls.push((*index, content.len()));
                content.push(Part::ToolCall {
                    id: id.clone(),
                    name: name.clone(),
                    arguments: String::new(),
                    cache_control: None,
                });
            }
            Delta::ToolCallArguments { index, fragment } => {
                let Some(&(_, position)) =
                    self.tool_calls.iter().find(|(ordinal, _)| ordinal == index)
                else {
                    return false;
                };
                match content.get_mut(position) {
                    Some(Part::ToolCall { arguments, .. }) => arguments.push_str(fragment),
                    _ => return false,
                }
            }
            // The call's part is already complete; the end only says so.
            Delta::ToolCallEnd { .. } => {}
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::StopReason;
    use crate::error::{ErrorKind, GatewayError};

    fn start() -> StreamEvent {
        StreamEvent::Start {
            id: "resp_1".into(),
            model: "m".into(),
            created: 7,
        }
    }

    fn delta(choice: u32, delta: Delta) -> StreamEvent {
        StreamEvent::Delta { choice, delta }
    }

    fn finish(choice: u32) -> StreamEvent {
        StreamEvent::Finish {
            choice,
            reason: StopReason::EndTurn,
            stop_sequence: None,
        }
    }

    fn accumulate(events: &[StreamEvent]) -> Option<ChatResponse> {
        let mut acc = ResponseAccumulator::new();
        for e in events {
            acc.push(e);
        }
        acc.finish()
    }

    #[test]
    fn text_deltas_merge_and_tool_arguments_concatenate_per_index() {
        let resp = accumulate(&[
            start(),
            delta(0, Delta::Text("Hel".into())),
            delta(0, Delta::Text("lo".into())),
            delta(
                0,
                Delta::ToolCallStart {
                    index: 0,
                    id: "a".into(),
                    name: "f".into(),
                },
            ),
            delta(
                0,
                Delta::ToolCallStart {
                    index: 1,
                    id: "b".into(),
                    name: "g".into(),
                },
            ),
            delta(
                0,
                Delta::ToolCallArguments {
                    index: 1,
                    fragment: "{\"y\"".into(),
                },
            ),
            delta(
                0,
                Delta::ToolCallArguments {
                    index: 0,
                    fragment: "{}".into(),
                },
            ),
            delta(
                0,
                Delta::ToolCallArguments {
                    index: 1,
                    fragment: ":1}".into(),
                },
            ),
            StreamEvent::Usage(Usage {
                input_tokens: 3,
                ..Usage::default()
            }),
            finish(0),
            StreamEvent::Usage(Usage {
                output_tokens: 4,
                ..Usage::default()
            }),
        ])
        .unwrap();
        assert_eq!(resp.id, "resp_1");
        assert_eq!(resp.usage.input_tokens, 3);
        assert_eq!(resp.usage.output_tokens, 4);
        let content = &resp.choices[0].content;
        assert_eq!(content.len(), 3);
        assert_eq!(content[0], Part::text("Hello"));
        assert!(matches!(&content[1], Part::ToolCall { arguments, .. } if arguments == "{}"));
        assert!(
            matches!(&content[2], Part::ToolCall { arguments, .. } if arguments == "{\"y\":1}")
        );
    }

    #[test]
    fn choices_are_kept_apart_and_sorted() {
        let resp = accumulate(&[
            start(),
            delta(1, Delta::Text("b".into())),
            delta(0, Delta::Text("a".into())),
            finish(1),
            finish(0),
        ])
        .unwrap();
        assert_eq!(resp.choices.len(), 2);
        assert_eq!(resp.choices[0].index, 0);
        assert_eq!(resp.choices[0].content, vec![Part::text("a")]);
        assert_eq!(resp.choices[1].content, vec![Part::text("b")]);
    }

    #[test]
    fn signature_closes_a_thinking_block() {
        let resp = accumulate(&[
            start(),
            delta(0, Delta::Thinking("x".into())),
            delta(0, Delta::ThinkingSignature("s1".into())),
            delta(0, Delta::Thinking("y".into())),
            delta(0, Delta::ThinkingSignature("s2".into())),
            finish(0),
        ])
        .unwrap();
        assert_eq!(
            resp.choices[0].content,
            vec![
                Part::Thinking {
                    text: "x".into(),
                    signature: Some("s1".into())
                },
                Part::Thinking {
                    text: "y".into(),
                    signature: Some("s2".into())
                },
            ]
        );
    }

    #[test]
    fn incomplete_or_failed_streams_yield_nothing() {
        // Never started.
        assert!(accumulate(&[delta(0, Delta::Text("a".into())), finish(0)]).is_none());
        // A choice never finished.
        assert!(accumulate(&[start(), delta(0, Delta::Text("a".into()))]).is_none());
        // No choice at all.
        assert!(accumulate(&[start()]).is_none());
        // An error mid-stream.
        let error = StreamEvent::Error(GatewayError::new(ErrorKind::Upstream, "boom"));
        assert!(
            accumulate(&[start(), delta(0, Delta::Text("a".into())), error, finish(0)]).is_none()
        );
        // Arguments for a tool call that never started.
        assert!(
            accumulate(&[
                start(),
                delta(
                    0,
                    Delta::ToolCallArguments {
                        index: 0,
                        fragment: "{}".into()
                    }
                ),
                finish(0)
            ])
            .is_none()
        );
    }
}
