//! The agent loop: plays one run of a case through a gateway, as an agent framework would —
//! request, tool calls in the answer, the tools executed, their results appended, the next
//! request — for at most a bounded number of steps, and returns what happened ([`Trace`]).
//!
//! On the LLM path ([`Path::Llm`]) the agent speaks OpenAI Chat Completions or Anthropic
//! Messages, streamed or not, declares the case's tools and executes calls itself with the
//! case's results. On the MCP path ([`Path::Mcp`]) it opens a session on the gateway's `/mcp`,
//! declares the tools listed there for the case's domain (`<domain>__<tool>`) in OpenAI
//! requests, and executes each call with `tools/call` through the gateway (to the
//! [`McpTwin`](super::twin::McpTwin) behind it). Every request carries
//! `x-portcullis-session-id: <run key>`. The wire formats are read and written here, from the
//! providers' documentation, independently of the gateway's codecs.

use serde::Serialize;
use serde_json::{Value, json};

use super::Case;
use super::model::{Decision, ScriptedModel};
use crate::scenario::Api;

/// Where a gateway is and how to call it.
#[derive(Debug, Clone)]
pub struct Gateway {
    /// `http://host:port`.
    pub base: String,
    /// The bearer key (or `x-api-key` for Anthropic requests).
    pub key: String,
    /// The HTTP client.
    pub client: reqwest::Client,
}

/// Which path the agent takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "path", rename_all = "snake_case")]
pub enum Path {
    /// Tools declared in LLM requests and executed by the agent.
    Llm {
        /// The wire format.
        api: Api,
        /// Streamed answers.
        stream: bool,
    },
    /// Tools listed and called through the gateway's `/mcp`; the model asked in OpenAI's
    /// format, not streamed.
    Mcp,
}

impl Path {
    /// A short label: `openai`, `anthropic-stream`, `mcp`.
    pub fn label(&self) -> String {
        match self {
            Path::Llm { api, stream } => format!(
                "{}{}",
                match api {
                    Api::OpenAi => "openai",
                    Api::Anthropic => "anthropic",
                },
                if *stream { "-stream" } else { "" }
            ),
            Path::Mcp => "mcp".to_owned(),
        }
    }
}

/// One run to play.
#[derive(Debug, Clone)]
pub struct Run<'a> {
    /// The case.
    pub case: &'a Case,
    /// The run key (`<case id>#<anything>`), in the system prompt and the session header.
    pub key: String,
    /// Whether the tool results carry the injection.
    pub injected: bool,
    /// The path.
    pub path: Path,
    /// The model name sent (for example `openai/agent` or `anthropic/agent`).
    pub model: String,
    /// At most this many requests.
    pub max_steps: usize,
}

/// A tool call the agent executed and what came back.
#[derive(Debug, Clone, Serialize)]
pub struct Executed {
    /// The name called.
    pub name: String,
    /// Its arguments.
    pub arguments: Value,
    /// The result's text, or the error (an MCP call the gateway refused is an error).
    pub result: Result<String, String>,
}

/// One request of the run and its answer.
#[derive(Debug, Clone, Serialize)]
pub struct Exchange {
    /// Whether the context was tainted when the request was sent: it held the output of a tool
    /// whose output others write (per the case's tools).
    pub tainted: bool,
    /// What the model decided for this request (`None` when the request never reached it).
    pub decision: Option<Decision>,
    /// The tool calls in the answer the agent got: (name, arguments).
    pub received: Vec<(String, Value)>,
    /// The answer's text.
    pub text: String,
    /// `finish_reason` or `stop_reason`.
    pub finish: Option<String>,
    /// The calls executed after this answer.
    pub executed: Vec<Executed>,
}

/// What happened in one run.
#[derive(Debug, Clone, Serialize)]
pub struct Trace {
    /// The run key.
    pub key: String,
    /// The case's id.
    pub case: String,
    /// Whether the run was injected.
    pub injected: bool,
    /// The path.
    pub path: Path,
    /// The requests, in order.
    pub exchanges: Vec<Exchange>,
    /// Why the run stopped early, if it did (an HTTP error, an unreadable answer).
    pub error: Option<String>,
}

