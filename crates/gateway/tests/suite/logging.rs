//! The request log over real HTTP: one record per request with every field, on SQLite and on
//! PostgreSQL; client disconnects logged as 499 with the upstream call cancelled; the log
//! flushed on graceful shutdown; the admin API's filters and access control.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use crate::common::*;
use portcullis_test_support::{MockOptions, MockUpstream};
use serde_json::{Value, json};

fn chat(model: &str, text: &str, stream: bool) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}], "stream": stream})
}

async fn exercise_log(gw: &TestGateway) {
    let r = client()
        .post(gw.at("/v1/chat/completions"))
        .bearer_auth(MASTER_KEY)
        .header("x-portcullis-metadata", r#"{"team":"search","ticket":42}"#)
        .header("x-portcullis-session-id", "conv-9")
        .header(
            "cf-aig-metadata",
            r#"{"ignored":"because x-portcullis wins"}"#,
        )
        .header("x-portcullis-agent", "triage-bot")
        .json(&chat("openai/gpt-4o-mini", "log me", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = r.headers()["x-portcullis-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let usage: Value = r.json::<Value>().await.unwrap()["usage"].clone();

    let rec = gw.log_of(&id).await;
    assert_eq!(rec["id"], id.as_str());
    assert_eq!(rec["endpoint"], "chat_completions");
    assert_eq!(rec["dialect"], "openai");
    assert_eq!(rec["requested_model"], "openai/gpt-4o-mini");
    assert_eq!(rec["provider"], "openai");
    assert_eq!(rec["model"], "gpt-4o-mini");
    assert_eq!(rec["provider_key_id"], "openai:default");
    assert_eq!(rec["attempts"], 1);
    assert_eq!(rec["status"], 200);
    assert_eq!(rec["stream"], false);
    assert_eq!(rec["input_tokens"], usage["prompt_tokens"]);
    assert_eq!(rec["output_tokens"], usage["completion_tokens"]);
    assert_eq!(rec["session_id"], "conv-9");
    assert_eq!(rec["agent"], "triage-bot");
    let meta: Value = serde_json::from_str(rec["metadata"].as_str().unwrap()).unwrap();
    assert_eq!(meta, json!({"team": "search", "ticket": 42}));
    assert!(rec["latency_ms"].as_f64().unwrap() > 0.0);
    assert!(rec["time"].as_str().unwrap().ends_with('Z'));
    assert!(rec["request_body"].is_null(), "bodies are off by default");

    // Streams are logged with usage and time to first token.
    let (_, headers, _) = post(
        gw,
        "/v1/messages",
        &json!({"model": "claude-sonnet-4-5", "max_tokens": 50,
        "messages": [{"role": "user", "content": "stream"}], "stream": true}),
    )
    .await;
    let rec = gw
        .log_of(headers["x-portcullis-request-id"].to_str().unwrap())
        .await;
    assert_eq!(rec["stream"], true);
    assert_eq!(rec["dialect"], "anthropic");
    assert!(rec["input_tokens"].as_u64().unwrap() > 0, "{rec}");
    assert!(rec["output_tokens"].as_u64().unwrap() > 0, "{rec}");
    assert!(rec["ttft_ms"].as_f64().unwrap() > 0.0);

    // Filters.
    for i in 0..3 {
        post(
            gw,
            "/v1/chat/completions",
            &chat("openai/mock-error-500", &format!("e{i}"), false),
        )
        .await;
    }
    let errors = gw.logs("status=5xx", 3).await;
    assert_eq!(errors.len(), 3);
    assert!(
        errors
            .iter()
            .all(|r| r["status"] == 502 && r["error_message"].is_string())
    );
    let anthropic = gw.logs("provider=anthropic", 1).await;
    assert_eq!(anthropic.len(), 1);
    let page1 = gw.logs("limit=2", 2).await;
    assert_eq!(page1.len(), 2);
    let cursor = page1[1]["id"].as_str().unwrap();
    let page2 = gw.logs(&format!("limit=2&cursor={cursor}"), 2).await;
    assert_eq!(page2.len(), 2);
    assert!(
        page2
            .iter()
            .all(|r| r["id"] != page1[0]["id"] && r["id"] != page1[1]["id"])
    );
    let future = gw.logs("since=2999-01-01T00:00:00Z", 0).await;
    assert!(future.is_empty());
}

#[tokio::test]
async fn every_request_is_logged_on_sqlite() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&providers_yaml(&mock)).await;
    exercise_log(&gw).await;
}

#[tokio::test]
async fn every_request_is_logged_on_postgres() {
    let mock = MockUpstream::start().await;
    let db = fresh_postgres_url().await;
    let gw = TestGateway::start_with_db(&db, &providers_yaml(&mock)).await;
    exercise_log(&gw).await;
}

#[tokio::test]
async fn bodies_are_logged_when_asked() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&format!(
        "{}log:\n  bodies: true\n  flush_interval_ms: 5\n",
        providers_yaml(&mock)
    ))
    .await;
    let (_, headers, text) = post(
        &gw,
        "/v1/chat/completions",
        &chat("gpt-4o-mini", "secret plans", false),
    )
    .await;
    let rec = gw
        .log_of(headers["x-portcullis-request-id"].to_str().unwrap())
        .await;
    assert!(
        rec["request_body"]
            .as_str()
            .unwrap()
            .contains("secret plans")
    );
    assert_eq!(rec["response_body"].as_str().unwrap(), text);

    // A caller may opt out per request.
    let r = client()
        .post(gw.at("/v1/chat/completions"))
        .bearer_auth(MASTER_KEY)
        .header("cf-aig-collect-log", "false")
        .header("x-portcullis-metadata", r#"{"a":1}"#)
        .json(&chat("gpt-4o-mini", "private", false))
        .send()
        .await
        .unwrap();
    let id = r.headers()["x-portcullis-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let rec = gw.log_of(&id).await;
    assert!(rec["request_body"].is_null());
    assert!(rec["metadata"].is_null());
    assert!(
        rec["output_tokens"].as_u64().unwrap() > 0,
        "accounting is always kept"
    );
}

#[tokio::test]
async fn a_client_that_disconnects_is_logged_as_499_and_the_upstream_call_is_cancelled() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&providers_yaml(&mock)).await;
    let started = Instant::now();
    let err = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap()
        .post(gw.at("/v1/chat/completions"))
        .bearer_auth(MASTER_KEY)
        .json(&chat("openai/mock-slow-5000", "slow", false))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout());
    let records = gw.logs("status=499", 1).await;
    assert_eq!(records.len(), 1, "logged once, as 499");
    assert!(
        records[0]["latency_ms"].as_f64().unwrap() < 2000.0,
        "the request ended when the client left, not when the upstream answered: {}",
        records[0]
    );
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(records[0]["provider"], "openai");
}

