//! The stream accumulator is the inverse of replaying a response as events: for any response,
//! accumulating `events_from_response(r)` gives `r` back, up to what streams do not carry.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::BytesMut;
use portcullis_core::{
    ChatResponse, Choice, Dialect, Extras, ImageSource, Part, ResponseAccumulator, StopReason,
    StreamEvent, Usage,
};
use portcullis_dialects::events_from_response;
use proptest::prelude::*;
use serde_json::{Map, json};

fn accumulate(events: &[StreamEvent]) -> Option<ChatResponse> {
    let mut acc = ResponseAccumulator::new();
    for event in events {
        acc.push(event);
    }
    acc.finish()
}

/// What survives a trip through stream events: no extras, logprobs or cache-control markers;
/// no image, tool-result or opaque parts; no empty text or refusal parts, and no empty
/// unsigned thinking; adjacent text (or refusal) parts merged into one; an unsigned thinking
/// part merged with the thinking part after it.
fn what_a_stream_carries(response: &ChatResponse) -> ChatResponse {
    let mut out = response.clone();
    out.extras = Extras::default();
    for choice in &mut out.choices {
        choice.logprobs = None;
        let mut content: Vec<Part> = Vec::new();
        for part in std::mem::take(&mut choice.content) {
            match part {
                Part::Text { text, .. } => {
                    if text.is_empty() {
                        continue;
                    }
                    match content.last_mut() {
                        Some(Part::Text { text: last, .. }) => last.push_str(&text),
                        _ => content.push(Part::text(text)),
                    }
                }
                Part::Refusal { text } => {
                    if text.is_empty() {
                        continue;
                    }
                    match content.last_mut() {
                        Some(Part::Refusal { text: last }) => last.push_str(&text),
                        _ => content.push(Part::Refusal { text }),
                    }
                }
                Part::Thinking { text, signature } => match content.last_mut() {
                    Some(Part::Thinking {
                        text: last,
                        signature: last_signature @ None,
                    }) => {
                        last.push_str(&text);
                        *last_signature = signature;
                    }
                    _ => {
                        if !text.is_empty() || signature.is_some() {
                            content.push(Part::Thinking { text, signature });
                        }
                    }
                },
                Part::ToolCall {
                    id,
                    name,
                    arguments,
                    ..
                } => content.push(Part::ToolCall {
                    id,
                    name,
                    arguments,
                    cache_control: None,
                }),
                redacted @ Part::RedactedThinking { .. } => content.push(redacted),
                Part::Image { .. } | Part::ToolResult { .. } | Part::Opaque { .. } => {}
            }
        }
        choice.content = content;
    }
    out
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "[a-z {}\":,é😀]{1,12}"]
}

fn cache_control() -> impl Strategy<Value = Option<serde_json::Value>> {
    prop::option::of(Just(json!({"type": "ephemeral"})))
}

fn part() -> impl Strategy<Value = Part> {
    prop_oneof![
        4 => (text(), cache_control()).prop_map(|(text, cache_control)| Part::Text { text, cache_control }),
        2 => text().prop_map(|text| Part::Refusal { text }),
        2 => (text(), prop::option::of(text()))
            .prop_map(|(text, signature)| Part::Thinking { text, signature }),
        1 => text().prop_map(|data| Part::RedactedThinking { data }),
        3 => ("call_[a-z0-9]{1,6}", "[a-z_]{1,8}", text(), cache_control()).prop_map(
            |(id, name, arguments, cache_control)| Part::ToolCall { id, name, arguments, cache_control }
        ),
        1 => text().prop_map(|url| Part::Image {
            source: ImageSource::Url(url),
            detail: None,
            cache_control: None,
        }),
        1 => text().prop_map(|t| Part::ToolResult {
            call_id: "c".into(),
            content: vec![Part::text(t)],
            is_error: false,
            cache_control: None,
        }),
        1 => text().prop_map(|t| Part::Opaque {
            dialect: Dialect::Anthropic,
            value: json!({"type": "x", "t": t}),
        }),
    ]
}

fn stop_reason() -> impl Strategy<Value = StopReason> {
    prop_oneof![
        Just(StopReason::EndTurn),
        Just(StopReason::MaxTokens),
        Just(StopReason::StopSequence),
        Just(StopReason::ToolUse),
        Just(StopReason::ContentFilter),
        Just(StopReason::PauseTurn),
        "[a-z_]{1,10}".prop_map(StopReason::Other),
    ]
}