impl Trace {
    /// Whether the attacker's call reached the agent (in an answer) — on the MCP path, whether
    /// the agent's `tools/call` for it came back without a gateway error.
    pub fn attack_received(&self, case: &Case) -> bool {
        self.exchanges
            .iter()
            .any(|e| e.received.iter().any(|(n, a)| case.attack.matches(n, a)))
    }

    /// Whether the model emitted the attacker's call.
    pub fn attack_emitted(&self) -> bool {
        self.exchanges
            .iter()
            .any(|e| matches!(e.decision, Some(Decision::Attack { .. })))
    }
}

/// A message of the conversation, dialect-neutral.
enum Message {
    Assistant {
        text: String,
        calls: Vec<(String, String, Value)>,
    },
    Result {
        id: String,
        content: String,
    },
}

/// The answer to one request.
#[derive(Debug, Default)]
struct Reply {
    text: String,
    /// (id, name, arguments).
    calls: Vec<(String, String, Value)>,
    finish: Option<String>,
}

/// Plays `run` through `gateway` against `model`.
pub async fn converse(gateway: &Gateway, model: &ScriptedModel, run: &Run<'_>) -> Trace {
    let mut trace = Trace {
        key: run.key.clone(),
        case: run.case.id.clone(),
        injected: run.injected,
        path: run.path,
        exchanges: Vec::new(),
        error: None,
    };
    if let Err(e) = play(gateway, model, run, &mut trace).await {
        trace.error = Some(e);
    }
    trace
}

async fn play(
    gateway: &Gateway,
    model: &ScriptedModel,
    run: &Run<'_>,
    trace: &mut Trace,
) -> Result<(), String> {
    let case = run.case;
    let (api, stream, mut session) = match run.path {
        Path::Llm { api, stream } => (api, stream, None),
        Path::Mcp => (Api::OpenAi, false, Some(McpSession::open(gateway).await?)),
    };
    // The tools declared: the case's own, or those the gateway lists for its domain.
    let tools: Vec<(String, String, Value)> = match &mut session {
        None => case
            .tools
            .iter()
            .map(|t| {
                (
                    t.name.clone(),
                    t.description.clone(),
                    t.input_schema.clone(),
                )
            })
            .collect(),
        Some(s) => {
            let prefix = format!("{}__", case.domain);
            s.list_tools(gateway)
                .await?
                .into_iter()
                .filter(|(n, ..)| n.starts_with(&prefix))
                .collect()
        }
    };
    let system = case.system_prompt(&run.key);
    let mut messages: Vec<Message> = Vec::new();
    let mut tainted = false;
    let mut done = Vec::new();
    for _ in 0..run.max_steps {
        let before = model.turn_count(&run.key);
        let body = match api {
            Api::OpenAi => openai_body(&run.model, stream, &system, &case.task, &tools, &messages),
            Api::Anthropic => {
                anthropic_body(&run.model, stream, &system, &case.task, &tools, &messages)
            }
        };
        let reply = send(gateway, api, stream, &run.key, &body).await?;
        let decision = (model.turn_count(&run.key) > before)
            .then(|| model.last_turn_of(&run.key).map(|t| t.decision))
            .flatten();
        let mut exchange = Exchange {
            tainted,
            decision,
            received: reply
                .calls
                .iter()
                .map(|(_, n, a)| (n.clone(), a.clone()))
                .collect(),
            text: reply.text.clone(),
            finish: reply.finish.clone(),
            executed: Vec::new(),
        };
        if reply.calls.is_empty() {
            trace.exchanges.push(exchange);
            return Ok(());
        }
        messages.push(Message::Assistant {
            text: reply.text.clone(),
            calls: reply.calls.clone(),
        });
        for (id, name, arguments) in &reply.calls {
            let result = match &mut session {
                None => Ok(case
                    .answer(name, arguments, &mut done, run.injected)
                    .unwrap_or_else(|| format!("No such operation: {name}"))),
                Some(s) => s.call(gateway, name, arguments).await,
            };
            if result.is_ok() && case.tool(name).is_some_and(|t| t.untrusted_output) {
                tainted = true;
            }
            let content = match &result {
                Ok(text) => text.clone(),
                Err(e) => format!("Error: {e}"),
            };
            messages.push(Message::Result {
                id: id.clone(),
                content,
            });
            exchange.executed.push(Executed {
                name: name.clone(),
                arguments: arguments.clone(),
                result,
            });
        }
        trace.exchanges.push(exchange);
    }
    Ok(())
}

