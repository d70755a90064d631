//! The Responses API behind the gateway over real HTTP: `POST /v1/responses` to an OpenAI
//! upstream (Chat Completions), to Anthropic and to Gemini (translated), with instructions,
//! tools and their outputs, the stream's events in order, conversations continued by
//! `previous_response_id`, `store: false`, tenants that never see each other's responses,
//! `GET`/`DELETE /v1/responses/{id}`, usage and cost in the log, and errors in OpenAI's format;
//! and OpenAI as a Responses upstream for the models only served there (`o3-pro`), reached by
//! chat-completions callers too.

use portcullis_test_support::MockUpstream;
use serde_json::{Value, json};

use crate::common::*;

async fn setup() -> (MockUpstream, TestGateway) {
    let mock = MockUpstream::start().await;
    let yaml = format!(
        "providers:\n  openai:\n    api_key: sk-mock-openai\n    base_url: {}\n  \
         anthropic:\n    api_key: sk-ant-mock\n    base_url: {}\n  \
         gemini:\n    api_key: AIza-mock-gemini\n    base_url: {}\n",
        mock.openai_base_url(),
        mock.anthropic_base_url(),
        mock.gemini_base_url()
    );
    let gw = TestGateway::start(&yaml).await;
    (mock, gw)
}

fn weather_tool() -> Value {
    json!([{"type": "function", "name": "get_weather", "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}},
                           "required": ["query"]}}])
}

/// The last request the mock received on `path`.
fn last(mock: &MockUpstream, path: &str) -> portcullis_test_support::RecordedRequest {
    mock.requests()
        .into_iter()
        .rev()
        .find(|r| r.path.starts_with(path))
        .unwrap_or_else(|| panic!("{path} was called"))
}

async fn create(gw: &TestGateway, body: Value) -> (u16, reqwest::header::HeaderMap, Value) {
    create_as(gw, MASTER_KEY, body).await
}

