//! Rate limits, concurrency limits and budgets over real HTTP: refusals in both dialects with
//! their headers, exactness under races, settlement with real usage, budgets that survive a
//! restart, and one limit shared by two replicas on Redis.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use crate::common::*;
use portcullis_test_support::MockUpstream;
use serde_json::{Value, json};

fn redis_url() -> String {
    std::env::var("PORTCULLIS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn chat(model: &str, max_tokens: u32) -> Value {
    json!({"model": model, "max_tokens": max_tokens,
           "messages": [{"role": "user", "content": "hello"}]})
}

/// A rule id no other test run shares (Redis counters outlive a test).
fn rule_id() -> String {
    format!("t-{}", uuid::Uuid::now_v7().simple())
}

#[tokio::test]
async fn a_request_limit_refuses_with_429_and_rate_limit_headers_in_each_dialect() {
    let mock = MockUpstream::start().await;
    let yaml = format!(
        "{}limits:\n  - {{scope: global, requests: 3, window: 1m}}\n",
        providers_yaml(&mock)
    );
    let gw = TestGateway::start(&yaml).await;
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let (status, h, _) = post(&gw, "/v1/chat/completions", &chat("gpt-4o-mini", 16)).await;
        assert_eq!(status, 200);
        assert_eq!(h["ratelimit-limit"], "3");
        remaining.push(h["ratelimit-remaining"].to_str().unwrap().to_owned());
    }
    assert_eq!(remaining, vec!["2", "1", "0"]);

    let (status, h, body) = post(&gw, "/v1/chat/completions", &chat("gpt-4o-mini", 16)).await;
    assert_eq!(status, 429);
    let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(h["ratelimit-remaining"], "0");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("3 requests"),
        "{v}"
    );

    let (status, _, body) = post(&gw, "/v1/messages", &chat("claude-haiku-4-5", 16)).await;
    assert_eq!(status, 429);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert_eq!(mock.hits(), 3, "refused requests never reach the upstream");

    let rec = gw.logs("status=429", 2).await;
    assert_eq!(rec.len(), 2, "refusals are logged");
}

#[tokio::test]
async fn racing_requests_never_exceed_the_limit() {
    let mock = MockUpstream::start().await;
    let yaml = format!(
        "{}limits:\n  - {{scope: model, match: gpt-4o-mini, requests: 10, window: 1h}}\n",
        providers_yaml(&mock)
    );
    let gw = Arc::new(TestGateway::start(&yaml).await);
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let gw = gw.clone();
        tasks.push(tokio::spawn(async move {
            post(&gw, "/v1/chat/completions", &chat("gpt-4o-mini", 8))
                .await
                .0
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            200 => ok += 1,
            429 => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(ok, 10);
    // Another model is not limited by that rule.
    let (status, _, _) = post(&gw, "/v1/chat/completions", &chat("gpt-4o", 8)).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn concurrency_limits_count_requests_in_flight() {
    let mock = MockUpstream::start().await;
    let yaml = format!(
        "{}limits:\n  - {{scope: global, concurrent: 2}}\n",
        providers_yaml(&mock)
    );
    let gw = Arc::new(TestGateway::start(&yaml).await);
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let gw = gw.clone();
        tasks.push(tokio::spawn(async move {
            post(
                &gw,
                "/v1/chat/completions",
                &chat("openai/mock-slow-400", 8),
            )
            .await
            .0
        }));
    }
    let statuses: Vec<u16> = futures_util::future::join_all(tasks)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 4);
    // Once they finished, their slots are free again.
    let (status, _, _) = post(&gw, "/v1/chat/completions", &chat("gpt-4o-mini", 8)).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn token_limits_are_settled_with_real_usage() {
    let mock = MockUpstream::start().await;
    // Each request estimates ~300 tokens up front but uses a few dozen: without settlement
    // the fourth would be refused.
    let yaml = format!(
        "{}limits:\n  - {{scope: global, tokens: 1000, window: 1h}}\n",
        providers_yaml(&mock)
    );
    let gw = TestGateway::start(&yaml).await;
    for i in 0..10 {
        let (status, _, body) = post(&gw, "/v1/chat/completions", &chat("gpt-4o-mini", 300)).await;
        assert_eq!(status, 200, "request {i}: {body}");
        // Settlement runs in the background once the answer is complete.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn budgets_stop_spending_and_survive_a_restart() {
    let mock = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("budget.db").display());
    // gpt-4o: $2.50 / $10 per million tokens; a few requests' worth.
    let yaml = format!(
        "{}budgets:\n  - {{id: daily, scope: global, usd: 0.0003, period: daily}}\n",
        providers_yaml(&mock)
    );
    let gw = TestGateway::start_with_db(&db, &yaml).await;
    let mut refused = None;
    for _ in 0..50 {
        let (status, _, body) = post(&gw, "/v1/chat/completions", &chat("gpt-4o", 16)).await;
        if status == 429 {
            refused = Some(body);
            break;
        }
        assert_eq!(status, 200);
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let body = refused.expect("the budget ran out");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "budget_exceeded", "{v}");
    let logged = gw.logs("status=200&limit=1000", 1).await;
    let spent: f64 = logged.iter().map(|r| r["cost_usd"].as_f64().unwrap()).sum();
    assert!(spent > 0.0 && spent <= 0.0003, "spent {spent}");
    gw.stop().await;

    // A restarted gateway picks up what was spent today from the request log.
    let gw = TestGateway::start_with_db(&db, &yaml).await;
    let (status, _, body) = post(&gw, "/v1/chat/completions", &chat("gpt-4o", 16)).await;
    assert_eq!(status, 429, "{body}");
}

#[tokio::test]
async fn two_replicas_on_one_redis_share_a_limit() {
    let mock = MockUpstream::start().await;
    let yaml = format!(
        "{}redis: {{url: \"{}\"}}\nlimits:\n  - {{id: {}, scope: global, requests: 5, window: 1h}}\n",
        providers_yaml(&mock),
        redis_url(),
        rule_id()
    );
    let a = Arc::new(TestGateway::start(&yaml).await);
    let b = Arc::new(TestGateway::start(&yaml).await);
    let mut tasks = Vec::new();
    for i in 0..16 {
        let gw = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            post(&gw, "/v1/chat/completions", &chat("gpt-4o-mini", 8))
                .await
                .0
        }));
    }
    let statuses: Vec<u16> = futures_util::future::join_all(tasks)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(mock.hits(), 5);
}