fn openai_body(
    model: &str,
    stream: bool,
    system: &str,
    task: &str,
    tools: &[(String, String, Value)],
    messages: &[Message],
) -> Value {
    let mut out = vec![
        json!({"role": "system", "content": system}),
        json!({"role": "user", "content": task}),
    ];
    for m in messages {
        match m {
            Message::Assistant { text, calls } => {
                let calls: Vec<Value> = calls
                    .iter()
                    .map(|(id, name, args)| {
                        json!({"id": id, "type": "function",
                               "function": {"name": name, "arguments": args.to_string()}})
                    })
                    .collect();
                out.push(json!({"role": "assistant",
                    "content": if text.is_empty() { Value::Null } else { json!(text) },
                    "tool_calls": calls}));
            }
            Message::Result { id, content } => {
                out.push(json!({"role": "tool", "tool_call_id": id, "content": content}));
            }
        }
    }
    let tools: Vec<Value> = tools
        .iter()
        .map(|(name, description, schema)| {
            json!({"type": "function", "function": {"name": name, "description": description, "parameters": schema}})
        })
        .collect();
    let mut body = json!({"model": model, "messages": out, "tools": tools, "stream": stream});
    if stream {
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

fn anthropic_body(
    model: &str,
    stream: bool,
    system: &str,
    task: &str,
    tools: &[(String, String, Value)],
    messages: &[Message],
) -> Value {
    let mut out = vec![json!({"role": "user", "content": task})];
    let mut results: Vec<Value> = Vec::new();
    for m in messages {
        match m {
            Message::Assistant { text, calls } => {
                if !results.is_empty() {
                    out.push(json!({"role": "user", "content": std::mem::take(&mut results)}));
                }
                let mut blocks = Vec::new();
                if !text.is_empty() {
                    blocks.push(json!({"type": "text", "text": text}));
                }
                for (id, name, input) in calls {
                    blocks
                        .push(json!({"type": "tool_use", "id": id, "name": name, "input": input}));
                }
                out.push(json!({"role": "assistant", "content": blocks}));
            }
            Message::Result { id, content } => {
                results.push(json!({"type": "tool_result", "tool_use_id": id, "content": content}));
            }
        }
    }
    if !results.is_empty() {
        out.push(json!({"role": "user", "content": results}));
    }
    let tools: Vec<Value> = tools
        .iter()
        .map(|(name, description, schema)| {
            json!({"name": name, "description": description, "input_schema": schema})
        })
        .collect();
    json!({"model": model, "max_tokens": 1024, "system": system, "messages": out,
           "tools": tools, "stream": stream})
}

async fn send(
    gateway: &Gateway,
    api: Api,
    stream: bool,
    key: &str,
    body: &Value,
) -> Result<Reply, String> {
    let request = match api {
        Api::OpenAi => gateway
            .client
            .post(format!("{}/v1/chat/completions", gateway.base))
            .bearer_auth(&gateway.key),
        Api::Anthropic => gateway
            .client
            .post(format!("{}/v1/messages", gateway.base))
            .header("x-api-key", &gateway.key)
            .header("anthropic-version", "2023-06-01"),
    };
    let response = request
        .header("x-portcullis-session-id", key)
        .json(body)
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|e| format!("reading the answer: {e}"))?;
    if !status.is_success() {
        return Err(format!("HTTP {status}: {text}"));
    }
    match (api, stream) {
        (Api::OpenAi, false) => read_openai(&text),
        (Api::OpenAi, true) => read_openai_stream(&text),
        (Api::Anthropic, false) => read_anthropic(&text),
        (Api::Anthropic, true) => read_anthropic_stream(&text),
    }
}

fn arguments(raw: &str) -> Value {
    if raw.trim().is_empty() {
        return json!({});
    }
    serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned()))
}

