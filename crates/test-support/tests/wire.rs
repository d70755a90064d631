//! The mock's wire format over real HTTP: the shapes real clients rely on.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use base64::Engine;
use portcullis_test_support::{MockUpstream, Reply, SseFrame, StreamEnd};
use serde_json::{Value, json};

fn data_lines(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}

async fn openai(mock: &MockUpstream, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/chat/completions", mock.openai_base_url()))
        .bearer_auth("sk-mock-openai")
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn anthropic(mock: &MockUpstream, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/v1/messages", mock.anthropic_base_url()))
        .header("x-api-key", "sk-ant-mock")
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn openai_streams_end_with_done_and_carry_usage_only_when_asked() {
    let mock = MockUpstream::start().await;
    for include in [false, true] {
        let r = openai(
            &mock,
            json!({"model": "gpt-4o", "stream": true, "stream_options": {"include_usage": include},
            "messages": [{"role": "user", "content": "hi there"}]}),
        )
        .await;
        assert_eq!(
            r.headers()["content-type"],
            "text/event-stream; charset=utf-8"
        );
        let lines = data_lines(&r.text().await.unwrap());
        assert_eq!(lines.last().unwrap(), "[DONE]");
        let chunks: Vec<Value> = lines[..lines.len() - 1]
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        let text: String = chunks
            .iter()
            .filter_map(|c| c["choices"].get(0)?["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, "Hello from the mock! You said: hi there");
        let with_usage: Vec<&Value> = chunks.iter().filter(|c| c["usage"].is_object()).collect();
        assert_eq!(with_usage.len(), usize::from(include));
        if include {
            assert_eq!(with_usage[0]["choices"], json!([]));
        }
    }
}

#[tokio::test]
async fn tool_call_fragments_concatenate_to_valid_json() {
    let mock = MockUpstream::start().await;
    let tools = json!([{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]);
    let r = openai(
        &mock,
        json!({"model": "gpt-4o", "stream": true, "tools": tools,
        "messages": [{"role": "user", "content": "[tool] find it"}]}),
    )
    .await;
    let lines = data_lines(&r.text().await.unwrap());
    let mut args = String::new();
    let mut fragments = 0;
    for l in &lines[..lines.len() - 1] {
        let v: Value = serde_json::from_str(l).unwrap();
        if let Some(a) = v["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str()
        {
            args.push_str(a);
            fragments += 1;
        }
    }
    assert!(fragments > 3);
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"query": "[tool] find it"})
    );

    let r = anthropic(
        &mock,
        json!({"model": "claude", "max_tokens": 10, "stream": true,
        "tools": [{"name": "lookup", "input_schema": {"type": "object"}}],
        "messages": [{"role": "user", "content": "[tools2] find"}]}),
    )
    .await;
    let body = r.text().await.unwrap();
    let events: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(events.first(), Some(&"message_start"));
    assert_eq!(events.last(), Some(&"message_stop"));
    assert_eq!(
        events
            .iter()
            .filter(|e| **e == "content_block_start")
            .count(),
        2
    );
}

#[tokio::test]
async fn anthropic_event_order_and_usage() {
    let mock = MockUpstream::start().await;
    let r = anthropic(
        &mock,
        json!({"model": "claude", "max_tokens": 10, "stream": true,
        "messages": [{"role": "user", "content": "hello"}]}),
    )
    .await;
    let body = r.text().await.unwrap();
    let events: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(
        &events[..3],
        &["message_start", "content_block_start", "ping"]
    );
    assert!(events.contains(&"content_block_delta"));
    assert_eq!(
        &events[events.len() - 3..],
        &["content_block_stop", "message_delta", "message_stop"]
    );

    let v: Value = anthropic(
        &mock,
        json!({"model": "claude", "max_tokens": 10,
        "messages": [{"role": "user", "content": "hello"}]}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["stop_reason"], "end_turn");
    assert!(v["usage"]["input_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn errors_have_each_providers_shape() {
    let mock = MockUpstream::start().await;
    let r = openai(
        &mock,
        json!({"model": "mock-error-429", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    assert!(r.headers().contains_key("x-request-id"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");

    let r = anthropic(&mock, json!({"model": "mock-error-529", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})).await;
    assert_eq!(r.status(), 529);
    assert!(r.headers().contains_key("request-id"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "overloaded_error");

    let r = reqwest::Client::new()
        .post(format!("{}/chat/completions", mock.openai_base_url()))
        .bearer_auth("wrong")
        .json(&json!({"model": "gpt-4o", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "invalid_api_key"
    );

    let r = reqwest::Client::new()
        .post(format!("{}/v1/messages", mock.anthropic_base_url()))
        .header("x-api-key", "sk-ant-mock")
        .json(
            &json!({"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "anthropic-version is required");
    let r = anthropic(
        &mock,
        json!({"model": "c", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(r.status(), 400, "max_tokens is required");
}

#[tokio::test]
async fn base64_embeddings_decode_to_the_float_vector() {
    let mock = MockUpstream::start().await;
    let get = |format: &'static str| {
        let url = format!("{}/embeddings", mock.openai_base_url());
        async move {
            reqwest::Client::new()
                .post(url)
                .bearer_auth("sk-mock-openai")
                .json(&json!({"model": "text-embedding-3-small", "input": ["a cat"], "encoding_format": format}))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let floats = get("float").await;
    let b64 = get("base64").await;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let decoded: Vec<f64> = bytes
        .chunks(4)
        .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
        .collect();
    let want: Vec<f64> = floats["data"][0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(decoded.len(), 8);
    for (a, b) in decoded.iter().zip(&want) {
        assert!((a - b).abs() < 1e-6);
    }
    assert!(floats["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn scripted_replies_and_aborts() {
    let mock = MockUpstream::start().await;
    mock.push_reply(Reply::json(418, json!({"exact": true})));
    mock.push_reply(Reply::Sse {
        headers: vec![],
        frames: vec![SseFrame::data("{\"a\":1}")],
        frame_delay: Duration::ZERO,
        then: StreamEnd::Abort,
    });
    let r = openai(&mock, json!({})).await;
    assert_eq!(r.status(), 418);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"exact": true}));
    let r = openai(&mock, json!({})).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.is_err(), "the body is cut off");
    assert_eq!(mock.hits(), 2);
    assert_eq!(mock.requests().len(), 2);
}
