//! Bedrock behind the gateway over real HTTP: OpenAI- and Anthropic-dialect callers reaching a
//! `kind: bedrock` provider (the mock's Bedrock Runtime, which checks every request's SigV4
//! signature as AWS does), streaming (AWS's event stream) and not, with system prompts,
//! multi-turn, tools and parallel calls, usage and cost, Bedrock's errors in the caller's
//! dialect (throttling as a retryable 429 that fails over), a bad signature as the gateway's
//! failure, and embeddings through InvokeModel (Titan, Cohere).

use portcullis_test_support::{MockOptions, MockUpstream, RecordedRequest};
use serde_json::{Value, json};

use crate::common::*;

const CLAUDE: &str = "anthropic.claude-3-5-sonnet-20241022-v2:0";

fn provider_block(mock: &MockUpstream, secret: &str) -> String {
    format!(
        "  bedrock:\n    region: us-east-1\n    access_key_id: AKIAIOSFODNN7EXAMPLE\n    secret_access_key: {secret}\n    base_url: {}\n",
        mock.bedrock_endpoint_url()
    )
}

async fn setup() -> (MockUpstream, TestGateway) {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&format!(
        "providers:\n{}",
        provider_block(&mock, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    ))
    .await;
    (mock, gw)
}

fn tools_openai() -> Value {
    json!([
        {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
         "parameters": {"type": "object", "properties": {"query": {"type": "string"}},
                        "required": ["query"]}}},
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

/// The last request the mock's Bedrock Runtime received.
fn last_bedrock(mock: &MockUpstream) -> RecordedRequest {
    mock.requests()
        .into_iter()
        .rev()
        .find(|r| r.path.starts_with("/model/"))
        .expect("Bedrock was called")
}

#[tokio::test]
async fn an_openai_client_reaches_bedrock_signed_with_its_system_prompt_usage_and_cost() {
    let (mock, gw) = setup().await;
    let (status, headers, body) = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model": CLAUDE, "messages": [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "how are you"}],
            "max_tokens": 100, "temperature": 0.2, "top_p": 0.9, "stop": ["END"]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello from the mock! You said: how are you"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        v["model"], CLAUDE,
        "Bedrock names no model: the one asked for"
    );
    assert_eq!(headers["x-portcullis-provider"], "bedrock");

    let sent = last_bedrock(&mock);
    assert_eq!(
        sent.path, "/model/anthropic.claude-3-5-sonnet-20241022-v2%3A0/converse",
        "the model id percent-encoded as AWS's SDKs send it"
    );
    let authorization = &sent.headers["authorization"];
    assert!(
        authorization.starts_with("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/")
            && authorization.contains("/us-east-1/bedrock/aws4_request"),
        "{authorization}"
    );
    assert!(sent.headers.contains_key("x-amz-date"));
    assert!(!sent.headers.contains_key("x-amz-security-token"));
    assert!(!format!("{:?}", sent.headers).contains(MASTER_KEY));
    assert_eq!(sent.body["system"], json!([{"text": "Answer briefly."}]));
    let roles: Vec<&str> = sent.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "user"]);
    assert_eq!(
        sent.body["inferenceConfig"],
        json!({"maxTokens": 100, "temperature": 0.2, "topP": 0.9, "stopSequences": ["END"]})
    );

    let log = gw
        .log_of(headers["x-portcullis-request-id"].to_str().unwrap())
        .await;
    assert_eq!(log["provider"], "bedrock");
    assert_eq!(log["model"], CLAUDE);
    let (i, o) = (
        v["usage"]["prompt_tokens"].as_f64().unwrap(),
        v["usage"]["completion_tokens"].as_f64().unwrap(),
    );
    assert!(i > 0.0 && o > 0.0, "{v}");
    assert_eq!(log["input_tokens"], v["usage"]["prompt_tokens"]);
    assert_eq!(log["output_tokens"], v["usage"]["completion_tokens"]);
    let cost = log["cost_usd"].as_f64().unwrap();
    let expected = (i * 3.0 + o * 15.0) / 1e6;
    assert!((cost - expected).abs() < 1e-12, "{cost} vs {expected}");
    gw.stop().await;
}