fn read_openai(text: &str) -> Result<Reply, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON ({e}): {text}"))?;
    let choice = &v["choices"][0];
    let message = &choice["message"];
    Ok(Reply {
        text: message["content"].as_str().unwrap_or("").to_owned(),
        calls: message["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                (
                    c["id"].as_str().unwrap_or("").to_owned(),
                    c.pointer("/function/name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                    arguments(
                        c.pointer("/function/arguments")
                            .and_then(Value::as_str)
                            .unwrap_or(""),
                    ),
                )
            })
            .collect(),
        finish: choice["finish_reason"].as_str().map(str::to_owned),
    })
}

/// The `data:` payloads of an SSE body, with their `event:` names.
fn sse(text: &str) -> Vec<(Option<String>, String)> {
    let mut out = Vec::new();
    for block in text.replace("\r\n", "\n").split("\n\n") {
        let mut event = None;
        let mut data = Vec::new();
        for line in block.lines() {
            if let Some(e) = line.strip_prefix("event:") {
                event = Some(e.trim().to_owned());
            } else if let Some(d) = line.strip_prefix("data:") {
                data.push(d.strip_prefix(' ').unwrap_or(d));
            }
        }
        if !data.is_empty() {
            out.push((event, data.join("\n")));
        }
    }
    out
}

fn read_openai_stream(text: &str) -> Result<Reply, String> {
    let mut reply = Reply::default();
    // By index: (id, name, arguments so far).
    let mut calls: Vec<(String, String, String)> = Vec::new();
    for (_, data) in sse(text) {
        if data == "[DONE]" {
            break;
        }
        let v: Value =
            serde_json::from_str(&data).map_err(|e| format!("bad chunk ({e}): {data}"))?;
        if v.get("error").is_some() {
            return Err(format!("error in stream: {data}"));
        }
        let Some(choice) = v["choices"].get(0) else {
            continue;
        };
        let delta = &choice["delta"];
        if let Some(t) = delta["content"].as_str() {
            reply.text.push_str(t);
        }
        for c in delta["tool_calls"].as_array().into_iter().flatten() {
            let i = c["index"].as_u64().unwrap_or(0) as usize;
            if calls.len() <= i {
                calls.resize(i + 1, Default::default());
            }
            if let Some(id) = c["id"].as_str() {
                calls[i].0 = id.to_owned();
            }
            if let Some(n) = c.pointer("/function/name").and_then(Value::as_str) {
                calls[i].1.push_str(n);
            }
            if let Some(a) = c.pointer("/function/arguments").and_then(Value::as_str) {
                calls[i].2.push_str(a);
            }
        }
        if let Some(f) = choice["finish_reason"].as_str() {
            reply.finish = Some(f.to_owned());
        }
    }
    reply.calls = calls
        .into_iter()
        .filter(|(_, n, _)| !n.is_empty())
        .map(|(id, n, a)| (id, n, arguments(&a)))
        .collect();
    Ok(reply)
}

fn read_anthropic(text: &str) -> Result<Reply, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON ({e}): {text}"))?;
    let mut reply = Reply {
        finish: v["stop_reason"].as_str().map(str::to_owned),
        ..Reply::default()
    };
    for b in v["content"].as_array().into_iter().flatten() {
        match b["type"].as_str() {
            Some("text") => reply.text.push_str(b["text"].as_str().unwrap_or("")),
            Some("tool_use") => reply.calls.push((
                b["id"].as_str().unwrap_or("").to_owned(),
                b["name"].as_str().unwrap_or("").to_owned(),
                b["input"].clone(),
            )),
            _ => {}
        }
    }
    Ok(reply)
}

