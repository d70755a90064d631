//! Stream filters: the stage between a streamed answer's decoder and its encoder where policies
//! see, and may rewrite, every canonical event.
//!
//! A [`StreamFilter`] answers each event with an [`Action`]: pass it on, hold it (the filter
//! keeps a copy, for instance from a tool call's start until its arguments are complete), drop
//! it, or replace it with other events — which is also how held events are released. Nothing
//! else of the stream is buffered: a filter holds only what it chose to hold. Filters run in
//! the order they were added ([`FilterChain`]); what one emits is seen by the next.
//!
//! The relay ([`crate::relay::SseRelay`]) keeps forwarding the upstream's own bytes for as long
//! as every filter passes every event of a frame; the first frame a filter touches switches the
//! stream to re-encoding, from that frame on.

use std::borrow::Cow;

use portcullis_core::StreamEvent;

/// What becomes of one event.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Forward it unchanged.
    Pass,
    /// The filter keeps it, to emit (or drop) later through a [`Action::Replace`] or at the end.
    Hold,
    /// Withhold it.
    Drop,
    /// Emit these events in its place (none: withhold it); also releases held events.
    Replace(Vec<StreamEvent>),
}

/// A policy over a streamed answer's canonical events.
pub trait StreamFilter: Send {
    /// Decides what becomes of `event`.
    fn on_event(&mut self, event: &StreamEvent) -> Action;

    /// The upstream's answer ended: returns the events to emit before the stream closes
    /// (events still held, a closing notice); events held and not returned are dropped.
    fn on_end(&mut self) -> Vec<StreamEvent> {
        Vec::new()
    }
}

/// Filters applied in order.
#[derive(Default)]
pub struct FilterChain {
    filters: Vec<Box<dyn StreamFilter>>,
}

impl FilterChain {
    /// A chain without filters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `filter` after the ones already in the chain.
    pub fn push(&mut self, filter: Box<dyn StreamFilter>) {
        self.filters.push(filter);
    }

    /// Whether the chain has no filter.
    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    /// Runs `events` through every filter, appending what comes out to `out`. Returns whether
    /// some filter changed anything (held, dropped or replaced an event); when it returns
    /// `false`, `out` holds exactly `events`.
    pub fn run(&mut self, events: &[StreamEvent], out: &mut Vec<StreamEvent>) -> bool {
        let mut changed = false;
        for event in events {
            self.push_through(0, Cow::Borrowed(event), out, &mut changed);
        }
        changed
    }

    /// Ends every filter, appending what they emit at the end (each filter's output still
    /// passing through the filters after it). Returns whether anything was emitted.
    pub fn end(&mut self, out: &mut Vec<StreamEvent>) -> bool {
        let before = out.len();
        let mut changed = false;
        for at in 0..self.filters.len() {
            let released = self.filters[at].on_end();
            for event in released {
                self.push_through(at + 1, Cow::Owned(event), out, &mut changed);
            }
        }
        out.len() > before
    }

