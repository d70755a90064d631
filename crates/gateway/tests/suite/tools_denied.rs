//! The tool-call deny-list over real HTTP: a route's `tools_denied` withholds matching calls
//! from answers in both client dialects, from both upstream dialects, streamed and not. A
//! withheld call leaves no trace in the bytes the client gets (no id, argument fragment or
//! name, apart from the notice naming it); calls it allows pass; with no call left the answer
//! finishes as an end of turn; and a route whose list denies nothing in an answer still
//! forwards the upstream's bytes unchanged.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::*;
use portcullis_test_support::MockUpstream;
use portcullis_test_support::reply::{Reply, SseFrame};
use serde_json::{Value, json};

/// The denied tool's name, and what of its call must never reach the client.
const DENIED: &str = "shell_exec";
const DENIED_ID: &str = "DENYID77";
const DENIED_ARGS: [&str; 3] = ["SECRETPATH", "rm -rf", "cmd"];
const ALLOWED: &str = "lookup";
const ALLOWED_ID: &str = "ALLOWID42";

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Wire {
    OpenAi,
    Anthropic,
}

async fn setup() -> (MockUpstream, TestGateway) {
    let mock = MockUpstream::start().await;
    let yaml = format!(
        r#"
providers:
  openai:
    api_key: sk-mock-openai
    base_url: {openai}
  anthropic:
    api_key: sk-ant-mock
    base_url: {anthropic}
routes:
  guarded-openai:
    targets: [openai/gpt-4o]
    tools_denied: ["shell_*", "never_*"]
  guarded-anthropic:
    targets: [anthropic/claude-sonnet-4-5]
    tools_denied: ["shell_*"]
"#,
        openai = mock.openai_base_url(),
        anthropic = mock.anthropic_base_url(),
    );
    let gw = TestGateway::start(&yaml).await;
    (mock, gw)
}

fn route(upstream: Wire) -> &'static str {
    match upstream {
        Wire::OpenAi => "guarded-openai",
        Wire::Anthropic => "guarded-anthropic",
    }
}

/// A call as the upstream makes it: id, name, argument fragments.
pub(crate) struct Call {
    pub(crate) id: String,
    pub(crate) name: &'static str,
    pub(crate) fragments: Vec<&'static str>,
}

fn denied_call(upstream: Wire) -> Call {
    Call {
        id: match upstream {
            Wire::OpenAi => format!("call_{DENIED_ID}"),
            Wire::Anthropic => format!("toolu_{DENIED_ID}"),
        },
        name: DENIED,
        fragments: vec!["{\"cmd\":", "\"rm -rf", " /SECRETPATH\"}"],
    }
}

fn allowed_call(upstream: Wire) -> Call {
    Call {
        id: match upstream {
            Wire::OpenAi => format!("call_{ALLOWED_ID}"),
            Wire::Anthropic => format!("toolu_{ALLOWED_ID}"),
        },
        name: ALLOWED,
        fragments: vec!["{\"q\":", "\"fine\"}"],
    }
}

