//! The exact response cache over real HTTP: hits in both dialects, streamed answers cached
//! and replayed as streams, per-request headers, coalescing of identical requests, expiry, and
//! a cache shared by two replicas on Redis.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use crate::common::*;
use portcullis_test_support::MockUpstream;
use serde_json::{Value, json};

fn redis_url() -> String {
    std::env::var("PORTCULLIS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A question no other test (or earlier run sharing the same Redis) asks.
fn unique(text: &str) -> String {
    format!("{text} [{}]", uuid::Uuid::now_v7())
}

fn chat(model: &str, text: &str, stream: bool) -> Value {
    json!({"model": model, "max_tokens": 64, "temperature": 0, "stream": stream,
           "messages": [{"role": "user", "content": text}]})
}

fn cached_yaml(mock: &MockUpstream, cache: &str) -> String {
    format!("{}cache: {cache}\n", providers_yaml(mock))
}

fn header<'a>(h: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

#[tokio::test]
async fn identical_requests_are_answered_from_the_cache_in_either_dialect() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&cached_yaml(&mock, "{enabled: true}")).await;
    let q = unique("what is a portcullis?");

    let (status, h1, body1) =
        post(&gw, "/v1/chat/completions", &chat("gpt-4o-mini", &q, false)).await;
    assert_eq!(status, 200);
    assert_eq!(header(&h1, "x-portcullis-cache"), "MISS");
    let (status, h2, body2) =
        post(&gw, "/v1/chat/completions", &chat("gpt-4o-mini", &q, false)).await;
    assert_eq!(status, 200);
    assert_eq!(header(&h2, "x-portcullis-cache"), "HIT");
    assert_eq!(body1, body2, "the stored answer, byte for byte");
    assert_eq!(header(&h2, "x-portcullis-provider"), "openai");
    assert_eq!(header(&h2, "x-portcullis-attempts"), "0");
    assert_eq!(mock.hits(), 1, "a hit never calls the upstream");

    // The same request in Anthropic's dialect shares the entry, translated.
    let (status, h3, body3) = post(&gw, "/v1/messages", &chat("gpt-4o-mini", &q, false)).await;
    assert_eq!(status, 200, "{body3}");
    assert_eq!(header(&h3, "x-portcullis-cache"), "HIT");
    let v: Value = serde_json::from_str(&body3).unwrap();
    assert_eq!(v["type"], "message");
    assert!(
        v["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("portcullis")
    );
    assert_eq!(mock.hits(), 1);

    let rec = gw.log_of(header(&h2, "x-portcullis-request-id")).await;
    assert_eq!(rec["cache_status"], "HIT");
    assert_eq!(rec["cost_usd"], 0.0);
    assert_eq!(rec["attempts"], 0);
    let rec = gw.log_of(header(&h1, "x-portcullis-request-id")).await;
    assert_eq!(rec["cache_status"], "MISS");

    // A different question misses.
    let (_, h4, _) = post(
        &gw,
        "/v1/chat/completions",
        &chat("gpt-4o-mini", &unique("other"), false),
    )
    .await;
    assert_eq!(header(&h4, "x-portcullis-cache"), "MISS");
    assert_eq!(mock.hits(), 2);

    let metrics = gw.metrics_text().await;
    assert!(
        metrics.contains("portcullis_cache_hits_total 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("portcullis_cache_misses_total 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn streamed_answers_are_cached_and_replayed_as_streams() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&cached_yaml(&mock, "{enabled: true}")).await;
    let q = unique("stream me a story");

    let (_, h1, first) = post(
        &gw,
        "/v1/chat/completions",
        &chat("anthropic/claude-sonnet-4-5", &q, true),
    )
    .await;
    assert_eq!(header(&h1, "x-portcullis-cache"), "MISS");
    let first = parse_openai_stream(&first);
    assert!(first.done);

    // Filling happens when the stream completes; give the background store a moment.
    let mut replay = None;
    for _ in 0..50 {
        let (_, h, body) = post(
            &gw,
            "/v1/chat/completions",
            &chat("anthropic/claude-sonnet-4-5", &q, true),
        )
        .await;
        if header(&h, "x-portcullis-cache") == "HIT" {
            replay = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let replay = parse_openai_stream(&replay.expect("the streamed answer was cached"));
    assert!(replay.done, "a well-formed stream");
    assert_eq!(replay.text, first.text);
    assert_eq!(replay.finish_reason.as_deref(), Some("stop"));

    // As an Anthropic stream, and as a complete answer.
    let (_, h, body) = post(
        &gw,
        "/v1/messages",
        &chat("anthropic/claude-sonnet-4-5", &q, true),
    )
    .await;
    assert_eq!(header(&h, "x-portcullis-cache"), "HIT");
    let s = parse_anthropic_stream(&body);
    assert_eq!(s.text, first.text);
    assert_eq!(s.events.last().unwrap(), "message_stop");
    let (_, h, body) = post(
        &gw,
        "/v1/chat/completions",
        &chat("anthropic/claude-sonnet-4-5", &q, false),
    )
    .await;
    assert_eq!(header(&h, "x-portcullis-cache"), "HIT");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], first.text.as_str());
    assert_eq!(mock.hits(), 1);
}

#[tokio::test]
async fn headers_skip_key_and_ttl_the_cache() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&cached_yaml(&mock, "{enabled: true}")).await;
    let q = unique("headers");
    let send = |extra: Vec<(&'static str, &'static str)>, body: Value| {
        let mut r = client()
            .post(gw.at("/v1/chat/completions"))
            .bearer_auth(MASTER_KEY)
            .json(&body);
        for (k, v) in extra {
            r = r.header(k, v);
        }
        async move {
            let r = r.send().await.unwrap();
            assert_eq!(r.status(), 200);
            header(r.headers(), "x-portcullis-cache").to_owned()
        }
    };
    assert_eq!(send(vec![], chat("gpt-4o-mini", &q, false)).await, "MISS");
    assert_eq!(
        send(
            vec![("cf-aig-skip-cache", "true")],
            chat("gpt-4o-mini", &q, false)
        )
        .await,
        "BYPASS"
    );
    assert_eq!(mock.hits(), 2);

    // A custom key makes different requests share one entry.
    let key = uuid::Uuid::now_v7().to_string();
    let key: &'static str = Box::leak(key.into_boxed_str());
    assert_eq!(
        send(
            vec![("x-portcullis-cache-key", key)],
            chat("gpt-4o-mini", &unique("a"), false)
        )
        .await,
        "MISS"
    );
    assert_eq!(
        send(
            vec![("cf-aig-cache-key", key)],
            chat("gpt-4o-mini", &unique("b"), false)
        )
        .await,
        "HIT"
    );

    // Requests that are not deterministic are cached only when asked (here by a TTL header),
    // and that TTL is honoured.
    let q2 = unique("creative");
    let creative = json!({"model": "gpt-4o-mini", "temperature": 0.9,
        "messages": [{"role": "user", "content": q2}]});
    assert_eq!(send(vec![], creative.clone()).await, "BYPASS");
    assert_eq!(
        send(vec![("cf-aig-cache-ttl", "1")], creative.clone()).await,
        "MISS"
    );
    assert_eq!(
        send(vec![("cf-aig-cache-ttl", "1")], creative.clone()).await,
        "HIT"
    );
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(
        send(vec![("cf-aig-cache-ttl", "1")], creative).await,
        "MISS",
        "expired"
    );
}

