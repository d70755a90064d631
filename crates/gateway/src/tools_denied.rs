//! The tool-call deny-list applied to answers: [`ToolDenyFilter`] for streamed answers and
//! [`complete_body`] for complete ones. What is denied is decided by
//! [`portcullis_policy::tools`]; this module only applies it.
//!
//! A denied call's name is known from its first event, so it is dropped there and then, with
//! every later fragment and its end: no byte of it is ever written. Calls after it are
//! renumbered so the client sees consecutive tool-call indexes. When the choice finishes, the
//! notice naming the withheld tools is emitted as text just before the finish, and a choice
//! left with no call finishes as an end of turn (`stop` / `end_turn`) instead of `tool_calls`.

use std::sync::Arc;

use bytes::Bytes;
use portcullis_core::{ChatResponse, Delta, Dialect, StopReason, StreamEvent};
use portcullis_dialects::encode_response;
use portcullis_policy::{DeniedTools, ToolGlobs, withheld_notice, withhold_denied_calls};

use crate::stream_filter::{Action, StreamFilter};

/// The tools denied to a request: its route's list (`Resolution::tools_denied`) and its key's
/// (`Principal::tools_denied`), or `None` when neither denies anything.
pub fn denied_tools(
    route: Option<&Arc<ToolGlobs>>,
    key: Option<&Arc<ToolGlobs>>,
) -> Option<DeniedTools> {
    DeniedTools::union(route, key)
}

/// Withholds denied tool calls from a streamed answer.
pub struct ToolDenyFilter {
    denied: DeniedTools,
    choices: Vec<ChoiceCalls>,
}

/// What the filter knows of one choice's calls.
#[derive(Default)]
struct ChoiceCalls {
    choice: u32,
    /// The upstream's index of each withheld call.
    withheld: Vec<u32>,
    /// The names of the withheld calls, in order.
    names: Vec<String>,
    /// (upstream index, index the client sees) of each call let through.
    kept: Vec<(u32, u32)>,
    /// Whether text was emitted in this choice (the notice then starts on a new paragraph).
    saw_text: bool,
    /// Whether the notice was emitted.
    noticed: bool,
}

impl ChoiceCalls {
    fn notice(&mut self) -> Option<StreamEvent> {
        if self.names.is_empty() || self.noticed {
            return None;
        }
        self.noticed = true;
        let notice = withheld_notice(&self.names);
        let text = if self.saw_text {
            format!("\n\n{notice}")
        } else {
            notice
        };
        Some(StreamEvent::Delta {
            choice: self.choice,
            delta: Delta::Text(text),
        })
    }
}

impl ToolDenyFilter {
    /// A filter withholding calls of the tools `denied` names.
    pub fn new(denied: DeniedTools) -> Self {
        Self {
            denied,
            choices: Vec::new(),
        }
    }

    fn choice_mut(&mut self, choice: u32) -> &mut ChoiceCalls {
        match self.choices.iter().position(|c| c.choice == choice) {
            Some(at) => &mut self.choices[at],
            None => {
                self.choices.push(ChoiceCalls {
                    choice,
                    ..ChoiceCalls::default()
                });
                let last = self.choices.len() - 1;
                &mut self.choices[last]
            }
        }
    }

    /// The action for a later event of the call the upstream numbered `index`: dropped if
    /// the call was withheld, renumbered if an earlier call was.
    fn follow(&mut self, choice: u32, index: u32, renumbered: impl FnOnce(u32) -> Delta) -> Action {
        let state = self.choice_mut(choice);
        if state.withheld.contains(&index) {
            return Action::Drop;
        }
        match state.kept.iter().find(|(from, _)| *from == index) {
            Some(&(from, to)) if from != to => Action::Replace(vec![StreamEvent::Delta {
                choice,
                delta: renumbered(to),
            }]),
            _ => Action::Pass,
        }
    }
}

