//! The MCP gateway over real HTTP, in front of the real `@modelcontextprotocol/server-everything`
//! (started over stdio by the gateway), driven by the `rmcp` client of both protocol
//! generations and by plain HTTP where the transport's edges are the point: names namespaced
//! per server, a key's `tools` globs on both endpoints, refusals as JSON-RPC errors, the 401
//! that points at the resource metadata, DNS-rebinding protection, and the log.

use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};

use crate::common::*;

/// The server-everything binary the test suite's npm packages install.
fn everything_bin() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/mcp/node_modules/.bin/mcp-server-everything");
    assert!(
        path.exists(),
        "{} is missing: run `npm ci` in tests/mcp",
        path.display()
    );
    path.display().to_string()
}

/// Arguments and results are in the log only when the operator logs bodies.
#[tokio::test]
async fn arguments_and_results_are_logged_only_with_bodies() {
    for bodies in [false, true] {
        let gw = TestGateway::start(&format!(
            "\nlog:\n  bodies: {bodies}\n  flush_interval_ms: 5\n{}",
            yaml()
        ))
        .await;
        let marker = format!("secret-argument-{}", uuid::Uuid::now_v7());
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "everything__echo", "arguments": {"message": marker}}});
        let (status, _, answer) = rpc(&gw, "/mcp", Some(MASTER_KEY), &body.to_string()).await;
        assert_eq!(status, 200, "{answer}");
        let record = logged(&gw, |r| r["model"] == "everything__echo").await;
        let text = record.to_string();
        assert_eq!(
            text.contains(&marker),
            bodies,
            "log.bodies: {bodies}: {record}"
        );
        if bodies {
            assert!(record["response_body"].as_str().unwrap().contains(&marker));
        } else {
            assert!(record["request_body"].is_null());
        }
    }
}

fn yaml() -> String {
    format!(
        r#"
mcp:
  servers:
    everything:
      command: {bin}
      args: [stdio]
      timeout: 20s
"#,
        bin = everything_bin()
    )
}

async fn rmcp_client(
    gw: &TestGateway,
    path: &str,
    key: &str,
) -> rmcp::service::RunningService<rmcp::RoleClient, ()> {
    let config = StreamableHttpClientTransportConfig::with_uri(gw.at(path)).auth_header(key);
    let transport = StreamableHttpClientTransport::from_config(config);
    ().serve(transport).await.expect("the client connects")
}