/// Two parallel calls streamed through AWS's event stream, then the turn carrying both
/// results, which Bedrock wants as one user turn of `toolResult` blocks with the calls' ids.
#[tokio::test]
async fn an_openai_client_streams_parallel_calls_from_bedrock_and_sends_their_results_back() {
    let (mock, gw) = setup().await;
    let ask = json!({"role": "user", "content": "[tools2] Paris"});
    let (status, headers, body) = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model": "us.amazon.nova-pro-v1:0", "stream": true,
                "stream_options": {"include_usage": true},
                "messages": [ask], "tools": tools_openai()}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["content-type"], "text/event-stream");
    let s = parse_openai_stream(&body);
    assert!(s.done && s.error.is_none(), "{body}");
    assert_eq!(s.finish_reason.as_deref(), Some("tool_calls"));
    assert_eq!(s.tool_calls.len(), 2, "{body}");
    assert_eq!(s.tool_calls[0].1, "get_weather");
    assert_eq!(s.tool_calls[1].1, "get_time");
    assert_eq!(
        serde_json::from_str::<Value>(&s.tool_calls[0].2).unwrap(),
        json!({"query": "[tools2] Paris"})
    );
    assert!(
        s.tool_calls[0].0.starts_with("tooluse_"),
        "Bedrock's own ids"
    );
    let usage = s.usage.unwrap();
    assert!(usage["completion_tokens"].as_u64().unwrap() > 0, "{usage}");
    assert!(usage["prompt_tokens"].as_u64().unwrap() > 0, "{usage}");
    let sent = last_bedrock(&mock);
    assert_eq!(
        sent.path,
        "/model/us.amazon.nova-pro-v1%3A0/converse-stream"
    );
    assert_eq!(
        sent.body["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"]["required"],
        json!(["query"]),
        "the JSON Schema goes as it is"
    );
    let log = gw
        .log_of(headers["x-portcullis-request-id"].to_str().unwrap())
        .await;
    assert_eq!(log["output_tokens"], usage["completion_tokens"]);

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
        &json!({"model": "us.amazon.nova-pro-v1:0", "tools": tools_openai(), "messages": [
            ask,
            {"role": "assistant", "content": null, "tool_calls": calls},
            {"role": "tool", "tool_call_id": s.tool_calls[1].0, "content": "noon"},
            {"role": "tool", "tool_call_id": s.tool_calls[0].0, "content": "{\"sky\": \"clear\"}"}
        ]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let sent = last_bedrock(&mock);
    let messages = sent.body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3, "{}", sent.body);
    assert_eq!(
        messages[2]["content"],
        json!([
            {"toolResult": {"toolUseId": s.tool_calls[1].0, "content": [{"text": "noon"}], "status": "success"}},
            {"toolResult": {"toolUseId": s.tool_calls[0].0, "content": [{"text": "{\"sky\": \"clear\"}"}], "status": "success"}}
        ])
    );
    gw.stop().await;
}