/// The upstream's streamed answer: some text, then `calls`, finishing with tool use.
pub(crate) fn stream_frames(upstream: Wire, calls: &[Call]) -> Vec<SseFrame> {
    match upstream {
        Wire::OpenAi => {
            let chunk = |delta: Value, finish: Value| {
                SseFrame::data(
                    json!({"id": "chatcmpl-tools", "object": "chat.completion.chunk", "created": 1_700_000_000u64, "model": "gpt-4o",
                           "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]})
                    .to_string(),
                )
            };
            let mut f = vec![
                chunk(json!({"role": "assistant", "content": ""}), Value::Null),
                chunk(json!({"content": "Let me check."}), Value::Null),
            ];
            for (i, c) in calls.iter().enumerate() {
                f.push(chunk(
                    json!({"tool_calls": [{"index": i, "id": c.id, "type": "function", "function": {"name": c.name, "arguments": ""}}]}),
                    Value::Null,
                ));
                for a in &c.fragments {
                    f.push(chunk(
                        json!({"tool_calls": [{"index": i, "function": {"arguments": a}}]}),
                        Value::Null,
                    ));
                }
            }
            f.push(chunk(json!({}), json!("tool_calls")));
            f.push(SseFrame::data(
                json!({"id": "chatcmpl-tools", "object": "chat.completion.chunk", "created": 1_700_000_000u64, "model": "gpt-4o", "choices": [],
                       "usage": {"prompt_tokens": 20, "completion_tokens": 30, "total_tokens": 50}})
                .to_string(),
            ));
            f.push(SseFrame::data("[DONE]"));
            f
        }
        Wire::Anthropic => {
            let ev = |name: &str, v: Value| SseFrame::event(name, v.to_string());
            let mut f = vec![
                ev(
                    "message_start",
                    json!({"type": "message_start", "message": {"id": "msg_tools", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
                           "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 20, "output_tokens": 1}}}),
                ),
                ev(
                    "content_block_start",
                    json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
                ),
                ev("ping", json!({"type": "ping"})),
                ev(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Let me check."}}),
                ),
                ev(
                    "content_block_stop",
                    json!({"type": "content_block_stop", "index": 0}),
                ),
            ];
            for (i, c) in calls.iter().enumerate() {
                let block = i + 1;
                f.push(ev(
                    "content_block_start",
                    json!({"type": "content_block_start", "index": block, "content_block": {"type": "tool_use", "id": c.id, "name": c.name, "input": {}}}),
                ));
                for a in &c.fragments {
                    f.push(ev(
                        "content_block_delta",
                        json!({"type": "content_block_delta", "index": block, "delta": {"type": "input_json_delta", "partial_json": a}}),
                    ));
                }
                f.push(ev(
                    "content_block_stop",
                    json!({"type": "content_block_stop", "index": block}),
                ));
            }
            f.push(ev(
                "message_delta",
                json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 30}}),
            ));
            f.push(ev("message_stop", json!({"type": "message_stop"})));
            f
        }
    }
}

/// The upstream's complete answer: some text, then `calls`.
pub(crate) fn complete_body(upstream: Wire, calls: &[Call]) -> Value {
    let args = |c: &Call| c.fragments.concat();
    match upstream {
        Wire::OpenAi => {
            let calls: Vec<Value> = calls
                .iter()
                .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": args(c)}}))
                .collect();
            json!({"id": "chatcmpl-tools", "object": "chat.completion", "created": 1_700_000_000u64, "model": "gpt-4o",
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": "Let me check.", "refusal": null, "tool_calls": calls},
                                "logprobs": null, "finish_reason": "tool_calls"}],
                   "usage": {"prompt_tokens": 20, "completion_tokens": 30, "total_tokens": 50}})
        }
        Wire::Anthropic => {
            let mut content = vec![json!({"type": "text", "text": "Let me check."})];
            for c in calls {
                let input: Value = serde_json::from_str(&args(c)).unwrap();
                content
                    .push(json!({"type": "tool_use", "id": c.id, "name": c.name, "input": input}));
            }
            json!({"id": "msg_tools", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": content,
                   "stop_reason": "tool_use", "stop_sequence": null, "usage": {"input_tokens": 20, "output_tokens": 30}})
        }
    }
}

pub(crate) fn script(mock: &MockUpstream, upstream: Wire, stream: bool, calls: &[Call]) {
    if stream {
        mock.push_reply(Reply::sse(stream_frames(upstream, calls)));
    } else {
        mock.push_reply(Reply::json(200, complete_body(upstream, calls)));
    }
}

fn upstream_bytes(upstream: Wire, calls: &[Call]) -> String {
    stream_frames(upstream, calls)
        .iter()
        .map(|f| String::from_utf8(f.to_bytes().to_vec()).unwrap())
        .collect()
}

/// What the client made of the answer.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) text: String,
    /// (id, name, arguments) of each call.
    pub(crate) calls: Vec<(String, String, String)>,
    /// `finish_reason` / `stop_reason`.
    pub(crate) finish: String,
}

async fn ask(gw: &TestGateway, client: Wire, upstream: Wire, stream: bool) -> (Answer, String) {
    let model = route(upstream);
    let (path, body) = match client {
        Wire::OpenAi => (
            "/v1/chat/completions",
            json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "check the disk"}],
            "tools": [
                {"type": "function", "function": {"name": ALLOWED, "parameters": {"type": "object"}}},
                {"type": "function", "function": {"name": DENIED, "parameters": {"type": "object"}}},
            ]}),
        ),
        Wire::Anthropic => (
            "/v1/messages",
            json!({"model": model, "stream": stream, "max_tokens": 256, "messages": [{"role": "user", "content": "check the disk"}],
            "tools": [
                {"name": ALLOWED, "input_schema": {"type": "object"}},
                {"name": DENIED, "input_schema": {"type": "object"}},
            ]}),
        ),
    };
    let (status, _, raw) = post(gw, path, &body).await;
    assert_eq!(status, 200, "{raw}");
    (answer_of(client, stream, &raw), raw)
}