#[tokio::test]
async fn a_stream_abandoned_midway_is_logged_as_499_with_partial_usage() {
    let mock = MockUpstream::start_with(MockOptions {
        stream_frame_delay: Duration::from_millis(150),
        ..MockOptions::default()
    })
    .await;
    let gw = TestGateway::start(&providers_yaml(&mock)).await;
    let mut r = client()
        .post(gw.at("/v1/messages"))
        .bearer_auth(MASTER_KEY)
        .json(&json!({"model": "claude-sonnet-4-5", "max_tokens": 100, "stream": true,
            "messages": [{"role": "user", "content": "a long answer with many words to stream slowly"}]}))
        .send()
        .await
        .unwrap();
    let id = r.headers()["x-portcullis-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let first = r.chunk().await.unwrap().unwrap();
    assert!(!first.is_empty());
    drop(r);
    let rec = gw.log_of(&id).await;
    assert_eq!(rec["status"], 499, "{rec}");
    assert!(
        rec["input_tokens"].as_u64().unwrap() > 0,
        "usage seen before the disconnect is kept: {rec}"
    );
}

#[tokio::test]
async fn a_stream_still_open_when_the_grace_period_ends_is_logged_not_lost() {
    let mock = MockUpstream::start_with(MockOptions {
        stream_frame_delay: Duration::from_millis(400),
        ..MockOptions::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("grace.db").display());
    let extra = format!(
        "\nserver:\n  shutdown_grace_seconds: 1\n{}",
        providers_yaml(&mock)
    );
    let gw = TestGateway::start_with_db(&db, &extra).await;
    let mut r = client()
        .post(gw.at("/v1/chat/completions"))
        .bearer_auth(MASTER_KEY)
        .json(&chat(
            "gpt-4o-mini",
            "a long answer with many many words that streams slowly",
            true,
        ))
        .send()
        .await
        .unwrap();
    let id = r.headers()["x-portcullis-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(!r.chunk().await.unwrap().unwrap().is_empty());
    // The client holds the stream open; shutdown must not wait forever nor lose the record.
    let started = Instant::now();
    gw.stop().await;
    assert!(started.elapsed() < Duration::from_secs(10));
    drop(r);

    let gw = TestGateway::start_with_db(&db, &providers_yaml(&mock)).await;
    let rec = gw.log_of(&id).await;
    assert_eq!(rec["status"], 499, "{rec}");
    assert_eq!(
        gw.state
            .log
            .stats()
            .dropped
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

#[tokio::test]
async fn the_log_is_flushed_on_graceful_shutdown() {
    let mock = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("flush.db").display());
    // A long linger: nothing would be written before shutdown without the flush.
    let extra = providers_yaml(&mock);
    let yaml = format!(
        "master_key: {MASTER_KEY}\ndatabase:\n  url: \"{db}\"\nlog:\n  flush_interval_ms: 60000\n  batch_size: 100000\n{extra}"
    );
    let config = portcullis_config::from_yaml(
        &yaml,
        portcullis_config::Source::Environment,
        &std::collections::HashMap::<String, String>::new(),
    )
    .unwrap();
    let gw = TestGateway::start_config(config).await;
    for i in 0..25 {
        let (status, _, _) = post(
            &gw,
            "/v1/chat/completions",
            &chat("gpt-4o-mini", &format!("m{i}"), false),
        )
        .await;
        assert_eq!(status, 200);
    }
    gw.stop().await;

    let gw = TestGateway::start_with_db(&db, &providers_yaml(&mock)).await;
    let records = gw.logs("limit=1000", 25).await;
    assert_eq!(records.len(), 25);
}

#[tokio::test]
async fn the_admin_api_requires_the_master_key_and_validates_filters() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&providers_yaml(&mock)).await;
    let r = client()
        .get(gw.at("/admin/logs"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    for bad in [
        "status=weird",
        "limit=0",
        "limit=5000",
        "since=yesterday",
        "cursor=nope",
        "colour=blue",
    ] {
        let r = client()
            .get(gw.at(&format!("/admin/logs?{bad}")))
            .bearer_auth(MASTER_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        let v: Value = r.json().await.unwrap();
        assert!(v["error"]["message"].is_string());
    }
}

/// Ordinary requests racing requests that carry NUL characters (in metadata, a message, a
/// body that is not JSON, a model name): every record is stored — none is lost because
/// another record in its batch could not be — and the NUL values read back unchanged.
async fn exercise_nul_does_not_cost_other_records(db: Option<String>) {
    let mock = MockUpstream::start().await;
    let extra = format!(
        "{}log:\n  bodies: true\n  flush_interval_ms: 50\n",
        providers_yaml(&mock)
    );
    let gw = match db {
        Some(db) => TestGateway::start_with_db(&db, &extra).await,
        None => TestGateway::start(&extra).await,
    };
    let send = |headers: Vec<(&'static str, String)>, body: Vec<u8>| {
        let mut req = client()
            .post(gw.at("/v1/chat/completions"))
            .bearer_auth(MASTER_KEY)
            .header("content-type", "application/json")
            .body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        async move {
            let r = req.send().await.unwrap();
            let id = r.headers()["x-portcullis-request-id"]
                .to_str()
                .unwrap()
                .to_owned();
            (r.status().as_u16(), id)
        }
    };
    let ordinary: Vec<_> = (0..40)
        .map(|i| {
            send(
                vec![],
                chat("gpt-4o-mini", &format!("ordinary {i}"), false)
                    .to_string()
                    .into_bytes(),
            )
        })
        .collect();
    let nul_metadata = r#"{"note":"a\u0000b","n":1}"#;
    let nul_message =
        r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"x\u0000y"}]}"#;
    let raw_nul =
        b"{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"raw\0nul\"}]}";
    let hostile = vec![
        send(
            vec![("x-portcullis-metadata", nul_metadata.to_owned())],
            chat("gpt-4o-mini", "metadata", false)
                .to_string()
                .into_bytes(),
        ),
        send(vec![], nul_message.as_bytes().to_vec()),
        send(vec![], raw_nul.to_vec()),
        send(
            vec![],
            chat("gpt\u{0}4o", "model", false).to_string().into_bytes(),
        ),
    ];
    let (ordinary, hostile) = tokio::join!(
        futures_util::future::join_all(ordinary),
        futures_util::future::join_all(hostile)
    );
    assert!(ordinary.iter().all(|(s, _)| *s == 200), "{ordinary:?}");
    for (status, _) in &hostile {
        assert!(*status < 500, "{hostile:?}");
    }

    let all = gw.logs("limit=1000", 44).await;
    for (_, id) in ordinary.iter().chain(&hostile) {
        assert!(
            all.iter().any(|r| r["id"] == id.as_str()),
            "the record of {id} is missing"
        );
    }
    assert_eq!(all.len(), 44);
    let find = |id: &str| all.iter().find(|r| r["id"] == id).unwrap().clone();

    let rec = find(&hostile[0].1);
    let meta: Value = serde_json::from_str(rec["metadata"].as_str().unwrap()).unwrap();
    assert_eq!(meta, json!({"note": "a\u{0}b", "n": 1}));
    assert_eq!(find(&hostile[1].1)["request_body"], nul_message);
    assert_eq!(
        find(&hostile[2].1)["request_body"]
            .as_str()
            .unwrap()
            .as_bytes(),
        raw_nul
    );
    let model = find(&hostile[3].1);
    if !model["requested_model"].is_null() {
        assert_eq!(model["requested_model"], "gpt\u{0}4o");
    }
    let stats = gw.state.log.stats();
    assert_eq!(stats.lost(), 0);
}

#[tokio::test]
async fn nul_characters_cost_no_record_on_sqlite() {
    exercise_nul_does_not_cost_other_records(None).await;
}

#[tokio::test]
async fn nul_characters_cost_no_record_on_postgres() {
    exercise_nul_does_not_cost_other_records(Some(fresh_postgres_url().await)).await;
}

/// NUL in admin filters, path segments and body fields: a 400 naming the parameter, in the
/// API's own words — never a 5xx, never the database's message.
async fn exercise_admin_nul(gw: &TestGateway) {
    async fn call(gw: &TestGateway, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let mut req = client()
            .request(method.parse().unwrap(), gw.at(path))
            .bearer_auth(MASTER_KEY);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_owned());
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
    let mut cases: Vec<(&str, String, Option<&str>, &str)> = Vec::new();
    for p in [
        "model", "provider", "route", "subject", "user", "team", "key",
    ] {
        cases.push(("GET", format!("/admin/logs?{p}=a%00b"), None, p));
    }
    for p in ["provider", "model", "route", "key", "user", "team"] {
        cases.push(("GET", format!("/admin/usage?{p}=%00"), None, p));
    }
    for p in ["user", "team", "service_account", "cursor"] {
        cases.push(("GET", format!("/admin/keys?{p}=%00"), None, p));
    }
    for (method, path, param) in [
        ("GET", "/admin/teams/a%00", "id"),
        ("DELETE", "/admin/teams/%00", "id"),
        ("GET", "/admin/users/%00x", "id"),
        ("PATCH", "/admin/users/%00", "id"),
        ("DELETE", "/admin/users/%00", "id"),
        ("GET", "/admin/keys/%00", "id"),
        ("DELETE", "/admin/keys/%00", "id"),
        ("POST", "/admin/keys/%00/rotate", "id"),
        ("DELETE", "/admin/provider-keys/%00", "id"),
        ("DELETE", "/admin/service-accounts/%00", "id"),
        ("DELETE", "/admin/teams/red/members/%00", "user"),
    ] {
        cases.push((method, path.to_owned(), Some("{}"), param));
    }
    for (path, body, param) in [
        ("/admin/teams", r#"{"name":"a\u0000b"}"#, "name"),
        ("/admin/teams", r#"{"id":"t\u0000","name":"x"}"#, "id"),
        (
            "/admin/teams",
            r#"{"name":"x","metadata":{"k":"\u0000"}}"#,
            "metadata.k",
        ),
        (
            "/admin/users",
            r#"{"email":"a\u0000@example.com"}"#,
            "email",
        ),
        (
            "/admin/users",
            r#"{"name":"x","teams":["ok","\u0000"]}"#,
            "teams[1]",
        ),
        ("/admin/keys", r#"{"name":"\u0000"}"#, "name"),
        ("/admin/keys", r#"{"name":"k","team":"\u0000"}"#, "team"),
        (
            "/admin/provider-keys",
            r#"{"provider":"openai","key":"sk-\u0000"}"#,
            "key",
        ),
        ("/admin/service-accounts", r#"{"name":"\u0000"}"#, "name"),
    ] {
        cases.push(("POST", path.to_owned(), Some(body), param));
    }
    for (method, path, body, param) in cases {
        let (status, v) = call(gw, method, &path, body).await;
        assert_eq!(status, 400, "{method} {path} {body:?}: {v}");
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("NUL") && v["error"]["param"] == param,
            "{method} {path} {body:?}: {v}"
        );
        assert!(
            !message.to_lowercase().contains("database") && !message.contains("0x00"),
            "{v}"
        );
    }
    // Nobody but an admin learns about its input.
    let r = client()
        .get(gw.at("/admin/teams/%00"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn nul_in_admin_input_is_a_400_on_sqlite() {
    let gw = TestGateway::start("").await;
    exercise_admin_nul(&gw).await;
}

#[tokio::test]
async fn nul_in_admin_input_is_a_400_on_postgres() {
    let gw = TestGateway::start_with_db(&fresh_postgres_url().await, "").await;
    exercise_admin_nul(&gw).await;
}

#[tokio::test]
async fn a_page_of_large_records_is_cut_by_bytes_and_the_cursor_continues() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&format!(
        "{}log:\n  bodies: true\n  flush_interval_ms: 5\n",
        providers_yaml(&mock)
    ))
    .await;
    // Twelve requests with 900 KB messages: each record holds about 1 MB of logged body.
    let big = "x".repeat(900 * 1024);
    for i in 0..12 {
        let (status, _, _) = post(
            &gw,
            "/v1/chat/completions",
            &chat("gpt-4o-mini", &format!("{i}{big}"), false),
        )
        .await;
        assert_eq!(status, 200);
    }
    gw.logs("limit=1000", 12).await;
    let page = |query: String| {
        let gw = &gw;
        async move {
            let r = client()
                .get(gw.at(&format!("/admin/logs?{query}")))
                .bearer_auth(MASTER_KEY)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let bytes = r.bytes().await.unwrap();
            (
                bytes.len(),
                serde_json::from_slice::<Value>(&bytes).unwrap(),
            )
        }
    };
    let mut seen = Vec::new();
    let mut cursor = None::<String>;
    let mut pages = 0;
    loop {
        let q = match &cursor {
            Some(c) => format!("limit=1000&cursor={c}"),
            None => "limit=1000".to_owned(),
        };
        let (bytes, v) = page(q).await;
        pages += 1;
        let data = v["data"].as_array().unwrap();
        assert!(!data.is_empty() || cursor.is_some());
        assert!(
            bytes < 8 * 1024 * 1024 + 2 * 1024 * 1024,
            "a page stops once past 8 MiB: {bytes} bytes"
        );
        seen.extend(data.iter().map(|r| r["id"].as_str().unwrap().to_owned()));
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert!(pages >= 2, "12 MB of records do not fit one page");
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 12, "every record once: {seen:?}");
    assert_eq!(seen.len(), 12);
}
