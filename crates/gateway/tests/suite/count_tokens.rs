//! `POST /v1/messages/count_tokens` over real HTTP: counted by Anthropic's and Gemini's own
//! count endpoints (the mocks'), estimated for an OpenAI upstream, with the model resolved as
//! for `/v1/messages`, errors in Anthropic's format, the request limits and the log record.

use portcullis_test_support::MockUpstream;
use serde_json::{Value, json};

use crate::common::*;

async fn setup(extra: &str) -> (MockUpstream, TestGateway) {
    let mock = MockUpstream::start().await;
    let providers = providers_yaml(&mock).replacen(
        "routes:",
        &format!(
            "  gemini:\n    api_key: AIza-mock-gemini\n    base_url: {}\nroutes:",
            mock.gemini_base_url()
        ),
        1,
    );
    let gw = TestGateway::start(&format!("{providers}{extra}")).await;
    (mock, gw)
}

fn count_body(model: &str) -> Value {
    json!({"model": model,
           "system": "You are terse.",
           "messages": [{"role": "user", "content": "What is the weather in Paris today?"},
                        {"role": "assistant", "content": "Let me look."},
                        {"role": "user", "content": "Thanks."}],
           "tools": [{"name": "get_weather", "description": "Weather in a city",
                      "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]})
}

#[tokio::test]
async fn anthropic_counts_at_its_own_endpoint_with_the_providers_key() {
    let (mock, gw) = setup("").await;
    let (status, headers, body) = post(
        &gw,
        "/v1/messages/count_tokens",
        &count_body("claude-sonnet-4-5"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let n = v["input_tokens"].as_u64().unwrap();
    assert!(n > 10, "{v}");
    assert_eq!(v.as_object().unwrap().len(), 1, "{v}");
    assert_eq!(headers["x-portcullis-token-count"], "provider");
    assert_eq!(headers["x-portcullis-provider"], "anthropic");

    let sent = mock
        .requests()
        .into_iter()
        .find(|r| r.path == "/v1/messages/count_tokens")
        .expect("Anthropic's count endpoint was called");
    assert_eq!(sent.headers["x-api-key"], "sk-ant-mock");
    assert_eq!(sent.headers["anthropic-version"], "2023-06-01");
    assert!(!format!("{:?}", sent.headers).contains(MASTER_KEY));
    assert_eq!(sent.body["model"], "claude-sonnet-4-5");
    assert_eq!(sent.body["tools"][0]["name"], "get_weather");
    assert!(sent.body.get("max_tokens").is_none(), "{}", sent.body);
    assert!(mock.requests().iter().all(|r| r.path != "/v1/messages"));

    let log = gw
        .log_of(headers["x-portcullis-request-id"].to_str().unwrap())
        .await;
    assert_eq!(log["endpoint"], "count_tokens");
    assert_eq!(log["provider"], "anthropic");
    assert_eq!(log["status"], 200);
    assert!(log["cost_usd"].is_null() || log["cost_usd"] == 0.0, "{log}");
    assert_eq!(log["input_tokens"], 0);
    let meta: Value = serde_json::from_str(log["metadata"].as_str().unwrap()).unwrap();
    assert_eq!(meta["count_tokens"], "provider");
    assert_eq!(meta["input_tokens"], n);
    gw.stop().await;
}

#[tokio::test]
async fn gemini_counts_at_count_tokens_with_the_whole_request() {
    let (mock, gw) = setup("").await;
    let (status, headers, body) = post(
        &gw,
        "/v1/messages/count_tokens",
        &count_body("gemini/gemini-2.5-flash"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(v["input_tokens"].as_u64().unwrap() > 5, "{v}");
    assert_eq!(headers["x-portcullis-token-count"], "provider");
    let sent = mock
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with(":countTokens"))
        .expect("Gemini's countTokens was called");
    assert_eq!(sent.path, "/v1beta/models/gemini-2.5-flash:countTokens");
    assert_eq!(sent.headers["x-goog-api-key"], "AIza-mock-gemini");
    let inner = &sent.body["generateContentRequest"];
    assert_eq!(inner["model"], "models/gemini-2.5-flash");
    assert_eq!(inner["contents"].as_array().unwrap().len(), 3);
    assert!(inner["systemInstruction"].is_object(), "{inner}");
    assert!(inner["tools"].is_array(), "{inner}");
    gw.stop().await;
}

#[tokio::test]
async fn openai_models_get_the_documented_estimate_and_no_upstream_call() {
    let (mock, gw) = setup("").await;
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "abcdefgh"}]});
    let (status, headers, text) = post(&gw, "/v1/messages/count_tokens", &body).await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    // Eight characters at four a token, and three tokens for the message.
    assert_eq!(v["input_tokens"], 2 + 3);
    assert_eq!(headers["x-portcullis-token-count"], "estimate");
    assert!(mock.requests().is_empty());
    // The same request counts the same; a longer one more.
    let (_, _, again) = post(&gw, "/v1/messages/count_tokens", &body).await;
    assert_eq!(again, text);
    let (_, _, longer) = post(
        &gw,
        "/v1/messages/count_tokens",
        &json!({"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "abcdefgh".repeat(10)}]}),
    )
    .await;
    let longer: Value = serde_json::from_str(&longer).unwrap();
    assert_eq!(longer["input_tokens"], 20 + 3);

    let log = gw
        .log_of(headers["x-portcullis-request-id"].to_str().unwrap())
        .await;
    assert_eq!(log["endpoint"], "count_tokens");
    assert_eq!(log["provider"], "openai");
    let meta: Value = serde_json::from_str(log["metadata"].as_str().unwrap()).unwrap();
    assert_eq!(meta["count_tokens"], "estimate");
    gw.stop().await;
}

#[tokio::test]
async fn bad_requests_are_refused_in_anthropics_format() {
    let (mock, gw) = setup("").await;
    for (body, status) in [
        (json!({"model": "claude-sonnet-4-5"}), 400),
        (
            json!({"model": "claude-sonnet-4-5", "max_tokens": 10,
                   "messages": [{"role": "user", "content": "x"}]}),
            400,
        ),
        (json!({"messages": [{"role": "user", "content": "x"}]}), 400),
        (
            json!({"model": "nobody-serves-this", "messages": [{"role": "user", "content": "x"}]}),
            404,
        ),
    ] {
        let (s, _, text) = post(&gw, "/v1/messages/count_tokens", &body).await;
        assert_eq!(s, status, "{body}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["type"], "error", "{text}");
        assert!(v["error"]["type"].is_string(), "{text}");
    }
    let r = client()
        .post(gw.at("/v1/messages/count_tokens"))
        .header("x-api-key", "not-a-key")
        .json(&count_body("claude-sonnet-4-5"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "authentication_error");
    assert!(mock.requests().is_empty());
    gw.stop().await;
}

#[tokio::test]
async fn count_requests_are_limited_by_request_count() {
    let (_mock, gw) = setup("limits:\n  - {scope: global, requests: 2, window: 1m}\n").await;
    let body = count_body("gpt-4o");
    for _ in 0..2 {
        let (s, h, _) = post(&gw, "/v1/messages/count_tokens", &body).await;
        assert_eq!(s, 200);
        assert_eq!(h["ratelimit-limit"], "2");
    }
    let (s, _, text) = post(&gw, "/v1/messages/count_tokens", &body).await;
    assert_eq!(s, 429, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error");
    gw.stop().await;
}

#[tokio::test]
async fn a_key_limited_to_other_models_may_not_count() {
    let (_mock, gw) = setup("").await;
    let r: Value = client()
        .post(gw.at("/admin/keys"))
        .bearer_auth(MASTER_KEY)
        .json(&json!({"name": "k", "models": ["openai/*"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = r["key"].as_str().unwrap();
    let send = |model: &str| {
        client()
            .post(gw.at("/v1/messages/count_tokens"))
            .header("x-api-key", key)
            .json(&count_body(model))
            .send()
    };
    assert_eq!(send("claude-sonnet-4-5").await.unwrap().status(), 403);
    assert_eq!(send("gpt-4o").await.unwrap().status(), 200);
    gw.stop().await;
}

/// Vertex AI counts itself: Claude at `count-tokens:rawPredict` (the model in the body, with
/// Vertex's `anthropic_version`), Gemini at `:countTokens`, each with the service account's
/// token.
#[tokio::test]
async fn vertex_counts_claude_and_gemini_at_its_own_endpoints() {
    use portcullis_test_support::vertex;
    let mock = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("service-account.json");
    std::fs::write(
        &key,
        vertex::service_account_json(vertex::PRIVATE_KEY, &mock.vertex_token_uri()),
    )
    .unwrap();
    let gw = TestGateway::start(&format!(
        "providers:\n  vertex:\n    kind: vertex\n    location: us-east5\n    credentials: {}\n    base_url: {}\n",
        key.display(),
        mock.vertex_base_url()
    ))
    .await;
    let root = "/v1/projects/mock-project/locations/us-east5/publishers";
    for (model, path) in [
        (
            "vertex/claude-sonnet-4-5@20250929",
            format!("{root}/anthropic/models/count-tokens:rawPredict"),
        ),
        (
            "vertex/gemini-2.5-flash",
            format!("{root}/google/models/gemini-2.5-flash:countTokens"),
        ),
    ] {
        let (status, headers, body) =
            post(&gw, "/v1/messages/count_tokens", &count_body(model)).await;
        assert_eq!(status, 200, "{model}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(v["input_tokens"].as_u64().unwrap() > 10, "{v}");
        assert_eq!(headers["x-portcullis-token-count"], "provider");
        let sent = mock
            .requests()
            .into_iter()
            .rev()
            .find(|r| r.path == path)
            .unwrap_or_else(|| panic!("{path} was called"));
        assert!(
            sent.headers["authorization"].starts_with("Bearer ya29."),
            "{:?}",
            sent.headers
        );
        if model.contains("claude") {
            assert_eq!(sent.body["model"], "claude-sonnet-4-5@20250929");
            assert_eq!(sent.body["anthropic_version"], "vertex-2023-10-16");
            assert!(sent.body.get("max_tokens").is_none());
        } else {
            assert!(sent.body["systemInstruction"].is_object(), "{}", sent.body);
            assert!(sent.body.get("generationConfig").is_none(), "{}", sent.body);
        }
    }
    gw.stop().await;
}
