//! Retries, timeouts, failover across providers and dialects, load balancing and circuit
//! breakers, over real HTTP against mock upstreams.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use crate::common::*;
use portcullis_test_support::{MockUpstream, Reply};
use serde_json::{Value, json};

fn chat(model: &str, text: &str, stream: bool) -> Value {
    json!({"model": model, "max_tokens": 64, "stream": stream,
           "messages": [{"role": "user", "content": text}]})
}

fn openai_error(status: u16, kind: &str) -> Reply {
    Reply::json(
        status,
        json!({"error": {"message": "try later", "type": kind, "param": null, "code": null}}),
    )
}

/// A primary that always fails (an OpenAI-dialect upstream on `bad`) backed by an Anthropic
/// target on `good`.
fn failover_yaml(bad: &MockUpstream, good: &MockUpstream, extra_route: &str) -> String {
    format!(
        r#"
providers:
  openai:
    api_key: sk-mock-openai
    base_url: {bad}
  anthropic:
    api_key: sk-ant-mock
    base_url: {good}
routes:
  smart:
    targets:
      - openai/mock-error-500
      - anthropic/claude-sonnet-4-5
{extra_route}
"#,
        bad = bad.openai_base_url(),
        good = good.anthropic_base_url(),
    )
}

#[tokio::test]
async fn a_retryable_failure_is_retried_and_each_attempt_logged() {
    let mock = MockUpstream::start().await;
    mock.push_reply(openai_error(503, "server_error"));
    mock.push_reply(Reply::Json {
        status: 429,
        headers: vec![("retry-after".into(), "0.05".into())],
        body: json!({"error": {"message": "slow down", "type": "rate_limit_error", "param": null, "code": null}}),
    });
    let yaml = format!(
        "{}retry: {{max_attempts: 3, delay: 10ms}}\n",
        providers_yaml(&mock)
    );
    let gw = TestGateway::start(&yaml).await;
    let (status, headers, body) = post(
        &gw,
        "/v1/chat/completions",
        &chat("openai/gpt-4o-mini", "third time lucky", false),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-portcullis-attempts"], "3");
    assert_eq!(mock.hits(), 3);
    let rec = gw
        .log_of(headers["x-portcullis-request-id"].to_str().unwrap())
        .await;
    assert_eq!(rec["attempts"], 3);
    let attempts: Value = serde_json::from_str(rec["attempt_log"].as_str().unwrap()).unwrap();
    let statuses: Vec<u64> = attempts
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, vec![503, 429, 200]);
    assert_eq!(attempts[0]["target"], "openai/gpt-4o-mini");
}

