//! `POST /v1/embeddings` through the same pipeline as chat: the key's allowed models, its rate
//! limits and budgets, failover over a route's targets, circuit breakers, and cost in the log.

use serde_json::{Value, json};

use crate::common::*;
use portcullis_test_support::MockUpstream;

async fn admin_post(gw: &TestGateway, path: &str, body: Value) -> Value {
    let r = client()
        .post(gw.at(path))
        .bearer_auth(MASTER_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.json().await.unwrap()
}

async fn embed(
    gw: &TestGateway,
    key: &str,
    model: &str,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let r = client()
        .post(gw.at("/v1/embeddings"))
        .bearer_auth(key)
        .json(&json!({"model": model, "input": ["first text", "second text"]}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn embeddings_obey_the_keys_models_limits_failover_and_cost() {
    let mock = MockUpstream::start().await;
    // The shared providers file plus a route whose first target fails.
    let yaml = providers_yaml(&mock).replace(
        "routes:\n",
        "routes:\n  embed-route:\n    targets:\n      - openai/mock-error-503\n      - openai/text-embedding-3-small\n",
    );
    let yaml = format!(
        "{yaml}\nprices:\n  openai/text-embedding-3-small:\n    input: 20.0\n    output: 0.0\n"
    );
    let gw = TestGateway::start(&yaml).await;

    // A key allowed only the embeddings route, three requests a minute.
    let created = admin_post(
        &gw,
        "/admin/keys",
        json!({"name": "embedder", "models": ["embed-route"], "limits": {"requests_per_minute": 3}}),
    )
    .await;
    let key = created["key"].as_str().unwrap().to_owned();

    // Another model: refused before any upstream call, as for chat.
    let hits = mock.hits();
    let (status, _, body) = embed(&gw, &key, "openai/text-embedding-3-large").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "model_not_allowed", "{body}");
    assert_eq!(mock.hits(), hits, "nothing was sent upstream");

    // The route: its first target fails, the second answers.
    let (status, headers, body) = embed(&gw, &key, "embed-route").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    assert_eq!(headers["x-portcullis-model"], "text-embedding-3-small");
    let attempts: u32 = headers["x-portcullis-attempts"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        attempts >= 2,
        "the failing target was tried first: {attempts}"
    );
    assert!(headers.contains_key("ratelimit-remaining"), "{headers:?}");
    let log = gw
        .log_of(headers["x-portcullis-request-id"].to_str().unwrap())
        .await;
    assert_eq!(log["endpoint"], "embeddings");
    assert_eq!(log["route"], "embed-route");
    let input = log["input_tokens"].as_f64().unwrap();
    assert!(input > 0.0, "{log}");
    let cost = log["cost_usd"].as_f64().unwrap();
    assert!((cost - input * 20.0 / 1e6).abs() < 1e-12, "{log}");
    assert!(
        log["attempt_log"]
            .as_str()
            .unwrap_or_default()
            .contains("mock-error-503"),
        "{log}"
    );

    // The key's rate limit counts embeddings: the third request passes, the fourth is a 429.
    assert_eq!(embed(&gw, &key, "embed-route").await.0, 200);
    let (status, headers, body) = embed(&gw, &key, "embed-route").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["ratelimit-remaining"], "0");
    let (status, headers, body) = embed(&gw, &key, "embed-route").await;
    assert_eq!(status, 429, "{body}");
    assert!(headers.contains_key("retry-after"));
    gw.stop().await;
}
