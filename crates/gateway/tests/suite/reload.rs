//! Reloading the configuration while serving: under continuous load no request fails or is
//! dropped, requests after the reload see the new routes and aliases, rate-limit counters and
//! open circuit breakers survive, and a request in flight finishes on the configuration it
//! started with.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::common::*;
use portcullis_config::{Config, Source};
use portcullis_test_support::{MockUpstream, Reply, SseFrame, StreamEnd};
use serde_json::{Value, json};

fn chat(model: &str, stream: bool) -> Value {
    json!({"model": model, "max_tokens": 16, "stream": stream,
           "messages": [{"role": "user", "content": "hello"}]})
}

/// The whole file: `smart` and `fast` go to OpenAI before the reload and to Anthropic after;
/// `counted` keeps its rate rule; `smart`'s rule changes; `flaky`'s breaker settings stay.
fn yaml(db: &str, mock: &MockUpstream, streamer: &MockUpstream, after: bool) -> String {
    let (smart, fast, smart_limit, slow) = if after {
        (
            "anthropic/claude-sonnet-4-5",
            "anthropic/claude-haiku-4-5",
            50_000,
            "anthropic/claude-sonnet-4-5",
        )
    } else {
        (
            "openai/gpt-4o",
            "openai/gpt-4o-mini",
            100_000,
            "streamer/gpt-4o",
        )
    };
    format!(
        r#"
master_key: {MASTER_KEY}
database: {{url: "{db}"}}
log: {{flush_interval_ms: 5}}
circuit_breaker: {{failures: 2, open_for: 10m}}
providers:
  openai:
    api_key: sk-mock-openai
    base_url: {openai}
  anthropic:
    api_key: sk-ant-mock
    base_url: {anthropic}
  streamer:
    kind: openai
    api_key: sk-mock-openai
    base_url: {streamer}
routes:
  smart:
    targets: [{smart}]
  counted:
    targets: [openai/gpt-4o-mini]
  flaky:
    targets: [openai/mock-error-500, anthropic/claude-sonnet-4-5]
  slow:
    targets: [{slow}]
aliases:
  fast: {fast}
limits:
  - {{id: smart-cap, scope: route, match: smart, requests: {smart_limit}, window: 1h}}
  - {{id: counted-cap, scope: route, match: counted, requests: 100, window: 1h}}
"#,
        openai = mock.openai_base_url(),
        anthropic = mock.anthropic_base_url(),
        streamer = streamer.openai_base_url(),
    )
}

fn config(text: &str) -> Config {
    portcullis_config::from_yaml(text, Source::Environment, &HashMap::new())
        .unwrap_or_else(|e| panic!("test config is valid: {e}\n{text}"))
}

/// An OpenAI stream of `pieces`, one frame every `delay`.
fn slow_stream(pieces: &[&str], delay: Duration) -> Reply {
    let mut frames: Vec<SseFrame> = pieces
        .iter()
        .map(|p| {
            SseFrame::data(
                json!({"id": "c1", "object": "chat.completion.chunk", "created": 1,
                       "model": "gpt-4o", "choices": [{"index": 0,
                       "delta": {"role": "assistant", "content": p}, "finish_reason": null}]})
                .to_string(),
            )
        })
        .collect();
    frames.push(SseFrame::data(
        json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
               "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        .to_string(),
    ));
    frames.push(SseFrame::data("[DONE]"));
    Reply::Sse {
        headers: Vec::new(),
        frames,
        frame_delay: delay,
        then: StreamEnd::Complete,
    }
}

/// What one request of the load saw.
struct Seen {
    status: u16,
    provider: String,
    after_reload: bool,
}

