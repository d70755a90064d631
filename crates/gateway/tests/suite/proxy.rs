//! The proxy over real HTTP: each client dialect against each upstream dialect, streaming and
//! not, with tool calls, usage and upstream failures, against in-process mock providers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::*;
use portcullis_test_support::MockUpstream;
use serde_json::{Value, json};

async fn setup() -> (MockUpstream, TestGateway) {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&providers_yaml(&mock)).await;
    (mock, gw)
}

fn openai_body(model: &str, text: &str, stream: bool) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}], "stream": stream})
}

fn anthropic_body(model: &str, text: &str, stream: bool) -> Value {
    json!({"model": model, "max_tokens": 256, "messages": [{"role": "user", "content": text}], "stream": stream})
}

fn weather_tool_openai() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}}])
}

fn weather_tool_anthropic() -> Value {
    json!([{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}}}])
}

#[tokio::test]
async fn openai_client_openai_upstream_complete() {
    let (mock, gw) = setup().await;
    let (status, headers, body) = post(
        &gw,
        "/v1/chat/completions",
        &openai_body("gpt-4o-mini", "hi", false),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello from the mock! You said: hi"
    );
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    assert_eq!(headers["x-portcullis-provider"], "openai");
    assert_eq!(headers["x-portcullis-model"], "gpt-4o-mini");
    assert_eq!(headers["x-portcullis-attempts"], "1");
    let id = headers["x-portcullis-request-id"].to_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 7);

    // The upstream got the provider's key, never the caller's.
    let seen = mock.requests();
    let last = seen.last().unwrap();
    assert_eq!(last.headers["authorization"], "Bearer sk-mock-openai");
    assert_eq!(last.body["model"], "gpt-4o-mini");
    assert!(
        !format!("{:?}", last.headers).contains(MASTER_KEY),
        "the caller's credential is never forwarded"
    );

    let log = gw.log_of(id).await;
    assert_eq!(log["status"], 200);
    assert_eq!(log["provider"], "openai");
    assert_eq!(log["model"], "gpt-4o-mini");
    assert_eq!(log["requested_model"], "gpt-4o-mini");
    assert_eq!(log["input_tokens"], v["usage"]["prompt_tokens"]);
    assert_eq!(log["output_tokens"], v["usage"]["completion_tokens"]);
    assert_eq!(log["subject"], "master");
    assert_eq!(log["auth_method"], "master_key");
}

