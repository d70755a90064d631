//! Tool calls the model emitted, judged one by one and withheld from the answer when the
//! verdict says so: [`CallFilter`] for streamed answers and [`complete_body`] for complete
//! ones. Who decides is a [`CallJudge`]: the tool-call deny-list ([`DeniedTools`], by name),
//! the tool policies of the guardrails (`crate::guardrails`, by name, arguments, identity and
//! trust), or both ([`Judges`]); this module only applies their verdicts.
//!
//! A call judged on its name alone is dropped from its first event, with every later fragment
//! and its end. A call whose verdict needs its arguments is held by the filter from its first
//! event until its arguments are complete ([`Delta::ToolCallEnd`]), then released unchanged or
//! dropped whole; only that call (and what the same choice sends meanwhile) is held, never the
//! rest of the stream. Either way no byte of a withheld call is ever written. Calls after a
//! withheld one are renumbered so the client sees consecutive tool-call indexes. When the
//! choice finishes, the notice naming each withheld tool and why is emitted as text just
//! before the finish, and a choice left with no call finishes as an end of turn (`stop` /
//! `end_turn`) instead of `tool_calls`.

use std::sync::Arc;

use bytes::Bytes;
use portcullis_core::{ChatResponse, Delta, Dialect, Part, StopReason, StreamEvent};
use portcullis_dialects::encode_response;
use portcullis_policy::{DeniedTools, ToolGlobs, withheld_notice};

use crate::stream_filter::{Action, StreamFilter};

/// The tools denied to a request: its route's list (`Resolution::tools_denied`) and its key's
/// (`Principal::tools_denied`), or `None` when neither denies anything.
pub fn denied_tools(
    route: Option<&Arc<ToolGlobs>>,
    key: Option<&Arc<ToolGlobs>>,
) -> Option<DeniedTools> {
    DeniedTools::union(route, key)
}

/// What becomes of one tool call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It reaches the client.
    Pass,
    /// The deny-list names it.
    Denied,
    /// Withheld for the reason given (a clause: "the tool is blocked by policy").
    Withhold(String),
}

/// Decides on the tool calls of one answer.
pub trait CallJudge: Send {
    /// The verdict on a call of `name` from its name alone, or `None` when the verdict needs
    /// the call's complete arguments.
    fn on_name(&mut self, name: &str) -> Option<Verdict>;

    /// The verdict on a complete call (only asked after [`CallJudge::on_name`] said `None`).
    fn on_call(&mut self, id: &str, name: &str, arguments: &str) -> Verdict;

    /// Whether [`CallJudge::on_passed`] wants the arguments of calls passed on their name (the
    /// filter then copies their fragments as they go by, without holding them).
    fn wants_passed(&self) -> bool {
        false
    }

    /// A call [`CallJudge::on_name`] passed, once its arguments are complete (`complete`
    /// false: the answer ended first), for the record.
    fn on_passed(&mut self, _id: &str, _name: &str, _arguments: &str, _complete: bool) {}
}

impl CallJudge for DeniedTools {
    fn on_name(&mut self, name: &str) -> Option<Verdict> {
        Some(if self.denies(name) {
            Verdict::Denied
        } else {
            Verdict::Pass
        })
    }

    fn on_call(&mut self, _id: &str, name: &str, _arguments: &str) -> Verdict {
        if self.denies(name) {
            Verdict::Denied
        } else {
            Verdict::Pass
        }
    }
}

impl<J: CallJudge + ?Sized> CallJudge for Box<J> {
    fn on_name(&mut self, name: &str) -> Option<Verdict> {
        (**self).on_name(name)
    }

    fn on_call(&mut self, id: &str, name: &str, arguments: &str) -> Verdict {
        (**self).on_call(id, name, arguments)
    }

    fn wants_passed(&self) -> bool {
        (**self).wants_passed()
    }

    fn on_passed(&mut self, id: &str, name: &str, arguments: &str, complete: bool) {
        (**self).on_passed(id, name, arguments, complete)
    }
}

