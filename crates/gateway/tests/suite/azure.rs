//! Azure OpenAI behind the gateway over real HTTP: OpenAI- and Anthropic-dialect callers
//! reaching a `kind: azure` provider (the mock's Azure OpenAI) in the deployments form and the
//! v1 form, streaming and not, with tools; model names mapped to deployments; Azure's
//! content-filter results surfaced in each dialect; its errors with their status (a 429 with
//! its wait, failing over to another provider); embeddings; cost at OpenAI's prices.

use portcullis_test_support::MockUpstream;
use serde_json::{Value, json};

use crate::common::*;

const AZURE_KEY: &str = "azure-mock-key";

/// An Azure provider in the deployments form, `gpt-4o` mapped to the deployment `chat-prod`.
fn azure_yaml(mock: &MockUpstream) -> String {
    format!(
        "providers:\n  azure:\n    kind: azure\n    api_key: {AZURE_KEY}\n    base_url: {}\n    api_version: 2024-10-21\n    deployments:\n      gpt-4o: chat-prod\n      embeddings: embed-prod\n",
        mock.azure_endpoint()
    )
}

async fn setup() -> (MockUpstream, TestGateway) {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&azure_yaml(&mock)).await;
    (mock, gw)
}

fn tools_openai() -> Value {
    json!([
        {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
         "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}},
        {"type": "function", "function": {"name": "get_time", "description": "Time in a city",
         "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}}
    ])
}

fn tools_anthropic() -> Value {
    json!([
        {"name": "get_weather", "description": "Weather in a city",
         "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}}},
        {"name": "get_time", "description": "Time in a city",
         "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}}}
    ])
}

/// The last request the mock's Azure OpenAI received.
fn last_azure(mock: &MockUpstream) -> portcullis_test_support::RecordedRequest {
    mock.requests()
        .into_iter()
        .rev()
        .find(|r| r.path.starts_with("/openai/"))
        .expect("Azure OpenAI was called")
}

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

#[tokio::test]
async fn an_openai_client_reaches_the_mapped_deployment_with_azures_annotations_and_cost() {
    let (mock, gw) = setup().await;
    let (status, headers, body) = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model": "azure/gpt-4o", "max_tokens": 50, "messages": [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello from the mock! You said: hi"
    );
    assert_eq!(
        v["model"], "gpt-4o-2024-11-20",
        "the model the deployment runs"
    );
    // Azure's own fields reach an OpenAI caller as Azure sent them.
    assert_eq!(
        v["prompt_filter_results"][0]["content_filter_results"]["hate"],
        json!({"filtered": false, "severity": "safe"})
    );
    assert_eq!(
        v["choices"][0]["content_filter_results"]["violence"]["severity"],
        "safe"
    );
    assert_eq!(headers["x-portcullis-provider"], "azure");

    let sent = last_azure(&mock);
    assert_eq!(sent.path, "/openai/deployments/chat-prod/chat/completions");
    assert_eq!(sent.query, "api-version=2024-10-21");
    assert_eq!(sent.headers["api-key"], AZURE_KEY);
    assert!(!sent.headers.contains_key("authorization"));
    assert_eq!(sent.body["max_tokens"], 50);
    assert_eq!(sent.body["messages"][0]["role"], "system");

    // Priced as the model the caller named, at OpenAI's price.
    let log = gw
        .log_of(headers["x-portcullis-request-id"].to_str().unwrap())
        .await;
    assert_eq!(log["provider"], "azure");
    assert_eq!(log["model"], "gpt-4o");
    let (i, o) = (
        v["usage"]["prompt_tokens"].as_f64().unwrap(),
        v["usage"]["completion_tokens"].as_f64().unwrap(),
    );
    assert_eq!(log["input_tokens"], v["usage"]["prompt_tokens"]);
    let cost = log["cost_usd"].as_f64().unwrap();
    let expected = (i * 2.50 + o * 10.0) / 1e6;
    assert!((cost - expected).abs() < 1e-12, "{cost} vs {expected}");

    // An unmapped name is the deployment itself.
    let (status, _, body) = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model": "azure/gpt-4o-mini", "messages": user("x")}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        last_azure(&mock).path,
        "/openai/deployments/gpt-4o-mini/chat/completions"
    );
    gw.stop().await;
}

#[tokio::test]
async fn an_openai_client_streams_tool_calls_and_sends_their_results_back() {
    let (mock, gw) = setup().await;
    let ask = json!({"role": "user", "content": "[tools2] Paris"});
    let (status, _, body) = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model": "azure/gpt-4o", "stream": true,
                "stream_options": {"include_usage": true},
                "messages": [ask], "tools": tools_openai()}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("\"prompt_filter_results\""),
        "Azure's prompt annotations reach an OpenAI caller: {body}"
    );
    let s = parse_openai_stream(&body);
    assert!(s.done && s.error.is_none(), "{body}");
    assert_eq!(s.finish_reason.as_deref(), Some("tool_calls"));
    let names: Vec<&str> = s.tool_calls.iter().map(|c| c.1.as_str()).collect();
    assert_eq!(names, ["get_weather", "get_time"]);
    assert_eq!(
        serde_json::from_str::<Value>(&s.tool_calls[0].2).unwrap(),
        json!({"query": "[tools2] Paris"})
    );
    assert!(s.usage.unwrap()["completion_tokens"].as_u64().unwrap() > 0);
    let sent = last_azure(&mock);
    assert_eq!(sent.body["stream_options"], json!({"include_usage": true}));
    assert_eq!(sent.headers["accept"], "text/event-stream");

    let calls: Vec<Value> = s
        .tool_calls
        .iter()
        .map(|(id, name, args)| {
            json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}})
        })
        .collect();
    let (status, _, body) = post(
        &gw,
        "/v1/chat/completions",
        // Without tools offered, the mock answers the results with text.
        &json!({"model": "azure/gpt-4o", "messages": [
            ask,
            {"role": "assistant", "content": null, "tool_calls": calls},
            {"role": "tool", "tool_call_id": s.tool_calls[0].0, "content": "sunny"},
            {"role": "tool", "tool_call_id": s.tool_calls[1].0, "content": "noon"}
        ]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let sent = last_azure(&mock);
    let messages = sent.body["messages"].as_array().unwrap();
    assert_eq!(messages[2]["tool_call_id"], s.tool_calls[0].0.as_str());
    assert_eq!(messages[3]["content"], "noon");
    gw.stop().await;
}

#[tokio::test]
async fn an_anthropic_client_gets_tool_use_from_azure_streamed_and_not() {
    let (mock, gw) = setup().await;
    let messages = user("Rome");
    let (status, _, body) = post(
        &gw,
        "/v1/messages",
        &json!({"model": "azure/gpt-4o", "max_tokens": 200, "system": "Be useful.",
                "messages": messages, "tools": tools_anthropic(),
                "tool_choice": {"type": "tool", "name": "get_time"}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["stop_reason"], "tool_use");
    let call = &v["content"][0];
    assert_eq!(call["type"], "tool_use");
    assert_eq!(call["name"], "get_time");
    assert_eq!(call["input"], json!({"query": "Rome"}));
    assert!(v["usage"]["input_tokens"].as_u64().unwrap() > 0);
    let sent = last_azure(&mock);
    assert_eq!(sent.path, "/openai/deployments/chat-prod/chat/completions");
    assert_eq!(
        sent.body["messages"][0],
        json!({"role": "system", "content": "Be useful."})
    );
    assert_eq!(
        sent.body["tool_choice"],
        json!({"type": "function", "function": {"name": "get_time"}})
    );

    // The result goes back as a tool message; the answer streams as Anthropic events.
    let (status, _, body) = post(
        &gw,
        "/v1/messages",
        &json!({"model": "azure/gpt-4o", "max_tokens": 200, "stream": true,
        "tools": tools_anthropic(), "messages": [
            messages[0],
            {"role": "assistant", "content": [call]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": call["id"], "content": "9 pm"}]}
        ]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let s = parse_anthropic_stream(&body);
    assert!(s.error.is_none(), "{body}");
    assert_eq!(s.stop_reason.as_deref(), Some("end_turn"));
    assert_eq!(s.text, "Hello from the mock! You said: Rome");
    assert_eq!(s.events.first().map(String::as_str), Some("message_start"));
    assert_eq!(s.events.last().map(String::as_str), Some("message_stop"));
    assert!(s.usage["output_tokens"].as_u64().unwrap() > 0, "{body}");
    assert!(
        !body.contains("\"id\":\"\""),
        "the prompt-annotation chunk is not the message's start: {body}"
    );
    let sent = last_azure(&mock);
    assert_eq!(sent.body["messages"][2]["role"], "tool");
    assert_eq!(sent.body["messages"][2]["content"], "9 pm");

    // Streamed calls reach an Anthropic client as tool_use blocks.
    let (status, _, body) = post(
        &gw,
        "/v1/messages",
        &json!({"model": "azure/gpt-4o", "max_tokens": 200, "stream": true,
                "tools": tools_anthropic(), "messages": user("[tools2] x")}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let s = parse_anthropic_stream(&body);
    assert_eq!(s.stop_reason.as_deref(), Some("tool_use"));
    let names: Vec<&str> = s.tool_uses.iter().map(|t| t.1.as_str()).collect();
    assert_eq!(names, ["get_weather", "get_time"]);
    gw.stop().await;
}

#[tokio::test]
async fn without_an_api_version_requests_take_the_v1_form() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&format!(
        "providers:\n  az:\n    kind: azure\n    api_key: {AZURE_KEY}\n    base_url: {}/openai/v1\n    deployments:\n      gpt-4o: chat-prod\n",
        mock.azure_endpoint()
    ))
    .await;
    for stream in [false, true] {
        let (status, _, body) = post(
            &gw,
            "/v1/messages",
            &json!({"model": "az/gpt-4o", "max_tokens": 20, "stream": stream,
                    "messages": user("hello")}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let text = if stream {
            parse_anthropic_stream(&body).text
        } else {
            let v: Value = serde_json::from_str(&body).unwrap();
            v["content"][0]["text"].as_str().unwrap().to_owned()
        };
        assert_eq!(text, "Hello from the mock! You said: hello");
        let sent = last_azure(&mock);
        assert_eq!(sent.path, "/openai/v1/chat/completions");
        assert_eq!(sent.query, "");
        assert_eq!(
            sent.body["model"], "chat-prod",
            "the deployment is the model"
        );
        assert_eq!(sent.headers["api-key"], AZURE_KEY);
    }
    gw.stop().await;
}

#[tokio::test]
async fn bare_openai_names_reach_azure_only_when_no_openai_provider_serves_them() {
    let mock = MockUpstream::start().await;
    // Azure alone: `gpt-4o` (mapped) and `gpt-4o-mini` (a well-known name) are Azure's.
    let gw = TestGateway::start(&azure_yaml(&mock)).await;
    for model in ["gpt-4o", "gpt-4o-mini"] {
        let (status, headers, body) = post(
            &gw,
            "/v1/chat/completions",
            &json!({"model": model, "messages": user("x")}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(headers["x-portcullis-provider"], "azure", "{model}");
    }
    gw.stop().await;

    // OpenAI configured first keeps OpenAI's names.
    let gw = TestGateway::start(&format!(
        "providers:\n  openai:\n    api_key: sk-mock-openai\n    base_url: {}\n  azure:\n    api_key: {AZURE_KEY}\n    base_url: {}\n    api_version: 2024-10-21\n",
        mock.openai_base_url(),
        mock.azure_endpoint()
    ))
    .await;
    let (status, headers, body) = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model": "gpt-4o-mini", "messages": user("x")}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-portcullis-provider"], "openai");
    gw.stop().await;
}

#[tokio::test]
async fn a_filtered_answer_is_a_content_filter_stop_in_each_dialect() {
    let (_mock, gw) = setup().await;
    let ask = user("tell me [filter-answer violence] now");

    // OpenAI callers get Azure's answer as it is.
    let (status, _, body) = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model": "azure/gpt-4o", "messages": ask}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(
        v["choices"][0]["content_filter_results"]["violence"],
        json!({"filtered": true, "severity": "medium"})
    );

    // Anthropic callers get a refusal naming the category.
    let (status, _, body) = post(
        &gw,
        "/v1/messages",
        &json!({"model": "azure/gpt-4o", "max_tokens": 50, "messages": ask}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["stop_reason"], "refusal");
    let text = v["content"][0]["text"].as_str().unwrap();
    assert!(
        text.contains("content filter") && text.contains("violence: medium"),
        "{v}"
    );

    // Streamed: what came before the filter, then the refusal and the stop.
    let (status, _, body) = post(
        &gw,
        "/v1/messages",
        &json!({"model": "azure/gpt-4o", "max_tokens": 50, "stream": true, "messages": ask}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let s = parse_anthropic_stream(&body);
    assert_eq!(s.stop_reason.as_deref(), Some("refusal"), "{body}");
    assert!(s.text.starts_with("Hello from "), "{}", s.text);
    assert!(s.text.contains("violence: medium"), "{}", s.text);

    let (status, _, body) = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model": "azure/gpt-4o", "stream": true, "messages": ask}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let s = parse_openai_stream(&body);
    assert_eq!(s.finish_reason.as_deref(), Some("content_filter"), "{body}");
    assert!(body.contains("\"filtered\":true"), "{body}");
    gw.stop().await;
}

#[tokio::test]
async fn a_filtered_prompt_is_a_400_naming_the_category_in_each_dialect() {
    let (_mock, gw) = setup().await;
    let (status, _, body) = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model": "azure/gpt-4o", "messages": user("[filter-prompt hate]")}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "content_filter");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("content filter (hate: high)"), "{message}");

    let (status, _, body) = post(
        &gw,
        "/v1/messages",
        &json!({"model": "azure/gpt-4o", "max_tokens": 10, "stream": true,
                "messages": user("[filter-prompt jailbreak]")}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("(jailbreak)"),
        "{v}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn azure_errors_reach_the_caller_in_its_dialect_with_their_status() {
    let (_mock, gw) = setup().await;
    let chat = |model: &str| json!({"model": format!("azure/{model}"), "messages": user("x")});
    for (model, want) in [
        ("mock-error-400", 400),
        ("mock-error-403", 502),
        ("mock-error-500", 502),
        ("mock-error-503", 503),
        ("no-such-deployment", 404),
    ] {
        let (status, _, body) = post(&gw, "/v1/chat/completions", &chat(model)).await;
        assert_eq!(status, want, "{model}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(v["error"]["message"].is_string(), "{body}");
    }
    let (status, headers, body) = post(&gw, "/v1/chat/completions", &chat("mock-error-429")).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(headers["retry-after"], "1");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("S0 pricing tier")
    );

    let (status, _, body) = post(
        &gw,
        "/v1/messages",
        &json!({"model": "azure/no-such-deployment", "max_tokens": 10, "messages": user("x")}),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["type"], "not_found_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("deployment"),
        "{v}"
    );

    // A reasoning deployment gets `max_completion_tokens`, which it requires.
    let (status, _, body) = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model": "azure/o3-mini", "max_tokens": 30, "messages": user("x")}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    gw.stop().await;
}

#[tokio::test]
async fn a_key_azure_refuses_is_the_gateways_failure() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&format!(
        "providers:\n  azure:\n    api_key: wrong\n    base_url: {}\n    api_version: 2024-10-21\n",
        mock.azure_endpoint()
    ))
    .await;
    let (status, _, body) = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model": "azure/gpt-4o", "messages": user("x")}),
    )
    .await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body.contains("rejected the gateway's credentials"),
        "{body}"
    );
    assert!(!body.contains("subscription key"), "{body}");
    gw.stop().await;
}

/// A throttled Azure deployment hands over to another provider in the route.
#[tokio::test]
async fn a_throttled_deployment_fails_over_to_another_provider() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&format!(
        "{}  anthropic:\n    api_key: sk-ant-mock\n    base_url: {}\nroutes:\n  chain:\n    targets: [azure/mock-error-429, anthropic/claude-sonnet-4-5]\n",
        azure_yaml(&mock),
        mock.anthropic_base_url()
    ))
    .await;
    let (status, headers, body) = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model": "chain", "messages": user("hi")}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello from the mock! You said: hi"
    );
    assert_eq!(headers["x-portcullis-provider"], "anthropic");
    let log = gw
        .log_of(headers["x-portcullis-request-id"].to_str().unwrap())
        .await;
    assert!(log.to_string().contains("azure/mock-error-429"), "{log}");
    gw.stop().await;
}

#[tokio::test]
async fn embeddings_go_to_the_deployments_embeddings_and_are_priced() {
    let (mock, gw) = setup().await;
    let (status, headers, body) = post(
        &gw,
        "/v1/embeddings",
        &json!({"model": "azure/text-embedding-3-small", "input": ["hello", "world"], "dimensions": 8}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["data"][1]["embedding"].as_array().unwrap().len(), 8);
    let sent = last_azure(&mock);
    assert_eq!(
        sent.path,
        "/openai/deployments/text-embedding-3-small/embeddings"
    );
    assert_eq!(sent.query, "api-version=2024-10-21");
    let log = gw
        .log_of(headers["x-portcullis-request-id"].to_str().unwrap())
        .await;
    let tokens = v["usage"]["prompt_tokens"].as_f64().unwrap();
    assert!(tokens > 0.0);
    let cost = log["cost_usd"].as_f64().unwrap();
    assert!((cost - tokens * 0.02 / 1e6).abs() < 1e-15, "{cost}");

    // A mapped name reaches its deployment; a chat deployment refuses embeddings.
    let (status, _, body) = post(
        &gw,
        "/v1/embeddings",
        &json!({"model": "azure/embeddings", "input": "x"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        last_azure(&mock).path,
        "/openai/deployments/embed-prod/embeddings"
    );
    let (status, _, body) = post(
        &gw,
        "/v1/embeddings",
        &json!({"model": "azure/gpt-4o", "input": "x"}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("embeddings operation does not work"),
        "{body}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn mapped_names_are_listed_as_the_providers_models() {
    let (_mock, gw) = setup().await;
    let r = client()
        .get(gw.at("/v1/models"))
        .bearer_auth(MASTER_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert!(ids.contains(&"azure/gpt-4o"), "{ids:?}");
    assert!(ids.contains(&"azure/embeddings"), "{ids:?}");
    gw.stop().await;
}

/// An Azure provider configured with an Entra ID application: the gateway asks the authority
/// for a token (the client-credentials grant), keeps it and sends it as a bearer instead of a
/// key; a secret Entra refuses is the gateway's failure.
#[tokio::test]
async fn an_entra_id_applications_token_replaces_the_key() {
    let mock = MockUpstream::start().await;
    let app = portcullis_test_support::MockOptions::default();
    let yaml = |secret: &str| {
        format!(
            "providers:\n  azure:\n    base_url: {ep}\n    api_version: 2024-10-21\n    tenant_id: {}\n    client_id: {}\n    client_secret: \"{secret}\"\n    authority: {ep}\n",
            app.azure_tenant_id,
            app.azure_client_id,
            ep = mock.azure_endpoint(),
        )
    };
    let gw = TestGateway::start(&yaml(&app.azure_client_secret)).await;
    for stream in [false, true] {
        let (status, _, body) = post(
            &gw,
            "/v1/messages",
            &json!({"model": "azure/gpt-4o", "max_tokens": 20, "stream": stream,
                    "messages": user("with a token")}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, _, body) = post(
        &gw,
        "/v1/embeddings",
        &json!({"model": "azure/text-embedding-3-small", "input": "x"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let sent = last_azure(&mock);
    let bearer = sent.headers["authorization"].clone();
    assert!(bearer.starts_with("Bearer eyJ"), "{bearer}");
    assert!(!sent.headers.contains_key("api-key"));
    let grants: Vec<_> = mock
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/oauth2/v2.0/token"))
        .collect();
    assert_eq!(
        grants.len(),
        1,
        "one token serves every request until it nears expiry"
    );
    assert_eq!(
        grants[0].path,
        format!("/{}/oauth2/v2.0/token", app.azure_tenant_id)
    );
    let form = String::from_utf8_lossy(&grants[0].raw).into_owned();
    assert!(form.contains("grant_type=client_credentials"), "{form}");
    assert!(
        form.contains("scope=https%3A%2F%2Fcognitiveservices.azure.com%2F.default"),
        "{form}"
    );
    gw.stop().await;

    let gw = TestGateway::start(&yaml("wrong")).await;
    let (status, _, body) = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model": "azure/gpt-4o", "messages": user("x")}),
    )
    .await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("azure"), "{body}");
    assert!(!body.contains("wrong"), "{body}");
    gw.stop().await;
}

/// The ids `GET /v1/models` lists for the master key.
async fn listed_ids(gw: &TestGateway) -> Vec<String> {
    let r = client()
        .get(gw.at("/v1/models"))
        .bearer_auth(MASTER_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

/// A gateway with no config file, enabled by `vars` (and its master key and database).
async fn zero_config(vars: &[(&str, String)]) -> (TestGateway, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut env: std::collections::HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    env.insert("PORTCULLIS_MASTER_KEY".into(), MASTER_KEY.to_owned());
    env.insert(
        "PORTCULLIS_DATABASE_URL".into(),
        format!("sqlite://{}", dir.path().join("gw.db").display()),
    );
    let config = portcullis_config::load(None, &env).unwrap();
    (TestGateway::start_config(config).await, dir)
}

/// With no config file, `AZURE_OPENAI_API_KEY`, `AZURE_OPENAI_ENDPOINT` and
/// `OPENAI_API_VERSION` alone list the resource's models that chat or embed (Azure's Models -
/// List, `?api-version=`), retired, completions-only and image models left out; a listed model
/// deployed under its name answers, one deployed under no name is Azure's 404.
#[tokio::test]
async fn zero_config_azure_variables_list_the_resources_models() {
    let mock = MockUpstream::start().await;
    let (gw, _dir) = zero_config(&[
        ("AZURE_OPENAI_API_KEY", AZURE_KEY.to_owned()),
        ("AZURE_OPENAI_ENDPOINT", mock.azure_endpoint()),
        ("OPENAI_API_VERSION", "2024-10-21".to_owned()),
    ])
    .await;
    let ids = listed_ids(&gw).await;
    for listed in [
        "azure/gpt-4o",
        "azure/gpt-4o-2024-11-20",
        "azure/gpt-4o-mini",
        "azure/o3-mini",
        "azure/text-embedding-3-small",
        "azure/gpt-4o-mini-2024-07-18",
    ] {
        assert!(ids.iter().any(|i| i == listed), "{listed}: {ids:?}");
    }
    for hidden in ["gpt-35-turbo-0613", "davinci-002", "dall-e-3"] {
        assert!(
            !ids.iter().any(|i| i.ends_with(hidden)),
            "{hidden}: {ids:?}"
        );
    }
    let asked = mock
        .requests()
        .into_iter()
        .find(|r| r.path == "/openai/models")
        .expect("the list was asked for");
    assert_eq!(asked.query, "api-version=2024-10-21");
    assert_eq!(asked.headers["api-key"], AZURE_KEY);

    let (status, _, body) = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model": "azure/gpt-4o", "messages": user("listed")}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model": "azure/gpt-4o-2024-11-20", "messages": user("undeployed")}),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("model_not_found"), "{body}");
    gw.stop().await;
}

/// Without `OPENAI_API_VERSION`, the v1 form's list, `GET /openai/v1/models`.
#[tokio::test]
async fn the_v1_form_lists_from_openai_v1_models() {
    let mock = MockUpstream::start().await;
    let (gw, _dir) = zero_config(&[
        ("AZURE_OPENAI_API_KEY", AZURE_KEY.to_owned()),
        ("AZURE_OPENAI_ENDPOINT", mock.azure_endpoint()),
    ])
    .await;
    let ids = listed_ids(&gw).await;
    assert!(ids.iter().any(|i| i == "azure/gpt-4o-mini"), "{ids:?}");
    assert!(!ids.iter().any(|i| i == "azure/dall-e-3"), "{ids:?}");
    let paths: Vec<String> = mock
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/models"))
        .map(|r| r.path)
        .collect();
    assert_eq!(paths, ["/openai/v1/models"]);
    gw.stop().await;
}

/// A key Azure refuses lists none of the resource's models (the mapped names stay listed), and
/// the other providers' lists are unaffected.
#[tokio::test]
async fn a_refused_key_lists_nothing_from_azure_and_leaves_the_rest() {
    let mock = MockUpstream::start().await;
    let yaml = format!(
        "providers:\n  azure:\n    api_key: wrong\n    base_url: {}\n    api_version: 2024-10-21\n    deployments:\n      chat: chat-prod\n  openai:\n    api_key: sk-mock-openai\n    base_url: {}\n",
        mock.azure_endpoint(),
        mock.openai_base_url(),
    );
    let gw = TestGateway::start(&yaml).await;
    let ids = listed_ids(&gw).await;
    let azure: Vec<&String> = ids.iter().filter(|i| i.starts_with("azure/")).collect();
    assert_eq!(azure, ["azure/chat"], "{ids:?}");
    assert!(ids.iter().any(|i| i == "openai/gpt-4o"), "{ids:?}");
    assert!(
        mock.requests().iter().any(|r| r.path == "/openai/models"),
        "the list was asked for"
    );
    gw.stop().await;
}