#[tokio::test]
async fn openai_stream_usage_is_always_collected_but_shown_only_when_asked() {
    let (mock, gw) = setup().await;
    let (status, headers, body) = post(
        &gw,
        "/v1/chat/completions",
        &openai_body("openai/gpt-4o-mini", "stream please", true),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/event-stream");
    let s = parse_openai_stream(&body);
    assert_eq!(s.text, "Hello from the mock! You said: stream please");
    assert!(s.done, "ends with [DONE]");
    assert_eq!(s.finish_reason.as_deref(), Some("stop"));
    assert!(s.usage.is_none(), "the client did not ask for usage");
    assert_eq!(
        mock.requests().last().unwrap().body["stream_options"]["include_usage"],
        true,
        "the gateway always asks the upstream for usage"
    );
    let log = gw
        .log_of(headers["x-portcullis-request-id"].to_str().unwrap())
        .await;
    assert!(log["output_tokens"].as_u64().unwrap() > 0, "{log}");
    assert!(log["ttft_ms"].as_f64().is_some());
    assert_eq!(log["stream"], true);

    let mut body = openai_body("openai/gpt-4o-mini", "stream please", true);
    body["stream_options"] = json!({"include_usage": true});
    let (_, _, text) = post(&gw, "/v1/chat/completions", &body).await;
    let s = parse_openai_stream(&text);
    assert_eq!(
        s.usage.unwrap()["completion_tokens"],
        log["output_tokens"],
        "same usage the log recorded"
    );
}

#[tokio::test]
async fn openai_tool_calls_split_across_many_deltas() {
    let (_mock, gw) = setup().await;
    for model in ["gpt-4o-mini", "anthropic/claude-sonnet-4-5"] {
        let mut body = openai_body(model, "[tool] weather in Paris", true);
        body["tools"] = weather_tool_openai();
        let (status, _, text) = post(&gw, "/v1/chat/completions", &body).await;
        assert_eq!(status, 200, "{model}: {text}");
        let s = parse_openai_stream(&text);
        assert_eq!(s.tool_calls.len(), 1, "{model}");
        let (id, name, args) = &s.tool_calls[0];
        assert!(!id.is_empty());
        assert_eq!(name, "get_weather");
        let args: Value = serde_json::from_str(args).unwrap();
        assert_eq!(args["query"], "[tool] weather in Paris", "{model}");
        assert_eq!(s.finish_reason.as_deref(), Some("tool_calls"), "{model}");

        body["stream"] = json!(false);
        let (_, _, text) = post(&gw, "/v1/chat/completions", &body).await;
        let v: Value = serde_json::from_str(&text).unwrap();
        let call = &v["choices"][0]["message"]["tool_calls"][0];
        assert_eq!(call["function"]["name"], "get_weather", "{model}");
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls", "{model}");
    }
}

#[tokio::test]
async fn openai_client_anthropic_upstream_translates_both_ways() {
    let (mock, gw) = setup().await;
    let body = json!({
        "model": "anthropic/claude-sonnet-4-5",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hello there"}
        ],
        "max_tokens": 100,
        "stop": "END"
    });
    let (status, headers, text) = post(&gw, "/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello from the mock! You said: hello there"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(v["created"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(headers["x-portcullis-provider"], "anthropic");

    let upstream = mock.requests().last().unwrap().clone();
    assert_eq!(upstream.path, "/v1/messages");
    assert_eq!(upstream.headers["x-api-key"], "sk-ant-mock");
    assert_eq!(upstream.headers["anthropic-version"], "2023-06-01");
    assert_eq!(upstream.body["system"], "Be brief.");
    assert_eq!(upstream.body["max_tokens"], 100);
    assert_eq!(upstream.body["stop_sequences"], json!(["END"]));
    assert_eq!(upstream.body["messages"][0]["role"], "user");

    let (_, _, text) = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model": "anthropic/claude-sonnet-4-5", "messages": [{"role": "user", "content": "stream it"}],
                "stream": true, "stream_options": {"include_usage": true}}),
    )
    .await;
    let s = parse_openai_stream(&text);
    assert_eq!(s.text, "Hello from the mock! You said: stream it");
    assert!(s.done);
    let usage = s.usage.expect("usage chunk");
    assert!(usage["prompt_tokens"].as_u64().unwrap() > 0);
    assert!(usage["completion_tokens"].as_u64().unwrap() > 0);
    assert_eq!(
        mock.requests().last().unwrap().body["max_tokens"],
        4096,
        "Anthropic requires max_tokens; the gateway supplies a default"
    );
}

#[tokio::test]
async fn anthropic_client_both_upstreams() {
    let (mock, gw) = setup().await;
    for (model, provider) in [
        ("claude-sonnet-4-5", "anthropic"),
        ("openai/gpt-4o", "openai"),
    ] {
        let (status, headers, text) = post(
            &gw,
            "/v1/messages",
            &anthropic_body(model, "bonjour", false),
        )
        .await;
        assert_eq!(status, 200, "{model}: {text}");
        assert_eq!(headers["x-portcullis-provider"], provider);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["type"], "message");
        assert_eq!(v["role"], "assistant");
        assert_eq!(v["content"][0]["type"], "text");
        assert_eq!(
            v["content"][0]["text"],
            "Hello from the mock! You said: bonjour"
        );
        assert_eq!(v["stop_reason"], "end_turn");
        assert!(v["usage"]["input_tokens"].as_u64().unwrap() > 0, "{model}");

        let (status, _, text) =
            post(&gw, "/v1/messages", &anthropic_body(model, "bonjour", true)).await;
        assert_eq!(status, 200);
        let s = parse_anthropic_stream(&text);
        assert_eq!(
            s.events.first().map(String::as_str),
            Some("message_start"),
            "{model}"
        );
        assert_eq!(
            s.events.last().map(String::as_str),
            Some("message_stop"),
            "{model}"
        );
        assert_eq!(s.text, "Hello from the mock! You said: bonjour", "{model}");
        assert_eq!(s.stop_reason.as_deref(), Some("end_turn"));
        assert!(
            s.usage["output_tokens"].as_u64().unwrap() > 0,
            "{model}: {}",
            s.usage
        );
    }
    // The OpenAI upstream got an OpenAI request.
    let to_openai = mock
        .requests()
        .into_iter()
        .rfind(|r| r.path == "/v1/chat/completions")
        .unwrap();
    assert_eq!(to_openai.body["messages"][0]["content"], "bonjour");
    assert_eq!(to_openai.body["stream_options"]["include_usage"], true);
}