impl StreamFilter for ToolDenyFilter {
    fn on_event(&mut self, event: &StreamEvent) -> Action {
        match event {
            StreamEvent::Delta { choice, delta } => match delta {
                Delta::ToolCallStart { index, id, name } => {
                    let denied = self.denied.denies(name);
                    let state = self.choice_mut(*choice);
                    if denied {
                        state.withheld.push(*index);
                        state.names.push(name.clone());
                        return Action::Drop;
                    }
                    let to = state.kept.len() as u32;
                    state.kept.push((*index, to));
                    if to == *index {
                        return Action::Pass;
                    }
                    Action::Replace(vec![StreamEvent::Delta {
                        choice: *choice,
                        delta: Delta::ToolCallStart {
                            index: to,
                            id: id.clone(),
                            name: name.clone(),
                        },
                    }])
                }
                Delta::ToolCallArguments { index, fragment } => {
                    self.follow(*choice, *index, |to| Delta::ToolCallArguments {
                        index: to,
                        fragment: fragment.clone(),
                    })
                }
                Delta::ToolCallEnd { index } => {
                    self.follow(*choice, *index, |to| Delta::ToolCallEnd { index: to })
                }
                Delta::Text(t) => {
                    if !t.is_empty() {
                        self.choice_mut(*choice).saw_text = true;
                    }
                    Action::Pass
                }
                _ => Action::Pass,
            },
            StreamEvent::Finish {
                choice,
                reason,
                stop_sequence,
            } => {
                let state = self.choice_mut(*choice);
                let Some(notice) = state.notice() else {
                    return Action::Pass;
                };
                let reason = if state.kept.is_empty() && *reason == StopReason::ToolUse {
                    StopReason::EndTurn
                } else {
                    reason.clone()
                };
                Action::Replace(vec![
                    notice,
                    StreamEvent::Finish {
                        choice: *choice,
                        reason,
                        stop_sequence: stop_sequence.clone(),
                    },
                ])
            }
            _ => Action::Pass,
        }
    }

    fn on_end(&mut self) -> Vec<StreamEvent> {
        // A choice that never finished still says what was withheld from it.
        self.choices
            .iter_mut()
            .filter_map(ChoiceCalls::notice)
            .collect()
    }
}

