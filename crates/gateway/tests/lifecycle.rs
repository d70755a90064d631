//! Health, readiness, metrics, the model listing, and the master key's first-start generation.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;

use common::*;
use portcullis_config::Source;
use portcullis_gateway::{Gateway, MasterKeyOrigin};
use portcullis_test_support::MockUpstream;
use serde_json::{Value, json};

#[tokio::test]
async fn health_readiness_and_metrics() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&providers_yaml(&mock)).await;
    let r = client().get(gw.at("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = client().get(gw.at("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "ready");

    post(
        &gw,
        "/v1/chat/completions",
        &json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    let _ = gw.logs("", 1).await;
    let text = client()
        .get(gw.at("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(r#"portcullis_requests_total{endpoint="chat_completions",provider="openai",status="200"} 1"#),
        "{text}"
    );
    assert!(text.contains("portcullis_request_duration_seconds_bucket"));
    assert!(text.contains("portcullis_tokens_total{provider=\"openai\",kind=\"input\"}"));
    assert!(text.contains("portcullis_request_log_written_total"));
    assert!(text.contains("portcullis_request_log_dropped_total 0"));
}

#[tokio::test]
async fn models_are_listed_in_the_callers_dialect() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&providers_yaml(&mock)).await;
    let v: Value = client()
        .get(gw.at("/v1/models"))
        .bearer_auth(MASTER_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["object"], "list");
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["fast", "smart", "groq/llama-3.1-8b-instant"]);

    let v: Value = client()
        .get(gw.at("/v1/models"))
        .header("x-api-key", MASTER_KEY)
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"][0]["type"], "model");
    assert_eq!(v["has_more"], false);
    assert_eq!(v["first_id"], "fast");
}

#[tokio::test]
async fn a_master_key_is_generated_once_stored_hashed_and_kept_across_restarts() {
    let mock = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("mk.db").display());
    let yaml = format!("database:\n  url: \"{db}\"\n{}", providers_yaml(&mock));
    let config = portcullis_config::from_yaml(&yaml, Source::Environment, &HashMap::new()).unwrap();

    let gateway = Gateway::build(&config).await.unwrap();
    let MasterKeyOrigin::Generated(key) = gateway.master_key() else {
        panic!("a key is generated on first start");
    };
    let key = key.expose().to_owned();
    assert!(key.starts_with("pk-master-"));
    let stored = gateway
        .state()
        .stores
        .settings
        .get("master_key_sha256")
        .await
        .unwrap()
        .unwrap();
    assert!(!stored.contains(&key), "only a digest is stored");
    assert_eq!(stored.len(), 64);
    drop(gateway);

    let gw = TestGateway::start_config(config.clone()).await;
    let r = client()
        .post(gw.at("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "the generated key keeps working after a restart"
    );
    gw.stop().await;

    let again = Gateway::build(&config).await.unwrap();
    assert!(matches!(again.master_key(), MasterKeyOrigin::Stored));
}

#[tokio::test]
async fn readiness_fails_when_draining() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&providers_yaml(&mock)).await;
    gw.state.start_draining();
    let r = client().get(gw.at("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
}
