//! The cost of every request, in the request log: built-in prices, configured overrides, the
//! per-request custom cost header, streams (complete and abandoned) and unknown models.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::*;
use portcullis_test_support::MockUpstream;
use serde_json::{Value, json};

fn chat(model: &str, stream: bool) -> Value {
    json!({"model": model, "max_tokens": 64, "stream": stream,
           "messages": [{"role": "user", "content": "what does this cost?"}]})
}

fn tokens(rec: &Value) -> (f64, f64) {
    (
        rec["input_tokens"].as_f64().unwrap(),
        rec["output_tokens"].as_f64().unwrap(),
    )
}

fn assert_close(actual: &Value, expected: f64) {
    let a = actual
        .as_f64()
        .unwrap_or_else(|| panic!("no cost: {actual}"));
    assert!(
        (a - expected).abs() < 1e-12,
        "cost {a} but expected {expected}"
    );
}

async fn logged(gw: &TestGateway, h: &reqwest::header::HeaderMap) -> Value {
    gw.log_of(h["x-portcullis-request-id"].to_str().unwrap())
        .await
}

#[tokio::test]
async fn requests_are_priced_from_the_built_in_table_streamed_or_not() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&providers_yaml(&mock)).await;

    // gpt-4o-mini lists at $0.15 in / $0.60 out per million tokens.
    let (status, h, _) = post(&gw, "/v1/chat/completions", &chat("gpt-4o-mini", false)).await;
    assert_eq!(status, 200);
    let rec = logged(&gw, &h).await;
    let (i, o) = tokens(&rec);
    assert!(i > 0.0 && o > 0.0);
    assert_close(&rec["cost_usd"], (i * 0.15 + o * 0.60) / 1e6);

    // claude-sonnet-4-5 lists at $3 in / $15 out, here streamed and translated.
    let (status, h, body) = post(
        &gw,
        "/v1/chat/completions",
        &chat("anthropic/claude-sonnet-4-5", true),
    )
    .await;
    assert_eq!(status, 200);
    assert!(parse_openai_stream(&body).done);
    let rec = logged(&gw, &h).await;
    let (i, o) = tokens(&rec);
    assert_close(&rec["cost_usd"], (i * 3.0 + o * 15.0) / 1e6);
}