#[tokio::test]
async fn routes_turn_the_cache_on_and_bare_calls_bypass_it() {
    let mock = MockUpstream::start().await;
    let yaml = format!(
        r#"
providers:
  openai: {{api_key: sk-mock-openai, base_url: {url}}}
routes:
  faq:
    cache: {{enabled: true, ttl: 1h}}
    targets: [openai/gpt-4o-mini]
"#,
        url = mock.openai_base_url()
    );
    let gw = TestGateway::start(&yaml).await;
    let q = unique("route cache");
    let (_, h, _) = post(&gw, "/v1/chat/completions", &chat("faq", &q, false)).await;
    assert_eq!(header(&h, "x-portcullis-cache"), "MISS");
    let (_, h, _) = post(&gw, "/v1/chat/completions", &chat("faq", &q, false)).await;
    assert_eq!(header(&h, "x-portcullis-cache"), "HIT");
    let (_, h, _) = post(
        &gw,
        "/v1/chat/completions",
        &chat("openai/gpt-4o-mini", &q, false),
    )
    .await;
    assert_eq!(header(&h, "x-portcullis-cache"), "BYPASS");
}

#[tokio::test]
async fn identical_concurrent_requests_share_one_upstream_call() {
    let mock = MockUpstream::start().await;
    let gw = std::sync::Arc::new(TestGateway::start(&cached_yaml(&mock, "{enabled: true}")).await);
    let q = unique("everyone asks at once");
    let mut tasks = Vec::new();
    for i in 0..20 {
        let gw = gw.clone();
        let q = q.clone();
        tasks.push(tokio::spawn(async move {
            let stream = i % 2 == 0;
            let (status, h, body) = post(
                &gw,
                "/v1/chat/completions",
                &chat("openai/mock-slow-300", &q, stream),
            )
            .await;
            assert_eq!(status, 200);
            let text = if stream {
                parse_openai_stream(&body).text
            } else {
                let v: Value = serde_json::from_str(&body).unwrap();
                v["choices"][0]["message"]["content"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            };
            (header(&h, "x-portcullis-cache").to_owned(), text)
        }));
    }
    let mut misses = 0;
    let mut texts = std::collections::HashSet::new();
    for t in tasks {
        let (status, text) = t.await.unwrap();
        misses += usize::from(status == "MISS");
        texts.insert(text);
    }
    assert_eq!(mock.hits(), 1, "one upstream call for twenty requests");
    assert_eq!(misses, 1);
    assert_eq!(texts.len(), 1, "everyone got the same answer");
}

#[tokio::test]
async fn two_replicas_share_the_cache_on_redis() {
    let mock = MockUpstream::start().await;
    let yaml = format!(
        "{}redis: {{url: \"{}\"}}\ncache: {{enabled: true, backend: redis}}\n",
        providers_yaml(&mock),
        redis_url()
    );
    let a = TestGateway::start(&yaml).await;
    let b = TestGateway::start(&yaml).await;
    let q = unique("shared across replicas");
    let (_, h, _) = post(&a, "/v1/chat/completions", &chat("gpt-4o-mini", &q, false)).await;
    assert_eq!(header(&h, "x-portcullis-cache"), "MISS");
    let mut hit = false;
    for _ in 0..50 {
        let (_, h, _) = post(&b, "/v1/chat/completions", &chat("gpt-4o-mini", &q, false)).await;
        if header(&h, "x-portcullis-cache") == "HIT" {
            hit = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(hit, "replica b answered from what replica a stored");
    let calls = mock.hits();
    assert!(calls <= 2, "{calls}");
}

#[tokio::test]
async fn a_ttl_or_key_header_turns_caching_on_where_the_file_does_not() {
    let mock = MockUpstream::start().await;
    // No `cache:` section at all.
    let gw = TestGateway::start(&providers_yaml(&mock)).await;
    let send = |headers: Vec<(&'static str, String)>, body: Value| {
        let mut r = client()
            .post(gw.at("/v1/chat/completions"))
            .bearer_auth(MASTER_KEY)
            .json(&body);
        for (k, v) in headers {
            r = r.header(k, v);
        }
        async move {
            let r = r.send().await.unwrap();
            assert_eq!(r.status(), 200);
            let cache = header(r.headers(), "x-portcullis-cache").to_owned();
            (cache, r.text().await.unwrap())
        }
    };
    let q = unique("cache me on request");
    let ttl = || vec![("cf-aig-cache-ttl", "600".to_owned())];
    assert_eq!(
        send(vec![], chat("gpt-4o-mini", &q, false)).await.0,
        "BYPASS"
    );
    let (first, body1) = send(ttl(), chat("gpt-4o-mini", &q, false)).await;
    assert_eq!(first, "MISS");
    let (second, body2) = send(ttl(), chat("gpt-4o-mini", &q, false)).await;
    assert_eq!(
        second, "HIT",
        "the second identical request with the header"
    );
    assert_eq!(body1, body2);
    assert_eq!(mock.hits(), 2);
    // Without the header the cache stays off for the request.
    assert_eq!(
        send(vec![], chat("gpt-4o-mini", &q, false)).await.0,
        "BYPASS"
    );
    assert_eq!(mock.hits(), 3);

    // A key header does the same, for any request sharing the key.
    let key = uuid::Uuid::now_v7().to_string();
    let by_key = || vec![("x-portcullis-cache-key", key.clone())];
    let creative = |text: &str| {
        json!({"model": "gpt-4o-mini", "temperature": 0.9,
               "messages": [{"role": "user", "content": text}]})
    };
    let (status, _) = send(by_key(), creative(&unique("a"))).await;
    assert_eq!(status, "MISS");
    let (status, _) = send(by_key(), creative(&unique("b"))).await;
    assert_eq!(status, "HIT");
    assert_eq!(mock.hits(), 4);
    // `skip-cache` still wins.
    let mut skip = by_key();
    skip.push(("cf-aig-skip-cache", "true".to_owned()));
    assert_eq!(send(skip, creative("c")).await.0, "BYPASS");
    assert_eq!(mock.hits(), 5);
}

#[tokio::test]
async fn an_operator_can_forbid_per_request_caching() {
    let mock = MockUpstream::start().await;
    let yaml = format!(
        r#"
providers:
  openai: {{api_key: sk-mock-openai, base_url: {url}}}
cache: {{per_request: false}}
routes:
  faq:
    cache: {{enabled: true}}
    targets: [openai/gpt-4o-mini]
"#,
        url = mock.openai_base_url()
    );
    let gw = TestGateway::start(&yaml).await;
    let q = unique("never cached");
    for _ in 0..2 {
        let r = client()
            .post(gw.at("/v1/chat/completions"))
            .bearer_auth(MASTER_KEY)
            .header("cf-aig-cache-ttl", "600")
            .header("x-portcullis-cache-key", "shared")
            .json(&chat("gpt-4o-mini", &q, false))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(header(r.headers(), "x-portcullis-cache"), "BYPASS");
    }
    assert_eq!(mock.hits(), 2, "no cache: both went upstream");
    // Where the file turns the cache on, the headers work as usual.
    let q = unique("faq");
    for expected in ["MISS", "HIT"] {
        let r = client()
            .post(gw.at("/v1/chat/completions"))
            .bearer_auth(MASTER_KEY)
            .header("cf-aig-cache-ttl", "600")
            .json(&chat("faq", &q, false))
            .send()
            .await
            .unwrap();
        assert_eq!(header(r.headers(), "x-portcullis-cache"), expected);
    }
    assert_eq!(mock.hits(), 3);
}