/// Two judges: the first that withholds a call decides; a call passes when both pass it.
pub struct Judges<A, B>(pub A, pub B);

impl<A: CallJudge, B: CallJudge> CallJudge for Judges<A, B> {
    fn on_name(&mut self, name: &str) -> Option<Verdict> {
        match self.0.on_name(name) {
            Some(Verdict::Pass) => self.1.on_name(name),
            Some(withheld) => Some(withheld),
            None => match self.1.on_name(name) {
                Some(Verdict::Pass) | None => None,
                Some(withheld) => Some(withheld),
            },
        }
    }

    fn on_call(&mut self, id: &str, name: &str, arguments: &str) -> Verdict {
        match self.0.on_call(id, name, arguments) {
            Verdict::Pass => self.1.on_call(id, name, arguments),
            withheld => withheld,
        }
    }

    fn wants_passed(&self) -> bool {
        self.0.wants_passed() || self.1.wants_passed()
    }

    fn on_passed(&mut self, id: &str, name: &str, arguments: &str, complete: bool) {
        self.0.on_passed(id, name, arguments, complete);
        self.1.on_passed(id, name, arguments, complete);
    }
}

/// A call of this choice waiting for its arguments.
struct Held {
    index: u32,
    id: String,
    name: String,
    arguments: String,
    /// Every event of the choice since the call's start, in order.
    queue: Vec<StreamEvent>,
}

/// What the filter knows of one choice's calls.
#[derive(Default)]
struct ChoiceCalls {
    choice: u32,
    /// The upstream's index of each withheld call.
    withheld: Vec<u32>,
    /// Each withheld call's tool and verdict, in order.
    notices: Vec<(String, Verdict)>,
    /// (upstream index, index the client sees) of each call let through.
    kept: Vec<(u32, u32)>,
    /// The call being held, if any.
    held: Option<Held>,
    /// Calls passed on their name whose arguments the judge wants: (upstream index, id,
    /// name, arguments so far).
    copied: Vec<(u32, String, String, String)>,
    /// Whether text was emitted in this choice (the notice then starts on a new paragraph).
    saw_text: bool,
    /// Whether the notice was emitted.
    noticed: bool,
}