#[tokio::test]
async fn configured_prices_and_the_custom_cost_header_take_precedence() {
    let mock = MockUpstream::start().await;
    let yaml = format!(
        "{}prices:\n  openai/gpt-4o-mini: {{input: 1, output: 2}}\n",
        providers_yaml(&mock)
    );
    let gw = TestGateway::start(&yaml).await;
    let (_, h, _) = post(&gw, "/v1/chat/completions", &chat("gpt-4o-mini", false)).await;
    let rec = logged(&gw, &h).await;
    let (i, o) = tokens(&rec);
    assert_close(&rec["cost_usd"], (i * 1.0 + o * 2.0) / 1e6);

    let r = client()
        .post(gw.at("/v1/messages"))
        .bearer_auth(MASTER_KEY)
        .header(
            "cf-aig-custom-cost",
            r#"{"per_token_in": 0.001, "per_token_out": 0.002}"#,
        )
        .json(&chat("claude-haiku-4-5", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let rec = logged(&gw, r.headers()).await;
    let (i, o) = tokens(&rec);
    assert_close(&rec["cost_usd"], i * 0.001 + o * 0.002);

    let r = client()
        .post(gw.at("/v1/chat/completions"))
        .bearer_auth(MASTER_KEY)
        .header("x-portcullis-custom-cost", r#"{"per_token_in": -1}"#)
        .json(&chat("gpt-4o-mini", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("x-portcullis-custom-cost"),
        "{v}"
    );
}

#[tokio::test]
async fn unknown_models_have_no_cost_rather_than_zero() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&providers_yaml(&mock)).await;
    let (status, h, _) = post(
        &gw,
        "/v1/chat/completions",
        &chat("openai/house-model-7", false),
    )
    .await;
    assert_eq!(status, 200);
    let rec = logged(&gw, &h).await;
    assert!(rec["cost_usd"].is_null(), "{rec}");
}

#[tokio::test]
async fn bad_price_overrides_are_configuration_errors() {
    let err = portcullis_config::from_yaml(
        "providers:\n  openai: {api_key: k}\nprices:\n  openai/gpt-4o: {input: -1, output: 2}\n  nobody/x: {input: 1, output: 1}\n",
        portcullis_config::Source::Environment,
        &std::collections::HashMap::<String, String>::new(),
    )
    .unwrap_err();
    let issues = err.issues();
    assert!(
        issues
            .iter()
            .any(|i| i.starts_with("prices.openai/gpt-4o.input")),
        "{issues:?}"
    );
    assert!(
        issues.iter().any(|i| i.starts_with("prices.nobody/x")),
        "{issues:?}"
    );
}

/// Sends `body` with `key` and the custom cost `custom`; returns status, headers and body.
async fn send_priced(
    gw: &TestGateway,
    key: &str,
    custom: &str,
    body: &Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let r = client()
        .post(gw.at("/v1/chat/completions"))
        .bearer_auth(key)
        .header("x-portcullis-custom-cost", custom)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.json().await.unwrap_or(Value::Null))
}

/// A virtual key created through the admin API with `body`; returns its view and secret.
async fn create_key(gw: &TestGateway, body: Value) -> (Value, String) {
    let r = client()
        .post(gw.at("/admin/keys"))
        .bearer_auth(MASTER_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    let key = v["key"].as_str().unwrap().to_owned();
    (v, key)
}

#[tokio::test]
async fn a_custom_cost_of_zero_does_not_escape_a_keys_budget_unless_the_key_may_set_prices() {
    let mock = MockUpstream::start().await;
    // gpt-4o-mini at $0.15 / $0.60 per million tokens.
    let gw = TestGateway::start(&providers_yaml(&mock)).await;
    let budget = json!({"usd": 0.00005, "period": "daily"});
    let (view, key) = create_key(&gw, json!({"name": "small", "budget": budget})).await;
    assert_eq!(view["allow_custom_cost"], false, "{view}");
    let zero = r#"{"per_token_in": 0, "per_token_out": 0}"#;

    // Priced at zero by the caller, the key is still charged the list price and refused once
    // the list-price spend passes its budget.
    let mut refused = None;
    let mut served = 0;
    for _ in 0..200 {
        let (s, h, body) = send_priced(&gw, &key, zero, &chat("gpt-4o-mini", false)).await;
        if s == 429 {
            refused = Some(body);
            break;
        }
        assert_eq!(s, 200, "{body}");
        served += 1;
        if served == 1 {
            // The log keeps both figures; budgets counted the list price.
            let rec = logged(&gw, &h).await;
            let (i, o) = tokens(&rec);
            let list = (i * 0.15 + o * 0.60) / 1e6;
            assert_close(&rec["cost_usd"], list);
            assert_close(&rec["list_cost_usd"], list);
            assert_close(&rec["custom_cost_usd"], 0.0);
        }
    }
    let body = refused.expect("the list-price spend ran out the budget");
    assert_eq!(body["error"]["code"], "budget_exceeded", "{body}");
    assert!(served >= 1, "served {served}");
    let logged_spend: f64 = gw
        .logs("status=200&limit=1000", served)
        .await
        .iter()
        .map(|r| r["cost_usd"].as_f64().unwrap())
        .sum();
    assert!(
        logged_spend > 0.0 && logged_spend <= 0.00005 + 1e-12,
        "spent {logged_spend}"
    );

    // A key the operator allowed to set its prices is charged the custom price: at zero it
    // never runs out, and the log shows the list price beside it.
    let (view, priced) = create_key(
        &gw,
        json!({"name": "priced", "budget": budget, "allow_custom_cost": true}),
    )
    .await;
    assert_eq!(view["allow_custom_cost"], true);
    let id = view["id"].as_str().unwrap();
    let r = client()
        .get(gw.at(&format!("/admin/keys/{id}")))
        .bearer_auth(MASTER_KEY)
        .send()
        .await
        .unwrap();
    let shown: Value = r.json().await.unwrap();
    assert_eq!(shown["allow_custom_cost"], true, "{shown}");
    for _ in 0..(served + 5) {
        let (s, _, body) = send_priced(&gw, &priced, zero, &chat("gpt-4o-mini", false)).await;
        assert_eq!(s, 200, "{body}");
    }
    let own = r#"{"per_token_in": 0.0000001, "per_token_out": 0.0000002}"#;
    let (s, h, body) = send_priced(&gw, &priced, own, &chat("gpt-4o-mini", false)).await;
    assert_eq!(s, 200, "{body}");
    let rec = logged(&gw, &h).await;
    let (i, o) = tokens(&rec);
    assert_close(&rec["cost_usd"], i * 0.0000001 + o * 0.0000002);
    assert_close(&rec["custom_cost_usd"], i * 0.0000001 + o * 0.0000002);
    assert_close(&rec["list_cost_usd"], (i * 0.15 + o * 0.60) / 1e6);

    // Without a custom cost there is one figure.
    let r = client()
        .post(gw.at("/v1/chat/completions"))
        .bearer_auth(MASTER_KEY)
        .json(&chat("gpt-4o-mini", false))
        .send()
        .await
        .unwrap();
    let rec = logged(&gw, r.headers()).await;
    assert_eq!(r.status(), 200);
    assert!(
        rec["custom_cost_usd"].is_null() && rec["list_cost_usd"].is_null(),
        "{rec}"
    );
    gw.stop().await;
}
