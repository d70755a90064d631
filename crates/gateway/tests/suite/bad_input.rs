//! Bad input over real HTTP: every malformed request gets a precise status and an error body in
//! the caller's dialect, is logged, and never takes the gateway down.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::*;
use portcullis_test_support::MockUpstream;
use serde_json::{Value, json};

async fn setup() -> (MockUpstream, TestGateway) {
    let mock = MockUpstream::start().await;
    let extra = format!(
        "{}server:\n  max_request_body_bytes: 65536\n",
        providers_yaml(&mock)
    );
    let gw = TestGateway::start(&extra).await;
    (mock, gw)
}

async fn raw(gw: &TestGateway, path: &str, body: Vec<u8>) -> (u16, Value) {
    let r = client()
        .post(gw.at(path))
        .bearer_auth(MASTER_KEY)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("JSON error body: {text}")),
    )
}

fn assert_openai_error(v: &Value) {
    assert!(v["error"]["message"].is_string(), "{v}");
    assert!(v["error"]["type"].is_string(), "{v}");
}

fn assert_anthropic_error(v: &Value) {
    assert_eq!(v["type"], "error", "{v}");
    assert!(v["error"]["type"].is_string(), "{v}");
    assert!(v["error"]["message"].is_string(), "{v}");
}

#[tokio::test]
async fn malformed_bodies_are_400_with_a_precise_message() {
    let (mock, gw) = setup().await;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated", br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}"#.to_vec(), "not valid JSON"),
        ("not an object", b"[1,2,3]".to_vec(), "Invalid"),
        ("empty", b"".to_vec(), "not valid JSON"),
        ("wrong type", br#"{"model":"gpt-4o","messages":[{"role":"user","content":42}]}"#.to_vec(), "messages[0].content"),
        ("wrong role", br#"{"model":"gpt-4o","messages":[{"role":"wizard","content":"x"}]}"#.to_vec(), "messages[0].role"),
        ("empty messages", br#"{"model":"gpt-4o","messages":[]}"#.to_vec(), "at least one message"),
        ("no model", br#"{"messages":[{"role":"user","content":"x"}]}"#.to_vec(), "model"),
        ("bad temperature", br#"{"model":"gpt-4o","messages":[{"role":"user","content":"x"}],"temperature":"warm"}"#.to_vec(), "temperature"),
        ("invalid utf-8", b"{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"\xff\xfe\"}]}".to_vec(), "not valid JSON"),
        ("tool message without id", br#"{"model":"gpt-4o","messages":[{"role":"tool","content":"x"}]}"#.to_vec(), "tool_call_id"),
    ];
    for (name, body, needle) in cases {
        let (status, v) = raw(&gw, "/v1/chat/completions", body).await;
        assert_eq!(status, 400, "{name}: {v}");
        assert_openai_error(&v);
        assert!(
            v["error"]["message"].as_str().unwrap().contains(needle),
            "{name}: {v}"
        );
    }
    let anthropic_cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", br#"{"model":"claude-sonnet-4-5","max_tokens":10,"messages":["#.to_vec()),
        ("no max_tokens", br#"{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"x"}]}"#.to_vec()),
        ("system role", br#"{"model":"claude-sonnet-4-5","max_tokens":10,"messages":[{"role":"system","content":"x"}]}"#.to_vec()),
        ("bad block", br#"{"model":"claude-sonnet-4-5","max_tokens":10,"messages":[{"role":"user","content":[{"text":"no type"}]}]}"#.to_vec()),
    ];
    for (name, body) in anthropic_cases {
        let (status, v) = raw(&gw, "/v1/messages", body).await;
        assert_eq!(status, 400, "{name}: {v}");
        assert_anthropic_error(&v);
    }
    assert_eq!(mock.hits(), 0, "nothing malformed reached an upstream");
    let logged = gw.logs("status=400", 14).await;
    assert_eq!(logged.len(), 14, "every refused request is logged");
}

#[tokio::test]
async fn oversized_bodies_are_413_whether_or_not_the_length_is_declared() {
    let (mock, gw) = setup().await;
    let big =
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "x".repeat(200_000)}]});
    let (status, v) = raw(
        &gw,
        "/v1/chat/completions",
        serde_json::to_vec(&big).unwrap(),
    )
    .await;
    assert_eq!(status, 413);
    assert_openai_error(&v);
    assert!(v["error"]["message"].as_str().unwrap().contains("65536"));

    // Chunked, without Content-Length.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..100).map(|_| Ok(vec![b' '; 4096])).collect();
    let r = client()
        .post(gw.at("/v1/messages"))
        .bearer_auth(MASTER_KEY)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_anthropic_error(&r.json().await.unwrap());
    assert_eq!(mock.hits(), 0);
}

#[tokio::test]
async fn credentials_are_checked_before_anything_else() {
    let (mock, gw) = setup().await;
    for (path, body) in [
        (
            "/v1/chat/completions",
            json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}),
        ),
        (
            "/v1/messages",
            json!({"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
        ),
        (
            "/v1/embeddings",
            json!({"model": "text-embedding-3-small", "input": "x"}),
        ),
    ] {
        for auth in [None, Some("Bearer wrong"), Some("Basic abc")] {
            let mut req = client().post(gw.at(path)).json(&body);
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 401, "{path} {auth:?}");
            let v: Value = r.json().await.unwrap();
            if path == "/v1/messages" {
                assert_anthropic_error(&v);
                assert_eq!(v["error"]["type"], "authentication_error");
            } else {
                assert_openai_error(&v);
            }
        }
    }
    let r = client()
        .get(gw.at("/v1/models"))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client().get(gw.at("/admin/logs")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(mock.hits(), 0);
}

#[tokio::test]
async fn unknown_models_are_404_naming_the_model() {
    let (_mock, gw) = setup().await;
    for model in ["gemini-9-ultra", "nowhere/model", "smartish"] {
        let (status, _, text) = post(
            &gw,
            "/v1/chat/completions",
            &json!({"model": model, "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
        assert_eq!(status, 404);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["error"]["code"], "model_not_found");
        assert!(v["error"]["message"].as_str().unwrap().contains(model));
    }
    let (status, _, text) = post(
        &gw,
        "/v1/messages",
        &json!({"model": "nowhere/model", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(status, 404);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["type"], "not_found_error");
}

#[tokio::test]
async fn unknown_endpoints_and_methods_answer_json() {
    let (_mock, gw) = setup().await;
    let r = client().get(gw.at("/v1/nothing")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_openai_error(&r.json().await.unwrap());
    let r = client()
        .get(gw.at("/v1/chat/completions"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let r = client()
        .get(gw.at("/v1/messages"))
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_anthropic_error(&r.json().await.unwrap());
}

#[tokio::test]
async fn random_bodies_never_hurt_the_gateway() {
    let (_mock, gw) = setup().await;
    // A deterministic stream of awkward bodies: random bytes, deep nesting, huge numbers.
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut bodies: Vec<Vec<u8>> = (0..40)
        .map(|i| {
            (0..(i * 13 % 300))
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (seed & 0xff) as u8
                })
                .collect()
        })
        .collect();
    bodies.push(format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes());
    bodies.push(
        br#"{"model":"gpt-4o","messages":[{"role":"user","content":"x"}],"max_tokens":1e400}"#
            .to_vec(),
    );
    bodies
        .push(br#"{"model":"gpt-4o","messages":[{"role":"user","content":"x"}],"n":-1}"#.to_vec());
    bodies.push(br#"{"model":"gpt-4o","messages":[{"role":"assistant","content":null}]}"#.to_vec());
    bodies.push(br#"{"model":"claude-sonnet-4-5","max_tokens":10,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64"}}]}]}"#.to_vec());
    for body in bodies {
        for path in ["/v1/chat/completions", "/v1/messages", "/v1/embeddings"] {
            let (status, _) = raw(&gw, path, body.clone()).await;
            assert!((400..500).contains(&status), "{path}: {status}");
        }
    }
    let r = client().get(gw.at("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200, "still alive");
}

#[tokio::test]
async fn bad_option_headers_are_refused() {
    let (_mock, gw) = setup().await;
    let r = client()
        .post(gw.at("/v1/chat/completions"))
        .bearer_auth(MASTER_KEY)
        .header("x-portcullis-metadata", "not-json")
        .json(&json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("x-portcullis-metadata")
    );
}

#[tokio::test]
async fn repeated_json_keys_are_refused_in_the_callers_dialect() {
    let (mock, gw) = setup().await;
    let cases: Vec<(&str, &str, &str)> = vec![
        (
            "/v1/chat/completions",
            r#"{"model":"gpt-4o","model":"gpt-4o-mini","messages":[{"role":"user","content":"x"}]}"#,
            "duplicate key `model`",
        ),
        (
            "/v1/chat/completions",
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":"x"},{"role":"user","content":"a","content":"b"}]}"#,
            "duplicate key `content` in `messages[1]`",
        ),
        (
            // The same key, written with an escape.
            "/v1/chat/completions",
            r#"{"model":"gpt-4o","mod\u0065l":"gpt-4o-mini","messages":[{"role":"user","content":"x"}]}"#,
            "duplicate key `model`",
        ),
        (
            "/v1/messages",
            r#"{"model":"claude-sonnet-4-5","max_tokens":5,"messages":[{"role":"user","content":[{"type":"text","text":"x","type":"image"}]}]}"#,
            "duplicate key `type` in `messages[0].content[0]`",
        ),
        (
            "/v1/messages",
            r#"{"model":"claude-sonnet-4-5","max_tokens":5,"max_tokens":100000,"messages":[{"role":"user","content":"x"}]}"#,
            "duplicate key `max_tokens`",
        ),
        (
            "/v1/embeddings",
            r#"{"model":"text-embedding-3-small","input":"x","input":"y"}"#,
            "duplicate key `input`",
        ),
    ];
    for (path, body, needle) in &cases {
        let (status, v) = raw(&gw, path, body.as_bytes().to_vec()).await;
        assert_eq!(status, 400, "{body}: {v}");
        if *path == "/v1/messages" {
            assert_anthropic_error(&v);
            assert_eq!(v["error"]["type"], "invalid_request_error");
        } else {
            assert_openai_error(&v);
            assert_eq!(v["error"]["code"], "duplicate_key", "{v}");
        }
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{body}: {message}");
    }
    assert_eq!(mock.hits(), 0, "nothing ambiguous reached an upstream");
    let logged = gw.logs("status=400", cases.len()).await;
    assert_eq!(logged.len(), cases.len(), "every refusal is logged");

    // The same keys in different objects are fine.
    let (status, v) = raw(
        &gw,
        "/v1/chat/completions",
        br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"a"},{"role":"user","content":"b"}]}"#.to_vec(),
    )
    .await;
    assert_eq!(status, 200, "{v}");
}

#[tokio::test]
async fn unusable_model_names_are_400_before_routing() {
    let (mock, gw) = setup().await;
    let long = "m".repeat(257);
    let names = [
        "gpt-4o\u{0}",
        "gpt-4o\nx-injected: 1",
        "gpt\r4o",
        "gpt-4o\u{7f}",
        "gpt-4o\u{85}",
        "gpt-4o\u{2028}",
        "\t",
        "",
        long.as_str(),
    ];
    for name in names {
        for path in ["/v1/chat/completions", "/v1/messages", "/v1/embeddings"] {
            let body = match path {
                "/v1/embeddings" => json!({"model": name, "input": "x"}),
                _ => json!({"model": name, "max_tokens": 5,
                            "messages": [{"role": "user", "content": "x"}]}),
            };
            let (status, v) = raw(&gw, path, serde_json::to_vec(&body).unwrap()).await;
            assert_eq!(status, 400, "{path} {name:?}: {v}");
            let message = v["error"]["message"].as_str().unwrap();
            assert!(message.contains("model"), "{message}");
            assert!(
                !message.contains(name) || name.is_empty(),
                "the name is not echoed"
            );
            if path == "/v1/messages" {
                assert_anthropic_error(&v);
            } else {
                assert_openai_error(&v);
                assert_eq!(v["error"]["param"], "model");
            }
        }
    }
    assert_eq!(mock.hits(), 0);
    // A long but sane name still routes (and is unknown).
    let (status, _) = raw(
        &gw,
        "/v1/chat/completions",
        serde_json::to_vec(&json!({"model": "m".repeat(256),
            "messages": [{"role": "user", "content": "x"}]}))
        .unwrap(),
    )
    .await;
    assert_eq!(status, 404);
    let logged = gw.logs("status=400&limit=1000", names.len() * 3).await;
    assert_eq!(logged.len(), names.len() * 3, "every refusal is logged");
}

async fn with_header(gw: &TestGateway, name: &str, value: &[u8]) -> (u16, Value) {
    let r = client()
        .post(gw.at("/v1/chat/completions"))
        .bearer_auth(MASTER_KEY)
        .header(
            name,
            reqwest::header::HeaderValue::from_bytes(value).unwrap(),
        )
        .json(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn unreadable_or_out_of_range_option_headers_are_400_naming_them() {
    let (mock, gw) = setup().await;
    for name in [
        "x-portcullis-metadata",
        "cf-aig-metadata",
        "x-portcullis-collect-log",
        "cf-aig-cache-ttl",
        "x-portcullis-cache-key",
        "cf-aig-skip-cache",
        "x-portcullis-session-id",
        "x-portcullis-agent",
        "cf-aig-max-attempts",
        "x-portcullis-provider-key",
    ] {
        for value in [&b"caf\xc3\xa9"[..], b"\xff\xfe", b"a\x80b"] {
            let (status, v) = with_header(&gw, name, value).await;
            assert_eq!(status, 400, "{name}: {v}");
            assert_openai_error(&v);
            let message = v["error"]["message"].as_str().unwrap();
            assert!(message.contains(name), "{name}: {message}");
            assert_eq!(v["error"]["code"], "invalid_header");
        }
    }
    for (name, value, needle) in [
        ("x-portcullis-cache-ttl", "2592001", "at most 30 days"),
        (
            "cf-aig-cache-ttl",
            "99999999999999999999999",
            "at most 30 days",
        ),
        ("x-portcullis-cache-ttl", "0", "at least 1 second"),
        ("x-portcullis-cache-ttl", "-5", "whole number of seconds"),
        ("x-portcullis-cache-ttl", "5m", "whole number of seconds"),
        ("x-portcullis-cache-ttl", "1.5", "whole number of seconds"),
    ] {
        let (status, v) = with_header(&gw, name, value.as_bytes()).await;
        assert_eq!(status, 400, "{name}: {value}: {v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains("x-portcullis-cache-ttl"), "{message}");
        assert!(message.contains(needle), "{value}: {message}");
    }
    assert_eq!(mock.hits(), 0);
    // The longest TTL allowed is accepted.
    let (status, v) = with_header(&gw, "cf-aig-cache-ttl", b"2592000").await;
    assert_eq!(status, 200, "{v}");
}

#[tokio::test]
async fn a_caller_can_turn_body_logging_off_but_never_on() {
    let mock = MockUpstream::start().await;
    let send = |gw: &TestGateway, collect: Option<&'static str>| {
        let mut r = client()
            .post(gw.at("/v1/chat/completions"))
            .bearer_auth(MASTER_KEY)
            .json(&json!({"model": "gpt-4o-mini",
                          "messages": [{"role": "user", "content": "secret plans"}]}));
        if let Some(v) = collect {
            r = r
                .header("cf-aig-collect-log", v)
                .header("x-portcullis-collect-log", v);
        }
        async move {
            let r = r.send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.headers()["x-portcullis-request-id"]
                .to_str()
                .unwrap()
                .to_owned()
        }
    };
    // The operator keeps bodies out of the log: asking for them changes nothing.
    let gw = TestGateway::start(&format!(
        "{}log:\n  bodies: false\n  flush_interval_ms: 5\n",
        providers_yaml(&mock)
    ))
    .await;
    for collect in [Some("true"), Some("1"), None] {
        let rec = gw.log_of(&send(&gw, collect).await).await;
        assert!(rec["request_body"].is_null(), "{collect:?}: {rec}");
        assert!(rec["response_body"].is_null(), "{collect:?}: {rec}");
        assert!(rec["output_tokens"].as_u64().unwrap() > 0);
    }
    // The operator logs bodies: a caller may opt out, and asking for them is a no-op.
    let gw = TestGateway::start(&format!(
        "{}log:\n  bodies: true\n  flush_interval_ms: 5\n",
        providers_yaml(&mock)
    ))
    .await;
    for (collect, logged) in [(Some("true"), true), (None, true), (Some("false"), false)] {
        let rec = gw.log_of(&send(&gw, collect).await).await;
        assert_eq!(
            rec["request_body"]
                .as_str()
                .is_some_and(|b| b.contains("secret plans")),
            logged,
            "{collect:?}: {rec}"
        );
        assert_eq!(rec["response_body"].is_string(), logged, "{collect:?}");
    }
}

#[tokio::test]
async fn nul_in_a_model_name_or_a_repeated_key_is_refused_and_logged_on_postgres() {
    let mock = MockUpstream::start().await;
    let db = fresh_postgres_url().await;
    let gw = std::sync::Arc::new(TestGateway::start_with_db(&db, &providers_yaml(&mock)).await);
    let hostile: Vec<(&str, Vec<u8>)> = vec![
        (
            "/v1/chat/completions",
            br#"{"model":"gpt-4o\u0000","messages":[{"role":"user","content":"x"}]}"#.to_vec(),
        ),
        (
            "/v1/messages",
            br#"{"model":"claude\u0000","max_tokens":5,"messages":[{"role":"user","content":"x"}]}"#.to_vec(),
        ),
        (
            "/v1/embeddings",
            br#"{"model":"text-embedding-3-small\u0000","input":"x"}"#.to_vec(),
        ),
        (
            "/v1/chat/completions",
            br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"x"}],"a\u0000":1,"a\u0000":2}"#.to_vec(),
        ),
    ];
    let mut tasks = Vec::new();
    for (path, body) in hostile.clone() {
        let gw = gw.clone();
        tasks.push(tokio::spawn(async move { raw(&gw, path, body).await }));
    }
    for _ in 0..8 {
        let gw = gw.clone();
        tasks.push(tokio::spawn(async move {
            raw(
                &gw,
                "/v1/chat/completions",
                br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#.to_vec(),
            )
            .await
        }));
    }
    let mut refused = 0;
    for t in tasks {
        let (status, v) = t.await.unwrap();
        match status {
            400 => {
                refused += 1;
                let message = v["error"]["message"].as_str().unwrap();
                assert!(!message.contains('\u{0}'), "{message}");
            }
            200 => {}
            other => panic!("unexpected {other}: {v}"),
        }
    }
    assert_eq!(refused, hostile.len());
    let logged = gw.logs("limit=1000", hostile.len() + 8).await;
    assert_eq!(logged.len(), hostile.len() + 8, "no record lost");
    assert_eq!(
        logged.iter().filter(|r| r["status"] == 400).count(),
        hostile.len()
    );
}
