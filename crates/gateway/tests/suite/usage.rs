//! `GET /admin/usage` over real HTTP: the report's shape and numbers on SQLite and PostgreSQL
//! (records stored through the gateway's own stores, expectations computed by hand), requests
//! served by the gateway showing up in it, the default 24-hour window, access control and
//! parameter validation.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use portcullis_store::LogRecord;
use portcullis_test_support::MockUpstream;
use serde_json::{Value, json};
use uuid::Uuid;

/// 2023-11-15T00:00:00Z.
const T: i64 = 1_700_006_400_000;
const T_RFC3339: &str = "2023-11-15T00:00:00Z";
const HOUR: i64 = 3_600_000;

#[allow(clippy::too_many_arguments)]
fn record(
    ts_ms: i64,
    provider: &str,
    model: &str,
    status: u16,
    latency_ms: u64,
    cost_usd: Option<f64>,
    key: &str,
    cache_status: Option<&'static str>,
) -> LogRecord {
    let mut r = LogRecord::new(Uuid::now_v7(), ts_ms, "chat_completions", "openai");
    r.provider = Some(Arc::from(provider));
    r.model = Some(Arc::from(model));
    r.status = status;
    r.attempts = 1;
    r.latency_us = latency_ms * 1000;
    r.cost_usd = cost_usd;
    r.key_id = Some(key.to_owned());
    r.cache_status = cache_status;
    r.input_tokens = 100;
    r.output_tokens = 20;
    r.cached_tokens = 10;
    r.reasoning_tokens = 4;
    r
}

/// Four `gpt-4o` requests in hour 0 (latencies 10, 20, 30, 40 ms; one 502; costs 0.25 each
/// but one unknown; key k1; two cache hits and a miss) and two `claude-haiku-4-5` requests in
/// hour 1 (latencies 5 and 15 ms; costs 0.5 and 0.5; key k2), plus one request just outside
/// the range on each side.
async fn store_fixture(gw: &TestGateway) {
    let records = vec![
        record(
            T,
            "openai",
            "gpt-4o",
            200,
            10,
            Some(0.25),
            "k1",
            Some("HIT"),
        ),
        record(
            T + 1,
            "openai",
            "gpt-4o",
            200,
            40,
            Some(0.25),
            "k1",
            Some("HIT"),
        ),
        record(T + 2, "openai", "gpt-4o", 502, 30, None, "k1", Some("MISS")),
        record(T + 3, "openai", "gpt-4o", 200, 20, Some(0.25), "k1", None),
        record(
            T + HOUR,
            "anthropic",
            "claude-haiku-4-5",
            200,
            5,
            Some(0.5),
            "k2",
            None,
        ),
        record(
            T + HOUR + 9,
            "anthropic",
            "claude-haiku-4-5",
            200,
            15,
            Some(0.5),
            "k2",
            None,
        ),
        record(T - 1, "openai", "gpt-4o", 200, 1, Some(9.0), "k1", None),
        record(
            T + 2 * HOUR,
            "openai",
            "gpt-4o",
            200,
            1,
            Some(9.0),
            "k1",
            None,
        ),
    ];
    gw.state.stores.logs.append(&records).await.unwrap();
}

