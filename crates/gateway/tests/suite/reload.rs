//! Reloading the configuration while serving: under continuous load no request fails or is
//! dropped, requests after the reload see the new routes and aliases, rate-limit counters and
//! open circuit breakers survive, and a request in flight finishes on the configuration it
//! started with. The master key, enterprise issuers, upstream client, breaker settings, server
//! limits and log batching change on reload; what needs a restart is named on every reload.

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

/// A gateway file with `extra` blocks, a `slow` route to a model that answers after
/// `slow_ms`, and routes whose first targets fail.
fn settings_yaml(db: &str, mock: &MockUpstream, slow_ms: u64, extra: &str) -> String {
    format!(
        r#"
database: {{url: "{db}"}}
log: {{flush_interval_ms: 5}}
{extra}
providers:
  openai:
    api_key: sk-mock-openai
    base_url: {openai}
  anthropic:
    api_key: sk-ant-mock
    base_url: {anthropic}
routes:
  slow:
    targets: [openai/mock-slow-{slow_ms}]
  flaky:
    targets: [openai/mock-error-500, anthropic/claude-sonnet-4-5]
  shaky:
    targets: [openai/mock-error-502, anthropic/claude-sonnet-4-5]
"#,
        openai = mock.openai_base_url(),
        anthropic = mock.anthropic_base_url(),
    )
}