fn text_of(result: &rmcp::model::CallToolResult) -> String {
    serde_json::to_value(&result.content).unwrap()[0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn rpc(
    gw: &TestGateway,
    path: &str,
    key: Option<&str>,
    body: &str,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = client()
        .post(gw.at(path))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_owned());
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

/// The first log record `matches` accepts, waiting for the log writer (up to 10 s).
async fn logged(gw: &TestGateway, matches: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let logs = gw.logs("limit=1000", 0).await;
        if let Some(r) = logs.into_iter().find(|r| matches(r)) {
            return r;
        }
        assert!(tokio::time::Instant::now() < deadline, "no such log record");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn new_key(gw: &TestGateway, body: Value) -> String {
    let r = client()
        .post(gw.at("/admin/keys"))
        .bearer_auth(MASTER_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    v["key"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_stdio_server_is_reached_through_the_aggregated_and_its_own_endpoint() {
    let gw = TestGateway::start(&yaml()).await;

    // The aggregated endpoint: names are `<server>__<tool>`.
    let mcp = rmcp_client(&gw, "/mcp", MASTER_KEY).await;
    let info = mcp.peer_info().expect("initialized");
    assert_eq!(
        info.server_info.as_ref().map(|s| s.name.as_str()),
        Some("portcullis")
    );
    let tools = mcp.list_all_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert!(names.contains(&"everything__echo"), "{names:?}");
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("everything__") && n.len() <= 64)
    );
    let echoed = mcp
        .call_tool(
            CallToolRequestParams::new("everything__echo").with_arguments(
                json!({"message": "through the gateway"})
                    .as_object()
                    .unwrap()
                    .clone(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(text_of(&echoed), "Echo: through the gateway");
    mcp.cancel().await.unwrap();

    // The server's own endpoint: its own names.
    let own = rmcp_client(&gw, "/mcp/everything", MASTER_KEY).await;
    let tools = own.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "echo"));
    let summed = own
        .call_tool(
            CallToolRequestParams::new("get-sum")
                .with_arguments(json!({"a": 2, "b": 40}).as_object().unwrap().clone()),
        )
        .await
        .unwrap();
    assert!(text_of(&summed).contains("42"), "{}", text_of(&summed));
    own.cancel().await.unwrap();

    // Every call is in the log: server as provider, tool as model.
    let call = logged(&gw, |r| {
        r["endpoint"] == "mcp" && r["model"] == "everything__echo"
    })
    .await;
    assert_eq!(call["provider"], "everything");
    assert_eq!(call["status"], 200);
    let meta: Value = serde_json::from_str(call["metadata"].as_str().unwrap()).unwrap();
    assert_eq!(meta["method"], "tools/call");
    assert_eq!(meta["decision"], "forwarded");
    assert_eq!(meta["arguments_sha256"].as_str().unwrap().len(), 64);

    // The admin API shows the server and its state; the metrics count the calls.
    let listed: Value = client()
        .get(gw.at("/admin/mcp-servers"))
        .bearer_auth(MASTER_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let server = &listed["data"][0];
    assert_eq!(server["name"], "everything");
    assert_eq!(server["transport"], "stdio");
    assert_eq!(server["status"], "ready");
    assert!(server["tools"].as_u64().unwrap() > 5, "{listed}");
    let user = new_key(&gw, json!({"name": "not-admin"})).await;
    let r = client()
        .get(gw.at("/admin/mcp-servers"))
        .bearer_auth(&user)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let metrics = gw.metrics_text().await;
    assert!(
        metrics.contains(
            r#"portcullis_mcp_tool_calls_total{server="everything",tool="everything__echo",decision="forwarded"} 1"#
        ),
        "{metrics}"
    );
    assert!(metrics.contains(r#"portcullis_mcp_server_up{server="everything"} 1"#));
}

#[tokio::test]
async fn a_keys_tools_globs_filter_lists_and_refuse_calls_on_both_endpoints() {
    let gw = TestGateway::start(&yaml()).await;
    let echo_only = new_key(
        &gw,
        json!({"name": "echo-only", "tools": ["everything__echo"]}),
    )
    .await;
    let other_server = new_key(&gw, json!({"name": "elsewhere", "tools": ["github__*"]})).await;

    let mcp = rmcp_client(&gw, "/mcp", &echo_only).await;
    let names: Vec<String> = mcp
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    assert_eq!(names, ["everything__echo"]);
    let refused = mcp
        .call_tool(
            CallToolRequestParams::new("everything__get-env").with_arguments(Default::default()),
        )
        .await
        .expect_err("refused");
    let text = refused.to_string();
    assert!(text.contains("everything__get-env"), "{text}");
    mcp.cancel().await.unwrap();

    // The same rule on the server's own endpoint, with the server's own names.
    let own = rmcp_client(&gw, "/mcp/everything", &echo_only).await;
    let names: Vec<String> = own
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    assert_eq!(names, ["echo"]);
    own.cancel().await.unwrap();

    // A refusal is a JSON-RPC error with HTTP 200, and never reaches the server.
    let (status, _, body) = rpc(
        &gw,
        "/mcp",
        Some(&echo_only),
        r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"everything__get-env","arguments":{}}}"#,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["id"], 7);
    assert_eq!(body["error"]["code"], -32602);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("everything__get-env")
    );
    let refusal = logged(&gw, |r| r["model"] == "everything__get-env").await;
    let meta: Value = serde_json::from_str(refusal["metadata"].as_str().unwrap()).unwrap();
    assert_eq!(meta["decision"], "refused");

    // A key for other servers only cannot use this one.
    let (status, _, _) = rpc(
        &gw,
        "/mcp/everything",
        Some(&other_server),
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
    )
    .await;
    assert_eq!(status, 403);
    let (status, _, body) = rpc(
        &gw,
        "/mcp",
        Some(&other_server),
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["result"]["tools"], json!([]));
}

#[tokio::test]
async fn the_transports_edges_answer_with_precise_statuses() {
    let gw = TestGateway::start(&yaml()).await;

    // No credentials: 401 pointing at the protected resource metadata.
    let (status, headers, _) = rpc(
        &gw,
        "/mcp/everything",
        None,
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
    )
    .await;
    assert_eq!(status, 401);
    let challenge = headers["www-authenticate"].to_str().unwrap();
    let expected = gw.at("/.well-known/oauth-protected-resource/mcp/everything");
    assert_eq!(
        challenge,
        format!("Bearer resource_metadata=\"{expected}\"")
    );
    let doc: Value = client()
        .get(&expected)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["resource"], gw.at("/mcp/everything"));

    // Not JSON, not JSON-RPC.
    let (status, _, body) = rpc(&gw, "/mcp", Some(MASTER_KEY), "{not json").await;
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (400, Some(-32700))
    );
    let (status, _, body) = rpc(&gw, "/mcp", Some(MASTER_KEY), r#"{"hello":"world"}"#).await;
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (400, Some(-32600))
    );

    // An unknown server, an unknown method, a notification.
    let (status, _, _) = rpc(
        &gw,
        "/mcp/nope",
        Some(MASTER_KEY),
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _, body) = rpc(
        &gw,
        "/mcp",
        Some(MASTER_KEY),
        r#"{"jsonrpc":"2.0","id":2,"method":"nope/nope"}"#,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (200, Some(-32601))
    );
    let (status, _, _) = rpc(
        &gw,
        "/mcp",
        Some(MASTER_KEY),
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    )
    .await;
    assert_eq!(status, 202);

    // A session id the gateway never issued.
    let r = client()
        .post(gw.at("/mcp"))
        .bearer_auth(MASTER_KEY)
        .header("mcp-session-id", "forged.0000")
        .json(&json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // DNS rebinding: a foreign Host or Origin.
    for (name, value) in [("host", "evil.example"), ("origin", "http://evil.example")] {
        let r = client()
            .post(gw.at("/mcp"))
            .bearer_auth(MASTER_KEY)
            .header(name, value)
            .json(&json!({"jsonrpc": "2.0", "id": 4, "method": "ping"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{name}: {value}");
    }
}

#[tokio::test]
async fn a_client_of_the_2026_protocol_needs_no_handshake() {
    let gw = TestGateway::start(&yaml()).await;
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                      "io.modelcontextprotocol/clientCapabilities": {}});
    let post = |method: &str, name: Option<&str>, params: Value| {
        let mut req = client()
            .post(gw.at("/mcp"))
            .bearer_auth(MASTER_KEY)
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", method)
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}));
        if let Some(name) = name {
            req = req.header("mcp-name", name);
        }
        req.send()
    };
    let discovered: Value = post("server/discover", None, json!({"_meta": meta}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(discovered["result"]["resultType"], "complete");
    assert_eq!(
        discovered["result"]["supportedVersions"],
        json!(["2026-07-28"])
    );
    let listed: Value = post("tools/list", None, json!({"_meta": meta}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["result"]["cacheScope"], "private");
    assert!(listed["result"]["tools"].as_array().unwrap().len() > 3);
    let called: Value = post(
        "tools/call",
        Some("everything__echo"),
        json!({"_meta": meta, "name": "everything__echo", "arguments": {"message": "modern"}}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(called["result"]["resultType"], "complete");
    assert_eq!(called["result"]["content"][0]["text"], "Echo: modern");
    // A name header that disagrees with the body.
    let r = post(
        "tools/call",
        Some("everything__other"),
        json!({"_meta": meta, "name": "everything__echo", "arguments": {"message": "x"}}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32020);
}

/// A session begun on one replica goes on on another (and after a restart): session ids are
/// signed with a key both read from the shared database, and nothing else is kept per session.
#[tokio::test]
async fn a_session_started_on_one_replica_continues_on_another() {
    let db = fresh_postgres_url().await;
    let first = TestGateway::start_with_db(&db, &yaml()).await;
    let second = TestGateway::start_with_db(&db, &yaml()).await;
    let initialize = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    let (status, headers, body) = rpc(&first, "/mcp", Some(MASTER_KEY), initialize).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["protocolVersion"], "2025-11-25");
    let session = headers["mcp-session-id"].to_str().unwrap().to_owned();

    let list = |gw: &TestGateway, session: &str| {
        client()
            .post(gw.at("/mcp"))
            .bearer_auth(MASTER_KEY)
            .header("mcp-session-id", session.to_owned())
            .header("mcp-protocol-version", "2025-11-25")
            .json(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))
            .send()
    };
    let r = list(&second, &session).await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(!v["result"]["tools"].as_array().unwrap().is_empty());
    // A session id changed by one character is nobody's.
    let mut forged = session.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == '0' { '1' } else { '0' });
    assert_eq!(list(&second, &forged).await.unwrap().status(), 404);
}

/// A server's request to the client during a call (sampling) reaches the client on the call's
/// SSE stream under an id of the gateway's own, and the client's answer goes back to the server,
/// which then completes the call.
#[tokio::test]
async fn a_sampling_request_of_a_server_reaches_the_client_and_its_answer_goes_back() {
    use futures_util::StreamExt;
    let gw = TestGateway::start(&yaml()).await;
    let call = json!({"jsonrpc": "2.0", "id": 11, "method": "tools/call", "params": {
        "name": "everything__trigger-sampling-request",
        "arguments": {"prompt": "What is the capital of France?", "maxTokens": 20}}});
    let r = client()
        .post(gw.at("/mcp"))
        .bearer_auth(MASTER_KEY)
        .header("accept", "application/json, text/event-stream")
        .json(&call)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let mut stream = r.bytes_stream();
    let mut seen = String::new();
    let mut answered = false;
    let result = loop {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(20), stream.next())
            .await
            .expect("the stream goes on")
            .expect("the stream does not end before the result")
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
        let mut done = None;
        while let Some(end) = seen.find("\n\n") {
            let event: String = seen.drain(..end + 2).collect();
            // The priming event (an id, no data) carries no message.
            let Some(data) = event
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .filter(|d| !d.is_empty())
            else {
                continue;
            };
            let message: Value = serde_json::from_str(data).unwrap();
            if message["method"] == "sampling/createMessage" {
                let id = message["id"].as_str().expect("a gateway id").to_owned();
                assert!(id.starts_with("portcullis-"), "{id}");
                let answer = json!({"jsonrpc": "2.0", "id": id, "result": {
                    "role": "assistant", "model": "test-model", "stopReason": "endTurn",
                    "content": {"type": "text", "text": "Paris, of course."}}});
                let r = client()
                    .post(gw.at("/mcp"))
                    .bearer_auth(MASTER_KEY)
                    .json(&answer)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 202);
                answered = true;
            } else if message["id"] == 11 {
                done = Some(message);
            }
        }
        if let Some(message) = done {
            break message;
        }
    };
    assert!(answered, "the client was asked");
    let text = result["result"]["content"].to_string();
    assert!(text.contains("Paris, of course."), "{result}");
}

/// A server that cannot start shows as failing and never hides the other servers' tools.
#[tokio::test]
async fn a_failing_server_never_hides_the_others() {
    let gw = TestGateway::start(&format!(
        "{}    broken:\n      command: /nonexistent/mcp-server\n      timeout: 2s\n",
        yaml()
    ))
    .await;
    let (status, _, body) = rpc(
        &gw,
        "/mcp",
        Some(MASTER_KEY),
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
    )
    .await;
    assert_eq!(status, 200);
    let names: Vec<&str> = body["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"everything__echo"), "{names:?}");
    assert!(names.iter().all(|n| !n.starts_with("broken__")));
    let (status, _, body) = rpc(
        &gw,
        "/mcp/broken",
        Some(MASTER_KEY),
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["error"]["code"], -32001, "{body}");
    let listed: Value = client()
        .get(gw.at("/admin/mcp-servers"))
        .bearer_auth(MASTER_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let broken = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "broken")
        .unwrap();
    assert_eq!(broken["status"], "failing", "{listed}");
}

/// A reload changes the MCP servers: an added server's tools appear, a removed server's go,
/// an unchanged server keeps its connection, and sessions stay valid.
#[tokio::test]
async fn a_reload_adds_and_removes_mcp_servers() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("gw.db").display());
    let file = |servers: &[&str]| {
        let mut text = format!(
            "master_key: {MASTER_KEY}\ndatabase: {{url: \"{db}\"}}\nlog: {{flush_interval_ms: 5}}\nmcp:\n  servers:\n"
        );
        for name in servers {
            text.push_str(&format!(
                "    {name}: {{command: {}, args: [stdio], timeout: 20s}}\n",
                everything_bin()
            ));
        }
        portcullis_config::from_yaml(
            &text,
            portcullis_config::Source::Environment,
            &std::collections::HashMap::<String, String>::new(),
        )
        .unwrap()
    };
    let gw = TestGateway::start_config(file(&["everything"])).await;
    let session = mcp_session(&gw, MASTER_KEY).await;
    let tools = |gw: &TestGateway| {
        let request = client()
            .post(gw.at("/mcp"))
            .bearer_auth(MASTER_KEY)
            .header("mcp-session-id", session.clone())
            .json(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))
            .send();
        async move {
            let v: Value = request.await.unwrap().json().await.unwrap();
            v["result"]["tools"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["name"].as_str().unwrap().to_owned())
                .collect::<Vec<String>>()
        }
    };
    let before = gw.state.mcp.load_full().unwrap();
    let kept = before.hub.server("everything").unwrap().clone();

    let summary = gw
        .state
        .reload(&file(&["everything", "more"]))
        .await
        .unwrap();
    assert!(summary.applied.contains(&"mcp"), "{summary}");
    assert!(!summary.needs_restart.contains(&"mcp"), "{summary}");
    let names = tools(&gw).await;
    assert!(names.contains(&"everything__echo".to_owned()), "{names:?}");
    assert!(names.contains(&"more__echo".to_owned()), "{names:?}");
    let after = gw.state.mcp.load_full().unwrap();
    assert!(
        std::sync::Arc::ptr_eq(after.hub.server("everything").unwrap(), &kept),
        "an unchanged server keeps its connection"
    );

    gw.state.reload(&file(&["more"])).await.unwrap();
    let names = tools(&gw).await;
    assert!(
        !names.iter().any(|n| n.starts_with("everything__")),
        "{names:?}"
    );
    assert!(names.contains(&"more__echo".to_owned()));
    let (status, _, _) = rpc(
        &gw,
        "/mcp/everything",
        Some(MASTER_KEY),
        r#"{"jsonrpc":"2.0","id":3,"method":"ping"}"#,
    )
    .await;
    assert_eq!(status, 404, "a removed server's endpoint is gone");
    gw.stop().await;
}
