//! The cost of every request, in the request log: built-in prices, configured overrides, the
//! per-request custom cost header, streams (complete and abandoned) and unknown models.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
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