#[tokio::test]
async fn provider_and_model_limits_follow_the_target_that_serves() {
    let mock = MockUpstream::start().await;
    // `smart` tries anthropic/claude-sonnet-4-5, then openai/gpt-4o.
    let yaml = format!(
        "{}limits:\n  - {{scope: provider, match: anthropic, requests: 2, window: 1m}}\n  - {{scope: model, match: gpt-4o, requests: 1, window: 1m}}\n  - {{scope: global, requests: 100, window: 1m}}\n",
        providers_yaml(&mock)
    );
    let gw = TestGateway::start(&yaml).await;
    for expected in ["1", "0"] {
        let (status, h, _) = post(&gw, "/v1/chat/completions", &chat("smart", 16)).await;
        assert_eq!(status, 200);
        assert_eq!(h["x-portcullis-provider"], "anthropic");
        // The headers are the tightest rule's: Anthropic's 2 per minute.
        assert_eq!(h["ratelimit-limit"], "2");
        assert_eq!(h["ratelimit-remaining"], expected);
    }
    // Anthropic's limit is spent: the route fails over to the next target, whose own limit
    // is charged.
    let (status, h, body) = post(&gw, "/v1/chat/completions", &chat("smart", 16)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(h["x-portcullis-provider"], "openai");
    assert_eq!(h["x-portcullis-model"], "gpt-4o");
    assert_eq!(
        h["x-portcullis-attempts"], "1",
        "the refused target was not sent to"
    );
    let rec = gw
        .log_of(h["x-portcullis-request-id"].to_str().unwrap())
        .await;
    let attempts: Value = serde_json::from_str(rec["attempt_log"].as_str().unwrap()).unwrap();
    assert_eq!(attempts[0]["target"], "anthropic/claude-sonnet-4-5");
    assert_eq!(attempts[0]["status"], 0);
    assert!(
        attempts[0]["error"]
            .as_str()
            .unwrap()
            .contains("2 requests"),
        "{attempts}"
    );

    // Both spent: 429 in the caller's dialect, with the limit's headers.
    let (status, h, body) = post(&gw, "/v1/messages", &chat("smart", 16)).await;
    assert_eq!(status, 429, "{body}");
    assert!(h.contains_key("retry-after"));
    assert_eq!(h["ratelimit-remaining"], "0");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "rate_limit_error");

    // Other providers and models are not touched by either rule; the global rule was
    // charged once per request, not again per target tried.
    let (status, h, _) = post(&gw, "/v1/chat/completions", &chat("gpt-4o-mini", 16)).await;
    assert_eq!(status, 200);
    assert_eq!(h["ratelimit-limit"], "100");
    assert_eq!(h["ratelimit-remaining"], "95");
    assert_eq!(mock.hits(), 4);
}