#[tokio::test]
async fn an_anthropic_client_gets_tool_use_blocks_from_bedrock_streamed_and_not() {
    let (mock, gw) = setup().await;
    let messages = json!([{"role": "user", "content": "[tool] Rome"}]);
    let (status, _, body) = post(
        &gw,
        "/v1/messages",
        &json!({"model": format!("bedrock/{CLAUDE}"), "max_tokens": 200, "system": "Be useful.",
                "messages": messages, "tools": tools_anthropic(),
                "tool_choice": {"type": "tool", "name": "get_time"}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["model"], CLAUDE);
    assert_eq!(v["stop_reason"], "tool_use");
    let call = &v["content"][0];
    assert_eq!(call["type"], "tool_use");
    assert_eq!(call["name"], "get_time");
    assert_eq!(call["input"], json!({"query": "[tool] Rome"}));
    let id = call["id"].as_str().unwrap();
    let sent = last_bedrock(&mock);
    assert_eq!(
        sent.body["toolConfig"]["toolChoice"],
        json!({"tool": {"name": "get_time"}})
    );
    assert_eq!(sent.body["system"], json!([{"text": "Be useful."}]));
    assert_eq!(sent.body["inferenceConfig"]["maxTokens"], 200);
    assert!(v["usage"]["input_tokens"].as_u64().unwrap() > 0);

    // The result goes back as a toolResult with the call's id; the answer streams.
    let (status, _, body) = post(
        &gw,
        "/v1/messages",
        &json!({"model": format!("bedrock/{CLAUDE}"), "max_tokens": 200, "stream": true,
        "tools": tools_anthropic(), "messages": [
            messages[0],
            {"role": "assistant", "content": [call]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": id, "content": "9 pm"}]}
        ]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let s = parse_anthropic_stream(&body);
    assert!(s.error.is_none(), "{body}");
    assert_eq!(s.stop_reason.as_deref(), Some("end_turn"));
    assert_eq!(s.text, "Hello from the mock! You said: 9 pm");
    assert_eq!(s.events.first().map(String::as_str), Some("message_start"));
    assert_eq!(s.events.last().map(String::as_str), Some("message_stop"));
    assert!(s.usage["input_tokens"].as_u64().unwrap() > 0, "{body}");
    assert!(s.usage["output_tokens"].as_u64().unwrap() > 0, "{body}");
    let sent = last_bedrock(&mock);
    assert_eq!(
        sent.body["messages"][2]["content"][0],
        json!({"toolResult": {"toolUseId": id, "content": [{"text": "9 pm"}], "status": "success"}})
    );

    // Streamed calls reach an Anthropic client as tool_use blocks, their input in pieces.
    let (status, _, body) = post(
        &gw,
        "/v1/messages",
        &json!({"model": format!("bedrock/{CLAUDE}"), "max_tokens": 200, "stream": true,
                "tools": tools_anthropic(), "messages": [{"role": "user", "content": "[tools2] x"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let s = parse_anthropic_stream(&body);
    assert_eq!(s.stop_reason.as_deref(), Some("tool_use"));
    let names: Vec<&str> = s.tool_uses.iter().map(|t| t.1.as_str()).collect();
    assert_eq!(names, ["get_weather", "get_time"]);
    assert_eq!(
        serde_json::from_str::<Value>(&s.tool_uses[1].2).unwrap()["query"],
        "[tools2] x",
        "the input whole, from its fragments"
    );
    gw.stop().await;
}

#[tokio::test]
async fn bedrock_errors_reach_the_caller_in_its_dialect_with_their_status() {
    let (_mock, gw) = setup().await;
    let chat = |model: &str| json!({"model": format!("bedrock/{model}"), "messages": [{"role": "user", "content": "x"}]});
    for (model, want) in [
        ("mock-error-400", 400),
        ("mock-error-404", 404),
        ("mock-error-408", 408),
        ("mock-error-403", 502),
        ("mock-error-401", 502),
        ("mock-error-424", 502),
        ("mock-error-500", 502),
        ("mock-error-503", 503),
    ] {
        let (status, _, body) = post(&gw, "/v1/chat/completions", &chat(model)).await;
        assert_eq!(status, want, "{model}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(v["error"]["message"].is_string(), "{body}");
    }
    let (status, headers, body) = post(&gw, "/v1/chat/completions", &chat("mock-error-429")).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(headers["retry-after"], "1", "Bedrock names no wait");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert_eq!(
        v["error"]["message"],
        "Too many requests, please wait before trying again."
    );

    let (status, headers, body) = post(
        &gw,
        "/v1/messages",
        &json!({"model": "bedrock/mock-error-429", "max_tokens": 10,
                "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(headers["retry-after"], "1");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "rate_limit_error");

    let (status, _, body) = post(
        &gw,
        "/v1/messages",
        &json!({"model": "bedrock/mock-error-404", "max_tokens": 10, "stream": true,
                "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["type"], "not_found_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("foundation model")
    );

    // An exception inside the stream ends it with an error event in the caller's dialect.
    let (status, _, body) = post(
        &gw,
        "/v1/messages",
        &json!({"model": "bedrock/mock-error-midstream", "max_tokens": 10, "stream": true,
                "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(status, 200);
    let s = parse_anthropic_stream(&body);
    assert_eq!(s.text, "Partial ");
    assert_eq!(s.error.unwrap()["type"], "overloaded_error", "{body}");
    let (status, _, body) = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model": "bedrock/mock-error-midstream", "stream": true,
                "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(status, 200);
    let s = parse_openai_stream(&body);
    assert_eq!(s.text, "Partial ");
    assert!(s.error.is_some(), "{body}");
    gw.stop().await;
}

#[tokio::test]
async fn a_signature_bedrock_refuses_is_the_gateways_failure() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&format!(
        "providers:\n{}",
        provider_block(&mock, "not-the-secret")
    ))
    .await;
    let (status, _, body) = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model": CLAUDE, "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(status, 502, "{body}");
    assert!(!body.contains("signature"), "{body}");
    assert!(
        body.contains("rejected the gateway's credentials"),
        "{body}"
    );
    let sent = last_bedrock(&mock);
    assert!(sent.headers["authorization"].starts_with("AWS4-HMAC-SHA256"));
    gw.stop().await;
}

/// Temporary credentials: the session token goes as `x-amz-security-token`, signed.
#[tokio::test]
async fn temporary_credentials_send_their_session_token_in_their_region() {
    let mock = MockUpstream::start_with(MockOptions {
        aws_access_key_id: "ASIAMOCKTEMPORARY00".into(),
        aws_secret_access_key: "temporary/secret".into(),
        aws_session_token: Some("FwoGZXIvYXdzEXAMPLE//token=".into()),
        aws_region: "eu-west-3".into(),
        ..MockOptions::default()
    })
    .await;
    let gw = TestGateway::start(&format!(
        "providers:\n  aws:\n    kind: bedrock\n    region: eu-west-3\n    access_key_id: ASIAMOCKTEMPORARY00\n    secret_access_key: temporary/secret\n    session_token: FwoGZXIvYXdzEXAMPLE//token=\n    base_url: {}\n",
        mock.bedrock_endpoint_url()
    ))
    .await;
    let (status, _, body) = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model": "aws/meta.llama3-3-70b-instruct-v1:0", "stream": true,
                "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        parse_openai_stream(&body).text,
        "Hello from the mock! You said: hi"
    );
    let sent = last_bedrock(&mock);
    assert_eq!(
        sent.headers["x-amz-security-token"],
        "FwoGZXIvYXdzEXAMPLE//token="
    );
    assert!(sent.headers["authorization"].contains("/eu-west-3/bedrock/aws4_request"));
    gw.stop().await;
}

/// Throttling is retryable: a route fails over from Bedrock to OpenAI, and from OpenAI to
/// Bedrock, in either dialect.
#[tokio::test]
async fn a_route_fails_over_between_bedrock_and_another_provider() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&format!(
        "providers:\n  openai:\n    api_key: sk-mock-openai\n    base_url: {}\n{}routes:\n  from-bedrock:\n    targets: [bedrock/mock-error-429, openai/gpt-4o-mini]\n  to-bedrock:\n    targets: [openai/mock-error-503, bedrock/{CLAUDE}]\n",
        mock.openai_base_url(),
        provider_block(&mock, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    ))
    .await;
    let (status, headers, body) = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model": "from-bedrock", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-portcullis-provider"], "openai");
    assert_eq!(headers["x-portcullis-attempts"], "2");

    let (status, headers, body) = post(
        &gw,
        "/v1/messages",
        &json!({"model": "to-bedrock", "max_tokens": 50, "stream": true,
                "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-portcullis-provider"], "bedrock");
    assert_eq!(headers["x-portcullis-attempts"], "2");
    assert_eq!(
        parse_anthropic_stream(&body).text,
        "Hello from the mock! You said: hi"
    );
    gw.stop().await;
}

#[tokio::test]
async fn embeddings_go_through_invoke_model_and_come_back_in_openais_format() {
    let (mock, gw) = setup().await;
    let (status, headers, body) = post(
        &gw,
        "/v1/embeddings",
        &json!({"model": "bedrock/amazon.titan-embed-text-v2:0", "input": "hello world", "dimensions": 256}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 256);
    let tokens = v["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(tokens > 0);
    let sent = last_bedrock(&mock);
    assert_eq!(sent.path, "/model/amazon.titan-embed-text-v2%3A0/invoke");
    assert_eq!(
        sent.body,
        json!({"inputText": "hello world", "dimensions": 256})
    );
    assert!(sent.headers["authorization"].starts_with("AWS4-HMAC-SHA256"));
    let log = gw
        .log_of(headers["x-portcullis-request-id"].to_str().unwrap())
        .await;
    assert_eq!(log["input_tokens"], tokens);
    assert!(log["cost_usd"].as_f64().unwrap() > 0.0, "{log}");

    // Titan embeds one text per call: several are refused, not silently cut.
    let (status, _, body) = post(
        &gw,
        "/v1/embeddings",
        &json!({"model": "bedrock/amazon.titan-embed-text-v2:0", "input": ["a", "b"]}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("one text per request"), "{body}");

    // Cohere takes several, with an input type; base64 as OpenAI's SDKs ask by default.
    let (status, _, body) = post(
        &gw,
        "/v1/embeddings",
        &json!({"model": "cohere.embed-english-v3", "input": ["a", "b", "c"],
                "encoding_format": "base64", "input_type": "search_query"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    assert_eq!(data[2]["index"], 2);
    assert_eq!(
        data[0]["embedding"].as_str().unwrap().len(),
        5464,
        "1024 f32s in base64"
    );
    let sent = last_bedrock(&mock);
    assert_eq!(sent.path, "/model/cohere.embed-english-v3/invoke");
    assert_eq!(
        sent.body,
        json!({"texts": ["a", "b", "c"], "input_type": "search_query"})
    );
    gw.stop().await;
}

/// `GET /v1/models` through the gateway, in OpenAI's form.
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

/// The model list is Bedrock's control plane's ListFoundationModels, signed as chat requests
/// are (the mock checks the signature): the text models served on demand are listed, and a
/// model named so reaches Bedrock.
#[tokio::test]
async fn models_are_listed_from_list_foundation_models_signed() {
    let (mock, gw) = setup().await;
    let ids = listed_ids(&gw).await;
    for id in [
        "bedrock/amazon.nova-lite-v1:0",
        "bedrock/amazon.nova-pro-v1:0",
        "bedrock/anthropic.claude-3-haiku-20240307-v1:0",
        "bedrock/meta.llama3-8b-instruct-v1:0",
    ] {
        assert!(ids.iter().any(|i| i == id), "{id} in {ids:?}");
    }
    // Embeddings, images and models reached only through inference profiles are not listed.
    for id in [
        "bedrock/amazon.titan-embed-text-v2:0",
        "bedrock/cohere.embed-english-v3",
        "bedrock/stability.sd3-5-large-v1:0",
        "bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0",
    ] {
        assert!(!ids.iter().any(|i| i == id), "{id} in {ids:?}");
    }
    let list = mock
        .requests()
        .into_iter()
        .find(|r| r.path == "/foundation-models")
        .expect("the model list was read");
    assert_eq!(list.method, "GET");
    assert!(
        list.headers["authorization"]
            .starts_with("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/")
            && list.headers["authorization"].contains("/us-east-1/bedrock/aws4_request"),
        "{:?}",
        list.headers
    );

    let (status, _, body) = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model": "bedrock/amazon.nova-lite-v1:0", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        last_bedrock(&mock).path,
        "/model/amazon.nova-lite-v1%3A0/converse"
    );
    gw.stop().await;
}

/// A list request Bedrock refuses (a wrong secret) lists no Bedrock model and hides nothing
/// else: the configured routes are still listed.
#[tokio::test]
async fn a_refused_list_lists_no_bedrock_model() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&format!(
        "providers:\n{}",
        provider_block(&mock, "not-the-secret")
    ))
    .await;
    let ids = listed_ids(&gw).await;
    assert!(!ids.iter().any(|i| i.starts_with("bedrock/")), "{ids:?}");
    assert!(
        mock.requests()
            .iter()
            .any(|r| r.path == "/foundation-models"),
        "the list was asked for"
    );
    gw.stop().await;
}

/// With no config file, AWS's variables enable Bedrock and its models are listed; the control
/// plane is `AWS_ENDPOINT_URL_BEDROCK` when set, the runtime's endpoint otherwise.
#[tokio::test]
async fn zero_config_aws_variables_list_bedrock_models() {
    for separate in [false, true] {
        let mock = MockUpstream::start().await;
        let other = MockUpstream::start().await;
        let control = separate.then(|| other.bedrock_endpoint_url());
        let dir = tempfile::tempdir().unwrap();
        let mut env: std::collections::HashMap<String, String> = [
            ("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE".to_owned()),
            (
                "AWS_SECRET_ACCESS_KEY",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".to_owned(),
            ),
            ("AWS_REGION", "us-east-1".to_owned()),
            (
                "AWS_ENDPOINT_URL_BEDROCK_RUNTIME",
                mock.bedrock_endpoint_url(),
            ),
            ("PORTCULLIS_MASTER_KEY", MASTER_KEY.to_owned()),
            (
                "PORTCULLIS_DATABASE_URL",
                format!("sqlite://{}", dir.path().join("gw.db").display()),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        if let Some(url) = &control {
            env.insert("AWS_ENDPOINT_URL_BEDROCK".to_owned(), url.clone());
        }
        let config = portcullis_config::load(None, &env).unwrap();
        let gw = TestGateway::start_config(config).await;
        let ids = listed_ids(&gw).await;
        assert!(
            ids.iter().any(|i| i == "bedrock/amazon.nova-lite-v1:0"),
            "{ids:?}"
        );
        let asked = |m: &MockUpstream| m.requests().iter().any(|r| r.path == "/foundation-models");
        assert_eq!(asked(&mock), control.is_none());
        assert_eq!(asked(&other), control.is_some());
        gw.stop().await;
    }
}
