//! Gemini behind the gateway over real HTTP: OpenAI- and Anthropic-dialect callers reaching a
//! `kind: gemini` provider (the mock's Gemini API), streaming and not, with tools, parallel
//! calls and their results, thinking, usage and cost, safety blocks and errors in the
//! caller's dialect.

use portcullis_test_support::MockUpstream;
use serde_json::{Value, json};

use crate::common::*;

async fn setup() -> (MockUpstream, TestGateway) {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&format!(
        "providers:\n  gemini:\n    api_key: AIza-mock-gemini\n    base_url: {}\n",
        mock.gemini_base_url()
    ))
    .await;
    (mock, gw)
}

fn tools_openai() -> Value {
    json!([
        {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
         "parameters": {"type": "object", "properties": {"query": {"type": "string"}},
                        "required": ["query"], "additionalProperties": false}}},
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

/// The last request the mock's Gemini API received.
fn last_gemini(mock: &MockUpstream) -> portcullis_test_support::RecordedRequest {
    mock.requests()
        .into_iter()
        .rev()
        .find(|r| r.path.starts_with("/v1beta/"))
        .expect("the Gemini API was called")
}

#[tokio::test]
async fn an_openai_client_reaches_gemini_with_its_system_prompt_usage_and_cost() {
    let (mock, gw) = setup().await;
    let (status, headers, body) = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model": "gemini-2.5-flash", "messages": [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "how are you"}],
            "max_tokens": 100, "temperature": 0.2, "stop": ["END"]}),
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
    assert_eq!(headers["x-portcullis-provider"], "gemini");

    let sent = last_gemini(&mock);
    assert_eq!(sent.path, "/v1beta/models/gemini-2.5-flash:generateContent");
    assert_eq!(sent.headers["x-goog-api-key"], "AIza-mock-gemini");
    assert!(!sent.headers.contains_key("authorization"));
    assert!(!format!("{:?}", sent.headers).contains(MASTER_KEY));
    assert_eq!(
        sent.body["systemInstruction"],
        json!({"parts": [{"text": "Answer briefly."}]})
    );
    let roles: Vec<&str> = sent.body["contents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "model", "user"]);
    assert_eq!(
        sent.body["generationConfig"],
        json!({"maxOutputTokens": 100, "temperature": 0.2, "stopSequences": ["END"]})
    );

    let log = gw
        .log_of(headers["x-portcullis-request-id"].to_str().unwrap())
        .await;
    assert_eq!(log["provider"], "gemini");
    assert_eq!(log["model"], "gemini-2.5-flash");
    let (i, o) = (
        v["usage"]["prompt_tokens"].as_f64().unwrap(),
        v["usage"]["completion_tokens"].as_f64().unwrap(),
    );
    assert!(i > 0.0 && o > 0.0, "{v}");
    assert_eq!(log["input_tokens"], v["usage"]["prompt_tokens"]);
    assert_eq!(log["output_tokens"], v["usage"]["completion_tokens"]);
    let cost = log["cost_usd"].as_f64().unwrap();
    let expected = (i * 0.30 + o * 2.50) / 1e6;
    assert!((cost - expected).abs() < 1e-12, "{cost} vs {expected}");
    gw.stop().await;
}

/// A turn with two parallel calls, streamed, then the turn carrying both results: the
/// results go back as one Gemini turn, each named after its call, and Gemini 3's thought
/// signature goes back with its call (the mock refuses the turn otherwise).
#[tokio::test]
async fn an_openai_client_streams_parallel_calls_and_sends_their_results_back() {
    let (mock, gw) = setup().await;
    let ask = json!({"role": "user", "content": "[tools2] Paris"});
    let (status, _, body) = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model": "gemini-3-pro-preview", "stream": true,
                "stream_options": {"include_usage": true},
                "messages": [ask], "tools": tools_openai()}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
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
    assert_ne!(
        s.tool_calls[0].0, s.tool_calls[1].0,
        "made-up ids are distinct"
    );
    assert!(s.usage.unwrap()["completion_tokens"].as_u64().unwrap() > 0);
    let sent = last_gemini(&mock);
    assert_eq!(
        sent.path,
        "/v1beta/models/gemini-3-pro-preview:streamGenerateContent"
    );
    assert_eq!(sent.query, "alt=sse");
    assert_eq!(
        sent.body["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"]["additionalProperties"],
        false,
        "the JSON Schema goes as it is"
    );

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
        &json!({"model": "gemini-3-pro-preview", "tools": tools_openai(), "messages": [
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
    let sent = last_gemini(&mock);
    let contents = sent.body["contents"].as_array().unwrap();
    assert_eq!(contents.len(), 3, "{}", sent.body);
    assert!(contents[1]["parts"][0]["thoughtSignature"].is_string());
    assert_eq!(
        contents[2]["parts"],
        json!([
            {"functionResponse": {"name": "get_time", "response": {"output": "noon"}}},
            {"functionResponse": {"name": "get_weather", "response": {"output": {"sky": "clear"}}}}
        ])
    );
    gw.stop().await;
}

#[tokio::test]
async fn an_anthropic_client_gets_tool_use_blocks_from_gemini_streamed_and_not() {
    let (mock, gw) = setup().await;
    let messages = json!([{"role": "user", "content": "[tool] Rome"}]);
    let (status, _, body) = post(
        &gw,
        "/v1/messages",
        &json!({"model": "gemini/gemini-2.5-flash", "max_tokens": 200, "system": "Be useful.",
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
    assert_eq!(call["input"], json!({"query": "[tool] Rome"}));
    let id = call["id"].as_str().unwrap();
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "{id} fits Anthropic's id pattern"
    );
    let sent = last_gemini(&mock);
    assert_eq!(
        sent.body["toolConfig"],
        json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_time"]}})
    );
    assert_eq!(
        sent.body["systemInstruction"]["parts"][0]["text"],
        "Be useful."
    );
    assert!(v["usage"]["input_tokens"].as_u64().unwrap() > 0);

    // The result goes back as a functionResponse named after the call; the answer streams.
    let (status, _, body) = post(
        &gw,
        "/v1/messages",
        &json!({"model": "gemini/gemini-2.5-flash", "max_tokens": 200, "stream": true,
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
    let sent = last_gemini(&mock);
    assert_eq!(
        sent.body["contents"][2]["parts"][0],
        json!({"functionResponse": {"name": "get_time", "response": {"output": "9 pm"}}})
    );

    // Streamed calls reach an Anthropic client as tool_use blocks.
    let (status, _, body) = post(
        &gw,
        "/v1/messages",
        &json!({"model": "gemini/gemini-2.5-flash", "max_tokens": 200, "stream": true,
                "tools": tools_anthropic(), "messages": [{"role": "user", "content": "[tools2] x"}]}),
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
async fn thinking_counts_as_output_and_as_reasoning() {
    let (mock, gw) = setup().await;
    let (status, headers, body) = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model": "gemini-2.5-flash", "reasoning_effort": "low",
                "messages": [{"role": "user", "content": "think"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        last_gemini(&mock).body["generationConfig"]["thinkingConfig"],
        json!({"includeThoughts": true, "thinkingBudget": 2048})
    );
    let answer = "Hello from the mock! You said: think";
    assert_eq!(v["choices"][0]["message"]["content"], answer);
    let reasoning = v["usage"]["completion_tokens_details"]["reasoning_tokens"]
        .as_u64()
        .unwrap();
    assert_eq!(reasoning, 12, "{v}");
    let completion = v["usage"]["completion_tokens"].as_u64().unwrap();
    assert_eq!(completion, reasoning + (answer.len() as u64).div_ceil(4));
    let log = gw
        .log_of(headers["x-portcullis-request-id"].to_str().unwrap())
        .await;
    assert_eq!(log["output_tokens"], completion);

    // Streamed, the usage is cumulative: the last report is the whole.
    let (_, _, body) = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model": "gemini-2.5-flash", "reasoning_effort": "low", "stream": true,
                "stream_options": {"include_usage": true},
                "messages": [{"role": "user", "content": "think"}]}),
    )
    .await;
    let s = parse_openai_stream(&body);
    assert_eq!(s.text, answer);
    let usage = s.usage.unwrap();
    assert_eq!(usage["completion_tokens"], completion, "{body}");
    assert_eq!(usage["prompt_tokens"], v["usage"]["prompt_tokens"]);
    gw.stop().await;
}

#[tokio::test]
async fn safety_blocks_are_content_filters_in_both_dialects() {
    let (_mock, gw) = setup().await;
    let (status, _, body) = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model": "gemini/mock-blocked-prompt", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "content_filter");
    assert!(
        v["choices"][0]["message"]["refusal"]
            .as_str()
            .unwrap()
            .contains("SAFETY"),
        "{v}"
    );

    let (status, _, body) = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model": "gemini/mock-safety-stop", "stream": true,
                "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let s = parse_openai_stream(&body);
    assert_eq!(s.finish_reason.as_deref(), Some("content_filter"), "{body}");

    let (status, _, body) = post(
        &gw,
        "/v1/messages",
        &json!({"model": "gemini/mock-safety-stop", "max_tokens": 10,
                "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["stop_reason"], "refusal");
    gw.stop().await;
}

#[tokio::test]
async fn gemini_errors_reach_the_caller_in_its_dialect_with_their_status() {
    let (_mock, gw) = setup().await;
    let chat = |model: &str| json!({"model": format!("gemini/{model}"), "messages": [{"role": "user", "content": "x"}]});
    for (model, want) in [
        ("mock-error-400", 400),
        ("mock-error-404", 404),
        ("mock-error-413", 413),
        ("mock-error-403", 502),
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
    assert_eq!(
        headers["retry-after"], "7",
        "the wait comes from Google's RetryInfo"
    );
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("exceeded your current quota")
    );

    let (status, _, body) = post(
        &gw,
        "/v1/messages",
        &json!({"model": "gemini/mock-error-404", "max_tokens": 10,
                "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "not_found_error");
    assert!(v["error"]["message"].as_str().unwrap().contains("models/"));

    // A stream that fails midway ends with an error event in the caller's dialect.
    let (status, _, body) = post(
        &gw,
        "/v1/messages",
        &json!({"model": "gemini/mock-error-midstream", "max_tokens": 10, "stream": true,
                "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(status, 200);
    let s = parse_anthropic_stream(&body);
    assert_eq!(s.text, "Partial ");
    assert_eq!(s.error.unwrap()["type"], "overloaded_error", "{body}");
    gw.stop().await;
}

#[tokio::test]
async fn a_gemini_key_the_upstream_refuses_is_the_gateways_failure() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&format!(
        "providers:\n  gemini:\n    api_key: AIza-wrong\n    base_url: {}\n",
        mock.gemini_base_url()
    ))
    .await;
    let (status, _, body) = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(status, 502, "{body}");
    assert!(!body.contains("API key not valid"), "{body}");
    assert!(
        body.contains("rejected the gateway's credentials"),
        "{body}"
    );
    gw.stop().await;
}

/// Gemini in a fallback chain: a failing OpenAI target hands over to Gemini, which answers in
/// the caller's dialect.
#[tokio::test]
async fn a_route_fails_over_from_openai_to_gemini() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&format!(
        "providers:\n  openai:\n    api_key: sk-mock-openai\n    base_url: {}\n  gemini:\n    api_key: AIza-mock-gemini\n    base_url: {}\nroutes:\n  chain:\n    targets: [openai/mock-error-503, gemini/gemini-2.5-flash]\n",
        mock.openai_base_url(),
        mock.gemini_base_url()
    ))
    .await;
    let (status, headers, body) = post(
        &gw,
        "/v1/messages",
        &json!({"model": "chain", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["content"][0]["text"], "Hello from the mock! You said: hi");
    assert_eq!(headers["x-portcullis-provider"], "gemini");
    assert_eq!(headers["x-portcullis-attempts"], "2");
    gw.stop().await;
}

#[tokio::test]
async fn embeddings_go_to_embed_content_and_come_back_in_openais_format() {
    let (mock, gw) = setup().await;
    let (status, headers, body) = post(
        &gw,
        "/v1/embeddings",
        &json!({"model": "gemini/gemini-embedding-001", "input": "hello", "dimensions": 8}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 8);
    assert_eq!(
        v["usage"]["prompt_tokens"], 2,
        "estimated: hello is 5 characters"
    );
    let sent = last_gemini(&mock);
    assert_eq!(
        sent.path,
        "/v1beta/models/gemini-embedding-001:embedContent"
    );
    assert_eq!(sent.body["outputDimensionality"], 8);
    let log = gw
        .log_of(headers["x-portcullis-request-id"].to_str().unwrap())
        .await;
    assert_eq!(log["input_tokens"], 2);
    let cost = log["cost_usd"].as_f64().unwrap();
    assert!((cost - 2.0 * 0.15 / 1e6).abs() < 1e-15, "{cost}");

    // Several inputs go in one batch; base64 is what OpenAI's SDKs ask for by default.
    let (status, _, body) = post(
        &gw,
        "/v1/embeddings",
        &json!({"model": "gemini/gemini-embedding-001", "input": ["a", "b", "c"],
                "dimensions": 4, "encoding_format": "base64"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    assert_eq!(data[2]["index"], 2);
    assert_eq!(
        data[0]["embedding"].as_str().unwrap().len(),
        24,
        "4 f32s in base64"
    );
    let sent = last_gemini(&mock);
    assert_eq!(
        sent.path,
        "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    );
    assert_eq!(sent.body["requests"].as_array().unwrap().len(), 3);
    gw.stop().await;
}