#[tokio::test]
async fn two_replicas_on_one_redis_share_a_budget_and_a_concurrency_limit() {
    let mock = MockUpstream::start().await;
    let budget = rule_id();
    let yaml = format!(
        "{}redis: {{url: \"{}\"}}\nbudgets:\n  - {{id: {budget}, scope: global, usd: 0.0003, period: daily}}\n",
        providers_yaml(&mock),
        redis_url(),
    );
    let a = TestGateway::start(&yaml).await;
    let b = TestGateway::start(&yaml).await;
    // Alternate between the replicas until the shared budget runs out; then both refuse.
    let mut served: usize = 0;
    let mut i = 0;
    let mut waits = 0;
    while i < 60 {
        let gw = if i % 2 == 0 { &a } else { &b };
        let (status, _, body) = post(gw, "/v1/chat/completions", &chat("gpt-4o", 16)).await;
        if status == 429 {
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["error"]["code"], "budget_exceeded", "{v}");
            // The previous request's reservation may not be settled yet (a loaded machine):
            // what this test counts is spend, so it asks again once nothing is in flight.
            let message = v["error"]["message"].as_str().unwrap_or("");
            if message.contains("in flight") && waits < 100 {
                waits += 1;
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            }
            break;
        }
        i += 1;
        assert_eq!(status, 200, "{body}");
        served += 1;
    }
    assert!(served >= 2, "both replicas spent from it ({served} served)");
    for gw in [&a, &b] {
        let (status, _, _) = post(gw, "/v1/chat/completions", &chat("gpt-4o", 16)).await;
        assert_eq!(status, 429);
    }
    let mut spent = 0.0;
    for (gw, count) in [(&a, served.div_ceil(2)), (&b, served / 2)] {
        let records = gw.logs("status=200&limit=1000", count).await;
        assert_eq!(records.len(), count);
        spent += records
            .iter()
            .map(|r| r["cost_usd"].as_f64().unwrap())
            .sum::<f64>();
    }
    assert!(spent > 0.0 && spent <= 0.0003, "spent {spent} of $0.0003");

    // Requests in flight: two at a time across both replicas.
    let inflight = rule_id();
    let yaml = format!(
        "{}redis: {{url: \"{}\"}}\nlimits:\n  - {{id: {inflight}, scope: global, concurrent: 2}}\n",
        providers_yaml(&mock),
        redis_url(),
    );
    let a = Arc::new(TestGateway::start(&yaml).await);
    let b = Arc::new(TestGateway::start(&yaml).await);
    let mut tasks = Vec::new();
    for i in 0..6 {
        let gw = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            post(
                &gw,
                "/v1/chat/completions",
                &chat("openai/mock-slow-800", 8),
            )
            .await
            .0
        }));
    }
    let statuses: Vec<u16> = futures_util::future::join_all(tasks)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        2,
        "{statuses:?}"
    );
    // Released when they finish: the next ones pass.
    let (status, _, _) = post(&a, "/v1/chat/completions", &chat("gpt-4o-mini", 8)).await;
    assert_eq!(status, 200);
    let (status, _, _) = post(&b, "/v1/chat/completions", &chat("gpt-4o-mini", 8)).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn retry_after_is_rounded_up_so_waiting_that_long_is_enough() {
    let mock = MockUpstream::start().await;
    // One request per 1.5 s: the second, sent at once, must wait about 1.5 s.
    let yaml = format!(
        "{}limits:\n  - {{scope: global, requests: 1, window: 1500ms}}\n",
        providers_yaml(&mock)
    );
    let gw = TestGateway::start(&yaml).await;
    let (status, _, _) = post(&gw, "/v1/chat/completions", &chat("gpt-4o-mini", 8)).await;
    assert_eq!(status, 200);
    let (status, h, body) = post(&gw, "/v1/chat/completions", &chat("gpt-4o-mini", 8)).await;
    assert_eq!(status, 429, "{body}");
    let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    // 1.4something seconds: rounding down would say 1, and a client waiting 1 s is refused.
    assert_eq!(retry, 2, "Retry-After rounds up");
    assert_eq!(h["ratelimit-reset"], "2");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("retry in 2s"),
        "{v}"
    );
    // A client that waits exactly as long as it was told is admitted.
    tokio::time::sleep(std::time::Duration::from_secs(retry)).await;
    let (status, _, body) = post(&gw, "/v1/chat/completions", &chat("gpt-4o-mini", 8)).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn rate_limit_headers_report_the_tightest_rule_including_model_and_provider_rules() {
    let mock = MockUpstream::start().await;
    let yaml = format!(
        "{}limits:\n  - {{scope: global, requests: 100, window: 1m}}\n  - {{scope: model, match: gpt-4o-mini, requests: 3, window: 1m}}\n  - {{scope: provider, match: anthropic, requests: 50, window: 1m}}\n",
        providers_yaml(&mock)
    );
    let gw = TestGateway::start(&yaml).await;
    // The model rule (3 per minute) is tighter than the global one (100 per minute).
    for expected in ["2", "1", "0"] {
        let (status, h, body) = post(&gw, "/v1/chat/completions", &chat("gpt-4o-mini", 8)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(h["ratelimit-limit"], "3");
        assert_eq!(h["ratelimit-remaining"], expected);
        assert!(h.contains_key("ratelimit-reset"));
    }
    // Streamed answers carry them too.
    let mut streamed = chat("claude-haiku-4-5", 8);
    streamed["stream"] = json!(true);
    let (status, h, _) = post(&gw, "/v1/messages", &streamed).await;
    assert_eq!(status, 200);
    // Provider rule: 49 of 50 left (98%) is looser than the global rule's 96 of 100 left.
    assert_eq!(h["ratelimit-limit"], "100");
    assert_eq!(h["ratelimit-remaining"], "96");

    // Only a model rule applies: its headers are still sent.
    let yaml = format!(
        "{}limits:\n  - {{scope: model, match: gpt-4o, requests: 5, window: 1m}}\n",
        providers_yaml(&mock)
    );
    let gw = TestGateway::start(&yaml).await;
    let (status, h, _) = post(&gw, "/v1/chat/completions", &chat("gpt-4o", 8)).await;
    assert_eq!(status, 200);
    assert_eq!(h["ratelimit-limit"], "5");
    assert_eq!(h["ratelimit-remaining"], "4");
    let (status, h, _) = post(&gw, "/v1/chat/completions", &chat("gpt-4o-mini", 8)).await;
    assert_eq!(status, 200);
    assert!(!h.contains_key("ratelimit-limit"), "no rule applied");
}

#[tokio::test]
async fn a_virtual_keys_limit_and_a_tighter_model_limit_report_the_tighter() {
    let mock = MockUpstream::start().await;
    let yaml = format!(
        "{}limits:\n  - {{scope: model, match: gpt-4o-mini, requests: 2, window: 1m}}\n  - {{scope: model, match: gpt-4o, requests: 1000, window: 1m}}\n",
        providers_yaml(&mock)
    );
    let gw = TestGateway::start(&yaml).await;
    let r = client()
        .post(gw.at("/admin/keys"))
        .bearer_auth(MASTER_KEY)
        .json(&json!({"name": "limited", "limits": {"requests_per_minute": 10}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let key: Value = r.json().await.unwrap();
    let key = key["key"].as_str().unwrap().to_owned();
    let send = |model: &'static str| {
        let key = key.clone();
        let url = gw.at("/v1/chat/completions");
        async move {
            let r = client()
                .post(url)
                .bearer_auth(key)
                .json(&chat(model, 8))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.headers().clone())
        }
    };
    // Key: 9 of 10 left; model: 1 of 2 left — the model rule is tighter.
    let (status, h) = send("gpt-4o-mini").await;
    assert_eq!(status, 200);
    assert_eq!(h["ratelimit-limit"], "2");
    assert_eq!(h["ratelimit-remaining"], "1");
    // Key: 8 of 10 left; model: 999 of 1000 left — the key's rule is tighter.
    let (status, h) = send("gpt-4o").await;
    assert_eq!(status, 200);
    assert_eq!(h["ratelimit-limit"], "10");
    assert_eq!(h["ratelimit-remaining"], "8");
    // The model rule spent: 429 with its headers.
    send("gpt-4o-mini").await;
    let (status, h) = send("gpt-4o-mini").await;
    assert_eq!(status, 429);
    assert_eq!(h["ratelimit-limit"], "2");
    assert_eq!(h["ratelimit-remaining"], "0");
}