#[tokio::test]
async fn anthropic_client_tool_use_through_openai_upstream() {
    let (_mock, gw) = setup().await;
    for model in ["claude-sonnet-4-5", "openai/gpt-4o"] {
        let mut body = anthropic_body(model, "[tool] weather in Oslo", true);
        body["tools"] = weather_tool_anthropic();
        let (status, _, text) = post(&gw, "/v1/messages", &body).await;
        assert_eq!(status, 200, "{text}");
        let s = parse_anthropic_stream(&text);
        assert_eq!(s.tool_uses.len(), 1, "{model}: {text}");
        assert_eq!(s.tool_uses[0].1, "get_weather");
        let input: Value = serde_json::from_str(&s.tool_uses[0].2).unwrap();
        assert_eq!(input["query"], "[tool] weather in Oslo", "{model}");
        assert_eq!(s.stop_reason.as_deref(), Some("tool_use"), "{model}");

        // Send the tool result back, as an agent loop does.
        let id = s.tool_uses[0].0.clone();
        let follow = json!({
            "model": model, "max_tokens": 100,
            "tools": weather_tool_anthropic(),
            "messages": [
                {"role": "user", "content": "[tool] weather in Oslo"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": id, "name": "get_weather", "input": input}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": "sunny"}, {"type": "text", "text": "thanks"}]}
            ]
        });
        let (status, _, text) = post(&gw, "/v1/messages", &follow).await;
        assert_eq!(status, 200, "{model}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v["content"][0]["text"], "Hello from the mock! You said: thanks",
            "{model}"
        );
    }
}