async fn get_usage(gw: &TestGateway, query: &str) -> (u16, Value) {
    let r = client()
        .get(gw.at(&format!("/admin/usage?{query}")))
        .bearer_auth(MASTER_KEY)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

/// Unix milliseconds of an RFC 3339 time in a report.
fn millis_of(v: &Value) -> i64 {
    v.as_str()
        .unwrap()
        .parse::<jiff::Timestamp>()
        .unwrap()
        .as_millisecond()
}

fn assert_close(got: &Value, want: f64) {
    let got = got
        .as_f64()
        .unwrap_or_else(|| panic!("not a number: {got}"));
    assert!((got - want).abs() < 1e-9, "got {got}, want {want}");
}

async fn exercise_report(gw: &TestGateway) {
    store_fixture(gw).await;
    let range = format!("since={T_RFC3339}&until={}", T + 2 * HOUR);

    // Ungrouped: one row, equal to the totals.
    let (status, v) = get_usage(gw, &range).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["since"], T_RFC3339);
    assert_eq!(v["until"], "2023-11-15T02:00:00Z");
    assert_eq!(v["group_by"], Value::Null);
    assert_eq!(v["interval"], Value::Null);
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 1);
    assert_eq!(data[0]["group"], Value::Null);
    assert_eq!(data[0]["bucket"], Value::Null);
    let totals = &v["totals"];
    assert_eq!(totals["requests"], 6);
    assert_eq!(totals["errors"], 1);
    assert_eq!(totals["input_tokens"], 600);
    assert_eq!(totals["output_tokens"], 120);
    assert_eq!(totals["cached_tokens"], 60);
    assert_eq!(totals["reasoning_tokens"], 24);
    // 3 × 0.25 + 2 × 0.5 = 1.75; the unknown cost is counted apart.
    assert_close(&totals["cost_usd"], 1.75);
    assert_eq!(totals["unpriced_requests"], 1);
    assert_eq!(totals["cache_hits"], 2);
    assert_eq!(totals["cache_lookups"], 3);
    assert_close(&totals["cache_hit_ratio"], 2.0 / 3.0);
    // Latencies 5 10 15 20 30 40: p50 rank 3 → 15; p95 rank ⌈5.7⌉ = 6 → 40; p99 → 40.
    assert_eq!(
        totals["latency_ms"],
        json!({"p50": 15.0, "p95": 40.0, "p99": 40.0})
    );
    for field in ["requests", "cost_usd", "latency_ms", "cache_hit_ratio"] {
        assert_eq!(data[0][field], totals[field], "{field}");
    }

    // Grouped by model, per hour; totals still cover everything.
    let (status, v) = get_usage(gw, &format!("{range}&group_by=model&interval=hour")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["group_by"], "model");
    assert_eq!(v["interval"], "hour");
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[0]["group"], "gpt-4o");
    assert_eq!(data[0]["bucket"], T_RFC3339);
    assert_eq!(data[0]["requests"], 4);
    assert_eq!(data[0]["errors"], 1);
    assert_close(&data[0]["cost_usd"], 0.75);
    // 10 20 30 40: p50 rank 2 → 20; p95 and p99 rank 4 → 40.
    assert_eq!(
        data[0]["latency_ms"],
        json!({"p50": 20.0, "p95": 40.0, "p99": 40.0})
    );
    assert_eq!(data[1]["group"], "claude-haiku-4-5");
    assert_eq!(data[1]["bucket"], "2023-11-15T01:00:00Z");
    assert_eq!(data[1]["requests"], 2);
    assert_eq!(
        data[1]["cache_hit_ratio"],
        Value::Null,
        "no lookups: no ratio"
    );
    assert_eq!(
        data[1]["latency_ms"],
        json!({"p50": 5.0, "p95": 15.0, "p99": 15.0})
    );
    assert_eq!(v["totals"]["requests"], 6);

    // The top group by requests only (gpt-4o: 4 of 6); totals still cover everything.
    let (status, v) = get_usage(gw, &format!("{range}&group_by=model&limit=1")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["limit"], 1);
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 1);
    assert_eq!(data[0]["group"], "gpt-4o");
    assert_eq!(data[0]["requests"], 4);
    assert_eq!(v["totals"]["requests"], 6);

    // Filters narrow rows and totals alike.
    let (_, v) = get_usage(gw, &format!("{range}&key=k2&group_by=provider")).await;
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 1);
    assert_eq!(data[0]["group"], "anthropic");
    assert_eq!(v["totals"]["requests"], 2);
    assert_close(&v["totals"]["cost_usd"], 1.0);
    let (_, v) = get_usage(gw, &format!("{range}&provider=openai&model=gpt-4o")).await;
    assert_eq!(v["totals"]["requests"], 4);

    // Nothing in range: no rows, zero totals, no percentiles.
    let (status, v) = get_usage(gw, "since=2999-01-01T00:00:00Z&until=2999-01-02T00:00:00Z").await;
    assert_eq!(status, 200);
    assert_eq!(v["data"], json!([]));
    assert_eq!(v["totals"]["requests"], 0);
    assert_eq!(v["totals"]["cost_usd"], 0.0);
    assert_eq!(
        v["totals"]["latency_ms"],
        json!({"p50": null, "p95": null, "p99": null})
    );
}

#[tokio::test]
async fn usage_report_on_sqlite() {
    let gw = TestGateway::start("").await;
    exercise_report(&gw).await;
}

#[tokio::test]
async fn usage_report_on_postgres() {
    let db = fresh_postgres_url().await;
    let gw = TestGateway::start_with_db(&db, "").await;
    exercise_report(&gw).await;
}