/// Sends `body` to the chat endpoint with `key`; the status and the body.
async fn chat_with(gw: &TestGateway, key: &str, body: &Value) -> (u16, String) {
    let r = client()
        .post(gw.at("/v1/chat/completions"))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

const NEXT_MASTER_KEY: &str = "next-master-key-9876543210";

#[tokio::test]
async fn a_reload_switches_the_master_key_at_once_and_a_request_in_flight_finishes() {
    let mock = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("gw.db").display());
    let file = |key: &str| settings_yaml(&db, &mock, 800, &format!("master_key: {key}"));
    let gw = TestGateway::start_config(config(&file(MASTER_KEY))).await;
    let (status, body) = chat_with(&gw, MASTER_KEY, &chat("flaky", false)).await;
    assert_eq!(status, 200, "{body}");

    // Clients keep calling with whichever key they hold while the key changes.
    let stop = Arc::new(AtomicBool::new(false));
    let reloaded = Arc::new(AtomicBool::new(false));
    let mut callers = Vec::new();
    for key in [MASTER_KEY, NEXT_MASTER_KEY] {
        let (url, stop, reloaded) = (gw.at("/v1/models"), stop.clone(), reloaded.clone());
        callers.push(tokio::spawn(async move {
            let http = client();
            let mut seen = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let after = reloaded.load(Ordering::SeqCst);
                let r = http.get(&url).bearer_auth(key).send().await.unwrap();
                seen.push((key, after, r.status().as_u16()));
            }
            seen
        }));
    }
    // A request that is authenticated before the change and answered after it.
    let in_flight = {
        let (url, body) = (gw.at("/v1/chat/completions"), chat("slow", false));
        tokio::spawn(async move {
            client()
                .post(url)
                .bearer_auth(MASTER_KEY)
                .json(&body)
                .send()
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let summary = gw
        .state
        .reload(&config(&file(NEXT_MASTER_KEY)))
        .await
        .unwrap();
    reloaded.store(true, Ordering::SeqCst);
    assert_eq!(summary.applied, ["master_key"], "{summary}");
    assert!(summary.needs_restart.is_empty(), "{summary}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::SeqCst);

    let answer = in_flight.await.unwrap();
    assert_eq!(answer.status(), 200, "the request in flight finishes");
    let (mut old_after, mut new_before) = (0, 0);
    for caller in callers {
        for (key, after, status) in caller.await.unwrap() {
            assert!(status == 200 || status == 401, "{key}: {status}");
            match (key == MASTER_KEY, after) {
                // Sent once the reload returned: only the new key is accepted.
                (true, true) => {
                    assert_eq!(status, 401, "the old key is refused after the reload");
                    old_after += 1;
                }
                (false, true) => assert_eq!(status, 200, "the new key works after the reload"),
                (false, false) => new_before += 1,
                (true, false) => {}
            }
        }
    }
    assert!(
        old_after > 0 && new_before > 0,
        "both keys were tried on both sides"
    );
    let (status, _) = chat_with(&gw, MASTER_KEY, &chat("flaky", false)).await;
    assert_eq!(status, 401);
    let (status, body) = chat_with(&gw, NEXT_MASTER_KEY, &chat("flaky", false)).await;
    assert_eq!(status, 200, "{body}");

    // A key removed from the file, with no generated key stored to fall back to, stays in
    // force until a restart, and the summary says so on every reload.
    for _ in 0..2 {
        let summary = gw
            .state
            .reload(&config(&settings_yaml(&db, &mock, 800, "")))
            .await
            .unwrap();
        assert_eq!(summary.needs_restart, ["master_key"], "{summary}");
        assert!(summary.applied.is_empty(), "{summary}");
        let (status, body) = chat_with(&gw, NEXT_MASTER_KEY, &chat("flaky", false)).await;
        assert_eq!(status, 200, "{body}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn a_lower_first_byte_timeout_applies_to_requests_dispatched_after_the_reload() {
    let mock = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("gw.db").display());
    let file = |first_byte_ms: u64| {
        let upstream = format!(
            "master_key: {MASTER_KEY}\nupstream: {{first_byte_timeout_ms: {first_byte_ms}, \
             max_idle_per_host: 4}}"
        );
        settings_yaml(&db, &mock, 700, &upstream)
    };
    let gw = TestGateway::start_config(config(&file(10_000))).await;
    let (status, body) = chat_with(&gw, MASTER_KEY, &chat("slow", false)).await;
    assert_eq!(status, 200, "{body}");

    // A stream answered before the reload and still running after it.
    mock.push_reply(slow_stream(
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
    // Sent before the reload: it keeps the client it started with.
    let in_flight = {
        let (url, body) = (gw.at("/v1/chat/completions"), chat("slow", false));
        tokio::spawn(async move {
            let r = client()
                .post(url)
                .bearer_auth(MASTER_KEY)
                .json(&body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let summary = gw.state.reload(&config(&file(200))).await.unwrap();
    // The routes' default first-byte timeout is the upstream's, so their policies change too.
    assert_eq!(summary.applied, ["failover", "upstream"], "{summary}");
    assert!(summary.needs_restart.is_empty(), "{summary}");
    let (status, body) = in_flight.await.unwrap();
    assert_eq!(
        status, 200,
        "the request in flight keeps its client: {body}"
    );
    let body = stream.text().await.unwrap();
    let parsed = parse_openai_stream(&body);
    assert_eq!(parsed.text, "one two three four five", "{body}");
    assert!(parsed.done, "the stream ends whole: {body}");

    let (status, body) = chat_with(&gw, MASTER_KEY, &chat("slow", false)).await;
    assert_eq!(status, 504, "{body}");
    assert!(body.contains("did not answer within 200 ms"), "{body}");
    // Other upstreams answer through the new client.
    let (status, body) = chat_with(&gw, MASTER_KEY, &chat("flaky", false)).await;
    assert_eq!(status, 200, "{body}");
    gw.stop().await;
}

#[tokio::test]
async fn new_breaker_settings_apply_while_an_open_breaker_stays_open() {
    let mock = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("gw.db").display());
    let file = |failures: u32, open_for: &str| {
        let breaker = format!(
            "master_key: {MASTER_KEY}\ncircuit_breaker: {{failures: {failures}, open_for: {open_for}}}"
        );
        settings_yaml(&db, &mock, 10, &breaker)
    };
    let gw = TestGateway::start_config(config(&file(2, "10m"))).await;
    let attempts = |h: &reqwest::header::HeaderMap| h["x-portcullis-attempts"].clone();
    // `flaky`'s first target fails twice: its breaker opens. `shaky`'s fails once.
    for _ in 0..2 {
        let (status, h, body) = post(&gw, "/v1/chat/completions", &chat("flaky", false)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(attempts(&h), "2");
    }
    let (_, h, _) = post(&gw, "/v1/chat/completions", &chat("shaky", false)).await;
    assert_eq!(attempts(&h), "2");

    let summary = gw.state.reload(&config(&file(2, "20m"))).await.unwrap();
    assert_eq!(summary.applied, ["failover.circuit_breaker"], "{summary}");
    let summary = gw.state.reload(&config(&file(1, "20m"))).await.unwrap();
    assert_eq!(summary.applied, ["failover.circuit_breaker"], "{summary}");

    // The open breaker is still open.
    let (_, h, _) = post(&gw, "/v1/chat/completions", &chat("flaky", false)).await;
    assert_eq!(attempts(&h), "1", "the open breaker survived the reload");
    // `shaky`'s one failure already meets the new threshold of one: its next failure opens
    // the breaker, and the request after that skips the target.
    let (_, h, _) = post(&gw, "/v1/chat/completions", &chat("shaky", false)).await;
    assert_eq!(attempts(&h), "2");
    let (_, h, _) = post(&gw, "/v1/chat/completions", &chat("shaky", false)).await;
    assert_eq!(attempts(&h), "1", "the new threshold applies");

    let breakers: Value = client()
        .get(gw.at("/admin/circuit-breakers"))
        .bearer_auth(MASTER_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(breakers["failure_threshold"], 1, "{breakers}");
    assert_eq!(breakers["open_for_ms"], 20 * 60 * 1000, "{breakers}");
    gw.stop().await;
}

/// Reads from `tcp` until a whole response head arrived or the connection closed.
async fn response_head(tcp: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = tcp.read(&mut buf).await.unwrap_or(0);
        got.extend_from_slice(&buf[..n]);
        if n == 0 || got.windows(4).any(|w| w == b"\r\n\r\n") {
            return String::from_utf8_lossy(&got).into_owned();
        }
    }
}

#[tokio::test]
async fn server_limits_changed_by_a_reload_apply_to_connections_accepted_after_it() {
    use tokio::io::AsyncWriteExt;
    let mock = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("gw.db").display());
    let file = |server: &str| {
        settings_yaml(
            &db,
            &mock,
            10,
            &format!("master_key: {MASTER_KEY}\nserver: {{shutdown_grace_seconds: 5{server}}}"),
        )
    };
    let gw = TestGateway::start_config(config(&file(""))).await;
    let addr = gw.url.trim_start_matches("http://").to_owned();
    let healthz = b"GET /healthz HTTP/1.1\r\nhost: gateway\r\n\r\n";

    // Before: two connections at once are fine.
    let mut a = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut b = tokio::net::TcpStream::connect(&addr).await.unwrap();
    for tcp in [&mut a, &mut b] {
        tcp.write_all(healthz).await.unwrap();
        assert!(response_head(tcp).await.starts_with("HTTP/1.1 200"));
    }
    drop((a, b));

    let summary = gw
        .state
        .reload(&config(&file(
            ", header_read_timeout: 300ms, max_connections: 1",
        )))
        .await
        .unwrap();
    assert_eq!(summary.applied, ["server"], "{summary}");
    assert!(summary.needs_restart.is_empty(), "{summary}");
    tokio::time::sleep(Duration::from_millis(100)).await;

    // A request head that never ends is cut off at the new header timeout.
    let mut stalled = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stalled
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: gateway\r\n")
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(5), response_head(&mut stalled))
        .await
        .expect("the connection is closed at the new header timeout");
    assert!(started.elapsed() >= Duration::from_millis(200));
    drop(stalled);
    tokio::time::sleep(Duration::from_millis(100)).await;

    // One connection at a time now: a second one is refused while the first is open.
    let mut first = tokio::net::TcpStream::connect(&addr).await.unwrap();
    first.write_all(healthz).await.unwrap();
    assert!(response_head(&mut first).await.starts_with("HTTP/1.1 200"));
    let mut second = tokio::net::TcpStream::connect(&addr).await.unwrap();
    second.write_all(healthz).await.unwrap();
    let head = response_head(&mut second).await;
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    drop((first, second));
    gw.stop().await;
}

#[tokio::test]
async fn a_shorter_log_flush_interval_applies_to_the_next_batch() {
    let mock = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("gw.db").display());
    let file = |log: &str| {
        settings_yaml(&db, &mock, 10, &format!("master_key: {MASTER_KEY}"))
            .replace("log: {flush_interval_ms: 5}", log)
    };
    // Records would linger ten minutes for their batch to fill.
    let gw = TestGateway::start_config(config(&file(
        "log: {flush_interval_ms: 600000, batch_size: 100}",
    )))
    .await;
    let summary = gw
        .state
        .reload(&config(&file(
            "log: {flush_interval_ms: 5, batch_size: 100}",
        )))
        .await
        .unwrap();
    assert_eq!(summary.applied, ["log.flush_interval"], "{summary}");
    let (status, body) = chat_with(&gw, MASTER_KEY, &chat("flaky", false)).await;
    assert_eq!(status, 200, "{body}");
    let started = tokio::time::Instant::now();
    while gw.logs("", 0).await.is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the record is written at the new interval"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The queue's capacity needs a restart, and is named until then.
    for _ in 0..2 {
        let summary = gw
            .state
            .reload(&config(&file(
                "log: {flush_interval_ms: 5, batch_size: 100, queue_capacity: 10}",
            )))
            .await
            .unwrap();
        assert_eq!(summary.needs_restart, ["log.queue_capacity"], "{summary}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn a_new_vault_key_is_named_on_every_reload_while_the_poll_interval_applies() {
    let mock = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("gw.db").display());
    let before = settings_yaml(&db, &mock, 10, &format!("master_key: {MASTER_KEY}"));
    let gw = TestGateway::start_config(config(&before)).await;
    let after = settings_yaml(
        &db,
        &mock,
        10,
        &format!(
            "master_key: {MASTER_KEY}\nsecret_key: MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n\
             identity: {{poll_interval: 7s}}"
        ),
    );
    let summary = gw.state.reload(&config(&after)).await.unwrap();
    assert_eq!(summary.applied, ["identity.poll_interval"], "{summary}");
    assert_eq!(summary.needs_restart, ["secret_key"], "{summary}");
    assert_eq!(
        gw.state.auth.directory().unwrap().poll_interval(),
        Duration::from_secs(7)
    );
    for _ in 0..2 {
        let summary = gw.state.reload(&config(&after)).await.unwrap();
        assert_eq!(summary.needs_restart, ["secret_key"], "{summary}");
        assert!(summary.applied.is_empty(), "{summary}");
    }
    let (status, body) = chat_with(&gw, MASTER_KEY, &chat("flaky", false)).await;
    assert_eq!(status, 200, "{body}");
    gw.stop().await;
}

#[tokio::test]
async fn enterprise_issuers_added_or_removed_by_a_reload_are_trusted_or_refused_at_once() {
    use portcullis_test_support::{MockAlg, MockIssuer};
    let kc = MockIssuer::start().await;
    let mock = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("gw.db").display());
    let without = settings_yaml(&db, &mock, 10, &format!("master_key: {MASTER_KEY}"));
    let with = settings_yaml(
        &db,
        &mock,
        10,
        &format!(
            "master_key: {MASTER_KEY}\nidentity:\n  issuers:\n    - issuer: {}\n      \
             audience: portcullis\n      claims: {{user: preferred_username}}",
            kc.issuer()
        ),
    );
    let gw = TestGateway::start_config(config(&without)).await;
    let token = kc.mint(MockAlg::RS256, &kc.keycloak_claims("portcullis"));
    let (status, body) = chat_with(&gw, &token, &chat("flaky", false)).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body.contains("no enterprise issuer is configured"),
        "{body}"
    );

    let summary = gw.state.reload(&config(&with)).await.unwrap();
    assert_eq!(summary.applied, ["identity.issuers"], "{summary}");
    assert!(summary.needs_restart.is_empty(), "{summary}");
    let (status, body) = chat_with(&gw, &token, &chat("flaky", false)).await;
    assert_eq!(status, 200, "the new issuer is trusted: {body}");
    let (status, body) = chat_with(&gw, MASTER_KEY, &chat("flaky", false)).await;
    assert_eq!(status, 200, "the master key is kept: {body}");

    let summary = gw.state.reload(&config(&without)).await.unwrap();
    assert_eq!(summary.applied, ["identity.issuers"], "{summary}");
    let (status, body) = chat_with(&gw, &token, &chat("flaky", false)).await;
    assert_eq!(status, 401, "the removed issuer is refused: {body}");
    gw.stop().await;
}