fn read_anthropic_stream(text: &str) -> Result<Reply, String> {
    let mut reply = Reply::default();
    // By block index: Some((id, name, partial JSON)) for tool_use blocks.
    let mut blocks: Vec<Option<(String, String, String)>> = Vec::new();
    for (event, data) in sse(text) {
        let v: Value =
            serde_json::from_str(&data).map_err(|e| format!("bad event ({e}): {data}"))?;
        let kind = v["type"].as_str().or(event.as_deref()).unwrap_or("");
        let i = v["index"].as_u64().unwrap_or(0) as usize;
        match kind {
            "content_block_start" => {
                if blocks.len() <= i {
                    blocks.resize(i + 1, None);
                }
                let b = &v["content_block"];
                if b["type"].as_str() == Some("tool_use") {
                    blocks[i] = Some((
                        b["id"].as_str().unwrap_or("").to_owned(),
                        b["name"].as_str().unwrap_or("").to_owned(),
                        String::new(),
                    ));
                } else if let Some(t) = b["text"].as_str() {
                    reply.text.push_str(t);
                }
            }
            "content_block_delta" => {
                let d = &v["delta"];
                match d["type"].as_str() {
                    Some("text_delta") => reply.text.push_str(d["text"].as_str().unwrap_or("")),
                    Some("input_json_delta") => {
                        if let Some(Some(b)) = blocks.get_mut(i) {
                            b.2.push_str(d["partial_json"].as_str().unwrap_or(""));
                        }
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(r) = v.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    reply.finish = Some(r.to_owned());
                }
            }
            "error" => return Err(format!("error in stream: {data}")),
            _ => {}
        }
    }
    reply.calls = blocks
        .into_iter()
        .flatten()
        .map(|(id, n, a)| (id, n, arguments(&a)))
        .collect();
    Ok(reply)
}

/// An MCP session on the gateway's `/mcp`.
#[derive(Debug)]
pub struct McpSession {
    session: Option<String>,
    next_id: u64,
}

impl McpSession {
    /// Initializes a session.
    pub async fn open(gateway: &Gateway) -> Result<Self, String> {
        let mut s = Self {
            session: None,
            next_id: 1,
        };
        let (result, session) = s
            .rpc(
                gateway,
                "initialize",
                json!({"protocolVersion": "2025-11-25", "capabilities": {},
                       "clientInfo": {"name": "injection-agent", "version": "1.0.0"}}),
            )
            .await?;
        result?;
        s.session = session;
        s.notify(gateway, "notifications/initialized").await?;
        Ok(s)
    }

    /// Every tool listed: (name, description, input schema).
    pub async fn list_tools(
        &mut self,
        gateway: &Gateway,
    ) -> Result<Vec<(String, String, Value)>, String> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let params = match &cursor {
                Some(c) => json!({"cursor": c}),
                None => json!({}),
            };
            let (result, _) = self.rpc(gateway, "tools/list", params).await?;
            let result = result?;
            for t in result["tools"].as_array().into_iter().flatten() {
                out.push((
                    t["name"].as_str().unwrap_or("").to_owned(),
                    t["description"].as_str().unwrap_or("").to_owned(),
                    t["inputSchema"].clone(),
                ));
            }
            cursor = result["nextCursor"].as_str().map(str::to_owned);
            if cursor.is_none() {
                return Ok(out);
            }
        }
    }

    /// Calls a tool: its text content, or the error (a JSON-RPC error, or a result marked
    /// `isError`).
    pub async fn call(
        &mut self,
        gateway: &Gateway,
        name: &str,
        arguments: &Value,
    ) -> Result<String, String> {
        let (result, _) = self
            .rpc(
                gateway,
                "tools/call",
                json!({"name": name, "arguments": arguments}),
            )
            .await?;
        let result = result?;
        let text: String = result["content"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n");
        if result["isError"].as_bool() == Some(true) {
            Err(text)
        } else {
            Ok(text)
        }
    }

    fn request(&self, gateway: &Gateway, body: &Value) -> reqwest::RequestBuilder {
        let mut r = gateway
            .client
            .post(format!("{}/mcp", gateway.base))
            .bearer_auth(&gateway.key)
            .header("accept", "application/json, text/event-stream")
            .json(body);
        if let Some(s) = &self.session {
            r = r
                .header("mcp-session-id", s)
                .header("mcp-protocol-version", "2025-11-25");
        }
        r
    }

    async fn notify(&self, gateway: &Gateway, method: &str) -> Result<(), String> {
        self.request(gateway, &json!({"jsonrpc": "2.0", "method": method}))
            .send()
            .await
            .map_err(|e| format!("{method}: {e}"))?;
        Ok(())
    }

    /// Sends a request: the outer error is the transport's, the inner one the JSON-RPC error.
    #[allow(clippy::type_complexity)]
    async fn rpc(
        &mut self,
        gateway: &Gateway,
        method: &str,
        params: Value,
    ) -> Result<(Result<Value, String>, Option<String>), String> {
        let id = self.next_id;
        self.next_id += 1;
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let response = self
            .request(gateway, &body)
            .send()
            .await
            .map_err(|e| format!("{method}: {e}"))?;
        let session = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let status = response.status();
        let sse_body = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.starts_with("text/event-stream"));
        let text = response
            .text()
            .await
            .map_err(|e| format!("{method}: {e}"))?;
        if !status.is_success() {
            return Err(format!("{method}: HTTP {status}: {text}"));
        }
        let messages: Vec<Value> = if sse_body {
            sse(&text)
                .into_iter()
                .filter_map(|(_, d)| serde_json::from_str(&d).ok())
                .collect()
        } else {
            serde_json::from_str(&text).into_iter().collect()
        };
        let answer = messages
            .into_iter()
            .find(|m| m["id"] == json!(id))
            .ok_or_else(|| format!("{method}: no answer in {text}"))?;
        let result = match answer.get("error") {
            Some(e) => Err(e["message"].as_str().unwrap_or("error").to_owned()),
            None => Ok(answer["result"].clone()),
        };
        Ok((result, session))
    }
}

