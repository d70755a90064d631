//! Vertex AI behind the gateway over real HTTP: OpenAI- and Anthropic-dialect callers reaching
//! a `kind: vertex` provider (the mock's Vertex AI) — Gemini models in Gemini's format, Claude
//! models in Anthropic's at `rawPredict` — streaming and not, with tools; the service
//! account's access token fetched from the mock's token endpoint (which checks the signed
//! grant), kept and refreshed, one grant for many concurrent requests; a key the token
//! endpoint refuses as a 502 naming the provider; Google's errors in the caller's dialect.

use std::path::PathBuf;
use std::time::Duration;

use portcullis_test_support::{MockOptions, MockUpstream, vertex};
use serde_json::{Value, json};

use crate::common::*;

const GEMINI_PATH: &str = "/v1/projects/mock-project/locations/us-east5/publishers/google/models";
const CLAUDE_PATH: &str =
    "/v1/projects/mock-project/locations/us-east5/publishers/anthropic/models";
const CLAUDE: &str = "claude-sonnet-4-5@20250929";

/// Writes the mock's service-account key file (with `private_key`) into a directory that
/// lives as long as the returned guard.
fn key_file(mock: &MockUpstream, private_key: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("service-account.json");
    std::fs::write(
        &path,
        vertex::service_account_json(private_key, &mock.vertex_token_uri()),
    )
    .unwrap();
    (dir, path)
}

fn config(mock: &MockUpstream, credentials: &std::path::Path, location: &str) -> String {
    format!(
        "providers:\n  vertex:\n    kind: vertex\n    location: {location}\n    credentials: {}\n    base_url: {}\n",
        credentials.display(),
        mock.vertex_base_url()
    )
}

async fn setup_with(options: MockOptions) -> (MockUpstream, TestGateway, tempfile::TempDir) {
    let mock = MockUpstream::start_with(options).await;
    let (dir, path) = key_file(&mock, vertex::PRIVATE_KEY);
    let gw = TestGateway::start(&config(&mock, &path, "us-east5")).await;
    (mock, gw, dir)
}

async fn setup() -> (MockUpstream, TestGateway, tempfile::TempDir) {
    setup_with(MockOptions::default()).await
}

fn tools_openai() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}}])
}