    fn push_through(
        &mut self,
        from: usize,
        event: Cow<'_, StreamEvent>,
        out: &mut Vec<StreamEvent>,
        changed: &mut bool,
    ) {
        for at in from..self.filters.len() {
            match self.filters[at].on_event(&event) {
                Action::Pass => {}
                Action::Hold | Action::Drop => {
                    *changed = true;
                    return;
                }
                Action::Replace(events) => {
                    *changed = true;
                    for e in events {
                        self.push_through(at + 1, Cow::Owned(e), out, changed);
                    }
                    return;
                }
            }
        }
        out.push(event.into_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::Delta;

    fn text(t: &str) -> StreamEvent {
        StreamEvent::Delta {
            choice: 0,
            delta: Delta::Text(t.into()),
        }
    }

    /// Holds every tool-call event from the call's start until its end, then releases them
    /// (or drops them when the arguments ask for it).
    #[derive(Default)]
    struct HoldCalls {
        held: Vec<StreamEvent>,
        arguments: String,
    }

    impl StreamFilter for HoldCalls {
        fn on_event(&mut self, event: &StreamEvent) -> Action {
            let StreamEvent::Delta { delta, .. } = event else {
                return Action::Pass;
            };
            match delta {
                Delta::ToolCallStart { .. } => {
                    self.held.push(event.clone());
                    Action::Hold
                }
                Delta::ToolCallArguments { fragment, .. } => {
                    self.arguments.push_str(fragment);
                    self.held.push(event.clone());
                    Action::Hold
                }
                Delta::ToolCallEnd { .. } => {
                    let mut held = std::mem::take(&mut self.held);
                    if std::mem::take(&mut self.arguments).contains("secret") {
                        return Action::Replace(vec![text("[withheld]")]);
                    }
                    held.push(event.clone());
                    Action::Replace(held)
                }
                _ => Action::Pass,
            }
        }

        fn on_end(&mut self) -> Vec<StreamEvent> {
            std::mem::take(&mut self.held)
        }
    }

    /// Upper-cases text.
    struct Shout;

    impl StreamFilter for Shout {
        fn on_event(&mut self, event: &StreamEvent) -> Action {
            match event {
                StreamEvent::Delta {
                    choice,
                    delta: Delta::Text(t),
                } => Action::Replace(vec![StreamEvent::Delta {
                    choice: *choice,
                    delta: Delta::Text(t.to_uppercase()),
                }]),
                _ => Action::Pass,
            }
        }
    }

    fn call(args: &str) -> Vec<StreamEvent> {
        let d = |delta| StreamEvent::Delta { choice: 0, delta };
        vec![
            d(Delta::ToolCallStart {
                index: 0,
                id: "c".into(),
                name: "f".into(),
            }),
            d(Delta::ToolCallArguments {
                index: 0,
                fragment: args.into(),
            }),
            d(Delta::ToolCallEnd { index: 0 }),
        ]
    }

    #[test]
    fn held_events_are_released_whole_at_the_calls_end() {
        let mut chain = FilterChain::new();
        chain.push(Box::new(HoldCalls::default()));
        let events = call("{\"a\":1}");
        let mut out = Vec::new();
        assert!(chain.run(&events[..2], &mut out));
        assert!(out.is_empty(), "held until the end: {out:?}");
        assert!(chain.run(&events[2..], &mut out));
        assert_eq!(out, events);
    }

    #[test]
    fn a_filter_may_replace_what_it_held() {
        let mut chain = FilterChain::new();
        chain.push(Box::new(HoldCalls::default()));
        let mut out = Vec::new();
        chain.run(&call("{\"secret\":1}"), &mut out);
        assert_eq!(out, vec![text("[withheld]")]);
    }

    #[test]
    fn untouched_events_pass_in_order_and_report_no_change() {
        let mut chain = FilterChain::new();
        chain.push(Box::new(HoldCalls::default()));
        let events = vec![text("a"), text("b")];
        let mut out = Vec::new();
        assert!(!chain.run(&events, &mut out));
        assert_eq!(out, events);
        assert!(!chain.end(&mut out));
    }

    #[test]
    fn what_one_filter_emits_the_next_one_sees() {
        let mut chain = FilterChain::new();
        chain.push(Box::new(HoldCalls::default()));
        chain.push(Box::new(Shout));
        let mut out = Vec::new();
        chain.run(&call("{\"secret\":1}"), &mut out);
        assert_eq!(out, vec![text("[WITHHELD]")]);
    }

    #[test]
    fn events_still_held_at_the_end_are_released_by_the_filter() {
        let mut chain = FilterChain::new();
        chain.push(Box::new(HoldCalls::default()));
        let events = call("{}");
        let mut out = Vec::new();
        chain.run(&events[..2], &mut out);
        assert!(chain.end(&mut out));
        assert_eq!(out, events[..2].to_vec());
    }
}