/// The held calls at `GET /admin/approvals` (every page), or `None` when the gateway has no
/// such endpoint (404).
pub async fn approvals(gateway: &Gateway) -> Result<Option<Vec<Value>>, String> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{}/admin/approvals?limit=500", gateway.base);
        if let Some(c) = &cursor {
            url.push_str("&cursor=");
            url.push_str(c);
        }
        let response = gateway
            .client
            .get(url)
            .bearer_auth(&gateway.key)
            .send()
            .await
            .map_err(|e| format!("approvals: {e}"))?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(format!("approvals: HTTP {}", response.status()));
        }
        let page: Value = response
            .json()
            .await
            .map_err(|e| format!("approvals: {e}"))?;
        out.extend(page["data"].as_array().into_iter().flatten().cloned());
        cursor = page["next_cursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            return Ok(Some(out));
        }
    }
}

/// Whether `record`, an entry of `GET /admin/approvals`, holds the call `name(arguments)` of
/// the session `session` (arguments compared as JSON, given as an object or as JSON text).
pub fn approval_holds(record: &Value, session: &str, name: &str, arguments: &Value) -> bool {
    let args = match &record["arguments"] {
        Value::String(s) => serde_json::from_str(s).unwrap_or(Value::Null),
        v => v.clone(),
    };
    record["tool"].as_str() == Some(name)
        && args == *arguments
        && record["session"].as_str().is_none_or(|s| s == session)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_read_back_into_calls() {
        let openai = "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c1\",\"function\":{\"name\":\"send_money\",\"arguments\":\"\"}}]}}]}\n\n\
                      data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"a\\\":\"}}]}}]}\n\n\
                      data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"1}\"}}]},\"finish_reason\":\"tool_calls\"}]}\n\n\
                      data: [DONE]\n\n";
        let r = read_openai_stream(openai).ok();
        assert_eq!(
            r.map(|r| (r.calls, r.finish)),
            Some((
                vec![("c1".to_owned(), "send_money".to_owned(), json!({"a": 1}))],
                Some("tool_calls".to_owned())
            ))
        );
        let anthropic = "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t1\",\"name\":\"x\",\"input\":{}}}\n\n\
                         event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"b\\\":true}\"}}\n\n\
                         event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"}}\n\n";
        let r = read_anthropic_stream(anthropic).ok();
        assert_eq!(
            r.map(|r| (r.calls, r.finish)),
            Some((
                vec![("t1".to_owned(), "x".to_owned(), json!({"b": true}))],
                Some("tool_use".to_owned())
            ))
        );
    }
}