fn tools_anthropic() -> Value {
    json!([{"name": "get_weather", "description": "Weather in a city",
        "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}}}])
}

/// The last model request the mock's Vertex AI received.
fn last_model_call(mock: &MockUpstream) -> portcullis_test_support::RecordedRequest {
    mock.requests()
        .into_iter()
        .rev()
        .find(|r| r.path.starts_with("/v1/projects/"))
        .expect("Vertex AI was called")
}

fn bearer(r: &portcullis_test_support::RecordedRequest) -> &str {
    r.headers["authorization"]
        .strip_prefix("Bearer ya29.")
        .expect("a Google access token")
}

#[tokio::test]
async fn an_openai_client_reaches_a_gemini_model_with_a_service_account_token() {
    let (mock, gw, _dir) = setup().await;
    let (status, headers, body) = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model": "vertex/gemini-2.5-flash", "messages": [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "hi"}], "max_tokens": 50}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello from the mock! You said: hi"
    );
    assert_eq!(headers["x-portcullis-provider"], "vertex");

    let sent = last_model_call(&mock);
    assert_eq!(
        sent.path,
        format!("{GEMINI_PATH}/gemini-2.5-flash:generateContent")
    );
    bearer(&sent);
    assert!(!sent.headers.contains_key("x-goog-api-key"));
    assert!(!format!("{:?}", sent.headers).contains(MASTER_KEY));
    assert_eq!(
        sent.body["systemInstruction"],
        json!({"parts": [{"text": "Answer briefly."}]})
    );
    // The grant the token endpoint got: the JWT-bearer grant, for the cloud-platform scope.
    let grant = mock
        .requests()
        .into_iter()
        .find(|r| r.path == "/token")
        .unwrap();
    assert_eq!(
        vertex::form_field(&grant.raw, "grant_type").as_deref(),
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    );
    let log = gw
        .log_of(headers["x-portcullis-request-id"].to_str().unwrap())
        .await;
    assert_eq!(log["provider"], "vertex");
    assert_eq!(log["model"], "gemini-2.5-flash");
    assert!(log["input_tokens"].as_u64().unwrap() > 0);
    gw.stop().await;
}

#[tokio::test]
async fn an_anthropic_client_reaches_claude_on_vertex_as_anthropic_answers_it() {
    let (mock, gw, _dir) = setup().await;
    let (status, headers, body) = post(
        &gw,
        "/v1/messages",
        &json!({"model": format!("vertex/{CLAUDE}"), "max_tokens": 100,
                "system": "Be brief.", "messages": [{"role": "user", "content": "hello"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(
        v["content"][0]["text"],
        "Hello from the mock! You said: hello"
    );
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(headers["x-portcullis-model"], CLAUDE);

    let sent = last_model_call(&mock);
    assert_eq!(sent.path, format!("{CLAUDE_PATH}/{CLAUDE}:rawPredict"));
    bearer(&sent);
    assert!(sent.body.get("model").is_none(), "{}", sent.body);
    assert_eq!(sent.body["anthropic_version"], "vertex-2023-10-16");
    assert_eq!(sent.body["system"], "Be brief.");
    assert!(!sent.headers.contains_key("x-api-key"));
    gw.stop().await;
}

#[tokio::test]
async fn both_dialects_stream_from_both_publishers_with_tools() {
    let (mock, gw, _dir) = setup().await;
    // OpenAI caller, Claude model, streamed, with a tool call.
    let (status, _, body) = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model": format!("vertex/{CLAUDE}"), "stream": true,
                "stream_options": {"include_usage": true},
                "messages": [{"role": "user", "content": "[tool] Paris"}], "tools": tools_openai()}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let s = parse_openai_stream(&body);
    assert!(s.done && s.error.is_none(), "{body}");
    assert_eq!(s.finish_reason.as_deref(), Some("tool_calls"));
    assert_eq!(s.tool_calls.len(), 1, "{body}");
    assert_eq!(s.tool_calls[0].1, "get_weather");
    assert_eq!(
        serde_json::from_str::<Value>(&s.tool_calls[0].2).unwrap(),
        json!({"query": "[tool] Paris"})
    );
    assert!(s.usage.is_some());
    let sent = last_model_call(&mock);
    assert_eq!(
        sent.path,
        format!("{CLAUDE_PATH}/{CLAUDE}:streamRawPredict")
    );
    assert_eq!(sent.body["stream"], true);

    // Anthropic caller, Gemini model, streamed, with a tool call; then its result back.
    let (status, _, body) = post(
        &gw,
        "/v1/messages",
        &json!({"model": "vertex/gemini-2.5-flash", "max_tokens": 100, "stream": true,
                "messages": [{"role": "user", "content": "[tool] Rome"}], "tools": tools_anthropic()}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let s = parse_anthropic_stream(&body);
    assert!(s.error.is_none(), "{body}");
    assert_eq!(s.stop_reason.as_deref(), Some("tool_use"));
    assert_eq!(s.tool_uses.len(), 1, "{body}");
    let (id, name, input) = s.tool_uses[0].clone();
    assert_eq!(name, "get_weather");
    let sent = last_model_call(&mock);
    assert_eq!(
        sent.path,
        format!("{GEMINI_PATH}/gemini-2.5-flash:streamGenerateContent")
    );
    assert_eq!(sent.query, "alt=sse");

    let (status, _, body) = post(
        &gw,
        "/v1/messages",
        &json!({"model": "vertex/gemini-2.5-flash", "max_tokens": 100,
                "tools": tools_anthropic(), "messages": [
                    {"role": "user", "content": "[tool] Rome"},
                    {"role": "assistant", "content": [{"type": "tool_use", "id": id, "name": name,
                        "input": serde_json::from_str::<Value>(&input).unwrap()}]},
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": "sunny"}]}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["content"][0]["text"],
        "Hello from the mock! You said: sunny"
    );
    let sent = last_model_call(&mock);
    assert_eq!(
        sent.body["contents"][2]["parts"][0]["functionResponse"]["name"],
        "get_weather"
    );

    // Anthropic caller, Claude model, streamed: Anthropic's own events.
    let (status, _, body) = post(
        &gw,
        "/v1/messages",
        &json!({"model": format!("vertex/{CLAUDE}"), "max_tokens": 100, "stream": true,
                "messages": [{"role": "user", "content": "stream me"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let s = parse_anthropic_stream(&body);
    assert_eq!(s.text, "Hello from the mock! You said: stream me");
    assert_eq!(s.events.first().map(String::as_str), Some("message_start"));
    gw.stop().await;
}

#[tokio::test]
async fn one_grant_serves_many_requests_concurrent_ones_included() {
    let (mock, gw, _dir) = setup().await;
    let asks = (0..12).map(|i| {
        let gw = &gw;
        async move {
            let model = if i % 2 == 0 {
                "vertex/gemini-2.5-flash".to_owned()
            } else {
                format!("vertex/{CLAUDE}")
            };
            post(
                gw,
                "/v1/chat/completions",
                &json!({"model": model, "messages": [{"role": "user", "content": format!("n{i}")}]}),
            )
            .await
        }
    });
    for (status, _, body) in futures_util::future::join_all(asks).await {
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(mock.vertex_grants(), 1, "one grant for concurrent requests");
    for _ in 0..3 {
        let (status, _, _) = post(
            &gw,
            "/v1/chat/completions",
            &json!({"model": "vertex/gemini-2.5-flash", "messages": [{"role": "user", "content": "again"}]}),
        )
        .await;
        assert_eq!(status, 200);
    }
    assert_eq!(mock.vertex_grants(), 1, "the token is kept");
    let tokens: std::collections::HashSet<String> = mock
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/v1/projects/"))
        .map(|r| r.headers["authorization"].clone())
        .collect();
    assert_eq!(tokens.len(), 1);
    gw.stop().await;
}

#[tokio::test]
async fn a_token_about_to_expire_is_refreshed() {
    // Tokens of four seconds: refreshed after three.
    let (mock, gw, _dir) = setup_with(MockOptions {
        vertex_token_lifetime: Duration::from_secs(4),
        ..MockOptions::default()
    })
    .await;
    let body = json!({"model": "vertex/gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}]});
    let ask = || post(&gw, "/v1/chat/completions", &body);
    assert_eq!(ask().await.0, 200);
    let first = bearer(&last_model_call(&mock)).to_owned();
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let (status, _, body) = ask().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(mock.vertex_grants(), 2);
    let second = bearer(&last_model_call(&mock)).to_owned();
    assert_ne!(first, second);
    gw.stop().await;
}

#[tokio::test]
async fn a_refused_key_is_a_502_naming_the_provider_in_both_dialects() {
    let mock = MockUpstream::start().await;
    let (_dir, path) = key_file(&mock, vertex::UNKNOWN_PRIVATE_KEY);
    let gw = TestGateway::start(&config(&mock, &path, "us-east5")).await;
    let (status, _, body) = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model": "vertex/gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 502, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("`vertex`"), "{message}");
    assert_eq!(v["error"]["code"], "upstream_auth_failed");
    assert!(!body.contains("PRIVATE KEY") && !body.contains(&vertex::UNKNOWN_PRIVATE_KEY[40..80]));
    let (status, _, body) = post(
        &gw,
        "/v1/messages",
        &json!({"model": format!("vertex/{CLAUDE}"), "max_tokens": 10,
                "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 502, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["type"], "error");
    assert!(v["error"]["message"].as_str().unwrap().contains("`vertex`"));
    // The token endpoint was asked, refused, and no model was called.
    assert!(mock.requests().iter().any(|r| r.path == "/token"));
    assert!(!mock.requests().iter().any(|r| r.path.starts_with("/v1/")));
    assert_eq!(mock.vertex_grants(), 0);
    gw.stop().await;
}

#[tokio::test]
async fn the_global_location_and_googles_errors_in_each_dialect() {
    let mock = MockUpstream::start().await;
    let (_dir, path) = key_file(&mock, vertex::PRIVATE_KEY);
    let gw = TestGateway::start(&config(&mock, &path, "global")).await;
    let (status, headers, body) = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model": "vertex/mock-error-429", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(headers["retry-after"], "7", "Google's RetryInfo");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error");
    let sent = last_model_call(&mock);
    assert_eq!(
        sent.path,
        "/v1/projects/mock-project/locations/global/publishers/google/models/mock-error-429:generateContent"
    );
    let (status, _, body) = post(
        &gw,
        "/v1/messages",
        &json!({"model": "vertex/mock-error-400", "max_tokens": 10,
                "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    gw.stop().await;
}

#[tokio::test]
async fn zero_config_google_variables_enable_vertex_and_bare_names_reach_it() {
    let mock = MockUpstream::start().await;
    let (dir, path) = key_file(&mock, vertex::PRIVATE_KEY);
    let env: std::collections::HashMap<String, String> = [
        ("GOOGLE_APPLICATION_CREDENTIALS", path.display().to_string()),
        ("GOOGLE_CLOUD_LOCATION", "us-east5".to_owned()),
        ("GOOGLE_VERTEX_BASE_URL", mock.vertex_base_url()),
        ("PORTCULLIS_MASTER_KEY", MASTER_KEY.to_owned()),
        (
            "PORTCULLIS_DATABASE_URL",
            format!("sqlite://{}", dir.path().join("gw.db").display()),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let config = portcullis_config::load(None, &env).unwrap();
    assert_eq!(config.providers[0].name, "vertex");
    let gw = TestGateway::start_config(config).await;
    let (status, headers, body) = post(
        &gw,
        "/v1/messages",
        &json!({"model": CLAUDE, "max_tokens": 20, "messages": [{"role": "user", "content": "bare"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-portcullis-provider"], "vertex");
    assert_eq!(
        last_model_call(&mock).path,
        format!("{CLAUDE_PATH}/{CLAUDE}:rawPredict")
    );
    gw.stop().await;
}

/// The model list is Vertex AI's publisher models (Google's), read page by page with the
/// service account's token as chat requests carry it: the Gemini and text embedding models
/// are listed by the names callers send, the others (images, open models) are not, and a
/// listed name reaches its model.
#[tokio::test]
async fn gemini_models_are_listed_from_the_publisher_models_with_the_token() {
    let (mock, gw, _dir) = setup().await;
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
        .filter(|id| id.starts_with("vertex/"))
        .collect();
    assert_eq!(
        ids,
        [
            "vertex/gemini-2.5-pro",
            "vertex/gemini-2.5-flash",
            "vertex/gemini-2.5-flash-lite",
            "vertex/gemini-2.0-flash-001",
            "vertex/gemini-embedding-001",
            "vertex/text-embedding-005",
        ],
        "{v}"
    );
    let pages: Vec<_> = mock
        .requests()
        .into_iter()
        .filter(|r| r.path == "/v1beta1/publishers/google/models")
        .collect();
    // Eight models, at most five a page: two pages, the second asked for by its token.
    assert_eq!(pages.len(), 2, "{pages:?}");
    assert_eq!(pages[0].query, "pageSize=1000");
    assert_eq!(pages[1].query, "pageSize=1000&pageToken=mock-page-5");
    for page in &pages {
        assert_eq!(page.method, "GET");
        assert!(!bearer(page).is_empty());
    }

    let (status, _, body) = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model": "vertex/gemini-2.5-flash-lite", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        last_model_call(&mock).path,
        format!("{GEMINI_PATH}/gemini-2.5-flash-lite:generateContent")
    );
    gw.stop().await;
}

/// A key Google refuses lists no Vertex model (and asks for no list).
#[tokio::test]
async fn a_refused_key_lists_no_vertex_model() {
    let mock = MockUpstream::start().await;
    let (_dir, path) = key_file(&mock, vertex::UNKNOWN_PRIVATE_KEY);
    let gw = TestGateway::start(&config(&mock, &path, "us-east5")).await;
    let r = client()
        .get(gw.at("/v1/models"))
        .bearer_auth(MASTER_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(!v.to_string().contains("vertex/"), "{v}");
    assert!(
        !mock
            .requests()
            .iter()
            .any(|r| r.path.starts_with("/v1beta1/publishers/")),
        "no list asked for without a token"
    );
    gw.stop().await;
}

/// Embeddings reach Google's embedding models at `:predict` with the service account's
/// token, one instance per text, and come back in OpenAI's format with Vertex's token counts
/// as usage; Vertex's refusals keep their status.
#[tokio::test]
async fn embeddings_go_through_predict_and_come_back_in_openais_format() {
    let (mock, gw, _dir) = setup().await;
    let (status, headers, body) = post(
        &gw,
        "/v1/embeddings",
        &json!({"model": "vertex/text-embedding-005", "input": ["hello world", "and more words here"], "dimensions": 256}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], "text-embedding-005");
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[1]["index"], 1);
    assert_eq!(data[0]["embedding"].as_array().unwrap().len(), 256);
    let sent = last_model_call(&mock);
    assert_eq!(
        sent.path,
        format!("{GEMINI_PATH}/text-embedding-005:predict")
    );
    assert_eq!(
        sent.body,
        json!({"instances": [{"content": "hello world"}, {"content": "and more words here"}],
               "parameters": {"outputDimensionality": 256}})
    );
    assert!(!bearer(&sent).is_empty());
    // The usage is the sum of Vertex's per-text token counts.
    let counts = portcullis_test_support::scenario::tokens("hello world")
        + portcullis_test_support::scenario::tokens("and more words here");
    assert_eq!(v["usage"]["prompt_tokens"], counts);
    let log = gw
        .log_of(headers["x-portcullis-request-id"].to_str().unwrap())
        .await;
    assert_eq!(log["input_tokens"], counts);

    // Gemini's embedding model takes one text a request: Vertex's 400 reaches the caller.
    let (status, _, body) = post(
        &gw,
        "/v1/embeddings",
        &json!({"model": "vertex/gemini-embedding-001", "input": ["a", "b"]}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("only 1 instance"), "{body}");
    gw.stop().await;
}