#[tokio::test]
async fn a_reload_under_load_loses_no_request_and_keeps_counters_breakers_and_streams() {
    let mock = MockUpstream::start().await;
    let streamer = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("gw.db").display());
    let gw = TestGateway::start_config(config(&yaml(&db, &mock, &streamer, false))).await;

    // Before: a rate counter with three requests on it, and `flaky`'s first target's breaker
    // open.
    for expected in ["99", "98", "97"] {
        let (status, h, body) = post(&gw, "/v1/chat/completions", &chat("counted", false)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(h["ratelimit-remaining"], expected);
    }
    for _ in 0..2 {
        let (status, h, body) = post(&gw, "/v1/chat/completions", &chat("flaky", false)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(h["x-portcullis-attempts"], "2");
    }
    let (_, h, _) = post(&gw, "/v1/chat/completions", &chat("flaky", false)).await;
    assert_eq!(h["x-portcullis-attempts"], "1", "the breaker is open");
    let (_, h, _) = post(&gw, "/v1/chat/completions", &chat("smart", false)).await;
    assert_eq!(h["x-portcullis-provider"], "openai");
    assert_eq!(h["ratelimit-limit"], "100000");

    // A stream that starts before the reload and is still running after it.
    streamer.push_reply(slow_stream(
        &["one ", "two ", "three ", "four ", "five"],
        Duration::from_millis(150),
    ));
    let stream = client()
        .post(gw.at("/v1/chat/completions"))
        .bearer_auth(MASTER_KEY)
        .json(&chat("slow", true))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);

    // Four clients sending without pause.
    let url = gw.at("/v1/chat/completions");
    let stop = Arc::new(AtomicBool::new(false));
    let reloaded = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for i in 0..4 {
        let (url, stop, reloaded) = (url.clone(), stop.clone(), reloaded.clone());
        clients.push(tokio::spawn(async move {
            let model = if i % 2 == 0 { "smart" } else { "fast" };
            let http = client();
            let mut seen = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let after_reload = reloaded.load(Ordering::SeqCst);
                let r = http
                    .post(&url)
                    .bearer_auth(MASTER_KEY)
                    .json(&chat(model, false))
                    .send()
                    .await
                    .expect("no request is dropped");
                let status = r.status().as_u16();
                let provider = r
                    .headers()
                    .get("x-portcullis-provider")
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default();
                r.text().await.expect("the answer arrives whole");
                seen.push(Seen {
                    status,
                    provider,
                    after_reload,
                });
            }
            seen
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let summary = gw
        .state
        .reload(&config(&yaml(&db, &mock, &streamer, true)))
        .await
        .unwrap();
    reloaded.store(true, Ordering::SeqCst);
    assert_eq!(summary.applied, ["routes", "aliases", "limits"]);
    assert!(summary.needs_restart.is_empty(), "{summary}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);

    let mut before = 0;
    let mut after = 0;
    for client in clients {
        for seen in client.await.unwrap() {
            assert_eq!(seen.status, 200, "no request fails");
            if seen.after_reload {
                after += 1;
                assert_eq!(
                    seen.provider, "anthropic",
                    "requests after the reload see it"
                );
            } else {
                before += 1;
            }
        }
    }
    assert!(
        before > 0 && after > 0,
        "load ran on both sides: {before} / {after}"
    );

    // The stream started before the reload finishes on its old target.
    assert_eq!(stream.headers()["x-portcullis-provider"], "streamer");
    let body = stream.text().await.unwrap();
    let parsed = parse_openai_stream(&body);
    assert_eq!(parsed.text, "one two three four five", "{body}");
    assert!(parsed.done, "{body}");
    // … and a new one on the route goes to the new target.
    let (status, h, body) = post(&gw, "/v1/chat/completions", &chat("slow", true)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(h["x-portcullis-provider"], "anthropic");

    // The changed rule is in force; the unchanged one kept its count.
    let (_, h, _) = post(&gw, "/v1/chat/completions", &chat("smart", false)).await;
    assert_eq!(h["x-portcullis-provider"], "anthropic");
    assert_eq!(h["ratelimit-limit"], "50000");
    let (_, h, _) = post(&gw, "/v1/chat/completions", &chat("counted", false)).await;
    assert_eq!(
        h["ratelimit-remaining"], "96",
        "the counter survived the reload"
    );

    // The open breaker survived too: the failing target is still skipped.
    let hits = mock.hits();
    let (status, h, _) = post(&gw, "/v1/chat/completions", &chat("flaky", false)).await;
    assert_eq!(status, 200);
    assert_eq!(h["x-portcullis-attempts"], "1", "the breaker is still open");
    assert_eq!(mock.hits(), hits + 1);

    gw.stop().await;
}

#[tokio::test]
async fn a_change_to_listen_or_database_is_named_and_left_as_it_was() {
    let mock = MockUpstream::start().await;
    let streamer = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("gw.db").display());
    let gw = TestGateway::start_config(config(&yaml(&db, &mock, &streamer, false))).await;
    let other_db = format!("sqlite://{}", dir.path().join("other.db").display());
    let mut next = config(&yaml(&other_db, &mock, &streamer, true));
    next.listen = "127.0.0.1:1".parse().unwrap();
    let summary = gw.state.reload(&next).await.unwrap();
    assert_eq!(summary.needs_restart, ["listen", "database"]);
    assert_eq!(summary.applied, ["routes", "aliases", "limits"]);
    // The rest applied; the gateway keeps serving where it was.
    let (status, h, body) = post(&gw, "/v1/chat/completions", &chat("smart", false)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(h["x-portcullis-provider"], "anthropic");
    // The same file again: the restart-only changes are still named, nothing else.
    let summary = gw.state.reload(&next).await.unwrap();
    assert_eq!(summary.needs_restart, ["listen", "database"]);
    assert!(summary.applied.is_empty(), "{summary}");
    gw.stop().await;
}