#[tokio::test]
async fn served_requests_are_counted_within_the_default_window() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&providers_yaml(&mock)).await;
    // A request from two days ago is outside the default 24-hour window.
    let now = jiff::Timestamp::now().as_millisecond();
    let old = record(
        now - 48 * HOUR,
        "openai",
        "gpt-4o",
        200,
        1,
        Some(5.0),
        "k1",
        None,
    );
    gw.state.stores.logs.append(&[old]).await.unwrap();

    for text in ["one", "two"] {
        let (status, _, body) = post(
            &gw,
            "/v1/chat/completions",
            &json!({"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": text}]}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    // The request log is written asynchronously; wait until both records are in. The grouped
    // rows and the totals are two queries, so both must show them.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let v = loop {
        let (status, v) = get_usage(&gw, "group_by=model").await;
        assert_eq!(status, 200, "{v}");
        let grouped: u64 = v["data"]
            .as_array()
            .map(|rows| rows.iter().filter_map(|r| r["requests"].as_u64()).sum())
            .unwrap_or(0);
        if (v["totals"]["requests"] == 2 && grouped == 2) || tokio::time::Instant::now() > deadline
        {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(v["totals"]["requests"], 2, "{v}");
    assert_eq!(v["data"][0]["group"], "gpt-4o-mini");
    assert!(v["totals"]["input_tokens"].as_u64().unwrap() > 0);
    assert!(v["totals"]["latency_ms"]["p50"].as_f64().unwrap() > 0.0);
    let since = millis_of(&v["since"]);
    let until = millis_of(&v["until"]);
    assert_eq!(until - since, 24 * HOUR, "the default window is 24 hours");
}

#[tokio::test]
async fn usage_requires_the_master_key() {
    let gw = TestGateway::start("").await;
    let r = client().get(gw.at("/admin/usage")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = client()
        .get(gw.at("/admin/usage"))
        .bearer_auth("not-the-master-key")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let (status, _) = get_usage(&gw, "").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn bad_parameters_are_refused_naming_the_parameter() {
    let gw = TestGateway::start("").await;
    let cases = [
        ("group_by=colour", "group_by"),
        ("group_by=key_id", "group_by"),
        ("interval=week", "interval"),
        ("since=yesterday", "since"),
        ("until=2024-13-01T00:00:00Z", "until"),
        (
            "since=2024-01-02T00:00:00Z&until=2024-01-01T00:00:00Z",
            "since",
        ),
        ("since=1000&until=1000", "since"),
        ("until=9999999999999999", "until"),
        ("colour=red", "colour"),
        ("limit=10", "limit"),
        ("group_by=model&limit=0", "limit"),
        ("group_by=model&limit=ten", "limit"),
        ("model=", "model"),
        ("model=a&model=b", "model"),
        // A year of minutes is 525,600 buckets.
        (
            "since=2023-01-01T00:00:00Z&until=2024-01-01T00:00:00Z&interval=minute",
            "interval",
        ),
    ];
    for (query, param) in cases {
        let (status, v) = get_usage(&gw, query).await;
        assert_eq!(status, 400, "{query}: {v}");
        assert_eq!(v["error"]["param"], param, "{query}: {v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("`{param}`")),
            "{query}: {message}"
        );
    }
    // The same year by day is fine, and Unix milliseconds work like RFC 3339.
    let (status, v) = get_usage(
        &gw,
        "since=2023-01-01T00:00:00Z&until=1704067200000&interval=day",
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["until"], "2024-01-01T00:00:00Z");
}

/// `GET /admin/keys` a page at a time, each key with its spend from the request log.
async fn exercise_key_pages(gw: &TestGateway) {
    let mut ids = Vec::new();
    for i in 0..5 {
        let (status, _, body) = post(gw, "/admin/keys", &json!({"name": format!("k{i}")})).await;
        assert_eq!(status, 201, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        ids.push(v["id"].as_str().unwrap().to_owned());
    }
    // Key i has spent i × $0.25 over i priced requests (plus one unpriced request).
    let mut records = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        for j in 0..i {
            records.push(record(
                T + j as i64,
                "openai",
                "gpt-4o",
                200,
                5,
                Some(0.25),
                id,
                None,
            ));
        }
        records.push(record(T, "openai", "gpt-4o", 200, 5, None, id, None));
    }
    gw.state.stores.logs.append(&records).await.unwrap();

    let get = |query: String| async move {
        let r = client()
            .get(gw.at(&format!("/admin/keys?{query}")))
            .bearer_auth(MASTER_KEY)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json::<Value>().await.unwrap())
    };
    let mut seen = Vec::new();
    let mut query = "limit=2".to_owned();
    let mut pages = 0;
    loop {
        let (status, v) = get(query.clone()).await;
        assert_eq!(status, 200, "{v}");
        pages += 1;
        for k in v["data"].as_array().unwrap() {
            let id = k["id"].as_str().unwrap().to_owned();
            let i = ids.iter().position(|x| *x == id).unwrap();
            assert_eq!(k["spend_usd"].as_f64().unwrap(), i as f64 * 0.25, "{k}");
            assert!(k.get("key").is_none(), "never the secret");
            seen.push(id);
        }
        match v["next_cursor"].as_str() {
            Some(c) => query = format!("limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(pages, 3, "2 + 2 + 1");
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);

    let (_, all) = get(String::new()).await;
    assert_eq!(all["data"].as_array().unwrap().len(), 5);
    assert!(all["next_cursor"].is_null());
    for bad in [
        "limit=0",
        "limit=1001",
        "cursor=key_nope",
        "include_revoked=yes",
        "colour=red",
    ] {
        let (status, v) = get(bad.to_owned()).await;
        assert_eq!(status, 400, "{bad}: {v}");
        assert!(v["error"]["param"].is_string(), "{bad}: {v}");
    }
}

#[tokio::test]
async fn keys_are_listed_by_page_with_their_spend_on_sqlite() {
    let gw = TestGateway::start("").await;
    exercise_key_pages(&gw).await;
}

#[tokio::test]
async fn keys_are_listed_by_page_with_their_spend_on_postgres() {
    let gw = TestGateway::start_with_db(&fresh_postgres_url().await, "").await;
    exercise_key_pages(&gw).await;
}