#[tokio::test]
async fn caller_errors_are_never_retried() {
    let mock = MockUpstream::start().await;
    let yaml = format!(
        "{}retry: {{max_attempts: 3, delay: 1ms}}\n",
        providers_yaml(&mock)
    );
    let gw = TestGateway::start(&yaml).await;
    let (status, headers, _) = post(
        &gw,
        "/v1/chat/completions",
        &chat("openai/mock-error-400", "bad", false),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(mock.hits(), 1);
    let rec = gw
        .log_of(headers["x-portcullis-request-id"].to_str().unwrap())
        .await;
    assert_eq!(rec["attempts"], 1);
}

#[tokio::test]
async fn retries_follow_the_cloudflare_headers() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&providers_yaml(&mock)).await;
    let started = Instant::now();
    let r = client()
        .post(gw.at("/v1/chat/completions"))
        .bearer_auth(MASTER_KEY)
        .header("cf-aig-max-attempts", "4")
        .header("cf-aig-retry-delay", "20")
        .header("cf-aig-backoff", "constant")
        .json(&chat("openai/mock-error-503", "down", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["x-portcullis-attempts"], "4");
    assert_eq!(mock.hits(), 4);
    assert!(
        started.elapsed() >= Duration::from_millis(30),
        "waits happened"
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upstream_unavailable", "{body}");

    let r = client()
        .post(gw.at("/v1/chat/completions"))
        .bearer_auth(MASTER_KEY)
        .header("x-portcullis-max-attempts", "9")
        .json(&chat("openai/gpt-4o-mini", "x", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "out-of-range header values are refused");
}

#[tokio::test]
async fn a_failing_target_fails_over_to_another_provider_and_dialect() {
    let bad = MockUpstream::start().await;
    let good = MockUpstream::start().await;
    let gw = TestGateway::start(&failover_yaml(&bad, &good, "")).await;

    // OpenAI client, OpenAI primary failing, Anthropic fallback answering: translated.
    let (status, headers, body) = post(
        &gw,
        "/v1/chat/completions",
        &chat("smart", "fail over please", false),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-portcullis-provider"], "anthropic");
    assert_eq!(headers["x-portcullis-model"], "claude-sonnet-4-5");
    assert_eq!(headers["x-portcullis-attempts"], "2");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert!(
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains("fail over please")
    );
    let rec = gw
        .log_of(headers["x-portcullis-request-id"].to_str().unwrap())
        .await;
    assert_eq!(rec["provider"], "anthropic");
    assert_eq!(rec["route"], "smart");

    // Streaming, Anthropic client: the fallback's stream is translated event by event.
    let (status, headers, body) =
        post(&gw, "/v1/messages", &chat("smart", "stream it", true)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-portcullis-provider"], "anthropic");
    let s = parse_anthropic_stream(&body);
    assert!(s.text.contains("stream it"), "{body}");
    assert_eq!(s.events.last().unwrap(), "message_stop");

    let (status, _, body) = post(
        &gw,
        "/v1/chat/completions",
        &chat("smart", "stream openai", true),
    )
    .await;
    assert_eq!(status, 200);
    let s = parse_openai_stream(&body);
    assert!(s.text.contains("stream openai") && s.done, "{body}");
    assert_eq!(bad.hits(), 3);
    assert_eq!(good.hits(), 3);
}

#[tokio::test]
async fn a_slow_first_byte_times_out_and_fails_over() {
    let slow = MockUpstream::start().await;
    let good = MockUpstream::start().await;
    let yaml = format!(
        r#"
providers:
  openai:
    api_key: sk-mock-openai
    base_url: {slow}
  anthropic:
    api_key: sk-ant-mock
    base_url: {good}
routes:
  quick:
    timeouts: {{first_byte: 150ms}}
    targets: [openai/mock-slow-3000, anthropic/claude-haiku-4-5]
"#,
        slow = slow.openai_base_url(),
        good = good.anthropic_base_url(),
    );
    let gw = TestGateway::start(&yaml).await;
    let started = Instant::now();
    let (status, headers, body) =
        post(&gw, "/v1/chat/completions", &chat("quick", "hurry", false)).await;
    assert_eq!(status, 200, "{body}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(headers["x-portcullis-provider"], "anthropic");

    // Per request, without a fallback: 504 in the caller's dialect.
    let r = client()
        .post(gw.at("/v1/messages"))
        .bearer_auth(MASTER_KEY)
        .header("cf-aig-request-timeout", "100")
        .json(&chat("openai/mock-slow-3000", "hurry", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 504);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn a_stream_past_its_total_time_limit_ends_with_an_error_event() {
    let mock = MockUpstream::start_with(portcullis_test_support::MockOptions {
        stream_frame_delay: Duration::from_millis(100),
        ..Default::default()
    })
    .await;
    let yaml = format!("{}timeouts: {{total: 350ms}}\n", providers_yaml(&mock));
    let gw = TestGateway::start(&yaml).await;
    let (status, headers, body) = post(
        &gw,
        "/v1/chat/completions",
        &chat(
            "openai/gpt-4o-mini",
            "a long answer with many many words that takes a while to stream",
            true,
        ),
    )
    .await;
    assert_eq!(status, 200);
    let s = parse_openai_stream(&body);
    let err = s.error.expect("an error event ends the stream");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("total time limit"),
        "{err}"
    );
    let rec = gw
        .log_of(headers["x-portcullis-request-id"].to_str().unwrap())
        .await;
    assert_eq!(rec["status"], 504, "{rec}");
}

#[tokio::test]
async fn nothing_is_retried_once_a_stream_has_started() {
    let mock = MockUpstream::start().await;
    let yaml = format!(
        "{}retry: {{max_attempts: 3, delay: 1ms}}\n",
        providers_yaml(&mock)
    );
    let gw = TestGateway::start(&yaml).await;
    let (status, headers, body) = post(
        &gw,
        "/v1/chat/completions",
        &chat("openai/mock-drop-midstream", "cut", true),
    )
    .await;
    assert_eq!(status, 200);
    assert!(parse_openai_stream(&body).error.is_some(), "{body}");
    assert_eq!(headers["x-portcullis-attempts"], "1");
    assert_eq!(mock.hits(), 1);
}

#[tokio::test]
async fn an_open_breaker_sheds_traffic_and_is_visible_on_the_admin_api() {
    let bad = MockUpstream::start().await;
    let good = MockUpstream::start().await;
    let yaml = format!(
        "{}circuit_breaker: {{failures: 2, open_for: 1m}}\n",
        failover_yaml(&bad, &good, "")
    );
    let gw = TestGateway::start(&yaml).await;
    for _ in 0..2 {
        let (status, headers, _) =
            post(&gw, "/v1/chat/completions", &chat("smart", "x", false)).await;
        assert_eq!(status, 200);
        assert_eq!(headers["x-portcullis-attempts"], "2");
    }
    assert_eq!(bad.hits(), 2);
    for _ in 0..3 {
        let (status, headers, _) =
            post(&gw, "/v1/chat/completions", &chat("smart", "x", false)).await;
        assert_eq!(status, 200);
        assert_eq!(
            headers["x-portcullis-attempts"], "1",
            "the open target is skipped"
        );
    }
    assert_eq!(bad.hits(), 2, "no traffic to the open target");

    let r = client()
        .get(gw.at("/admin/circuit-breakers"))
        .bearer_auth(MASTER_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let open = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["target"] == "openai/mock-error-500")
        .expect("the failing target is listed");
    assert_eq!(open["state"], "open");
    assert_eq!(open["times_opened"], 1);
    assert!(open["retry_in_ms"].as_u64().unwrap() > 50_000);

    let r = client()
        .get(gw.at("/admin/circuit-breakers"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // A model with a single target whose breaker is open answers 503 at once.
    for _ in 0..2 {
        post(
            &gw,
            "/v1/chat/completions",
            &chat("openai/mock-error-502", "x", false),
        )
        .await;
    }
    let before = bad.hits();
    let (status, headers, body) = post(
        &gw,
        "/v1/chat/completions",
        &chat("openai/mock-error-502", "x", false),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert!(headers.contains_key("retry-after"));
    assert!(body.contains("out of rotation"), "{body}");
    assert_eq!(bad.hits(), before);
}

#[tokio::test]
async fn weighted_routes_spread_traffic_by_weight() {
    let a = MockUpstream::start().await;
    let b = MockUpstream::start().await;
    let yaml = format!(
        r#"
providers:
  openai:
    api_key: sk-mock-openai
    base_url: {a}
  backup:
    kind: custom
    api_key: sk-mock-openai
    base_url: {b}
routes:
  spread:
    strategy: weighted
    targets:
      - {{model: openai/gpt-4o-mini, weight: 1}}
      - {{model: backup/gpt-4o-mini, weight: 3}}
"#,
        a = a.openai_base_url(),
        b = b.openai_base_url(),
    );
    let gw = TestGateway::start(&yaml).await;
    for _ in 0..200 {
        let (status, _, _) = post(&gw, "/v1/chat/completions", &chat("spread", "x", false)).await;
        assert_eq!(status, 200);
    }
    let share = b.hits() as f64 / 200.0;
    assert_eq!(a.hits() + b.hits(), 200);
    assert!((0.6..0.9).contains(&share), "backup served {share}");
}

async fn breaker_state(gw: &TestGateway, target: &str) -> Option<String> {
    let v: Value = client()
        .get(gw.at("/admin/circuit-breakers"))
        .bearer_auth(MASTER_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["target"] == target)
        .map(|b| b["state"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn a_breaker_opened_on_one_replica_sheds_on_every_replica_sharing_redis() {
    let bad = MockUpstream::start().await;
    let good = MockUpstream::start().await;
    // A provider name of this test's own: replicas of other tests share the Redis.
    let flaky = format!("flaky{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let target = format!("{flaky}/mock-error-500");
    let redis = std::env::var("PORTCULLIS_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let yaml = format!(
        r#"
redis: {{url: "{redis}"}}
circuit_breaker: {{failures: 2, open_for: 30s}}
providers:
  {flaky}:
    kind: openai
    api_key: sk-mock-openai
    base_url: {bad}
  anthropic:
    api_key: sk-ant-mock
    base_url: {good}
routes:
  smart:
    targets:
      - {target}
      - anthropic/claude-sonnet-4-5
"#,
        bad = bad.openai_base_url(),
        good = good.anthropic_base_url(),
    );
    let a = TestGateway::start(&yaml).await;
    let b = TestGateway::start(&yaml).await;

    for _ in 0..2 {
        let (status, headers, body) =
            post(&a, "/v1/chat/completions", &chat("smart", "hi", false)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(headers["x-portcullis-provider"], "anthropic");
    }
    assert_eq!(bad.hits(), 2);
    assert_eq!(breaker_state(&a, &target).await.as_deref(), Some("open"));

    // Replica B never saw the target fail; it learns of the open breaker within moments.
    let started = Instant::now();
    while breaker_state(&b, &target).await.as_deref() != Some("open") {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "replica B did not open its breaker"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, headers, _) = post(&b, "/v1/chat/completions", &chat("smart", "hi", false)).await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-portcullis-provider"], "anthropic");
    assert_eq!(headers["x-portcullis-attempts"], "1");
    assert_eq!(bad.hits(), 2, "replica B shed the failing target at once");
}