fn choice_body() -> impl Strategy<Value = (Vec<Part>, StopReason, Option<String>, bool)> {
    (
        prop::collection::vec(part(), 0..8),
        stop_reason(),
        prop::option::of(text()),
        any::<bool>(),
    )
}

fn usage() -> impl Strategy<Value = Usage> {
    (0..5000u64, 0..5000u64, 0..100u64, 0..100u64, 0..100u64).prop_map(
        |(
            input_tokens,
            output_tokens,
            cached_input_tokens,
            cache_write_input_tokens,
            reasoning_tokens,
        )| Usage {
            input_tokens,
            output_tokens,
            cached_input_tokens,
            cache_write_input_tokens,
            reasoning_tokens,
        },
    )
}

fn response() -> impl Strategy<Value = ChatResponse> {
    (
        "[a-z0-9_]{0,12}",
        "[a-z0-9./-]{0,16}",
        any::<u64>(),
        prop::collection::vec(choice_body(), 1..4),
        usage(),
        any::<bool>(),
    )
        .prop_map(
            |(id, model, created, bodies, usage, with_extras)| ChatResponse {
                id,
                model,
                created,
                choices: bodies
                    .into_iter()
                    .enumerate()
                    .map(
                        |(index, (content, reason, stop_sequence, logprobs))| Choice {
                            index: index as u32,
                            content,
                            stop_reason: Some(reason),
                            stop_sequence,
                            logprobs: logprobs.then(|| json!({"content": []})),
                        },
                    )
                    .collect(),
                usage,
                extras: if with_extras {
                    let mut fields = Map::new();
                    fields.insert("system_fingerprint".into(), json!("fp_1"));
                    Extras::new(Dialect::OpenAi, fields)
                } else {
                    Extras::default()
                },
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn accumulating_replayed_events_gives_the_response_back(r in response()) {
        let events = events_from_response(&r);
        let rebuilt = accumulate(&events).expect("a replayed response is complete");
        prop_assert_eq!(rebuilt, what_a_stream_carries(&r));
    }

    /// A stream cut short before its last choice finishes never passes for the whole answer;
    /// with a single choice it is not complete at all. (A choice that never produced an event
    /// cannot be missed, so a multi-choice stream cut right after an earlier choice finished
    /// may yield fewer choices.)
    #[test]
    fn truncated_streams_are_not_complete(r in response(), cut in any::<prop::sample::Index>()) {
        let events = events_from_response(&r);
        let last_finish = events
            .iter()
            .rposition(|e| matches!(e, StreamEvent::Finish { .. }))
            .unwrap();
        let cut = cut.index(last_finish + 1);
        match accumulate(&events[..cut]) {
            None => {}
            Some(partial) => {
                prop_assert!(r.choices.len() > 1);
                prop_assert!(partial.choices.len() < r.choices.len());
            }
        }
    }
}

#[test]
fn a_stream_through_a_real_wire_encoding_accumulates() {
    // Encode a response as an OpenAI SSE stream, decode it back as the gateway would from an
    // upstream, and accumulate: the answer survives the wire.
    let response = ChatResponse {
        id: "chatcmpl-1".into(),
        model: "gpt-4o".into(),
        created: 1_700_000_000,
        choices: vec![Choice {
            index: 0,
            content: vec![
                Part::text("Let me check."),
                Part::ToolCall {
                    id: "call_1".into(),
                    name: "lookup".into(),
                    arguments: r#"{"q":"rust"}"#.into(),
                    cache_control: None,
                },
            ],
            stop_reason: Some(StopReason::ToolUse),
            stop_sequence: None,
            logprobs: None,
        }],
        usage: Usage {
            input_tokens: 12,
            output_tokens: 7,
            ..Usage::default()
        },
        extras: Extras::default(),
    };
    let mut encoder = portcullis_dialects::stream_encoder(Dialect::OpenAi, true, 0);
    let mut wire = BytesMut::new();
    for event in events_from_response(&response) {
        encoder.encode(&event, &mut wire);
    }
    encoder.finish(&mut wire);

    let mut parser = portcullis_dialects::sse::SseParser::new();
    let mut frames = Vec::new();
    parser.feed(&wire, &mut frames).unwrap();
    parser.finish(&mut frames);
    let mut decoder = portcullis_dialects::openai::OpenAiStreamDecoder::new();
    let mut acc = ResponseAccumulator::new();
    let mut events = Vec::new();
    for frame in &frames {
        events.clear();
        portcullis_dialects::StreamDecoder::decode(&mut decoder, frame, &mut events).unwrap();
        for event in &events {
            acc.push(event);
        }
    }
    assert_eq!(acc.finish(), Some(response));
}