async fn create_as(
    gw: &TestGateway,
    key: &str,
    body: Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let r = client()
        .post(gw.at("/v1/responses"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, headers, v)
}

async fn fetch(gw: &TestGateway, key: &str, method: reqwest::Method, id: &str) -> (u16, Value) {
    let r = client()
        .request(method, gw.at(&format!("/v1/responses/{id}")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// A stored response, once the writer has kept it (it is read back from memory meanwhile).
async fn stored(gw: &TestGateway, key: &str, id: &str) -> Value {
    let (status, v) = fetch(gw, key, reqwest::Method::GET, id).await;
    assert_eq!(status, 200, "{v}");
    v
}

fn output_text(v: &Value) -> String {
    v["output"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "message")
        .flat_map(|i| i["content"].as_array().unwrap().iter())
        .filter_map(|p| p["text"].as_str())
        .collect()
}

async fn new_key(gw: &TestGateway, name: &str) -> String {
    let r = client()
        .post(gw.at("/admin/keys"))
        .bearer_auth(MASTER_KEY)
        .json(&json!({"name": name}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    v["key"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn text_with_instructions_reaches_openai_and_is_logged_with_usage_and_cost() {
    let (mock, gw) = setup().await;
    let (status, headers, v) = create(
        &gw,
        json!({"model": "gpt-4o-mini", "input": "hi", "instructions": "Answer briefly.",
               "max_output_tokens": 100, "temperature": 0.5, "metadata": {"ticket": "42"}}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"], "response");
    assert!(v["id"].as_str().unwrap().starts_with("resp_"), "{v}");
    assert_eq!(v["status"], "completed");
    assert_eq!(v["model"], "gpt-4o-mini");
    assert_eq!(v["instructions"], "Answer briefly.");
    assert_eq!(v["metadata"], json!({"ticket": "42"}));
    assert_eq!(v["max_output_tokens"], 100);
    assert_eq!(v["store"], true);
    assert_eq!(v["output"][0]["type"], "message");
    assert_eq!(v["output"][0]["role"], "assistant");
    assert_eq!(v["output"][0]["content"][0]["type"], "output_text");
    assert_eq!(output_text(&v), "Hello from the mock! You said: hi");

    let sent = last(&mock, "/v1/chat/completions");
    assert_eq!(
        sent.body["messages"],
        json!([{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "hi"}])
    );
    assert_eq!(sent.body["max_completion_tokens"], 100);
    assert_eq!(sent.body["temperature"], 0.5);

    let usage = &v["usage"];
    let (i, o) = (
        usage["input_tokens"].as_u64().unwrap(),
        usage["output_tokens"].as_u64().unwrap(),
    );
    assert!(i > 0 && o > 0, "{usage}");
    assert_eq!(usage["total_tokens"], i + o);
    assert_eq!(usage["input_tokens_details"]["cached_tokens"], 0);
    assert_eq!(usage["output_tokens_details"]["reasoning_tokens"], 0);
    let log = gw
        .log_of(headers["x-portcullis-request-id"].to_str().unwrap())
        .await;
    assert_eq!(log["endpoint"], "responses");
    assert_eq!(log["provider"], "openai");
    assert_eq!(log["model"], "gpt-4o-mini");
    assert_eq!(log["status"], 200);
    assert_eq!(log["input_tokens"], i);
    assert_eq!(log["output_tokens"], o);
    let cost = log["cost_usd"].as_f64().unwrap();
    let expected = (i as f64 * 0.15 + o as f64 * 0.60) / 1e6;
    assert!((cost - expected).abs() < 1e-12, "{cost} vs {expected}");
    gw.stop().await;
}

#[tokio::test]
async fn a_tool_call_round_trips_with_its_function_call_output() {
    let (mock, gw) = setup().await;
    let (status, _, v) = create(
        &gw,
        json!({"model": "gpt-4o", "input": "[tool] Paris", "tools": weather_tool(),
               "tool_choice": "auto", "parallel_tool_calls": false}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let call = &v["output"][0];
    assert_eq!(call["type"], "function_call", "{v}");
    assert_eq!(call["name"], "get_weather");
    assert_eq!(call["status"], "completed");
    assert!(call["id"].as_str().unwrap().starts_with("fc_"));
    let call_id = call["call_id"].as_str().unwrap().to_owned();
    assert_eq!(
        serde_json::from_str::<Value>(call["arguments"].as_str().unwrap()).unwrap(),
        json!({"query": "[tool] Paris"})
    );
    assert_eq!(v["tools"], weather_tool());
    assert_eq!(v["parallel_tool_calls"], false);
    let sent = last(&mock, "/v1/chat/completions");
    assert_eq!(sent.body["tools"][0]["function"]["name"], "get_weather");
    assert_eq!(sent.body["parallel_tool_calls"], false);

    // The client sends the whole conversation back, the call's output included.
    let (status, _, v) = create(
        &gw,
        json!({"model": "gpt-4o", "store": false, "input": [
            {"role": "user", "content": "[tool] Paris"},
            call,
            {"type": "function_call_output", "call_id": call_id, "output": "sunny, 21°C"}]}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    // The mock answers the last user text; the call's output went up as the tool message.
    assert_eq!(
        output_text(&v),
        "Hello from the mock! You said: [tool] Paris"
    );
    let sent = last(&mock, "/v1/chat/completions");
    let messages = sent.body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3, "{messages:?}");
    assert_eq!(messages[1]["tool_calls"][0]["id"], call_id.as_str());
    assert_eq!(messages[2]["role"], "tool");
    assert_eq!(messages[2]["tool_call_id"], call_id.as_str());
    assert_eq!(messages[2]["content"], "sunny, 21°C");
    gw.stop().await;
}

/// The events of a Responses stream, as (event name, payload).
async fn stream(gw: &TestGateway, body: Value) -> Vec<(String, Value)> {
    let r = client()
        .post(gw.at("/v1/responses"))
        .bearer_auth(MASTER_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = r.text().await.unwrap();
    let events: Vec<(String, Value)> = sse_events(&text)
        .into_iter()
        .map(|(e, d)| (e.unwrap(), serde_json::from_str(&d).unwrap()))
        .collect();
    for (n, (name, v)) in events.iter().enumerate() {
        assert_eq!(&v["type"], name);
        assert_eq!(v["sequence_number"], n as u64, "{name}");
    }
    events
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for (name, _) in events {
        // Runs of deltas count once.
        if name.ends_with(".delta") && out.last() == Some(&name.as_str()) {
            continue;
        }
        out.push(name);
    }
    out
}

#[tokio::test]
async fn a_stream_has_the_responses_events_in_order_and_is_kept() {
    let (_mock, gw) = setup().await;
    let events = stream(
        &gw,
        json!({"model": "gpt-4o-mini", "input": "hello there", "stream": true}),
    )
    .await;
    assert_eq!(
        names(&events),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    let text: String = events
        .iter()
        .filter(|(n, _)| n == "response.output_text.delta")
        .map(|(_, v)| v["delta"].as_str().unwrap())
        .collect();
    assert_eq!(text, "Hello from the mock! You said: hello there");
    let created = &events[0].1["response"];
    assert_eq!(created["status"], "in_progress");
    let done = &events.last().unwrap().1["response"];
    assert_eq!(done["status"], "completed");
    assert_eq!(done["id"], created["id"]);
    assert_eq!(output_text(done), text);
    assert!(done["usage"]["output_tokens"].as_u64().unwrap() > 0);
    let kept = stored(&gw, MASTER_KEY, done["id"].as_str().unwrap()).await;
    assert_eq!(&kept, done);
    // Written by the background writer, and counted.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let m = gw.metrics_text().await;
        if metric_sample(&m, "portcullis_responses_stored_total{outcome=\"written\"}").is_some() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{m}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // A call streams its arguments.
    let events = stream(
        &gw,
        json!({"model": "gpt-4o", "input": "[tool] Rome", "tools": weather_tool(), "stream": true}),
    )
    .await;
    assert_eq!(
        names(&events),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    let added = &events[2].1["item"];
    assert_eq!(added["type"], "function_call");
    assert_eq!(added["name"], "get_weather");
    let args: String = events
        .iter()
        .filter(|(n, _)| n == "response.function_call_arguments.delta")
        .map(|(_, v)| v["delta"].as_str().unwrap())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"query": "[tool] Rome"})
    );
    let done = &events.last().unwrap().1["response"];
    assert_eq!(done["output"][0]["arguments"], args.as_str());
    gw.stop().await;
}

#[tokio::test]
async fn previous_response_id_continues_a_conversation_across_two_turns() {
    let (mock, gw) = setup().await;
    // The first turn streams (kept from the stream's end), with instructions of its own.
    let events = stream(
        &gw,
        json!({"model": "claude-sonnet-4-5", "input": "My name is Ada.", "stream": true,
               "instructions": "Be terse."}),
    )
    .await;
    let first = events.last().unwrap().1["response"].clone();
    assert_eq!(first["status"], "completed", "{first}");
    let (status, _, second) = create(
        &gw,
        json!({"model": "claude-sonnet-4-5", "input": "What is my name?",
               "previous_response_id": first["id"]}),
    )
    .await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["previous_response_id"], first["id"]);
    let sent = last(&mock, "/v1/messages");
    // The history comes first, the earlier instructions are not carried over.
    assert!(sent.body.get("system").is_none(), "{}", sent.body);
    let messages = sent.body["messages"].as_array().unwrap();
    let texts: Vec<String> = messages
        .iter()
        .map(|m| match &m["content"] {
            Value::String(s) => s.clone(),
            c => c[0]["text"].as_str().unwrap().to_owned(),
        })
        .collect();
    assert_eq!(
        texts,
        [
            "My name is Ada.",
            "Hello from the mock! You said: My name is Ada.",
            "What is my name?"
        ]
    );
    let roles: Vec<&str> = messages
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "user"]);

    // A third turn carries both earlier ones, across providers.
    let (status, _, _) = create(
        &gw,
        json!({"model": "gpt-4o-mini", "input": "And again?", "previous_response_id": second["id"]}),
    )
    .await;
    assert_eq!(status, 200);
    let sent = last(&mock, "/v1/chat/completions");
    assert_eq!(
        sent.body["messages"].as_array().unwrap().len(),
        5,
        "{}",
        sent.body
    );
    gw.stop().await;
}

#[tokio::test]
async fn store_false_keeps_nothing() {
    let (_mock, gw) = setup().await;
    let (status, _, v) = create(
        &gw,
        json!({"model": "gpt-4o-mini", "input": "forget me", "store": false}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(v["store"], false);
    let id = v["id"].as_str().unwrap();
    let (status, err) = fetch(&gw, MASTER_KEY, reqwest::Method::GET, id).await;
    assert_eq!(status, 404, "{err}");
    assert_eq!(err["error"]["type"], "invalid_request_error");
    let (status, _, err) = create(
        &gw,
        json!({"model": "gpt-4o-mini", "input": "again", "previous_response_id": id}),
    )
    .await;
    assert_eq!(status, 404, "{err}");
    assert_eq!(err["error"]["param"], "previous_response_id");
    assert_eq!(err["error"]["code"], "previous_response_not_found");
    gw.stop().await;
}

#[tokio::test]
async fn stored_responses_go_once_their_retention_has_passed() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&format!(
        "providers:\n  openai:\n    api_key: sk-mock-openai\n    base_url: {}\n\
         responses:\n  retention: 2s\n",
        mock.openai_base_url()
    ))
    .await;
    let (status, _, v) = create(
        &gw,
        json!({"model": "gpt-4o-mini", "input": "keep me a while"}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    // Kept, and continued, while the retention lasts.
    let kept = stored(&gw, MASTER_KEY, &id).await;
    assert_eq!(kept["id"], id.as_str());
    // Then every replica's sweep (every second, for a 2 s retention) deletes it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (status, err) = fetch(&gw, MASTER_KEY, reqwest::Method::GET, &id).await;
        if status == 404 {
            assert_eq!(err["error"]["type"], "invalid_request_error");
            break;
        }
        assert_eq!(status, 200, "{err}");
        assert!(
            std::time::Instant::now() < deadline,
            "the response outlived its retention by 8 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let (status, _, err) = create(
        &gw,
        json!({"model": "gpt-4o-mini", "input": "again", "previous_response_id": id}),
    )
    .await;
    assert_eq!(status, 404, "{err}");
    assert_eq!(err["error"]["code"], "previous_response_not_found");
    gw.stop().await;
}

async fn input_items(gw: &TestGateway, key: &str, id: &str, query: &str) -> (u16, Value) {
    let r = client()
        .get(gw.at(&format!("/v1/responses/{id}/input_items{query}")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn a_responses_input_items_are_listed_page_by_page_to_its_owner_only() {
    let (_mock, gw) = setup().await;
    let (status, _, v) = create(
        &gw,
        json!({"model": "gpt-4o-mini", "input": [
            {"role": "user", "content": "first"},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "second"}]},
            {"role": "user", "content": "third"},
        ]}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    stored(&gw, MASTER_KEY, &id).await;
    let texts = |page: &Value| -> Vec<String> {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| {
                assert_eq!(item["type"], "message", "{item}");
                assert!(item["id"].as_str().is_some_and(|i| !i.is_empty()), "{item}");
                item["content"][0]["text"].as_str().unwrap().to_owned()
            })
            .collect()
    };

    // Newest first by default, every item a message with an id.
    let (status, all) = input_items(&gw, MASTER_KEY, &id, "").await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["object"], "list");
    assert_eq!(texts(&all), ["third", "second", "first"]);
    assert_eq!(all["data"][0]["content"][0]["type"], "input_text");
    assert_eq!(all["has_more"], false);
    assert_eq!(all["first_id"], all["data"][0]["id"]);

    // Page by page, as sent.
    let (_, first) = input_items(&gw, MASTER_KEY, &id, "?order=asc&limit=2").await;
    assert_eq!(texts(&first), ["first", "second"]);
    assert_eq!(first["has_more"], true);
    let after = first["last_id"].as_str().unwrap();
    let (_, next) = input_items(
        &gw,
        MASTER_KEY,
        &id,
        &format!("?order=asc&limit=2&after={after}"),
    )
    .await;
    assert_eq!(texts(&next), ["third"]);
    assert_eq!(next["has_more"], false);

    // Bad paging is the caller's mistake; another tenant sees nothing.
    let (status, err) = input_items(&gw, MASTER_KEY, &id, "?limit=0").await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["param"], "limit");
    let (status, err) = input_items(&gw, MASTER_KEY, &id, "?order=sideways").await;
    assert_eq!(status, 400, "{err}");
    let other = new_key(&gw, "someone-else").await;
    let (status, err) = input_items(&gw, &other, &id, "").await;
    assert_eq!(status, 404, "{err}");
    let (status, _) = input_items(&gw, MASTER_KEY, "resp_unknown", "").await;
    assert_eq!(status, 404);
    gw.stop().await;
}

#[tokio::test]
async fn a_tenant_never_reads_continues_or_deletes_another_tenants_response() {
    let (mock, gw) = setup().await;
    let alice = new_key(&gw, "alice").await;
    let bob = new_key(&gw, "bob").await;
    let (status, _, v) = create_as(
        &gw,
        &alice,
        json!({"model": "gpt-4o-mini", "input": "secret plan"}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let calls = mock.requests().len();

    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let (status, err) = fetch(&gw, &bob, method, &id).await;
        assert_eq!(status, 404, "{err}");
        assert_eq!(
            err["error"]["message"],
            format!("No response found with id '{id}'.")
        );
    }
    let (status, _, err) = create_as(
        &gw,
        &bob,
        json!({"model": "gpt-4o-mini", "input": "tell me", "previous_response_id": id}),
    )
    .await;
    assert_eq!(status, 404, "{err}");
    assert_eq!(mock.requests().len(), calls, "nothing reached the upstream");

    assert_eq!(stored(&gw, &alice, &id).await["id"], id.as_str());
    let (status, v) = fetch(&gw, &alice, reqwest::Method::DELETE, &id).await;
    assert_eq!(status, 200);
    assert_eq!(v, json!({"id": id, "object": "response", "deleted": true}));
    let (status, _) = fetch(&gw, &alice, reqwest::Method::GET, &id).await;
    assert_eq!(status, 404);
    gw.stop().await;
}

#[tokio::test]
async fn anthropic_and_gemini_upstreams_answer_translated() {
    let (mock, gw) = setup().await;
    let (status, _, v) = create(
        &gw,
        json!({"model": "claude-sonnet-4-5", "instructions": "Be kind.", "input": "[tool] Oslo",
               "tools": weather_tool(), "tool_choice": "required", "max_output_tokens": 300}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["output"][0]["type"], "function_call", "{v}");
    assert!(
        v["output"][0]["call_id"]
            .as_str()
            .unwrap()
            .starts_with("toolu_")
    );
    let sent = last(&mock, "/v1/messages");
    assert_eq!(sent.body["system"], "Be kind.");
    assert_eq!(sent.body["max_tokens"], 300);
    assert_eq!(sent.body["tools"][0]["name"], "get_weather");
    assert_eq!(sent.body["tool_choice"]["type"], "any");

    for model in ["gemini-2.5-flash", "claude-sonnet-4-5"] {
        let (status, _, v) = create(&gw, json!({"model": model, "input": "hi"})).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(
            output_text(&v),
            "Hello from the mock! You said: hi",
            "{model}"
        );
        assert!(v["usage"]["input_tokens"].as_u64().unwrap() > 0, "{model}");
        let events = stream(&gw, json!({"model": model, "input": "hi", "stream": true})).await;
        let done = &events.last().unwrap().1;
        assert_eq!(done["type"], "response.completed", "{model}");
        assert_eq!(
            output_text(&done["response"]),
            "Hello from the mock! You said: hi"
        );
        assert!(done["response"]["usage"]["output_tokens"].as_u64().unwrap() > 0);
    }
    assert_eq!(
        last(&mock, "/v1beta/").path,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    );
    gw.stop().await;
}

#[tokio::test]
async fn bad_input_is_a_400_in_openais_error_format() {
    let (mock, gw) = setup().await;
    let calls = mock.requests().len();
    for (body, param) in [
        (json!({"model": "gpt-4o", "input": 5}), "input"),
        (json!({"model": "gpt-4o"}), "input"),
        (json!({"input": "hi"}), "model"),
        (
            json!({"model": "gpt-4o", "input": "x", "tools": [{"type": "web_search_preview"}]}),
            "tools[0].type",
        ),
        (
            json!({"model": "gpt-4o", "input": [{"type": "item_reference", "id": "x"}]}),
            "input[0].type",
        ),
        (
            json!({"model": "gpt-4o", "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}),
            "input[0].content[0].type",
        ),
    ] {
        let (status, headers, v) = create(&gw, body.clone()).await;
        assert_eq!(status, 400, "{body} → {v}");
        assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
        assert_eq!(v["error"]["param"], param, "{v}");
        assert!(v["error"]["message"].as_str().unwrap().len() > 10);
        let log = gw
            .log_of(headers["x-portcullis-request-id"].to_str().unwrap())
            .await;
        assert_eq!(log["endpoint"], "responses");
        assert_eq!(log["status"], 400);
    }
    let r = client()
        .post(gw.at("/v1/responses"))
        .bearer_auth(MASTER_KEY)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_json");
    let r = client()
        .post(gw.at("/v1/responses"))
        .json(&json!({"model": "gpt-4o", "input": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(mock.requests().len(), calls, "nothing reached the upstream");
    gw.stop().await;
}

#[tokio::test]
async fn upstream_errors_keep_their_status_and_a_failed_stream_ends_with_response_failed() {
    let (_mock, gw) = setup().await;
    let (status, headers, v) = create(
        &gw,
        json!({"model": "openai/mock-error-429", "input": "hi"}),
    )
    .await;
    assert_eq!(status, 429, "{v}");
    assert!(headers.contains_key("retry-after"));
    assert_eq!(v["error"]["type"], "rate_limit_error");
    let (status, _, v) = create(
        &gw,
        json!({"model": "openai/mock-error-404", "input": "hi"}),
    )
    .await;
    assert_eq!(status, 404, "{v}");

    let events = stream(
        &gw,
        json!({"model": "openai/mock-error-midstream", "input": "hi", "stream": true}),
    )
    .await;
    let (name, last) = events.last().unwrap();
    assert_eq!(name, "response.failed");
    assert_eq!(last["response"]["status"], "failed");
    assert!(
        last["response"]["error"]["message"].as_str().is_some(),
        "{last}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn models_served_only_by_the_responses_api_go_there_for_every_caller() {
    let (mock, gw) = setup().await;
    // A chat-completions caller.
    let (status, _, body) = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model": "o3-pro", "messages": [{"role": "system", "content": "Be exact."},
                                                 {"role": "user", "content": "hi"}],
                "max_tokens": 200}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello from the mock! You said: hi"
    );
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    let sent = last(&mock, "/v1/responses");
    assert_eq!(sent.body["model"], "o3-pro");
    assert_eq!(sent.body["store"], false);
    assert_eq!(sent.body["max_output_tokens"], 200);
    assert_eq!(sent.body["input"][0]["role"], "system");

    // Streamed, with a tool call, to an Anthropic caller.
    let r = client()
        .post(gw.at("/v1/messages"))
        .bearer_auth(MASTER_KEY)
        .header("anthropic-version", "2023-06-01")
        .json(
            &json!({"model": "o3-pro", "max_tokens": 100, "stream": true,
                      "messages": [{"role": "user", "content": "[tool] Lima"}],
                      "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let s = parse_anthropic_stream(&r.text().await.unwrap());
    assert_eq!(s.stop_reason.as_deref(), Some("tool_use"));
    assert_eq!(s.tool_uses[0].1, "get_weather");
    assert_eq!(
        serde_json::from_str::<Value>(&s.tool_uses[0].2).unwrap(),
        json!({"query": "[tool] Lima"})
    );

    // A Responses caller: the token limit makes it incomplete.
    let (status, _, v) = create(
        &gw,
        json!({"model": "o3-pro", "input": "a long question to answer", "max_output_tokens": 3}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "incomplete");
    assert_eq!(v["incomplete_details"]["reason"], "max_output_tokens");
    let (status, _, body) = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model": "o3-pro", "max_tokens": 3, "messages": [{"role": "user", "content": "a long question to answer"}]}),
    )
    .await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    gw.stop().await;
}

#[tokio::test]
async fn a_provider_sends_its_configured_responses_models_to_its_responses_api() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&format!(
        "providers:\n  local:\n    kind: custom\n    api_key: sk-mock-openai\n    base_url: {}\n    \
         models: [house-model, chat-model]\n    responses_models: [house-model]\n",
        mock.openai_base_url()
    ))
    .await;
    for (model, path) in [
        ("local/house-model", "/v1/responses"),
        ("local/chat-model", "/v1/chat/completions"),
    ] {
        let (status, _, body) = post(
            &gw,
            "/v1/chat/completions",
            &json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v["choices"][0]["message"]["content"],
            "Hello from the mock! You said: hi"
        );
        assert_eq!(mock.requests().last().unwrap().path, path, "{model}");
    }
    gw.stop().await;

    // Only an OpenAI-compatible provider has a Responses API to send them to.
    let refused = portcullis_config::from_yaml(
        "providers:\n  anthropic:\n    api_key: k\n    responses_models: [claude-x]\n",
        portcullis_config::Source::Environment,
        &std::collections::HashMap::new(),
    )
    .unwrap_err();
    assert!(
        format!("{refused:?}").contains("`responses_models` applies only to OpenAI-compatible"),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_keys_models_and_a_routes_denied_tools_hold_for_responses_too() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&format!(
        "providers:\n  openai:\n    api_key: sk-mock-openai\n    base_url: {}\n\
         routes:\n  guarded:\n    targets: [openai/gpt-4o]\n    tools_denied: [\"shell_*\"]\n",
        mock.openai_base_url()
    ))
    .await;
    // A key limited to one model is refused another, before any upstream call.
    let r = client()
        .post(gw.at("/admin/keys"))
        .bearer_auth(MASTER_KEY)
        .json(&json!({"name": "narrow", "models": ["gpt-4o-mini"]}))
        .send()
        .await
        .unwrap();
    let key = r.json::<Value>().await.unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let calls = mock.requests().len();
    let (status, _, v) = create_as(&gw, &key, json!({"model": "gpt-4o", "input": "hi"})).await;
    assert_eq!(status, 403, "{v}");
    assert_eq!(v["error"]["code"], "model_not_allowed");
    assert_eq!(mock.requests().len(), calls);

    // A call of a denied tool never reaches the caller, streamed or not.
    let shell = json!([{"type": "function", "name": "shell_exec",
                        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}]);
    let (status, _, v) = create(
        &gw,
        json!({"model": "guarded", "input": "[tool] rm -rf /", "tools": shell}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert!(
        v["output"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["type"] != "function_call"),
        "{v}"
    );
    assert!(
        output_text(&v).contains("shell_exec"),
        "the notice names it: {v}"
    );
    let events = stream(
        &gw,
        json!({"model": "guarded", "input": "[tool] rm -rf /", "tools": shell, "stream": true}),
    )
    .await;
    assert!(
        events
            .iter()
            .all(|(name, _)| !name.starts_with("response.function_call")),
        "{events:?}"
    );
    let done = &events.last().unwrap().1["response"];
    assert_eq!(done["status"], "completed");
    assert!(
        !done.to_string().contains("rm -rf"),
        "no argument reaches the caller: {done}"
    );
    gw.stop().await;
}