#[tokio::test]
async fn routes_and_aliases_reach_their_targets() {
    let (_mock, gw) = setup().await;
    let (status, headers, _) = post(
        &gw,
        "/v1/chat/completions",
        &openai_body("smart", "hi", false),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-portcullis-provider"], "anthropic");
    assert_eq!(headers["x-portcullis-model"], "claude-sonnet-4-5");
    let log = gw
        .log_of(headers["x-portcullis-request-id"].to_str().unwrap())
        .await;
    assert_eq!(log["route"], "smart");

    let (status, headers, _) = post(
        &gw,
        "/v1/chat/completions",
        &openai_body("fast", "hi", false),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-portcullis-provider"], "groq");
    assert_eq!(headers["x-portcullis-model"], "llama-3.1-8b-instant");
}

#[tokio::test]
async fn upstream_errors_answer_in_the_callers_dialect() {
    let (_mock, gw) = setup().await;
    // (mock model, status the caller sees)
    let cases = [
        ("mock-error-400", 400),
        ("mock-error-401", 502),
        ("mock-error-404", 404),
        ("mock-error-429", 429),
        ("mock-error-500", 502),
        ("mock-error-503", 503),
    ];
    for (provider, dialect_path) in [
        ("openai", "/v1/chat/completions"),
        ("anthropic", "/v1/messages"),
    ] {
        for (model, want) in cases {
            for client_path in ["/v1/chat/completions", "/v1/messages"] {
                let body = if client_path == "/v1/messages" {
                    anthropic_body(&format!("{provider}/{model}"), "x", false)
                } else {
                    openai_body(&format!("{provider}/{model}"), "x", false)
                };
                let (status, headers, text) = post(&gw, client_path, &body).await;
                assert_eq!(status, want, "{provider} {model} via {client_path}: {text}");
                let v: Value = serde_json::from_str(&text).unwrap();
                if client_path == "/v1/messages" {
                    assert_eq!(v["type"], "error", "{text}");
                    assert!(v["error"]["type"].is_string());
                    assert!(v["error"]["message"].is_string());
                } else {
                    assert!(v["error"]["message"].is_string(), "{text}");
                    assert!(v["error"]["type"].is_string());
                }
                if want == 429 {
                    assert!(headers.contains_key("retry-after"), "{model}");
                }
                assert!(
                    !text.contains("sk-mock") && !text.contains("sk-ant"),
                    "no key hints leak: {text}"
                );
                let _ = dialect_path;
            }
        }
    }
}

#[tokio::test]
async fn an_upstream_dying_mid_stream_ends_with_a_clean_error_event() {
    let (_mock, gw) = setup().await;
    let (status, headers, text) = post(
        &gw,
        "/v1/chat/completions",
        &openai_body("openai/mock-drop-midstream", "x", true),
    )
    .await;
    assert_eq!(status, 200);
    let s = parse_openai_stream(&text);
    assert!(s.error.is_some(), "{text}");
    assert!(!s.done, "no [DONE] after an error");
    let log = gw
        .log_of(headers["x-portcullis-request-id"].to_str().unwrap())
        .await;
    assert_eq!(log["status"], 502, "{log}");

    for model in [
        "anthropic/mock-drop-midstream",
        "openai/mock-drop-midstream",
    ] {
        let (status, _, text) = post(&gw, "/v1/messages", &anthropic_body(model, "x", true)).await;
        assert_eq!(status, 200);
        let s = parse_anthropic_stream(&text);
        assert!(s.error.is_some(), "{model}: {text}");
        assert_ne!(s.events.last().map(String::as_str), Some("message_stop"));
    }

    // Anthropic reports overload mid-stream as an error event; OpenAI clients get theirs.
    let (_, _, text) = post(
        &gw,
        "/v1/chat/completions",
        &openai_body("anthropic/mock-error-midstream", "x", true),
    )
    .await;
    let s = parse_openai_stream(&text);
    assert!(s.error.is_some(), "{text}");
}

#[tokio::test]
async fn embeddings_pass_through_with_usage_logged() {
    let (mock, gw) = setup().await;
    let (status, headers, text) = post(
        &gw,
        "/v1/embeddings",
        &json!({"model": "text-embedding-3-small", "input": ["a", "b"], "encoding_format": "float"}),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert!(v["data"][0]["embedding"].is_array());
    assert_eq!(
        mock.requests().last().unwrap().body["input"],
        json!(["a", "b"])
    );
    let log = gw
        .log_of(headers["x-portcullis-request-id"].to_str().unwrap())
        .await;
    assert_eq!(log["endpoint"], "embeddings");
    assert_eq!(log["input_tokens"], v["usage"]["prompt_tokens"]);

    let (status, _, text) = post(
        &gw,
        "/v1/embeddings",
        &json!({"model": "anthropic/claude-sonnet-4-5", "input": "x"}),
    )
    .await;
    assert_eq!(status, 400, "{text}");
}

#[tokio::test]
async fn unknown_fields_reach_same_dialect_upstreams_only() {
    let (mock, gw) = setup().await;
    let mut body = openai_body("openai/gpt-4o", "x", false);
    body["seed"] = json!(42);
    body["some_new_parameter"] = json!({"a": 1});
    let (status, _, _) = post(&gw, "/v1/chat/completions", &body).await;
    assert_eq!(status, 200);
    let seen = mock.requests().last().unwrap().clone();
    assert_eq!(seen.body["seed"], 42);
    assert_eq!(seen.body["some_new_parameter"], json!({"a": 1}));

    body["model"] = json!("anthropic/claude-sonnet-4-5");
    let (status, _, _) = post(&gw, "/v1/chat/completions", &body).await;
    assert_eq!(status, 200);
    let seen = mock.requests().last().unwrap().clone();
    assert!(seen.body.get("seed").is_none());
    assert!(seen.body.get("some_new_parameter").is_none());
}

#[tokio::test]
async fn anthropic_beta_is_forwarded_and_any_version_accepted() {
    let (mock, gw) = setup().await;
    for version in ["2023-06-01", "2023-01-01"] {
        let r = client()
            .post(gw.at("/v1/messages"))
            .header("x-api-key", MASTER_KEY)
            .header("anthropic-version", version)
            .header("anthropic-beta", "prompt-caching-2024-07-31")
            .json(&anthropic_body("claude-sonnet-4-5", "hi", false))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{version}");
        let seen = mock.requests().last().unwrap().clone();
        assert_eq!(seen.headers["anthropic-beta"], "prompt-caching-2024-07-31");
        assert_eq!(seen.headers["anthropic-version"], "2023-06-01");
    }
}