/// The body to send for a complete answer `parsed` (decoded from the upstream's `body`):
/// denied calls withheld and the notice added; the upstream's own bytes when the client speaks
/// its dialect and nothing was withheld, the answer re-encoded in the client's dialect
/// otherwise. Returns the body and the names of the withheld tools.
pub fn complete_body(
    client: Dialect,
    upstream: Dialect,
    body: Bytes,
    parsed: &mut ChatResponse,
    denied: Option<&DeniedTools>,
) -> (Bytes, Vec<String>) {
    let withheld = denied.map_or_else(Vec::new, |d| withhold_denied_calls(parsed, d));
    if client == upstream && withheld.is_empty() {
        return (body, withheld);
    }
    (Bytes::from(encode_response(client, parsed)), withheld)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream_filter::FilterChain;

    fn denied(globs: &[&str]) -> DeniedTools {
        DeniedTools::union(Some(&Arc::new(ToolGlobs::new(globs).unwrap())), None).unwrap()
    }

    fn d(delta: Delta) -> StreamEvent {
        StreamEvent::Delta { choice: 0, delta }
    }

    fn start(index: u32, id: &str, name: &str) -> StreamEvent {
        d(Delta::ToolCallStart {
            index,
            id: id.into(),
            name: name.into(),
        })
    }

    fn args(index: u32, fragment: &str) -> StreamEvent {
        d(Delta::ToolCallArguments {
            index,
            fragment: fragment.into(),
        })
    }

    fn finish(reason: StopReason) -> StreamEvent {
        StreamEvent::Finish {
            choice: 0,
            reason,
            stop_sequence: None,
        }
    }

    fn run(globs: &[&str], events: &[StreamEvent]) -> (bool, Vec<StreamEvent>) {
        let mut chain = FilterChain::new();
        chain.push(Box::new(ToolDenyFilter::new(denied(globs))));
        let mut out = Vec::new();
        let mut changed = false;
        for e in events {
            changed |= chain.run(std::slice::from_ref(e), &mut out);
        }
        changed |= chain.end(&mut out);
        (changed, out)
    }

    fn two_calls() -> Vec<StreamEvent> {
        vec![
            d(Delta::Text("Checking.".into())),
            start(0, "call_rm", "rm_rf"),
            args(0, "{\"path\":"),
            args(0, "\"/\"}"),
            d(Delta::ToolCallEnd { index: 0 }),
            start(1, "call_ls", "ls"),
            args(1, "{}"),
            d(Delta::ToolCallEnd { index: 1 }),
            finish(StopReason::ToolUse),
        ]
    }

    #[test]
    fn of_two_calls_the_denied_one_is_withheld_and_the_other_renumbered() {
        let (changed, out) = run(&["rm*"], &two_calls());
        assert!(changed);
        assert_eq!(
            out,
            vec![
                d(Delta::Text("Checking.".into())),
                start(0, "call_ls", "ls"),
                args(0, "{}"),
                d(Delta::ToolCallEnd { index: 0 }),
                d(Delta::Text(
                    "\n\n[The gateway withheld a call to the tool `rm_rf`: it is denied by policy.]"
                        .into()
                )),
                finish(StopReason::ToolUse),
            ]
        );
    }

    #[test]
    fn with_no_call_left_the_choice_ends_its_turn() {
        let (_, out) = run(&["*"], &two_calls());
        assert_eq!(out.last(), Some(&finish(StopReason::EndTurn)));
        let StreamEvent::Delta {
            delta: Delta::Text(notice),
            ..
        } = &out[out.len() - 2]
        else {
            panic!("{out:?}")
        };
        assert!(notice.contains("`rm_rf`, `ls`"), "{notice}");
        assert!(!out.iter().any(|e| matches!(
            e,
            StreamEvent::Delta {
                delta: Delta::ToolCallStart { .. }
                    | Delta::ToolCallArguments { .. }
                    | Delta::ToolCallEnd { .. },
                ..
            }
        )));
    }

    #[test]
    fn nothing_denied_changes_nothing() {
        let events = two_calls();
        let (changed, out) = run(&["other"], &events);
        assert!(!changed);
        assert_eq!(out, events);
    }

    #[test]
    fn a_stream_without_finish_still_gets_the_notice() {
        let events = &two_calls()[1..5];
        let (_, out) = run(&["rm_rf"], events);
        assert!(
            matches!(&out[..], [StreamEvent::Delta { delta: Delta::Text(t), .. }] if t.contains("`rm_rf`"))
        );
    }

    /// The upstream bytes through framer → decoder → deny filter → encoder, fed in `chunks`.
    fn relay_translated(upstream: Dialect, client: Dialect, chunks: &[&[u8]]) -> Vec<u8> {
        use portcullis_dialects::frame::{Framer, SseFramer};
        let mut framer = SseFramer::new();
        let mut decoder: Box<dyn portcullis_dialects::StreamDecoder> = match upstream {
            Dialect::OpenAi => Box::new(portcullis_dialects::openai::OpenAiStreamDecoder::new()),
            Dialect::Anthropic => {
                Box::new(portcullis_dialects::anthropic::AnthropicStreamDecoder::new())
            }
        };
        let mut encoder = portcullis_dialects::stream_encoder(client, false, 1);
        let mut chain = FilterChain::new();
        chain.push(Box::new(ToolDenyFilter::new(denied(&["shell_*"]))));
        let mut out = bytes::BytesMut::new();
        let mut frames = Vec::new();
        let mut events = Vec::new();
        let mut filtered = Vec::new();
        let mut feed = |frames: &mut Vec<portcullis_dialects::frame::Frame>,
                        out: &mut bytes::BytesMut| {
            for frame in frames.drain(..) {
                events.clear();
                filtered.clear();
                decoder.decode(&frame, &mut events).unwrap();
                chain.run(&events, &mut filtered);
                for e in &filtered {
                    encoder.encode(e, out);
                }
            }
        };
        for chunk in chunks {
            framer.feed(chunk, &mut frames).unwrap();
            feed(&mut frames, &mut out);
        }
        framer.finish(&mut frames).unwrap();
        feed(&mut frames, &mut out);
        out.to_vec()
    }

    const OPENAI_UPSTREAM: &str = concat!(
        "data: {\"id\":\"c\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hi \\u00e9\"}}]}\r\n\r\n",
        "data: {\"id\":\"c\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_SECRET\",\"function\":{\"name\":\"shell_exec\",\"arguments\":\"{\\\"cmd\\\"\"}}]}}]}\n\n",
        "data: {\"id\":\"c\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\":\\\"rm\\\"}\"}}]}}]}\n\n",
        "data: {\"id\":\"c\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"call_ok\",\"function\":{\"name\":\"lookup\",\"arguments\":\"{}\"}}]}}]}\n\n",
        "data: {\"id\":\"c\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
        "data: [DONE]\n\n",
    );

    const ANTHROPIC_UPSTREAM: &str = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"c\",\"usage\":{\"input_tokens\":1}}}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_SECRET\",\"name\":\"shell_exec\",\"input\":{}}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"cmd\\\":\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\\\"rm\\\"}\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":5}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    );

    /// Splitting the upstream's bytes at any point, or at any two points, gives the client the
    /// same bytes, and none of them belongs to the withheld call.
    #[test]
    fn where_the_upstream_bytes_are_split_never_changes_what_the_client_gets() {
        for (upstream, raw) in [
            (Dialect::OpenAi, OPENAI_UPSTREAM),
            (Dialect::Anthropic, ANTHROPIC_UPSTREAM),
        ] {
            let raw = raw.as_bytes();
            for client in [Dialect::OpenAi, Dialect::Anthropic] {
                let whole = relay_translated(upstream, client, &[raw]);
                let text = String::from_utf8(whole.clone()).unwrap();
                assert!(!text.contains("SECRET") && !text.contains("rm"), "{text}");
                assert_eq!(
                    text.matches("shell_exec").count(),
                    1,
                    "only the notice: {text}"
                );
                for cut in 0..=raw.len() {
                    let split = relay_translated(upstream, client, &[&raw[..cut], &raw[cut..]]);
                    assert_eq!(split, whole, "{upstream:?} → {client:?} split at {cut}");
                }
                for a in (0..=raw.len()).step_by(7) {
                    for b in (a..=raw.len()).step_by(11) {
                        let split =
                            relay_translated(upstream, client, &[&raw[..a], &raw[a..b], &raw[b..]]);
                        assert_eq!(split, whole, "{upstream:?} → {client:?} split at {a}, {b}");
                    }
                }
            }
        }
    }

    #[test]
    fn complete_bodies_pass_unchanged_unless_a_call_is_withheld() {
        let body = Bytes::from_static(b"{\"upstream\":\"bytes\"}");
        let mut parsed = ChatResponse::default();
        let (out, withheld) = complete_body(
            Dialect::OpenAi,
            Dialect::OpenAi,
            body.clone(),
            &mut parsed,
            Some(&denied(&["x"])),
        );
        assert_eq!(out, body);
        assert!(withheld.is_empty());
        parsed.choices.push(portcullis_core::Choice {
            content: vec![portcullis_core::Part::ToolCall {
                id: "call_x".into(),
                name: "x".into(),
                arguments: "{\"q\":\"zz\"}".into(),
                cache_control: None,
            }],
            stop_reason: Some(StopReason::ToolUse),
            ..Default::default()
        });
        let (out, withheld) = complete_body(
            Dialect::OpenAi,
            Dialect::OpenAi,
            body,
            &mut parsed,
            Some(&denied(&["x"])),
        );
        assert_eq!(withheld, vec!["x"]);
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert!(!text.contains("call_x") && !text.contains("zz"), "{text}");
        assert!(text.contains("\"finish_reason\":\"stop\""), "{text}");
    }
}