/// What a client of dialect `client` makes of the answer `raw`.
pub(crate) fn answer_of(client: Wire, stream: bool, raw: &str) -> Answer {
    match (client, stream) {
        (Wire::OpenAi, true) => {
            let s = parse_openai_stream(raw);
            assert!(s.done && s.error.is_none(), "{raw}");
            Answer {
                text: s.text,
                calls: s.tool_calls,
                finish: s.finish_reason.unwrap_or_default(),
            }
        }
        (Wire::Anthropic, true) => {
            let s = parse_anthropic_stream(raw);
            assert!(s.error.is_none(), "{raw}");
            assert_eq!(s.events.last().map(String::as_str), Some("message_stop"));
            Answer {
                text: s.text,
                calls: s.tool_uses,
                finish: s.stop_reason.unwrap_or_default(),
            }
        }
        (Wire::OpenAi, false) => {
            let v: Value = serde_json::from_str(raw).unwrap();
            let m = &v["choices"][0]["message"];
            Answer {
                text: m["content"].as_str().unwrap_or_default().to_owned(),
                calls: m["tool_calls"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| {
                        (
                            c["id"].as_str().unwrap().to_owned(),
                            c["function"]["name"].as_str().unwrap().to_owned(),
                            c["function"]["arguments"].as_str().unwrap().to_owned(),
                        )
                    })
                    .collect(),
                finish: v["choices"][0]["finish_reason"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            }
        }
        (Wire::Anthropic, false) => {
            let v: Value = serde_json::from_str(raw).unwrap();
            let blocks = v["content"].as_array().unwrap();
            Answer {
                text: blocks
                    .iter()
                    .filter(|b| b["type"] == "text")
                    .map(|b| b["text"].as_str().unwrap())
                    .collect(),
                calls: blocks
                    .iter()
                    .filter(|b| b["type"] == "tool_use")
                    .map(|b| {
                        (
                            b["id"].as_str().unwrap().to_owned(),
                            b["name"].as_str().unwrap().to_owned(),
                            b["input"].to_string(),
                        )
                    })
                    .collect(),
                finish: v["stop_reason"].as_str().unwrap().to_owned(),
            }
        }
    }
}

/// No part of the denied call is in `raw`, except its name once, in the notice.
fn assert_withheld(raw: &str, answer: &Answer) {
    assert!(
        !raw.contains(DENIED_ID),
        "the denied call's id leaked: {raw}"
    );
    for fragment in DENIED_ARGS {
        assert!(
            !raw.contains(fragment),
            "an argument fragment `{fragment}` leaked: {raw}"
        );
    }
    assert!(
        answer.text.contains(&format!("`{DENIED}`")),
        "the notice names the withheld tool: {answer:?}"
    );
    assert_eq!(
        raw.matches(DENIED).count(),
        1,
        "the name appears only in the notice: {raw}"
    );
    assert!(answer.calls.iter().all(|(_, name, _)| name != DENIED));
}

const WIRES: [Wire; 2] = [Wire::OpenAi, Wire::Anthropic];

#[tokio::test]
async fn a_denied_call_is_withheld_and_an_allowed_one_passes_in_every_combination() {
    let (mock, gw) = setup().await;
    for client in WIRES {
        for upstream in WIRES {
            for stream in [true, false] {
                let case = format!("{client:?} client, {upstream:?} upstream, stream {stream}");
                script(
                    &mock,
                    upstream,
                    stream,
                    &[denied_call(upstream), allowed_call(upstream)],
                );
                let (answer, raw) = ask(&gw, client, upstream, stream).await;
                assert_withheld(&raw, &answer);
                assert_eq!(answer.calls.len(), 1, "{case}: {answer:?}");
                let (id, name, arguments) = &answer.calls[0];
                assert!(id.contains(ALLOWED_ID), "{case}: {answer:?}");
                assert_eq!(name, ALLOWED, "{case}");
                let arguments: Value = serde_json::from_str(arguments).unwrap();
                assert_eq!(arguments, json!({"q": "fine"}), "{case}");
                assert!(
                    answer.text.starts_with("Let me check."),
                    "{case}: {answer:?}"
                );
                // A call is left: the answer still asks for tools.
                let expected = match client {
                    Wire::OpenAi => "tool_calls",
                    Wire::Anthropic => "tool_use",
                };
                assert_eq!(answer.finish, expected, "{case}");
                if stream && client == upstream {
                    // Pass-through until the first byte the withheld call affects.
                    let upstream = upstream_bytes(upstream, &[denied_call(upstream)]);
                    let cut = upstream.find(DENIED_ID).unwrap();
                    let frame_start = upstream[..cut].rfind("\n\n").unwrap() + 2;
                    assert_eq!(&raw[..frame_start], &upstream[..frame_start], "{case}");
                }
            }
        }
    }
    gw.stop().await;
}

#[tokio::test]
async fn with_no_call_left_the_answer_ends_its_turn() {
    let (mock, gw) = setup().await;
    for client in WIRES {
        for upstream in WIRES {
            for stream in [true, false] {
                let case = format!("{client:?} client, {upstream:?} upstream, stream {stream}");
                script(&mock, upstream, stream, &[denied_call(upstream)]);
                let (answer, raw) = ask(&gw, client, upstream, stream).await;
                assert_withheld(&raw, &answer);
                assert!(answer.calls.is_empty(), "{case}: {answer:?}");
                let expected = match client {
                    Wire::OpenAi => "stop",
                    Wire::Anthropic => "end_turn",
                };
                assert_eq!(answer.finish, expected, "{case}: {raw}");
            }
        }
    }
    gw.stop().await;
}

#[tokio::test]
async fn a_list_that_denies_nothing_in_the_answer_leaves_the_bytes_as_the_upstream_sent_them() {
    let (mock, gw) = setup().await;
    for wire in WIRES {
        // Streamed: the upstream's frames exactly (the OpenAI client did not ask for usage,
        // so the usage-only chunk is left out, as on any route).
        script(&mock, wire, true, &[allowed_call(wire)]);
        let (answer, raw) = ask(&gw, wire, wire, true).await;
        let mut expected = upstream_bytes(wire, &[allowed_call(wire)]);
        if wire == Wire::OpenAi {
            let usage = stream_frames(wire, &[allowed_call(wire)]);
            let usage = String::from_utf8(usage[usage.len() - 2].to_bytes().to_vec()).unwrap();
            expected = expected.replace(&usage, "");
        }
        assert_eq!(raw, expected, "{wire:?}");
        assert_eq!(answer.calls.len(), 1);

        // Complete: the upstream's body exactly.
        script(&mock, wire, false, &[allowed_call(wire)]);
        let (_, raw) = ask(&gw, wire, wire, false).await;
        let sent: Value = serde_json::from_str(&raw).unwrap();
        assert_eq!(sent, complete_body(wire, &[allowed_call(wire)]), "{wire:?}");
        assert_eq!(raw, complete_body(wire, &[allowed_call(wire)]).to_string());
    }
    gw.stop().await;
}

#[tokio::test]
async fn the_mocks_own_tool_calls_are_withheld_too() {
    // Without a scripted reply the mock calls the first tool offered, `[tools2]` both.
    let (_mock, gw) = setup().await;
    let body = json!({"model": "guarded-openai", "stream": true,
    "messages": [{"role": "user", "content": "[tools2] go"}],
    "tools": [
        {"type": "function", "function": {"name": "shell_run", "parameters": {"type": "object"}}},
        {"type": "function", "function": {"name": ALLOWED, "parameters": {"type": "object"}}},
    ]});
    let (status, _, raw) = post(&gw, "/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{raw}");
    let s = parse_openai_stream(&raw);
    assert_eq!(s.tool_calls.len(), 1, "{raw}");
    assert_eq!(s.tool_calls[0].1, ALLOWED);
    assert!(s.text.contains("`shell_run`"), "{raw}");
    assert_eq!(raw.matches("shell_run").count(), 1, "{raw}");
    gw.stop().await;
}

#[tokio::test]
async fn a_keys_own_list_withholds_calls_on_any_route_and_joins_the_routes() {
    let (mock, gw) = setup().await;
    let created: Value = client()
        .post(gw.at("/admin/keys"))
        .bearer_auth(MASTER_KEY)
        .json(&json!({"name": "no lookups", "tools_denied": ["look*"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = created["key"].as_str().unwrap().to_owned();
    let body = |model: &str| {
        json!({"model": model, "messages": [{"role": "user", "content": "check the disk"}],
        "tools": [{"type": "function", "function": {"name": ALLOWED, "parameters": {"type": "object"}}}]})
    };
    let ask_as = |bearer: String, model: &'static str| {
        let gw_url = gw.at("/v1/chat/completions");
        let body = body(model);
        async move {
            let r = client()
                .post(gw_url)
                .bearer_auth(bearer)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.text().await.unwrap()
        }
    };
    // A route without a list: the key's own list withholds the call, the master key gets it.
    script(&mock, Wire::OpenAi, false, &[allowed_call(Wire::OpenAi)]);
    let raw = ask_as(key.clone(), "openai/gpt-4o").await;
    assert!(!raw.contains(ALLOWED_ID), "{raw}");
    assert!(
        raw.contains(ALLOWED),
        "the notice names the withheld tool: {raw}"
    );
    script(&mock, Wire::OpenAi, false, &[allowed_call(Wire::OpenAi)]);
    let raw = ask_as(MASTER_KEY.to_owned(), "openai/gpt-4o").await;
    assert!(raw.contains(ALLOWED_ID), "{raw}");
    // A guarded route: both lists apply to the key.
    script(
        &mock,
        Wire::OpenAi,
        false,
        &[denied_call(Wire::OpenAi), allowed_call(Wire::OpenAi)],
    );
    let raw = ask_as(key, "guarded-openai").await;
    assert!(
        !raw.contains(ALLOWED_ID) && !raw.contains(DENIED_ID),
        "{raw}"
    );
    gw.stop().await;
}