impl ChoiceCalls {
    fn notice(&mut self) -> Option<StreamEvent> {
        if self.notices.is_empty() || self.noticed {
            return None;
        }
        self.noticed = true;
        let notice = notice_text(&self.notices);
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

/// The text that replaces withheld calls: the deny-list's calls together, then one sentence
/// per other withheld call naming its tool and the reason.
pub fn notice_text(withheld: &[(String, Verdict)]) -> String {
    let denied: Vec<&str> = withheld
        .iter()
        .filter(|(_, v)| *v == Verdict::Denied)
        .map(|(name, _)| name.as_str())
        .collect();
    let mut parts = Vec::new();
    if !denied.is_empty() {
        parts.push(withheld_notice(&denied));
    }
    for (name, verdict) in withheld {
        if let Verdict::Withhold(reason) = verdict {
            parts.push(format!(
                "[The gateway withheld a call to the tool `{name}`: {reason}.]"
            ));
        }
    }
    parts.join(" ")
}

/// What one event became.
enum Step {
    /// Unchanged.
    Pass,
    /// These events instead (none: held or dropped).
    Out(Vec<StreamEvent>),
}

/// Withholds the calls a [`CallJudge`] withholds from a streamed answer.
pub struct CallFilter<J> {
    judge: J,
    choices: Vec<ChoiceCalls>,
}

impl<J: CallJudge> CallFilter<J> {
    /// A filter applying `judge`'s verdicts.
    pub fn new(judge: J) -> Self {
        Self {
            judge,
            choices: Vec::new(),
        }
    }

    fn slot(&mut self, choice: u32) -> usize {
        match self.choices.iter().position(|c| c.choice == choice) {
            Some(at) => at,
            None => {
                self.choices.push(ChoiceCalls {
                    choice,
                    ..ChoiceCalls::default()
                });
                self.choices.len() - 1
            }
        }
    }

    /// A later event of the call the upstream numbered `index`: dropped if the call was
    /// withheld, renumbered if an earlier call was.
    fn follow(&mut self, at: usize, index: u32, renumbered: impl FnOnce(u32) -> Delta) -> Step {
        let state = &self.choices[at];
        if state.withheld.contains(&index) {
            return Step::Out(Vec::new());
        }
        match state.kept.iter().find(|(from, _)| *from == index) {
            Some(&(from, to)) if from != to => Step::Out(vec![StreamEvent::Delta {
                choice: state.choice,
                delta: renumbered(to),
            }]),
            _ => Step::Pass,
        }
    }

    /// Lets the call starting with `index`, `id`, `name` through, renumbered if needed.
    fn keep(&mut self, at: usize, index: u32, id: &str, name: &str) -> Step {
        let state = &mut self.choices[at];
        let to = state.kept.len() as u32;
        state.kept.push((index, to));
        if to == index {
            return Step::Pass;
        }
        Step::Out(vec![StreamEvent::Delta {
            choice: state.choice,
            delta: Delta::ToolCallStart {
                index: to,
                id: id.to_owned(),
                name: name.to_owned(),
            },
        }])
    }

    /// The held call of choice `at` is complete (or will never be): judged, then released or
    /// dropped, followed by what the choice sent meanwhile.
    fn decide(&mut self, at: usize, complete: bool, out: &mut Vec<StreamEvent>) {
        let Some(held) = self.choices[at].held.take() else {
            return;
        };
        let verdict = if complete {
            self.judge.on_call(&held.id, &held.name, &held.arguments)
        } else {
            Verdict::Withhold("its arguments never completed".to_owned())
        };
        if verdict == Verdict::Pass {
            match self.keep(at, held.index, &held.id, &held.name) {
                Step::Pass => out.push(StreamEvent::Delta {
                    choice: self.choices[at].choice,
                    delta: Delta::ToolCallStart {
                        index: held.index,
                        id: held.id,
                        name: held.name,
                    },
                }),
                Step::Out(events) => out.extend(events),
            }
        } else {
            let state = &mut self.choices[at];
            state.withheld.push(held.index);
            state.notices.push((held.name, verdict));
        }
        for event in held.queue {
            self.push_step(event, out);
        }
    }

    fn push_step(&mut self, event: StreamEvent, out: &mut Vec<StreamEvent>) {
        match self.step(&event) {
            Step::Pass => out.push(event),
            Step::Out(events) => out.extend(events),
        }
    }

    fn step(&mut self, event: &StreamEvent) -> Step {
        let choice = match event {
            StreamEvent::Delta { choice, .. } | StreamEvent::Finish { choice, .. } => *choice,
            _ => return Step::Pass,
        };
        let at = self.slot(choice);
        if let Some(held) = &mut self.choices[at].held {
            held.queue.push(event.clone());
            let complete = match event {
                StreamEvent::Delta {
                    delta: Delta::ToolCallArguments { index, fragment },
                    ..
                } if *index == held.index => {
                    held.arguments.push_str(fragment);
                    false
                }
                StreamEvent::Delta {
                    delta: Delta::ToolCallEnd { index },
                    ..
                } => *index == held.index,
                // The choice finishes without ending the call: judged on what came.
                StreamEvent::Finish { .. } => true,
                _ => false,
            };
            let mut out = Vec::new();
            if complete {
                self.decide(at, true, &mut out);
            }
            return Step::Out(out);
        }
        match event {
            StreamEvent::Delta { delta, .. } => match delta {
                Delta::ToolCallStart { index, id, name } => match self.judge.on_name(name) {
                    Some(Verdict::Pass) => {
                        if self.judge.wants_passed() {
                            self.choices[at].copied.push((
                                *index,
                                id.clone(),
                                name.clone(),
                                String::new(),
                            ));
                        }
                        self.keep(at, *index, id, name)
                    }
                    Some(verdict) => {
                        let state = &mut self.choices[at];
                        state.withheld.push(*index);
                        state.notices.push((name.clone(), verdict));
                        Step::Out(Vec::new())
                    }
                    None => {
                        self.choices[at].held = Some(Held {
                            index: *index,
                            id: id.clone(),
                            name: name.clone(),
                            arguments: String::new(),
                            queue: Vec::new(),
                        });
                        Step::Out(Vec::new())
                    }
                },
                Delta::ToolCallArguments { index, fragment } => {
                    if let Some(copy) = self.choices[at]
                        .copied
                        .iter_mut()
                        .find(|(i, ..)| i == index)
                    {
                        copy.3.push_str(fragment);
                    }
                    self.follow(at, *index, |to| Delta::ToolCallArguments {
                        index: to,
                        fragment: fragment.clone(),
                    })
                }
                Delta::ToolCallEnd { index } => {
                    let copied = &mut self.choices[at].copied;
                    if let Some(pos) = copied.iter().position(|(i, ..)| i == index) {
                        let (_, id, name, arguments) = copied.swap_remove(pos);
                        self.judge.on_passed(&id, &name, &arguments, true);
                    }
                    self.follow(at, *index, |to| Delta::ToolCallEnd { index: to })
                }
                Delta::Text(t) => {
                    if !t.is_empty() {
                        self.choices[at].saw_text = true;
                    }
                    Step::Pass
                }
                _ => Step::Pass,
            },
            StreamEvent::Finish {
                reason,
                stop_sequence,
                ..
            } => {
                let state = &mut self.choices[at];
                let Some(notice) = state.notice() else {
                    return Step::Pass;
                };
                let reason = if state.kept.is_empty() && *reason == StopReason::ToolUse {
                    StopReason::EndTurn
                } else {
                    reason.clone()
                };
                Step::Out(vec![
                    notice,
                    StreamEvent::Finish {
                        choice,
                        reason,
                        stop_sequence: stop_sequence.clone(),
                    },
                ])
            }
            _ => Step::Pass,
        }
    }
}

impl<J: CallJudge> StreamFilter for CallFilter<J> {
    fn on_event(&mut self, event: &StreamEvent) -> Action {
        match self.step(event) {
            Step::Pass => Action::Pass,
            Step::Out(events) if events.is_empty() => Action::Hold,
            Step::Out(events) => Action::Replace(events),
        }
    }

    fn on_end(&mut self) -> Vec<StreamEvent> {
        let mut out = Vec::new();
        // A call still held when the answer ends never completed: withheld.
        for at in 0..self.choices.len() {
            self.decide(at, false, &mut out);
            for (_, id, name, arguments) in std::mem::take(&mut self.choices[at].copied) {
                self.judge.on_passed(&id, &name, &arguments, false);
            }
        }
        // A choice that never finished still says what was withheld from it.
        out.extend(self.choices.iter_mut().filter_map(ChoiceCalls::notice));
        out
    }
}

/// Withholds the calls `judge` withholds from a complete answer: each choice loses them,
/// gains the notice naming them (after its text, separated by a blank line), and finishes as
/// an end of turn if no call is left where it had asked for tools. Returns the names of the
/// withheld tools (empty: the answer is unchanged).
pub fn withhold_calls(response: &mut ChatResponse, judge: &mut dyn CallJudge) -> Vec<String> {
    let mut all = Vec::new();
    for choice in &mut response.choices {
        let mut withheld: Vec<(String, Verdict)> = Vec::new();
        choice.content.retain(|part| match part {
            Part::ToolCall {
                id,
                name,
                arguments,
                ..
            } => {
                let verdict = match judge.on_name(name) {
                    Some(Verdict::Pass) => {
                        judge.on_passed(id, name, arguments, true);
                        Verdict::Pass
                    }
                    Some(verdict) => verdict,
                    None => judge.on_call(id, name, arguments),
                };
                if verdict == Verdict::Pass {
                    return true;
                }
                withheld.push((name.clone(), verdict));
                false
            }
            _ => true,
        });
        if withheld.is_empty() {
            continue;
        }
        let notice = notice_text(&withheld);
        let has_text = choice
            .content
            .iter()
            .any(|p| matches!(p, Part::Text { text, .. } if !text.is_empty()));
        let notice = if has_text {
            format!("\n\n{notice}")
        } else {
            notice
        };
        // After the last text, before any remaining calls: clients read text first.
        let at = choice
            .content
            .iter()
            .rposition(|p| matches!(p, Part::Text { .. }))
            .map_or(0, |i| i + 1);
        choice.content.insert(at, Part::text(notice));
        let calls_left = choice
            .content
            .iter()
            .any(|p| matches!(p, Part::ToolCall { .. }));
        if !calls_left && choice.stop_reason == Some(StopReason::ToolUse) {
            choice.stop_reason = Some(StopReason::EndTurn);
        }
        all.extend(withheld.into_iter().map(|(name, _)| name));
    }
    all
}

/// The body to send for a complete answer `parsed` (decoded from the upstream's `body`): the
/// calls `judge` withholds removed and the notice added; the upstream's own bytes when the
/// client speaks its dialect and nothing was withheld, the answer re-encoded in the client's
/// dialect otherwise. Returns the body and the names of the withheld tools.
pub fn complete_body(
    client: Dialect,
    upstream: Option<Dialect>,
    body: Bytes,
    parsed: &mut ChatResponse,
    judge: Option<&mut dyn CallJudge>,
) -> (Bytes, Vec<String>) {
    let withheld = judge.map_or_else(Vec::new, |j| withhold_calls(parsed, j));
    if upstream == Some(client) && withheld.is_empty() {
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
        chain.push(Box::new(CallFilter::new(denied(globs))));
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

    /// Judges `pay` on its arguments: withheld when they name `evil`.
    struct ByArguments;

    impl CallJudge for ByArguments {
        fn on_name(&mut self, name: &str) -> Option<Verdict> {
            (name != "pay").then_some(Verdict::Pass)
        }

        fn on_call(&mut self, _id: &str, _name: &str, arguments: &str) -> Verdict {
            if arguments.contains("evil") {
                Verdict::Withhold("the argument `to` is not allowed".into())
            } else {
                Verdict::Pass
            }
        }
    }

    fn run_judged(judge: impl CallJudge + 'static, events: &[StreamEvent]) -> Vec<StreamEvent> {
        let mut chain = FilterChain::new();
        chain.push(Box::new(CallFilter::new(judge)));
        let mut out = Vec::new();
        for e in events {
            chain.run(std::slice::from_ref(e), &mut out);
        }
        chain.end(&mut out);
        out
    }

    fn pay_then_ls(to: &str) -> Vec<StreamEvent> {
        vec![
            start(0, "call_pay", "pay"),
            args(0, "{\"to\":"),
            args(0, &format!("\"{to}\"}}")),
            d(Delta::ToolCallEnd { index: 0 }),
            start(1, "call_ls", "ls"),
            args(1, "{}"),
            d(Delta::ToolCallEnd { index: 1 }),
            finish(StopReason::ToolUse),
        ]
    }

    #[test]
    fn a_call_judged_on_its_arguments_is_released_unchanged_when_it_passes() {
        let events = pay_then_ls("alice");
        assert_eq!(run_judged(ByArguments, &events), events);
    }

    #[test]
    fn a_call_judged_on_its_arguments_is_withheld_whole_when_they_fail() {
        let out = run_judged(ByArguments, &pay_then_ls("evil"));
        assert_eq!(
            out,
            vec![
                start(0, "call_ls", "ls"),
                args(0, "{}"),
                d(Delta::ToolCallEnd { index: 0 }),
                d(Delta::Text(
                    "[The gateway withheld a call to the tool `pay`: the argument `to` is not allowed.]"
                        .into()
                )),
                finish(StopReason::ToolUse),
            ]
        );
    }

    #[test]
    fn a_held_call_whose_arguments_never_complete_is_withheld() {
        let events = &pay_then_ls("alice")[..2];
        let out = run_judged(ByArguments, events);
        assert_eq!(
            out,
            vec![d(Delta::Text(
                "[The gateway withheld a call to the tool `pay`: its arguments never completed.]"
                    .into()
            ))]
        );
    }

    #[test]
    fn the_deny_list_and_a_policy_together_withhold_both_and_say_why() {
        let judge = Judges(denied(&["ls"]), ByArguments);
        let out = run_judged(judge, &pay_then_ls("evil"));
        let StreamEvent::Delta {
            delta: Delta::Text(notice),
            ..
        } = &out[0]
        else {
            panic!("{out:?}")
        };
        assert!(notice.contains("`ls`: it is denied by policy"), "{notice}");
        assert!(notice.contains("`pay`: the argument `to`"), "{notice}");
        assert_eq!(out[1], finish(StopReason::EndTurn));
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
        chain.push(Box::new(CallFilter::new(denied(&["shell_*"]))));
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
    fn complete_answers_lose_denied_calls_and_finish_as_end_of_turn() {
        use portcullis_core::Choice;
        let call = |id: &str, name: &str| Part::ToolCall {
            id: id.into(),
            name: name.into(),
            arguments: "{}".into(),
            cache_control: None,
        };
        let mut r = ChatResponse {
            choices: vec![
                Choice {
                    index: 0,
                    content: vec![Part::text("Sure."), call("c1", "rm_rf")],
                    stop_reason: Some(StopReason::ToolUse),
                    ..Choice::default()
                },
                Choice {
                    index: 1,
                    content: vec![call("c2", "rm"), call("c3", "ls")],
                    stop_reason: Some(StopReason::ToolUse),
                    ..Choice::default()
                },
            ],
            ..ChatResponse::default()
        };
        let withheld = withhold_calls(&mut r, &mut denied(&["rm*"]));
        assert_eq!(withheld, vec!["rm_rf", "rm"]);
        let first = &r.choices[0];
        assert_eq!(first.stop_reason, Some(StopReason::EndTurn));
        assert_eq!(first.content.len(), 2);
        assert!(
            matches!(&first.content[1], Part::Text { text, .. } if text.starts_with("\n\n[") && text.contains("`rm_rf`"))
        );
        let second = &r.choices[1];
        assert_eq!(second.stop_reason, Some(StopReason::ToolUse));
        assert!(matches!(&second.content[0], Part::Text { text, .. } if text.contains("`rm`")));
        assert!(matches!(&second.content[1], Part::ToolCall { name, .. } if name == "ls"));
        // Nothing denied: nothing changes.
        let before = r.clone();
        assert!(withhold_calls(&mut r, &mut denied(&["rm*"])).is_empty());
        assert_eq!(r, before);
    }

    #[test]
    fn complete_bodies_pass_unchanged_unless_a_call_is_withheld() {
        let body = Bytes::from_static(b"{\"upstream\":\"bytes\"}");
        let mut parsed = ChatResponse::default();
        let (out, withheld) = complete_body(
            Dialect::OpenAi,
            Some(Dialect::OpenAi),
            body.clone(),
            &mut parsed,
            Some(&mut denied(&["x"])),
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
            Some(Dialect::OpenAi),
            body,
            &mut parsed,
            Some(&mut denied(&["x"])),
        );
        assert_eq!(withheld, vec!["x"]);
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert!(!text.contains("call_x") && !text.contains("zz"), "{text}");
        assert!(text.contains("\"finish_reason\":\"stop\""), "{text}");
    }
}
